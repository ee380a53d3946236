//! `w:gp2` notifications: every change to a group, by anyone, reaches the companions of every
//! member (and of the members it removed).
//!
//! Shapes follow whatsmeow `group.go` (`parseGroupNotification`, `parseGroupChange`,
//! `parseGroupCreate`), Baileys `Socket/messages-recv.js` (`handleGroupNotification`, whose stub
//! messages `Utils/process-message.js` turns into `group-participants.update` and
//! `groups.update`) and whatsapp-rust `wacore/src/stanza/groups.rs` (WA Web's
//! `WAWebHandleGroupNotification`):
//!
//! `<notification from="<group>@g.us" type="w:gp2" id t participant="<actor LID>"
//! participant_pn="<actor number>" addressing_mode="lid" notify="<actor push name>">` with one
//! child per change: `create` (with the `<group>`), `add`/`remove`/`promote`/`demote` (with
//! `<participant jid="<LID>" phone_number="<number>">`), `subject`, `description`,
//! `announcement`/`not_announcement`, `locked`/`unlocked`, `membership_approval_mode`,
//! `member_add_mode`, `created_membership_requests` (with `<requested_user>`),
//! `revoked_membership_requests`, `link`/`unlink` (with the other `<group>`), `delete`.
//!
//! The companion whose IQ made the change is not sent the notification: the IQ's answer tells
//! it (a simplification; see the README).

use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::sim::{Sim, now_secs};
use crate::world::{Outbound, WorldState};

/// Who hears a change besides the group's members after it.
#[derive(Debug, Clone, Default)]
pub struct Audience {
    /// Accounts that are no longer members (removed, left) and must learn it.
    pub also: Vec<String>,
    /// Only the group's admins (and `also`) hear it: membership requests.
    pub admins_only: bool,
}

/// One change to announce.
#[derive(Debug, Clone)]
pub struct Notice {
    pub group: String,
    pub child: Node,
    pub audience: Audience,
}

/// The changes one action made, to announce once it is done.
#[derive(Debug, Default)]
pub struct Notices(Vec<Notice>);

impl Notices {
    /// A change every member hears.
    pub fn push(&mut self, group: &str, child: Node) {
        self.push_to(group, child, Audience::default());
    }

    pub fn push_to(&mut self, group: &str, child: Node, audience: Audience) {
        self.0.push(Notice {
            group: group.to_owned(),
            child,
            audience,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `<participant jid="<LID>" phone_number="<number>">` for an account, as groups in LID
/// addressing name their members.
pub fn participant(world: &WorldState, phone: &str) -> Node {
    let lid = world
        .account(phone)
        .map(|a| a.lid_jid())
        .unwrap_or_default();
    NodeBuilder::new("participant")
        .attr("jid", lid)
        .attr("phone_number", format!("{phone}@s.whatsapp.net"))
        .build()
}

/// `<tag><participant/>...</tag>` for a participant change.
pub fn participants_change(world: &WorldState, tag: &str, phones: &[String]) -> Node {
    NodeBuilder::new_dynamic(tag.to_owned())
        .children(phones.iter().map(|p| participant(world, p)))
        .build()
}

/// Sends each notice to the companions of its audience, as changes made by `actor`, skipping
/// the connection `skip` (the companion that made the change).
pub fn send(world: &WorldState, sim: &Sim, actor: &str, skip: Option<u64>, notices: Notices) {
    let actor_account = world.account(actor);
    for notice in notices.0 {
        let Some(group) = world.groups.get(&notice.group) else {
            continue;
        };
        let mut recipients: Vec<&str> = group
            .members
            .iter()
            .filter(|m| !notice.audience.admins_only || m.role.is_admin())
            .map(|m| m.phone.as_str())
            .collect();
        for phone in &notice.audience.also {
            if !recipients.contains(&phone.as_str()) {
                recipients.push(phone);
            }
        }
        let mut node = NodeBuilder::new("notification")
            .attr("from", group.jid())
            .attr("type", "w:gp2")
            .attr("id", sim.stanza_id())
            .attr("t", now_secs().to_string())
            .attr("addressing_mode", "lid");
        if let Some(account) = actor_account {
            node = node
                .attr("participant", account.lid_jid())
                .attr("participant_pn", account.jid());
            if let Some(name) = &account.push_name {
                node = node.attr("notify", name.clone());
            }
        }
        let node = node.children([notice.child]).build();
        for phone in recipients {
            for handle in world.companion_sessions(phone) {
                if Some(handle.id) != skip {
                    handle.send(Outbound::Node(node.clone()));
                }
            }
        }
    }
}
