//! Bearer tokens, the master token, and what each may reach.

use serde_json::json;

use crate::helpers::{MASTER_TOKEN, TestApp};

#[tokio::test]
async fn every_accepted_spelling_of_a_token_works() {
    let app = TestApp::spawn().await;
    let tenant = app.register("spelling").await;
    let token = &tenant.admin_token;
    for header in [
        format!("Bearer {token}"),
        format!("bearer {token}"),
        format!("BEARER {token}"),
        token.clone(),
        token.to_uppercase(),
    ] {
        app.get("/users")
            .header("authorization", &header)
            .send()
            .await
            .assert_status(200);
    }
}

#[tokio::test]
async fn bad_credentials_are_401() {
    let app = TestApp::spawn().await;
    let tenant = app.register("badcreds").await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let basic = format!("Basic {}", tenant.admin_token);
    for header in [
        None,
        Some(""),
        Some("Bearer"),
        Some("garbage"),
        Some(unknown.as_str()),
        Some(basic.as_str()),
        Some("Bearer not-a-uuid-at-all"),
    ] {
        let mut call = app.get("/users");
        if let Some(value) = header {
            call = call.header("authorization", value);
        }
        call.send().await.assert_error(401, "UNAUTHORIZED");
    }
}

#[tokio::test]
async fn tokens_are_read_from_the_header_only() {
    let app = TestApp::spawn().await;
    let tenant = app.register("headeronly").await;
    app.get(&format!("/users?token={}", tenant.admin_token))
        .send()
        .await
        .assert_error(401, "UNAUTHORIZED");
    app.get(&format!("/users?access_token={}", tenant.admin_token))
        .send()
        .await
        .assert_error(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn deactivated_rotated_and_deleted_tokens_stop_at_once() {
    let app = TestApp::spawn().await;
    let tenant = app.register("revoke").await;
    let (alice, alice_token) = app
        .create_user(&tenant.admin_token, "alice@revoke.example", "user")
        .await;
    let (bob, bob_token) = app
        .create_user(&tenant.admin_token, "bob@revoke.example", "user")
        .await;
    let (_, carol_token) = app
        .create_user(&tenant.admin_token, "carol@revoke.example", "user")
        .await;

    // Warm the cache for each token first: revocation must beat the cache.
    for token in [&alice_token, &bob_token, &carol_token] {
        app.get("/user/devices")
            .token(token)
            .send()
            .await
            .assert_status(200);
    }

    app.put(&format!("/users/{alice}"))
        .token(&tenant.admin_token)
        .json(json!({"active": false}))
        .send()
        .await
        .assert_status(200);
    app.get("/user/devices")
        .token(&alice_token)
        .send()
        .await
        .assert_error(401, "UNAUTHORIZED");

    // Reactivation restores the same token.
    app.put(&format!("/users/{alice}"))
        .token(&tenant.admin_token)
        .json(json!({"active": true}))
        .send()
        .await
        .assert_status(200);
    app.get("/user/devices")
        .token(&alice_token)
        .send()
        .await
        .assert_status(200);

    let rotated = app
        .post(&format!("/users/{bob}/token"))
        .token(&bob_token)
        .send()
        .await;
    let new_token = rotated.assert_status(201)["token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_ne!(new_token, bob_token);
    app.get("/user/devices")
        .token(&bob_token)
        .send()
        .await
        .assert_error(401, "UNAUTHORIZED");
    app.get("/user/devices")
        .token(&new_token)
        .send()
        .await
        .assert_status(200);

    let carol = app
        .create_user(&tenant.admin_token, "dave@revoke.example", "user")
        .await;
    app.delete(&format!("/users/{}", carol.0))
        .token(&tenant.admin_token)
        .send()
        .await
        .assert_status(200);
    app.get("/user/devices")
        .token(&carol.1)
        .send()
        .await
        .assert_error(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn master_token_only_on_super_admin_routes_and_user_tokens_never_there() {
    let app = TestApp::spawn().await;
    let tenant = app.register("separation").await;

    // The master token is not a user token.
    app.get("/users")
        .token(MASTER_TOKEN)
        .send()
        .await
        .assert_error(401, "UNAUTHORIZED");
    app.get("/devices")
        .token(MASTER_TOKEN)
        .send()
        .await
        .assert_error(401, "UNAUTHORIZED");

    // A user token, even an admin's, is refused on super-admin routes.
    app.get("/tenants")
        .token(&tenant.admin_token)
        .send()
        .await
        .assert_error(403, "FORBIDDEN");
    app.post("/register")
        .token(&tenant.admin_token)
        .json(json!({"tenant_name": "sneaky", "email": "a@b.example"}))
        .send()
        .await
        .assert_error(403, "FORBIDDEN");
    app.get(&format!("/global/tenants/{}", tenant.id))
        .token(&tenant.admin_token)
        .send()
        .await
        .assert_error(403, "FORBIDDEN");

    // A wrong master token is just a bad credential.
    app.get("/tenants")
        .token("not-the-master-token-at-all")
        .send()
        .await
        .assert_error(401, "UNAUTHORIZED");
    app.get("/tenants")
        .send()
        .await
        .assert_error(401, "UNAUTHORIZED");
    app.get("/tenants")
        .token(MASTER_TOKEN)
        .send()
        .await
        .assert_status(200);
}

#[tokio::test]
async fn without_a_master_token_super_admin_routes_are_403() {
    let app = TestApp::spawn_with(|config| config.master_token = None).await;
    let answer = app.get("/tenants").token(MASTER_TOKEN).send().await;
    answer.assert_error(403, "FORBIDDEN");
    assert_eq!(answer.body["error"], "master token not configured");
    app.post("/register")
        .token(MASTER_TOKEN)
        .json(json!({"tenant_name": "x", "email": "a@b.example"}))
        .send()
        .await
        .assert_error(403, "FORBIDDEN");
}

#[tokio::test]
async fn tokens_are_stored_only_as_hashes() {
    let app = TestApp::spawn().await;
    let tenant = app.register("hashes").await;
    let (_, token) = app
        .create_user(&tenant.admin_token, "u@hashes.example", "user")
        .await;
    let dump: Vec<String> = sqlx::query_scalar("SELECT row_to_json(u)::text FROM users u")
        .fetch_all(&app.db.pool)
        .await
        .expect("users");
    assert_eq!(dump.len(), 2);
    for row in &dump {
        for secret in [&tenant.admin_token, &token] {
            assert!(!row.contains(secret.as_str()), "token in plain text: {row}");
            assert!(
                !row.contains(&secret.replace('-', "")),
                "token in plain text: {row}"
            );
        }
    }
    let hash_lengths: Vec<i32> = sqlx::query_scalar("SELECT length(token_hash) FROM users")
        .fetch_all(&app.db.pool)
        .await
        .expect("hashes");
    assert_eq!(hash_lengths, vec![32, 32]);
}
