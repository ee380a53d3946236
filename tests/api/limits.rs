//! Connection limits of the real server loop: a client that trickles its headers is disconnected
//! after the header read timeout, while a prompt client on another connection is served.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wuts_gateway::http::server::{ConnLimits, serve};

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
