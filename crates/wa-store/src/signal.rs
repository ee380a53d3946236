//! Signal protocol state: identities, sessions, pre-keys, signed pre-keys, sender keys.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use wacore::store::error::{Result, StoreError};
use wacore::store::traits::SignalStore;

use crate::{Column, PgStore, db, last_wins, to_u32};

fn identity_key(bytes: Vec<u8>) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Validation("stored identity key is not 32 bytes".to_owned()))
}

/// `LIKE` pattern matching `user@...` and `user:...` addresses, with `user` taken literally.
fn user_patterns(user: &str) -> (String, String) {
    let escaped = user
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    (format!("{escaped}@%"), format!("{escaped}:%"))
}

#[async_trait]
impl SignalStore for PgStore {
    async fn put_identity(&self, address: &str, key: [u8; 32]) -> Result<()> {
        let _pass = self.writing()?;
        sqlx::query!(
            r#"INSERT INTO wa_identities (device_id, address, key) VALUES ($1, $2, $3)
               ON CONFLICT (device_id, address) DO UPDATE SET key = excluded.key"#,
            self.device,
            address,
            &key[..],
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn put_identities_batch(&self, identities: &[(Arc<str>, [u8; 32])]) -> Result<()> {
        let _pass = self.writing()?;
        if identities.is_empty() {
            return Ok(());
        }
        let latest = last_wins(identities.iter().map(|(a, k)| (a.as_ref(), k)));
        let addresses: Vec<String> = latest.iter().map(|(a, _)| (*a).to_owned()).collect();
        let keys: Vec<Vec<u8>> = latest.iter().map(|(_, k)| k.to_vec()).collect();
        sqlx::query!(
            r#"INSERT INTO wa_identities (device_id, address, key)
               SELECT $1, * FROM UNNEST($2::text[], $3::bytea[])
               ON CONFLICT (device_id, address) DO UPDATE SET key = excluded.key"#,
            self.device,
            &addresses,
            &keys,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn load_identity(&self, address: &str) -> Result<Option<[u8; 32]>> {
        sqlx::query_scalar!(
            "SELECT key FROM wa_identities WHERE device_id = $1 AND address = $2",
            self.device,
            address
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .map(identity_key)
        .transpose()
    }

    async fn delete_identity(&self, address: &str) -> Result<()> {
        let _pass = self.writing()?;
        sqlx::query!(
            "DELETE FROM wa_identities WHERE device_id = $1 AND address = $2",
            self.device,
            address
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn get_session(&self, address: &str) -> Result<Option<Bytes>> {
        sqlx::query_scalar!(
            "SELECT record FROM wa_sessions WHERE device_id = $1 AND address = $2",
            self.device,
            address
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .map(|record| {
            Ok(Bytes::from(self.open(
                Column::Session,
                address.as_bytes(),
                record,
            )?))
        })
        .transpose()
    }

    async fn put_session(&self, address: &str, session: &[u8]) -> Result<()> {
        let _pass = self.writing()?;
        let record = self.seal(Column::Session, address.as_bytes(), session)?;
        sqlx::query!(
            r#"INSERT INTO wa_sessions (device_id, address, record) VALUES ($1, $2, $3)
               ON CONFLICT (device_id, address) DO UPDATE SET record = excluded.record"#,
            self.device,
            address,
            &*record,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn put_sessions_batch(&self, sessions: &[(Arc<str>, Bytes)]) -> Result<()> {
        let _pass = self.writing()?;
        if sessions.is_empty() {
            return Ok(());
        }
        let latest = last_wins(sessions.iter().map(|(a, r)| (a.as_ref(), r)));
        let addresses: Vec<String> = latest.iter().map(|(a, _)| (*a).to_owned()).collect();
        let records = latest
            .iter()
            .map(|(a, r)| Ok(self.seal(Column::Session, a.as_bytes(), r)?.into_owned()))
            .collect::<Result<Vec<Vec<u8>>>>()?;
        sqlx::query!(
            r#"INSERT INTO wa_sessions (device_id, address, record)
               SELECT $1, * FROM UNNEST($2::text[], $3::bytea[])
               ON CONFLICT (device_id, address) DO UPDATE SET record = excluded.record"#,
            self.device,
            &addresses,
            &records,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn delete_session(&self, address: &str) -> Result<()> {
        let _pass = self.writing()?;
        sqlx::query!(
            "DELETE FROM wa_sessions WHERE device_id = $1 AND address = $2",
            self.device,
            address
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn has_session(&self, address: &str) -> Result<bool> {
        sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM wa_sessions WHERE device_id = $1 AND address = $2)
               AS "exists!""#,
            self.device,
            address
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }

    async fn has_signal_state_for_user(&self, user: &str) -> Result<bool> {
        let (at, colon) = user_patterns(user);
        sqlx::query_scalar!(
            r#"SELECT EXISTS (
                   SELECT 1 FROM wa_sessions WHERE device_id = $1
                       AND (address LIKE $2 ESCAPE '\' OR address LIKE $3 ESCAPE '\')
                   UNION ALL
                   SELECT 1 FROM wa_identities WHERE device_id = $1
                       AND (address LIKE $2 ESCAPE '\' OR address LIKE $3 ESCAPE '\')
               ) AS "exists!""#,
            self.device,
            at,
            colon,
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }

    async fn store_prekey(&self, id: u32, record: &[u8], uploaded: bool) -> Result<()> {
        let _pass = self.writing()?;
        let record = self.seal(Column::PreKey, &id.to_be_bytes(), record)?;
        sqlx::query!(
            r#"INSERT INTO wa_prekeys (device_id, id, record, uploaded) VALUES ($1, $2, $3, $4)
               ON CONFLICT (device_id, id)
               DO UPDATE SET record = excluded.record, uploaded = excluded.uploaded"#,
            self.device,
            i64::from(id),
            &*record,
            uploaded,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn store_prekeys_batch(&self, keys: &[(u32, Bytes)], uploaded: bool) -> Result<()> {
        let _pass = self.writing()?;
        if keys.is_empty() {
            return Ok(());
        }
        let latest = last_wins(keys.iter().map(|(id, r)| (*id, r)));
        let ids: Vec<i64> = latest.iter().map(|(id, _)| i64::from(*id)).collect();
        let records = latest
            .iter()
            .map(|(id, r)| {
                Ok(self
                    .seal(Column::PreKey, &id.to_be_bytes(), r)?
                    .into_owned())
            })
            .collect::<Result<Vec<Vec<u8>>>>()?;
        sqlx::query!(
            r#"INSERT INTO wa_prekeys (device_id, id, record, uploaded)
               SELECT $1, k.id, k.record, $4 FROM UNNEST($2::bigint[], $3::bytea[]) AS k(id, record)
               ON CONFLICT (device_id, id)
               DO UPDATE SET record = excluded.record, uploaded = excluded.uploaded"#,
            self.device,
            &ids,
            &records,
            uploaded,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn load_prekey(&self, id: u32) -> Result<Option<Bytes>> {
        sqlx::query_scalar!(
            "SELECT record FROM wa_prekeys WHERE device_id = $1 AND id = $2",
            self.device,
            i64::from(id)
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .map(|record| {
            let plain = self.open(Column::PreKey, &id.to_be_bytes(), record)?;
            Ok(Bytes::from(plain))
        })
        .transpose()
    }

    async fn load_prekeys_batch(&self, ids: &[u32]) -> Result<Vec<(u32, Bytes)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<i64> = ids.iter().map(|id| i64::from(*id)).collect();
        let rows = sqlx::query!(
            "SELECT id, record FROM wa_prekeys WHERE device_id = $1 AND id = ANY($2)",
            self.device,
            &wanted,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            let id = to_u32(row.id)?;
            let plain = self.open(Column::PreKey, &id.to_be_bytes(), row.record)?;
            found.insert(id, Bytes::from(plain));
        }
        // In the order asked, once per id asked, as the per-key default would answer.
        Ok(ids
            .iter()
            .filter_map(|id| found.get(id).map(|record| (*id, record.clone())))
            .collect())
    }

    async fn mark_prekeys_uploaded(&self, ids: &[u32]) -> Result<()> {
        let _pass = self.writing()?;
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = ids.iter().map(|id| i64::from(*id)).collect();
        sqlx::query!(
            "UPDATE wa_prekeys SET uploaded = true WHERE device_id = $1 AND id = ANY($2)",
            self.device,
            &ids,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn remove_prekey(&self, id: u32) -> Result<()> {
        let _pass = self.writing()?;
        sqlx::query!(
            "DELETE FROM wa_prekeys WHERE device_id = $1 AND id = $2",
            self.device,
            i64::from(id)
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn get_max_prekey_id(&self) -> Result<u32> {
        let max = sqlx::query_scalar!(
            "SELECT max(id) FROM wa_prekeys WHERE device_id = $1",
            self.device
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        to_u32(max.unwrap_or(0))
    }

    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> Result<()> {
        let _pass = self.writing()?;
        let record = self.seal(Column::SignedPreKey, &id.to_be_bytes(), record)?;
        sqlx::query!(
            r#"INSERT INTO wa_signed_prekeys (device_id, id, record) VALUES ($1, $2, $3)
               ON CONFLICT (device_id, id) DO UPDATE SET record = excluded.record"#,
            self.device,
            i64::from(id),
            &*record,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn load_signed_prekey(&self, id: u32) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar!(
            "SELECT record FROM wa_signed_prekeys WHERE device_id = $1 AND id = $2",
            self.device,
            i64::from(id)
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .map(|record| self.open(Column::SignedPreKey, &id.to_be_bytes(), record))
        .transpose()
    }

    async fn load_all_signed_prekeys(&self) -> Result<Vec<(u32, Vec<u8>)>> {
        sqlx::query!(
            "SELECT id, record FROM wa_signed_prekeys WHERE device_id = $1 ORDER BY id",
            self.device
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .into_iter()
        .map(|row| {
            let id = to_u32(row.id)?;
            let plain = self.open(Column::SignedPreKey, &id.to_be_bytes(), row.record)?;
            Ok((id, plain))
        })
        .collect()
    }

    async fn remove_signed_prekey(&self, id: u32) -> Result<()> {
        let _pass = self.writing()?;
        sqlx::query!(
            "DELETE FROM wa_signed_prekeys WHERE device_id = $1 AND id = $2",
            self.device,
            i64::from(id)
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn put_sender_key(&self, address: &str, record: &[u8]) -> Result<()> {
        let _pass = self.writing()?;
        let record = self.seal(Column::SenderKey, address.as_bytes(), record)?;
        sqlx::query!(
            r#"INSERT INTO wa_sender_keys (device_id, address, record) VALUES ($1, $2, $3)
               ON CONFLICT (device_id, address) DO UPDATE SET record = excluded.record"#,
            self.device,
            address,
            &*record,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn put_sender_keys_batch(&self, sender_keys: &[(Arc<str>, Bytes)]) -> Result<()> {
        let _pass = self.writing()?;
        if sender_keys.is_empty() {
            return Ok(());
        }
        let latest = last_wins(sender_keys.iter().map(|(a, r)| (a.as_ref(), r)));
        let addresses: Vec<String> = latest.iter().map(|(a, _)| (*a).to_owned()).collect();
        let records = latest
            .iter()
            .map(|(a, r)| Ok(self.seal(Column::SenderKey, a.as_bytes(), r)?.into_owned()))
            .collect::<Result<Vec<Vec<u8>>>>()?;
        sqlx::query!(
            r#"INSERT INTO wa_sender_keys (device_id, address, record)
               SELECT $1, * FROM UNNEST($2::text[], $3::bytea[])
               ON CONFLICT (device_id, address) DO UPDATE SET record = excluded.record"#,
            self.device,
            &addresses,
            &records,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn get_sender_key(&self, address: &str) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar!(
            "SELECT record FROM wa_sender_keys WHERE device_id = $1 AND address = $2",
            self.device,
            address
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .map(|record| self.open(Column::SenderKey, address.as_bytes(), record))
        .transpose()
    }

    async fn delete_sender_key(&self, address: &str) -> Result<()> {
        let _pass = self.writing()?;
        sqlx::query!(
            "DELETE FROM wa_sender_keys WHERE device_id = $1 AND address = $2",
            self.device,
            address
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }
}
