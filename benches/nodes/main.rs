//! `cargo bench --bench nodes`: three gateway nodes (release `wuts` processes) on one fresh
//! database and one wa-sim, `BENCH_NODE_DEVICES` devices per node (default 1,000) paired through
//! them. Prints one JSON object (also written to `target/bench/nodes.json`):
//!
//! - `forwarded_read_rps` / `direct_read_rps` and their ratio: `GET /contacts/blocklist` for one
//!   device, sent to a node that does not serve it (forwarded to the owner) against the same
//!   load sent to the owner, same client and concurrency (`BENCH_CONCURRENCY`, 16, for
//!   `BENCH_SECONDS`, 5);
//! - `takeover_seconds`: SIGKILL the node serving the most devices, until the two others report
//!   every device connected (`takeover_devices` of them were the killed node's);
//! - `rolling_restart_seconds` and `rolling_restart_requests` / `_failed` / `_5xx` (a 5xx or
//!   no answer at all) / `_not_ready` (409): with a third node started again, each node in turn leaves the rotation, gets
//!   SIGTERM (it hands its devices over and exits), is started again and rejoins the rotation
//!   once it serves its share, while `BENCH_CONCURRENCY` clients send reads and block-list
//!   changes for every device through the nodes in rotation; `rolling_restart_failures` counts
//!   each distinct error answered.
//!
//! `direct_read_cpu_us` / `forwarded_read_cpu_us`: the CPU each read cost, in microseconds, in
//! each gateway (the busiest first), PostgreSQL and the benchmark's process (the clients).
//! `takeover_cpu_seconds` is the CPU time the surviving gateways, PostgreSQL and the benchmark's
//! own process (wa-sim, the clients) used meanwhile.
//!
//! Other parameters: `BENCH_PAIR_CONCURRENCY` (32), `BENCH_NODE_ROLLING` (1; 0 stops after the
//! takeover), `BENCH_NODE_LOG` (the nodes' `RUST_LOG`, default `error`), `DATABASE_URL` (the server that hosts the benchmark database).

#[expect(
    dead_code,
    reason = "the harness of the gateway benchmark, of which this uses a part"
)]
#[path = "../gateway/gateway.rs"]
mod gateway;
#[expect(
    dead_code,
    reason = "the gateway benchmark's figures, of which this uses a part"
)]
#[path = "../gateway/stats.rs"]
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};
use wa_sim::WaSim;
use wuts_test_support::{ScratchDatabase, with_database};

use gateway::{Api, Gateway, create_accounts, create_devices, load, pair_all, register};
pub use stats::sorted;

const NODE_SECRET: &str = "a-node-secret-for-the-benchmark";
/// How long the benchmark waits for devices to come back after a kill or a restart.
const SETTLE_DEADLINE: Duration = Duration::from_secs(600);

/// What the shared gateway harness needs to know.
pub struct Config {
    pub wuts: PathBuf,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(run())?;
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("nodes.json"), format!("{text}\n"))?;
    Ok(())
}

fn progress(phase: &str) {
    static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let started = STARTED.get_or_init(Instant::now);
    eprintln!("bench: {phase} at {:.1} s", started.elapsed().as_secs_f64());
}

async fn run() -> Result<Value> {
    progress("start");
    let server = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/wuts".to_owned());
    let database = ScratchDatabase::new(&server, "wuts_bench_nodes");
    let database_url = with_database(&server, database.name());
    let report = measure(&database_url).await;
    database.drop_database().await;
    report
}

struct Cluster {
    config: Config,
    database_url: String,
    sim: WaSim,
    nodes: Vec<Gateway>,
}

impl Cluster {
    async fn start_node(&self) -> Result<Gateway> {
        let log = std::env::var("BENCH_NODE_LOG").unwrap_or_else(|_| "error".to_owned());
        Gateway::start_with(
            &self.config,
            &self.database_url,
            self.sim.ws_url(),
            &[
                ("WUTS_NODE_SECRET", NODE_SECRET),
                ("WUTS_RESTORE_JITTER", "0s"),
                ("RUST_LOG", &log),
            ],
        )
        .await
    }
}

/// A gauge of a node's `/metrics` (the first sample whose line starts with `name`).
async fn gauge(http: &reqwest::Client, base: &str, name: &str) -> u64 {
    let Ok(answer) = http.get(format!("{base}/metrics")).send().await else {
        return 0;
    };
    let text = answer.text().await.unwrap_or_default();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().last())
        .and_then(|value| value.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

/// Devices connected on all of `nodes`, from their metrics.
async fn connected(http: &reqwest::Client, nodes: &[&str]) -> u64 {
    let mut total = 0;
    for base in nodes {
        total += gauge(http, base, "wuts_devices{status=\"connected\"}").await;
    }
    total
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + SETTLE_DEADLINE;
    while !done().await {
        if Instant::now() > deadline {
            bail!("{what}: not within {SETTLE_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The node (index) whose registry row `id` is, by URL.
fn index_of(nodes: &[Gateway], urls: &[(String, String)], id: &str) -> Option<usize> {
    let url = urls
        .iter()
        .find(|(node, _)| node == id)
        .map(|(_, url)| url)?;
    nodes.iter().position(|n| n.base() == url)
}

async fn registry(db: &sqlx::PgPool) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as("SELECT id, url FROM nodes")
        .fetch_all(db)
        .await?)
}

async fn measure(database_url: &str) -> Result<Value> {
    let per_node = env_or("BENCH_NODE_DEVICES", 1000usize).max(1);
    let seconds = env_or("BENCH_SECONDS", 5.0f64).max(0.2);
    let concurrency = env_or("BENCH_CONCURRENCY", 16usize).max(1);
    let pair_concurrency = env_or("BENCH_PAIR_CONCURRENCY", 32usize).max(1);
    let rolling_restart = env_or("BENCH_NODE_ROLLING", 1u8) != 0;
    let total = per_node * 3;

    let sim = WaSim::start().await?;
    wuts_gateway::delivery::send::install_tls_provider();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency.max(pair_concurrency) * 2)
        .build()?;
    let mut cluster = Cluster {
        config: Config {
            wuts: PathBuf::from(env!("CARGO_BIN_EXE_wuts")),
        },
        database_url: database_url.to_owned(),
        sim,
        nodes: Vec::new(),
    };
    progress("nodes");
    for _ in 0..3 {
        let node = cluster.start_node().await?;
        cluster.nodes.push(node);
    }
    let db = sqlx::PgPool::connect(database_url).await?;
    let control = cluster.sim.control();
    let phones: Vec<String> = (0..total).map(|i| format!("55219{i:08}")).collect();
    let targets: Vec<String> = (0..2).map(|i| format!("55218{i:08}")).collect();
    create_accounts(&control, phones.iter().chain(&targets).cloned().collect()).await?;

    progress("pairing");
    let (api, _) = register(&http, &cluster.nodes[0], "bench-nodes").await?;
    let devices = create_devices(&api, &phones).await?;
    let apis: Vec<Api> = cluster
        .nodes
        .iter()
        .map(|n| Api {
            base: n.base().to_owned(),
            ..api.clone()
        })
        .collect();
    // Each node is asked for a third of the QR codes: every request lands where it is served.
    let thirds: Vec<Vec<(String, String)>> = (0..3)
        .map(|k| devices.iter().skip(k).step_by(3).cloned().collect())
        .collect();
    let pairings = futures::future::join_all(
        apis.iter()
            .zip(&thirds)
            .map(|(api, part)| pair_all(api, &control, part, pair_concurrency.div_ceil(3))),
    )
    .await;
    pairings.into_iter().collect::<Result<Vec<()>>>()?;
    let bases: Vec<String> = cluster.nodes.iter().map(|n| n.base().to_owned()).collect();
    let all: Vec<&str> = bases.iter().map(String::as_str).collect();
    wait_until("every device connected", async || {
        connected(&http, &all).await >= total as u64
    })
    .await?;

    // Forwarded against direct reads of one device.
    progress("reads");
    let (device, _) = devices.first().ok_or_else(|| anyhow!("no device"))?;
    let owner: String =
        sqlx::query_scalar("SELECT node_id FROM device_owners WHERE device_id = $1::uuid")
            .bind(device)
            .fetch_one(&db)
            .await?;
    let urls = registry(&db).await?;
    let owner_index = index_of(&cluster.nodes, &urls, &owner).ok_or_else(|| anyhow!("owner"))?;
    let other_index = (owner_index + 1) % 3;
    let path = format!("/contacts/blocklist?device_id={device}");
    let cpu_before = Cpu::read();
    let direct = load(&apis[owner_index], &path, concurrency, seconds).await;
    let cpu_between = Cpu::read();
    let forwarded = load(&apis[other_index], &path, concurrency, seconds).await;
    let direct_cpu = cpu_between.per_request(&cpu_before, direct.latencies.len());
    let forwarded_cpu = Cpu::read().per_request(&cpu_between, forwarded.latencies.len());
    let direct_p50 = stats::percentile(&direct.latencies, 50.0);
    let forwarded_p50 = stats::percentile(&forwarded.latencies, 50.0);

    // A killed node's devices.
    progress("kill");
    let owned: Vec<(String, i64)> = sqlx::query_as(
        "SELECT node_id, count(*) FROM device_owners WHERE node_id IS NOT NULL GROUP BY node_id",
    )
    .fetch_all(&db)
    .await?;
    let (victim_id, victim_devices) = owned
        .iter()
        .max_by_key(|(_, n)| *n)
        .cloned()
        .ok_or_else(|| anyhow!("no owner"))?;
    let victim = index_of(&cluster.nodes, &urls, &victim_id).ok_or_else(|| anyhow!("victim"))?;
    let victim_node = cluster.nodes.remove(victim);
    let pairings_before = control
        .stats()
        .await
        .map_err(|e| anyhow!("{e:?}"))?
        .pairings;
    let cpu_before = Cpu::read();
    let killed_at = Instant::now();
    victim_node.crash()?;
    let survivors: Vec<String> = cluster.nodes.iter().map(|n| n.base().to_owned()).collect();
    let survivors_ref: Vec<&str> = survivors.iter().map(String::as_str).collect();
    wait_until("the killed node's devices taken over", async || {
        connected(&http, &survivors_ref).await >= total as u64
    })
    .await?;
    let takeover = killed_at.elapsed().as_secs_f64();
    let takeover_cpu = Cpu::read().since(&cpu_before);
    let mut figures = json!({
        "nodes": 3,
        "devices": total,
        "direct_read_rps": stats::round(direct.rps, 0),
        "forwarded_read_rps": stats::round(forwarded.rps, 0),
        "forwarded_direct_ratio": stats::round(stats::ratio(forwarded.rps, direct.rps), 2),
        "direct_read_p50_ms": stats::round(direct_p50, 2),
        "forwarded_read_p50_ms": stats::round(forwarded_p50, 2),
        "read_errors": direct.errors + forwarded.errors,
        "direct_read_cpu_us": direct_cpu,
        "forwarded_read_cpu_us": forwarded_cpu,
        "takeover_devices": victim_devices,
        "takeover_seconds": stats::round(takeover, 2),
        "takeover_cpu_seconds": takeover_cpu,
    });
    if !rolling_restart {
        for node in cluster.nodes.drain(..) {
            node.stop().await;
        }
        return Ok(figures);
    }

    // Three nodes again, then a rolling restart under traffic.
    progress("third node");
    let third = cluster.start_node().await?;
    cluster.nodes.push(third);
    let share = (total / 3 * 9 / 10) as u64;
    let newest = cluster.nodes[2].base().to_owned();
    wait_until("the new node takes its share", async || {
        gauge(&http, &newest, "wuts_devices_owned").await >= share
    })
    .await?;
    progress("rolling restart");
    let rotation = Arc::new(std::sync::RwLock::new(
        cluster
            .nodes
            .iter()
            .map(|n| n.base().to_owned())
            .collect::<Vec<_>>(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let clients: Vec<_> = (0..concurrency)
        .map(|worker| {
            let api = api.clone();
            let rotation = rotation.clone();
            let stop = stop.clone();
            let counts = counts.clone();
            let devices: Vec<String> = devices.iter().map(|(id, _)| id.clone()).collect();
            let targets = targets.clone();
            tokio::spawn(async move {
                let mut step = worker;
                while !stop.load(Ordering::Relaxed) {
                    step += concurrency;
                    let base = {
                        let nodes = rotation.read().map(|r| r.clone()).unwrap_or_default();
                        nodes[step % nodes.len()].clone()
                    };
                    let device = &devices[step % devices.len()];
                    let request = if step.is_multiple_of(2) {
                        api.http
                            .get(format!("{base}/contacts/blocklist?device_id={device}"))
                    } else {
                        let action = if (step / 2).is_multiple_of(2) {
                            "block"
                        } else {
                            "unblock"
                        };
                        api.http
                            .post(format!("{base}/contacts/{action}"))
                            .json(&json!({"device_id": device, "number": targets[step % 2]}))
                    };
                    let answer = request.bearer_auth(&api.token).send().await;
                    let status = answer.as_ref().map(|a| a.status().as_u16()).ok();
                    counts.record(status);
                    if let (Ok(answer), Some(400..)) = (answer, status) {
                        let body: Value = answer.json().await.unwrap_or(Value::Null);
                        counts.note(&body);
                    }
                }
            })
        })
        .collect();
    let restart_started = Instant::now();
    for _ in 0..3 {
        let old = cluster.nodes.remove(0);
        let old_base = old.base().to_owned();
        if let Ok(mut nodes) = rotation.write() {
            nodes.retain(|base| *base != old_base);
        }
        old.stop().await;
        let new = cluster.start_node().await?;
        let new_base = new.base().to_owned();
        cluster.nodes.push(new);
        wait_until("the restarted node takes its share", async || {
            gauge(&http, &new_base, "wuts_devices_owned").await >= share
        })
        .await?;
        if let Ok(mut nodes) = rotation.write() {
            nodes.push(new_base);
        }
    }
    let rolling = restart_started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = client.await;
    }
    let bases: Vec<String> = cluster.nodes.iter().map(|n| n.base().to_owned()).collect();
    let all: Vec<&str> = bases.iter().map(String::as_str).collect();
    wait_until("every device connected after the restart", async || {
        connected(&http, &all).await >= total as u64
    })
    .await?;
    let pairings_after = control
        .stats()
        .await
        .map_err(|e| anyhow!("{e:?}"))?
        .pairings;
    for node in cluster.nodes.drain(..) {
        node.stop().await;
    }

    let rolling_figures = json!({
        "rolling_restart_seconds": stats::round(rolling, 1),
        "rolling_restart_requests": counts.total.load(Ordering::Relaxed),
        "rolling_restart_failed": counts.failed.load(Ordering::Relaxed),
        "rolling_restart_5xx": counts.server_errors.load(Ordering::Relaxed),
        "rolling_restart_not_ready": counts.not_ready.load(Ordering::Relaxed),
        "re_pairings": pairings_after.saturating_sub(pairings_before),
        "rolling_restart_failures": counts.failures(),
    });
    if let (Some(all), Value::Object(rolling)) = (figures.as_object_mut(), rolling_figures) {
        all.extend(rolling);
    }
    Ok(figures)
}

/// CPU time used so far (user and system, seconds): by each gateway process (this process's
/// children), by all of PostgreSQL's processes, and by this one (wa-sim and the load clients).
struct Cpu {
    gateways: std::collections::HashMap<u32, f64>,
    postgres: std::collections::HashMap<u32, f64>,
    bench: f64,
}

impl Cpu {
    fn read() -> Self {
        let me = std::process::id().to_string();
        let mut gateways = std::collections::HashMap::new();
        let mut postgres = std::collections::HashMap::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some((name, parent, seconds)) = cpu_of(&stat) else {
                continue;
            };
            if name == "postgres" {
                postgres.insert(pid, seconds);
            } else if name == "wuts" && parent == me {
                gateways.insert(pid, seconds);
            }
        }
        let bench = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| cpu_of(&stat).map(|(_, _, seconds)| seconds))
            .unwrap_or(0.0);
        Self {
            gateways,
            postgres,
            bench,
        }
    }

    /// What was used since `before`: by the processes alive at both readings, and by those
    /// started meanwhile.
    fn since(&self, before: &Self) -> Value {
        json!({
            "gateways": stats::round(used(&self.gateways, &before.gateways), 2),
            "postgres": stats::round(used(&self.postgres, &before.postgres), 2),
            "bench": stats::round(self.bench - before.bench, 2),
        })
    }

    /// What each of `requests` requests cost since `before`, in CPU microseconds: each gateway
    /// (by pid, the busiest first), PostgreSQL and the benchmark's own process.
    fn per_request(&self, before: &Self, requests: usize) -> Value {
        let per = |seconds: f64| stats::round(seconds * 1e6 / requests.max(1) as f64, 0);
        let mut gateways: Vec<f64> = self
            .gateways
            .iter()
            .map(|(pid, seconds)| seconds - before.gateways.get(pid).copied().unwrap_or(0.0))
            .collect();
        gateways.sort_by(|a, b| b.total_cmp(a));
        json!({
            "gateways": gateways.into_iter().map(per).collect::<Vec<_>>(),
            "postgres": per(used(&self.postgres, &before.postgres)),
            "bench": per(self.bench - before.bench),
        })
    }
}

/// The CPU seconds the processes of `now` used since `then` (all of it for those started since).
fn used(
    now: &std::collections::HashMap<u32, f64>,
    then: &std::collections::HashMap<u32, f64>,
) -> f64 {
    now.iter()
        .map(|(pid, seconds)| seconds - then.get(pid).copied().unwrap_or(0.0))
        .sum()
}

/// The command name, the parent's pid and utime + stime (seconds, at the kernel's 100 ticks a
/// second) of a `/proc/<pid>/stat` line.
fn cpu_of(stat: &str) -> Option<(&str, &str, f64)> {
    let name = &stat[stat.find('(')? + 1..stat.rfind(')')?];
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((name, fields.get(1)?, ticks as f64 / 100.0))
}

/// What the rolling restart's clients got.
#[derive(Default)]
struct Counts {
    total: AtomicU64,
    failed: AtomicU64,
    server_errors: AtomicU64,
    not_ready: AtomicU64,
    /// Each distinct failure (code and message) with how often it was answered.
    failures: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Counts {
    fn note(&self, body: &Value) {
        let code = body["error_code"].as_str().unwrap_or("?");
        let message = body["error"].as_str().unwrap_or("");
        if let Ok(mut failures) = self.failures.lock() {
            *failures.entry(format!("{code}: {message}")).or_default() += 1;
        }
    }

    fn failures(&self) -> Value {
        self.failures
            .lock()
            .map(|f| json!(*f))
            .unwrap_or(Value::Null)
    }

    fn record(&self, status: Option<u16>) {
        self.total.fetch_add(1, Ordering::Relaxed);
        match status {
            Some(200..=299) => {}
            Some(409) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.not_ready.fetch_add(1, Ordering::Relaxed);
            }
            Some(500..) | None => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.server_errors.fetch_add(1, Ordering::Relaxed);
            }
            Some(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
