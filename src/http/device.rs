//! Device selection for device-scoped routes: `device_id` names the device (query parameter, or
//! body field where the route has a body); without it, the caller's only device. A device of
//! another tenant, or of another user for role `user`, does not exist as far as the caller can
//! tell (404).

use serde::Deserialize;

use super::auth::AuthUser;
use super::error::{ApiError, FieldError};
use super::state::AppState;
use crate::domain::DeviceId;
use crate::session::{DeviceHandle, SessionState, SessionStatus};
use crate::store::devices::{self, Device};

/// `?device_id=` on device-scoped routes.
#[derive(Debug, Default, Deserialize)]
pub struct DeviceQuery {
    #[serde(default)]
    pub device_id: Option<DeviceId>,
}

/// The device the caller named, or its only one.
pub async fn select_device(
    state: &AppState,
    caller: &AuthUser,
    requested: Option<DeviceId>,
) -> Result<Device, ApiError> {
    let owner = (!caller.role.sees_all_devices()).then_some(caller.user_id);
    if let Some(id) = requested {
        return devices::get(&state.db, caller.tenant_id, owner, id)
            .await?
            .ok_or_else(|| ApiError::not_found("device"));
    }
    let mut visible = devices::list(&state.db, caller.tenant_id, owner).await?;
    match visible.len() {
        0 => Err(ApiError::not_found("device")),
        1 => Ok(visible.remove(0)),
        _ => Err(ApiError::fields(vec![FieldError::new(
            "device_id",
            "is required when you have more than one device",
        )])),
    }
}

/// What a device's session looks like without starting it: the live state if it runs, else
/// what its row says (a session that is not running is not connected).
pub fn observed_state(state: &AppState, device: &Device) -> SessionState {
    if let Some(handle) = state.sessions.get(device.id)
        && !handle.is_closed()
    {
        return handle.state();
    }
    initial_state(device)
}

/// The state a newly started actor begins from.
pub fn initial_state(device: &Device) -> SessionState {
    let status = match SessionStatus::from_db(&device.status) {
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
        .ensure(device.tenant_id, device.id, || initial_state(device))
}
