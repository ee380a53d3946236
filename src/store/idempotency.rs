//! Answers to requests sent with an `Idempotency-Key` (the HTTP behaviour is
//! `http::idempotency`), shared by every gateway node.
//!
//! A request claims its key with one `INSERT ... ON CONFLICT DO NOTHING`; only the claimant
//! completes the claim with the answer or releases it, so a key is answered by one request at a
//! time, on whichever node. Rows are kept for [`RETENTION`]; an expired row, or a claim whose
//! request has plainly died (older than the caller's bound), is taken over by the next request.
//! Each function takes the key's tenant (`None`: the master-token scope) first.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;
use crate::domain::TenantId;
use crate::domain::idempotency::{Fingerprint, KeyId};

/// How long a key's answer is kept and answered again.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);

/// A claim held by the request answering under a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub tenant: Option<TenantId>,
    pub key: KeyId,
    claim: Uuid,
}

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is this request's to answer: complete or release the claim.
    Held(Held),
    /// The key was answered: the first request's fingerprint, status and sealed answer.
    Answered {
        fingerprint: Fingerprint,
        status: u16,
        answer: Vec<u8>,
    },
    /// Another request holds the key and has not answered yet.
    InProgress { fingerprint: Fingerprint },
    /// The key was released between the claim and the read: claim it again.
    Vacant,
}

fn fingerprint_of(bytes: &[u8]) -> Fingerprint {
    let mut out = [0u8; 32];
    if bytes.len() == out.len() {
        out.copy_from_slice(bytes);
    }
    Fingerprint(out)
}

fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// Claims `key` for a request with `fingerprint`, or says who has it. A claim older than
/// `abandoned_after` whose request has not answered is taken over by the same request (its node
/// died, or lost its connection before releasing); an expired row by any request.
pub async fn claim(
    pool: &PgPool,
    tenant: Option<TenantId>,
    key: KeyId,
    fingerprint: Fingerprint,
    abandoned_after: Duration,
) -> Result<Claim, StoreError> {
    let claim = Uuid::new_v4();
    let held = Held { tenant, key, claim };
    let inserted = sqlx::query!(
        r#"INSERT INTO idempotency_keys (key_hash, tenant_id, fingerprint, claim_id)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (key_hash) DO NOTHING"#,
        &key.0[..],
        tenant as Option<TenantId>,
        &fingerprint.0[..],
        claim,
    )
    .execute(pool)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Claim::Held(held));
    }
    let Some(found) = sqlx::query!(
        r#"SELECT fingerprint, status, answer,
                  created_at < now() - make_interval(secs => $3) AS "expired!",
                  completed_at IS NULL AND created_at < now() - make_interval(secs => $4)
                      AS "abandoned!"
           FROM idempotency_keys
           WHERE key_hash = $1 AND tenant_id IS NOT DISTINCT FROM $2"#,
        &key.0[..],
        tenant as Option<TenantId>,
        secs(RETENTION),
        secs(abandoned_after),
    )
    .fetch_optional(pool)
    .await?
    else {
        return Ok(Claim::Vacant);
    };
    let found_fingerprint = fingerprint_of(&found.fingerprint);
    if found.expired || (found.abandoned && found_fingerprint == fingerprint) {
        // The same conditions again, under the row's lock: of two requests taking over at once,
        // one does.
        let taken = sqlx::query!(
            r#"UPDATE idempotency_keys
               SET fingerprint = $3, claim_id = $4, created_at = now(),
                   completed_at = NULL, status = NULL, answer = NULL
               WHERE key_hash = $1 AND tenant_id IS NOT DISTINCT FROM $2
                 AND (created_at < now() - make_interval(secs => $5)
                      OR (completed_at IS NULL AND fingerprint = $3
                          AND created_at < now() - make_interval(secs => $6)))"#,
            &key.0[..],
            tenant as Option<TenantId>,
            &fingerprint.0[..],
            claim,
            secs(RETENTION),
            secs(abandoned_after),
        )
        .execute(pool)
        .await?;
        if taken.rows_affected() == 1 {
            return Ok(Claim::Held(held));
        }
        return Ok(Claim::InProgress {
            fingerprint: found_fingerprint,
        });
    }
    Ok(match (found.status, found.answer) {
        (Some(status), Some(answer)) => Claim::Answered {
            fingerprint: found_fingerprint,
            status: u16::try_from(status).unwrap_or(500),
            answer,
        },
        _ => Claim::InProgress {
            fingerprint: found_fingerprint,
        },
    })
}

/// Stores the answer of the request holding the claim. `false` when the claim is no longer
/// this request's (it was taken over after it was thought abandoned).
pub async fn complete(
    pool: &PgPool,
    held: &Held,
    status: u16,
    answer: &[u8],
) -> Result<bool, StoreError> {
    let done = sqlx::query!(
        r#"UPDATE idempotency_keys SET completed_at = now(), status = $4, answer = $5
           WHERE key_hash = $1 AND tenant_id IS NOT DISTINCT FROM $2 AND claim_id = $3
             AND completed_at IS NULL"#,
        &held.key.0[..],
        held.tenant as Option<TenantId>,
        held.claim,
        i16::try_from(status).unwrap_or(i16::MAX),
        answer,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives the key up without an answer, so that a retry does the work.
pub async fn release(pool: &PgPool, held: &Held) -> Result<(), StoreError> {
    sqlx::query!(
        r#"DELETE FROM idempotency_keys
           WHERE key_hash = $1 AND tenant_id IS NOT DISTINCT FROM $2 AND claim_id = $3
             AND completed_at IS NULL"#,
        &held.key.0[..],
        held.tenant as Option<TenantId>,
        held.claim,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Forgets up to `batch` rows past [`RETENTION`]; answers how many. Rows are found by the
/// `created_at` index, so a prune with nothing to do costs one index probe.
pub async fn prune(pool: &PgPool, batch: i64) -> Result<u64, StoreError> {
    let done = sqlx::query!(
        r#"DELETE FROM idempotency_keys WHERE key_hash IN (
               SELECT key_hash FROM idempotency_keys
               WHERE created_at < now() - make_interval(secs => $1)
               LIMIT $2)"#,
        secs(RETENTION),
        batch,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
