//! The account's block list: the `blocklist` IQ (get, block, unblock), the `account_sync`
//! notification that tells companions the list changed, and the phone-side change the control
//! API makes.
//!
//! WhatsApp keeps the list by LID. What follows is WhatsApp Web's exchange, as quoted in
//! whatsapp-rust PR #1357 ("stop dropping four things WA Web's own parsers read"):
//!
//! - The get request may carry `<item dhash>`, the hash of the list the client holds. The answer
//!   is `<list dhash addressing_mode>`; when the client's hash is stale (or absent) it is marked
//!   `type="mismatch"` and carries every entry, else it carries none ("no change in blocklist,
//!   skip update"). wa-sim's lists are in PN addressing: each `<item>` has the phone-number JID
//!   in `jid` and the LID in `lid`, so a client learns both identifiers of a user it never saw.
//! - A block names the LID in `jid` with the phone-number JID in `pn_jid`; a block without
//!   `pn_jid`, or a block or unblock by phone number alone, is refused with 400 (whatsmeow PR
//!   #1137 "switch UpdateBlocklist to use LIDs", Baileys `chats.js` `updateBlockStatus`, which
//!   throws before sending a block without `pn_jid`). The answer is the new list.
//! - An `account_sync` notification with a `<blocklist dhash prev_dhash>` child tells the other
//!   companions the list changed. WA Web treats it as a signal to fetch the list again
//!   (`fetchAndUpdateBlocklist("notification")`); the `<item jid action>` children it carries are
//!   read by WA Web only for usernames (and by Baileys as `blocklist.update` events).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use sha2::{Digest, Sha256};
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::api::{BlocklistChange, BlocklistView};
use crate::control::{ControlError, digits};
use crate::iq::Answer;
use crate::session::Session;
use crate::sim::{Sim, now_secs};
use crate::stanza::{attr, child, split_jid};
use crate::world::{Account, Outbound, WorldState};

/// WhatsApp's block-list hash is opaque to clients; any value that changes with the list works.
pub fn dhash(items: &[String]) -> String {
    let mut sorted: Vec<&String> = items.iter().collect();
    sorted.sort();
    let mut hasher = Sha256::new();
    for item in sorted {
        hasher.update(item.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("2:{hex}")
}

/// `<list dhash addressing_mode="pn">`, with the entries (`<item jid=PN lid=LID>`) when
/// `with_items`.
fn list_node(world: &WorldState, account: &Account, kind: Option<&str>, with_items: bool) -> Node {
    let mut list = NodeBuilder::new("list")
        .attr("dhash", account.blocklist_dhash.clone())
        .attr("addressing_mode", "pn");
    if let Some(kind) = kind {
        list = list.attr("type", kind.to_owned());
    }
    if !with_items {
        return list.build();
    }
    list.children(account.blocklist.iter().map(|lid_jid| {
        let (lid, _) = split_jid(lid_jid);
        match world.lids.get(&lid) {
            Some(phone) => NodeBuilder::new("item")
                .attr("jid", format!("{phone}@s.whatsapp.net"))
                .attr("lid", lid_jid.clone())
                .build(),
            None => NodeBuilder::new("item")
                .attr("jid", lid_jid.clone())
                .build(),
        }
    }))
    .build()
}

pub fn answer(session: &mut Session, iq: &Node, kind: &str) -> Answer {
    let Some((phone, device)) = session.login.clone() else {
        return Answer::Error(401);
    };
    if kind == "get" {
        let world = session.sim.world.lock();
        let Some(account) = world.account(&phone) else {
            return Answer::Error(401);
        };
        let held = child(iq, "item").and_then(|item| attr(item, "dhash"));
        let current = held.as_deref() == Some(account.blocklist_dhash.as_str());
        return Answer::Result(vec![if current {
            list_node(&world, account, None, false)
        } else {
            list_node(&world, account, Some("mismatch"), true)
        }]);
    }
    let Some(item) = child(iq, "item") else {
        return Answer::Error(400);
    };
    let action = attr(item, "action").unwrap_or_default();
    let (lid, server) = split_jid(&attr(item, "jid").unwrap_or_default());
    let mut world = session.sim.world.lock();
    if server != "lid" {
        return Answer::Error(400);
    }
    match action.as_str() {
        "block" => {
            // The phone number must be the LID's.
            let pn = attr(item, "pn_jid").map(|pn| split_jid(&pn));
            match (pn, world.lids.get(&lid)) {
                (Some((pn, server)), Some(owner)) if server == "s.whatsapp.net" && pn == *owner => {
                }
                (Some(_), None) => return Answer::Error(404),
                _ => return Answer::Error(400),
            }
        }
        "unblock" => {}
        _ => return Answer::Error(400),
    }
    let (changed, notification) = change(&mut world, &session.sim, &phone, &action, &lid);
    let Some(account) = world.account(&phone) else {
        return Answer::Error(401);
    };
    let list = list_node(&world, account, None, true);
    if changed && let Some(notification) = notification {
        // The account's other companions learn of the change.
        for ((p, d), handle) in &world.sessions {
            if *p == phone && *d != device {
                handle.send(Outbound::Node(notification.clone()));
            }
        }
    }
    Answer::Result(vec![list])
}

/// Applies a block or unblock of `lid` to `phone`'s list. Answers whether the list changed and
/// the notification that announces it.
fn change(
    world: &mut WorldState,
    sim: &Sim,
    phone: &str,
    action: &str,
    lid: &str,
) -> (bool, Option<Node>) {
    let lid_jid = format!("{lid}@lid");
    let Some(account) = world.account_mut(phone) else {
        return (false, None);
    };
    let previous = account.blocklist_dhash.clone();
    let changed = match action {
        "block" if !account.blocklist.contains(&lid_jid) => {
            account.blocklist.push(lid_jid.clone());
            true
        }
        "unblock" if account.blocklist.contains(&lid_jid) => {
            account.blocklist.retain(|j| j != &lid_jid);
            true
        }
        _ => false,
    };
    if !changed {
        return (false, None);
    }
    account.blocklist_dhash = dhash(&account.blocklist);
    let notification = NodeBuilder::new("notification")
        .attr("from", account.jid())
        .attr("type", "account_sync")
        .attr("id", sim.stanza_id())
        .attr("t", now_secs().to_string())
        .children([NodeBuilder::new("blocklist")
            .attr("dhash", account.blocklist_dhash.clone())
            .attr("prev_dhash", previous)
            .children([NodeBuilder::new("item")
                .attr("jid", lid_jid)
                .attr("action", action.to_owned())
                .build()])
            .build()])
        .build();
    (true, Some(notification))
}

pub fn view(account: &Account) -> BlocklistView {
    BlocklistView {
        items: account.blocklist.clone(),
        dhash: account.blocklist_dhash.clone(),
    }
}

/// `POST /accounts/{phone}/blocklist`: a change the phone makes to its block list; every
/// companion is notified.
pub async fn control_change(
    State(sim): State<Arc<Sim>>,
    Path(phone): Path<String>,
    axum::Json(request): axum::Json<BlocklistChange>,
) -> Result<axum::Json<BlocklistView>, ControlError> {
    let phone = digits(&phone);
    if !matches!(request.action.as_str(), "block" | "unblock") {
        return Err(ControlError(
            StatusCode::BAD_REQUEST,
            "action must be block or unblock".to_owned(),
        ));
    }
    let mut world = sim.world.lock();
    let (user, server) = split_jid(&request.jid);
    let target_lid = world
        .phone_of(&user, &server)
        .and_then(|p| world.account(&p).map(|a| a.lid.clone()))
        .ok_or_else(|| ControlError(StatusCode::NOT_FOUND, "no account for that JID".to_owned()))?;
    if world.account(&phone).is_none() {
        return Err(ControlError(
            StatusCode::NOT_FOUND,
            "no such account".to_owned(),
        ));
    }
    let (_, notification) = change(&mut world, &sim, &phone, &request.action, &target_lid);
    if let Some(notification) = notification {
        for handle in world.companion_sessions(&phone) {
            handle.send(Outbound::Node(notification.clone()));
        }
    }
    world
        .account(&phone)
        .map(|a| axum::Json(view(a)))
        .ok_or_else(|| ControlError(StatusCode::NOT_FOUND, "no such account".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_changes_with_the_list() {
        let empty = dhash(&[]);
        let one = dhash(&["1@lid".to_owned()]);
        assert_ne!(empty, one);
        assert!(one.starts_with("2:"));
        assert_eq!(
            dhash(&["1@lid".to_owned(), "2@lid".to_owned()]),
            dhash(&["2@lid".to_owned(), "1@lid".to_owned()])
        );
    }
}
