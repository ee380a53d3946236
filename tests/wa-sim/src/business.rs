//! Business accounts: the `w:biz` business-profile IQ and the verified-name certificate usync
//! answers with.
//!
//! Request and answer shapes follow whatsmeow `user.go` (`GetBusinessProfile`,
//! `parseBusinessProfile`), Baileys `Socket/chats.js` (`getBusinessProfile`) and whatsapp-rust
//! `wacore/src/iq/business.rs`: `<business_profile v="244"><profile jid/></business_profile>`
//! asked, `<business_profile><profile jid>` with `address`, `description`, `website`, `email`,
//! `categories/category` and `business_hours` answered. A user that is not a business is
//! answered an empty `<business_profile/>` (all three clients read "no profile").

use sha2::{Digest, Sha256};
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use waproto::buffa::Message;
use waproto::whatsapp as wa;

use crate::iq::Answer;
use crate::session::Session;
use crate::stanza::{attr, child, split_jid};
use crate::world::Account;

pub fn answer(session: &Session, iq: &Node, kind: &str) -> Answer {
    if session.login.is_none() {
        return Answer::Error(401);
    }
    let Some(query) = child(iq, "business_profile").filter(|_| kind == "get") else {
        return Answer::Error(501);
    };
    let world = session.sim.world.lock();
    let profiles: Vec<Node> = query
        .get_children_by_tag("profile")
        .filter_map(|profile| {
            let jid = attr(profile, "jid")?;
            let (user, server) = split_jid(&jid);
            let phone = world.phone_of(&user, &server)?;
            let account = world.account(&phone)?;
            profile_node(account, &jid)
        })
        .collect();
    Answer::Result(vec![
        NodeBuilder::new("business_profile")
            .attr("v", attr(query, "v").unwrap_or_else(|| "244".to_owned()))
            .children(profiles)
            .build(),
    ])
}

fn text_node(tag: &'static str, text: &str) -> Node {
    NodeBuilder::new(tag)
        .bytes(text.as_bytes().to_vec())
        .build()
}

/// A stable numeric id for a category name (WhatsApp's category ids are opaque numbers).
fn category_id(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(id) % 10_000_000_000_000_000).to_string()
}

fn profile_node(account: &Account, jid: &str) -> Option<Node> {
    let profile = account.business_profile.as_ref()?;
    let mut children = Vec::new();
    if let Some(address) = &profile.address {
        children.push(text_node("address", address));
    }
    children.push(text_node(
        "description",
        profile.description.as_deref().unwrap_or_default(),
    ));
    children.extend(profile.websites.iter().map(|w| text_node("website", w)));
    if let Some(email) = &profile.email {
        children.push(text_node("email", email));
    }
    let categories: Vec<Node> = profile
        .category
        .iter()
        .map(|name| {
            NodeBuilder::new("category")
                .attr("id", category_id(name))
                .bytes(name.as_bytes().to_vec())
                .build()
        })
        .collect();
    children.push(NodeBuilder::new("categories").children(categories).build());
    Some(
        NodeBuilder::new("profile")
            .attr("jid", jid.to_owned())
            .attr("tag", account.raw_id.to_string())
            .children(children)
            .build(),
    )
}

/// A `VerifiedNameCertificate` for a business name, as usync's `<verified_name>` carries it.
pub fn verified_name_certificate(name: &str, serial: u64) -> Vec<u8> {
    let details = wa::verified_name_certificate::Details {
        serial: Some(serial),
        issuer: Some("smb:wa".to_owned()),
        verified_name: Some(name.to_owned()),
        ..Default::default()
    }
    .encode_to_vec();
    wa::VerifiedNameCertificate {
        details: Some(details),
        ..Default::default()
    }
    .encode_to_vec()
}
