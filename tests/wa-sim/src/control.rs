//! The control API (HTTP JSON on its own address): tests and benchmarks create accounts, act as
//! the phone (scan a QR code, type a pairing code, unlink a companion, change the block list),
//! read the world back, and inject faults.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::api::*;
use crate::faults::Fault;
use crate::pairing::{device_identity, parse_qr, verify_device_signature};
use crate::session::Session;
use crate::sim::Sim;
use crate::stanza::{SERVER, attr, child, child_bytes};
use crate::world::{Account, AwaitingSign, Companion, Outbound};

/// How long the phone waits for a companion to sign what it was sent.
const PAIRING_TIMEOUT: Duration = Duration::from_secs(15);

pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/accounts", post(create_account))
        .route("/accounts/{phone}", get(get_account))
        .route(
            "/accounts/{phone}/blocklist",
            post(crate::blocklist::control_change),
        )
        .route("/accounts/{phone}/messages", post(deliver_message))
        .route(
            "/accounts/{phone}/companions/{device}",
            delete(unlink_companion),
        )
        .route("/pair/qr", post(scan_qr))
        .route("/pair/code", post(enter_code))
        .route("/groups", post(crate::groups::control::control_create))
        .route("/groups/{jid}", get(crate::groups::control::control_get))
        .route(
            "/groups/{jid}/actions",
            post(crate::groups::control::control_act),
        )
        // Account pages: pictures, the phone's address book, the reach-out time-lock.
        .route(
            "/accounts/{phone}/picture",
            post(crate::picture::control_set).delete(crate::picture::control_delete),
        )
        .route("/pictures/{jid}", get(crate::picture::control_get))
        .route(
            "/accounts/{phone}/contacts",
            post(crate::appstate::control_add_contact),
        )
        .route(
            "/accounts/{phone}/reachout-timelock",
            post(crate::mex::control_set),
        )
        .route(
            "/accounts/{phone}/privacy",
            get(crate::privacy::control_get),
        )
        .route("/stats", get(stats).delete(reset_stats))
        .route(
            "/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .with_state(sim)
}

/// A control API failure: a status and a message.
pub struct ControlError(pub StatusCode, pub String);

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn err(status: StatusCode, message: impl Into<String>) -> ControlError {
    ControlError(status, message.into())
}

pub(crate) fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

fn account_view(world: &crate::world::WorldState, account: &Account) -> AccountView {
    let groups = world.groups_of(&account.phone);
    AccountView {
        phone: account.phone.clone(),
        jid: account.jid(),
        lid: account.lid.clone(),
        lid_jid: account.lid_jid(),
        push_name: account.push_name.clone(),
        business_name: account.business_name.clone(),
        companions: account
            .companions
            .values()
            .map(|c| CompanionView {
                device: c.device,
                jid: format!("{}:{}@s.whatsapp.net", account.phone, c.device),
                platform: c.platform.clone(),
                key_index: c.key_index,
                connected: world
                    .sessions
                    .contains_key(&(account.phone.clone(), c.device)),
            })
            .collect(),
        blocklist: crate::blocklist::view(account),
        groups,
    }
}

async fn create_account(
    State(sim): State<Arc<Sim>>,
    axum::Json(request): axum::Json<CreateAccount>,
) -> Result<(StatusCode, axum::Json<CreatedAccount>), ControlError> {
    let phone = digits(&request.phone);
    if phone.len() < 7 {
        return Err(err(StatusCode::BAD_REQUEST, "phone must have digits"));
    }
    let mut world = sim.world.lock();
    if world.accounts.contains_key(&phone) {
        return Err(err(StatusCode::CONFLICT, "account exists"));
    }
    let lid = match request.lid.as_deref().map(digits) {
        Some(lid) if !lid.is_empty() => {
            if world.lids.contains_key(&lid) {
                return Err(err(StatusCode::CONFLICT, "LID taken"));
            }
            lid
        }
        _ => world.allocate_lid(),
    };
    let account = Account {
        phone: phone.clone(),
        lid: lid.clone(),
        push_name: request.push_name,
        business_profile: request
            .business_profile
            .or_else(|| request.business_name.as_ref().map(|_| Default::default())),
        business_name: request.business_name,
        status: request.status,
        status_time: crate::sim::now_secs(),
        identity: wacore::libsignal::protocol::KeyPair::generate(&mut rand::rng()),
        raw_id: rand::random::<u32>() & 0x7fff_ffff,
        companions: Default::default(),
        next_device: 1,
        next_key_index: 1,
        blocklist: Vec::new(),
        blocklist_dhash: crate::blocklist::dhash(&[]),
        restrict_group_add: request.restrict_group_add,
    };
    let created = CreatedAccount {
        jid: account.jid(),
        lid_jid: account.lid_jid(),
        phone: phone.clone(),
        lid: lid.clone(),
    };
    let push_name = account.push_name.clone();
    world.lids.insert(lid, phone.clone());
    world.accounts.insert(phone.clone(), account);
    if let Some(name) = push_name {
        crate::appstate::set_push_name(&mut world, &phone, &name);
    }
    Ok((StatusCode::CREATED, axum::Json(created)))
}

async fn get_account(
    State(sim): State<Arc<Sim>>,
    Path(phone): Path<String>,
) -> Result<axum::Json<AccountView>, ControlError> {
    let world = sim.world.lock();
    let account = world
        .account(&digits(&phone))
        .ok_or_else(|| err(StatusCode::NOT_FOUND, "no such account"))?;
    Ok(axum::Json(account_view(&world, account)))
}

async fn unlink_companion(
    State(sim): State<Arc<Sim>>,
    Path((phone, device)): Path<(String, u16)>,
) -> Result<StatusCode, ControlError> {
    let phone = digits(&phone);
    let mut world = sim.world.lock();
    let account = world
        .account_mut(&phone)
        .ok_or_else(|| err(StatusCode::NOT_FOUND, "no such account"))?;
    if account.companions.remove(&device).is_none() {
        return Err(err(StatusCode::NOT_FOUND, "no such companion"));
    }
    if let Some(handle) = world.sessions.remove(&(phone.clone(), device)) {
        handle.send(Outbound::StreamError(
            NodeBuilder::new("stream:error")
                .attr("code", "401")
                .children([NodeBuilder::new("conflict")
                    .attr("type", "device_removed")
                    .build()])
                .build(),
        ));
    }
    world.announce_devices(&phone, None, &sim.stanza_id());
    Ok(StatusCode::NO_CONTENT)
}

/// The phone scans a companion's QR code; answers once the companion is linked.
/// A message from another account reaches every live companion of `phone`.
async fn deliver_message(
    State(sim): State<Arc<Sim>>,
    Path(phone): Path<String>,
    axum::Json(request): axum::Json<IncomingMessage>,
) -> Result<axum::Json<serde_json::Value>, ControlError> {
    let phone = digits(&phone);
    let sender = digits(&request.from_phone);
    let world = sim.world.lock();
    if world.account(&phone).is_none() {
        return Err(err(StatusCode::NOT_FOUND, "no such account"));
    }
    let from = world
        .account(&sender)
        .ok_or_else(|| err(StatusCode::NOT_FOUND, "no such sender"))?;
    let mut node = NodeBuilder::new("message")
        .attr("from", from.lid_jid())
        .attr("sender_pn", from.jid())
        .attr("addressing_mode", "lid")
        .attr("id", format!("3EB0{:016X}", rand::random::<u64>()))
        .attr("t", crate::sim::now_secs().to_string())
        .attr("type", "text");
    if let Some(name) = &from.push_name {
        node = node.attr("notify", name.clone());
    }
    let ciphertext: [u8; 48] = rand::random();
    let node = node
        .children([NodeBuilder::new("enc")
            .attr("v", "2")
            .attr("type", "msg")
            .bytes(ciphertext.to_vec())
            .build()])
        .build();
    let sessions = world.companion_sessions(&phone);
    for handle in &sessions {
        handle.send(Outbound::Node(node.clone()));
    }
    Ok(axum::Json(
        serde_json::json!({ "delivered": sessions.len() }),
    ))
}

async fn scan_qr(
    State(sim): State<Arc<Sim>>,
    axum::Json(request): axum::Json<ScanQr>,
) -> Result<axum::Json<Paired>, ControlError> {
    let scanned = parse_qr(&request.qr).map_err(|e| err(StatusCode::BAD_REQUEST, e.to_string()))?;
    let phone = digits(&request.phone);
    let pending = {
        let world = sim.world.lock();
        world
            .pending_qr
            .get(&scanned.pairing_ref)
            .cloned()
            .ok_or_else(|| err(StatusCode::NOT_FOUND, "unknown or expired QR code"))?
    };
    if pending.noise_pub != scanned.noise_pub || pending.identity_pub != scanned.identity_pub {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "QR keys do not match the companion",
        ));
    }
    link(&sim, &phone, pending, &scanned.adv_secret).await
}

/// Sends `pair-success` to the companion and waits for it to sign its identity.
pub async fn link(
    sim: &Arc<Sim>,
    phone: &str,
    pending: crate::world::PendingPairing,
    adv_secret: &[u8; 32],
) -> Result<axum::Json<Paired>, ControlError> {
    let done = Arc::new(tokio::sync::Notify::new());
    let (iq, paired) = {
        let mut world = sim.world.lock();
        let account = world
            .account_mut(phone)
            .ok_or_else(|| err(StatusCode::NOT_FOUND, "no such account"))?;
        let device = account.next_device;
        let key_index = account.next_key_index;
        let identity = device_identity(account, &pending.identity_pub, adv_secret, key_index)
            .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        account.next_device += 1;
        account.next_key_index += 1;
        let jid = format!("{phone}:{device}@s.whatsapp.net");
        let lid = format!("{}:{device}@lid", account.lid);
        let mut success = vec![
            NodeBuilder::new("device-identity").bytes(identity).build(),
            NodeBuilder::new("platform")
                .attr("name", pending.platform.clone())
                .build(),
            NodeBuilder::new("device")
                .attr("jid", jid.clone())
                .attr("lid", lid.clone())
                .build(),
        ];
        if let Some(name) = &account.business_name {
            success.push(NodeBuilder::new("biz").attr("name", name.clone()).build());
        }
        let id = sim.stanza_id();
        let iq = NodeBuilder::new("iq")
            .attr("from", SERVER)
            .attr("type", "set")
            .attr("id", id.clone())
            .attr("xmlns", "md")
            .children([NodeBuilder::new("pair-success").children(success).build()])
            .build();
        let companion = Companion {
            device,
            noise_pub: pending.noise_pub,
            identity_pub: pending.identity_pub,
            registration_id: pending.registration_id,
            key_index,
            platform: pending.platform.clone(),
            prekeys: Default::default(),
            signed_prekey: None,
            signed_identity: Vec::new(),
            devices_announced: false,
            app_state_keys_shared: false,
        };
        world.awaiting_sign.insert(
            id,
            AwaitingSign {
                phone: phone.to_owned(),
                companion,
                done: Some(done.clone()),
            },
        );
        let conn_id = pending.conn.id;
        world.pending_qr.retain(|_, p| p.conn.id != conn_id);
        world
            .pending_codes
            .retain(|_, p| p.pairing.conn.id != conn_id);
        (
            iq,
            Paired {
                phone: phone.to_owned(),
                jid,
                lid,
                device,
            },
        )
    };
    pending.conn.send(Outbound::Node(iq));
    match tokio::time::timeout(PAIRING_TIMEOUT, done.notified()).await {
        Ok(()) => {
            let linked = sim
                .world
                .lock()
                .account(phone)
                .is_some_and(|a| a.companions.contains_key(&paired.device));
            if linked {
                Ok(axum::Json(paired))
            } else {
                Err(err(
                    StatusCode::CONFLICT,
                    "the companion refused the pairing",
                ))
            }
        }
        Err(_) => Err(err(
            StatusCode::GATEWAY_TIMEOUT,
            "the companion did not complete pairing",
        )),
    }
}

/// The companion's answer to a server IQ (for now: the signature on a pair-success).
pub fn on_client_answer(session: &mut Session, id: &str, node: &Node) {
    let mut world = session.sim.world.lock();
    let Some(awaiting) = world.awaiting_sign.remove(id) else {
        return;
    };
    let signed = attr(node, "type")
        .filter(|t| t == "result")
        .and_then(|_| child(node, "pair-device-sign"))
        .and_then(|sign| child_bytes(sign, "device-identity"))
        .map(<[u8]>::to_vec);
    let notify = awaiting.done.clone();
    let account_key = world
        .account(&awaiting.phone)
        .map(|a| a.identity.public_key.public_key_bytes().to_vec())
        .unwrap_or_default();
    match signed {
        Some(signed)
            if verify_device_signature(&signed, &awaiting.companion.identity_pub, &account_key)
                .is_ok() =>
        {
            let mut companion = awaiting.companion;
            companion.signed_identity = signed;
            let device = companion.device;
            if let Some(account) = world.account_mut(&awaiting.phone) {
                account.companions.insert(companion.device, companion);
            }
            // The account's other companions learn of the new device.
            world.announce_devices(&awaiting.phone, Some(device), &session.sim.stanza_id());
            drop(world);
            session.sim.stats.pairing();
            // WhatsApp restarts the stream so the companion logs in as the new device.
            session.conn.send(Outbound::StreamError(
                NodeBuilder::new("stream:error").attr("code", "515").build(),
            ));
        }
        _ => {
            drop(world);
            tracing::debug!("companion refused or mis-signed the pairing");
        }
    }
    if let Some(notify) = notify {
        notify.notify_one();
    }
}

async fn enter_code(
    State(sim): State<Arc<Sim>>,
    axum::Json(request): axum::Json<EnterCode>,
) -> Result<axum::Json<Paired>, ControlError> {
    crate::pair_code::phone_enters_code(&sim, &digits(&request.phone), &request.code).await
}

async fn stats(State(sim): State<Arc<Sim>>) -> axum::Json<crate::stats::StatsSnapshot> {
    axum::Json(sim.stats.snapshot())
}

async fn reset_stats(State(sim): State<Arc<Sim>>) -> StatusCode {
    sim.stats.reset();
    StatusCode::NO_CONTENT
}

async fn list_faults(State(sim): State<Arc<Sim>>) -> axum::Json<Vec<Fault>> {
    axum::Json(sim.faults.list())
}

async fn add_fault(
    State(sim): State<Arc<Sim>>,
    axum::Json(fault): axum::Json<Fault>,
) -> Result<StatusCode, ControlError> {
    match fault {
        Fault::DropConnections { phone } => {
            let world = sim.world.lock();
            let handles: Vec<_> = world
                .sessions
                .iter()
                .filter(|((p, _), _)| phone.as_deref().is_none_or(|wanted| digits(wanted) == *p))
                .map(|(_, h)| h.clone())
                .collect();
            drop(world);
            for handle in handles {
                handle.send(Outbound::Drop);
            }
            Ok(StatusCode::NO_CONTENT)
        }
        Fault::StreamError {
            phone,
            code,
            conflict,
        } => {
            let mut world = sim.world.lock();
            let keys: Vec<_> = world
                .sessions
                .keys()
                .filter(|(p, _)| phone.as_deref().is_none_or(|wanted| digits(wanted) == *p))
                .cloned()
                .collect();
            let handles: Vec<_> = keys
                .iter()
                .filter_map(|key| world.sessions.remove(key))
                .collect();
            drop(world);
            let mut error = NodeBuilder::new("stream:error");
            if let Some(code) = code {
                error = error.attr("code", code.to_string());
            }
            if let Some(kind) = conflict {
                error = error.children([NodeBuilder::new("conflict").attr("type", kind).build()]);
            }
            let error = error.build();
            for handle in handles {
                handle.send(Outbound::StreamError(error.clone()));
            }
            Ok(StatusCode::NO_CONTENT)
        }
        Fault::Delay { .. }
        | Fault::Error { .. }
        | Fault::NoAnswer { .. }
        | Fault::RefuseLogin { .. } => {
            sim.faults.add(fault);
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

async fn clear_faults(State(sim): State<Arc<Sim>>) -> StatusCode {
    sim.faults.clear();
    StatusCode::NO_CONTENT
}
