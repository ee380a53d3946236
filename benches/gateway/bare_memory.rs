//! What whatsapp-rust alone holds per session: bare clients on its in-memory store, paired
//! through the same wa-sim, in a process of their own so that `/proc` gives their memory alone.
//!
//! The child is this same executable started again with the `BENCH_BARE_*` variables set (the
//! benchmark's `main`, or the smoke test's `bare_sessions_child`). It says `idle` once its
//! runtime is up, pairs every phone when told `go`, says `paired`, and exits when its standard
//! input closes. The parent reads the child's resident memory at idle and 5 s after the last
//! pairing; the difference over the sessions is the figure next to the gateway's.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use wa_sim::ControlClient;

use super::bare::bare_client;
use super::gateway::create_accounts;
use super::stats::round;

const WS_URL: &str = "BENCH_BARE_WS_URL";
const CONTROL_URL: &str = "BENCH_BARE_CONTROL_URL";
const PHONES: &str = "BENCH_BARE_PHONES";
const CONCURRENCY: &str = "BENCH_BARE_CONCURRENCY";
/// What the child writes before each of its words, so that they stand out of a test harness's
/// own output.
const SAYS: &str = "bare-sessions: ";
/// How long the child may take to pair all its sessions.
const PAIR_DEADLINE: Duration = Duration::from_secs(900);

/// The phase's parameters.
pub struct BareMemory<'a> {
    /// Sessions paired (`BENCH_BARE_SESSIONS`; 0 skips the phase).
    pub sessions: usize,
    /// Pairings in flight.
    pub concurrency: usize,
    pub ws_url: &'a str,
    pub control_url: &'a str,
    /// Arguments that make this executable run the child (none for the benchmark's own binary).
    pub child_args: &'a [String],
    /// After the last pairing, before the memory reading.
    pub settle: Duration,
}

#[derive(Debug, Serialize)]
pub struct BareMemoryFigures {
    pub bare_sessions: usize,
    pub bare_rss_idle_kib: u64,
    pub bare_rss_paired_kib: u64,
    /// (paired − idle) / sessions: whatsapp-rust's own memory per session on its in-memory
    /// store, right after pairing.
    pub bare_rss_per_session_kib: f64,
    pub bare_pairing_seconds: f64,
}

impl BareMemory<'_> {
    pub async fn run(self, control: &ControlClient) -> Result<BareMemoryFigures> {
        let phones: Vec<String> = (0..self.sessions).map(|i| format!("5517{i:09}")).collect();
        create_accounts(control, phones.clone()).await?;
        let exe = std::env::current_exe().context("the benchmark's own executable")?;
        let mut child = tokio::process::Command::new(exe)
            .args(self.child_args)
            .env(WS_URL, self.ws_url)
            .env(CONTROL_URL, self.control_url)
            .env(PHONES, phones.join(","))
            .env(CONCURRENCY, self.concurrency.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting the bare sessions' process")?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("the bare process has no pid"))?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow!("no stdin for the bare process"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout from the bare process"))?;
        let mut lines = BufReader::new(stdout).lines();
        let mut heard = async |word: &str, within: Duration| -> Result<()> {
            let wanted = format!("{SAYS}{word}");
            tokio::time::timeout(within, async {
                while let Some(line) = lines.next_line().await? {
                    if line.trim() == wanted {
                        return Ok(());
                    }
                    if let Some(failure) = line
                        .strip_prefix(SAYS)
                        .and_then(|l| l.strip_prefix("failed: "))
                    {
                        bail!("the bare sessions failed: {failure}");
                    }
                }
                bail!("the bare process exited before it said {word}")
            })
            .await
            .map_err(|_| anyhow!("the bare process did not say {word} in time"))?
        };
        heard("idle", Duration::from_secs(30)).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = rss_kib(pid)?;
        let started = Instant::now();
        stdin.write_all(b"go\n").await?;
        stdin.flush().await?;
        heard("paired", PAIR_DEADLINE).await?;
        let pairing_seconds = started.elapsed().as_secs_f64();
        tokio::time::sleep(self.settle).await;
        let paired = rss_kib(pid)?;
        drop(stdin);
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
        Ok(BareMemoryFigures {
            bare_sessions: self.sessions,
            bare_rss_idle_kib: idle,
            bare_rss_paired_kib: paired,
            bare_rss_per_session_kib: round(
                paired.saturating_sub(idle) as f64 / self.sessions.max(1) as f64,
                1,
            ),
            bare_pairing_seconds: round(pairing_seconds, 2),
        })
    }
}

/// A process's resident set, KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    Ok(wuts_test_support::memory_kib(pid, "VmRSS")?)
}

/// The child's orders, when this process is the child.
pub struct Child {
    ws_url: String,
    control_url: String,
    phones: Vec<String>,
    concurrency: usize,
}

impl Child {
    /// The child's orders from the environment; `None` in any other process.
    pub fn from_env() -> Option<Self> {
        let phones = std::env::var(PHONES).ok()?;
        Some(Self {
            ws_url: std::env::var(WS_URL).ok()?,
            control_url: std::env::var(CONTROL_URL).ok()?,
            phones: phones
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            concurrency: std::env::var(CONCURRENCY)
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(8usize)
                .max(1),
        })
    }

    /// Runs the child to its end (standard input closed).
    pub fn run(self) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let mut input = BufReader::new(tokio::io::stdin()).lines();
            say("idle");
            while let Some(line) = input.next_line().await? {
                if line.trim() == "go" {
                    break;
                }
            }
            let control = ControlClient::new(&self.control_url);
            let paired: Vec<Result<_>> = futures::stream::iter(self.phones)
                .map(|phone| bare_client(self.ws_url.clone(), control.clone(), phone))
                .buffer_unordered(self.concurrency)
                .collect()
                .await;
            let mut clients: Vec<Arc<whatsapp_rust::Client>> = Vec::with_capacity(paired.len());
            let mut handles = Vec::with_capacity(paired.len());
            for result in paired {
                match result {
                    Ok((client, handle)) => {
                        clients.push(client);
                        handles.push(handle);
                    }
                    Err(e) => {
                        say(&format!("failed: {e:#}"));
                        return Err(e);
                    }
                }
            }
            say("paired");
            // Held until the parent closes standard input.
            while input.next_line().await?.is_some() {}
            drop(clients);
            drop(handles);
            Ok(())
        })
    }
}

fn say(word: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{SAYS}{word}");
    let _ = out.flush();
}
