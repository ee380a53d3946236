//! Groups: create, read, change members and settings, leave. Communities (which are groups
//! with linked groups) are in [`crate::services::communities`].
//!
//! Participants are given as numbers, PN JIDs or LIDs and resolved the way contacts are: the
//! identity store first, then one batched usync query for every unknown number. Numbers with no
//! account are answered `not_on_whatsapp` without being sent to WhatsApp. What group metadata and
//! participant answers teach (LID/PN pairs) goes back to the identity store.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, NodeContent, Server};
use whatsapp_rust::Client;
use whatsapp_rust::features::{
    GroupDescription, GroupMetadata, GroupSubject, MemberAddMode, MembershipApprovalMode,
    PreviousDescription,
};
use whatsapp_rust::request::{InfoQuery, InfoQueryType};

use super::contacts::{Contacts, Resolution, UnresolvedReason, member_identity};
use super::error::{Error, GroupAccess, group_failure};
use crate::domain::{ContactId, GroupJid, Identity, Lid};
use crate::session::SessionError;
use crate::session::group_events::{ChangeKind, GroupChange};
use crate::session::whatsapp::call;
use crate::store::identities;

/// Most participants one call takes.
pub const MAX_PARTICIPANTS: usize = 256;
/// Most groups one link or unlink takes.
pub const MAX_LINK: usize = 50;

/// A participant change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Add,
    Remove,
    Promote,
    Demote,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Remove => "remove",
            Action::Promote => "promote",
            Action::Demote => "demote",
        }
    }
}

/// What happened to one participant of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeStatus {
    Ok,
    NotOnWhatsapp,
    NotAuthorized,
    AlreadyMember,
    NotMember,
    Error,
    /// A join-request answer for someone who had not asked (or was already answered).
    NoRequest,
}

/// The outcome for one participant, in input order.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeResult {
    pub jid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    pub status: ChangeStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// An add refused by the participant's privacy setting: the private invite WhatsApp
    /// issued instead (a `GroupInviteMessage` to send them carries it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invite_code: Option<String>,
    /// When that invite expires, in seconds since the epoch (as WhatsApp gives it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invite_expiration: Option<u64>,
}

/// A group member in an answer.
#[derive(Debug, Clone, Serialize)]
pub struct ParticipantView {
    pub jid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lid_jid: Option<String>,
    pub is_admin: bool,
    pub is_super_admin: bool,
}

/// A group, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    pub jid: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    pub is_announce: bool,
    pub is_locked: bool,
    pub join_approval: bool,
    /// Absent when WhatsApp's answer did not carry it in a form whatsapp-rust reads (it parses
    /// only token-encoded values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_add_mode: Option<&'static str>,
    pub members_count: usize,
    /// The disappearing-message timer in seconds, 0 when off.
    pub ephemeral_seconds: u32,
    pub is_community: bool,
    pub is_announcement_group: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_jid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participants: Option<Vec<ParticipantView>>,
}

/// Settings a `PATCH /groups/{jid}` changes; at least one is set.
#[derive(Debug, Clone, Default)]
pub struct GroupChanges {
    pub name: Option<String>,
    pub topic: Option<String>,
    pub announce: Option<bool>,
    pub locked: Option<bool>,
    pub join_approval: Option<bool>,
    pub member_add_mode: Option<MemberAddMode>,
}

/// Options of a new group.
#[derive(Debug, Clone, Default)]
pub struct NewGroup {
    pub name: String,
    pub description: Option<String>,
    pub participants: Vec<ContactId>,
    pub announce: bool,
    pub locked: bool,
    pub join_approval: bool,
    pub community: bool,
    pub parent: Option<GroupJid>,
}

/// A participant after resolution: who to send, and how to answer for it.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The JID sent to WhatsApp (the LID when known), or none when the number has no account.
    pub(crate) send: Option<Jid>,
    pub(crate) identity: Identity,
    pub(crate) input_jid: String,
}

impl Target {
    pub(crate) fn answer_jid(&self) -> String {
        self.identity
            .jid()
            .unwrap_or_else(|| self.input_jid.clone())
    }
}

fn time_text(seconds: Option<u64>) -> Option<String> {
    let seconds = i64::try_from(seconds?).ok()?;
    let at = chrono::DateTime::<chrono::Utc>::from_timestamp(seconds, 0)?;
    Some(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

pub(crate) fn read_error(err: SessionError) -> Error {
    group_failure(err, GroupAccess::Read)
}

pub(crate) fn change_error(err: SessionError) -> Error {
    group_failure(err, GroupAccess::Change)
}

mod create;
mod invites;
mod participants;
mod requests;

pub use invites::{InviteInfo, JoinOutcome, JoinTarget};
pub use requests::JoinRequestView;

/// A device's groups and communities, as one request sees them.
pub struct Groups<'a> {
    pub contacts: Contacts<'a>,
}

impl Groups<'_> {
    /// The device's connected client (a `DeviceSession` is only built connected).
    pub(crate) fn client(&self) -> &Arc<Client> {
        self.contacts.session.client()
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.contacts.session.timeout()
    }

    /// Resolves participants: the store, then one usync query for every unknown number.
    pub(crate) async fn targets(&self, participants: &[ContactId]) -> Result<Vec<Target>, Error> {
        let resolutions = self.contacts.resolve_ids(participants).await?;
        Ok(participants
            .iter()
            .zip(resolutions)
            .map(|(input, resolution)| {
                let input_jid = input.jid();
                match resolution {
                    Resolution::Resolved { identity, .. } => {
                        let send = match (&identity.lid, &identity.phone) {
                            (Some(lid), _) => Some(lid.to_wa()),
                            (None, Some(phone)) => Some(phone.to_wa()),
                            (None, None) => None,
                        };
                        Target {
                            send,
                            identity,
                            input_jid,
                        }
                    }
                    Resolution::Unresolved(UnresolvedReason::NotOnWhatsapp) => Target {
                        send: None,
                        identity: Identity::new(input.phone().cloned(), None),
                        input_jid,
                    },
                    // A LID whose number is unknown is still what WhatsApp knows the user by.
                    Resolution::Unresolved(_) => Target {
                        send: input.lid().map(Lid::to_wa),
                        identity: Identity::new(None, input.lid().cloned()),
                        input_jid,
                    },
                }
            })
            .collect())
    }

    /// Members of a group as the API shows them, phone numbers filled from the store.
    pub(crate) async fn participant_views(
        &self,
        participants: &[whatsapp_rust::features::GroupParticipant],
    ) -> Result<Vec<ParticipantView>, Error> {
        let mut members: Vec<Identity> = participants
            .iter()
            .map(|p| member_identity(&p.jid, p.lid.as_ref(), p.phone_number.as_ref()))
            .collect();
        self.contacts.learn(&members).await;
        let missing: Vec<Lid> = members
            .iter()
            .filter(|m| m.phone.is_none())
            .filter_map(|m| m.lid.clone())
            .collect();
        let known =
            identities::phones_of_lids(self.contacts.db, self.contacts.session.scope(), &missing)
                .await?;
        for member in &mut members {
            if member.phone.is_none()
                && let Some(phone) = member.lid.as_ref().and_then(|l| known.get(l))
            {
                member.phone = Some(phone.clone());
            }
        }
        Ok(members
            .into_iter()
            .zip(participants)
            .map(|(member, p)| ParticipantView {
                jid: member.jid().unwrap_or_default(),
                phone_number: member.phone_digits(),
                lid_jid: member.lid_jid(),
                is_admin: p.is_admin(),
                is_super_admin: p.is_super_admin(),
            })
            .collect())
    }

    pub(crate) async fn view(
        &self,
        meta: &GroupMetadata,
        with_participants: bool,
    ) -> Result<GroupView, Error> {
        let participants = self.participant_views(&meta.participants).await?;
        let owner = meta
            .creator_pn
            .as_ref()
            .or(meta.creator.as_ref())
            .map(ToString::to_string);
        Ok(GroupView {
            jid: meta.id.to_string(),
            name: meta.subject.to_string(),
            topic: meta.description.clone(),
            owner,
            created_at: time_text(meta.creation_time),
            is_announce: meta.is_announcement,
            is_locked: meta.is_locked,
            join_approval: meta.membership_approval,
            member_add_mode: meta.member_add_mode.as_ref().map(|mode| match mode {
                MemberAddMode::AdminAdd => "admin_add",
                _ => "all_member_add",
            }),
            members_count: meta
                .size
                .map(|s| s as usize)
                .unwrap_or(meta.participants.len())
                .max(meta.participants.len()),
            ephemeral_seconds: meta
                .ephemeral
                .and_then(|e| e.expiration)
                .unwrap_or_default(),
            is_community: meta.is_parent_group,
            is_announcement_group: meta.is_default_sub_group,
            parent_jid: meta.parent_group_jid.as_ref().map(ToString::to_string),
            participants: with_participants.then_some(participants),
        })
    }

    /// A group's metadata. A group the device is not in reads as one that does not exist.
    pub(crate) async fn metadata(&self, group: &GroupJid) -> Result<GroupMetadata, Error> {
        let client = self.client();
        let jid = group.to_wa();
        call(
            "group_metadata",
            self.timeout(),
            client.groups().get_metadata(&jid),
        )
        .await
        .map_err(read_error)
    }

    /// Groups and communities the device is in.
    pub async fn list(&self) -> Result<Vec<GroupView>, Error> {
        let client = self.client();
        let groups = call(
            "group_participating",
            self.timeout(),
            client.groups().get_participating(),
        )
        .await
        .map_err(read_error)?;
        let mut views = Vec::with_capacity(groups.len());
        for meta in groups.values() {
            views.push(self.view(meta, false).await?);
        }
        views.sort_by(|a, b| a.jid.cmp(&b.jid));
        Ok(views)
    }

    pub async fn get(&self, group: &GroupJid) -> Result<GroupView, Error> {
        let meta = self.metadata(group).await?;
        self.view(&meta, true).await
    }

    /// Changes a group's settings; answers the group as it is afterwards.
    pub async fn update(
        &self,
        group: &GroupJid,
        changes: GroupChanges,
    ) -> Result<GroupView, Error> {
        let client = self.client();
        let jid = group.to_wa();
        let groups = client.groups();
        let timeout = self.timeout();
        let mut reported = Vec::new();
        let mut settings = serde_json::Map::new();
        if let Some(name) = &changes.name {
            let subject = GroupSubject::new(name).map_err(|e| Error::invalid("name", e))?;
            call("group_settings", timeout, groups.set_subject(&jid, subject))
                .await
                .map_err(change_error)?;
            reported.push(
                GroupChange::info(group.clone(), "name", Vec::new())
                    .with_field("name", serde_json::json!(name)),
            );
        }
        if let Some(topic) = &changes.topic {
            let description = if topic.is_empty() {
                None
            } else {
                Some(GroupDescription::new(topic).map_err(|e| Error::invalid("topic", e))?)
            };
            call(
                "group_settings",
                timeout,
                groups.set_description(&jid, description, PreviousDescription::Resolve),
            )
            .await
            .map_err(change_error)?;
            reported.push(
                GroupChange::info(group.clone(), "description", Vec::new())
                    .with_field("description", serde_json::json!(topic)),
            );
        }
        if let Some(announce) = changes.announce {
            call(
                "group_settings",
                timeout,
                groups.set_announce(&jid, announce),
            )
            .await
            .map_err(change_error)?;
            settings.insert("announcement".to_owned(), serde_json::json!(announce));
        }
        if let Some(locked) = changes.locked {
            call("group_settings", timeout, groups.set_locked(&jid, locked))
                .await
                .map_err(change_error)?;
            settings.insert("locked".to_owned(), serde_json::json!(locked));
        }
        if let Some(approval) = changes.join_approval {
            let mode = if approval {
                MembershipApprovalMode::On
            } else {
                MembershipApprovalMode::Off
            };
            call(
                "group_settings",
                timeout,
                groups.set_membership_approval(&jid, mode),
            )
            .await
            .map_err(change_error)?;
            settings.insert(
                "membership_approval".to_owned(),
                serde_json::json!(approval),
            );
        }
        if let Some(mode) = changes.member_add_mode {
            call(
                "group_settings",
                timeout,
                groups.set_member_add_mode(&jid, mode),
            )
            .await
            .map_err(change_error)?;
            settings.insert(
                "member_add_mode".to_owned(),
                serde_json::json!(format!("{mode:?}").to_lowercase()),
            );
        }
        // One event per setting WhatsApp notifies on its own (a notification per change).
        for (name, value) in settings {
            let mut one = serde_json::Map::new();
            one.insert(name, value);
            reported.push(
                GroupChange::info(group.clone(), "settings", Vec::new())
                    .with_field("settings", serde_json::Value::Object(one)),
            );
        }
        self.report(reported).await;
        self.get(group).await
    }

    /// Appends the events of changes this device just made (and remembers them, so that
    /// WhatsApp's notification of the same change is not reported again).
    pub(crate) async fn report(&self, changes: Vec<GroupChange>) {
        self.contacts
            .session
            .report_group_changes(self.contacts.db, changes)
            .await;
    }

    /// Leaves a group, or a community with every group linked to it.
    pub async fn leave(&self, group: &GroupJid, community: bool) -> Result<(), Error> {
        self.leave_on_whatsapp(group, community).await?;
        self.report(vec![GroupChange {
            group: group.clone(),
            actor: None,
            kind: ChangeKind::Left,
        }])
        .await;
        Ok(())
    }

    async fn leave_on_whatsapp(&self, group: &GroupJid, community: bool) -> Result<(), Error> {
        let client = self.client();
        if !community {
            let jid = group.to_wa();
            return call("group_leave", self.timeout(), client.groups().leave(&jid))
                .await
                .map_err(change_error);
        }
        // whatsapp-rust has no community leave: `<leave><community id/></leave>` to g.us, as
        // WhatsApp Web sends it.
        let query = InfoQuery {
            namespace: "w:g2",
            query_type: InfoQueryType::Set,
            to: Jid::new("", Server::Group),
            target: None,
            id: None,
            content: Some(NodeContent::Nodes(vec![
                NodeBuilder::new("leave")
                    .children([NodeBuilder::new("community")
                        .attr("id", group.jid())
                        .build()])
                    .build(),
            ])),
            timeout: Some(self.timeout()),
        };
        call("community_leave", self.timeout(), client.send_iq(query))
            .await
            .map(|_| ())
            .map_err(change_error)
    }
}

/// JIDs without repeats, first occurrence kept.
pub(crate) fn dedup(jids: impl Iterator<Item = Jid>) -> Vec<Jid> {
    let mut seen = std::collections::HashSet::new();
    jids.filter(|j| seen.insert(j.to_string())).collect()
}
