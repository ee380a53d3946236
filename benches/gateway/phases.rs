//! The benchmark's phases, in the order they run. Each is a struct of its parameters whose `run`
//! measures one thing and answers its own figures: a struct whose fields are the report's keys
//! (flattened into it, see `run.rs`), so a figure's name, type and rounding live in one place.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use serde::Serialize;
use serde_json::{Value, json};
use wa_sim::{ControlClient, Fault};

use super::bare::direct_block_once;
use super::gateway::{Api, Gateway, load, pair_all, register, set_budget};
use super::stats::{elapsed_ms, peak_in_window, ratio, round};
use super::{percentile, sorted};

/// The gateway at rest, one tenant registered: the memory every figure per device is measured
/// from.
pub struct Idle {
    /// Time for start-up work (restores, pools) to settle before the reading.
    pub settle: Duration,
}

#[derive(Debug, Serialize)]
pub struct IdleFigures {
    pub rss_idle_kib: u64,
}

impl Idle {
    pub async fn run(self, gateway: &Gateway) -> Result<IdleFigures> {
        tokio::time::sleep(self.settle).await;
        Ok(IdleFigures {
            rss_idle_kib: gateway.rss_kib()?,
        })
    }
}

/// Pairs a tenth of the devices, then the rest: memory at both sizes (per device it should not
/// grow with the count) and how long pairing everything took.
pub struct Pairing<'a> {
    /// (device id, phone), every device of the run, unpaired.
    pub devices: &'a [(String, String)],
    /// How many make the small size.
    pub small: usize,
    /// Pairings in flight.
    pub concurrency: usize,
    /// Time for sessions to settle (app-state sync, key uploads) before a memory reading.
    pub settle: Duration,
}

#[derive(Debug, Serialize)]
pub struct PairingFigures {
    pub devices: usize,
    pub devices_small: usize,
    pub rss_connected_small_kib: u64,
    pub rss_connected_kib: u64,
    pub pairing_seconds: f64,
}

impl Pairing<'_> {
    pub async fn run(
        self,
        gateway: &Gateway,
        api: &Api,
        control: &ControlClient,
        http: &reqwest::Client,
    ) -> Result<PairingFigures> {
        let n = self.devices.len();
        let started = Instant::now();
        pair_all(api, control, &self.devices[..self.small], self.concurrency).await?;
        gateway.wait_connected(http, self.small as u64).await?;
        tokio::time::sleep(self.settle).await;
        let rss_small = gateway.rss_kib()?;
        pair_all(api, control, &self.devices[self.small..], self.concurrency).await?;
        gateway.wait_connected(http, n as u64).await?;
        let pairing_seconds = started.elapsed().as_secs_f64();
        tokio::time::sleep(self.settle).await;
        Ok(PairingFigures {
            devices: n,
            devices_small: self.small,
            rss_connected_small_kib: rss_small,
            rss_connected_kib: gateway.rss_kib()?,
            pairing_seconds: round(pairing_seconds, 2),
        })
    }
}

/// Reads of the device's block list against the bare route, same client, same concurrency: what
/// authentication, device selection and the snapshot cost.
pub struct Reads<'a> {
    pub device: &'a str,
    pub concurrency: usize,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct ReadFigures {
    pub concurrency: usize,
    pub bare_rps: f64,
    pub read_rps: f64,
    pub read_vs_bare: f64,
    pub read_p50_ms: f64,
    pub read_p99_ms: f64,
    pub load_errors: u64,
}

impl Reads<'_> {
    pub async fn run(self, api: &Api) -> ReadFigures {
        let bare = load(api, "/healthz", self.concurrency, self.seconds).await;
        let path = format!("/contacts/blocklist?device_id={}", self.device);
        let read = load(api, &path, self.concurrency, self.seconds).await;
        ReadFigures {
            concurrency: self.concurrency,
            bare_rps: round(bare.rps, 0),
            read_rps: round(read.rps, 0),
            read_vs_bare: round(ratio(read.rps, bare.rps), 3),
            read_p50_ms: round(percentile(&read.latencies, 50.0), 3),
            read_p99_ms: round(percentile(&read.latencies, 99.0), 3),
            load_errors: bare.errors + read.errors,
        }
    }
}

/// One tenant floods, held to its own budget, while another makes one request at a time: the
/// quiet tenant's latency alone, then during the flood.
pub struct Tenants {
    pub concurrency: usize,
    pub seconds: f64,
    /// The flooding tenant's budget: requests per second, and burst.
    pub flood_budget: (u32, u32),
}

#[derive(Debug, Serialize)]
pub struct TenantFigures {
    pub tenant_quiet_p50_ms: f64,
    pub tenant_quiet_flooded_p50_ms: f64,
    pub tenant_quiet_flooded_p99_ms: f64,
    pub tenant_quiet_errors: u64,
    pub tenant_flood_ok_rps: f64,
    pub tenant_flood_refused: u64,
}

impl Tenants {
    pub async fn run(self, gateway: &Gateway, http: &reqwest::Client) -> Result<TenantFigures> {
        let (quiet, _) = register(http, gateway, "quiet").await?;
        let (flood, flood_id) = register(http, gateway, "flood").await?;
        let (rps, burst) = self.flood_budget;
        set_budget(http, gateway, &flood_id, rps, burst).await?;
        let alone = load(&quiet, "/user/devices", 1, self.seconds).await;
        let (flooded, flooding) = tokio::join!(
            load(&quiet, "/user/devices", 1, self.seconds),
            load(&flood, "/user/devices", self.concurrency, self.seconds),
        );
        Ok(TenantFigures {
            tenant_quiet_p50_ms: round(percentile(&alone.latencies, 50.0), 3),
            tenant_quiet_flooded_p50_ms: round(percentile(&flooded.latencies, 50.0), 3),
            tenant_quiet_flooded_p99_ms: round(percentile(&flooded.latencies, 99.0), 3),
            tenant_quiet_errors: flooded.errors,
            tenant_flood_ok_rps: round(flooding.rps, 0),
            tenant_flood_refused: flooding.errors,
        })
    }
}

/// Resolving 160 numbers the device's store knows (after one warm-up call that teaches them),
/// then 160 it does not: the second must cost one usync query, not 160.
pub struct Resolve<'a> {
    pub device: &'a str,
    pub known: &'a [String],
    pub unknown: &'a [String],
    pub samples: usize,
}

#[derive(Debug, Serialize)]
pub struct ResolveFigures {
    pub resolve160_store_p50_ms: f64,
    pub resolve160_store_p99_ms: f64,
    pub resolve160_unknown_usync_iqs: u64,
}

impl Resolve<'_> {
    pub async fn run(self, api: &Api, control: &ControlClient) -> Result<ResolveFigures> {
        let body = |jids: &[String]| Some(json!({"jids": jids, "device_id": self.device}));
        let resolve = reqwest::Method::POST;
        api.send(resolve.clone(), "/contacts/resolve", body(self.known))
            .await?;
        let mut latencies = Vec::with_capacity(self.samples);
        for _ in 0..self.samples {
            let sent = Instant::now();
            let answer = api
                .send(resolve.clone(), "/contacts/resolve", body(self.known))
                .await?;
            latencies.push(elapsed_ms(sent));
            if answer["count"] != json!(self.known.len()) {
                bail!(
                    "resolve of {} known numbers answered {}",
                    self.known.len(),
                    answer["count"]
                );
            }
        }
        let latencies = sorted(latencies);
        control
            .reset_stats()
            .await
            .map_err(|e| anyhow!("stats: {e:?}"))?;
        api.send(resolve, "/contacts/resolve", body(self.unknown))
            .await?;
        let unknown_iqs = control
            .stats()
            .await
            .map_err(|e| anyhow!("stats: {e:?}"))?
            .iq_count("usync", "get");
        Ok(ResolveFigures {
            resolve160_store_p50_ms: round(percentile(&latencies, 50.0), 3),
            resolve160_store_p99_ms: round(percentile(&latencies, 99.0), 3),
            resolve160_unknown_usync_iqs: unknown_iqs,
        })
    }
}

/// The floor any route pays: one sequential HTTP round trip to the bare route.
pub struct HttpFloor {
    pub samples: usize,
}

#[derive(Debug, Serialize)]
pub struct FloorFigures {
    pub http_floor_p50_ms: f64,
}

impl HttpFloor {
    pub async fn run(self, api: &Api) -> Result<FloorFigures> {
        let mut floor = Vec::with_capacity(self.samples);
        for _ in 0..self.samples {
            let sent = Instant::now();
            api.send(reqwest::Method::GET, "/healthz", None).await?;
            floor.push(elapsed_ms(sent));
        }
        Ok(FloorFigures {
            http_floor_p50_ms: round(percentile(&sorted(floor), 50.0), 3),
        })
    }
}

/// Whom blocks and unblocks target, and the bare client that sends the same IQ directly.
pub struct BlockTarget<'a> {
    pub device: &'a str,
    pub jid: &'a str,
    pub lid_jid: &'a str,
    pub client: &'a Arc<whatsapp_rust::Client>,
}

impl BlockTarget<'_> {
    fn body(&self) -> Value {
        json!({"jid": self.jid, "device_id": self.device})
    }

    /// One block (or unblock) through the gateway; its latency in ms.
    async fn through_gateway(&self, api: &Api, block: bool) -> Result<f64> {
        let path = if block {
            "/contacts/block"
        } else {
            "/contacts/unblock"
        };
        let sent = Instant::now();
        api.send(reqwest::Method::POST, path, Some(self.body()))
            .await?;
        Ok(elapsed_ms(sent))
    }

    /// The same straight from the bare client.
    async fn direct(&self, block: bool) -> Result<f64> {
        direct_block_once(self.client, block, self.lid_jid, self.jid).await
    }
}

/// Block and unblock through the gateway, then the same IQ from the bare client, with wa-sim
/// answering at once: what the gateway adds.
pub struct Block<'a> {
    pub target: &'a BlockTarget<'a>,
    /// Block-then-unblock rounds, each way.
    pub rounds: usize,
}

#[derive(Debug, Serialize)]
pub struct BlockFigures {
    pub block_p50_ms: f64,
    pub block_direct_p50_ms: f64,
    pub block_overhead_ratio: f64,
    pub block_overhead_ms: f64,
}

impl Block<'_> {
    pub async fn run(self, api: &Api) -> Result<BlockFigures> {
        // Warm-up: the first block resolves the target and fills the caches.
        self.target.through_gateway(api, true).await?;
        self.target.through_gateway(api, false).await?;
        let mut gateway = Vec::with_capacity(self.rounds * 2);
        for _ in 0..self.rounds {
            for block in [true, false] {
                gateway.push(self.target.through_gateway(api, block).await?);
            }
        }
        let mut direct = Vec::with_capacity(self.rounds * 2);
        for _ in 0..self.rounds {
            for block in [true, false] {
                direct.push(self.target.direct(block).await?);
            }
        }
        let gateway = percentile(&sorted(gateway), 50.0);
        let direct = percentile(&sorted(direct), 50.0);
        Ok(BlockFigures {
            block_p50_ms: round(gateway, 3),
            block_direct_p50_ms: round(direct, 3),
            block_overhead_ratio: round(ratio(gateway, direct), 3),
            block_overhead_ms: round(gateway - direct, 3),
        })
    }
}

/// The same comparison with WhatsApp's answer arriving after a WAN round trip, as it does in
/// production (wa-sim answers in microseconds, which no HTTP hop can match); gateway and direct
/// calls alternate.
pub struct BlockWan<'a> {
    pub target: &'a BlockTarget<'a>,
    /// The round trip added to wa-sim's block-list answers, ms.
    pub wan_ms: u64,
    pub rounds: usize,
}

#[derive(Debug, Serialize)]
pub struct BlockWanFigures {
    pub block_wan_ms: u64,
    pub block_wan_p50_ms: f64,
    pub block_wan_direct_p50_ms: f64,
    pub block_overhead_ratio_wan: f64,
}

impl BlockWan<'_> {
    pub async fn run(self, api: &Api, control: &ControlClient) -> Result<BlockWanFigures> {
        control
            .add_fault(&Fault::Delay {
                ms: self.wan_ms,
                xmlns: Some("blocklist".into()),
            })
            .await
            .map_err(|e| anyhow!("fault: {e:?}"))?;
        let mut gateway = Vec::with_capacity(self.rounds * 2);
        let mut direct = Vec::with_capacity(self.rounds * 2);
        for _ in 0..self.rounds {
            for block in [true, false] {
                gateway.push(self.target.through_gateway(api, block).await?);
                direct.push(self.target.direct(block).await?);
            }
        }
        control
            .clear_faults()
            .await
            .map_err(|e| anyhow!("faults: {e:?}"))?;
        let gateway = percentile(&sorted(gateway), 50.0);
        let direct = percentile(&sorted(direct), 50.0);
        Ok(BlockWanFigures {
            block_wan_ms: self.wan_ms,
            block_wan_p50_ms: round(gateway, 3),
            block_wan_direct_p50_ms: round(direct, 3),
            block_overhead_ratio_wan: round(ratio(gateway, direct), 3),
        })
    }
}

/// Crash and restore: SIGKILL, a new process on the same database, every device back without
/// pairing again (IK logins, from the stored keys).
pub struct Restore<'a> {
    /// The gateway to crash.
    pub gateway: Gateway,
    pub database_url: &'a str,
    pub wa_url: &'a str,
    /// Devices that must come back.
    pub devices: usize,
    /// Time for restored sessions to settle before the memory reading.
    pub settle: Duration,
}

#[derive(Debug, Serialize)]
pub struct RestoreFigures {
    /// From the SIGKILL to the new process's `/readyz` (sessions restore in the background).
    pub restore_ready_seconds: f64,
    pub restore_seconds: f64,
    pub restore_repairs: u64,
    pub restore_ik_logins: u64,
    pub rss_restored_kib: u64,
}

impl Restore<'_> {
    /// The figures, and the restored gateway.
    pub async fn run(
        self,
        config: &super::Config,
        control: &ControlClient,
        http: &reqwest::Client,
    ) -> Result<(RestoreFigures, Gateway)> {
        let before = control.stats().await.map_err(|e| anyhow!("stats: {e:?}"))?;
        self.gateway.crash()?;
        let started = Instant::now();
        let restored = Gateway::start(config, self.database_url, self.wa_url).await?;
        let ready_seconds = started.elapsed().as_secs_f64();
        restored.wait_connected(http, self.devices as u64).await?;
        let restore_seconds = started.elapsed().as_secs_f64();
        let after = control.stats().await.map_err(|e| anyhow!("stats: {e:?}"))?;
        tokio::time::sleep(self.settle).await;
        let figures = RestoreFigures {
            restore_ready_seconds: round(ready_seconds, 2),
            restore_seconds: round(restore_seconds, 2),
            restore_repairs: after.pairings.saturating_sub(before.pairings),
            restore_ik_logins: after
                .handshake_count("ik")
                .saturating_sub(before.handshake_count("ik")),
            rss_restored_kib: restored.rss_kib()?,
        };
        Ok((figures, restored))
    }
}

/// WhatsApp drops every connection at once: how the sessions come back over time (spread by the
/// reconnect jitter, not a thundering herd).
pub struct Outage {
    /// Devices that must come back.
    pub devices: usize,
}

#[derive(Debug, Serialize)]
pub struct OutageFigures {
    pub reconnect_logins: usize,
    pub reconnect_first_s: f64,
    pub reconnect_p50_s: f64,
    pub reconnect_p90_s: f64,
    pub reconnect_last_s: f64,
    pub reconnect_peak_per_second: usize,
}

impl Outage {
    pub async fn run(
        self,
        gateway: &Gateway,
        control: &ControlClient,
        http: &reqwest::Client,
    ) -> Result<OutageFigures> {
        control
            .reset_stats()
            .await
            .map_err(|e| anyhow!("stats: {e:?}"))?;
        control
            .add_fault(&Fault::DropConnections { phone: None })
            .await
            .map_err(|e| anyhow!("faults: {e:?}"))?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        gateway.wait_connected(http, self.devices as u64).await?;
        let stats = control.stats().await.map_err(|e| anyhow!("stats: {e:?}"))?;
        let logins = sorted(stats.login_times_ms.iter().map(|&ms| ms as f64).collect());
        let seconds = |p: f64| round(percentile(&logins, p) / 1000.0, 2);
        Ok(OutageFigures {
            reconnect_logins: logins.len(),
            reconnect_first_s: seconds(0.0),
            reconnect_p50_s: seconds(50.0),
            reconnect_p90_s: seconds(90.0),
            reconnect_last_s: seconds(100.0),
            reconnect_peak_per_second: peak_in_window(&stats.login_times_ms, 1000),
        })
    }
}

/// Memory per device, from the readings of the phases: above the idle gateway, divided by the
/// devices connected at the time.
#[derive(Debug, Serialize)]
pub struct PerDevice {
    pub rss_per_device_kib: f64,
    pub rss_per_device_kib_small: f64,
    pub rss_per_device_restored_kib: f64,
}

impl PerDevice {
    pub fn of(idle: &IdleFigures, pairing: &PairingFigures, restore: &RestoreFigures) -> Self {
        let per_device = |rss: u64, count: usize| {
            round(
                rss.saturating_sub(idle.rss_idle_kib) as f64 / count as f64,
                1,
            )
        };
        Self {
            rss_per_device_kib: per_device(pairing.rss_connected_kib, pairing.devices),
            rss_per_device_kib_small: per_device(
                pairing.rss_connected_small_kib,
                pairing.devices_small,
            ),
            rss_per_device_restored_kib: per_device(restore.rss_restored_kib, pairing.devices),
        }
    }
}
