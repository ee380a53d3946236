//! Events and webhooks (contract section 6): the device's webhook, its event stream, delivery
//! attempts, replays, and the URL a user saves for its new devices.

use std::collections::BTreeMap;

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::delivery::send::RESERVED_HEADERS;
use crate::delivery::sign;
use crate::domain::{DeviceId, EventFilter, EventId, EventKind, UserId};
use crate::http::auth::AuthUser;
use crate::http::device::{DeviceBody, DeviceQuery, requested, scope_of, select_device};
use crate::http::envelope::{Data, Message, Success};
use crate::http::error::{ApiError, FieldError};
use crate::http::extract::{EventPath, Json, OptionalJson, Query};
use crate::http::state::AppState;
use crate::services::webhooks::{
    DEFAULT_RETRY_ATTEMPTS, DEFAULT_TIMEOUT_SECS, WebhookInput, Webhooks,
};
use crate::store::events::Event;
use crate::store::webhooks::Webhook;

fn service(state: &AppState) -> Webhooks<'_> {
    Webhooks {
        db: &state.db,
        deliveries: &state.deliveries,
    }
}

/// A webhook as answered (never with its secret, except once when generated).
#[derive(Serialize)]
pub struct WebhookView {
    id: String,
    webhook_url: String,
    enabled_events: Vec<String>,
    enabled: bool,
    retry_attempts: i32,
    timeout: i32,
    headers: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disabled_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    /// The delivery queue, in `GET /webhook` (ours).
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<QueueView>,
}

/// How many deliveries wait in the device's queue, and since when the oldest does.
#[derive(Serialize)]
pub struct QueueView {
    pending: i64,
    oldest_pending_at: Option<DateTime<Utc>>,
}

impl WebhookView {
    fn of(webhook: Webhook, secret: Option<String>) -> Self {
        Self {
            id: webhook.id.to_string(),
            webhook_url: webhook.url,
            enabled_events: webhook.enabled_events,
            enabled: webhook.enabled,
            retry_attempts: webhook.retry_attempts,
            timeout: webhook.timeout_secs,
            headers: webhook.headers,
            created_at: webhook.created_at,
            updated_at: webhook.updated_at,
            disabled_reason: webhook.disabled_reason,
            secret,
            queue: None,
        }
    }
}

fn default_true() -> bool {
    true
}

#[derive(Deserialize)]
pub struct ConfigureWebhook {
    #[serde(default)]
    device_id: Option<DeviceId>,
    webhook_url: String,
    enabled_events: Vec<String>,
    #[serde(default = "default_true")]
    enabled: bool,
    #[serde(default)]
    retry_attempts: Option<i64>,
    #[serde(default)]
    timeout: Option<i64>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// Most headers a webhook may add.
const MAX_HEADERS: usize = 20;

impl ConfigureWebhook {
    /// Reads every field, naming each one that is wrong.
    fn parse(self) -> Result<WebhookInput, ApiError> {
        let mut invalid = Vec::new();
        if let Err(err) = crate::delivery::address::parse_url(&self.webhook_url) {
            invalid.push(
                FieldError::new("webhook_url", err.to_string())
                    .with_value(self.webhook_url.clone()),
            );
        }
        let events = match EventFilter::parse(&self.enabled_events) {
            Ok(events) => Some(events),
            Err((at, message)) => {
                let field = if self.enabled_events.is_empty() {
                    "enabled_events".to_owned()
                } else {
                    format!("enabled_events[{at}]")
                };
                let mut error = FieldError::new(field, message);
                if let Some(value) = self.enabled_events.get(at) {
                    error = error.with_value(value.clone());
                }
                invalid.push(error);
                None
            }
        };
        let retry_attempts = self
            .retry_attempts
            .unwrap_or(i64::from(DEFAULT_RETRY_ATTEMPTS));
        if !(0..=15).contains(&retry_attempts) {
            invalid.push(
                FieldError::new("retry_attempts", "must be 0 to 15").with_value(retry_attempts),
            );
        }
        let timeout = self.timeout.unwrap_or(i64::from(DEFAULT_TIMEOUT_SECS));
        if !(1..=30).contains(&timeout) {
            invalid.push(FieldError::new("timeout", "must be 1 to 30 seconds").with_value(timeout));
        }
        if let Some(secret) = &self.secret
            && let Err(message) = sign::parse(secret)
        {
            // The value is not echoed: it is a secret.
            invalid.push(FieldError::new("secret", message));
        }
        if self.headers.len() > MAX_HEADERS {
            invalid.push(FieldError::new(
                "headers",
                format!("at most {MAX_HEADERS} headers"),
            ));
        }
        for (name, value) in &self.headers {
            let lower = name.to_ascii_lowercase();
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                invalid.push(FieldError::new(
                    format!("headers.{name}"),
                    "not a valid header name",
                ));
            } else if RESERVED_HEADERS.contains(&lower.as_str()) {
                invalid.push(FieldError::new(
                    format!("headers.{name}"),
                    "is set by the gateway and cannot be replaced",
                ));
            } else if reqwest::header::HeaderValue::from_str(value).is_err() {
                invalid.push(FieldError::new(
                    format!("headers.{name}"),
                    "not a valid header value",
                ));
            }
        }
        match events {
            Some(events) if invalid.is_empty() => Ok(WebhookInput {
                url: self.webhook_url,
                events,
                enabled: self.enabled,
                retry_attempts: retry_attempts as i32,
                timeout_secs: timeout as i32,
                headers: serde_json::to_value(&self.headers).unwrap_or_default(),
                secret: self.secret,
            }),
            _ => Err(ApiError::fields(invalid)),
        }
    }
}

#[derive(Serialize)]
pub struct Configured {
    message: &'static str,
    webhook: WebhookView,
}

/// Configures (or replaces) the device's webhook.
pub async fn configure(
    caller: AuthUser,
    State(state): State<AppState>,
    Json(body): Json<ConfigureWebhook>,
) -> Result<Success<Configured>, ApiError> {
    let requested = body.device_id;
    let input = body.parse()?;
    let device = select_device(&state, &caller, requested).await?;
    let (webhook, secret) = service(&state).configure(&scope_of(&device), input).await?;
    Ok(Success::ok(Configured {
        message: "Webhook configured successfully",
        webhook: WebhookView::of(webhook, secret),
    }))
}

#[derive(Serialize)]
pub struct Shown {
    webhook: WebhookView,
}

pub async fn get(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<DeviceQuery>,
) -> Result<Success<Shown>, ApiError> {
    let device = select_device(&state, &caller, query.device_id).await?;
    let (webhook, queue) = service(&state).get_with_queue(&scope_of(&device)).await?;
    let mut webhook = WebhookView::of(webhook, None);
    webhook.queue = Some(QueueView {
        pending: queue.pending,
        oldest_pending_at: queue.oldest_queued_at,
    });
    Ok(Success::ok(Shown { webhook }))
}

pub async fn delete(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<DeviceQuery>,
) -> Result<Success<Message>, ApiError> {
    let device = select_device(&state, &caller, query.device_id).await?;
    service(&state).delete(&scope_of(&device)).await?;
    Ok(Message::new("Webhook configuration deleted successfully"))
}

#[derive(Serialize)]
pub struct CatalogueEntry {
    name: &'static str,
    description: &'static str,
}

#[derive(Serialize)]
pub struct Catalogue {
    events: Vec<CatalogueEntry>,
}

/// The event catalogue.
pub async fn catalogue(_caller: AuthUser) -> Success<Catalogue> {
    Success::ok(Catalogue {
        events: EventKind::ALL
            .iter()
            .map(|kind| CatalogueEntry {
                name: kind.name(),
                description: kind.description(),
            })
            .collect(),
    })
}

#[derive(Deserialize)]
pub struct PendingWebhook {
    /// Required; `null` clears the saved URL.
    webhook_url: serde_json::Value,
}

#[derive(Serialize)]
pub struct PendingView {
    webhook_url: Option<String>,
    available_events: Vec<&'static str>,
    events_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

#[derive(Serialize)]
pub struct PendingSaved {
    message: &'static str,
    data: PendingView,
}

/// Saves the URL applied, with every event, to each device the caller creates from now on.
pub async fn set_pending(
    caller: AuthUser,
    State(state): State<AppState>,
    Json(body): Json<PendingWebhook>,
) -> Result<Success<PendingSaved>, ApiError> {
    let url = match body.webhook_url {
        serde_json::Value::Null => None,
        serde_json::Value::String(url) if url.trim().is_empty() => None,
        serde_json::Value::String(url) => Some(url.trim().to_owned()),
        _ => {
            return Err(ApiError::field(
                "webhook_url",
                "must be a URL, or null to clear it",
            ));
        }
    };
    if let Some(url) = &url
        && let Err(err) = crate::delivery::address::parse_url(url)
    {
        return Err(ApiError::fields(vec![
            FieldError::new("webhook_url", err.to_string()).with_value(url.clone()),
        ]));
    }
    let secret = service(&state)
        .set_pending(caller.tenant_id, caller.user_id, url.as_deref())
        .await?;
    let message = if url.is_some() {
        "Webhook URL saved: it is applied, with every event, to each device you create from now on"
    } else {
        "Webhook URL cleared"
    };
    Ok(Success::ok(PendingSaved {
        message,
        data: PendingView {
            webhook_url: url,
            available_events: EventKind::ALL.iter().map(|k| k.name()).collect(),
            events_count: EventKind::ALL.len(),
            secret,
        },
    }))
}

#[derive(Serialize)]
pub struct TestView {
    delivered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    duration_ms: u64,
}

/// Sends a `webhook.test` event now.
pub async fn test(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<DeviceQuery>,
    OptionalJson(body): OptionalJson<DeviceBody>,
) -> Result<Data<TestView>, ApiError> {
    let device = select_device(&state, &caller, requested(body, query)).await?;
    let outcome = service(&state)
        .test(&scope_of(&device), device.user_id)
        .await?;
    Ok(Data(TestView {
        delivered: outcome.delivered,
        status_code: outcome.status_code,
        error: outcome.error,
        duration_ms: u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
    }))
}

/// An event as answered and delivered.
#[derive(Serialize)]
pub struct EventView {
    id: String,
    event: String,
    timestamp: i64,
    device_id: DeviceId,
    user_id: UserId,
    seq: i64,
    data: serde_json::Value,
}

impl From<Event> for EventView {
    fn from(event: Event) -> Self {
        Self {
            id: event.id.to_string(),
            event: event.event,
            timestamp: event.created_at.timestamp(),
            device_id: event.device_id,
            user_id: event.user_id,
            seq: event.seq,
            data: event.data,
        }
    }
}

#[derive(Deserialize)]
pub struct EventsQuery {
    #[serde(default)]
    device_id: Option<DeviceId>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    event: Option<String>,
}

/// Reads `limit` (1 to 500, default 100).
fn limit(value: Option<i64>) -> Result<i64, FieldError> {
    let limit = value.unwrap_or(100);
    if (1..=500).contains(&limit) {
        Ok(limit)
    } else {
        Err(FieldError::new("limit", "must be 1 to 500").with_value(limit))
    }
}

#[derive(Serialize)]
pub struct EventList {
    events: Vec<EventView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// The device's events, oldest first.
pub async fn events(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<EventsQuery>,
) -> Result<Success<EventList>, ApiError> {
    let mut invalid = Vec::new();
    let limit = limit(query.limit)
        .map_err(|e| invalid.push(e))
        .unwrap_or(100);
    let after = match query.after.as_deref().filter(|a| !a.is_empty()) {
        None => None,
        Some(raw) => match EventId::parse(raw) {
            Some(id) => Some(id),
            None => {
                invalid.push(
                    FieldError::new("after", "not an event id (evt_ and 32 hex digits)")
                        .with_value(raw),
                );
                None
            }
        },
    };
    let names = match query.event.as_deref().filter(|e| !e.is_empty()) {
        None => None,
        Some(raw) => {
            let mut names = Vec::new();
            for name in raw.split(',').map(str::trim) {
                match EventKind::parse(name) {
                    Some(kind) => names.push(kind.name().to_owned()),
                    None => invalid.push(
                        FieldError::new(
                            "event",
                            "not an event name (GET /webhook/events lists them)",
                        )
                        .with_value(name),
                    ),
                }
            }
            Some(names)
        }
    };
    if !invalid.is_empty() {
        return Err(ApiError::fields(invalid));
    }
    let device = select_device(&state, &caller, query.device_id).await?;
    let page = service(&state)
        .events(&scope_of(&device), after, limit, names)
        .await?;
    Ok(Success::ok(EventList {
        next: page.next.map(|id| id.to_string()),
        events: page.events.into_iter().map(EventView::from).collect(),
    }))
}

#[derive(Deserialize)]
pub struct DeliveriesQuery {
    #[serde(default)]
    device_id: Option<DeviceId>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

#[derive(Serialize)]
pub struct AttemptView {
    event_id: String,
    event: String,
    attempt: i32,
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    duration_ms: i32,
    attempted_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
pub struct AttemptList {
    deliveries: Vec<AttemptView>,
}

/// The device's delivery attempts, newest first.
pub async fn deliveries(
    caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<Success<AttemptList>, ApiError> {
    let mut invalid = Vec::new();
    let limit = limit(query.limit)
        .map_err(|e| invalid.push(e))
        .unwrap_or(100);
    let status = query.status.filter(|s| !s.is_empty());
    if let Some(status) = &status
        && !matches!(status.as_str(), "pending" | "delivered" | "failed")
    {
        invalid.push(
            FieldError::new("status", "must be pending, delivered or failed")
                .with_value(status.clone()),
        );
    }
    if !invalid.is_empty() {
        return Err(ApiError::fields(invalid));
    }
    let device = select_device(&state, &caller, query.device_id).await?;
    let attempts = service(&state)
        .deliveries(&scope_of(&device), status.as_deref(), limit)
        .await?;
    Ok(Success::ok(AttemptList {
        deliveries: attempts
            .into_iter()
            .map(|a| AttemptView {
                event_id: a.event_id.to_string(),
                event: a.event,
                attempt: a.attempt,
                status: a.status,
                status_code: a.status_code,
                error: a.error,
                duration_ms: a.duration_ms,
                attempted_at: a.attempted_at,
                next_attempt_at: a.next_attempt_at,
            })
            .collect(),
    }))
}

#[derive(Serialize)]
pub struct Accepted {}

/// Queues one event again for the device's webhook.
pub async fn redeliver(
    caller: AuthUser,
    State(state): State<AppState>,
    EventPath(id): EventPath,
    Query(query): Query<DeviceQuery>,
) -> Result<Success<Accepted>, ApiError> {
    let device = select_device(&state, &caller, query.device_id).await?;
    service(&state).redeliver(&scope_of(&device), id).await?;
    Ok(Success(axum::http::StatusCode::ACCEPTED, Accepted {}))
}
