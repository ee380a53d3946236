//! WhatsApp Web protocol state: sender-key distribution, LID mappings, base keys, device lists,
//! group metadata, trusted-contact tokens, sent messages, and the pending-inbound buffer.

use async_trait::async_trait;
use wacore::store::error::Result;
use wacore::store::traits::{
    DeviceListRecord, LidPnMappingEntry, PendingInboundKey, PendingInboundRow, ProtocolStore,
    TcTokenEntry,
};

use crate::{PgStore, db, serde};

/// Sent messages kept per device for retries; beyond it the oldest quarter is dropped.
const MAX_SENT_MESSAGES: i64 = 4096;

struct LidRow {
    lid: String,
    pn: String,
    created_at: i64,
    updated_at: i64,
    learning_source: String,
}

impl From<LidRow> for LidPnMappingEntry {
    fn from(row: LidRow) -> Self {
        LidPnMappingEntry {
            lid: row.lid,
            phone_number: row.pn,
            created_at: row.created_at,
            updated_at: row.updated_at,
            learning_source: row.learning_source,
        }
    }
}

impl PgStore {
    /// Stores one mapping inside a transaction: the LID row, and the phone number's pointer to
    /// its latest LID (dropping the pointer of the number the LID had before, if it changed).
    async fn put_lid_mapping_in(
        &self,
        tx: &mut sqlx::PgConnection,
        entry: &LidPnMappingEntry,
    ) -> std::result::Result<(), sqlx::Error> {
        let previous = sqlx::query_scalar!(
            "SELECT pn FROM wa_lid_mappings WHERE device_id = $1 AND lid = $2 FOR UPDATE",
            self.device,
            entry.lid
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(old_pn) = previous.filter(|pn| *pn != entry.phone_number) {
            sqlx::query!(
                "DELETE FROM wa_pn_lids WHERE device_id = $1 AND pn = $2",
                self.device,
                old_pn
            )
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query!(
            r#"INSERT INTO wa_pn_lids (device_id, pn, lid) VALUES ($1, $2, $3)
               ON CONFLICT (device_id, pn) DO UPDATE SET lid = excluded.lid"#,
            self.device,
            entry.phone_number,
            entry.lid,
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            r#"INSERT INTO wa_lid_mappings
                   (device_id, lid, pn, created_at, updated_at, learning_source)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (device_id, lid) DO UPDATE SET
                   pn = excluded.pn, created_at = excluded.created_at,
                   updated_at = excluded.updated_at, learning_source = excluded.learning_source"#,
            self.device,
            entry.lid,
            entry.phone_number,
            entry.created_at,
            entry.updated_at,
            entry.learning_source,
        )
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl ProtocolStore for PgStore {
    async fn get_sender_key_devices(&self, group_jid: &str) -> Result<Vec<(String, bool)>> {
        Ok(sqlx::query!(
            r#"SELECT device_jid, has_key FROM wa_sender_key_devices
               WHERE device_id = $1 AND group_jid = $2 ORDER BY device_jid"#,
            self.device,
            group_jid
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .into_iter()
        .map(|row| (row.device_jid, row.has_key))
        .collect())
    }

    async fn set_sender_key_status(&self, group_jid: &str, entries: &[(&str, bool)]) -> Result<()> {
        let _pass = self.writing()?;
        if entries.is_empty() {
            return Ok(());
        }
        let latest = crate::last_wins(entries.iter().copied());
        let jids: Vec<String> = latest.iter().map(|(j, _)| (*j).to_owned()).collect();
        let flags: Vec<bool> = latest.iter().map(|(_, f)| *f).collect();
        sqlx::query!(
            r#"INSERT INTO wa_sender_key_devices (device_id, group_jid, device_jid, has_key)
               SELECT $1, $2, e.jid, e.has_key FROM UNNEST($3::text[], $4::bool[]) AS e(jid, has_key)
               ON CONFLICT (device_id, group_jid, device_jid) DO UPDATE SET has_key = excluded.has_key"#,
            self.device,
            group_jid,
            &jids,
            &flags,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn clear_sender_key_devices(&self, group_jid: &str) -> Result<()> {
        let _pass = self.writing()?;
        sqlx::query!(
            "DELETE FROM wa_sender_key_devices WHERE device_id = $1 AND group_jid = $2",
            self.device,
            group_jid
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn delete_sender_key_device_rows(&self, device_jids: &[&str]) -> Result<()> {
        let _pass = self.writing()?;
        if device_jids.is_empty() {
            return Ok(());
        }
        let jids: Vec<String> = device_jids.iter().map(|j| (*j).to_owned()).collect();
        sqlx::query!(
            "DELETE FROM wa_sender_key_devices WHERE device_id = $1 AND device_jid = ANY($2)",
            self.device,
            &jids,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn clear_all_sender_key_devices(&self) -> Result<()> {
        let _pass = self.writing()?;
        sqlx::query!(
            "DELETE FROM wa_sender_key_devices WHERE device_id = $1",
            self.device
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn get_lid_mapping(&self, lid: &str) -> Result<Option<LidPnMappingEntry>> {
        Ok(sqlx::query_as!(
            LidRow,
            r#"SELECT lid, pn, created_at, updated_at, learning_source FROM wa_lid_mappings
               WHERE device_id = $1 AND lid = $2"#,
            self.device,
            lid
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .map(Into::into))
    }

    async fn get_pn_mapping(&self, phone: &str) -> Result<Option<LidPnMappingEntry>> {
        Ok(sqlx::query_as!(
            LidRow,
            r#"SELECT m.lid, m.pn, m.created_at, m.updated_at, m.learning_source
               FROM wa_pn_lids p
               JOIN wa_lid_mappings m ON m.device_id = p.device_id AND m.lid = p.lid
               WHERE p.device_id = $1 AND p.pn = $2"#,
            self.device,
            phone
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .map(Into::into))
    }

    async fn put_lid_mapping(&self, entry: &LidPnMappingEntry) -> Result<()> {
        let _pass = self.writing()?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        self.put_lid_mapping_in(&mut tx, entry).await.map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn put_lid_mappings(&self, entries: &[LidPnMappingEntry]) -> Result<()> {
        let _pass = self.writing()?;
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        for entry in entries {
            self.put_lid_mapping_in(&mut tx, entry).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn get_all_lid_mappings(&self) -> Result<Vec<LidPnMappingEntry>> {
        // Bounded: whatsapp-rust keeps what it is handed here for the life of the client.
        Ok(sqlx::query_as!(
            LidRow,
            r#"SELECT lid, pn, created_at, updated_at, learning_source FROM wa_lid_mappings
               WHERE device_id = $1 ORDER BY updated_at DESC, lid LIMIT $2"#,
            self.device,
            self.lid_warm_up_limit,
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .into_iter()
        .map(Into::into)
        .collect())
    }

    async fn save_base_key(&self, address: &str, message_id: &str, base_key: &[u8]) -> Result<()> {
        let _pass = self.writing()?;
        sqlx::query!(
            r#"INSERT INTO wa_base_keys (device_id, address, message_id, base_key)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (device_id, address, message_id) DO UPDATE SET base_key = excluded.base_key"#,
            self.device,
            address,
            message_id,
            base_key,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn has_same_base_key(
        &self,
        address: &str,
        message_id: &str,
        current_base_key: &[u8],
    ) -> Result<bool> {
        sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM wa_base_keys
                   WHERE device_id = $1 AND address = $2 AND message_id = $3 AND base_key = $4)
               AS "same!""#,
            self.device,
            address,
            message_id,
            current_base_key,
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }

    async fn delete_base_key(&self, address: &str, message_id: &str) -> Result<()> {
        let _pass = self.writing()?;
        sqlx::query!(
            "DELETE FROM wa_base_keys WHERE device_id = $1 AND address = $2 AND message_id = $3",
            self.device,
            address,
            message_id
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn update_device_list(&self, record: DeviceListRecord) -> Result<()> {
        self.update_device_lists(vec![record]).await
    }

    async fn update_device_lists(&self, records: Vec<DeviceListRecord>) -> Result<()> {
        let _pass = self.writing()?;
        if records.is_empty() {
            return Ok(());
        }
        let mut users = Vec::with_capacity(records.len());
        let mut blobs = Vec::with_capacity(records.len());
        for record in &records {
            users.push(record.user.as_str());
            blobs.push(serde_json::to_vec(record).map_err(serde)?);
        }
        let latest = crate::last_wins(users.into_iter().zip(blobs));
        let users: Vec<String> = latest.iter().map(|(u, _)| (*u).to_owned()).collect();
        let blobs: Vec<Vec<u8>> = latest.into_iter().map(|(_, b)| b).collect();
        sqlx::query!(
            r#"INSERT INTO wa_device_lists (device_id, user_id, record)
               SELECT $1, * FROM UNNEST($2::text[], $3::bytea[])
               ON CONFLICT (device_id, user_id) DO UPDATE SET record = excluded.record"#,
            self.device,
            &users,
            &blobs,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn get_devices(&self, user: &str) -> Result<Option<DeviceListRecord>> {
        sqlx::query_scalar!(
            "SELECT record FROM wa_device_lists WHERE device_id = $1 AND user_id = $2",
            self.device,
            user
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .map(|bytes| serde_json::from_slice(&bytes).map_err(serde))
        .transpose()
    }

    async fn delete_devices(&self, user: &str) -> Result<()> {
        let _pass = self.writing()?;
        sqlx::query!(
            "DELETE FROM wa_device_lists WHERE device_id = $1 AND user_id = $2",
            self.device,
            user
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn get_group_metadata(&self, group_jid: &str) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar!(
            "SELECT blob FROM wa_group_metadata WHERE device_id = $1 AND group_jid = $2",
            self.device,
            group_jid
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)
    }

    async fn put_group_metadata(&self, group_jid: &str, blob: &[u8]) -> Result<()> {
        let _pass = self.writing()?;
        sqlx::query!(
            r#"INSERT INTO wa_group_metadata (device_id, group_jid, blob) VALUES ($1, $2, $3)
               ON CONFLICT (device_id, group_jid) DO UPDATE SET blob = excluded.blob"#,
            self.device,
            group_jid,
            blob,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn delete_group_metadata(&self, group_jid: &str) -> Result<()> {
        let _pass = self.writing()?;
        sqlx::query!(
            "DELETE FROM wa_group_metadata WHERE device_id = $1 AND group_jid = $2",
            self.device,
            group_jid
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn get_tc_token(&self, jid: &str) -> Result<Option<TcTokenEntry>> {
        Ok(sqlx::query!(
            r#"SELECT token, token_timestamp, sender_timestamp FROM wa_tc_tokens
               WHERE device_id = $1 AND jid = $2"#,
            self.device,
            jid
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .map(|row| TcTokenEntry {
            token: row.token,
            token_timestamp: row.token_timestamp,
            sender_timestamp: row.sender_timestamp,
        }))
    }

    async fn put_tc_token(&self, jid: &str, entry: &TcTokenEntry) -> Result<()> {
        let _pass = self.writing()?;
        sqlx::query!(
            r#"INSERT INTO wa_tc_tokens (device_id, jid, token, token_timestamp, sender_timestamp)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (device_id, jid) DO UPDATE SET token = excluded.token,
                   token_timestamp = excluded.token_timestamp,
                   sender_timestamp = excluded.sender_timestamp"#,
            self.device,
            jid,
            entry.token,
            entry.token_timestamp,
            entry.sender_timestamp,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn delete_tc_token(&self, jid: &str) -> Result<()> {
        let _pass = self.writing()?;
        sqlx::query!(
            "DELETE FROM wa_tc_tokens WHERE device_id = $1 AND jid = $2",
            self.device,
            jid
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn get_all_tc_token_jids(&self) -> Result<Vec<String>> {
        sqlx::query_scalar!(
            "SELECT jid FROM wa_tc_tokens WHERE device_id = $1 ORDER BY jid",
            self.device
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)
    }

    async fn delete_expired_tc_tokens(&self, token_cutoff: i64, sender_cutoff: i64) -> Result<u32> {
        let _pass = self.writing()?;
        let done = sqlx::query!(
            r#"DELETE FROM wa_tc_tokens WHERE device_id = $1
                 AND NOT (length(token) > 0 AND token_timestamp >= $2)
                 AND NOT coalesce(sender_timestamp >= $3, false)"#,
            self.device,
            token_cutoff,
            sender_cutoff,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(u32::try_from(done.rows_affected()).unwrap_or(u32::MAX))
    }

    async fn touch_tc_token_sender_timestamp(
        &self,
        jid: &str,
        sender_timestamp: i64,
    ) -> Result<()> {
        let _pass = self.writing()?;
        sqlx::query!(
            r#"INSERT INTO wa_tc_tokens AS t (device_id, jid, token, token_timestamp, sender_timestamp)
               VALUES ($1, $2, '\x'::bytea, $3, $3)
               ON CONFLICT (device_id, jid) DO UPDATE SET
                   sender_timestamp = greatest(coalesce(t.sender_timestamp, excluded.sender_timestamp),
                                               excluded.sender_timestamp)"#,
            self.device,
            jid,
            sender_timestamp,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn store_received_tc_token(
        &self,
        jid: &str,
        token: &[u8],
        token_timestamp: i64,
    ) -> Result<()> {
        let _pass = self.writing()?;
        // Newer wins, and a placeholder never blocks the first real token; the sender bucket
        // is left alone.
        sqlx::query!(
            r#"INSERT INTO wa_tc_tokens AS t (device_id, jid, token, token_timestamp, sender_timestamp)
               VALUES ($1, $2, $3, $4, NULL)
               ON CONFLICT (device_id, jid) DO UPDATE SET
                   token = excluded.token, token_timestamp = excluded.token_timestamp
               WHERE length(t.token) = 0 OR excluded.token_timestamp >= t.token_timestamp"#,
            self.device,
            jid,
            token,
            token_timestamp,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn store_sent_message(
        &self,
        chat_jid: &str,
        message_id: &str,
        payload: &[u8],
    ) -> Result<()> {
        let _pass = self.writing()?;
        let now = wacore::time::now_secs();
        let mut tx = self.pool.begin().await.map_err(db)?;
        let count = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM wa_sent_messages WHERE device_id = $1"#,
            self.device
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if count >= MAX_SENT_MESSAGES {
            let drop_count = count - MAX_SENT_MESSAGES * 3 / 4;
            sqlx::query!(
                r#"DELETE FROM wa_sent_messages WHERE (device_id, chat_jid, message_id) IN (
                       SELECT device_id, chat_jid, message_id FROM wa_sent_messages
                       WHERE device_id = $1 ORDER BY created_at LIMIT $2)"#,
                self.device,
                drop_count,
            )
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        sqlx::query!(
            r#"INSERT INTO wa_sent_messages (device_id, chat_jid, message_id, payload, created_at)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (device_id, chat_jid, message_id)
               DO UPDATE SET payload = excluded.payload, created_at = excluded.created_at"#,
            self.device,
            chat_jid,
            message_id,
            payload,
            now,
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn take_sent_message(&self, chat_jid: &str, message_id: &str) -> Result<Option<Vec<u8>>> {
        let _pass = self.writing()?;
        sqlx::query_scalar!(
            r#"DELETE FROM wa_sent_messages
               WHERE device_id = $1 AND chat_jid = $2 AND message_id = $3
               RETURNING payload"#,
            self.device,
            chat_jid,
            message_id
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)
    }

    async fn delete_expired_sent_messages(&self, cutoff_timestamp: i64) -> Result<u32> {
        let _pass = self.writing()?;
        let done = sqlx::query!(
            "DELETE FROM wa_sent_messages WHERE device_id = $1 AND created_at < $2",
            self.device,
            cutoff_timestamp
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(u32::try_from(done.rows_affected()).unwrap_or(u32::MAX))
    }

    async fn store_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
        message: &[u8],
    ) -> Result<()> {
        self.store_pending_inbound_batch(&[PendingInboundRow {
            chat,
            sender,
            id,
            message,
        }])
        .await
    }

    async fn store_pending_inbound_batch(&self, rows: &[PendingInboundRow<'_>]) -> Result<()> {
        let _pass = self.writing()?;
        if rows.is_empty() {
            return Ok(());
        }
        let now = wacore::time::now_secs();
        let latest = crate::last_wins(rows.iter().map(|r| ((r.chat, r.sender, r.id), r.message)));
        let chats: Vec<String> = latest
            .iter()
            .map(|((c, _, _), _)| (*c).to_owned())
            .collect();
        let senders: Vec<String> = latest
            .iter()
            .map(|((_, s, _), _)| (*s).to_owned())
            .collect();
        let ids: Vec<String> = latest
            .iter()
            .map(|((_, _, i), _)| (*i).to_owned())
            .collect();
        let messages: Vec<Vec<u8>> = latest.iter().map(|(_, m)| m.to_vec()).collect();
        sqlx::query!(
            r#"INSERT INTO wa_pending_inbound (device_id, chat, sender, id, message, inserted_at)
               SELECT $1, r.chat, r.sender, r.id, r.message, $6
               FROM UNNEST($2::text[], $3::text[], $4::text[], $5::bytea[]) AS r(chat, sender, id, message)
               ON CONFLICT (device_id, chat, sender, id)
               DO UPDATE SET message = excluded.message, inserted_at = excluded.inserted_at"#,
            self.device,
            &chats,
            &senders,
            &ids,
            &messages,
            now,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn get_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar!(
            r#"SELECT message FROM wa_pending_inbound
               WHERE device_id = $1 AND chat = $2 AND sender = $3 AND id = $4"#,
            self.device,
            chat,
            sender,
            id
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)
    }

    async fn delete_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<()> {
        self.delete_pending_inbound_batch(&[PendingInboundKey { chat, sender, id }])
            .await
    }

    async fn delete_pending_inbound_batch(&self, keys: &[PendingInboundKey<'_>]) -> Result<()> {
        let _pass = self.writing()?;
        if keys.is_empty() {
            return Ok(());
        }
        let chats: Vec<String> = keys.iter().map(|k| k.chat.to_owned()).collect();
        let senders: Vec<String> = keys.iter().map(|k| k.sender.to_owned()).collect();
        let ids: Vec<String> = keys.iter().map(|k| k.id.to_owned()).collect();
        sqlx::query!(
            r#"DELETE FROM wa_pending_inbound p USING
                   UNNEST($2::text[], $3::text[], $4::text[]) AS k(chat, sender, id)
               WHERE p.device_id = $1 AND p.chat = k.chat AND p.sender = k.sender AND p.id = k.id"#,
            self.device,
            &chats,
            &senders,
            &ids,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn delete_expired_pending_inbound(&self, cutoff_timestamp: i64) -> Result<u32> {
        let _pass = self.writing()?;
        let done = sqlx::query!(
            "DELETE FROM wa_pending_inbound WHERE device_id = $1 AND inserted_at < $2",
            self.device,
            cutoff_timestamp
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(u32::try_from(done.rows_affected()).unwrap_or(u32::MAX))
    }
}
