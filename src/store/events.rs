//! Each device's event stream: the outbox. An event is a row here before anyone is told about
//! it; appending it also queues it for the device's webhook. Once the transaction that appended
//! it has committed, a [`Wakeup`] tells the delivery workers of every node (`NOTIFY`).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tokio::sync::mpsc;

use super::StoreError;
use crate::domain::{DeviceId, DeviceScope, EventId, EventKind, TenantId, UserId};

/// The channel delivery workers listen on. (The name is also in the `contact.lid` trigger,
/// migration 0008.)
pub const WAKE_CHANNEL: &str = "wuts_deliveries";

/// Tells the delivery workers of every node that events were committed, with a `NOTIFY` of its
/// own after the commit, never inside the appending transaction: PostgreSQL holds one lock for
/// the whole database from a notifying transaction's pre-commit to the end of its commit, so
/// transactions that notify commit one at a time, each waiting for its own WAL flush (measured
/// here with pgbench, 16 clients: about 680 single-insert transactions per second that notify,
/// 10,000 that do not). Wake-ups asked for while one is being sent are answered by the next one
/// (the workers claim whatever is due, whichever event woke them).
#[derive(Clone)]
pub struct Wakeup {
    asked: mpsc::Sender<()>,
}

impl Wakeup {
    /// Starts the task that sends the notifications over `pool`; it ends with the last clone.
    pub fn start(pool: PgPool) -> Self {
        let (asked, mut wanted) = mpsc::channel::<()>(1);
        tokio::spawn(async move {
            while wanted.recv().await.is_some() {
                if let Err(err) = sqlx::query("SELECT pg_notify($1, '')")
                    .bind(WAKE_CHANNEL)
                    .execute(&pool)
                    .await
                {
                    // The workers' periodic sweep finds the events anyway.
                    tracing::debug!(error = %err, "waking the delivery workers failed");
                }
            }
        });
        Self { asked }
    }

    /// Events were committed: the workers are woken (once, however many ask meanwhile).
    pub fn committed(&self) {
        // A full channel means a wake-up is already due: this one is answered by it.
        let _ = self.asked.try_send(());
    }
}

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
/// in the webhook's queue). The caller wakes the workers once it has committed
/// ([`Wakeup::committed`]). Answers `None` when the device is gone.
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
