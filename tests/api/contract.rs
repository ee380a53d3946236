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

/// The schema of `pointer` within the document, compiled as the harness compiles it.
fn compiled(pointer: &str) -> jsonschema::Validator {
    let mut root = document().clone();
    root["$schema"] = serde_json::json!("https://json-schema.org/draft/2020-12/schema");
    root["$ref"] = serde_json::json!(format!("#{pointer}"));
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&root)
        .unwrap_or_else(|e| panic!("{pointer}: {e}"))
}

/// An error envelope with `code`, as the gateway writes it.
fn envelope(code: &str) -> serde_json::Value {
    serde_json::json!({
        "success": false,
        "error": "human readable",
        "error_code": code,
        "timestamp": "2026-06-15T12:00:00Z",
        "validation": [{"field": "jid", "message": "not a phone number, PN JID or LID"}],
    })
}

/// Every error answer is a named schema, the Error envelope with `error_code` narrowed by an
/// `enum` (generators merge an enum subset into ErrorCode; a `const` they cannot merge, and they
/// drop the response), naming in its description each code it may carry; and the narrowing holds:
/// an envelope validates exactly when its code is one of them.
#[test]
fn error_answers_are_named_schemas_narrowing_their_codes() {
    let catalogue: Vec<String> = document()["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode enum")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    let mut checked = BTreeSet::new();
    for (method, path) in documented() {
        let pointer = format!(
            "/paths/{}/{method}/responses",
            path.replace('~', "~0").replace('/', "~1")
        );
        let responses = document().pointer(&pointer).expect("responses");
        for (status, response) in responses.as_object().expect("responses") {
            if status.parse::<u16>().expect("status") < 400 {
                continue;
            }
            let reference = response["$ref"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} {status}: a shared response"));
            let response = document()
                .pointer(reference.trim_start_matches('#'))
                .expect("response");
            let schema = response["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .unwrap_or_else(|| panic!("{reference}: a named schema"));
            if !checked.insert(schema.to_owned()) {
                continue;
            }
            let named = document()
                .pointer(schema.trim_start_matches('#'))
                .expect("schema");
            assert_eq!(
                named["allOf"][0]["$ref"], "#/components/schemas/Error",
                "{schema}: the Error envelope"
            );
            let narrowed = &named["allOf"][1]["properties"]["error_code"];
            assert!(narrowed.get("const").is_none(), "{schema}: const");
            let codes: Vec<&str> = narrowed["enum"]
                .as_array()
                .unwrap_or_else(|| panic!("{schema}: error_code narrowed by an enum"))
                .iter()
                .map(|c| c.as_str().expect("code"))
                .collect();
            assert!(!codes.is_empty(), "{schema}");
            let description = response["description"].as_str().unwrap_or_default();
            let validator = compiled(schema.trim_start_matches('#'));
            for code in &catalogue {
                let listed = codes.contains(&code.as_str());
                assert_eq!(
                    validator.is_valid(&envelope(code)),
                    listed,
                    "{schema} with {code}"
                );
                assert_eq!(
                    description.contains(&format!("`{code}`")),
                    listed,
                    "{reference}: the description names exactly its codes ({code})"
                );
            }
            for code in &codes {
                assert!(catalogue.iter().any(|c| c == code), "{schema}: {code}");
            }
        }
    }
    assert!(checked.len() >= 10, "checked {checked:?}");
}

/// The harness checks the code of every error answer against its route and status: a 404 of
/// `POST /contacts/block` may be NOT_ON_WHATSAPP, never VALIDATION_ERROR.
#[test]
fn the_harness_refuses_a_code_its_status_cannot_carry() {
    use axum::http::{HeaderMap, HeaderValue, StatusCode};
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let check = |status: u16, code: &str| {
        let headers = headers.clone();
        let body = envelope(code);
        std::panic::catch_unwind(move || {
            crate::helpers::contract::check_response(
                &Method::POST,
                "/contacts/block",
                StatusCode::from_u16(status).expect("status"),
                &headers,
                &body,
            );
        })
        .is_ok()
    };
    assert!(check(404, "NOT_ON_WHATSAPP"));
    assert!(check(404, "NOT_FOUND"));
    assert!(check(400, "VALIDATION_ERROR"));
    assert!(!check(404, "VALIDATION_ERROR"));
    assert!(!check(400, "NOT_FOUND"));
    assert!(!check(409, "RATE_LIMITED"));
}
