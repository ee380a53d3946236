//! Users of a tenant: administration by the tenant's admins, and token rotation.

use axum::extract::State;
use serde::{Deserialize, Serialize};

use crate::domain::{Email, Role, UserId};
use crate::http::auth::AuthUser;
use crate::http::envelope::{Message, Success};
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::{IdPath, Json};
use crate::http::state::AppState;
use crate::services::accounts;
use crate::store::users::{self, User};

#[derive(Serialize)]
pub struct UserList {
    users: Vec<User>,
}

#[derive(Serialize)]
pub struct OneUser {
    user: User,
}

#[derive(Serialize)]
pub struct UserWithToken {
    user: User,
    token: String,
}

#[derive(Serialize)]
pub struct NewToken {
    token: String,
}

fn not_yourself(caller: &AuthUser, target: UserId, action: &str) -> Result<(), ApiError> {
    if caller.user_id == target {
        Err(ApiError::Forbidden(format!(
            "you cannot {action} your own user"
        )))
    } else {
        Ok(())
    }
}

pub async fn list(
    caller: AuthUser,
    State(state): State<AppState>,
) -> Result<Success<UserList>, ApiError> {
    caller.require_admin()?;
    Ok(Success::ok(UserList {
        users: users::list(&state.db, caller.tenant_id).await?,
    }))
}

#[derive(Deserialize)]
pub struct CreateUser {
    email: String,
    #[serde(default)]
    role: Option<Role>,
}

pub async fn create(
    caller: AuthUser,
    State(state): State<AppState>,
    Json(body): Json<CreateUser>,
) -> Result<Success<UserWithToken>, ApiError> {
    caller.require_admin()?;
    let email = Email::parse(&body.email).map_err(|m| {
        ApiError::fields(vec![
            FieldError::new("email", m).with_value(body.email.clone()),
        ])
    })?;
    let role = body.role.unwrap_or(Role::User);
    let (user, token) = accounts::create_user(&state.db, caller.tenant_id, &email, role).await?;
    tracing::info!(user_id = %user.id, role = role.as_str(), "user created");
    Ok(Success::created(UserWithToken {
        user,
        token: token.reveal(),
    }))
}

pub async fn get(
    caller: AuthUser,
    State(state): State<AppState>,
    IdPath(id): IdPath<UserId>,
) -> Result<Success<OneUser>, ApiError> {
    if caller.user_id != id {
        caller.require_admin()?;
    }
    let user = users::get(&state.db, caller.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Success::ok(OneUser { user }))
}

#[derive(Deserialize)]
pub struct UpdateUser {
    #[serde(default)]
    active: Option<bool>,
    #[serde(default)]
    role: Option<Role>,
}

/// Applies a change of role and/or activity, and forgets the user's cached token so the change
/// holds from the next request on.
async fn change_user(
    state: &AppState,
    caller: &AuthUser,
    id: UserId,
    active: Option<bool>,
    role: Option<Role>,
) -> Result<Success<OneUser>, ApiError> {
    let user = users::update(&state.db, caller.tenant_id, id, active, role)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    state.auth_cache.revoke_user(&state.db, id).await;
    tracing::info!(user_id = %id, role = user.role.as_str(), active = user.active, "user changed");
    Ok(Success::ok(OneUser { user }))
}

pub async fn update(
    caller: AuthUser,
    State(state): State<AppState>,
    IdPath(id): IdPath<UserId>,
    Json(body): Json<UpdateUser>,
) -> Result<Success<OneUser>, ApiError> {
    caller.require_admin()?;
    if body.active.is_none() && body.role.is_none() {
        return Err(ApiError::field(
            "body",
            "give at least one of `active` and `role`",
        ));
    }
    // An admin changing its own role or activity could leave the tenant without an admin.
    not_yourself(&caller, id, "change the role or activity of")?;
    change_user(&state, &caller, id, body.active, body.role).await
}

#[derive(Deserialize)]
pub struct Promote {
    new_role: Role,
}

pub async fn promote(
    caller: AuthUser,
    State(state): State<AppState>,
    IdPath(id): IdPath<UserId>,
    Json(body): Json<Promote>,
) -> Result<Success<OneUser>, ApiError> {
    caller.require_admin()?;
    not_yourself(&caller, id, "change the role of")?;
    change_user(&state, &caller, id, None, Some(body.new_role)).await
}

pub async fn delete(
    caller: AuthUser,
    State(state): State<AppState>,
    IdPath(id): IdPath<UserId>,
) -> Result<Success<Message>, ApiError> {
    caller.require_admin()?;
    not_yourself(&caller, id, "delete")?;
    // The user's devices go with it: unlink them from WhatsApp and erase their keys first.
    for device in crate::store::devices::list(&state.db, caller.tenant_id, Some(id)).await? {
        if let Err(err) = state
            .sessions
            .delete(crate::http::device::scope_of(&device))
            .await
        {
            tracing::warn!("device.id" = %device.id, error = %err, "device not unlinked before deletion");
        }
    }
    if !users::delete(&state.db, caller.tenant_id, id).await? {
        return Err(ApiError::not_found("user"));
    }
    state.auth_cache.revoke_user(&state.db, id).await;
    tracing::info!(user_id = %id, "user deleted");
    Ok(Message::new("user deleted"))
}

pub async fn rotate_token(
    caller: AuthUser,
    State(state): State<AppState>,
    IdPath(id): IdPath<UserId>,
) -> Result<Success<NewToken>, ApiError> {
    if caller.user_id != id {
        caller.require_admin()?;
    }
    let token = accounts::rotate_token(&state.db, caller.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    state.auth_cache.revoke_user(&state.db, id).await;
    tracing::info!(user_id = %id, "token rotated");
    Ok(Success::created(NewToken {
        token: token.reveal(),
    }))
}
