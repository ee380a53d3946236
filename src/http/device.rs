//! The one way to a device: device selection for device-scoped routes.
//!
//! `device_id` names the device (query parameter, or body field where the route has a body);
//! without it, the caller's only device. A device of another tenant, or of another user for
//! role `user`, does not exist as far as the caller can tell (404). What this module yields
//! ([`DeviceScope`], [`DeviceSession`]) is what services and store functions on device-owned
//! rows take, so the tenant is on every path. This is also where a request for a device served
//! by another node is sent there ([`ApiError::Elsewhere`], see `http::forward`), and where a
//! request for a device moving between nodes waits for its new owner.

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::auth::AuthUser;
use super::error::{ApiError, FieldError};
use super::state::AppState;
use crate::domain::{DeviceId, DeviceScope, SessionStatus};
use crate::session::{DeviceHandle, DeviceSession, SessionError, SessionState};
use crate::store::devices::{self, Device};
use crate::store::nodes::{self, Lease, LiveNode};

/// How often a request waiting for a device's new owner asks the registry again.
const PLACEMENT_POLL: Duration = Duration::from_millis(50);

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
        place(state, &device).await?;
        return Ok(device);
    }
    let mut visible = devices::list(&state.db, caller.tenant_id, owner).await?;
    match visible.len() {
        0 => Err(ApiError::not_found("device")),
        1 => {
            let device = visible.remove(0);
            record_device(device.id);
            place(state, &device).await?;
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
    let cluster = state.sessions.cluster();
    // Among several nodes, a device may be handed over between its placement and here: its
    // session here is then closed to requests, and the request asks again where it is served
    // (once; the second placement waits for the new owner).
    for placed_again in [false, true] {
        let handle = running(state, device.id).filter(|h| !h.closed_to_requests());
        match handle {
            Some(handle) => {
                // A device just handed to this node (or taken over) is connecting: wait for it
                // as for the hand-off itself.
                if cluster.active() && handle.state().status == SessionStatus::Connecting {
                    handle.wait_settled(cluster.config().handoff_wait).await;
                }
                match DeviceSession::connected(scope_of(&device), handle.clone()) {
                    Err(_) if cluster.active() && handle.closed_to_requests() && !placed_again => {}
                    session => return Ok(session?),
                }
            }
            None if cluster.active() && !placed_again => {}
            None => break,
        }
        place(state, &device).await?;
    }
    Err(SessionError::NotReady(format!(
        "the device is not connected (status: {})",
        observed_state(state, &device).status
    ))
    .into())
}

/// Where a request for `device` is answered: here (`Ok`), or on the node that serves it
/// (`Err(Elsewhere)`). While the device moves between nodes (handed over, or its node just
/// died), waits for the new owner, at most the hand-off wait; then answers here, which for a
/// device that is not connected here is `DEVICE_NOT_READY`.
async fn place(state: &AppState, device: &Device) -> Result<(), ApiError> {
    let cluster = state.sessions.cluster();
    if !cluster.active() || (state.sessions.holds(device.id) && !cluster.handing_off(device.id)) {
        return Ok(());
    }
    let forwarded = super::forward::forwarded_in();
    let deadline = Instant::now() + cluster.config().handoff_wait;
    loop {
        let lease = nodes::lease(&state.db, device.id, cluster.config().ttl).await?;
        let step = placement(
            lease.as_ref(),
            device.auto_connect,
            cluster.node_id(),
            || cluster.pick(device.id),
            forwarded,
        );
        match step {
            Placement::Here => return Ok(()),
            Placement::Elsewhere(node) => return Err(ApiError::Elsewhere(device.id, node)),
            Placement::Moving if Instant::now() >= deadline => return Ok(()),
            Placement::Moving => {
                tokio::time::sleep(PLACEMENT_POLL).await;
                if state.sessions.holds(device.id) && !cluster.handing_off(device.id) {
                    return Ok(());
                }
            }
        }
    }
}

/// Where a request for a device goes, from its lease.
#[derive(Debug, PartialEq)]
enum Placement {
    Here,
    Elsewhere(LiveNode),
    /// Between two owners: ask again shortly.
    Moving,
}

/// The decision of [`place`]: the live holder of the lease serves the device; a device that
/// should be connected and that nobody serves (being handed over, or its node died) is moving;
/// any other device is served by the node placement picks (a new device is paired there), or
/// here for a request another node forwarded (the hop limit).
fn placement(
    lease: Option<&Lease>,
    should_connect: bool,
    me: &str,
    pick: impl FnOnce() -> Option<LiveNode>,
    forwarded: bool,
) -> Placement {
    if let Some(lease) = lease {
        match (&lease.node_id, &lease.url) {
            (Some(_), _) if lease.handoff_to.is_some() => return Placement::Moving,
            (Some(holder), _) if holder == me => return Placement::Here,
            (Some(holder), Some(url)) if lease.live => {
                return Placement::Elsewhere(LiveNode {
                    id: holder.clone(),
                    url: url.clone(),
                    draining: false,
                });
            }
            _ => {}
        }
    }
    if should_connect {
        return Placement::Moving;
    }
    if forwarded {
        return Placement::Here;
    }
    match pick() {
        Some(node) if node.id != me => Placement::Elsewhere(node),
        _ => Placement::Here,
    }
}

/// The device's scope: its row was read through the caller's tenant.
pub fn scope_of(device: &Device) -> DeviceScope {
    DeviceScope::checked(device.tenant_id, device.id)
}

/// Puts the device on the request's span.
fn record_device(device: DeviceId) {
    tracing::Span::current().record("device.id", tracing::field::display(device));
}

/// The device's session if it runs on this node and is connected now; never starts anything.
pub fn connected_here(state: &AppState, device: &Device) -> Option<DeviceSession> {
    let handle = running(state, device.id)?;
    DeviceSession::connected(scope_of(device), handle).ok()
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
