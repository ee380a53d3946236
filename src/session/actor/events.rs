//! The client's events as the actor reflects them: pairing, connection, logout, bans and
//! refusals into the session state and the device row; names and block-list notifications
//! into the identity store and the block list.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tracing::Instrument;
use whatsapp_rust::Client;
use whatsapp_rust::bot::BotHandle;
use whatsapp_rust::types::events::{Event, EventKind as ClientEvent};

use super::{BAN_RETRY_MARGIN, DeviceActor, MAX_BAN_WAIT, PAIR_CODE_TTL_SECS};
use crate::domain::EventKind;
use crate::session::blocklist::{self, DeviceBlocklist};
use crate::session::group_events::{self, ChangeKind, GroupChange};
use crate::session::group_sync;
use crate::session::identity;
use crate::session::outbox::{self, Pending};
use crate::session::state::{PairingCode, PairingQr, SessionStatus};

/// Reads of the block list after a notification before giving up until the next connect (with
/// waits of 1, 2, 4 and 8 s between them).
const REFRESH_ATTEMPTS: u32 = 5;

/// Lifecycle events the actor listens to. Everything else the client emits is not its concern.
pub(super) const EVENTS: &[ClientEvent] = &[
    ClientEvent::Connected,
    ClientEvent::Disconnected,
    ClientEvent::PairSuccess,
    ClientEvent::PairError,
    ClientEvent::LoggedOut,
    ClientEvent::PairingQrCode,
    ClientEvent::PairingCode,
    ClientEvent::PairingQrCodesExhausted,
    ClientEvent::ClientOutdated,
    ClientEvent::StreamReplaced,
    ClientEvent::TemporaryBan,
    ClientEvent::ConnectFailure,
    ClientEvent::PushNameUpdate,
    ClientEvent::SelfPushNameUpdated,
    ClientEvent::ContactUpdate,
    ClientEvent::BusinessStatusUpdate,
    ClientEvent::GroupUpdate,
    ClientEvent::RawNode,
];

/// Whether an event is worth the actor's attention. Raw stanzas are forwarded only for what
/// whatsapp-rust does not surface itself: block-list notifications, and the sender's push name
/// (`notify`) on incoming messages.
pub(super) fn wanted(event: &Event) -> bool {
    match event {
        Event::RawNode(node) => {
            let node = node.get();
            match node.tag.as_ref() {
                "notification" => node.get_optional_child("blocklist").is_some(),
                "message" => node.get_attr("notify").is_some(),
                _ => false,
            }
        }
        _ => true,
    }
}

impl DeviceActor {
    /// Writes the device record at once while the client has not yet had one with a push name.
    ///
    /// whatsapp-rust writes its device record every 30 s. A device whose stored record has no
    /// push name waits 10 s at its next login (whatsapp-rust's key-share grace, for an app-state
    /// key that the phone only shares at pairing), and the restore slot it holds waits with it:
    /// a crash within 30 s of pairings made every restored device wait, a slot's worth at a
    /// time. The name arrives either before `Connected` (WhatsApp's first app-state sync) or
    /// just after it (the account-sync notification of a newly linked companion), so the record
    /// is written at `Connected` and again when the name arrives, until one written record has
    /// it; after that the saver's period is enough.
    async fn write_record_while_unnamed(&mut self, client: &Client) {
        if !self.record_unnamed {
            return;
        }
        let persistence = client.persistence_manager();
        match persistence.flush().await {
            Ok(()) => self.record_unnamed = persistence.get_device_snapshot().push_name.is_empty(),
            Err(err) => tracing::warn!(error = %err, "could not write the device record"),
        }
    }

    pub(super) async fn on_event(&mut self, event: &Event) {
        match event {
            Event::PairingQrCode(qr) => {
                let now = Utc::now();
                let ttl = chrono::Duration::from_std(qr.timeout)
                    .unwrap_or_else(|_| chrono::Duration::seconds(60));
                self.state.send_modify(|s| {
                    s.qr = Some(PairingQr {
                        code: qr.code.clone(),
                        generated_at: now,
                        expires_at: now + ttl,
                    });
                });
                let generated = [Pending::new(
                    EventKind::QrGenerated,
                    json!({"qr_code": qr.code, "expires_at": now + ttl}),
                )];
                if self.status() == SessionStatus::Pairing {
                    self.emit(&generated).await;
                } else {
                    self.transition(SessionStatus::Pairing, |_| {}, &generated)
                        .await;
                }
            }
            Event::PairingCode(code) => {
                if let Some(phone) = self.pending_code_phone.clone() {
                    let ttl = chrono::Duration::from_std(code.timeout)
                        .unwrap_or_else(|_| chrono::Duration::seconds(PAIR_CODE_TTL_SECS));
                    self.state.send_modify(|s| {
                        s.pairing_code = Some(PairingCode {
                            code: code.code.clone(),
                            phone,
                            expires_at: Utc::now() + ttl,
                        });
                    });
                }
            }
            Event::PairSuccess(success) => {
                tracing::info!("device paired");
                crate::metrics::pairing_outcome("success");
                let jid = success.id.to_string();
                let lid = success.lid.to_non_ad_string();
                let mut paired = outbox::account(&jid);
                if !success.platform.is_empty() {
                    paired["platform"] = json!(success.platform);
                }
                self.state.send_modify(|s| {
                    s.qr = None;
                    s.pairing_code = None;
                    s.jid = Some(jid.clone());
                    s.lid = Some(lid.clone());
                });
                self.transition(
                    SessionStatus::Connecting,
                    |r| {
                        r.auto_connect = Some(true);
                        r.jid = Some(jid);
                        r.lid = Some(lid);
                        r.clear_error = true;
                    },
                    &[Pending::new(EventKind::PairSuccess, paired)],
                )
                .await;
            }
            Event::PairError(err) => {
                tracing::warn!(error = %err.error, "pairing failed");
                crate::metrics::pairing_outcome("error");
                self.stop_client().await;
                let reason = format!("pairing failed: {}", err.error);
                let failed = [Pending::new(
                    EventKind::PairError,
                    json!({"reason": reason}),
                )];
                self.transition(SessionStatus::Unpaired, |r| r.error = Some(reason), &failed)
                    .await;
            }
            Event::PairingQrCodesExhausted(_) => {
                crate::metrics::pairing_outcome("expired");
                self.stop_client().await;
                self.state.send_modify(|s| s.qr = None);
                let reason = "no QR code was scanned in time";
                let failed = [Pending::new(
                    EventKind::PairError,
                    json!({"reason": reason}),
                )];
                self.transition(
                    SessionStatus::Unpaired,
                    |r| r.error = Some(reason.to_owned()),
                    &failed,
                )
                .await;
            }
            Event::Connected(_) => {
                let client = self.bot.as_ref().map(BotHandle::client);
                let Some(client) = client else { return };
                tracing::info!("connected");
                crate::metrics::connection_event("connected");
                self.write_record_while_unnamed(&client).await;
                let (jid, lid) = (
                    client.pn().map(|j| j.to_string()),
                    client.lid().map(|j| j.to_non_ad_string()),
                );
                self.state.send_modify(|s| {
                    s.jid = jid.clone().or(s.jid.take());
                    s.lid = lid.clone().or(s.lid.take());
                    s.last_seen = Some(Utc::now());
                    s.qr = None;
                    s.pairing_code = None;
                });
                self.client.send_replace(Some(client.clone()));
                let account = self.state.borrow().jid.clone().unwrap_or_default();
                let connected = [Pending::new(
                    EventKind::DeviceConnected,
                    outbox::account(&account),
                )];
                self.transition(
                    SessionStatus::Connected,
                    |r| {
                        r.jid = jid;
                        r.lid = lid;
                        r.seen = true;
                        r.clear_error = true;
                    },
                    &connected,
                )
                .await;
                self.deps.ownership.connected(self.scope.device()).await;
                // Changes made while the device was away are not notified: read the list, and
                // compare the groups with what was stored.
                self.refresh_blocklist(client.clone());
                self.reconcile_groups(client);
            }
            Event::SelfPushNameUpdated(_) => {
                if let Some(client) = self.bot.as_ref().map(BotHandle::client) {
                    self.write_record_while_unnamed(&client).await;
                }
            }
            Event::Disconnected(_) => {
                crate::metrics::connection_event("disconnected");
                let closed = self.closed_event("connection_lost");
                if self.state.borrow().status == SessionStatus::Connected {
                    // An established session dropped: its reconnect waits a random moment.
                    self.reconnect.arm();
                }
                self.client.send_replace(None);
                self.state.send_modify(|s| s.last_seen = Some(Utc::now()));
                // whatsapp-rust reconnects by itself, with backoff.
                self.transition(SessionStatus::Connecting, |r| r.seen = true, &closed)
                    .await;
            }
            Event::LoggedOut(out) => {
                tracing::warn!(reason = ?out.reason, "logged out by WhatsApp");
                crate::metrics::connection_event("logged_out");
                self.stop_client().await;
                if let Err(err) = self.erase_credentials().await {
                    tracing::error!(error = ?err, "erasing credentials failed");
                }
                let reason = format!("logged out by WhatsApp ({:?})", out.reason);
                let events = [Pending::new(
                    EventKind::DeviceLoggedOut,
                    json!({"reason": reason}),
                )];
                self.transition(
                    SessionStatus::LoggedOut,
                    |r| {
                        r.auto_connect = Some(false);
                        r.clear_jid = true;
                        r.error = Some(reason);
                    },
                    &events,
                )
                .await;
            }
            Event::StreamReplaced(_) => {
                tracing::warn!("session replaced by another connection");
                crate::metrics::connection_event("replaced");
                let mut events = vec![Pending::new(EventKind::StreamReplaced, json!({}))];
                events.extend(self.closed_event("stream_replaced"));
                self.stop_client().await;
                // Reconnecting would replace the other connection in turn, forever.
                self.transition(
                    SessionStatus::Disconnected,
                    |r| {
                        r.auto_connect = Some(false);
                        r.error = Some(
                            "replaced by another connection with the same credentials".to_owned(),
                        );
                    },
                    &events,
                )
                .await;
            }
            Event::TemporaryBan(ban) => {
                tracing::warn!(code = ?ban.code, expire = ?ban.expire, "temporarily banned");
                crate::metrics::connection_event("temporary_ban");
                let mut events = vec![Pending::new(
                    EventKind::TemporaryBan,
                    json!({
                        "code": ban.code.code(),
                        "expires_at": Utc::now() + ban.expire,
                    }),
                )];
                events.extend(self.closed_event("temporary_ban"));
                self.stop_client().await;
                // Try again once the ban is over (a little after, so as not to knock early).
                let wait =
                    ban.expire.to_std().unwrap_or_default().min(MAX_BAN_WAIT) + BAN_RETRY_MARGIN;
                self.retry_at = Some(tokio::time::Instant::now() + wait);
                // Still wanted: a restart during the ban tries once (and learns the ban again).
                self.transition(
                    SessionStatus::Disconnected,
                    |r| {
                        r.error = Some(format!(
                            "temporarily banned by WhatsApp ({:?}) for {} s",
                            ban.code,
                            ban.expire.num_seconds()
                        ));
                    },
                    &events,
                )
                .await;
            }
            Event::ClientOutdated(_) => {
                tracing::error!(
                    "WhatsApp says this client version is outdated: set WUTS_WA_VERSION to the current WhatsApp Web version"
                );
                crate::metrics::connection_event("client_outdated");
                let mut events = vec![Pending::new(
                    EventKind::ConnectFailure,
                    json!({"reason": "client_outdated", "code": 405}),
                )];
                events.extend(self.closed_event("client_outdated"));
                self.stop_client().await;
                self.transition(
                    SessionStatus::Disconnected,
                    |r| {
                        r.error = Some(
                            "client version outdated; the operator must update WUTS_WA_VERSION"
                                .to_owned(),
                        );
                    },
                    &events,
                )
                .await;
            }
            Event::ConnectFailure(failure) => {
                tracing::warn!(reason = ?failure.reason, "connection refused by WhatsApp");
                crate::metrics::connection_event("connect_failure");
                if !failure.reason.should_reconnect() {
                    // whatsapp-rust does not retry these; neither do we until asked to.
                    let reason = format!("login refused by WhatsApp ({:?})", failure.reason);
                    let mut events = vec![Pending::new(
                        EventKind::ConnectFailure,
                        json!({"reason": reason, "code": failure.reason.code()}),
                    )];
                    events.extend(self.closed_event("login_refused"));
                    self.stop_client().await;
                    self.transition(
                        SessionStatus::Disconnected,
                        |r| r.error = Some(reason),
                        &events,
                    )
                    .await;
                }
            }
            Event::PushNameUpdate(_) | Event::ContactUpdate(_) | Event::BusinessStatusUpdate(_) => {
                identity::record_event(&self.deps.db, &self.deps.wakeup, &self.scope, event).await;
                let client = self.bot.as_ref().map(BotHandle::client);
                identity::learn_contact_pair(client, event).await;
                self.contacts_changed();
            }
            Event::GroupUpdate(update) => self.on_group_update(update),
            Event::RawNode(node) if node.get().tag.as_ref() == "message" => {
                let client = self.bot.as_ref().map(BotHandle::client);
                identity::record_message_sender(
                    &self.deps.db,
                    &self.deps.wakeup,
                    &self.scope,
                    client,
                    &node.get().to_owned(),
                )
                .await;
                self.contacts_changed();
            }
            Event::RawNode(node) => {
                // WhatsApp's block-list notification says the list changed elsewhere; like
                // WhatsApp Web, read the list again rather than trusting a delta.
                if blocklist::is_blocklist_notification(node.get())
                    && let Some(client) = self.bot.as_ref().map(BotHandle::client)
                {
                    self.refresh_blocklist(client);
                }
            }
            _ => {}
        }
    }

    /// A change WhatsApp notified: its events, unless the device's own call already reported
    /// it. A group the device joined is described from its metadata (read off the loop).
    fn on_group_update(&self, update: &whatsapp_rust::types::events::GroupUpdate) {
        let (own, client) = {
            let state = self.state.borrow();
            let own = group_events::person(
                &state
                    .lid
                    .as_deref()
                    .and_then(|l| l.parse().ok())
                    .unwrap_or_else(|| wacore_binary::Jid::new("", wacore_binary::Server::Lid)),
                state.jid.as_deref().and_then(|j| j.parse().ok()).as_ref(),
            );
            (own, self.bot.as_ref().map(BotHandle::client))
        };
        let changes: Vec<GroupChange> = group_events::from_notification(update, &own)
            .into_iter()
            .filter(|change| !self.caches.groups_reported.already_reported(change))
            .collect();
        if changes.is_empty() {
            return;
        }
        // A change to the members drops what the device remembered of them.
        if let Some(group) = changes.first().map(|c| c.group.clone()) {
            self.caches.group_members.forget(&group);
        }
        let db = self.deps.db.clone();
        let wakeup = self.deps.wakeup.clone();
        let scope = self.scope;
        let timeout = self.deps.config.wa_timeout;
        tokio::spawn(
            async move {
                let mut events = Vec::with_capacity(changes.len());
                let mut reported = Vec::with_capacity(changes.len());
                for mut change in changes {
                    if let (
                        ChangeKind::Joined {
                            name,
                            is_community,
                            parent,
                        },
                        Some(client),
                    ) = (&mut change.kind, client.as_ref())
                        && name.is_none()
                        && let Ok(Ok(meta)) = tokio::time::timeout(
                            timeout,
                            client.groups().get_metadata(&change.group.to_wa()),
                        )
                        .await
                    {
                        *name = Some(meta.subject.clone());
                        *is_community = meta.is_parent_group;
                        *parent = meta.parent_group_jid.as_ref().map(|j| j.to_string());
                    }
                    events.push(change.event());
                    reported.push(change);
                }
                outbox::emit(&db, &wakeup, &scope, &events).await;
                if let Some(client) = client.as_ref() {
                    group_sync::refresh(&db, &scope, client, timeout, &reported).await;
                }
            }
            .in_current_span(),
        );
    }

    /// Reports the group changes made while the device was away, off the actor's loop.
    fn reconcile_groups(&self, client: Arc<Client>) {
        let db = self.deps.db.clone();
        let wakeup = self.deps.wakeup.clone();
        let scope = self.scope;
        let timeout = self.deps.config.wa_timeout;
        let background = self.deps.background.clone();
        tokio::spawn(
            async move {
                let Ok(_permit) = background.acquire_owned().await else {
                    return;
                };
                match group_sync::reconcile(&db, &wakeup, &scope, &client, timeout).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(events = n, "group changes made while away reported"),
                    Err(err) => tracing::warn!(error = %err, "groups not reconciled"),
                }
            }
            .in_current_span(),
        );
    }

    /// Tells read-side caches that the device's contacts changed.
    fn contacts_changed(&self) {
        self.caches.blocklist.invalidate();
        self.state.send_modify(|s| s.contacts_version += 1);
    }

    /// Reads the whole block list from WhatsApp into the snapshot, off the actor's loop.
    fn refresh_blocklist(&self, client: Arc<Client>) {
        let state = self.state.clone();
        let db = self.deps.db.clone();
        let wakeup = self.deps.wakeup.clone();
        let scope = self.scope;
        let caches = self.caches.clone();
        let timeout = self.deps.config.wa_timeout;
        let background = self.deps.background.clone();
        tokio::spawn(
            async move {
                let list = DeviceBlocklist {
                    db: &db,
                    wakeup: &wakeup,
                    scope: &scope,
                    cache: &caches.blocklist,
                    client: &client,
                    timeout,
                };
                // A read that fails (WhatsApp slow or the link busy) is tried again: until it
                // succeeds, a change made on the phone would not be reported.
                let mut wait = Duration::from_secs(1);
                for attempt in 1..=REFRESH_ATTEMPTS {
                    // Taken for each attempt, not across the wait before the next.
                    let Ok(permit) = background.acquire().await else {
                        return;
                    };
                    let refreshed = list.refresh().await;
                    drop(permit);
                    match refreshed {
                        Ok(true) => {
                            state.send_modify(|s| s.contacts_version += 1);
                            return;
                        }
                        Ok(false) => return,
                        Err(err) if attempt == REFRESH_ATTEMPTS => {
                            tracing::warn!(error = %err, "block list not read; the next connect reads it");
                        }
                        Err(err) => {
                            tracing::debug!(error = %err, "block list not read; trying again");
                            tokio::time::sleep(wait).await;
                            wait *= 2;
                        }
                    }
                }
            }
            .in_current_span(),
        );
    }
}
