//! What the session tells the device's event stream, in the catalogue's shapes (contract
//! section 6). Events are appended to the outbox in PostgreSQL; delivery is someone else's.

use serde_json::{Map, Value, json};
use sqlx::{PgConnection, PgPool};

use crate::domain::{DeviceScope, EventKind, Identity, PhoneNumber};
use crate::store::StoreError;
use crate::store::events::{self, Wakeup};

/// An event about to be appended.
#[derive(Debug, Clone)]
pub struct Pending {
    pub kind: EventKind,
    pub data: Value,
}

impl Pending {
    pub fn new(kind: EventKind, data: Value) -> Self {
        Self { kind, data }
    }
}

/// A contact as events carry it: `{"jid","phone_number"?,"lid_jid"?}`, the phone number
/// whenever it is known (as every contact the gateway answers).
pub fn contact(identity: &Identity) -> Value {
    let mut shown = Map::new();
    if let Some(jid) = identity.jid() {
        shown.insert("jid".to_owned(), Value::String(jid));
    }
    if let Some(phone) = identity.phone_digits() {
        shown.insert("phone_number".to_owned(), Value::String(phone));
    }
    if let Some(lid) = identity.lid_jid() {
        shown.insert("lid_jid".to_owned(), Value::String(lid));
    }
    Value::Object(shown)
}

/// `{"jid","phone_number"}` of the device's own account, from its JID (`<digits>:<n>@...`).
pub fn account(jid: &str) -> Value {
    let digits = jid.split(['@', ':']).next().unwrap_or_default();
    let phone = PhoneNumber::parse(digits)
        .ok()
        .map(|p| p.as_str().to_owned());
    json!({"jid": jid, "phone_number": phone})
}

/// Appends events inside the caller's transaction; the caller wakes the delivery workers once
/// it has committed ([`Wakeup::committed`]).
pub async fn append_in(
    conn: &mut PgConnection,
    scope: &DeviceScope,
    pending: &[Pending],
) -> Result<(), StoreError> {
    for event in pending {
        events::append(conn, scope, event.kind, &event.data).await?;
        crate::metrics::event_created(event.kind);
    }
    Ok(())
}

/// Appends events in a transaction of their own, and wakes the delivery workers. A failure is
/// logged: the state change they describe already happened (callers that can, append in the
/// change's own transaction).
pub async fn emit(db: &PgPool, wakeup: &Wakeup, scope: &DeviceScope, pending: &[Pending]) {
    if pending.is_empty() {
        return;
    }
    let result = async {
        let mut tx = db.begin().await?;
        append_in(&mut tx, scope, pending).await?;
        tx.commit().await?;
        Ok::<(), StoreError>(())
    }
    .await;
    match result {
        Ok(()) => wakeup.committed(),
        Err(err) => tracing::error!(error = %err, "appending events failed"),
    }
}
