//! App-state synchronization: sync keys, collection versions, mutation MACs.

use std::collections::HashMap;

use async_trait::async_trait;
use wacore::appstate::hash::HashState;
use wacore::appstate::processor::AppStateMutationMAC;
use wacore::store::error::Result;
use wacore::store::traits::{AppStateSyncKey, AppSyncStore};

use crate::{Column, PgStore, db, last_wins, serde};

#[async_trait]
impl AppSyncStore for PgStore {
    async fn get_sync_key(&self, key_id: &[u8]) -> Result<Option<AppStateSyncKey>> {
        sqlx::query!(
            r#"SELECT key_data, fingerprint, timestamp FROM wa_app_sync_keys
               WHERE device_id = $1 AND key_id = $2"#,
            self.device,
            key_id
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .map(|row| {
            Ok(AppStateSyncKey {
                key_data: self.open(Column::AppSyncKey, key_id, row.key_data)?,
                fingerprint: row.fingerprint,
                timestamp: row.timestamp,
            })
        })
        .transpose()
    }

    async fn set_sync_key(&self, key_id: &[u8], key: AppStateSyncKey) -> Result<()> {
        let _pass = self.writing()?;
        // Re-setting a key makes it the latest again: `seq` moves on every write.
        let key_data = self.seal(Column::AppSyncKey, key_id, &key.key_data)?;
        sqlx::query!(
            r#"INSERT INTO wa_app_sync_keys (device_id, key_id, key_data, fingerprint, timestamp)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (device_id, key_id) DO UPDATE SET
                   key_data = excluded.key_data, fingerprint = excluded.fingerprint,
                   timestamp = excluded.timestamp, seq = nextval('wa_app_sync_keys_seq')"#,
            self.device,
            key_id,
            &*key_data,
            key.fingerprint,
            key.timestamp,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn get_version(&self, name: &str) -> Result<HashState> {
        let state = sqlx::query_scalar!(
            "SELECT state FROM wa_app_state_versions WHERE device_id = $1 AND name = $2",
            self.device,
            name
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        match state {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(serde),
            None => Ok(HashState::default()),
        }
    }

    async fn set_version(&self, name: &str, state: HashState) -> Result<()> {
        let _pass = self.writing()?;
        let bytes = serde_json::to_vec(&state).map_err(serde)?;
        sqlx::query!(
            r#"INSERT INTO wa_app_state_versions (device_id, name, state) VALUES ($1, $2, $3)
               ON CONFLICT (device_id, name) DO UPDATE SET state = excluded.state"#,
            self.device,
            name,
            bytes,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn put_mutation_macs(
        &self,
        name: &str,
        version: u64,
        mutations: &[AppStateMutationMAC],
    ) -> Result<()> {
        let _pass = self.writing()?;
        if mutations.is_empty() {
            return Ok(());
        }
        let latest = last_wins(
            mutations
                .iter()
                .map(|m| (m.index_mac.as_slice(), m.value_mac.as_slice())),
        );
        let index_macs: Vec<Vec<u8>> = latest.iter().map(|(i, _)| i.to_vec()).collect();
        let value_macs: Vec<Vec<u8>> = latest.iter().map(|(_, v)| v.to_vec()).collect();
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        sqlx::query!(
            r#"INSERT INTO wa_app_state_mutation_macs (device_id, name, index_mac, value_mac, version)
               SELECT $1, $2, m.index_mac, m.value_mac, $5
               FROM UNNEST($3::bytea[], $4::bytea[]) AS m(index_mac, value_mac)
               ON CONFLICT (device_id, name, index_mac)
               DO UPDATE SET value_mac = excluded.value_mac, version = excluded.version"#,
            self.device,
            name,
            &index_macs,
            &value_macs,
            version,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn get_mutation_mac(&self, name: &str, index_mac: &[u8]) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar!(
            r#"SELECT value_mac FROM wa_app_state_mutation_macs
               WHERE device_id = $1 AND name = $2 AND index_mac = $3"#,
            self.device,
            name,
            index_mac
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)
    }

    async fn get_mutation_macs(
        &self,
        name: &str,
        index_macs: &[[u8; 32]],
    ) -> Result<HashMap<[u8; 32], Vec<u8>>> {
        if index_macs.is_empty() {
            return Ok(HashMap::new());
        }
        let wanted: Vec<Vec<u8>> = index_macs.iter().map(|m| m.to_vec()).collect();
        let rows = sqlx::query!(
            r#"SELECT index_mac, value_mac FROM wa_app_state_mutation_macs
               WHERE device_id = $1 AND name = $2 AND index_mac = ANY($3)"#,
            self.device,
            name,
            &wanted,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let index: [u8; 32] = row.index_mac.try_into().ok()?;
                Some((index, row.value_mac))
            })
            .collect())
    }

    async fn delete_mutation_macs(&self, name: &str, index_macs: &[Vec<u8>]) -> Result<()> {
        let _pass = self.writing()?;
        if index_macs.is_empty() {
            return Ok(());
        }
        sqlx::query!(
            r#"DELETE FROM wa_app_state_mutation_macs
               WHERE device_id = $1 AND name = $2 AND index_mac = ANY($3)"#,
            self.device,
            name,
            index_macs,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn clear_mutation_macs(&self, name: &str) -> Result<()> {
        let _pass = self.writing()?;
        sqlx::query!(
            "DELETE FROM wa_app_state_mutation_macs WHERE device_id = $1 AND name = $2",
            self.device,
            name
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn get_latest_sync_key_id(&self) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar!(
            r#"SELECT key_id FROM wa_app_sync_keys WHERE device_id = $1
               ORDER BY seq DESC LIMIT 1"#,
            self.device
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)
    }
}
