//! Groups and communities through a plain whatsapp-rust client: create, metadata with LIDs and
//! phone numbers, participant changes with per-participant codes, subject, description,
//! settings, leave; communities with their announcement group, linking, the sub-group list,
//! linked-groups participants, removal across linked groups and deactivation; invite links,
//! previews, joining by link and by private invite, disappearing messages, community settings.

#![expect(clippy::expect_used, clippy::panic, reason = "test code")]

mod support;

use std::time::Duration;

use support::*;
use wa_sim::{CreateAccount, CreateGroup, WaSim};
use wacore::iq::groups::{GroupCreateOptions, GroupParticipantOptions, GroupSubject};
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, NodeContent};
use whatsapp_rust::IqError;
use whatsapp_rust::features::{CreateCommunityOptions, GroupError};
use whatsapp_rust::request::{InfoQuery, InfoQueryType};

fn pn(phone: &str) -> Jid {
    Jid::pn(phone)
}

fn iq_code(error: &GroupError) -> Option<u16> {
    match error {
        GroupError::Iq(IqError::ServerError { code, .. }) => Some(*code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_lifecycle_with_per_participant_codes() {
    init_logs();
    let sim = WaSim::start().await.expect("wa-sim starts");
    let control = sim.control();
    account(&control, "5511900000100", Some("Owner")).await;
    let alice = account(&control, "5511900000101", Some("Alice")).await;
    account(&control, "5511900000102", Some("Bob")).await;
    control
        .create_account(&CreateAccount {
            phone: "5511900000103".to_owned(),
            restrict_group_add: true,
            ..Default::default()
        })
        .await
        .expect("private account");
    let client = paired_client(&sim, "5511900000100").await;
    let groups = client.client.groups();

    let created = groups
        .create_group(
            GroupCreateOptions::new("Team")
                .with_participant(GroupParticipantOptions::from_phone(pn("5511900000101"))),
        )
        .await
        .expect("group created")
        .metadata;
    assert_eq!(created.subject.as_str(), "Team");
    assert_eq!(created.participants.len(), 2);
    let alice_entry = created
        .participants
        .iter()
        .find(|p| p.jid.user == alice.lid)
        .expect("Alice by LID");
    assert_eq!(
        alice_entry
            .phone_number
            .as_ref()
            .map(|j| j.user.to_string()),
        Some("5511900000101".to_owned())
    );
    let jid = created.id.clone();

    // Add: a new member, one already in, one with no account, one whose privacy refuses.
    let results = groups
        .add_participants(
            &jid,
            &[
                pn("5511900000102"),
                pn("5511900000101"),
                pn("5511900000199"),
                pn("5511900000103"),
            ],
        )
        .await
        .expect("add answered");
    let errors: Vec<Option<String>> = results.iter().map(|r| r.error.clone()).collect();
    assert_eq!(
        errors,
        vec![
            None,
            Some("409".to_owned()),
            Some("404".to_owned()),
            Some("403".to_owned())
        ]
    );
    assert!(results[3].add_request.is_some(), "403 carries an invite");

    let promoted = groups
        .promote_participants(&jid, &[pn("5511900000102")])
        .await
        .expect("promote");
    assert!(promoted[0].error.is_none());
    let removed = groups
        .remove_participants(&jid, &[pn("5511900000101"), pn("5511900000199")])
        .await
        .expect("remove");
    assert_eq!(removed[0].error, None);
    assert_eq!(removed[1].error.as_deref(), Some("404"));

    groups
        .set_subject(&jid, GroupSubject::new("Team 2").expect("subject"))
        .await
        .expect("subject");
    groups.set_locked(&jid, true).await.expect("lock");
    groups.set_announce(&jid, true).await.expect("announce");
    let view = control.group(&jid.to_string()).await.expect("group view");
    assert_eq!(view.subject, "Team 2");
    assert!(view.locked && view.announce);
    let bob = view
        .participants
        .iter()
        .find(|p| p.phone == "5511900000102")
        .expect("Bob");
    assert!(bob.admin && !bob.super_admin);
    assert!(view.participants.iter().all(|p| p.phone != "5511900000101"));

    let metadata = groups.get_metadata(&jid).await.expect("metadata");
    assert!(metadata.is_locked && metadata.is_announcement);
    let participating = groups.get_participating().await.expect("participating");
    assert!(participating.contains_key(&jid));

    groups.leave(&jid).await.expect("leave");
    let err = groups
        .get_metadata(&jid)
        .await
        .expect_err("no longer a member");
    assert_eq!(iq_code(&err), Some(403));
    let gone = groups
        .get_metadata(&"120363999999999999@g.us".parse().expect("jid"))
        .await
        .expect_err("no such group");
    assert_eq!(iq_code(&gone), Some(404));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn community_lifecycle() {
    init_logs();
    let sim = WaSim::start().await.expect("wa-sim starts");
    let control = sim.control();
    account(&control, "5511900000110", Some("Owner")).await;
    account(&control, "5511900000111", Some("Alice")).await;
    account(&control, "5511900000112", Some("Bob")).await;
    let client = paired_client(&sim, "5511900000110").await;
    let community = client.client.community();

    let mut options = CreateCommunityOptions::new("Neighbours");
    options.description = Some("Street news".to_owned());
    let parent = community
        .create(options)
        .await
        .expect("community created")
        .metadata;
    assert!(parent.is_parent_group);
    let parent_jid = parent.id.clone();
    let view = control.group(&parent_jid.to_string()).await.expect("view");
    assert!(view.is_community);
    assert_eq!(view.description.as_deref(), Some("Street news"));
    // whatsapp-rust asks for the General group (`<create_general_chat/>`), as WhatsApp Web does.
    assert_eq!(
        view.linked_groups.len(),
        2,
        "the announcement and General groups"
    );
    let announcement = control
        .group(&view.linked_groups[0])
        .await
        .expect("announcement group");
    assert!(announcement.is_announcement && announcement.announce);
    let general = control
        .group(&view.linked_groups[1])
        .await
        .expect("General group");
    assert_eq!(general.subject, "General");
    assert!(!general.is_announcement);
    assert_eq!(
        general.parent.as_deref(),
        Some(parent_jid.to_string().as_str())
    );

    // A group another account made, with the owner as admin, then linked.
    let other = control
        .create_group(&CreateGroup {
            owner_phone: "5511900000111".to_owned(),
            subject: "Garden".to_owned(),
            participants: vec!["5511900000110".to_owned()],
            community: false,
        })
        .await
        .expect("group");
    let other_jid: Jid = other.jid.parse().expect("jid");
    let not_admin = community
        .link_subgroups(&parent_jid, std::slice::from_ref(&other_jid))
        .await
        .expect("link answered");
    assert_eq!(not_admin.failed_groups, vec![(other_jid.clone(), 403)]);

    let own = client
        .client
        .groups()
        .create_group(GroupCreateOptions::new("Parking"))
        .await
        .expect("own group")
        .metadata;
    let linked = community
        .link_subgroups(&parent_jid, std::slice::from_ref(&own.id))
        .await
        .expect("link");
    assert_eq!(linked.linked_jids, vec![own.id.clone()]);
    let sub = community
        .create_subgroup("Events", &[pn("5511900000112")], parent_jid.clone())
        .await
        .expect("subgroup")
        .metadata;
    assert_eq!(sub.parent_group_jid.as_ref(), Some(&parent_jid));

    // Members: add to the community reaches the announcement group.
    let added = client
        .client
        .groups()
        .add_participants(&parent_jid, &[pn("5511900000111")])
        .await
        .expect("add to community");
    assert!(added[0].error.is_none());
    let announcement = control
        .group(&announcement.jid)
        .await
        .expect("announcement group");
    assert!(
        announcement
            .participants
            .iter()
            .any(|p| p.phone == "5511900000111")
    );

    let sub_groups = client
        .client
        .send_iq(InfoQuery {
            namespace: "w:g2",
            query_type: InfoQueryType::Get,
            to: parent_jid.clone(),
            target: None,
            id: None,
            content: Some(NodeContent::Nodes(vec![
                NodeBuilder::new("sub_groups").build(),
            ])),
            timeout: Some(Duration::from_secs(10)),
        })
        .await
        .expect("sub_groups")
        .get()
        .to_owned();
    let listed = sub_groups
        .get_optional_child("sub_groups")
        .expect("<sub_groups>")
        .get_children_by_tag("group")
        .count();
    assert_eq!(listed, 4, "announcement, General, Parking, Events");

    let everyone = community
        .get_linked_groups_participants(&parent_jid)
        .await
        .expect("linked participants");
    let mut phones: Vec<String> = everyone
        .iter()
        .filter_map(|p| p.phone_number.as_ref().map(|j| j.user.to_string()))
        .collect();
    phones.sort();
    assert_eq!(
        phones,
        vec!["5511900000110", "5511900000111", "5511900000112"]
    );

    let removed = community
        .remove_participants(&parent_jid, &[pn("5511900000112")])
        .await
        .expect("remove across linked groups");
    assert!(removed[0].error.is_none());
    let events = control.group(&sub.id.to_string()).await.expect("events");
    assert!(
        events
            .participants
            .iter()
            .all(|p| p.phone != "5511900000112")
    );

    let unlinked = community
        .unlink_subgroups(&parent_jid, std::slice::from_ref(&own.id), false)
        .await
        .expect("unlink");
    assert_eq!(unlinked.unlinked_jids, vec![own.id.clone()]);

    community.deactivate(&parent_jid).await.expect("deactivate");
    let view = control.group(&parent_jid.to_string()).await.expect("view");
    assert!(view.deactivated);
    let events = control.group(&sub.id.to_string()).await.expect("events");
    assert_eq!(events.parent, None, "linked groups stand alone again");
}

/// The child and the actor of the next `w:gp2` notification the client sees.
async fn next_group_change(
    client: &mut TestClient,
) -> (wacore_binary::Node, Option<String>, Option<String>) {
    client
        .wait_for("a w:gp2 notification", |e| match e {
            whatsapp_rust::types::events::Event::RawNode(node) => {
                let node = node.get().to_owned();
                let is_group = node.tag == "notification"
                    && node.attrs.get("type").map(ToString::to_string).as_deref() == Some("w:gp2");
                if !is_group {
                    return None;
                }
                let attr = |name: &str| node.attrs.get(name).map(ToString::to_string);
                let child = node.children()?.first()?.clone();
                Some((child, attr("participant"), attr("participant_pn")))
            }
            _ => None,
        })
        .await
}

fn participant_ids(change: &wacore_binary::Node) -> Vec<(String, String)> {
    change
        .get_children_by_tag("participant")
        .map(|p| {
            let a = |name: &str| {
                p.attrs
                    .get(name)
                    .map(ToString::to_string)
                    .unwrap_or_default()
            };
            (a("jid"), a("phone_number"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_hear_every_change_by_anyone() {
    init_logs();
    let sim = WaSim::start().await.expect("wa-sim starts");
    let control = sim.control();
    let owner = account(&control, "5511900000120", Some("Owner")).await;
    account(&control, "5511900000121", Some("Alice")).await;
    let bob = account(&control, "5511900000122", Some("Bob")).await;
    let mut alice = paired_client(&sim, "5511900000121").await;
    let _lease = alice.client.acquire_raw_node_forwarding();

    let group = control
        .create_group(&CreateGroup {
            owner_phone: owner.phone.clone(),
            subject: "Club".to_owned(),
            participants: vec!["5511900000121".to_owned()],
            community: false,
        })
        .await
        .expect("group");
    let (created, actor, actor_pn) = next_group_change(&mut alice).await;
    assert_eq!(created.tag, "create");
    assert!(created.get_optional_child("group").is_some());
    assert_eq!(actor.as_deref(), Some(owner.lid_jid.as_str()));
    assert_eq!(actor_pn.as_deref(), Some(owner.jid.as_str()));

    let act = |action: &str| wa_sim::GroupAction {
        actor_phone: owner.phone.clone(),
        action: action.to_owned(),
        participants: vec![bob.phone.clone()],
        ..Default::default()
    };
    control
        .group_action(&group.jid, &act("add"))
        .await
        .expect("the owner adds Bob");
    let (added, actor, _) = next_group_change(&mut alice).await;
    assert_eq!(added.tag, "add");
    assert_eq!(actor.as_deref(), Some(owner.lid_jid.as_str()));
    assert_eq!(
        participant_ids(&added),
        vec![(bob.lid_jid.clone(), bob.jid.clone())]
    );

    control
        .group_action(&group.jid, &act("promote"))
        .await
        .expect("promote");
    assert_eq!(next_group_change(&mut alice).await.0.tag, "promote");

    let mut subject = act("subject");
    subject.actor_phone = bob.phone.clone();
    subject.subject = Some("Book club".to_owned());
    control
        .group_action(&group.jid, &subject)
        .await
        .expect("Bob, now an admin, renames the group");
    let (renamed, actor, _) = next_group_change(&mut alice).await;
    assert_eq!(renamed.tag, "subject");
    assert_eq!(
        renamed
            .attrs
            .get("subject")
            .map(ToString::to_string)
            .as_deref(),
        Some("Book club")
    );
    assert_eq!(actor.as_deref(), Some(bob.lid_jid.as_str()));

    // whatsapp-rust's own parser reads what wa-sim sends.
    control
        .group_action(&group.jid, &act("remove"))
        .await
        .expect("remove");
    let (removed, _, _) = next_group_change(&mut alice).await;
    assert_eq!(removed.tag, "remove");
    let view = control.group(&group.jid).await.expect("view");
    assert_eq!(view.subject, "Book club");
    assert!(view.participants.iter().all(|p| p.phone != bob.phone));

    // A refused action is refused as the IQ would be, and nobody hears of it.
    let mut refused = act("add");
    refused.actor_phone = bob.phone.clone();
    let err = control
        .group_action(&group.jid, &refused)
        .await
        .expect_err("Bob is no longer a member");
    assert_eq!(err.status, 403);
    alice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invites_private_invites_timers_and_community_settings() {
    init_logs();
    let sim = WaSim::start().await.expect("wa-sim starts");
    let control = sim.control();
    // The owner's privacy lets only contacts add it: Ana's add comes back as a private invite.
    control
        .create_account(&CreateAccount {
            phone: "5511900000120".to_owned(),
            restrict_group_add: true,
            ..Default::default()
        })
        .await
        .expect("owner");
    account(&control, "5511900000121", Some("Ana")).await;
    let client = paired_client(&sim, "5511900000120").await;
    let groups = client.client.groups();

    // Preview and join Ana's group by its link; a reset link is gone (410).
    let open = control
        .create_group(&CreateGroup {
            owner_phone: "5511900000121".to_owned(),
            subject: "Open".to_owned(),
            ..Default::default()
        })
        .await
        .expect("group");
    let info = groups
        .get_invite_info(&open.invite_code)
        .await
        .expect("preview");
    assert_eq!(info.id.to_string(), open.jid);
    assert_eq!(info.size, Some(1));
    let reset = control
        .group_action(
            &open.jid,
            &wa_sim::GroupAction {
                actor_phone: "5511900000121".to_owned(),
                action: "reset_invite".to_owned(),
                ..Default::default()
            },
        )
        .await;
    assert!(reset.is_ok());
    let gone = groups
        .join_with_invite_code(&open.invite_code)
        .await
        .expect_err("the old link");
    assert_eq!(iq_code(&gone), Some(410));
    let current = control.group(&open.jid).await.expect("view").invite_code;
    let joined = groups
        .join_with_invite_code(&format!("https://chat.whatsapp.com/{current}"))
        .await
        .expect("joined");
    assert_eq!(joined.group_jid().to_string(), open.jid);
    assert!(matches!(
        joined,
        wacore::iq::groups::JoinGroupResult::Joined(_)
    ));

    // A private invite, accepted as an invite message's receiver does.
    let private = control
        .create_group(&CreateGroup {
            owner_phone: "5511900000121".to_owned(),
            subject: "Private".to_owned(),
            ..Default::default()
        })
        .await
        .expect("group");
    let refused = control
        .group_action(
            &private.jid,
            &wa_sim::GroupAction {
                actor_phone: "5511900000121".to_owned(),
                action: "add".to_owned(),
                participants: vec!["5511900000120".to_owned()],
                ..Default::default()
            },
        )
        .await
        .expect("add answered");
    let outcome = &refused.outcomes[0];
    assert_eq!(outcome.error.as_deref(), Some("403"));
    let code = outcome.invite_code.clone().expect("invite code");
    let expiration = outcome.invite_expiration.expect("expiration");
    let private_jid: Jid = private.jid.parse().expect("jid");
    let accepted = groups
        .join_with_invite_v4(
            private_jid.clone(),
            &code,
            i64::try_from(expiration).expect("expiration"),
            pn("5511900000121"),
        )
        .await
        .expect("accepted");
    assert_eq!(accepted.group_jid(), &private_jid);
    let view = control.group(&private.jid).await.expect("view");
    assert!(view.participants.iter().any(|p| p.phone == "5511900000120"));

    // The disappearing-message timer, in the metadata.
    groups
        .set_ephemeral(&private_jid, 604_800)
        .await
        .expect("timer set by a member of an unlocked group");
    let metadata = groups.get_metadata(&private_jid).await.expect("metadata");
    assert_eq!(metadata.ephemeral.and_then(|e| e.expiration), Some(604_800));
    let refused = groups
        .set_ephemeral(&private_jid, 5)
        .await
        .expect_err("not a timer WhatsApp offers");
    assert_eq!(iq_code(&refused), Some(400));

    // A community's "members may add groups", set as WhatsApp Web sets it.
    let parent = client
        .client
        .community()
        .create(CreateCommunityOptions::new("Block"))
        .await
        .expect("community")
        .metadata;
    assert!(!parent.allow_non_admin_sub_group_creation);
    let toggle = |tag: &'static str| InfoQuery {
        namespace: "w:g2",
        query_type: InfoQueryType::Set,
        to: parent.id.clone(),
        target: None,
        id: None,
        content: Some(NodeContent::Nodes(vec![NodeBuilder::new(tag).build()])),
        timeout: Some(Duration::from_secs(5)),
    };
    client
        .client
        .send_iq(toggle("allow_non_admin_sub_group_creation"))
        .await
        .expect("allowed");
    let metadata = groups.get_metadata(&parent.id).await.expect("metadata");
    assert!(metadata.allow_non_admin_sub_group_creation);
    assert!(
        control
            .group(&parent.id.to_string())
            .await
            .expect("view")
            .allow_sub_group_creation
    );
    client
        .client
        .send_iq(toggle("not_allow_non_admin_sub_group_creation"))
        .await
        .expect("disallowed");
    let metadata = groups.get_metadata(&parent.id).await.expect("metadata");
    assert!(!metadata.allow_non_admin_sub_group_creation);
    let plain = client
        .client
        .send_iq(InfoQuery {
            to: private_jid.clone(),
            ..toggle("allow_non_admin_sub_group_creation")
        })
        .await;
    assert!(plain.is_err(), "a plain group has no such setting");
}
