//! The account's privacy settings (`privacy` IQ), stored per account.
//!
//! - Get: `<iq xmlns="privacy" type="get"><privacy/></iq>`, answered `<privacy>` with one
//!   `<category name value/>` per setting. whatsmeow `privacy.go` `TryFetchPrivacySettings` /
//!   `parsePrivacySettings` (names `groupadd`, `last`, `status`, `profile`, `readreceipts`,
//!   `online`, `calladd`, `messages`, `defense`, `stickers`); whatsapp-rust
//!   `client/iq_ops.rs` `fetch_privacy_settings` and `wacore/src/iq/privacy.rs`
//!   `PrivacySettingsSpec` (`WAWebQueryPrivacySettingsJob`); Baileys `chats.js`
//!   `fetchPrivacySettings`.
//! - Set: `<privacy><category name value [dhash]>[<user action jid [pn_jid]/>…]</category>
//!   </privacy>`, answered with the category as it now is (`WAWebSetPrivacyJob`'s
//!   `setPrivacyParser` reads `name`, `value`, `dhash`; whatsmeow `SetPrivacySetting` folds the
//!   value it sent into its cache). A value the category does not take, or an unknown category,
//!   is 400 (`WAWebPrivacySettings`' value sets, as whatsapp-rust
//!   `PrivacyCategory::is_valid_value` lists them; `stickers` from whatsmeow's types). Baileys
//!   `chats.js` `updateLastSeenPrivacy`, `updateOnlinePrivacy`, `updateProfilePicturePrivacy`,
//!   `updateStatusPrivacy`, `updateReadReceiptsPrivacy`, `updateGroupsAddPrivacy`,
//!   `updateCallPrivacy`, `updateMessagesPrivacy` send the same shape.
//! - The account's other companions are told with `<notification type="account_sync"><privacy>
//!   <category name value/></privacy></notification>` (whatsmeow `notification.go`
//!   `handlePrivacySettingsNotification`).
//!
//! `groupadd` is the setting the group module reads (an account that lets only its contacts add
//! it answers a group add with an invite), and `profile` decides who sees the picture
//! ([`crate::picture`]).

use std::collections::BTreeMap;

use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::iq::Answer;
use crate::session::Session;
use crate::sim::now_secs;
use crate::stanza::{attr, child};
use crate::world::{Outbound, WorldState};

/// Every category, with the values it takes; the first is WhatsApp's default.
const CATEGORIES: &[(&str, &[&str])] = &[
    ("last", &["all", "contacts", "contact_blacklist", "none"]),
    ("online", &["all", "match_last_seen"]),
    ("profile", &["all", "contacts", "contact_blacklist", "none"]),
    ("status", &["contacts", "all", "contact_blacklist", "none"]),
    (
        "groupadd",
        &["all", "contacts", "contact_blacklist", "none"],
    ),
    ("readreceipts", &["all", "none"]),
    ("calladd", &["all", "known", "contacts"]),
    ("messages", &["all", "contacts"]),
    ("defense", &["off", "on_standard"]),
    ("stickers", &["contacts", "contact_allowlist", "none"]),
];

/// Whether `value` is one `category` takes.
pub fn valid(category: &str, value: &str) -> bool {
    CATEGORIES
        .iter()
        .any(|(name, values)| *name == category && values.contains(&value))
}

/// The account's settings, every category present.
pub fn settings(world: &WorldState, phone: &str) -> BTreeMap<String, String> {
    let changed = world.privacy.get(phone);
    let restricted = world.account(phone).is_some_and(|a| a.restrict_group_add);
    CATEGORIES
        .iter()
        .map(|(name, values)| {
            let value = match changed.and_then(|c| c.get(*name)) {
                Some(value) => value.clone(),
                // An account created with its group adds restricted lets its contacts add it.
                None if *name == "groupadd" && restricted => "contacts".to_owned(),
                None => values[0].to_owned(),
            };
            ((*name).to_owned(), value)
        })
        .collect()
}

/// Changes one setting (already validated).
pub fn set(world: &mut WorldState, phone: &str, category: &str, value: &str) {
    world
        .privacy
        .entry(phone.to_owned())
        .or_default()
        .insert(category.to_owned(), value.to_owned());
    if category == "groupadd"
        && let Some(account) = world.account_mut(phone)
    {
        account.restrict_group_add = value != "all";
    }
}

/// Whether `viewer` may see `owner`'s picture under `owner`'s `profile` setting.
pub fn may_see_picture(world: &WorldState, owner: &str, viewer: &str) -> bool {
    match settings(world, owner).get("profile").map(String::as_str) {
        Some("none") => false,
        Some("contacts") => crate::appstate::has_contact(world, owner, viewer),
        _ => true,
    }
}

/// `GET /accounts/{phone}/privacy`: the account's settings, every category.
pub async fn control_get(
    axum::extract::State(sim): axum::extract::State<std::sync::Arc<crate::sim::Sim>>,
    axum::extract::Path(phone): axum::extract::Path<String>,
) -> Result<axum::Json<BTreeMap<String, String>>, crate::control::ControlError> {
    let phone = crate::control::digits(&phone);
    let world = sim.world.lock();
    if world.account(&phone).is_none() {
        return Err(crate::control::ControlError(
            axum::http::StatusCode::NOT_FOUND,
            "no such account".to_owned(),
        ));
    }
    Ok(axum::Json(settings(&world, &phone)))
}

fn category_node(name: &str, value: &str) -> Node {
    NodeBuilder::new("category")
        .attr("name", name.to_owned())
        .attr("value", value.to_owned())
        .build()
}

pub fn answer(session: &mut Session, iq: &Node, kind: &str) -> Answer {
    let Some((phone, _)) = session.login.clone() else {
        return Answer::Error(401);
    };
    let mut world = session.sim.world.lock();
    match kind {
        "get" => Answer::Result(vec![
            NodeBuilder::new("privacy")
                .children(
                    settings(&world, &phone)
                        .iter()
                        .map(|(name, value)| category_node(name, value)),
                )
                .build(),
        ]),
        "set" => {
            let Some(category) = child(iq, "privacy").and_then(|p| child(p, "category")) else {
                return Answer::Error(400);
            };
            let (Some(name), Some(value)) = (attr(category, "name"), attr(category, "value"))
            else {
                return Answer::Error(400);
            };
            if !valid(&name, &value) {
                return Answer::Error(400);
            }
            set(&mut world, &phone, &name, &value);
            let notification = NodeBuilder::new("notification")
                .attr("from", format!("{phone}@s.whatsapp.net"))
                .attr("type", "account_sync")
                .attr("id", session.sim.stanza_id())
                .attr("t", now_secs().to_string())
                .children([NodeBuilder::new("privacy")
                    .children([category_node(&name, &value)])
                    .build()])
                .build();
            for handle in world.companion_sessions(&phone) {
                if handle.id != session.conn.id {
                    handle.send(Outbound::Node(notification.clone()));
                }
            }
            Answer::Result(vec![
                NodeBuilder::new("privacy")
                    .children([category_node(&name, &value)])
                    .build(),
            ])
        }
        _ => Answer::Error(400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_per_category() {
        assert!(valid("last", "contacts"));
        assert!(valid("online", "match_last_seen"));
        assert!(!valid("online", "contacts"));
        assert!(!valid("readreceipts", "contacts"));
        assert!(valid("defense", "on_standard"));
        assert!(!valid("nosuch", "all"));
    }

    #[test]
    fn defaults_cover_every_category() {
        let world = WorldState::default();
        let settings = settings(&world, "5511900000000");
        assert_eq!(settings.len(), CATEGORIES.len());
        assert_eq!(settings["status"], "contacts");
        assert_eq!(settings["defense"], "off");
    }
}
