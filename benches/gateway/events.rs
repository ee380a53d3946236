//! Events: from a change WhatsApp notifies (a block made on each device's phone, through
//! wa-sim's control API) to a webhook receiver's 2xx, for every device at once; and what the
//! outbox adds to a block made through the API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use axum::body::Bytes;
use axum::extract::State;
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use wa_sim::ControlClient;

use super::gateway::Api;
use super::stats::{percentile, round, sorted};

/// Phone changes sent to wa-sim's control API at once.
const CONTROL_CALLS: usize = 256;

/// Arrivals per device, each device with its own wake-up (one arrival wakes only the sender
/// waiting for it, not every device's).
#[derive(Default)]
struct Arrivals {
    by_device: Mutex<HashMap<String, DeviceArrivals>>,
}

#[derive(Default)]
struct DeviceArrivals {
    times: Vec<Instant>,
    arrived: Arc<tokio::sync::Notify>,
}

impl Arrivals {
    /// `f` on the device's arrivals, under the lock.
    fn with<T>(&self, device: &str, f: impl FnOnce(&mut DeviceArrivals) -> T) -> T {
        let mut by_device = self
            .by_device
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(by_device.entry(device.to_owned()).or_default())
    }

    /// The `count`-th arrival of the device if it came, else the wake-up to wait on.
    fn get(&self, device: &str, count: usize) -> Result<Instant, Arc<tokio::sync::Notify>> {
        self.with(device, |arrivals| match arrivals.times.get(count - 1) {
            Some(at) => Ok(*at),
            None => Err(arrivals.arrived.clone()),
        })
    }
}

async fn receive(State(arrivals): State<Arc<Arrivals>>, body: Bytes) -> &'static str {
    let now = Instant::now();
    if let Ok(event) = serde_json::from_slice::<Value>(&body)
        && let Some(device) = event["device_id"].as_str()
    {
        arrivals.with(device, |arrivals| {
            arrivals.times.push(now);
            arrivals.arrived.notify_waiters();
        });
    }
    "ok"
}

pub struct Events<'a> {
    pub devices: &'a [(String, String)],
    /// The account each phone blocks and unblocks.
    pub target_jid: &'a str,
    /// Block-then-unblock rounds per device in each run (two events each).
    pub rounds: usize,
    /// Phones changing their lists at once in the latency run.
    pub concurrency: usize,
}

#[derive(Debug, Serialize)]
pub struct EventFigures {
    /// Every event of both runs arrived.
    pub events_delivered: usize,
    /// Throughput with every device's phone changing its list at once (the receiver's 2xx per
    /// second, from the first change to the last arrival).
    pub events_per_second: f64,
    /// Latency in that saturating run (mostly waiting in line: every device has one change in
    /// flight).
    pub events_saturated_p50_ms: f64,
    pub events_saturated_p99_ms: f64,
    /// Latency from a change on the phone to the receiver's 2xx with `event_concurrency` phones
    /// changing their lists at once, and the rate that load came to.
    pub event_latency_p50_ms: f64,
    pub event_latency_p99_ms: f64,
    pub event_concurrency: usize,
    pub event_latency_load_per_second: f64,
}

/// One run: how many events arrived, in how long, with each one's latency (sorted).
struct RunFigures {
    delivered: usize,
    per_second: f64,
    latencies: Vec<f64>,
}

impl Events<'_> {
    /// Gives every device a webhook to a receiver on loopback, then changes every phone's block
    /// list `rounds` times each way (waiting for each change's event before the next): first
    /// every device at once, for the throughput, then `concurrency` at a time, for the latency.
    pub async fn run(self, api: &Api, control: &ControlClient) -> Result<EventFigures> {
        let arrivals = Arc::new(Arrivals::default());
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(arrivals.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        for (device, _) in self.devices {
            api.send(
                reqwest::Method::POST,
                "/webhook",
                Some(json!({"device_id": device, "webhook_url": url,
                            "enabled_events": ["privacy.blocklist"]})),
            )
            .await?;
        }
        let saturated = self
            .changes(control, &arrivals, self.devices.len(), 0)
            .await;
        let light = self
            .changes(control, &arrivals, self.concurrency, self.rounds * 2)
            .await;
        server.abort();
        let (saturated, light) = (saturated?, light?);
        Ok(EventFigures {
            events_delivered: saturated.delivered + light.delivered,
            events_per_second: round(saturated.per_second, 1),
            events_saturated_p50_ms: round(percentile(&saturated.latencies, 50.0), 2),
            events_saturated_p99_ms: round(percentile(&saturated.latencies, 99.0), 2),
            event_latency_p50_ms: round(percentile(&light.latencies, 50.0), 2),
            event_latency_p99_ms: round(percentile(&light.latencies, 99.0), 2),
            event_concurrency: self.concurrency,
            event_latency_load_per_second: round(light.per_second, 1),
        })
    }

    /// Every device's phone blocks and unblocks the target `rounds` times, `concurrency` phones
    /// at once, each waiting for its change's event before the next; `before` events per device
    /// arrived in earlier runs.
    async fn changes(
        &self,
        control: &ControlClient,
        arrivals: &Arc<Arrivals>,
        concurrency: usize,
        before: usize,
    ) -> Result<RunFigures> {
        let started = Instant::now();
        // Every device may wait for its event at once, but the phones' changes go to wa-sim's
        // control API a few hundred at a time: ten thousand connections opened at once overflow
        // its listen backlog, and the connects retried seconds later would be measured as event
        // latency.
        let calls = tokio::sync::Semaphore::new(CONTROL_CALLS);
        // An event may wait behind one of every other device's in flight: 30 s, and 10 ms more
        // per device changing at once (ten thousand at once queue for tens of seconds).
        let within = Duration::from_secs(30) + Duration::from_millis(10) * concurrency as u32;
        let latencies: Vec<Result<Vec<f64>>> = futures::stream::iter(self.devices)
            .map(|(device, phone)| {
                let arrivals = arrivals.clone();
                let calls = &calls;
                async move {
                    let mut latencies = Vec::with_capacity(self.rounds * 2);
                    for round in 0..self.rounds * 2 {
                        let action = if round % 2 == 0 { "block" } else { "unblock" };
                        let permit = calls.acquire().await?;
                        let sent = Instant::now();
                        control
                            .change_blocklist(phone, action, self.target_jid)
                            .await
                            .map_err(|e| anyhow!("{phone} {action}: {e:?}"))?;
                        drop(permit);
                        let arrived =
                            wait_for(&arrivals, device, before + round + 1, within).await?;
                        latencies.push((arrived - sent).as_secs_f64() * 1000.0);
                    }
                    Ok(latencies)
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        let elapsed = started.elapsed().as_secs_f64();
        let mut all = Vec::new();
        for latencies in latencies {
            all.extend(latencies?);
        }
        Ok(RunFigures {
            delivered: all.len(),
            per_second: all.len() as f64 / elapsed.max(1e-9),
            latencies: sorted(all),
        })
    }
}

/// When the device's `count`-th event arrived (at most `within` after it was due).
async fn wait_for(
    arrivals: &Arrivals,
    device: &str,
    count: usize,
    within: Duration,
) -> Result<Instant> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let arrived = match arrivals.get(device, count) {
            Ok(at) => return Ok(at),
            Err(arrived) => arrived,
        };
        let notified = arrived.notified();
        // An arrival between the look and `notified()` would be missed: look again once armed.
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Ok(at) = arrivals.get(device, count) {
            return Ok(at);
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return Err(anyhow!("device {device}: event {count} never arrived"));
        }
    }
}
