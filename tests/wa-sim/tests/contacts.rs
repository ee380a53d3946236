//! Contacts: usync lookups (batched, with LIDs), the block list with its dhash, and block-list
//! changes made on the phone reaching the companion.

#![expect(clippy::expect_used, clippy::panic, reason = "test code")]

mod support;

use std::time::Duration;

use support::*;
use wa_sim::WaSim;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, NodeContent, Server};
use whatsapp_rust::IqError;
use whatsapp_rust::request::{InfoQuery, InfoQueryType};
use whatsapp_rust::types::events::Event;

fn blocklist_iq(kind: InfoQueryType, item: Option<wacore_binary::Node>) -> InfoQuery<'static> {
    InfoQuery {
        namespace: "blocklist",
        query_type: kind,
        to: Jid::new("", Server::Pn),
        target: None,
        id: None,
        content: item.map(|n| NodeContent::Nodes(vec![n])),
        timeout: Some(Duration::from_secs(10)),
    }
}

/// `(dhash, items)` of a `<list>` answer.
fn read_list(answer: &wacore_binary::OwnedNodeRef) -> (String, Vec<String>) {
    let node = answer.get().to_owned();
    let list = node.get_optional_child("list").expect("<list>");
    let dhash = list
        .attrs
        .get("dhash")
        .map(ToString::to_string)
        .expect("dhash");
    let items = list
        .get_children_by_tag("item")
        .filter_map(|i| i.attrs.get("jid").map(ToString::to_string))
        .collect();
    (dhash, items)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_and_unblock_change_the_list_and_its_hash() {
    init_logs();
    let sim = WaSim::start().await.expect("wa-sim starts");
    let control = sim.control();
    account(&control, "5511900000020", Some("Owner")).await;
    let target = account(&control, "5511900000021", Some("Target")).await;
    let mut client = paired_client(&sim, "5511900000020").await;

    let (empty_hash, items) = read_list(
        &client
            .client
            .send_iq(blocklist_iq(InfoQueryType::Get, None))
            .await
            .expect("get"),
    );
    assert!(items.is_empty());

    // Learn the LID the way a client does, then block by phone number.
    let found = client
        .client
        .contacts()
        .is_on_whatsapp(&[Jid::pn(&target.phone)])
        .await
        .expect("usync");
    assert_eq!(
        found[0].lid.as_ref().map(|l| l.user.to_string()),
        Some(target.lid.clone())
    );
    client
        .client
        .blocking()
        .block(&Jid::pn(&target.phone))
        .await
        .expect("blocked");

    let after = control.account("5511900000020").await.expect("account");
    assert_eq!(after.blocklist.items, vec![target.lid_jid.clone()]);
    assert_ne!(after.blocklist.dhash, empty_hash);
    let (dhash, items) = read_list(
        &client
            .client
            .send_iq(blocklist_iq(InfoQueryType::Get, None))
            .await
            .expect("get"),
    );
    assert_eq!(dhash, after.blocklist.dhash);
    assert_eq!(items, vec![target.lid_jid.clone()]);

    // Blocking twice changes nothing.
    client
        .client
        .blocking()
        .block(&Jid::pn(&target.phone))
        .await
        .expect("again");
    assert_eq!(
        control.account("5511900000020").await.expect("a").blocklist,
        after.blocklist
    );

    // A phone-number-only block is refused, as WhatsApp does now.
    let pn_only = NodeBuilder::new("item")
        .attr("action", "block")
        .attr("jid", format!("{}@s.whatsapp.net", target.phone))
        .build();
    match client
        .client
        .send_iq(blocklist_iq(InfoQueryType::Set, Some(pn_only)))
        .await
    {
        Err(IqError::ServerError { code, .. }) => assert_eq!(code, 400),
        other => panic!("expected 400, got {other:?}"),
    }

    client
        .client
        .blocking()
        .unblock(&Jid::pn(&target.phone))
        .await
        .expect("unblocked");
    let (dhash, items) = read_list(
        &client
            .client
            .send_iq(blocklist_iq(InfoQueryType::Get, None))
            .await
            .expect("get"),
    );
    assert!(items.is_empty());
    assert_eq!(dhash, empty_hash);
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_made_on_the_phone_reaches_the_companion() {
    init_logs();
    let sim = WaSim::start().await.expect("wa-sim starts");
    let control = sim.control();
    account(&control, "5511900000030", Some("Owner")).await;
    let target = account(&control, "5511900000031", None).await;
    let mut client = paired_client(&sim, "5511900000030").await;
    let _lease = client.client.acquire_raw_node_forwarding();
    let view = control
        .change_blocklist("5511900000030", "block", &target.jid)
        .await
        .expect("phone blocks");
    let (dhash, item) = client
        .wait_for("the block-list notification", |e| match e {
            Event::RawNode(node) => {
                let node = node.get().to_owned();
                let blocklist = (node.tag == "notification")
                    .then(|| node.get_optional_child("blocklist"))
                    .flatten()?;
                let item = blocklist.get_optional_child("item")?;
                Some((
                    blocklist.attrs.get("dhash").map(ToString::to_string),
                    item.attrs.get("jid").map(ToString::to_string),
                ))
            }
            _ => None,
        })
        .await;
    assert_eq!(dhash, Some(view.dhash.clone()));
    assert_eq!(item, Some(target.lid_jid.clone()));
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_usync_answers_160_numbers_with_their_lids() {
    init_logs();
    let sim = WaSim::start().await.expect("wa-sim starts");
    let control = sim.control();
    account(&control, "5511900000040", Some("Owner")).await;
    let mut registered = Vec::new();
    for n in 0..100 {
        registered.push(account(&control, &format!("55118{n:08}"), None).await);
    }
    let unregistered: Vec<String> = (0..60).map(|n| format!("55117{n:08}")).collect();
    let mut client = paired_client(&sim, "5511900000040").await;
    control.reset_stats().await.expect("reset");

    let jids: Vec<Jid> = registered
        .iter()
        .map(|a| a.phone.clone())
        .chain(unregistered.iter().cloned())
        .map(|p| Jid::pn(&p))
        .collect();
    assert_eq!(jids.len(), 160);
    let results = client
        .client
        .contacts()
        .is_on_whatsapp(&jids)
        .await
        .expect("usync");
    let stats = control.stats().await.expect("stats");
    assert_eq!(stats.iq_count("usync", "get"), 1, "{stats:?}");
    let on = results.iter().filter(|r| r.is_registered).count();
    assert_eq!(on, 100);
    for account in &registered {
        let result = results
            .iter()
            .find(|r| r.jid.user == account.phone)
            .expect("answered");
        assert_eq!(
            result.lid.as_ref().map(|l| l.user.to_string()),
            Some(account.lid.clone())
        );
    }
    client.stop().await;
}
