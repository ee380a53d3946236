//! Putting the gateway together: database, state, router, listener, and graceful shutdown.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use tokio::net::TcpListener;

use crate::config::ServeArgs;
use crate::delivery::Deliverer;
use crate::http::auth::{MasterToken, TokenCache};
use crate::http::state::AppState;
use crate::http::{self, HttpLimits};
use crate::session::cluster::ClusterConfig;
use crate::session::keys::PgKeyStore;
use crate::session::{SessionConfig, SessionPool};
use crate::store;

/// How long a drained node keeps answering before its listener closes.
const DRAIN_LINGER: Duration = Duration::from_secs(1);

/// The assembled gateway: its router and the device sessions behind it.
pub struct Gateway {
    pub router: Router,
    pub sessions: Arc<SessionPool>,
    pub deliveries: Arc<Deliverer>,
}

/// The session settings a configuration describes.
pub fn session_config(config: &ServeArgs) -> SessionConfig {
    let wa = &config.whatsapp;
    // A test build never fetches the version from WhatsApp's servers: it talks to a stand-in.
    let version = wa.wa_version.or(if cfg!(feature = "insecure-test-server") {
        Some(TEST_SERVER_VERSION)
    } else {
        None
    });
    SessionConfig {
        wa_url: wa.wa_url.clone(),
        wa_version: version,
        wa_timeout: wa.wa_timeout,
        qr_wait: Duration::from_secs(20),
        connect_wait: Duration::from_secs(15),
        restore_concurrency: wa.restore_concurrency,
        restore_jitter: wa.restore_jitter,
        command_queue: wa.device_queue,
        reconnect_jitter: wa.reconnect_jitter,
        pace: crate::session::pacing::Pace {
            rate: wa.device_wa_rps,
            burst: wa.device_wa_burst,
            queue: wa.device_wa_queue,
        },
        device_os: "WUTS".to_owned(),
    }
}

/// The WhatsApp Web version a test build announces to the stand-in.
const TEST_SERVER_VERSION: (u32, u32, u32) = (2, 3000, 1_000_000);

/// Builds the router and the session pool over an open database pool, for a node of a new id.
pub async fn build(pool: PgPool, config: &ServeArgs) -> anyhow::Result<Gateway> {
    build_node(pool, config, config.new_node_id()).await
}

/// How the node takes part among several, from its configuration.
pub fn cluster_config(config: &ServeArgs, node_id: String) -> ClusterConfig {
    ClusterConfig {
        node_id,
        url: config.node_url(),
        ttl: config.nodes.node_ttl,
        handoff_wait: config.nodes.handoff_wait,
        handoff_batch: config.nodes.handoff_batch.max(1),
    }
}

/// Builds the router and the session pool over an open database pool, for node `node_id`.
pub async fn build_node(
    pool: PgPool,
    config: &ServeArgs,
    node_id: String,
) -> anyhow::Result<Gateway> {
    // The recorder first: what the gateway records from its first request on is kept.
    let _ = crate::metrics::handle();
    let lock_options =
        PgConnectOptions::from_str(&config.database.database_url).context("DATABASE_URL")?;
    let sealer = config.store_keys.sealer().map_err(anyhow::Error::msg)?;
    match sealer.current_key_id() {
        Some(id) => tracing::info!(store_key = %id, "WhatsApp key material sealed at rest"),
        None => tracing::info!("WhatsApp key material stored in clear (WUTS_STORE_KEY unset)"),
    }
    let sealer = Arc::new(sealer);
    let deliveries = Deliverer::new(pool.clone(), sealer.clone(), config.events.delivery())
        .context("setting up webhook deliveries")?;
    deliveries.start();
    let sessions = SessionPool::start(
        pool.clone(),
        session_config(config),
        Arc::new(PgKeyStore::new(pool.clone(), sealer)),
        lock_options,
        cluster_config(config, node_id),
    )
    .await
    .context("opening the device-ownership lock connection")?;
    let auth_cache = Arc::new(TokenCache::new(
        config.auth_cache_ttl,
        config.auth_cache_capacity,
    ));
    {
        let cluster = sessions.cluster().clone();
        let me = cluster.node_id().to_owned();
        auth_cache.listen(pool.clone(), me.clone(), move || {
            cluster
                .live()
                .iter()
                .filter(|n| n.id != me)
                .map(|n| n.id.clone())
                .collect()
        });
    }
    let state = AppState {
        db: pool,
        auth_cache,
        master_token: config
            .master_token
            .as_ref()
            .map(|token| MasterToken::new(secrecy::ExposeSecret::expose_secret(token))),
        sessions: sessions.clone(),
        deliveries: deliveries.clone(),
        budgets: Arc::new(http::budget::TenantBudgets::new(
            config.tenant_rps,
            config.tenant_burst,
        )),
        forwarder: Arc::new(
            http::forward::Forwarder::new(
                sessions.cluster().node_id().to_owned(),
                config.nodes.node_secret.clone(),
                config.request_timeout,
                config.body_limit,
            )
            .context("setting up forwarding between nodes")?,
        ),
    };
    let router = http::router(
        state,
        HttpLimits {
            request_timeout: config.request_timeout,
            body_limit: config.body_limit,
            cors_origins: config.cors_origins.clone(),
        },
    );
    Ok(Gateway {
        router,
        sessions,
        deliveries,
    })
}

/// Opens the database (creating it if needed) and applies migrations.
pub async fn open_database(database_url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let pool = store::connect(database_url, max_connections).await?;
    store::migrate(&pool)
        .await
        .context("applying database migrations")?;
    Ok(pool)
}

/// Serves the API until `shutdown` resolves, then stops accepting connections and gives
/// in-flight requests `config.shutdown_timeout` to finish.
pub async fn serve(
    config: ServeArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate().map_err(anyhow::Error::msg)?;
    let node_id = config.new_node_id();
    let pool = store::connect_as(
        &config.database.database_url,
        config.database.db_max_connections,
        Some(&node_id),
    )
    .await?;
    store::migrate(&pool)
        .await
        .context("applying database migrations")?;
    if config.master_token.is_none() {
        tracing::warn!(
            "WUTS_MASTER_TOKEN is not set: /register, /tenants and /global/tenants answer 403. \
             Set it (for example WUTS_MASTER_TOKEN=$(openssl rand -hex 32)), or create tenants with \
             `wuts tenant create --name NAME --email EMAIL`"
        );
    }
    if cfg!(feature = "insecure-test-server") {
        tracing::warn!(
            wa_url = %config.whatsapp.wa_url,
            "TEST BUILD: WhatsApp's certificate chain is NOT verified (insecure-test-server); \
             only loopback WhatsApp endpoints are allowed. Never run this build in production."
        );
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let gateway = build_node(pool.clone(), &config, node_id.clone()).await?;
    let router = gateway.router;
    let sessions = gateway.sessions;
    let deliveries = gateway.deliveries;
    join_nodes(&config, &sessions).await?;
    tracing::info!(listen = %config.listen, node = %node_id, url = %config.node_url(), "WUTS gateway listening");
    let restoring = sessions.clone();
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let restored = restoring.restore().await;
        if restored > 0 {
            tracing::info!(
                devices = restored,
                seconds = started.elapsed().as_secs_f64(),
                "device sessions restored"
            );
        }
    });

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let limits = http::server::ConnLimits {
        header_read_timeout: config.header_read_timeout,
    };
    let server = tokio::spawn(http::server::serve(listener, router, limits, async {
        let _ = stop_rx.await;
    }));
    shutdown.await;
    // Hand the devices to the other nodes first, still answering (forwarding) requests, so
    // that a rolling restart drops none.
    sessions
        .drain(config.shutdown_timeout.max(Duration::from_secs(60)))
        .await;
    if sessions.cluster().has_peers() {
        // Requests the other nodes sent here just before the last hand-offs, on connections
        // they keep alive, are answered (as moved, so they ask the new owner) rather than cut
        // off by the closing listener.
        tokio::time::sleep(DRAIN_LINGER).await;
    }
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    let _ = stop_tx.send(());
    match tokio::time::timeout(config.shutdown_timeout, server).await {
        Ok(joined) => joined.context("server task")?,
        Err(_) => tracing::warn!("in-flight requests did not finish in time; closing them"),
    }
    sessions.shutdown(config.shutdown_timeout).await;
    sessions.leave().await;
    deliveries.shutdown(config.shutdown_timeout).await;
    pool.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Registers the node among the others. A second node needs the node secret: without it
/// requests could not be forwarded between them.
async fn join_nodes(config: &ServeArgs, sessions: &Arc<SessionPool>) -> anyhow::Result<()> {
    // A node killed a moment ago (this one's previous run, say) is not another node: clear the
    // dead ones out first.
    store::nodes::reap(
        sessions.db(),
        sessions.cluster().node_id(),
        config.nodes.node_ttl,
    )
    .await
    .context("reading the node registry")?;
    let others = store::nodes::live(sessions.db(), config.nodes.node_ttl)
        .await
        .context("reading the node registry")?;
    if !others.is_empty() && config.nodes.node_secret.is_none() {
        anyhow::bail!(
            "{} other gateway node(s) run on this database ({}), and WUTS_NODE_SECRET is not set: \
             set the same secret (at least 16 characters, e.g. `openssl rand -hex 32`) on every node",
            others.len(),
            others
                .iter()
                .map(|n| n.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    sessions
        .join()
        .await
        .context("registering the node in the node registry")
}

/// `wuts healthcheck`: one `GET /healthz` to the gateway listening on `listen`, answered 200
/// within 3 s. Plain HTTP/1.1 over a socket: the check needs nothing the image lacks.
pub async fn healthcheck(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut target = listen;
    if target.ip().is_unspecified() {
        target.set_ip(match target.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(target).await?;
        stream
            .write_all(
                format!("GET /healthz HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        anyhow::Ok(head)
    };
    let head = tokio::time::timeout(Duration::from_secs(3), check)
        .await
        .with_context(|| format!("no answer from {target} within 3 s"))?
        .with_context(|| format!("GET http://{target}/healthz"))?;
    if head.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        anyhow::bail!(
            "GET http://{target}/healthz answered {}",
            String::from_utf8_lossy(&head)
        )
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
