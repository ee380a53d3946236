//! The client's events as the actor reflects them: pairing, connection, logout, bans and
//! refusals into the session state and the device row; names and block-list notifications
//! into the identity store and the block list.

use std::sync::Arc;

use chrono::Utc;
use tracing::Instrument;
use whatsapp_rust::Client;
use whatsapp_rust::bot::BotHandle;
use whatsapp_rust::types::events::{Event, EventKind};

use super::{BAN_RETRY_MARGIN, DeviceActor, MAX_BAN_WAIT, PAIR_CODE_TTL_SECS};
use crate::session::blocklist::{self, DeviceBlocklist};
use crate::session::identity;
use crate::session::state::{PairingCode, PairingQr, SessionStatus};

/// Lifecycle events the actor listens to. Everything else the client emits is not its concern.
pub(super) const EVENTS: &[EventKind] = &[
    EventKind::Connected,
    EventKind::Disconnected,
    EventKind::PairSuccess,
    EventKind::PairError,
    EventKind::LoggedOut,
    EventKind::PairingQrCode,
    EventKind::PairingCode,
    EventKind::PairingQrCodesExhausted,
    EventKind::ClientOutdated,
    EventKind::StreamReplaced,
    EventKind::TemporaryBan,
    EventKind::ConnectFailure,
    EventKind::PushNameUpdate,
    EventKind::ContactUpdate,
    EventKind::BusinessStatusUpdate,
    EventKind::RawNode,
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
                if self.status() != SessionStatus::Pairing {
                    self.set_status(SessionStatus::Pairing, |_| {}).await;
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
                self.state.send_modify(|s| {
                    s.qr = None;
                    s.pairing_code = None;
                    s.jid = Some(jid.clone());
                    s.lid = Some(lid.clone());
                });
                self.set_status(SessionStatus::Connecting, |r| {
                    r.auto_connect = Some(true);
                    r.jid = Some(jid);
                    r.lid = Some(lid);
                    r.clear_error = true;
                })
                .await;
            }
            Event::PairError(err) => {
                tracing::warn!(error = %err.error, "pairing failed");
                crate::metrics::pairing_outcome("error");
                self.stop_client().await;
                self.set_status(SessionStatus::Unpaired, |r| {
                    r.error = Some(format!("pairing failed: {}", err.error));
                })
                .await;
            }
            Event::PairingQrCodesExhausted(_) => {
                crate::metrics::pairing_outcome("expired");
                self.stop_client().await;
                self.state.send_modify(|s| s.qr = None);
                self.set_status(SessionStatus::Unpaired, |r| {
                    r.error = Some("no QR code was scanned in time".to_owned());
                })
                .await;
            }
            Event::Connected(_) => {
                let client = self.bot.as_ref().map(BotHandle::client);
                let Some(client) = client else { return };
                tracing::info!("connected");
                crate::metrics::connection_event("connected");
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
                self.set_status(SessionStatus::Connected, |r| {
                    r.jid = jid;
                    r.lid = lid;
                    r.seen = true;
                    r.clear_error = true;
                })
                .await;
                // Changes made while the device was away are not notified: read the list.
                self.refresh_blocklist(client);
            }
            Event::Disconnected(_) => {
                crate::metrics::connection_event("disconnected");
                if self.state.borrow().status == SessionStatus::Connected {
                    // An established session dropped: its reconnect waits a random moment.
                    self.reconnect.arm();
                }
                self.client.send_replace(None);
                self.state.send_modify(|s| s.last_seen = Some(Utc::now()));
                // whatsapp-rust reconnects by itself, with backoff.
                self.set_status(SessionStatus::Connecting, |r| r.seen = true)
                    .await;
            }
            Event::LoggedOut(out) => {
                tracing::warn!(reason = ?out.reason, "logged out by WhatsApp");
                crate::metrics::connection_event("logged_out");
                self.stop_client().await;
                if let Err(err) = self.erase_credentials().await {
                    tracing::error!(error = ?err, "erasing credentials failed");
                }
                self.set_status(SessionStatus::LoggedOut, |r| {
                    r.auto_connect = Some(false);
                    r.clear_jid = true;
                    r.error = Some(format!("logged out by WhatsApp ({:?})", out.reason));
                })
                .await;
            }
            Event::StreamReplaced(_) => {
                tracing::warn!("session replaced by another connection");
                crate::metrics::connection_event("replaced");
                self.stop_client().await;
                // Reconnecting would replace the other connection in turn, forever.
                self.set_status(SessionStatus::Disconnected, |r| {
                    r.auto_connect = Some(false);
                    r.error =
                        Some("replaced by another connection with the same credentials".to_owned());
                })
                .await;
            }
            Event::TemporaryBan(ban) => {
                tracing::warn!(code = ?ban.code, expire = ?ban.expire, "temporarily banned");
                crate::metrics::connection_event("temporary_ban");
                self.stop_client().await;
                // Try again once the ban is over (a little after, so as not to knock early).
                let wait =
                    ban.expire.to_std().unwrap_or_default().min(MAX_BAN_WAIT) + BAN_RETRY_MARGIN;
                self.retry_at = Some(tokio::time::Instant::now() + wait);
                // Still wanted: a restart during the ban tries once (and learns the ban again).
                self.set_status(SessionStatus::Disconnected, |r| {
                    r.error = Some(format!(
                        "temporarily banned by WhatsApp ({:?}) for {} s",
                        ban.code,
                        ban.expire.num_seconds()
                    ));
                })
                .await;
            }
            Event::ClientOutdated(_) => {
                tracing::error!(
                    "WhatsApp says this client version is outdated: set WUTS_WA_VERSION to the current WhatsApp Web version"
                );
                crate::metrics::connection_event("client_outdated");
                self.stop_client().await;
                self.set_status(SessionStatus::Disconnected, |r| {
                    r.error = Some(
                        "client version outdated; the operator must update WUTS_WA_VERSION"
                            .to_owned(),
                    );
                })
                .await;
            }
            Event::ConnectFailure(failure) => {
                tracing::warn!(reason = ?failure.reason, "connection refused by WhatsApp");
                crate::metrics::connection_event("connect_failure");
                if !failure.reason.should_reconnect() {
                    // whatsapp-rust does not retry these; neither do we until asked to.
                    self.stop_client().await;
                    self.set_status(SessionStatus::Disconnected, |r| {
                        r.error = Some(format!("login refused by WhatsApp ({:?})", failure.reason));
                    })
                    .await;
                }
            }
            Event::PushNameUpdate(_) | Event::ContactUpdate(_) | Event::BusinessStatusUpdate(_) => {
                identity::record_event(&self.deps.db, &self.scope, event).await;
                self.contacts_changed();
            }
            Event::RawNode(node) if node.get().tag.as_ref() == "message" => {
                let client = self.bot.as_ref().map(BotHandle::client);
                identity::record_message_sender(
                    &self.deps.db,
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

    /// Tells read-side caches that the device's contacts changed.
    fn contacts_changed(&self) {
        self.caches.blocklist.invalidate();
        self.state.send_modify(|s| s.contacts_version += 1);
    }

    /// Reads the whole block list from WhatsApp into the snapshot, off the actor's loop.
    fn refresh_blocklist(&self, client: Arc<Client>) {
        let state = self.state.clone();
        let db = self.deps.db.clone();
        let scope = self.scope;
        let caches = self.caches.clone();
        let timeout = self.deps.config.wa_timeout;
        tokio::spawn(
            async move {
                let list = DeviceBlocklist {
                    db: &db,
                    scope: &scope,
                    cache: &caches.blocklist,
                    client: &client,
                    timeout,
                };
                match list.refresh().await {
                    Ok(true) => state.send_modify(|s| s.contacts_version += 1),
                    Ok(false) => {}
                    Err(err) => tracing::debug!(error = %err, "block list not read"),
                }
            }
            .in_current_span(),
        );
    }
}
