//! Device sessions end to end: the gateway's real whatsapp-rust sessions, on their PostgreSQL
//! key store, against an in-process wa-sim.

use std::time::Duration;

use serde_json::json;
use wa_sim::{CreateAccount, Fault, WaSim};

use crate::helpers::TestApp;

async fn account(sim: &WaSim, phone: &str, name: &str) {
    sim.control()
        .create_account(&CreateAccount {
            phone: phone.to_owned(),
            push_name: Some(name.to_owned()),
            ..Default::default()
        })
        .await
        .expect("account created");
}

async fn keys_stored(app: &TestApp, device: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM wa_devices WHERE device_id = $1::uuid")
        .bind(device)
        .fetch_one(&app.db.pool)
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_by_qr_then_status_shows_the_account() {
    let sim = WaSim::start().await.expect("wa-sim");
    account(&sim, "5511900001001", "Ana").await;
    let app = TestApp::spawn_with_sim(&sim).await;
    let tenant = app.register("pairing").await;
    let device = app.create_device(&tenant.admin_token, "support").await;

    let before = app
        .get(&format!("/status?device_id={device}"))
        .token(&tenant.admin_token)
        .send()
        .await;
    assert_eq!(before.assert_status(200)["data"]["status"], "unpaired");

    let status = app
        .pair(&sim, &tenant.admin_token, &device, "5511900001001")
        .await;
    assert_eq!(status["connected"], true);
    assert_eq!(status["is_logged_in"], true);
    assert_eq!(status["phone_number"], "5511900001001");
    assert_eq!(status["jid"], "5511900001001:1@s.whatsapp.net");

    let listed = app.get("/devices").token(&tenant.admin_token).send().await;
    let row = &listed.assert_status(200)["devices"][0];
    assert_eq!(row["status"], "connected");
    assert_eq!(row["connected"], true);
    assert_eq!(row["whatsapp_jid"], "5511900001001:1@s.whatsapp.net");
    assert!(keys_stored(&app, &device).await == 1);

    // A paired device does not pair again.
    app.get(&format!("/qr?device_id={device}"))
        .token(&tenant.admin_token)
        .send()
        .await
        .assert_error(409, "CONFLICT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_codes_are_reused_until_refreshed() {
    let sim = WaSim::start().await.expect("wa-sim");
    let app = TestApp::spawn_with_sim(&sim).await;
    let tenant = app.register("qr").await;
    let device = app.create_device(&tenant.admin_token, "qr").await;
    let token = &tenant.admin_token;

    let first = app
        .get(&format!("/qr?device_id={device}"))
        .token(token)
        .send()
        .await;
    let first = first.assert_status(200)["data"].clone();
    assert_eq!(first["cached"], false);
    assert!(
        first["qr_code"]
            .as_str()
            .is_some_and(|q| q.starts_with("2@"))
    );
    assert!(
        first["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("data:image/png;base64,"))
    );
    assert!(first["ttl"].as_i64().is_some_and(|t| t > 0 && t <= 60));

    let again = app
        .get(&format!("/qr?device_id={device}"))
        .token(token)
        .send()
        .await;
    let again = again.assert_status(200)["data"].clone();
    assert_eq!(again["cached"], true);
    assert_eq!(again["qr_code"], first["qr_code"]);

    let status = app
        .get(&format!("/qr/status?device_id={device}"))
        .token(token)
        .send()
        .await;
    assert_eq!(status.assert_status(200)["data"]["exists"], true);

    let refreshed = app
        .get(&format!("/qr?device_id={device}&refresh=true"))
        .token(token)
        .send()
        .await;
    let refreshed = refreshed.assert_status(200)["data"].clone();
    assert_eq!(refreshed["cached"], false);
    assert_ne!(refreshed["qr_code"], first["qr_code"]);

    let pairing = app
        .get(&format!("/status?device_id={device}"))
        .token(token)
        .send()
        .await;
    assert_eq!(pairing.assert_status(200)["data"]["status"], "pairing");
    app.get("/qr?refresh=maybe")
        .token(token)
        .send()
        .await
        .assert_validation("refresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reconnects_with_stored_keys_and_no_qr() {
    let sim = WaSim::start().await.expect("wa-sim");
    account(&sim, "5511900001002", "Bia").await;
    let mut app = TestApp::spawn_with_sim(&sim).await;
    let tenant = app.register("restart").await;
    let device = app.create_device(&tenant.admin_token, "restart").await;
    app.pair(&sim, &tenant.admin_token, &device, "5511900001002")
        .await;

    sim.control().reset_stats().await.expect("reset");
    app.restart().await;
    let status = app
        .wait_status(&tenant.admin_token, &device, "connected")
        .await;
    assert_eq!(status["phone_number"], "5511900001002");
    let stats = sim.control().stats().await.expect("stats");
    assert_eq!(stats.pairings, 0, "{stats:?}");
    assert_eq!(
        stats.handshake_count("ik"),
        1,
        "resumed with the cached server key: {stats:?}"
    );
    assert_eq!(stats.logins, 1, "{stats:?}");
    let view = sim
        .control()
        .account("5511900001002")
        .await
        .expect("account");
    assert_eq!(view.companions.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_connect_and_logout() {
    let sim = WaSim::start().await.expect("wa-sim");
    account(&sim, "5511900001003", "Caio").await;
    let mut app = TestApp::spawn_with_sim(&sim).await;
    let tenant = app.register("lifecycle").await;
    let token = tenant.admin_token.clone();
    let device = app.create_device(&token, "lifecycle").await;
    app.pair(&sim, &token, &device, "5511900001003").await;

    let done = app.post("/disconnect").token(&token).send().await;
    assert_eq!(
        done.assert_status(200)["data"]["device_id"],
        device.as_str()
    );
    app.wait_status(&token, &device, "disconnected").await;
    // A disconnected device stays disconnected across a restart.
    app.restart().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = app
        .get(&format!("/status?device_id={device}"))
        .token(&token)
        .send()
        .await;
    assert_eq!(still.assert_status(200)["data"]["status"], "disconnected");

    let connected = app
        .post("/connect")
        .token(&token)
        .json(json!({"device_id": device}))
        .send()
        .await;
    assert_eq!(connected.assert_status(200)["data"]["status"], "connected");

    app.post(&format!("/logout?device_id={device}"))
        .token(&token)
        .send()
        .await
        .assert_status(200);
    let status = app
        .get(&format!("/status?device_id={device}"))
        .token(&token)
        .send()
        .await;
    let status = &status.assert_status(200)["data"];
    assert_eq!(status["status"], "logged_out");
    assert_eq!(status["is_logged_in"], false);
    assert_eq!(
        keys_stored(&app, &device).await,
        0,
        "logout erases the keys"
    );
    let view = sim
        .control()
        .account("5511900001003")
        .await
        .expect("account");
    assert!(
        view.companions.is_empty(),
        "WhatsApp unlinked the companion"
    );
    app.post("/connect")
        .token(&token)
        .send()
        .await
        .assert_error(409, "DEVICE_NOT_READY");
    app.post("/logout")
        .token(&token)
        .send()
        .await
        .assert_error(409, "DEVICE_NOT_READY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlink_on_the_phone_logs_the_device_out() {
    let sim = WaSim::start().await.expect("wa-sim");
    account(&sim, "5511900001004", "Duda").await;
    let app = TestApp::spawn_with_sim(&sim).await;
    let tenant = app.register("unlink").await;
    let device = app.create_device(&tenant.admin_token, "unlink").await;
    app.pair(&sim, &tenant.admin_token, &device, "5511900001004")
        .await;
    sim.control()
        .unlink("5511900001004", 1)
        .await
        .expect("phone unlinks");
    app.wait_status(&tenant.admin_token, &device, "logged_out")
        .await;
    assert_eq!(keys_stored(&app, &device).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_paired_device_unlinks_it_and_erases_its_keys() {
    let sim = WaSim::start().await.expect("wa-sim");
    account(&sim, "5511900001005", "Edu").await;
    let app = TestApp::spawn_with_sim(&sim).await;
    let tenant = app.register("delete").await;
    let device = app.create_device(&tenant.admin_token, "delete").await;
    app.pair(&sim, &tenant.admin_token, &device, "5511900001005")
        .await;
    app.delete(&format!("/devices/{device}"))
        .token(&tenant.admin_token)
        .send()
        .await
        .assert_status(200);
    let view = sim
        .control()
        .account("5511900001005")
        .await
        .expect("account");
    assert!(view.companions.is_empty());
    assert_eq!(keys_stored(&app, &device).await, 0);
    app.get(&format!("/status?device_id={device}"))
        .token(&tenant.admin_token)
        .send()
        .await
        .assert_error(404, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_comes_back_by_itself() {
    let sim = WaSim::start().await.expect("wa-sim");
    account(&sim, "5511900001006", "Fabi").await;
    let app = TestApp::spawn_with_sim(&sim).await;
    let tenant = app.register("drops").await;
    let device = app.create_device(&tenant.admin_token, "drops").await;
    app.pair(&sim, &tenant.admin_token, &device, "5511900001006")
        .await;
    sim.control().reset_stats().await.expect("reset");
    sim.control()
        .add_fault(&Fault::DropConnections { phone: None })
        .await
        .expect("drop");
    app.wait_status(&tenant.admin_token, &device, "connected")
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sim.control().stats().await.expect("stats").logins == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session never logged in again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_errors_and_silence_become_502_and_504() {
    let sim = WaSim::start().await.expect("wa-sim");
    let app = TestApp::spawn_with_sim(&sim).await;
    let tenant = app.register("faults").await;
    let device = app.create_device(&tenant.admin_token, "faults").await;
    let body = json!({"phone": "+55 11 90000-1007", "device_id": device});

    sim.control()
        .add_fault(&Fault::Error {
            xmlns: "md".into(),
            code: 429,
        })
        .await
        .expect("fault");
    let failed = app
        .post("/paircode")
        .token(&tenant.admin_token)
        .json(body.clone())
        .send()
        .await;
    failed.assert_error(502, "DEVICE_ERROR");
    sim.control().clear_faults().await.expect("clear");

    sim.control()
        .add_fault(&Fault::NoAnswer { xmlns: "md".into() })
        .await
        .expect("fault");
    let started = std::time::Instant::now();
    let silent = app
        .post("/paircode")
        .token(&tenant.admin_token)
        .json(body)
        .send()
        .await;
    silent.assert_error(504, "WHATSAPP_TIMEOUT");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_by_code() {
    let sim = WaSim::start().await.expect("wa-sim");
    sim.control()
        .create_account(&CreateAccount {
            phone: "5511900001200".into(),
            push_name: Some("Coder".into()),
            ..Default::default()
        })
        .await
        .expect("account");
    let app = TestApp::spawn_with_sim(&sim).await;
    let tenant = app.register("paircode").await;
    let device = app.create_device(&tenant.admin_token, "by code").await;

    let body = json!({"phone": "+55 11 90000-1200", "device_id": device});
    let first = app
        .post("/paircode")
        .token(&tenant.admin_token)
        .json(body.clone())
        .send()
        .await;
    let first = first.assert_status(200)["data"].clone();
    let code = first["code"].as_str().expect("code").to_owned();
    assert_eq!(code.len(), 9, "XXXX-XXXX: {code}");
    assert_eq!(first["phone"], "5511900001200");
    assert_eq!(first["cached"], false);
    // Asking again while the code is valid answers the same code.
    let again = app
        .post("/paircode")
        .token(&tenant.admin_token)
        .json(body)
        .send()
        .await;
    let again = again.assert_status(200)["data"].clone();
    assert_eq!(again["code"], code.as_str());
    assert_eq!(again["cached"], true);

    sim.control()
        .enter_code("5511900001200", &code)
        .await
        .expect("the phone enters the code");
    let status = app
        .wait_status(&tenant.admin_token, &device, "connected")
        .await;
    assert_eq!(status["phone_number"], "5511900001200");
    app.get(&format!("/qr?device_id={device}"))
        .token(&tenant.admin_token)
        .send()
        .await
        .assert_error(409, "CONFLICT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_whatsapp_is_answered_at_once_with_the_cause() {
    // A loopback port that accepts connections and closes them at once: every attempt fails,
    // and the attempts are counted.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = attempts.clone();
    let refuser = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    let app = TestApp::spawn_with(|config| {
        config.whatsapp.wa_url = format!("ws://127.0.0.1:{port}/ws/chat");
        config.whatsapp.wa_timeout = Duration::from_secs(15);
    })
    .await;
    let tenant = app.register("Unreachable").await;
    let device = app.create_device(&tenant.admin_token, "phone").await;

    let started = std::time::Instant::now();
    let qr = app
        .get(&format!("/qr?device_id={device}"))
        .token(&tenant.admin_token)
        .send()
        .await;
    qr.assert_error(504, "WHATSAPP_TIMEOUT");
    let message = qr.body["error"].as_str().unwrap_or_default().to_owned();
    assert!(message.starts_with("cannot reach WhatsApp"), "{message}");
    // Well before the WhatsApp timeout (15 s) and the QR wait (20 s).
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    let status = app
        .get(&format!("/status?device_id={device}"))
        .token(&tenant.admin_token)
        .send()
        .await;
    let body = status.assert_status(200);
    let last_error = body["data"]["last_error"].as_str().unwrap_or_default();
    assert!(last_error.starts_with("cannot reach WhatsApp"), "{body}");
    // Nobody is pairing any more: the device is unpaired again, and nothing keeps trying in
    // the background (whatsapp-rust would retry after 1 s, 1 s, 2 s...).
    assert_eq!(body["data"]["status"], "unpaired", "{body}");
    let seen = attempts.load(std::sync::atomic::Ordering::SeqCst);
    assert!(seen >= 1);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), seen);

    let started = std::time::Instant::now();
    app.post("/paircode")
        .token(&tenant.admin_token)
        .json(json!({"phone": "5511900009999", "device_id": device}))
        .send()
        .await
        .assert_error(504, "WHATSAPP_TIMEOUT");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let status = app
        .get(&format!("/status?device_id={device}"))
        .token(&tenant.admin_token)
        .send()
        .await;
    assert_eq!(status.assert_status(200)["data"]["status"], "unpaired");
    refuser.abort();
}
