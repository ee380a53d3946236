//! The router and `openapi.yaml` describe the same API.

use std::collections::BTreeSet;

use axum::http::Method;
use wuts_gateway::http::ROUTES;

use crate::helpers::TestApp;
use crate::helpers::contract::document;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn documented() -> BTreeSet<(String, String)> {
    let paths = document()["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| ((*m).to_owned(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn routes_and_document_are_the_same_set() {
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    let documented = documented();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routed but not in openapi.yaml: {undocumented:?}; in openapi.yaml but not routed: {unrouted:?}"
    );
}

#[test]
fn every_operation_documents_its_errors_and_ids() {
    let mut ids = BTreeSet::new();
    for (method, path) in documented() {
        let pointer = format!(
            "/paths/{}/{method}",
            path.replace('~', "~0").replace('/', "~1")
        );
        let operation = document().pointer(&pointer).expect("operation");
        let id = operation["operationId"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "{method} {path}: operationId");
        assert!(
            ids.insert(id.to_owned()),
            "{method} {path}: duplicate operationId {id}"
        );
        let responses = operation["responses"].as_object().expect("responses");
        assert!(
            responses.contains_key("503"),
            "{method} {path}: every route may time out (503)"
        );
        let public = operation["security"].as_array().is_some_and(Vec::is_empty);
        if !public {
            assert!(
                responses.contains_key("401"),
                "{method} {path}: 401 undocumented"
            );
            assert!(
                responses.contains_key("500"),
                "{method} {path}: 500 undocumented"
            );
        }
        if operation.get("requestBody").is_some() {
            assert!(
                responses.contains_key("400"),
                "{method} {path}: 400 undocumented"
            );
            assert!(
                responses.contains_key("413"),
                "{method} {path}: 413 undocumented"
            );
        }
    }
}

#[tokio::test]
async fn every_documented_operation_reaches_a_handler() {
    let app = TestApp::spawn().await;
    for (method, path) in documented() {
        let concrete = path.replace("{id}", &uuid::Uuid::new_v4().to_string());
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let answer = app.call(method.clone(), &concrete).send().await;
        assert_ne!(answer.status, 405, "{method} {path}");
        assert_ne!(answer.body["error"], "no such route", "{method} {path}");
    }
}

#[tokio::test]
async fn the_served_document_is_the_contract() {
    let app = TestApp::spawn().await;
    let answer = app.get("/openapi.yaml").send().await;
    answer.assert_status(200);
    let served: serde_json::Value = serde_yaml_ng::from_str(&answer.text).expect("YAML");
    assert_eq!(&served, document());
}

#[tokio::test]
async fn unknown_routes_and_methods_are_envelopes() {
    let app = TestApp::spawn().await;
    app.get("/no/such/route")
        .send()
        .await
        .assert_error(404, "NOT_FOUND");
    app.call(Method::PATCH, "/users")
        .send()
        .await
        .assert_error(405, "METHOD_NOT_ALLOWED");
    app.delete("/healthz")
        .send()
        .await
        .assert_error(405, "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let app = TestApp::spawn().await;
    let echoed = app
        .get("/healthz")
        .header("x-request-id", "trace-me-42")
        .send()
        .await;
    assert_eq!(echoed.headers["x-request-id"], "trace-me-42");
    let made = app.get("/healthz").send().await;
    let id = made.headers["x-request-id"].to_str().expect("ascii");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    let error = app.get("/nowhere").send().await;
    assert!(error.headers.contains_key("x-request-id"));
}
