//! `Idempotency-Key`: a retry is answered again instead of done twice (checked in the database
//! and in wa-sim), a reused key is a conflict, keys are scoped per tenant, answers a retry
//! should redo are not kept, and two gateway nodes on one database do the work once.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use wa_sim::{Fault, WaSim};
use wuts_gateway::domain::idempotency::{IdempotencyKey, KeyScope, RequestParts};
use wuts_gateway::domain::{TenantId, UserId};
use wuts_gateway::http::idempotency::Bypass;
use wuts_gateway::store::idempotency as keys;

use crate::helpers::{MASTER_TOKEN, Tenant, TestApp, TestResponse, contract, sim_account};

const KEY: &str = "idempotency-key";
const REPLAYED: &str = "idempotent-replayed";

fn replayed(answer: &TestResponse) -> bool {
    answer
        .headers
        .get(REPLAYED)
        .is_some_and(|v| v.as_bytes() == b"true")
}

async fn device_count(app: &TestApp, tenant: &Tenant) -> usize {
    app.get("/devices")
        .token(&tenant.admin_token)
        .send()
        .await
        .assert_status(200)["devices"]
        .as_array()
        .map(Vec::len)
        .unwrap_or_default()
}

async fn create_device(app: &TestApp, token: &str, key: &str, name: &str) -> TestResponse {
    app.post("/devices")
        .token(token)
        .header(KEY, key)
        .json(json!({"name": name}))
        .send()
        .await
}

async fn key_rows(app: &TestApp) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&app.db.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn the_same_key_and_request_is_answered_again_without_doing_it_twice() {
    let app = TestApp::spawn().await;
    let tenant = app.register("idem-same").await;

    let first = create_device(&app, &tenant.admin_token, "k-1", "phone").await;
    first.assert_status(201);
    assert!(!replayed(&first), "a first answer is not a replay");
    let again = create_device(&app, &tenant.admin_token, "k-1", "phone").await;
    again.assert_status(201);
    assert!(replayed(&again), "{:?}", again.headers);
    assert_eq!(again.text, first.text, "the first answer, byte for byte");
    assert_eq!(again.headers["content-type"], first.headers["content-type"]);
    assert_ne!(
        again.headers["x-request-id"], first.headers["x-request-id"],
        "each request keeps its own id"
    );
    assert_eq!(device_count(&app, &tenant).await, 1, "one device created");

    // Without the header, or with another key, it is another request.
    create_device(&app, &tenant.admin_token, "k-2", "phone")
        .await
        .assert_status(201);
    assert_eq!(device_count(&app, &tenant).await, 2);
}

#[tokio::test]
async fn the_same_key_with_another_request_is_a_conflict() {
    let app = TestApp::spawn().await;
    let tenant = app.register("idem-other").await;
    create_device(&app, &tenant.admin_token, "k", "phone")
        .await
        .assert_status(201);

    let other_body = create_device(&app, &tenant.admin_token, "k", "tablet").await;
    other_body.assert_error(409, "CONFLICT");
    assert!(
        other_body.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("Idempotency-Key")),
        "the error names the header: {}",
        other_body.text
    );
    // Another route, or the same route with another query, is another request too.
    app.post("/users")
        .token(&tenant.admin_token)
        .header(KEY, "k")
        .json(json!({"name": "phone"}))
        .send()
        .await
        .assert_error(409, "CONFLICT");
    app.post("/devices?device_id=00000000-0000-4000-8000-000000000000")
        .token(&tenant.admin_token)
        .header(KEY, "k")
        .json(json!({"name": "phone"}))
        .send()
        .await
        .assert_error(409, "CONFLICT");
    assert_eq!(device_count(&app, &tenant).await, 1);
}

#[tokio::test]
async fn keys_are_scoped_per_tenant_and_never_answered_to_another_user() {
    let app = TestApp::spawn().await;
    let acme = app.register("idem-acme").await;
    let globex = app.register("idem-globex").await;

    let mine = create_device(&app, &acme.admin_token, "shared-key", "phone").await;
    mine.assert_status(201);
    // Another tenant, the same key and body: its own request, its own device.
    let theirs = create_device(&app, &globex.admin_token, "shared-key", "phone").await;
    theirs.assert_status(201);
    assert!(!replayed(&theirs));
    assert_ne!(theirs.body["device"]["id"], mine.body["device"]["id"]);
    assert_eq!(device_count(&app, &acme).await, 1);
    assert_eq!(device_count(&app, &globex).await, 1);

    // Another user of the same tenant with that key: a conflict, not the admin's answer.
    let (_, manager) = app
        .create_user(&acme.admin_token, "manager@acme.example", "manager")
        .await;
    create_device(&app, &manager, "shared-key", "phone")
        .await
        .assert_error(409, "CONFLICT");
    assert_eq!(device_count(&app, &acme).await, 1);

    // Deleting a tenant forgets its keys.
    let before = key_rows(&app).await;
    app.delete(&format!("/global/tenants/{}", globex.id))
        .token(MASTER_TOKEN)
        .send()
        .await
        .assert_status(200);
    assert_eq!(key_rows(&app).await, before - 1);
}

#[tokio::test]
async fn register_has_its_own_scope_and_its_token_is_not_kept_readable() {
    let app = TestApp::spawn().await;
    let body = json!({"tenant_name": "idem-reg", "email": "admin@idem-reg.example"});
    let register = || {
        app.post("/register")
            .token(MASTER_TOKEN)
            .header(KEY, "register-1")
            .json(body.clone())
            .send()
    };
    let first = register().await;
    first.assert_status(201);
    let again = register().await;
    again.assert_status(201);
    assert!(replayed(&again));
    assert_eq!(again.body, first.body);
    let listed = app.get("/tenants").token(MASTER_TOKEN).send().await;
    assert_eq!(
        listed.assert_status(200)["tenants"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // The replayed token is the tenant admin's working token.
    let token = first.body["token"].as_str().expect("token");
    app.get("/users")
        .token(token)
        .send()
        .await
        .assert_status(200);

    // The master scope is not a tenant's: the admin may use the same key for its own request.
    let tenant = Tenant {
        id: first.body["tenant"]["id"].as_str().expect("id").to_owned(),
        admin_id: first.body["user"]["id"].as_str().expect("id").to_owned(),
        admin_token: token.to_owned(),
    };
    create_device(&app, &tenant.admin_token, "register-1", "phone")
        .await
        .assert_status(201);

    // Neither the key, the token nor the request is readable in the database.
    // (key_hash, fingerprint, answer)
    type StoredRow = (Vec<u8>, Vec<u8>, Option<Vec<u8>>);
    let rows: Vec<StoredRow> =
        sqlx::query_as("SELECT key_hash, fingerprint, answer FROM idempotency_keys")
            .fetch_all(&app.db.pool)
            .await
            .expect("rows");
    assert_eq!(rows.len(), 2);
    for (key_hash, fingerprint, answer) in rows {
        for stored in [key_hash, fingerprint, answer.expect("an answer")] {
            for secret in [token, "register-1", "idem-reg", MASTER_TOKEN] {
                assert!(
                    !stored.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "`{secret}` readable in a stored row"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_bad_key_is_a_validation_error_naming_the_header() {
    let app = TestApp::spawn().await;
    let tenant = app.register("idem-bad").await;
    for bad in [String::new(), "k".repeat(256), "tab\there".to_owned()] {
        create_device(&app, &tenant.admin_token, &bad, "phone")
            .await
            .assert_validation("Idempotency-Key");
    }
    assert_eq!(device_count(&app, &tenant).await, 0, "nothing done");
    // The longest key is fine.
    create_device(&app, &tenant.admin_token, &"k".repeat(255), "phone")
        .await
        .assert_status(201);
    // Without credentials, the caller is refused first.
    app.post("/devices")
        .header(KEY, "")
        .json(json!({"name": "phone"}))
        .send()
        .await
        .assert_error(401, "UNAUTHORIZED");
    // Routes that take no key ignore it.
    app.get("/devices")
        .token(&tenant.admin_token)
        .header(KEY, "")
        .send()
        .await
        .assert_status(200);
}

/// Sends a request through `router` as [`crate::helpers::Call`] does, with the extension the
/// gateway puts on a request forwarded from another node when `bypass` is set.
async fn send_to(
    router: &Router,
    method: Method,
    path: &str,
    token: &str,
    key: &str,
    body: &Value,
    bypass: bool,
) -> TestResponse {
    let mut request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header(KEY, key)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("request");
    if bypass {
        request.extensions_mut().insert(Bypass);
    }
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("router is infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    contract::check_response(&method, path, status, &headers, &body);
    TestResponse {
        status,
        headers,
        body,
        text,
    }
}

#[tokio::test]
async fn a_forwarded_request_is_let_through() {
    let app = TestApp::spawn().await;
    let tenant = app.register("idem-bypass").await;
    let body = json!({"name": "phone"});
    for _ in 0..2 {
        let answer = send_to(
            &app.router,
            Method::POST,
            "/devices",
            &tenant.admin_token,
            "forwarded",
            &body,
            true,
        )
        .await;
        answer.assert_status(201);
        assert!(!replayed(&answer));
    }
    assert_eq!(device_count(&app, &tenant).await, 2);
    assert_eq!(key_rows(&app).await, 0, "nothing claimed");
}

#[tokio::test]
async fn a_claim_left_by_a_dead_node_is_waited_for_then_taken_over() {
    let app = TestApp::spawn_with(|config| {
        // The wait for another request's answer is half of it: 1 s.
        config.request_timeout = std::time::Duration::from_secs(2);
    })
    .await;
    let tenant = app.register("idem-dead").await;
    // A node claimed the key for this very request, then died.
    let body = json!({"name": "phone"});
    let derived = IdempotencyKey::parse(b"k")
        .expect("key")
        .derive(KeyScope::Tenant(TenantId(
            tenant.id.parse().expect("tenant id"),
        )));
    let fingerprint = derived.fingerprint(RequestParts {
        caller: Some(UserId(tenant.admin_id.parse().expect("user id"))),
        method: "POST",
        path: "/devices",
        query: "",
        body: &serde_json::to_vec(&body).expect("json"),
    });
    let tenant_id = Some(TenantId(tenant.id.parse().expect("tenant id")));
    let claim = keys::claim(
        &app.db.pool,
        tenant_id,
        derived.id,
        fingerprint,
        std::time::Duration::from_secs(3600),
    )
    .await
    .expect("claimed");
    assert!(matches!(claim, keys::Claim::Held(_)), "{claim:?}");

    // While it is young: waited for, then in progress.
    let started = std::time::Instant::now();
    let waiting = create_device(&app, &tenant.admin_token, "k", "phone").await;
    waiting.assert_error(409, "CONFLICT");
    assert!(
        waiting.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("in progress")),
        "{}",
        waiting.text
    );
    assert_eq!(waiting.headers["retry-after"], "1");
    assert!(started.elapsed() >= std::time::Duration::from_millis(800));
    // Another request with that key is refused at once.
    create_device(&app, &tenant.admin_token, "k", "tablet")
        .await
        .assert_error(409, "CONFLICT");
    assert_eq!(device_count(&app, &tenant).await, 0);

    // Older than the request timeout and its margin: taken over by the retry.
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '1 minute'")
        .execute(&app.db.pool)
        .await
        .expect("aged");
    let taken = create_device(&app, &tenant.admin_token, "k", "phone").await;
    taken.assert_status(201);
    assert!(!replayed(&taken));
    let again = create_device(&app, &tenant.admin_token, "k", "phone").await;
    assert!(replayed(&again));
    assert_eq!(again.text, taken.text);
    assert_eq!(device_count(&app, &tenant).await, 1);
}

#[tokio::test]
async fn answers_expire_after_a_day_and_are_pruned() {
    let app = TestApp::spawn().await;
    let tenant = app.register("idem-expiry").await;
    for key in ["old", "older"] {
        create_device(&app, &tenant.admin_token, key, "phone")
            .await
            .assert_status(201);
    }
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
        .execute(&app.db.pool)
        .await
        .expect("aged");
    // An expired key is a new request.
    let redone = create_device(&app, &tenant.admin_token, "old", "phone").await;
    redone.assert_status(201);
    assert!(!replayed(&redone));
    assert_eq!(device_count(&app, &tenant).await, 3);
    // The other expired row goes at the next prune; the fresh one stays.
    assert_eq!(keys::prune(&app.db.pool, 100).await.expect("pruned"), 1);
    assert_eq!(key_rows(&app).await, 1);
    let replay = create_device(&app, &tenant.admin_token, "old", "phone").await;
    assert!(replayed(&replay));
}

/// A wa-sim with `owner`, a gateway and a tenant whose device is `owner`'s companion (paired
/// only when `paired`).
async fn with_device(owner: &str, paired: bool) -> (WaSim, TestApp, Tenant, String) {
    let sim = WaSim::start().await.expect("wa-sim");
    sim_account(&sim, owner).await;
    let app = TestApp::spawn_with_sim(&sim).await;
    let tenant = app.register(&format!("idem{owner}")).await;
    let device = app.create_device(&tenant.admin_token, "groups").await;
    if paired {
        app.pair(&sim, &tenant.admin_token, &device, owner).await;
    }
    (sim, app, tenant, device)
}

/// The communities named `name` that `phone` is in, as wa-sim knows them.
async fn sim_communities(sim: &WaSim, phone: &str, name: &str) -> usize {
    let control = sim.control();
    let jids = control.account(phone).await.expect("account").groups;
    let mut found = 0;
    for jid in jids {
        let group = control.group(&jid).await.expect("group");
        if group.is_community && group.subject == name {
            found += 1;
        }
    }
    found
}

#[tokio::test]
async fn a_community_is_created_once_and_a_not_stored_refusal_is_retried() {
    let owner = "5511900000901";
    let (sim, app, tenant, device) = with_device(owner, false).await;
    let path = format!("/communities?device_id={device}");
    let create = || {
        app.post(&path)
            .token(&tenant.admin_token)
            .header(KEY, "community-1")
            .json(json!({"name": "Street", "description": "Street news"}))
            .send()
    };

    // The device is not connected: a refusal a retry should redo, so not kept.
    create().await.assert_error(409, "DEVICE_NOT_READY");
    assert_eq!(key_rows(&app).await, 0, "the claim is released");

    assert_eq!(sim_communities(&sim, owner, "Street").await, 0);
    app.pair(&sim, &tenant.admin_token, &device, owner).await;
    let first = create().await;
    first.assert_status(200);
    assert!(!replayed(&first));
    assert_eq!(sim_communities(&sim, owner, "Street").await, 1);

    let again = create().await;
    again.assert_status(200);
    assert!(replayed(&again));
    assert_eq!(again.text, first.text);
    assert_eq!(
        sim_communities(&sim, owner, "Street").await,
        1,
        "not created twice"
    );
    let listed = app
        .get(&format!("/communities?device_id={device}"))
        .token(&tenant.admin_token)
        .send()
        .await;
    assert_eq!(listed.assert_status(200)["count"], 1);
}

#[tokio::test]
async fn two_gateways_on_one_database_create_one_community() {
    let owner = "5511900000902";
    let (sim, app, tenant, device) = with_device(owner, true).await;
    // A second node on the same database. The device's session runs on the first one, so
    // the second can only wait for the first one's answer, or answer DEVICE_NOT_READY (not
    // kept) when it claims the key first.
    let other = wuts_gateway::startup::build(app.db.pool.clone(), &app.config)
        .await
        .expect("second gateway builds");
    let nodes = [app.router.clone(), other.router.clone()];
    let path = format!("/communities?device_id={device}");
    let body = json!({"name": "Street"});

    // Six requests at once, three on each node.
    let answers = futures::future::join_all((0..6).map(|i| {
        send_to(
            &nodes[i % 2],
            Method::POST,
            &path,
            &tenant.admin_token,
            "at-once",
            &body,
            false,
        )
    }))
    .await;
    assert_eq!(
        sim_communities(&sim, owner, "Street").await,
        1,
        "one community"
    );
    let created: Vec<&TestResponse> = answers.iter().filter(|a| a.status == 200).collect();
    assert_eq!(
        created.iter().filter(|a| !replayed(a)).count(),
        1,
        "one request did the work: {answers:?}"
    );
    for answer in &answers {
        if answer.status == 200 {
            assert_eq!(answer.text, created[0].text);
        } else {
            answer.assert_error(409, "DEVICE_NOT_READY");
        }
    }
    for (i, answer) in answers.iter().enumerate() {
        if i % 2 == 0 {
            answer.assert_status(200);
        }
    }

    // The second node gets the retry while the first is still answering: it waits for the
    // first one's answer and gives it again.
    sim.control()
        .add_fault(&Fault::Delay {
            ms: 600,
            xmlns: Some("w:g2".to_owned()),
        })
        .await
        .expect("fault");
    let body = json!({"name": "Garden"});
    let first = send_to(
        &nodes[0],
        Method::POST,
        &path,
        &tenant.admin_token,
        "slow",
        &body,
        false,
    );
    let retry = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        send_to(
            &nodes[1],
            Method::POST,
            &path,
            &tenant.admin_token,
            "slow",
            &body,
            false,
        )
        .await
    };
    let (first, retry) = tokio::join!(first, retry);
    sim.control().clear_faults().await.expect("faults cleared");
    first.assert_status(200);
    retry.assert_status(200);
    assert!(!replayed(&first));
    assert!(replayed(&retry), "{:?}", retry.headers);
    assert_eq!(retry.text, first.text);
    assert_eq!(
        sim_communities(&sim, owner, "Garden").await,
        1,
        "one community"
    );
    other
        .sessions
        .shutdown(std::time::Duration::from_secs(5))
        .await;
    other
        .deliveries
        .shutdown(std::time::Duration::from_secs(5))
        .await;
}
