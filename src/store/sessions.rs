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

/// A device that should be connected and that no live node serves.
#[derive(Debug, Clone)]
pub struct Orphan {
    pub scope: DeviceScope,
    pub handoff_to: Option<String>,
}

/// The devices that should be connected (`auto_connect`) whose lease no registered node holds.
pub async fn orphans(pool: &PgPool) -> Result<Vec<Orphan>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT d.tenant_id AS "tenant_id: TenantId", d.id AS "device_id: DeviceId",
                  o.handoff_to AS "handoff_to?"
           FROM devices d LEFT JOIN device_owners o ON o.device_id = d.id
           WHERE d.auto_connect
             AND (o.node_id IS NULL OR NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = o.node_id))
           ORDER BY d.created_at, d.id"#
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Orphan {
            scope: DeviceScope::checked(r.tenant_id, r.device_id),
            handoff_to: r.handoff_to,
        })
        .collect())
}

/// The devices a node serves (tenant, device), for `wuts nodes --devices`.
pub async fn devices_of(pool: &PgPool, node: &str) -> Result<Vec<DeviceScope>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT d.tenant_id AS "tenant_id: TenantId", d.id AS "device_id: DeviceId"
           FROM device_owners o JOIN devices d ON d.id = o.device_id
           WHERE o.node_id = $1 ORDER BY d.id"#,
        node,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| DeviceScope::checked(r.tenant_id, r.device_id))
        .collect())
}
