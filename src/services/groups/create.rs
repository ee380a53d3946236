//! Creating a group, a community, or a group inside a community.

use wacore_binary::Jid;
use whatsapp_rust::features::{
    CreateCommunityOptions, GroupCreateOptions, GroupDescription, GroupParticipantOptions,
    GroupSubject, MembershipApprovalMode, PreviousDescription,
};

use super::{
    ChangeResult, ChangeStatus, GroupView, Groups, NewGroup, ParticipantView, change_error, dedup,
};
use crate::domain::GroupJid;
use crate::services::error::Error;
use crate::session::group_events::{ChangeKind, GroupChange};
use crate::session::whatsapp::call;

impl Groups<'_> {
    /// Creates a group (or a community, or a group inside one); answers it and the outcome for
    /// each participant.
    pub async fn create(&self, new: NewGroup) -> Result<(GroupView, Vec<ChangeResult>), Error> {
        let client = self.client();
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
                    invite_code: None,
                    invite_expiration: None,
                }
            })
            .collect();
        if let Some(group) = GroupJid::from_wire(&view.jid) {
            self.report(vec![GroupChange {
                group,
                actor: None,
                kind: ChangeKind::Joined {
                    name: Some(view.name.clone()),
                    is_community: new.community,
                    parent: view.parent_jid.clone(),
                },
            }])
            .await;
        }
        Ok((view, results))
    }
}
