//! Device records: creation and who sees what.

use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn a_new_device_is_unpaired_and_owned_by_its_creator() {
    let app = TestApp::spawn().await;
    let tenant = app.register("devs").await;
    let created = app
        .post("/devices")
        .token(&tenant.admin_token)
        .json(json!({"name": "  Sales line  "}))
        .send()
        .await;
    let device = &created.assert_status(201)["device"];
    assert_eq!(device["name"], "Sales line");
    assert_eq!(device["connected"], false);
    assert_eq!(device["user_id"].as_str(), Some(tenant.admin_id.as_str()));
    // The creation answer is the device object every other route answers.
    assert_eq!(device["status"], "unpaired");
    assert_eq!(device["whatsapp_jid"], serde_json::Value::Null);
    assert_eq!(device["last_seen"], serde_json::Value::Null);

    let list = app.get("/devices").token(&tenant.admin_token).send().await;
    let listed = &list.assert_status(200)["devices"][0];
    assert_eq!(listed, device);

    let id = device["id"].as_str().expect("id");
    let shown = app
        .get(&format!("/devices/{id}"))
        .token(&tenant.admin_token)
        .send()
        .await;
    assert_eq!(&shown.assert_status(200)["device"], device);
}

#[tokio::test]
async fn users_see_their_own_devices_and_managers_see_all() {
    let app = TestApp::spawn().await;
    let tenant = app.register("visibility").await;
    let (_, alice) = app
        .create_user(&tenant.admin_token, "a@visibility.example", "user")
        .await;
    let (bob_id, bob) = app
        .create_user(&tenant.admin_token, "b@visibility.example", "user")
        .await;
    let (_, manager) = app
        .create_user(&tenant.admin_token, "m@visibility.example", "manager")
        .await;
    let alice_device = app.create_device(&alice, "alice phone").await;
    let bob_device = app.create_device(&bob, "bob phone").await;

    let ids = |body: &serde_json::Value, key: &str| -> Vec<String> {
        body[key]
            .as_array()
            .expect("devices")
            .iter()
            .filter_map(|d| d["id"].as_str().map(str::to_owned))
            .collect()
    };
    let seen_by_alice = app.get("/devices").token(&alice).send().await;
    assert_eq!(
        ids(seen_by_alice.assert_status(200), "devices"),
        vec![alice_device.clone()]
    );
    for token in [&manager, &tenant.admin_token] {
        let all = app.get("/devices").token(token).send().await;
        let mut seen = ids(all.assert_status(200), "devices");
        seen.sort();
        let mut expected = vec![alice_device.clone(), bob_device.clone()];
        expected.sort();
        assert_eq!(seen, expected);
    }

    // /user/devices is always one's own, whatever the role.
    let own = app.get("/user/devices").token(&bob).send().await;
    let data = &own.assert_status(200)["data"];
    assert_eq!(data["count"], 1);
    assert_eq!(data["user_id"].as_str(), Some(bob_id.as_str()));
    assert_eq!(ids(data, "devices"), vec![bob_device.clone()]);
    let admin_own = app
        .get("/user/devices")
        .token(&tenant.admin_token)
        .send()
        .await;
    assert_eq!(admin_own.assert_status(200)["data"]["count"], 0);

    // One device by id: a user sees its own only, managers and admins any of the tenant's.
    let shown = |token: &str, id: &str| {
        let (app, token, id) = (&app, token.to_owned(), id.to_owned());
        async move {
            app.get(&format!("/devices/{id}"))
                .token(&token)
                .send()
                .await
        }
    };
    let own_device = shown(&alice, &alice_device).await;
    assert_eq!(
        own_device.assert_status(200)["device"]["id"].as_str(),
        Some(alice_device.as_str())
    );
    shown(&alice, &bob_device)
        .await
        .assert_error(404, "NOT_FOUND");
    for token in [&manager, &tenant.admin_token] {
        shown(token, &bob_device).await.assert_status(200);
    }
    shown(&alice, "not-a-uuid").await.assert_validation("id");
    shown(&alice, &uuid::Uuid::new_v4().to_string())
        .await
        .assert_error(404, "NOT_FOUND");
    let other = app.register("visibility-other").await;
    shown(&other.admin_token, &alice_device)
        .await
        .assert_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn device_names_are_validated() {
    let app = TestApp::spawn().await;
    let tenant = app.register("names").await;
    for name in [
        json!(""),
        json!("   "),
        json!("x".repeat(101)),
        json!(7),
        json!(null),
    ] {
        app.post("/devices")
            .token(&tenant.admin_token)
            .json(json!({ "name": name }))
            .send()
            .await
            .assert_validation("name");
    }
}
