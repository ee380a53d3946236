//! Secrets of messages this device sent, kept so that replies to them (votes, reactions, edits)
//! can be decrypted.

use async_trait::async_trait;
use wacore::store::error::{Result, StoreError};
use wacore::store::traits::{MsgSecretEntry, MsgSecretStore};

use crate::{Column, PgStore, db};

#[async_trait]
impl MsgSecretStore for PgStore {
    async fn put_msg_secrets(&self, entries: Vec<MsgSecretEntry>) -> Result<usize> {
        let _pass = self.writing()?;
        let stored = entries.len();
        if entries.is_empty() {
            return Ok(0);
        }
        // Merge duplicates within the batch the way the conflict clause merges with stored rows:
        // the later deadline (0 = never) and the later parent time win, the last secret wins.
        let mut merged: Vec<MsgSecretEntry> = Vec::with_capacity(entries.len());
        let mut index = std::collections::HashMap::new();
        for entry in entries {
            let key = (
                entry.chat.clone(),
                entry.sender.clone(),
                entry.msg_id.clone(),
            );
            match index.get(&key) {
                Some(&at) => {
                    let existing: &mut MsgSecretEntry = &mut merged[at];
                    existing.secret = entry.secret;
                    existing.expires_at = wacore::store::traits::merge_msg_secret_expiry(
                        existing.expires_at,
                        entry.expires_at,
                    );
                    existing.message_ts = wacore::store::traits::merge_msg_secret_message_ts(
                        existing.message_ts,
                        entry.message_ts,
                    );
                }
                None => {
                    index.insert(key, merged.len());
                    merged.push(entry);
                }
            }
        }
        let chats: Vec<String> = merged.iter().map(|e| e.chat.to_string()).collect();
        let senders: Vec<String> = merged.iter().map(|e| e.sender.to_string()).collect();
        let ids: Vec<String> = merged.iter().map(|e| e.msg_id.to_string()).collect();
        let secrets = merged
            .iter()
            .map(|e| {
                let row = secret_row(&e.chat, &e.sender, &e.msg_id);
                Ok(self.seal(Column::MsgSecret, &row, &e.secret)?.into_owned())
            })
            .collect::<Result<Vec<Vec<u8>>>>()?;
        let expires: Vec<i64> = merged.iter().map(|e| e.expires_at).collect();
        let times: Vec<i64> = merged.iter().map(|e| e.message_ts).collect();
        sqlx::query!(
            r#"INSERT INTO wa_msg_secrets AS s
                   (device_id, chat, sender, msg_id, secret, expires_at, message_ts)
               SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::bytea[],
                                        $6::bigint[], $7::bigint[])
               ON CONFLICT (device_id, chat, sender, msg_id) DO UPDATE SET
                   secret = excluded.secret,
                   expires_at = CASE WHEN s.expires_at = 0 OR excluded.expires_at = 0 THEN 0
                                     ELSE greatest(s.expires_at, excluded.expires_at) END,
                   message_ts = greatest(s.message_ts, excluded.message_ts)"#,
            self.device,
            &chats,
            &senders,
            &ids,
            &secrets,
            &expires,
            &times,
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(stored)
    }

    async fn get_msg_secret(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get_msg_secret_with_ts(chat, sender, msg_id)
            .await?
            .map(|(secret, _)| secret))
    }

    async fn get_msg_secret_with_ts(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<(Vec<u8>, i64)>> {
        let row = sqlx::query!(
            r#"SELECT secret, message_ts FROM wa_msg_secrets
               WHERE device_id = $1 AND chat = $2 AND sender = $3 AND msg_id = $4"#,
            self.device,
            chat,
            sender,
            msg_id
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let row = match row {
            Some(row) => {
                let place = secret_row(chat, sender, msg_id);
                Some((
                    self.open(Column::MsgSecret, &place, row.secret)?,
                    row.message_ts,
                ))
            }
            None => None,
        };
        match row {
            Some((secret, ts)) if secret.len() == wacore::reporting_token::MESSAGE_SECRET_SIZE => {
                Ok(Some((secret, ts)))
            }
            Some(_) => Err(StoreError::Validation(
                "stored message secret has the wrong size".to_owned(),
            )),
            None => Ok(None),
        }
    }

    async fn delete_expired_msg_secrets(&self, cutoff_timestamp: i64) -> Result<u32> {
        let _pass = self.writing()?;
        let done = sqlx::query!(
            r#"DELETE FROM wa_msg_secrets
               WHERE device_id = $1 AND expires_at <> 0 AND expires_at <= $2"#,
            self.device,
            cutoff_timestamp
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(u32::try_from(done.rows_affected()).unwrap_or(u32::MAX))
    }
}

/// The row key of a message secret in the sealed value's associated data.
fn secret_row(chat: &str, sender: &str, msg_id: &str) -> Vec<u8> {
    [chat.as_bytes(), sender.as_bytes(), msg_id.as_bytes()].join(&0u8)
}
