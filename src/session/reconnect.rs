//! Spreading reconnects. When WhatsApp drops every connection at once (a network blip, a server
//! restart), whatsapp-rust reconnects each session after the same backoff (1 s ± 10 %): a
//! thousand sessions would knock at once. The transport factory below adds a random delay, up to
//! `WUTS_RECONNECT_JITTER`, before a connection that replaces one that was established; first
//! connections (pairing, `POST /connect`, startup restore, which has its own jitter) and the
//! immediate reconnect after pairing are not delayed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use wacore::net::{Transport, TransportEvent, TransportFactory};
use whatsapp_rust::async_channel;

use super::state::SessionState;

/// Set by the session when an established connection drops; the next connection waits.
#[derive(Debug, Clone, Default)]
pub struct ReconnectSignal(Arc<AtomicBool>);

impl ReconnectSignal {
    /// The next connection replaces an established one.
    pub fn arm(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn take(&self) -> bool {
        self.0.swap(false, Ordering::AcqRel)
    }
}

/// A transport factory that delays reconnects by a random part of `jitter`, and tells the
/// session when a connection attempt fails (so that a caller waiting for a QR code hears at
/// once that WhatsApp cannot be reached, and `/status` says why).
pub struct JitteredReconnects<F> {
    inner: F,
    jitter: Duration,
    signal: ReconnectSignal,
    state: Arc<watch::Sender<SessionState>>,
}

impl<F> JitteredReconnects<F> {
    pub fn new(
        inner: F,
        jitter: Duration,
        signal: ReconnectSignal,
        state: Arc<watch::Sender<SessionState>>,
    ) -> Self {
        Self {
            inner,
            jitter,
            signal,
            state,
        }
    }
}

#[async_trait]
impl<F: TransportFactory> TransportFactory for JitteredReconnects<F> {
    async fn create_transport(
        &self,
    ) -> Result<(Arc<dyn Transport>, async_channel::Receiver<TransportEvent>), anyhow::Error> {
        if self.signal.take() && !self.jitter.is_zero() {
            let max = u64::try_from(self.jitter.as_millis()).unwrap_or(u64::MAX);
            tokio::time::sleep(Duration::from_millis(rand::random_range(0..=max))).await;
        }
        let created = self.inner.create_transport().await;
        if let Err(err) = &created {
            let reason = format!("cannot reach WhatsApp: {err}");
            tracing::debug!(error = %err, "connection to WhatsApp failed");
            connection_failed(&self.state, reason);
        }
        created
    }
}

/// Tells the session that a connection attempt failed, and why (a caller waiting for a QR code
/// or a pairing code is answered at once; the actor stops a pairing client).
fn connection_failed(state: &watch::Sender<SessionState>, reason: String) {
    state.send_modify(|s| {
        s.connect_failures += 1;
        s.last_error = Some(reason);
    });
}

/// whatsapp-rust's HTTP client (it fetches WhatsApp Web's version before connecting, and media),
/// one for the whole process, seen by each session through this wrapper: a failed version fetch is
/// a failed connection attempt too, told to the session with its cause, so that a caller waiting
/// for a QR code hears why at once.
pub struct ObservedHttp {
    inner: Arc<dyn whatsapp_rust::http::HttpClient>,
    state: Arc<watch::Sender<SessionState>>,
}

/// Where whatsapp-rust reads the current WhatsApp Web version from.
const VERSION_URL_PART: &str = "web.whatsapp.com/sw.js";

impl ObservedHttp {
    pub fn new(
        inner: Arc<dyn whatsapp_rust::http::HttpClient>,
        state: Arc<watch::Sender<SessionState>>,
    ) -> Self {
        Self { inner, state }
    }

    fn version_failed(&self, cause: String) {
        let reason = format!(
            "cannot reach WhatsApp: fetching WhatsApp Web's version failed ({cause}); set \
             WUTS_WA_VERSION to skip the fetch"
        );
        tracing::debug!(error = %cause, "WhatsApp Web version fetch failed");
        connection_failed(&self.state, reason);
    }
}

#[async_trait]
impl whatsapp_rust::http::HttpClient for ObservedHttp {
    async fn execute(
        &self,
        request: whatsapp_rust::http::HttpRequest,
    ) -> anyhow::Result<whatsapp_rust::http::HttpResponse> {
        let version = request.url.contains(VERSION_URL_PART);
        let result = self.inner.execute(request).await;
        if version {
            match &result {
                Err(err) => self.version_failed(err.to_string()),
                Ok(response) if !(200..300).contains(&response.status_code) => {
                    self.version_failed(format!("HTTP status {}", response.status_code));
                }
                Ok(_) => {}
            }
        }
        result
    }

    fn supports_streaming(&self) -> bool {
        self.inner.supports_streaming()
    }

    fn execute_streaming(
        &self,
        request: whatsapp_rust::http::HttpRequest,
    ) -> anyhow::Result<wacore::net::StreamingHttpResponse> {
        self.inner.execute_streaming(request)
    }

    fn supports_upload_streaming(&self) -> bool {
        self.inner.supports_upload_streaming()
    }

    fn execute_upload(
        &self,
        request: whatsapp_rust::http::HttpRequest,
        body: wacore::net::UploadBody,
        content_length: u64,
    ) -> anyhow::Result<whatsapp_rust::http::HttpResponse> {
        self.inner.execute_upload(request, body, content_length)
    }

    fn resource_report(&self) -> Option<wacore::stats::HttpResourceReport> {
        self.inner.resource_report()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SessionStatus;
    use whatsapp_rust::http::{HttpClient, HttpRequest, HttpResponse};

    /// Answers every request with a fixed status, or fails it.
    struct Fixed(Option<u16>);

    #[async_trait]
    impl HttpClient for Fixed {
        async fn execute(&self, _request: HttpRequest) -> anyhow::Result<HttpResponse> {
            match self.0 {
                Some(status_code) => Ok(HttpResponse {
                    status_code,
                    body: Vec::new(),
                }),
                None => Err(anyhow::anyhow!("dns error: failed to lookup address")),
            }
        }
    }

    fn observed(inner: Fixed) -> (ObservedHttp, Arc<watch::Sender<SessionState>>) {
        let state = Arc::new(watch::Sender::new(SessionState::new(
            SessionStatus::Pairing,
        )));
        (ObservedHttp::new(Arc::new(inner), state.clone()), state)
    }

    #[tokio::test]
    async fn a_failed_version_fetch_is_a_failed_connection_with_its_cause() {
        let (http, state) = observed(Fixed(None));
        let _ = http
            .execute(HttpRequest::get("https://web.whatsapp.com/sw.js"))
            .await;
        let seen = state.borrow().clone();
        assert_eq!(seen.connect_failures, 1);
        let error = seen.last_error.unwrap_or_default();
        assert!(
            error.starts_with(
                "cannot reach WhatsApp: fetching WhatsApp Web's version failed (dns error"
            ),
            "{error}"
        );
        assert!(error.contains("WUTS_WA_VERSION"), "{error}");

        let (http, state) = observed(Fixed(Some(403)));
        let answer = http
            .execute(HttpRequest::get("https://web.whatsapp.com/sw.js"))
            .await;
        assert_eq!(answer.map(|r| r.status_code).ok(), Some(403));
        assert_eq!(state.borrow().connect_failures, 1);
        assert!(
            state
                .borrow()
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("HTTP status 403"))
        );

        // Media and a fetched version are not connection failures.
        let (http, state) = observed(Fixed(None));
        let _ = http
            .execute(HttpRequest::get("https://mmg.whatsapp.net/v/t62/abc"))
            .await;
        let (ok, ok_state) = observed(Fixed(Some(200)));
        let _ = ok
            .execute(HttpRequest::get("https://web.whatsapp.com/sw.js"))
            .await;
        assert_eq!(state.borrow().connect_failures, 0);
        assert_eq!(ok_state.borrow().connect_failures, 0);
    }
}
