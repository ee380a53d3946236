//! Events and webhooks end to end: the outbox in PostgreSQL, deliveries to a real receiver on
//! loopback (signatures checked with an independent Standard Webhooks implementation), retries,
//! order, replay, SSRF refusals, and the events WhatsApp's changes cause through wa-sim.

use std::time::Duration;

use serde_json::{Value, json};
use wa_sim::{CreateAccount, WaSim};

use crate::helpers::{Tenant, TestApp};
use crate::receiver::{Receiver, Reply};

/// Appends an event to a device's stream through the outbox function itself (what every
/// source calls), for the tests of delivery mechanics.
async fn append(app: &TestApp, tenant: &Tenant, device: &str, n: i64) {
    sqlx::query(
        "SELECT wuts_append_event($1::uuid, $2::uuid, gen_random_uuid(), 'webhook.test', \
         jsonb_build_object('n', $3::bigint))",
    )
    .bind(&tenant.id)
    .bind(device)
    .bind(n)
    .execute(&app.db.pool)
    .await
    .expect("event appended");
}

async fn configure(app: &TestApp, token: &str, device: &str, body: Value) -> Value {
    let mut body = body;
    body["device_id"] = json!(device);
    app.post("/webhook")
        .token(token)
        .json(body)
        .send()
        .await
        .assert_status(200)
        .clone()
}

/// The device's webhook as `GET /webhook` answers it.
async fn shown_webhook(app: &TestApp, token: &str, device: &str) -> Value {
    let shown = app
        .get(&format!("/webhook?device_id={device}"))
        .token(token)
        .send()
        .await;
    shown.assert_status(200)["webhook"].clone()
}

fn verify(secret: &str, received: &crate::receiver::Received) -> bool {
    standardwebhooks::Webhook::new(secret)
        .expect("secret")
        .verify(&received.body, &received.headers)
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_configured_shown_replaced_and_deleted() {
    let app = TestApp::spawn().await;
    let tenant = app.register("hooks").await;
    let token = &tenant.admin_token;
    let device = app.create_device(token, "d").await;

    let catalogue = app.get("/webhook/events").token(token).send().await;
    let names: Vec<&str> = catalogue.assert_status(200)["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["name"].as_str().expect("name"))
        .collect();
    for name in [
        "device.connected",
        "privacy.blocklist",
        "group.info",
        "contact.lid",
    ] {
        assert!(names.contains(&name), "{name} in the catalogue");
    }

    app.get(&format!("/webhook?device_id={device}"))
        .token(token)
        .send()
        .await
        .assert_error(404, "NOT_FOUND");

    let created = configure(
        &app,
        token,
        &device,
        json!({"webhook_url": "http://127.0.0.1:9/hook", "enabled_events": ["*"],
               "headers": {"x-tenant": "acme"}}),
    )
    .await;
    let webhook = &created["webhook"];
    let secret = webhook["secret"]
        .as_str()
        .expect("a generated secret, shown once");
    assert!(secret.starts_with("whsec_"));
    assert_eq!(webhook["retry_attempts"], 10);
    assert_eq!(webhook["timeout"], 15);
    assert_eq!(webhook["enabled"], true);
    assert!(webhook["id"].as_str().expect("id").starts_with("wh_"));

    let shown = &shown_webhook(&app, token, &device).await;
    assert!(
        shown.get("secret").is_none(),
        "the secret is never shown again"
    );
    assert_eq!(shown["headers"]["x-tenant"], "acme");
    assert_eq!(shown["id"], webhook["id"]);

    // A chosen secret is not echoed; the webhook keeps its id.
    let chosen = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let replaced = configure(
        &app,
        token,
        &device,
        json!({"webhook_url": "http://127.0.0.1:9/other", "enabled_events": ["privacy.blocklist"],
               "secret": chosen, "retry_attempts": 0, "timeout": 2}),
    )
    .await;
    assert!(replaced["webhook"].get("secret").is_none());
    assert_eq!(replaced["webhook"]["id"], webhook["id"]);
    assert_eq!(
        replaced["webhook"]["enabled_events"],
        json!(["privacy.blocklist"])
    );
    // Stored sealed or not, never as the plain text.
    let stored: Vec<u8> = sqlx::query_scalar("SELECT secret FROM webhooks")
        .fetch_one(&app.db.pool)
        .await
        .expect("row");
    assert!(!stored.is_empty());

    // Every bad field is named.
    let refused = app
        .post("/webhook")
        .token(token)
        .json(
            json!({"device_id": device, "webhook_url": "ftp://example.com/",
                     "enabled_events": ["device.connected", "nope"], "retry_attempts": 16,
                     "timeout": 0, "secret": "abc",
                     "headers": {"webhook-signature": "forged", "content-type": "text/plain"}}),
        )
        .send()
        .await;
    refused.assert_error(400, "VALIDATION_ERROR");
    let fields: Vec<&str> = refused.body["validation"]
        .as_array()
        .expect("validation")
        .iter()
        .map(|v| v["field"].as_str().expect("field"))
        .collect();
    for field in [
        "webhook_url",
        "enabled_events[1]",
        "retry_attempts",
        "timeout",
        "secret",
        "headers.webhook-signature",
        "headers.content-type",
    ] {
        assert!(fields.contains(&field), "{field} named in {fields:?}");
    }
    assert!(!refused.text.contains("abc\""), "a secret is not echoed");
    app.post("/webhook")
        .token(token)
        .json(json!({"device_id": device, "webhook_url": "http://127.0.0.1:9/", "enabled_events": []}))
        .send()
        .await
        .assert_error(400, "VALIDATION_ERROR");

    let deleted = app
        .delete(&format!("/webhook?device_id={device}"))
        .token(token)
        .send()
        .await;
    assert_eq!(
        deleted.assert_status(200)["message"],
        "Webhook configuration deleted successfully"
    );
    app.delete(&format!("/webhook?device_id={device}"))
        .token(token)
        .send()
        .await
        .assert_error(404, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_may_not_reach_private_addresses_unless_allowed() {
    let app = TestApp::spawn_with(|c| c.events.webhook_allow_private = false).await;
    let tenant = app.register("ssrf").await;
    let token = &tenant.admin_token;
    let device = app.create_device(token, "d").await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://[::1]/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/",
        "http://localhost:9/hook",
        "http://[::ffff:127.0.0.1]/",
    ] {
        let refused = app
            .post("/webhook")
            .token(token)
            .json(json!({"device_id": device, "webhook_url": url, "enabled_events": ["*"]}))
            .send()
            .await;
        refused.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(
            refused.body["validation"][0]["field"], "webhook_url",
            "{url}"
        );
    }
    app.post("/user/webhook")
        .token(token)
        .json(json!({"webhook_url": "http://192.168.0.10/"}))
        .send()
        .await
        .assert_error(400, "VALIDATION_ERROR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_retried_with_the_same_id_and_410_disables() {
    let receiver = Receiver::start().await;
    let app = TestApp::spawn().await;
    let tenant = app.register("retries").await;
    let token = &tenant.admin_token;
    let device = app.create_device(token, "d").await;
    let created = configure(
        &app,
        token,
        &device,
        json!({"webhook_url": receiver.url(), "enabled_events": ["*"], "retry_attempts": 5}),
    )
    .await;
    let secret = created["webhook"]["secret"]
        .as_str()
        .expect("secret")
        .to_owned();

    // Two failures, then a success: three attempts, one id, every one signed.
    receiver.queue([Reply::status(500), Reply::status(502)]);
    append(&app, &tenant, &device, 1).await;
    let got = receiver
        .wait_for(Duration::from_secs(10), |r| {
            r.iter().any(|r| r.status == 200)
        })
        .await;
    assert_eq!(got.len(), 3);
    let id = got[0].header("webhook-id");
    assert!(id.starts_with("evt_"));
    assert!(got.iter().all(|r| r.header("webhook-id") == id));
    assert!(
        got.iter().all(|r| verify(&secret, r)),
        "signed per Standard Webhooks"
    );
    let event = got[2].json();
    assert_eq!(event["id"], id.as_str());
    assert_eq!(event["seq"], 1);
    assert_eq!(event["event"], "webhook.test");
    assert_eq!(event["device_id"], device.as_str());

    // The receiver counts a request on arrival; the gateway records it once answered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let attempts = loop {
        let attempts = app
            .get(&format!("/webhook/deliveries?device_id={device}"))
            .token(token)
            .send()
            .await;
        let attempts = attempts.assert_status(200)["deliveries"].clone();
        if attempts.as_array().map(Vec::len) == Some(3) {
            break attempts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "attempts: {attempts}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let statuses: Vec<&str> = attempts
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|a| a["status"].as_str().expect("status"))
        .collect();
    assert_eq!(
        statuses,
        ["delivered", "pending", "pending"],
        "newest first"
    );
    assert_eq!(attempts[2]["status_code"], 500);
    assert_eq!(attempts[0]["attempt"], 3);
    let failed_only = app
        .get(&format!(
            "/webhook/deliveries?device_id={device}&status=delivered"
        ))
        .token(token)
        .send()
        .await;
    assert_eq!(
        failed_only.assert_status(200)["deliveries"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // Retry-After is honoured: the second attempt waits for it, not for the 100 ms schedule.
    receiver.queue([Reply {
        status: 429,
        delay: Duration::ZERO,
        retry_after: Some(2),
    }]);
    append(&app, &tenant, &device, 2).await;
    let got = receiver
        .wait_for(Duration::from_secs(10), |r| {
            r.iter().filter(|r| r.status == 200).count() == 2
        })
        .await;
    let (asked, retried) = (&got[got.len() - 2], &got[got.len() - 1]);
    assert_eq!(asked.status, 429);
    let waited = retried.at - asked.at;
    assert!(waited >= Duration::from_millis(1800), "waited {waited:?}");

    // A receiver that hangs is given up on at the webhook's timeout.
    configure(
        &app,
        token,
        &device,
        json!({"webhook_url": receiver.url(), "enabled_events": ["*"], "timeout": 1,
               "retry_attempts": 0, "secret": secret}),
    )
    .await;
    receiver.queue([Reply {
        status: 504,
        delay: Duration::from_secs(5),
        retry_after: None,
    }]);
    append(&app, &tenant, &device, 3).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let timed_out = loop {
        let attempts = app
            .get(&format!(
                "/webhook/deliveries?device_id={device}&status=failed"
            ))
            .token(token)
            .send()
            .await;
        let attempts = attempts.assert_status(200)["deliveries"].clone();
        if let Some(first) = attempts.as_array().and_then(|a| a.first()) {
            break first.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hanging attempt never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(timed_out["error"].as_str().expect("error").contains("1 s"));
    assert!(timed_out["duration_ms"].as_i64().expect("duration") < 3000);

    // 410 Gone disables the webhook at once; its queue waits for it to be configured again.
    receiver.queue([Reply::status(410)]);
    append(&app, &tenant, &device, 4).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let shown = shown_webhook(&app, token, &device).await;
        if shown["enabled"] == false {
            assert!(
                shown["disabled_reason"]
                    .as_str()
                    .expect("reason")
                    .contains("410")
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "410 did not disable: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = receiver.received().len();
    append(&app, &tenant, &device, 5).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.received().len(),
        before,
        "nothing goes to a disabled webhook"
    );
    // The queue shows what waits: the refused event and the one after it.
    let queue = shown_webhook(&app, token, &device).await["queue"].clone();
    assert_eq!(queue["pending"], 2, "{queue}");
    assert!(queue["oldest_pending_at"].is_string(), "{queue}");
    configure(
        &app,
        token,
        &device,
        json!({"webhook_url": receiver.url(), "enabled_events": ["*"], "secret": secret}),
    )
    .await;
    let got = receiver
        .wait_for(Duration::from_secs(10), |r| {
            r.iter()
                .filter(|r| r.status == 200)
                .any(|r| r.json()["data"]["n"] == 5)
        })
        .await;
    let ns: Vec<i64> = got
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.json()["data"]["n"].as_i64().expect("n"))
        .collect();
    assert_eq!(
        ns,
        [1, 2, 4, 5],
        "the refused event and the one after it, in order"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let queue = shown_webhook(&app, token, &device).await["queue"].clone();
        if queue["pending"] == 0 {
            assert_eq!(queue["oldest_pending_at"], Value::Null);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queue did not empty: {queue}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Replay: the stream keeps everything, and any event can be queued again.
    let events = app
        .get(&format!("/events?device_id={device}&limit=2"))
        .token(token)
        .send()
        .await;
    let page = events.assert_status(200).clone();
    assert_eq!(page["events"][0]["seq"], 1);
    assert_eq!(page["events"][1]["seq"], 2);
    let next = page["next"].as_str().expect("a next cursor");
    let rest = app
        .get(&format!("/events?device_id={device}&after={next}"))
        .token(token)
        .send()
        .await;
    let seqs: Vec<i64> = rest.assert_status(200)["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs, [3, 4, 5]);
    let first = page["events"][0]["id"].as_str().expect("id").to_owned();
    let accepted = app
        .post(&format!("/events/{first}/redeliver?device_id={device}"))
        .token(token)
        .send()
        .await;
    accepted.assert_status(202);
    receiver
        .wait_for(Duration::from_secs(10), |r| {
            r.iter()
                .filter(|r| r.header("webhook-id") == first)
                .filter(|r| r.status == 200)
                .count()
                == 2
        })
        .await;
    app.post(&format!(
        "/events/evt_{}/redeliver?device_id={device}",
        "0".repeat(32)
    ))
    .token(token)
    .send()
    .await
    .assert_error(404, "NOT_FOUND");
    app.get(&format!("/events?device_id={device}&limit=501&event=nope"))
        .token(token)
        .send()
        .await
        .assert_error(400, "VALIDATION_ERROR");

    // The test event goes now, outside the queue.
    let tested = app
        .post("/webhook/test")
        .token(token)
        .json(json!({"device_id": device}))
        .send()
        .await;
    let tested = tested.assert_status(200)["data"].clone();
    assert_eq!(tested["delivered"], true);
    assert_eq!(tested["status_code"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_device_s_events_arrive_in_order_one_at_a_time_across_two_gateways() {
    let receiver = Receiver::start().await;
    let app = TestApp::spawn().await;
    // A second gateway on the same database: its workers compete for the same queue.
    let other = wuts_gateway::startup::build(app.db.pool.clone(), &app.config)
        .await
        .expect("second gateway");
    let tenant = app.register("order").await;
    let token = &tenant.admin_token;
    let device = app.create_device(token, "d").await;
    configure(
        &app,
        token,
        &device,
        json!({"webhook_url": receiver.url(), "enabled_events": ["*"], "retry_attempts": 15}),
    )
    .await;
    // Slow and unreliable: one in five answers fail, each takes up to 10 ms.
    receiver.script(|n| Reply {
        status: if (n * 7919) % 5 == 0 { 503 } else { 200 },
        delay: Duration::from_millis(((n * 31) % 10) as u64),
        retry_after: None,
    });
    const EVENTS: i64 = 200;
    for n in 1..=EVENTS {
        append(&app, &tenant, &device, n).await;
    }
    receiver
        .wait_for(Duration::from_secs(120), |r| {
            r.iter().filter(|r| r.status == 200).count() >= EVENTS as usize
        })
        .await;
    let seqs: Vec<i64> = receiver
        .delivered()
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=EVENTS).collect::<Vec<_>>(),
        "in seq order, no gap"
    );
    assert_eq!(
        receiver.max_in_flight(),
        1,
        "one attempt in flight per device"
    );
    other.deliveries.shutdown(Duration::from_secs(5)).await;
}

/// wa-sim accounts: the device's phone and two contacts.
async fn world(sim: &WaSim) -> (String, wa_sim::CreatedAccount, wa_sim::CreatedAccount) {
    let mut created = Vec::new();
    for (number, name) in [
        ("5511970000001", "Owner"),
        ("5511970000002", "Bea"),
        ("5511970000003", "Caio"),
    ] {
        created.push(
            sim.control()
                .create_account(&CreateAccount {
                    phone: number.to_owned(),
                    push_name: Some(name.to_owned()),
                    ..Default::default()
                })
                .await
                .expect("account"),
        );
    }
    let caio = created.pop().expect("caio");
    let bea = created.pop().expect("bea");
    (created.remove(0).phone, bea, caio)
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_changes_become_signed_events_even_while_the_gateway_was_down() {
    let sim = WaSim::start().await.expect("wa-sim");
    let (phone, bea, caio) = world(&sim).await;
    let receiver = Receiver::start().await;
    let mut app = TestApp::spawn_with_sim(&sim).await;
    let tenant = app.register("wa-events").await;
    let token = tenant.admin_token.clone();
    let device = app.create_device(&token, "d").await;
    let first_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    configure(
        &app,
        &token,
        &device,
        json!({"webhook_url": receiver.url(), "enabled_events": ["*"], "secret": first_secret}),
    )
    .await;

    // Pairing: a QR code, the pairing, the connection.
    app.pair(&sim, &token, &device, &phone).await;
    let got = receiver
        .wait_for(Duration::from_secs(15), |r| {
            r.iter().any(|r| r.json()["event"] == "device.connected")
        })
        .await;
    let events: Vec<Value> = got.iter().map(|r| r.json()).collect();
    assert!(!of_kind(&events, "qr.generated").is_empty());
    assert!(of_kind(&events, "qr.generated")[0]["data"]["qr_code"].is_string());
    let paired = of_kind(&events, "pair.success")[0];
    assert_eq!(paired["data"]["phone_number"], phone.as_str());
    let connected = of_kind(&events, "device.connected")[0];
    assert_eq!(connected["data"]["phone_number"], phone.as_str());
    assert!(got.iter().all(|r| verify(first_secret, r)));

    // A block through the API: one event, with the diff and the phone number.
    app.post("/contacts/block")
        .token(&token)
        .json(json!({"device_id": device, "jid": bea.jid}))
        .send()
        .await
        .assert_status(200);
    let got = receiver
        .wait_for(Duration::from_secs(10), |r| {
            r.iter().any(|r| r.json()["event"] == "privacy.blocklist")
        })
        .await;
    let events: Vec<Value> = got.iter().map(|r| r.json()).collect();
    let blocked = of_kind(&events, "privacy.blocklist");
    assert_eq!(blocked.len(), 1, "one event for one change: {blocked:?}");
    let data = &blocked[0]["data"];
    assert_eq!(data["source"], "api");
    assert_eq!(data["count"], 1);
    assert_eq!(data["added"][0]["phone_number"], bea.phone.as_str());
    assert_eq!(data["added"][0]["lid_jid"], bea.lid_jid.as_str());
    assert_eq!(data["removed"], json!([]));

    // A message from Caio shows his push name: a contact.pushname event, with his number.
    sim.control()
        .send_message(&phone, &caio.phone)
        .await
        .expect("caio writes");
    let got = receiver
        .wait_for(Duration::from_secs(10), |r| {
            r.iter().any(|r| r.json()["event"] == "contact.pushname")
        })
        .await;
    let named: Vec<Value> = got
        .iter()
        .map(|r| r.json())
        .filter(|e| e["event"] == "contact.pushname")
        .collect();
    assert_eq!(named.len(), 1, "one event per user: {named:?}");
    assert_eq!(named[0]["data"]["push_name"], "Caio");
    assert_eq!(named[0]["data"]["phone_number"], caio.phone.as_str());
    // Both halves, though the stanza came before the device's store knew the pair.
    assert_eq!(named[0]["data"]["lid_jid"], caio.lid_jid.as_str());
    // The same name again, now stored under both JIDs: no new event (checked below, once later
    // events have arrived).
    sim.control()
        .send_message(&phone, &caio.phone)
        .await
        .expect("caio writes again");

    // The secret rotates: the old one keeps signing alongside the new one for a while.
    let rotated = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX";
    configure(
        &app,
        &token,
        &device,
        json!({"webhook_url": receiver.url(), "enabled_events": ["*"], "secret": rotated}),
    )
    .await;

    // A block made on the phone arrives with source phone.
    sim.control()
        .change_blocklist(&phone, "block", &caio.jid)
        .await
        .expect("phone blocks");
    let got = receiver
        .wait_for(Duration::from_secs(15), |r| {
            r.iter().any(|r| {
                r.json()["event"] == "privacy.blocklist" && r.json()["data"]["source"] == "phone"
            })
        })
        .await;
    let from_phone = got
        .iter()
        .find(|r| r.json()["data"]["source"] == "phone")
        .expect("phone event");
    let data = from_phone.json()["data"].clone();
    assert_eq!(data["added"][0]["phone_number"], caio.phone.as_str());
    assert_eq!(data["count"], 2);
    assert_eq!(data["prev_dhash"], blocked[0]["data"]["dhash"]);
    let named = got
        .iter()
        .filter(|r| r.json()["event"] == "contact.pushname")
        .count();
    assert_eq!(named, 1, "a push name seen again is no change");
    assert_eq!(from_phone.header("webhook-signature").split(' ').count(), 2);
    assert!(verify(rotated, from_phone), "the new secret verifies");
    assert!(
        verify(first_secret, from_phone),
        "so does the old one, during the overlap"
    );

    // A snapshot written elsewhere (another node, during a hand-off) is compared with as it is
    // stored, not as this node last held it: the diff is against the stored one.
    sqlx::query(
        "UPDATE blocklists SET dhash = 'elsewhere', items = '{}' WHERE device_id = $1::uuid",
    )
    .bind(&device)
    .execute(&app.db.pool)
    .await
    .expect("snapshot written elsewhere");
    sim.control()
        .change_blocklist(&phone, "unblock", &caio.jid)
        .await
        .expect("phone unblocks");
    let got = receiver
        .wait_for(Duration::from_secs(15), |r| {
            r.iter()
                .any(|r| r.json()["data"]["prev_dhash"] == "elsewhere")
        })
        .await;
    let compared = got
        .iter()
        .map(|r| r.json())
        .find(|e| e["data"]["prev_dhash"] == "elsewhere")
        .expect("the change against the stored snapshot");
    assert_eq!(compared["data"]["count"], 1);
    assert_eq!(
        compared["data"]["added"][0]["phone_number"],
        bea.phone.as_str()
    );
    assert_eq!(compared["data"]["removed"], json!([]));
    // And the next change is against what that one stored.
    sim.control()
        .change_blocklist(&phone, "block", &caio.jid)
        .await
        .expect("phone blocks again");
    let seq = compared["seq"].as_i64().expect("seq");
    let next = |e: &Value| e["event"] == "privacy.blocklist" && e["seq"].as_i64() > Some(seq);
    let got = receiver
        .wait_for(Duration::from_secs(15), |r| {
            r.iter().any(|r| next(&r.json()))
        })
        .await;
    let again = got
        .iter()
        .map(|r| r.json())
        .find(|e| next(e))
        .expect("the next change");
    assert_eq!(again["data"]["prev_dhash"], compared["data"]["dhash"]);
    assert_eq!(
        again["data"]["added"][0]["phone_number"],
        caio.phone.as_str()
    );
    assert_eq!(again["data"]["removed"], json!([]));
    assert_eq!(again["data"]["count"], 2);

    // While the gateway is down, the phone unblocks Bea: the event arrives after the restart.
    app.sessions.shutdown(Duration::from_secs(10)).await;
    let delivered_before = receiver.delivered().len();
    sim.control()
        .change_blocklist(&phone, "unblock", &bea.jid)
        .await
        .expect("phone unblocks");
    app.restart().await;
    let got = receiver
        .wait_for(Duration::from_secs(20), |r| {
            r.iter().any(|r| {
                let e = r.json();
                e["event"] == "privacy.blocklist"
                    && e["data"]["removed"]
                        .as_array()
                        .is_some_and(|a| !a.is_empty())
            })
        })
        .await;
    let unblocked = got
        .iter()
        .map(|r| r.json())
        .find(|e| {
            e["event"] == "privacy.blocklist"
                && e["data"]["removed"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
        })
        .expect("the offline change");
    assert_eq!(unblocked["data"]["count"], 1);
    assert_eq!(unblocked["data"]["source"], "phone");
    assert_eq!(
        unblocked["data"]["removed"][0]["phone_number"],
        bea.phone.as_str()
    );
    assert!(receiver.delivered().len() > delivered_before);

    // The stream holds everything in order with no gap; disconnect and logout are events too.
    app.post("/disconnect")
        .token(&token)
        .json(json!({"device_id": device}))
        .send()
        .await
        .assert_status(200);
    let got = receiver
        .wait_for(Duration::from_secs(10), |r| {
            r.iter().any(|r| r.json()["event"] == "device.disconnected")
        })
        .await;
    let disconnected: Vec<Value> = got
        .iter()
        .map(|r| r.json())
        .filter(|e| e["event"] == "device.disconnected")
        .collect();
    assert!(
        disconnected
            .iter()
            .any(|e| e["data"]["reason"] == "requested")
    );
    let listed = app
        .get(&format!("/events?device_id={device}&limit=500"))
        .token(&token)
        .send()
        .await;
    let listed = listed.assert_status(200)["events"].clone();
    let seqs: Vec<i64> = listed
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    let filtered = app
        .get(&format!(
            "/events?device_id={device}&event=privacy.blocklist"
        ))
        .token(&token)
        .send()
        .await;
    let filtered = filtered.assert_status(200)["events"].clone();
    assert_eq!(filtered.as_array().map(Vec::len), Some(5), "{filtered:#}");
    // Learned pairs are events too (contact.lid, from the block list's items).
    assert!(listed
        .as_array()
        .expect("events")
        .iter()
        .any(|e| e["event"] == "contact.lid" && e["data"]["phone_number"] == bea.phone.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_changes_by_anyone_are_events_reported_once() {
    let sim = WaSim::start().await.expect("wa-sim");
    let (phone, bea, caio) = world(&sim).await;
    let receiver = Receiver::start().await;
    let mut app = TestApp::spawn_with_sim(&sim).await;
    let tenant = app.register("group-events").await;
    let token = tenant.admin_token.clone();
    let device = app.create_device(&token, "d").await;
    app.pair(&sim, &token, &device, &phone).await;
    configure(
        &app,
        &token,
        &device,
        json!({"webhook_url": receiver.url(),
               "enabled_events": ["group.joined", "group.left", "group.info"]}),
    )
    .await;
    let group_events = |r: &[crate::receiver::Received]| -> Vec<Value> {
        r.iter()
            .filter(|r| r.status == 200)
            .map(|r| r.json())
            .collect()
    };

    // Bea creates a community with the device's account in it.
    let community = sim
        .control()
        .create_group(&wa_sim::CreateGroup {
            owner_phone: bea.phone.clone(),
            subject: "Neighbours".to_owned(),
            participants: vec![phone.clone()],
            community: true,
        })
        .await
        .expect("community");
    let is_joined =
        |e: &Value| e["event"] == "group.joined" && e["data"]["jid"] == community.jid.as_str();
    let got = receiver
        .wait_for(Duration::from_secs(15), |r| {
            group_events(r).iter().any(is_joined)
        })
        .await;
    let joined = group_events(&got)
        .into_iter()
        .find(is_joined)
        .expect("joined");
    assert_eq!(joined["data"]["name"], "Neighbours");
    assert_eq!(joined["data"]["is_community"], true);
    assert_eq!(joined["data"]["actor"]["phone_number"], bea.phone.as_str());

    // Bea adds Caio, then makes the device's account an admin.
    let act = |action: &str, who: &str| wa_sim::GroupAction {
        actor_phone: bea.phone.clone(),
        action: action.to_owned(),
        participants: vec![who.to_owned()],
        ..Default::default()
    };
    sim.control()
        .group_action(&community.jid, &act("add", &caio.phone))
        .await
        .expect("bea adds caio");
    sim.control()
        .group_action(&community.jid, &act("promote", &phone))
        .await
        .expect("bea promotes the device");
    let got = receiver
        .wait_for(Duration::from_secs(15), |r| {
            group_events(r)
                .iter()
                .any(|e| e["data"]["change"] == "promoted")
        })
        .await;
    let events = group_events(&got);
    let added = events
        .iter()
        .find(|e| e["data"]["change"] == "participants_added")
        .expect("participants_added");
    assert_eq!(added["event"], "group.info");
    assert_eq!(added["data"]["actor"]["phone_number"], bea.phone.as_str());
    assert_eq!(
        added["data"]["participants"][0]["phone_number"],
        caio.phone.as_str()
    );

    // The device renames it: one event, from its own call (with the device as the actor).
    app.patch(&format!("/groups/{}", community.jid))
        .token(&token)
        .json(json!({"device_id": device, "name": "Neighbours 2"}))
        .send()
        .await
        .assert_status(200);
    // While the gateway is down, Bea renames the community and removes Caio: the changes are
    // reported when the device connects again (with no actor: who made them is not known).
    let stored_name = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT state->>'name' FROM group_snapshots WHERE group_jid = $1",
        )
        .bind(&community.jid)
        .fetch_optional(&app.db.pool)
        .await
        .expect("snapshot")
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stored_name().await.as_deref() != Some("Neighbours 2") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rename was not stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.sessions.shutdown(Duration::from_secs(10)).await;
    sim.control()
        .group_action(
            &community.jid,
            &wa_sim::GroupAction {
                actor_phone: bea.phone.clone(),
                action: "subject".to_owned(),
                subject: Some("Renamed while away".to_owned()),
                ..Default::default()
            },
        )
        .await
        .expect("bea renames");
    sim.control()
        .group_action(&community.jid, &act("remove", &caio.phone))
        .await
        .expect("bea removes caio");
    app.restart().await;
    let got = receiver
        .wait_for(Duration::from_secs(20), |r| {
            let events = group_events(r);
            events
                .iter()
                .any(|e| e["data"]["change"] == "participants_removed")
                && events
                    .iter()
                    .any(|e| e["data"]["name"] == "Renamed while away")
        })
        .await;
    let events = group_events(&got);
    let away = events
        .iter()
        .find(|e| e["data"]["change"] == "participants_removed")
        .expect("removed while away");
    assert_eq!(
        away["data"]["participants"][0]["phone_number"],
        caio.phone.as_str()
    );
    assert!(away["data"].get("actor").is_none());
    assert!(
        events
            .iter()
            .any(|e| e["data"]["change"] == "name" && e["data"]["name"] == "Renamed while away"),
        "{events:?}"
    );

    // Bea removes the device's account.
    sim.control()
        .group_action(&community.jid, &act("remove", &phone))
        .await
        .expect("bea removes the device");
    let got = receiver
        .wait_for(Duration::from_secs(15), |r| {
            group_events(r).iter().any(|e| e["event"] == "group.left")
        })
        .await;
    let events = group_events(&got);
    let renamed: Vec<&Value> = events
        .iter()
        .filter(|e| e["data"]["change"] == "name" && e["data"]["name"] == "Neighbours 2")
        .collect();
    assert_eq!(renamed.len(), 1, "reported once: {renamed:?}");
    assert_eq!(renamed[0]["data"]["name"], "Neighbours 2");
    assert_eq!(renamed[0]["data"]["actor"]["phone_number"], phone.as_str());
    let left = events
        .iter()
        .find(|e| e["event"] == "group.left")
        .expect("left");
    assert_eq!(left["data"]["actor"]["phone_number"], bea.phone.as_str());
    let seqs: Vec<i64> = events
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
}

/// The `seq` of each event `GET /events` lists for the device.
async fn listed_seqs(app: &TestApp, token: &str, device: &str) -> Vec<i64> {
    let listed = app
        .get(&format!("/events?device_id={device}"))
        .token(token)
        .send()
        .await;
    listed.assert_status(200)["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_past_the_retention_period_are_pruned_and_numbering_goes_on() {
    let mut app = TestApp::spawn().await;
    let tenant = app.register("retention").await;
    let token = tenant.admin_token.clone();
    let device = app.create_device(&token, "d").await;
    for n in 1..=3 {
        append(&app, &tenant, &device, n).await;
    }
    // Two of them are older than the retention period (7 days by default).
    sqlx::query(
        "UPDATE events SET created_at = now() - interval '8 days' \
         WHERE device_id = $1::uuid AND seq <= 2",
    )
    .bind(&device)
    .execute(&app.db.pool)
    .await
    .expect("events aged");
    assert_eq!(
        listed_seqs(&app, &token, &device).await,
        vec![1, 2, 3],
        "nothing pruned yet"
    );

    // Pruning runs when the delivery workers start, then every few minutes.
    app.restart().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = listed_seqs(&app, &token, &device).await;
        if now == vec![3] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "events past the retention period still listed: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The stream's numbering is not reset by pruning.
    append(&app, &tenant, &device, 4).await;
    assert_eq!(listed_seqs(&app, &token, &device).await, vec![3, 4]);
}
