//! Each device's snapshot of its WhatsApp block list. Written only through
//! `session::blocklist`, the block list's one home.

use sqlx::{PgConnection, PgPool};

use super::StoreError;
use crate::domain::{DeviceId, DeviceScope, EventId, TenantId};

/// The block list as WhatsApp last described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub dhash: String,
    /// Blocked users' JIDs, as WhatsApp lists them.
    pub items: Vec<String>,
}

/// The device's snapshot, if one was taken.
pub async fn get(pool: &PgPool, scope: &DeviceScope) -> Result<Option<Snapshot>, StoreError> {
    Ok(sqlx::query_as!(
        Snapshot,
        r#"SELECT b.dhash, b.items FROM blocklists b
           JOIN devices d ON d.id = b.device_id
           WHERE d.tenant_id = $1 AND b.device_id = $2"#,
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
    )
    .fetch_optional(pool)
    .await?)
}

/// The device's snapshot, locked until the caller's transaction ends (the one that replaces
/// it and appends the event describing the change).
pub async fn get_for_update(
    conn: &mut PgConnection,
    scope: &DeviceScope,
) -> Result<Option<Snapshot>, StoreError> {
    Ok(sqlx::query_as!(
        Snapshot,
        r#"SELECT b.dhash, b.items FROM blocklists b
           JOIN devices d ON d.id = b.device_id
           WHERE d.tenant_id = $1 AND b.device_id = $2
           FOR UPDATE OF b"#,
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
    )
    .fetch_optional(conn)
    .await?)
}

/// Replaces the snapshot with WhatsApp's latest answer. A device that is gone (or not the
/// tenant's) keeps nothing.
pub async fn put(
    conn: &mut PgConnection,
    scope: &DeviceScope,
    snapshot: &Snapshot,
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"INSERT INTO blocklists (device_id, dhash, items)
           SELECT id, $3, $4 FROM devices WHERE id = $2 AND tenant_id = $1
           ON CONFLICT (device_id) DO UPDATE
           SET dhash = excluded.dhash, items = excluded.items, updated_at = now()"#,
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
        snapshot.dhash,
        &snapshot.items,
    )
    .execute(conn)
    .await
    .map(|_| ())
    .or_else(|err| match &err {
        // The device was deleted meanwhile: nothing to keep.
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => Ok(()),
        _ => Err(err.into()),
    })
}

/// What [`replace`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replaced {
    Saved,
    /// The stored snapshot is not the one the caller expected: nothing was written.
    Stale,
    /// The device is gone (or not the tenant's): nothing was written.
    Gone,
}

/// Replaces the snapshot, if the stored one has the hash `expected` (`None`: there is none),
/// and appends the event describing the change, in one round trip and one transaction
/// (`wuts_save_blocklist`, migration 0008). The caller wakes the delivery workers.
pub async fn replace(
    pool: &PgPool,
    scope: &DeviceScope,
    expected: Option<&str>,
    snapshot: &Snapshot,
    event: Option<(&str, &serde_json::Value)>,
) -> Result<Replaced, StoreError> {
    let outcome = sqlx::query_scalar!(
        r#"SELECT wuts_save_blocklist($1, $2, $3, $4, $5, $6, $7, $8) AS "outcome!""#,
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
        expected,
        snapshot.dhash,
        &snapshot.items,
        EventId::new() as EventId,
        event.map(|(name, _)| name),
        event.map(|(_, data)| data),
    )
    .fetch_one(pool)
    .await?;
    Ok(match outcome.as_str() {
        "saved" => Replaced::Saved,
        "stale" => Replaced::Stale,
        _ => Replaced::Gone,
    })
}

/// Forgets the snapshot (the device logged out).
pub async fn erase(pool: &PgPool, scope: &DeviceScope) -> Result<(), StoreError> {
    sqlx::query!(
        r#"DELETE FROM blocklists b USING devices d
           WHERE d.id = b.device_id AND d.tenant_id = $1 AND b.device_id = $2"#,
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
    )
    .execute(pool)
    .await?;
    Ok(())
}
