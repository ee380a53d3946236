//! Device records: create, list and show the linked WhatsApp sessions a caller may see. Every
//! route answers the same device object ([`DeviceView`]).

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::SessionStatus;
use crate::domain::{DeviceId, DeviceName, UserId};
use crate::http::auth::AuthUser;
use crate::http::device::{observed_state, select_device};
use crate::http::envelope::{Data, Success};
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::{IdPath, Json};
use crate::http::state::AppState;
use crate::store::devices::{self, Device};

/// A device as every device route answers it: created, listed or shown.
#[derive(Serialize)]
pub struct DeviceView {
    id: DeviceId,
    user_id: UserId,
    name: String,
    whatsapp_jid: Option<String>,
    connected: bool,
    status: String,
    last_seen: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl DeviceView {
    /// The device as its row and its session see it: a session running here answers its live
    /// state (the row is written after it, so it may still say what the session was a moment
    /// ago), the row answers for the rest. `/status` reads the same state, so the two agree.
    fn observed(state: &AppState, d: Device) -> Self {
        let session = observed_state(state, &d);
        Self {
            connected: session.status == SessionStatus::Connected,
            id: d.id,
            user_id: d.user_id,
            name: d.name,
            whatsapp_jid: session.jid,
            status: session.status.as_str().to_owned(),
            last_seen: session.last_seen,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(Deserialize)]
pub struct CreateDevice {
    name: String,
}

/// One device, under `device` (creation and `GET /devices/{id}`).
#[derive(Serialize)]
pub struct OneDevice {
    device: DeviceView,
}

pub async fn create(
    caller: AuthUser,
    State(state): State<AppState>,
    Json(body): Json<CreateDevice>,
) -> Result<Success<OneDevice>, ApiError> {
    let name = DeviceName::parse(&body.name).map_err(|m| {
        ApiError::fields(vec![
            FieldError::new("name", m).with_value(body.name.clone()),
        ])
    })?;
    let device = devices::create(&state.db, caller.tenant_id, caller.user_id, &name).await?;
    tracing::info!("device.id" = %device.id, "device created");
    crate::services::webhooks::Webhooks {
        db: &state.db,
        deliveries: &state.deliveries,
    }
    .apply_pending(&crate::http::device::scope_of(&device), caller.user_id)
    .await?;
    Ok(Success::created(OneDevice {
        device: DeviceView::observed(&state, device),
    }))
}

#[derive(Serialize)]
pub struct DeviceList {
    devices: Vec<DeviceView>,
}

/// Every device the caller may act on: the whole tenant's for admins and managers.
pub async fn list(
    caller: AuthUser,
    State(state): State<AppState>,
) -> Result<Success<DeviceList>, ApiError> {
    let owner = (!caller.role.sees_all_devices()).then_some(caller.user_id);
    let devices = devices::list(&state.db, caller.tenant_id, owner).await?;
    Ok(Success::ok(DeviceList {
        devices: devices
            .into_iter()
            .map(|d| DeviceView::observed(&state, d))
            .collect(),
    }))
}

#[derive(Serialize)]
pub struct OwnDevices {
    devices: Vec<DeviceView>,
    count: usize,
    user_id: UserId,
}

/// The caller's own devices, whatever its role.
pub async fn list_own(
    caller: AuthUser,
    State(state): State<AppState>,
) -> Result<Data<OwnDevices>, ApiError> {
    let devices: Vec<DeviceView> = devices::list(&state.db, caller.tenant_id, Some(caller.user_id))
        .await?
        .into_iter()
        .map(|d| DeviceView::observed(&state, d))
        .collect();
    Ok(Data(OwnDevices {
        count: devices.len(),
        devices,
        user_id: caller.user_id,
    }))
}

/// One device the caller may see (another tenant's, or for a `user` another user's, is 404).
pub async fn get(
    caller: AuthUser,
    State(state): State<AppState>,
    IdPath(id): IdPath<DeviceId>,
) -> Result<Success<OneDevice>, ApiError> {
    let device = select_device(&state, &caller, Some(id)).await?;
    Ok(Success::ok(OneDevice {
        device: DeviceView::observed(&state, device),
    }))
}
