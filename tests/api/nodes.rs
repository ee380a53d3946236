//! Several gateway nodes (real `wuts serve` processes) on one database and one wa-sim: any node
//! answers for any device as its owner does, every device is connected by exactly one node, a
//! killed node's devices are taken over without a QR and without losing an acknowledged write,
//! a rolling restart of every node fails no request, a paused node cannot write for the devices
//! it lost, revocations and idempotency keys hold across nodes, and forwarding cannot be abused
//! from outside.

use std::time::Duration;

use serde_json::{Value, json};
use wa_sim::{CreateAccount, WaSim};
use wuts_test_support::{GatewayCommand, GatewayProcess};

use crate::helpers::{MASTER_TOKEN, TestApp};
use crate::processes::connected_companions;

const NODE_SECRET: &str = "a-node-secret-for-the-tests";

/// One cluster of three at a time: each is three gateways and their connections, and the rest
/// of the suite runs beside them on the same two cores and PostgreSQL server.
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    /// Last: released once the processes above are gone.
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// Three nodes, `count` devices created and paired round-robin through them.
async fn cluster(prefix: &str, count: usize) -> Cluster {
    let turn = ONE_CLUSTER.lock().await;
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
        _turn: turn,
    }
}

/// One request of the traffic a test sends while nodes die or restart.
#[derive(Debug)]
struct Sent {
    device: usize,
    /// `Some((target, block))` for a block-list change, `None` for a read.
    change: Option<(usize, bool)>,
    /// `None`: no node answered (the connection failed).
    status: Option<u16>,
    code: String,
    took: Duration,
}

/// Traffic for every device, a request at a time per device, to the nodes in `rotation` in turn
/// (what a load balancer sends to): a read, then a change of the device's block list (blocking
/// and unblocking `targets` in turn), until `stop`.
fn traffic(
    c: &Cluster,
    targets: &[String],
    rotation: &std::sync::Arc<std::sync::RwLock<Vec<String>>>,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinSet<Vec<Sent>> {
    let mut tasks = tokio::task::JoinSet::new();
    for (index, device) in c.devices.iter().cloned().enumerate() {
        let http = c.http.clone();
        let token = c.token.clone();
        let targets = targets.to_vec();
        let rotation = rotation.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            let mut sent = Vec::new();
            let mut step = index;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                step += 1;
                let base = {
                    let nodes = rotation.read().expect("rotation");
                    nodes[step % nodes.len()].clone()
                };
                // read, block t0, read, block t1, read, unblock t0, read, unblock t1, ...
                let change = (!step.is_multiple_of(2)).then(|| {
                    let k = step / 2;
                    (k % targets.len(), (k / targets.len()).is_multiple_of(2))
                });
                let request = match change {
                    None => http.get(format!("{base}/contacts/blocklist?device_id={device}")),
                    Some((target, block)) => {
                        let action = if block { "block" } else { "unblock" };
                        http.post(format!("{base}/contacts/{action}"))
                            .json(&json!({"device_id": device, "number": targets[target]}))
                    }
                };
                let started = tokio::time::Instant::now();
                let answer = request.bearer_auth(&token).send().await;
                let (status, code) = match answer {
                    Ok(answer) => {
                        let status = answer.status().as_u16();
                        let body: Value = answer.json().await.unwrap_or(Value::Null);
                        let code = if status == 200 {
                            String::new()
                        } else {
                            format!(
                                "{} {}",
                                body["error_code"].as_str().unwrap_or(""),
                                body["error"]
                            )
                        };
                        (Some(status), code)
                    }
                    Err(_) => (None, String::new()),
                };
                sent.push(Sent {
                    device: index,
                    change,
                    status,
                    code,
                    took: started.elapsed(),
                });
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            sent
        });
    }
    tasks
}

/// Stops the traffic and collects what was sent.
async fn collect(
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    mut tasks: tokio::task::JoinSet<Vec<Sent>>,
) -> Vec<Sent> {
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = Vec::new();
    while let Some(sent) = tasks.join_next().await {
        all.extend(sent.expect("traffic task"));
    }
    all
}

/// Every acknowledged change is in wa-sim's block lists: for each device and target, the last
/// change answered 200 (unless a later one for the same target had an unknown outcome).
async fn assert_acknowledged_changes(c: &Cluster, sent: &[Sent], target_lids: &[String]) {
    let mut known = std::collections::HashMap::new();
    for s in sent {
        if let Some((target, block)) = s.change {
            let state = (s.status == Some(200)).then_some(block);
            known.insert((s.device, target), state);
        }
    }
    let mut checked = 0;
    for ((device, target), state) in known {
        let Some(blocked) = state else { continue };
        let account = c
            .sim
            .control()
            .account(&c.phones[device])
            .await
            .expect("account");
        assert_eq!(
            account.blocklist.items.contains(&target_lids[target]),
            blocked,
            "device {device}, target {target}: {:?}",
            account.blocklist
        );
        checked += 1;
    }
    assert!(checked > 0, "some changes were acknowledged");
}

/// Signs a request as a gateway node would (the format `http::forward` documents).
fn signed_headers(by: &str, method: &str, path: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::{Digest, Sha256};
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let body_hash = URL_SAFE_NO_PAD.encode(Sha256::digest(body));
    let mut mac = Hmac::<Sha256>::new_from_slice(NODE_SECRET.as_bytes()).expect("key");
    mac.update(format!("v1\n{by}\n{time}\n{method}\n{path}\n{body_hash}").as_bytes());
    vec![
        ("x-wuts-forwarded-by", by.to_owned()),
        ("x-wuts-forward-time", time.to_string()),
        (
            "x-wuts-forward-signature",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()),
        ),
    ]
}

/// The node process whose registry row has `id`.
async fn process_of(c: &Cluster, id: &str) -> usize {
    let url: String = sqlx::query_scalar("SELECT url FROM nodes WHERE id = $1")
        .bind(id)
        .fetch_one(&c.app.db.pool)
        .await
        .expect("the node is registered");
    c.nodes
        .iter()
        .position(|n| n.base() == url)
        .expect("one of ours")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_devices_answer_through_every_node_and_a_killed_node_is_taken_over_under_writes() {
    let mut c = cluster("nodes-kill", 30).await;
    let pairings = c.sim.control().stats().await.expect("stats").pairings;

    // Devices are spread over the nodes, each connected exactly once.
    let owners_before = owners(&c.app, &c.devices).await;
    let distinct: std::collections::HashSet<_> = owners_before.iter().flatten().collect();
    assert_eq!(distinct.len(), 3, "devices spread: {owners_before:?}");
    for phone in &c.phones {
        assert_eq!(connected_companions(&c.sim, phone).await, 1, "{phone}");
    }

    // Requests sent round-robin to the three nodes for every device answer what its owner
    // answers.
    for (i, device) in c.devices.iter().enumerate() {
        let path = format!("/contacts/blocklist?device_id={device}");
        let owner = process_of(&c, owners_before[i].as_deref().expect("owned")).await;
        let (status, direct) = call(
            &c.http,
            &c.nodes[owner],
            reqwest::Method::GET,
            &path,
            &c.token,
            None,
        )
        .await
        .expect("answer");
        assert_eq!(status, 200, "{direct}");
        for node in &c.nodes {
            let (status, body) = call(&c.http, node, reqwest::Method::GET, &path, &c.token, None)
                .await
                .expect("answer");
            assert_eq!((status, &body), (200, &direct), "device {i}");
        }
    }
    // Read again, a node that forwarded a device's request before sends the next one straight
    // to the owner (no placement here), and the owner still checks who is asking: another
    // tenant's token reads nothing through the remembered route.
    let stranger = c.app.register("nodes-kill-stranger").await;
    let mut forwarded_again = [0_u64; 3];
    for (i, device) in c.devices.iter().enumerate() {
        let path = format!("/contacts/blocklist?device_id={device}");
        let owner = process_of(&c, owners_before[i].as_deref().expect("owned")).await;
        for (n, node) in c.nodes.iter().enumerate().filter(|(n, _)| *n != owner) {
            let (status, _) = call(&c.http, node, reqwest::Method::GET, &path, &c.token, None)
                .await
                .expect("answer");
            assert_eq!(status, 200, "device {i} through node {n}");
            forwarded_again[n] += 1;
            let (status, body) = call(
                &c.http,
                node,
                reqwest::Method::GET,
                &path,
                &stranger.admin_token,
                None,
            )
            .await
            .expect("answer");
            assert_eq!(
                (status, body["error_code"].as_str()),
                (404, Some("NOT_FOUND")),
                "{body}"
            );
        }
    }
    for (n, node) in c.nodes.iter().enumerate() {
        let metrics = c
            .http
            .get(node.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        let known: u64 = metrics
            .lines()
            .filter(|l| l.starts_with("wuts_forwarded_requests_total{"))
            .filter(|l| l.contains(r#"outcome="answered""#) && l.contains(r#"route="known""#))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        // Both reads of the second round (the caller's and the stranger's) went by the route
        // the first round taught.
        assert!(
            known >= 2 * forwarded_again[n],
            "node {n}: {known} of {} forwarded by a known route\n{metrics}",
            2 * forwarded_again[n]
        );
    }

    // The same Idempotency-Key sent to two nodes creates one community.
    let path = format!("/communities?device_id={}", c.devices[0]);
    let mut answers = Vec::new();
    for node in &c.nodes[1..] {
        let answer = c
            .http
            .post(node.url(&path))
            .bearer_auth(&c.token)
            .header("idempotency-key", "street-community")
            .json(&json!({"name": "Street", "description": "Street news"}))
            .send()
            .await
            .expect("answer");
        assert_eq!(answer.status().as_u16(), 200);
        let replayed = answer.headers().get("idempotent-replayed").is_some();
        answers.push((replayed, answer.text().await.expect("body")));
    }
    assert_eq!(
        answers[0].1, answers[1].1,
        "the second node answers the first answer"
    );
    assert_eq!((answers[0].0, answers[1].0), (false, true));
    let groups = c
        .sim
        .control()
        .account(&c.phones[0])
        .await
        .expect("account")
        .groups;
    let mut communities = 0;
    for jid in groups {
        let group = c.sim.control().group(&jid).await.expect("group");
        communities += usize::from(group.is_community && group.subject == "Street");
    }
    assert_eq!(communities, 1, "created once");

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

    // The hop limit: a forwarded request (validly signed) that reaches a node which does not
    // serve the device is not forwarded again; the owner answers it.
    let path = format!("/status?device_id={}", c.devices[0]);
    let owner = process_of(&c, owners_before[0].as_deref().expect("owned")).await;
    let other = (owner + 1) % 3;
    let forwarded = |node: usize| {
        let mut request = c.http.get(c.nodes[node].url(&path)).bearer_auth(&c.token);
        for (name, value) in signed_headers("a-peer-node", "GET", &path, b"") {
            request = request.header(name, value);
        }
        request.send()
    };
    let bounced = forwarded(other).await.expect("answer");
    assert_eq!(bounced.status().as_u16(), 409);
    assert!(
        bounced.headers().contains_key("x-wuts-moved"),
        "{:?}",
        bounced.headers()
    );
    let served = forwarded(owner).await.expect("answer");
    assert_eq!(
        served.status().as_u16(),
        200,
        "the signature itself is accepted"
    );

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
    let devices_on = |node: usize, token: String| {
        let c = &c;
        async move {
            call(
                &c.http,
                &c.nodes[node],
                reqwest::Method::GET,
                "/devices",
                &token,
                None,
            )
            .await
            .expect("answer")
            .0
        }
    };
    assert_eq!(
        devices_on(1, user_token.clone()).await,
        200,
        "works (and cached) on another node"
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
    assert_eq!(
        devices_on(1, user_token).await,
        401,
        "refused on the other node at once"
    );

    // SIGKILL the node serving the most devices under block/unblock traffic through the others.
    let targets = [
        crate::helpers::sim_account(&c.sim, "5511988887771").await,
        crate::helpers::sim_account(&c.sim, "5511988887772").await,
    ];
    let target_phones: Vec<String> = targets.iter().map(|t| t.phone.clone()).collect();
    let target_lids: Vec<String> = targets.iter().map(|t| t.lid_jid.clone()).collect();
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
    let victim = process_of(&c, &victim_id).await;
    let moved: Vec<String> = c
        .devices
        .iter()
        .zip(&owners_before)
        .filter(|(_, owner)| owner.as_deref() == Some(victim_id.as_str()))
        .map(|(device, _)| device.clone())
        .collect();
    let survivors: Vec<String> = (0..3)
        .filter(|n| *n != victim)
        .map(|n| c.nodes[n].base().to_owned())
        .collect();
    let rotation = std::sync::Arc::new(std::sync::RwLock::new(survivors));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = traffic(&c, &target_phones, &rotation, &stop);
    tokio::time::sleep(Duration::from_secs(1)).await;
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
    assert!(took <= Duration::from_secs(10), "takeover took {took:?}");
    // Traffic goes on a little after the takeover.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = collect(&stop, load).await;
    drop(killed);

    let bound = Duration::from_secs(25);
    for s in &sent {
        match (s.status, s.code.as_str()) {
            (Some(200), _) => {}
            (Some(409), code) if code.starts_with("DEVICE_NOT_READY") => {}
            other => panic!("during the takeover: {other:?} for {s:?}"),
        }
        assert!(s.took <= bound, "answered within the bound: {s:?}");
    }
    let failed = sent.iter().filter(|s| s.status != Some(200)).count();
    let changes = sent
        .iter()
        .filter(|s| s.change.is_some() && s.status == Some(200))
        .count();
    let slowest = sent.iter().map(|s| s.took).max().unwrap_or_default();
    eprintln!(
        "kill: {} requests, {changes} changes acknowledged, {failed} not ready, slowest {slowest:?}, \
         takeover {took:?}",
        sent.len()
    );
    assert!(
        changes >= c.devices.len(),
        "{changes} changes acknowledged, {failed} not ready"
    );
    assert_acknowledged_changes(&c, &sent, &target_lids).await;

    let owners_after = owners(&c.app, &moved).await;
    assert!(
        owners_after
            .iter()
            .all(|o| o.is_some() && o.as_deref() != Some(victim_id.as_str())),
        "{owners_after:?}"
    );
    let stats = c.sim.control().stats().await.expect("stats");
    assert_eq!(stats.pairings, pairings, "no device was paired again");
    assert_eq!(
        stats.replaced_sessions, 0,
        "no device was ever connected twice"
    );
    for phone in &c.phones {
        assert_eq!(connected_companions(&c.sim, phone).await, 1, "{phone}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_node_under_traffic_fails_no_request() {
    let mut c = cluster("nodes-roll", 6).await;
    let pairings = c.sim.control().stats().await.expect("stats").pairings;
    let targets = [
        crate::helpers::sim_account(&c.sim, "5511988886661").await,
        crate::helpers::sim_account(&c.sim, "5511988886662").await,
    ];
    let target_phones: Vec<String> = targets.iter().map(|t| t.phone.clone()).collect();
    let target_lids: Vec<String> = targets.iter().map(|t| t.lid_jid.clone()).collect();
    let rotation = std::sync::Arc::new(std::sync::RwLock::new(
        c.nodes
            .iter()
            .map(|n| n.base().to_owned())
            .collect::<Vec<_>>(),
    ));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = traffic(&c, &target_phones, &rotation, &stop);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Each node in turn, as an orchestrator deploys: out of the balancer, SIGTERM (it hands
    // its devices over, then exits), a new process started, back in the balancer once ready.
    for _ in 0..3 {
        let old = c.nodes.remove(0);
        rotation
            .write()
            .expect("rotation")
            .retain(|base| base != old.base());
        let status = old
            .terminate(Duration::from_secs(60))
            .await
            .expect("the node exits on SIGTERM");
        assert!(status.success(), "{status:?}");
        let new = start_node(&c.app.db.url(), c.sim.ws_url()).await;
        rotation
            .write()
            .expect("rotation")
            .push(new.base().to_owned());
        c.nodes.push(new);
        // The new node takes its share before the next one goes.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = collect(&stop, load).await;

    let slowest = sent.iter().map(|s| s.took).max().unwrap_or_default();
    eprintln!(
        "rolling restart: {} requests, slowest {slowest:?}",
        sent.len()
    );
    for s in &sent {
        assert_eq!(s.status, Some(200), "during the rolling restart: {s:?}");
    }
    assert_acknowledged_changes(&c, &sent, &target_lids).await;
    for (device, phone) in c.devices.iter().zip(&c.phones) {
        assert!(
            wait_connected(
                &c.http,
                &c.nodes[0],
                &c.token,
                device,
                Duration::from_secs(10)
            )
            .await
        );
        assert_eq!(connected_companions(&c.sim, phone).await, 1, "{phone}");
    }
    let spread: std::collections::HashSet<_> = owners(&c.app, &c.devices)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(spread.len() >= 2, "the new nodes serve devices: {spread:?}");
    let stats = c.sim.control().stats().await.expect("stats");
    assert_eq!(stats.pairings, pairings, "no device was paired again");
    assert_eq!(
        stats.replaced_sessions, 0,
        "no device was ever connected twice"
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

/// A node's lock connection breaks (its backend is terminated) while it holds devices: the
/// keeper takes the locks back on a new connection, except where another node took the device
/// meanwhile (its lock, a newer epoch of its lease, or the lease itself), and reports those lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_lock_connection_takes_back_the_locks_still_its_own() {
    use sqlx::Connection;
    use std::str::FromStr;
    use wuts_gateway::domain::DeviceId;
    use wuts_gateway::session::ownership::{Ownership, lock_key};
    use wuts_gateway::store::nodes::APPLICATION_PREFIX;

    let app = TestApp::spawn().await;
    let tenant = app.register("locks-back").await;
    let mut devices = Vec::new();
    for i in 0..4 {
        let id = app
            .create_device(&tenant.admin_token, &format!("d{i}"))
            .await;
        devices.push(DeviceId(id.parse().expect("device id")));
    }
    let node = "keeper-under-test";
    let options = sqlx::postgres::PgConnectOptions::from_str(&app.db.url()).expect("options");
    let (ownership, mut lost) = Ownership::start(app.db.pool.clone(), options, node.to_owned())
        .await
        .expect("lock connection");
    let taken = futures::future::join_all(devices.iter().map(|d| ownership.acquire(*d))).await;
    assert!(
        taken.iter().all(|t| matches!(t, Ok(true))),
        "every device taken at once: {taken:?}"
    );
    let locks = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND a.application_name = $1",
        )
        .bind(format!("{APPLICATION_PREFIX}{node}"))
        .fetch_one(&app.db.pool)
        .await
        .expect("locks")
    };
    assert_eq!(locks().await, 4);

    // Meanwhile another node: waits for the second device's lock, and took the third (a newer
    // epoch, given back since) and the fourth (its lease names it).
    let mut other = sqlx::PgConnection::connect(&app.db.url())
        .await
        .expect("other node");
    let waiting = tokio::spawn({
        let key = lock_key(devices[1]);
        async move {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(key)
                .execute(&mut other)
                .await
                .expect("the other node's lock");
            other
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (device, change) in [
        (
            devices[2],
            "UPDATE device_owners SET epoch = epoch + 1 WHERE device_id = $1",
        ),
        (
            devices[3],
            "UPDATE device_owners SET node_id = 'elsewhere' WHERE device_id = $1",
        ),
    ] {
        sqlx::query(change)
            .bind(device)
            .execute(&app.db.pool)
            .await
            .expect("lease changed");
    }
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(format!("{APPLICATION_PREFIX}{node}"))
    .execute(&app.db.pool)
    .await
    .expect("lock connection broken");
    let _other = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the other node gets its lock once the connection is gone")
        .expect("task");

    let mut reported = Vec::new();
    while reported.len() < 3 {
        let device = tokio::time::timeout(Duration::from_secs(10), lost.recv())
            .await
            .expect("lost devices reported")
            .expect("channel open");
        reported.push(device);
    }
    reported.sort();
    let mut expected = devices[1..].to_vec();
    expected.sort();
    assert_eq!(reported, expected);
    assert!(ownership.holds(devices[0]));
    assert!(devices[1..].iter().all(|d| !ownership.holds(*d)));
    // Only the first device's lock is held again, on the new connection.
    assert_eq!(locks().await, 1);
}
