//! The gateway benchmark: what a device session costs in memory, how fast sessions come back
//! after a crash, and what the gateway adds on top of WhatsApp.
//!
//! The gateway runs as its own process (the `wuts` binary, on a fresh database) so that its
//! memory is measured alone, from `/proc`. wa-sim, the load client and a bare whatsapp-rust
//! client (the reference for the block overhead) run in this process. Shared by
//! `cargo bench --bench gateway` and a smoke test with a handful of devices.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use wa_sim::{ControlClient, CreateAccount, WaSim};

const MASTER_TOKEN: &str = "bench-master-token-0123456789";
/// How long the benchmark waits for every device to report connected.
const CONNECT_DEADLINE: Duration = Duration::from_secs(600);

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
        Self {
            devices: env_or("BENCH_DEVICES", 1000usize).max(1),
            seconds: env_or("BENCH_SECONDS", 5.0f64).max(0.2),
            concurrency: env_or("BENCH_CONCURRENCY", 16usize).max(1),
            pair_concurrency: env_or("BENCH_PAIR_CONCURRENCY", 32usize).max(1),
            samples: env_or("BENCH_SAMPLES", 200usize).max(5),
            wan_ms: env_or("BENCH_WAN_MS", 30u64),
            database_url: std::env::var("DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/wuts".to_owned()),
            wuts,
        }
    }
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map(|i| i + 3).unwrap_or(0);
    let prefix = match base[authority..].find('/') {
        Some(i) => &base[..authority + i],
        None => base,
    };
    match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    }
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub fn sorted(mut samples: Vec<f64>) -> Vec<f64> {
    samples.sort_by(f64::total_cmp);
    samples
}

/// The most events that fall in any window of `window_ms` (times in milliseconds).
fn peak_in_window(times_ms: &[u64], window_ms: u64) -> usize {
    let mut times = times_ms.to_vec();
    times.sort_unstable();
    let mut start = 0;
    let mut peak = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= window_ms {
            start += 1;
        }
        peak = peak.max(end - start + 1);
    }
    peak
}

fn round(value: f64, digits: i32) -> f64 {
    let factor = 10f64.powi(digits);
    (value * factor).round() / factor
}

/// A running `wuts serve`.
struct Gateway {
    child: Child,
    base: String,
}

impl Gateway {
    fn start(config: &Config, database_url: &str, wa_url: &str) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(&config.wuts)
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("WUTS_LISTEN", format!("127.0.0.1:{port}"))
            .env("WUTS_MASTER_TOKEN", MASTER_TOKEN)
            .env("WUTS_WA_URL", wa_url)
            .env("WUTS_WA_VERSION", "2.3000.1000000")
            .env("WUTS_TENANT_RPS", "0")
            .env("WUTS_DEVICE_WA_RPS", "0")
            .env("WUTS_LOG_FORMAT", "json")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", config.wuts.display()))?;
        Ok(Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        })
    }

    async fn wait_ready(&self, http: &reqwest::Client) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = http
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the gateway never became ready");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Resident set size, KiB, from `/proc`.
    fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("no VmRSS for the gateway"))
    }

    /// Devices whose session reports `status`, from `/metrics`.
    async fn devices(&self, http: &reqwest::Client, status: &str) -> Result<u64> {
        let text = http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?;
        let needle = format!("wuts_devices{{status=\"{status}\"}}");
        Ok(text
            .lines()
            .find_map(|line| line.strip_prefix(&needle))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .unwrap_or(0))
    }

    async fn wait_connected(&self, http: &reqwest::Client, count: u64) -> Result<()> {
        let deadline = Instant::now() + CONNECT_DEADLINE;
        loop {
            if self.devices(http, "connected").await.unwrap_or(0) >= count {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("devices never all connected");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn terminate(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.kill();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The gateway's HTTP API, as one tenant admin calls it.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await?;
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status} {body}");
        }
        Ok(body)
    }
}

async fn create_accounts(control: &ControlClient, phones: Vec<String>) -> Result<()> {
    let results: Vec<Result<()>> = futures::stream::iter(phones)
        .map(|phone| async move {
            control
                .create_account(&CreateAccount {
                    push_name: Some(format!("Bench {phone}")),
                    phone,
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .map_err(|e| anyhow!("account: {e:?}"))
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Pairs devices by QR through wa-sim's phones, `concurrency` at a time.
async fn pair_all(
    api: &Api,
    control: &ControlClient,
    devices: &[(String, String)],
    concurrency: usize,
) -> Result<()> {
    let results: Vec<Result<()>> = futures::stream::iter(devices.iter().cloned())
        .map(|(device, phone)| async move {
            let qr = api
                .send(
                    reqwest::Method::GET,
                    &format!("/qr?device_id={device}"),
                    None,
                )
                .await?;
            let code = qr["data"]["qr_code"]
                .as_str()
                .ok_or_else(|| anyhow!("no qr_code: {qr}"))?
                .to_owned();
            control
                .scan_qr(&phone, &code)
                .await
                .map_err(|e| anyhow!("scan: {e:?}"))?;
            Ok(())
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Registers a tenant with the master token: its admin's API, and the tenant's id.
async fn register(http: &reqwest::Client, gateway: &Gateway, name: &str) -> Result<(Api, String)> {
    let registered: Value = http
        .post(format!("{}/register", gateway.base))
        .bearer_auth(MASTER_TOKEN)
        .json(&json!({"tenant_name": name, "email": format!("admin@{name}.example")}))
        .send()
        .await?
        .json()
        .await?;
    let field = |pointer: &str| {
        registered
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no {pointer}: {registered}"))
    };
    let api = Api {
        http: http.clone(),
        base: gateway.base.clone(),
        token: field("/token")?,
    };
    Ok((api, field("/tenant/id")?))
}

/// Requests per second and latencies of `GET path` with `concurrency` in flight for `seconds`.
async fn load(api: &Api, path: &str, concurrency: usize, seconds: f64) -> (f64, Vec<f64>, u64) {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let api = api.clone();
            let url = format!("{}{path}", api.base);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    let ok = match api.http.get(&url).bearer_auth(&api.token).send().await {
                        Ok(answer) => {
                            let ok = answer.status().is_success();
                            ok && answer.bytes().await.is_ok()
                        }
                        Err(_) => false,
                    };
                    if ok {
                        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for worker in workers {
        if let Ok((latencies, failed)) = worker.await {
            all.extend(latencies);
            errors += failed;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    (all.len() as f64 / elapsed, sorted(all), errors)
}

/// A bare whatsapp-rust client paired to `phone` through wa-sim: the reference for what one
/// WhatsApp call costs without the gateway.
async fn bare_client(
    ws_url: String,
    control: ControlClient,
    phone: String,
) -> Result<(Arc<whatsapp_rust::Client>, whatsapp_rust::bot::BotHandle)> {
    use whatsapp_rust::bot::Bot;
    use whatsapp_rust::transport::TokioWebSocketTransportFactory;
    use whatsapp_rust::types::events::Event;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Arc<Event>>();
    let bot = Bot::builder()
        .with_backend_arc(Arc::new(wacore::store::in_memory::InMemoryBackend::new()))
        .with_transport_factory(TokioWebSocketTransportFactory::new().with_url(&ws_url))
        .with_version((2, 3000, 1_000_000))
        .skip_history_sync()
        .on_event(move |event, _client| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(event);
            }
        })
        .build()
        .await?;
    let client = bot.client();
    let handle = bot.spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .map_err(|_| anyhow!("the bare client never connected"))?
            .ok_or_else(|| anyhow!("the bare client stopped"))?;
        match &*event {
            Event::PairingQrCode(qr) => {
                control
                    .scan_qr(&phone, &qr.code)
                    .await
                    .map_err(|e| anyhow!("scan: {e:?}"))?;
            }
            Event::Connected(_) => return Ok((client, handle)),
            _ => {}
        }
    }
}

/// One block or unblock straight from the bare client, as the gateway sends it.
async fn direct_block_once(
    client: &Arc<whatsapp_rust::Client>,
    block: bool,
    lid_jid: &str,
    pn_jid: &str,
) -> Result<f64> {
    let sent = Instant::now();
    let lid = wuts_gateway::domain::ContactId::parse(lid_jid)
        .map_err(|e| anyhow!("LID {lid_jid}: {e}"))?;
    let phone = wuts_gateway::domain::ContactId::parse(pn_jid)
        .map_err(|e| anyhow!("number {pn_jid}: {e}"))?;
    let lid = lid.lid().ok_or_else(|| anyhow!("{lid_jid} is not a LID"))?;
    wuts_gateway::session::blocklist::send_change(
        client,
        Duration::from_secs(10),
        block,
        lid,
        phone.phone(),
    )
    .await
    .map_err(|e| anyhow!("direct block: {e}"))?;
    Ok(sent.elapsed().as_secs_f64() * 1000.0)
}

/// Runs the benchmark; answers the figures as one JSON object.
pub async fn run(config: Config) -> Result<Value> {
    let n = config.devices;
    let small = (n / 10).max(1);
    let sim = WaSim::start().await?;
    let control = sim.control();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(config.concurrency.max(config.pair_concurrency) * 2)
        .build()?;

    let device_phones: Vec<String> = (0..n).map(|i| format!("5510{i:09}")).collect();
    let known: Vec<String> = (0..160).map(|i| format!("5512{i:09}")).collect();
    let unknown: Vec<String> = (0..160).map(|i| format!("5513{i:09}")).collect();
    let target_phone = "5514000000001".to_owned();
    let direct_phone = "5515000000001".to_owned();
    let mut phones = device_phones.clone();
    phones.extend(known.iter().cloned());
    phones.push(target_phone.clone());
    phones.push(direct_phone.clone());
    create_accounts(&control, phones).await?;
    let target = control
        .account(&target_phone)
        .await
        .map_err(|e| anyhow!("target: {e:?}"))?;

    // The reference client pairs meanwhile (pairing includes WhatsApp's key-share grace).
    let direct = tokio::spawn(bare_client(
        sim.ws_url().to_owned(),
        control.clone(),
        direct_phone,
    ));

    let database = format!(
        "wuts_bench_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let database_url = with_database(&config.database_url, &database);
    let outcome = measure(
        &config,
        &sim,
        &control,
        &http,
        &database_url,
        MeasureInput {
            n,
            small,
            device_phones,
            known,
            unknown,
            target_jid: target.jid.clone(),
            target_lid_jid: target.lid_jid.clone(),
            direct,
        },
    )
    .await;
    drop_database(&config.database_url, &database).await;
    outcome
}

type Direct =
    tokio::task::JoinHandle<Result<(Arc<whatsapp_rust::Client>, whatsapp_rust::bot::BotHandle)>>;

struct MeasureInput {
    n: usize,
    small: usize,
    device_phones: Vec<String>,
    known: Vec<String>,
    unknown: Vec<String>,
    target_jid: String,
    target_lid_jid: String,
    direct: Direct,
}

async fn measure(
    config: &Config,
    sim: &WaSim,
    control: &ControlClient,
    http: &reqwest::Client,
    database_url: &str,
    input: MeasureInput,
) -> Result<Value> {
    let MeasureInput {
        n,
        small,
        device_phones,
        known,
        unknown,
        target_jid,
        target_lid_jid,
        direct,
    } = input;
    // Idle gateway.
    let gateway = Gateway::start(config, database_url, sim.ws_url())?;
    gateway.wait_ready(http).await?;
    let api = register(http, &gateway, "bench").await?.0;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = gateway.rss_kib()?;

    // Devices.
    let mut devices = Vec::with_capacity(n);
    for (i, phone) in device_phones.iter().enumerate() {
        let created = api
            .send(
                reqwest::Method::POST,
                "/devices",
                Some(json!({"name": format!("bench {i}")})),
            )
            .await?;
        let id = created["device"]["id"]
            .as_str()
            .ok_or_else(|| anyhow!("no device id"))?
            .to_owned();
        devices.push((id, phone.clone()));
    }

    // N/10 connected, then N.
    let pairing_started = Instant::now();
    pair_all(&api, control, &devices[..small], config.pair_concurrency).await?;
    gateway.wait_connected(http, small as u64).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_small = gateway.rss_kib()?;
    pair_all(&api, control, &devices[small..], config.pair_concurrency).await?;
    gateway.wait_connected(http, n as u64).await?;
    let pairing_seconds = pairing_started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_connected = gateway.rss_kib()?;

    // Reads against the bare route, same client, same concurrency.
    let device = devices[0].0.clone();
    let (bare_rps, _, bare_errors) =
        load(&api, "/healthz", config.concurrency, config.seconds).await;
    let (read_rps, read_latencies, read_errors) = load(
        &api,
        &format!("/contacts/blocklist?device_id={device}"),
        config.concurrency,
        config.seconds,
    )
    .await;

    // One tenant floods (its own budget: 100 per second, burst 200) while another makes one
    // request at a time: the quiet tenant's latency alone, then during the flood.
    let (quiet, _) = register(http, &gateway, "quiet").await?;
    let (flood, flood_id) = register(http, &gateway, "flood").await?;
    let budget = http
        .patch(format!("{}/global/tenants/{flood_id}", gateway.base))
        .bearer_auth(MASTER_TOKEN)
        .json(&json!({"rate_rps": 100, "rate_burst": 200}))
        .send()
        .await?;
    if !budget.status().is_success() {
        bail!("flood budget: {}", budget.status());
    }
    let (_, quiet_alone, _) = load(&quiet, "/user/devices", 1, config.seconds).await;
    let (flooded, flooding) = tokio::join!(
        load(&quiet, "/user/devices", 1, config.seconds),
        load(&flood, "/user/devices", config.concurrency, config.seconds),
    );
    let (_, quiet_flooded, quiet_errors) = flooded;
    let (flood_ok_rps, _, flood_refused) = flooding;
    let quiet_alone = sorted(quiet_alone);
    let quiet_flooded = sorted(quiet_flooded);

    // Resolve: 160 known to the store (after one warm-up that teaches them), then 160 unknown.
    let resolve = |jids: &[String]| json!({"jids": jids, "device_id": device});
    api.send(
        reqwest::Method::POST,
        "/contacts/resolve",
        Some(resolve(&known)),
    )
    .await?;
    let mut store_latencies = Vec::with_capacity(config.samples);
    for _ in 0..config.samples {
        let sent = Instant::now();
        let answer = api
            .send(
                reqwest::Method::POST,
                "/contacts/resolve",
                Some(resolve(&known)),
            )
            .await?;
        store_latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
        if answer["count"] != json!(160) {
            bail!("resolve of 160 known numbers answered {}", answer["count"]);
        }
    }
    let store_latencies = sorted(store_latencies);
    control
        .reset_stats()
        .await
        .map_err(|e| anyhow!("stats: {e:?}"))?;
    api.send(
        reqwest::Method::POST,
        "/contacts/resolve",
        Some(resolve(&unknown)),
    )
    .await?;
    let unknown_iqs = control
        .stats()
        .await
        .map_err(|e| anyhow!("stats: {e:?}"))?
        .iq_count("usync", "get");

    // The floor any route pays: one sequential HTTP round trip to the bare route.
    let mut floor = Vec::with_capacity(config.samples);
    for _ in 0..config.samples {
        let sent = Instant::now();
        api.send(reqwest::Method::GET, "/healthz", None).await?;
        floor.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    let floor = sorted(floor);

    // Block and unblock through the gateway, then the same IQ from a bare client.
    let rounds = (config.samples / 4).max(5);
    let block_body = json!({"jid": target_jid, "device_id": device});
    api.send(
        reqwest::Method::POST,
        "/contacts/block",
        Some(block_body.clone()),
    )
    .await?;
    api.send(
        reqwest::Method::POST,
        "/contacts/unblock",
        Some(block_body.clone()),
    )
    .await?;
    let mut gateway_block = Vec::with_capacity(rounds * 2);
    for _ in 0..rounds {
        for path in ["/contacts/block", "/contacts/unblock"] {
            let sent = Instant::now();
            api.send(reqwest::Method::POST, path, Some(block_body.clone()))
                .await?;
            gateway_block.push(sent.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let gateway_block = sorted(gateway_block);
    let (client, bot) = direct.await.map_err(|e| anyhow!("bare client: {e}"))??;
    let mut direct_block = Vec::with_capacity(rounds * 2);
    for _ in 0..rounds {
        for block in [true, false] {
            direct_block
                .push(direct_block_once(&client, block, &target_lid_jid, &target_jid).await?);
        }
    }
    let direct_block = sorted(direct_block);

    // The same comparison with WhatsApp's answer arriving after a WAN round trip, as it does in
    // production (wa-sim answers in microseconds, which no HTTP hop can match).
    control
        .add_fault(&wa_sim::Fault::Delay {
            ms: config.wan_ms,
            xmlns: Some("blocklist".into()),
        })
        .await
        .map_err(|e| anyhow!("fault: {e:?}"))?;
    let wan_rounds = 5;
    let mut gateway_wan = Vec::with_capacity(wan_rounds * 2);
    let mut direct_wan = Vec::with_capacity(wan_rounds * 2);
    for _ in 0..wan_rounds {
        for (path, block) in [("/contacts/block", true), ("/contacts/unblock", false)] {
            let sent = Instant::now();
            api.send(reqwest::Method::POST, path, Some(block_body.clone()))
                .await?;
            gateway_wan.push(sent.elapsed().as_secs_f64() * 1000.0);
            direct_wan.push(direct_block_once(&client, block, &target_lid_jid, &target_jid).await?);
        }
    }
    control
        .clear_faults()
        .await
        .map_err(|e| anyhow!("faults: {e:?}"))?;
    let gateway_wan = sorted(gateway_wan);
    let direct_wan = sorted(direct_wan);
    let _ = tokio::time::timeout(Duration::from_secs(10), bot.shutdown()).await;

    // Crash and restore: SIGKILL, a new process on the same database, every device back.
    let before = control.stats().await.map_err(|e| anyhow!("stats: {e:?}"))?;
    let mut gateway = gateway;
    gateway.kill();
    drop(gateway);
    let restore_started = Instant::now();
    let restored = Gateway::start(config, database_url, sim.ws_url())?;
    restored.wait_ready(http).await?;
    restored.wait_connected(http, n as u64).await?;
    let restore_seconds = restore_started.elapsed().as_secs_f64();
    let after = control.stats().await.map_err(|e| anyhow!("stats: {e:?}"))?;
    let repairs = after.pairings.saturating_sub(before.pairings);
    let ik_logins = after
        .handshake_count("ik")
        .saturating_sub(before.handshake_count("ik"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_restored = restored.rss_kib()?;

    // WhatsApp drops every connection at once: how the sessions come back over time.
    control
        .reset_stats()
        .await
        .map_err(|e| anyhow!("stats: {e:?}"))?;
    control
        .add_fault(&wa_sim::Fault::DropConnections { phone: None })
        .await
        .map_err(|e| anyhow!("faults: {e:?}"))?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    restored.wait_connected(http, n as u64).await?;
    let outage = control.stats().await.map_err(|e| anyhow!("stats: {e:?}"))?;
    let reconnects = sorted(outage.login_times_ms.iter().map(|&ms| ms as f64).collect());
    let peak_per_second = peak_in_window(&outage.login_times_ms, 1000);
    restored.terminate().await;

    let per_device =
        |rss: u64, count: usize| round((rss.saturating_sub(rss_idle)) as f64 / count as f64, 1);
    let block_p50 = percentile(&gateway_block, 50.0);
    let block_direct_p50 = percentile(&direct_block, 50.0);
    let faults = json!({
        "tenant_quiet_p50_ms": round(percentile(&quiet_alone, 50.0), 3),
        "tenant_quiet_flooded_p50_ms": round(percentile(&quiet_flooded, 50.0), 3),
        "tenant_quiet_flooded_p99_ms": round(percentile(&quiet_flooded, 99.0), 3),
        "tenant_quiet_errors": quiet_errors,
        "tenant_flood_ok_rps": round(flood_ok_rps, 0),
        "tenant_flood_refused": flood_refused,
        "reconnect_logins": reconnects.len(),
        "reconnect_first_s": round(percentile(&reconnects, 0.0) / 1000.0, 2),
        "reconnect_p50_s": round(percentile(&reconnects, 50.0) / 1000.0, 2),
        "reconnect_p90_s": round(percentile(&reconnects, 90.0) / 1000.0, 2),
        "reconnect_last_s": round(percentile(&reconnects, 100.0) / 1000.0, 2),
        "reconnect_peak_per_second": peak_per_second,
    });
    let mut report = json!({
        "devices": n,
        "devices_small": small,
        "rss_idle_kib": rss_idle,
        "rss_connected_kib": rss_connected,
        "rss_per_device_kib": per_device(rss_connected, n),
        "rss_connected_small_kib": rss_small,
        "rss_per_device_kib_small": per_device(rss_small, small),
        "rss_restored_kib": rss_restored,
        "rss_per_device_restored_kib": per_device(rss_restored, n),
        "pairing_seconds": round(pairing_seconds, 2),
        "restore_seconds": round(restore_seconds, 2),
        "restore_repairs": repairs,
        "restore_ik_logins": ik_logins,
        "concurrency": config.concurrency,
        "bare_rps": round(bare_rps, 0),
        "read_rps": round(read_rps, 0),
        "read_vs_bare": round(if bare_rps > 0.0 { read_rps / bare_rps } else { 0.0 }, 3),
        "read_p50_ms": round(percentile(&read_latencies, 50.0), 3),
        "read_p99_ms": round(percentile(&read_latencies, 99.0), 3),
        "load_errors": bare_errors + read_errors,
        "resolve160_store_p50_ms": round(percentile(&store_latencies, 50.0), 3),
        "resolve160_store_p99_ms": round(percentile(&store_latencies, 99.0), 3),
        "resolve160_unknown_usync_iqs": unknown_iqs,
        "block_p50_ms": round(block_p50, 3),
        "block_direct_p50_ms": round(block_direct_p50, 3),
        "block_overhead_ratio": round(if block_direct_p50 > 0.0 { block_p50 / block_direct_p50 } else { 0.0 }, 3),
        "block_overhead_ms": round(block_p50 - block_direct_p50, 3),
        "http_floor_p50_ms": round(percentile(&floor, 50.0), 3),
        "block_wan_ms": config.wan_ms,
        "block_wan_p50_ms": round(percentile(&gateway_wan, 50.0), 3),
        "block_wan_direct_p50_ms": round(percentile(&direct_wan, 50.0), 3),
        "block_overhead_ratio_wan": round({
            let direct = percentile(&direct_wan, 50.0);
            if direct > 0.0 { percentile(&gateway_wan, 50.0) / direct } else { 0.0 }
        }, 3),
    });
    if let (Some(report), Value::Object(more)) = (report.as_object_mut(), faults) {
        report.extend(more);
    }
    Ok(report)
}

async fn drop_database(url: &str, name: &str) {
    use sqlx::Connection;
    let admin = with_database(url, "postgres");
    if let Ok(mut connection) = sqlx::PgConnection::connect(&admin).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut connection)
        .await;
        let _ = connection.close().await;
    }
}
