//! A device session as a request holds it: the device's scope (checked by `http/device.rs`),
//! its running session and client, and the state that lives with the device.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use whatsapp_rust::Client;

use super::blocklist::DeviceBlocklist;
pub use super::caches::{DeviceCaches, GroupMembersCache, Members};
use super::handle::DeviceHandle;
use super::state::SessionError;
use crate::domain::DeviceScope;

/// A connected device session, reached through its tenant.
#[derive(Clone)]
pub struct DeviceSession {
    scope: DeviceScope,
    handle: DeviceHandle,
    client: Arc<Client>,
}

impl DeviceSession {
    /// The session of a device whose scope was checked, if it is connected right now
    /// (`DEVICE_NOT_READY` at once otherwise).
    pub fn connected(scope: DeviceScope, handle: DeviceHandle) -> Result<Self, SessionError> {
        let client = handle.client()?;
        Ok(Self {
            scope,
            handle,
            client,
        })
    }

    pub fn scope(&self) -> &DeviceScope {
        &self.scope
    }

    pub fn handle(&self) -> &DeviceHandle {
        &self.handle
    }

    /// The connected client.
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// How long one WhatsApp request may take.
    pub fn timeout(&self) -> Duration {
        self.handle.wa_timeout()
    }

    /// Waits for this device's turn to make a sensitive WhatsApp call.
    pub async fn pace(&self) -> Result<(), SessionError> {
        self.handle.pace().await
    }

    pub fn caches(&self) -> &DeviceCaches {
        self.handle.caches()
    }

    /// The device's block list.
    pub fn blocklist<'a>(&'a self, db: &'a PgPool) -> DeviceBlocklist<'a> {
        DeviceBlocklist {
            db,
            scope: &self.scope,
            cache: &self.handle.caches().blocklist,
            client: &self.client,
            timeout: self.timeout(),
        }
    }
}
