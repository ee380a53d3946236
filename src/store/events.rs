//! Each device's event stream: the outbox. An event is a row here before anyone is told about
//! it; appending it also queues it for the device's webhook and wakes the delivery workers
//! (`NOTIFY`, sent when the transaction commits).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::StoreError;
use crate::domain::{DeviceId, DeviceScope, EventId, EventKind, TenantId, UserId};

/// The channel delivery workers listen on; the payload is the device id. (The name is also in
/// `wuts_append_event`, migration 0007.)
pub const WAKE_CHANNEL: &str = "wuts_deliveries";

/// An event as stored and delivered.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: EventId,
    pub event: String,
    pub device_id: DeviceId,
    pub user_id: UserId,
    pub seq: i64,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// Appends an event to the device's stream inside the caller's transaction, so it commits with
/// the change that caused it (`wuts_append_event`: the next gapless `seq`, the event, its place
/// in the webhook's queue, a wake-up at commit). Answers `None` when the device is gone.
pub async fn append(
    conn: &mut PgConnection,
    scope: &DeviceScope,
    kind: EventKind,
    data: &serde_json::Value,
) -> Result<Option<Event>, StoreError> {
    let id = EventId::new();
    let row = sqlx::query!(
        r#"SELECT user_id AS "user_id!: UserId", seq AS "seq!", created_at AS "created_at!"
           FROM wuts_append_event($1, $2, $3, $4, $5)"#,
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
        id as EventId,
        kind.name(),
        data,
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|row| Event {
        id,
        event: kind.name().to_owned(),
        device_id: scope.device(),
        user_id: row.user_id,
        seq: row.seq,
        data: data.clone(),
        created_at: row.created_at,
    }))
}

/// A page of a device's stream.
pub struct Page {
    /// Only events after this one (by `seq`).
    pub after_seq: i64,
    pub limit: i64,
    /// Only these event names (all when `None`).
    pub names: Option<Vec<String>>,
}

/// A device's events after a point, oldest first.
pub async fn list(
    pool: &PgPool,
    scope: &DeviceScope,
    page: &Page,
) -> Result<Vec<Event>, StoreError> {
    Ok(sqlx::query_as!(
        Event,
        r#"SELECT id AS "id: EventId", event, device_id AS "device_id: DeviceId",
                  user_id AS "user_id: UserId", seq, data, created_at
           FROM events
           WHERE tenant_id = $1 AND device_id = $2 AND seq > $3
             AND ($4::text[] IS NULL OR event = ANY ($4))
           ORDER BY seq LIMIT $5"#,
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
        page.after_seq,
        page.names.as_deref(),
        page.limit,
    )
    .fetch_all(pool)
    .await?)
}

/// One of the device's events.
pub async fn get(
    pool: &PgPool,
    scope: &DeviceScope,
    id: EventId,
) -> Result<Option<Event>, StoreError> {
    Ok(sqlx::query_as!(
        Event,
        r#"SELECT id AS "id: EventId", event, device_id AS "device_id: DeviceId",
                  user_id AS "user_id: UserId", seq, data, created_at
           FROM events WHERE tenant_id = $1 AND device_id = $2 AND id = $3"#,
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
        id as EventId,
    )
    .fetch_optional(pool)
    .await?)
}

/// Forgets events older than the retention period (and their queued deliveries with them);
/// answers how many went.
pub async fn prune(pool: &PgPool, older_than: DateTime<Utc>) -> Result<u64, StoreError> {
    let done = sqlx::query!(
        "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE created_at < $1 LIMIT 10000)",
        older_than,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
