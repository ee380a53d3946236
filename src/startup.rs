//! Putting the gateway together: database, state, router, listener, and graceful shutdown.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::config::ServeArgs;
use crate::http::auth::{MasterToken, TokenCache};
use crate::http::state::AppState;
use crate::http::{self, HttpLimits};
use crate::store;

/// Builds the router over an open pool.
pub fn app(pool: PgPool, config: &ServeArgs) -> Router {
    let state = AppState {
        db: pool,
        auth_cache: Arc::new(TokenCache::new(
            config.auth_cache_ttl,
            config.auth_cache_capacity,
        )),
        master_token: config.master_token.as_deref().map(MasterToken::new),
    };
    http::router(
        state,
        HttpLimits {
            request_timeout: config.request_timeout,
            body_limit: config.body_limit,
        },
    )
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
    let _ = crate::metrics::handle();
    let pool = open_database(
        &config.database.database_url,
        config.database.db_max_connections,
    )
    .await?;
    if config.master_token.is_none() {
        tracing::warn!(
            "WUTS_MASTER_TOKEN is not set: /register, /tenants and /global/tenants answer 403. \
             Set it (for example WUTS_MASTER_TOKEN=$(uuidgen)), or create tenants with \
             `wuts tenant create --name NAME --email EMAIL`"
        );
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let router = app(pool.clone(), &config);
    tracing::info!(listen = %config.listen, "WUTS gateway listening");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    shutdown.await;
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    let _ = stop_tx.send(());
    match tokio::time::timeout(config.shutdown_timeout, server).await {
        Ok(joined) => joined.context("server task")?.context("serving")?,
        Err(_) => tracing::warn!("in-flight requests did not finish in time; closing them"),
    }
    pool.close().await;
    tracing::info!("stopped");
    Ok(())
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
