//! Communities: the parent group with its announcement group (and, when asked, its General
//! group), membership kept across the community, linking and unlinking groups, deactivation.

use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use super::change::make_group;
use super::notify::{Audience, Notices, participants_change};
use crate::iq::Answer;
use crate::stanza::{attr, child, children, split_jid};
use crate::world::{Member, Role, WorldState};

/// What WhatsApp names the General group a community is created with.
const GENERAL_SUBJECT: &str = "General";

/// The community's groups as created: its parent, announcement group and General group.
pub struct Created {
    pub parent: String,
    pub announcement: String,
    pub general: Option<String>,
}

/// Makes a community: the parent group and its announcement group, linked, and with
/// `general_chat` (the create request's `<create_general_chat/>`, which WhatsApp Web and Baileys
/// `communities.js` `communityCreate` send) a General group linked beside it.
pub fn make_community(
    world: &mut WorldState,
    owner: &str,
    subject: &str,
    members: &[String],
    general_chat: bool,
) -> Created {
    let parent = make_group(world, owner, subject, members);
    let announcement = make_group(world, owner, subject, members);
    if let Some(group) = world.groups.get_mut(&announcement) {
        group.default_sub_group = true;
        group.announce = true;
        group.parent = Some(parent.clone());
    }
    let general = general_chat.then(|| {
        let general = make_group(world, owner, GENERAL_SUBJECT, members);
        if let Some(group) = world.groups.get_mut(&general) {
            group.parent = Some(parent.clone());
        }
        general
    });
    if let Some(group) = world.groups.get_mut(&parent) {
        group.is_parent = true;
        group.linked.push(announcement.clone());
        group.linked.extend(general.clone());
    }
    Created {
        parent,
        announcement,
        general,
    }
}

/// Adds a member to a community: to the parent and to its announcement group, as WhatsApp keeps
/// them; each group the member joins announces it.
pub fn join_community(world: &mut WorldState, notices: &mut Notices, parent: &str, phone: &str) {
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
            let change = participants_change(world, "add", &[phone.to_owned()]);
            notices.push(&target, change);
        }
    }
}

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

/// `<group jid subject s_t>` naming the other side of a link (whatsmeow `group.go`
/// `parseGroupLinkTargetNode`).
fn link_target(world: &WorldState, id: &str) -> Node {
    let mut node = NodeBuilder::new("group").attr("jid", format!("{id}@g.us"));
    if let Some(group) = world.groups.get(id) {
        node = node
            .attr("subject", group.subject.clone())
            .attr("s_t", group.subject_time.to_string());
        if group.default_sub_group {
            node = node.children([NodeBuilder::new("default_sub_group").build()]);
        }
    }
    node.build()
}

/// The notifications of a link or unlink: the community hears of its sub-group
/// (`link_type="sub_group"`), the group of its parent (`link_type="parent_group"`).
fn announce_link(
    world: &WorldState,
    notices: &mut Notices,
    tag: &str,
    parent: &str,
    sub: &str,
    reason: Option<&str>,
) {
    let type_attr = if tag == "link" {
        "link_type"
    } else {
        "unlink_type"
    };
    for (group, other, kind) in [(parent, sub, "sub_group"), (sub, parent, "parent_group")] {
        let mut node = NodeBuilder::new_dynamic(tag.to_owned()).attr(type_attr, kind);
        if let Some(reason) = reason {
            node = node.attr("unlink_reason", reason.to_owned());
        }
        notices.push(group, node.children([link_target(world, other)]).build());
    }
}

pub fn link(
    world: &mut WorldState,
    notices: &mut Notices,
    phone: &str,
    id: &str,
    links: &Node,
) -> Answer {
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
                announce_link(world, notices, "link", id, &sub, None);
                for member in members {
                    join_community(world, notices, id, &member);
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

pub fn unlink(
    world: &mut WorldState,
    notices: &mut Notices,
    phone: &str,
    id: &str,
    unlink: &Node,
) -> Answer {
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
                // whatsmeow `types/group.go`: `unlink_group` is the reason of an admin's unlink.
                announce_link(world, notices, "unlink", id, &sub, Some("unlink_group"));
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

pub fn deactivate(world: &mut WorldState, notices: &mut Notices, phone: &str, id: &str) -> Answer {
    if let Err(code) = admin_of_parent(world, phone, id) {
        return Answer::Error(code);
    }
    let linked = match world.groups.get(id) {
        Some(parent) => parent.linked.clone(),
        None => return Answer::Error(404),
    };
    // The linked groups hear that their parent went (whatsmeow `types/group.go`:
    // `delete_parent` is the unlink reason of a deactivated community); the community and its
    // announcement group are deleted. The `delete` reason is not in the references; wa-sim
    // uses the same `delete_parent`.
    let parent_members: Vec<String> = world
        .groups
        .get(id)
        .map(|g| g.members.iter().map(|m| m.phone.clone()).collect())
        .unwrap_or_default();
    for sub in &linked {
        let Some(group) = world.groups.get(sub) else {
            continue;
        };
        if group.default_sub_group {
            let members = group.members.iter().map(|m| m.phone.clone()).collect();
            notices.push_to(
                sub,
                delete_node(),
                Audience {
                    also: members,
                    ..Default::default()
                },
            );
        } else {
            let unlink = NodeBuilder::new("unlink")
                .attr("unlink_type", "parent_group")
                .attr("unlink_reason", "delete_parent")
                .children([link_target(world, id)])
                .build();
            notices.push(sub, unlink);
        }
    }
    notices.push_to(
        id,
        delete_node(),
        Audience {
            also: parent_members,
            ..Default::default()
        },
    );
    if let Some(parent) = world.groups.get_mut(id) {
        parent.deactivated = true;
        parent.linked.clear();
    }
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

fn delete_node() -> Node {
    NodeBuilder::new("delete")
        .attr("reason", "delete_parent")
        .build()
}
