//! Per-tenant request budgets: over budget is 429 RATE_LIMITED with Retry-After, one tenant's
//! flood leaves another untouched, the budget refills, and a tenant's own limits (its row)
//! override the default.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{MASTER_TOKEN, TestApp};

async fn spend(app: &TestApp, token: &str, requests: usize) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(requests);
    for _ in 0..requests {
        let answer = app.get("/devices").token(token).send().await;
        statuses.push(answer.status.as_u16());
    }
    statuses
}

#[tokio::test]
async fn tenants_have_their_own_budgets() {
    let app = TestApp::spawn_with(|config| {
        config.tenant_rps = 2.0;
        config.tenant_burst = 3;
    })
    .await;
    let flooding = app.register("flooding").await;
    let quiet = app.register("quiet").await;

    // The burst passes, the next request is refused with a hint of when to retry.
    assert_eq!(spend(&app, &flooding.admin_token, 3).await, vec![200; 3]);
    let refused = app
        .get("/devices")
        .token(&flooding.admin_token)
        .send()
        .await;
    refused.assert_error(429, "RATE_LIMITED");
    let retry_after: u64 = refused
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");

    // Another tenant is not slowed by the flood.
    assert_eq!(spend(&app, &quiet.admin_token, 3).await, vec![200; 3]);

    // The budget refills at its rate.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(spend(&app, &flooding.admin_token, 1).await, vec![200]);
}

#[tokio::test]
async fn a_tenants_own_limits_override_the_default() {
    let app = TestApp::spawn_with(|config| {
        config.tenant_rps = 2.0;
        config.tenant_burst = 3;
    })
    .await;
    let unlimited = app.register("unlimited").await;
    let strict = app.register("strict").await;
    let path = |id: &str| format!("/global/tenants/{id}");

    // The operator sets them through the master-token route; the answer shows them.
    let set = app
        .patch(&path(&unlimited.id))
        .token(MASTER_TOKEN)
        .json(json!({"rate_rps": 0}))
        .send()
        .await;
    let data = &set.assert_status(200)["data"];
    assert_eq!(data["rate_rps"], 0.0);
    assert!(data["rate_burst"].is_null());
    app.patch(&path(&strict.id))
        .token(MASTER_TOKEN)
        .json(json!({"rate_rps": 0.5, "rate_burst": 1}))
        .send()
        .await
        .assert_status(200);

    assert_eq!(spend(&app, &unlimited.admin_token, 20).await, vec![200; 20]);
    assert_eq!(spend(&app, &strict.admin_token, 2).await, vec![200, 429]);

    // `null` returns the tenant to the configured default (burst 3), at once on this node.
    let cleared = app
        .patch(&path(&strict.id))
        .token(MASTER_TOKEN)
        .json(json!({"rate_rps": null, "rate_burst": null}))
        .send()
        .await;
    let data = &cleared.assert_status(200)["data"];
    assert!(data["rate_rps"].is_null() && data["rate_burst"].is_null());
    assert_eq!(
        spend(&app, &strict.admin_token, 4).await,
        vec![200, 200, 200, 429]
    );

    // Bad values are named; a user token cannot change budgets; unknown tenants are 404.
    let bad = app
        .patch(&path(&strict.id))
        .token(MASTER_TOKEN)
        .json(json!({"rate_rps": -1, "rate_burst": 0}))
        .send()
        .await;
    bad.assert_validation("rate_rps");
    bad.assert_validation("rate_burst");
    app.patch(&path(&strict.id))
        .token(MASTER_TOKEN)
        .json(json!({}))
        .send()
        .await
        .assert_validation("body");
    app.patch(&path(&strict.id))
        .token(&unlimited.admin_token)
        .json(json!({"rate_rps": 0}))
        .send()
        .await
        .assert_status(403);
    app.patch(&path("00000000-0000-4000-8000-000000000000"))
        .token(MASTER_TOKEN)
        .json(json!({"rate_rps": 1}))
        .send()
        .await
        .assert_error(404, "NOT_FOUND");
}
