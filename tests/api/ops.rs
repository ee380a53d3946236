//! Health, readiness and metrics.

use crate::helpers::TestApp;

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let health = app.get("/healthz").send().await;
    assert_eq!(health.assert_status(200)["status"], "ok");
    let ready = app.get("/readyz").send().await;
    assert_eq!(ready.assert_status(200)["status"], "ready");
}

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let app = TestApp::spawn().await;
    app.db.pool.close().await;
    app.get("/readyz")
        .send()
        .await
        .assert_error(503, "SERVICE_UNAVAILABLE");
    // Liveness does not depend on the database.
    app.get("/healthz").send().await.assert_status(200);
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let app = TestApp::spawn().await;
    let tenant = app.register("metered").await;
    app.get(&format!("/users/{}", tenant.admin_id))
        .token(&tenant.admin_token)
        .send()
        .await
        .assert_status(200);
    let metrics = app.get("/metrics").send().await;
    metrics.assert_status(200);
    assert!(
        metrics
            .text
            .contains(r#"wuts_http_requests_total{method="GET",route="/users/{id}",status="200"}"#),
        "{}",
        metrics.text
    );
    assert!(
        metrics
            .text
            .contains("wuts_http_request_duration_seconds_bucket")
    );
    // Concrete ids never become label values.
    assert!(!metrics.text.contains(&tenant.admin_id));
    // Every metric says what it measures.
    for line in metrics.text.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|l| l.split_whitespace().next())
        {
            assert!(
                metrics.text.contains(&format!("# HELP {name} ")),
                "{name} has no HELP line"
            );
        }
    }
}

/// What `store::connect` (every command's first step) says, for each way PostgreSQL can refuse.
async fn connect_error(url: &str) -> String {
    match wuts_gateway::store::connect(url, 2).await {
        Ok(pool) => {
            pool.close().await;
            panic!("{url} connected")
        }
        Err(err) => err.to_string(),
    }
}

#[tokio::test]
async fn a_database_failure_at_start_says_which_it_is() {
    let server = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    let unreachable = connect_error(&format!("postgres://postgres@127.0.0.1:{port}/wuts")).await;
    assert!(
        unreachable.starts_with(&format!(
            "cannot connect to PostgreSQL at postgres://postgres@127.0.0.1:{port}/wuts"
        )),
        "{unreachable}"
    );
    assert!(
        unreachable.contains("docker compose up -d postgres"),
        "{unreachable}"
    );

    let role = connect_error(&wuts_test_support::with_database(
        &server.replacen("postgres@", "nobody_at_all@", 1),
        "postgres",
    ))
    .await;
    assert!(
        role.contains("is up but refused to log in role `nobody_at_all`"),
        "{role}"
    );
    assert!(
        role.contains("role \"nobody_at_all\" does not exist"),
        "{role}"
    );
    assert!(!role.contains("docker"), "{role}");
    assert!(!role.contains(" at line "), "{role}");

    // A role that may log in but not create databases, asked for one that does not exist.
    let suffix = std::process::id();
    let role_name = format!("wuts_nocreate_{suffix}");
    let admin = sqlx::PgPool::connect(&server).await.expect("admin");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP ROLE IF EXISTS {role_name}; CREATE ROLE {role_name} LOGIN NOCREATEDB"
    )))
    .execute(&admin)
    .await
    .expect("role");
    let missing = format!("wuts_missing_{suffix}");
    let cannot_create = connect_error(&wuts_test_support::with_database(
        &server.replacen("postgres@", &format!("{role_name}@"), 1),
        &missing,
    ))
    .await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE {role_name}")))
        .execute(&admin)
        .await
        .expect("drop role");
    admin.close().await;
    assert!(
        cannot_create.contains(&format!(
            "the database `{missing}` does not exist and role `{role_name}` cannot create it"
        )),
        "{cannot_create}"
    );
    assert!(
        cannot_create.contains("permission denied"),
        "{cannot_create}"
    );

    // The binary prints the same line and exits non-zero.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wuts"))
        .arg("migrate")
        .env(
            "DATABASE_URL",
            wuts_test_support::with_database(
                &server.replacen("postgres@", "nobody_at_all@", 1),
                "postgres",
            ),
        )
        .output()
        .expect("wuts migrate runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refused to log in role `nobody_at_all`"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthcheck_command_asks_a_running_gateway() {
    let app = TestApp::spawn().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let listen = listener.local_addr().expect("address").to_string();
    let server = tokio::spawn(axum::serve(listener, app.router.clone()).into_future());
    let healthy = std::process::Command::new(env!("CARGO_BIN_EXE_wuts"))
        .args(["healthcheck", "--listen", &listen])
        .output()
        .expect("wuts healthcheck runs");
    assert!(
        healthy.status.success(),
        "{}",
        String::from_utf8_lossy(&healthy.stderr)
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    let down = std::process::Command::new(env!("CARGO_BIN_EXE_wuts"))
        .args(["healthcheck", "--listen", &format!("0.0.0.0:{port}")])
        .output()
        .expect("wuts healthcheck runs");
    assert!(!down.status.success());
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    server.abort();
}
