//! Test and benchmark support: the real `wuts` binary run as a child process, and scratch
//! databases for it.
//!
//! The integration tests (`tests/api/processes.rs`) and the benchmark (`benches/gateway`) both run
//! the gateway as its own process: the tests to crash it, restart it and read its logs, the
//! benchmark to measure its memory alone. Both start it the same way, wait for it the same way and
//! stop it the same way, from here.
//!
//! Dev-only: no normal dependency of the gateway may point here.

pub mod database;
pub mod process;

pub use database::{ScratchDatabase, with_database};
pub use process::{Error, GatewayCommand, GatewayProcess, memory_kib};
