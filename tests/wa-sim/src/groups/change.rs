//! Changing groups: create, leave, participants, subject, description and settings
//! (disappearing messages and the community's settings among them). Each change pushes the
//! notification that announces it ([`super::notify`]). Invite links, joining and join requests
//! are in [`super::joining`].

use std::collections::BTreeMap;

use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use super::community::{join_community, make_community};
use super::joining::issue_add_invite;
use super::notify::{Audience, Notices, participants_change};
use super::read::group_node;
use crate::iq::Answer;
use crate::sim::now_secs;
use crate::stanza::{attr, child, children, split_jid, text};
use crate::world::{Group, Member, Role, WorldState};

/// The disappearing-message timers WhatsApp offers for groups: 24 hours, 7 days, 90 days
/// (whatsapp-rust `Groups::set_ephemeral`; Baileys `groupToggleEphemeral`).
pub const EPHEMERAL_TIMERS: [u32; 3] = [86_400, 604_800, 7_776_000];

/// A random code of `len` letters and digits: invite links have 22 (what
/// `https://chat.whatsapp.com/<code>` carries), private add-request invites 16.
pub fn random_code(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| char::from(ALPHABET[usize::from(rand::random::<u8>()) % ALPHABET.len()]))
        .collect()
}

fn new_invite_code() -> String {
    random_code(22)
}

/// The phone number behind a participant JID (PN or LID), if it has an account.
pub fn participant_phone(world: &WorldState, jid: &str) -> Option<String> {
    let (user, server) = split_jid(jid);
    match server.as_str() {
        "lid" | "s.whatsapp.net" | "c.us" => world.phone_of(&user, &server),
        _ => None,
    }
}

/// Makes a group with `owner` as its super admin and `members` beside it; returns its id.
pub fn make_group(
    world: &mut WorldState,
    owner: &str,
    subject: &str,
    members: &[String],
) -> String {
    let id = world.allocate_group_id();
    let now = now_secs();
    let mut list = vec![Member {
        phone: owner.to_owned(),
        role: Role::SuperAdmin,
    }];
    for phone in members {
        if list.iter().all(|m| &m.phone != phone) {
            list.push(Member {
                phone: phone.clone(),
                role: Role::Member,
            });
        }
    }
    world.groups.insert(
        id.clone(),
        Group {
            id: id.clone(),
            subject: subject.to_owned(),
            subject_time: now,
            description: None,
            creator: owner.to_owned(),
            creation: now,
            members: list,
            announce: false,
            locked: false,
            join_approval: false,
            all_member_add: true,
            is_parent: false,
            parent: None,
            default_sub_group: false,
            linked: Vec::new(),
            deactivated: false,
            invite_code: new_invite_code(),
            requests: Vec::new(),
            revoked_codes: Vec::new(),
            ephemeral: 0,
            allow_sub_group_creation: false,
            add_invites: Vec::new(),
        },
    );
    id
}

/// `<create><group/></create>`: how the members of a new group learn of it (whatsmeow
/// `parseGroupCreate`, Baileys `groups.upsert`).
pub fn announce_created(world: &WorldState, notices: &mut Notices, id: &str) {
    if let Some(group) = world.groups.get(id) {
        let node = NodeBuilder::new("create")
            .children([group_node(world, group)])
            .build();
        notices.push(id, node);
    }
}

pub fn create(world: &mut WorldState, notices: &mut Notices, phone: &str, create: &Node) -> Answer {
    let subject = attr(create, "subject").unwrap_or_default();
    if subject.trim().is_empty() || subject.chars().count() > 100 {
        return Answer::Error(400);
    }
    let members: Vec<String> = children(create)
        .iter()
        .filter(|c| c.tag == "participant")
        .filter_map(|c| {
            attr(c, "phone_number")
                .and_then(|pn| participant_phone(world, &pn))
                .or_else(|| attr(c, "jid").and_then(|jid| participant_phone(world, &jid)))
        })
        .filter(|p| p != phone)
        .collect();
    let linked_parent = child(create, "linked_parent")
        .and_then(|n| attr(n, "jid"))
        .map(|jid| split_jid(&jid).0);
    let mut created = Vec::new();
    let id = if child(create, "parent").is_some() {
        let general = child(create, "create_general_chat").is_some();
        let community = make_community(world, phone, &subject, &members, general);
        created.push(community.announcement);
        created.extend(community.general);
        community.parent
    } else if let Some(parent) = linked_parent {
        match world.groups.get(&parent) {
            Some(p) if p.is_parent && !p.deactivated => {
                // Members add groups to a community that allows it (whatsmeow `parseGroupChange`
                // `allow_non_admin_sub_group_creation`); otherwise admins only.
                let member_may = p.allow_sub_group_creation && p.member(phone).is_some();
                if !p.is_admin(phone) && !member_may {
                    return Answer::Error(403);
                }
            }
            _ => return Answer::Error(404),
        }
        let id = make_group(world, phone, &subject, &members);
        if let Some(group) = world.groups.get_mut(&id) {
            group.parent = Some(parent.clone());
        }
        if let Some(group) = world.groups.get_mut(&parent) {
            group.linked.push(id.clone());
        }
        let link = NodeBuilder::new("link")
            .attr("link_type", "sub_group")
            .children([NodeBuilder::new("group")
                .attr("jid", format!("{id}@g.us"))
                .attr("subject", subject.clone())
                .build()])
            .build();
        notices.push(&parent, link);
        for member in &members {
            join_community(world, notices, &parent, member);
        }
        id
    } else {
        make_group(world, phone, &subject, &members)
    };
    let description = child(create, "description").and_then(|d| {
        let body = child(d, "body").and_then(text).filter(|b| !b.is_empty())?;
        Some((attr(d, "id").unwrap_or_else(|| "1".to_owned()), body))
    });
    if let Some(group) = world.groups.get_mut(&id) {
        group.description = description;
        if let Some(mode) = child(create, "member_add_mode").and_then(text) {
            group.all_member_add = mode == "all_member_add";
        }
        if let Some(state) = child(create, "membership_approval_mode")
            .and_then(|m| child(m, "group_join"))
            .and_then(|j| attr(j, "state"))
        {
            group.join_approval = state == "on";
        }
        if group.is_parent && child(create, "allow_non_admin_sub_group_creation").is_some() {
            group.allow_sub_group_creation = true;
        }
        if let Some(seconds) = child(create, "ephemeral")
            .and_then(|e| attr(e, "expiration"))
            .and_then(|e| e.parse::<u32>().ok())
            .filter(|e| EPHEMERAL_TIMERS.contains(e))
        {
            group.ephemeral = seconds;
        }
    }
    announce_created(world, notices, &id);
    for other in &created {
        announce_created(world, notices, other);
    }
    match world.groups.get(&id) {
        Some(group) => Answer::Result(vec![group_node(world, group)]),
        None => Answer::Error(500),
    }
}

pub fn leave(world: &mut WorldState, notices: &mut Notices, phone: &str, leave: &Node) -> Answer {
    let mut answered = Vec::new();
    let mut left_any = false;
    for target in children(leave) {
        let Some(jid) = attr(target, "id").or_else(|| attr(target, "jid")) else {
            continue;
        };
        let id = split_jid(&jid).0;
        // Leaving a community leaves its parent and every linked group.
        let mut ids = vec![id.clone()];
        if target.tag == "community"
            && let Some(parent) = world.groups.get(&id)
        {
            ids.extend(parent.linked.iter().cloned());
        }
        let mut left = false;
        for id in ids {
            let change = participants_change(world, "remove", &[phone.to_owned()]);
            if let Some(group) = world.groups.get_mut(&id)
                && !group.deactivated
            {
                let before = group.members.len();
                group.members.retain(|m| m.phone != phone);
                if group.members.len() != before {
                    left = true;
                    // A member who leaves is announced as removed by themselves (Baileys
                    // `messages-recv.js`: a `remove` whose participant is the actor is a leave).
                    notices.push_to(
                        &id,
                        change,
                        Audience {
                            also: vec![phone.to_owned()],
                            ..Default::default()
                        },
                    );
                }
            }
        }
        left_any |= left;
        let mut node = NodeBuilder::new_dynamic(target.tag.to_string()).attr("id", jid);
        if !left {
            node = node.attr("error", "404");
        }
        answered.push(node.build());
    }
    if !left_any {
        return Answer::Error(404);
    }
    Answer::Result(vec![NodeBuilder::new("leave").children(answered).build()])
}

pub fn participants(
    world: &mut WorldState,
    notices: &mut Notices,
    phone: &str,
    id: &str,
    action: &Node,
) -> Answer {
    let Some(group) = world.groups.get(id) else {
        return Answer::Error(404);
    };
    let tag = action.tag.to_string();
    let allowed = group.is_admin(phone)
        || (tag == "add" && group.all_member_add && group.member(phone).is_some());
    if !allowed {
        return Answer::Error(403);
    }
    let across_linked = tag == "remove" && attr(action, "linked_groups").as_deref() == Some("true");
    let is_parent = group.is_parent;
    let mut scope = vec![id.to_owned()];
    if across_linked || (is_parent && tag != "remove") {
        // Removal with linked_groups reaches every linked group; a community's add, promote and
        // demote reach its announcement group too.
        scope.extend(
            group
                .linked
                .iter()
                .filter(|sub| {
                    across_linked || world.groups.get(*sub).is_some_and(|g| g.default_sub_group)
                })
                .cloned(),
        );
    }
    let mut results = Vec::new();
    let mut changed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for requested_node in children(action).iter().filter(|c| c.tag == "participant") {
        let requested = attr(requested_node, "jid").unwrap_or_default();
        let target = participant_phone(world, &requested);
        let outcome = match &target {
            None => Err(404),
            Some(target) => {
                apply(world, notices, &tag, &scope, phone, target).map(|groups| (target, groups))
            }
        };
        let mut node = NodeBuilder::new("participant");
        match outcome {
            Ok((target, groups)) => {
                for group in groups {
                    changed.entry(group).or_default().push(target.clone());
                }
                let account = world.account(target);
                node = node
                    .attr("jid", account.map(|a| a.lid_jid()).unwrap_or(requested))
                    .attr("phone_number", format!("{target}@s.whatsapp.net"));
            }
            Err(code) => {
                // An account is answered by its LID with its number beside it, as successes
                // are (a 403 as whatsmeow users see it: `JID` the LID, `PhoneNumber`,
                // `AddRequest{Code, Expiration}`).
                let jid = target
                    .as_ref()
                    .and_then(|t| world.account(t))
                    .map(|a| a.lid_jid())
                    .unwrap_or(requested);
                node = node.attr("jid", jid).attr("error", code.to_string());
                if let Some(target) = &target {
                    node = node.attr("phone_number", format!("{target}@s.whatsapp.net"));
                    if code == 403 && tag == "add" {
                        let invite = issue_add_invite(world, id, phone, target);
                        node = node.children([NodeBuilder::new("add_request")
                            .attr("code", invite.code)
                            .attr("expiration", invite.expiration.to_string())
                            .build()]);
                    }
                }
            }
        }
        results.push(node.build());
    }
    for (group, phones) in changed {
        let change = participants_change(world, &tag, &phones);
        let also = if tag == "remove" { phones } else { Vec::new() };
        notices.push_to(
            &group,
            change,
            Audience {
                also,
                ..Default::default()
            },
        );
    }
    Answer::Result(vec![
        NodeBuilder::new_dynamic(tag).children(results).build(),
    ])
}

/// One participant change over the groups in `scope` (the first is the target group); answers
/// the groups it changed.
fn apply(
    world: &mut WorldState,
    notices: &mut Notices,
    action: &str,
    scope: &[String],
    actor: &str,
    target: &str,
) -> Result<Vec<String>, u16> {
    let primary = world.groups.get(&scope[0]).ok_or(404u16)?;
    let is_member = primary.member(target).is_some();
    let parent = primary.parent.clone();
    let mut changed = Vec::new();
    match action {
        "add" => {
            if is_member {
                return Err(409);
            }
            let restricted = world.account(target).is_some_and(|a| a.restrict_group_add);
            if restricted {
                return Err(403);
            }
            for id in scope {
                if let Some(group) = world.groups.get_mut(id)
                    && group.member(target).is_none()
                {
                    group.members.push(Member {
                        phone: target.to_owned(),
                        role: Role::Member,
                    });
                    group.requests.retain(|r| r.phone != target);
                    changed.push(id.clone());
                }
            }
            // A member of a community's group is a member of the community.
            if let Some(parent) = parent {
                join_community(world, notices, &parent, target);
            }
            Ok(changed)
        }
        "remove" => {
            for id in scope {
                if let Some(group) = world.groups.get_mut(id) {
                    if group.creator == target && target != actor {
                        return Err(403);
                    }
                    let before = group.members.len();
                    group.members.retain(|m| m.phone != target);
                    if group.members.len() != before {
                        changed.push(id.clone());
                    }
                }
            }
            if changed.is_empty() {
                Err(404)
            } else {
                Ok(changed)
            }
        }
        "promote" | "demote" => {
            if !is_member {
                return Err(404);
            }
            for id in scope {
                if let Some(group) = world.groups.get_mut(id)
                    && let Some(member) = group.members.iter_mut().find(|m| m.phone == target)
                {
                    match (action, member.role) {
                        ("demote", Role::SuperAdmin) => return Err(403),
                        ("demote", _) => member.role = Role::Member,
                        (_, Role::SuperAdmin) => {}
                        _ => member.role = Role::Admin,
                    }
                    changed.push(id.clone());
                }
            }
            Ok(changed)
        }
        _ => Err(400),
    }
}

pub fn settings(
    world: &mut WorldState,
    notices: &mut Notices,
    phone: &str,
    id: &str,
    node: &Node,
) -> Answer {
    let announced = {
        let actor = world.account(phone).map(|a| (a.lid_jid(), a.jid()));
        let Some(group) = world.groups.get_mut(id) else {
            return Answer::Error(404);
        };
        let is_admin = group.is_admin(phone);
        if group.member(phone).is_none() {
            return Answer::Error(403);
        }
        // The disappearing-message timer is group info, as the subject is: WhatsApp's "edit
        // group settings" permission covers both.
        let info_change = matches!(
            node.tag.as_ref(),
            "subject" | "description" | "ephemeral" | "not_ephemeral"
        );
        // Admins change everything; members change the info of an unlocked group.
        let member_may = info_change && !group.locked;
        if !is_admin && !member_may {
            return Answer::Error(403);
        }
        match apply_setting(group, node, actor) {
            Ok(announced) => announced,
            Err(code) => return Answer::Error(code),
        }
    };
    notices.push(id, announced);
    Answer::Result(Vec::new())
}

/// Applies one setting; answers the notification child that announces it.
fn apply_setting(
    group: &mut Group,
    node: &Node,
    actor: Option<(String, String)>,
) -> Result<Node, u16> {
    // `v_id`: the version of the setting; whatsmeow `parseGroupChange` requires it on
    // announcement changes.
    let version = now_secs().to_string();
    let announced = match node.tag.as_ref() {
        "subject" => {
            let subject = text(node).unwrap_or_default();
            if subject.trim().is_empty() || subject.chars().count() > 100 {
                return Err(400);
            }
            group.subject = subject.clone();
            group.subject_time = now_secs();
            let mut change = NodeBuilder::new("subject")
                .attr("subject", subject)
                .attr("s_t", group.subject_time.to_string());
            if let Some((lid, pn)) = actor {
                change = change.attr("s_o", lid).attr("s_o_pn", pn);
            }
            change.build()
        }
        "description" => {
            let current = group.description.as_ref().map(|(id, _)| id.clone());
            if current.is_some() && attr(node, "prev") != current {
                return Err(409);
            }
            if attr(node, "delete").as_deref() == Some("true") {
                group.description = None;
                let id = attr(node, "id").unwrap_or_else(|| version.clone());
                NodeBuilder::new("description")
                    .attr("id", id)
                    .children([NodeBuilder::new("delete").build()])
                    .build()
            } else {
                let Some(body) = child(node, "body").and_then(text) else {
                    return Err(400);
                };
                let new_id = attr(node, "id").unwrap_or_else(|| "1".to_owned());
                group.description = Some((new_id.clone(), body.clone()));
                NodeBuilder::new("description")
                    .attr("id", new_id)
                    .children([NodeBuilder::new("body").bytes(body.into_bytes()).build()])
                    .build()
            }
        }
        "locked" | "unlocked" => {
            group.locked = node.tag == "locked";
            NodeBuilder::new_dynamic(node.tag.to_string()).build()
        }
        "announcement" | "not_announcement" => {
            group.announce = node.tag == "announcement";
            NodeBuilder::new_dynamic(node.tag.to_string())
                .attr("v_id", version)
                .build()
        }
        "membership_approval_mode" => {
            // A group's is `<group_join state>` (whatsapp-rust, Baileys `groupJoinApprovalMode`);
            // Baileys `communityJoinApprovalMode` sends a community's as `<community_join>`.
            let mode = child(node, "group_join")
                .map(|j| ("group_join", j))
                .or_else(|| child(node, "community_join").map(|j| ("community_join", j)));
            let Some((mode_tag, mode)) = mode else {
                return Err(400);
            };
            let state = attr(mode, "state");
            match state.as_deref() {
                Some("on") => group.join_approval = true,
                Some("off") => group.join_approval = false,
                _ => return Err(400),
            }
            NodeBuilder::new("membership_approval_mode")
                .children([NodeBuilder::new(mode_tag)
                    .attr("state", state.unwrap_or_default())
                    .build()])
                .build()
        }
        "ephemeral" => {
            // whatsmeow `SetDisappearingTimer` (group), Baileys `groupToggleEphemeral`; a
            // timer WhatsApp does not offer is refused.
            let seconds = attr(node, "expiration").and_then(|e| e.parse::<u32>().ok());
            match seconds {
                Some(0) => {
                    group.ephemeral = 0;
                    NodeBuilder::new("not_ephemeral").build()
                }
                Some(seconds) if EPHEMERAL_TIMERS.contains(&seconds) => {
                    group.ephemeral = seconds;
                    NodeBuilder::new("ephemeral")
                        .attr("expiration", seconds.to_string())
                        .build()
                }
                _ => return Err(400),
            }
        }
        "not_ephemeral" => {
            group.ephemeral = 0;
            NodeBuilder::new("not_ephemeral").build()
        }
        "allow_non_admin_sub_group_creation" | "not_allow_non_admin_sub_group_creation" => {
            // A community's "who can add groups" (whatsmeow `parseGroupChange`, WhatsApp Web's
            // `WAWebSetPropertyGroupAction`): a plain group has no such setting.
            if !group.is_parent {
                return Err(400);
            }
            group.allow_sub_group_creation = node.tag == "allow_non_admin_sub_group_creation";
            NodeBuilder::new_dynamic(node.tag.to_string()).build()
        }
        "member_add_mode" => {
            let mode = text(node).unwrap_or_default();
            match mode.as_str() {
                "all_member_add" => group.all_member_add = true,
                "admin_add" => group.all_member_add = false,
                _ => return Err(400),
            }
            NodeBuilder::new("member_add_mode")
                .bytes(mode.into_bytes())
                .build()
        }
        other => {
            tracing::debug!(tag = other, "group setting not simulated");
            return Err(501);
        }
    };
    Ok(announced)
}
