//! The device record: whatsapp-rust's `Device` (keys, account, counters), one per gateway
//! device.

use async_trait::async_trait;
use wacore::store::Device;
use wacore::store::error::Result;
use wacore::store::traits::DeviceStore;

use crate::{Column, PgStore, db, serde};

impl PgStore {
    async fn write_device(&self, device: &Device) -> Result<()> {
        let _pass = self.writing()?;
        let json = serde_json::to_vec(device).map_err(serde)?;
        let data = self.seal(Column::Device, b"", &json)?;
        let pn = device.pn.as_ref().map(ToString::to_string);
        sqlx::query!(
            r#"INSERT INTO wa_devices (device_id, data, pn) VALUES ($1, $2, $3)
               ON CONFLICT (device_id)
               DO UPDATE SET data = excluded.data, pn = excluded.pn, updated_at = now()"#,
            self.device,
            &*data,
            pn,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }
}

#[async_trait]
impl DeviceStore for PgStore {
    async fn save(&self, device: &Device) -> Result<()> {
        self.write_device(device).await
    }

    async fn load(&self) -> Result<Option<Device>> {
        sqlx::query_scalar!(
            "SELECT data FROM wa_devices WHERE device_id = $1",
            self.device
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .map(|data| {
            let json = self.open(Column::Device, b"", data)?;
            serde_json::from_slice(&json).map_err(serde)
        })
        .transpose()
    }

    async fn exists(&self) -> Result<bool> {
        sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM wa_devices WHERE device_id = $1) AS "exists!""#,
            self.device
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }

    /// Creates the device record with fresh keys, unless one exists. whatsapp-rust only uses the
    /// returned number for logging; the gateway's device is identified by its UUID.
    async fn create(&self) -> Result<i32> {
        let _pass = self.writing()?;
        let json = serde_json::to_vec(&Device::new()).map_err(serde)?;
        let data = self.seal(Column::Device, b"", &json)?;
        sqlx::query!(
            r#"INSERT INTO wa_devices (device_id, data) VALUES ($1, $2)
               ON CONFLICT (device_id) DO NOTHING"#,
            self.device,
            &*data,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(1)
    }

    async fn resource_report(&self) -> wacore::stats::StorageResourceReport {
        wacore::stats::StorageResourceReport {
            memory_bytes: Some(0),
            ..Default::default()
        }
    }
}
