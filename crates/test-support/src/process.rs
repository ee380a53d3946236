//! The `wuts` binary as a child process: started on a free port with the settings a test run
//! needs, ready once `/readyz` answers, its output in a log file of its own, stopped with SIGKILL
//! (a crash) or SIGTERM (an orchestrator's stop), and killed when dropped so that no run leaves a
//! gateway behind.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use tokio::time::Instant;

/// How often readiness and exit are polled.
const POLL: Duration = Duration::from_millis(50);
/// How much of the log an error carries: enough for the last few JSON lines.
const LOG_TAIL: usize = 4000;

/// Why a gateway process could not be started, read or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no free port: {0}")]
    Port(std::io::Error),
    #[error("the log file {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("the gateway exited before it was ready ({status}); the end of its log:\n{log}")]
    Exited { status: ExitStatus, log: String },
    #[error("the gateway was not ready within {timeout:?}; the end of its log:\n{log}")]
    NeverReady { timeout: Duration, log: String },
    #[error("sending SIG{signal} to the gateway: {detail}")]
    Signal {
        signal: &'static str,
        detail: String,
    },
    #[error("the gateway did not exit within {0:?} of SIGTERM (it was killed)")]
    DidNotExit(Duration),
    #[error("waiting for the gateway: {0}")]
    Wait(std::io::Error),
    #[error("reading the gateway's memory: {0}")]
    Memory(String),
}

/// How to start `wuts serve`: the binary, its database and WhatsApp, and any further settings.
#[derive(Debug, Clone)]
pub struct GatewayCommand {
    binary: PathBuf,
    /// In the order set; a later value for the same name wins, an empty one removes it.
    env: Vec<(String, String)>,
    ready_timeout: Duration,
}

impl GatewayCommand {
    /// `binary serve` on `database_url`, talking to the WhatsApp stand-in at `wa_url`, with
    /// `master_token` for the platform routes. Set for test runs: the stand-in's version, no
    /// tenant budget or WhatsApp pacing (runs measure or exercise those on purpose), JSON logs at
    /// `warn`.
    pub fn new(
        binary: impl Into<PathBuf>,
        database_url: &str,
        wa_url: &str,
        master_token: &str,
    ) -> Self {
        let command = Self {
            binary: binary.into(),
            env: Vec::new(),
            ready_timeout: Duration::from_secs(60),
        };
        command
            .env("DATABASE_URL", database_url)
            .env("WUTS_MASTER_TOKEN", master_token)
            .env("WUTS_WA_URL", wa_url)
            .env("WUTS_WA_VERSION", "2.3000.1000000")
            .env("WUTS_TENANT_RPS", "0")
            .env("WUTS_DEVICE_WA_RPS", "0")
            .env("WUTS_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
    }

    /// One more setting; an empty value removes the variable (the gateway's default applies,
    /// even over one this process inherited).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// How long [`GatewayCommand::start`] waits for `/readyz` (default 60 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Starts the gateway on a free port of 127.0.0.1 and answers once `/readyz` says ready.
    pub async fn start(&self) -> Result<GatewayProcess, Error> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(Error::Port)?
            .port();
        let log_path = std::env::temp_dir().join(format!(
            "wuts-process-{port}-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let log_error = |source| Error::Log {
            path: log_path.clone(),
            source,
        };
        let log = std::fs::File::create(&log_path).map_err(log_error)?;
        let mut command = Command::new(&self.binary);
        command
            .arg("serve")
            .env("WUTS_LISTEN", format!("127.0.0.1:{port}"));
        for (name, value) in &self.env {
            if value.is_empty() {
                command.env_remove(name);
            } else {
                command.env(name, value);
            }
        }
        let child = command
            .stdout(log.try_clone().map_err(log_error)?)
            .stderr(log)
            .spawn()
            .map_err(|source| Error::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        let mut process = GatewayProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log_path,
        };
        process.wait_ready(self.ready_timeout).await?;
        Ok(process)
    }
}

/// A running `wuts serve`; killed (SIGKILL) and its log removed when dropped.
#[derive(Debug)]
pub struct GatewayProcess {
    child: Child,
    base: String,
    log_path: PathBuf,
}

impl GatewayProcess {
    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The URL of `path` (which starts with `/`) on this gateway.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Resident set size in KiB, from `/proc` (Linux).
    pub fn rss_kib(&self) -> Result<u64, Error> {
        memory_kib(self.pid(), "VmRSS")
    }

    /// Anonymous resident memory in KiB (`RssAnon`): the resident set without the pages of the
    /// binary and libraries, which grow as code first runs whatever the process holds.
    pub fn rss_anon_kib(&self) -> Result<u64, Error> {
        memory_kib(self.pid(), "RssAnon")
    }

    /// SIGKILL: no shutdown, no flush, as a crash. Takes `&self` so that it can be sent while
    /// other tasks are still calling the process; the process is reaped when dropped.
    pub fn kill(&self) -> Result<(), Error> {
        self.signal("KILL")
    }

    /// SIGTERM, then the exit status once the process is gone. Killed if it is still running
    /// after `within`.
    pub async fn terminate(mut self, within: Duration) -> Result<ExitStatus, Error> {
        self.signal("TERM")?;
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().map_err(Error::Wait)? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                // Dropping kills it.
                return Err(Error::DidNotExit(within));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sends a signal with kill(1): the standard library sends only SIGKILL, and only with
    /// `&mut` access to the child.
    fn signal(&self, signal: &'static str) -> Result<(), Error> {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .map_err(|e| Error::Signal {
                signal,
                detail: e.to_string(),
            })?;
        if sent.success() {
            Ok(())
        } else {
            Err(Error::Signal {
                signal,
                detail: format!("kill(1) answered {sent}"),
            })
        }
    }

    /// Polls `/readyz` until it answers 2xx; fails at once if the process exits meanwhile.
    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), Error> {
        // reqwest built with TLS support (as in the gateway's test builds) wants a provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let url = self.url("/readyz");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().map_err(Error::Wait)? {
                return Err(Error::Exited {
                    status,
                    log: self.log_tail(),
                });
            }
            let ready = http
                .get(&url)
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::NeverReady {
                    timeout,
                    log: self.log_tail(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = self.logs();
        let mut start = log.len().saturating_sub(LOG_TAIL);
        while !log.is_char_boundary(start) {
            start += 1;
        }
        log[start..].to_owned()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// One memory figure of a process, in KiB, from `/proc/<pid>/status` (Linux): `VmRSS`,
/// `RssAnon`, ...
pub fn memory_kib(pid: u32, field: &str) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| Error::Memory(e.to_string()))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| Error::Memory(format!("no {field} in /proc/{pid}/status")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_process_that_exits_is_reported_at_once_with_its_status() {
        let started = Instant::now();
        // `false serve` exits 1 at once, as a gateway refusing its settings does.
        let command = GatewayCommand::new("false", "postgres://h/db", "ws://h", "token");
        let error = command.start().await.expect_err("not a gateway");
        assert!(
            matches!(&error, Error::Exited { status, .. } if status.code() == Some(1)),
            "{error}"
        );
        assert!(started.elapsed() < Duration::from_secs(10), "waited for it");
    }

    #[test]
    fn memory_figures_are_read_by_their_exact_name() {
        let me = std::process::id();
        let rss = memory_kib(me, "VmRSS").expect("VmRSS");
        let anon = memory_kib(me, "RssAnon").expect("RssAnon");
        assert!(
            rss > 0 && anon > 0 && anon <= rss,
            "VmRSS {rss}, RssAnon {anon}"
        );
        // A prefix of a field's name is not that field.
        assert!(memory_kib(me, "VmRS").is_err());
    }

    #[tokio::test]
    async fn a_missing_binary_cannot_start() {
        let command = GatewayCommand::new("/nonexistent/wuts", "postgres://h/db", "ws://h", "t");
        let error = command.start().await.expect_err("no such binary");
        assert!(matches!(error, Error::Spawn { .. }), "{error}");
    }
}
