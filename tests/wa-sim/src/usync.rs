//! usync: the batched user query. One IQ asks about many users at once, by phone number or
//! JID, for any of the protocols the client lists (contact registration, LID, devices, status,
//! business, picture, disappearing mode), and each user is answered with LID and phone number
//! as WhatsApp does.

use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use waproto::buffa::Message;
use waproto::whatsapp as wa;

use crate::iq::{Answer, verified_name_certificate};
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

fn devices(account: &Account) -> Node {
    let mut list = vec![NodeBuilder::new("device").attr("id", "0").build()];
    list.extend(account.companions.values().map(|c| {
        NodeBuilder::new("device")
            .attr("id", c.device.to_string())
            .attr("key-index", c.key_index.to_string())
            .build()
    }));
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
    NodeBuilder::new("devices")
        .children([
            NodeBuilder::new("device-list")
                .attr("hash", format!("2:{}", account.companions.len()))
                .children(list)
                .build(),
            NodeBuilder::new("key-index-list")
                .attr("ts", now_secs().to_string())
                .bytes(signed)
                .build(),
        ])
        .build()
}

fn status(account: Option<&Account>) -> Node {
    match account.and_then(|a| a.status.clone()) {
        Some(status) => NodeBuilder::new("status")
            .attr("t", now_secs().to_string())
            .string_content(status)
            .build(),
        None => error_node("status", 404, "item-not-found"),
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
