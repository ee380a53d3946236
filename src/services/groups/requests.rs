//! Join requests of a group (or community) that approves its members: who asked, and an admin's
//! answer, with one outcome per requester as participant changes have.

use serde::Serialize;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, NodeContent};
use whatsapp_rust::request::{InfoQuery, InfoQueryType};

use super::participants::{changed_identities, outcomes};
use super::{ChangeResult, ChangeStatus, Groups, change_error, dedup, time_text};
use crate::domain::{ContactId, GroupJid, Identity, Lid};
use crate::services::contacts::member_identity;
use crate::services::error::Error;
use crate::session::SessionError;
use crate::session::group_events::GroupChange;
use crate::session::whatsapp::call;
use crate::store::identities;

/// Someone waiting for an admin to let them in.
#[derive(Debug, Clone, Serialize)]
pub struct JoinRequestView {
    /// The phone-number JID when known, else the LID JID.
    pub jid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lid_jid: Option<String>,
    /// When they asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<String>,
    /// How they asked, as WhatsApp says it (`invite_link`, `linked_group_join`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

fn request_status(code: u16) -> ChangeStatus {
    match code {
        404 => ChangeStatus::NoRequest,
        401 | 403 => ChangeStatus::NotAuthorized,
        409 => ChangeStatus::AlreadyMember,
        _ => ChangeStatus::Error,
    }
}

impl Groups<'_> {
    /// Pending join requests, oldest first as WhatsApp lists them. Admins only.
    pub async fn join_requests(&self, group: &GroupJid) -> Result<Vec<JoinRequestView>, Error> {
        let client = self.client();
        // Sent as whatsapp-rust's `GetMembershipRequestsIq` sends it, read here because its
        // parser drops the requester's `phone_number` (Baileys `groupRequestParticipantsList`
        // keeps every attribute).
        let query = InfoQuery {
            namespace: "w:g2",
            query_type: InfoQueryType::Get,
            to: group.to_wa(),
            target: None,
            id: None,
            content: Some(NodeContent::Nodes(vec![
                NodeBuilder::new("membership_approval_requests").build(),
            ])),
            timeout: Some(self.timeout()),
        };
        let answer = call("group_join_requests", self.timeout(), client.send_iq(query))
            .await
            .map_err(change_error)?;
        let node = answer.get().to_owned();
        let Some(list) = node.get_optional_child("membership_approval_requests") else {
            return Err(SessionError::WhatsApp {
                code: 500,
                text: "join requests without <membership_approval_requests>".to_owned(),
            }
            .into());
        };
        let mut found: Vec<(Identity, Option<u64>, Option<String>)> = Vec::new();
        for request in list.get_children_by_tag("membership_approval_request") {
            let attr = |name: &str| request.attrs.get(name).map(ToString::to_string);
            let Some(jid) = attr("jid").and_then(|j| j.parse::<Jid>().ok()) else {
                continue;
            };
            let phone = attr("phone_number").and_then(|p| p.parse::<Jid>().ok());
            let identity = member_identity(&jid, None, phone.as_ref());
            let time = attr("request_time").and_then(|t| t.parse::<u64>().ok());
            found.push((identity, time, attr("request_method")));
        }
        let learned: Vec<Identity> = found.iter().map(|(i, _, _)| i.clone()).collect();
        self.contacts.learn(&learned).await;
        let missing: Vec<Lid> = found
            .iter()
            .filter(|(i, _, _)| i.phone.is_none())
            .filter_map(|(i, _, _)| i.lid.clone())
            .collect();
        let known =
            identities::phones_of_lids(self.contacts.db, self.contacts.session.scope(), &missing)
                .await?;
        Ok(found
            .into_iter()
            .map(|(mut identity, time, method)| {
                if identity.phone.is_none()
                    && let Some(phone) = identity.lid.as_ref().and_then(|l| known.get(l))
                {
                    identity.phone = Some(phone.clone());
                }
                JoinRequestView {
                    jid: identity.jid().unwrap_or_default(),
                    phone_number: identity.phone_digits(),
                    lid_jid: identity.lid_jid(),
                    requested_at: time_text(time),
                    method,
                }
            })
            .collect())
    }

    /// Approves or rejects join requests; one result per input, in order. An approved
    /// requester is a member.
    pub async fn answer_join_requests(
        &self,
        group: &GroupJid,
        participants: &[ContactId],
        approve: bool,
    ) -> Result<Vec<ChangeResult>, Error> {
        let client = self.client();
        let jid = group.to_wa();
        let targets = self.targets(participants).await?;
        let senders: Vec<Jid> = dedup(targets.iter().filter_map(|t| t.send.clone()));
        let answers = if senders.is_empty() {
            Vec::new()
        } else {
            self.contacts.session.pace().await?;
            let groups = client.groups();
            let work = async {
                if approve {
                    groups.approve_membership_requests(&jid, &senders).await
                } else {
                    groups.reject_membership_requests(&jid, &senders).await
                }
            };
            call("group_join_requests_answer", self.timeout(), work)
                .await
                .map_err(change_error)?
        };
        let learned: Vec<Identity> = answers
            .iter()
            .map(|a| member_identity(&a.jid, None, a.phone_number.as_ref()))
            .collect();
        self.contacts.learn(&learned).await;
        let results = outcomes(&targets, &answers, request_status);
        let added = changed_identities(&results);
        if approve && !added.is_empty() {
            self.report(vec![GroupChange::info(
                group.clone(),
                "participants_added",
                added,
            )])
            .await;
        }
        Ok(results)
    }
}
