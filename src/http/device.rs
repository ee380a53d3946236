//! The one way to a device: device selection for device-scoped routes.
//!
//! `device_id` names the device (query parameter, or body field where the route has a body);
//! without it, the caller's only device. A device of another tenant, or of another user for
//! role `user`, does not exist as far as the caller can tell (404). What this module yields
//! ([`DeviceScope`], [`DeviceSession`]) is what services and store functions on device-owned
//! rows take, so the tenant is on every path. This is where a request for a device served by
//! another node will be forwarded.

use serde::Deserialize;

use super::auth::AuthUser;
use super::error::{ApiError, FieldError};
use super::state::AppState;
use crate::domain::{DeviceId, DeviceScope, SessionStatus};
use crate::session::{DeviceHandle, DeviceSession, SessionError, SessionState};
use crate::store::devices::{self, Device};

/// `?device_id=` on device-scoped routes.
#[derive(Debug, Default, Deserialize)]
pub struct DeviceQuery {
    #[serde(default)]
    pub device_id: Option<DeviceId>,
}

/// `{"device_id": ...}`, the optional body of routes that need nothing else (connect,
/// disconnect, logout, webhook test).
#[derive(Debug, Default, Deserialize)]
pub struct DeviceBody {
    #[serde(default)]
    pub device_id: Option<DeviceId>,
}

/// The device named in the optional body, else in the query.
pub fn requested(body: Option<DeviceBody>, query: DeviceQuery) -> Option<DeviceId> {
    body.and_then(|b| b.device_id).or(query.device_id)
}

/// The device the caller named, or its only one.
pub async fn select_device(
    state: &AppState,
    caller: &AuthUser,
    requested: Option<DeviceId>,
) -> Result<Device, ApiError> {
    let owner = (!caller.role.sees_all_devices()).then_some(caller.user_id);
    if let Some(id) = requested {
        let device = devices::get(&state.db, caller.tenant_id, owner, id)
            .await?
            .ok_or_else(|| ApiError::not_found("device"))?;
        record_device(device.id);
        return Ok(device);
    }
    let mut visible = devices::list(&state.db, caller.tenant_id, owner).await?;
    match visible.len() {
        0 => Err(ApiError::not_found("device")),
        1 => {
            let device = visible.remove(0);
            record_device(device.id);
            Ok(device)
        }
        _ => Err(ApiError::fields(vec![FieldError::new(
            "device_id",
            "is required when you have more than one device",
        )])),
    }
}

/// The caller's device with a connected session, for routes that talk to WhatsApp;
/// `409 DEVICE_NOT_READY` at once, worded from the session's state, otherwise.
pub async fn connected_session(
    state: &AppState,
    caller: &AuthUser,
    requested: Option<DeviceId>,
) -> Result<DeviceSession, ApiError> {
    // A named device whose session runs here: no database round trip. The session knows its
    // tenant; roles that see only their own devices take the checked path below.
    if let Some(id) = requested
        && caller.role.sees_all_devices()
        && let Some(handle) = running(state, id)
        && handle.tenant() == caller.tenant_id
        && let Ok(session) = DeviceSession::connected(handle.scope(), handle)
    {
        record_device(id);
        return Ok(session);
    }
    let device = select_device(state, caller, requested).await?;
    let Some(handle) = running(state, device.id) else {
        return Err(SessionError::NotReady(format!(
            "the device is not connected (status: {})",
            observed_state(state, &device).status
        ))
        .into());
    };
    Ok(DeviceSession::connected(scope_of(&device), handle)?)
}

/// The device's scope: its row was read through the caller's tenant.
pub fn scope_of(device: &Device) -> DeviceScope {
    DeviceScope::checked(device.tenant_id, device.id)
}

/// Puts the device on the request's span.
fn record_device(device: DeviceId) {
    tracing::Span::current().record("device.id", tracing::field::display(device));
}

fn running(state: &AppState, device: DeviceId) -> Option<DeviceHandle> {
    state.sessions.get(device).filter(|h| !h.is_closed())
}

/// What a device's session looks like without starting it: the live state if it runs, else
/// what its row says (a session that is not running is not connected).
pub fn observed_state(state: &AppState, device: &Device) -> SessionState {
    if let Some(handle) = running(state, device.id) {
        return handle.state();
    }
    initial_state(device)
}

/// The state a newly started actor begins from.
pub fn initial_state(device: &Device) -> SessionState {
    let status = match device.status {
        SessionStatus::Connected | SessionStatus::Connecting if device.auto_connect => {
            SessionStatus::Connecting
        }
        SessionStatus::Connected | SessionStatus::Connecting => SessionStatus::Disconnected,
        // A pairing session does not survive the process that ran it.
        SessionStatus::Pairing => SessionStatus::Unpaired,
        other => other,
    };
    let mut state = SessionState::new(status);
    state.jid = device.whatsapp_jid.clone();
    state.lid = device.lid_jid.clone();
    state.last_seen = device.last_seen;
    state.last_error = device.last_error.clone();
    state
}

/// The device's session, started (as an actor, not a connection) if it is not running.
pub fn session(state: &AppState, device: &Device) -> DeviceHandle {
    state
        .sessions
        .ensure(scope_of(device), || initial_state(device))
}
