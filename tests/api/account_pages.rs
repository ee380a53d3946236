//! The account's pages end to end through wa-sim: profile pictures (a contact's, a group's, the
//! own one), privacy settings, an app-state sync that teaches the address book's names and
//! LIDs, and WhatsApp's reach-out time-lock (its 463 answered `429` with `Retry-After`, shown
//! in `/status`); each with its failures mapped to the catalogue.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use wa_sim::{AddContact, CreateAccount, CreateGroup, CreatedAccount, Fault, GroupAction, WaSim};

use crate::helpers::{Tenant, TestApp, TestResponse};

struct Setup {
    sim: WaSim,
    app: TestApp,
    tenant: Tenant,
    device: String,
    owner: CreatedAccount,
}

impl Setup {
    async fn new(owner: &str) -> Self {
        let sim = WaSim::start().await.expect("wa-sim");
        let owner = account(&sim, owner).await;
        let app = TestApp::spawn_with_sim(&sim).await;
        let tenant = app.register(&format!("a{}", owner.phone)).await;
        let device = app.create_device(&tenant.admin_token, "account").await;
        app.pair(&sim, &tenant.admin_token, &device, &owner.phone)
            .await;
        Self {
            sim,
            app,
            tenant,
            device,
            owner,
        }
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> TestResponse {
        self.app
            .send_as(&self.tenant.admin_token, method, path, body)
            .await
    }

    async fn fault(&self, fault: Fault) {
        self.sim.control().add_fault(&fault).await.expect("fault");
    }

    async fn clear_faults(&self) {
        self.sim.control().clear_faults().await.expect("clear");
    }

    /// An error answer, then a silence, from WhatsApp on `xmlns` while `call` runs.
    async fn assert_whatsapp_failures(
        &self,
        xmlns: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) {
        self.fault(Fault::Error {
            xmlns: xmlns.into(),
            code: 500,
        })
        .await;
        self.send(method, path, body.clone())
            .await
            .assert_error(502, "DEVICE_ERROR");
        self.clear_faults().await;
        self.fault(Fault::NoAnswer {
            xmlns: xmlns.into(),
        })
        .await;
        self.send(method, path, body)
            .await
            .assert_error(504, "WHATSAPP_TIMEOUT");
        self.clear_faults().await;
    }
}

async fn account(sim: &WaSim, phone: &str) -> CreatedAccount {
    sim.control()
        .create_account(&CreateAccount {
            phone: phone.to_owned(),
            push_name: Some(format!("User {phone}")),
            ..Default::default()
        })
        .await
        .expect("account")
}

/// A small JPEG (SOI, APP0, a comment carrying `seed`, EOI), base64.
fn jpeg(seed: u8) -> String {
    let mut image = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00, 0x00,
        0x01, 0x00, 0x01, 0x00, 0x00, 0xFF, 0xFE, 0x00, 0x03, seed,
    ];
    image.extend_from_slice(&[0xFF, 0xD9]);
    base64::engine::general_purpose::STANDARD.encode(image)
}

#[tokio::test]
async fn pictures_and_privacy_end_to_end() {
    let s = Setup::new("5511900000700").await;
    let control = s.sim.control();
    let alice = account(&s.sim, "5511900000701").await;
    let bob = account(&s.sim, "5511900000702").await;
    let carol = account(&s.sim, "5511900000703").await;

    // A contact's picture, set on her phone: full, preview, and unchanged for its own id.
    let set = control
        .set_picture(&alice.phone, &Default::default())
        .await
        .expect("Alice's picture");
    let path = format!("/contacts/profile-picture?number={}", alice.phone);
    let full = s.send("GET", &path, None).await;
    let full = full.assert_status(200)["data"].clone();
    assert_eq!(full["id"], set.id.as_str());
    assert_eq!(full["jid"], alice.jid.as_str());
    assert_eq!(full["type"], "image");
    assert!(full["url"].as_str().expect("url").starts_with("https://"));
    assert!(
        full["direct_path"]
            .as_str()
            .expect("direct_path")
            .starts_with("/v/")
    );
    let preview = s.send("GET", &format!("{path}&preview=true"), None).await;
    assert_eq!(preview.assert_status(200)["data"]["type"], "preview");
    let unchanged = s
        .send("GET", &format!("{path}&existing_id={}", set.id), None)
        .await;
    assert_eq!(
        unchanged.assert_status(200)["data"],
        json!({"jid": alice.jid, "id": set.id, "unchanged": true, "url": null})
    );
    let by_lid = s
        .send(
            "GET",
            &format!("/contacts/profile-picture?jid={}", alice.lid_jid),
            None,
        )
        .await;
    assert_eq!(by_lid.assert_status(200)["data"]["id"], set.id.as_str());
    // No picture.
    s.send(
        "GET",
        &format!("/contacts/profile-picture?number={}", bob.phone),
        None,
    )
    .await
    .assert_error(404, "NOT_FOUND");

    // A group's picture: set by its admin (the device), read back, removed.
    let created = s
        .send(
            "POST",
            "/groups",
            Some(json!({"name": "Pictured", "participants": [alice.phone]})),
        )
        .await;
    let group = created.assert_status(201)["group"]["jid"]
        .as_str()
        .expect("jid")
        .to_owned();
    let picture_path = format!("/groups/{group}/picture");
    let set_group = s
        .send(
            "POST",
            &picture_path,
            Some(json!({"image_base64": jpeg(1)})),
        )
        .await;
    let picture_id = set_group.assert_status(200)["picture_id"]
        .as_str()
        .expect("picture_id")
        .to_owned();
    assert_eq!(
        control.picture(&group).await.expect("in wa-sim").id,
        picture_id
    );
    let read = s
        .send(
            "GET",
            &format!("/contacts/profile-picture?jid={group}"),
            None,
        )
        .await;
    assert_eq!(read.assert_status(200)["data"]["id"], picture_id.as_str());
    // A data: URI is accepted too; each set is a new picture.
    let again = s
        .send(
            "POST",
            &picture_path,
            Some(json!({"image_base64": format!("data:image/jpeg;base64,{}", jpeg(2))})),
        )
        .await;
    assert_ne!(again.assert_status(200)["picture_id"], picture_id.as_str());
    // Bad input names the field.
    s.send(
        "POST",
        &picture_path,
        Some(json!({"image_base64": "iVBORw0KGgo="})),
    )
    .await
    .assert_validation("image_base64");
    s.send(
        "POST",
        &picture_path,
        Some(json!({"image_base64": "not base64!"})),
    )
    .await
    .assert_validation("image_base64");
    s.send("POST", &picture_path, Some(json!({})))
        .await
        .assert_validation("image_base64");
    s.send("GET", "/contacts/profile-picture", None)
        .await
        .assert_validation("jid");
    s.send("GET", "/contacts/profile-picture?number=12", None)
        .await
        .assert_validation("number");
    s.send("GET", &format!("{path}&existing_id=a-b"), None)
        .await
        .assert_validation("existing_id");
    s.send("DELETE", &picture_path, None)
        .await
        .assert_status(200);
    assert_eq!(
        control.picture(&group).await.map_err(|e| e.status).err(),
        Some(404)
    );
    s.send(
        "GET",
        &format!("/contacts/profile-picture?jid={group}"),
        None,
    )
    .await
    .assert_error(404, "NOT_FOUND");

    // Someone else's group whose info only admins change: not an admin there.
    let foreign = control
        .create_group(&CreateGroup {
            owner_phone: carol.phone.clone(),
            subject: "Carol's".to_owned(),
            participants: vec![s.owner.phone.clone()],
            community: false,
        })
        .await
        .expect("foreign group");
    control
        .group_action(
            &foreign.jid,
            &GroupAction {
                actor_phone: carol.phone.clone(),
                action: "locked".to_owned(),
                participants: Vec::new(),
                subject: None,
                description: None,
                groups: Vec::new(),
            },
        )
        .await
        .expect("locked");
    s.send(
        "POST",
        &format!("/groups/{}/picture", foreign.jid),
        Some(json!({"image_base64": jpeg(3)})),
    )
    .await
    .assert_error(403, "FORBIDDEN");
    s.send(
        "POST",
        "/groups/120363999999999999@g.us/picture",
        Some(json!({"image_base64": jpeg(3)})),
    )
    .await
    .assert_error(404, "NOT_FOUND");

    // The account's own picture.
    let own = s
        .send(
            "POST",
            "/profile/picture",
            Some(json!({"image_base64": jpeg(4)})),
        )
        .await;
    let own_id = own.assert_status(200)["picture_id"]
        .as_str()
        .expect("picture_id")
        .to_owned();
    assert_eq!(control.picture(&s.owner.jid).await.expect("own").id, own_id);

    s.assert_whatsapp_failures("w:profile:picture", "GET", &path, None)
        .await;
    s.assert_whatsapp_failures(
        "w:profile:picture",
        "POST",
        "/profile/picture",
        Some(json!({"image_base64": jpeg(5)})),
    )
    .await;

    // Privacy: WhatsApp's defaults, then changes, read back from WhatsApp's side.
    let settings = s.send("GET", "/privacy", None).await;
    let settings = settings.assert_status(200)["data"].clone();
    for key in [
        "GroupAdd",
        "LastSeen",
        "Status",
        "Profile",
        "ReadReceipts",
        "CallAdd",
        "Online",
        "Messages",
        "Defense",
        "Stickers",
    ] {
        assert!(settings[key].is_string(), "{key} in {settings}");
    }
    assert_eq!(settings["LastSeen"], "all");
    let changed = s
        .send(
            "PATCH",
            "/privacy",
            Some(json!({"LastSeen": "contacts", "Online": "match_last_seen", "Profile": "none"})),
        )
        .await;
    let changed = changed.assert_status(200)["data"].clone();
    assert_eq!(changed["LastSeen"], "contacts");
    assert_eq!(changed["Online"], "match_last_seen");
    assert_eq!(changed["Profile"], "none");
    let in_sim = control.privacy(&s.owner.phone).await.expect("privacy");
    assert_eq!(in_sim["last"], "contacts");
    assert_eq!(in_sim["profile"], "none");
    s.send("PATCH", "/privacy", Some(json!({"Online": "contacts"})))
        .await
        .assert_validation("Online");
    s.send("PATCH", "/privacy", Some(json!({"Nickname": "all"})))
        .await
        .assert_validation("Nickname");
    s.send("PATCH", "/privacy", Some(json!({"LastSeen": 3})))
        .await
        .assert_validation("LastSeen");
    s.send("PATCH", "/privacy", Some(json!({})))
        .await
        .assert_validation("body");
    s.assert_whatsapp_failures("privacy", "GET", "/privacy", None)
        .await;
    s.assert_whatsapp_failures(
        "privacy",
        "PATCH",
        "/privacy",
        Some(json!({"ReadReceipts": "none"})),
    )
    .await;

    // Without a connection every one of them is DEVICE_NOT_READY at once.
    s.send("POST", &format!("/disconnect?device_id={}", s.device), None)
        .await
        .assert_status(200);
    s.send("GET", "/privacy", None)
        .await
        .assert_error(409, "DEVICE_NOT_READY");
    s.send("GET", &path, None)
        .await
        .assert_error(409, "DEVICE_NOT_READY");
    s.send(
        "POST",
        &picture_path,
        Some(json!({"image_base64": jpeg(6)})),
    )
    .await
    .assert_error(409, "DEVICE_NOT_READY");
    s.send("POST", "/appstate/sync", Some(json!({})))
        .await
        .assert_error(409, "DEVICE_NOT_READY");
}

/// `GET /contacts` until it lists `jid` with a full name and its LID (the name and the pair are
/// stored one after the other).
async fn wait_for_named(s: &Setup, jid: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let listed = s.send("GET", "/contacts", None).await;
        let listed = listed.assert_status(200).clone();
        if let Some(found) = listed["contacts"]
            .as_array()
            .expect("contacts")
            .iter()
            .find(|c| c["jid"] == jid && c["full_name"].is_string() && c["lid_jid"].is_string())
        {
            return found.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{jid} never listed with a name: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn app_state_sync_and_reachout_timelock() {
    let s = Setup::new("5511900000710").await;
    let control = s.sim.control();
    let alice = account(&s.sim, "5511900000711").await;

    // A contact saved on the phone reaches the device with its name and LID after a sync.
    let added = control
        .add_contact(
            &s.owner.phone,
            &AddContact {
                phone: alice.phone.clone(),
                full_name: Some("Alice Lima".to_owned()),
                first_name: Some("Alice".to_owned()),
                lid_jid: None,
            },
        )
        .await
        .expect("contact saved");
    let before = control.stats().await.expect("stats");
    let synced = s
        .send(
            "POST",
            "/appstate/sync",
            Some(json!({"scopes": ["contacts"]})),
        )
        .await;
    let synced = synced.assert_status(200).clone();
    assert_eq!(synced["scopes"], json!(["contacts"]));
    assert_eq!(synced["full_sync"], false);
    assert_eq!(
        synced["collections"],
        json!([{"name": "critical_unblock_low", "version": added.version}])
    );
    let after = control.stats().await.expect("stats");
    assert!(
        after.iq_count("w:sync:app:state", "set") > before.iq_count("w:sync:app:state", "set"),
        "the sync reached WhatsApp"
    );
    let listed = wait_for_named(&s, &alice.jid).await;
    assert_eq!(listed["full_name"], "Alice Lima");
    assert_eq!(listed["first_name"], "Alice");
    assert_eq!(listed["lid_jid"], alice.lid_jid.as_str());
    // The LID/phone pair is learned: the LID resolves without asking WhatsApp.
    let usync_before = control
        .stats()
        .await
        .expect("stats")
        .iq_count("usync", "get");
    let resolved = s
        .send(
            "POST",
            "/contacts/resolve",
            Some(json!({"jids": [alice.lid_jid]})),
        )
        .await;
    let resolved = resolved.assert_status(200).clone();
    assert_eq!(resolved["items"][0]["phone_number"], alice.phone.as_str());
    assert_eq!(resolved["items"][0]["full_name"], "Alice Lima");
    assert_eq!(
        control
            .stats()
            .await
            .expect("stats")
            .iq_count("usync", "get"),
        usync_before
    );
    // Nothing new: the same versions, all scopes by default.
    let all = s.send("POST", "/appstate/sync", Some(json!({}))).await;
    let all = all.assert_status(200).clone();
    assert_eq!(all["scopes"].as_array().map(Vec::len), Some(5));
    s.send(
        "POST",
        "/appstate/sync",
        Some(json!({"scopes": ["contacts", "inbox"]})),
    )
    .await
    .assert_validation("scopes[1]");
    s.send("POST", "/appstate/sync", Some(json!({"scopes": []})))
        .await
        .assert_validation("scopes");
    s.assert_whatsapp_failures(
        "w:sync:app:state",
        "POST",
        "/appstate/sync",
        Some(json!({"scopes": ["contacts"]})),
    )
    .await;

    // The reach-out time-lock: shown in /status, a 463 is RATE_LIMITED until it ends.
    let status = s
        .send("GET", &format!("/status?device_id={}", s.device), None)
        .await;
    assert_eq!(
        status.assert_status(200)["data"]["reachout_timelock"],
        json!({"active": false})
    );
    let group = s
        .send("POST", "/groups", Some(json!({"name": "Reach"})))
        .await;
    let group = group.assert_status(201)["group"]["jid"]
        .as_str()
        .expect("jid")
        .to_owned();
    let locked = control
        .set_reachout_timelock(&s.owner.phone, 3600)
        .await
        .expect("locked");
    assert!(locked.active);
    s.fault(Fault::Error {
        xmlns: "w:g2".into(),
        code: 463,
    })
    .await;
    let refused = s
        .send(
            "POST",
            &format!("/groups/{group}/participants"),
            Some(json!({"participants": [alice.phone]})),
        )
        .await;
    refused.assert_error(429, "RATE_LIMITED");
    let retry: u64 = refused.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((3500..=3600).contains(&retry), "Retry-After {retry}");
    // Creating a group or a community with a stranger in it meets the same lock.
    for path in ["/groups", "/communities"] {
        s.send(
            "POST",
            path,
            Some(json!({"name": "Strangers", "participants": [alice.phone]})),
        )
        .await
        .assert_error(429, "RATE_LIMITED");
    }
    s.clear_faults().await;
    let status = s
        .send("GET", &format!("/status?device_id={}", s.device), None)
        .await;
    let lock = status.assert_status(200)["data"]["reachout_timelock"].clone();
    assert_eq!(lock["active"], true);
    let until = chrono::DateTime::parse_from_rfc3339(lock["until"].as_str().expect("until"))
        .expect("RFC 3339");
    let until_secs = u64::try_from(until.timestamp()).expect("after the epoch");
    assert_eq!(Some(until_secs), locked.until);
}
