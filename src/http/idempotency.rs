//! `Idempotency-Key`: a client's retry of a write is answered again, not done twice, on any
//! gateway node.
//!
//! A layer on the writes that are not idempotent by nature ([`KEYED_ROUTES`]), inside the tenant
//! budget layer (which has found the caller). A request with the header claims the key in
//! PostgreSQL (`store::idempotency`), runs, and its answer is stored (status, body and the
//! headers in [`STORED_HEADERS`]) for 24 hours; the same key with the same request (method,
//! path, query, body, and the same caller) is answered that again with `Idempotent-Replayed:
//! true`, the same key with another request is `409 CONFLICT`. While the first request is
//! being answered, a second one waits for its answer for a bounded time, then is `409
//! CONFLICT` (in progress, `Retry-After: 1`).
//!
//! Keys are scoped per tenant on tenant routes, as Stripe scopes them per account: the users of
//! a tenant share one set of keys. The caller is part of the fingerprint, so a key another user
//! of the tenant used is a conflict, never that user's answer (which may hold a new user's
//! token). The master-token route `/register` has a scope of its own. A
//! request the layer cannot attribute (no valid credential) goes on untouched and is refused by
//! its handler.
//!
//! Only final answers are stored ([`is_final`]); for the others the claim is released, so that a
//! retry does the work. A claim whose request never answers (its node died) is taken over once
//! it is older than the request timeout and a margin. Expired rows are treated as absent, and
//! pruned in the background by a node that claims a key, at most every ten minutes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::auth::{AuthUser, MasterAuth};
use super::error::{ApiError, ErrorCode};
use super::extract::read_body;
use super::state::AppState;
use crate::domain::idempotency::{DerivedKey, IdempotencyKey, RequestParts};
use crate::domain::{KeyScope, UserId};
use crate::store::idempotency::{self as store, Claim, Held};

/// The request header.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set to `true` on an answer given again.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// The name clients see in validation errors and messages.
const FIELD: &str = "Idempotency-Key";

/// The writes that take a key: (method, route template). The master-token one is `/register`.
pub const KEYED_ROUTES: &[(&str, &str)] = &[
    ("POST", "/register"),
    ("POST", "/users"),
    ("POST", "/devices"),
    ("POST", "/groups"),
    ("POST", "/groups/{jid}/participants"),
    ("DELETE", "/groups/{jid}/participants"),
    ("POST", "/groups/{jid}/invite/reset"),
    ("POST", "/groups/{jid}/requests"),
    ("POST", "/groups/join"),
    ("POST", "/communities"),
    ("POST", "/communities/{jid}/participants"),
    ("DELETE", "/communities/{jid}/participants"),
    ("POST", "/communities/{jid}/requests"),
    ("POST", "/communities/{jid}/groups"),
    ("DELETE", "/communities/{jid}/groups"),
    ("POST", "/webhook/test"),
];

/// The route answered with the master token.
const MASTER_ROUTE: &str = "/register";

/// The answer headers stored and given again; the others (request id) belong to each request.
pub const STORED_HEADERS: [HeaderName; 3] = [CONTENT_TYPE, LOCATION, RETRY_AFTER];

/// Largest answer body stored; a larger one is answered but not kept.
const MAX_STORED_BODY: usize = 1024 * 1024;
/// How often a second request looks again for the first one's answer.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Longest a second request waits for the first one's answer (less when the request timeout is
/// short: half of it).
const MAX_WAIT: Duration = Duration::from_secs(5);
/// Added to the request timeout before a claim is thought abandoned: a claim is held at most for
/// the request timeout (the handler is then cancelled and the claim released), so an older one
/// belongs to a node that died or lost its database; the margin covers nodes configured with a
/// somewhat longer timeout.
const ABANDON_MARGIN: Duration = Duration::from_secs(15);
/// How often a node forgets expired keys, and how many rows at most per statement.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
const PRUNE_BATCH: i64 = 1000;

/// Marks a request the layer lets through untouched: one forwarded from another gateway node,
/// whose key was checked at the node that received it.
#[derive(Debug, Clone, Copy)]
pub struct Bypass;

/// The layer's state: the application's, and the bounds derived from the request timeout.
#[derive(Clone)]
pub struct Idempotency {
    state: AppState,
    wait: Duration,
    abandoned_after: Duration,
    pruning: Arc<Pruning>,
}

/// When this node last pruned, in milliseconds since `started` (0: never).
struct Pruning {
    started: Instant,
    last: AtomicU64,
}

impl Idempotency {
    pub fn new(state: AppState, request_timeout: Duration) -> Self {
        Self {
            state,
            wait: MAX_WAIT.min(request_timeout / 2),
            abandoned_after: request_timeout + ABANDON_MARGIN,
            pruning: Arc::new(Pruning {
                started: Instant::now(),
                last: AtomicU64::new(0),
            }),
        }
    }

    /// Forgets expired keys in the background, at most once per [`PRUNE_EVERY`] on this node.
    fn maybe_prune(&self) {
        let now = u64::try_from(self.pruning.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let last = self.pruning.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= PRUNE_EVERY.as_millis() as u64;
        if !due
            || self
                .pruning
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let db = self.state.db.clone();
        tokio::spawn(async move {
            // A bounded number of batches: a backlog is worked off over several runs.
            for _ in 0..10 {
                match store::prune(&db, PRUNE_BATCH).await {
                    Ok(n) if n < PRUNE_BATCH as u64 => break,
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "expired idempotency keys not pruned");
                        break;
                    }
                }
            }
        });
    }
}

/// Whether a (method, route) takes a key.
pub fn takes_key(method: &str, route: &str) -> bool {
    KEYED_ROUTES
        .iter()
        .any(|(m, r)| *m == method && *r == route)
}

/// Whether an answer is kept and given again to a retry. Final: every 2xx, and the 4xx that
/// say what became of the request (403, 404, `409 CONFLICT`, ...). Not kept, so that a retry
/// does the work: 5xx (including `502 DEVICE_ERROR`, `503` and `504 WHATSAPP_TIMEOUT`), `429
/// RATE_LIMITED`, `409 DEVICE_NOT_READY` (the device may be connected by the retry), and the
/// refusals that did nothing (400, 401, 413), after which a corrected request may use the key.
pub fn is_final(status: StatusCode, error_code: Option<&str>) -> bool {
    match status.as_u16() {
        200..=299 => true,
        400 | 401 | 413 | 429 => false,
        409 => error_code != Some(code_name(ErrorCode::DeviceNotReady).as_str()),
        402..=499 => true,
        _ => false,
    }
}

fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// An answer as stored (sealed): its headers and body. The status is a column of its own.
#[derive(Serialize, Deserialize)]
struct StoredAnswer {
    headers: Vec<(String, String)>,
    #[serde(with = "body_text")]
    body: Vec<u8>,
}

/// Bodies are JSON envelopes; kept as text when they are text, else base64.
mod body_text {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    enum Text {
        #[serde(rename = "text")]
        Utf8(String),
        #[serde(rename = "base64")]
        Base64(String),
    }

    pub fn serialize<S: Serializer>(body: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(body) {
            Ok(text) => Text::Utf8(text.to_owned()),
            Err(_) => Text::Base64(STANDARD.encode(body)),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match Text::deserialize(d)? {
            Text::Utf8(text) => Ok(text.into_bytes()),
            Text::Base64(encoded) => STANDARD.decode(encoded).map_err(serde::de::Error::custom),
        }
    }
}

/// Who the key belongs to, if the request can be attributed: the tenant of the user the budget
/// layer found, or the master scope for `/register` with the master token.
async fn scope(
    layer: &Idempotency,
    route: &str,
    parts: &mut axum::http::request::Parts,
) -> Option<(KeyScope, Option<UserId>)> {
    if route == MASTER_ROUTE {
        return MasterAuth::from_request_parts(parts, &layer.state)
            .await
            .ok()
            .map(|_| (KeyScope::Master, None));
    }
    parts
        .extensions
        .get::<AuthUser>()
        .map(|user| (KeyScope::Tenant(user.tenant_id), Some(user.user_id)))
}

/// The layer: see the module documentation.
pub async fn answer_once(
    State(layer): State<Idempotency>,
    request: Request,
    next: Next,
) -> Response {
    if request.extensions().get::<Bypass>().is_some()
        || !request.headers().contains_key(IDEMPOTENCY_KEY)
    {
        return next.run(request).await;
    }
    let keyed = request
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|route| takes_key(request.method().as_str(), route.as_str()));
    if !keyed {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let Some((scope, caller)) = scope(&layer, &route, &mut parts).await else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let key = match parse_header(&parts.headers) {
        Ok(key) => key,
        Err(refused) => return refused.into_response(),
    };
    // The body under the body limit, as the handler's extractor would read it.
    let mut reading = Request::new(body);
    *reading.extensions_mut() = parts.extensions.clone();
    let body = match read_body(reading, &()).await {
        Ok(body) => body,
        Err(refused) => return refused.into_response(),
    };
    let derived = key.derive(scope);
    let fingerprint = derived.fingerprint(RequestParts {
        caller,
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or_default(),
        body: &body,
    });

    let deadline = tokio::time::Instant::now() + layer.wait;
    loop {
        let claim = store::claim(
            &layer.state.db,
            scope.tenant(),
            derived.id,
            fingerprint,
            layer.abandoned_after,
        )
        .await;
        match claim {
            Err(err) => return ApiError::from(err).into_response(),
            Ok(Claim::Held(held)) => {
                layer.maybe_prune();
                let request = Request::from_parts(parts, Body::from(body));
                return answer_and_store(&layer.state.db, held, &derived, request, next).await;
            }
            Ok(Claim::Answered {
                fingerprint: first,
                status,
                answer,
            }) => {
                if first != fingerprint {
                    return reused().into_response();
                }
                tracing::debug!(status, "answered again under its Idempotency-Key");
                return replay(&derived, status, &answer);
            }
            Ok(Claim::InProgress { fingerprint: first }) => {
                if first != fingerprint {
                    return reused().into_response();
                }
                if tokio::time::Instant::now() + POLL_EVERY > deadline {
                    return in_progress();
                }
                tokio::time::sleep(POLL_EVERY).await;
            }
            Ok(Claim::Vacant) => {
                if tokio::time::Instant::now() > deadline {
                    return in_progress();
                }
            }
        }
    }
}

/// The key in the header, once: 1 to 255 printable ASCII characters.
fn parse_header(headers: &axum::http::HeaderMap) -> Result<IdempotencyKey, ApiError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(ApiError::field(FIELD, "must be sent once"));
    };
    IdempotencyKey::parse(value.as_bytes()).map_err(|message| ApiError::field(FIELD, message))
}

fn reused() -> ApiError {
    ApiError::Conflict(format!(
        "{FIELD}: this key was already used for a different request; use a new key for a new request"
    ))
}

fn in_progress() -> Response {
    let mut response = ApiError::Conflict(format!(
        "{FIELD}: a request with this key is in progress; retry later"
    ))
    .into_response();
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Runs the request under its claim, then stores the answer or releases the claim.
async fn answer_and_store(
    db: &PgPool,
    held: Held,
    derived: &DerivedKey,
    request: Request,
    next: Next,
) -> Response {
    let mut claim = ReleaseOnDrop {
        db: db.clone(),
        held: Some(held),
    };
    let response = next.run(request).await;
    let (parts, body) = response.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(err) => {
            tracing::error!(error = %err, "answer body could not be read");
            claim.release().await;
            return ApiError::internal(anyhow::anyhow!("answer body unreadable")).into_response();
        }
    };
    let error_code = if parts.status.is_success() {
        None
    } else {
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error_code"].as_str().map(str::to_owned))
    };
    if !is_final(parts.status, error_code.as_deref()) || body.len() > MAX_STORED_BODY {
        claim.release().await;
        return Response::from_parts(parts, Body::from(body));
    }
    let stored = StoredAnswer {
        headers: STORED_HEADERS
            .iter()
            .flat_map(|name| parts.headers.get_all(name).iter().map(move |v| (name, v)))
            .filter_map(|(name, value)| {
                value
                    .to_str()
                    .ok()
                    .map(|v| (name.as_str().to_owned(), v.to_owned()))
            })
            .collect(),
        body: body.to_vec(),
    };
    let sealed = serde_json::to_vec(&stored)
        .map_err(|_| crate::domain::idempotency::SealError::Seal)
        .and_then(|plain| derived.seal(&plain));
    match sealed {
        Ok(sealed) => {
            if let Some(held) = claim.held.take() {
                match store::complete(db, &held, parts.status.as_u16(), &sealed).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!("idempotency claim taken over before its answer was stored");
                    }
                    Err(err) => {
                        // The work is done and answered; a retry will do it again.
                        tracing::error!(error = %err, "idempotent answer not stored");
                        claim.held = Some(held);
                        claim.release().await;
                    }
                }
            }
        }
        Err(err) => {
            tracing::error!(error = %err, "idempotent answer not stored");
            claim.release().await;
        }
    }
    Response::from_parts(parts, Body::from(body))
}

/// The stored answer, given again.
fn replay(derived: &DerivedKey, status: u16, sealed: &[u8]) -> Response {
    let opened = derived
        .open(sealed)
        .ok()
        .and_then(|plain| serde_json::from_slice::<StoredAnswer>(&plain).ok());
    let (Some(stored), Ok(status)) = (opened, StatusCode::from_u16(status)) else {
        return ApiError::internal(anyhow::anyhow!("stored idempotent answer unreadable"))
            .into_response();
    };
    let mut response = Response::new(Body::from(Bytes::from(stored.body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.append(name, value);
        }
    }
    headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}

/// A claim released if the request is dropped before it answers (the request timeout cancelled
/// it, or the client went away), so that a retry does the work.
struct ReleaseOnDrop {
    db: PgPool,
    held: Option<Held>,
}

impl ReleaseOnDrop {
    async fn release(&mut self) {
        if let Some(held) = self.held.take()
            && let Err(err) = store::release(&self.db, &held).await
        {
            // Taken over once it is older than the abandonment bound.
            tracing::warn!(error = %err, "idempotency claim not released");
        }
    }
}

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        let Some(held) = self.held.take() else {
            return;
        };
        let db = self.db.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = store::release(&db, &held).await {
                    tracing::warn!(error = %err, "idempotency claim not released");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_answers_are_kept_and_transient_ones_are_not() {
        let status = |s: u16| StatusCode::from_u16(s).expect("status");
        assert!(is_final(status(200), None));
        assert!(is_final(status(201), None));
        assert!(is_final(status(404), Some("NOT_FOUND")));
        assert!(is_final(status(409), Some("CONFLICT")));
        assert!(!is_final(status(409), Some("DEVICE_NOT_READY")));
        assert!(!is_final(status(429), Some("RATE_LIMITED")));
        assert!(!is_final(status(400), Some("VALIDATION_ERROR")));
        for s in [500, 502, 503, 504] {
            assert!(!is_final(status(s), None), "{s}");
        }
    }

    #[test]
    fn keyed_routes_are_routes_of_the_api() {
        for (method, route) in KEYED_ROUTES {
            assert!(
                crate::http::ROUTES
                    .iter()
                    .any(|(m, r)| m.eq_ignore_ascii_case(method) && r == route),
                "{method} {route}"
            );
        }
        assert!(takes_key("POST", "/communities"));
        assert!(!takes_key("GET", "/communities"));
        assert!(!takes_key("POST", "/contacts/block"));
    }

    #[test]
    fn stored_answers_keep_their_body_bytes() {
        for body in [b"{\"success\":true}".to_vec(), vec![0xff, 0x00, 0x80]] {
            let stored = StoredAnswer {
                headers: vec![("content-type".to_owned(), "application/json".to_owned())],
                body: body.clone(),
            };
            let text = serde_json::to_vec(&stored).expect("serialized");
            let back: StoredAnswer = serde_json::from_slice(&text).expect("parsed");
            assert_eq!(back.body, body);
            assert_eq!(back.headers, stored.headers);
        }
    }

    #[test]
    fn header_must_be_sent_once_and_valid() {
        let mut headers = axum::http::HeaderMap::new();
        assert!(parse_header(&headers).is_err());
        headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("abc"));
        assert!(parse_header(&headers).is_ok());
        headers.append(IDEMPOTENCY_KEY, HeaderValue::from_static("def"));
        assert!(matches!(
            parse_header(&headers),
            Err(ApiError::Validation { fields, .. }) if fields[0].field == FIELD
        ));
    }
}
