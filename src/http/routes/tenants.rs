//! Super-admin routes (master token): tenant registration, listing and deletion.

use axum::extract::State;
use serde::{Deserialize, Serialize};

use crate::domain::{Email, Role, TenantId, TenantName};
use crate::http::auth::MasterAuth;
use crate::http::envelope::{Data, Message, Success};
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::{IdPath, Json};
use crate::http::state::AppState;
use crate::services::accounts;
use crate::store::tenants::{self, OwnLimits, Tenant, TenantDetail};
use crate::store::users::User;

#[derive(Deserialize)]
pub struct RegisterRequest {
    tenant_name: String,
    email: String,
    /// Accepted for compatibility with the published API; the gateway authenticates with tokens
    /// only and never stores a password.
    #[serde(default)]
    #[expect(dead_code, reason = "accepted and deliberately ignored")]
    password: Option<String>,
    #[serde(default)]
    role: Option<Role>,
}

#[derive(Serialize)]
pub struct Registered {
    tenant: Tenant,
    user: User,
    token: String,
}

/// Parses both fields, reporting every problem at once.
fn parse_tenant_and_email(name: &str, email: &str) -> Result<(TenantName, Email), ApiError> {
    let name =
        TenantName::parse(name).map_err(|m| FieldError::new("tenant_name", m).with_value(name));
    let email = Email::parse(email).map_err(|m| FieldError::new("email", m).with_value(email));
    match (name, email) {
        (Ok(name), Ok(email)) => Ok((name, email)),
        (name, email) => Err(ApiError::fields(
            [name.err(), email.err()].into_iter().flatten().collect(),
        )),
    }
}

pub async fn register(
    _: MasterAuth,
    State(state): State<AppState>,
    Json(body): Json<RegisterRequest>,
) -> Result<Success<Registered>, ApiError> {
    let (name, email) = parse_tenant_and_email(&body.tenant_name, &body.email)?;
    let role = body.role.unwrap_or(Role::Admin);
    let done = accounts::register_tenant(&state.db, &name, &email, role).await?;
    tracing::info!("tenant.id" = %done.tenant.id, "tenant registered");
    Ok(Success::created(Registered {
        tenant: done.tenant,
        user: done.user,
        token: done.token.reveal(),
    }))
}

#[derive(Serialize)]
pub struct TenantList {
    tenants: Vec<Tenant>,
}

pub async fn list(
    _: MasterAuth,
    State(state): State<AppState>,
) -> Result<Success<TenantList>, ApiError> {
    Ok(Success::ok(TenantList {
        tenants: tenants::list(&state.db).await?,
    }))
}

pub async fn get(
    _: MasterAuth,
    State(state): State<AppState>,
    IdPath(id): IdPath<TenantId>,
) -> Result<Data<TenantDetail>, ApiError> {
    tenants::get(&state.db, id)
        .await?
        .map(Data)
        .ok_or_else(|| ApiError::not_found("tenant"))
}

/// Highest rate and burst an operator may give a tenant (beyond them a budget means nothing).
const MAX_RATE: f64 = 1_000_000.0;
const MAX_BURST: i64 = 1_000_000;

/// A field that may be absent (left as it is) or `null` (back to the default).
fn present<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    #[serde(default, deserialize_with = "present")]
    rate_rps: Option<Option<f64>>,
    #[serde(default, deserialize_with = "present")]
    rate_burst: Option<Option<i64>>,
}

/// Sets or clears a tenant's own request budget.
pub async fn update(
    _: MasterAuth,
    State(state): State<AppState>,
    IdPath(id): IdPath<TenantId>,
    Json(body): Json<UpdateTenant>,
) -> Result<Data<TenantDetail>, ApiError> {
    if body.rate_rps.is_none() && body.rate_burst.is_none() {
        return Err(ApiError::field(
            "body",
            "give at least one of `rate_rps` and `rate_burst`",
        ));
    }
    let mut problems = Vec::new();
    if let Some(Some(rate)) = body.rate_rps
        && !(rate.is_finite() && (0.0..=MAX_RATE).contains(&rate))
    {
        problems.push(
            FieldError::new("rate_rps", "must be between 0 (no budget) and 1000000")
                .with_value(rate),
        );
    }
    if let Some(Some(burst)) = body.rate_burst
        && !(1..=MAX_BURST).contains(&burst)
    {
        problems
            .push(FieldError::new("rate_burst", "must be between 1 and 1000000").with_value(burst));
    }
    if !problems.is_empty() {
        return Err(ApiError::fields(problems));
    }
    let current = tenants::own_limits(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    let limits = OwnLimits {
        rate_rps: body.rate_rps.unwrap_or(current.rate_rps),
        rate_burst: body
            .rate_burst
            .unwrap_or(current.rate_burst.map(i64::from))
            .and_then(|b| i32::try_from(b).ok()),
    };
    if !tenants::set_own_limits(&state.db, id, limits).await? {
        return Err(ApiError::not_found("tenant"));
    }
    state.budgets.forget(id);
    tracing::info!("tenant.id" = %id, rate_rps = ?limits.rate_rps, rate_burst = ?limits.rate_burst, "tenant budget changed");
    tenants::get(&state.db, id)
        .await?
        .map(Data)
        .ok_or_else(|| ApiError::not_found("tenant"))
}

pub async fn delete(
    _: MasterAuth,
    State(state): State<AppState>,
    IdPath(id): IdPath<TenantId>,
) -> Result<Success<Message>, ApiError> {
    // Every device of the tenant is unlinked from WhatsApp (and its keys erased) first.
    for device in crate::store::devices::list(&state.db, id, None).await? {
        if let Err(err) = state
            .sessions
            .delete(crate::http::device::scope_of(&device))
            .await
        {
            tracing::warn!("device.id" = %device.id, error = %err, "device not unlinked before deletion");
        }
    }
    if !tenants::delete(&state.db, id).await? {
        return Err(ApiError::not_found("tenant"));
    }
    state.auth_cache.revoke_tenant(&state.db, id).await;
    state.budgets.forget(id);
    tracing::info!("tenant.id" = %id, "tenant deleted");
    Ok(Message::new("tenant deleted"))
}
