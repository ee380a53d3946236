//! Tenants, and the creation of a tenant with its first user.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::users::{User, UserRow};
use super::{StoreError, conflict_on};
use crate::domain::{Email, Role, TenantId, TenantName, TokenHash, UserId};

/// A tenant as answered by the API.
#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A tenant with the size of what it owns and its own request budget.
#[derive(Debug, Clone, Serialize)]
pub struct TenantDetail {
    #[serde(flatten)]
    pub tenant: Tenant,
    pub users_count: i64,
    pub devices_count: i64,
    /// The tenant's own budget; `null` fields follow the gateway's configuration.
    pub rate_rps: Option<f64>,
    pub rate_burst: Option<i32>,
}

/// A tenant's own request budget: requests per second (0: none) and burst, each `None` when the
/// tenant follows the gateway's configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, sqlx::FromRow)]
pub struct OwnLimits {
    pub rate_rps: Option<f64>,
    pub rate_burst: Option<i32>,
}

/// The tenant's own budget; `None` when there is no such tenant.
pub async fn own_limits(pool: &PgPool, id: TenantId) -> Result<Option<OwnLimits>, StoreError> {
    Ok(
        sqlx::query_as("SELECT rate_rps, rate_burst FROM tenants WHERE id = $1")
            .bind(id.0)
            .fetch_optional(pool)
            .await?,
    )
}

/// Sets the tenant's own budget (both fields at once; `None` returns a field to the default).
/// `false` when there is no such tenant.
pub async fn set_own_limits(
    pool: &PgPool,
    id: TenantId,
    limits: OwnLimits,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE tenants SET rate_rps = $2, rate_burst = $3, updated_at = now() WHERE id = $1",
    )
    .bind(id.0)
    .bind(limits.rate_rps)
    .bind(limits.rate_burst)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Creates a tenant and its first user in one transaction.
pub async fn create_with_user(
    pool: &PgPool,
    name: &TenantName,
    email: &Email,
    role: Role,
    token_hash: &TokenHash,
) -> Result<(Tenant, User), StoreError> {
    let mut tx = pool.begin().await?;
    let tenant = sqlx::query_as!(
        Tenant,
        r#"INSERT INTO tenants (id, name) VALUES ($1, $2)
           RETURNING id AS "id: TenantId", name, created_at, updated_at"#,
        TenantId::new_random() as TenantId,
        name.as_str(),
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(conflict_on(
        "tenants_name_key",
        "a tenant with this name already exists",
    ))?;
    let user = sqlx::query_as!(
        UserRow,
        r#"INSERT INTO users (id, tenant_id, email, role, token_hash) VALUES ($1, $2, $3, $4, $5)
           RETURNING id AS "id: UserId", tenant_id AS "tenant_id: TenantId", email, role, active,
                     created_at, updated_at"#,
        UserId::new_random() as UserId,
        tenant.id as TenantId,
        email.as_str(),
        role.as_str(),
        token_hash.as_bytes(),
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((tenant, user.into_user()?))
}

pub async fn list(pool: &PgPool) -> Result<Vec<Tenant>, StoreError> {
    Ok(sqlx::query_as!(
        Tenant,
        r#"SELECT id AS "id: TenantId", name, created_at, updated_at
           FROM tenants ORDER BY created_at, id"#
    )
    .fetch_all(pool)
    .await?)
}

pub async fn get(pool: &PgPool, id: TenantId) -> Result<Option<TenantDetail>, StoreError> {
    let row = sqlx::query!(
        r#"SELECT t.id AS "id: TenantId", t.name, t.created_at, t.updated_at,
                  (SELECT count(*) FROM users u WHERE u.tenant_id = t.id) AS "users_count!",
                  (SELECT count(*) FROM devices d WHERE d.tenant_id = t.id) AS "devices_count!"
           FROM tenants t WHERE t.id = $1"#,
        id as TenantId,
    )
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let limits = own_limits(pool, id).await?.unwrap_or_default();
    Ok(Some(row).map(|r| TenantDetail {
        tenant: Tenant {
            id: r.id,
            name: r.name,
            created_at: r.created_at,
            updated_at: r.updated_at,
        },
        users_count: r.users_count,
        devices_count: r.devices_count,
        rate_rps: limits.rate_rps,
        rate_burst: limits.rate_burst,
    }))
}

/// Deletes a tenant and, by cascade, everything it owns. `false` when there was no such tenant.
pub async fn delete(pool: &PgPool, id: TenantId) -> Result<bool, StoreError> {
    let done = sqlx::query!("DELETE FROM tenants WHERE id = $1", id as TenantId)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}
