//! Each device's webhook, its delivery queue and the attempts made. Secrets are sealed with the
//! store key (when one is configured) under the webhook's id, and opened only to sign.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use wuts_wa_store::{Column, Place, Sealer};

use super::StoreError;
use crate::domain::{DeviceId, DeviceScope, EventId, TenantId, UserId, WebhookId};

/// How long a rotated-out secret keeps signing alongside the new one.
pub const ROTATION_OVERLAP: chrono::Duration = chrono::Duration::hours(24);

/// A webhook as configured (never with its secret).
#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: WebhookId,
    pub url: String,
    pub enabled_events: Vec<String>,
    pub enabled: bool,
    pub retry_attempts: i32,
    pub timeout_secs: i32,
    pub headers: serde_json::Value,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What `POST /webhook` sets.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub enabled_events: Vec<String>,
    pub enabled: bool,
    pub retry_attempts: i32,
    pub timeout_secs: i32,
    pub headers: serde_json::Value,
    /// The signing secret, as shown to the user (`whsec_...`).
    pub secret: String,
}

fn place(device: DeviceId, id: WebhookId) -> (Uuid, [u8; 16]) {
    (device.0, *id.0.as_bytes())
}

fn seal_error(err: wuts_wa_store::SealError) -> StoreError {
    StoreError::Db(sqlx::Error::Protocol(format!("webhook secret: {err}")))
}

/// Configures (or replaces) the device's webhook. A different secret than the current one is a
/// rotation: the current one keeps signing for [`ROTATION_OVERLAP`]. Replacing a webhook
/// enables it again (clearing why it was disabled). Answers `None` when the device is gone.
pub async fn put(
    pool: &PgPool,
    sealer: &Sealer,
    scope: &DeviceScope,
    config: &WebhookConfig,
) -> Result<Option<Webhook>, StoreError> {
    let mut tx = pool.begin().await?;
    let existing = sqlx::query!(
        r#"SELECT id AS "id: WebhookId", secret FROM webhooks
           WHERE tenant_id = $1 AND device_id = $2 FOR UPDATE"#,
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let id = existing.as_ref().map_or_else(WebhookId::new, |row| row.id);
    let (device, row_key) = place(scope.device(), id);
    let at = Place {
        column: Column::WebhookSecret,
        device,
        row: &row_key,
    };
    let sealed = sealer
        .seal(at, config.secret.as_bytes())
        .map_err(seal_error)?
        .into_owned();
    // The outgoing secret, when this is a rotation (a secret that no longer opens is dropped).
    let rotated_out = existing.and_then(|row| {
        let old = sealer.open(at, row.secret.clone()).ok()?;
        (old != config.secret.as_bytes()).then_some(row.secret)
    });
    let row = sqlx::query_as!(
        Webhook,
        r#"INSERT INTO webhooks (id, tenant_id, device_id, url, enabled_events, enabled,
                                 retry_attempts, timeout_secs, secret, headers)
           SELECT $3, $1, $2, $4, $5, $6, $7, $8, $9, $10
           FROM devices WHERE id = $2 AND tenant_id = $1
           ON CONFLICT (device_id) DO UPDATE SET
               url = excluded.url,
               enabled_events = excluded.enabled_events,
               enabled = excluded.enabled,
               retry_attempts = excluded.retry_attempts,
               timeout_secs = excluded.timeout_secs,
               secret = excluded.secret,
               headers = excluded.headers,
               previous_secret = CASE WHEN $11::bytea IS NULL THEN webhooks.previous_secret
                                      ELSE $11 END,
               previous_until = CASE WHEN $11::bytea IS NULL THEN webhooks.previous_until
                                     ELSE now() + $12::interval END,
               disabled_reason = NULL,
               failing_since = NULL,
               updated_at = now()
           RETURNING id AS "id: WebhookId", url, enabled_events, enabled, retry_attempts,
                     timeout_secs, headers, disabled_reason, created_at, updated_at"#,
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
        id as WebhookId,
        config.url,
        &config.enabled_events,
        config.enabled,
        config.retry_attempts,
        config.timeout_secs,
        sealed,
        config.headers,
        rotated_out,
        sqlx::postgres::types::PgInterval::try_from(ROTATION_OVERLAP.to_std().unwrap_or_default())
            .unwrap_or_default(),
    )
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// The device's webhook.
pub async fn get(pool: &PgPool, scope: &DeviceScope) -> Result<Option<Webhook>, StoreError> {
    Ok(sqlx::query_as!(
        Webhook,
        r#"SELECT id AS "id: WebhookId", url, enabled_events, enabled, retry_attempts,
                  timeout_secs, headers, disabled_reason, created_at, updated_at
           FROM webhooks WHERE tenant_id = $1 AND device_id = $2"#,
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
    )
    .fetch_optional(pool)
    .await?)
}

/// A device's delivery queue: how many deliveries wait, and since when the oldest does.
#[derive(Debug, Clone)]
pub struct Queue {
    pub pending: i64,
    pub oldest_queued_at: Option<DateTime<Utc>>,
}

/// The device's delivery queue (empty when it has no webhook).
pub async fn queue(pool: &PgPool, scope: &DeviceScope) -> Result<Queue, StoreError> {
    let row = sqlx::query!(
        r#"SELECT count(d.position) AS "pending!", min(d.queued_at) AS oldest
           FROM webhooks w JOIN deliveries d ON d.webhook_id = w.id
           WHERE w.tenant_id = $1 AND w.device_id = $2"#,
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
    )
    .fetch_one(pool)
    .await?;
    Ok(Queue {
        pending: row.pending,
        oldest_queued_at: row.oldest,
    })
}

/// Removes the device's webhook and its queue; answers whether there was one.
pub async fn delete(pool: &PgPool, scope: &DeviceScope) -> Result<bool, StoreError> {
    let done = sqlx::query!(
        "DELETE FROM webhooks WHERE tenant_id = $1 AND device_id = $2",
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// The secrets that sign a claimed delivery: the current one, and a rotated-out one still in
/// its overlap.
pub fn claim_secrets(sealer: &Sealer, claim: &Claim) -> Result<Vec<Vec<u8>>, StoreError> {
    open_secrets(
        sealer,
        claim.device_id,
        claim.webhook_id,
        claim.secret.clone(),
        claim.previous_secret.clone(),
    )
}

fn open_secrets(
    sealer: &Sealer,
    device: DeviceId,
    id: WebhookId,
    secret: Vec<u8>,
    previous: Option<Vec<u8>>,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let (device, row_key) = place(device, id);
    let at = Place {
        column: Column::WebhookSecret,
        device,
        row: &row_key,
    };
    let mut secrets = vec![sealer.open(at, secret).map_err(seal_error)?];
    if let Some(previous) = previous
        && let Ok(open) = sealer.open(at, previous)
    {
        secrets.push(open);
    }
    Ok(secrets)
}

/// The secrets that sign the device's deliveries now: the current one, and a rotated-out one
/// still in its overlap.
pub async fn signing_secrets(
    pool: &PgPool,
    sealer: &Sealer,
    device: DeviceId,
    id: WebhookId,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let Some(row) = sqlx::query!(
        r#"SELECT secret, CASE WHEN previous_until > now() THEN previous_secret END AS previous
           FROM webhooks WHERE id = $1 AND device_id = $2"#,
        id as WebhookId,
        device as DeviceId,
    )
    .fetch_optional(pool)
    .await?
    else {
        return Ok(Vec::new());
    };
    open_secrets(sealer, device, id, row.secret, row.previous)
}

/// Queues one of the device's events again for its webhook; answers whether there is one,
/// enabled, to queue it for.
pub async fn redeliver(
    pool: &PgPool,
    scope: &DeviceScope,
    event: EventId,
) -> Result<bool, StoreError> {
    let done = sqlx::query!(
        r#"WITH queued AS (
               INSERT INTO deliveries (webhook_id, device_id, event_id)
               SELECT w.id, w.device_id, $3 FROM webhooks w
               WHERE w.tenant_id = $1 AND w.device_id = $2 AND w.enabled
               RETURNING device_id
           )
           SELECT (SELECT count(*) FROM (SELECT pg_notify($4, device_id::text) FROM queued) n)
               AS "queued!""#,
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
        event as EventId,
        super::events::WAKE_CHANNEL,
    )
    .fetch_one(pool)
    .await?;
    Ok(done.queued > 0)
}

/// A delivery a worker holds: the head of a device's queue, leased until its timeout passes.
#[derive(Debug, Clone)]
pub struct Claim {
    pub position: i64,
    pub lease: Uuid,
    pub attempts: i32,
    pub webhook_id: WebhookId,
    pub tenant_id: TenantId,
    pub device_id: DeviceId,
    pub url: String,
    pub enabled_events: Vec<String>,
    pub retry_attempts: i32,
    pub timeout_secs: i32,
    pub headers: serde_json::Value,
    pub failing_since: Option<DateTime<Utc>>,
    pub event_id: EventId,
    pub event: String,
    pub user_id: UserId,
    pub seq: i64,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
    /// The webhook's secret, sealed, and a rotated-out one still in its overlap.
    pub secret: Vec<u8>,
    pub previous_secret: Option<Vec<u8>>,
}

/// Leases up to `limit` due deliveries, each the head of its device's queue and not leased by
/// anyone (`FOR UPDATE SKIP LOCKED`: two workers never take the same one, and a device never
/// has two attempts in flight). A lease lasts the webhook's timeout plus `margin_secs`. Due rows
/// are read in due order and each is checked for an earlier one of its device (an index probe),
/// so a claim reads about as many rows as it leases rather than the whole queue.
pub async fn claim(pool: &PgPool, limit: i64, margin_secs: i32) -> Result<Vec<Claim>, StoreError> {
    let lease = Uuid::new_v4();
    Ok(sqlx::query_as!(
        Claim,
        r#"WITH due AS (
               SELECT d.position FROM deliveries d
               JOIN webhooks w ON w.id = d.webhook_id AND w.enabled
               WHERE d.next_attempt_at <= now()
                 AND (d.leased_until IS NULL OR d.leased_until < now())
                 AND NOT EXISTS (SELECT 1 FROM deliveries earlier
                                 WHERE earlier.device_id = d.device_id
                                   AND earlier.position < d.position)
               ORDER BY d.next_attempt_at LIMIT $1
               FOR UPDATE OF d SKIP LOCKED
           ), leased AS (
               UPDATE deliveries d SET lease = $2,
                   leased_until = now() + make_interval(secs => w.timeout_secs + $3)
               FROM due, webhooks w
               WHERE d.position = due.position AND w.id = d.webhook_id
               RETURNING d.position, d.attempts, d.webhook_id, d.event_id
           )
           SELECT l.position, $2 AS "lease!: Uuid", l.attempts,
                  w.id AS "webhook_id: WebhookId", w.tenant_id AS "tenant_id: TenantId",
                  w.device_id AS "device_id: DeviceId", w.url, w.enabled_events,
                  w.retry_attempts, w.timeout_secs, w.headers, w.failing_since,
                  e.id AS "event_id: EventId", e.event, e.user_id AS "user_id: UserId", e.seq,
                  e.data, e.created_at, w.secret,
                  CASE WHEN w.previous_until > now() THEN w.previous_secret END AS previous_secret
           FROM leased l
           JOIN webhooks w ON w.id = l.webhook_id
           JOIN events e ON e.id = l.event_id"#,
        limit,
        lease,
        margin_secs,
    )
    .fetch_all(pool)
    .await?)
}

/// How one attempt went.
#[derive(Debug, Clone, Default)]
pub struct Attempt {
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
}

/// What follows an attempt.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// 2xx: the event leaves the queue and the device's next one goes.
    Delivered,
    /// Another attempt at `at`.
    Retry { at: DateTime<Utc> },
    /// No attempts left: the event leaves the queue as failed (it stays in the stream).
    GiveUp,
    /// The webhook is disabled; its queue stays, to go on when it is configured again.
    Disable { reason: String },
    /// The event is not one the webhook wants any more: it leaves the queue unsent.
    Skip,
}

/// Records an attempt and what follows it, if the lease is still the worker's (a worker whose
/// lease ran out lost the delivery to another, which records its own): one round trip
/// (`wuts_finish_delivery`, migration 0008).
pub async fn finish(
    pool: &PgPool,
    claim: &Claim,
    attempt: &Attempt,
    outcome: &Outcome,
) -> Result<bool, StoreError> {
    let (name, next_at, reason) = match outcome {
        Outcome::Delivered => ("delivered", None, None),
        Outcome::Retry { at } => ("retry", Some(*at), None),
        Outcome::GiveUp => ("failed", None, None),
        Outcome::Disable { reason } => ("disabled", None, Some(reason.as_str())),
        Outcome::Skip => ("skipped", None, None),
    };
    Ok(sqlx::query_scalar!(
        r#"SELECT wuts_finish_delivery($1, $2, $3, $4, $5, $6, $7, $8, $9) AS "held!""#,
        claim.position,
        claim.lease,
        name,
        next_at,
        reason,
        attempt.status_code,
        attempt.error,
        attempt.duration_ms,
        claim.failing_since.is_some(),
    )
    .fetch_one(pool)
    .await?)
}

/// An attempt as `GET /webhook/deliveries` lists it.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub event_id: EventId,
    pub event: String,
    pub attempt: i32,
    pub status: String,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
    pub attempted_at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// The device's attempts, newest first.
pub async fn attempts(
    pool: &PgPool,
    scope: &DeviceScope,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<AttemptRow>, StoreError> {
    Ok(sqlx::query_as!(
        AttemptRow,
        r#"SELECT a.event_id AS "event_id: EventId", e.event, a.attempt, a.status,
                  a.status_code, a.error, a.duration_ms, a.attempted_at, a.next_attempt_at
           FROM delivery_attempts a
           JOIN webhooks w ON w.id = a.webhook_id
           JOIN events e ON e.id = a.event_id
           WHERE w.tenant_id = $1 AND w.device_id = $2 AND ($3::text IS NULL OR a.status = $3)
           ORDER BY a.id DESC LIMIT $4"#,
        scope.tenant() as TenantId,
        scope.device() as DeviceId,
        status,
        limit,
    )
    .fetch_all(pool)
    .await?)
}

/// The queue as a whole: deliveries waiting, and how long the oldest has waited.
pub async fn backlog(pool: &PgPool) -> Result<(i64, f64), StoreError> {
    let row = sqlx::query!(
        r#"SELECT count(*) AS "pending!",
                  coalesce(extract(epoch FROM now() - min(queued_at))::float8, 0) AS "oldest!"
           FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id AND w.enabled"#
    )
    .fetch_one(pool)
    .await?;
    Ok((row.pending, row.oldest))
}

/// Where a user's pending secret is sealed: under the user's id.
fn pending_place(user: UserId) -> Place<'static> {
    Place {
        column: Column::WebhookSecret,
        device: user.0,
        row: b"pending",
    }
}

/// Saves (or clears, with `None`) the URL applied, with every event and this secret, to each
/// device the user creates from now on.
pub async fn set_pending(
    pool: &PgPool,
    sealer: &Sealer,
    tenant: TenantId,
    user: UserId,
    pending: Option<(&str, &str)>,
) -> Result<(), StoreError> {
    let (url, sealed) = match pending {
        Some((url, secret)) => (
            Some(url),
            Some(
                sealer
                    .seal(pending_place(user), secret.as_bytes())
                    .map_err(seal_error)?
                    .into_owned(),
            ),
        ),
        None => (None, None),
    };
    sqlx::query!(
        r#"UPDATE users SET pending_webhook_url = $3, pending_webhook_secret = $4
           WHERE tenant_id = $1 AND id = $2"#,
        tenant as TenantId,
        user as UserId,
        url,
        sealed,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The URL and secret the user saved for its new devices.
pub async fn pending(
    pool: &PgPool,
    sealer: &Sealer,
    tenant: TenantId,
    user: UserId,
) -> Result<Option<(String, String)>, StoreError> {
    let row = sqlx::query!(
        r#"SELECT pending_webhook_url, pending_webhook_secret FROM users
           WHERE tenant_id = $1 AND id = $2"#,
        tenant as TenantId,
        user as UserId,
    )
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let (Some(url), Some(sealed)) = (row.pending_webhook_url, row.pending_webhook_secret) else {
        return Ok(None);
    };
    let secret = sealer
        .open(pending_place(user), sealed)
        .map_err(seal_error)?;
    Ok(Some((url, String::from_utf8_lossy(&secret).into_owned())))
}
