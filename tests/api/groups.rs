//! Groups and communities end to end through wa-sim: create, participants with per-participant
//! outcomes, settings, leave; communities with their announcement group, linking, members across
//! linked groups, deactivation; LIDs resolved through a group; failures mapped to the catalogue.

use serde_json::{Value, json};
use wa_sim::{CreateAccount, CreateGroup, CreatedAccount, Fault, WaSim};

use crate::helpers::{Tenant, TestApp, TestResponse};

struct Setup {
    sim: WaSim,
    app: TestApp,
    tenant: Tenant,
    owner: String,
}

impl Setup {
    async fn new(owner: &str) -> Self {
        let sim = WaSim::start().await.expect("wa-sim");
        account(&sim, owner, false).await;
        let app = TestApp::spawn_with_sim(&sim).await;
        let tenant = app.register(&format!("g{owner}")).await;
        let device = app.create_device(&tenant.admin_token, "groups").await;
        app.pair(&sim, &tenant.admin_token, &device, owner).await;
        Self {
            sim,
            app,
            tenant,
            owner: owner.to_owned(),
        }
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> TestResponse {
        self.app
            .send_as(&self.tenant.admin_token, method, path, body)
            .await
    }

    async fn usync_count(&self) -> u64 {
        self.sim
            .control()
            .stats()
            .await
            .expect("stats")
            .iq_count("usync", "get")
    }
}

pub(crate) async fn account(sim: &WaSim, phone: &str, restrict_group_add: bool) -> CreatedAccount {
    sim.control()
        .create_account(&CreateAccount {
            phone: phone.to_owned(),
            push_name: Some(format!("User {phone}")),
            restrict_group_add,
            ..Default::default()
        })
        .await
        .expect("account")
}

pub(crate) fn statuses(answer: &Value) -> Vec<String> {
    answer["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .map(|p| p["status"].as_str().expect("status").to_owned())
        .collect()
}

fn member<'a>(group: &'a Value, phone: &str) -> Option<&'a Value> {
    group["participants"]
        .as_array()?
        .iter()
        .find(|p| p["phone_number"] == phone)
}

#[tokio::test]
async fn groups_end_to_end() {
    let s = Setup::new("5511900000300").await;
    let alice = account(&s.sim, "5511900000301", false).await;
    let bob = account(&s.sim, "5511900000302", false).await;
    account(&s.sim, "5511900000303", true).await;
    let carol = account(&s.sim, "5511900000304", false).await;
    let unknown = "+55 11 90000-0399";

    // Create: one usync for the two unknown numbers; the one with no account is reported.
    let before = s.usync_count().await;
    let created = s
        .send(
            "POST",
            "/groups",
            Some(json!({
                "name": "Team",
                "participants": [alice.phone, unknown],
                "description": "Our team",
                "options": {"announcement": true}
            })),
        )
        .await;
    let created = created.assert_status(201).clone();
    assert_eq!(s.usync_count().await - before, 1);
    assert_eq!(statuses(&created), vec!["ok", "not_on_whatsapp"]);
    let group = &created["group"];
    let jid = group["jid"].as_str().expect("jid").to_owned();
    assert!(jid.ends_with("@g.us"));
    assert_eq!(group["name"], "Team");
    assert_eq!(group["topic"], "Our team");
    assert_eq!(group["is_announce"], true);
    assert_eq!(group["members_count"], 2);
    let owner = member(group, &s.owner).expect("owner listed");
    assert_eq!(owner["is_super_admin"], true);
    let listed_alice = member(group, &alice.phone).expect("Alice listed by phone");
    assert_eq!(listed_alice["lid_jid"], alice.lid_jid);
    assert_eq!(listed_alice["jid"], alice.jid);

    // Add: new, already in, privacy-restricted, no account; a 200 with each outcome.
    let path = format!("/groups/{jid}/participants");
    let added = s
        .send(
            "POST",
            &path,
            Some(json!({"participants": [bob.jid, alice.phone, "5511900000303", unknown]})),
        )
        .await;
    let added = added.assert_status(200).clone();
    assert_eq!(added["action"], "add");
    assert_eq!(
        statuses(&added),
        vec!["ok", "already_member", "not_authorized", "not_on_whatsapp"]
    );
    assert_eq!(added["participants"][2]["code"], 403);
    assert_eq!(added["participants"][0]["phone_number"], bob.phone);

    // Promote by LID (learned from the add), remove, remove again.
    let promoted = s
        .send(
            "POST",
            &path,
            Some(json!({"participants": [bob.lid_jid], "action": "promote"})),
        )
        .await;
    let promoted = promoted.assert_status(200).clone();
    assert_eq!(statuses(&promoted), vec!["ok"]);
    assert_eq!(promoted["participants"][0]["phone_number"], bob.phone);
    let removed = s
        .send("DELETE", &path, Some(json!({"participants": [alice.jid]})))
        .await;
    assert_eq!(statuses(removed.assert_status(200)), vec!["ok"]);
    let again = s
        .send("DELETE", &path, Some(json!({"participants": [alice.jid]})))
        .await;
    let again = again.assert_status(200).clone();
    assert_eq!(statuses(&again), vec!["not_member"]);
    assert_eq!(again["participants"][0]["code"], 404);

    // Settings.
    let patched = s
        .send(
            "PATCH",
            &format!("/groups/{jid}"),
            Some(json!({
                "name": "Team 2",
                "topic": "About us",
                "locked": true,
                "announce": false,
                "member_add_mode": "admin_add"
            })),
        )
        .await;
    let patched = patched.assert_status(200)["group"].clone();
    assert_eq!(patched["name"], "Team 2");
    assert_eq!(patched["topic"], "About us");
    assert_eq!(patched["is_locked"], true);
    assert_eq!(patched["is_announce"], false);
    assert_eq!(member(&patched, &bob.phone).expect("Bob")["is_admin"], true);
    assert!(member(&patched, &alice.phone).is_none());
    let view = s.sim.control().group(&jid).await.expect("wa-sim view");
    assert_eq!(view.subject, "Team 2");
    assert!(view.locked && !view.announce && !view.all_member_add);
    s.send("PATCH", &format!("/groups/{jid}"), Some(json!({})))
        .await
        .assert_validation("body");

    let listed = s.send("GET", "/groups", None).await;
    let listed = listed.assert_status(200).clone();
    assert!(
        listed["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .any(|g| g["jid"] == jid.as_str())
    );

    // A group someone else made: LIDs resolve through it without a usync; not an admin there.
    let foreign = s
        .sim
        .control()
        .create_group(&CreateGroup {
            owner_phone: carol.phone.clone(),
            subject: "Carol's".to_owned(),
            participants: vec![s.owner.clone()],
            community: false,
        })
        .await
        .expect("foreign group");
    let before = s.usync_count().await;
    let resolved = s
        .send(
            "POST",
            "/contacts/resolve",
            Some(json!({"jids": [carol.lid_jid], "group_jid": foreign.jid})),
        )
        .await;
    let resolved = resolved.assert_status(200).clone();
    assert_eq!(resolved["items"][0]["phone_number"], carol.phone);
    assert_eq!(s.usync_count().await, before);
    s.send(
        "POST",
        &format!("/groups/{}/participants", foreign.jid),
        Some(json!({"participants": [carol.phone], "action": "demote"})),
    )
    .await
    .assert_error(403, "FORBIDDEN");

    // Bad input names the field.
    s.send(
        "POST",
        "/groups/5511900000301@s.whatsapp.net/participants",
        Some(json!({"participants": [bob.jid]})),
    )
    .await
    .assert_validation("jid");
    s.send("POST", &path, Some(json!({"participants": []})))
        .await
        .assert_validation("participants");
    let many: Vec<String> = (0..257).map(|i| format!("55119{i:08}")).collect();
    s.send("POST", &path, Some(json!({"participants": many})))
        .await
        .assert_validation("participants");
    s.send(
        "POST",
        &path,
        Some(json!({"participants": [bob.jid], "action": "kick"})),
    )
    .await
    .assert_validation("action");
    s.send(
        "POST",
        &path,
        Some(json!({"participants": [bob.jid, "abc"]})),
    )
    .await
    .assert_validation("participants[1]");

    // WhatsApp failures: an error answer is DEVICE_ERROR, silence is WHATSAPP_TIMEOUT.
    let control = s.sim.control();
    control
        .add_fault(&Fault::Error {
            xmlns: "w:g2".into(),
            code: 500,
        })
        .await
        .expect("fault");
    s.send("GET", &format!("/groups/{jid}"), None)
        .await
        .assert_error(502, "DEVICE_ERROR");
    control.clear_faults().await.expect("clear");
    control
        .add_fault(&Fault::NoAnswer {
            xmlns: "w:g2".into(),
        })
        .await
        .expect("fault");
    s.send("GET", &format!("/groups/{jid}"), None)
        .await
        .assert_error(504, "WHATSAPP_TIMEOUT");
    control.clear_faults().await.expect("clear");

    // Leave: the group is then unknown to the device.
    s.send("DELETE", &format!("/groups/{jid}/leave"), None)
        .await
        .assert_status(200);
    s.send("GET", &format!("/groups/{jid}"), None)
        .await
        .assert_error(404, "NOT_FOUND");
    let view = control.group(&jid).await.expect("wa-sim view");
    assert!(view.participants.iter().all(|p| p.phone != s.owner));
}

#[tokio::test]
async fn communities_end_to_end() {
    let s = Setup::new("5511900000310").await;
    let alice = account(&s.sim, "5511900000311", false).await;
    let bob = account(&s.sim, "5511900000312", false).await;
    let control = s.sim.control();

    let created = s
        .send(
            "POST",
            "/communities",
            Some(json!({"name": "Street", "description": "Street news", "participants": [alice.phone]})),
        )
        .await;
    let created = created.assert_status(200).clone();
    assert_eq!(statuses(&created), vec!["ok"]);
    let community = &created["community"];
    let jid = community["jid"].as_str().expect("jid").to_owned();
    assert_eq!(community["name"], "Street");
    assert_eq!(community["description"], "Street news");
    assert_eq!(community["members_count"], 2);
    // WhatsApp creates a community with its General group (`<create_general_chat/>`).
    assert_eq!(community["linked_groups_count"], 1);
    let announcement = community["announcement_group_jid"]
        .as_str()
        .expect("announcement group")
        .to_owned();

    // A group inside it, one of ours linked, one of someone else refused.
    let sub = s
        .send(
            "POST",
            "/groups",
            Some(json!({"name": "Parking", "options": {"parent_jid": jid}})),
        )
        .await;
    let sub = sub.assert_status(201)["group"].clone();
    assert_eq!(sub["parent_jid"], jid.as_str());
    let garden = s
        .send("POST", "/groups", Some(json!({"name": "Garden"})))
        .await;
    let garden = garden.assert_status(201)["group"]["jid"]
        .as_str()
        .expect("jid")
        .to_owned();
    let foreign = control
        .create_group(&CreateGroup {
            owner_phone: alice.phone.clone(),
            subject: "Alice's".to_owned(),
            participants: vec![s.owner.clone()],
            community: false,
        })
        .await
        .expect("foreign group");
    let linked = s
        .send(
            "POST",
            &format!("/communities/{jid}/groups"),
            Some(json!({"group_jids": [garden, foreign.jid]})),
        )
        .await;
    let linked = linked.assert_status(200).clone();
    assert_eq!(linked["linked"], json!([garden]));
    assert_eq!(
        linked["failed"],
        json!([{"group_jid": foreign.jid, "code": 403}])
    );

    let groups = s
        .send("GET", &format!("/communities/{jid}/groups"), None)
        .await;
    let groups = groups.assert_status(200).clone();
    // The announcement group, the General group, and the two linked here.
    assert_eq!(groups["count"], 4);
    let flagged: Vec<&Value> = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter(|g| g["is_announcement_group"] == true)
        .collect();
    assert_eq!(flagged.len(), 1);
    assert_eq!(flagged[0]["jid"], announcement.as_str());
    let one = s.send("GET", &format!("/communities/{jid}"), None).await;
    let one = one.assert_status(200)["community"].clone();
    assert_eq!(one["linked_groups_count"], 3);
    assert_eq!(one["announcement_group_jid"], announcement.as_str());

    // Members: added to the community (and its announcement group), listed across groups,
    // removed from every linked group.
    let path = format!("/communities/{jid}/participants");
    let added = s
        .send("POST", &path, Some(json!({"participants": [bob.phone]})))
        .await;
    assert_eq!(statuses(added.assert_status(200)), vec!["ok"]);
    let in_announcement = control.group(&announcement).await.expect("announcement");
    assert!(
        in_announcement
            .participants
            .iter()
            .any(|p| p.phone == bob.phone)
    );
    let members = s.send("GET", &path, None).await;
    let members = members.assert_status(200).clone();
    let mut phones: Vec<String> = members["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .filter_map(|p| p["phone_number"].as_str().map(str::to_owned))
        .collect();
    phones.sort();
    assert_eq!(
        phones,
        vec![s.owner.clone(), alice.phone.clone(), bob.phone.clone()]
    );
    let removed = s
        .send("DELETE", &path, Some(json!({"participants": [bob.jid]})))
        .await;
    assert_eq!(statuses(removed.assert_status(200)), vec!["ok"]);
    let in_announcement = control.group(&announcement).await.expect("announcement");
    assert!(
        in_announcement
            .participants
            .iter()
            .all(|p| p.phone != bob.phone)
    );

    let unlinked = s
        .send(
            "DELETE",
            &format!("/communities/{jid}/groups"),
            Some(json!({"group_jid": garden})),
        )
        .await;
    assert_eq!(unlinked.assert_status(200)["unlinked"], json!([garden]));

    let listed = s.send("GET", "/communities", None).await;
    let listed = listed.assert_status(200).clone();
    assert_eq!(listed["count"], 1);
    assert_eq!(listed["communities"][0]["jid"], jid.as_str());
    s.send("GET", &format!("/communities/{garden}"), None)
        .await
        .assert_error(404, "NOT_FOUND");

    // Leave someone else's community: the device is out of it and its groups.
    let theirs = control
        .create_group(&CreateGroup {
            owner_phone: alice.phone.clone(),
            subject: "Alice's community".to_owned(),
            participants: vec![s.owner.clone()],
            community: true,
        })
        .await
        .expect("foreign community");
    s.send(
        "DELETE",
        &format!("/communities/{}/leave", theirs.jid),
        None,
    )
    .await
    .assert_status(200);
    let theirs = control.group(&theirs.jid).await.expect("view");
    assert!(theirs.participants.iter().all(|p| p.phone != s.owner));

    // Deactivate: linked groups stay as plain groups.
    s.send("DELETE", &format!("/communities/{jid}"), None)
        .await
        .assert_status(200);
    assert!(control.group(&jid).await.expect("view").deactivated);
    let parking = control
        .group(sub["jid"].as_str().expect("jid"))
        .await
        .expect("view");
    assert_eq!(parking.parent, None);
}
