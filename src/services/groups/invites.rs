//! Invite links and joining: a group's link (read, or reset so the old one stops working), a
//! link's preview without joining, joining by link or by a private invite received in a
//! message, and the disappearing-message timer.

use serde::Serialize;
use whatsapp_rust::features::JoinGroupResult;

use super::{Groups, change_error};
use crate::domain::{ContactId, EphemeralTimer, GroupJid, InviteCode};
use crate::services::error::Error;
use crate::session::SessionError;
use crate::session::group_events::{ChangeKind, GroupChange};
use crate::session::whatsapp::call;

/// What to join.
#[derive(Debug, Clone)]
pub enum JoinTarget {
    /// A group's invite link.
    Link(InviteCode),
    /// A private invite (`GroupInviteMessage`) an admin of `group` sent: its code, the admin
    /// who sent it, and its expiry in seconds since the epoch (0 when not known).
    Invite {
        code: InviteCode,
        group: GroupJid,
        inviter: ContactId,
        expiration: i64,
    },
}

/// What a join did.
#[derive(Debug, Clone, Serialize)]
pub struct JoinOutcome {
    pub group_jid: String,
    /// The group approves its members: the device asked to join and waits for an admin.
    pub pending_approval: bool,
}

/// What an invite link leads to, read without joining.
#[derive(Debug, Clone, Serialize)]
pub struct InviteInfo {
    pub group_jid: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    pub members_count: usize,
    /// Joining asks an admin first.
    pub join_approval: bool,
    /// The link leads to a community itself.
    pub is_community: bool,
    /// The community the group belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub community_jid: Option<String>,
}

/// WhatsApp's refusals of a join or a preview (whatsapp-rust `GroupJoinError`,
/// `InviteInfoError`): a link that never was or was reset (or an invite that expired) is not
/// found; already being in the group is a conflict; the rest are WhatsApp errors.
fn invite_failure(err: SessionError) -> Error {
    match err {
        SessionError::WhatsApp { code: 404, .. } => {
            Error::NotFound("no group has this invite (or it was revoked)".to_owned())
        }
        SessionError::WhatsApp { code: 410, .. } => {
            Error::NotFound("the invite link was reset, or the invite expired".to_owned())
        }
        SessionError::WhatsApp {
            code: 304 | 409, ..
        } => Error::Conflict("the device is already a member of this group".to_owned()),
        SessionError::WhatsApp {
            code: 401 | 403, ..
        } => Error::Forbidden("WhatsApp refused: the device may not join this group".to_owned()),
        other => Error::Session(other),
    }
}

impl Groups<'_> {
    /// The group's invite link; with `reset`, a new one (the old one stops working). Admins
    /// only.
    pub async fn invite_link(&self, group: &GroupJid, reset: bool) -> Result<String, Error> {
        let client = self.client();
        let jid = group.to_wa();
        let kind = if reset {
            "group_invite_reset"
        } else {
            "group_invite"
        };
        call(
            kind,
            self.timeout(),
            client.groups().get_invite_link(&jid, reset),
        )
        .await
        .map_err(change_error)
    }

    /// What a link leads to, without joining.
    pub async fn invite_info(&self, code: &InviteCode) -> Result<InviteInfo, Error> {
        let client = self.client();
        let meta = call(
            "group_invite_info",
            self.timeout(),
            client.groups().get_invite_info(code.as_str()),
        )
        .await
        .map_err(invite_failure)?;
        let view = self.view(&meta, false).await?;
        Ok(InviteInfo {
            group_jid: view.jid,
            name: view.name,
            topic: view.topic,
            owner: view.owner,
            created_at: view.created_at,
            members_count: view.members_count,
            join_approval: view.join_approval,
            is_community: view.is_community,
            community_jid: view.parent_jid,
        })
    }

    /// Joins by link or by a private invite. A group that approves its members records a
    /// request instead (`pending_approval`).
    pub async fn join(&self, target: JoinTarget) -> Result<JoinOutcome, Error> {
        let client = self.client();
        let groups = client.groups();
        let joined = match &target {
            JoinTarget::Link(code) => {
                call(
                    "group_join",
                    self.timeout(),
                    groups.join_with_invite_code(code.as_str()),
                )
                .await
            }
            JoinTarget::Invite {
                code,
                group,
                inviter,
                expiration,
            } => {
                let now = chrono::Utc::now().timestamp();
                if *expiration > 0 && *expiration < now {
                    return Err(Error::invalid("expiration", "the invite has expired"));
                }
                call(
                    "group_join",
                    self.timeout(),
                    groups.join_with_invite_v4(
                        group.to_wa(),
                        code.as_str(),
                        *expiration,
                        inviter.to_wa(),
                    ),
                )
                .await
            }
        }
        .map_err(invite_failure)?;
        let (jid, pending_approval) = match joined {
            JoinGroupResult::Joined(jid) => (jid, false),
            JoinGroupResult::PendingApproval(jid) => (jid, true),
        };
        let group = GroupJid::from_wa(&jid)
            .ok_or_else(|| Error::internal(anyhow::anyhow!("joined a non-group JID")))?;
        if !pending_approval {
            // The join's own event: WhatsApp does not notify the device of its own join.
            // Best effort: the metadata names the group; without it the reconciliation on the
            // next connect reports the join.
            if let Ok(meta) = self.metadata(&group).await {
                self.report(vec![GroupChange {
                    group: group.clone(),
                    actor: None,
                    kind: ChangeKind::Joined {
                        name: Some(meta.subject.to_string()),
                        is_community: meta.is_parent_group,
                        parent: meta.parent_group_jid.as_ref().map(ToString::to_string),
                    },
                }])
                .await;
            }
        }
        Ok(JoinOutcome {
            group_jid: group.jid(),
            pending_approval,
        })
    }

    /// Sets the group's disappearing-message timer (0 turns it off).
    pub async fn set_ephemeral(
        &self,
        group: &GroupJid,
        timer: EphemeralTimer,
    ) -> Result<(), Error> {
        let client = self.client();
        let jid = group.to_wa();
        call(
            "group_settings",
            self.timeout(),
            client.groups().set_ephemeral(&jid, timer.seconds()),
        )
        .await
        .map_err(change_error)?;
        let mut settings = serde_json::Map::new();
        settings.insert(
            "ephemeral_seconds".to_owned(),
            serde_json::json!(timer.seconds()),
        );
        self.report(vec![
            GroupChange::info(group.clone(), "settings", Vec::new())
                .with_field("settings", serde_json::Value::Object(settings)),
        ])
        .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wa(code: u16) -> SessionError {
        SessionError::WhatsApp {
            code,
            text: String::new(),
        }
    }

    #[test]
    fn join_refusals_are_named() {
        assert!(matches!(invite_failure(wa(404)), Error::NotFound(_)));
        assert!(matches!(invite_failure(wa(410)), Error::NotFound(_)));
        assert!(matches!(invite_failure(wa(304)), Error::Conflict(_)));
        assert!(matches!(invite_failure(wa(409)), Error::Conflict(_)));
        assert!(matches!(invite_failure(wa(403)), Error::Forbidden(_)));
        assert!(matches!(
            invite_failure(wa(419)),
            Error::Session(SessionError::WhatsApp { code: 419, .. })
        ));
        assert!(matches!(
            invite_failure(SessionError::Timeout),
            Error::Session(SessionError::Timeout)
        ));
    }
}
