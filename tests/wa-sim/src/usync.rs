//! usync: the batched user query. One IQ asks about many users at once, by phone number or
//! JID, for any of the protocols the client lists (contact registration, LID, devices, status,
//! business, picture, disappearing mode), and each user is answered with LID and phone number
//! as WhatsApp does.

use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use waproto::buffa::Message;
use waproto::whatsapp as wa;

use crate::business::verified_name_certificate;
use crate::iq::Answer;
use crate::session::Session;
use crate::sim::now_secs;
use crate::stanza::{attr, child, children, split_jid, text};
use crate::world::{Account, WorldState};

/// Protocols the simulator answers; others are acknowledged in `<result>` and left out.
const KNOWN: &[&str] = &[
    "contact",
    "lid",
    "devices",
    "status",
    "business",
    "picture",
    "disappearing_mode",
];

pub fn answer(session: &Session, iq: &Node) -> Answer {
    let Some(usync) = child(iq, "usync") else {
        return Answer::Error(400);
    };
    let protocols: Vec<String> = child(usync, "query")
        .map(|q| children(q).iter().map(|p| p.tag.to_string()).collect())
        .unwrap_or_default();
    let Some(list) = child(usync, "list") else {
        return Answer::Error(400);
    };
    let world = session.sim.world.lock();
    let users: Vec<Node> = list
        .get_children_by_tag("user")
        .map(|user| answer_user(&world, user, &protocols))
        .collect();
    drop(world);

    let mut echo = NodeBuilder::new("usync");
    for name in ["sid", "mode", "context", "index", "last"] {
        if let Some(value) = attr(usync, name) {
            echo = echo.attr(name, value);
        }
    }
    let result = NodeBuilder::new("result")
        .children(
            protocols
                .iter()
                .filter(|p| KNOWN.contains(&p.as_str()))
                .map(|p| {
                    NodeBuilder::new_dynamic(p.clone())
                        .attr("refresh", "604800")
                        .build()
                }),
        )
        .build();
    Answer::Result(vec![
        echo.children([result, NodeBuilder::new("list").children(users).build()])
            .build(),
    ])
}

/// Who a `<user>` of the query is: the account if there is one, and the JID to answer under.
fn identify(world: &WorldState, user: &Node) -> (Option<String>, String, Option<String>) {
    if let Some(jid) = attr(user, "jid") {
        let (id, server) = split_jid(&jid);
        let phone = world.phone_of(&id, &server);
        return (phone, format!("{id}@{server}"), None);
    }
    // A phone-number lookup: `<contact>+5511...</contact>`.
    let number = child(user, "contact")
        .and_then(text)
        .map(|t| t.trim().trim_start_matches('+').to_owned())
        .unwrap_or_default();
    let phone = world.accounts.contains_key(&number).then(|| number.clone());
    (phone, format!("{number}@s.whatsapp.net"), Some(number))
}

fn answer_user(world: &WorldState, user: &Node, protocols: &[String]) -> Node {
    let (phone, jid, queried_number) = identify(world, user);
    let account = phone.as_deref().and_then(|p| world.account(p));
    let mut node = NodeBuilder::new("user").attr("jid", jid.clone());
    if let Some(account) = account
        && jid.ends_with("@lid")
    {
        node = node.attr("pn_jid", account.jid());
    }
    let mut items = Vec::new();
    for protocol in protocols {
        let item = match protocol.as_str() {
            "contact" => Some(contact(account, queried_number.as_deref(), user)),
            "lid" => account.map(|a| NodeBuilder::new("lid").attr("val", a.lid_jid()).build()),
            "devices" => account.map(devices),
            "status" => Some(status(account)),
            "business" => Some(business(account)),
            "picture" => Some(error_node("picture", 404, "item-not-found")),
            "disappearing_mode" => Some(
                NodeBuilder::new("disappearing_mode")
                    .attr("duration", "0")
                    .attr("t", "0")
                    .build(),
            ),
            _ => None,
        };
        items.extend(item);
    }
    node.children(items).build()
}

fn error_node(tag: &'static str, code: u16, text: &str) -> Node {
    NodeBuilder::new(tag)
        .children([NodeBuilder::new("error")
            .attr("code", code.to_string())
            .attr("text", text.to_owned())
            .build()])
        .build()
}

fn contact(account: Option<&Account>, number: Option<&str>, user: &Node) -> Node {
    let kind = if account.is_some() { "in" } else { "out" };
    let content = number
        .map(|n| format!("+{n}"))
        .or_else(|| child(user, "contact").and_then(text));
    let builder = NodeBuilder::new("contact").attr("type", kind);
    match content {
        Some(c) if !c.is_empty() => builder.string_content(c).build(),
        _ => builder.build(),
    }
}

/// The JIDs of an account's devices: the phone (device 0) and its companions.
pub fn device_jids(account: &Account) -> Vec<(String, Option<u32>)> {
    std::iter::once((account.jid(), None))
        .chain(account.companions.values().map(|c| {
            (
                format!("{}:{}@s.whatsapp.net", account.phone, c.device),
                Some(c.key_index),
            )
        }))
        .collect()
}

/// The hash of a device list, as whatsmeow's `participantListHashV2` (`send.go`) computes it
/// and checks it against an own-devices notification's `dhash`: `2:` and the base64 of the first
/// six bytes of the SHA-256 of the sorted `user.agent:device@server` strings.
pub fn device_list_hash(account: &Account) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let mut ads: Vec<String> = std::iter::once(0u16)
        .chain(account.companions.keys().copied())
        .map(|device| format!("{}.0:{device}@s.whatsapp.net", account.phone))
        .collect();
    ads.sort();
    let digest = Sha256::digest(ads.concat().as_bytes());
    format!(
        "2:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(&digest[..6])
    )
}

/// The account's signed key-index list (`ADVSignedKeyIndexList`), signed by its identity key.
fn key_index_list(account: &Account) -> Node {
    let valid: Vec<u32> = account.companions.values().map(|c| c.key_index).collect();
    let details = wa::ADVKeyIndexList {
        raw_id: Some(account.raw_id),
        timestamp: Some(now_secs()),
        current_index: Some(valid.iter().copied().max().unwrap_or(0)),
        valid_indexes: valid,
        ..Default::default()
    }
    .encode_to_vec();
    let signature = account
        .identity
        .private_key
        .calculate_signature_for_multipart_message(&[&[6u8, 2], &details], &mut rand::rng())
        .map(|s| s.to_vec())
        .unwrap_or_default();
    let signed = wa::ADVSignedKeyIndexList {
        details: Some(details),
        account_signature: Some(signature),
        account_signature_key: Some(account.identity.public_key.public_key_bytes().to_vec()),
    }
    .encode_to_vec();
    NodeBuilder::new("key-index-list")
        .attr("ts", now_secs().to_string())
        .bytes(signed)
        .build()
}

fn devices(account: &Account) -> Node {
    let mut list = vec![NodeBuilder::new("device").attr("id", "0").build()];
    list.extend(account.companions.values().map(|c| {
        NodeBuilder::new("device")
            .attr("id", c.device.to_string())
            .attr("key-index", c.key_index.to_string())
            .build()
    }));
    NodeBuilder::new("devices")
        .children([
            NodeBuilder::new("device-list")
                .attr("hash", device_list_hash(account))
                .children(list)
                .build(),
            key_index_list(account),
        ])
        .build()
}

/// The `<devices dhash>` child of an `account_sync` notification: the account's own devices by
/// JID, as WhatsApp sends them when the device list changes (whatsmeow `notification.go`
/// `handleOwnDevicesNotification`, whatsapp-rust `handlers/notification/device.rs`
/// `parse_account_sync_device_list`).
pub fn own_devices(account: &Account) -> Node {
    let mut children: Vec<Node> = device_jids(account)
        .into_iter()
        .map(|(jid, key_index)| {
            let node = NodeBuilder::new("device").attr("jid", jid);
            match key_index {
                Some(index) => node.attr("key-index", index.to_string()).build(),
                None => node.build(),
            }
        })
        .collect();
    children.push(key_index_list(account));
    NodeBuilder::new("devices")
        .attr("dhash", device_list_hash(account))
        .children(children)
        .build()
}

/// The about text. A user who never set one is answered an empty `<status/>`, not an error:
/// whatsmeow reads the content and finds none (`user.go` `GetUserInfo`), Baileys reads no
/// content as `null` but throws on an `<error>` child (`USyncStatusProtocol.js`,
/// `assertNodeErrorFree`), whatsapp-rust reads no status (`wacore` `iq/usync.rs`
/// `parse_status`). An unknown number gets the same (it has no about either).
fn status(account: Option<&Account>) -> Node {
    match account.and_then(|a| a.status.clone().map(|s| (s, a.status_time))) {
        Some((status, time)) => NodeBuilder::new("status")
            .attr("t", time.to_string())
            .bytes(status.into_bytes())
            .build(),
        None => NodeBuilder::new("status").build(),
    }
}

fn business(account: Option<&Account>) -> Node {
    match account.and_then(|a| a.business_name.clone().map(|name| (name, a))) {
        Some((name, account)) => NodeBuilder::new("business")
            .children([NodeBuilder::new("verified_name")
                .bytes(verified_name_certificate(&name, u64::from(account.raw_id)))
                .build()])
            .build(),
        None => NodeBuilder::new("business").build(),
    }
}
