//! The logic between the HTTP handlers and the store (and, later, the device sessions).

pub mod accounts;
pub mod contacts;
pub mod groups;
