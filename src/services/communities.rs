//! Communities: groups with linked groups (the announcement group among them). Create, read,
//! members across the linked groups, link and unlink groups, deactivate. Leaving is
//! [`Groups::leave`] with `community`.

use std::collections::HashMap;

use serde::Serialize;
use wacore_binary::Jid;
use wacore_binary::NodeContent;
use wacore_binary::builder::NodeBuilder;
use whatsapp_rust::features::{GroupMetadata, MembershipApprovalMode};
use whatsapp_rust::request::{InfoQuery, InfoQueryType};

use super::error::Error;
use super::groups::{ChangeResult, Groups, NewGroup, ParticipantView, change_error, read_error};
use crate::domain::{ContactId, GroupJid};
use crate::session::SessionError;
use crate::session::group_events::GroupChange;
use crate::session::whatsapp::call;

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
    /// Joining asks an admin first.
    pub join_approval: bool,
    /// Members (not only admins) may add groups to the community.
    pub members_can_add_groups: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participants: Option<Vec<ParticipantView>>,
}

/// Settings a `PATCH /communities/{jid}` changes; at least one is set.
#[derive(Debug, Clone, Default)]
pub struct CommunityChanges {
    pub members_can_add_groups: Option<bool>,
    pub join_approval: Option<bool>,
}

/// A link or unlink outcome for one group that failed.
#[derive(Debug, Clone, Serialize)]
pub struct LinkFailure {
    pub group_jid: String,
    pub code: u32,
}

impl Groups<'_> {
    /// A community's linked groups, the announcement group flagged.
    pub async fn linked_groups(&self, community: &GroupJid) -> Result<Vec<LinkedGroup>, Error> {
        let client = self.client();
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
                let jid = GroupJid::from_wire(&id)?.jid();
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
            join_approval: meta.membership_approval,
            members_can_add_groups: meta.allow_non_admin_sub_group_creation,
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
        let client = self.client();
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
        let client = self.client();
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
        let client = self.client();
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
        let linked: Vec<serde_json::Value> = done
            .iter()
            .filter_map(GroupJid::from_wa)
            .map(|g| serde_json::json!(g.jid()))
            .collect();
        if !linked.is_empty() {
            let change = if link { "linked" } else { "unlinked" };
            self.report(vec![
                GroupChange::info(community.clone(), change, Vec::new())
                    .with_field("groups", serde_json::Value::Array(linked)),
            ])
            .await;
        }
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

    /// Changes a community's settings; answers the community as it is afterwards.
    pub async fn update_community(
        &self,
        community: &GroupJid,
        changes: CommunityChanges,
    ) -> Result<CommunityView, Error> {
        // A group that is not a community has none of these settings.
        let meta = self.metadata(community).await?;
        if !meta.is_parent_group {
            return Err(Error::NotFound(
                "no such community (the group is not a community)".to_owned(),
            ));
        }
        let client = self.client();
        let jid = community.to_wa();
        let mut settings = serde_json::Map::new();
        if let Some(allowed) = changes.members_can_add_groups {
            // whatsapp-rust has no setter: the SetProperty toggle WhatsApp Web sends
            // (`WAWebSetPropertyGroupAction`), `<allow_non_admin_sub_group_creation/>` or
            // `<not_allow_non_admin_sub_group_creation/>`, as whatsmeow's notifications name it.
            let tag = if allowed {
                "allow_non_admin_sub_group_creation"
            } else {
                "not_allow_non_admin_sub_group_creation"
            };
            let query = InfoQuery {
                namespace: "w:g2",
                query_type: InfoQueryType::Set,
                to: jid.clone(),
                target: None,
                id: None,
                content: Some(NodeContent::Nodes(vec![NodeBuilder::new(tag).build()])),
                timeout: Some(self.timeout()),
            };
            call("group_settings", self.timeout(), client.send_iq(query))
                .await
                .map_err(change_error)?;
            settings.insert(
                "members_can_add_groups".to_owned(),
                serde_json::json!(allowed),
            );
        }
        if let Some(approval) = changes.join_approval {
            let mode = if approval {
                MembershipApprovalMode::On
            } else {
                MembershipApprovalMode::Off
            };
            call(
                "group_settings",
                self.timeout(),
                client.groups().set_membership_approval(&jid, mode),
            )
            .await
            .map_err(change_error)?;
            settings.insert(
                "membership_approval".to_owned(),
                serde_json::json!(approval),
            );
        }
        let reported = settings
            .into_iter()
            .map(|(name, value)| {
                let mut one = serde_json::Map::new();
                one.insert(name, value);
                GroupChange::info(community.clone(), "settings", Vec::new())
                    .with_field("settings", serde_json::Value::Object(one))
            })
            .collect();
        self.report(reported).await;
        self.community(community).await
    }

    pub async fn deactivate(&self, community: &GroupJid) -> Result<(), Error> {
        let client = self.client();
        let jid = community.to_wa();
        call(
            "community_deactivate",
            self.timeout(),
            client.community().deactivate(&jid),
        )
        .await
        .map_err(change_error)?;
        self.report(vec![GroupChange::info(
            community.clone(),
            "deactivated",
            Vec::new(),
        )])
        .await;
        Ok(())
    }
}
