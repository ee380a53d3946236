//! Device keys in PostgreSQL, through the `wuts-wa-store` backend.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::PgPool;
use wacore::store::traits::Backend;
use wuts_wa_store::{PgStore, Sealer, WriteGate};

use super::deps::KeyStore;
use crate::domain::DeviceId;

/// Every device's whatsapp-rust state, on the gateway's pool, its key material sealed by
/// `sealer` (see `wuts_wa_store::seal`).
pub struct PgKeyStore {
    pool: PgPool,
    sealer: Arc<Sealer>,
}

impl PgKeyStore {
    pub fn new(pool: PgPool, sealer: Arc<Sealer>) -> Self {
        Self { pool, sealer }
    }
}

#[async_trait]
impl KeyStore for PgKeyStore {
    fn backend(&self, device: DeviceId, gate: Option<Arc<WriteGate>>) -> Arc<dyn Backend> {
        let store = PgStore::new(self.pool.clone(), device.0).with_sealer(self.sealer.clone());
        Arc::new(match gate {
            Some(gate) => store.with_gate(gate),
            None => store,
        })
    }

    async fn has_credentials(&self, device: DeviceId) -> anyhow::Result<bool> {
        Ok(PgStore::has_credentials(&self.pool, device.0).await?)
    }

    async fn erase(&self, device: DeviceId) -> anyhow::Result<()> {
        Ok(PgStore::erase_device(&self.pool, device.0).await?)
    }
}
