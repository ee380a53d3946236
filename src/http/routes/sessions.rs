//! Device sessions: pairing by QR code or pairing code, status, connect, disconnect, logout,
//! and deleting a device.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{DeviceId, PhoneNumber, SessionStatus};
use crate::http::auth::AuthUser;
use crate::http::device::{
    DeviceBody, DeviceQuery, connected_here, observed_state, requested, scope_of, select_device,
    session,
};
use crate::http::envelope::{Data, Message};
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::{IdPath, Json, OptionalJson, Query};
use crate::http::qr::png_data_uri;
use crate::http::state::AppState;
use crate::store::devices;

#[derive(Debug, Default, Deserialize)]
pub struct QrQuery {
    #[serde(default)]
    device_id: Option<DeviceId>,
    #[serde(default)]
    refresh: Option<bool>,
}

#[derive(Serialize)]
pub struct QrView {
    qr_code: String,
    image: String,
    cached: bool,
    expires_at: DateTime<Utc>,
    ttl: i64,
}

/// Starts pairing (or reuses the QR code already out) and answers the code to scan.
pub async fn qr(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<QrQuery>,
) -> Result<Data<QrView>, ApiError> {
    let device = select_device(&state, &caller, query.device_id).await?;
    let handle = session(&state, &device);
    let (qr, cached) = handle.qr(query.refresh.unwrap_or(false)).await?;
    let image = png_data_uri(&qr.code).map_err(ApiError::internal)?;
    let ttl = (qr.expires_at - Utc::now()).num_seconds().max(0);
    Ok(Data(QrView {
        qr_code: qr.code,
        image,
        cached,
        expires_at: qr.expires_at,
        ttl,
    }))
}

#[derive(Serialize)]
pub struct QrStatus {
    exists: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    generated_at: Option<DateTime<Utc>>,
}

/// Whether a QR code is out for the device.
pub async fn qr_status(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<DeviceQuery>,
) -> Result<Data<QrStatus>, ApiError> {
    let device = select_device(&state, &caller, query.device_id).await?;
    let observed = observed_state(&state, &device);
    let live = observed.live_qr(Utc::now());
    Ok(Data(QrStatus {
        exists: live.is_some(),
        generated_at: live.map(|qr| qr.generated_at),
    }))
}

#[derive(Deserialize)]
pub struct PairCodeRequest {
    phone: String,
    #[serde(default)]
    device_id: Option<DeviceId>,
}

#[derive(Serialize)]
pub struct PairCodeView {
    code: String,
    phone: String,
    expires_in: i64,
    cached: bool,
}

/// WhatsApp shows pairing codes as two groups of four.
fn display_code(code: &str) -> String {
    if code.len() == 8 && code.is_ascii() {
        format!("{}-{}", &code[..4], &code[4..])
    } else {
        code.to_owned()
    }
}

/// A pairing code for "link with phone number instead".
pub async fn paircode(
    caller: AuthUser,
    State(state): State<AppState>,
    Json(body): Json<PairCodeRequest>,
) -> Result<Data<PairCodeView>, ApiError> {
    let phone = PhoneNumber::parse(&body.phone).map_err(|e| {
        ApiError::fields(vec![
            FieldError::new("phone", e.to_string()).with_value(body.phone.clone()),
        ])
    })?;
    let device = select_device(&state, &caller, body.device_id).await?;
    let handle = session(&state, &device);
    let (code, cached) = handle.pair_code(phone).await?;
    Ok(Data(PairCodeView {
        code: display_code(&code.code),
        phone: code.phone,
        expires_in: (code.expires_at - Utc::now()).num_seconds().max(0),
        cached,
    }))
}

#[derive(Serialize)]
pub struct StatusView {
    connected: bool,
    status: &'static str,
    device_id: DeviceId,
    jid: Option<String>,
    phone_number: Option<String>,
    is_logged_in: bool,
    last_seen: Option<DateTime<Utc>>,
    /// Why WhatsApp last stopped the session (logged out, banned, replaced, outdated), until it
    /// connects again.
    last_error: Option<String>,
    /// WhatsApp's reach-out time-lock on the account, while connected and known.
    #[serde(skip_serializing_if = "Option::is_none")]
    reachout_timelock: Option<ReachoutView>,
}

/// The reach-out time-lock as `GET /status` shows it.
#[derive(Serialize)]
pub struct ReachoutView {
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<DateTime<Utc>>,
}

/// How long `GET /status` waits for WhatsApp to say whether the account is time-locked.
const REACHOUT_READ_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// The account's reach-out time-lock, for a device connected here; nothing when it cannot be
/// read quickly (the status answers anyway).
async fn reachout_view(state: &AppState, device: &devices::Device) -> Option<ReachoutView> {
    let session = connected_here(state, device)?;
    match session.reachout_lock(false, REACHOUT_READ_DEADLINE).await {
        Ok(lock) => Some(ReachoutView {
            active: lock.active,
            until: lock.until.filter(|_| lock.active),
        }),
        Err(err) => {
            tracing::debug!(error = %err, "reach-out time-lock not read");
            None
        }
    }
}

/// The device's session state; never starts anything.
pub async fn status(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<DeviceQuery>,
) -> Result<Data<StatusView>, ApiError> {
    let device = select_device(&state, &caller, query.device_id).await?;
    let observed = observed_state(&state, &device);
    let is_logged_in = !matches!(
        observed.status,
        SessionStatus::Unpaired | SessionStatus::Pairing | SessionStatus::LoggedOut
    ) && observed.jid.is_some();
    let reachout_timelock = if observed.status == SessionStatus::Connected {
        reachout_view(&state, &device).await
    } else {
        None
    };
    Ok(Data(StatusView {
        connected: observed.status == SessionStatus::Connected,
        status: observed.status.as_str(),
        device_id: device.id,
        phone_number: observed.phone_number(),
        jid: observed.jid,
        is_logged_in,
        last_seen: observed.last_seen,
        last_error: observed.last_error,
        reachout_timelock,
    }))
}

#[derive(Serialize)]
pub struct ConnectView {
    device_id: DeviceId,
    status: &'static str,
}

/// Reconnects with stored credentials (no QR).
pub async fn connect(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<DeviceQuery>,
    OptionalJson(body): OptionalJson<DeviceBody>,
) -> Result<Data<ConnectView>, ApiError> {
    let device = select_device(&state, &caller, requested(body, query)).await?;
    let status = session(&state, &device).connect().await?;
    Ok(Data(ConnectView {
        device_id: device.id,
        status: status.as_str(),
    }))
}

#[derive(Serialize)]
pub struct DoneView {
    message: &'static str,
    device_id: DeviceId,
}

/// Closes the session and keeps the credentials; the device stays closed across restarts.
pub async fn disconnect(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<DeviceQuery>,
    OptionalJson(body): OptionalJson<DeviceBody>,
) -> Result<Data<DoneView>, ApiError> {
    let device = select_device(&state, &caller, requested(body, query)).await?;
    session(&state, &device).disconnect().await?;
    Ok(Data(DoneView {
        message: "disconnected",
        device_id: device.id,
    }))
}

/// Unlinks the device from WhatsApp and erases its credentials.
pub async fn logout(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<DeviceQuery>,
    OptionalJson(body): OptionalJson<DeviceBody>,
) -> Result<Data<DoneView>, ApiError> {
    let device = select_device(&state, &caller, requested(body, query)).await?;
    session(&state, &device).logout().await?;
    Ok(Data(DoneView {
        message: "logged out",
        device_id: device.id,
    }))
}

/// Disconnects and deletes a device, unlinking it from WhatsApp and erasing its keys.
pub async fn delete_device(
    caller: AuthUser,
    State(state): State<AppState>,
    IdPath(id): IdPath<DeviceId>,
) -> Result<crate::http::envelope::Success<Message>, ApiError> {
    let device = select_device(&state, &caller, Some(id)).await?;
    state.sessions.delete(scope_of(&device)).await?;
    let owner = (!caller.role.sees_all_devices()).then_some(caller.user_id);
    if !devices::delete(&state.db, caller.tenant_id, owner, device.id).await? {
        return Err(ApiError::not_found("device"));
    }
    tracing::info!("device.id" = %device.id, "device deleted");
    Ok(Message::new("device deleted"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairing_codes_are_shown_in_two_groups() {
        assert_eq!(display_code("ABCD1234"), "ABCD-1234");
        assert_eq!(display_code("ODD"), "ODD");
    }
}
