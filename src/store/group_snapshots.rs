//! What each device last knew of its groups (members, roles, name, settings), so that the
//! changes made while it was away can be reported when it connects again.

use std::collections::HashMap;

use sqlx::{PgConnection, PgPool};

use super::StoreError;
use crate::domain::{DeviceId, DeviceScope, TenantId};

/// Whether the device's groups were read once (there is a baseline to compare with).
pub async fn synced(pool: &PgPool, scope: &DeviceScope) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM group_syncs g JOIN devices d ON d.id = g.device_id
                          WHERE d.tenant_id = $1 AND g.device_id = $2) AS "synced!""#,
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
    )
    .fetch_one(pool)
    .await?)
}

/// Every group's snapshot, by group JID.
pub async fn all(
    pool: &PgPool,
    scope: &DeviceScope,
) -> Result<HashMap<String, serde_json::Value>, StoreError> {
    let rows = sqlx::query!(
        r#"SELECT s.group_jid, s.state FROM group_snapshots s
           JOIN devices d ON d.id = s.device_id
           WHERE d.tenant_id = $1 AND s.device_id = $2"#,
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.group_jid, r.state)).collect())
}

/// Replaces every snapshot with what WhatsApp answered now, inside the caller's transaction
/// (the one appending the events of the differences), and marks the device synced.
pub async fn replace_all(
    conn: &mut PgConnection,
    scope: &DeviceScope,
    groups: &[(String, serde_json::Value)],
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"DELETE FROM group_snapshots s USING devices d
           WHERE d.id = s.device_id AND d.tenant_id = $1 AND s.device_id = $2"#,
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
    )
    .execute(&mut *conn)
    .await?;
    let jids: Vec<String> = groups.iter().map(|(jid, _)| jid.clone()).collect();
    let states: Vec<serde_json::Value> = groups.iter().map(|(_, state)| state.clone()).collect();
    sqlx::query!(
        r#"INSERT INTO group_snapshots (device_id, group_jid, state)
           SELECT $2, * FROM UNNEST($3::text[], $4::jsonb[])
           WHERE EXISTS (SELECT 1 FROM devices WHERE id = $2 AND tenant_id = $1)"#,
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
        &jids,
        &states,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        r#"INSERT INTO group_syncs (device_id)
           SELECT id FROM devices WHERE id = $2 AND tenant_id = $1
           ON CONFLICT (device_id) DO UPDATE SET synced_at = now()"#,
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Stores one group as it is now (`None`: the device is no longer in it).
pub async fn put(
    pool: &PgPool,
    scope: &DeviceScope,
    group: &str,
    state: Option<&serde_json::Value>,
) -> Result<(), StoreError> {
    match state {
        Some(state) => {
            sqlx::query!(
                r#"INSERT INTO group_snapshots (device_id, group_jid, state)
                   SELECT id, $3, $4 FROM devices WHERE id = $2 AND tenant_id = $1
                   ON CONFLICT (device_id, group_jid)
                   DO UPDATE SET state = excluded.state, updated_at = now()"#,
                scope.tenant() as TenantId,
                scope.device() as DeviceId,
                group,
                state,
            )
            .execute(pool)
            .await?;
        }
        None => {
            sqlx::query!(
                r#"DELETE FROM group_snapshots s USING devices d
                   WHERE d.id = s.device_id AND d.tenant_id = $1 AND s.device_id = $2
                     AND s.group_jid = $3"#,
                scope.tenant() as TenantId,
                scope.device() as DeviceId,
                group,
            )
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}
