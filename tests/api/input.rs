//! Bad input on every route with a body, generated from `openapi.yaml`: malformed JSON, the
//! wrong shape, missing fields, each field with the wrong type, and a body over the limit.
//! Every one is a 4xx envelope naming what is wrong; none is a 5xx.

use axum::http::Method;
use serde_json::{Value, json};
use wuts_gateway::http::ROUTES;

use crate::helpers::contract::document;
use crate::helpers::{MASTER_TOKEN, Tenant, TestApp};

const BODY_LIMIT: usize = 4096;

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Follows `$ref`s and `allOf` to the schema's type.
fn resolved(schema: &Value) -> Value {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let pointer = reference.trim_start_matches('#');
        return resolved(document().pointer(pointer).expect("dangling $ref"));
    }
    schema.clone()
}

/// A value of the right type for a property (content does not matter: the probes only need
/// the other fields to be well-typed).
/// A schema's type: its `type`, or the first non-null one of a list (`[integer, 'null']`).
fn type_of(schema: &Value) -> Option<&str> {
    match &schema["type"] {
        Value::String(t) => Some(t.as_str()),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null"),
        _ => None,
    }
}

fn sample(schema: &Value) -> Value {
    let schema = resolved(schema);
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    if schema["format"] == "uuid" {
        return json!(uuid::Uuid::new_v4().to_string());
    }
    match type_of(&schema) {
        Some("boolean") => json!(true),
        Some("integer") | Some("number") => json!(1),
        Some("array") => json!([]),
        Some("object") => json!({}),
        _ => json!("sample@value.example"),
    }
}

/// A value of the wrong type for a property.
fn wrong(schema: &Value) -> Value {
    let schema = resolved(schema);
    match type_of(&schema) {
        Some("boolean") | Some("integer") | Some("number") => json!("not-this-type"),
        Some("array") => json!("not-an-array"),
        Some("object") => json!("not-an-object"),
        _ => json!({"not": "a string"}),
    }
}

struct Fixture {
    app: TestApp,
    tenant: Tenant,
    other_user: String,
    device: String,
}

fn concrete_path(fixture: &Fixture, template: &str) -> String {
    if template.starts_with("/devices/") {
        template.replace("{id}", &fixture.device)
    } else if template.starts_with("/global/tenants/") {
        template.replace("{id}", &fixture.tenant.id)
    } else if template.starts_with("/users/") {
        template.replace("{id}", &fixture.other_user)
    } else if template.contains("{jid}") {
        template.replace("{jid}", "120363000000000001@g.us")
    } else {
        assert!(
            !template.contains('{'),
            "{template}: add an id for it to the input probe"
        );
        template.to_owned()
    }
}

#[tokio::test]
async fn every_body_route_names_what_is_wrong() {
    let app = TestApp::spawn_with(|config| config.body_limit = BODY_LIMIT).await;
    let tenant = app.register("inputs").await;
    let (other_user, _) = app
        .create_user(&tenant.admin_token, "o@inputs.example", "user")
        .await;
    let device = app.create_device(&tenant.admin_token, "input probe").await;
    let fixture = Fixture {
        app,
        tenant,
        other_user,
        device,
    };
    let app = &fixture.app;

    let mut probed_routes = 0;
    for (method, template) in ROUTES {
        let operation = document()
            .pointer(&format!("/paths/{}/{method}", escape(template)))
            .expect("documented");
        let Some(body_doc) = operation.get("requestBody").map(resolved) else {
            continue;
        };
        probed_routes += 1;
        let schema = resolved(&body_doc["content"]["application/json"]["schema"]);
        let properties = schema["properties"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let required: Vec<String> = schema["required"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let master = operation["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|e| e.get("masterToken").is_some()));
        let token = if master {
            MASTER_TOKEN.to_owned()
        } else {
            fixture.tenant.admin_token.clone()
        };
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let path = concrete_path(&fixture, template);
        let call = || app.call(method.clone(), &path).token(&token);
        let context = format!("{method} {template}");

        for malformed in [
            &b"{\"a\":"[..],
            b"{'single': 1}",
            b"\xff\xfe",
            b"[1, 2]",
            b"\"text\"",
            b"null",
        ] {
            let answer = call().raw(malformed.to_vec()).send().await;
            assert_eq!(
                answer.field(),
                "body",
                "{context} {malformed:?}: {}",
                answer.text
            );
            answer.assert_validation("body");
        }
        if body_doc["required"] == json!(true) {
            call().send().await.assert_validation("body");
        }

        let valid: serde_json::Map<String, Value> = properties
            .iter()
            .map(|(name, schema)| (name.clone(), sample(schema)))
            .collect();
        if let Some(first) = required.first() {
            let mut missing = valid.clone();
            missing.remove(first);
            let answer = call().json(Value::Object(missing)).send().await;
            assert_eq!(answer.field(), first.as_str(), "{context}: {}", answer.text);
        }
        for (name, property) in &properties {
            let mut body = valid.clone();
            body.insert(name.clone(), wrong(property));
            let answer = call().json(Value::Object(body)).send().await;
            answer.assert_validation(name);
        }

        let mut huge = valid.clone();
        huge.insert("padding".to_owned(), json!("x".repeat(BODY_LIMIT * 2)));
        call()
            .json(Value::Object(huge))
            .send()
            .await
            .assert_error(413, "PAYLOAD_TOO_LARGE");
    }
    assert!(probed_routes >= 17, "probed {probed_routes} routes");
}
