//! Settings beyond `PATCH /groups/{jid}`: a group's disappearing-message timer, and a
//! community's own settings (whether members may add groups, whether joining asks an admin).

use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::communities::CommunityOne;
use super::groups::{groups, session};
use crate::domain::{DeviceId, EphemeralTimer};
use crate::http::auth::AuthUser;
use crate::http::device::DeviceQuery;
use crate::http::envelope::Success;
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::{GroupPath, Json, Query};
use crate::http::state::AppState;
use crate::services::communities::CommunityChanges;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EphemeralBody {
    duration_seconds: u64,
    #[serde(default)]
    device_id: Option<DeviceId>,
}

#[derive(Serialize)]
pub struct EphemeralView {
    duration_seconds: u32,
}

pub async fn set_ephemeral(
    caller: AuthUser,
    State(state): State<AppState>,
    GroupPath(jid): GroupPath,
    Query(query): Query<DeviceQuery>,
    Json(body): Json<EphemeralBody>,
) -> Result<Success<EphemeralView>, ApiError> {
    let timer = EphemeralTimer::from_seconds(body.duration_seconds).map_err(|e| {
        ApiError::fields(vec![
            FieldError::new("duration_seconds", e).with_value(body.duration_seconds),
        ])
    })?;
    let session = session(&state, &caller, body.device_id.or(query.device_id)).await?;
    groups(&state, &session).set_ephemeral(&jid, timer).await?;
    Ok(Success::ok(EphemeralView {
        duration_seconds: timer.seconds(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateCommunityBody {
    #[serde(default)]
    members_can_add_groups: Option<bool>,
    #[serde(default)]
    join_approval: Option<bool>,
    #[serde(default)]
    device_id: Option<DeviceId>,
}

pub async fn update_community(
    caller: AuthUser,
    State(state): State<AppState>,
    GroupPath(jid): GroupPath,
    Query(query): Query<DeviceQuery>,
    Json(body): Json<UpdateCommunityBody>,
) -> Result<Success<CommunityOne>, ApiError> {
    let changes = CommunityChanges {
        members_can_add_groups: body.members_can_add_groups,
        join_approval: body.join_approval,
    };
    if changes.members_can_add_groups.is_none() && changes.join_approval.is_none() {
        return Err(ApiError::field(
            "body",
            "give at least one of members_can_add_groups, join_approval",
        ));
    }
    let session = session(&state, &caller, body.device_id.or(query.device_id)).await?;
    let community = groups(&state, &session)
        .update_community(&jid, changes)
        .await?;
    Ok(Success::ok(CommunityOne::new(community)))
}
