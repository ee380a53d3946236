//! Feeding the per-device identity store from what the session learns: push names, address-book
//! contacts (app state), business names. LID <-> phone-number pairs are stored by whatsapp-rust
//! itself through the key store; names are ours.

use std::sync::Arc;

use wacore_binary::Node;
use whatsapp_rust::Client;
use whatsapp_rust::types::events::Event;

use super::pool::SessionDeps;
use crate::domain::DeviceId;
use crate::store::identities::{self, NameUpdate};

/// Records the names an event carries.
pub(crate) async fn record_event(deps: &SessionDeps, device: DeviceId, event: &Event) {
    let update = match event {
        Event::PushNameUpdate(update) => NameUpdate {
            jid: update.jid.to_non_ad_string(),
            push_name: Some(update.new_push_name.clone()),
            ..NameUpdate::default()
        },
        Event::ContactUpdate(update) => NameUpdate {
            jid: update.jid.to_non_ad_string(),
            full_name: update.action.full_name.clone(),
            first_name: update.action.first_name.clone(),
            ..NameUpdate::default()
        },
        Event::BusinessStatusUpdate(update) => match &update.verified_name {
            Some(name) => NameUpdate {
                jid: update.jid.to_non_ad_string(),
                business_name: Some(name.clone()),
                ..NameUpdate::default()
            },
            None => return,
        },
        _ => return,
    };
    if update.is_empty() {
        return;
    }
    if let Err(err) = identities::record_names(&deps.db, device, &[update]).await {
        tracing::warn!(device_id = %device, error = %err, "recording contact names failed");
    }
}

/// The user part and server of a JID, device suffix dropped (`123:4@s.whatsapp.net` is
/// (`123`, `s.whatsapp.net`)).
fn user_and_server(jid: &str) -> Option<(&str, &str)> {
    let (user, server) = jid.split_once('@')?;
    let user = user.split([':', '.']).next().unwrap_or(user);
    (!user.is_empty() && user.bytes().all(|b| b.is_ascii_digit())).then_some((user, server))
}

/// Records the push name an incoming message carries (`notify`), under the sender's LID and
/// phone number, and teaches the LID/PN pair when the stanza names both (`sender_pn` beside a
/// LID sender, or `sender_lid` beside a phone-number sender). In groups the sender is the
/// `participant`.
pub(crate) async fn record_message_sender(
    deps: &SessionDeps,
    device: DeviceId,
    client: Option<Arc<Client>>,
    node: &Node,
) {
    let attr = |name: &str| node.attrs.get(name).map(ToString::to_string);
    let Some(push_name) = attr("notify").filter(|n| !n.trim().is_empty()) else {
        return;
    };
    let Some(sender) = attr("participant").or_else(|| attr("from")) else {
        return;
    };
    let Some((user, server)) = user_and_server(&sender) else {
        return;
    };
    let (lid, phone) = match server {
        "lid" => (
            Some(user.to_owned()),
            attr("participant_pn")
                .or_else(|| attr("sender_pn"))
                .and_then(|pn| user_and_server(&pn).map(|(u, _)| u.to_owned())),
        ),
        "s.whatsapp.net" | "c.us" => (
            attr("participant_lid")
                .or_else(|| attr("sender_lid"))
                .and_then(|l| user_and_server(&l).map(|(u, _)| u.to_owned())),
            Some(user.to_owned()),
        ),
        _ => return,
    };
    let mut updates = Vec::new();
    for jid in [
        lid.as_ref().map(|l| format!("{l}@lid")),
        phone.as_ref().map(|p| format!("{p}@s.whatsapp.net")),
    ]
    .into_iter()
    .flatten()
    {
        updates.push(NameUpdate {
            jid,
            push_name: Some(push_name.clone()),
            ..NameUpdate::default()
        });
    }
    if let Err(err) = identities::record_names(&deps.db, device, &updates).await {
        tracing::warn!(device_id = %device, error = %err, "recording a push name failed");
    }
    if let (Some(lid), Some(phone), Some(client)) = (lid, phone, client)
        && let Err(err) = client
            .add_lid_pn_mappings(
                vec![(lid, phone)],
                whatsapp_rust::lid_pn_cache::LearningSource::Other,
            )
            .await
    {
        tracing::warn!(device_id = %device, error = %err, "LID mapping from a message not stored");
    }
}

#[cfg(test)]
mod tests {
    use super::user_and_server;

    #[test]
    fn jids_split_without_device_suffix() {
        assert_eq!(
            user_and_server("5511999990000:3@s.whatsapp.net"),
            Some(("5511999990000", "s.whatsapp.net"))
        );
        assert_eq!(user_and_server("123456@lid"), Some(("123456", "lid")));
        assert_eq!(user_and_server("status@broadcast"), None);
        assert_eq!(user_and_server("no-at-sign"), None);
    }
}
