//! The gateway benchmark: what a device session costs in memory, how fast sessions come back
//! after a crash, and what the gateway adds on top of WhatsApp.
//!
//! The gateway runs as its own process (the `wuts` binary, on a fresh database) so that its
//! memory is measured alone, from `/proc`. wa-sim, the load client and a bare whatsapp-rust
//! client (the reference for the block overhead) run in this process. Shared by
//! `cargo bench --bench gateway` and a smoke test with a handful of devices.
//!
//! [`run`] sets the stage (accounts, the gateway, a tenant, its devices) and runs the phases of
//! `phases.rs` in order; each answers its own figures, and the report is their union.

// Paths spelled out: this file is also a module of the API tests (`tests/api/bench_smoke.rs`),
// where a plain `mod` would look for its children elsewhere.
#[path = "bare.rs"]
mod bare;
#[path = "bare_memory.rs"]
pub mod bare_memory;
#[path = "events.rs"]
mod events;
#[path = "gateway.rs"]
mod gateway;
#[path = "phases.rs"]
mod phases;
#[path = "quiet.rs"]
mod quiet;
#[path = "stats.rs"]
mod stats;
#[path = "user_path.rs"]
mod user_path;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow};
use serde::Serialize;
use serde_json::Value;
use wa_sim::WaSim;
use wuts_test_support::ScratchDatabase;
pub use wuts_test_support::with_database;

use gateway::{Gateway, create_accounts, create_devices, register};
use phases::{
    Block, BlockFigures, BlockTarget, BlockWan, BlockWanFigures, FloorFigures, HttpFloor, Idle,
    IdleFigures, Outage, OutageFigures, Pairing, PairingFigures, PerDevice, ReadFigures, Reads,
    Resolve, ResolveFigures, Restore, RestoreFigures, TenantFigures, Tenants,
};
// The phases take these through here, where the smoke test (tests/api/bench_smoke.rs) checks them.
pub use stats::{percentile, sorted};

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Devices paired and connected (`BENCH_DEVICES`).
    pub devices: usize,
    /// Seconds per load phase (`BENCH_SECONDS`).
    pub seconds: f64,
    /// Requests in flight during load phases (`BENCH_CONCURRENCY`).
    pub concurrency: usize,
    /// Pairings in flight while devices are set up (`BENCH_PAIR_CONCURRENCY`).
    pub pair_concurrency: usize,
    /// Sequential samples for the latency figures (`BENCH_SAMPLES`).
    pub samples: usize,
    /// A WAN round trip added to wa-sim's block-list answers for the second block comparison,
    /// in milliseconds (`BENCH_WAN_MS`).
    pub wan_ms: u64,
    /// Devices whose phones change their block lists at once in the events phase's latency run
    /// (`BENCH_EVENT_CONCURRENCY`; the throughput run changes every device's at once).
    pub event_concurrency: usize,
    /// Block-then-unblock rounds per device in each events run (`BENCH_EVENT_ROUNDS`).
    pub event_rounds: usize,
    /// Devices paired through the HTTP API as a user pairs them, on a gateway of their own
    /// (`BENCH_USER_DEVICES`; 0 skips the user-path phase).
    pub user_devices: usize,
    /// Users pairing at once in the user-path phase (`BENCH_USER_PAIR_CONCURRENCY`).
    pub user_pair_concurrency: usize,
    /// More environment for the user-path gateways (`BENCH_USER_GATEWAY_ENV`, `K=V;K=V`): a log
    /// filter, an allocator setting, a profiler's preload.
    pub user_gateway_env: Vec<(String, String)>,
    /// A directory for the user-path gateways' logs (`BENCH_USER_LOGS`; none kept by default).
    pub user_logs: Option<PathBuf>,
    /// Only the user-path phase (`BENCH_USER_ONLY=1`).
    pub user_only: bool,
    /// How long PostgreSQL is watched while every device is connected and the API is quiet
    /// (`BENCH_QUIET_SECONDS`, default 60).
    pub quiet_seconds: f64,
    /// Bare whatsapp-rust sessions paired in a process of their own, for the memory figure next
    /// to the gateway's (`BENCH_BARE_SESSIONS`, default `BENCH_DEVICES` up to 1,000; 0 skips).
    pub bare_sessions: usize,
    /// Arguments that make this executable run the bare sessions' process (none for the
    /// benchmark's binary, whose `main` looks at the environment first).
    pub bare_child_args: Vec<String>,
    /// A PostgreSQL URL whose server hosts the fresh benchmark database (`DATABASE_URL`).
    pub database_url: String,
    /// The gateway binary.
    pub wuts: PathBuf,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Config {
    pub fn from_env(wuts: PathBuf) -> Self {
        let devices = env_or("BENCH_DEVICES", 1000usize).max(1);
        Self {
            devices,
            seconds: env_or("BENCH_SECONDS", 5.0f64).max(0.2),
            concurrency: env_or("BENCH_CONCURRENCY", 16usize).max(1),
            pair_concurrency: env_or("BENCH_PAIR_CONCURRENCY", 32usize).max(1),
            samples: env_or("BENCH_SAMPLES", 200usize).max(5),
            wan_ms: env_or("BENCH_WAN_MS", 30u64),
            event_concurrency: env_or("BENCH_EVENT_CONCURRENCY", 32usize).max(1),
            event_rounds: env_or("BENCH_EVENT_ROUNDS", 2usize).max(1),
            user_devices: env_or("BENCH_USER_DEVICES", 100usize),
            user_pair_concurrency: env_or("BENCH_USER_PAIR_CONCURRENCY", 8usize).max(1),
            user_gateway_env: user_path::parse_env(
                &std::env::var("BENCH_USER_GATEWAY_ENV").unwrap_or_default(),
            ),
            user_logs: std::env::var_os("BENCH_USER_LOGS").map(PathBuf::from),
            user_only: env_or("BENCH_USER_ONLY", 0u8) == 1,
            quiet_seconds: env_or("BENCH_QUIET_SECONDS", 60.0f64).max(1.0),
            bare_sessions: env_or("BENCH_BARE_SESSIONS", devices.min(1000)),
            bare_child_args: Vec::new(),
            database_url: std::env::var("DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/wuts".to_owned()),
            wuts,
        }
    }
}

/// The figures of every phase, as one flat JSON object (the keys the benchmark has always
/// printed; tools compare runs by them).
#[derive(Debug, Serialize)]
struct Report {
    #[serde(flatten)]
    idle: IdleFigures,
    #[serde(flatten)]
    pairing: PairingFigures,
    #[serde(flatten)]
    per_device: PerDevice,
    #[serde(flatten)]
    reads: ReadFigures,
    #[serde(flatten)]
    tenants: TenantFigures,
    #[serde(flatten)]
    resolve: ResolveFigures,
    #[serde(flatten)]
    floor: FloorFigures,
    #[serde(flatten)]
    block: BlockFigures,
    #[serde(flatten)]
    block_wan: BlockWanFigures,
    #[serde(flatten)]
    events: events::EventFigures,
    /// Block p50 once the device has a webhook (its event is written and delivered).
    block_with_webhook_p50_ms: f64,
    /// `block_with_webhook_p50_ms` over `block_p50_ms`, in the same run.
    block_webhook_ratio: f64,
    #[serde(flatten)]
    restore: RestoreFigures,
    #[serde(flatten)]
    quiet: quiet::QuietFigures,
    #[serde(flatten)]
    outage: OutageFigures,
}

/// The phones of a run: the devices', 160 numbers the store will know, 160 it will not, the block
/// target's and the bare client's.
struct Phones {
    devices: Vec<String>,
    known: Vec<String>,
    unknown: Vec<String>,
    target: String,
    direct: String,
}

impl Phones {
    fn new(devices: usize) -> Self {
        Self {
            devices: (0..devices).map(|i| format!("5510{i:09}")).collect(),
            known: (0..160).map(|i| format!("5512{i:09}")).collect(),
            unknown: (0..160).map(|i| format!("5513{i:09}")).collect(),
            target: "5514000000001".to_owned(),
            direct: "5515000000001".to_owned(),
        }
    }

    /// Every phone that needs a wa-sim account (the unknown ones have none).
    fn with_accounts(&self) -> Vec<String> {
        let mut phones = self.devices.clone();
        phones.extend(self.known.iter().cloned());
        phones.push(self.target.clone());
        phones.push(self.direct.clone());
        phones
    }
}

/// Says on stderr which phase starts, with the time since the process started, so a profiler or a
/// monitor can be pointed at one phase.
fn progress(phase: &str) {
    static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let started = STARTED.get_or_init(std::time::Instant::now);
    eprintln!("bench: {phase} at {:.1} s", started.elapsed().as_secs_f64());
}

/// Runs the benchmark; answers the figures as one JSON object.
pub async fn run(config: Config) -> Result<Value> {
    progress("start");
    let sim = WaSim::start().await?;
    wuts_gateway::delivery::send::install_tls_provider();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(config.concurrency.max(config.pair_concurrency) * 2)
        .build()?;
    let mut report = if config.user_only {
        serde_json::Map::new()
    } else {
        let database = ScratchDatabase::new(&config.database_url, "wuts_bench");
        let database_url = with_database(&config.database_url, database.name());
        let report = measure(&config, &sim, &http, &database_url).await;
        database.drop_database().await;
        let mut report = as_object(serde_json::to_value(report?)?)?;
        if config.bare_sessions > 0 {
            progress("bare sessions");
            let bare = bare_memory::BareMemory {
                sessions: config.bare_sessions,
                concurrency: config.pair_concurrency,
                ws_url: sim.ws_url(),
                control_url: sim.control_url(),
                child_args: &config.bare_child_args,
                settle: Duration::from_secs(5),
            }
            .run(&sim.control())
            .await?;
            report.extend(as_object(serde_json::to_value(bare)?)?);
        }
        report
    };
    if config.user_devices > 0 {
        progress("user path");
        let user_path = user_path::UserPath {
            devices: config.user_devices,
            concurrency: config.user_pair_concurrency,
            settle: Duration::from_secs(5),
            kill_after: Duration::from_secs(1),
            gateway_env: &config.user_gateway_env,
            logs: config.user_logs.as_deref(),
        }
        .run(&config, &sim.control(), &http, sim.ws_url())
        .await?;
        report.extend(as_object(serde_json::to_value(user_path)?)?);
    }
    Ok(Value::Object(report))
}

fn as_object(value: Value) -> Result<serde_json::Map<String, Value>> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(anyhow!("figures are not an object: {other}")),
    }
}

async fn measure(
    config: &Config,
    sim: &WaSim,
    http: &reqwest::Client,
    database_url: &str,
) -> Result<Report> {
    let control = sim.control();
    let phones = Phones::new(config.devices);
    create_accounts(&control, phones.with_accounts()).await?;
    let target = control
        .account(&phones.target)
        .await
        .map_err(|e| anyhow!("target: {e:?}"))?;
    // The reference client pairs while the gateway starts (pairing includes WhatsApp's key-share
    // grace).
    let direct = tokio::spawn(bare::bare_client(
        sim.ws_url().to_owned(),
        control.clone(),
        phones.direct.clone(),
    ));

    progress("gateway");
    let gateway = Gateway::start(config, database_url, sim.ws_url()).await?;
    let api = register(http, &gateway, "bench").await?.0;
    let idle = Idle {
        settle: Duration::from_secs(2),
    }
    .run(&gateway)
    .await?;

    // Paired before the gateway's devices: among thousands of pairings it could miss its deadline.
    let (client, bot) = direct.await.map_err(|e| anyhow!("bare client: {e}"))??;

    progress("pairing");
    let devices = create_devices(&api, &phones.devices).await?;
    let pairing = Pairing {
        devices: &devices,
        small: (config.devices / 10).max(1),
        concurrency: config.pair_concurrency,
        settle: Duration::from_secs(3),
    }
    .run(&gateway, &api, &control, http)
    .await?;

    let device = devices
        .first()
        .map(|(id, _)| id.as_str())
        .ok_or_else(|| anyhow!("no device"))?;
    progress("reads");
    let reads = Reads {
        device,
        concurrency: config.concurrency,
        seconds: config.seconds,
    }
    .run(&api)
    .await;
    progress("tenants");
    let tenants = Tenants {
        concurrency: config.concurrency,
        seconds: config.seconds,
        // 100 per second after a burst of 200; a short run (the smoke test) gets a burst it can
        // spend in its time, so that the flood still meets its budget.
        flood_budget: (100, (100.0 * config.seconds).clamp(10.0, 200.0) as u32),
    }
    .run(&gateway, http)
    .await?;
    progress("resolve");
    let resolve = Resolve {
        device,
        known: &phones.known,
        unknown: &phones.unknown,
        samples: config.samples,
    }
    .run(&api, &control)
    .await?;
    let floor = HttpFloor {
        samples: config.samples,
    }
    .run(&api)
    .await?;

    let target = BlockTarget {
        device,
        jid: &target.jid,
        lid_jid: &target.lid_jid,
        client: &client,
    };
    progress("block");
    let block = Block {
        target: &target,
        rounds: (config.samples / 4).max(5),
    }
    .run(&api)
    .await?;
    let block_wan = BlockWan {
        target: &target,
        wan_ms: config.wan_ms,
        rounds: 5,
    }
    .run(&api, &control)
    .await?;
    // Every device's events, then the block again with the device's webhook in place.
    progress("events");
    let events = events::Events {
        devices: &devices,
        target_jid: target.jid,
        rounds: config.event_rounds,
        concurrency: config.event_concurrency,
    }
    .run(&api, &control)
    .await?;
    progress("block with webhook");
    let block_with_webhook = Block {
        target: &target,
        rounds: (config.samples / 4).max(5),
    }
    .run(&api)
    .await?;
    let _ = tokio::time::timeout(Duration::from_secs(10), bot.shutdown()).await;

    progress("restore");
    let (restore, restored) = Restore {
        gateway,
        database_url,
        wa_url: sim.ws_url(),
        devices: config.devices,
        settle: Duration::from_secs(3),
    }
    .run(config, &control, http)
    .await?;
    progress("quiet");
    let quiet = quiet::Quiet {
        database_url,
        devices: config.devices,
        seconds: config.quiet_seconds,
    }
    .run()
    .await?;
    progress("outage");
    let outage = Outage {
        devices: config.devices,
    }
    .run(&restored, &control, http)
    .await?;
    restored.stop().await;

    Ok(Report {
        per_device: PerDevice::of(&idle, &pairing, &restore),
        idle,
        pairing,
        reads,
        tenants,
        resolve,
        floor,
        block_with_webhook_p50_ms: block_with_webhook.block_p50_ms,
        block_webhook_ratio: stats::round(
            stats::ratio(block_with_webhook.block_p50_ms, block.block_p50_ms),
            3,
        ),
        block,
        block_wan,
        events,
        restore,
        quiet,
        outage,
    })
}
