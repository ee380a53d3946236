//! Device records: create and list the linked WhatsApp sessions a caller may see.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::SessionStatus;
use crate::domain::{DeviceId, DeviceName, UserId};
use crate::http::auth::AuthUser;
use crate::http::device::observed_state;
use crate::http::envelope::{Data, Success};
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::Json;
use crate::http::state::AppState;
use crate::store::devices::{self, Device};

/// A device as listed.
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

/// A device as answered on creation (the published shape).
#[derive(Serialize)]
pub struct NewDevice {
    id: DeviceId,
    user_id: UserId,
    name: String,
    connected: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Deserialize)]
pub struct CreateDevice {
    name: String,
}

#[derive(Serialize)]
pub struct Created {
    device: NewDevice,
}

pub async fn create(
    caller: AuthUser,
    State(state): State<AppState>,
    Json(body): Json<CreateDevice>,
) -> Result<Success<Created>, ApiError> {
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
    Ok(Success::created(Created {
        device: NewDevice {
            id: device.id,
            user_id: device.user_id,
            name: device.name,
            connected: false,
            created_at: device.created_at,
            updated_at: device.updated_at,
        },
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
