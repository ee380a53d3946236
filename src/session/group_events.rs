//! Group and community events (`group.joined`, `group.left`, `group.info`) from WhatsApp's
//! `w:gp2` notifications (as whatsapp-rust surfaces them, one `GroupUpdate` per change) and
//! from the gateway's own calls. WhatsApp does not notify the companion whose request made a
//! change; the call's own event covers it, and a notification that repeats a change the
//! gateway just reported is dropped (see [`RecentChanges`]).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use wacore::stanza::groups::{GroupNotificationAction, GroupParticipantInfo};
use wacore_binary::Jid;
use whatsapp_rust::types::events::GroupUpdate;

use super::outbox::{self, Pending};
use crate::domain::{ContactId, EventKind, GroupJid, Identity};

/// A person named in a group stanza: its JID (LID or phone number) and, in LID-addressed
/// groups, its phone number beside it.
pub fn person(jid: &Jid, phone: Option<&Jid>) -> Identity {
    let mut identity = Identity::default();
    for id in [Some(jid), phone]
        .into_iter()
        .flatten()
        .filter_map(ContactId::from_wa)
    {
        match id {
            ContactId::Phone(p) => identity.phone = identity.phone.or(Some(p)),
            ContactId::Lid(l) => identity.lid = identity.lid.or(Some(l)),
        }
    }
    identity
}

fn participant(info: &GroupParticipantInfo) -> Identity {
    person(&info.jid, info.phone_number.as_ref())
}

/// One change to a group, as an event says it.
#[derive(Debug, Clone)]
pub struct GroupChange {
    pub group: GroupJid,
    pub actor: Option<Identity>,
    pub kind: ChangeKind,
}

#[derive(Debug, Clone)]
pub enum ChangeKind {
    /// The device joined (was added, or created the group).
    Joined {
        name: Option<String>,
        is_community: bool,
        parent: Option<String>,
    },
    /// The device left or was removed.
    Left,
    /// `group.info` with this `change` and the fields it carries.
    Info {
        change: &'static str,
        participants: Vec<Identity>,
        fields: Map<String, Value>,
    },
}

impl GroupChange {
    pub fn info(group: GroupJid, change: &'static str, participants: Vec<Identity>) -> Self {
        Self {
            group,
            actor: None,
            kind: ChangeKind::Info {
                change,
                participants,
                fields: Map::new(),
            },
        }
    }

    pub fn with_field(mut self, name: &str, value: Value) -> Self {
        if let ChangeKind::Info { fields, .. } = &mut self.kind {
            fields.insert(name.to_owned(), value);
        }
        self
    }

    /// The event, in the catalogue's shape.
    pub fn event(&self) -> Pending {
        let mut data = Map::new();
        data.insert("jid".to_owned(), json!(self.group.jid()));
        if let Some(actor) = &self.actor {
            data.insert("actor".to_owned(), outbox::contact(actor));
        }
        let kind = match &self.kind {
            ChangeKind::Joined {
                name,
                is_community,
                parent,
            } => {
                data.insert("name".to_owned(), json!(name.clone().unwrap_or_default()));
                data.insert("is_community".to_owned(), json!(is_community));
                if let Some(parent) = parent {
                    data.insert("parent_jid".to_owned(), json!(parent));
                }
                EventKind::GroupJoined
            }
            ChangeKind::Left => EventKind::GroupLeft,
            ChangeKind::Info {
                change,
                participants,
                fields,
            } => {
                data.insert("change".to_owned(), json!(change));
                if !participants.is_empty() {
                    data.insert(
                        "participants".to_owned(),
                        Value::Array(participants.iter().map(outbox::contact).collect()),
                    );
                }
                for (name, value) in fields {
                    data.insert(name.clone(), value.clone());
                }
                EventKind::GroupInfo
            }
        };
        Pending::new(kind, Value::Object(data))
    }

    /// What identifies the change for [`RecentChanges`]: the group, the kind of change and
    /// who it was about.
    fn key(&self) -> String {
        let (change, people): (&str, Vec<String>) = match &self.kind {
            ChangeKind::Joined { .. } => ("joined", Vec::new()),
            ChangeKind::Left => ("left", Vec::new()),
            ChangeKind::Info {
                change,
                participants,
                ..
            } => (
                change,
                participants
                    .iter()
                    .filter_map(|p| p.phone_digits().or_else(|| p.lid_jid()))
                    .collect(),
            ),
        };
        let mut people = people;
        people.sort();
        format!("{}|{change}|{}", self.group.jid(), people.join(","))
    }
}

/// Whether `who` is the device's own account (`own` holds its phone number and LID).
fn is_self(who: &Identity, own: &Identity) -> bool {
    who.same_user(own)
}

/// The changes one notification action describes, for a device whose account is `own`.
pub fn from_notification(update: &GroupUpdate, own: &Identity) -> Vec<GroupChange> {
    let Some(group) = GroupJid::from_wa(&update.group_jid) else {
        return Vec::new();
    };
    let actor = update
        .participant
        .as_ref()
        .map(|jid| person(jid, update.participant_pn.as_ref()));
    let info = |change: &'static str, participants: Vec<Identity>| GroupChange {
        group: group.clone(),
        actor: actor.clone(),
        kind: ChangeKind::Info {
            change,
            participants,
            fields: Map::new(),
        },
    };
    let members =
        |list: &[GroupParticipantInfo]| -> Vec<Identity> { list.iter().map(participant).collect() };
    let settings = |values: Value| info("settings", Vec::new()).with_field("settings", values);
    let mut changes = Vec::new();
    match &update.action {
        GroupNotificationAction::Add { participants, .. } => {
            let people = members(participants);
            let (me, others): (Vec<Identity>, Vec<Identity>) =
                people.into_iter().partition(|p| is_self(p, own));
            if !me.is_empty() {
                changes.push(GroupChange {
                    group: group.clone(),
                    actor: actor.clone(),
                    kind: ChangeKind::Joined {
                        name: None,
                        is_community: false,
                        parent: None,
                    },
                });
            }
            if !others.is_empty() {
                changes.push(info("participants_added", others));
            }
        }
        GroupNotificationAction::Remove { participants, .. } => {
            let people = members(participants);
            let (me, others): (Vec<Identity>, Vec<Identity>) =
                people.into_iter().partition(|p| is_self(p, own));
            if !others.is_empty() {
                changes.push(info("participants_removed", others));
            }
            if !me.is_empty() {
                changes.push(GroupChange {
                    group: group.clone(),
                    actor: actor.clone(),
                    kind: ChangeKind::Left,
                });
            }
        }
        GroupNotificationAction::Promote { participants }
        | GroupNotificationAction::LinkedGroupPromote { participants } => {
            changes.push(info("promoted", members(participants)));
        }
        GroupNotificationAction::Demote { participants }
        | GroupNotificationAction::LinkedGroupDemote { participants } => {
            changes.push(info("demoted", members(participants)));
        }
        GroupNotificationAction::Subject { subject, .. } => {
            changes.push(info("name", Vec::new()).with_field("name", json!(subject)));
        }
        GroupNotificationAction::Description { description, .. } => {
            changes.push(info("description", Vec::new()).with_field(
                "description",
                json!(description.clone().unwrap_or_default()),
            ));
        }
        GroupNotificationAction::Locked { .. } => changes.push(settings(json!({"locked": true}))),
        GroupNotificationAction::Unlocked => changes.push(settings(json!({"locked": false}))),
        GroupNotificationAction::Announce => {
            changes.push(settings(json!({"announcement": true})));
        }
        GroupNotificationAction::NotAnnounce => {
            changes.push(settings(json!({"announcement": false})));
        }
        GroupNotificationAction::Ephemeral { expiration, .. } => {
            changes.push(settings(json!({"ephemeral_seconds": expiration})));
        }
        GroupNotificationAction::MembershipApprovalMode { enabled } => {
            changes.push(settings(json!({"membership_approval": enabled})));
        }
        GroupNotificationAction::MemberAddMode { mode } => {
            changes.push(settings(json!({"member_add_mode": mode})));
        }
        GroupNotificationAction::Create { raw } => {
            let name = raw
                .get_optional_child("group")
                .and_then(|g| g.attrs.get("subject").map(ToString::to_string));
            // `<group>` as a metadata answer has it: `<parent/>` for a community,
            // `<linked_parent jid>` for a group inside one (whatsmeow `parseGroupNode`).
            let described = raw.get_optional_child("group");
            let is_community = described.is_some_and(|g| g.get_optional_child("parent").is_some());
            let parent = described
                .and_then(|g| g.get_optional_child("linked_parent"))
                .and_then(|p| p.attrs.get("jid").map(ToString::to_string))
                .and_then(|jid| GroupJid::from_wire(&jid))
                .map(|g| g.jid());
            changes.push(GroupChange {
                group: group.clone(),
                actor: actor.clone(),
                kind: ChangeKind::Joined {
                    name,
                    is_community,
                    parent,
                },
            });
        }
        GroupNotificationAction::Delete { .. } => changes.push(info("deactivated", Vec::new())),
        GroupNotificationAction::Link { raw, .. } => {
            changes.push(info("linked", Vec::new()).with_field("groups", linked_groups(raw)));
        }
        GroupNotificationAction::Unlink { raw, .. } => {
            changes.push(info("unlinked", Vec::new()).with_field("groups", linked_groups(raw)));
        }
        _ => {}
    }
    changes
}

/// The groups a `link`/`unlink` names (`<group jid>` children).
fn linked_groups(raw: &wacore_binary::Node) -> Value {
    let mut groups = Vec::new();
    if let Some(children) = raw.children() {
        for child in children {
            if let Some(jid) = child.attrs.get("jid").map(ToString::to_string)
                && let Some(group) = GroupJid::from_wire(&jid)
            {
                groups.push(json!(group.jid()));
            }
        }
    }
    Value::Array(groups)
}

/// How long a change the gateway reported itself is remembered, to drop WhatsApp's
/// notification of the same change.
const REMEMBERED: Duration = Duration::from_secs(60);

/// The group changes a device's own calls reported lately.
#[derive(Default)]
pub struct RecentChanges {
    seen: Mutex<VecDeque<(Instant, String)>>,
}

impl RecentChanges {
    fn entries(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, String)>> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while seen
            .front()
            .is_some_and(|(at, _)| at.elapsed() > REMEMBERED)
        {
            seen.pop_front();
        }
        seen
    }

    /// Remembers changes the gateway reported.
    pub fn reported(&self, changes: &[GroupChange]) {
        let mut seen = self.entries();
        for change in changes {
            seen.push_back((Instant::now(), change.key()));
        }
        while seen.len() > 256 {
            seen.pop_front();
        }
    }

    /// Whether a notified change was already reported (and forgets it: it is reported once).
    pub fn already_reported(&self, change: &GroupChange) -> bool {
        let key = change.key();
        let mut seen = self.entries();
        match seen.iter().position(|(_, k)| *k == key) {
            Some(at) => {
                seen.remove(at);
                true
            }
            None => false,
        }
    }
}
