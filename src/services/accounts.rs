//! Tenants, users and their tokens: creation and rotation, shared by the API and the CLI.

use sqlx::PgPool;

use crate::domain::{ApiToken, Email, Role, TenantId, TenantName, UserId};
use crate::store::StoreError;
use crate::store::tenants::{self, Tenant};
use crate::store::users::{self, User};

/// A tenant with its first user and that user's token (shown once).
pub struct Registered {
    pub tenant: Tenant,
    pub user: User,
    pub token: ApiToken,
}

/// Creates a tenant and its first user, with a new token.
pub async fn register_tenant(
    pool: &PgPool,
    name: &TenantName,
    email: &Email,
    role: Role,
) -> Result<Registered, StoreError> {
    let token = ApiToken::generate();
    let (tenant, user) = tenants::create_with_user(pool, name, email, role, &token.hash()).await?;
    Ok(Registered {
        tenant,
        user,
        token,
    })
}

/// Creates a user of a tenant, with a new token.
pub async fn create_user(
    pool: &PgPool,
    tenant: TenantId,
    email: &Email,
    role: Role,
) -> Result<(User, ApiToken), StoreError> {
    let token = ApiToken::generate();
    let user = users::create(pool, tenant, email, role, &token.hash()).await?;
    Ok((user, token))
}

/// Gives a user a new token; the old one stops working. `None` when there is no such user.
pub async fn rotate_token(
    pool: &PgPool,
    tenant: TenantId,
    user: UserId,
) -> Result<Option<ApiToken>, StoreError> {
    let token = ApiToken::generate();
    let found = users::set_token(pool, tenant, user, &token.hash()).await?;
    Ok(found.then_some(token))
}
