//! Nothing missed while away: at every connect the device's groups as WhatsApp answers them
//! (one participating-groups query) are compared with what it last stored, and the changes are
//! reported as the events a notification would have given (without an actor: who made them is
//! not known). Each live change refreshes the group's stored state, so it is reported once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use whatsapp_rust::Client;
use whatsapp_rust::features::GroupMetadata;

use super::group_events::{ChangeKind, GroupChange, person};
use super::outbox;
use crate::domain::{DeviceScope, GroupJid, Identity};
use crate::store::StoreError;
use crate::store::events::Wakeup;
use crate::store::group_snapshots;

/// A group's state as stored: what the events compare.
pub fn snapshot(meta: &GroupMetadata) -> Value {
    let members: Vec<Value> = meta
        .participants
        .iter()
        .map(|p| {
            let who = person(&p.jid, p.phone_number.as_ref());
            let mut shown = outbox::contact(&who);
            shown["admin"] = json!(p.is_admin());
            shown
        })
        .collect();
    json!({
        "name": meta.subject,
        "description": meta.description,
        "is_community": meta.is_parent_group,
        "parent_jid": meta.parent_group_jid.as_ref().map(ToString::to_string),
        "announcement": meta.is_announcement,
        "locked": meta.is_locked,
        "members": members,
    })
}

/// A member's key: its phone number when known, else its LID.
fn key(member: &Value) -> Option<String> {
    member["phone_number"]
        .as_str()
        .or_else(|| member["lid_jid"].as_str())
        .map(str::to_owned)
}

fn identity(member: &Value) -> Identity {
    let mut id = Identity::default();
    if let Some(phone) = member["phone_number"].as_str() {
        id.phone = crate::domain::PhoneNumber::from_digits(phone).ok();
    }
    if let Some(lid) = member["lid_jid"].as_str() {
        id.lid = crate::domain::ContactId::from_wire(lid).and_then(|c| c.lid().cloned());
    }
    id
}

fn members(state: &Value) -> BTreeMap<String, (Identity, bool)> {
    state["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| Some((key(m)?, (identity(m), m["admin"] == true))))
        .collect()
}

/// The changes from `before` to `after` for one group (`None`: the device is not in it).
pub fn diff(group: &GroupJid, before: Option<&Value>, after: Option<&Value>) -> Vec<GroupChange> {
    let mut changes = Vec::new();
    match (before, after) {
        (None, None) => {}
        (None, Some(now)) => changes.push(GroupChange {
            group: group.clone(),
            actor: None,
            kind: ChangeKind::Joined {
                name: now["name"].as_str().map(str::to_owned),
                is_community: now["is_community"] == true,
                parent: now["parent_jid"].as_str().map(str::to_owned),
            },
        }),
        (Some(_), None) => changes.push(GroupChange {
            group: group.clone(),
            actor: None,
            kind: ChangeKind::Left,
        }),
        (Some(was), Some(now)) => {
            let (old, new) = (members(was), members(now));
            let pick = |from: &BTreeMap<String, (Identity, bool)>,
                        keep: &dyn Fn(&String, bool) -> bool| {
                from.iter()
                    .filter(|(k, (_, admin))| keep(k, *admin))
                    .map(|(_, (id, _))| id.clone())
                    .collect::<Vec<_>>()
            };
            let added = pick(&new, &|k, _| !old.contains_key(k));
            let removed = pick(&old, &|k, _| !new.contains_key(k));
            let promoted = pick(&new, &|k, admin| admin && old.get(k).is_some_and(|o| !o.1));
            let demoted = pick(&new, &|k, admin| !admin && old.get(k).is_some_and(|o| o.1));
            for (change, people) in [
                ("participants_added", added),
                ("participants_removed", removed),
                ("promoted", promoted),
                ("demoted", demoted),
            ] {
                if !people.is_empty() {
                    changes.push(GroupChange::info(group.clone(), change, people));
                }
            }
            if was["name"] != now["name"] {
                changes.push(
                    GroupChange::info(group.clone(), "name", Vec::new())
                        .with_field("name", now["name"].clone()),
                );
            }
            if was["description"] != now["description"] {
                changes.push(
                    GroupChange::info(group.clone(), "description", Vec::new()).with_field(
                        "description",
                        json!(now["description"].as_str().unwrap_or_default()),
                    ),
                );
            }
            for setting in ["announcement", "locked"] {
                if was[setting] != now[setting] {
                    changes.push(
                        GroupChange::info(group.clone(), "settings", Vec::new())
                            .with_field("settings", json!({ setting: now[setting] })),
                    );
                }
            }
        }
    }
    changes
}

/// Compares WhatsApp's participating groups with the stored ones and appends the events of the
/// differences, in the transaction that stores the new state. The first read is the baseline.
pub async fn reconcile(
    db: &PgPool,
    wakeup: &Wakeup,
    scope: &DeviceScope,
    client: &Arc<Client>,
    timeout: Duration,
) -> Result<usize, StoreError> {
    let Ok(Ok(groups)) = tokio::time::timeout(timeout, client.groups().get_participating()).await
    else {
        tracing::debug!("participating groups not read; nothing reconciled");
        return Ok(0);
    };
    let now: HashMap<String, Value> = groups
        .values()
        .filter_map(|meta| Some((GroupJid::from_wa(&meta.id)?.jid(), snapshot(meta))))
        .collect();
    let synced = group_snapshots::synced(db, scope).await?;
    let before = group_snapshots::all(db, scope).await?;
    let mut events = Vec::new();
    if synced {
        let mut jids: Vec<&String> = now.keys().chain(before.keys()).collect();
        jids.sort();
        jids.dedup();
        for jid in jids {
            let Some(group) = GroupJid::from_wire(jid) else {
                continue;
            };
            events.extend(
                diff(&group, before.get(jid), now.get(jid))
                    .iter()
                    .map(GroupChange::event),
            );
        }
    }
    // Nothing changed since the last connect (the usual case): nothing to store.
    if synced && before == now {
        return Ok(0);
    }
    let rows: Vec<(String, Value)> = now.into_iter().collect();
    let mut tx = db.begin().await?;
    group_snapshots::replace_all(&mut tx, scope, &rows).await?;
    outbox::append_in(&mut tx, scope, &events).await?;
    tx.commit().await?;
    if !events.is_empty() {
        wakeup.committed();
    }
    Ok(events.len())
}

/// Stores the state of the groups changes were reported live for, so the next connect does
/// not report them again (a group the device left is forgotten).
pub async fn refresh(
    db: &PgPool,
    scope: &DeviceScope,
    client: &Arc<Client>,
    timeout: Duration,
    changes: &[GroupChange],
) {
    let mut done: Vec<&GroupJid> = Vec::new();
    for change in changes {
        if done.contains(&&change.group) {
            continue;
        }
        done.push(&change.group);
        let state = if matches!(change.kind, ChangeKind::Left) {
            None
        } else {
            match tokio::time::timeout(timeout, client.groups().get_metadata(&change.group.to_wa()))
                .await
            {
                Ok(Ok(meta)) => Some(snapshot(&meta)),
                _ => continue,
            }
        };
        let stored = group_snapshots::put(db, scope, &change.group.jid(), state.as_ref()).await;
        if let Err(err) = stored {
            tracing::warn!(error = %err, "group state not stored");
        }
    }
}
