//! The test harness: a fresh database per test (cloned from a migrated template), the real
//! router driven in-process, and every JSON answer checked against `openapi.yaml`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use wuts_gateway::config::{Cli, ServeArgs};
pub use wuts_test_db::TestDatabase;

pub const MASTER_TOKEN: &str = "test-master-token-0123456789";

/// Settings as `wuts` would read them, with a master token and the test database.
pub fn test_config(db: &TestDatabase) -> ServeArgs {
    use clap::Parser;
    let mut config = Cli::try_parse_from(["wuts"]).expect("defaults parse").serve;
    config.database.database_url = db.url();
    config.master_token = Some(MASTER_TOKEN.into());
    // Tests make requests in tight loops; budgets are tested on their own (tests/api/budgets.rs).
    config.tenant_rps = 0.0;
    // The same for the per-device WhatsApp pacing (tested in tests/api/contacts.rs).
    config.whatsapp.device_wa_rps = 0.0;
    // Webhook receivers in tests listen on loopback; the refusal is tested on its own
    // (tests/api/events.rs).
    config.events.webhook_allow_private = true;
    // Retries within a test's time (the contract's schedule is measured in hours).
    config.events.webhook_retry_schedule =
        wuts_gateway::config::Schedule(vec![std::time::Duration::from_millis(100)]);
    config
}

/// A wa-sim account with nothing but its number.
pub async fn sim_account(sim: &wa_sim::WaSim, phone: &str) -> wa_sim::CreatedAccount {
    sim.control()
        .create_account(&wa_sim::CreateAccount {
            phone: phone.to_owned(),
            ..Default::default()
        })
        .await
        .expect("account created")
}

/// The gateway under test.
pub struct TestApp {
    pub router: Router,
    pub db: TestDatabase,
    pub sessions: std::sync::Arc<wuts_gateway::session::SessionPool>,
    /// The gateway's webhook workers.
    pub deliveries: std::sync::Arc<wuts_gateway::delivery::Deliverer>,
    pub config: ServeArgs,
}

/// One answer, with its JSON body parsed (or `Value::Null` for non-JSON bodies).
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl TestResponse {
    /// The error code of an error envelope.
    pub fn error_code(&self) -> &str {
        self.body["error_code"].as_str().unwrap_or_default()
    }

    /// The field named by the first validation entry.
    pub fn field(&self) -> &str {
        self.body["validation"][0]["field"]
            .as_str()
            .unwrap_or_default()
    }

    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status.as_u16(), self.error_code()),
            (status, code),
            "unexpected answer: {}",
            self.text
        );
        assert_eq!(self.body["success"], json!(false));
        assert!(
            self.body["timestamp"].is_string(),
            "timestamp in {}",
            self.text
        );
    }

    #[track_caller]
    pub fn assert_validation(&self, field: &str) {
        self.assert_error(400, "VALIDATION_ERROR");
        let fields: Vec<&str> = self.body["validation"]
            .as_array()
            .map(|v| v.iter().filter_map(|e| e["field"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            fields.contains(&field),
            "expected field `{field}` in {fields:?}: {}",
            self.text
        );
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected answer: {}",
            self.text
        );
        &self.body
    }
}

/// A request under construction.
pub struct Call<'a> {
    app: &'a TestApp,
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl<'a> Call<'a> {
    pub fn token(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(serde_json::to_vec(&body).expect("json"));
        self
    }

    pub fn raw(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    pub async fn send(self) -> TestResponse {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(&self.path);
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        if self.body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        let request = builder
            .body(self.body.map(Body::from).unwrap_or_else(Body::empty))
            .expect("request");
        let response = self
            .app
            .router
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
        let is_json = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let body = if is_json {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("invalid JSON body ({e}): {text}"))
        } else {
            Value::Null
        };
        assert!(
            headers.contains_key("x-request-id"),
            "every response carries x-request-id"
        );
        contract::check_response(&self.method, &self.path, status, &headers, &body);
        TestResponse {
            status,
            headers,
            body,
            text,
        }
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut ServeArgs)) -> Self {
        let db = TestDatabase::new().await;
        let mut config = test_config(&db);
        configure(&mut config);
        let gateway = wuts_gateway::startup::build(db.pool.clone(), &config)
            .await
            .expect("gateway builds");
        Self {
            router: gateway.router,
            sessions: gateway.sessions,
            deliveries: gateway.deliveries,
            db,
            config,
        }
    }

    /// A gateway talking to this wa-sim.
    pub async fn spawn_with_sim(sim: &wa_sim::WaSim) -> Self {
        Self::spawn_with_sim_and(sim, |_| {}).await
    }

    /// A gateway talking to this wa-sim, with more settings changed.
    pub async fn spawn_with_sim_and(
        sim: &wa_sim::WaSim,
        configure: impl FnOnce(&mut ServeArgs),
    ) -> Self {
        let url = sim.ws_url().to_owned();
        Self::spawn_with(move |config| {
            config.whatsapp.wa_url = url;
            config.whatsapp.restore_jitter = std::time::Duration::ZERO;
            config.whatsapp.wa_timeout = std::time::Duration::from_secs(3);
            config.whatsapp.reconnect_jitter = std::time::Duration::from_millis(500);
            configure(config);
        })
        .await
    }

    /// Stops every session cleanly (as on SIGTERM) and starts a new gateway on the same
    /// database, which restores the devices that should be connected.
    pub async fn restart(&mut self) {
        self.sessions
            .shutdown(std::time::Duration::from_secs(15))
            .await;
        let gateway = wuts_gateway::startup::build(self.db.pool.clone(), &self.config)
            .await
            .expect("gateway builds");
        self.deliveries
            .shutdown(std::time::Duration::from_secs(5))
            .await;
        self.router = gateway.router;
        self.sessions = gateway.sessions;
        self.deliveries = gateway.deliveries;
        self.sessions.restore().await;
    }

    /// One call as `token`, by method name, with an optional JSON body.
    pub async fn send_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> TestResponse {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let mut call = self.call(method, path).token(token);
        if let Some(body) = body {
            call = call.json(body);
        }
        call.send().await
    }

    pub fn call(&self, method: Method, path: &str) -> Call<'_> {
        Call {
            app: self,
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn get(&self, path: &str) -> Call<'_> {
        self.call(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> Call<'_> {
        self.call(Method::POST, path)
    }

    pub fn put(&self, path: &str) -> Call<'_> {
        self.call(Method::PUT, path)
    }

    pub fn patch(&self, path: &str) -> Call<'_> {
        self.call(Method::PATCH, path)
    }

    pub fn delete(&self, path: &str) -> Call<'_> {
        self.call(Method::DELETE, path)
    }

    /// Registers a tenant with the master token; answers (tenant id, admin user id, admin token).
    pub async fn register(&self, tenant: &str) -> Tenant {
        let answer = self
            .post("/register")
            .token(MASTER_TOKEN)
            .json(json!({"tenant_name": tenant, "email": format!("admin@{tenant}.example")}))
            .send()
            .await;
        let body = answer.assert_status(201);
        Tenant {
            id: body["tenant"]["id"].as_str().expect("tenant id").to_owned(),
            admin_id: body["user"]["id"].as_str().expect("user id").to_owned(),
            admin_token: body["token"].as_str().expect("token").to_owned(),
        }
    }

    /// Creates a user in the tenant of `admin_token`; answers (user id, token).
    pub async fn create_user(
        &self,
        admin_token: &str,
        email: &str,
        role: &str,
    ) -> (String, String) {
        let answer = self
            .post("/users")
            .token(admin_token)
            .json(json!({"email": email, "role": role}))
            .send()
            .await;
        let body = answer.assert_status(201);
        (
            body["user"]["id"].as_str().expect("user id").to_owned(),
            body["token"].as_str().expect("token").to_owned(),
        )
    }

    /// Polls `GET /status` until the device reaches `status`; answers the last status body.
    pub async fn wait_status(&self, token: &str, device: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(45);
        loop {
            let answer = self
                .get(&format!("/status?device_id={device}"))
                .token(token)
                .send()
                .await;
            let data = answer.assert_status(200)["data"].clone();
            if data["status"] == status {
                return data;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "device {device} never reached {status}; last: {data}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Creates a device per phone and pairs each through its phone, all at once; answers the
    /// device ids, in order.
    pub async fn pair_devices(
        &self,
        sim: &wa_sim::WaSim,
        token: &str,
        phones: &[String],
    ) -> Vec<String> {
        let mut devices = Vec::with_capacity(phones.len());
        for phone in phones {
            devices.push(self.create_device(token, phone).await);
        }
        futures::future::join_all(
            devices
                .iter()
                .zip(phones)
                .map(|(device, phone)| self.pair(sim, token, device, phone)),
        )
        .await;
        devices
    }

    /// Pairs a device by QR code through wa-sim's phone `phone`; answers once connected.
    pub async fn pair(&self, sim: &wa_sim::WaSim, token: &str, device: &str, phone: &str) -> Value {
        let answer = self
            .get(&format!("/qr?device_id={device}"))
            .token(token)
            .send()
            .await;
        let qr = answer.assert_status(200)["data"]["qr_code"]
            .as_str()
            .expect("qr_code")
            .to_owned();
        sim.control()
            .scan_qr(phone, &qr)
            .await
            .expect("phone scans the QR code");
        self.wait_status(token, device, "connected").await
    }

    /// Creates a device owned by the holder of `token`; answers its id.
    pub async fn create_device(&self, token: &str, name: &str) -> String {
        let answer = self
            .post("/devices")
            .token(token)
            .json(json!({"name": name}))
            .send()
            .await;
        answer.assert_status(201)["device"]["id"]
            .as_str()
            .expect("device id")
            .to_owned()
    }
}

/// A registered tenant.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub admin_id: String,
    pub admin_token: String,
}

/// `openapi.yaml`, and checking answers against it.
pub mod contract {
    use super::*;

    /// The parsed document.
    pub fn document() -> &'static Value {
        static DOC: OnceLock<Value> = OnceLock::new();
        DOC.get_or_init(|| {
            let text =
                std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml"))
                    .expect("openapi.yaml");
            serde_yaml_ng::from_str(&text).expect("openapi.yaml is YAML")
        })
    }

    /// The documented path template a concrete path matches (`/users/{id}` for `/users/42`).
    pub fn template_for(path: &str) -> Option<String> {
        let path = path.split('?').next().unwrap_or(path);
        let segments: Vec<&str> = path.split('/').collect();
        let paths = document()["paths"].as_object()?;
        // Prefer literal matches over templated ones (`/users/me` style clashes).
        let mut best: Option<(usize, String)> = None;
        for template in paths.keys() {
            let parts: Vec<&str> = template.split('/').collect();
            if parts.len() != segments.len() {
                continue;
            }
            let mut literal = 0;
            let matched = parts.iter().zip(&segments).all(|(t, s)| {
                if t.starts_with('{') && t.ends_with('}') {
                    !s.is_empty()
                } else {
                    literal += 1;
                    t == s
                }
            });
            if matched && best.as_ref().is_none_or(|(n, _)| literal > *n) {
                best = Some((literal, template.clone()));
            }
        }
        best.map(|(_, t)| t)
    }

    fn escape(segment: &str) -> String {
        segment.replace('~', "~0").replace('/', "~1")
    }

    /// Follows a `$ref` to `#/components/...` within the document.
    fn resolve(value: &Value) -> (&Value, Option<String>) {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference.trim_start_matches('#');
                (
                    document()
                        .pointer(pointer)
                        .expect("dangling $ref in openapi.yaml"),
                    Some(pointer.to_owned()),
                )
            }
            None => (value, None),
        }
    }

    fn validator(pointer: &str) -> Arc<jsonschema::Validator> {
        static CACHE: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> =
            OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        if let Some(found) = cache.lock().expect("cache").get(pointer) {
            return found.clone();
        }
        let mut root = document().clone();
        root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        // A JSON pointer in a URI fragment: braces of path templates must be percent-encoded.
        let fragment = pointer
            .replace('%', "%25")
            .replace('{', "%7B")
            .replace('}', "%7D");
        root["$ref"] = json!(format!("#{fragment}"));
        let built = Arc::new(
            jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .build(&root)
                .unwrap_or_else(|e| panic!("schema at {pointer} does not compile: {e}")),
        );
        cache
            .lock()
            .expect("cache")
            .insert(pointer.to_owned(), built.clone());
        built
    }

    /// Checks an answer against the document: the status must be documented for the operation,
    /// and a JSON body must validate against its schema. Unrouted paths must be error envelopes.
    pub fn check_response(
        method: &Method,
        path: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &Value,
    ) {
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let method_key = method.as_str().to_lowercase();
        let operation = template_for(path).and_then(|template| {
            let pointer = format!("/paths/{}/{}", escape(&template), method_key);
            document().pointer(&pointer).map(|_| pointer)
        });
        let Some(operation) = operation else {
            // A CORS preflight is answered by the CORS layer, outside the API's operations.
            // (The API itself answers OPTIONS 405; an empty 200 is the layer's.)
            if *method == Method::OPTIONS && status == StatusCode::OK && body.is_null() {
                return;
            }
            // Unknown route or method: the envelope, 404 or 405.
            assert!(
                status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}: undocumented operation answered {status}"
            );
            let errors = validator("/components/schemas/Error");
            assert!(
                errors.is_valid(body),
                "{method} {path}: not an error envelope: {body}"
            );
            return;
        };
        let response_pointer = format!("{operation}/responses/{}", status.as_u16());
        let response = document().pointer(&response_pointer).unwrap_or_else(|| {
            panic!("{method} {path}: status {status} is not documented (body: {body})")
        });
        let (response, resolved) = resolve(response);
        let base = resolved.unwrap_or(response_pointer);
        let content = response.get("content").and_then(Value::as_object);
        let Some(content) = content else {
            return;
        };
        assert!(
            content.contains_key(&content_type),
            "{method} {path}: content type `{content_type}` not documented for {status}"
        );
        if content_type == "application/json" {
            let pointer = format!("{base}/content/{}/schema", escape(&content_type));
            let validator = validator(&pointer);
            let problems: Vec<String> = validator
                .iter_errors(body)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(
                problems.is_empty(),
                "{method} {path} {status}: answer does not match openapi.yaml: {problems:?}\nbody: {body}"
            );
        }
    }
}
