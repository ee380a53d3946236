//! WhatsApp key material sealed at rest (`WUTS_STORE_KEY`): a paired session's keys are in
//! PostgreSQL only sealed; with the same key a restart reconnects without a QR; with another
//! key the device is `disconnected` with the reason, answers `DEVICE_NOT_READY` and keeps its
//! keys; a rotation (new key, old one as previous) reconnects at once, and `wuts store reseal`
//! moves every row to the new key, after which the old key can go.

use std::process::Command;

use clap::Parser;
use serde_json::{Value, json};
use wa_sim::WaSim;
use wuts_wa_store::seal::MAGIC;

use crate::helpers::TestApp;

const KEY_1: &str = "4f1c9a0b7d2e35c8a6b1f0e9d8c7b6a5948372615f4e3d2c1b0a998877665544";
const KEY_2: &str = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=";
const PHONE: &str = "5511900009101";

/// Every stored value of the columns that hold key material, as (column, value).
async fn key_material(app: &TestApp) -> Vec<(String, Vec<u8>)> {
    let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT 'wa_devices.data', data FROM wa_devices
         UNION ALL SELECT 'wa_sessions.record', record FROM wa_sessions
         UNION ALL SELECT 'wa_prekeys.record', record FROM wa_prekeys
         UNION ALL SELECT 'wa_signed_prekeys.record', record FROM wa_signed_prekeys
         UNION ALL SELECT 'wa_sender_keys.record', record FROM wa_sender_keys
         UNION ALL SELECT 'wa_app_sync_keys.key_data', key_data FROM wa_app_sync_keys
         UNION ALL SELECT 'wa_msg_secrets.secret', secret FROM wa_msg_secrets",
    )
    .fetch_all(&app.db.pool)
    .await
    .expect("key material");
    rows
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn set_keys(app: &mut TestApp, current: Option<&str>, previous: &[&str]) {
    app.config.store_keys.store_key = current.map(Into::into);
    app.config.store_keys.store_key_previous = previous.iter().map(|k| (*k).into()).collect();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_material_is_sealed_at_rest_and_needs_its_key() {
    let sim = WaSim::start().await.expect("wa-sim");
    sim.control()
        .create_account(&wa_sim::CreateAccount {
            phone: PHONE.to_owned(),
            push_name: Some("Selma".to_owned()),
            ..Default::default()
        })
        .await
        .expect("account created");
    let mut app = TestApp::spawn_with_sim_and(&sim, |config| {
        config.store_keys.store_key = Some(KEY_1.into());
    })
    .await;
    let tenant = app.register("sealed").await;
    let token = tenant.admin_token.clone();
    let device = app.create_device(&token, "sealed").await;
    app.pair(&sim, &token, &device, PHONE).await;

    // Everything holding keys is sealed; neither the account's name nor its number shows.
    let stored = key_material(&app).await;
    let columns: std::collections::BTreeSet<&str> =
        stored.iter().map(|(c, _)| c.as_str()).collect();
    for expected in ["wa_devices.data", "wa_prekeys.record"] {
        assert!(columns.contains(expected), "no {expected} row: {columns:?}");
    }
    for (column, value) in &stored {
        assert!(value.starts_with(&MAGIC), "{column} stored in clear");
        assert!(!contains(value, b"Selma"), "{column}");
        assert!(!contains(value, PHONE.as_bytes()), "{column}");
    }

    // The same key: back without a QR.
    sim.control().reset_stats().await.expect("reset");
    app.restart().await;
    app.wait_status(&token, &device, "connected").await;
    assert_eq!(sim.control().stats().await.expect("stats").pairings, 0);

    // Another key: the keys do not open; the device says why and keeps them. They are counted
    // once the running session has stopped and flushed its state (the phone's key share, which
    // consumes a pre-key and adds a session, may still be landing right after the pairing).
    app.sessions
        .shutdown(std::time::Duration::from_secs(15))
        .await;
    let kept = key_material(&app).await.len();
    set_keys(&mut app, Some(KEY_2), &[]);
    app.restart().await;
    let status = app.wait_status(&token, &device, "disconnected").await;
    let reason = status["last_error"].as_str().unwrap_or_default().to_owned();
    assert!(
        reason.contains("not configured") && reason.contains("wa_devices.data"),
        "{status}"
    );
    assert!(!reason.contains(KEY_1) && !reason.contains(KEY_2));
    let connect = app
        .post("/connect")
        .token(&token)
        .json(json!({"device_id": device}))
        .send()
        .await;
    connect.assert_error(409, "DEVICE_NOT_READY");
    assert!(
        connect.text.contains("stored keys cannot be read"),
        "{}",
        connect.text
    );
    assert_eq!(key_material(&app).await.len(), kept, "keys kept");

    // Rotation: key 2 seals, key 1 still opens; the session comes back without a QR.
    set_keys(&mut app, Some(KEY_2), &[KEY_1]);
    sim.control().reset_stats().await.expect("reset");
    app.restart().await;
    app.wait_status(&token, &device, "connected").await;
    assert_eq!(sim.control().stats().await.expect("stats").pairings, 0);

    // `wuts store reseal`, while the session runs, moves every row to key 2.
    let output = Command::new(env!("CARGO_BIN_EXE_wuts"))
        .args(["store", "reseal"])
        .env("DATABASE_URL", app.db.url())
        .env("WUTS_STORE_KEY", KEY_2)
        .env("WUTS_STORE_KEY_PREVIOUS", KEY_1)
        .env_remove("RUST_LOG")
        .output()
        .expect("wuts store reseal runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for text in [&stdout, &stderr] {
        assert!(
            !text.contains(KEY_1) && !text.contains(KEY_2),
            "a key was printed"
        );
    }
    let report: Value = serde_json::from_str(stdout.trim()).expect("one JSON report");
    assert_eq!(report["unreadable"], 0, "{report}");
    assert!(report["rewritten"].as_u64().unwrap_or(0) > 0, "{report}");
    let key_2_id = wuts_wa_store::StoreKey::parse(KEY_2).expect("key").id();
    assert_eq!(report["store_key"], key_2_id.as_str());
    let id_bytes: Vec<u8> = (0..4)
        .map(|i| u8::from_str_radix(&key_2_id[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    for (column, value) in key_material(&app).await {
        assert_eq!(&value[MAGIC.len()..MAGIC.len() + 4], id_bytes, "{column}");
    }

    // Key 1 can go.
    set_keys(&mut app, Some(KEY_2), &[]);
    sim.control().reset_stats().await.expect("reset");
    app.restart().await;
    app.wait_status(&token, &device, "connected").await;
    assert_eq!(sim.control().stats().await.expect("stats").pairings, 0);
    app.get(&format!("/contacts/blocklist?device_id={device}"))
        .token(&token)
        .send()
        .await
        .assert_status(200);
}

#[tokio::test]
async fn a_malformed_store_key_is_refused_at_startup_without_repeating_it() {
    for bad in ["not-a-key", &KEY_1[..40]] {
        let output = Command::new(env!("CARGO_BIN_EXE_wuts"))
            .args(["store", "reseal"])
            .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
            .env("WUTS_STORE_KEY", bad)
            .output()
            .expect("wuts runs");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("WUTS_STORE_KEY"), "{stderr}");
        assert!(!stderr.contains(bad), "{stderr}");
    }
    let config = {
        let mut cli = wuts_gateway::config::Cli::try_parse_from(["wuts"]).expect("parses");
        cli.serve.store_keys.store_key_previous = vec![KEY_1.into(), "nope".into()];
        cli.serve
    };
    let err = config.validate().expect_err("refused");
    assert!(err.contains("WUTS_STORE_KEY_PREVIOUS (key 2)"), "{err}");
    assert!(!format!("{config:?}").contains(KEY_1));
}
