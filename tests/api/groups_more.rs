//! Getting into groups, end to end through wa-sim: invite links (read, reset), previews,
//! joining by link and by a private invite, join requests of groups and communities, the
//! disappearing-message timer, community settings, and adds refused by a member's privacy
//! setting; each with its failures mapped to the catalogue.

use serde_json::{Value, json};
use wa_sim::{CreateGroup, CreatedAccount, Fault, GroupAction, WaSim};

use crate::groups::{account, statuses};
use crate::helpers::{Tenant, TestApp, TestResponse};

struct Setup {
    sim: WaSim,
    app: TestApp,
    tenant: Tenant,
    owner: CreatedAccount,
}

impl Setup {
    /// A paired device whose account lets only its contacts add it to groups, so that an add
    /// by someone else comes back as a private invite.
    async fn new(owner: &str) -> Self {
        let sim = WaSim::start().await.expect("wa-sim");
        let owner = account(&sim, owner, true).await;
        let app = TestApp::spawn_with_sim(&sim).await;
        let tenant = app.register(&format!("gm{}", owner.phone)).await;
        let device = app.create_device(&tenant.admin_token, "groups").await;
        app.pair(&sim, &tenant.admin_token, &device, &owner.phone)
            .await;
        Self {
            sim,
            app,
            tenant,
            owner,
        }
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> TestResponse {
        self.app
            .send_as(&self.tenant.admin_token, method, path, body)
            .await
    }

    /// A group made by `owner` on their phone.
    async fn foreign_group(&self, owner: &str, subject: &str, members: &[&str]) -> String {
        self.sim
            .control()
            .create_group(&CreateGroup {
                owner_phone: owner.to_owned(),
                subject: subject.to_owned(),
                participants: members.iter().map(|m| (*m).to_owned()).collect(),
                community: false,
            })
            .await
            .expect("group")
            .jid
    }

    /// `actor` does `action` on the group from their phone.
    async fn act(&self, jid: &str, actor: &str, action: &str, participants: &[&str]) -> Value {
        let outcome = self
            .sim
            .control()
            .group_action(
                jid,
                &GroupAction {
                    actor_phone: actor.to_owned(),
                    action: action.to_owned(),
                    participants: participants.iter().map(|p| (*p).to_owned()).collect(),
                    ..Default::default()
                },
            )
            .await
            .expect("action");
        serde_json::to_value(outcome).expect("json")
    }

    async fn is_member(&self, jid: &str, phone: &str) -> bool {
        let view = self.sim.control().group(jid).await.expect("wa-sim view");
        view.participants.iter().any(|p| p.phone == phone)
    }
}

fn link(code: &str) -> String {
    format!("https://chat.whatsapp.com/{code}")
}

#[tokio::test]
async fn invite_links_and_joining() {
    let s = Setup::new("5511900000400").await;
    let ana = account(&s.sim, "5511900000401", false).await;
    let bia = account(&s.sim, "5511900000402", false).await;
    let control = s.sim.control();

    // Our group's link: read twice, the same; reset, a new one WhatsApp now holds.
    let ours = s
        .send(
            "POST",
            "/groups",
            Some(json!({"name": "Ours", "participants": [bia.phone]})),
        )
        .await;
    let ours = ours.assert_status(201)["group"]["jid"]
        .as_str()
        .expect("jid")
        .to_owned();
    let first = s.send("GET", &format!("/groups/{ours}/invite"), None).await;
    let first = first.assert_status(200).clone();
    assert_eq!(first["group_jid"], ours.as_str());
    let code = control.group(&ours).await.expect("view").invite_code;
    assert_eq!(first["invite_link"], link(&code).as_str());
    let again = s.send("GET", &format!("/groups/{ours}/invite"), None).await;
    assert_eq!(
        again.assert_status(200)["invite_link"],
        first["invite_link"]
    );
    let reset = s
        .send("POST", &format!("/groups/{ours}/invite/reset"), None)
        .await;
    let reset = reset.assert_status(200).clone();
    assert_ne!(reset["invite_link"], first["invite_link"]);
    assert!(reset["reset_at"].is_string());
    let new_code = control.group(&ours).await.expect("view").invite_code;
    assert_eq!(reset["invite_link"], link(&new_code).as_str());
    // The old link stops working: for a preview, and for someone joining with it.
    s.send(
        "GET",
        &format!("/groups/invite-info?link={}", link(&code)),
        None,
    )
    .await
    .assert_error(404, "NOT_FOUND");
    let by_link = control
        .group_action(
            &ours,
            &GroupAction {
                actor_phone: ana.phone.clone(),
                action: "join_link".to_owned(),
                ..Default::default()
            },
        )
        .await
        .expect("join with the current link");
    assert!(by_link.outcomes.iter().all(|o| o.error.is_none()));
    assert!(s.is_member(&ours, &ana.phone).await);

    // Someone else's group, where the device is a member but not an admin: no link for it.
    let theirs = s
        .foreign_group(&ana.phone, "Theirs", &[&s.owner.phone])
        .await;
    s.send("GET", &format!("/groups/{theirs}/invite"), None)
        .await
        .assert_error(403, "FORBIDDEN");
    s.send("POST", &format!("/groups/{theirs}/invite/reset"), None)
        .await
        .assert_error(403, "FORBIDDEN");
    s.send("GET", "/groups/120363999999999999@g.us/invite", None)
        .await
        .assert_error(404, "NOT_FOUND");

    // Preview and join by link a group the device is not in; a reset link fails first.
    let open = s.foreign_group(&ana.phone, "Open", &[&bia.phone]).await;
    let old = control.group(&open).await.expect("view").invite_code;
    let preview = s
        .send(
            "GET",
            &format!("/groups/invite-info?link={}", link(&old)),
            None,
        )
        .await;
    let preview = preview.assert_status(200)["invite"].clone();
    assert_eq!(preview["group_jid"], open.as_str());
    assert_eq!(preview["name"], "Open");
    assert_eq!(preview["members_count"], 2);
    assert_eq!(preview["join_approval"], false);
    assert!(!s.is_member(&open, &s.owner.phone).await, "a preview joins");
    s.act(&open, &ana.phone, "reset_invite", &[]).await;
    s.send("POST", "/groups/join", Some(json!({"link": link(&old)})))
        .await
        .assert_error(404, "NOT_FOUND");
    let current = control.group(&open).await.expect("view").invite_code;
    let joined = s
        .send(
            "POST",
            "/groups/join",
            Some(json!({"link": link(&current)})),
        )
        .await;
    let joined = joined.assert_status(200).clone();
    assert_eq!(joined["pending_approval"], false);
    assert_eq!(joined["group_jid"], open.as_str());
    assert!(s.is_member(&open, &s.owner.phone).await);
    let group = s.send("GET", &format!("/groups/{open}"), None).await;
    let group = group.assert_status(200)["group"].clone();
    assert!(
        group["participants"]
            .as_array()
            .expect("participants")
            .iter()
            .any(|p| p["phone_number"] == s.owner.phone.as_str())
    );
    s.send("POST", "/groups/join", Some(json!({"link": current})))
        .await
        .assert_error(409, "CONFLICT");
    // The join is an event, once (WhatsApp does not tell the device of its own join).
    let events = s.send("GET", "/events?limit=500", None).await;
    let events = events.assert_status(200)["events"].clone();
    let joins: Vec<&Value> = events
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event"] == "group.joined" && e["data"]["jid"] == open.as_str())
        .collect();
    assert_eq!(joins.len(), 1, "{events}");
    assert_eq!(joins[0]["data"]["name"], "Open");

    // A group that approves its members: the join is a request.
    let closed = s.foreign_group(&ana.phone, "Closed", &[]).await;
    s.act(&closed, &ana.phone, "join_approval_on", &[]).await;
    let code = control.group(&closed).await.expect("view").invite_code;
    let preview = s
        .send("GET", &format!("/groups/invite-info?link={code}"), None)
        .await;
    assert_eq!(preview.assert_status(200)["invite"]["join_approval"], true);
    let asked = s
        .send("POST", "/groups/join", Some(json!({"link": link(&code)})))
        .await;
    let asked = asked.assert_status(200).clone();
    assert_eq!(asked["pending_approval"], true);
    assert_eq!(asked["group_jid"], closed.as_str());
    let view = control.group(&closed).await.expect("view");
    assert_eq!(view.pending_requests, vec![s.owner.phone.clone()]);
    assert!(view.participants.iter().all(|p| p.phone != s.owner.phone));

    // A private invite: the device's privacy refused Ana's add; it accepts the invite she got.
    let private = s.foreign_group(&ana.phone, "Private", &[]).await;
    s.act(&private, &ana.phone, "join_approval_on", &[]).await;
    let refused = s.act(&private, &ana.phone, "add", &[&s.owner.phone]).await;
    let outcome = &refused["outcomes"][0];
    assert_eq!(outcome["error"], "403");
    assert_eq!(outcome["jid"], s.owner.lid_jid.as_str());
    let invite_code = outcome["invite_code"]
        .as_str()
        .expect("invite code")
        .to_owned();
    let expiration = outcome["invite_expiration"].as_u64().expect("expiration");
    assert!(!s.is_member(&private, &s.owner.phone).await);
    // Someone else's name as the inviter does not open it.
    s.send(
        "POST",
        "/groups/join",
        Some(json!({"code": invite_code, "group_jid": private, "inviter_jid": bia.jid})),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    let accepted = s
        .send(
            "POST",
            "/groups/join",
            Some(json!({
                "code": invite_code,
                "group_jid": private,
                "inviter_jid": ana.phone,
                "expiration": expiration
            })),
        )
        .await;
    let accepted = accepted.assert_status(200).clone();
    assert_eq!(
        accepted["pending_approval"], false,
        "the admin's invite is approval"
    );
    assert_eq!(accepted["group_jid"], private.as_str());
    assert!(s.is_member(&private, &s.owner.phone).await);
    s.send(
        "POST",
        "/groups/join",
        Some(json!({"code": invite_code, "group_jid": private, "inviter_jid": ana.jid})),
    )
    .await
    .assert_error(404, "NOT_FOUND");

    // Bad input names the field.
    s.send("POST", "/groups/join", Some(json!({})))
        .await
        .assert_validation("link");
    s.send(
        "POST",
        "/groups/join",
        Some(json!({"link": "https://example.com/AbCd"})),
    )
    .await
    .assert_validation("link");
    s.send(
        "POST",
        "/groups/join",
        Some(json!({"link": link(&current), "code": "AbCd"})),
    )
    .await
    .assert_validation("link");
    s.send("POST", "/groups/join", Some(json!({"code": "AbCd"})))
        .await
        .assert_validation("group_jid");
    s.send(
        "POST",
        "/groups/join",
        Some(json!({"code": "AbCd", "group_jid": private, "inviter_jid": "abc"})),
    )
    .await
    .assert_validation("inviter_jid");
    s.send(
        "POST",
        "/groups/join",
        Some(json!({"code": "AbCd", "group_jid": "5511@s.whatsapp.net", "inviter_jid": ana.jid})),
    )
    .await
    .assert_validation("group_jid");
    s.send(
        "POST",
        "/groups/join",
        Some(
            json!({"code": "AbCd", "group_jid": private, "inviter_jid": ana.jid, "expiration": 1}),
        ),
    )
    .await
    .assert_validation("expiration");
    s.send("GET", "/groups/invite-info", None)
        .await
        .assert_validation("link");
    s.send("GET", "/groups/invite-info?link=a%20b", None)
        .await
        .assert_validation("link");
    s.send("GET", "/groups/5511900000401@s.whatsapp.net/invite", None)
        .await
        .assert_validation("jid");

    // WhatsApp failures: an error answer is DEVICE_ERROR, silence is WHATSAPP_TIMEOUT.
    control
        .add_fault(&Fault::Error {
            xmlns: "w:g2".into(),
            code: 500,
        })
        .await
        .expect("fault");
    s.send("GET", &format!("/groups/{ours}/invite"), None)
        .await
        .assert_error(502, "DEVICE_ERROR");
    s.send(
        "GET",
        &format!("/groups/invite-info?link={}", link(&current)),
        None,
    )
    .await
    .assert_error(502, "DEVICE_ERROR");
    s.send(
        "POST",
        "/groups/join",
        Some(json!({"link": link(&current)})),
    )
    .await
    .assert_error(502, "DEVICE_ERROR");
    control.clear_faults().await.expect("clear");
    control
        .add_fault(&Fault::NoAnswer {
            xmlns: "w:g2".into(),
        })
        .await
        .expect("fault");
    s.send("POST", &format!("/groups/{ours}/invite/reset"), None)
        .await
        .assert_error(504, "WHATSAPP_TIMEOUT");
    s.send(
        "POST",
        "/groups/join",
        Some(json!({"link": link(&current)})),
    )
    .await
    .assert_error(504, "WHATSAPP_TIMEOUT");
    control.clear_faults().await.expect("clear");

    // A device that is not connected answers at once.
    let idle = s.app.create_device(&s.tenant.admin_token, "idle").await;
    for (method, path, body) in [
        (
            "GET",
            format!("/groups/{ours}/invite?device_id={idle}"),
            None,
        ),
        (
            "POST",
            format!("/groups/{ours}/invite/reset?device_id={idle}"),
            None,
        ),
        (
            "POST",
            "/groups/join".to_owned(),
            Some(json!({"link": link(&current), "device_id": idle})),
        ),
        (
            "GET",
            format!("/groups/invite-info?device_id={idle}&link={current}"),
            None,
        ),
        (
            "GET",
            format!("/groups/{ours}/requests?device_id={idle}"),
            None,
        ),
        (
            "POST",
            format!("/groups/{ours}/requests"),
            Some(json!({"participants": [ana.phone], "action": "approve", "device_id": idle})),
        ),
        (
            "PUT",
            format!("/groups/{ours}/ephemeral"),
            Some(json!({"duration_seconds": 86400, "device_id": idle})),
        ),
        (
            "PATCH",
            format!("/communities/{ours}"),
            Some(json!({"join_approval": true, "device_id": idle})),
        ),
    ] {
        s.send(method, &path, body)
            .await
            .assert_error(409, "DEVICE_NOT_READY");
    }
}

#[tokio::test]
async fn join_requests_timers_and_community_settings() {
    let s = Setup::new("5511900000410").await;
    let ana = account(&s.sim, "5511900000411", false).await;
    let bia = account(&s.sim, "5511900000412", false).await;
    let caio = account(&s.sim, "5511900000413", false).await;
    let dani = account(&s.sim, "5511900000414", true).await;
    let control = s.sim.control();

    // Two accounts ask to join our group, which approves its members.
    let group = s
        .send(
            "POST",
            "/groups",
            Some(json!({"name": "Door", "options": {"join_approval": true}})),
        )
        .await;
    let group = group.assert_status(201)["group"]["jid"]
        .as_str()
        .expect("jid")
        .to_owned();
    control.request_join(&group, &ana.phone).await.expect("ask");
    control.request_join(&group, &bia.phone).await.expect("ask");
    let path = format!("/groups/{group}/requests");
    let listed = s.send("GET", &path, None).await;
    let listed = listed.assert_status(200).clone();
    assert_eq!(listed["count"], 2);
    let mut phones: Vec<&str> = listed["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|r| r["phone_number"].as_str().expect("phone"))
        .collect();
    phones.sort_unstable();
    assert_eq!(phones, vec![ana.phone.as_str(), bia.phone.as_str()]);
    let first = &listed["requests"][0];
    assert!(first["requested_at"].is_string());
    assert!(first["lid_jid"].as_str().expect("lid").ends_with("@lid"));

    // Approve one (and someone who never asked); reject the other by LID.
    let approved = s
        .send(
            "POST",
            &path,
            Some(json!({"participants": [ana.phone, caio.jid], "action": "approve"})),
        )
        .await;
    let approved = approved.assert_status(200).clone();
    assert_eq!(approved["action"], "approve");
    assert_eq!(statuses(&approved), vec!["ok", "no_request"]);
    assert_eq!(
        approved["participants"][0]["phone_number"],
        ana.phone.as_str()
    );
    assert_eq!(approved["participants"][1]["code"], 404);
    assert!(s.is_member(&group, &ana.phone).await);
    let rejected = s
        .send(
            "POST",
            &path,
            Some(json!({"participants": [bia.lid_jid], "action": "reject"})),
        )
        .await;
    assert_eq!(statuses(rejected.assert_status(200)), vec!["ok"]);
    let view = control.group(&group).await.expect("view");
    assert!(view.pending_requests.is_empty());
    assert!(view.participants.iter().all(|p| p.phone != bia.phone));
    let listed = s.send("GET", &path, None).await;
    assert_eq!(listed.assert_status(200)["count"], 0);
    let shown = s.send("GET", &format!("/groups/{group}"), None).await;
    let shown = shown.assert_status(200)["group"].clone();
    assert_eq!(shown["members_count"], 2);

    s.send(
        "POST",
        &path,
        Some(json!({"participants": [ana.phone], "action": "maybe"})),
    )
    .await
    .assert_validation("action");
    s.send(
        "POST",
        &path,
        Some(json!({"participants": [], "action": "approve"})),
    )
    .await
    .assert_validation("participants");
    s.send("POST", &path, Some(json!({"participants": [ana.phone]})))
        .await
        .assert_validation("action");

    // Not an admin of someone else's group.
    let theirs = s
        .foreign_group(&caio.phone, "Theirs", &[&s.owner.phone])
        .await;
    s.send("GET", &format!("/groups/{theirs}/requests"), None)
        .await
        .assert_error(403, "FORBIDDEN");
    s.send(
        "POST",
        &format!("/groups/{theirs}/requests"),
        Some(json!({"participants": [ana.phone], "action": "approve"})),
    )
    .await
    .assert_error(403, "FORBIDDEN");

    s.send("GET", "/groups/120363999999999999@g.us/requests", None)
        .await
        .assert_error(404, "NOT_FOUND");

    // The disappearing-message timer: stored in the group, shown in its metadata.
    let timer = format!("/groups/{group}/ephemeral");
    let set = s
        .send("PUT", &timer, Some(json!({"duration_seconds": 604800})))
        .await;
    assert_eq!(set.assert_status(200)["duration_seconds"], 604800);
    assert_eq!(control.group(&group).await.expect("view").ephemeral, 604800);
    let shown = s.send("GET", &format!("/groups/{group}"), None).await;
    assert_eq!(
        shown.assert_status(200)["group"]["ephemeral_seconds"],
        604800
    );
    let off = s
        .send("PUT", &timer, Some(json!({"duration_seconds": 0})))
        .await;
    assert_eq!(off.assert_status(200)["duration_seconds"], 0);
    assert_eq!(control.group(&group).await.expect("view").ephemeral, 0);
    for bad in [
        json!({"duration_seconds": 3600}),
        json!({"duration_seconds": -1}),
        json!({}),
    ] {
        s.send("PUT", &timer, Some(bad))
            .await
            .assert_validation("duration_seconds");
    }
    // A member changes the timer of an unlocked group; a locked one is for admins.
    let set = s
        .send(
            "PUT",
            &format!("/groups/{theirs}/ephemeral"),
            Some(json!({"duration_seconds": 86400})),
        )
        .await;
    set.assert_status(200);
    assert_eq!(control.group(&theirs).await.expect("view").ephemeral, 86400);
    s.act(&theirs, &caio.phone, "locked", &[]).await;
    s.send(
        "PUT",
        &format!("/groups/{theirs}/ephemeral"),
        Some(json!({"duration_seconds": 0})),
    )
    .await
    .assert_error(403, "FORBIDDEN");
    s.send(
        "PUT",
        "/groups/120363999999999999@g.us/ephemeral",
        Some(json!({"duration_seconds": 0})),
    )
    .await
    .assert_error(404, "NOT_FOUND");

    // An add refused by the member's privacy setting carries the private invite.
    let added = s
        .send(
            "POST",
            &format!("/groups/{group}/participants"),
            Some(json!({"participants": [dani.phone]})),
        )
        .await;
    let added = added.assert_status(200).clone();
    let refused = &added["participants"][0];
    assert_eq!(refused["status"], "not_authorized");
    assert_eq!(refused["code"], 403);
    assert_eq!(refused["phone_number"], dani.phone.as_str());
    let invite_code = refused["invite_code"].as_str().expect("invite code");
    assert_eq!(invite_code.len(), 16);
    let now = chrono::Utc::now().timestamp();
    let expiration = refused["invite_expiration"].as_i64().expect("expiration");
    assert!(expiration > now + 2 * 24 * 3600, "{expiration}");
    let view = control.group(&group).await.expect("view");
    assert_eq!(view.invited, vec![dani.phone.clone()]);
    assert!(view.participants.iter().all(|p| p.phone != dani.phone));

    // Community settings, and requests to join a community.
    let community = s
        .send("POST", "/communities", Some(json!({"name": "Block"})))
        .await;
    let community = community.assert_status(200)["community"].clone();
    assert_eq!(community["join_approval"], false);
    assert_eq!(community["members_can_add_groups"], false);
    let jid = community["jid"].as_str().expect("jid").to_owned();
    let patched = s
        .send(
            "PATCH",
            &format!("/communities/{jid}"),
            Some(json!({"members_can_add_groups": true, "join_approval": true})),
        )
        .await;
    let patched = patched.assert_status(200)["community"].clone();
    assert_eq!(patched["members_can_add_groups"], true);
    assert_eq!(patched["join_approval"], true);
    let view = control.group(&jid).await.expect("view");
    assert!(view.allow_sub_group_creation && view.join_approval);
    // A preview of a community's group names the community.
    let sub = s
        .send(
            "POST",
            "/groups",
            Some(json!({"name": "Yard", "options": {"parent_jid": jid}})),
        )
        .await;
    let sub = sub.assert_status(201)["group"]["jid"]
        .as_str()
        .expect("jid")
        .to_owned();
    let invite = s.send("GET", &format!("/groups/{sub}/invite"), None).await;
    let invite = invite.assert_status(200)["invite_link"]
        .as_str()
        .expect("link")
        .to_owned();
    let preview = s
        .send("GET", &format!("/groups/invite-info?link={invite}"), None)
        .await;
    let preview = preview.assert_status(200)["invite"].clone();
    assert_eq!(preview["name"], "Yard");
    assert_eq!(preview["community_jid"], jid.as_str());
    assert_eq!(preview["is_community"], false);
    let patched = s
        .send(
            "PATCH",
            &format!("/communities/{jid}"),
            Some(json!({"members_can_add_groups": false})),
        )
        .await;
    assert_eq!(
        patched.assert_status(200)["community"]["members_can_add_groups"],
        false
    );
    assert!(
        !control
            .group(&jid)
            .await
            .expect("view")
            .allow_sub_group_creation
    );
    s.send("PATCH", &format!("/communities/{jid}"), Some(json!({})))
        .await
        .assert_validation("body");
    s.send(
        "PATCH",
        &format!("/communities/{jid}"),
        Some(json!({"join_approval": "yes"})),
    )
    .await
    .assert_validation("join_approval");
    s.send(
        "PATCH",
        &format!("/communities/{group}"),
        Some(json!({"join_approval": true})),
    )
    .await
    .assert_error(404, "NOT_FOUND");

    // Someone else's community the device is a member of: its settings are for admins.
    let foreign = control
        .create_group(&CreateGroup {
            owner_phone: caio.phone.clone(),
            subject: "Caio's".to_owned(),
            participants: vec![s.owner.phone.clone()],
            community: true,
        })
        .await
        .expect("foreign community");
    s.send(
        "PATCH",
        &format!("/communities/{}", foreign.jid),
        Some(json!({"members_can_add_groups": true})),
    )
    .await
    .assert_error(403, "FORBIDDEN");
    assert!(
        !control
            .group(&foreign.jid)
            .await
            .expect("view")
            .allow_sub_group_creation
    );

    control.request_join(&jid, &caio.phone).await.expect("ask");
    let path = format!("/communities/{jid}/requests");
    let listed = s.send("GET", &path, None).await;
    let listed = listed.assert_status(200).clone();
    assert_eq!(listed["count"], 1);
    assert_eq!(listed["requests"][0]["phone_number"], caio.phone.as_str());
    let approved = s
        .send(
            "POST",
            &path,
            Some(json!({"participants": [caio.phone], "action": "approve"})),
        )
        .await;
    assert_eq!(statuses(approved.assert_status(200)), vec!["ok"]);
    assert!(s.is_member(&jid, &caio.phone).await);

    // WhatsApp failures.
    control
        .add_fault(&Fault::Error {
            xmlns: "w:g2".into(),
            code: 500,
        })
        .await
        .expect("fault");
    s.send("PUT", &timer, Some(json!({"duration_seconds": 86400})))
        .await
        .assert_error(502, "DEVICE_ERROR");
    s.send(
        "PATCH",
        &format!("/communities/{jid}"),
        Some(json!({"join_approval": false})),
    )
    .await
    .assert_error(502, "DEVICE_ERROR");
    s.send(
        "POST",
        &format!("/groups/{group}/requests"),
        Some(json!({"participants": [ana.phone], "action": "approve"})),
    )
    .await
    .assert_error(502, "DEVICE_ERROR");
    control.clear_faults().await.expect("clear");
    control
        .add_fault(&Fault::NoAnswer {
            xmlns: "w:g2".into(),
        })
        .await
        .expect("fault");
    s.send("GET", &format!("/groups/{group}/requests"), None)
        .await
        .assert_error(504, "WHATSAPP_TIMEOUT");
    s.send(
        "POST",
        &format!("/groups/{group}/requests"),
        Some(json!({"participants": [ana.phone], "action": "reject"})),
    )
    .await
    .assert_error(504, "WHATSAPP_TIMEOUT");
    control.clear_faults().await.expect("clear");
}
