//! The groups part of the control API: groups made by some account, the world's view of a
//! group, and the actions other members take on their phones (`POST /groups/{jid}/actions`),
//! which go through the same requests a companion's IQs do, checks and notifications
//! included.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use super::change::{announce_created, make_group};
use super::community::make_community;
use super::joining::join;
use super::notify::{self, Notices};
use crate::api::{CreateGroup, GroupAction, GroupActionOutcome, GroupView, MemberView, Outcome};
use crate::control::{ControlError, digits};
use crate::iq::Answer;
use crate::sim::Sim;
use crate::stanza::{attr, children, split_jid};
use crate::world::{Group, Role, WorldState};

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
        invite_code: group.invite_code.clone(),
        pending_requests: group.requests.iter().map(|r| r.phone.clone()).collect(),
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
        ephemeral: group.ephemeral,
        allow_sub_group_creation: group.allow_sub_group_creation,
        invited: group
            .add_invites
            .iter()
            .filter(|i| i.expiration >= crate::sim::now_secs())
            .map(|i| i.phone.clone())
            .collect(),
    }
}

fn bad(message: impl Into<String>) -> ControlError {
    ControlError(StatusCode::BAD_REQUEST, message.into())
}

/// `POST /groups`: a group (or community) created by some account, with the given members;
/// their companions are notified as for any new group.
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
            return Err(bad(format!("no account for participant {phone}")));
        }
        members.push(phone);
    }
    if request.subject.trim().is_empty() {
        return Err(bad("subject is empty"));
    }
    let mut notices = Notices::default();
    let id = if request.community {
        let created = make_community(&mut world, &owner, &request.subject, &members, false);
        announce_created(&world, &mut notices, &created.announcement);
        created.parent
    } else {
        make_group(&mut world, &owner, &request.subject, &members)
    };
    announce_created(&world, &mut notices, &id);
    notify::send(&world, &sim, &owner, None, notices);
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

fn participants_node(tag: &str, phones: &[String]) -> Node {
    NodeBuilder::new_dynamic(tag.to_owned())
        .children(phones.iter().map(|p| {
            NodeBuilder::new("participant")
                .attr("jid", format!("{}@s.whatsapp.net", digits(p)))
                .build()
        }))
        .build()
}

fn group_refs(jids: &[String]) -> Vec<Node> {
    jids.iter()
        .map(|jid| {
            NodeBuilder::new("group")
                .attr("jid", format!("{}@g.us", split_jid(jid).0))
                .build()
        })
        .collect()
}

/// The request a member's phone sends for an action: where it goes and what it says.
fn request_for(group: &Group, request: &GroupAction) -> Result<(String, Node), ControlError> {
    let jid = group.jid();
    let node = match request.action.as_str() {
        "add" | "remove" | "promote" | "demote" => {
            participants_node(&request.action, &request.participants)
        }
        "approve" | "reject" => NodeBuilder::new("membership_requests_action")
            .children([participants_node(&request.action, &request.participants)])
            .build(),
        "subject" => NodeBuilder::new("subject")
            .string_content(request.subject.clone().unwrap_or_default())
            .build(),
        "description" => {
            let mut node = NodeBuilder::new("description")
                .attr("id", format!("{:016X}", rand::random::<u64>()));
            if let Some((current, _)) = &group.description {
                node = node.attr("prev", current.clone());
            }
            match request.description.as_deref().filter(|d| !d.is_empty()) {
                Some(body) => node
                    .children([NodeBuilder::new("body")
                        .string_content(body.to_owned())
                        .build()])
                    .build(),
                None => node.attr("delete", "true").build(),
            }
        }
        "announcement" | "not_announcement" | "locked" | "unlocked" => {
            NodeBuilder::new_dynamic(request.action.clone()).build()
        }
        "join_approval_on" | "join_approval_off" => NodeBuilder::new("membership_approval_mode")
            .children([NodeBuilder::new("group_join")
                .attr(
                    "state",
                    if request.action.ends_with("on") {
                        "on"
                    } else {
                        "off"
                    },
                )
                .build()])
            .build(),
        "reset_invite" => NodeBuilder::new("invite").build(),
        "link" => NodeBuilder::new("links")
            .children([NodeBuilder::new("link")
                .attr("link_type", "sub_group")
                .children(group_refs(&request.groups))
                .build()])
            .build(),
        "unlink" => NodeBuilder::new("unlink")
            .attr("unlink_type", "sub_group")
            .children(group_refs(&request.groups))
            .build(),
        "deactivate" => NodeBuilder::new("delete_parent").build(),
        "join_link" => {
            let invite = NodeBuilder::new("invite")
                .attr("code", group.invite_code.clone())
                .build();
            return Ok(("g.us".to_owned(), invite));
        }
        "leave" => {
            let tag = if group.is_parent {
                "community"
            } else {
                "group"
            };
            let leave = NodeBuilder::new("leave")
                .children([NodeBuilder::new(tag).attr("id", jid).build()])
                .build();
            return Ok(("g.us".to_owned(), leave));
        }
        other => return Err(bad(format!("unknown action {other}"))),
    };
    Ok((jid, node))
}

/// Per-participant (or per-group) outcomes out of an answer.
fn outcomes(content: &[Node]) -> Vec<Outcome> {
    let mut found = Vec::new();
    let mut stack: Vec<&Node> = content.iter().collect();
    while let Some(node) = stack.pop() {
        if matches!(node.tag.as_ref(), "participant" | "group") && attr(node, "jid").is_some() {
            let invite = crate::stanza::child(node, "add_request");
            found.push(Outcome {
                jid: attr(node, "jid").unwrap_or_default(),
                phone_number: attr(node, "phone_number"),
                error: attr(node, "error"),
                invite_code: invite.and_then(|i| attr(i, "code")),
                invite_expiration: invite
                    .and_then(|i| attr(i, "expiration"))
                    .and_then(|e| e.parse().ok()),
            });
        }
        stack.extend(children(node).iter());
    }
    found.reverse();
    found
}

/// `POST /groups/{jid}/actions`: another account acts on the group from its phone (adds,
/// removes, promotes or demotes members, changes the subject, description or settings, joins by
/// the invite link or asks to join, answers join requests, leaves, links or unlinks groups,
/// deactivates a community). Every member's companions are notified.
pub async fn control_act(
    State(sim): State<Arc<Sim>>,
    Path(jid): Path<String>,
    axum::Json(request): axum::Json<GroupAction>,
) -> Result<axum::Json<GroupActionOutcome>, ControlError> {
    let actor = digits(&request.actor_phone);
    let id = split_jid(&jid).0;
    let mut world = sim.world.lock();
    if world.account(&actor).is_none() {
        return Err(ControlError(
            StatusCode::NOT_FOUND,
            "no such actor account".to_owned(),
        ));
    }
    let group = world
        .groups
        .get(&id)
        .cloned()
        .ok_or_else(|| ControlError(StatusCode::NOT_FOUND, "no such group".to_owned()))?;
    let mut notices = Notices::default();
    let answer = if request.action == "request_join" {
        join(&mut world, &mut notices, &actor, &id, true)
    } else {
        let (to, node) = request_for(&group, &request)?;
        super::act(&mut world, &mut notices, &actor, &to, "set", &node)
    };
    notify::send(&world, &sim, &actor, None, notices);
    match answer {
        Answer::Result(content) => Ok(axum::Json(GroupActionOutcome {
            outcomes: outcomes(&content),
        })),
        Answer::Error(code) => Err(ControlError(
            StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
            format!(
                "WhatsApp refused the action: {code} {}",
                crate::stanza::error_text(code)
            ),
        )),
    }
}
