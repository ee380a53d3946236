//! The user's path: devices paired one by one through the HTTP API as a user pairs them, on a
//! gateway process and a database of their own, then a crash soon after the last one.
//!
//! Each device is created (`POST /devices`) right before its QR code is fetched (`GET /qr`) and
//! scanned by its wa-sim phone, `concurrency` users at a time, and a user waits to see the device
//! connected (`GET /status`) before pairing the next. The gateway's RSS is read 5 s after the
//! last device connected; it is then killed (SIGKILL) within seconds, before whatsapp-rust's
//! 30 s saver writes the device records of the latest pairings, restarted on the same database,
//! and timed until every device reports connected again.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;
use wa_sim::ControlClient;
use wuts_test_support::ScratchDatabase;

use super::gateway::{Api, Gateway, create_accounts, register};
use super::stats::round;
use super::{Config, percentile, progress, sorted, with_database};

/// How long a device may take from its scan to reporting connected.
const PAIR_DEADLINE: Duration = Duration::from_secs(120);
/// How long restored devices may take to report connected.
const RESTORE_DEADLINE: Duration = Duration::from_secs(600);

/// The phase's parameters.
pub struct UserPath<'a> {
    /// Devices paired (`BENCH_USER_DEVICES`).
    pub devices: usize,
    /// Users pairing at once (`BENCH_USER_PAIR_CONCURRENCY`).
    pub concurrency: usize,
    /// After the last device connected, before the memory reading (5 s, as the issue measured).
    pub settle: Duration,
    /// After the memory reading, before the crash (a few seconds: within whatsapp-rust's 30 s
    /// saver period).
    pub kill_after: Duration,
    /// Extra environment of the phase's gateway processes (`BENCH_USER_GATEWAY_ENV`, `K=V`
    /// pairs separated by `;`): a log filter, an allocator setting, a profiler's preload.
    pub gateway_env: &'a [(String, String)],
    /// Where to copy the gateways' logs, if anywhere (`BENCH_USER_LOGS`, a directory).
    pub logs: Option<&'a std::path::Path>,
}

#[derive(Debug, Serialize)]
pub struct UserPathFigures {
    pub user_path_devices: usize,
    pub user_path_pair_concurrency: usize,
    /// From the first `POST /devices` to the last device connected.
    pub user_path_pairing_seconds: f64,
    /// One device's pairing as its user sees it: from `POST /devices` to `connected`, median.
    pub user_path_pair_p50_seconds: f64,
    pub user_path_rss_idle_kib: u64,
    /// 5 s after the last device connected.
    pub user_path_rss_paired_kib: u64,
    /// (paired − idle) / devices.
    pub user_path_rss_kib_per_device: f64,
    /// Paired RSS / devices, idle included (what a reading of `/proc` alone gives).
    pub user_path_rss_total_kib_per_device: f64,
    /// The same readings without file-backed pages (the binary's code, paged in as it first
    /// runs, is no cost of a device): anonymous memory, `RssAnon`.
    pub user_path_rss_anon_idle_kib: u64,
    pub user_path_rss_anon_paired_kib: u64,
    pub user_path_rss_anon_kib_per_device: f64,
    pub user_path_rss_anon_restored_kib_per_device: f64,
    /// From the SIGKILL to every device connected on the new process.
    pub user_path_restore_seconds: f64,
    /// When the first and the median device reported connected again, from the SIGKILL.
    pub user_path_restore_first_seconds: f64,
    pub user_path_restore_p50_seconds: f64,
    /// Pairings the restore needed (must be 0).
    pub user_path_restore_repairs: u64,
    /// After the restore settled.
    pub user_path_rss_restored_kib: u64,
    pub user_path_rss_restored_kib_per_device: f64,
}

/// `K=V;K=V` into pairs (empty parts skipped).
pub fn parse_env(text: &str) -> Vec<(String, String)> {
    text.split(';')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

impl UserPath<'_> {
    pub async fn run(
        self,
        config: &Config,
        control: &ControlClient,
        http: &reqwest::Client,
        wa_url: &str,
    ) -> Result<UserPathFigures> {
        let database = ScratchDatabase::new(&config.database_url, "wuts_bench_user");
        let database_url = with_database(&config.database_url, database.name());
        let figures = self
            .measure(config, control, http, wa_url, &database_url)
            .await;
        database.drop_database().await;
        figures
    }

    async fn start(&self, config: &Config, database_url: &str, wa_url: &str) -> Result<Gateway> {
        let settings: Vec<(&str, &str)> = self
            .gateway_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Gateway::start_with(config, database_url, wa_url, &settings).await
    }

    fn keep_logs(&self, gateway: &Gateway, name: &str) {
        if let Some(dir) = self.logs {
            let _ = std::fs::create_dir_all(dir);
            let _ = std::fs::write(dir.join(format!("{name}.log")), gateway.logs());
        }
    }

    async fn measure(
        &self,
        config: &Config,
        control: &ControlClient,
        http: &reqwest::Client,
        wa_url: &str,
        database_url: &str,
    ) -> Result<UserPathFigures> {
        let n = self.devices;
        // Phones of their own: the main run's accounts stay as they are.
        let phones: Vec<String> = (0..n).map(|i| format!("5516{i:09}")).collect();
        create_accounts(control, phones.clone()).await?;

        progress("user path: gateway");
        let gateway = self.start(config, database_url, wa_url).await?;
        let api = register(http, &gateway, "userpath").await?.0;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss_idle = gateway.rss_kib()?;
        let anon_idle = gateway.rss_anon_kib()?;

        progress("user path: pairing");
        let started = Instant::now();
        let paired: Vec<Result<Duration>> = futures::stream::iter(phones.iter().enumerate())
            .map(|(i, phone)| pair_as_a_user(&api, control, i, phone))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let pair_times: Vec<f64> = paired
            .into_iter()
            .map(|r| r.map(|d| d.as_secs_f64()))
            .collect::<Result<_>>()?;
        let pairing_seconds = started.elapsed().as_secs_f64();
        gateway.wait_connected(http, n as u64).await?;
        tokio::time::sleep(self.settle).await;
        let rss_paired = gateway.rss_kib()?;
        let anon_paired = gateway.rss_anon_kib()?;

        tokio::time::sleep(self.kill_after).await;
        self.keep_logs(&gateway, "user_path_paired");
        let before = control.stats().await.map_err(|e| anyhow!("stats: {e:?}"))?;
        progress("user path: crash and restore");
        gateway.crash()?;
        let killed = Instant::now();
        let restored = self.start(config, database_url, wa_url).await?;
        let reached = restored_times(&restored, http, n, killed).await;
        self.keep_logs(&restored, "user_path_restored");
        let reached = reached?;
        let after = control.stats().await.map_err(|e| anyhow!("stats: {e:?}"))?;
        tokio::time::sleep(self.settle).await;
        let rss_restored = restored.rss_kib()?;
        let anon_restored = restored.rss_anon_kib()?;
        self.keep_logs(&restored, "user_path_restored");
        restored.stop().await;

        let above = |rss: u64, idle: u64| round(rss.saturating_sub(idle) as f64 / n as f64, 1);
        let per_device = |rss: u64| above(rss, rss_idle);
        let at = |p: f64| round(percentile(&reached, p), 2);
        Ok(UserPathFigures {
            user_path_devices: n,
            user_path_pair_concurrency: self.concurrency,
            user_path_pairing_seconds: round(pairing_seconds, 2),
            user_path_pair_p50_seconds: round(percentile(&sorted(pair_times), 50.0), 2),
            user_path_rss_idle_kib: rss_idle,
            user_path_rss_paired_kib: rss_paired,
            user_path_rss_kib_per_device: per_device(rss_paired),
            user_path_rss_total_kib_per_device: round(rss_paired as f64 / n as f64, 1),
            user_path_rss_anon_idle_kib: anon_idle,
            user_path_rss_anon_paired_kib: anon_paired,
            user_path_rss_anon_kib_per_device: above(anon_paired, anon_idle),
            user_path_rss_anon_restored_kib_per_device: above(anon_restored, anon_idle),
            user_path_restore_seconds: at(100.0),
            user_path_restore_first_seconds: at(0.0),
            user_path_restore_p50_seconds: at(50.0),
            user_path_restore_repairs: after.pairings.saturating_sub(before.pairings),
            user_path_rss_restored_kib: rss_restored,
            user_path_rss_restored_kib_per_device: per_device(rss_restored),
        })
    }
}

/// One user pairing one device: create it, fetch its QR code, scan it with the phone, wait until
/// the device says connected. Answers how long that took.
async fn pair_as_a_user(
    api: &Api,
    control: &ControlClient,
    i: usize,
    phone: &str,
) -> Result<Duration> {
    let started = Instant::now();
    let created = api
        .send(
            reqwest::Method::POST,
            "/devices",
            Some(json!({"name": format!("user path {i}")})),
        )
        .await?;
    let device = created["device"]["id"]
        .as_str()
        .ok_or_else(|| anyhow!("no device id: {created}"))?
        .to_owned();
    let qr = api
        .send(
            reqwest::Method::GET,
            &format!("/qr?device_id={device}"),
            None,
        )
        .await?;
    let code = qr["data"]["qr_code"]
        .as_str()
        .ok_or_else(|| anyhow!("no qr_code: {qr}"))?;
    control
        .scan_qr(phone, code)
        .await
        .map_err(|e| anyhow!("scan: {e:?}"))?;
    let deadline = Instant::now() + PAIR_DEADLINE;
    loop {
        let status = api
            .send(
                reqwest::Method::GET,
                &format!("/status?device_id={device}"),
                None,
            )
            .await?;
        if status["data"]["status"] == "connected" {
            return Ok(started.elapsed());
        }
        if Instant::now() > deadline {
            bail!("device {i} never connected after its scan: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Seconds from `since` at which the 1st, 2nd, … `n`th device reported connected on `gateway`
/// (sorted ascending).
async fn restored_times(
    gateway: &Gateway,
    http: &reqwest::Client,
    n: usize,
    since: Instant,
) -> Result<Vec<f64>> {
    let deadline = Instant::now() + RESTORE_DEADLINE;
    let mut reached: Vec<f64> = Vec::with_capacity(n);
    loop {
        let connected = gateway.connected(http).await.unwrap_or(0) as usize;
        let at = since.elapsed().as_secs_f64();
        while reached.len() < connected.min(n) {
            reached.push(at);
        }
        if reached.len() >= n {
            return Ok(reached);
        }
        if Instant::now() > deadline {
            bail!(
                "{} of {n} devices connected after the restart",
                reached.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
