//! Scratch databases: a name of its own on a PostgreSQL server for a gateway process, which creates
//! and migrates the database itself at start (so the run also covers a first start on an empty
//! server), dropped when the run is over.
//!
//! Tests that drive the router in-process use `wuts-test-db` instead (a clone of a migrated
//! template, much faster); a scratch database is for a process that must start from nothing.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection;

/// `url` with its database name replaced by `name` (query parameters kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map(|i| i + 3).unwrap_or(0);
    let prefix = match base[authority..].find('/') {
        Some(i) => &base[..authority + i],
        None => base,
    };
    match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    }
}

/// A database name of its own on the server of a URL (its URL is [`with_database`] of the two);
/// nothing exists until a gateway connects.
#[derive(Debug, Clone)]
pub struct ScratchDatabase {
    server_url: String,
    name: String,
}

impl ScratchDatabase {
    /// A new name `<prefix>_<pid>_<unix millis>` on the server of `server_url` (its database part
    /// is ignored): unique per process and run, and telling where a leftover came from.
    pub fn new(server_url: &str, prefix: &str) -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Self {
            server_url: server_url.to_owned(),
            name: format!("{prefix}_{}_{millis}", std::process::id()),
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database, closing any connection still open to it. Best effort: a server that
    /// cannot be reached leaves it behind, which is only disk space.
    pub async fn drop_database(self) {
        let admin = with_database(&self.server_url, "postgres");
        if let Ok(mut connection) = sqlx::PgConnection::connect(&admin).await {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            )))
            .execute(&mut connection)
            .await;
            let _ = connection.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_part_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/wuts", "b"),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(
            with_database("postgres://u:p@h/wuts?sslmode=disable", "b"),
            "postgres://u:p@h/b?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "b"),
            "postgres://h:5432/b"
        );
    }

    #[test]
    fn scratch_names_are_their_own() {
        let scratch = ScratchDatabase::new("postgres://h/wuts", "wuts_bench");
        assert!(
            scratch.name().starts_with("wuts_bench_"),
            "{}",
            scratch.name()
        );
        let other = ScratchDatabase::new("postgres://h/wuts", "wuts_other");
        assert_ne!(scratch.name(), other.name());
    }
}
