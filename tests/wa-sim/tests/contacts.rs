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

/// `(dhash, items)` of a `<list>` answer; each item as `jid` and `lid`.
fn read_list(answer: &wacore_binary::OwnedNodeRef) -> (String, Vec<(String, String)>) {
    let (dhash, kind, items) = read_list_kind(answer);
    assert_eq!(
        kind.as_deref(),
        Some("mismatch"),
        "a full list is a mismatch"
    );
    (dhash, items)
}

/// `(dhash, type, items)` of a `<list>` answer.
fn read_list_kind(
    answer: &wacore_binary::OwnedNodeRef,
) -> (String, Option<String>, Vec<(String, String)>) {
    let node = answer.get().to_owned();
    let list = node.get_optional_child("list").expect("<list>");
    let attr = |name: &str| list.attrs.get(name).map(ToString::to_string);
    assert_eq!(attr("addressing_mode").as_deref(), Some("pn"));
    let items = list
        .get_children_by_tag("item")
        .map(|i| {
            let a = |name: &str| {
                i.attrs
                    .get(name)
                    .map(ToString::to_string)
                    .unwrap_or_default()
            };
            (a("jid"), a("lid"))
        })
        .collect();
    (attr("dhash").expect("dhash"), attr("type"), items)
}

fn dhash_item(dhash: &str) -> wacore_binary::Node {
    NodeBuilder::new("item")
        .attr("dhash", dhash.to_owned())
        .build()
}

async fn expect_refused(client: &TestClient, item: wacore_binary::Node, wanted: u16) {
    match client
        .client
        .send_iq(blocklist_iq(InfoQueryType::Set, Some(item)))
        .await
    {
        Err(IqError::ServerError { code, .. }) => assert_eq!(code, wanted),
        other => panic!("expected {wanted}, got {other:?}"),
    }
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

    assert!(
        client
            .client
            .blocking()
            .is_blocked(&Jid::pn(&target.phone))
            .await
            .expect("is_blocked")
    );
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
    // The list is in PN addressing: each entry carries the number and the LID.
    assert_eq!(items, vec![(target.jid.clone(), target.lid_jid.clone())]);

    // The dhash round trip: a client holding the current hash is told nothing changed; one
    // holding an old hash gets the whole list, marked as a mismatch.
    let (current, kind, items) = read_list_kind(
        &client
            .client
            .send_iq(blocklist_iq(InfoQueryType::Get, Some(dhash_item(&dhash))))
            .await
            .expect("get with the current hash"),
    );
    assert_eq!((current, kind, items.len()), (dhash.clone(), None, 0));
    let (_, kind, items) = read_list_kind(
        &client
            .client
            .send_iq(blocklist_iq(
                InfoQueryType::Get,
                Some(dhash_item(&empty_hash)),
            ))
            .await
            .expect("get with a stale hash"),
    );
    assert_eq!(kind.as_deref(), Some("mismatch"));
    assert_eq!(items, vec![(target.jid.clone(), target.lid_jid.clone())]);

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

    // A phone-number-only block, a LID block without the number, and a block naming another
    // user's number are refused, as WhatsApp does now.
    let pn_only = NodeBuilder::new("item")
        .attr("action", "block")
        .attr("jid", target.jid.clone())
        .build();
    expect_refused(&client, pn_only, 400).await;
    let lid_only = NodeBuilder::new("item")
        .attr("action", "block")
        .attr("jid", target.lid_jid.clone())
        .build();
    expect_refused(&client, lid_only, 400).await;
    let wrong_pn = NodeBuilder::new("item")
        .attr("action", "block")
        .attr("jid", target.lid_jid.clone())
        .attr("pn_jid", "5511900000020@s.whatsapp.net")
        .build();
    expect_refused(&client, wrong_pn, 400).await;

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
    assert!(
        !client
            .client
            .blocking()
            .is_blocked(&Jid::pn(&target.phone))
            .await
            .expect("is_blocked")
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_status_and_the_own_push_name() {
    init_logs();
    let sim = WaSim::start().await.expect("wa-sim starts");
    let control = sim.control();
    account(&control, "5511900000050", Some("Owner Name")).await;
    let shop = control
        .create_account(&wa_sim::CreateAccount {
            phone: "5511900000051".into(),
            business_name: Some("Corner Shop".into()),
            status: Some("Open 9 to 5".into()),
            business_profile: Some(wa_sim::BusinessProfile {
                description: Some("Groceries and more".into()),
                category: Some("Grocery store".into()),
                email: Some("shop@example.com".into()),
                websites: vec!["https://shop.example.com".into()],
                address: Some("1 Main St".into()),
            }),
            ..Default::default()
        })
        .await
        .expect("business account");
    let plain = account(&control, "5511900000052", None).await;
    let mut client = paired_client(&sim, "5511900000050").await;

    // The own push name arrives with the account_sync notification at login.
    let deadline = tokio::time::Instant::now() + EVENT_WAIT;
    while client.client.push_name() != "Owner Name" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "push name never set"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let profile = client
        .client
        .get_business_profile(&Jid::pn(&shop.phone))
        .await
        .expect("w:biz answered")
        .expect("a business has a profile");
    assert_eq!(profile.description, "Groceries and more");
    assert_eq!(profile.email.as_deref(), Some("shop@example.com"));
    assert_eq!(profile.address.as_deref(), Some("1 Main St"));
    assert_eq!(profile.website, vec!["https://shop.example.com".to_owned()]);
    assert_eq!(profile.categories[0].name, "Grocery store");
    let none = client
        .client
        .get_business_profile(&Jid::pn(&plain.phone))
        .await
        .expect("w:biz answered");
    assert!(none.is_none(), "{none:?}");

    let info = client
        .client
        .contacts()
        .get_user_info(&[Jid::pn(&shop.phone), Jid::pn(&plain.phone)])
        .await
        .expect("usync");
    let status_of = |phone: &str| {
        info.iter()
            .find(|(jid, _)| jid.user == phone)
            .map(|(_, i)| i.status.clone())
            .expect("answered")
    };
    assert_eq!(status_of(&shop.phone).as_deref(), Some("Open 9 to 5"));
    assert_eq!(status_of(&plain.phone), None);
    client.stop().await;
}
