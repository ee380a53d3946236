//! Several gateway nodes (real `wuts serve` processes) on one database and one wa-sim: any node
//! answers for any device as its owner does, every device is connected by exactly one node, a
//! killed node's devices are taken over without a QR, a draining node hands its devices over
//! without failing a request, revocations reach every node at once, and forwarding cannot be
//! abused from outside.

use std::time::Duration;

use serde_json::{Value, json};
use wa_sim::{CreateAccount, WaSim};
use wuts_test_support::{GatewayCommand, GatewayProcess};

use crate::helpers::{MASTER_TOKEN, TestApp};
use crate::processes::connected_companions;

const NODE_SECRET: &str = "a-node-secret-for-the-tests";

async fn start_node(database_url: &str, wa_url: &str) -> GatewayProcess {
    GatewayCommand::new(
        env!("CARGO_BIN_EXE_wuts"),
        database_url,
        wa_url,
        MASTER_TOKEN,
    )
    .env("WUTS_WA_TIMEOUT", "5s")
    .env("WUTS_RESTORE_JITTER", "0s")
    .env("WUTS_NODE_SECRET", NODE_SECRET)
    .env("WUTS_NODE_TTL", "4s")
    // Several clusters of three run side by side on one PostgreSQL server.
    .env("WUTS_DB_MAX_CONNECTIONS", "6")
    // The suite runs many processes at once on two cores: a hand-off (a client stopped, another
    // connected) can take seconds there, and requests wait for it rather than fail.
    .env("WUTS_HANDOFF_WAIT", "15s")
    .start()
    .await
    .unwrap_or_else(|e| panic!("wuts starts and is ready: {e}"))
}

/// One call; `None` when the node did not answer (it is gone).
async fn call(
    http: &reqwest::Client,
    node: &GatewayProcess,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let mut request = http.request(method, node.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await.ok()?;
    let status = answer.status().as_u16();
    Some((status, answer.json().await.unwrap_or(Value::Null)))
}

/// The node each device's lease names.
async fn owners(app: &TestApp, devices: &[String]) -> Vec<Option<String>> {
    let mut owners = Vec::new();
    for device in devices {
        let owner: Option<Option<String>> =
            sqlx::query_scalar("SELECT node_id FROM device_owners WHERE device_id = $1::uuid")
                .bind(device)
                .fetch_optional(&app.db.pool)
                .await
                .expect("lease");
        owners.push(owner.flatten());
    }
    owners
}

/// Waits until `device` answers `connected` on `node`.
async fn wait_connected(
    http: &reqwest::Client,
    node: &GatewayProcess,
    token: &str,
    device: &str,
    within: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if let Some((200, body)) = call(
            http,
            node,
            reqwest::Method::GET,
            &format!("/status?device_id={device}"),
            token,
            None,
        )
        .await
            && body["data"]["status"] == "connected"
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

struct Cluster {
    sim: WaSim,
    app: TestApp,
    nodes: Vec<GatewayProcess>,
    http: reqwest::Client,
    token: String,
    devices: Vec<String>,
    phones: Vec<String>,
}

/// Three nodes, `count` devices created and paired round-robin through them.
async fn cluster(prefix: &str, count: usize) -> Cluster {
    let sim = WaSim::start().await.expect("wa-sim");
    // The in-process app only provides the database and the tenant; it serves no device.
    let app = TestApp::spawn_with_sim(&sim).await;
    let tenant = app.register(prefix).await;
    let token = tenant.admin_token.clone();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(start_node(&app.db.url(), sim.ws_url()).await);
    }
    wuts_gateway::delivery::send::install_tls_provider();
    let http = reqwest::Client::new();
    let mut devices = Vec::new();
    let mut phones = Vec::new();
    for i in 0..count {
        let phone = format!("55119{:08}", 40_000 + i + prefix.len() * 100);
        sim.control()
            .create_account(&CreateAccount {
                phone: phone.clone(),
                push_name: Some(format!("Node test {i}")),
                ..Default::default()
            })
            .await
            .expect("account");
        let node = &nodes[i % 3];
        let (status, created) = call(
            &http,
            node,
            reqwest::Method::POST,
            "/devices",
            &token,
            Some(json!({"name": format!("device {i}")})),
        )
        .await
        .expect("answer");
        assert_eq!(status, 201, "{created}");
        let device = created["device"]["id"].as_str().expect("id").to_owned();
        // The QR is asked of the next node: the request goes to the node placement picks.
        let (status, qr) = call(
            &http,
            &nodes[(i + 1) % 3],
            reqwest::Method::GET,
            &format!("/qr?device_id={device}"),
            &token,
            None,
        )
        .await
        .expect("answer");
        assert_eq!(status, 200, "{qr}");
        let code = qr["data"]["qr_code"].as_str().expect("qr_code");
        sim.control().scan_qr(&phone, code).await.expect("scan");
        assert!(
            wait_connected(
                &http,
                &nodes[(i + 2) % 3],
                &token,
                &device,
                Duration::from_secs(20)
            )
            .await,
            "device {i} connected, as seen from a third node"
        );
        devices.push(device);
        phones.push(phone);
    }
    Cluster {
        sim,
        app,
        nodes,
        http,
        token,
        devices,
        phones,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_answer_for_every_device_and_take_over_a_killed_one() {
    let mut c = cluster("nodes-kill", 9).await;
    let pairings = c.sim.control().stats().await.expect("stats").pairings;

    // Devices are spread over the nodes, each connected exactly once.
    let owners_before = owners(&c.app, &c.devices).await;
    let distinct: std::collections::HashSet<_> = owners_before.iter().flatten().collect();
    assert!(distinct.len() >= 2, "devices spread: {owners_before:?}");
    for phone in &c.phones {
        assert_eq!(connected_companions(&c.sim, phone).await, 1, "{phone}");
    }

    // Every node answers for every device what its owner answers.
    for device in &c.devices {
        let mut answers = Vec::new();
        for node in &c.nodes {
            let (status, body) = call(
                &c.http,
                node,
                reqwest::Method::GET,
                &format!("/contacts/blocklist?device_id={device}"),
                &c.token,
                None,
            )
            .await
            .expect("answer");
            assert_eq!(status, 200, "{body}");
            answers.push(body["data"].clone());
        }
        assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    }

    // A write through any node reaches WhatsApp once.
    let target = crate::helpers::sim_account(&c.sim, "5511988887777").await;
    for (i, device) in c.devices.iter().enumerate() {
        let (status, body) = call(
            &c.http,
            &c.nodes[i % 3],
            reqwest::Method::POST,
            "/contacts/block",
            &c.token,
            Some(json!({"device_id": device, "number": target.phone})),
        )
        .await
        .expect("answer");
        assert_eq!(status, 200, "{body}");
    }

    // Forged forwarding headers from outside are refused.
    let forged = c
        .http
        .get(c.nodes[0].url(&format!("/status?device_id={}", c.devices[0])))
        .bearer_auth(&c.token)
        .header("x-wuts-forwarded-by", "intruder")
        .header("x-wuts-forward-time", "1")
        .header("x-wuts-forward-signature", "AAAA")
        .send()
        .await
        .expect("answer");
    assert_eq!(forged.status().as_u16(), 403);

    // A token revoked on one node is refused by another on the next request.
    let (status, user) = call(
        &c.http,
        &c.nodes[0],
        reqwest::Method::POST,
        "/users",
        &c.token,
        Some(json!({"email": "soon@people.example", "role": "admin"})),
    )
    .await
    .expect("answer");
    assert_eq!(status, 201, "{user}");
    let user_token = user["token"].as_str().expect("token").to_owned();
    let user_id = user["user"]["id"].as_str().expect("user id").to_owned();
    let (status, _) = call(
        &c.http,
        &c.nodes[1],
        reqwest::Method::GET,
        "/devices",
        &user_token,
        None,
    )
    .await
    .expect("answer");
    assert_eq!(
        status, 200,
        "the new token works on another node (and is cached there)"
    );
    let (status, body) = call(
        &c.http,
        &c.nodes[0],
        reqwest::Method::POST,
        &format!("/users/{user_id}/token"),
        &c.token,
        None,
    )
    .await
    .expect("answer");
    assert_eq!(status, 201, "{body}");
    let (status, _) = call(
        &c.http,
        &c.nodes[1],
        reqwest::Method::GET,
        "/devices",
        &user_token,
        None,
    )
    .await
    .expect("answer");
    assert_eq!(
        status, 401,
        "the rotated token is refused on the other node at once"
    );

    // SIGKILL the node serving the most devices: the others take them over, with no QR.
    let victim_id = {
        let mut counts = std::collections::HashMap::new();
        for owner in owners_before.iter().flatten() {
            *counts.entry(owner.clone()).or_insert(0) += 1;
        }
        counts
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(id, _)| id)
            .expect("an owner")
    };
    let report: Vec<(String, String)> = sqlx::query_as("SELECT id, url FROM nodes ORDER BY id")
        .fetch_all(&c.app.db.pool)
        .await
        .expect("nodes");
    let victim_url = report
        .iter()
        .find(|(id, _)| *id == victim_id)
        .map(|(_, url)| url.clone())
        .expect("the victim is registered");
    let victim = c
        .nodes
        .iter()
        .position(|n| n.base() == victim_url)
        .expect("the victim is one of ours");
    let moved: Vec<String> = c
        .devices
        .iter()
        .zip(&owners_before)
        .filter(|(_, owner)| owner.as_deref() == Some(victim_id.as_str()))
        .map(|(device, _)| device.clone())
        .collect();
    c.nodes[victim].kill().expect("SIGKILL");
    let killed = c.nodes.remove(victim);
    let started = tokio::time::Instant::now();
    for device in &moved {
        assert!(
            wait_connected(
                &c.http,
                &c.nodes[0],
                &c.token,
                device,
                Duration::from_secs(10)
            )
            .await,
            "device taken over within 10 s of the kill"
        );
    }
    let took = started.elapsed();
    drop(killed);
    assert!(took <= Duration::from_secs(10), "takeover took {took:?}");
    let owners_after = owners(&c.app, &moved).await;
    assert!(
        owners_after
            .iter()
            .all(|o| o.is_some() && o.as_deref() != Some(victim_id.as_str())),
        "{owners_after:?}"
    );
    assert_eq!(
        c.sim.control().stats().await.expect("stats").pairings,
        pairings,
        "no device was paired again"
    );
    // Acknowledged writes survived, and each device is still connected once.
    for (i, phone) in c.phones.iter().enumerate() {
        let account = c.sim.control().account(phone).await.expect("account");
        assert!(
            account.blocklist.items.contains(&target.lid_jid),
            "device {i}: {:?}",
            account.blocklist
        );
        assert_eq!(connected_companions(&c.sim, phone).await, 1, "{phone}");
    }
    // Requests through both survivors keep working for the moved devices.
    for device in &moved {
        for node in &c.nodes {
            let (status, body) = call(
                &c.http,
                node,
                reqwest::Method::POST,
                "/contacts/unblock",
                &c.token,
                Some(json!({"device_id": device, "number": target.phone})),
            )
            .await
            .expect("answer");
            assert_eq!(status, 200, "{body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_hands_its_devices_over_without_failing_a_request() {
    let mut c = cluster("nodes-drain", 6).await;
    let pairings = c.sim.control().stats().await.expect("stats").pairings;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Traffic through the two nodes that stay, for every device, during the drain.
    let mut traffic = tokio::task::JoinSet::new();
    for device in c.devices.clone() {
        let http = c.http.clone();
        let token = c.token.clone();
        let stop = stop.clone();
        let bases: Vec<String> = c.nodes[1..].iter().map(|n| n.base().to_owned()).collect();
        traffic.spawn(async move {
            let mut answers: Vec<(u16, Value)> = Vec::new();
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let base = &bases[i % bases.len()];
                i += 1;
                let answer = http
                    .get(format!("{base}/contacts/blocklist?device_id={device}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .expect("a node that stays answers");
                let status = answer.status().as_u16();
                answers.push((status, answer.json().await.unwrap_or(Value::Null)));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answers
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let draining = c.nodes.remove(0);
    let status = draining
        .terminate(Duration::from_secs(60))
        .await
        .expect("the node exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    while let Some(answers) = traffic.join_next().await {
        for (status, body) in answers.expect("traffic task") {
            total += 1;
            assert_eq!(status, 200, "during the drain: {body}");
        }
    }
    assert!(total > 0);
    for (device, phone) in c.devices.iter().zip(&c.phones) {
        assert!(
            wait_connected(
                &c.http,
                &c.nodes[0],
                &c.token,
                device,
                Duration::from_secs(5)
            )
            .await
        );
        assert_eq!(connected_companions(&c.sim, phone).await, 1, "{phone}");
    }
    assert_eq!(
        c.sim.control().stats().await.expect("stats").pairings,
        pairings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_loses_its_devices_and_cannot_write_for_them_when_it_wakes() {
    let c = cluster("nodes-pause", 6).await;
    let owners_before = owners(&c.app, &c.devices).await;
    let victim_id = owners_before[0].clone().expect("device 0 is served");
    let victim_url: String = sqlx::query_scalar("SELECT url FROM nodes WHERE id = $1")
        .bind(&victim_id)
        .fetch_one(&c.app.db.pool)
        .await
        .expect("the node is registered");
    let victim = c
        .nodes
        .iter()
        .position(|n| n.base() == victim_url)
        .expect("one of ours");
    let survivor = &c.nodes[(victim + 1) % 3];
    let lost: Vec<usize> = (0..c.devices.len())
        .filter(|i| owners_before[*i].as_deref() == Some(victim_id.as_str()))
        .collect();
    let pid = c.nodes[victim].pid().to_string();
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
    };

    let epochs_before = epochs(&c.app, &c.devices).await;
    // Paused past its TTL: the others declare it dead and take its devices over.
    signal("-STOP");
    for i in &lost {
        let device = &c.devices[*i];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let owner = owners(&c.app, std::slice::from_ref(device)).await;
            if owner[0].is_some() && owner[0].as_deref() != Some(victim_id.as_str()) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "device {i} never taken over"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            wait_connected(&c.http, survivor, &c.token, device, Duration::from_secs(10)).await,
            "device {i} connected by its new owner"
        );
    }

    let epochs_taken = epochs(&c.app, &c.devices).await;
    for i in &lost {
        assert!(
            epochs_taken[*i] > epochs_before[*i],
            "device {i}: a takeover is a new epoch"
        );
    }

    // Woken up, it finds WhatsApp replaced its connections and its registration gone: it stops
    // its sessions and joins again (and may be handed its share back, under a new epoch). What
    // it would have written for the devices meanwhile (marking them disconnected after the
    // "replaced" stream error, say) is refused.
    signal("-CONT");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let epochs_after = epochs(&c.app, &c.devices).await;
    for i in &lost {
        let device = &c.devices[*i];
        let (status, auto_connect): (String, bool) =
            sqlx::query_as("SELECT status, auto_connect FROM devices WHERE id = $1::uuid")
                .bind(device)
                .fetch_one(&c.app.db.pool)
                .await
                .expect("device row");
        assert_eq!(
            (status.as_str(), auto_connect),
            ("connected", true),
            "device {i}"
        );
        assert!(
            epochs_after[*i] >= epochs_taken[*i],
            "device {i}: epochs only grow"
        );
        assert!(
            wait_connected(&c.http, survivor, &c.token, device, Duration::from_secs(10)).await,
            "device {i} connected"
        );
        assert_eq!(
            connected_companions(&c.sim, &c.phones[*i]).await,
            1,
            "device {i}"
        );
    }

    // The fence itself: a node connection that does not hold a device's lease cannot write its
    // session columns, its keys or its events.
    let mut stale = c.app.db.pool.acquire().await.expect("connection");
    sqlx::query("SET application_name = 'wuts:a-node-that-lost-it'")
        .execute(&mut *stale)
        .await
        .expect("set");
    let device = &c.devices[lost[0]];
    for statement in [
        "UPDATE devices SET status = 'disconnected', auto_connect = false WHERE id = $1::uuid",
        "UPDATE wa_devices SET updated_at = now() WHERE device_id = $1::uuid",
        "SELECT * FROM wuts_append_event((SELECT tenant_id FROM devices WHERE id = $1::uuid), \
         $1::uuid, gen_random_uuid(), 'device.disconnected', '{}'::jsonb)",
    ] {
        let refused = sqlx::query(statement)
            .bind(device)
            .execute(&mut *stale)
            .await
            .expect_err(statement);
        let code = refused
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("WU001"), "{statement}: {refused}");
    }
    sqlx::query("RESET application_name")
        .execute(&mut *stale)
        .await
        .expect("reset");
}

/// Each device's lease epoch.
async fn epochs(app: &TestApp, devices: &[String]) -> Vec<i64> {
    let mut epochs = Vec::new();
    for device in devices {
        let epoch: i64 =
            sqlx::query_scalar("SELECT epoch FROM device_owners WHERE device_id = $1::uuid")
                .bind(device)
                .fetch_one(&app.db.pool)
                .await
                .expect("lease");
        epochs.push(epoch);
    }
    epochs
}
