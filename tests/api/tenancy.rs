//! Tenancy: a token only ever reaches its own tenant's data; another tenant's resource is 404.
//! The probes are generated from the route table and `openapi.yaml`, so a new route cannot
//! escape them.

use axum::http::Method;
use serde_json::{Value, json};
use wuts_gateway::http::ROUTES;

use crate::helpers::TestApp;
use crate::helpers::contract::document;

/// A body that passes validation for routes that need one, so that the probe reaches the
/// ownership check rather than stopping at the body.
fn valid_body(method: &str, path: &str, device: &str) -> Option<Value> {
    match (method, path) {
        ("put", "/users/{id}") => Some(json!({"active": true})),
        ("post", "/users/{id}/promote") => Some(json!({"new_role": "user"})),
        ("post", "/paircode") => Some(json!({"phone": "5511999990000", "device_id": device})),
        ("post", "/contacts/block") | ("post", "/contacts/unblock") => {
            Some(json!({"jid": "5511999990000@s.whatsapp.net"}))
        }
        ("post", "/contacts/resolve") => {
            Some(json!({"jids": ["5511999990000"], "device_id": device}))
        }
        ("post", "/contact/check") => {
            Some(json!({"numbers": ["5511999990000"], "device_id": device}))
        }
        ("post", "/groups") | ("post", "/communities") => {
            Some(json!({"name": "Probe", "device_id": device}))
        }
        ("patch", "/groups/{jid}") => Some(json!({"name": "Probe", "device_id": device})),
        (_, "/groups/{jid}/participants")
        | ("post" | "delete", "/communities/{jid}/participants") => {
            Some(json!({"participants": ["5511999990000"], "device_id": device}))
        }
        ("post" | "delete", "/communities/{jid}/groups") => {
            Some(json!({"group_jid": PROBE_GROUP, "device_id": device}))
        }
        ("post", "/groups/join") => Some(json!({"link": PROBE_LINK, "device_id": device})),
        ("post", "/groups/{jid}/requests") | ("post", "/communities/{jid}/requests") => Some(
            json!({"participants": ["5511999990000"], "action": "approve", "device_id": device}),
        ),
        ("put", "/groups/{jid}/ephemeral") => {
            Some(json!({"duration_seconds": 86400, "device_id": device}))
        }
        ("patch", "/communities/{jid}") => {
            Some(json!({"join_approval": true, "device_id": device}))
        }
        ("post", "/webhook") => Some(json!({
            "webhook_url": "http://127.0.0.1:9/hook", "enabled_events": ["*"], "device_id": device
        })),
        ("post", "/webhook/test") => Some(json!({"device_id": device})),
        // The account's pages.
        ("post", "/groups/{jid}/picture") | ("post", "/profile/picture") => {
            Some(json!({"image_base64": "/9j/4AAQ", "device_id": device}))
        }
        ("patch", "/privacy") => Some(json!({"LastSeen": "contacts", "device_id": device})),
        ("post", "/appstate/sync") => Some(json!({"scopes": ["contacts"], "device_id": device})),
        _ => None,
    }
}

/// A well-formed group JID for routes that take one.
const PROBE_GROUP: &str = "120363000000000001@g.us";
/// A well-formed invite link for routes that take one.
const PROBE_LINK: &str = "https://chat.whatsapp.com/AbCdEfGhIjKlMnOpQrStUv";

/// Query parameters a route needs besides `device_id` to reach the ownership check.
fn extra_query(template: &str) -> &'static str {
    match template {
        "/contacts/profile" => "&number=5511999990000",
        "/groups/invite-info" => "&link=AbCdEfGhIjKlMnOpQrStUv",
        "/contacts/profile-picture" => "&number=5511999990000",
        _ => "",
    }
}

fn operation(method: &str, template: &str) -> Value {
    let pointer = format!(
        "/paths/{}/{method}",
        template.replace('~', "~0").replace('/', "~1")
    );
    document().pointer(&pointer).cloned().unwrap_or(Value::Null)
}

fn takes_device_query(op: &Value) -> bool {
    op["parameters"].as_array().is_some_and(|params| {
        params
            .iter()
            .any(|p| p["$ref"] == "#/components/parameters/DeviceIdQuery")
    })
}

/// Roles that see only their own devices get the same answer for another user's device.
async fn probe_all(app: &TestApp, token: &str, victim_user: &str, victim_device: &str) -> usize {
    let mut probed = 0;
    for (method, template) in ROUTES {
        if template.starts_with("/global/") {
            continue;
        }
        let op = operation(method, template);
        let mut path = if template.starts_with("/users/") {
            template.replace("{id}", victim_user)
        } else if template.starts_with("/devices/") {
            template.replace("{id}", victim_device)
        } else if template.contains("{jid}") {
            template.replace("{jid}", PROBE_GROUP)
        } else if template.starts_with("/events/") {
            template.replace("{id}", &format!("evt_{}", "0".repeat(32)))
        } else if template.contains('{') {
            panic!("{method} {template}: add this route's resource to the tenancy probe");
        } else {
            (*template).to_owned()
        };
        let body = valid_body(method, template, victim_device);
        if takes_device_query(&op) {
            path = format!("{path}?device_id={victim_device}{}", extra_query(template));
        } else if !template.contains('{') && body.is_none() {
            continue;
        }
        let http_method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let mut call = app.call(http_method, &path).token(token);
        if let Some(body) = body {
            call = call.json(body);
        }
        let answer = call.send().await;
        answer.assert_error(404, "NOT_FOUND");
        probed += 1;
    }
    probed
}

#[tokio::test]
async fn every_route_answers_404_for_another_tenants_resource() {
    let app = TestApp::spawn().await;
    let victim = app.register("victim").await;
    let attacker = app.register("attacker").await;
    let (victim_user, _) = app
        .create_user(&victim.admin_token, "v@victim.example", "user")
        .await;
    let victim_device = app.create_device(&victim.admin_token, "victim phone").await;

    let probed = probe_all(&app, &attacker.admin_token, &victim_user, &victim_device).await;
    assert!(probed >= 38, "probed {probed} routes");

    // And nothing changed on the victim's side.
    let user = app
        .get(&format!("/users/{victim_user}"))
        .token(&victim.admin_token)
        .send()
        .await;
    let user = &user.assert_status(200)["user"];
    assert_eq!(user["role"], "user");
    assert_eq!(user["active"], true);
    let devices = app.get("/devices").token(&victim.admin_token).send().await;
    assert_eq!(
        devices.assert_status(200)["devices"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[tokio::test]
async fn a_user_cannot_reach_another_users_device_in_the_same_tenant() {
    let app = TestApp::spawn().await;
    let tenant = app.register("colleagues").await;
    let (_, alice) = app
        .create_user(&tenant.admin_token, "a@colleagues.example", "user")
        .await;
    let (_, bob) = app
        .create_user(&tenant.admin_token, "b@colleagues.example", "user")
        .await;
    let bob_device = app.create_device(&bob, "bob phone").await;
    for (method, path) in [
        (Method::GET, format!("/status?device_id={bob_device}")),
        (Method::GET, format!("/qr/status?device_id={bob_device}")),
        (Method::POST, format!("/disconnect?device_id={bob_device}")),
        (Method::POST, format!("/logout?device_id={bob_device}")),
        (Method::DELETE, format!("/devices/{bob_device}")),
    ] {
        app.call(method, &path)
            .token(&alice)
            .send()
            .await
            .assert_error(404, "NOT_FOUND");
    }
    // A manager of the same tenant may.
    let (_, manager) = app
        .create_user(&tenant.admin_token, "m@colleagues.example", "manager")
        .await;
    app.get(&format!("/status?device_id={bob_device}"))
        .token(&manager)
        .send()
        .await
        .assert_status(200);
}

#[tokio::test]
async fn lists_only_show_ones_own_tenant() {
    let app = TestApp::spawn().await;
    let a = app.register("tenant-a").await;
    let b = app.register("tenant-b").await;
    app.create_user(&a.admin_token, "only@a.example", "user")
        .await;
    let a_device = app.create_device(&a.admin_token, "a phone").await;

    let users = app.get("/users").token(&b.admin_token).send().await;
    let emails: Vec<&str> = users.assert_status(200)["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["email"].as_str())
        .collect();
    assert_eq!(emails, vec!["admin@tenant-b.example"]);

    let devices = app.get("/devices").token(&b.admin_token).send().await;
    let body = devices.assert_status(200);
    assert!(!body.to_string().contains(&a_device));
    assert_eq!(body["devices"].as_array().map(Vec::len), Some(0));
}
