//! whatsapp-rust's storage on PostgreSQL.
//!
//! [`PgStore`] implements every trait of `wacore::store::traits` (and so `Backend`) for one
//! gateway device, on the gateway's shared connection pool. Every row is keyed by the device id
//! first; the schema is the gateway's migration `0002_wa_store.sql`, whose tables cascade from
//! `devices`, so deleting a device deletes its keys. [`PgStore::erase_device`] erases them
//! without deleting the device (logout).
//!
//! Durability: every write is one statement or one transaction, committed before the method
//! returns, so what whatsapp-rust was told is stored survives a crash of the process.
//!
//! Queries are compile-checked; the offline data lives in the workspace's `.sqlx/`
//! (`cargo sqlx prepare --workspace` with `DATABASE_URL` at a migrated database regenerates it).

mod app_sync;
mod device;
mod gate;
mod msg_secret;
mod protocol;
mod reseal;
pub mod seal;
mod signal;

use std::borrow::Cow;
use std::sync::Arc;

use sqlx::PgPool;
use uuid::Uuid;
use wacore::store::error::StoreError;

pub use gate::{Retired, WriteGate};
pub use reseal::ResealReport;
pub use seal::{Column, Place, SealError, Sealer, StoreKey};

/// How many LID mappings whatsapp-rust is handed when it warms its cache at connect. Its cache
/// is unbounded and never evicts; mappings beyond these (the least recently updated) are still
/// found on demand, through `get_lid_mapping`/`get_pn_mapping`.
pub const DEFAULT_LID_WARM_UP_LIMIT: i64 = 2_000;

/// whatsapp-rust's storage for one gateway device. Cheap to clone: a pool handle and an id.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    device: Uuid,
    lid_warm_up_limit: i64,
    sealer: Arc<Sealer>,
    gate: Option<Arc<WriteGate>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("device", &self.device)
            .finish()
    }
}

impl PgStore {
    /// The store of `device` (a `devices.id`) on the shared pool.
    pub fn new(pool: PgPool, device: Uuid) -> Self {
        Self {
            pool,
            device,
            lid_warm_up_limit: DEFAULT_LID_WARM_UP_LIMIT,
            sealer: Arc::default(),
            gate: None,
        }
    }

    /// Writes only while `gate` is open (see [`WriteGate`]); without a gate every write goes
    /// through.
    pub fn with_gate(mut self, gate: Arc<WriteGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// A pass for one write, held until the write is done; refused once the gate is retired.
    pub(crate) fn writing(&self) -> Result<Option<gate::Pass<'_>>, StoreError> {
        self.gate.as_deref().map(WriteGate::enter).transpose()
    }

    /// Seals key material with `sealer` (see [`seal`]); the default writes plaintext.
    pub fn with_sealer(mut self, sealer: Arc<Sealer>) -> Self {
        self.sealer = sealer;
        self
    }

    /// `plain` as it is stored in `column` at `row`.
    pub(crate) fn seal<'a>(
        &self,
        column: Column,
        row: &[u8],
        plain: &'a [u8],
    ) -> Result<Cow<'a, [u8]>, StoreError> {
        Ok(self.sealer.seal(self.place(column, row), plain)?)
    }

    /// The plaintext of what is stored in `column` at `row`.
    pub(crate) fn open(
        &self,
        column: Column,
        row: &[u8],
        stored: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        Ok(self.sealer.open(self.place(column, row), stored)?)
    }

    fn place<'a>(&self, column: Column, row: &'a [u8]) -> seal::Place<'a> {
        seal::Place {
            column,
            device: self.device,
            row,
        }
    }

    /// Changes how many LID mappings are handed to whatsapp-rust's cache at connect.
    pub fn with_lid_warm_up_limit(mut self, limit: i64) -> Self {
        self.lid_warm_up_limit = limit.max(0);
        self
    }

    /// The device this store belongs to.
    pub fn device(&self) -> Uuid {
        self.device
    }

    /// Whether the device holds paired credentials (its stored record names an account).
    pub async fn has_credentials(pool: &PgPool, device: Uuid) -> Result<bool, sqlx::Error> {
        let paired = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM wa_devices WHERE device_id = $1 AND pn IS NOT NULL)
               AS "paired!""#,
            device
        )
        .fetch_one(pool)
        .await?;
        Ok(paired)
    }

    /// The LIDs of phone numbers the device has learned (digits to LID digits), in one query.
    pub async fn lids_of_phones(
        pool: &PgPool,
        device: Uuid,
        phones: &[String],
    ) -> Result<std::collections::HashMap<String, String>, sqlx::Error> {
        if phones.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        let rows = sqlx::query!(
            "SELECT pn, lid FROM wa_pn_lids WHERE device_id = $1 AND pn = ANY($2)",
            device,
            phones,
        )
        .fetch_all(pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.pn, r.lid)).collect())
    }

    /// The phone numbers of LIDs the device has learned (LID digits to digits), in one query.
    pub async fn phones_of_lids(
        pool: &PgPool,
        device: Uuid,
        lids: &[String],
    ) -> Result<std::collections::HashMap<String, String>, sqlx::Error> {
        if lids.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        let rows = sqlx::query!(
            "SELECT lid, pn FROM wa_lid_mappings WHERE device_id = $1 AND lid = ANY($2)",
            device,
            lids,
        )
        .fetch_all(pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.lid, r.pn)).collect())
    }

    /// Erases every key and state of the device, in one transaction. The device row stays.
    pub async fn erase_device(pool: &PgPool, device: Uuid) -> Result<(), sqlx::Error> {
        let mut tx = pool.begin().await?;
        sqlx::query!("DELETE FROM wa_devices WHERE device_id = $1", device)
            .execute(&mut *tx)
            .await?;
        sqlx::query!("DELETE FROM wa_identities WHERE device_id = $1", device)
            .execute(&mut *tx)
            .await?;
        sqlx::query!("DELETE FROM wa_sessions WHERE device_id = $1", device)
            .execute(&mut *tx)
            .await?;
        sqlx::query!("DELETE FROM wa_prekeys WHERE device_id = $1", device)
            .execute(&mut *tx)
            .await?;
        sqlx::query!("DELETE FROM wa_signed_prekeys WHERE device_id = $1", device)
            .execute(&mut *tx)
            .await?;
        sqlx::query!("DELETE FROM wa_sender_keys WHERE device_id = $1", device)
            .execute(&mut *tx)
            .await?;
        sqlx::query!("DELETE FROM wa_app_sync_keys WHERE device_id = $1", device)
            .execute(&mut *tx)
            .await?;
        sqlx::query!(
            "DELETE FROM wa_app_state_versions WHERE device_id = $1",
            device
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "DELETE FROM wa_app_state_mutation_macs WHERE device_id = $1",
            device
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "DELETE FROM wa_sender_key_devices WHERE device_id = $1",
            device
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!("DELETE FROM wa_lid_mappings WHERE device_id = $1", device)
            .execute(&mut *tx)
            .await?;
        sqlx::query!("DELETE FROM wa_pn_lids WHERE device_id = $1", device)
            .execute(&mut *tx)
            .await?;
        sqlx::query!("DELETE FROM wa_base_keys WHERE device_id = $1", device)
            .execute(&mut *tx)
            .await?;
        sqlx::query!("DELETE FROM wa_device_lists WHERE device_id = $1", device)
            .execute(&mut *tx)
            .await?;
        sqlx::query!("DELETE FROM wa_group_metadata WHERE device_id = $1", device)
            .execute(&mut *tx)
            .await?;
        sqlx::query!("DELETE FROM wa_tc_tokens WHERE device_id = $1", device)
            .execute(&mut *tx)
            .await?;
        sqlx::query!("DELETE FROM wa_sent_messages WHERE device_id = $1", device)
            .execute(&mut *tx)
            .await?;
        sqlx::query!(
            "DELETE FROM wa_pending_inbound WHERE device_id = $1",
            device
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!("DELETE FROM wa_msg_secrets WHERE device_id = $1", device)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }
}

/// A database failure as whatsapp-rust's store error.
pub(crate) fn db(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Connection(Box::new(err))
        }
        other => StoreError::Database(Box::new(other)),
    }
}

/// A (de)serialization failure as whatsapp-rust's store error.
pub(crate) fn serde(err: serde_json::Error) -> StoreError {
    StoreError::Serialization(Box::new(err))
}

/// whatsapp-rust's ids are `u32`; PostgreSQL has no unsigned integers, so they are stored as
/// `bigint` and converted back, refusing anything out of range.
pub(crate) fn to_u32(value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Validation(format!("id {value} out of range")))
}

/// Collapses a batch to one entry per key, the last one winning, in first-seen order: what
/// writing the entries one by one would leave (one statement may not write a row twice).
pub(crate) fn last_wins<K, V>(items: impl IntoIterator<Item = (K, V)>) -> Vec<(K, V)>
where
    K: Eq + std::hash::Hash + Copy,
{
    let mut index: std::collections::HashMap<K, usize> = std::collections::HashMap::new();
    let mut out: Vec<(K, V)> = Vec::new();
    for (key, value) in items {
        match index.get(&key) {
            Some(&at) => out[at].1 = value,
            None => {
                index.insert(key, out.len());
                out.push((key, value));
            }
        }
    }
    out
}
