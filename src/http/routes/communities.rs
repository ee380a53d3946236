//! Communities routes: create, list, read, deactivate, leave, members across linked groups,
//! and the linked groups. Every one needs the device connected (`409 DEVICE_NOT_READY` at
//! once otherwise).

use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::groups::{
    ChangeView, Done, ParticipantsRequest, change, groups, parse_group, parse_participants, session,
};
use crate::domain::{DeviceId, GroupJid};
use crate::http::auth::AuthUser;
use crate::http::device::DeviceQuery;
use crate::http::envelope::Success;
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::{GroupPath, Json, Query, parse_items};
use crate::http::state::AppState;
use crate::services::communities::{CommunityView, LinkFailure, LinkedGroup};
use crate::services::groups::{Action, ChangeResult, MAX_LINK, ParticipantView};

#[derive(Deserialize)]
pub struct CreateCommunityRequest {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    participants: Vec<String>,
    #[serde(default)]
    device_id: Option<DeviceId>,
}

#[derive(Serialize)]
pub struct CommunityCreatedView {
    community: CommunityView,
    participants: Vec<ChangeResult>,
}

pub async fn create_community(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<DeviceQuery>,
    Json(body): Json<CreateCommunityRequest>,
) -> Result<Success<CommunityCreatedView>, ApiError> {
    let participants = parse_participants(&body.participants, true)?;
    let name = body.name.trim().to_owned();
    if name.is_empty() {
        return Err(ApiError::field("name", "must not be empty"));
    }
    let session = session(&state, &caller, body.device_id.or(query.device_id)).await?;
    let groups = groups(&state, &session);
    // Creating a community with strangers in it may meet WhatsApp's reach-out time-lock (463).
    let created = groups
        .create_community(name, body.description, participants)
        .await;
    let (community, participants) = crate::http::reachout::checked(&session, created).await?;
    Ok(Success::ok(CommunityCreatedView {
        community,
        participants,
    }))
}

#[derive(Serialize)]
pub struct CommunityListView {
    count: usize,
    communities: Vec<CommunityView>,
}

pub async fn list_communities(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<DeviceQuery>,
) -> Result<Success<CommunityListView>, ApiError> {
    let session = session(&state, &caller, query.device_id).await?;
    let communities = groups(&state, &session).communities().await?;
    Ok(Success::ok(CommunityListView {
        count: communities.len(),
        communities,
    }))
}

#[derive(Serialize)]
pub struct CommunityOne {
    community: CommunityView,
}

impl CommunityOne {
    pub(super) fn new(community: CommunityView) -> Self {
        Self { community }
    }
}

pub async fn get_community(
    caller: AuthUser,
    State(state): State<AppState>,
    GroupPath(jid): GroupPath,
    Query(query): Query<DeviceQuery>,
) -> Result<Success<CommunityOne>, ApiError> {
    let session = session(&state, &caller, query.device_id).await?;
    let community = groups(&state, &session).community(&jid).await?;
    Ok(Success::ok(CommunityOne { community }))
}

pub async fn deactivate_community(
    caller: AuthUser,
    State(state): State<AppState>,
    GroupPath(jid): GroupPath,
    Query(query): Query<DeviceQuery>,
) -> Result<Success<Done>, ApiError> {
    let session = session(&state, &caller, query.device_id).await?;
    groups(&state, &session).deactivate(&jid).await?;
    Ok(Success::ok(Done {}))
}

pub async fn leave_community(
    caller: AuthUser,
    State(state): State<AppState>,
    GroupPath(jid): GroupPath,
    Query(query): Query<DeviceQuery>,
) -> Result<Success<Done>, ApiError> {
    let session = session(&state, &caller, query.device_id).await?;
    groups(&state, &session).leave(&jid, true).await?;
    Ok(Success::ok(Done {}))
}

pub async fn add_community_participants(
    caller: AuthUser,
    State(state): State<AppState>,
    GroupPath(jid): GroupPath,
    Query(query): Query<DeviceQuery>,
    Json(body): Json<ParticipantsRequest>,
) -> Result<Success<ChangeView>, ApiError> {
    change(caller, state, jid, query, body, Action::Add, true).await
}

pub async fn remove_community_participants(
    caller: AuthUser,
    State(state): State<AppState>,
    GroupPath(jid): GroupPath,
    Query(query): Query<DeviceQuery>,
    Json(body): Json<ParticipantsRequest>,
) -> Result<Success<ChangeView>, ApiError> {
    change(caller, state, jid, query, body, Action::Remove, true).await
}

#[derive(Serialize)]
pub struct MembersView {
    count: usize,
    participants: Vec<ParticipantView>,
}

pub async fn community_participants(
    caller: AuthUser,
    State(state): State<AppState>,
    GroupPath(jid): GroupPath,
    Query(query): Query<DeviceQuery>,
) -> Result<Success<MembersView>, ApiError> {
    let session = session(&state, &caller, query.device_id).await?;
    let participants = groups(&state, &session)
        .community_participants(&jid)
        .await?;
    Ok(Success::ok(MembersView {
        count: participants.len(),
        participants,
    }))
}

#[derive(Deserialize)]
pub struct LinkRequest {
    #[serde(default)]
    group_jid: Option<String>,
    #[serde(default)]
    group_jids: Option<Vec<String>>,
    #[serde(default)]
    device_id: Option<DeviceId>,
}

fn link_targets(body: &LinkRequest) -> Result<Vec<GroupJid>, ApiError> {
    match (&body.group_jid, &body.group_jids) {
        (Some(_), Some(_)) => Err(ApiError::field(
            "group_jid",
            "give either group_jid or group_jids, not both",
        )),
        (None, None) => Err(ApiError::field(
            "group_jid",
            "a group_jid or group_jids is required",
        )),
        (Some(one), None) => Ok(vec![parse_group("group_jid", one)?]),
        (None, Some(many)) => {
            if many.is_empty() || many.len() > MAX_LINK {
                return Err(ApiError::fields(vec![
                    FieldError::new("group_jids", format!("give 1 to {MAX_LINK} groups"))
                        .with_value(many.len()),
                ]));
            }
            parse_items("group_jids", many, GroupJid::parse)
        }
    }
}

#[derive(Serialize)]
pub struct LinkedView {
    jid: String,
    linked: Vec<String>,
    failed: Vec<LinkFailure>,
}

#[derive(Serialize)]
pub struct UnlinkedView {
    jid: String,
    unlinked: Vec<String>,
    failed: Vec<LinkFailure>,
}

pub async fn link_groups(
    caller: AuthUser,
    State(state): State<AppState>,
    GroupPath(jid): GroupPath,
    Query(query): Query<DeviceQuery>,
    Json(body): Json<LinkRequest>,
) -> Result<Success<LinkedView>, ApiError> {
    let targets = link_targets(&body)?;
    let session = session(&state, &caller, body.device_id.or(query.device_id)).await?;
    let groups = groups(&state, &session);
    let (linked, failed) = groups.link(&jid, &targets, true).await?;
    Ok(Success::ok(LinkedView {
        jid: jid.jid(),
        linked,
        failed,
    }))
}

pub async fn unlink_groups(
    caller: AuthUser,
    State(state): State<AppState>,
    GroupPath(jid): GroupPath,
    Query(query): Query<DeviceQuery>,
    Json(body): Json<LinkRequest>,
) -> Result<Success<UnlinkedView>, ApiError> {
    let targets = link_targets(&body)?;
    let session = session(&state, &caller, body.device_id.or(query.device_id)).await?;
    let groups = groups(&state, &session);
    let (unlinked, failed) = groups.link(&jid, &targets, false).await?;
    Ok(Success::ok(UnlinkedView {
        jid: jid.jid(),
        unlinked,
        failed,
    }))
}

#[derive(Serialize)]
pub struct LinkedGroupsView {
    count: usize,
    groups: Vec<LinkedGroup>,
}

pub async fn community_groups(
    caller: AuthUser,
    State(state): State<AppState>,
    GroupPath(jid): GroupPath,
    Query(query): Query<DeviceQuery>,
) -> Result<Success<LinkedGroupsView>, ApiError> {
    let session = session(&state, &caller, query.device_id).await?;
    let groups = groups(&state, &session).linked_groups(&jid).await?;
    Ok(Success::ok(LinkedGroupsView {
        count: groups.len(),
        groups,
    }))
}
