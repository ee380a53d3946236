//! WhatsApp drops every connection at once: requests during the outage answer DEVICE_NOT_READY at
//! once, and the sessions come back by themselves, spread over the reconnect jitter rather than
//! all in the same instant.

use std::time::{Duration, Instant};

use serde_json::json;
use wa_sim::{Fault, WaSim};

use crate::helpers::{TestApp, sim_account};

const DEVICES: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_dropped_together_come_back_spread_out() {
    let sim = WaSim::start().await.expect("wa-sim");
    let phones: Vec<String> = (0..DEVICES).map(|i| format!("55119000080{i:02}")).collect();
    for phone in &phones {
        sim_account(&sim, phone).await;
    }
    let app = TestApp::spawn_with_sim_and(&sim, |config| {
        config.whatsapp.reconnect_jitter = Duration::from_secs(3);
    })
    .await;
    let tenant = app.register("outage").await;
    let token = tenant.admin_token.clone();
    let devices = app.pair_devices(&sim, &token, &phones).await;

    // Every connection drops; WhatsApp stays unreachable for a moment.
    sim.control().reset_stats().await.expect("reset");
    sim.control()
        .add_fault(&Fault::DropConnections { phone: None })
        .await
        .expect("drop");
    let status = app.wait_status(&token, &devices[0], "connecting").await;
    assert_eq!(status["connected"], false);
    let started = Instant::now();
    app.post("/contact/check")
        .token(&token)
        .json(json!({"numbers": ["5511900008099"], "device_id": devices[0]}))
        .send()
        .await
        .assert_error(409, "DEVICE_NOT_READY");
    assert!(started.elapsed() < Duration::from_secs(1));

    // All come back, without a QR.
    for device in &devices {
        app.wait_status(&token, device, "connected").await;
    }
    let stats = sim.control().stats().await.expect("stats");
    assert_eq!(stats.logins as usize, DEVICES, "{stats:?}");
    assert_eq!(stats.handshake_count("xx"), 0, "nobody paired again");
    let first = stats
        .login_times_ms
        .iter()
        .min()
        .copied()
        .unwrap_or_default();
    let last = stats
        .login_times_ms
        .iter()
        .max()
        .copied()
        .unwrap_or_default();
    // whatsapp-rust alone brings them all back within 0.9-1.1 s of the drop; the gateway's
    // jitter (up to 3 s here) spreads them further.
    assert!(
        last - first >= 600,
        "reconnects not spread: {:?}",
        stats.login_times_ms
    );
    println!(
        "{}",
        json!({"reconnect_first_ms": first, "reconnect_last_ms": last, "logins_ms": stats.login_times_ms})
    );
}
