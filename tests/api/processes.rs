//! Gateway processes (the real `wuts` binary) on one database. A device is only ever connected by
//! one of them: the second does not connect a device the first holds, answers `DEVICE_NOT_READY`
//! for it, takes it over once the first lets go, and on SIGTERM closes its sessions cleanly and
//! exits. A process killed with SIGKILL in the middle of block/unblock traffic loses nothing it
//! acknowledged: the next one reconnects without a QR (from keys sealed at rest) and every
//! acknowledged change is in WhatsApp's list.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use wa_sim::{CreateAccount, WaSim};
use wuts_test_support::{GatewayCommand, GatewayProcess};

use crate::helpers::{MASTER_TOKEN, TestApp, sim_account};

/// A `wuts serve` process (the shared harness's), with the calls these tests make to it.
struct Process {
    gateway: GatewayProcess,
    http: reqwest::Client,
}

impl Process {
    async fn start(database_url: &str, wa_url: &str) -> Self {
        Self::start_with(database_url, wa_url, &[]).await
    }

    /// Starts `wuts serve` with more environment (an empty value removes a variable); its logs
    /// go to a file (see [`Process::logs`]).
    async fn start_with(database_url: &str, wa_url: &str, env: &[(&str, &str)]) -> Self {
        // Quick to give up on WhatsApp and to restore: the tests wait for both.
        let mut command = GatewayCommand::new(
            env!("CARGO_BIN_EXE_wuts"),
            database_url,
            wa_url,
            MASTER_TOKEN,
        )
        .env("WUTS_WA_TIMEOUT", "3s")
        .env("WUTS_RESTORE_JITTER", "0s");
        for (name, value) in env {
            command = command.env(name, value);
        }
        let gateway = command
            .start()
            .await
            .unwrap_or_else(|e| panic!("wuts starts and is ready: {e}"));
        Self {
            gateway,
            http: {
                wuts_gateway::delivery::send::install_tls_provider();
                reqwest::Client::new()
            },
        }
    }

    /// A JSON call; `None` when the process did not answer (it is gone).
    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Value,
    ) -> Option<(u16, Value)> {
        let answer = self
            .http
            .request(method, self.gateway.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .ok()?;
        let status = answer.status().as_u16();
        let body = answer.json().await.ok()?;
        Some((status, body))
    }

    /// A POST that must create something (201); answers the body.
    async fn create(&self, path: &str, token: &str, body: Value) -> Value {
        let (status, answer) = self
            .try_call(reqwest::Method::POST, path, token, body)
            .await
            .expect("answer");
        assert_eq!(status, 201, "{path}: {answer}");
        answer
    }

    /// SIGKILL: no shutdown, no flush.
    fn kill(&self) {
        self.gateway.kill().expect("SIGKILL sent");
    }

    async fn call(&self, method: reqwest::Method, path: &str, token: &str) -> (u16, Value) {
        let answer = self
            .http
            .request(method, self.gateway.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("answer");
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or(Value::Null))
    }

    async fn wait_status(&self, token: &str, device: &str, status: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (_, body) = self
                .call(
                    reqwest::Method::GET,
                    &format!("/status?device_id={device}"),
                    token,
                )
                .await;
            if body["data"]["status"] == status {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never {status}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then the exit status once the process is gone.
    async fn terminate(self) -> std::process::ExitStatus {
        self.gateway
            .terminate(Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("wuts exits on SIGTERM: {e}"))
    }

    /// Everything the process logged so far.
    fn logs(&self) -> String {
        self.gateway.logs()
    }

    /// Whether the process is still running.
    fn alive(&mut self) -> bool {
        self.gateway.alive()
    }
}

/// How many of the account's companions wa-sim sees connected.
pub(crate) async fn connected_companions(sim: &WaSim, phone: &str) -> usize {
    sim.control()
        .account(phone)
        .await
        .expect("account")
        .companions
        .iter()
        .filter(|c| c.connected)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_never_both_connect_a_device() {
    let sim = WaSim::start().await.expect("wa-sim");
    let phone = "5511900001300";
    sim.control()
        .create_account(&CreateAccount {
            phone: phone.into(),
            push_name: Some("Shared".into()),
            ..Default::default()
        })
        .await
        .expect("account");
    let first = TestApp::spawn_with_sim(&sim).await;
    let tenant = first.register("two-nodes").await;
    let token = tenant.admin_token.clone();
    let device = first.create_device(&token, "shared").await;
    first.pair(&sim, &token, &device, phone).await;

    // A second process on the same database restores nothing the first holds.
    let logins = sim.control().stats().await.expect("stats").logins;
    let second = Process::start(&first.db.url(), sim.ws_url()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sim.control().stats().await.expect("stats").logins, logins);
    assert_eq!(connected_companions(&sim, phone).await, 1);
    let (status, body) = second
        .call(
            reqwest::Method::POST,
            &format!("/connect?device_id={device}"),
            &token,
        )
        .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (409, Some("DEVICE_NOT_READY"))
    );
    assert_eq!(connected_companions(&sim, phone).await, 1);

    // Once the first lets go, the second takes the device over, with no QR.
    first.sessions.shutdown(Duration::from_secs(15)).await;
    let (status, body) = second
        .call(
            reqwest::Method::POST,
            &format!("/connect?device_id={device}"),
            &token,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    second.wait_status(&token, &device, "connected").await;
    assert_eq!(connected_companions(&sim, phone).await, 1);

    // SIGTERM: sessions closed, clean exit.
    let exit = second.terminate().await;
    assert!(exit.success(), "{exit:?}");
    assert_eq!(connected_companions(&sim, phone).await, 0);
}

/// Where a target stands after the traffic: its last acknowledged state, and whether a request
/// for it was in flight when the process died (then WhatsApp may hold either state).
#[derive(Debug, Clone, Copy, Default)]
struct Outcome {
    blocked: Option<bool>,
    in_flight: bool,
    /// Blocks and unblocks acknowledged (200) for this target.
    acknowledged: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_block_traffic_loses_nothing_acknowledged() {
    const LOOPS: usize = 4;
    const PER_LOOP: usize = 6;
    let sim = WaSim::start().await.expect("wa-sim");
    let owner = "5511900009000";
    sim_account(&sim, owner).await;
    let mut lids = Vec::new();
    for i in 0..LOOPS * PER_LOOP {
        lids.push(
            sim_account(&sim, &format!("55119000091{i:02}"))
                .await
                .lid_jid,
        );
    }
    // Paired in-process, then handed to a `wuts` process; the keys are sealed at rest, so the
    // crash also tests that sealed writes are whole.
    const STORE_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f000112233445566778899aabbccddeeff";
    let app = TestApp::spawn_with_sim_and(&sim, |config| {
        config.store_keys.store_key = Some(STORE_KEY.into());
    })
    .await;
    let tenant = app.register("sigkill").await;
    let token = tenant.admin_token.clone();
    let device = app.create_device(&token, "killed").await;
    app.pair(&sim, &token, &device, owner).await;
    app.sessions.shutdown(Duration::from_secs(15)).await;
    let keyed = [("WUTS_STORE_KEY", STORE_KEY)];
    let first = Process::start_with(&app.db.url(), sim.ws_url(), &keyed).await;
    first.wait_status(&token, &device, "connected").await;

    // Loops block and unblock their own targets, one request at a time, until the process dies.
    let traffic = (0..LOOPS).map(|l| {
        let first = &first;
        let token = &token;
        let device = &device;
        async move {
            let mut outcomes = vec![Outcome::default(); PER_LOOP];
            for round in 0.. {
                let block = round % 2 == 0;
                for (t, outcome) in outcomes.iter_mut().enumerate() {
                    let number = format!("55119000091{:02}", l * PER_LOOP + t);
                    let path = if block {
                        "/contacts/block"
                    } else {
                        "/contacts/unblock"
                    };
                    let answer = first
                        .try_call(
                            reqwest::Method::POST,
                            path,
                            token,
                            serde_json::json!({"number": number, "device_id": device}),
                        )
                        .await;
                    match answer {
                        Some((200, body)) => {
                            assert_eq!(body["data"]["blocked"], block, "{body}");
                            outcome.blocked = Some(block);
                            outcome.acknowledged += 1;
                        }
                        Some((status, body)) => panic!("{path} {number}: {status} {body}"),
                        None => {
                            outcome.in_flight = true;
                            return outcomes;
                        }
                    }
                }
            }
            outcomes
        }
    });
    let killer = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        first.kill();
    };
    let (outcomes, ()) = tokio::join!(futures::future::join_all(traffic), killer);
    let outcomes: Vec<Outcome> = outcomes.into_iter().flatten().collect();
    let acknowledged = outcomes.iter().filter(|o| o.blocked.is_some()).count();
    assert!(
        acknowledged >= LOOPS,
        "too little traffic before the kill: {outcomes:?}"
    );
    assert!(
        outcomes.iter().filter(|o| o.in_flight).count() >= 1,
        "the kill came after the traffic: {outcomes:?}"
    );
    drop(first);

    // A new process restores the device without a QR.
    sim.control().reset_stats().await.expect("reset");
    let second = Process::start_with(&app.db.url(), sim.ws_url(), &keyed).await;
    second.wait_status(&token, &device, "connected").await;
    let stats = sim.control().stats().await.expect("stats");
    assert_eq!(stats.handshake_count("xx"), 0, "paired again: {stats:?}");
    let in_clear: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM wa_devices WHERE substring(data from 1 for 4) <> $1",
    )
    .bind(&wuts_wa_store::seal::MAGIC[..])
    .fetch_one(&app.db.pool)
    .await
    .expect("count");
    assert_eq!(in_clear, 0, "the device record was written in clear");

    // Every acknowledged change is in WhatsApp's list.
    let list = sim.control().account(owner).await.expect("owner").blocklist;
    let (mut acknowledged_blocked, mut found_blocked) = (0, 0);
    for (outcome, lid) in outcomes.iter().zip(&lids) {
        if outcome.in_flight {
            continue;
        }
        if let Some(blocked) = outcome.blocked {
            assert_eq!(list.items.contains(lid), blocked, "{lid}: {outcome:?}");
            if blocked {
                acknowledged_blocked += 1;
                found_blocked += usize::from(list.items.contains(lid));
            }
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "acknowledged_requests": outcomes.iter().map(|o| o.acknowledged).sum::<u32>(),
            "targets": outcomes.len(),
            "acknowledged_blocked": acknowledged_blocked,
            "found_blocked_in_whatsapp": found_blocked,
            "in_flight_at_kill": outcomes.iter().filter(|o| o.in_flight).count(),
        })
    );

    // Later operations work: the keys survived. The gateway's list agrees with WhatsApp's, a
    // new block and an unblock both reach it.
    let (status, body) = second
        .call(
            reqwest::Method::GET,
            &format!("/contacts/blocklist?device_id={device}&refresh=true"),
            &token,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["count"], list.items.len(), "{body}");
    assert_eq!(body["data"]["dhash"], list.dhash.as_str());
    for (path, blocked) in [("/contacts/block", true), ("/contacts/unblock", false)] {
        let (status, body) = second
            .try_call(
                reqwest::Method::POST,
                path,
                &token,
                serde_json::json!({"number": "5511900009100", "device_id": device}),
            )
            .await
            .expect("answer");
        assert_eq!(
            (status, &body["data"]["blocked"]),
            (200, &Value::Bool(blocked)),
            "{body}"
        );
        let list = sim.control().account(owner).await.expect("owner").blocklist;
        assert_eq!(list.items.contains(&lids[0]), blocked);
    }
}

/// The directory holding `initdb` and `pg_ctl`: Debian's versioned directories (the newest), then
/// `pg_config --bindir`, then `PATH`.
fn server_programs() -> Option<std::path::PathBuf> {
    let has_both =
        |dir: &std::path::Path| dir.join("initdb").exists() && dir.join("pg_ctl").exists();
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| has_both(bin))
        .max();
    let pg_config = || {
        Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .filter(|bin| has_both(bin))
    };
    let path = || {
        std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).find(|dir| has_both(dir)))
    };
    debian.or_else(pg_config).or_else(path)
}

/// A private PostgreSQL cluster the test may stop and start (the shared one must stay up).
struct Cluster {
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    port: u16,
    /// Root may not run PostgreSQL: the cluster then belongs to the `postgres` user.
    as_postgres: bool,
}

impl Cluster {
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self
            .command(program)
            .args(args)
            .output()
            .expect("PostgreSQL tool runs");
        assert!(
            output.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Initializes a cluster in a new directory and starts it on a free port.
    fn start_new() -> Self {
        let bin = server_programs().unwrap_or_else(|| {
            panic!(
                "this test runs a private PostgreSQL, so it needs PostgreSQL's server programs \
                 (initdb and pg_ctl; Debian: apt-get install postgresql), not only a reachable \
                 server: none in /usr/lib/postgresql/*/bin, in `pg_config --bindir`, nor on PATH"
            )
        });
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let dir = std::env::temp_dir().join(format!("wuts-pg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("cluster directory");
        if root {
            let chown = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(chown.success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let cluster = Self {
            dir,
            bin,
            port,
            as_postgres: root,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        cluster.start();
        cluster
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("postgres.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server at once, as a crash or a restart does to its clients.
    fn stop(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/wuts", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Statuses and error codes of a JSON call, `None` for no answer.
async fn attempt(process: &Process, path: &str, token: &str) -> Option<(u16, Value)> {
    let answer = process
        .http
        .get(process.gateway.url(path))
        .bearer_auth(token)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .ok()?;
    let status = answer.status().as_u16();
    Some((status, answer.json().await.unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_traffic_then_recovered() {
    let cluster = Cluster::start_new();
    let sim = WaSim::start().await.expect("wa-sim");
    let mut gateway = Process::start_with(
        &cluster.url(),
        sim.ws_url(),
        // Tokens are checked against the database on every request.
        &[("WUTS_AUTH_CACHE_TTL", "1ms")],
    )
    .await;
    let registered = gateway
        .create(
            "/register",
            MASTER_TOKEN,
            serde_json::json!({"tenant_name": "restart", "email": "ops@restart.example"}),
        )
        .await;
    let token = registered["token"].as_str().expect("token").to_owned();
    gateway
        .create("/devices", &token, serde_json::json!({"name": "before"}))
        .await;

    // PostgreSQL goes away: readiness says so, routes fail with a clean envelope, at once or
    // within the pool's acquire timeout, and nothing hangs or panics.
    cluster.stop();
    let (status, _) = attempt(&gateway, "/readyz", &token)
        .await
        .expect("readyz answers");
    assert_eq!(status, 503);
    for path in ["/devices", "/users", "/status"] {
        let started = std::time::Instant::now();
        let (status, body) = attempt(&gateway, path, &token)
            .await
            .expect("an answer while the database is down");
        assert!(matches!(status, 500 | 503), "{path}: {status} {body}");
        assert!(
            matches!(
                body["error_code"].as_str(),
                Some("SERVICE_UNAVAILABLE" | "INTERNAL_ERROR")
            ),
            "{path}: {body}"
        );
        assert!(started.elapsed() < Duration::from_secs(15), "{path} hung");
    }
    assert!(gateway.alive(), "the gateway died with its database");

    // PostgreSQL comes back: the gateway recovers by itself, with everything it had.
    cluster.start();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((200, body)) = attempt(&gateway, "/devices", &token).await {
            assert_eq!(body["devices"].as_array().map(Vec::len), Some(1), "{body}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _) = attempt(&gateway, "/readyz", &token).await.expect("readyz");
    assert_eq!(status, 200);
    gateway
        .create("/devices", &token, serde_json::json!({"name": "after"}))
        .await;
    assert!(gateway.alive());
    let logs = gateway.logs();
    assert!(!logs.contains("panicked"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_phone_numbers_never_reach_the_logs() {
    let sim = WaSim::start().await.expect("wa-sim");
    let owner = "5511900009500";
    let contact = "5511900009501";
    let coder = "5511900009502";
    for phone in [owner, contact, coder] {
        sim_account(&sim, phone).await;
    }
    let app = TestApp::spawn().await;
    // The default log filter (what operators run: info), request lines included.
    let gateway = Process::start_with(&app.db.url(), sim.ws_url(), &[("RUST_LOG", "")]).await;
    let registered = gateway
        .create(
            "/register",
            MASTER_TOKEN,
            serde_json::json!({"tenant_name": "secrets", "email": "admin@secrets.example"}),
        )
        .await;
    let token = registered["token"].as_str().expect("token").to_owned();
    let created = gateway
        .create(
            "/users",
            &token,
            serde_json::json!({"email": "user@secrets.example"}),
        )
        .await;
    let user_token = created["token"].as_str().expect("token").to_owned();
    let user_id = created["user"]["id"].as_str().expect("id").to_owned();
    let rotated = gateway
        .create(
            &format!("/users/{user_id}/token"),
            &token,
            serde_json::json!({}),
        )
        .await;
    let new_token = rotated["token"].as_str().expect("token").to_owned();

    // A full pairing by QR, then contacts: check, resolve, block, unblock, the list.
    let device = gateway
        .create("/devices", &token, serde_json::json!({"name": "qr"}))
        .await;
    let device = device["device"]["id"].as_str().expect("id").to_owned();
    let (status, qr) = gateway
        .call(
            reqwest::Method::GET,
            &format!("/qr?device_id={device}"),
            &token,
        )
        .await;
    assert_eq!(status, 200, "{qr}");
    let qr = qr["data"]["qr_code"].as_str().expect("qr").to_owned();
    sim.control().scan_qr(owner, &qr).await.expect("scanned");
    gateway.wait_status(&token, &device, "connected").await;
    for (path, body) in [
        ("/contact/check", serde_json::json!({"numbers": [contact]})),
        ("/contacts/resolve", serde_json::json!({"jids": [contact]})),
        ("/contacts/block", serde_json::json!({"number": contact})),
        ("/contacts/unblock", serde_json::json!({"number": contact})),
    ] {
        let (status, answer) = gateway
            .try_call(reqwest::Method::POST, path, &token, body)
            .await
            .expect("answer");
        assert_eq!(status, 200, "{path}: {answer}");
    }
    let (status, _) = gateway
        .call(
            reqwest::Method::GET,
            "/contacts/blocklist?refresh=true",
            &token,
        )
        .await;
    assert_eq!(status, 200);

    // A pairing code for a second device.
    let second = gateway
        .create("/devices", &token, serde_json::json!({"name": "code"}))
        .await;
    let second = second["device"]["id"].as_str().expect("id").to_owned();
    let (status, code) = gateway
        .try_call(
            reqwest::Method::POST,
            "/paircode",
            &token,
            serde_json::json!({"phone": coder, "device_id": second}),
        )
        .await
        .expect("answer");
    assert_eq!(status, 200, "{code}");
    let code = code["data"]["code"].as_str().expect("code").to_owned();

    // Tokens where they do not belong: in the query string, in an unknown path, as a bad token.
    for path in [
        format!("/devices?token={token}"),
        format!("/nowhere/{token}"),
        format!("/users/{user_token}"),
    ] {
        let _ = gateway.call(reqwest::Method::GET, &path, &user_token).await;
    }
    let _ = gateway
        .call(reqwest::Method::GET, "/devices", &format!("{token}x"))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Key material: every key in the device's stored record (32-byte arrays, long strings).
    let records: Vec<Vec<u8>> = sqlx::query_scalar("SELECT data FROM wa_devices")
        .fetch_all(&app.db.pool)
        .await
        .expect("device records");
    let mut keys: Vec<String> = Vec::new();
    for record in &records {
        let value: Value = serde_json::from_slice(record).expect("device record is JSON");
        collect_keys(&value, &mut keys);
    }
    assert!(keys.len() >= 4, "no key material found in {records:?}");
    let mut secrets = vec![
        ("master token".to_owned(), MASTER_TOKEN.to_owned()),
        ("admin token".to_owned(), token.clone()),
        ("user token".to_owned(), user_token.clone()),
        ("rotated token".to_owned(), new_token.clone()),
        ("QR code".to_owned(), qr.clone()),
        ("pairing code".to_owned(), code.replace('-', "")),
        ("pairing code".to_owned(), code.clone()),
    ];
    for phone in [owner, contact, coder] {
        secrets.push((format!("phone number {phone}"), phone.to_owned()));
    }
    for key in keys {
        secrets.push(("key material".to_owned(), key));
    }

    let logs = gateway.logs();
    // Requests were logged (by route template), so their absence below means something.
    assert!(logs.contains("/users/{id}/token"), "{logs}");
    assert!(logs.contains("/contacts/block"), "{logs}");
    for (what, secret) in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "the {what} was logged: {logs}"
        );
    }
}

/// Key material in a stored record: each array of 32 bytes as hex and base64, and each long
/// string as it is.
fn collect_keys(value: &Value, keys: &mut Vec<String>) {
    use base64::Engine as _;
    match value {
        Value::Array(items) => {
            let bytes: Option<Vec<u8>> = items
                .iter()
                .map(|v| v.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            match bytes {
                Some(bytes) if bytes.len() == 32 => {
                    keys.push(bytes.iter().map(|b| format!("{b:02x}")).collect());
                    keys.push(base64::engine::general_purpose::STANDARD.encode(&bytes));
                }
                _ => items.iter().for_each(|v| collect_keys(v, keys)),
            }
        }
        Value::Object(fields) => fields.values().for_each(|v| collect_keys(v, keys)),
        Value::String(text) if text.len() >= 32 => keys.push(text.clone()),
        _ => {}
    }
}

/// SIGKILL with events queued and one delivery in flight: the next process delivers every
/// event, in order (the one in flight again, once its lease has run out), none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_deliveries_pending_loses_no_event() {
    let receiver = crate::receiver::Receiver::start().await;
    let app = TestApp::spawn().await;
    // Only the processes below deliver.
    app.deliveries.shutdown(Duration::from_secs(5)).await;
    let tenant = app.register("kill-events").await;
    let token = tenant.admin_token.clone();
    let device = app.create_device(&token, "d").await;
    app.post("/webhook")
        .token(&token)
        .json(
            serde_json::json!({"device_id": device, "webhook_url": receiver.url(),
                                 "enabled_events": ["*"], "timeout": 2}),
        )
        .send()
        .await
        .assert_status(200);
    // The first attempt hangs: it is in flight when the process dies.
    receiver.queue([crate::receiver::Reply {
        status: 200,
        delay: Duration::from_secs(60),
        retry_after: None,
    }]);
    let env = [
        ("WUTS_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("WUTS_WEBHOOK_RETRY_SCHEDULE", "100ms"),
    ];
    let first = Process::start_with(&app.db.url(), "ws://127.0.0.1:9/ws", &env).await;
    const EVENTS: i64 = 20;
    for n in 1..=EVENTS {
        sqlx::query(
            "SELECT wuts_append_event($1::uuid, $2::uuid, gen_random_uuid(), 'webhook.test', \
             jsonb_build_object('n', $3::bigint))",
        )
        .bind(&tenant.id)
        .bind(&device)
        .bind(n)
        .execute(&app.db.pool)
        .await
        .expect("event appended");
    }
    receiver
        .wait_for(Duration::from_secs(15), |r| !r.is_empty())
        .await;
    first.kill();
    assert_eq!(receiver.received().len(), 1, "one delivery was in flight");

    let _second = Process::start_with(&app.db.url(), "ws://127.0.0.1:9/ws", &env).await;
    let got = receiver
        .wait_for(Duration::from_secs(60), |r| {
            r.iter().filter(|r| r.status == 200).count() > EVENTS as usize
        })
        .await;
    let mut seqs: Vec<i64> = got
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.json()["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs[0], 1);
    assert_eq!(seqs[1], 1, "the event in flight is delivered again, first");
    seqs.dedup();
    assert_eq!(
        seqs,
        (1..=EVENTS).collect::<Vec<_>>(),
        "every event, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_connection_attempt_is_logged_on_one_line_even_with_rust_backtrace() {
    // A paired device whose WhatsApp is gone: the restarted gateway keeps trying (1 s, 1 s, 2 s,
    // ...), and with RUST_BACKTRACE=1 (as on many developer machines) anyhow captures a backtrace
    // in every error whatsapp-rust logs for those attempts.
    let sim = WaSim::start().await.expect("wa-sim");
    let phone = "5511900001400";
    sim_account(&sim, phone).await;
    let app = TestApp::spawn_with_sim(&sim).await;
    let tenant = app.register("backtraces").await;
    let device = app.create_device(&tenant.admin_token, "phone").await;
    app.pair(&sim, &tenant.admin_token, &device, phone).await;
    let wa_url = sim.ws_url().to_owned();
    app.sessions.shutdown(Duration::from_secs(10)).await;
    drop(sim);

    let process = Process::start_with(
        &app.db.url(),
        &wa_url,
        &[
            ("RUST_BACKTRACE", "1"),
            ("WUTS_LOG_FORMAT", "pretty"),
            ("RUST_LOG", "info"),
            ("WUTS_RECONNECT_JITTER", "0s"),
        ],
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let logs = loop {
        let logs = process.logs();
        let attempts = logs.matches("Failed to connect").count();
        if attempts >= 2 || tokio::time::Instant::now() > deadline {
            break logs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        logs.matches("Failed to connect").count() >= 2,
        "the attempts were not logged:\n{logs}"
    );
    // The error itself is logged (its Debug form, which is where the backtrace was)...
    assert!(logs.contains("error=Transport("), "{logs}");
    // ...on one line.
    assert!(!logs.contains("Stack backtrace"), "{logs}");
    assert!(
        !logs.lines().any(|line| {
            line.trim_start()
                .split_once(": ")
                .is_some_and(|(frame, _)| {
                    !frame.is_empty() && frame.chars().all(|c| c.is_ascii_digit())
                })
        }),
        "a backtrace frame reached the log:\n{logs}"
    );
    // Errors capture no backtrace at all (resolving one costs the process its symbol tables,
    // over 100 MB kept for good), while a panic still prints its own.
    let environ = std::fs::read(format!("/proc/{}/environ", process.gateway.pid()))
        .expect("the gateway's environment");
    let environ: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
    assert!(environ.contains(&&b"RUST_LIB_BACKTRACE=0"[..]));
    assert!(environ.contains(&&b"RUST_BACKTRACE=1"[..]));
    process.terminate().await;
}
