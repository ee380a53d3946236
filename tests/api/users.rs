//! User administration and role rules.

use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn admins_create_list_change_and_delete_users() {
    let app = TestApp::spawn().await;
    let tenant = app.register("people").await;
    let admin = &tenant.admin_token;

    let created = app
        .post("/users")
        .token(admin)
        .json(json!({"email": "ann@people.example"}))
        .send()
        .await;
    let body = created.assert_status(201);
    assert_eq!(body["user"]["role"], "user", "role defaults to user");
    assert_eq!(body["user"]["active"], true);
    let ann = body["user"]["id"].as_str().expect("id").to_owned();

    app.post("/users")
        .token(admin)
        .json(json!({"email": "ANN@people.example"}))
        .send()
        .await
        .assert_error(409, "CONFLICT");

    let list = app.get("/users").token(admin).send().await;
    assert_eq!(
        list.assert_status(200)["users"].as_array().map(Vec::len),
        Some(2)
    );

    let promoted = app
        .post(&format!("/users/{ann}/promote"))
        .token(admin)
        .json(json!({"new_role": "manager"}))
        .send()
        .await;
    assert_eq!(promoted.assert_status(200)["user"]["role"], "manager");

    let changed = app
        .put(&format!("/users/{ann}"))
        .token(admin)
        .json(json!({"role": "admin", "active": true}))
        .send()
        .await;
    assert_eq!(changed.assert_status(200)["user"]["role"], "admin");

    app.put(&format!("/users/{ann}"))
        .token(admin)
        .json(json!({}))
        .send()
        .await
        .assert_validation("body");

    app.delete(&format!("/users/{ann}"))
        .token(admin)
        .send()
        .await
        .assert_status(200);
    app.get(&format!("/users/{ann}"))
        .token(admin)
        .send()
        .await
        .assert_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn role_changes_apply_to_the_next_request() {
    let app = TestApp::spawn().await;
    let tenant = app.register("rolechange").await;
    let (id, token) = app
        .create_user(&tenant.admin_token, "m@rolechange.example", "admin")
        .await;
    app.get("/users")
        .token(&token)
        .send()
        .await
        .assert_status(200);
    app.post(&format!("/users/{id}/promote"))
        .token(&tenant.admin_token)
        .json(json!({"new_role": "user"}))
        .send()
        .await
        .assert_status(200);
    app.get("/users")
        .token(&token)
        .send()
        .await
        .assert_error(403, "FORBIDDEN");
}

#[tokio::test]
async fn users_and_managers_cannot_manage_users() {
    let app = TestApp::spawn().await;
    let tenant = app.register("roles").await;
    let (user_id, user) = app
        .create_user(&tenant.admin_token, "u@roles.example", "user")
        .await;
    let (_, manager) = app
        .create_user(&tenant.admin_token, "m@roles.example", "manager")
        .await;

    for token in [&user, &manager] {
        app.get("/users")
            .token(token)
            .send()
            .await
            .assert_error(403, "FORBIDDEN");
        app.post("/users")
            .token(token)
            .json(json!({"email": "x@roles.example"}))
            .send()
            .await
            .assert_error(403, "FORBIDDEN");
        app.get(&format!("/users/{}", tenant.admin_id))
            .token(token)
            .send()
            .await
            .assert_error(403, "FORBIDDEN");
        app.put(&format!("/users/{user_id}"))
            .token(token)
            .json(json!({"active": false}))
            .send()
            .await
            .assert_error(403, "FORBIDDEN");
        app.delete(&format!("/users/{}", tenant.admin_id))
            .token(token)
            .send()
            .await
            .assert_error(403, "FORBIDDEN");
        app.post(&format!("/users/{}/token", tenant.admin_id))
            .token(token)
            .send()
            .await
            .assert_error(403, "FORBIDDEN");
    }
    // But each may read itself and rotate its own token.
    let me = app
        .get(&format!("/users/{user_id}"))
        .token(&user)
        .send()
        .await;
    assert_eq!(me.assert_status(200)["user"]["email"], "u@roles.example");
    app.post(&format!("/users/{user_id}/token"))
        .token(&user)
        .send()
        .await
        .assert_status(201);
}

#[tokio::test]
async fn an_admin_cannot_delete_demote_or_deactivate_itself() {
    let app = TestApp::spawn().await;
    let tenant = app.register("selfish").await;
    let me = &tenant.admin_id;
    app.delete(&format!("/users/{me}"))
        .token(&tenant.admin_token)
        .send()
        .await
        .assert_error(403, "FORBIDDEN");
    app.post(&format!("/users/{me}/promote"))
        .token(&tenant.admin_token)
        .json(json!({"new_role": "user"}))
        .send()
        .await
        .assert_error(403, "FORBIDDEN");
    app.put(&format!("/users/{me}"))
        .token(&tenant.admin_token)
        .json(json!({"active": false}))
        .send()
        .await
        .assert_error(403, "FORBIDDEN");
    app.get("/users")
        .token(&tenant.admin_token)
        .send()
        .await
        .assert_status(200);
}

#[tokio::test]
async fn unknown_users_are_404_and_bad_ids_are_400() {
    let app = TestApp::spawn().await;
    let tenant = app.register("ghosts").await;
    let ghost = uuid::Uuid::new_v4();
    app.get(&format!("/users/{ghost}"))
        .token(&tenant.admin_token)
        .send()
        .await
        .assert_error(404, "NOT_FOUND");
    app.get("/users/12")
        .token(&tenant.admin_token)
        .send()
        .await
        .assert_validation("id");
}
