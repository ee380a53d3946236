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
