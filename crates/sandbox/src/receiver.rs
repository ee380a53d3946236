//! A webhook receiver on loopback: checks each delivery's Standard Webhooks signature with an
//! independent implementation, answers 204, prints one line per event and keeps them for the
//! checks.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One delivery as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub event: serde_json::Value,
    pub signature_ok: bool,
}

#[derive(Clone)]
struct Shared {
    verifier: Arc<standardwebhooks::Webhook>,
    received: Arc<Mutex<Vec<Received>>>,
    print: bool,
}

/// The running receiver.
pub struct Receiver {
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl Receiver {
    /// Listens on `addr`; `secret` is the webhook's signing secret (`whsec_...`).
    pub async fn start(addr: SocketAddr, secret: &str, print: bool) -> anyhow::Result<(Self, u16)> {
        let verifier = standardwebhooks::Webhook::new(secret)
            .map_err(|e| anyhow::anyhow!("the webhook secret does not parse: {e}"))?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for webhooks: {e}"))?;
        let port = listener.local_addr()?.port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            verifier: Arc::new(verifier),
            received: received.clone(),
            print,
        };
        let router = axum::Router::new()
            .route("/webhook", post(deliver))
            .with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok((Self { received, task }, port))
    }

    /// What arrived so far.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn deliver(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature_ok = shared.verifier.verify(&body, &headers).is_ok();
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    if shared.print {
        let data = event["data"].to_string();
        let data = if data.chars().count() > 140 {
            format!("{}…", data.chars().take(140).collect::<String>())
        } else {
            data
        };
        println!(
            "  ⟵ webhook  #{} {}  (signature {})  {data}",
            event["seq"],
            event["event"].as_str().unwrap_or("?"),
            if signature_ok { "ok" } else { "INVALID" },
        );
    }
    let mut received = shared
        .received
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    received.push(Received {
        event,
        signature_ok,
    });
    if signature_ok {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::UNAUTHORIZED
    }
}
