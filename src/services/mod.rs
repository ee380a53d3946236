//! The logic between the HTTP handlers and the sessions and store. Services speak in their own
//! error type ([`Error`]); `http/error.rs` alone chooses statuses and codes.

pub mod accounts;
pub mod app_state;
pub mod communities;
pub mod contacts;
pub mod error;
pub mod groups;
pub mod pictures;
pub mod privacy;
pub mod webhooks;

pub use error::Error;
