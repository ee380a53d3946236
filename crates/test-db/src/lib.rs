//! Test support: a PostgreSQL database of its own for each test.
//!
//! The first test of a run creates a template database with every migration applied (once per
//! set of migrations, guarded by an advisory lock so concurrent test processes wait for it),
//! and each test clones it, which takes milliseconds. Databases are dropped when the test ends;
//! ones left behind by killed runs are swept after two hours.
//!
//! The server is `DATABASE_URL` (its database part is ignored), or the local PostgreSQL.

#![expect(
    clippy::expect_used,
    reason = "test support: a database that cannot be set up fails the test with a clear message"
)]

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};

/// Every migration of the gateway.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Where tests find PostgreSQL: `DATABASE_URL` (its database part is replaced), or the local one.
fn server_options() -> PgConnectOptions {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    url.parse::<PgConnectOptions>()
        .expect("DATABASE_URL parses")
        .database("postgres")
}

async fn admin_connection() -> PgConnection {
    PgConnection::connect_with(&server_options())
        .await
        .expect("tests need PostgreSQL: start it, or set DATABASE_URL")
}

fn template_name() -> String {
    // One template per set of migrations, so a schema change never meets a stale template.
    let mut digest = 0u64;
    for migration in MIGRATOR.iter() {
        for byte in migration.checksum.iter() {
            digest = digest.wrapping_mul(31).wrapping_add(u64::from(*byte));
        }
        digest = digest
            .wrapping_mul(31)
            .wrapping_add(migration.version as u64);
    }
    format!("wuts_tpl_{digest:016x}")
}

/// Creates the migrated template once per machine (an advisory lock makes concurrent test
/// processes wait for the first), and sweeps test databases left by earlier runs.
async fn ensure_template() -> String {
    let name = template_name();
    let mut admin = admin_connection().await;
    sqlx::query("SELECT pg_advisory_lock(727274)")
        .execute(&mut admin)
        .await
        .expect("advisory lock");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .expect("pg_database");
    if !exists {
        let building = format!("{name}_building");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {building} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .expect("drop partial template");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {building}")))
            .execute(&mut admin)
            .await
            .expect("create template");
        let pool = PgPool::connect_with(server_options().database(&building))
            .await
            .expect("connect template");
        MIGRATOR.run(&pool).await.expect("migrate template");
        pool.close().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {building} RENAME TO {name}"
        )))
        .execute(&mut admin)
        .await
        .expect("publish template");
    }
    sweep_stale_databases(&mut admin).await;
    sqlx::query("SELECT pg_advisory_unlock(727274)")
        .execute(&mut admin)
        .await
        .expect("advisory unlock");
    let _ = admin.close().await;
    name
}

/// Test databases are named `wuts_test_<unix seconds>_<random>`; drop those over two hours old.
async fn sweep_stale_databases(admin: &mut PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'wuts_test_%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    let now = unix_seconds();
    for name in names {
        let born = name
            .split('_')
            .nth(2)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        if now.saturating_sub(born) > 7200 {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut *admin)
            .await;
        }
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A database of its own for one test, dropped when the test ends.
pub struct TestDatabase {
    pub name: String,
    pub pool: PgPool,
}

impl TestDatabase {
    pub async fn new() -> Self {
        static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
        let template = TEMPLATE.get_or_init(ensure_template).await;
        let name = format!(
            "wuts_test_{}_{}",
            unix_seconds(),
            uuid::Uuid::new_v4().simple()
        );
        let mut admin = admin_connection().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE {template}"
        )))
        .execute(&mut admin)
        .await
        .expect("clone template");
        let _ = admin.close().await;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(10)
            .connect_with(server_options().database(&name))
            .await
            .expect("connect test database");
        Self { name, pool }
    }

    /// A URL for this database, for code that opens its own connections.
    pub fn url(&self) -> String {
        let base = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        match base.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{}", self.name),
            None => base,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // The test's runtime is ending; drop the database from a runtime of our own.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let mut admin = admin_connection().await;
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await;
            });
        })
        .join();
    }
}
