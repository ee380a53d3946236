//! The session columns of `devices`, written by device actors, and the devices to restore.

use sqlx::{PgConnection, PgPool};

use super::StoreError;
use crate::domain::{DeviceId, DeviceScope, SessionStatus, TenantId};

/// A change to a device's session columns. `None`/`false` fields are left as they are.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub status: SessionStatus,
    pub auto_connect: Option<bool>,
    pub jid: Option<String>,
    pub lid: Option<String>,
    /// Forget the JIDs (logged out).
    pub clear_jid: bool,
    /// Set `last_seen` to now.
    pub seen: bool,
    pub error: Option<String>,
    pub clear_error: bool,
}

impl SessionRecord {
    pub fn new(status: SessionStatus) -> Self {
        Self {
            status,
            auto_connect: None,
            jid: None,
            lid: None,
            clear_jid: false,
            seen: false,
            error: None,
            clear_error: false,
        }
    }
}

pub async fn record(
    conn: &mut PgConnection,
    scope: &DeviceScope,
    record: &SessionRecord,
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"UPDATE devices SET
               status = $3,
               auto_connect = coalesce($4, auto_connect),
               whatsapp_jid = CASE WHEN $7 THEN NULL ELSE coalesce($5, whatsapp_jid) END,
               lid_jid = CASE WHEN $7 THEN NULL ELSE coalesce($6, lid_jid) END,
               last_seen = CASE WHEN $8 THEN now() ELSE last_seen END,
               last_error = CASE WHEN $10 THEN NULL ELSE coalesce($9, last_error) END,
               updated_at = now()
           WHERE tenant_id = $1 AND id = $2"#,
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
        record.status as SessionStatus,
        record.auto_connect,
        record.jid,
        record.lid,
        record.clear_jid,
        record.seen,
        record.error,
        record.clear_error,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Every device that should be connected, oldest first, each with its tenant.
pub async fn to_restore(pool: &PgPool) -> Result<Vec<DeviceScope>, StoreError> {
    let rows = sqlx::query!(
        r#"SELECT tenant_id AS "tenant_id: TenantId", id AS "device_id: DeviceId"
           FROM devices WHERE auto_connect ORDER BY created_at, id"#
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| DeviceScope::checked(r.tenant_id, r.device_id))
        .collect())
}
