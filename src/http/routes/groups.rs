//! Groups routes (communities are in `communities.rs`). Every one needs the device connected (`409 DEVICE_NOT_READY`
//! at once otherwise). Participants are numbers, PN JIDs or LIDs, at most
//! [`MAX_PARTICIPANTS`] per call; a batch where some fail is a 200 with each item's outcome.

use axum::extract::State;
use serde::{Deserialize, Serialize};

use crate::domain::{ContactId, DeviceId, GroupJid};
use crate::http::auth::AuthUser;
use crate::http::device::DeviceQuery;
use crate::http::envelope::Success;
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::{GroupPath, Json, Query, parse_items};
use crate::http::state::AppState;
use crate::services::groups::{
    Action, ChangeResult, GroupChanges, GroupView, Groups, MAX_PARTICIPANTS, NewGroup,
};
use whatsapp_rust::features::MemberAddMode;

use crate::http::device::connected_session;
use crate::services::contacts::Contacts;
use crate::session::DeviceSession;

pub(super) async fn session(
    state: &AppState,
    caller: &AuthUser,
    device_id: Option<DeviceId>,
) -> Result<DeviceSession, ApiError> {
    connected_session(state, caller, device_id).await
}

pub(super) fn groups<'a>(state: &'a AppState, session: &'a DeviceSession) -> Groups<'a> {
    Groups {
        contacts: Contacts {
            db: &state.db,
            session,
        },
    }
}

/// Parses a participant list: 1 to 256 identifiers (0 allowed where `allow_empty`), each
/// named by its index when invalid.
pub(super) fn parse_participants(
    raw: &[String],
    allow_empty: bool,
) -> Result<Vec<ContactId>, ApiError> {
    if (raw.is_empty() && !allow_empty) || raw.len() > MAX_PARTICIPANTS {
        let low = if allow_empty { 0 } else { 1 };
        return Err(ApiError::fields(vec![
            FieldError::new(
                "participants",
                format!("give {low} to {MAX_PARTICIPANTS} participants"),
            )
            .with_value(raw.len()),
        ]));
    }
    parse_items("participants", raw, ContactId::parse)
}

pub(super) fn parse_group(field: &str, raw: &str) -> Result<GroupJid, ApiError> {
    GroupJid::parse(raw)
        .map_err(|e| ApiError::fields(vec![FieldError::new(field, e.to_string()).with_value(raw)]))
}

#[derive(Serialize)]
pub struct GroupListView {
    count: usize,
    groups: Vec<GroupView>,
}

pub async fn list(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<DeviceQuery>,
) -> Result<Success<GroupListView>, ApiError> {
    let session = session(&state, &caller, query.device_id).await?;
    let groups = groups(&state, &session).list().await?;
    Ok(Success::ok(GroupListView {
        count: groups.len(),
        groups,
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupOptions {
    #[serde(default)]
    announcement: Option<bool>,
    #[serde(default)]
    locked: Option<bool>,
    #[serde(default)]
    join_approval: Option<bool>,
    #[serde(default)]
    community: Option<bool>,
    #[serde(default)]
    parent_jid: Option<String>,
}

#[derive(Deserialize)]
pub struct CreateGroupRequest {
    name: String,
    #[serde(default)]
    participants: Vec<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    options: Option<GroupOptions>,
    #[serde(default)]
    device_id: Option<DeviceId>,
}

#[derive(Serialize)]
pub struct GroupCreatedView {
    group: GroupView,
    participants: Vec<ChangeResult>,
}

pub async fn create(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<DeviceQuery>,
    Json(body): Json<CreateGroupRequest>,
) -> Result<Success<GroupCreatedView>, ApiError> {
    let participants = parse_participants(&body.participants, true)?;
    let options = body.options.unwrap_or_default();
    let parent = options
        .parent_jid
        .as_deref()
        .map(|p| parse_group("options.parent_jid", p))
        .transpose()?;
    let community = options.community.unwrap_or(false);
    if community && parent.is_some() {
        return Err(ApiError::field(
            "options.parent_jid",
            "a community cannot be created inside another community",
        ));
    }
    let name = body.name.trim().to_owned();
    if name.is_empty() {
        return Err(ApiError::field("name", "must not be empty"));
    }
    let session = session(&state, &caller, body.device_id.or(query.device_id)).await?;
    let groups = groups(&state, &session);
    // Creating a group with strangers in it may meet WhatsApp's reach-out time-lock (463).
    let created = groups
        .create(NewGroup {
            name,
            description: body.description,
            participants,
            announce: options.announcement.unwrap_or(false),
            locked: options.locked.unwrap_or(false),
            join_approval: options.join_approval.unwrap_or(false),
            community,
            parent,
        })
        .await;
    let (group, participants) = crate::http::reachout::checked(&session, created).await?;
    Ok(Success::created(GroupCreatedView {
        group,
        participants,
    }))
}

#[derive(Serialize)]
pub struct GroupOne {
    group: GroupView,
}

pub async fn get(
    caller: AuthUser,
    State(state): State<AppState>,
    GroupPath(jid): GroupPath,
    Query(query): Query<DeviceQuery>,
) -> Result<Success<GroupOne>, ApiError> {
    let session = session(&state, &caller, query.device_id).await?;
    let group = groups(&state, &session).get(&jid).await?;
    Ok(Success::ok(GroupOne { group }))
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddMode {
    AdminAdd,
    AllMemberAdd,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateGroupRequest {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    topic: Option<String>,
    /// An alias of `topic`.
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    announce: Option<bool>,
    /// An alias of `announce`.
    #[serde(default)]
    announcement: Option<bool>,
    #[serde(default)]
    locked: Option<bool>,
    #[serde(default)]
    join_approval: Option<bool>,
    #[serde(default)]
    member_add_mode: Option<AddMode>,
    #[serde(default)]
    device_id: Option<DeviceId>,
}

pub async fn update(
    caller: AuthUser,
    State(state): State<AppState>,
    GroupPath(jid): GroupPath,
    Query(query): Query<DeviceQuery>,
    Json(body): Json<UpdateGroupRequest>,
) -> Result<Success<GroupOne>, ApiError> {
    let changes = GroupChanges {
        name: body.name.map(|n| n.trim().to_owned()),
        topic: body.topic.or(body.description),
        announce: body.announce.or(body.announcement),
        locked: body.locked,
        join_approval: body.join_approval,
        member_add_mode: body.member_add_mode.map(|m| match m {
            AddMode::AdminAdd => MemberAddMode::AdminAdd,
            AddMode::AllMemberAdd => MemberAddMode::AllMemberAdd,
        }),
    };
    let nothing = changes.name.is_none()
        && changes.topic.is_none()
        && changes.announce.is_none()
        && changes.locked.is_none()
        && changes.join_approval.is_none()
        && changes.member_add_mode.is_none();
    if nothing {
        return Err(ApiError::field(
            "body",
            "give at least one of name, topic, announce, locked, join_approval, member_add_mode",
        ));
    }
    if changes.name.as_deref() == Some("") {
        return Err(ApiError::field("name", "must not be empty"));
    }
    let session = session(&state, &caller, body.device_id.or(query.device_id)).await?;
    let groups = groups(&state, &session);
    let group = groups.update(&jid, changes).await?;
    Ok(Success::ok(GroupOne { group }))
}

#[derive(Deserialize)]
pub struct ParticipantsRequest {
    participants: Vec<String>,
    #[serde(default)]
    action: Option<Action>,
    #[serde(default)]
    device_id: Option<DeviceId>,
}

#[derive(Serialize)]
pub struct ChangeView {
    jid: String,
    action: &'static str,
    participants: Vec<ChangeResult>,
}

pub(super) async fn change(
    caller: AuthUser,
    state: AppState,
    jid: GroupJid,
    query: DeviceQuery,
    body: ParticipantsRequest,
    default: Action,
    community: bool,
) -> Result<Success<ChangeView>, ApiError> {
    let participants = parse_participants(&body.participants, false)?;
    let action = body.action.unwrap_or(default);
    let session = session(&state, &caller, body.device_id.or(query.device_id)).await?;
    let groups = groups(&state, &session);
    // Removing from a community removes from every linked group, as WhatsApp does.
    let across_linked = community && action == Action::Remove;
    // A first contact with a stranger may meet WhatsApp's reach-out time-lock (463).
    let results = crate::http::reachout::checked(
        &session,
        groups
            .change_participants(&jid, action, &participants, across_linked)
            .await,
    )
    .await?;
    Ok(Success::ok(ChangeView {
        jid: jid.jid(),
        action: action.as_str(),
        participants: results,
    }))
}

pub async fn add_participants(
    caller: AuthUser,
    State(state): State<AppState>,
    GroupPath(jid): GroupPath,
    Query(query): Query<DeviceQuery>,
    Json(body): Json<ParticipantsRequest>,
) -> Result<Success<ChangeView>, ApiError> {
    change(caller, state, jid, query, body, Action::Add, false).await
}

pub async fn remove_participants(
    caller: AuthUser,
    State(state): State<AppState>,
    GroupPath(jid): GroupPath,
    Query(query): Query<DeviceQuery>,
    Json(body): Json<ParticipantsRequest>,
) -> Result<Success<ChangeView>, ApiError> {
    change(caller, state, jid, query, body, Action::Remove, false).await
}

#[derive(Serialize)]
pub struct Done {}

pub async fn leave(
    caller: AuthUser,
    State(state): State<AppState>,
    GroupPath(jid): GroupPath,
    Query(query): Query<DeviceQuery>,
) -> Result<Success<Done>, ApiError> {
    let session = session(&state, &caller, query.device_id).await?;
    groups(&state, &session).leave(&jid, false).await?;
    Ok(Success::ok(Done {}))
}
