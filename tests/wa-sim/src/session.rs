//! What one connection is to the server once the handshake is done: a companion logging in,
//! or an unpaired companion waiting to be linked. Dispatches its stanzas and owns its place in
//! the world (its live session, its pairing refs).

use std::sync::Arc;

use base64::Engine;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use waproto::buffa::Message;
use waproto::whatsapp as wa;

use crate::iq::{self, Answer};
use crate::sim::{Sim, now_secs};
use crate::stanza::{self, SERVER, attr, child, iq_error, iq_result};
use crate::world::{ConnHandle, Outbound, PendingPairing};

/// The `account_sync` notification that tells companions the account's device list changed: a
/// companion gets it at its first login after it was linked, the account's other companions
/// when a companion is linked or unlinked. It carries the account's push name.
///
/// WhatsApp never sends an empty `account_sync`: each one carries a child naming what changed
/// (`privacy`, `devices`, `picture`, `blocklist`, `disappearing_mode`; whatsmeow
/// `notification.go` `handleAccountSyncNotification` reads only the children, and Baileys
/// `messages-recv.js` `processNotification` reads the first child's tag, and fails on a
/// notification without one). Its `<devices>` child is what WhatsApp sends when the account's
/// device list changed, as it just did for a companion that was linked. whatsapp-rust reads the
/// push name from the notification's `pushname` attribute (`handlers/notification/device.rs`
/// `handle_account_sync_notification`), so the name rides on it; the other clients ignore the
/// attribute and learn the name from app state, which wa-sim does not simulate.
pub fn own_account_sync(account: &crate::world::Account, id: &str) -> Node {
    let mut node = NodeBuilder::new("notification")
        .attr("from", account.jid())
        .attr("type", "account_sync")
        .attr("id", id.to_owned())
        .attr("t", now_secs().to_string());
    if let Some(name) = &account.push_name {
        node = node.attr("pushname", name.clone());
    }
    node.children([crate::usync::own_devices(account)]).build()
}

/// How many QR refs an unpaired companion is offered (WhatsApp Web shows six).
const QR_REFS: usize = 6;

pub struct Session {
    pub sim: Arc<Sim>,
    pub conn: ConnHandle,
    /// The logged-in companion: (phone, device).
    pub login: Option<(String, u16)>,
    /// The registration data of an unpaired companion.
    pub registration: Option<PendingPairing>,
}

impl Session {
    pub fn new(sim: Arc<Sim>, conn: ConnHandle) -> Self {
        Self {
            sim,
            conn,
            login: None,
            registration: None,
        }
    }

    pub fn send(&self, node: Node) {
        self.conn.send(Outbound::Node(node));
    }

    pub async fn on_established(&mut self, payload: wa::ClientPayload, client_static: [u8; 32]) {
        if let Some(registration) = payload.device_pairing_data.as_option() {
            self.offer_pairing(registration, client_static);
        } else {
            self.log_in(&payload, client_static);
        }
    }

    fn offer_pairing(
        &mut self,
        registration: &wa::client_payload::DevicePairingRegistrationData,
        client_static: [u8; 32],
    ) {
        let identity_pub: Option<[u8; 32]> = registration
            .e_ident
            .as_deref()
            .and_then(|b| b.try_into().ok());
        let registration_id = registration
            .e_regid
            .as_deref()
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .unwrap_or(0);
        let Some(identity_pub) = identity_pub else {
            self.conn.send(Outbound::StreamError(
                NodeBuilder::new("failure").attr("reason", "400").build(),
            ));
            return;
        };
        let platform = registration
            .device_props
            .as_deref()
            .and_then(|b| wa::DeviceProps::decode_from_slice(b).ok())
            .and_then(|props| props.os)
            .unwrap_or_else(|| "unknown".to_owned());
        let pending = PendingPairing {
            conn: self.conn.clone(),
            noise_pub: client_static,
            identity_pub,
            registration_id,
            platform,
        };
        let refs: Vec<String> = (0..QR_REFS)
            .map(|_| {
                let random: [u8; 24] = rand::random();
                format!(
                    "2@{}",
                    base64::engine::general_purpose::STANDARD.encode(random)
                )
            })
            .collect();
        {
            let mut world = self.sim.world.lock();
            for r in &refs {
                world.pending_qr.insert(r.clone(), pending.clone());
            }
        }
        self.registration = Some(pending);
        let ref_nodes: Vec<Node> = refs
            .into_iter()
            .map(|r| NodeBuilder::new("ref").bytes(r.into_bytes()).build())
            .collect();
        self.send(
            NodeBuilder::new("iq")
                .attr("from", SERVER)
                .attr("type", "set")
                .attr("id", self.sim.stanza_id())
                .attr("xmlns", "md")
                .children([NodeBuilder::new("pair-device").children(ref_nodes).build()])
                .build(),
        );
    }

    fn log_in(&mut self, payload: &wa::ClientPayload, client_static: [u8; 32]) {
        let phone = payload.username.map(|u| u.to_string()).unwrap_or_default();
        let device = payload
            .device
            .and_then(|d| u16::try_from(d).ok())
            .unwrap_or(0);
        let mut world = self.sim.world.lock();
        let lid = world.account(&phone).and_then(|account| {
            account
                .companions
                .get(&device)
                .filter(|c| c.noise_pub == client_static)
                .map(|_| account.lid.clone())
        });
        let Some(lid) = lid else {
            drop(world);
            // Unknown or unlinked companion: WhatsApp answers 401 and the client is logged out.
            self.sim.stats.refused_login();
            self.conn.send(Outbound::StreamError(
                NodeBuilder::new("failure")
                    .attr("reason", "401")
                    .attr("location", "wa-sim")
                    .build(),
            ));
            return;
        };
        if let Some(refusal) = self.sim.faults.login_refusal(&phone) {
            drop(world);
            self.sim.stats.refused_login();
            let mut failure = NodeBuilder::new("failure")
                .attr("reason", refusal.reason.to_string())
                .attr("location", "wa-sim");
            if let Some(code) = refusal.code {
                failure = failure.attr("code", code.to_string());
            }
            if let Some(expire) = refusal.expire {
                failure = failure.attr("expire", expire.to_string());
            }
            self.conn.send(Outbound::StreamError(failure.build()));
            return;
        }
        if let Some(previous) = world
            .sessions
            .insert((phone.clone(), device), self.conn.clone())
        {
            self.sim.stats.replaced_session();
            previous.send(Outbound::StreamError(
                NodeBuilder::new("stream:error")
                    .children([NodeBuilder::new("conflict")
                        .attr("type", "replaced")
                        .build()])
                    .build(),
            ));
        }
        // A newly linked companion learns the device list (and the push name) once, as
        // WhatsApp tells every companion when the list changes; later logins hear nothing.
        let first_login = world
            .account_mut(&phone)
            .and_then(|a| a.companions.get_mut(&device))
            .is_some_and(|c| !std::mem::replace(&mut c.devices_announced, true));
        let account_sync = world
            .account(&phone)
            .filter(|_| first_login)
            .map(|account| own_account_sync(account, &self.sim.stanza_id()));
        drop(world);
        self.sim.stats.login();
        self.login = Some((phone.clone(), device));
        let now = now_secs();
        self.send(
            NodeBuilder::new("success")
                .attr("t", now.to_string())
                .attr("props", "1")
                .attr("abprops", "1")
                .attr("location", "wa-sim")
                .attr("creation", now.to_string())
                .attr("lid", format!("{lid}:{device}@lid"))
                .build(),
        );
        if let Some(notification) = account_sync {
            self.send(notification);
        }
    }

    /// Forgets this connection's place in the world.
    pub fn on_closed(&mut self) {
        let mut world = self.sim.world.lock();
        if let Some(key) = self.login.take()
            && world
                .sessions
                .get(&key)
                .is_some_and(|h| h.id == self.conn.id)
        {
            world.sessions.remove(&key);
        }
        let id = self.conn.id;
        world.pending_qr.retain(|_, p| p.conn.id != id);
        world.pending_codes.retain(|_, p| p.pairing.conn.id != id);
    }

    pub async fn handle(&mut self, node: Node) {
        self.sim.stats.stanza(&node.tag);
        match node.tag.as_ref() {
            "iq" => self.handle_iq(node).await,
            "receipt" | "message" | "call" => {
                if node.tag == "receipt" {
                    let kind = attr(&node, "type").unwrap_or_else(|| "delivery".to_owned());
                    self.sim.stats.receipt(&kind);
                }
                // Acknowledged like WhatsApp does, so the client does not resend.
                let mut ack = NodeBuilder::new("ack")
                    .attr("class", node.tag.to_string())
                    .attr("id", attr(&node, "id").unwrap_or_default());
                if let Some(to) = attr(&node, "to") {
                    ack = ack.attr("from", to);
                }
                if let Some(kind) = attr(&node, "type") {
                    ack = ack.attr("type", kind);
                }
                self.send(ack.build());
            }
            "ack" | "presence" | "chatstate" | "ib" | "notification" => {}
            other => tracing::debug!(tag = other, "unhandled stanza"),
        }
    }

    async fn handle_iq(&mut self, node: Node) {
        let id = attr(&node, "id").unwrap_or_default();
        let kind = attr(&node, "type").unwrap_or_default();
        if kind == "result" || kind == "error" {
            crate::control::on_client_answer(self, &id, &node);
            return;
        }
        let xmlns = attr(&node, "xmlns").unwrap_or_default();
        let from = attr(&node, "to").unwrap_or_else(|| SERVER.to_owned());
        self.sim.stats.iq(&xmlns, &kind);
        let fault = self.sim.faults.for_iq(&xmlns);
        if fault.silent {
            return;
        }
        let answer = match fault.error {
            Some(code) => Answer::Error(code),
            None => iq::answer(self, &node, &xmlns, &kind).await,
        };
        let reply = match answer {
            Answer::Result(content) => Some(iq_result(&id, &from, content)),
            Answer::Error(code) => Some(iq_error(&id, &from, code, stanza::error_text(code))),
        };
        let Some(reply) = reply else { return };
        match fault.delay {
            None => self.send(reply),
            Some(delay) => {
                let conn = self.conn.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    conn.send(Outbound::Node(reply));
                });
            }
        }
        if xmlns == "passive" && child(&node, "active").is_some() {
            // Going active is what makes WhatsApp deliver the offline queue and then the
            // marker that it is empty.
            self.send(
                NodeBuilder::new("ib")
                    .attr("from", SERVER)
                    .children([NodeBuilder::new("offline").attr("count", "0").build()])
                    .build(),
            );
        }
    }
}
