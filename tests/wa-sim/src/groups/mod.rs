//! Groups and communities (`w:g2`): create, metadata, participants with per-participant codes,
//! subject, description, settings (disappearing messages, a community's settings), invite
//! links, previews and joining by link or by private invite ([`joining`]), join requests, leave,
//! the participating list, and communities (parent groups with an announcement group and a
//! General group, linked sub-groups, the sub-group list, linked-groups participants,
//! deactivation). Every change is announced to the members' companions with a `w:gp2`
//! notification ([`notify`]).
//!
//! Groups address members by LID (`addressing_mode="lid"`) and carry each member's phone number
//! beside it, as WhatsApp's groups do now. Whole-request failures are IQ errors (404 group gone,
//! 403 not an admin or not a participant, 400 malformed); per-participant outcomes are `error`
//! codes on each `<participant>` (404 no account or not a member, 409 already a member, 403 the
//! user's privacy setting, with an `<add_request>` private invite the invitee may `accept`).
//!
//! The same [`act`] serves a companion's IQ and the control API's actions of other accounts, so
//! a change made "on another phone" goes through exactly the checks and notifications a
//! companion's does.

mod change;
mod community;
pub mod control;
mod joining;
mod notify;
mod read;

use wacore_binary::Node;

use crate::iq::Answer;
use crate::session::Session;
use crate::stanza::{children, split_jid};
use crate::world::WorldState;
use notify::Notices;

pub fn answer(session: &mut Session, iq: &Node, kind: &str) -> Answer {
    let Some((phone, _)) = session.login.clone() else {
        return Answer::Error(401);
    };
    let Some(action) = children(iq).first() else {
        return Answer::Error(400);
    };
    let to = crate::stanza::attr(iq, "to").unwrap_or_default();
    let mut world = session.sim.world.lock();
    let mut notices = Notices::default();
    let answer = act(&mut world, &mut notices, &phone, &to, kind, action);
    if !notices.is_empty() {
        notify::send(&world, &session.sim, &phone, Some(session.conn.id), notices);
    }
    answer
}

/// One `w:g2` request by the account `phone`, addressed `to` a group (or to `g.us` itself).
pub fn act(
    world: &mut WorldState,
    notices: &mut Notices,
    phone: &str,
    to: &str,
    kind: &str,
    action: &Node,
) -> Answer {
    let (group_id, server) = split_jid(to);
    let server_level = server != "g.us" || group_id.is_empty() || group_id == "g.us";
    if server_level {
        return match (kind, action.tag.as_ref()) {
            ("get", "participating") => read::participating(world, phone),
            ("set", "create") => change::create(world, notices, phone, action),
            ("set", "leave") => change::leave(world, notices, phone, action),
            ("get", "invite") => joining::invite_info(world, action),
            ("set", "invite") => joining::join_by_code(world, notices, phone, action, false),
            _ => Answer::Error(400),
        };
    }
    match world.groups.get(&group_id) {
        Some(group) if !group.deactivated => {}
        _ => return Answer::Error(404),
    }
    match (kind, action.tag.as_ref()) {
        ("get", "query") => read::query(world, phone, &group_id),
        ("get", "sub_groups") => read::sub_groups(world, phone, &group_id),
        ("get", "linked_groups_participants") => read::linked_participants(world, phone, &group_id),
        ("get", "invite") => joining::invite_code(world, notices, phone, &group_id, false),
        ("set", "invite") => joining::invite_code(world, notices, phone, &group_id, true),
        ("set", "accept") => joining::accept_invite(world, notices, phone, &group_id, action),
        ("get", "membership_approval_requests") => read::requests(world, phone, &group_id),
        ("set", "membership_requests_action") => {
            joining::answer_requests(world, notices, phone, &group_id, action)
        }
        ("set", "add" | "remove" | "promote" | "demote") => {
            change::participants(world, notices, phone, &group_id, action)
        }
        ("set", "links") => community::link(world, notices, phone, &group_id, action),
        ("set", "unlink") => community::unlink(world, notices, phone, &group_id, action),
        ("set", "delete_parent") => community::deactivate(world, notices, phone, &group_id),
        ("set", _) => change::settings(world, notices, phone, &group_id, action),
        _ => Answer::Error(400),
    }
}
