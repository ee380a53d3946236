//! Device sessions: one actor task per device owns its whatsapp-rust client.
//!
//! - [`pool`]: this node's sessions; restore at startup, shutdown.
//! - [`handle`]: what handlers hold: commands with deadlines, the state, the connected client.
//! - [`actor`]: the task that owns the client and consumes its events.
//! - [`ownership`]: one live connection per device across every gateway process.
//! - [`pacing`]: per-device pacing of the WhatsApp calls that get accounts banned when abused.
//! - [`reconnect`]: reconnects spread over time after WhatsApp drops many sessions at once.
//! - [`state`]: statuses, QR and pairing codes, errors.

pub mod actor;
pub mod handle;
pub(crate) mod identity;
pub mod keys;
pub mod ownership;
pub mod pacing;
pub mod pool;
pub mod qr;
pub mod reconnect;
pub mod state;
pub mod whatsapp;

pub use handle::DeviceHandle;
pub use pool::{KeyStore, SessionConfig, SessionPool};
pub use state::{PairingCode, PairingQr, SessionError, SessionState, SessionStatus};
