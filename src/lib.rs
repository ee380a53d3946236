//! # WUTS gateway
//!
//! A multi-tenant REST API that drives WhatsApp linked-device sessions. Tenants have users (each
//! with a bearer token) and devices (each a linked WhatsApp session); requests are authenticated,
//! routed to the right device session, and answered in the WUTS envelope.
//!
//! - [`config`]: command line and environment.
//! - [`http`]: router, layers, extractors, envelope, handlers.
//! - [`delivery`]: webhook delivery workers.
//! - [`domain`]: identifiers, names, roles, tokens (pure).
//! - [`services`]: the logic between handlers and the store.
//! - [`store`]: PostgreSQL, the single source of truth.

pub mod config;
pub mod delivery;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod services;
pub mod session;
pub mod startup;
pub mod store;
pub mod telemetry;

use std::process::ExitCode;

use config::{Cli, Command, StoreCommand, TenantCommand};
use domain::{Email, Role, TenantName};

/// Runs the command the user asked for. Errors are printed as one line.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => serve(*args).await,
        Some(Command::Migrate(db)) => migrate(db).await,
        Some(Command::Tenant(TenantCommand::Create(args))) => create_tenant(args).await,
        Some(Command::Store(StoreCommand::Reseal(args))) => reseal(args).await,
        Some(Command::Nodes(args)) => list_nodes(args).await,
        Some(Command::Healthcheck(args)) => startup::healthcheck(args.listen).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: config::ServeArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format);
    startup::serve(args, startup::shutdown_signal()).await
}

async fn migrate(db: config::DatabaseArgs) -> anyhow::Result<()> {
    telemetry::init(config::LogFormat::Pretty);
    let pool = startup::open_database(&db.database_url, 2).await?;
    pool.close().await;
    eprintln!("migrations applied");
    Ok(())
}

async fn reseal(args: config::StoreResealArgs) -> anyhow::Result<()> {
    let sealer = args.keys.sealer().map_err(anyhow::Error::msg)?;
    let pool = startup::open_database(&args.database.database_url, 2).await?;
    let report = wuts_wa_store::PgStore::reseal(&pool, &sealer).await;
    pool.close().await;
    let report = report?;
    let columns: Vec<serde_json::Value> = report
        .columns
        .iter()
        .map(|c| {
            serde_json::json!({
                "column": c.column,
                "examined": c.examined,
                "rewritten": c.rewritten,
                "changed_meanwhile": c.raced,
                "unreadable": c.unreadable.len(),
            })
        })
        .collect();
    let shown = serde_json::json!({
        "store_key": sealer.current_key_id(),
        "rewritten": report.rewritten(),
        "unreadable": report.unreadable(),
        "columns": columns,
    });
    println!("{shown}");
    for column in &report.columns {
        for (device, why) in &column.unreadable {
            eprintln!("device {device}: {why}");
        }
    }
    if report.unreadable() > 0 {
        anyhow::bail!(
            "{} rows do not open with the configured keys and were left as they are",
            report.unreadable()
        );
    }
    Ok(())
}

async fn list_nodes(args: config::NodesArgs) -> anyhow::Result<()> {
    let pool = startup::open_database(&args.database.database_url, 2).await?;
    let nodes = store::nodes::report(&pool).await?;
    let mut shown = Vec::new();
    for node in nodes {
        let mut entry = serde_json::json!({
            "id": node.id,
            "url": node.url,
            "draining": node.draining,
            "started_at": node.started_at,
            "heartbeat_age_seconds": (node.heartbeat_age_seconds * 10.0).round() / 10.0,
            "devices": node.devices,
        });
        if args.devices {
            let devices: Vec<serde_json::Value> = store::sessions::devices_of(&pool, &node.id)
                .await?
                .into_iter()
                .map(|scope| serde_json::json!({"tenant_id": scope.tenant(), "device_id": scope.device()}))
                .collect();
            entry["device_ids"] = serde_json::Value::Array(devices);
        }
        shown.push(entry);
    }
    pool.close().await;
    println!("{}", serde_json::json!({ "nodes": shown }));
    Ok(())
}

async fn create_tenant(args: config::TenantCreateArgs) -> anyhow::Result<()> {
    let name = TenantName::parse(&args.name).map_err(|m| anyhow::anyhow!("--name: {m}"))?;
    let email = Email::parse(&args.email).map_err(|m| anyhow::anyhow!("--email: {m}"))?;
    let pool = startup::open_database(&args.database.database_url, 2).await?;
    let done = services::accounts::register_tenant(&pool, &name, &email, Role::Admin).await?;
    pool.close().await;
    let shown = serde_json::json!({
        "tenant": done.tenant,
        "user": done.user,
        "token": done.token.reveal(),
    });
    println!("{shown}");
    eprintln!("the token is shown only this once: keep it now");
    Ok(())
}
