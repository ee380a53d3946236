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
            self.state.send_modify(|s| {
                s.connect_failures += 1;
                s.last_error = Some(reason);
            });
        }
        created
    }
}
