//! The delivery loop. Any gateway process may run it: each device's queue is served one
//! delivery at a time, whichever process holds the lease (see `store::webhooks::claim`).
//! Woken by `LISTEN` on the outbox's channel within milliseconds of an event's commit, and by
//! a periodic sweep in case a wake-up was lost.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, Semaphore, watch};
use wuts_wa_store::Sealer;

use super::send::{Delivery, Sender, Sent};
use super::{DeliveryConfig, sign};
use crate::domain::{EventFilter, EventKind};
use crate::store::events::WAKE_CHANNEL;
use crate::store::webhooks::{self, Attempt, Claim, Outcome};

/// How much longer than its timeout a delivery's lease lasts (a worker that died mid-attempt
/// gives its delivery up this long after the attempt's timeout).
const LEASE_MARGIN_SECS: i32 = 5;

/// The body of a delivery (contract section 6).
pub fn body(claim: &Claim) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": claim.event_id.to_string(),
        "event": claim.event,
        "timestamp": claim.created_at.timestamp(),
        "device_id": claim.device_id,
        "user_id": claim.user_id,
        "seq": claim.seq,
        "data": claim.data,
    }))
    .unwrap_or_default()
}

/// The delivery workers of this process.
pub struct Deliverer {
    db: PgPool,
    sealer: Arc<Sealer>,
    sender: Sender,
    config: DeliveryConfig,
    slots: Arc<Semaphore>,
    wake: Notify,
    /// The earliest retry this node scheduled: the dispatcher wakes for it (sooner than the
    /// sweep would).
    next_retry: std::sync::Mutex<Option<tokio::time::Instant>>,
    stop: watch::Sender<bool>,
}

impl Deliverer {
    pub fn new(
        db: PgPool,
        sealer: Arc<Sealer>,
        config: DeliveryConfig,
    ) -> anyhow::Result<Arc<Self>> {
        // Claims, outcomes and pruning: a database crash that loses the last of them only means
        // that events are delivered again, so their commits do not wait for the disk.
        let connections = u32::try_from(config.concurrency.clamp(1, 8)).unwrap_or(8);
        Ok(Arc::new(Self {
            sender: Sender::new(config.allow_private)?,
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
            db: crate::store::unflushed_commits(&db, connections),
            sealer,
            config,
            wake: Notify::new(),
            next_retry: std::sync::Mutex::new(None),
            stop: watch::channel(false).0,
        }))
    }

    pub fn sender(&self) -> &Sender {
        &self.sender
    }

    pub fn config(&self) -> &DeliveryConfig {
        &self.config
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// Starts the loops: wake-ups, dispatch, and the background upkeep (backlog metrics,
    /// pruning past the retention period).
    pub fn start(self: &Arc<Self>) {
        let listening = self.clone();
        tokio::spawn(async move { listening.listen().await });
        let dispatching = self.clone();
        tokio::spawn(async move { dispatching.dispatch_loop().await });
        let upkeep = self.clone();
        tokio::spawn(async move { upkeep.upkeep().await });
    }

    /// Stops taking deliveries and waits (up to `wait`) for those in flight.
    pub async fn shutdown(&self, wait: Duration) {
        self.stop.send_replace(true);
        self.wake.notify_one();
        let all = u32::try_from(self.config.concurrency.max(1)).unwrap_or(u32::MAX);
        if tokio::time::timeout(wait, self.slots.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!("webhook deliveries still in flight at shutdown");
        }
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Forwards the outbox's notifications into a wake-up (many notifications, one wake).
    async fn listen(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        while !self.stopped() {
            let mut listener = match PgListener::connect_with(&self.db).await {
                Ok(listener) => listener,
                Err(err) => {
                    tracing::warn!(error = %err, "listening for new events failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Err(err) = listener.listen(WAKE_CHANNEL).await {
                tracing::warn!(error = %err, "listening for new events failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            // Whatever was committed while not listening is found by this first sweep.
            self.wake.notify_one();
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    received = listener.recv() => match received {
                        Ok(_) => self.wake.notify_one(),
                        Err(err) => {
                            tracing::warn!(error = %err, "event notifications lost; reconnecting");
                            break;
                        }
                    },
                }
            }
        }
    }

    async fn dispatch_loop(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        loop {
            if self.stopped() {
                return;
            }
            self.dispatch().await;
            let sweep = tokio::time::Instant::now() + self.config.sweep;
            let until = self.take_retry(sweep);
            tokio::select! {
                _ = stop.changed() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// When the dispatcher should look again at the latest: the next sweep, or the earliest
    /// retry scheduled before it. A retry whose time has come is forgotten (this dispatch is
    /// the one that finds it).
    fn take_retry(&self, sweep: tokio::time::Instant) -> tokio::time::Instant {
        let mut next = self
            .next_retry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *next {
            Some(at) if at <= tokio::time::Instant::now() => {
                *next = None;
                at
            }
            Some(at) if at < sweep => at,
            _ => sweep,
        }
    }

    fn retry_scheduled(&self, at: chrono::DateTime<Utc>) {
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        let at = tokio::time::Instant::now() + wait + Duration::from_millis(5);
        let mut next = self
            .next_retry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if next.is_none_or(|earlier| at < earlier) {
            *next = Some(at);
        }
    }

    /// Leases as many due deliveries as there are free slots, and sends each in its own task.
    async fn dispatch(self: &Arc<Self>) {
        loop {
            let free = self.slots.available_permits();
            if free == 0 || self.stopped() {
                return;
            }
            let claims = match webhooks::claim(&self.db, free as i64, LEASE_MARGIN_SECS).await {
                Ok(claims) => claims,
                Err(err) => {
                    tracing::warn!(error = %err, "claiming deliveries failed");
                    return;
                }
            };
            let full = claims.len() == free;
            for claim in claims {
                let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                    break;
                };
                let worker = self.clone();
                tokio::spawn(async move {
                    worker.deliver(claim).await;
                    drop(slot);
                    // The device's next event may be waiting for this one.
                    worker.wake.notify_one();
                });
            }
            if !full {
                return;
            }
        }
    }

    async fn deliver(&self, claim: Claim) {
        let wanted = EventFilter::parse(&claim.enabled_events).is_ok_and(|filter| match filter {
            EventFilter::All => true,
            EventFilter::Only(kinds) => {
                EventKind::parse(&claim.event).is_some_and(|k| kinds.contains(&k))
            }
        });
        if !wanted {
            self.record(&claim, &Sent::default(), &Outcome::Skip).await;
            return;
        }
        let secrets = match webhooks::claim_secrets(&self.sealer, &claim) {
            Ok(secrets) => secrets,
            Err(err) => {
                tracing::error!(error = %err, "webhook secret not readable");
                let sent = Sent {
                    error: Some(
                        "the webhook's secret cannot be read with the configured store keys"
                            .to_owned(),
                    ),
                    ..Sent::default()
                };
                let outcome = self.after_failure(&claim, &sent);
                self.record(&claim, &sent, &outcome).await;
                return;
            }
        };
        let id = claim.event_id.to_string();
        let body = body(&claim);
        let timestamp = Utc::now().timestamp();
        let sent = self
            .sender
            .send(Delivery {
                url: &claim.url,
                headers: &claim.headers,
                signature: sign::signature(&secrets, &id, timestamp, &body),
                id: &id,
                timestamp,
                body,
                timeout: Duration::from_secs(
                    u64::try_from(claim.timeout_secs.max(1)).unwrap_or(15),
                ),
            })
            .await;
        let outcome = if sent.delivered() {
            let waited = (Utc::now() - claim.created_at).to_std().unwrap_or_default();
            crate::metrics::delivery_latency(waited.as_secs_f64());
            Outcome::Delivered
        } else if sent.status == Some(410) {
            Outcome::Disable {
                reason: "the receiver answered 410 Gone".to_owned(),
            }
        } else {
            self.after_failure(&claim, &sent)
        };
        self.record(&claim, &sent, &outcome).await;
    }

    /// What follows a failed attempt: another one on the schedule (or when the receiver asked),
    /// giving up when no attempts are left, or disabling a webhook that kept failing too long.
    fn after_failure(&self, claim: &Claim, sent: &Sent) -> Outcome {
        let failures = u32::try_from(claim.attempts + 1).unwrap_or(u32::MAX);
        let failing_for = claim
            .failing_since
            .and_then(|since| (Utc::now() - since).to_std().ok())
            .unwrap_or_default();
        if failing_for >= self.config.disable_after {
            return Outcome::Disable {
                reason: format!(
                    "every delivery failed for {}",
                    humantime::format_duration(self.config.disable_after)
                ),
            };
        }
        if failures > u32::try_from(claim.retry_attempts.max(0)).unwrap_or(0) {
            return Outcome::GiveUp;
        }
        let wait = sent
            .retry_after
            .unwrap_or_else(|| self.config.retry_after(failures));
        Outcome::Retry {
            at: Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default(),
        }
    }

    async fn record(&self, claim: &Claim, sent: &Sent, outcome: &Outcome) {
        let attempt = Attempt {
            status_code: sent.status.map(i32::from),
            error: sent.error.clone(),
            duration_ms: i32::try_from(sent.duration.as_millis()).unwrap_or(i32::MAX),
        };
        let label = match outcome {
            Outcome::Delivered => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::GiveUp => "failed",
            Outcome::Disable { .. } => "disabled",
            Outcome::Skip => "skipped",
        };
        crate::metrics::delivery_outcome(label);
        if let Outcome::Retry { at } = outcome {
            self.retry_scheduled(*at);
        }
        match webhooks::finish(&self.db, claim, &attempt, outcome).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "device.id" = %claim.device_id,
                "a delivery's lease ran out before its attempt was recorded"
            ),
            Err(err) => tracing::error!(error = %err, "recording a delivery failed"),
        }
    }

    /// Backlog metrics every few seconds; pruning past the retention period every few minutes.
    async fn upkeep(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        let mut round: u64 = 0;
        loop {
            if let Ok((pending, oldest)) = webhooks::backlog(&self.db).await {
                crate::metrics::delivery_backlog(pending, oldest);
            }
            if round.is_multiple_of(60) {
                let retention = chrono::Duration::from_std(self.config.retention)
                    .unwrap_or(chrono::Duration::days(7));
                loop {
                    match crate::store::events::prune(&self.db, Utc::now() - retention).await {
                        Ok(n) if n > 0 => tracing::debug!(events = n, "old events pruned"),
                        Ok(_) => break,
                        Err(err) => {
                            tracing::warn!(error = %err, "pruning old events failed");
                            break;
                        }
                    }
                }
            }
            round += 1;
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }
}
