//! PostgreSQL: the gateway's single source of truth.
//!
//! Every function that touches tenant-owned rows takes the tenant id first, and filters on it.
//! Queries are compile-checked (`sqlx::query!`); the offline data in `.sqlx/` lets the crate build
//! without a database (`cargo sqlx prepare` regenerates it after a query or schema change).

pub mod blocklists;
pub mod devices;
pub mod events;
pub mod group_snapshots;
pub mod idempotency;
pub mod identities;
pub mod nodes;
pub mod sessions;
pub mod tenants;
pub mod users;
pub mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

/// Migrations embedded in the binary, applied at startup and by `wuts migrate`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A failure of the store that callers may want to tell apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write; the string says what was duplicated.
    #[error("{0}")]
    Conflict(&'static str),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Maps a unique violation of the named constraint (or index) to [`StoreError::Conflict`].
pub(crate) fn conflict_on(
    constraint: &str,
    message: &'static str,
) -> impl Fn(sqlx::Error) -> StoreError {
    move |err| match &err {
        sqlx::Error::Database(db)
            if db.is_unique_violation() && db.constraint() == Some(constraint) =>
        {
            StoreError::Conflict(message)
        }
        _ => StoreError::Db(err),
    }
}

/// Why the gateway could not open its database. The message is one line a newcomer can act on.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(String);

/// Opens the pool, creating the database first if it does not exist.
pub async fn connect(database_url: &str, max_connections: u32) -> Result<PgPool, ConnectError> {
    connect_as(database_url, max_connections, None).await
}

/// [`connect`], naming every connection after a gateway node (`application_name`
/// `wuts:<node id>`): the database fences a node's writes for the devices it does not serve,
/// and closes the connections of a node declared dead.
pub async fn connect_as(
    database_url: &str,
    max_connections: u32,
    node_id: Option<&str>,
) -> Result<PgPool, ConnectError> {
    let shown = redact_url_password(database_url);
    let mut options = PgConnectOptions::from_str(database_url)
        .map_err(|err| ConnectError(format!("DATABASE_URL ({shown}) is not valid: {err}")))?
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
    if let Some(node) = node_id {
        options = options.application_name(&format!("{}{node}", nodes::APPLICATION_PREFIX));
    }

    create_database_if_missing(&options)
        .await
        .map_err(|failure| failure.explain(&shown, &options))?;

    PgPoolOptions::new()
        .max_connections(max_connections.max(2))
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options.clone())
        .await
        .map_err(|err| Failure::Connect(err).explain(&shown, &options))
}

/// A pool on the same database as `pool` whose transactions do not wait for their commit to
/// reach the disk (`synchronous_commit = off`), for writes that a crash of the database server
/// may lose without harm: the delivery workers' bookkeeping, whose loss means an event is
/// delivered again. (A gateway that dies loses nothing committed.) Connections open on first
/// use.
pub fn unflushed_commits(pool: &PgPool, max_connections: u32) -> PgPool {
    let options = (*pool.connect_options())
        .clone()
        .options([("synchronous_commit", "off")]);
    PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options)
}

/// What went wrong opening the database, told apart so that the advice fits.
#[derive(Debug)]
enum Failure {
    /// Connecting (or logging in) to the database failed.
    Connect(sqlx::Error),
    /// The database does not exist, and creating it failed.
    Create(sqlx::Error),
}

impl Failure {
    fn explain(self, shown: &str, options: &PgConnectOptions) -> ConnectError {
        let user = options.get_username();
        let database = options.get_database().unwrap_or(user);
        let message = match &self {
            Failure::Connect(err) | Failure::Create(err) => match err {
                sqlx::Error::Database(db) => db.message().to_owned(),
                other => other.to_string(),
            },
        };
        let code = match &self {
            Failure::Connect(sqlx::Error::Database(db))
            | Failure::Create(sqlx::Error::Database(db)) => db.code().map(|c| c.into_owned()),
            _ => None,
        };
        ConnectError(match (&self, code.as_deref()) {
            // invalid_authorization_specification (unknown role, no pg_hba entry), invalid_password
            (Failure::Connect(_), Some("28000" | "28P01")) => format!(
                "PostgreSQL at {shown} is up but refused to log in role `{user}`: {message}. \
                 Check the user and password in DATABASE_URL (or create the role: \
                 `createuser -U postgres {user}`)"
            ),
            (Failure::Connect(sqlx::Error::Database(_)), _) => {
                format!("PostgreSQL at {shown} refused the connection: {message}")
            }
            (Failure::Create(_), _) => format!(
                "PostgreSQL at {shown} is up, but the database `{database}` does not exist and \
                 role `{user}` cannot create it: {message}. Create it (`createdb -U postgres \
                 -O {user} {database}`), give the role CREATEDB, or name an existing database \
                 in DATABASE_URL"
            ),
            (Failure::Connect(_), _) => format!(
                "cannot connect to PostgreSQL at {shown}: {message}. Start one (`docker compose \
                 up -d postgres`), or set DATABASE_URL to a server you can reach"
            ),
        })
    }
}

async fn create_database_if_missing(options: &PgConnectOptions) -> Result<(), Failure> {
    match sqlx::PgConnection::connect_with(options).await {
        Ok(conn) => {
            let _ = conn.close().await;
            return Ok(());
        }
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("3D000") => {}
        Err(err) => return Err(Failure::Connect(err)),
    }
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let mut admin = sqlx::PgConnection::connect_with(&options.clone().database("postgres"))
        .await
        .map_err(Failure::Create)?;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    match sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
        .execute(&mut admin)
        .await
    {
        Ok(_) => tracing::info!(database = %name, "created database"),
        // Another process created it at the same moment.
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P04") => {}
        Err(err) => return Err(Failure::Create(err)),
    }
    let _ = admin.close().await;
    Ok(())
}

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Whether the database answers and every embedded migration is applied.
pub async fn is_ready(pool: &PgPool) -> bool {
    let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let applied = sqlx::query_scalar!(
        r#"SELECT max(version) AS "version" FROM _sqlx_migrations WHERE success"#
    )
    .fetch_one(pool)
    .await;
    matches!(applied, Ok(Some(version)) if version >= latest)
}

/// The URL with any password replaced, for logs and error messages.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}
