//! Two gateway processes on one database: a device is only ever connected by one of them. The
//! second process (the real `wuts` binary) does not connect a device the first holds, answers
//! `DEVICE_NOT_READY` for it, takes it over once the first lets go, and on SIGTERM closes its
//! sessions cleanly and exits.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use wa_sim::{CreateAccount, WaSim};

use crate::helpers::{MASTER_TOKEN, TestApp};

/// A `wuts serve` process.
struct Process {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Process {
    async fn start(database_url: &str, wa_url: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_wuts"))
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("WUTS_LISTEN", format!("127.0.0.1:{port}"))
            .env("WUTS_MASTER_TOKEN", MASTER_TOKEN)
            .env("WUTS_WA_URL", wa_url)
            .env("WUTS_WA_VERSION", "2.3000.1000000")
            .env("WUTS_WA_TIMEOUT", "3s")
            .env("WUTS_RESTORE_JITTER", "0s")
            .env("WUTS_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("wuts starts");
        let process = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = process
                .http
                .get(format!("{}/readyz", process.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return process;
            }
            assert!(tokio::time::Instant::now() < deadline, "wuts never ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, token: &str) -> (u16, Value) {
        let answer = self
            .http
            .request(method, format!("{}{path}", self.base))
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
    async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "wuts did not exit on SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connected_companions(sim: &WaSim, phone: &str) -> usize {
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
