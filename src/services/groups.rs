//! Groups and communities: create, read, change members and settings, link and unlink a
//! community's groups, leave, deactivate.
//!
//! Participants are given as numbers, PN JIDs or LIDs and resolved the way contacts are: the
//! identity store first, then one batched usync query for every unknown number. Numbers with no
//! account are answered `not_on_whatsapp` without being sent to WhatsApp. What group metadata and
//! participant answers teach (LID/PN pairs) goes back to the identity store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, NodeContent, Server};
use whatsapp_rust::Client;
use whatsapp_rust::features::{
    CreateCommunityOptions, GroupCreateOptions, GroupDescription, GroupMetadata,
    GroupParticipantOptions, GroupSubject, MemberAddMode, MembershipApprovalMode,
    ParticipantChangeResponse, PreviousDescription,
};
use whatsapp_rust::request::{InfoQuery, InfoQueryType};

use super::contacts::{Contacts, Resolution, UnresolvedReason, member_identity};
use super::error::{Error, GroupAccess, group_failure};
use crate::domain::{ContactId, GroupJid, Identity, Lid, PhoneNumber};
use crate::session::SessionError;
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
    pub is_community: bool,
    pub is_announcement_group: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_jid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participants: Option<Vec<ParticipantView>>,
}

/// A community's linked group.
#[derive(Debug, Clone, Serialize)]
pub struct LinkedGroup {
    pub jid: String,
    pub name: String,
    pub is_announcement_group: bool,
}

/// A community, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CommunityView {
    pub jid: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announcement_group_jid: Option<String>,
    pub linked_groups_count: usize,
    pub members_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participants: Option<Vec<ParticipantView>>,
}

/// A link or unlink outcome for one group that failed.
#[derive(Debug, Clone, Serialize)]
pub struct LinkFailure {
    pub group_jid: String,
    pub code: u32,
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
struct Target {
    /// The JID sent to WhatsApp (the LID when known), or none when the number has no account.
    send: Option<Jid>,
    identity: Identity,
    input_jid: String,
}

impl Target {
    fn answer_jid(&self) -> String {
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

fn read_error(err: SessionError) -> Error {
    group_failure(err, GroupAccess::Read)
}

fn change_error(err: SessionError) -> Error {
    group_failure(err, GroupAccess::Change)
}

fn change_status(action: Action, code: u16) -> ChangeStatus {
    match (action, code) {
        (_, 403) | (_, 401) => ChangeStatus::NotAuthorized,
        (_, 409) => ChangeStatus::AlreadyMember,
        (Action::Add, 404) => ChangeStatus::NotOnWhatsapp,
        (_, 404) => ChangeStatus::NotMember,
        _ => ChangeStatus::Error,
    }
}

/// A device's groups and communities, as one request sees them.
pub struct Groups<'a> {
    pub contacts: Contacts<'a>,
}

impl Groups<'_> {
    fn client(&self) -> Result<Arc<Client>, Error> {
        Ok(self.contacts.session.client().clone())
    }

    fn timeout(&self) -> Duration {
        self.contacts.session.timeout()
    }

    /// Resolves participants: the store, then one usync query for every unknown number.
    async fn targets(&self, participants: &[ContactId]) -> Result<Vec<Target>, Error> {
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
    async fn participant_views(
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

    async fn view(
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
            is_community: meta.is_parent_group,
            is_announcement_group: meta.is_default_sub_group,
            parent_jid: meta.parent_group_jid.as_ref().map(ToString::to_string),
            participants: with_participants.then_some(participants),
        })
    }

    /// A group's metadata. A group the device is not in reads as one that does not exist.
    async fn metadata(&self, group: &GroupJid) -> Result<GroupMetadata, Error> {
        let client = self.client()?;
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
        let client = self.client()?;
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

    /// Creates a group (or a community, or a group inside one); answers it and the outcome for
    /// each participant.
    pub async fn create(&self, new: NewGroup) -> Result<(GroupView, Vec<ChangeResult>), Error> {
        let client = self.client()?;
        let subject = GroupSubject::new(&new.name).map_err(|e| Error::invalid("name", e))?;
        let targets = self.targets(&new.participants).await?;
        let senders: Vec<Jid> = dedup(targets.iter().filter_map(|t| t.send.clone()));
        if !senders.is_empty() {
            self.contacts.session.pace().await?;
        }
        let meta = if new.community {
            let mut options = CreateCommunityOptions::new(subject.as_str());
            options.description = new.description.clone();
            options.closed = new.join_approval;
            let created = call(
                "community_create",
                self.timeout(),
                client.community().create(options),
            )
            .await
            .map_err(change_error)?;
            let meta = created.metadata;
            if !senders.is_empty() {
                call(
                    "group_participants",
                    self.timeout(),
                    client.groups().add_participants(&meta.id, &senders),
                )
                .await
                .map_err(change_error)?;
            }
            meta
        } else if let Some(parent) = &new.parent {
            let parent = parent.to_wa();
            call(
                "group_create",
                self.timeout(),
                client
                    .community()
                    .create_subgroup(subject.as_str(), &senders, parent),
            )
            .await
            .map_err(change_error)?
            .metadata
        } else {
            let mut options = GroupCreateOptions::new(subject.as_str()).with_participants(
                targets
                    .iter()
                    .filter_map(|t| {
                        let jid = t.send.clone()?;
                        let options = GroupParticipantOptions::new(jid);
                        Some(match &t.identity.phone {
                            Some(phone) if t.identity.lid.is_some() => {
                                options.with_phone_number(phone.to_wa())
                            }
                            _ => options,
                        })
                    })
                    .collect(),
            );
            if new.join_approval {
                options.membership_approval_mode = Some(MembershipApprovalMode::On);
            }
            if let Some(description) = &new.description {
                options.description = Some(
                    GroupDescription::new(description)
                        .map_err(|e| Error::invalid("description", e))?,
                );
            }
            call(
                "group_create",
                self.timeout(),
                client.groups().create_group(options),
            )
            .await
            .map_err(change_error)?
            .metadata
        };
        let group = GroupJid::parse(&meta.id.to_string())
            .map_err(|_| Error::internal(anyhow::anyhow!("WhatsApp created a non-group")))?;
        if new.parent.is_some()
            && let Some(description) = &new.description
        {
            let description =
                GroupDescription::new(description).map_err(|e| Error::invalid("description", e))?;
            call(
                "group_settings",
                self.timeout(),
                client.groups().set_description(
                    &meta.id,
                    Some(description),
                    PreviousDescription::Absent,
                ),
            )
            .await
            .map_err(change_error)?;
        }
        if new.announce {
            call(
                "group_settings",
                self.timeout(),
                client.groups().set_announce(&meta.id, true),
            )
            .await
            .map_err(change_error)?;
        }
        if new.locked {
            call(
                "group_settings",
                self.timeout(),
                client.groups().set_locked(&meta.id, true),
            )
            .await
            .map_err(change_error)?;
        }
        let needs_reread = new.community
            || new.parent.is_some()
            || new.announce
            || new.locked
            || (new.parent.is_some() && new.description.is_some());
        let meta = if needs_reread {
            self.metadata(&group).await?
        } else {
            meta
        };
        let view = self.view(&meta, true).await?;
        let members: Vec<&ParticipantView> = view.participants.iter().flatten().collect();
        let results = targets
            .iter()
            .map(|t| {
                let present = members.iter().any(|m| {
                    (t.identity.phone.is_some() && m.phone_number == t.identity.phone_digits())
                        || (t.identity.lid.is_some() && m.lid_jid == t.identity.lid_jid())
                });
                let (status, code) = match (&t.send, present) {
                    (None, _) => (ChangeStatus::NotOnWhatsapp, None),
                    (Some(_), true) => (ChangeStatus::Ok, None),
                    (Some(_), false) => (ChangeStatus::Error, None),
                };
                ChangeResult {
                    jid: t.answer_jid(),
                    phone_number: t.identity.phone_digits(),
                    status,
                    code,
                }
            })
            .collect();
        Ok((view, results))
    }

    /// Applies a participant change; one result per input, in order. With `across_linked`, a
    /// removal also reaches every group linked to the community.
    pub async fn change_participants(
        &self,
        group: &GroupJid,
        action: Action,
        participants: &[ContactId],
        across_linked: bool,
    ) -> Result<Vec<ChangeResult>, Error> {
        let client = self.client()?;
        let jid = group.to_wa();
        let targets = self.targets(participants).await?;
        let senders: Vec<Jid> = dedup(targets.iter().filter_map(|t| t.send.clone()));
        let answers: Vec<ParticipantChangeResponse> = if senders.is_empty() {
            Vec::new()
        } else {
            self.contacts.session.pace().await?;
            let groups = client.groups();
            let work = async {
                match action {
                    Action::Add => groups.add_participants(&jid, &senders).await,
                    Action::Remove if across_linked => {
                        groups
                            .remove_participants_including_linked_groups(&jid, &senders)
                            .await
                    }
                    Action::Remove => groups.remove_participants(&jid, &senders).await,
                    Action::Promote => groups.promote_participants(&jid, &senders).await,
                    Action::Demote => groups.demote_participants(&jid, &senders).await,
                }
            };
            call("group_participants", self.timeout(), work)
                .await
                .map_err(change_error)?
        };
        let learned: Vec<Identity> = answers
            .iter()
            .map(|a| member_identity(&a.jid, None, a.phone_number.as_ref()))
            .collect();
        self.contacts.learn(&learned).await;
        Ok(targets
            .iter()
            .map(|t| {
                let Some(sent) = &t.send else {
                    return ChangeResult {
                        jid: t.answer_jid(),
                        phone_number: t.identity.phone_digits(),
                        status: ChangeStatus::NotOnWhatsapp,
                        code: None,
                    };
                };
                let answer = answers.iter().find(|a| {
                    a.jid.user == sent.user
                        || member_identity(&a.jid, None, a.phone_number.as_ref())
                            .same_user(&t.identity)
                });
                let phone: Option<PhoneNumber> = t.identity.phone.clone().or_else(|| {
                    answer
                        .and_then(|a| a.phone_number.as_ref())
                        .and_then(ContactId::from_wa)
                        .and_then(|c| c.phone().cloned())
                });
                let (status, code) = match answer {
                    None => (ChangeStatus::Error, None),
                    Some(a) => match a.error.as_deref().map(|e| e.parse::<u16>().unwrap_or(0)) {
                        None => (ChangeStatus::Ok, None),
                        Some(code) => (change_status(action, code), Some(code)),
                    },
                };
                ChangeResult {
                    jid: phone
                        .as_ref()
                        .map_or_else(|| t.answer_jid(), PhoneNumber::jid),
                    phone_number: phone.map(|p| p.as_str().to_owned()),
                    status,
                    code,
                }
            })
            .collect())
    }

    /// Changes a group's settings; answers the group as it is afterwards.
    pub async fn update(
        &self,
        group: &GroupJid,
        changes: GroupChanges,
    ) -> Result<GroupView, Error> {
        let client = self.client()?;
        let jid = group.to_wa();
        let groups = client.groups();
        let timeout = self.timeout();
        if let Some(name) = &changes.name {
            let subject = GroupSubject::new(name).map_err(|e| Error::invalid("name", e))?;
            call("group_settings", timeout, groups.set_subject(&jid, subject))
                .await
                .map_err(change_error)?;
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
        }
        if let Some(announce) = changes.announce {
            call(
                "group_settings",
                timeout,
                groups.set_announce(&jid, announce),
            )
            .await
            .map_err(change_error)?;
        }
        if let Some(locked) = changes.locked {
            call("group_settings", timeout, groups.set_locked(&jid, locked))
                .await
                .map_err(change_error)?;
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
        }
        if let Some(mode) = changes.member_add_mode {
            call(
                "group_settings",
                timeout,
                groups.set_member_add_mode(&jid, mode),
            )
            .await
            .map_err(change_error)?;
        }
        self.get(group).await
    }

    /// Leaves a group, or a community with every group linked to it.
    pub async fn leave(&self, group: &GroupJid, community: bool) -> Result<(), Error> {
        let client = self.client()?;
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

    /// A community's linked groups, the announcement group flagged.
    pub async fn linked_groups(&self, community: &GroupJid) -> Result<Vec<LinkedGroup>, Error> {
        let client = self.client()?;
        // The sub-group list over w:g2 (`<sub_groups/>`), as WhatsApp's clients read it.
        let query = InfoQuery {
            namespace: "w:g2",
            query_type: InfoQueryType::Get,
            to: community.to_wa(),
            target: None,
            id: None,
            content: Some(NodeContent::Nodes(vec![
                NodeBuilder::new("sub_groups").build(),
            ])),
            timeout: Some(self.timeout()),
        };
        let answer = call("community_groups", self.timeout(), client.send_iq(query))
            .await
            .map_err(read_error)?;
        let node = answer.get().to_owned();
        let Some(list) = node.get_optional_child("sub_groups") else {
            return Err(SessionError::WhatsApp {
                code: 500,
                text: "sub-group list without <sub_groups>".to_owned(),
            }
            .into());
        };
        Ok(list
            .get_children_by_tag("group")
            .filter_map(|g| {
                let id = g
                    .attrs
                    .get("jid")
                    .or_else(|| g.attrs.get("id"))?
                    .to_string();
                let jid = match GroupJid::parse(&id) {
                    Ok(group) => group.jid(),
                    Err(_) => {
                        GroupJid::parse(&format!("{id}@{}", crate::domain::jid::GROUP_SERVER))
                            .ok()?
                            .jid()
                    }
                };
                Some(LinkedGroup {
                    jid,
                    name: g
                        .attrs
                        .get("subject")
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    is_announcement_group: g.get_optional_child("default_sub_group").is_some(),
                })
            })
            .collect())
    }

    async fn community_view(
        &self,
        meta: &GroupMetadata,
        with_participants: bool,
    ) -> Result<CommunityView, Error> {
        let group = GroupJid::parse(&meta.id.to_string())
            .map_err(|_| Error::internal(anyhow::anyhow!("community with a non-group JID")))?;
        let linked = self.linked_groups(&group).await?;
        let view = self.view(meta, with_participants).await?;
        Ok(CommunityView {
            jid: view.jid,
            name: view.name,
            description: view.topic,
            owner: view.owner,
            created_at: view.created_at,
            announcement_group_jid: linked
                .iter()
                .find(|g| g.is_announcement_group)
                .map(|g| g.jid.clone()),
            linked_groups_count: linked.iter().filter(|g| !g.is_announcement_group).count(),
            members_count: view.members_count,
            participants: view.participants,
        })
    }

    /// Creates a community; answers it and the outcome for each participant.
    pub async fn create_community(
        &self,
        name: String,
        description: Option<String>,
        participants: Vec<ContactId>,
    ) -> Result<(CommunityView, Vec<ChangeResult>), Error> {
        let (group, results) = self
            .create(NewGroup {
                name,
                description,
                participants,
                community: true,
                ..NewGroup::default()
            })
            .await?;
        let jid = GroupJid::parse(&group.jid)
            .map_err(|_| Error::internal(anyhow::anyhow!("community with a non-group JID")))?;
        let meta = self.metadata(&jid).await?;
        Ok((self.community_view(&meta, false).await?, results))
    }

    pub async fn communities(&self) -> Result<Vec<CommunityView>, Error> {
        let client = self.client()?;
        let communities = call(
            "community_participating",
            self.timeout(),
            client.community().get_participating(),
        )
        .await
        .map_err(read_error)?;
        let mut views = Vec::with_capacity(communities.len());
        for meta in communities.values() {
            views.push(self.community_view(meta, false).await?);
        }
        views.sort_by(|a, b| a.jid.cmp(&b.jid));
        Ok(views)
    }

    pub async fn community(&self, community: &GroupJid) -> Result<CommunityView, Error> {
        let meta = self.metadata(community).await?;
        if !meta.is_parent_group {
            return Err(Error::NotFound(
                "no such community (the group is not a community)".to_owned(),
            ));
        }
        self.community_view(&meta, true).await
    }

    /// Members of a community across its linked groups, with admin flags from the community.
    pub async fn community_participants(
        &self,
        community: &GroupJid,
    ) -> Result<Vec<ParticipantView>, Error> {
        let client = self.client()?;
        let jid = community.to_wa();
        let members = call(
            "community_participants",
            self.timeout(),
            client.community().get_linked_groups_participants(&jid),
        )
        .await
        .map_err(read_error)?;
        let parent = self.metadata(community).await?;
        let mut views = self.participant_views(&members).await?;
        let admins: HashMap<String, (bool, bool)> = self
            .participant_views(&parent.participants)
            .await?
            .into_iter()
            .map(|p| (p.jid, (p.is_admin, p.is_super_admin)))
            .collect();
        for view in &mut views {
            if let Some((admin, super_admin)) = admins.get(&view.jid) {
                view.is_admin = *admin;
                view.is_super_admin = *super_admin;
            }
        }
        // A member of several linked groups is listed once.
        let mut seen = std::collections::HashSet::new();
        views.retain(|v| seen.insert(v.jid.clone()));
        Ok(views)
    }

    /// Links (or unlinks) groups to a community; answers the ones done and the ones refused.
    pub async fn link(
        &self,
        community: &GroupJid,
        groups: &[GroupJid],
        link: bool,
    ) -> Result<(Vec<String>, Vec<LinkFailure>), Error> {
        let client = self.client()?;
        let parent = community.to_wa();
        let jids: Vec<Jid> = groups.iter().map(GroupJid::to_wa).collect();
        let (done, failed) = if link {
            let result = call(
                "community_link",
                self.timeout(),
                client.community().link_subgroups(&parent, &jids),
            )
            .await
            .map_err(change_error)?;
            (result.linked_jids, result.failed_groups)
        } else {
            let result = call(
                "community_unlink",
                self.timeout(),
                client.community().unlink_subgroups(&parent, &jids, false),
            )
            .await
            .map_err(change_error)?;
            (result.unlinked_jids, result.failed_groups)
        };
        Ok((
            done.iter().map(ToString::to_string).collect(),
            failed
                .into_iter()
                .map(|(jid, code)| LinkFailure {
                    group_jid: jid.to_string(),
                    code,
                })
                .collect(),
        ))
    }

    pub async fn deactivate(&self, community: &GroupJid) -> Result<(), Error> {
        let client = self.client()?;
        let jid = community.to_wa();
        call(
            "community_deactivate",
            self.timeout(),
            client.community().deactivate(&jid),
        )
        .await
        .map_err(change_error)
    }
}

/// JIDs without repeats, first occurrence kept.
fn dedup(jids: impl Iterator<Item = Jid>) -> Vec<Jid> {
    let mut seen = std::collections::HashSet::new();
    jids.filter(|j| seen.insert(j.to_string())).collect()
}
