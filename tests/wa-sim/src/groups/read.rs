//! Reading groups: the `<group>` node of metadata answers, the participating list, the
//! sub-group list, linked-groups participants and pending join requests.

use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::iq::Answer;
use crate::world::{Group, Member, Role, WorldState};

pub fn member_node(world: &WorldState, member: &Member) -> Node {
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
pub fn group_node(world: &WorldState, group: &Group) -> Node {
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
    if group.ephemeral > 0 {
        // whatsmeow `parseGroupNode` `ephemeral` (`DisappearingTimer`), Baileys
        // `ephemeralDuration`, whatsapp-rust `GroupEphemeralSettings`.
        children.push(
            NodeBuilder::new("ephemeral")
                .attr("expiration", group.ephemeral.to_string())
                .build(),
        );
    }
    if group.is_parent {
        children.push(NodeBuilder::new("parent").build());
        if group.allow_sub_group_creation {
            // whatsapp-rust `GroupInfoResponse::allow_non_admin_sub_group_creation`.
            children.push(NodeBuilder::new("allow_non_admin_sub_group_creation").build());
        }
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

pub fn participating(world: &WorldState, phone: &str) -> Answer {
    let mut groups: Vec<&Group> = world
        .groups
        .values()
        .filter(|g| !g.deactivated && g.member(phone).is_some())
        .collect();
    groups.sort_by(|a, b| a.id.cmp(&b.id));
    let nodes: Vec<Node> = groups.iter().map(|g| group_node(world, g)).collect();
    Answer::Result(vec![NodeBuilder::new("groups").children(nodes).build()])
}

pub fn query(world: &WorldState, phone: &str, id: &str) -> Answer {
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
pub fn community_of<'a>(world: &'a WorldState, phone: &str, id: &str) -> Result<&'a Group, u16> {
    let parent = world.groups.get(id).ok_or(404u16)?;
    if !parent.is_parent {
        return Err(400);
    }
    if parent.member(phone).is_none() {
        return Err(403);
    }
    Ok(parent)
}

pub fn sub_groups(world: &WorldState, phone: &str, id: &str) -> Answer {
    let parent = match community_of(world, phone, id) {
        Ok(parent) => parent,
        Err(code) => return Answer::Error(code),
    };
    let nodes: Vec<Node> = parent
        .linked
        .iter()
        .filter_map(|sub| world.groups.get(sub))
        .map(|sub| {
            // Baileys `communities.js` `communityFetchLinkedGroups` reads `creation`,
            // `creator` and `size` besides the id and subject.
            let mut node = NodeBuilder::new("group")
                .attr("id", sub.id.clone())
                .attr("subject", sub.subject.clone())
                .attr("s_t", sub.subject_time.to_string())
                .attr("creation", sub.creation.to_string())
                .attr("size", sub.members.len().to_string());
            if let Some(creator) = world.account(&sub.creator) {
                node = node.attr("creator", creator.lid_jid());
            }
            if sub.default_sub_group {
                node = node.children([NodeBuilder::new("default_sub_group").build()]);
            }
            node.build()
        })
        .collect();
    Answer::Result(vec![NodeBuilder::new("sub_groups").children(nodes).build()])
}

pub fn linked_participants(world: &WorldState, phone: &str, id: &str) -> Answer {
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

/// `<membership_approval_requests>`: who asked to join and waits for an admin (Baileys
/// `groups.js` `groupRequestParticipantsList` reads each request's attributes).
pub fn requests(world: &WorldState, phone: &str, id: &str) -> Answer {
    let Some(group) = world.groups.get(id) else {
        return Answer::Error(404);
    };
    if !group.is_admin(phone) {
        return Answer::Error(403);
    }
    let nodes: Vec<Node> = group
        .requests
        .iter()
        .map(|request| {
            let lid = world
                .account(&request.phone)
                .map(|a| a.lid_jid())
                .unwrap_or_default();
            NodeBuilder::new("membership_approval_request")
                .attr("jid", lid)
                .attr("phone_number", format!("{}@s.whatsapp.net", request.phone))
                .attr("request_method", request.method.clone())
                .attr("request_time", request.time.to_string())
                .build()
        })
        .collect();
    Answer::Result(vec![
        NodeBuilder::new("membership_approval_requests")
            .children(nodes)
            .build(),
    ])
}
