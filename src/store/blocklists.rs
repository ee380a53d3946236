//! Each device's snapshot of its WhatsApp block list.

use sqlx::PgPool;

use super::StoreError;
use crate::domain::{DeviceId, TenantId};

/// The block list as WhatsApp last described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub dhash: String,
    /// Blocked users' JIDs, as WhatsApp lists them.
    pub items: Vec<String>,
}

/// The device's snapshot, if one was taken.
pub async fn get(
    pool: &PgPool,
    tenant: TenantId,
    device: DeviceId,
) -> Result<Option<Snapshot>, StoreError> {
    Ok(sqlx::query_as!(
        Snapshot,
        r#"SELECT b.dhash, b.items FROM blocklists b
           JOIN devices d ON d.id = b.device_id
           WHERE d.tenant_id = $1 AND b.device_id = $2"#,
        tenant as TenantId,
        device as DeviceId,
    )
    .fetch_optional(pool)
    .await?)
}

/// Replaces the snapshot with WhatsApp's latest answer.
pub async fn put(pool: &PgPool, device: DeviceId, snapshot: &Snapshot) -> Result<(), StoreError> {
    sqlx::query!(
        r#"INSERT INTO blocklists (device_id, dhash, items) VALUES ($1, $2, $3)
           ON CONFLICT (device_id) DO UPDATE
           SET dhash = excluded.dhash, items = excluded.items, updated_at = now()"#,
        device as DeviceId,
        snapshot.dhash,
        &snapshot.items,
    )
    .execute(pool)
    .await
    .map(|_| ())
    .or_else(|err| match &err {
        // The device was deleted meanwhile: nothing to keep.
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => Ok(()),
        _ => Err(err.into()),
    })
}

/// Applies the changes of a block-list notification. Answers `false` when there is no
/// snapshot to apply them to (the caller should fetch the whole list instead).
pub async fn apply(
    pool: &PgPool,
    device: DeviceId,
    dhash: &str,
    changes: &[(String, bool)],
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let current = sqlx::query_scalar!(
        "SELECT items FROM blocklists WHERE device_id = $1 FOR UPDATE",
        device as DeviceId
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(mut items) = current else {
        return Ok(false);
    };
    for (jid, blocked) in changes {
        items.retain(|item| item != jid);
        if *blocked {
            items.push(jid.clone());
        }
    }
    sqlx::query!(
        "UPDATE blocklists SET dhash = $2, items = $3, updated_at = now() WHERE device_id = $1",
        device as DeviceId,
        dhash,
        &items,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Forgets the snapshot (the device logged out).
pub async fn erase(pool: &PgPool, device: DeviceId) -> Result<(), StoreError> {
    sqlx::query!(
        "DELETE FROM blocklists WHERE device_id = $1",
        device as DeviceId
    )
    .execute(pool)
    .await?;
    Ok(())
}
