//! Who gets into a group: its invite link (read, reset), a link's preview, joining by link or
//! by a private invite, and join requests of groups and communities that approve their members.
//! Every route needs the device connected (`409 DEVICE_NOT_READY` at once otherwise).

use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::groups::{groups, parse_group, parse_participants, session};
use crate::domain::{ContactId, DeviceId, InviteCode};
use crate::http::auth::AuthUser;
use crate::http::device::DeviceQuery;
use crate::http::envelope::Success;
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::{GroupPath, Json, Query};
use crate::http::state::AppState;
use crate::services::groups::{ChangeResult, InviteInfo, JoinRequestView, JoinTarget};

#[derive(Serialize)]
pub struct InviteView {
    group_jid: String,
    invite_link: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reset_at: Option<String>,
}

pub async fn invite(
    caller: AuthUser,
    State(state): State<AppState>,
    GroupPath(jid): GroupPath,
    Query(query): Query<DeviceQuery>,
) -> Result<Success<InviteView>, ApiError> {
    let session = session(&state, &caller, query.device_id).await?;
    let invite_link = groups(&state, &session).invite_link(&jid, false).await?;
    Ok(Success::ok(InviteView {
        group_jid: jid.jid(),
        invite_link,
        reset_at: None,
    }))
}

pub async fn reset_invite(
    caller: AuthUser,
    State(state): State<AppState>,
    GroupPath(jid): GroupPath,
    Query(query): Query<DeviceQuery>,
) -> Result<Success<InviteView>, ApiError> {
    let session = session(&state, &caller, query.device_id).await?;
    let invite_link = groups(&state, &session).invite_link(&jid, true).await?;
    Ok(Success::ok(InviteView {
        group_jid: jid.jid(),
        invite_link,
        reset_at: Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinBody {
    #[serde(default)]
    link: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    group_jid: Option<String>,
    #[serde(default)]
    inviter_jid: Option<String>,
    /// The private invite's expiry (seconds since the epoch), as the invite message carries it.
    #[serde(default)]
    expiration: Option<i64>,
    #[serde(default)]
    device_id: Option<DeviceId>,
}

fn invalid(field: &str, message: impl Into<String>, value: &str) -> ApiError {
    ApiError::fields(vec![FieldError::new(field, message).with_value(value)])
}

fn join_target(body: &JoinBody) -> Result<JoinTarget, ApiError> {
    match (&body.link, &body.code) {
        (Some(_), Some(_)) => Err(ApiError::field(
            "link",
            "give a link, or a code with group_jid and inviter_jid, not both",
        )),
        (None, None) => Err(ApiError::field(
            "link",
            "a link (or a code with group_jid and inviter_jid) is required",
        )),
        (Some(link), None) => InviteCode::from_link(link)
            .map(JoinTarget::Link)
            .map_err(|e| invalid("link", e, link)),
        (None, Some(code)) => {
            let code = InviteCode::parse(code).map_err(|e| invalid("code", e, code))?;
            let group = match &body.group_jid {
                Some(raw) => parse_group("group_jid", raw)?,
                None => return Err(ApiError::field("group_jid", "required with code")),
            };
            let inviter = match &body.inviter_jid {
                Some(raw) => {
                    ContactId::parse(raw).map_err(|e| invalid("inviter_jid", e.to_string(), raw))?
                }
                None => return Err(ApiError::field("inviter_jid", "required with code")),
            };
            let expiration = body.expiration.unwrap_or(0);
            if expiration < 0 {
                return Err(ApiError::field("expiration", "must not be negative"));
            }
            Ok(JoinTarget::Invite {
                code,
                group,
                inviter,
                expiration,
            })
        }
    }
}

#[derive(Serialize)]
pub struct JoinedView {
    pending_approval: bool,
    group_jid: String,
}

pub async fn join(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<DeviceQuery>,
    Json(body): Json<JoinBody>,
) -> Result<Success<JoinedView>, ApiError> {
    let target = join_target(&body)?;
    let session = session(&state, &caller, body.device_id.or(query.device_id)).await?;
    let outcome = groups(&state, &session).join(target).await?;
    Ok(Success::ok(JoinedView {
        pending_approval: outcome.pending_approval,
        group_jid: outcome.group_jid,
    }))
}

#[derive(Deserialize)]
pub struct InviteInfoQuery {
    #[serde(default)]
    device_id: Option<DeviceId>,
    #[serde(default)]
    link: Option<String>,
}

#[derive(Serialize)]
pub struct InviteInfoView {
    invite: InviteInfo,
}

pub async fn invite_info(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<InviteInfoQuery>,
) -> Result<Success<InviteInfoView>, ApiError> {
    let Some(link) = &query.link else {
        return Err(ApiError::field("link", "a link (or its code) is required"));
    };
    let code = InviteCode::from_link(link).map_err(|e| invalid("link", e, link))?;
    let session = session(&state, &caller, query.device_id).await?;
    let invite = groups(&state, &session).invite_info(&code).await?;
    Ok(Success::ok(InviteInfoView { invite }))
}

#[derive(Serialize)]
pub struct RequestsView {
    count: usize,
    requests: Vec<JoinRequestView>,
}

pub async fn requests(
    caller: AuthUser,
    State(state): State<AppState>,
    GroupPath(jid): GroupPath,
    Query(query): Query<DeviceQuery>,
) -> Result<Success<RequestsView>, ApiError> {
    let session = session(&state, &caller, query.device_id).await?;
    let requests = groups(&state, &session).join_requests(&jid).await?;
    Ok(Success::ok(RequestsView {
        count: requests.len(),
        requests,
    }))
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Approve,
    Reject,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequestsBody {
    participants: Vec<String>,
    action: Verdict,
    #[serde(default)]
    device_id: Option<DeviceId>,
}

#[derive(Serialize)]
pub struct AnsweredView {
    jid: String,
    action: &'static str,
    participants: Vec<ChangeResult>,
}

pub async fn answer_requests(
    caller: AuthUser,
    State(state): State<AppState>,
    GroupPath(jid): GroupPath,
    Query(query): Query<DeviceQuery>,
    Json(body): Json<AnswerRequestsBody>,
) -> Result<Success<AnsweredView>, ApiError> {
    let participants = parse_participants(&body.participants, false)?;
    let session = session(&state, &caller, body.device_id.or(query.device_id)).await?;
    let approve = matches!(body.action, Verdict::Approve);
    let results = groups(&state, &session)
        .answer_join_requests(&jid, &participants, approve)
        .await?;
    Ok(Success::ok(AnsweredView {
        jid: jid.jid(),
        action: if approve { "approve" } else { "reject" },
        participants: results,
    }))
}
