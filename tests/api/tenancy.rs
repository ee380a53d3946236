//! Tenancy: a token only ever reaches its own tenant's data; another tenant's resource is 404.
//! The probes are generated from the route table, so a new route cannot escape them.

use axum::http::Method;
use serde_json::json;
use wuts_gateway::http::ROUTES;

use crate::helpers::TestApp;

/// A body that passes validation for routes that need one, so that the probe reaches the
/// ownership check rather than stopping at the body.
fn valid_body(method: &str, path: &str) -> Option<serde_json::Value> {
    match (method, path) {
        ("put", "/users/{id}") => Some(json!({"active": true})),
        ("post", "/users/{id}/promote") => Some(json!({"new_role": "user"})),
        _ => None,
    }
}

#[tokio::test]
async fn every_route_with_an_id_answers_404_for_another_tenants_resource() {
    let app = TestApp::spawn().await;
    let victim = app.register("victim").await;
    let attacker = app.register("attacker").await;
    let (victim_user, _) = app
        .create_user(&victim.admin_token, "v@victim.example", "user")
        .await;

    let mut probed = 0;
    for (method, template) in ROUTES {
        if !template.contains('{') || template.starts_with("/global/") {
            continue;
        }
        let path = if template.starts_with("/users/") {
            template.replace("{id}", &victim_user)
        } else {
            panic!("{method} {template}: add this route's resource to the tenancy probe");
        };
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let mut call = app.call(method.clone(), &path).token(&attacker.admin_token);
        if let Some(body) = valid_body(&method.as_str().to_lowercase(), template) {
            call = call.json(body);
        }
        let answer = call.send().await;
        answer.assert_error(404, "NOT_FOUND");
        probed += 1;
    }
    assert!(probed >= 5, "probed {probed} routes");

    // And nothing changed on the victim's side.
    let victim_view = app
        .get(&format!("/users/{victim_user}"))
        .token(&victim.admin_token)
        .send()
        .await;
    let user = &victim_view.assert_status(200)["user"];
    assert_eq!(user["role"], "user");
    assert_eq!(user["active"], true);
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
