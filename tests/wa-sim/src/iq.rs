//! Answers to the IQs companions send, by namespace: keep-alive, passive/active, pre-keys,
//! props, block list, usync, companion management. Groups and communities are in
//! [`crate::groups`]; privacy in [`crate::privacy`], pictures in [`crate::picture`], app state
//! in [`crate::appstate`], MEX in [`crate::mex`].
//!
//! Namespaces the simulator does not implement are answered `501 feature-not-implemented`,
//! never left to time out.

use sha1::{Digest, Sha1};
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::session::Session;
use crate::stanza::{attr, child, child_bytes, split_jid};
use crate::world::Outbound;

/// How an IQ is answered.
pub enum Answer {
    /// `type="result"` with these children.
    Result(Vec<Node>),
    /// `type="error"` with this code.
    Error(u16),
}

pub async fn answer(session: &mut Session, iq: &Node, xmlns: &str, kind: &str) -> Answer {
    match (xmlns, kind) {
        ("w:p", _) => Answer::Result(Vec::new()),
        ("passive", "set") => Answer::Result(Vec::new()),
        ("encrypt", _) => encrypt(session, iq, kind),
        ("abt", "get") => Answer::Result(vec![
            NodeBuilder::new("props")
                .attr("protocol", "1")
                .attr("hash", "wa-sim")
                .attr("refresh", "86400")
                .build(),
        ]),
        ("w", "get") if child(iq, "props").is_some() => Answer::Result(vec![
            NodeBuilder::new("props")
                .attr("version", "1")
                .attr("hash", "wa-sim")
                .build(),
        ]),
        ("privacy", _) => crate::privacy::answer(session, iq, kind),
        ("blocklist", _) => crate::blocklist::answer(session, iq, kind),
        ("usync", "get") => crate::usync::answer(session, iq),
        ("w:sync:app:state", "set") => crate::appstate::answer(session, iq),
        ("urn:xmpp:whatsapp:dirty", _) => Answer::Result(Vec::new()),
        ("md", _) => md(session, iq),
        ("w:g2", _) => crate::groups::answer(session, iq, kind),
        ("w:biz", _) => crate::business::answer(session, iq, kind),
        ("w:profile:picture", _) => crate::picture::answer(session, iq, kind),
        ("w:mex", "get") => crate::mex::answer(session, iq),
        ("status", "set") => Answer::Result(Vec::new()),
        ("disappearing_mode", "set") => Answer::Result(Vec::new()),
        _ => {
            tracing::debug!(xmlns, kind, "IQ namespace not simulated");
            Answer::Error(501)
        }
    }
}

fn logged_in(session: &Session) -> Option<(String, u16)> {
    session.login.clone()
}

// --- encrypt: pre-keys and key bundles ------------------------------------------------------

fn id_from_bytes(b: &[u8]) -> u32 {
    b.iter()
        .fold(0u32, |acc, byte| (acc << 8) | u32::from(*byte))
}

fn id_bytes(id: u32) -> Vec<u8> {
    id.to_be_bytes()[1..].to_vec()
}

fn encrypt(session: &mut Session, iq: &Node, kind: &str) -> Answer {
    let Some((phone, device)) = logged_in(session) else {
        return Answer::Error(401);
    };
    let mut world = session.sim.world.lock();
    let Some(companion) = world
        .account_mut(&phone)
        .and_then(|a| a.companions.get_mut(&device))
    else {
        return Answer::Error(401);
    };
    if kind == "get" && child(iq, "count").is_some() {
        return Answer::Result(vec![
            NodeBuilder::new("count")
                .attr("value", companion.prekeys.len().to_string())
                .build(),
        ]);
    }
    if kind == "set" && child(iq, "list").is_some() {
        if let Some(list) = child(iq, "list") {
            for key in list.get_children_by_tag("key") {
                if let (Some(id), Some(value)) = (child_bytes(key, "id"), child_bytes(key, "value"))
                {
                    companion.prekeys.insert(id_from_bytes(id), value.to_vec());
                }
            }
        }
        if let Some(skey) = child(iq, "skey") {
            store_signed_prekey(companion, skey);
        }
        // With a bundle uploaded, the phone shares the app-state keys with its new companion.
        let key = world.app_state.entry(phone.clone()).or_default().key();
        if let Some(recipient) = world
            .account_mut(&phone)
            .and_then(|account| crate::key_share::take(account, device, key))
        {
            let conn = session.conn.clone();
            let sim = session.sim.clone();
            tokio::spawn(async move {
                match crate::key_share::message(recipient, sim.stanza_id()).await {
                    Ok(node) => {
                        sim.stats.key_share();
                        conn.send(Outbound::Node(node));
                    }
                    Err(err) => tracing::warn!(error = %err, "app-state key share not sent"),
                }
            });
        }
        return Answer::Result(Vec::new());
    }
    if kind == "set"
        && let Some(rotate) = child(iq, "rotate")
    {
        if let Some(skey) = child(rotate, "skey") {
            store_signed_prekey(companion, skey);
        }
        return Answer::Result(Vec::new());
    }
    if kind == "get" && child(iq, "digest").is_some() {
        return match companion.signed_prekey.clone() {
            Some((skey_id, skey_pub, skey_sig)) => {
                let mut hash = Sha1::new();
                hash.update(companion.identity_pub);
                hash.update(&skey_pub);
                hash.update(&skey_sig);
                for value in companion.prekeys.values() {
                    hash.update(value);
                }
                let ids: Vec<Node> = companion
                    .prekeys
                    .keys()
                    .map(|id| NodeBuilder::new("id").bytes(id_bytes(*id)).build())
                    .collect();
                Answer::Result(vec![
                    NodeBuilder::new("digest")
                        .children([
                            NodeBuilder::new("registration")
                                .bytes(companion.registration_id.to_be_bytes().to_vec())
                                .build(),
                            NodeBuilder::new("type").bytes(vec![5]).build(),
                            NodeBuilder::new("identity")
                                .bytes(companion.identity_pub.to_vec())
                                .build(),
                            NodeBuilder::new("skey")
                                .children([
                                    NodeBuilder::new("id").bytes(id_bytes(skey_id)).build(),
                                    NodeBuilder::new("value").bytes(skey_pub).build(),
                                    NodeBuilder::new("signature").bytes(skey_sig).build(),
                                ])
                                .build(),
                            NodeBuilder::new("list").children(ids).build(),
                            NodeBuilder::new("hash")
                                .bytes(hash.finalize().to_vec())
                                .build(),
                        ])
                        .build(),
                ])
            }
            // WhatsApp answers 404 when it holds no bundle; the client uploads one.
            None => Answer::Error(404),
        };
    }
    if kind == "get"
        && let Some(key) = child(iq, "key")
    {
        let users: Vec<Node> = key
            .get_children_by_tag("user")
            .map(|user| {
                let jid = attr(user, "jid").unwrap_or_default();
                key_bundle(&mut world, &jid)
            })
            .collect();
        return Answer::Result(vec![NodeBuilder::new("list").children(users).build()]);
    }
    Answer::Error(400)
}

fn store_signed_prekey(companion: &mut crate::world::Companion, skey: &Node) {
    if let (Some(id), Some(value), Some(signature)) = (
        child_bytes(skey, "id"),
        child_bytes(skey, "value"),
        child_bytes(skey, "signature"),
    ) {
        companion.signed_prekey = Some((id_from_bytes(id), value.to_vec(), signature.to_vec()));
    }
}

/// A device's key bundle, consuming one of its one-time pre-keys as WhatsApp does. Phones
/// (device 0) hold no simulated Signal keys: their bundle is answered "not found".
fn key_bundle(world: &mut crate::world::WorldState, jid: &str) -> Node {
    let (user, server) = split_jid(jid);
    let device = crate::stanza::jid_device(jid);
    let not_found = || {
        NodeBuilder::new("user")
            .attr("jid", jid.to_owned())
            .children([NodeBuilder::new("error")
                .attr("code", "404")
                .attr("text", "item-not-found")
                .build()])
            .build()
    };
    let Some(phone) = world.phone_of(&user, &server) else {
        return not_found();
    };
    let Some(companion) = world
        .account_mut(&phone)
        .and_then(|a| a.companions.get_mut(&device))
    else {
        return not_found();
    };
    let Some((skey_id, skey_pub, skey_sig)) = companion.signed_prekey.clone() else {
        return not_found();
    };
    let mut nodes = vec![
        NodeBuilder::new("registration")
            .bytes(companion.registration_id.to_be_bytes().to_vec())
            .build(),
        NodeBuilder::new("type").bytes(vec![5]).build(),
        NodeBuilder::new("identity")
            .bytes(companion.identity_pub.to_vec())
            .build(),
        NodeBuilder::new("skey")
            .children([
                NodeBuilder::new("id").bytes(id_bytes(skey_id)).build(),
                NodeBuilder::new("value").bytes(skey_pub).build(),
                NodeBuilder::new("signature").bytes(skey_sig).build(),
            ])
            .build(),
    ];
    if let Some((&id, _)) = companion.prekeys.iter().next()
        && let Some(value) = companion.prekeys.remove(&id)
    {
        nodes.push(
            NodeBuilder::new("key")
                .children([
                    NodeBuilder::new("id").bytes(id_bytes(id)).build(),
                    NodeBuilder::new("value").bytes(value).build(),
                ])
                .build(),
        );
    }
    nodes.push(
        NodeBuilder::new("device-identity")
            .bytes(companion.signed_identity.clone())
            .build(),
    );
    NodeBuilder::new("user")
        .attr("jid", jid.to_owned())
        .children(nodes)
        .build()
}

// --- md: companion management --------------------------------------------------------------

fn md(session: &mut Session, iq: &Node) -> Answer {
    if let Some(remove) = child(iq, "remove-companion-device") {
        let Some((phone, device)) = logged_in(session) else {
            return Answer::Error(401);
        };
        let target = attr(remove, "jid").unwrap_or_default();
        let target_device = crate::stanza::jid_device(&target);
        let (target_user, _) = split_jid(&target);
        if target_user != phone {
            return Answer::Error(403);
        }
        let mut world = session.sim.world.lock();
        if let Some(account) = world.account_mut(&phone) {
            account.companions.remove(&target_device);
        }
        world.announce_devices(&phone, Some(device), &session.sim.stanza_id());
        if target_device != device
            && let Some(handle) = world.sessions.remove(&(phone.clone(), target_device))
        {
            handle.send(Outbound::StreamError(
                NodeBuilder::new("stream:error")
                    .attr("code", "401")
                    .children([NodeBuilder::new("conflict")
                        .attr("type", "device_removed")
                        .build()])
                    .build(),
            ));
        }
        return Answer::Result(Vec::new());
    }
    if let Some(reg) = child(iq, "link_code_companion_reg") {
        return crate::pair_code::companion_request(session, iq, reg);
    }
    Answer::Error(501)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_byte_ids_round_trip() {
        for id in [0u32, 1, 255, 256, 0x00ab_cdef] {
            assert_eq!(id_from_bytes(&id_bytes(id)), id);
        }
    }
}
