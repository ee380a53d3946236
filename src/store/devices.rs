//! Device records: one per linked WhatsApp session, owned by a user of a tenant.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::StoreError;
use crate::domain::{DeviceId, DeviceName, SessionStatus, TenantId, UserId};

/// A `devices` row.
#[derive(Debug, Clone)]
pub struct Device {
    pub id: DeviceId,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub name: String,
    pub status: SessionStatus,
    pub whatsapp_jid: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
    pub auto_connect: bool,
    pub lid_jid: Option<String>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub async fn create(
    pool: &PgPool,
    tenant: TenantId,
    owner: UserId,
    name: &DeviceName,
) -> Result<Device, StoreError> {
    Ok(sqlx::query_as!(
        Device,
        r#"INSERT INTO devices (id, tenant_id, user_id, name) VALUES ($1, $2, $3, $4)
           RETURNING id AS "id: DeviceId", tenant_id AS "tenant_id: TenantId",
                     user_id AS "user_id: UserId", name, status AS "status: SessionStatus", whatsapp_jid, last_seen,
                     auto_connect, lid_jid, last_error, created_at, updated_at"#,
        DeviceId::new_random() as DeviceId,
        tenant as TenantId,
        owner as UserId,
        name.as_str(),
    )
    .fetch_one(pool)
    .await?)
}

/// Devices of a tenant; of one user only when `owner` is given.
pub async fn list(
    pool: &PgPool,
    tenant: TenantId,
    owner: Option<UserId>,
) -> Result<Vec<Device>, StoreError> {
    Ok(sqlx::query_as!(
        Device,
        r#"SELECT id AS "id: DeviceId", tenant_id AS "tenant_id: TenantId",
                  user_id AS "user_id: UserId", name, status AS "status: SessionStatus", whatsapp_jid, last_seen,
                  auto_connect, lid_jid, last_error, created_at, updated_at
           FROM devices
           WHERE tenant_id = $1 AND ($2::uuid IS NULL OR user_id = $2)
           ORDER BY created_at, id"#,
        tenant as TenantId,
        owner as Option<UserId>,
    )
    .fetch_all(pool)
    .await?)
}

/// One device of a tenant; of one user only when `owner` is given.
pub async fn get(
    pool: &PgPool,
    tenant: TenantId,
    owner: Option<UserId>,
    id: DeviceId,
) -> Result<Option<Device>, StoreError> {
    Ok(sqlx::query_as!(
        Device,
        r#"SELECT id AS "id: DeviceId", tenant_id AS "tenant_id: TenantId",
                  user_id AS "user_id: UserId", name, status AS "status: SessionStatus", whatsapp_jid, last_seen,
                  auto_connect, lid_jid, last_error, created_at, updated_at
           FROM devices
           WHERE tenant_id = $1 AND ($2::uuid IS NULL OR user_id = $2) AND id = $3"#,
        tenant as TenantId,
        owner as Option<UserId>,
        id as DeviceId,
    )
    .fetch_optional(pool)
    .await?)
}

/// Deletes a device (its keys and contacts go with it, by cascade). `false` when there was no
/// such device for this caller.
pub async fn delete(
    pool: &PgPool,
    tenant: TenantId,
    owner: Option<UserId>,
    id: DeviceId,
) -> Result<bool, StoreError> {
    let done = sqlx::query!(
        r#"DELETE FROM devices
           WHERE tenant_id = $1 AND ($2::uuid IS NULL OR user_id = $2) AND id = $3"#,
        tenant as TenantId,
        owner as Option<UserId>,
        id as DeviceId,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}
