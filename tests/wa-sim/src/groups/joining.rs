//! Invite links, joining and join requests: the group's invite-link code (get, reset), its
//! preview, joining by link (or asking to, when the group approves its members), the private
//! invites WhatsApp issues when an add is refused by the invitee's privacy setting and their
//! acceptance (`accept`), and admins answering join requests.
//!
//! References: whatsmeow `group.go` (`GetGroupInviteLink` with reset, `GetGroupInfoFromLink`,
//! `JoinGroupWithLink`, `JoinGroupWithInvite`, `GetGroupRequestParticipants`,
//! `UpdateGroupRequestParticipants`); Baileys `groups.js` (`groupInviteCode`,
//! `groupRevokeInvite`, `groupGetInviteInfo`, `groupAcceptInvite`, `groupAcceptInviteV4`,
//! `groupRequestParticipantsList`, `groupRequestParticipantsUpdate`); whatsapp-rust
//! `wacore/src/iq/groups.rs` (`GetGroupInviteLinkIq`, `GetGroupInviteInfoIq`,
//! `AcceptGroupInviteIq`, `AcceptGroupInviteV4Iq` with `parse_join_group_response`,
//! `GetMembershipRequestsIq`, `MembershipRequestActionIq`, `GroupJoinError` /
//! `InviteInfoError`: 410 for a link that was reset).

use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use super::change::{participant_phone, random_code};
use super::community::join_community;
use super::notify::{Audience, Notices, participant, participants_change};
use super::read::group_node;
use crate::iq::Answer;
use crate::sim::now_secs;
use crate::stanza::{attr, children};
use crate::world::{AddInvite, JoinRequest, Member, Role, WorldState};

/// How long a private add-request invite stays valid, in seconds (WhatsApp: three days).
const ADD_INVITE_SECONDS: u64 = 3 * 24 * 3600;

/// An add by `admin` of `phone` was refused by `phone`'s privacy setting: WhatsApp answers the
/// admin with a private invite (`<add_request code expiration>`) that `phone` may accept
/// within three days. A second refused add renews it.
pub fn issue_add_invite(world: &mut WorldState, id: &str, admin: &str, phone: &str) -> AddInvite {
    let invite = AddInvite {
        phone: phone.to_owned(),
        code: random_code(16),
        expiration: now_secs() + ADD_INVITE_SECONDS,
        admin: admin.to_owned(),
    };
    if let Some(group) = world.groups.get_mut(id) {
        group.add_invites.retain(|i| i.phone != phone);
        group.add_invites.push(invite.clone());
    }
    invite
}

/// The community a member of `group` belongs to: the group itself when it is one.
fn community_of(group: &crate::world::Group) -> Option<String> {
    if group.is_parent {
        Some(group.id.clone())
    } else {
        group.parent.clone()
    }
}

/// The group whose invite link has `code`: 404 for no such link, 410 for one that was reset
/// (whatsapp-rust `GroupJoinError::Gone`, `InviteInfoError::Gone`).
fn group_by_code(world: &WorldState, code: &str) -> Result<String, u16> {
    let live = world.groups.values().filter(|g| !g.deactivated);
    let mut revoked = false;
    for group in live {
        if group.invite_code == code {
            return Ok(group.id.clone());
        }
        revoked |= group.revoked_codes.iter().any(|c| c == code);
    }
    Err(if revoked { 410 } else { 404 })
}

/// `<invite code>`: the group's invite-link code (get), or a new one that revokes the old (set).
/// Admins only.
pub fn invite_code(
    world: &mut WorldState,
    notices: &mut Notices,
    phone: &str,
    id: &str,
    reset: bool,
) -> Answer {
    let Some(group) = world.groups.get_mut(id) else {
        return Answer::Error(404);
    };
    if !group.is_admin(phone) {
        return Answer::Error(403);
    }
    if reset {
        let old = std::mem::replace(&mut group.invite_code, random_code(22));
        group.revoked_codes.push(old);
    }
    let code = group.invite_code.clone();
    if reset {
        // whatsmeow `parseGroupChange` `invite`, Baileys `GROUP_CHANGE_INVITE_LINK`.
        notices.push(
            id,
            NodeBuilder::new("invite")
                .attr("code", code.clone())
                .build(),
        );
    }
    Answer::Result(vec![NodeBuilder::new("invite").attr("code", code).build()])
}

/// `<invite code>` sent to `g.us`: the account joins the group whose link has that code
/// (Baileys `groups.js` `groupAcceptInvite` reads `<group jid>` from the answer). A group that
/// approves its members records a join request instead and tells its admins
/// (`created_membership_requests`, request method `invite_link`), as does `ask`, an account
/// asking to join without a link.
pub fn join_by_code(
    world: &mut WorldState,
    notices: &mut Notices,
    phone: &str,
    invite: &Node,
    ask: bool,
) -> Answer {
    let Some(code) = attr(invite, "code") else {
        return Answer::Error(400);
    };
    match group_by_code(world, &code) {
        Ok(id) => join(world, notices, phone, &id, ask),
        Err(code) => Answer::Error(code),
    }
}

/// `<invite code>` got from `g.us`: the group a link leads to, without joining (Baileys
/// `groupGetInviteInfo` reads it with `extractGroupMetadata`; whatsapp-rust
/// `GetGroupInviteInfoIq` takes `<group>` or `<community>`). Anyone with the link may look.
pub fn invite_info(world: &WorldState, invite: &Node) -> Answer {
    let Some(code) = attr(invite, "code") else {
        return Answer::Error(400);
    };
    match group_by_code(world, &code) {
        Ok(id) => match world.groups.get(&id) {
            Some(group) => Answer::Result(vec![group_node(world, group)]),
            None => Answer::Error(404),
        },
        Err(code) => Answer::Error(code),
    }
}

/// `<accept code expiration admin>` to the group: the invitee accepts a private invite (a
/// `GroupInviteMessage` the admin sent after a refused add). The code must be the one issued
/// to this account by that admin, and unexpired (410 once expired, 404 otherwise). The admin's
/// invite is their approval: the account joins even when the group approves members. Answered
/// with `<group jid>` as a join by link is (whatsapp-rust `AcceptGroupInviteV4Iq` parses it;
/// whatsmeow `JoinGroupWithInvite` ignores the content; Baileys `groupAcceptInviteV4` reads the
/// answer's `from`).
pub fn accept_invite(
    world: &mut WorldState,
    notices: &mut Notices,
    phone: &str,
    id: &str,
    accept: &Node,
) -> Answer {
    let (Some(code), Some(admin)) = (attr(accept, "code"), attr(accept, "admin")) else {
        return Answer::Error(400);
    };
    let admin = participant_phone(world, &admin);
    let Some(group) = world.groups.get_mut(id) else {
        return Answer::Error(404);
    };
    let Some(position) = group
        .add_invites
        .iter()
        .position(|i| i.phone == phone && i.code == code && Some(&i.admin) == admin.as_ref())
    else {
        return Answer::Error(404);
    };
    if group.add_invites[position].expiration < now_secs() {
        return Answer::Error(410);
    }
    group.add_invites.remove(position);
    if group.member(phone).is_some() {
        return Answer::Error(409);
    }
    group.members.push(Member {
        phone: phone.to_owned(),
        role: Role::Member,
    });
    group.requests.retain(|r| r.phone != phone);
    let jid = group.jid();
    // Joining a community, or one of its groups, makes one a member of the community and
    // its announcement group.
    let parent = community_of(group);
    let mut add = participants_change(world, "add", &[phone.to_owned()]);
    add.attrs.insert("reason", "invite");
    notices.push(id, add);
    if let Some(parent) = parent {
        join_community(world, notices, &parent, phone);
    }
    Answer::Result(vec![NodeBuilder::new("group").attr("jid", jid).build()])
}

/// An account joins `id` by its link, or asks to.
pub fn join(
    world: &mut WorldState,
    notices: &mut Notices,
    phone: &str,
    id: &str,
    ask: bool,
) -> Answer {
    let Some(group) = world.groups.get_mut(id) else {
        return Answer::Error(404);
    };
    if group.member(phone).is_some() {
        return Answer::Error(409);
    }
    let jid = group.jid();
    if group.join_approval || ask {
        if group.requests.iter().all(|r| r.phone != phone) {
            group.requests.push(JoinRequest {
                phone: phone.to_owned(),
                method: "invite_link".to_owned(),
                time: now_secs(),
            });
        }
        let mut requested_user = participant(world, phone);
        requested_user.tag = "requested_user".into();
        notices.push_to(
            id,
            NodeBuilder::new("created_membership_requests")
                .attr("request_method", "invite_link")
                .children([requested_user])
                .build(),
            Audience {
                admins_only: true,
                ..Default::default()
            },
        );
        return Answer::Result(vec![
            NodeBuilder::new("membership_approval_request")
                .attr("jid", jid)
                .build(),
        ]);
    }
    group.members.push(Member {
        phone: phone.to_owned(),
        role: Role::Member,
    });
    // Joining a community, or one of its groups, makes one a member of the community and
    // its announcement group.
    let parent = community_of(group);
    // whatsmeow `parseGroupChange`: an `add` with `reason="invite"` is a join by link.
    let mut add = participants_change(world, "add", &[phone.to_owned()]);
    add.attrs.insert("reason", "invite");
    notices.push(id, add);
    if let Some(parent) = parent {
        join_community(world, notices, &parent, phone);
    }
    Answer::Result(vec![NodeBuilder::new("group").attr("jid", jid).build()])
}

/// `<membership_requests_action><approve|reject><participant jid/>...`: an admin answers join
/// requests (Baileys `groups.js` `groupRequestParticipantsUpdate`). Approved requesters are
/// added and announced with an `add`; rejected ones are told with
/// `revoked_membership_requests`, as are the admins.
pub fn answer_requests(
    world: &mut WorldState,
    notices: &mut Notices,
    phone: &str,
    id: &str,
    action: &Node,
) -> Answer {
    match world.groups.get(id) {
        Some(group) if group.is_admin(phone) => {}
        Some(_) => return Answer::Error(403),
        None => return Answer::Error(404),
    }
    let mut answered = Vec::new();
    for verdict in children(action) {
        let approve = match verdict.tag.as_ref() {
            "approve" => true,
            "reject" => false,
            _ => return Answer::Error(400),
        };
        let mut results = Vec::new();
        let mut done = Vec::new();
        for requested in children(verdict).iter().filter(|c| c.tag == "participant") {
            let jid = attr(requested, "jid").unwrap_or_default();
            let target = participant_phone(world, &jid);
            let pending = target.as_ref().is_some_and(|t| {
                world
                    .groups
                    .get(id)
                    .is_some_and(|g| g.requests.iter().any(|r| &r.phone == t))
            });
            let mut node = NodeBuilder::new("participant").attr("jid", jid);
            if let Some(target) = &target {
                node = node.attr("phone_number", format!("{target}@s.whatsapp.net"));
            }
            match target.filter(|_| pending) {
                Some(target) => {
                    if let Some(group) = world.groups.get_mut(id) {
                        group.requests.retain(|r| r.phone != target);
                        if approve && group.member(&target).is_none() {
                            group.members.push(Member {
                                phone: target.clone(),
                                role: Role::Member,
                            });
                        }
                    }
                    done.push(target);
                }
                None => node = node.attr("error", "404"),
            }
            results.push(node.build());
        }
        if !done.is_empty() {
            if approve {
                notices.push(id, participants_change(world, "add", &done));
                let parent = world.groups.get(id).and_then(community_of);
                if let Some(parent) = parent {
                    for target in &done {
                        join_community(world, notices, &parent, target);
                    }
                }
            } else {
                notices.push_to(
                    id,
                    participants_change(world, "revoked_membership_requests", &done),
                    Audience {
                        also: done.clone(),
                        admins_only: true,
                    },
                );
            }
        }
        answered.push(
            NodeBuilder::new_dynamic(verdict.tag.to_string())
                .children(results)
                .build(),
        );
    }
    Answer::Result(vec![
        NodeBuilder::new("membership_requests_action")
            .children(answered)
            .build(),
    ])
}
