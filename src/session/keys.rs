//! Device keys in PostgreSQL, through the `wuts-wa-store` backend.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::PgPool;
use wacore::store::traits::Backend;
use wuts_wa_store::PgStore;

use super::pool::KeyStore;
use crate::domain::DeviceId;

/// Every device's whatsapp-rust state, on the gateway's pool.
pub struct PgKeyStore {
    pool: PgPool,
}

impl PgKeyStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl KeyStore for PgKeyStore {
    fn backend(&self, device: DeviceId) -> Arc<dyn Backend> {
        Arc::new(PgStore::new(self.pool.clone(), device.0))
    }

    async fn has_credentials(&self, device: DeviceId) -> anyhow::Result<bool> {
        Ok(PgStore::has_credentials(&self.pool, device.0).await?)
    }

    async fn erase(&self, device: DeviceId) -> anyhow::Result<()> {
        Ok(PgStore::erase_device(&self.pool, device.0).await?)
    }
}
