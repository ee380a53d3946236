//! Users of a tenant and their hashed tokens.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::{StoreError, conflict_on};
use crate::domain::{Email, Role, TenantId, TokenHash, UserId};

/// A user as answered by the API. Never carries the token.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub email: String,
    pub role: Role,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A `users` row as read; `role` is still text.
pub(crate) struct UserRow {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub email: String,
    pub role: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn decode_role(role: &str) -> Result<Role, StoreError> {
    Role::from_db(role).ok_or_else(|| {
        StoreError::Db(sqlx::Error::Decode(
            format!("unknown role `{role}` in users.role").into(),
        ))
    })
}

impl UserRow {
    pub(crate) fn into_user(self) -> Result<User, StoreError> {
        Ok(User {
            role: decode_role(&self.role)?,
            id: self.id,
            tenant_id: self.tenant_id,
            email: self.email,
            active: self.active,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// What authentication needs to know about a token's owner.
#[derive(Debug, Clone, Copy)]
pub struct TokenOwner {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub role: Role,
}

/// The active user holding this token. This is the one query that is not tenant-scoped: it is
/// how a request's tenant is found.
pub async fn find_active_by_token(
    pool: &PgPool,
    hash: &TokenHash,
) -> Result<Option<TokenOwner>, StoreError> {
    let row = sqlx::query!(
        r#"SELECT id AS "id: UserId", tenant_id AS "tenant_id: TenantId", role
           FROM users WHERE token_hash = $1 AND active"#,
        hash.as_bytes(),
    )
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(TokenOwner {
            id: r.id,
            tenant_id: r.tenant_id,
            role: decode_role(&r.role)?,
        })
    })
    .transpose()
}

pub async fn list(pool: &PgPool, tenant: TenantId) -> Result<Vec<User>, StoreError> {
    sqlx::query_as!(
        UserRow,
        r#"SELECT id AS "id: UserId", tenant_id AS "tenant_id: TenantId", email, role, active,
                  created_at, updated_at
           FROM users WHERE tenant_id = $1 ORDER BY created_at, id"#,
        tenant as TenantId,
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(UserRow::into_user)
    .collect()
}

pub async fn get(pool: &PgPool, tenant: TenantId, id: UserId) -> Result<Option<User>, StoreError> {
    sqlx::query_as!(
        UserRow,
        r#"SELECT id AS "id: UserId", tenant_id AS "tenant_id: TenantId", email, role, active,
                  created_at, updated_at
           FROM users WHERE tenant_id = $1 AND id = $2"#,
        tenant as TenantId,
        id as UserId,
    )
    .fetch_optional(pool)
    .await?
    .map(UserRow::into_user)
    .transpose()
}

pub async fn create(
    pool: &PgPool,
    tenant: TenantId,
    email: &Email,
    role: Role,
    token_hash: &TokenHash,
) -> Result<User, StoreError> {
    sqlx::query_as!(
        UserRow,
        r#"INSERT INTO users (id, tenant_id, email, role, token_hash) VALUES ($1, $2, $3, $4, $5)
           RETURNING id AS "id: UserId", tenant_id AS "tenant_id: TenantId", email, role, active,
                     created_at, updated_at"#,
        UserId::new_random() as UserId,
        tenant as TenantId,
        email.as_str(),
        role.as_str(),
        token_hash.as_bytes(),
    )
    .fetch_one(pool)
    .await
    .map_err(conflict_on(
        "users_tenant_email_key",
        "a user with this e-mail address already exists in the tenant",
    ))?
    .into_user()
}

/// Changes whichever of `active` and `role` is given. `None` when there is no such user.
pub async fn update(
    pool: &PgPool,
    tenant: TenantId,
    id: UserId,
    active: Option<bool>,
    role: Option<Role>,
) -> Result<Option<User>, StoreError> {
    sqlx::query_as!(
        UserRow,
        r#"UPDATE users SET active = coalesce($3, active), role = coalesce($4, role),
                  updated_at = now()
           WHERE tenant_id = $1 AND id = $2
           RETURNING id AS "id: UserId", tenant_id AS "tenant_id: TenantId", email, role, active,
                     created_at, updated_at"#,
        tenant as TenantId,
        id as UserId,
        active,
        role.map(Role::as_str),
    )
    .fetch_optional(pool)
    .await?
    .map(UserRow::into_user)
    .transpose()
}

/// Deletes a user and, by cascade, its devices. `false` when there was no such user.
pub async fn delete(pool: &PgPool, tenant: TenantId, id: UserId) -> Result<bool, StoreError> {
    let done = sqlx::query!(
        "DELETE FROM users WHERE tenant_id = $1 AND id = $2",
        tenant as TenantId,
        id as UserId,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Replaces a user's token. `false` when there is no such user.
pub async fn set_token(
    pool: &PgPool,
    tenant: TenantId,
    id: UserId,
    token_hash: &TokenHash,
) -> Result<bool, StoreError> {
    let done = sqlx::query!(
        "UPDATE users SET token_hash = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2",
        tenant as TenantId,
        id as UserId,
        token_hash.as_bytes(),
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Announces on `wuts_credentials` that tokens stopped working (see `http::credentials`).
pub async fn announce_credentials(pool: &PgPool, payload: &str) -> Result<(), sqlx::Error> {
    sqlx::query!("SELECT pg_notify('wuts_credentials', $1)", payload)
        .execute(pool)
        .await
        .map(|_| ())
}
