//! Participant changes: add, remove, promote, demote, with one outcome per participant.

use wacore_binary::Jid;
use whatsapp_rust::features::ParticipantChangeResponse;

use super::{Action, ChangeResult, ChangeStatus, Groups, Target, change_error, dedup};
use crate::domain::{ContactId, GroupJid, Identity, PhoneNumber};
use crate::services::contacts::member_identity;
use crate::services::error::Error;
use crate::session::group_events::GroupChange;
use crate::session::whatsapp::call;

fn change_status(action: Action, code: u16) -> ChangeStatus {
    match (action, code) {
        (_, 403) | (_, 401) => ChangeStatus::NotAuthorized,
        (_, 409) => ChangeStatus::AlreadyMember,
        (Action::Add, 404) => ChangeStatus::NotOnWhatsapp,
        (_, 404) => ChangeStatus::NotMember,
        _ => ChangeStatus::Error,
    }
}

impl Groups<'_> {
    /// Applies a participant change; one result per input, in order. With `across_linked`, a
    /// removal also reaches every group linked to the community.
    pub async fn change_participants(
        &self,
        group: &GroupJid,
        action: Action,
        participants: &[ContactId],
        across_linked: bool,
    ) -> Result<Vec<ChangeResult>, Error> {
        let client = self.client();
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
        let results = outcomes(&targets, &answers, |code| change_status(action, code));
        let changed = changed_identities(&results);
        if !changed.is_empty() {
            let change = match action {
                Action::Add => "participants_added",
                Action::Remove => "participants_removed",
                Action::Promote => "promoted",
                Action::Demote => "demoted",
            };
            self.report(vec![GroupChange::info(group.clone(), change, changed)])
                .await;
        }
        Ok(results)
    }
}

/// One result per target, in input order, from WhatsApp's per-participant answers (matched by
/// the JID sent, or by the phone number WhatsApp gave beside a LID); `status_of` names a code.
/// A privacy refusal carries the private invite WhatsApp issued (`<add_request>`).
pub(crate) fn outcomes(
    targets: &[Target],
    answers: &[ParticipantChangeResponse],
    status_of: impl Fn(u16) -> ChangeStatus,
) -> Vec<ChangeResult> {
    targets
        .iter()
        .map(|t| {
            let Some(sent) = &t.send else {
                return ChangeResult {
                    jid: t.answer_jid(),
                    phone_number: t.identity.phone_digits(),
                    status: ChangeStatus::NotOnWhatsapp,
                    code: None,
                    invite_code: None,
                    invite_expiration: None,
                };
            };
            let answer = answers.iter().find(|a| {
                a.jid.user == sent.user
                    || member_identity(&a.jid, None, a.phone_number.as_ref()).same_user(&t.identity)
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
                    Some(code) => (status_of(code), Some(code)),
                },
            };
            let invite = answer.and_then(|a| a.add_request.as_ref());
            ChangeResult {
                jid: phone
                    .as_ref()
                    .map_or_else(|| t.answer_jid(), PhoneNumber::jid),
                phone_number: phone.map(|p| p.as_str().to_owned()),
                status,
                code,
                invite_code: invite.map(|i| i.code.clone()),
                invite_expiration: invite.map(|i| i.expiration),
            }
        })
        .collect()
}

/// Who a change reached: the participants whose result is `ok`.
pub(crate) fn changed_identities(results: &[ChangeResult]) -> Vec<Identity> {
    results
        .iter()
        .filter(|r| r.status == ChangeStatus::Ok)
        .map(|r| {
            let id = ContactId::from_wire(&r.jid);
            let phone = r
                .phone_number
                .as_deref()
                .and_then(|p| PhoneNumber::from_digits(p).ok());
            let lid = id.as_ref().and_then(|c| c.lid().cloned());
            Identity::new(phone.or_else(|| id.and_then(|c| c.phone().cloned())), lid)
        })
        .collect()
}
