//! The account's pages through a plain whatsapp-rust client: profile pictures (read, unchanged,
//! set, removed, hidden by privacy), privacy settings stored per account, app-state contact
//! patches that the client verifies and applies, and the MEX reach-out time-lock query.

#![expect(clippy::expect_used, clippy::panic, reason = "test code")]
// The end-to-end test is one long async function.
#![recursion_limit = "256"]

mod support;

use support::*;
use wa_sim::{AddContact, WaSim};
use wacore::iq::contacts::ProfilePictureSpec;
use wacore::iq::privacy::{PrivacyCategory, PrivacyValue};
use whatsapp_rust::IqError;
use whatsapp_rust::types::events::Event;

/// A tiny JPEG with `seed` in a comment segment.
fn jpeg(seed: u8) -> Vec<u8> {
    let mut image = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00, 0x00,
        0x01, 0x00, 0x01, 0x00, 0x00, 0xFF, 0xFE, 0x00, 0x03, seed,
    ];
    image.extend_from_slice(&[0xFF, 0xD9]);
    image
}

#[tokio::test]
async fn pictures_privacy_and_the_reachout_timelock() {
    init_logs();
    let sim = WaSim::start().await.expect("wa-sim");
    let control = sim.control();
    account(&control, "5511930000001", Some("Owner")).await;
    let alice = account(&control, "5511930000002", Some("Alice")).await;
    let mut client = paired_client(&sim, "5511930000001").await;
    let c = &client.client;
    let alice_jid: wacore_binary::Jid = alice.jid.parse().expect("jid");

    // No picture yet: whatsapp-rust reads WhatsApp's 404 as none.
    assert!(
        c.contacts()
            .get_profile_picture(&alice_jid, false)
            .await
            .expect("asked")
            .is_none()
    );
    let set = control
        .set_picture(&alice.phone, &Default::default())
        .await
        .expect("picture set");
    let got = c
        .contacts()
        .get_profile_picture(&alice_jid, true)
        .await
        .expect("asked")
        .expect("a picture");
    assert_eq!(got.id, set.id);
    assert!(got.url.starts_with("https://"));
    assert!(got.direct_path.is_some());
    // The id still current: the answer carries no URL (whatsapp-rust reads a cache hit).
    let mut spec = ProfilePictureSpec::full(&alice_jid);
    spec.existing_id = Some(set.id.clone());
    assert!(c.execute(spec).await.expect("asked").is_none());

    // Privacy: Alice hides her picture from everyone.
    let mut alice_client = paired_client(&sim, &alice.phone).await;
    alice_client
        .client
        .set_privacy_setting(PrivacyCategory::Profile, PrivacyValue::None)
        .await
        .expect("privacy set");
    assert_eq!(
        control.privacy(&alice.phone).await.expect("privacy")["profile"],
        "none"
    );
    assert!(
        c.contacts()
            .get_profile_picture(&alice_jid, true)
            .await
            .expect("asked")
            .is_none(),
        "hidden (401) reads as none"
    );
    let settings = alice_client
        .client
        .fetch_privacy_settings()
        .await
        .expect("fetched");
    assert_eq!(
        settings.get_value(&PrivacyCategory::Profile),
        Some(&PrivacyValue::None)
    );
    assert_eq!(
        settings.get_value(&PrivacyCategory::Last),
        Some(&PrivacyValue::All)
    );
    alice_client.stop().await;

    // Own picture set and removed.
    let own = c.profile().set_profile_picture(jpeg(1)).await.expect("set");
    assert_eq!(
        control
            .picture("5511930000001@s.whatsapp.net")
            .await
            .expect("stored")
            .id,
        own.id
    );
    let refused = c
        .profile()
        .set_profile_picture(b"not a jpeg".to_vec())
        .await;
    assert!(refused.is_err(), "a PNG or junk is refused");
    c.profile().remove_profile_picture().await.expect("removed");
    assert_eq!(
        control
            .picture("5511930000001@s.whatsapp.net")
            .await
            .map_err(|e| e.status)
            .err(),
        Some(404)
    );

    // A group's picture, by its admin.
    let group = c
        .groups()
        .create_group(whatsapp_rust::features::GroupCreateOptions::new("Pics"))
        .await
        .expect("group");
    let gid = group.metadata.id.clone();
    let set = c
        .groups()
        .set_profile_picture(gid.clone(), jpeg(2))
        .await
        .expect("group picture");
    assert_eq!(
        control.picture(&gid.to_string()).await.expect("stored").id,
        set.id
    );

    // The reach-out time-lock, through MEX.
    let lock = c.mex().fetch_reachout_timelock().await.expect("mex");
    assert_eq!(lock.is_active, Some(false));
    let locked = control
        .set_reachout_timelock("5511930000001", 600)
        .await
        .expect("locked");
    let lock = c.mex().fetch_reachout_timelock().await.expect("mex");
    assert_eq!(lock.is_active, Some(true));
    assert_eq!(
        lock.time_enforcement_ends,
        locked.until.map(|u| u.to_string())
    );
    // A 463 as a fault.
    control
        .add_fault(&wa_sim::Fault::Error {
            xmlns: "w:g2".into(),
            code: 463,
        })
        .await
        .expect("fault");
    match c.groups().get_metadata(&gid).await {
        Err(whatsapp_rust::features::GroupError::Iq(IqError::ServerError { code, .. })) => {
            assert_eq!(code, 463)
        }
        other => panic!("expected a 463, got {other:?}"),
    }
    control.clear_faults().await.expect("clear");
    client.stop().await;
}

#[tokio::test]
async fn contacts_saved_on_the_phone_reach_the_companion_through_app_state() {
    init_logs();
    let sim = WaSim::start().await.expect("wa-sim");
    let control = sim.control();
    account(&control, "5511930000011", Some("Owner")).await;
    let bea = account(&control, "5511930000012", Some("Bea")).await;
    let mut client = paired_client(&sim, "5511930000011").await;
    // Saved on the phone once the companion is linked.
    control
        .add_contact(
            "5511930000011",
            &AddContact {
                phone: bea.phone.clone(),
                full_name: Some("Bea Souza".to_owned()),
                first_name: Some("Bea".to_owned()),
                lid_jid: None,
            },
        )
        .await
        .expect("saved");
    // The companion syncs the collection once it holds the phone's key (shared after its
    // pre-key upload): ask until the contact arrives.
    let mut first = None;
    for _ in 0..10 {
        sync_contacts(&client).await;
        let seen = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            client.wait_for("the contact from app state", |e| match e {
                Event::ContactUpdate(update) => Some((
                    update.jid.to_string(),
                    update.action.full_name.clone(),
                    update.action.lid_jid.clone(),
                )),
                _ => None,
            }),
        )
        .await;
        if let Ok(seen) = seen {
            first = Some(seen);
            break;
        }
    }
    let (jid, full_name, lid) = first.expect("the contact from app state");
    assert_eq!(jid, bea.jid);
    assert_eq!(full_name.as_deref(), Some("Bea Souza"));
    assert_eq!(lid.as_deref(), Some(bea.lid_jid.as_str()));

    // A second one, saved later, arrives at the next sync of the collection, verified.
    let carl = account(&control, "5511930000013", Some("Carl")).await;
    let added = control
        .add_contact(
            "5511930000011",
            &AddContact {
                phone: carl.phone.clone(),
                full_name: Some("Carl Dias".to_owned()),
                ..Default::default()
            },
        )
        .await
        .expect("saved");
    assert_eq!(added.version, 2);
    sync_contacts(&client).await;
    let name = client
        .wait_for("the second contact", |e| match e {
            Event::ContactUpdate(update) if update.jid.to_string() == carl.jid => {
                update.action.full_name.clone()
            }
            _ => None,
        })
        .await;
    assert_eq!(name, "Carl Dias");
    client.stop().await;
}

/// Asks the client to sync the collection address-book contacts are in.
async fn sync_contacts(client: &TestClient) {
    client
        .client
        .process_sync_task(whatsapp_rust::sync_task::MajorSyncTask::AppStateSync {
            name: wacore::appstate::patch_decode::WAPatchName::CriticalUnblockLow,
            full_sync: false,
        })
        .await;
}
