//! Forwarding a request to the gateway node that serves its device.
//!
//! The device a request acts on is chosen in one place (`http::device`); when another live node
//! serves it, that answers [`ApiError::Elsewhere`] before any work is done. The forwarding layer
//! (inside authentication and budgets, around the handlers) then sends the request, as it came,
//! to that node's URL from the node registry (never from the request), and answers what the
//! owner answered. A forwarded request carries this node's id, the time and an HMAC-SHA256 of
//! the request under `WUTS_NODE_SECRET`; a request that carries those headers without a valid
//! signature is refused, and a forwarded request is never forwarded again (the hop limit): if
//! the device moved meanwhile, the owner says so and the node that received the request asks
//! the registry again, within the hand-off wait.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::auth::AuthUser;
use super::device::{DeviceBody, DeviceQuery};
use super::error::ApiError;
use super::state::AppState;
use crate::domain::DeviceId;
use crate::store::nodes::LiveNode;

/// The node that forwarded a request.
pub const FORWARDED_BY: HeaderName = HeaderName::from_static("x-wuts-forwarded-by");
/// When it forwarded it (Unix seconds).
pub const FORWARD_TIME: HeaderName = HeaderName::from_static("x-wuts-forward-time");
/// HMAC-SHA256 (base64url) of the forwarded request under the node secret.
pub const FORWARD_SIGNATURE: HeaderName = HeaderName::from_static("x-wuts-forward-signature");
/// On an answer to a forwarded request: the device is no longer served here; ask again.
pub const MOVED: HeaderName = HeaderName::from_static("x-wuts-moved");

/// How far a forwarded request's time may be from this node's clock.
const CLOCK_SKEW: u64 = 60;
/// How long a node waits between two attempts to reach a device's owner.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// How long a node may take to accept a connection from another.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A request extension: the request was forwarded by another node, and verified.
#[derive(Debug, Clone, Copy)]
pub struct ForwardedIn;

/// A response extension: the request is for a device another node serves.
#[derive(Debug, Clone)]
pub struct ForwardTo(pub DeviceId, pub LiveNode);

tokio::task_local! {
    static FORWARDED: bool;
}

/// Whether the request being answered was forwarded by another node.
pub fn forwarded_in() -> bool {
    FORWARDED.try_with(|f| *f).unwrap_or(false)
}

/// The connections to the other nodes: plain HTTP/1.1 kept alive (nodes talk over the private
/// network, by the URLs of the registry; no proxy, no redirects, no TLS).
type NodeClient = Client<HttpConnector, Full<Bytes>>;

/// How this node forwards requests and checks forwarded ones.
pub struct Forwarder {
    node_id: String,
    /// The node secret's HMAC key, set up once; each signature starts from a copy.
    key: Option<Hmac<Sha256>>,
    client: NodeClient,
    timeout: Duration,
    body_limit: usize,
}

impl Forwarder {
    pub fn new(
        node_id: String,
        secret: Option<SecretString>,
        timeout: Duration,
        body_limit: usize,
    ) -> Result<Self, hmac::digest::InvalidLength> {
        let key = secret
            .map(|secret| Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()))
            .transpose()?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Self {
            node_id,
            key,
            client,
            timeout,
            body_limit,
        })
    }

    fn signature(
        &self,
        by: &str,
        time: u64,
        method: &Method,
        uri: &Uri,
        body: &[u8],
    ) -> Option<Hmac<Sha256>> {
        let mut mac = self.key.clone()?;
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let body_hash = URL_SAFE_NO_PAD.encode(Sha256::digest(body));
        // "v1\n{by}\n{time}\n{method}\n{path}\n{body hash}"
        mac.update(b"v1");
        for part in [by, &time.to_string(), method.as_str(), path, &body_hash] {
            mac.update(b"\n");
            mac.update(part.as_bytes());
        }
        Some(mac)
    }

    /// Whether the forwarding headers are those of a node holding the secret, made recently.
    fn verify(&self, headers: &HeaderMap, method: &Method, uri: &Uri, body: &[u8]) -> bool {
        let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(by), Some(time), Some(signature)) = (
            text(&FORWARDED_BY),
            text(&FORWARD_TIME).and_then(|t| t.parse::<u64>().ok()),
            text(&FORWARD_SIGNATURE).and_then(|s| URL_SAFE_NO_PAD.decode(s).ok()),
        ) else {
            return false;
        };
        if now().abs_diff(time) > CLOCK_SKEW || by == self.node_id {
            return false;
        }
        self.signature(by, time, method, uri, body)
            .is_some_and(|mac| mac.verify_slice(&signature).is_ok())
    }

    /// Sends the request to `node`; `Err(sent)` when it failed, `sent` saying whether the node
    /// may have received it.
    async fn send(
        &self,
        node: &LiveNode,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response, bool> {
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let time = now();
        let Some(mac) = self.signature(&self.node_id, time, method, uri, &body) else {
            return Err(false);
        };
        let Ok(target) = format!("{}{path}", node.url).parse::<Uri>() else {
            return Err(false);
        };
        let mut request = axum::http::Request::new(Full::new(body));
        *request.method_mut() = method.clone();
        *request.uri_mut() = target;
        let outgoing = request.headers_mut();
        outgoing.reserve(headers.len() + 3);
        for (name, value) in headers {
            if !is_hop_by_hop(name) && !is_forwarding(name) {
                outgoing.append(name.clone(), value.clone());
            }
        }
        if let Ok(by) = HeaderValue::from_str(&self.node_id) {
            outgoing.insert(FORWARDED_BY, by);
        }
        outgoing.insert(FORWARD_TIME, HeaderValue::from(time));
        if let Ok(signature) =
            HeaderValue::from_str(&URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
        {
            outgoing.insert(FORWARD_SIGNATURE, signature);
        }
        let exchange = async {
            let answer = self
                .client
                .request(request)
                .await
                .map_err(|err| !err.is_connect())?;
            let (mut head, body) = answer.into_parts();
            let body = body.collect().await.map_err(|_| true)?.to_bytes();
            for name in HOP_BY_HOP
                .iter()
                .chain([&axum::http::header::CONTENT_LENGTH])
            {
                head.headers.remove(name);
            }
            Ok::<_, bool>(Response::from_parts(head, Body::from(body)))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| true)?
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn is_forwarding(name: &HeaderName) -> bool {
    *name == FORWARDED_BY || *name == FORWARD_TIME || *name == FORWARD_SIGNATURE || *name == MOVED
}

/// The headers of one connection, not passed on.
const HOP_BY_HOP: [HeaderName; 8] = [
    axum::http::header::CONNECTION,
    axum::http::header::TRANSFER_ENCODING,
    axum::http::header::TE,
    axum::http::header::UPGRADE,
    axum::http::header::HOST,
    axum::http::header::PROXY_AUTHORIZATION,
    axum::http::header::TRAILER,
    HeaderName::from_static("keep-alive"),
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// The outermost layer of the API routes: a request that says it was forwarded by a node is
/// verified (a forged or unsigned one is refused with 403) and marked [`ForwardedIn`].
pub async fn accept_forwarded(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if !request.headers().keys().any(is_forwarding) {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, state.forwarder.body_limit).await else {
        return ApiError::PayloadTooLarge.into_response();
    };
    if !state
        .forwarder
        .verify(&parts.headers, &parts.method, &parts.uri, &body)
    {
        tracing::warn!("refused a request claiming to come from a gateway node");
        return ApiError::Forbidden("forwarding headers are reserved to gateway nodes".to_owned())
            .into_response();
    }
    parts.extensions.insert(ForwardedIn);
    // The node that received the request answered its Idempotency-Key already.
    parts.extensions.insert(super::idempotency::Bypass);
    let request = Request::from_parts(parts, Body::from(body));
    let mut response = FORWARDED.scope(true, next.run(request)).await;
    // The hop limit: the node that forwarded the request asks the registry again.
    if response.extensions().get::<ForwardTo>().is_some() {
        response
            .headers_mut()
            .insert(MOVED, HeaderValue::from_static("1"));
    }
    response
}

/// Around the handlers: a request whose device another node serves is forwarded to it. The
/// body is kept so that the request can be sent on as it came.
///
/// An authenticated request naming a device this node has sent requests for before goes
/// straight to that device's owner (the owner authenticates it and checks the device again, as
/// for any forwarded request); the handlers here run only when the route is unknown or the
/// owner says the device moved.
pub async fn forward_elsewhere(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let cluster = state.sessions.cluster().clone();
    if !cluster.active() || request.extensions().get::<ForwardedIn>().is_some() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, state.forwarder.body_limit).await else {
        return ApiError::PayloadTooLarge.into_response();
    };
    let mut known = None;
    if parts.extensions.get::<AuthUser>().is_some()
        && let Some(device) = named_device(&parts, &body)
    {
        if state.sessions.holds(device) {
            cluster.forget_route(device);
        } else if let Some(node) = cluster.route(device) {
            known = Some((device, node));
        }
    }
    let resendable = parts
        .extensions
        .get::<axum::extract::MatchedPath>()
        .is_some_and(|route| !super::idempotency::takes_key(parts.method.as_str(), route.as_str()));
    let deadline = Instant::now() + cluster.config().handoff_wait;
    loop {
        let remembered = known.is_some();
        let (device, node) = match known.take() {
            Some(route) => route,
            None => {
                let response = next
                    .clone()
                    .run(Request::from_parts(copy(&parts), Body::from(body.clone())))
                    .await;
                let Some(ForwardTo(device, node)) =
                    response.extensions().get::<ForwardTo>().cloned()
                else {
                    return response;
                };
                cluster.learn_route(device, &node);
                (device, node)
            }
        };
        let started = Instant::now();
        let answer = state
            .forwarder
            .send(
                &node,
                &parts.method,
                &parts.uri,
                &parts.headers,
                body.clone(),
            )
            .await;
        crate::metrics::request_forwarded(started.elapsed(), answer.is_ok(), remembered);
        match answer {
            // The device moved meanwhile: ask the registry again.
            Ok(answer) if answer.headers().contains_key(MOVED) => cluster.forget_route(device),
            Ok(mut answer) => {
                answer.headers_mut().remove(MOVED);
                return answer;
            }
            // Not received: ask the registry again (the node may have just stopped). Nor
            // when it was, for a request that may be applied twice (a read, a block: every
            // route that takes no Idempotency-Key), which goes to the new owner.
            Err(false) => cluster.forget_route(device),
            Err(true) if resendable => cluster.forget_route(device),
            Err(true) => {
                cluster.forget_route(device);
                return ApiError::DeviceNotReady(
                    "the gateway node serving the device stopped while answering; the request \
                     may have been applied: retry it (with an Idempotency-Key where it is not \
                     idempotent)"
                        .to_owned(),
                )
                .into_response();
            }
        }
        if Instant::now() >= deadline {
            return ApiError::DeviceNotReady(
                "the device is moving between gateway nodes; retry in a moment".to_owned(),
            )
            .into_response();
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// The device a request names, in its query or in its JSON body (`device_id`), the way the
/// handlers read it; `None` when it names none or cannot be read (the handlers then answer).
fn named_device(parts: &axum::http::request::Parts, body: &Bytes) -> Option<DeviceId> {
    let from_body = || {
        serde_json::from_slice::<DeviceBody>(body)
            .ok()
            .and_then(|b| b.device_id)
    };
    let from_query = || {
        parts
            .uri
            .query()
            .and_then(|q| serde_urlencoded::from_str::<DeviceQuery>(q).ok())
            .and_then(|q| q.device_id)
    };
    if body.is_empty() {
        from_query()
    } else {
        from_body().or_else(from_query)
    }
}

/// A copy of a request's head, to run the request again (`Parts` is not `Clone`).
fn copy(parts: &axum::http::request::Parts) -> axum::http::request::Parts {
    let mut request = Request::new(());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    *request.extensions_mut() = parts.extensions.clone();
    request.into_parts().0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarder(secret: &str) -> Forwarder {
        Forwarder::new(
            "node-a".to_owned(),
            Some(SecretString::from(secret.to_owned())),
            Duration::from_secs(5),
            1024,
        )
        .expect("client")
    }

    fn signed(f: &Forwarder, by: &str, time: u64, body: &[u8]) -> HeaderMap {
        let uri: Uri = "/contacts/block?device_id=x".parse().expect("uri");
        let mac = f
            .signature(by, time, &Method::POST, &uri, body)
            .expect("mac");
        let mut headers = HeaderMap::new();
        headers.insert(FORWARDED_BY, HeaderValue::from_str(by).expect("by"));
        headers.insert(FORWARD_TIME, HeaderValue::from(time));
        headers.insert(
            FORWARD_SIGNATURE,
            HeaderValue::from_str(&URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
                .expect("sig"),
        );
        headers
    }

    #[test]
    fn a_signature_holds_only_for_the_same_secret_request_and_a_recent_time() {
        let sender = forwarder("a-shared-node-secret");
        let receiver = Forwarder {
            node_id: "node-b".to_owned(),
            ..forwarder("a-shared-node-secret")
        };
        let uri: Uri = "/contacts/block?device_id=x".parse().expect("uri");
        let headers = signed(&sender, "node-a", now(), b"{}");
        assert!(receiver.verify(&headers, &Method::POST, &uri, b"{}"));
        // Another body, method, path, secret or an old time: refused.
        assert!(!receiver.verify(&headers, &Method::POST, &uri, b"{\"x\":1}"));
        assert!(!receiver.verify(&headers, &Method::DELETE, &uri, b"{}"));
        let other: Uri = "/contacts/block?device_id=y".parse().expect("uri");
        assert!(!receiver.verify(&headers, &Method::POST, &other, b"{}"));
        let stranger = Forwarder {
            node_id: "node-b".to_owned(),
            ..forwarder("another-node-secret!")
        };
        assert!(!stranger.verify(&headers, &Method::POST, &uri, b"{}"));
        let old = signed(&sender, "node-a", now() - 3600, b"{}");
        assert!(!receiver.verify(&old, &Method::POST, &uri, b"{}"));
        // A node does not accept what claims to come from itself.
        assert!(!sender.verify(&headers, &Method::POST, &uri, b"{}"));
    }

    #[test]
    fn the_signature_is_the_hmac_of_the_documented_text() {
        // Nodes of two releases sign alike during a rolling deploy.
        let sender = forwarder("a-shared-node-secret");
        let uri: Uri = "/contacts/block?device_id=x".parse().expect("uri");
        let ours = sender
            .signature("node-a", 1_700_000_000, &Method::POST, &uri, b"{}")
            .expect("mac")
            .finalize()
            .into_bytes();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"a-shared-node-secret").expect("key");
        let body_hash = URL_SAFE_NO_PAD.encode(Sha256::digest(b"{}"));
        mac.update(
            format!("v1\nnode-a\n1700000000\nPOST\n/contacts/block?device_id=x\n{body_hash}")
                .as_bytes(),
        );
        assert_eq!(ours, mac.finalize().into_bytes());
    }

    #[test]
    fn without_a_secret_nothing_is_accepted() {
        let sender = forwarder("a-shared-node-secret");
        let receiver = Forwarder {
            node_id: "node-b".to_owned(),
            key: None,
            ..forwarder("unused-unused-unused")
        };
        let uri: Uri = "/contacts/block?device_id=x".parse().expect("uri");
        let headers = signed(&sender, "node-a", now(), b"{}");
        assert!(!receiver.verify(&headers, &Method::POST, &uri, b"{}"));
    }
}
