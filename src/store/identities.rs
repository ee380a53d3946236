//! The per-device identity store: LID <-> phone-number pairs (whatsapp-rust's own mappings,
//! which it stores through the key store) and the names learned for WhatsApp users.

use std::collections::HashMap;

use sqlx::PgPool;

use super::StoreError;
use crate::domain::{DeviceId, TenantId};

/// Names known for a user. Empty fields are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub full_name: Option<String>,
    pub first_name: Option<String>,
    pub push_name: Option<String>,
    pub business_name: Option<String>,
}

impl Names {
    /// Fills what `self` lacks from `other`.
    pub fn merge(&mut self, other: &Names) {
        for (into, from) in [
            (&mut self.full_name, &other.full_name),
            (&mut self.first_name, &other.first_name),
            (&mut self.push_name, &other.push_name),
            (&mut self.business_name, &other.business_name),
        ] {
            if into.is_none() {
                into.clone_from(from);
            }
        }
    }
}

/// The LIDs of phone numbers (digits -> LID digits), for the numbers this device knows.
pub async fn lids_of_phones(
    pool: &PgPool,
    tenant: TenantId,
    device: DeviceId,
    phones: &[String],
) -> Result<HashMap<String, String>, StoreError> {
    if phones.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query!(
        r#"SELECT p.pn, p.lid FROM wa_pn_lids p
           JOIN devices d ON d.id = p.device_id
           WHERE d.tenant_id = $1 AND p.device_id = $2 AND p.pn = ANY($3)"#,
        tenant as TenantId,
        device as DeviceId,
        phones,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.pn, r.lid)).collect())
}

/// The phone numbers of LIDs (LID digits -> digits), for the LIDs this device knows.
pub async fn phones_of_lids(
    pool: &PgPool,
    tenant: TenantId,
    device: DeviceId,
    lids: &[String],
) -> Result<HashMap<String, String>, StoreError> {
    if lids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query!(
        r#"SELECT m.lid, m.pn FROM wa_lid_mappings m
           JOIN devices d ON d.id = m.device_id
           WHERE d.tenant_id = $1 AND m.device_id = $2 AND m.lid = ANY($3)"#,
        tenant as TenantId,
        device as DeviceId,
        lids,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.lid, r.pn)).collect())
}

/// Names stored under these JIDs (phone-number or LID JIDs).
pub async fn names_of(
    pool: &PgPool,
    tenant: TenantId,
    device: DeviceId,
    jids: &[String],
) -> Result<HashMap<String, Names>, StoreError> {
    if jids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query!(
        r#"SELECT c.jid, c.full_name, c.first_name, c.push_name, c.business_name
           FROM contact_names c JOIN devices d ON d.id = c.device_id
           WHERE d.tenant_id = $1 AND c.device_id = $2 AND c.jid = ANY($3)"#,
        tenant as TenantId,
        device as DeviceId,
        jids,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.jid,
                Names {
                    full_name: r.full_name,
                    first_name: r.first_name,
                    push_name: r.push_name,
                    business_name: r.business_name,
                },
            )
        })
        .collect())
}

/// A named contact of a device, with its LID/PN pair where known.
#[derive(Debug, Clone)]
pub struct NamedContact {
    /// The JID the names were stored under.
    pub jid: String,
    pub phone: Option<String>,
    pub lid: Option<String>,
    pub names: Names,
}

/// Every contact the device has a name for.
pub async fn named_contacts(
    pool: &PgPool,
    tenant: TenantId,
    device: DeviceId,
) -> Result<Vec<NamedContact>, StoreError> {
    let rows = sqlx::query!(
        r#"SELECT c.jid, c.full_name, c.first_name, c.push_name, c.business_name,
                  coalesce(m.pn, CASE WHEN c.jid LIKE '%@s.whatsapp.net'
                                      THEN split_part(c.jid, '@', 1) END) AS phone,
                  coalesce(p.lid, CASE WHEN c.jid LIKE '%@lid'
                                       THEN split_part(c.jid, '@', 1) END) AS lid
           FROM contact_names c
           JOIN devices d ON d.id = c.device_id
           LEFT JOIN wa_lid_mappings m
                  ON m.device_id = c.device_id AND c.jid = m.lid || '@lid'
           LEFT JOIN wa_pn_lids p
                  ON p.device_id = c.device_id AND c.jid = p.pn || '@s.whatsapp.net'
           WHERE d.tenant_id = $1 AND c.device_id = $2
           ORDER BY c.jid"#,
        tenant as TenantId,
        device as DeviceId,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| NamedContact {
            jid: r.jid,
            phone: r.phone,
            lid: r.lid,
            names: Names {
                full_name: r.full_name,
                first_name: r.first_name,
                push_name: r.push_name,
                business_name: r.business_name,
            },
        })
        .collect())
}

/// Forgets the names a device learned (it logged out).
pub async fn erase_names(pool: &PgPool, device: DeviceId) -> Result<(), StoreError> {
    sqlx::query!(
        "DELETE FROM contact_names WHERE device_id = $1",
        device as DeviceId
    )
    .execute(pool)
    .await?;
    Ok(())
}

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
