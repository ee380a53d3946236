//! WhatsApp stopping a session: a temporary ban (402), an outdated client (405), another
//! connection replacing this one (`stream:error` conflict), a refused login of another kind. Each
//! leaves the device `disconnected` with the reason in `/status`, answers requests
//! DEVICE_NOT_READY at once, and does not loop reconnecting; `POST /connect` brings it back once
//! WhatsApp lets it in again.

use std::time::{Duration, Instant};

use serde_json::json;
use wa_sim::{Fault, WaSim};

use crate::helpers::{Tenant, TestApp, sim_account};

const BANNED: &str = "5511900007001";
const OUTDATED: &str = "5511900007002";
const REPLACED: &str = "5511900007003";
const REFUSED: &str = "5511900007004";

/// Logins wa-sim saw, and logins it refused.
async fn logins(sim: &WaSim) -> (u64, u64) {
    let stats = sim.control().stats().await.expect("stats");
    (stats.logins, stats.refused_logins)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_stop_the_session_with_the_reason_and_no_loop() {
    // Events are counted from the start (the recorder is installed on first use).
    let _ = wuts_gateway::metrics::handle();
    let sim = WaSim::start().await.expect("wa-sim");
    let phones = [BANNED, OUTDATED, REPLACED, REFUSED].map(str::to_owned);
    for phone in &phones {
        sim_account(&sim, phone).await;
    }
    let app = TestApp::spawn_with_sim(&sim).await;
    let tenant: Tenant = app.register("refusals").await;
    let token = tenant.admin_token.clone();
    let devices = app.pair_devices(&sim, &token, &phones).await;

    // WhatsApp refuses the next login of each account its own way, and the connections drop.
    for fault in [
        Fault::RefuseLogin {
            phone: Some(BANNED.into()),
            reason: 402,
            code: Some(101),
            expire: Some(3600),
        },
        Fault::RefuseLogin {
            phone: Some(OUTDATED.into()),
            reason: 405,
            code: None,
            expire: None,
        },
        Fault::RefuseLogin {
            phone: Some(REFUSED.into()),
            reason: 409,
            code: None,
            expire: None,
        },
    ] {
        sim.control().add_fault(&fault).await.expect("fault");
    }
    sim.control().reset_stats().await.expect("reset");
    for phone in [BANNED, OUTDATED, REFUSED] {
        sim.control()
            .add_fault(&Fault::DropConnections {
                phone: Some(phone.into()),
            })
            .await
            .expect("drop");
    }
    sim.control()
        .add_fault(&Fault::StreamError {
            phone: Some(REPLACED.into()),
            code: None,
            conflict: Some("replaced".into()),
        })
        .await
        .expect("stream error");

    let expected = [
        "temporarily banned",
        "client version outdated",
        "replaced by another connection",
        "login refused",
    ];
    for (device, reason) in devices.iter().zip(expected) {
        let status = app.wait_status(&token, device, "disconnected").await;
        let error = status["last_error"].as_str().unwrap_or_default();
        assert!(error.contains(reason), "{device}: {status}");
        assert_eq!(status["connected"], false);
    }

    // Each event is counted by its kind (the metrics of this test process).
    let metrics = app.get("/metrics").send().await.text;
    for event in [
        "temporary_ban",
        "client_outdated",
        "replaced",
        "connect_failure",
    ] {
        let needle = format!("wuts_connection_events_total{{event=\"{event}\"}} ");
        let count: f64 = metrics
            .lines()
            .find_map(|line| line.strip_prefix(&needle))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0);
        assert!(count >= 1.0, "{event} not counted: {metrics}");
    }

    // Requests are answered at once, not after a WhatsApp timeout.
    let started = Instant::now();
    app.post("/contact/check")
        .token(&token)
        .json(json!({"numbers": ["5511900007099"], "device_id": devices[0]}))
        .send()
        .await
        .assert_error(409, "DEVICE_NOT_READY");
    assert!(started.elapsed() < Duration::from_secs(1));

    // No reconnect loop: three refused logins (one each) and no login, several backoff
    // periods later.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(logins(&sim).await, (0, 3));
    for device in &devices {
        let status = app.wait_status(&token, device, "disconnected").await;
        assert_eq!(status["status"], "disconnected");
    }

    // Once WhatsApp lets them in again, `POST /connect` brings each back without a QR, and the
    // reason is cleared.
    sim.control().clear_faults().await.expect("clear");
    for device in &devices {
        app.post("/connect")
            .token(&token)
            .json(json!({"device_id": device}))
            .send()
            .await
            .assert_status(200);
    }
    for device in &devices {
        let status = app.wait_status(&token, device, "connected").await;
        assert!(status["last_error"].is_null(), "{status}");
    }
    assert_eq!(logins(&sim).await.0, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_comes_back_by_itself_when_its_ban_ends() {
    let sim = WaSim::start().await.expect("wa-sim");
    let phones = ["5511900007010".to_owned()];
    sim_account(&sim, &phones[0]).await;
    let app = TestApp::spawn_with_sim(&sim).await;
    let tenant = app.register("short-ban").await;
    let token = tenant.admin_token.clone();
    let device = app.pair_devices(&sim, &token, &phones).await.remove(0);

    sim.control()
        .add_fault(&Fault::RefuseLogin {
            phone: None,
            reason: 402,
            code: Some(101),
            expire: Some(2),
        })
        .await
        .expect("ban");
    sim.control()
        .add_fault(&Fault::DropConnections { phone: None })
        .await
        .expect("drop");
    let banned = app.wait_status(&token, &device, "disconnected").await;
    assert!(
        banned["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("temporarily banned")),
        "{banned}"
    );
    sim.control().clear_faults().await.expect("ban lifted");
    sim.control().reset_stats().await.expect("reset");

    // No one calls /connect: the session returns once the 2 s are over.
    let started = Instant::now();
    let back = app.wait_status(&token, &device, "connected").await;
    assert!(back["last_error"].is_null(), "{back}");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "retried before the ban ended"
    );
    assert_eq!(logins(&sim).await, (1, 0));
}
