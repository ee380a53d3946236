//! Groups and communities (`w:g2`): create, metadata, participants with per-participant codes,
//! subject, description, settings, leave, the participating list, and communities (parent
//! groups with an announcement group, linked sub-groups, the sub-group list, linked-groups
//! participants, deactivation).
//!
//! Groups address members by LID (`addressing_mode="lid"`) and carry each member's phone number
//! beside it, as WhatsApp's groups do now. Whole-request failures are IQ errors (404 group gone,
//! 403 not an admin or not a participant, 400 malformed); per-participant outcomes are `error`
//! codes on each `<participant>` (404 no account or not a member, 409 already a member, 403 the
//! user's privacy setting, with an `<add_request>` invite).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::api::{CreateGroup, GroupView, MemberView};
use crate::control::ControlError;
use crate::iq::Answer;
use crate::session::Session;
use crate::sim::{Sim, now_secs};
use crate::stanza::{attr, child, children, split_jid, text};
use crate::world::{Group, Member, Role, WorldState};

/// How long an add-request invite stays valid, in seconds (WhatsApp: three days).
const INVITE_SECONDS: u64 = 3 * 24 * 3600;

pub fn answer(session: &mut Session, iq: &Node, kind: &str) -> Answer {
    let Some((phone, _)) = session.login.clone() else {
        return Answer::Error(401);
    };
    let Some(action) = children(iq).first() else {
        return Answer::Error(400);
    };
    let to = attr(iq, "to").unwrap_or_default();
    let (group_id, server) = split_jid(&to);
    let mut world = session.sim.world.lock();
    let world = &mut *world;
    let server_level = server != "g.us" || group_id.is_empty() || group_id == "g.us";
    if server_level {
        return match (kind, action.tag.as_ref()) {
            ("get", "participating") => participating(world, &phone),
            ("set", "create") => create(world, &phone, action),
            ("set", "leave") => leave(world, &phone, action),
            _ => Answer::Error(400),
        };
    }
    match world.groups.get(&group_id) {
        Some(group) if !group.deactivated => {}
        _ => return Answer::Error(404),
    }
    match (kind, action.tag.as_ref()) {
        ("get", "query") => query(world, &phone, &group_id),
        ("get", "sub_groups") => sub_groups(world, &phone, &group_id),
        ("get", "linked_groups_participants") => linked_participants(world, &phone, &group_id),
        ("set", "add" | "remove" | "promote" | "demote") => {
            participants(world, &phone, &group_id, action)
        }
        ("set", "links") => link(world, &phone, &group_id, action),
        ("set", "unlink") => unlink(world, &phone, &group_id, action),
        ("set", "delete_parent") => deactivate(world, &phone, &group_id),
        ("set", _) => settings(world, &phone, &group_id, action),
        _ => Answer::Error(400),
    }
}

// --- reading ----------------------------------------------------------------------------------

fn member_node(world: &WorldState, member: &Member) -> Node {
    let account = world.account(&member.phone);
    let lid = account.map(|a| a.lid_jid()).unwrap_or_default();
    let mut node = NodeBuilder::new("participant")
        .attr("jid", lid)
        .attr("phone_number", format!("{}@s.whatsapp.net", member.phone));
    match member.role {
        Role::Admin => node = node.attr("type", "admin"),
        Role::SuperAdmin => node = node.attr("type", "superadmin"),
        Role::Member => {}
    }
    node.build()
}

/// The `<group>` node WhatsApp answers a metadata query with.
fn group_node(world: &WorldState, group: &Group) -> Node {
    let creator = world.account(&group.creator);
    let mut children: Vec<Node> = group
        .members
        .iter()
        .map(|member| member_node(world, member))
        .collect();
    if let Some((id, body)) = &group.description {
        children.push(
            NodeBuilder::new("description")
                .attr("id", id.clone())
                .children([NodeBuilder::new("body")
                    .string_content(body.clone())
                    .build()])
                .build(),
        );
    }
    if group.announce {
        children.push(NodeBuilder::new("announcement").build());
    }
    if group.locked {
        children.push(NodeBuilder::new("locked").build());
    }
    if group.join_approval {
        children.push(
            NodeBuilder::new("membership_approval_mode")
                .children([NodeBuilder::new("group_join").attr("state", "on").build()])
                .build(),
        );
    }
    children.push(
        NodeBuilder::new("member_add_mode")
            .string_content(if group.all_member_add {
                "all_member_add"
            } else {
                "admin_add"
            })
            .build(),
    );
    if group.is_parent {
        children.push(NodeBuilder::new("parent").build());
    }
    if let Some(parent) = &group.parent {
        children.push(
            NodeBuilder::new("linked_parent")
                .attr("jid", format!("{parent}@g.us"))
                .build(),
        );
    }
    if group.default_sub_group {
        children.push(NodeBuilder::new("default_sub_group").build());
    }
    let mut node = NodeBuilder::new("group")
        .attr("id", group.id.clone())
        .attr("subject", group.subject.clone())
        .attr("s_t", group.subject_time.to_string())
        .attr("creation", group.creation.to_string())
        .attr("size", group.members.len().to_string())
        .attr("addressing_mode", "lid");
    if let Some(creator) = creator {
        node = node
            .attr("creator", creator.lid_jid())
            .attr("creator_pn", creator.jid())
            .attr("s_o", creator.lid_jid())
            .attr("s_o_pn", creator.jid());
    }
    node.children(children).build()
}

fn participating(world: &WorldState, phone: &str) -> Answer {
    let mut groups: Vec<&Group> = world
        .groups
        .values()
        .filter(|g| !g.deactivated && g.member(phone).is_some())
        .collect();
    groups.sort_by(|a, b| a.id.cmp(&b.id));
    let nodes: Vec<Node> = groups.iter().map(|g| group_node(world, g)).collect();
    Answer::Result(vec![NodeBuilder::new("groups").children(nodes).build()])
}

fn query(world: &WorldState, phone: &str, id: &str) -> Answer {
    let Some(group) = world.groups.get(id) else {
        return Answer::Error(404);
    };
    // A community's members may read it through any of its groups; anyone else is refused.
    let visible = group.member(phone).is_some()
        || group.linked.iter().any(|sub| {
            world
                .groups
                .get(sub)
                .is_some_and(|g| g.member(phone).is_some())
        });
    if !visible {
        return Answer::Error(403);
    }
    Answer::Result(vec![group_node(world, group)])
}

/// The community `id`, when `phone` is one of its members.
fn community_of<'a>(world: &'a WorldState, phone: &str, id: &str) -> Result<&'a Group, u16> {
    let parent = world.groups.get(id).ok_or(404u16)?;
    if !parent.is_parent {
        return Err(400);
    }
    if parent.member(phone).is_none() {
        return Err(403);
    }
    Ok(parent)
}

fn sub_groups(world: &WorldState, phone: &str, id: &str) -> Answer {
    let parent = match community_of(world, phone, id) {
        Ok(parent) => parent,
        Err(code) => return Answer::Error(code),
    };
    let nodes: Vec<Node> = parent
        .linked
        .iter()
        .filter_map(|sub| world.groups.get(sub))
        .map(|sub| {
            let mut node = NodeBuilder::new("group")
                .attr("id", sub.id.clone())
                .attr("subject", sub.subject.clone())
                .attr("s_t", sub.subject_time.to_string());
            if sub.default_sub_group {
                node = node.children([NodeBuilder::new("default_sub_group").build()]);
            }
            node.build()
        })
        .collect();
    Answer::Result(vec![NodeBuilder::new("sub_groups").children(nodes).build()])
}

fn linked_participants(world: &WorldState, phone: &str, id: &str) -> Answer {
    let parent = match community_of(world, phone, id) {
        Ok(parent) => parent,
        Err(code) => return Answer::Error(code),
    };
    let mut seen = std::collections::HashSet::new();
    let mut nodes = Vec::new();
    let groups =
        std::iter::once(parent).chain(parent.linked.iter().filter_map(|sub| world.groups.get(sub)));
    for group in groups {
        for member in &group.members {
            if seen.insert(member.phone.clone()) {
                nodes.push(member_node(
                    world,
                    &Member {
                        phone: member.phone.clone(),
                        role: Role::Member,
                    },
                ));
            }
        }
    }
    Answer::Result(vec![
        NodeBuilder::new("linked_groups_participants")
            .children(nodes)
            .build(),
    ])
}

// --- creating and leaving -----------------------------------------------------------------------

/// The phone number behind a participant JID (PN or LID), if it has an account.
fn participant_phone(world: &WorldState, jid: &str) -> Option<String> {
    let (user, server) = split_jid(jid);
    match server.as_str() {
        "lid" | "s.whatsapp.net" | "c.us" => world.phone_of(&user, &server),
        _ => None,
    }
}

/// Makes a group with `owner` as its super admin and `members` beside it; returns its id.
fn make_group(world: &mut WorldState, owner: &str, subject: &str, members: &[String]) -> String {
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
        },
    );
    id
}

/// Makes a community: the parent group and its announcement group, linked. Returns the
/// parent's id.
fn make_community(
    world: &mut WorldState,
    owner: &str,
    subject: &str,
    members: &[String],
) -> String {
    let parent = make_group(world, owner, subject, members);
    let announcement = make_group(world, owner, subject, members);
    if let Some(group) = world.groups.get_mut(&announcement) {
        group.default_sub_group = true;
        group.announce = true;
        group.parent = Some(parent.clone());
    }
    if let Some(group) = world.groups.get_mut(&parent) {
        group.is_parent = true;
        group.linked.push(announcement);
    }
    parent
}

/// Adds a member to a community: to the parent and to its announcement group, as WhatsApp keeps
/// them.
fn join_community(world: &mut WorldState, parent: &str, phone: &str) {
    let mut targets = vec![parent.to_owned()];
    if let Some(group) = world.groups.get(parent) {
        targets.extend(
            group
                .linked
                .iter()
                .filter(|sub| world.groups.get(*sub).is_some_and(|g| g.default_sub_group))
                .cloned(),
        );
    }
    for target in targets {
        if let Some(group) = world.groups.get_mut(&target)
            && group.member(phone).is_none()
        {
            group.members.push(Member {
                phone: phone.to_owned(),
                role: Role::Member,
            });
        }
    }
}

fn create(world: &mut WorldState, phone: &str, create: &Node) -> Answer {
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
    let id = if child(create, "parent").is_some() {
        make_community(world, phone, &subject, &members)
    } else if let Some(parent) = linked_parent {
        match world.groups.get(&parent) {
            Some(p) if p.is_parent && !p.deactivated => {
                if !p.is_admin(phone) {
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
        for member in &members {
            join_community(world, &parent, member);
        }
        id
    } else {
        make_group(world, phone, &subject, &members)
    };
    let description = child(create, "description").and_then(|d| {
        let body = child(d, "body").and_then(text)?;
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
    }
    match world.groups.get(&id) {
        Some(group) => Answer::Result(vec![group_node(world, group)]),
        None => Answer::Error(500),
    }
}

fn leave(world: &mut WorldState, phone: &str, leave: &Node) -> Answer {
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
            if let Some(group) = world.groups.get_mut(&id)
                && !group.deactivated
            {
                let before = group.members.len();
                group.members.retain(|m| m.phone != phone);
                left |= group.members.len() != before;
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

// --- participants -----------------------------------------------------------------------------

fn participants(world: &mut WorldState, phone: &str, id: &str, action: &Node) -> Answer {
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
    for participant in children(action).iter().filter(|c| c.tag == "participant") {
        let requested = attr(participant, "jid").unwrap_or_default();
        let target = participant_phone(world, &requested);
        let outcome = match &target {
            None => Err(404),
            Some(target) => apply(world, &tag, &scope, phone, target).map(|()| target.clone()),
        };
        let mut node = NodeBuilder::new("participant");
        match outcome {
            Ok(target) => {
                let account = world.account(&target);
                node = node
                    .attr("jid", account.map(|a| a.lid_jid()).unwrap_or(requested))
                    .attr("phone_number", format!("{target}@s.whatsapp.net"));
            }
            Err(code) => {
                node = node.attr("jid", requested).attr("error", code.to_string());
                if let Some(target) = &target {
                    node = node.attr("phone_number", format!("{target}@s.whatsapp.net"));
                }
                if code == 403 && tag == "add" {
                    node = node.children([NodeBuilder::new("add_request")
                        .attr("code", format!("{:08X}", rand::random::<u32>()))
                        .attr("expiration", (now_secs() + INVITE_SECONDS).to_string())
                        .build()]);
                }
            }
        }
        results.push(node.build());
    }
    Answer::Result(vec![
        NodeBuilder::new_dynamic(tag).children(results).build(),
    ])
}

/// One participant change over the groups in `scope` (the first is the target group).
fn apply(
    world: &mut WorldState,
    action: &str,
    scope: &[String],
    actor: &str,
    target: &str,
) -> Result<(), u16> {
    let primary = world.groups.get(&scope[0]).ok_or(404u16)?;
    let is_member = primary.member(target).is_some();
    let parent = primary.parent.clone();
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
                }
            }
            // A member of a community's group is a member of the community.
            if let Some(parent) = parent {
                join_community(world, &parent, target);
            }
            Ok(())
        }
        "remove" => {
            let mut removed = false;
            for id in scope {
                if let Some(group) = world.groups.get_mut(id) {
                    if group.creator == target && target != actor {
                        return Err(403);
                    }
                    let before = group.members.len();
                    group.members.retain(|m| m.phone != target);
                    removed |= group.members.len() != before;
                }
            }
            if removed { Ok(()) } else { Err(404) }
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
                }
            }
            Ok(())
        }
        _ => Err(400),
    }
}

// --- subject, description, settings -------------------------------------------------------------

fn settings(world: &mut WorldState, phone: &str, id: &str, node: &Node) -> Answer {
    let Some(group) = world.groups.get_mut(id) else {
        return Answer::Error(404);
    };
    let is_admin = group.is_admin(phone);
    if group.member(phone).is_none() {
        return Answer::Error(403);
    }
    let info_change = matches!(node.tag.as_ref(), "subject" | "description");
    // Admins change everything; members change subject and description of an unlocked group.
    let member_may = info_change && !group.locked;
    if !is_admin && !member_may {
        return Answer::Error(403);
    }
    match node.tag.as_ref() {
        "subject" => {
            let subject = text(node).unwrap_or_default();
            if subject.trim().is_empty() || subject.chars().count() > 100 {
                return Answer::Error(400);
            }
            group.subject = subject;
            group.subject_time = now_secs();
        }
        "description" => {
            let current = group.description.as_ref().map(|(id, _)| id.clone());
            if current.is_some() && attr(node, "prev") != current {
                return Answer::Error(409);
            }
            if attr(node, "delete").as_deref() == Some("true") {
                group.description = None;
            } else {
                let Some(body) = child(node, "body").and_then(text) else {
                    return Answer::Error(400);
                };
                let new_id = attr(node, "id").unwrap_or_else(|| "1".to_owned());
                group.description = Some((new_id, body));
            }
        }
        "locked" => group.locked = true,
        "unlocked" => group.locked = false,
        "announcement" => group.announce = true,
        "not_announcement" => group.announce = false,
        "membership_approval_mode" => {
            let state = child(node, "group_join").and_then(|j| attr(j, "state"));
            match state.as_deref() {
                Some("on") => group.join_approval = true,
                Some("off") => group.join_approval = false,
                _ => return Answer::Error(400),
            }
        }
        "member_add_mode" => match text(node).as_deref() {
            Some("all_member_add") => group.all_member_add = true,
            Some("admin_add") => group.all_member_add = false,
            _ => return Answer::Error(400),
        },
        other => {
            tracing::debug!(tag = other, "group setting not simulated");
            return Answer::Error(501);
        }
    }
    Answer::Result(Vec::new())
}

// --- communities --------------------------------------------------------------------------------

/// Checks that `id` is a live community `phone` administers.
fn admin_of_parent(world: &WorldState, phone: &str, id: &str) -> Result<(), u16> {
    let parent = world.groups.get(id).ok_or(404u16)?;
    if !parent.is_parent {
        return Err(400);
    }
    if !parent.is_admin(phone) {
        return Err(403);
    }
    Ok(())
}

fn link(world: &mut WorldState, phone: &str, id: &str, links: &Node) -> Answer {
    if let Err(code) = admin_of_parent(world, phone, id) {
        return Answer::Error(code);
    }
    let Some(link) = child(links, "link") else {
        return Answer::Error(400);
    };
    let mut results = Vec::new();
    for target in children(link).iter().filter(|c| c.tag == "group") {
        let jid = attr(target, "jid").unwrap_or_default();
        let sub = split_jid(&jid).0;
        let outcome = match world.groups.get(&sub) {
            None => Err(404),
            Some(g) if g.deactivated => Err(404),
            Some(g) if g.is_parent => Err(400),
            Some(g) if g.parent.as_deref() == Some(id) => Err(409),
            Some(g) if g.parent.is_some() => Err(409),
            Some(g) if !g.is_admin(phone) => Err(403),
            Some(_) => Ok(()),
        };
        let mut node = NodeBuilder::new("group").attr("jid", jid);
        match outcome {
            Ok(()) => {
                let members: Vec<String> = world
                    .groups
                    .get(&sub)
                    .map(|g| g.members.iter().map(|m| m.phone.clone()).collect())
                    .unwrap_or_default();
                if let Some(group) = world.groups.get_mut(&sub) {
                    group.parent = Some(id.to_owned());
                }
                if let Some(parent) = world.groups.get_mut(id) {
                    parent.linked.push(sub.clone());
                }
                for member in members {
                    join_community(world, id, &member);
                }
            }
            Err(code) => node = node.attr("error", code.to_string()),
        }
        results.push(node.build());
    }
    Answer::Result(vec![
        NodeBuilder::new("links")
            .children([NodeBuilder::new("link")
                .attr("link_type", "sub_group")
                .children(results)
                .build()])
            .build(),
    ])
}

fn unlink(world: &mut WorldState, phone: &str, id: &str, unlink: &Node) -> Answer {
    if let Err(code) = admin_of_parent(world, phone, id) {
        return Answer::Error(code);
    }
    let mut results = Vec::new();
    for target in children(unlink).iter().filter(|c| c.tag == "group") {
        let jid = attr(target, "jid").unwrap_or_default();
        let sub = split_jid(&jid).0;
        let outcome = match world.groups.get(&sub) {
            None => Err(404),
            Some(g) if g.parent.as_deref() != Some(id) => Err(404),
            Some(g) if g.default_sub_group => Err(403),
            Some(_) => Ok(()),
        };
        let mut node = NodeBuilder::new("group").attr("jid", jid);
        match outcome {
            Ok(()) => {
                if let Some(group) = world.groups.get_mut(&sub) {
                    group.parent = None;
                }
                if let Some(parent) = world.groups.get_mut(id) {
                    parent.linked.retain(|l| l != &sub);
                }
            }
            Err(code) => node = node.attr("error", code.to_string()),
        }
        results.push(node.build());
    }
    Answer::Result(vec![
        NodeBuilder::new("unlink")
            .attr("unlink_type", "sub_group")
            .children(results)
            .build(),
    ])
}

fn deactivate(world: &mut WorldState, phone: &str, id: &str) -> Answer {
    if let Err(code) = admin_of_parent(world, phone, id) {
        return Answer::Error(code);
    }
    let linked = match world.groups.get_mut(id) {
        Some(parent) => {
            parent.deactivated = true;
            std::mem::take(&mut parent.linked)
        }
        None => return Answer::Error(404),
    };
    // Linked groups become standalone groups again; the announcement group goes with the
    // community.
    for sub in linked {
        if let Some(group) = world.groups.get_mut(&sub) {
            group.parent = None;
            if group.default_sub_group {
                group.deactivated = true;
            }
        }
    }
    Answer::Result(Vec::new())
}

// --- control API --------------------------------------------------------------------------------

fn view(world: &WorldState, group: &Group) -> GroupView {
    GroupView {
        jid: group.jid(),
        subject: group.subject.clone(),
        description: group.description.as_ref().map(|(_, body)| body.clone()),
        owner: format!("{}@s.whatsapp.net", group.creator),
        parent: group.parent.as_ref().map(|p| format!("{p}@g.us")),
        is_community: group.is_parent,
        is_announcement: group.default_sub_group,
        announce: group.announce,
        locked: group.locked,
        join_approval: group.join_approval,
        all_member_add: group.all_member_add,
        deactivated: group.deactivated,
        linked_groups: group.linked.iter().map(|l| format!("{l}@g.us")).collect(),
        participants: group
            .members
            .iter()
            .map(|m| MemberView {
                phone: m.phone.clone(),
                jid: format!("{}@s.whatsapp.net", m.phone),
                lid_jid: world
                    .account(&m.phone)
                    .map(|a| a.lid_jid())
                    .unwrap_or_default(),
                admin: m.role.is_admin(),
                super_admin: m.role == Role::SuperAdmin,
            })
            .collect(),
    }
}

fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

/// `POST /groups`: a group (or community) created by some account, with the given members.
pub async fn control_create(
    State(sim): State<Arc<Sim>>,
    axum::Json(request): axum::Json<CreateGroup>,
) -> Result<(StatusCode, axum::Json<GroupView>), ControlError> {
    let owner = digits(&request.owner_phone);
    let mut world = sim.world.lock();
    if world.account(&owner).is_none() {
        return Err(ControlError(
            StatusCode::NOT_FOUND,
            "no such owner account".to_owned(),
        ));
    }
    let mut members = Vec::new();
    for phone in &request.participants {
        let phone = digits(phone);
        if world.account(&phone).is_none() {
            return Err(ControlError(
                StatusCode::BAD_REQUEST,
                format!("no account for participant {phone}"),
            ));
        }
        members.push(phone);
    }
    if request.subject.trim().is_empty() {
        return Err(ControlError(
            StatusCode::BAD_REQUEST,
            "subject is empty".to_owned(),
        ));
    }
    let id = if request.community {
        make_community(&mut world, &owner, &request.subject, &members)
    } else {
        make_group(&mut world, &owner, &request.subject, &members)
    };
    let group = world.groups.get(&id).map(|g| view(&world, g));
    group
        .map(|g| (StatusCode::CREATED, axum::Json(g)))
        .ok_or_else(|| ControlError(StatusCode::INTERNAL_SERVER_ERROR, "lost".to_owned()))
}

/// `GET /groups/{jid}`.
pub async fn control_get(
    State(sim): State<Arc<Sim>>,
    Path(jid): Path<String>,
) -> Result<axum::Json<GroupView>, ControlError> {
    let id = split_jid(&jid).0;
    let world = sim.world.lock();
    world
        .groups
        .get(&id)
        .map(|g| axum::Json(view(&world, g)))
        .ok_or_else(|| ControlError(StatusCode::NOT_FOUND, "no such group".to_owned()))
}
