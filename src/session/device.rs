//! A device session as a request holds it: the device's scope (checked by `http/device.rs`),
//! its running session, and the state that lives with the device (its cached block list and
//! the group members it read recently).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use whatsapp_rust::Client;

use super::blocklist::{BlocklistCache, DeviceBlocklist};
use super::handle::DeviceHandle;
use super::state::SessionError;
use crate::domain::{DeviceScope, GroupJid, Identity};

/// How long a group's member list is trusted for resolving.
const GROUP_MEMBERS_TTL: Duration = Duration::from_secs(60);

/// A group's members as read from WhatsApp.
pub type Members = Arc<Vec<Identity>>;

/// Group members read recently by one device: resolving many inputs against one group in a
/// row should not cost a group query each time.
#[derive(Default)]
pub struct GroupMembersCache {
    entries: Mutex<HashMap<GroupJid, (Instant, Members)>>,
}

impl GroupMembersCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<GroupJid, (Instant, Members)>> {
        // Recover from a poisoned lock by starting empty: a cache may forget, never serve junk.
        self.entries.lock().unwrap_or_else(|poisoned| {
            let mut guard = poisoned.into_inner();
            guard.clear();
            guard
        })
    }

    pub fn get(&self, group: &GroupJid) -> Option<Members> {
        let entries = self.entries();
        let (at, members) = entries.get(group)?;
        (at.elapsed() < GROUP_MEMBERS_TTL).then(|| members.clone())
    }

    pub fn put(&self, group: GroupJid, members: Members) {
        let mut entries = self.entries();
        entries.retain(|_, (at, _)| at.elapsed() < GROUP_MEMBERS_TTL);
        entries.insert(group, (Instant::now(), members));
    }
}

/// What lives with one device for as long as its session does.
#[derive(Default)]
pub struct DeviceCaches {
    pub blocklist: BlocklistCache,
    pub group_members: GroupMembersCache,
}

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
