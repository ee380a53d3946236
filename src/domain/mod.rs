//! Domain types of the gateway: identifiers, roles, names and tokens.
//!
//! Everything here is pure (no I/O). Input types *parse* what a client sent into a value that is
//! valid by construction, and say what is wrong in words a client can act on.

pub mod event;
pub mod idempotency;
pub mod identity;
pub mod ids;
pub mod invite;
pub mod jid;
pub mod names;
pub mod rate;
pub mod role;
pub mod scope;
pub mod status;
pub mod token;

pub use event::{EventFilter, EventId, EventKind, WebhookId};
pub use idempotency::{IdempotencyKey, KeyScope};
pub use identity::{Identity, Names};
pub use ids::{DeviceId, TenantId, UserId};
pub use invite::{EphemeralTimer, InviteCode};
pub use jid::{ContactId, GroupJid, IdentifierError, Lid, PhoneNumber};
pub use names::{DeviceName, Email, TenantName};
pub use role::Role;
pub use scope::DeviceScope;
pub use status::SessionStatus;
pub use token::{ApiToken, TokenHash};
