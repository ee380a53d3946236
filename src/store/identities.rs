//! The per-device identity store: LID <-> phone-number pairs (whatsapp-rust's own mappings,
//! which it stores through the key store) and the names learned for WhatsApp users.

use std::collections::HashMap;

use sqlx::{PgConnection, PgPool};
use wuts_wa_store::PgStore;

use super::StoreError;
use crate::domain::{
    ContactId, DeviceId, DeviceScope, Identity, Lid, Names, PhoneNumber, TenantId,
};

/// The LIDs of phone numbers, for the numbers this device knows (whatsapp-rust's own
/// mappings, read through the key store that owns them).
pub async fn lids_of_phones(
    pool: &PgPool,
    scope: &DeviceScope,
    phones: &[PhoneNumber],
) -> Result<HashMap<PhoneNumber, Lid>, StoreError> {
    let digits: Vec<String> = phones.iter().map(|p| p.as_str().to_owned()).collect();
    let found = PgStore::lids_of_phones(pool, scope.device().0, &digits).await?;
    Ok(found
        .into_iter()
        .filter_map(|(pn, lid)| {
            Some((
                PhoneNumber::from_digits(&pn).ok()?,
                Lid::from_digits(&lid).ok()?,
            ))
        })
        .collect())
}

/// The phone numbers of LIDs, for the LIDs this device knows.
pub async fn phones_of_lids(
    pool: &PgPool,
    scope: &DeviceScope,
    lids: &[Lid],
) -> Result<HashMap<Lid, PhoneNumber>, StoreError> {
    let digits: Vec<String> = lids.iter().map(|l| l.as_str().to_owned()).collect();
    let found = PgStore::phones_of_lids(pool, scope.device().0, &digits).await?;
    Ok(found
        .into_iter()
        .filter_map(|(lid, pn)| {
            Some((
                Lid::from_digits(&lid).ok()?,
                PhoneNumber::from_digits(&pn).ok()?,
            ))
        })
        .collect())
}

/// Both halves of each user's identity, from what the device knows: a phone number gains its
/// LID, a LID its phone number. Order and length follow `users`.
pub async fn complete(
    pool: &PgPool,
    scope: &DeviceScope,
    users: &[ContactId],
) -> Result<Vec<Identity>, StoreError> {
    let phones: Vec<PhoneNumber> = users.iter().filter_map(|u| u.phone().cloned()).collect();
    let lids: Vec<Lid> = users.iter().filter_map(|u| u.lid().cloned()).collect();
    let lid_of = lids_of_phones(pool, scope, &phones).await?;
    let phone_of = phones_of_lids(pool, scope, &lids).await?;
    Ok(users
        .iter()
        .map(|user| match user {
            ContactId::Phone(phone) => {
                Identity::new(Some(phone.clone()), lid_of.get(phone).cloned())
            }
            ContactId::Lid(lid) => Identity::new(phone_of.get(lid).cloned(), Some(lid.clone())),
        })
        .collect())
}

/// Names stored under these JIDs (phone-number or LID JIDs).
pub async fn names_of(
    pool: &PgPool,
    scope: &DeviceScope,
    jids: &[String],
) -> Result<HashMap<String, Names>, StoreError> {
    if jids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query!(
        r#"SELECT c.jid, c.full_name, c.first_name, c.push_name, c.business_name
           FROM contact_names c JOIN devices d ON d.id = c.device_id
           WHERE d.tenant_id = $1 AND c.device_id = $2 AND c.jid = ANY($3)"#,
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
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

/// Fills each identity's names from what is stored under its phone-number and LID JIDs.
pub async fn attach_names(
    pool: &PgPool,
    scope: &DeviceScope,
    identities: &mut [Identity],
) -> Result<(), StoreError> {
    let mut refs: Vec<&mut Identity> = identities.iter_mut().collect();
    attach_names_to(pool, scope, &mut refs).await
}

/// [`attach_names`], for identities held elsewhere.
pub async fn attach_names_to(
    pool: &PgPool,
    scope: &DeviceScope,
    identities: &mut [&mut Identity],
) -> Result<(), StoreError> {
    let jids: Vec<String> = identities
        .iter()
        .flat_map(|i| [i.pn_jid(), i.lid_jid()])
        .flatten()
        .collect();
    if jids.is_empty() {
        return Ok(());
    }
    let names = names_of(pool, scope, &jids).await?;
    for identity in identities.iter_mut() {
        for jid in [identity.pn_jid(), identity.lid_jid()]
            .into_iter()
            .flatten()
        {
            if let Some(found) = names.get(&jid) {
                identity.names.merge(found);
            }
        }
    }
    Ok(())
}

/// A named contact of a device, with its LID/PN pair where known.
#[derive(Debug, Clone)]
pub struct NamedContact {
    /// The JID the names were stored under.
    pub jid: String,
    pub identity: Identity,
}

/// Every contact the device has a name for, with the other half of its identity where known.
pub async fn named_contacts(
    pool: &PgPool,
    scope: &DeviceScope,
) -> Result<Vec<NamedContact>, StoreError> {
    let rows = sqlx::query!(
        r#"SELECT c.jid, c.full_name, c.first_name, c.push_name, c.business_name
           FROM contact_names c JOIN devices d ON d.id = c.device_id
           WHERE d.tenant_id = $1 AND c.device_id = $2
           ORDER BY c.jid"#,
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
    )
    .fetch_all(pool)
    .await?;
    let users: Vec<Option<ContactId>> = rows.iter().map(|r| ContactId::from_wire(&r.jid)).collect();
    let known: Vec<ContactId> = users.iter().flatten().cloned().collect();
    let mut completed = complete(pool, scope, &known).await?.into_iter();
    Ok(rows
        .into_iter()
        .zip(users)
        .map(|(r, user)| {
            let mut identity = match user {
                Some(_) => completed.next().unwrap_or_default(),
                None => Identity::default(),
            };
            identity.names = Names {
                full_name: r.full_name,
                first_name: r.first_name,
                push_name: r.push_name,
                business_name: r.business_name,
            };
            NamedContact {
                jid: r.jid,
                identity,
            }
        })
        .collect())
}

/// Forgets the names a device learned (it logged out).
pub async fn erase_names(pool: &PgPool, scope: &DeviceScope) -> Result<(), StoreError> {
    sqlx::query!(
        r#"DELETE FROM contact_names c USING devices d
           WHERE d.id = c.device_id AND d.tenant_id = $1 AND c.device_id = $2"#,
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
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
    scope: &DeviceScope,
    updates: &[NameUpdate],
) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    record_names_in(&mut conn, scope, updates).await.map(|_| ())
}

/// A push name the device had not seen for that JID.
#[derive(Debug, Clone)]
pub struct PushNameChange {
    pub jid: String,
    pub push_name: String,
}

/// [`record_names`] on the caller's connection (or transaction); answers the push names that
/// are new or changed.
pub async fn record_names_in(
    conn: &mut PgConnection,
    scope: &DeviceScope,
    updates: &[NameUpdate],
) -> Result<Vec<PushNameChange>, StoreError> {
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
        return Ok(Vec::new());
    }
    let jids: Vec<String> = updates.iter().map(|u| u.jid.clone()).collect();
    let full: Vec<Option<String>> = updates.iter().map(|u| non_empty(&u.full_name)).collect();
    let first: Vec<Option<String>> = updates.iter().map(|u| non_empty(&u.first_name)).collect();
    let push: Vec<Option<String>> = updates.iter().map(|u| non_empty(&u.push_name)).collect();
    let business: Vec<Option<String>> = updates
        .iter()
        .map(|u| non_empty(&u.business_name))
        .collect();
    let changed = sqlx::query_as!(
        PushNameChange,
        r#"WITH incoming AS (
               SELECT * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                   AS u (jid, full_name, first_name, push_name, business_name)
           ), before AS (
               SELECT c.jid, c.push_name FROM contact_names c
               JOIN incoming i ON i.jid = c.jid WHERE c.device_id = $1
           ), written AS (
               INSERT INTO contact_names AS c
                   (device_id, jid, full_name, first_name, push_name, business_name)
               SELECT $1, * FROM incoming
               WHERE EXISTS (SELECT 1 FROM devices WHERE id = $1 AND tenant_id = $7)
               ON CONFLICT (device_id, jid) DO UPDATE SET
                   full_name = coalesce(excluded.full_name, c.full_name),
                   first_name = coalesce(excluded.first_name, c.first_name),
                   push_name = coalesce(excluded.push_name, c.push_name),
                   business_name = coalesce(excluded.business_name, c.business_name),
                   updated_at = now()
               RETURNING c.jid, c.push_name
           )
           SELECT w.jid AS "jid!", w.push_name AS "push_name!" FROM written w
           LEFT JOIN before b ON b.jid = w.jid
           WHERE w.push_name IS NOT NULL AND w.push_name IS DISTINCT FROM b.push_name"#,
        scope.device() as DeviceId,
        &jids,
        &full as &[Option<String>],
        &first as &[Option<String>],
        &push as &[Option<String>],
        &business as &[Option<String>],
        scope.tenant() as TenantId,
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(changed)
}
