//! Super-admin routes: register, list, get and delete tenants.

use serde_json::json;

use crate::helpers::{MASTER_TOKEN, TestApp};

#[tokio::test]
async fn register_creates_a_tenant_with_an_admin_and_a_token() {
    let app = TestApp::spawn().await;
    let answer = app
        .post("/register")
        .token(MASTER_TOKEN)
        .json(
            json!({"tenant_name": "  Acme  ", "email": "boss@acme.example", "password": "ignored"}),
        )
        .send()
        .await;
    let body = answer.assert_status(201);
    assert_eq!(body["tenant"]["name"], "Acme");
    assert_eq!(body["user"]["role"], "admin");
    assert_eq!(body["user"]["tenant_id"], body["tenant"]["id"]);
    let token = body["token"].as_str().expect("token");
    assert!(uuid::Uuid::parse_str(token).is_ok());
    app.get("/users")
        .token(token)
        .send()
        .await
        .assert_status(200);

    let with_role = app
        .post("/register")
        .token(MASTER_TOKEN)
        .json(json!({"tenant_name": "Umbrella", "email": "m@umbrella.example", "role": "manager"}))
        .send()
        .await;
    assert_eq!(with_role.assert_status(201)["user"]["role"], "manager");
}

#[tokio::test]
async fn tenant_names_are_unique_regardless_of_case() {
    let app = TestApp::spawn().await;
    app.register("initech").await;
    app.post("/register")
        .token(MASTER_TOKEN)
        .json(json!({"tenant_name": "INITECH", "email": "x@initech.example"}))
        .send()
        .await
        .assert_error(409, "CONFLICT");
}

#[tokio::test]
async fn register_names_every_bad_field() {
    let app = TestApp::spawn().await;
    let bad = app
        .post("/register")
        .token(MASTER_TOKEN)
        .json(json!({"tenant_name": " ", "email": "nope"}))
        .send()
        .await;
    bad.assert_validation("tenant_name");
    bad.assert_validation("email");
    app.post("/register")
        .token(MASTER_TOKEN)
        .json(json!({"tenant_name": "x", "email": "a@b.example", "role": "owner"}))
        .send()
        .await
        .assert_validation("role");
    app.post("/register")
        .token(MASTER_TOKEN)
        .json(json!({"email": "a@b.example"}))
        .send()
        .await
        .assert_validation("tenant_name");
}

#[tokio::test]
async fn list_get_and_delete_tenants() {
    let app = TestApp::spawn().await;
    let a = app.register("alpha").await;
    let b = app.register("beta").await;
    app.create_device(&a.admin_token, "phone").await;
    app.create_user(&a.admin_token, "second@alpha.example", "user")
        .await;

    let list = app.get("/tenants").token(MASTER_TOKEN).send().await;
    let names: Vec<&str> = list.assert_status(200)["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, vec!["alpha", "beta"]);

    let detail = app
        .get(&format!("/global/tenants/{}", a.id))
        .token(MASTER_TOKEN)
        .send()
        .await;
    let data = &detail.assert_status(200)["data"];
    assert_eq!(data["users_count"], 2);
    assert_eq!(data["devices_count"], 1);

    app.delete(&format!("/global/tenants/{}", a.id))
        .token(MASTER_TOKEN)
        .send()
        .await
        .assert_status(200);
    app.get(&format!("/global/tenants/{}", a.id))
        .token(MASTER_TOKEN)
        .send()
        .await
        .assert_error(404, "NOT_FOUND");
    app.delete(&format!("/global/tenants/{}", a.id))
        .token(MASTER_TOKEN)
        .send()
        .await
        .assert_error(404, "NOT_FOUND");
    // Everything of the tenant went with it, its tokens included; the other tenant is intact.
    app.get("/users")
        .token(&a.admin_token)
        .send()
        .await
        .assert_error(401, "UNAUTHORIZED");
    app.get("/users")
        .token(&b.admin_token)
        .send()
        .await
        .assert_status(200);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM devices")
        .fetch_one(&app.db.pool)
        .await
        .expect("count");
    assert_eq!(left, 0);

    app.get("/global/tenants/not-a-uuid")
        .token(MASTER_TOKEN)
        .send()
        .await
        .assert_validation("id");
}
