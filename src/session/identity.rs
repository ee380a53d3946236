//! Feeding the per-device identity store from what the session learns: push names, address-book
//! contacts (app state), business names. LID <-> phone-number pairs are stored by whatsapp-rust
//! itself through the key store; names are ours.

use std::sync::Arc;

use wacore_binary::Node;
use whatsapp_rust::Client;
use whatsapp_rust::types::events::Event;

use sqlx::PgPool;

use serde_json::Value;

use crate::domain::{ContactId, DeviceScope, EventKind, Identity, Lid, PhoneNumber};
use crate::session::outbox::{self, Pending};
use crate::store::StoreError;
use crate::store::events::Wakeup;
use crate::store::identities::{self, NameUpdate};

/// Records the names an event carries.
pub(crate) async fn record_event(db: &PgPool, wakeup: &Wakeup, scope: &DeviceScope, event: &Event) {
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
    if let Err(err) = record(db, wakeup, scope, &[update], None).await {
        tracing::warn!(error = %err, "recording contact names failed");
    }
}

/// Stores names and, in the same transaction, a `contact.pushname` event per user whose push
/// name is new or changed: one per user, though the name may be stored under its LID and its
/// phone number both, and none when the user's other JID already held that name (a name first
/// seen under the phone number, then under the LID once the pair is known). `pair`: the user's
/// LID and phone number when the caller has just learned them together (a message stanza naming
/// both), before the device's store holds the mapping.
async fn record(
    db: &PgPool,
    wakeup: &Wakeup,
    scope: &DeviceScope,
    updates: &[NameUpdate],
    pair: Option<(&Lid, &PhoneNumber)>,
) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    let changes = identities::record_names_in(&mut tx, scope, updates).await?;
    if changes.is_empty() {
        tx.commit().await?;
        return Ok(());
    }
    let changes: Vec<(ContactId, &identities::PushNameChange)> = changes
        .iter()
        .filter_map(|c| Some((ContactId::from_wire(&c.jid)?, c)))
        .collect();
    let users: Vec<ContactId> = changes.iter().map(|(id, _)| id.clone()).collect();
    // One identity per user, in order.
    let mut known = identities::complete(db, scope, &users).await?;
    if let Some((lid, phone)) = pair {
        for identity in &mut known {
            if identity.lid.as_ref() == Some(lid) || identity.phone.as_ref() == Some(phone) {
                identity.lid = Some(lid.clone());
                identity.phone = Some(phone.clone());
            }
        }
    }
    // What the other JID of each user held before this transaction (read outside it).
    let changed: Vec<&str> = changes.iter().map(|(_, c)| c.jid.as_str()).collect();
    let others: Vec<String> = known
        .iter()
        .flat_map(|i| [i.pn_jid(), i.lid_jid()])
        .flatten()
        .filter(|jid| !changed.contains(&jid.as_str()))
        .collect();
    let before = identities::names_of(db, scope, &others).await?;
    let mut events: Vec<(Identity, Pending)> = Vec::new();
    for ((_, change), identity) in changes.iter().zip(known) {
        if events.iter().any(|(seen, _)| seen.same_user(&identity)) {
            continue;
        }
        let already = [identity.pn_jid(), identity.lid_jid()]
            .into_iter()
            .flatten()
            .filter_map(|jid| before.get(&jid))
            .any(|names| names.push_name.as_deref() == Some(change.push_name.as_str()));
        if already {
            continue;
        }
        let mut data = outbox::contact(&identity);
        data["push_name"] = Value::String(change.push_name.clone());
        events.push((identity, Pending::new(EventKind::PushName, data)));
    }
    let events: Vec<Pending> = events.into_iter().map(|(_, e)| e).collect();
    let any = !events.is_empty();
    outbox::append_in(&mut tx, scope, &events).await?;
    tx.commit().await?;
    if any {
        wakeup.committed();
    }
    Ok(())
}

/// Records the push name an incoming message carries (`notify`), under the sender's LID and
/// phone number, and teaches the LID/PN pair when the stanza names both (`sender_pn` beside a
/// LID sender, or `sender_lid` beside a phone-number sender). In groups the sender is the
/// `participant`.
pub(crate) async fn record_message_sender(
    db: &PgPool,
    wakeup: &Wakeup,
    scope: &DeviceScope,
    client: Option<Arc<Client>>,
    node: &Node,
) {
    let attr = |name: &str| node.attrs.get(name).map(ToString::to_string);
    let Some(push_name) = attr("notify").filter(|n| !n.trim().is_empty()) else {
        return;
    };
    let Some(sender) = attr("participant")
        .or_else(|| attr("from"))
        .and_then(|s| ContactId::from_wire(&s))
    else {
        return;
    };
    let other = |names: [&str; 2]| {
        names
            .iter()
            .find_map(|name| attr(name).and_then(|v| ContactId::from_wire(&v)))
    };
    let (lid, phone) = match sender {
        ContactId::Lid(lid) => (
            Some(lid),
            other(["participant_pn", "sender_pn"]).and_then(|c| c.phone().cloned()),
        ),
        ContactId::Phone(phone) => (
            other(["participant_lid", "sender_lid"]).and_then(|c| c.lid().cloned()),
            Some(phone),
        ),
    };
    let updates: Vec<NameUpdate> = [
        lid.as_ref().map(|l| l.jid()),
        phone.as_ref().map(|p| p.jid()),
    ]
    .into_iter()
    .flatten()
    .map(|jid| NameUpdate {
        jid,
        push_name: Some(push_name.clone()),
        ..NameUpdate::default()
    })
    .collect();
    let pair = lid.as_ref().zip(phone.as_ref());
    if let Err(err) = record(db, wakeup, scope, &updates, pair).await {
        tracing::warn!(error = %err, "recording a push name failed");
    }
    if let (Some(lid), Some(phone), Some(client)) = (lid, phone, client)
        && let Err(err) = client
            .add_lid_pn_mappings(
                vec![(lid.as_str().to_owned(), phone.as_str().to_owned())],
                whatsapp_rust::lid_pn_cache::LearningSource::Other,
            )
            .await
    {
        tracing::warn!(error = %err, "LID mapping from a message not stored");
    }
}

/// Teaches the LID/phone-number pair an address-book contact (app state) carries: its index
/// names the contact by phone number, its `lidJid` by LID.
pub(crate) async fn learn_contact_pair(client: Option<Arc<Client>>, event: &Event) {
    let Event::ContactUpdate(update) = event else {
        return;
    };
    let phone = ContactId::from_wa(&update.jid).and_then(|c| c.phone().cloned());
    let lid = update
        .action
        .lid_jid
        .as_deref()
        .and_then(ContactId::from_wire)
        .and_then(|c| c.lid().cloned());
    if let (Some(lid), Some(phone), Some(client)) = (lid, phone, client)
        && let Err(err) = client
            .add_lid_pn_mappings(
                vec![(lid.as_str().to_owned(), phone.as_str().to_owned())],
                whatsapp_rust::lid_pn_cache::LearningSource::Other,
            )
            .await
    {
        tracing::warn!(error = %err, "LID mapping from an address-book contact not stored");
    }
}
