//! The gateway under measurement and how the benchmark drives it: the `wuts` process (from the
//! shared harness, `wuts-test-support`), its API as a tenant admin calls it, and a load client.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use wa_sim::{ControlClient, CreateAccount};
use wuts_test_support::{GatewayCommand, GatewayProcess};

use super::Config;
use super::sorted;

pub const MASTER_TOKEN: &str = "bench-master-token-0123456789";
/// How long the benchmark waits for every device to report connected.
const CONNECT_DEADLINE: Duration = Duration::from_secs(600);
/// How long a stopped gateway has to exit on SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// A running `wuts serve`, on a database of its own, talking to wa-sim.
pub struct Gateway {
    process: GatewayProcess,
}

impl Gateway {
    /// Starts the gateway and answers once it is ready. It logs errors only: the benchmark
    /// measures the gateway, not its log volume.
    pub async fn start(config: &Config, database_url: &str, wa_url: &str) -> Result<Self> {
        Self::start_with(config, database_url, wa_url, &[]).await
    }

    /// The same, with more settings (`(name, value)` environment variables).
    pub async fn start_with(
        config: &Config,
        database_url: &str,
        wa_url: &str,
        settings: &[(&str, &str)],
    ) -> Result<Self> {
        let mut command = GatewayCommand::new(&config.wuts, database_url, wa_url, MASTER_TOKEN)
            .env("RUST_LOG", "error")
            // The benchmark's webhook receiver listens on loopback.
            .env("WUTS_WEBHOOK_ALLOW_PRIVATE", "true");
        for (name, value) in settings {
            command = command.env(name, value);
        }
        Ok(Self {
            process: command.start().await?,
        })
    }

    pub fn base(&self) -> &str {
        self.process.base()
    }

    /// Resident set size, KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        Ok(self.process.rss_kib()?)
    }

    /// Anonymous resident memory, KiB (`RssAnon` in `/proc`): the resident set without the
    /// pages of the binary and libraries, which grow as code runs for the first time whatever
    /// the number of devices.
    pub fn rss_anon_kib(&self) -> Result<u64> {
        Ok(self.process.rss_anon_kib()?)
    }

    /// Everything the process logged so far.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    /// Devices whose session reports connected, from `/metrics`.
    pub async fn connected(&self, http: &reqwest::Client) -> Result<u64> {
        self.devices(http, "connected").await
    }

    /// Devices whose session reports `status`, from `/metrics`.
    async fn devices(&self, http: &reqwest::Client, status: &str) -> Result<u64> {
        let text = http
            .get(self.process.url("/metrics"))
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

    /// Waits until at least `count` devices are connected.
    pub async fn wait_connected(&self, http: &reqwest::Client, count: u64) -> Result<()> {
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

    /// SIGKILL, and the process reaped: a crash, over by the time this returns.
    pub fn crash(self) -> Result<()> {
        self.process.kill()?;
        drop(self.process);
        Ok(())
    }

    /// SIGTERM, as an orchestrator stops it; killed if it does not exit in time.
    pub async fn stop(self) {
        let _ = self.process.terminate(STOP_DEADLINE).await;
    }
}

/// The gateway's HTTP API, as one tenant admin calls it.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Api {
    /// One call; an answer other than 2xx is an error.
    pub async fn send(
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

/// Registers a tenant with the master token: its admin's API, and the tenant's id.
pub async fn register(
    http: &reqwest::Client,
    gateway: &Gateway,
    name: &str,
) -> Result<(Api, String)> {
    let registered: Value = http
        .post(format!("{}/register", gateway.base()))
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
        base: gateway.base().to_owned(),
        token: field("/token")?,
    };
    Ok((api, field("/tenant/id")?))
}

/// Sets a tenant's own request budget (platform route, master token).
pub async fn set_budget(
    http: &reqwest::Client,
    gateway: &Gateway,
    tenant_id: &str,
    rps: u32,
    burst: u32,
) -> Result<()> {
    let budget = http
        .patch(format!("{}/global/tenants/{tenant_id}", gateway.base()))
        .bearer_auth(MASTER_TOKEN)
        .json(&json!({"rate_rps": rps, "rate_burst": burst}))
        .send()
        .await?;
    if !budget.status().is_success() {
        bail!("tenant budget: {}", budget.status());
    }
    Ok(())
}

/// wa-sim accounts for `phones`, 16 created at a time.
pub async fn create_accounts(control: &ControlClient, phones: Vec<String>) -> Result<()> {
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

/// One unpaired device per phone, one call at a time; answers (device id, phone) in order.
pub async fn create_devices(api: &Api, phones: &[String]) -> Result<Vec<(String, String)>> {
    let mut devices = Vec::with_capacity(phones.len());
    for (i, phone) in phones.iter().enumerate() {
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
    Ok(devices)
}

/// Pairs devices by QR through wa-sim's phones, `concurrency` at a time.
pub async fn pair_all(
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

/// What a load run measured.
pub struct Load {
    /// Successful requests per second.
    pub rps: f64,
    /// Latencies of the successful requests, ms, sorted.
    pub latencies: Vec<f64>,
    /// Requests that failed or were refused.
    pub errors: u64,
}

/// `GET path` with `concurrency` requests in flight for `seconds`.
pub async fn load(api: &Api, path: &str, concurrency: usize, seconds: f64) -> Load {
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
    Load {
        rps: all.len() as f64 / elapsed,
        latencies: sorted(all),
        errors,
    }
}
