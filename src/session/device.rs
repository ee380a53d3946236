//! A device session as a request holds it: the device's scope (checked by `http/device.rs`),
//! its running session and client, and the state that lives with the device.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use whatsapp_rust::Client;

use super::blocklist::DeviceBlocklist;
pub use super::caches::{DeviceCaches, GroupMembersCache, Members};
use super::group_events::{self, GroupChange};
use super::handle::{DeviceHandle, InUse};
use super::outbox;
use super::state::SessionError;
use crate::domain::DeviceScope;

/// A connected device session, reached through its tenant.
#[derive(Clone)]
pub struct DeviceSession {
    scope: DeviceScope,
    handle: DeviceHandle,
    client: Arc<Client>,
    /// Held as long as the request (or a clone of its session) is: the session is not handed
    /// to another node under it.
    _in_use: Arc<InUse>,
}

impl DeviceSession {
    /// The session of a device whose scope was checked, if it is connected right now
    /// (`DEVICE_NOT_READY` at once otherwise, also when it is being handed to another node).
    pub fn connected(scope: DeviceScope, handle: DeviceHandle) -> Result<Self, SessionError> {
        let in_use = handle.enter().ok_or_else(|| {
            SessionError::NotReady("the device is moving to another gateway node".to_owned())
        })?;
        let client = handle.client()?;
        Ok(Self {
            scope,
            handle,
            client,
            _in_use: Arc::new(in_use),
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

    /// The device's own account, as events name an actor.
    pub fn account(&self) -> crate::domain::Identity {
        let pn = self.client.pn();
        let lid = self.client.lid();
        group_events::person(
            lid.as_ref()
                .or(pn.as_ref())
                .unwrap_or(&wacore_binary::Jid::new("", wacore_binary::Server::Pn)),
            pn.as_ref(),
        )
    }

    /// Appends the events of group changes the device's own call made (the device as their
    /// actor), and remembers them so WhatsApp's notification of the same change is not
    /// reported twice.
    pub async fn report_group_changes(&self, db: &PgPool, mut changes: Vec<GroupChange>) {
        if changes.is_empty() {
            return;
        }
        let actor = self.account();
        for change in &mut changes {
            change.actor = Some(actor.clone());
        }
        self.caches().groups_reported.reported(&changes);
        let events: Vec<_> = changes.iter().map(GroupChange::event).collect();
        outbox::emit(db, self.handle.wakeup(), &self.scope, &events).await;
        let (db, scope, client, timeout) =
            (db.clone(), self.scope, self.client.clone(), self.timeout());
        tokio::spawn(async move {
            super::group_sync::refresh(&db, &scope, &client, timeout, &changes).await;
        });
    }

    /// The device's block list.
    pub fn blocklist<'a>(&'a self, db: &'a PgPool) -> DeviceBlocklist<'a> {
        DeviceBlocklist {
            db,
            wakeup: self.handle.wakeup(),
            scope: &self.scope,
            cache: &self.handle.caches().blocklist,
            client: &self.client,
            timeout: self.timeout(),
        }
    }
}
