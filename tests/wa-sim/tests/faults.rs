//! Injected faults: delays, error answers, silence, dropped connections.

#![expect(clippy::expect_used, clippy::panic, reason = "test code")]

mod support;

use std::time::{Duration, Instant};

use support::*;
use wa_sim::{Fault, WaSim};
use wacore_binary::{Jid, NodeContent, Server};
use whatsapp_rust::IqError;
use whatsapp_rust::request::{InfoQuery, InfoQueryType};
use whatsapp_rust::types::events::Event;

fn blocklist_query(timeout: Duration) -> InfoQuery<'static> {
    InfoQuery {
        namespace: "blocklist",
        query_type: InfoQueryType::Get,
        to: Jid::new("", Server::Pn),
        target: None,
        id: None,
        content: None::<NodeContent>,
        timeout: Some(timeout),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_error_and_silence_by_namespace() {
    init_logs();
    let sim = WaSim::start().await.expect("wa-sim starts");
    let control = sim.control();
    account(&control, "5511900000010", Some("Faulty")).await;
    let mut client = paired_client(&sim, "5511900000010").await;

    control
        .add_fault(&Fault::Delay {
            ms: 700,
            xmlns: Some("blocklist".into()),
        })
        .await
        .expect("fault");
    let started = Instant::now();
    client
        .client
        .send_iq(blocklist_query(Duration::from_secs(10)))
        .await
        .expect("answered late");
    assert!(
        started.elapsed() >= Duration::from_millis(650),
        "{:?}",
        started.elapsed()
    );
    control.clear_faults().await.expect("clear");

    control
        .add_fault(&Fault::Error {
            xmlns: "blocklist".into(),
            code: 503,
        })
        .await
        .expect("fault");
    match client
        .client
        .send_iq(blocklist_query(Duration::from_secs(10)))
        .await
    {
        Err(IqError::ServerError { code, .. }) => assert_eq!(code, 503),
        other => panic!("expected a 503, got {other:?}"),
    }
    control.clear_faults().await.expect("clear");

    control
        .add_fault(&Fault::NoAnswer {
            xmlns: "blocklist".into(),
        })
        .await
        .expect("fault");
    match client
        .client
        .send_iq(blocklist_query(Duration::from_millis(800)))
        .await
    {
        Err(IqError::Timeout) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    control.clear_faults().await.expect("clear");
    client
        .client
        .send_iq(blocklist_query(Duration::from_secs(10)))
        .await
        .expect("healthy again");
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_come_back() {
    init_logs();
    let sim = WaSim::start().await.expect("wa-sim starts");
    let control = sim.control();
    account(&control, "5511900000011", Some("Dropped")).await;
    let mut client = paired_client(&sim, "5511900000011").await;
    control
        .add_fault(&Fault::DropConnections { phone: None })
        .await
        .expect("fault");
    client
        .wait_for("Disconnected", |e| {
            matches!(e, Event::Disconnected(_)).then_some(())
        })
        .await;
    client.wait_connected().await;
    client.stop().await;
}
