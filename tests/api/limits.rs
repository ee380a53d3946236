//! Connection limits of the real server loop: a client that trickles its headers is disconnected
//! after the header read timeout, while a prompt client on another connection is served; a client
//! that sends an oversized body in one go reads its 413 (the server lingers before closing), and
//! the linger is bounded in bytes and in time.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wuts_gateway::http::server::{ConnLimits, LINGER_BYTES, LINGER_IDLE, LINGER_TIME, serve};

use crate::helpers::TestApp;

/// Reads until the server closes the connection (or `limit` passes); answers what was read.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut answer = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut answer))
        .await
        .ok()?
        .ok()?;
    Some(answer)
}

#[tokio::test]
async fn slow_headers_are_cut_off_and_prompt_clients_served() {
    let app = TestApp::spawn().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        app.router.clone(),
        ConnLimits {
            header_read_timeout: Duration::from_millis(500),
        },
        async {
            let _ = stop_rx.await;
        },
    ));

    // A slow client: half a request line, then nothing.
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: wuts\r\nX-Slow: ")
        .await
        .expect("write");
    let started = Instant::now();

    // Meanwhile a prompt client gets its answer.
    let mut prompt = TcpStream::connect(addr).await.expect("connect");
    prompt
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: wuts\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let answer = read_to_close(&mut prompt, Duration::from_secs(5))
        .await
        .expect("prompt client answered");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // The slow one is disconnected once its time is up, without an answer to a request it
    // never finished.
    let cut = read_to_close(&mut slow, Duration::from_secs(5))
        .await
        .expect("slow client disconnected within 5 s");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400),
        "cut off too early: {waited:?}"
    );
    let cut = String::from_utf8_lossy(&cut);
    assert!(!cut.contains("200 OK"), "{cut}");

    // Shutdown stops the loop; nothing is accepted afterwards.
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops")
        .expect("server task");
    assert!(TcpStream::connect(addr).await.is_err());
}

/// A browser's preflight for `GET /devices` from `origin`: the allowed origin it is answered, if
/// any.
async fn preflight(app: &TestApp, origin: &str) -> Option<String> {
    let answer = app
        .call(axum::http::Method::OPTIONS, "/devices")
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await;
    answer
        .headers
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[tokio::test]
async fn cors_is_off_unless_origins_are_configured() {
    let closed = TestApp::spawn().await;
    assert_eq!(preflight(&closed, "https://app.example").await, None);

    let open = TestApp::spawn_with(|config| {
        config.cors_origins = vec!["https://app.example".to_owned()];
    })
    .await;
    assert_eq!(
        preflight(&open, "https://app.example").await.as_deref(),
        Some("https://app.example")
    );
    assert_eq!(preflight(&open, "https://evil.example").await, None);
    // Actual calls from the allowed origin carry the header too, and keep their envelope.
    let tenant = open.register("cors").await;
    let answer = open
        .get("/devices")
        .token(&tenant.admin_token)
        .header("origin", "https://app.example")
        .send()
        .await;
    answer.assert_status(200);
    assert_eq!(
        answer
            .headers
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://app.example")
    );
}

/// The real server loop on a free port, serving `app`; stops when the sender is dropped.
async fn serve_app(app: &TestApp) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(
        listener,
        app.router.clone(),
        ConnLimits {
            header_read_timeout: Duration::from_secs(5),
        },
        async {
            let _ = stop_rx.await;
        },
    ));
    (addr, stop_tx)
}

/// The head of a `POST /devices` announcing a body of `length` bytes.
fn post_devices_head(token: &str, length: usize) -> String {
    format!(
        "POST /devices HTTP/1.1\r\nHost: wuts\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// Splits a raw HTTP/1.1 answer into its status line and its JSON body.
fn status_and_body(answer: &[u8]) -> (String, Value) {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete answer");
    let status = head.lines().next().unwrap_or_default().to_owned();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON body ({e}): {text}"));
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_sent_in_one_go_gets_its_413() {
    let app = TestApp::spawn().await;
    let body_limit = app.config.body_limit;
    let tenant = app.register("one-go").await;
    let (addr, _stop) = serve_app(&app).await;

    // As Python's urllib sends it: head and the whole 40 MiB body in one write, and only then a
    // read. Closing with the body unread would reset the connection: the write would fail with a
    // broken pipe and the answer would be lost.
    let size = 40 * 1024 * 1024;
    assert!(size > body_limit * 4, "the body must be far over the limit");
    let token = tenant.admin_token.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let mut request = post_devices_head(&token, size).into_bytes();
        let mut body = vec![b' '; size];
        body[..9].copy_from_slice(b"{\"name\":\"");
        body[size - 2..].copy_from_slice(b"\"}");
        request.extend_from_slice(&body);
        let mut client = std::net::TcpStream::connect(addr).expect("connect");
        client
            .set_write_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        client
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        client
            .write_all(&request)
            .expect("the whole body is accepted (no broken pipe)");
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).expect("the answer is read");
        answer
    })
    .await
    .expect("client thread");

    let (status, body) = status_and_body(&answer);
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert_eq!(body["error_code"], "PAYLOAD_TOO_LARGE", "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert!(body["timestamp"].is_string(), "{body}");
    // The same client, well-behaved, is served on a new connection: nothing was left stuck.
    let created = app
        .post("/devices")
        .token(&tenant.admin_token)
        .json(serde_json::json!({"name": "after"}))
        .send()
        .await;
    created.assert_status(201);
}

/// Writes `chunk` to `client` every `pause` until a write fails; answers the bytes written and how
/// long it took.
fn write_until_cut(
    client: &mut std::net::TcpStream,
    chunk: &[u8],
    pause: Duration,
    limit: Duration,
) -> (u64, Duration) {
    let started = Instant::now();
    let mut written = 0u64;
    while started.elapsed() < limit {
        match client.write(chunk) {
            Ok(n) => written += n as u64,
            Err(_) => break,
        }
        std::thread::sleep(pause);
    }
    (written, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lingering_is_bounded_in_bytes_and_in_time() {
    let app = TestApp::spawn().await;
    let tenant = app.register("linger").await;
    let (addr, _stop) = serve_app(&app).await;
    // A body announced as endless, so that the server never reads it to its end.
    let endless = 1usize << 40;
    let give_up = LINGER_TIME + Duration::from_secs(20);

    // A flood: the server reads and discards at most LINGER_BYTES, then closes.
    let head = post_devices_head(&tenant.admin_token, endless);
    let flood = tokio::task::spawn_blocking(move || {
        let mut client = std::net::TcpStream::connect(addr).expect("connect");
        client.write_all(head.as_bytes()).expect("head");
        write_until_cut(&mut client, &[b' '; 256 * 1024], Duration::ZERO, give_up)
    });
    // A trickle, never quiet for LINGER_IDLE: it reads its 413 at once, then is closed once
    // LINGER_TIME is up.
    let head = post_devices_head(&tenant.admin_token, endless);
    let trickle = tokio::task::spawn_blocking(move || {
        let mut client = std::net::TcpStream::connect(addr).expect("connect");
        client.write_all(head.as_bytes()).expect("head");
        // Past the body limit, so the server answers without waiting for more.
        client
            .write_all(&vec![b' '; 2 * 1024 * 1024])
            .expect("body");
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut answer = vec![0u8; 4096];
        let read = client.read(&mut answer).expect("the 413 arrives");
        answer.truncate(read);
        let cut = write_until_cut(&mut client, b" ", LINGER_IDLE / 8, give_up);
        (answer, cut)
    });

    let (flooded, flood_took) = flood.await.expect("flood thread");
    assert!(flood_took < give_up, "the flood was never cut off");
    // What the server discarded, plus what the socket buffers and the body limit held.
    let slack = 32 * 1024 * 1024;
    assert!(
        flooded <= LINGER_BYTES + slack,
        "{flooded} bytes accepted, over {LINGER_BYTES} discarded and {slack} buffered"
    );
    assert!(
        flooded >= LINGER_BYTES / 2,
        "cut off early: {flooded} bytes"
    );

    let (answer, (_, trickle_took)) = trickle.await.expect("trickle thread");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("PAYLOAD_TOO_LARGE"), "{answer}");
    assert!(
        trickle_took >= LINGER_TIME - Duration::from_secs(2) && trickle_took < give_up,
        "the trickle was cut after {trickle_took:?}, the linger lasts {LINGER_TIME:?}"
    );
}
