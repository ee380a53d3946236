//! Device sessions: one actor task per device owns its whatsapp-rust client.
//!
//! - [`pool`]: this node's sessions; restore at startup, shutdown.
//! - [`device`]: a connected session as a request holds it, and what lives with the device.
//! - [`blocklist`]: the block list's one home (its IQs, snapshot and cached answer).
//! - [`deps`]: what every actor shares (settings, keys, database, ownership).
//! - [`handle`]: what handlers hold: commands with deadlines, the state, the connected client.
//! - [`actor`]: the task that owns the client and consumes its events.
//! - [`ownership`]: one live connection per device across every gateway process.
//! - [`pacing`]: per-device pacing of the WhatsApp calls that get accounts banned when abused.
//! - [`reachout`]: WhatsApp's reach-out time-lock on the account, read through MEX.
//! - [`reconnect`]: reconnects spread over time after WhatsApp drops many sessions at once.
//! - [`group_events`]: group and community events, from notifications and own calls.
//! - [`group_sync`]: the groups' changes made while the device was away, found at connect.
//! - [`outbox`]: the events the session appends to the device's stream.
//! - [`state`]: statuses, QR and pairing codes, errors.

pub mod actor;
pub mod blocklist;
pub mod caches;
pub mod cluster;
pub mod deps;
pub mod device;
pub mod group_events;
pub mod group_sync;
pub mod handle;
pub(crate) mod identity;
pub mod keys;
pub mod outbox;
pub mod ownership;
pub mod pacing;
pub mod pool;
pub mod reachout;
pub mod reconnect;
pub mod state;
pub mod whatsapp;

pub use deps::{KeyStore, SessionConfig};
pub use device::DeviceSession;
pub use handle::DeviceHandle;
pub use pool::SessionPool;
pub use state::{PairingCode, PairingQr, SessionError, SessionState, SessionStatus};
