//! Pairing and login: a plain whatsapp-rust client links to an account by QR code and by
//! pairing code, reconnects with its stored keys, and is logged out from the phone.

#![expect(clippy::expect_used, clippy::panic, reason = "test code")]

mod support;

use std::sync::Arc;

use support::*;
use wa_sim::WaSim;
use wacore::store::in_memory::InMemoryBackend;
use whatsapp_rust::types::events::Event;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_by_qr_and_logs_in() {
    init_logs();
    let sim = WaSim::start().await.expect("wa-sim starts");
    let control = sim.control();
    account(&control, "5511900000001", Some("Alice")).await;

    let mut client = TestClient::start(
        &sim,
        std::sync::Arc::new(wacore::store::in_memory::InMemoryBackend::new()),
    )
    .await;
    let qr = client.next_qr().await;
    assert!(qr.starts_with("2@"), "{qr}");
    let paired = control
        .scan_qr("5511900000001", &qr)
        .await
        .expect("scanned");
    assert_eq!(paired.device, 1);
    let jid = client
        .wait_for("PairSuccess", |e| match e {
            Event::PairSuccess(s) => Some(s.id.to_string()),
            _ => None,
        })
        .await;
    assert_eq!(jid, "5511900000001:1@s.whatsapp.net");
    client.wait_connected().await;

    let view = control.account("5511900000001").await.expect("account");
    assert_eq!(view.companions.len(), 1);
    assert!(view.companions[0].connected);
    let stats = control.stats().await.expect("stats");
    assert_eq!(stats.pairings, 1);
    assert!(stats.logins >= 1);
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_with_stored_keys_over_ik_without_pairing_again() {
    init_logs();
    let sim = WaSim::start().await.expect("wa-sim starts");
    let control = sim.control();
    account(&control, "5511900000002", Some("Bob")).await;
    let mut first = paired_client(&sim, "5511900000002").await;
    // The phone shared the app-state keys with its new companion, and the companion decrypted
    // them (a peer-message receipt, no retry receipt).
    let mut stats = control.stats().await.expect("stats");
    for _ in 0..50 {
        if stats.receipts.contains_key("peer_msg") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        stats = control.stats().await.expect("stats");
    }
    assert_eq!(stats.key_shares, 1, "{stats:?}");
    assert!(
        stats.receipts.get("peer_msg").is_some_and(|n| *n >= 1),
        "{stats:?}"
    );
    assert_eq!(stats.receipts.get("retry"), None, "{stats:?}");
    let backend = first.backend.clone();
    first.stop().await;
    control.reset_stats().await.expect("reset");

    let mut again = TestClient::start(&sim, backend).await;
    again.wait_connected().await;
    let stats = control.stats().await.expect("stats");
    assert_eq!(stats.handshake_count("ik"), 1, "{stats:?}");
    assert_eq!(stats.handshake_count("xx"), 0, "{stats:?}");
    assert_eq!(stats.pairings, 0);
    assert_eq!(stats.logins, 1);
    let view = control.account("5511900000002").await.expect("account");
    assert_eq!(view.companions.len(), 1, "no second companion was linked");
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_logout_unlinks_the_companion() {
    init_logs();
    let sim = WaSim::start().await.expect("wa-sim starts");
    let control = sim.control();
    account(&control, "5511900000003", None).await;
    let mut client = paired_client(&sim, "5511900000003").await;
    client.client.logout().await;
    let view = control.account("5511900000003").await.expect("account");
    assert!(view.companions.is_empty(), "{view:?}");
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_side_unlink_logs_the_companion_out() {
    init_logs();
    let sim = WaSim::start().await.expect("wa-sim starts");
    let control = sim.control();
    account(&control, "5511900000004", None).await;
    let mut client = paired_client(&sim, "5511900000004").await;
    control.unlink("5511900000004", 1).await.expect("unlinked");
    client
        .wait_for("LoggedOut", |e| {
            matches!(e, Event::LoggedOut(_)).then_some(())
        })
        .await;
    // Its keys no longer log in: a new connection with them is refused.
    let backend = client.backend.clone();
    client.stop().await;
    let mut stale = TestClient::start(&sim, backend).await;
    stale
        .wait_for("LoggedOut on login", |e| {
            matches!(e, Event::LoggedOut(_)).then_some(())
        })
        .await;
    stale.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_replaces_the_first() {
    init_logs();
    let sim = WaSim::start().await.expect("wa-sim starts");
    let control = sim.control();
    account(&control, "5511900000005", Some("Eve")).await;
    let mut first = paired_client(&sim, "5511900000005").await;
    let mut second = TestClient::start(&sim, first.backend.clone()).await;
    first
        .wait_for("StreamReplaced", |e| {
            matches!(e, Event::StreamReplaced(_)).then_some(())
        })
        .await;
    second.wait_connected().await;
    let view = control.account("5511900000005").await.expect("account");
    assert!(view.companions[0].connected);
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_by_code_then_log_in_again() {
    init_logs();
    let sim = WaSim::start().await.expect("wa-sim starts");
    let control = sim.control();
    account(&control, "5511900000060", Some("Coder")).await;
    let mut client = TestClient::start(&sim, Arc::new(InMemoryBackend::new())).await;
    client.next_qr().await;

    // Nobody asked for a code for this number yet.
    let none = control.enter_code("5511900000060", "ABCD1234").await;
    assert!(none.is_err(), "no companion waits for a code");

    let code = client
        .client
        .pair_with_code(wacore::pair_code::PairCodeOptions {
            phone_number: "5511900000060".to_owned(),
            ..Default::default()
        })
        .await
        .expect("a pairing code");
    assert_eq!(code.replace('-', "").len(), 8);
    let paired = control
        .enter_code("5511900000060", &code)
        .await
        .expect("the phone links the companion");
    assert_eq!(paired.phone, "5511900000060");
    client.wait_connected().await;
    let view = control.account("5511900000060").await.expect("account");
    assert_eq!(view.companions.len(), 1);

    // The credentials stored by the code flow log in again (IK).
    let backend = client.backend.clone();
    client.stop().await;
    let logins = control.stats().await.expect("stats").logins;
    let mut again = TestClient::start(&sim, backend).await;
    again.wait_connected().await;
    assert!(control.stats().await.expect("stats").logins > logins);
}
