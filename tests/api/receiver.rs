//! A webhook receiver on loopback, for the delivery tests: it records every request, answers
//! as scripted (status, delay, `Retry-After`), and tracks how many requests are in flight.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    pub retry_after: Option<u64>,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            delay: Duration::ZERO,
            retry_after: None,
        }
    }
}

/// A request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
    /// What it was answered.
    pub status: u16,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

type Script = Box<dyn Fn(usize) -> Reply + Send + Sync>;

#[derive(Default)]
struct Inner {
    received: Mutex<Vec<Received>>,
    queued: Mutex<VecDeque<Reply>>,
    script: Mutex<Option<Script>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    arrived: tokio::sync::Notify,
}

#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Inner>,
    pub addr: SocketAddr,
}

async fn handle(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    inner.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let count = inner.received.lock().expect("lock").len();
    let reply = inner
        .queued
        .lock()
        .expect("lock")
        .pop_front()
        .unwrap_or_else(|| match inner.script.lock().expect("lock").as_ref() {
            Some(script) => script(count),
            None => Reply::status(200),
        });
    // Recorded on arrival, with the answer it will get (a receiver that hangs may never
    // finish answering).
    inner.received.lock().expect("lock").push(Received {
        headers,
        body: body.to_vec(),
        at: Instant::now(),
        status: reply.status,
    });
    inner.arrived.notify_waiters();
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    inner.in_flight.fetch_sub(1, Ordering::SeqCst);
    let status = StatusCode::from_u16(reply.status).expect("status");
    let mut response = (status, "ok").into_response();
    if let Some(seconds) = reply.retry_after {
        response
            .headers_mut()
            .insert("retry-after", seconds.to_string().parse().expect("header"));
    }
    response
}

impl Receiver {
    pub async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver serves");
        });
        Self { inner, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Answers the next requests so, in order (then as scripted, or 200).
    pub fn queue(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.queued.lock().expect("lock").extend(replies);
    }

    /// Answers every request from now on by `script(number of requests so far)`.
    pub fn script(&self, script: impl Fn(usize) -> Reply + Send + Sync + 'static) {
        *self.inner.script.lock().expect("lock") = Some(Box::new(script));
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.received.lock().expect("lock").clone()
    }

    pub fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until `done` holds for what was received (at most `within`).
    pub async fn wait_for(
        &self,
        within: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.inner.arrived.notified();
            let received = self.received();
            if done(&received) {
                return received;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the receiver did not get what was expected in {within:?}; got {} requests: {:?}",
                received.len(),
                received
                    .iter()
                    .map(|r| (r.status, String::from_utf8_lossy(&r.body).into_owned()))
                    .collect::<Vec<_>>()
            );
            let _ = tokio::time::timeout(Duration::from_millis(200), arrived).await;
        }
    }

    /// The events received and acknowledged (2xx), in arrival order.
    pub fn delivered(&self) -> Vec<Value> {
        self.received()
            .iter()
            .filter(|r| (200..300).contains(&r.status))
            .map(Received::json)
            .collect()
    }
}
