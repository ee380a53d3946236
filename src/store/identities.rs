//! The per-device identity store: names learned for WhatsApp users.

use sqlx::PgPool;

use super::StoreError;
use crate::domain::DeviceId;

/// Names learned for one user JID. `None` leaves a stored name as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameUpdate {
    pub jid: String,
    pub full_name: Option<String>,
    pub first_name: Option<String>,
    pub push_name: Option<String>,
    pub business_name: Option<String>,
}

impl NameUpdate {
    /// Whether there is no name to record (empty strings count as none).
    pub fn is_empty(&self) -> bool {
        [
            &self.full_name,
            &self.first_name,
            &self.push_name,
            &self.business_name,
        ]
        .iter()
        .all(|n| n.as_deref().is_none_or(str::is_empty))
    }
}

fn non_empty(name: &Option<String>) -> Option<String> {
    name.as_ref().filter(|n| !n.trim().is_empty()).cloned()
}

/// Upserts names, keeping stored ones where the update has none.
pub async fn record_names(
    pool: &PgPool,
    device: DeviceId,
    updates: &[NameUpdate],
) -> Result<(), StoreError> {
    // One row per JID: a statement may not update the same row twice.
    let mut merged: Vec<NameUpdate> = Vec::with_capacity(updates.len());
    for update in updates {
        match merged.iter_mut().find(|m| m.jid == update.jid) {
            Some(existing) => {
                for (into, from) in [
                    (&mut existing.full_name, &update.full_name),
                    (&mut existing.first_name, &update.first_name),
                    (&mut existing.push_name, &update.push_name),
                    (&mut existing.business_name, &update.business_name),
                ] {
                    if non_empty(from).is_some() {
                        into.clone_from(from);
                    }
                }
            }
            None => merged.push(update.clone()),
        }
    }
    let updates = merged;
    if updates.is_empty() {
        return Ok(());
    }
    let jids: Vec<String> = updates.iter().map(|u| u.jid.clone()).collect();
    let full: Vec<Option<String>> = updates.iter().map(|u| non_empty(&u.full_name)).collect();
    let first: Vec<Option<String>> = updates.iter().map(|u| non_empty(&u.first_name)).collect();
    let push: Vec<Option<String>> = updates.iter().map(|u| non_empty(&u.push_name)).collect();
    let business: Vec<Option<String>> = updates
        .iter()
        .map(|u| non_empty(&u.business_name))
        .collect();
    sqlx::query!(
        r#"INSERT INTO contact_names AS c
               (device_id, jid, full_name, first_name, push_name, business_name)
           SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
           ON CONFLICT (device_id, jid) DO UPDATE SET
               full_name = coalesce(excluded.full_name, c.full_name),
               first_name = coalesce(excluded.first_name, c.first_name),
               push_name = coalesce(excluded.push_name, c.push_name),
               business_name = coalesce(excluded.business_name, c.business_name),
               updated_at = now()"#,
        device as DeviceId,
        &jids,
        &full as &[Option<String>],
        &first as &[Option<String>],
        &push as &[Option<String>],
        &business as &[Option<String>],
    )
    .execute(pool)
    .await?;
    Ok(())
}
