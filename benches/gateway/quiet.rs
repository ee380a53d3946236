//! PostgreSQL while every device is connected and nobody calls the API: what the gateway asks of
//! the database in steady state (it must not grow with the devices), and how many connections it
//! holds.
//!
//! Statements are counted with `pg_stat_statements` when the server loads it
//! (`shared_preload_libraries`); transactions are always counted, from `pg_stat_database`. Both
//! only for the benchmark's database, less the benchmark's own readings (PostgreSQL reports a
//! backend's transactions up to 10 s late, so the count at each end of the window is off by a
//! few).

use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use sqlx::{Connection, PgConnection};

use super::stats::round;

/// The phase's parameters.
pub struct Quiet<'a> {
    pub database_url: &'a str,
    /// Devices connected meanwhile.
    pub devices: usize,
    /// How long the database is watched (`BENCH_QUIET_SECONDS`, default 60).
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct Statement {
    pub calls: i64,
    pub query: String,
}

#[derive(Debug, Serialize)]
pub struct QuietFigures {
    pub quiet_seconds: f64,
    /// Connections to the benchmark's database at the end (the gateway's pool, its lock and
    /// listener connections, and the benchmark's one).
    pub quiet_pg_connections: i64,
    /// Transactions committed or rolled back meanwhile, and per second.
    pub quiet_pg_transactions: i64,
    pub quiet_pg_transactions_per_second: f64,
    /// Transactions per device per second (the gateway must not ask anything of the database
    /// per device in steady state).
    pub quiet_pg_transactions_per_device_second: f64,
    /// Statements executed meanwhile (`pg_stat_statements`; absent when the server does not
    /// load it), and per second.
    pub quiet_pg_statements: Option<i64>,
    pub quiet_pg_statements_per_second: Option<f64>,
    /// The most frequent statements, their calls meanwhile.
    pub quiet_pg_top_statements: Vec<Statement>,
}

/// Statements the benchmark itself runs here (excluded from the counts).
const OURS: &str = "%pg_stat%";

impl Quiet<'_> {
    pub async fn run(self) -> Result<QuietFigures> {
        let mut db = PgConnection::connect(self.database_url)
            .await
            .context("the benchmark's database")?;
        let statements = sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&mut db)
            .await
            .is_ok()
            && sqlx::query("SELECT pg_stat_statements_reset()")
                .execute(&mut db)
                .await
                .is_ok();
        // Cumulative statistics reach pg_stat_database when a backend reports them (within a
        // second of a transaction, or 10 s for an idle one): read after a pause, and again after
        // the same pause at the end.
        let transactions = async |db: &mut PgConnection| -> Result<i64> {
            sqlx::query_scalar::<_, i64>(
                "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database \
                 WHERE datname = current_database()",
            )
            .fetch_one(db)
            .await
            .context("pg_stat_database")
        };
        sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&mut db)
            .await?;
        let before = transactions(&mut db).await?;
        tokio::time::sleep(Duration::from_secs_f64(self.seconds)).await;
        sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&mut db)
            .await?;
        let after = transactions(&mut db).await?;
        // The benchmark's own between the readings: the first reading and the second clear.
        let transactions = (after - before - 2).max(0);
        let connections: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()",
        )
        .fetch_one(&mut db)
        .await?;
        let (count, top) = if statements {
            let total: Option<i64> = sqlx::query_scalar(
                "SELECT sum(calls)::bigint FROM pg_stat_statements \
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 AND query NOT LIKE $1",
            )
            .bind(OURS)
            .fetch_one(&mut db)
            .await?;
            let top: Vec<(i64, String)> = sqlx::query_as(
                "SELECT calls, query FROM pg_stat_statements \
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 AND query NOT LIKE $1 ORDER BY calls DESC LIMIT 10",
            )
            .bind(OURS)
            .fetch_all(&mut db)
            .await?;
            (Some(total.unwrap_or(0)), top)
        } else {
            (None, Vec::new())
        };
        let _ = db.close().await;
        let per_second = |n: i64| round(n as f64 / self.seconds, 2);
        Ok(QuietFigures {
            quiet_seconds: self.seconds,
            quiet_pg_connections: connections,
            quiet_pg_transactions: transactions,
            quiet_pg_transactions_per_second: per_second(transactions),
            quiet_pg_transactions_per_device_second: round(
                transactions as f64 / self.seconds / self.devices.max(1) as f64,
                4,
            ),
            quiet_pg_statements: count,
            quiet_pg_statements_per_second: count.map(per_second),
            quiet_pg_top_statements: top
                .into_iter()
                .map(|(calls, query)| Statement {
                    calls,
                    query: query
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                        .chars()
                        .take(160)
                        .collect(),
                })
                .collect(),
        })
    }
}
