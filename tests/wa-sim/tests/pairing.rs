//! Pairing and login: a plain whatsapp-rust client links to an account by QR code and by
//! pairing code, reconnects with its stored keys, and is logged out from the phone.

#![expect(clippy::expect_used, clippy::panic, reason = "test code")]

mod support;

use support::*;
use wa_sim::WaSim;
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
    eprintln!("STATS {stats:?}");
    assert_eq!(stats.pairings, 1);
    assert!(stats.logins >= 1);
    client.stop().await;
}
