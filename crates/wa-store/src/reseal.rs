//! Rewriting stored key material as the configured [`Sealer`] writes it: sealing rows written
//! in clear, moving rows sealed with a previous key to the current one, or opening every row
//! when encryption is turned off.

use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::PgStore;
use crate::seal::{Column, Place, Sealer};

/// Each sealed column: the column, its table and column names, and an expression giving the
/// row key the associated data names (the same bytes the store's methods use).
const SEALED: [(Column, &str, &str, &str); 8] = [
    (Column::Device, "wa_devices", "data", "''::bytea"),
    (
        Column::Session,
        "wa_sessions",
        "record",
        "convert_to(address, 'UTF8')",
    ),
    (
        Column::PreKey,
        "wa_prekeys",
        "record",
        "substring(int8send(id) from 5)",
    ),
    (
        Column::SignedPreKey,
        "wa_signed_prekeys",
        "record",
        "substring(int8send(id) from 5)",
    ),
    (
        Column::SenderKey,
        "wa_sender_keys",
        "record",
        "convert_to(address, 'UTF8')",
    ),
    (Column::AppSyncKey, "wa_app_sync_keys", "key_data", "key_id"),
    (
        Column::MsgSecret,
        "wa_msg_secrets",
        "secret",
        "convert_to(chat, 'UTF8') || '\\x00'::bytea || convert_to(sender, 'UTF8') \
         || '\\x00'::bytea || convert_to(msg_id, 'UTF8')",
    ),
    // The gateway's webhook secrets, keyed by the webhook's id. (A rotated-out secret, kept
    // for a day, is not rewritten: it is dropped when it expires.)
    (Column::WebhookSecret, "webhooks", "secret", "uuid_send(id)"),
];

/// Rows read per statement.
const BATCH: i64 = 500;

/// What a reseal did, per column.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResealReport {
    pub columns: Vec<ColumnReport>,
}

/// What a reseal did in one column.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ColumnReport {
    /// `table.column`.
    pub column: &'static str,
    /// Rows read.
    pub examined: u64,
    /// Rows rewritten.
    pub rewritten: u64,
    /// Rows changed by their session between the read and the rewrite (they were written by
    /// the session's own sealer, so they are left as they are).
    pub raced: u64,
    /// Rows that do not open with any configured key, with the device they belong to and why.
    pub unreadable: Vec<(Uuid, String)>,
}

impl ResealReport {
    /// Rows rewritten in all columns.
    pub fn rewritten(&self) -> u64 {
        self.columns.iter().map(|c| c.rewritten).sum()
    }

    /// Rows that could not be read in all columns.
    pub fn unreadable(&self) -> usize {
        self.columns.iter().map(|c| c.unreadable.len()).sum()
    }
}

impl PgStore {
    /// Rewrites every row of every sealed column, of every device, the way `sealer` writes.
    ///
    /// Safe while sessions run: a row is only replaced if it still holds the value that was
    /// read (compare-and-swap on the row's version and value), so a session's newer write is
    /// never overwritten. Rows that do not open are reported and left untouched.
    pub async fn reseal(pool: &PgPool, sealer: &Sealer) -> Result<ResealReport, sqlx::Error> {
        let mut report = ResealReport::default();
        for (column, table, value, row_key) in SEALED {
            report
                .columns
                .push(reseal_column(pool, sealer, column, table, value, row_key).await?);
        }
        Ok(report)
    }
}

async fn reseal_column(
    pool: &PgPool,
    sealer: &Sealer,
    column: Column,
    table: &str,
    value: &str,
    row_key: &str,
) -> Result<ColumnReport, sqlx::Error> {
    let mut report = ColumnReport {
        column: column.name(),
        ..ColumnReport::default()
    };
    // The table, column and key expressions are this module's constants, never input.
    let select = format!(
        "SELECT ctid::text AS at, device_id, {row_key} AS row_key, {value} AS value \
         FROM {table} WHERE ctid > $1::tid ORDER BY ctid LIMIT $2"
    );
    let update = format!(
        "UPDATE {table} AS t SET {value} = v.new \
         FROM UNNEST($1::text[], $2::bytea[], $3::bytea[]) AS v(at, old, new) \
         WHERE t.ctid = v.at::tid AND t.{value} = v.old"
    );
    let mut after = "(0,0)".to_owned();
    loop {
        let rows = sqlx::query(sqlx::AssertSqlSafe(select.clone()))
            .bind(&after)
            .bind(BATCH)
            .fetch_all(pool)
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.try_get("at")?;
        let mut at = Vec::new();
        let mut old = Vec::new();
        let mut new = Vec::new();
        for row in &rows {
            report.examined += 1;
            let stored: Vec<u8> = row.try_get("value")?;
            if sealer.is_current(&stored) {
                continue;
            }
            let device: Uuid = row.try_get("device_id")?;
            let key: Vec<u8> = row.try_get("row_key")?;
            let place = Place {
                column,
                device,
                row: &key,
            };
            let resealed = sealer
                .open(place, stored.clone())
                .and_then(|plain| sealer.seal(place, &plain).map(|v| v.into_owned()));
            match resealed {
                Ok(value) => {
                    at.push(row.try_get::<String, _>("at")?);
                    old.push(stored);
                    new.push(value);
                }
                Err(err) => report.unreadable.push((device, err.to_string())),
            }
        }
        if !at.is_empty() {
            let wanted = at.len() as u64;
            let done = sqlx::query(sqlx::AssertSqlSafe(update.clone()))
                .bind(&at)
                .bind(&old)
                .bind(&new)
                .execute(pool)
                .await?
                .rows_affected();
            report.rewritten += done;
            report.raced += wanted.saturating_sub(done);
        }
    }
    Ok(report)
}
