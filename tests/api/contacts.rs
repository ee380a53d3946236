//! Contacts end to end through wa-sim: block and unblock with LID/PN resolution and the dhash,
//! the block list kept current by WhatsApp's notifications, resolve and check with batched
//! usync, and the failure modes.

use std::time::Duration;

use serde_json::{Value, json};
use wa_sim::{CreateAccount, CreatedAccount, Fault, WaSim};

use wuts_gateway::config::ServeArgs;

use crate::helpers::{Tenant, TestApp};

/// A gateway with one device paired to wa-sim's account `owner`.
struct Setup {
    sim: WaSim,
    app: TestApp,
    tenant: Tenant,
    device: String,
    owner: String,
}

impl Setup {
    async fn new(owner: &str) -> Self {
        Self::new_with(owner, |_| {}).await
    }

    async fn new_with(owner: &str, configure: impl FnOnce(&mut ServeArgs)) -> Self {
        let sim = WaSim::start().await.expect("wa-sim");
        new_account(&sim, owner, Some("Owner")).await;
        let app = TestApp::spawn_with_sim_and(&sim, configure).await;
        let tenant = app.register(&format!("t{owner}")).await;
        let device = app.create_device(&tenant.admin_token, "contacts").await;
        app.pair(&sim, &tenant.admin_token, &device, owner).await;
        Self {
            sim,
            app,
            tenant,
            device,
            owner: owner.to_owned(),
        }
    }

    fn token(&self) -> &str {
        &self.tenant.admin_token
    }

    async fn post(&self, path: &str, body: Value) -> crate::helpers::TestResponse {
        self.app
            .post(path)
            .token(self.token())
            .json(body)
            .send()
            .await
    }

    async fn blocklist(&self) -> Value {
        let answer = self
            .app
            .get("/contacts/blocklist")
            .token(self.token())
            .send()
            .await;
        answer.assert_status(200)["data"].clone()
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

async fn new_account(sim: &WaSim, phone: &str, name: Option<&str>) -> CreatedAccount {
    sim.control()
        .create_account(&CreateAccount {
            phone: phone.to_owned(),
            push_name: name.map(str::to_owned),
            ..Default::default()
        })
        .await
        .expect("account created")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_and_unblock_every_way_a_target_can_be_named() {
    let s = Setup::new("5511900002000").await;
    let one = new_account(&s.sim, "5511900002001", None).await;
    let two = new_account(&s.sim, "5511900002002", None).await;
    let three = new_account(&s.sim, "5511900002003", None).await;
    let four = new_account(&s.sim, "5511900002004", None).await;
    let empty = s.blocklist().await;
    assert_eq!(empty["count"], 0);

    // By number, in any spelling.
    let answer = s
        .post("/contacts/block", json!({"number": "+55 11 90000-2001"}))
        .await;
    let data = answer.assert_status(200)["data"].clone();
    assert_eq!(data["jid"], one.jid.as_str());
    assert_eq!(data["phone_number"], "5511900002001");
    assert_eq!(data["lid_jid"], one.lid_jid.as_str());
    assert_eq!(data["action"], "block");
    assert_eq!(data["blocked"], true);
    assert_eq!(data["count"], 1);
    assert_ne!(data["dhash"], empty["dhash"]);
    let phone_side = s.sim.control().account(&s.owner).await.expect("account");
    assert_eq!(phone_side.blocklist.items, vec![one.lid_jid.clone()]);
    assert_eq!(data["dhash"], phone_side.blocklist.dhash.as_str());

    // By PN JID (and the @c.us alias).
    let answer = s
        .post(
            "/contacts/block",
            json!({"jid": format!("{}@c.us", two.phone)}),
        )
        .await;
    assert_eq!(answer.assert_status(200)["data"]["count"], 2);

    // By LID JID: the number is learned from the store (resolve teaches it first).
    s.post("/contacts/resolve", json!({"jids": [three.phone]}))
        .await
        .assert_status(200);
    let answer = s
        .post("/contacts/block", json!({"jid": three.lid_jid}))
        .await;
    let data = answer.assert_status(200)["data"].clone();
    assert_eq!(data["phone_number"], three.phone.as_str());
    assert_eq!(data["count"], 3);

    // Through the query string, with no body at all.
    let answer = s
        .app
        .post(&format!("/contacts/block?number={}", four.phone))
        .token(s.token())
        .send()
        .await;
    let data = answer.assert_status(200)["data"].clone();
    assert_eq!(data["count"], 4);
    let dhash = data["dhash"].clone();

    // Blocking twice changes nothing.
    let again = s
        .post("/contacts/block", json!({"number": four.phone}))
        .await;
    let again = again.assert_status(200)["data"].clone();
    assert_eq!(
        (again["count"].clone(), again["dhash"].clone()),
        (json!(4), dhash)
    );
    assert_eq!(again["blocked"], true);

    // Unblock, twice.
    for _ in 0..2 {
        let answer = s
            .post("/contacts/unblock", json!({"number": one.phone}))
            .await;
        let data = answer.assert_status(200)["data"].clone();
        assert_eq!(data["blocked"], false);
        assert_eq!(data["action"], "unblock");
        assert_eq!(data["count"], 3);
    }
    let phone_side = s.sim.control().account(&s.owner).await.expect("account");
    assert!(!phone_side.blocklist.items.contains(&one.lid_jid));
    assert_eq!(phone_side.blocklist.items.len(), 3);

    // The snapshot agrees with WhatsApp.
    let list = s.blocklist().await;
    assert_eq!(list["count"], 3);
    assert_eq!(list["dhash"], phone_side.blocklist.dhash.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_targets_and_numbers_without_whatsapp() {
    let s = Setup::new("5511900002100").await;
    s.post("/contacts/block", json!({"number": "5511900002199"}))
        .await
        .assert_error(404, "NOT_ON_WHATSAPP");
    s.post("/contacts/block", json!({"jid": "abc"}))
        .await
        .assert_validation("jid");
    s.post("/contacts/block", json!({"number": "12"}))
        .await
        .assert_validation("number");
    s.post("/contacts/block", json!({"jid": "123@g.us"}))
        .await
        .assert_validation("jid");
    s.post("/contacts/block", json!({}))
        .await
        .assert_validation("jid");
    s.post(
        "/contacts/unblock",
        json!({"jid": "5511900002101@s.whatsapp.net", "number": "5511900002101"}),
    )
    .await
    .assert_validation("jid");
    s.app
        .post("/contacts/block?number=abc")
        .token(s.token())
        .send()
        .await
        .assert_validation("number");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_made_on_the_phone_shows_up_without_refresh() {
    let s = Setup::new("5511900002200").await;
    let known = new_account(&s.sim, "5511900002201", None).await;
    let unknown = new_account(&s.sim, "5511900002202", None).await;
    // The device learns one of the two numbers.
    s.post("/contacts/resolve", json!({"jids": [known.phone]}))
        .await
        .assert_status(200);
    let before = s.blocklist().await;

    s.sim
        .control()
        .change_blocklist(&s.owner, "block", &known.jid)
        .await
        .expect("phone blocks");
    s.sim
        .control()
        .change_blocklist(&s.owner, "block", &unknown.jid)
        .await
        .expect("phone blocks");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let list = loop {
        let list = s.blocklist().await;
        if list["count"] == 2 {
            break list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "notification not applied: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(list["dhash"], before["dhash"]);
    let phone_side = s.sim.control().account(&s.owner).await.expect("account");
    assert_eq!(list["dhash"], phone_side.blocklist.dhash.as_str());
    // Each entry shows its phone number: WhatsApp's list names the number and the LID of
    // every entry, so a contact the device never saw reads as well as a known one.
    let items = list["items"].as_array().expect("items");
    assert_eq!(items[0]["jid"], known.jid.as_str());
    assert_eq!(items[0]["phone_number"], known.phone.as_str());
    assert_eq!(items[0]["lid_jid"], known.lid_jid.as_str());
    assert_eq!(items[1]["jid"], unknown.jid.as_str());
    assert_eq!(items[1]["phone_number"], unknown.phone.as_str());
    assert_eq!(items[1]["lid_jid"], unknown.lid_jid.as_str());

    // A refresh reads the same list from WhatsApp.
    let refreshed = s
        .app
        .get("/contacts/blocklist?refresh=true")
        .token(s.token())
        .send()
        .await;
    assert_eq!(refreshed.assert_status(200)["data"]["dhash"], list["dhash"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolving_160_unknown_numbers_costs_one_usync_then_none() {
    let s = Setup::new("5511900002300").await;
    let mut phones = Vec::new();
    for n in 0..160 {
        let account = new_account(&s.sim, &format!("55119{n:08}"), None).await;
        phones.push(account.phone);
    }
    s.sim.control().reset_stats().await.expect("reset");
    let answer = s.post("/contacts/resolve", json!({"jids": phones})).await;
    let body = answer.assert_status(200).clone();
    assert_eq!(body["count"], 160);
    assert_eq!(body["unresolved"].as_array().map(Vec::len), Some(0));
    assert_eq!(
        s.usync_count().await,
        1,
        "one batched usync for 160 unknown numbers"
    );
    let first = &body["items"][0];
    assert_eq!(first["input"], phones[0].as_str());
    assert_eq!(first["jid"], format!("{}@s.whatsapp.net", phones[0]));
    assert!(
        first["lid_jid"]
            .as_str()
            .is_some_and(|l| l.ends_with("@lid"))
    );

    let again = s.post("/contacts/resolve", json!({"jids": phones})).await;
    assert_eq!(again.assert_status(200)["count"], 160);
    assert_eq!(
        s.usync_count().await,
        1,
        "the second time is served from the store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_reports_what_it_cannot_resolve() {
    let s = Setup::new("5511900002400").await;
    let known = new_account(&s.sim, "5511900002401", None).await;
    s.sim.control().reset_stats().await.expect("reset");
    let inputs = json!([
        known.phone,
        format!("{}@s.whatsapp.net", known.phone),
        "+55 11 90000-2401",
        "5511900002499",
        "112233445566@lid",
        "not a number",
        "123@g.us",
    ]);
    let answer = s.post("/contacts/resolve", json!({"jids": inputs})).await;
    let body = answer.assert_status(200).clone();
    assert_eq!(body["count"], 3, "{body}");
    for item in body["items"].as_array().expect("items") {
        assert_eq!(item["phone_number"], known.phone.as_str());
        assert_eq!(item["lid_jid"], known.lid_jid.as_str());
    }
    let reasons: Vec<(String, String)> = body["unresolved"]
        .as_array()
        .expect("unresolved")
        .iter()
        .map(|u| {
            (
                u["input"].as_str().unwrap_or("").to_owned(),
                u["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("5511900002499".to_owned(), "not_on_whatsapp".to_owned()),
            ("112233445566@lid".to_owned(), "unknown_lid".to_owned()),
            ("not a number".to_owned(), "invalid_identifier".to_owned()),
            ("123@g.us".to_owned(), "invalid_identifier".to_owned()),
        ]
    );
    // Duplicates cost nothing extra: one usync for the two distinct numbers.
    assert_eq!(s.usync_count().await, 1);

    let too_many: Vec<String> = (0..161).map(|n| format!("55119{n:08}")).collect();
    s.post("/contacts/resolve", json!({"jids": too_many}))
        .await
        .assert_validation("jids");
    s.post("/contacts/resolve", json!({"jids": []}))
        .await
        .assert_validation("jids");
    s.post(
        "/contacts/resolve",
        json!({"jids": ["5511900002401"], "group_jid": "nope"}),
    )
    .await
    .assert_validation("group_jid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_answers_by_normalized_number_in_one_query() {
    let s = Setup::new("5511900002500").await;
    new_account(&s.sim, "5511900002501", None).await;
    s.sim.control().reset_stats().await.expect("reset");
    let answer = s
        .post(
            "/contact/check",
            json!({"numbers": ["+55 (11) 90000-2501", "5511900002502"]}),
        )
        .await;
    let data = answer.assert_status(200)["data"].clone();
    assert_eq!(data, json!({"5511900002501": true, "5511900002502": false}));
    assert_eq!(s.usync_count().await, 1);
    s.post("/contact/check", json!({"numbers": ["5511900002501", "x"]}))
        .await
        .assert_validation("numbers[1]");
    s.post("/contact/check", json!({"numbers": []}))
        .await
        .assert_validation("numbers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_are_paced_per_device_then_refused() {
    // Two lookups at once, then one every half second, two waiting at most.
    let s = Setup::new_with("5511900002550", |config| {
        config.whatsapp.device_wa_rps = 2.0;
        config.whatsapp.device_wa_burst = 2;
        config.whatsapp.device_wa_queue = 2;
    })
    .await;
    s.sim.control().reset_stats().await.expect("reset");
    let started = std::time::Instant::now();
    let calls = (0..6).map(|i| {
        let s = &s;
        async move {
            let answer = s
                .post(
                    "/contact/check",
                    json!({"numbers": [format!("55119000026{i:02}")]}),
                )
                .await;
            (answer, started.elapsed())
        }
    });
    let answers = futures::future::join_all(calls).await;
    let mut done: Vec<Duration> = Vec::new();
    let mut refused: Vec<Duration> = Vec::new();
    for (answer, elapsed) in &answers {
        match answer.status.as_u16() {
            200 => done.push(*elapsed),
            429 => {
                answer.assert_error(429, "RATE_LIMITED");
                assert!(answer.headers.contains_key("retry-after"));
                refused.push(*elapsed);
            }
            other => panic!("unexpected {other}: {}", answer.text),
        }
    }
    assert_eq!((done.len(), refused.len()), (4, 2), "{answers:?}");
    done.sort();
    // The two beyond the burst waited their turn: about 0.5 s and 1 s.
    assert!(done[2] >= Duration::from_millis(450), "{done:?}");
    assert!(done[3] >= Duration::from_millis(950), "{done:?}");
    // The refused were answered at once, before any queued call had its turn.
    assert!(refused.iter().all(|r| *r < done[2]), "{refused:?} {done:?}");
    // Only what was let through reached WhatsApp.
    assert_eq!(s.usync_count().await, 4);
    // Reads and blocks of known contacts are not paced.
    s.app
        .get("/contacts/blocklist")
        .token(s.token())
        .send()
        .await
        .assert_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_show_status_devices_and_business() {
    let s = Setup::new("5511900002600").await;
    s.sim
        .control()
        .create_account(&CreateAccount {
            phone: "5511900002601".into(),
            business_name: Some("Padaria Central".into()),
            status: Some("Open 7-19".into()),
            ..Default::default()
        })
        .await
        .expect("account");
    let answer = s
        .app
        .get("/contacts/profile?number=5511900002601")
        .token(s.token())
        .send()
        .await;
    let data = answer.assert_status(200)["data"].clone();
    assert_eq!(data["jid"], "5511900002601@s.whatsapp.net");
    assert_eq!(data["user_info"]["Status"], "Open 7-19");
    assert_eq!(data["user_info"]["VerifiedName"], "Padaria Central");
    assert_eq!(
        data["user_info"]["Devices"],
        json!(["5511900002601@s.whatsapp.net"])
    );
    s.app
        .get("/contacts/profile?number=5511900002699")
        .token(s.token())
        .send()
        .await
        .assert_error(404, "NOT_ON_WHATSAPP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_is_not_connected_answers_409_at_once() {
    let sim = WaSim::start().await.expect("wa-sim");
    let app = TestApp::spawn_with_sim(&sim).await;
    let tenant = app.register("idle").await;
    let device = app.create_device(&tenant.admin_token, "idle").await;
    let token = &tenant.admin_token;
    let started = std::time::Instant::now();
    for (method, path, body) in [
        (
            "GET",
            format!("/contacts/blocklist?device_id={device}"),
            None,
        ),
        ("GET", "/contacts".to_owned(), None),
        (
            "GET",
            "/contacts/profile?number=5511900002701".to_owned(),
            None,
        ),
        (
            "POST",
            "/contacts/block".to_owned(),
            Some(json!({"number": "5511900002701"})),
        ),
        (
            "POST",
            "/contacts/unblock".to_owned(),
            Some(json!({"number": "5511900002701"})),
        ),
        (
            "POST",
            "/contacts/resolve".to_owned(),
            Some(json!({"jids": ["5511900002701"]})),
        ),
        (
            "POST",
            "/contact/check".to_owned(),
            Some(json!({"numbers": ["5511900002701"]})),
        ),
    ] {
        let method = axum::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut call = app.call(method, &path).token(token);
        if let Some(body) = body {
            call = call.json(body);
        }
        call.send().await.assert_error(409, "DEVICE_NOT_READY");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_delays_and_errors_become_504_and_502() {
    let s = Setup::new("5511900002800").await;
    new_account(&s.sim, "5511900002801", None).await;
    s.sim
        .control()
        .add_fault(&Fault::Delay {
            ms: 6_000,
            xmlns: Some("usync".into()),
        })
        .await
        .expect("fault");
    let started = std::time::Instant::now();
    s.post("/contact/check", json!({"numbers": ["5511900002801"]}))
        .await
        .assert_error(504, "WHATSAPP_TIMEOUT");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    s.sim.control().clear_faults().await.expect("clear");

    s.sim
        .control()
        .add_fault(&Fault::Error {
            xmlns: "blocklist".into(),
            code: 403,
        })
        .await
        .expect("fault");
    let failed = s
        .post("/contacts/block", json!({"number": "5511900002801"}))
        .await;
    failed.assert_error(502, "DEVICE_ERROR");
    assert!(
        failed.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("403")),
        "{}",
        failed.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_cannot_use_the_device() {
    let s = Setup::new("5511900002900").await;
    let other = s.app.register("intruder").await;
    let answer = s
        .app
        .get(&format!("/contacts/blocklist?device_id={}", s.device))
        .token(&other.admin_token)
        .send()
        .await;
    answer.assert_error(404, "NOT_FOUND");
    let answer = s
        .app
        .post("/contacts/block")
        .token(&other.admin_token)
        .json(json!({"number": "5511900002901", "device_id": s.device}))
        .send()
        .await;
    answer.assert_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn names_appear_after_messages_carry_push_names() {
    let s = Setup::new("5511900000450").await;
    let dora = new_account(&s.sim, "5511900000451", Some("Dora D")).await;
    s.sim
        .control()
        .send_message(&s.owner, &dora.phone)
        .await
        .expect("message delivered");

    // The LID resolves through what the message taught, with its push name; no usync.
    let before = s.usync_count().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let item = loop {
        let answer = s
            .post("/contacts/resolve", json!({"jids": [dora.lid_jid]}))
            .await;
        let answer = answer.assert_status(200).clone();
        if answer["items"][0]["push_name"] == "Dora D" {
            break answer["items"][0].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the push name never arrived: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(item["phone_number"], dora.phone);
    assert_eq!(item["lid_jid"], dora.lid_jid);
    assert_eq!(s.usync_count().await, before);

    let named = s.app.get("/contacts").token(s.token()).send().await;
    let named = named.assert_status(200).clone();
    assert!(
        named.to_string().contains("Dora D"),
        "GET /contacts lists the pushed name: {named}"
    );
}
