//! A device's webhook and event stream: configuring, testing, reading and replaying.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;

use super::Error;
use crate::delivery::address;
use crate::delivery::send::Delivery;
use crate::delivery::{Deliverer, sign};
use crate::domain::{DeviceScope, EventFilter, EventId, EventKind, TenantId, UserId};
use crate::store::events::{self, Event, Page};
use crate::store::webhooks::{self, AttemptRow, Webhook, WebhookConfig};

/// A webhook as asked for (fields already read; the URL is checked here, where DNS is).
#[derive(Debug, Clone)]
pub struct WebhookInput {
    pub url: String,
    pub events: EventFilter,
    pub enabled: bool,
    pub retry_attempts: i32,
    pub timeout_secs: i32,
    pub headers: serde_json::Value,
    /// The user's secret, or `None` to have one generated.
    pub secret: Option<String>,
}

/// What `POST /webhook/test` found.
#[derive(Debug, Clone)]
pub struct TestOutcome {
    pub delivered: bool,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration: Duration,
}

/// A page of events, and where the next one starts.
pub struct EventPage {
    pub events: Vec<Event>,
    pub next: Option<EventId>,
}

pub struct Webhooks<'a> {
    pub db: &'a PgPool,
    pub deliveries: &'a Deliverer,
}

impl Webhooks<'_> {
    /// Refuses URLs that are not `http(s)` or that reach private addresses (unless allowed).
    pub async fn check_url(&self, url: &str) -> Result<(), Error> {
        let parsed = address::parse_url(url).map_err(|e| Error::invalid("webhook_url", e))?;
        address::resolve(&parsed, self.deliveries.config().allow_private)
            .await
            .map_err(|e| Error::invalid("webhook_url", e))?;
        Ok(())
    }

    /// Configures (or replaces) the device's webhook; answers it, with the secret when the
    /// gateway generated it (shown this once).
    pub async fn configure(
        &self,
        scope: &DeviceScope,
        input: WebhookInput,
    ) -> Result<(Webhook, Option<String>), Error> {
        self.check_url(&input.url).await?;
        let generated = input.secret.is_none().then(sign::generate);
        let secret = input
            .secret
            .clone()
            .or_else(|| generated.clone())
            .unwrap_or_default();
        let config = WebhookConfig {
            url: input.url.trim().to_owned(),
            enabled_events: input.events.names(),
            enabled: input.enabled,
            retry_attempts: input.retry_attempts,
            timeout_secs: input.timeout_secs,
            headers: input.headers,
            secret,
        };
        let webhook = webhooks::put(self.db, self.deliveries.sealer(), scope, &config)
            .await?
            .ok_or_else(|| Error::NotFound("device not found".to_owned()))?;
        tracing::info!(webhook.id = %webhook.id, "webhook configured");
        Ok((webhook, generated))
    }

    pub async fn get(&self, scope: &DeviceScope) -> Result<Webhook, Error> {
        webhooks::get(self.db, scope)
            .await?
            .ok_or_else(|| Error::NotFound("the device has no webhook".to_owned()))
    }

    /// The device's webhook with its delivery queue as it stands.
    pub async fn get_with_queue(
        &self,
        scope: &DeviceScope,
    ) -> Result<(Webhook, webhooks::Queue), Error> {
        let webhook = self.get(scope).await?;
        Ok((webhook, webhooks::queue(self.db, scope).await?))
    }

    pub async fn delete(&self, scope: &DeviceScope) -> Result<(), Error> {
        if webhooks::delete(self.db, scope).await? {
            Ok(())
        } else {
            Err(Error::NotFound("the device has no webhook".to_owned()))
        }
    }

    /// Sends a `webhook.test` event now, outside the queue (and outside the stream: its `seq`
    /// is 0), and says how it went.
    pub async fn test(&self, scope: &DeviceScope, user: UserId) -> Result<TestOutcome, Error> {
        let webhook = self.get(scope).await?;
        let secrets = webhooks::signing_secrets(
            self.db,
            self.deliveries.sealer(),
            scope.device(),
            webhook.id,
        )
        .await?;
        let id = EventId::new().to_string();
        let now = Utc::now();
        let body = serde_json::to_vec(&serde_json::json!({
            "id": id,
            "event": EventKind::WebhookTest.name(),
            "timestamp": now.timestamp(),
            "device_id": scope.device(),
            "user_id": user,
            "seq": 0,
            "data": {},
        }))
        .map_err(Error::internal)?;
        let sent = self
            .deliveries
            .sender()
            .send(Delivery {
                url: &webhook.url,
                headers: &webhook.headers,
                signature: sign::signature(&secrets, &id, now.timestamp(), &body),
                id: &id,
                timestamp: now.timestamp(),
                body,
                timeout: Duration::from_secs(
                    u64::try_from(webhook.timeout_secs.max(1)).unwrap_or(15),
                ),
            })
            .await;
        Ok(TestOutcome {
            delivered: sent.delivered(),
            status_code: sent.status,
            error: sent.error,
            duration: sent.duration,
        })
    }

    /// The device's events after `after`, oldest first, at most `limit`, only `names` if given.
    pub async fn events(
        &self,
        scope: &DeviceScope,
        after: Option<EventId>,
        limit: i64,
        names: Option<Vec<String>>,
    ) -> Result<EventPage, Error> {
        let after_seq =
            match after {
                None => 0,
                Some(id) => events::get(self.db, scope, id)
                    .await?
                    .ok_or_else(|| {
                        Error::invalid(
                            "after",
                            "no such event for this device (it may be past the retention period)",
                        )
                    })?
                    .seq,
            };
        let page = Page {
            after_seq,
            limit,
            names,
        };
        let events = events::list(self.db, scope, &page).await?;
        let next = (events.len() as i64 == limit)
            .then(|| events.last().map(|e| e.id))
            .flatten();
        Ok(EventPage { events, next })
    }

    pub async fn deliveries(
        &self,
        scope: &DeviceScope,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AttemptRow>, Error> {
        Ok(webhooks::attempts(self.db, scope, status, limit).await?)
    }

    /// Queues one of the device's events again.
    pub async fn redeliver(&self, scope: &DeviceScope, id: EventId) -> Result<(), Error> {
        if events::get(self.db, scope, id).await?.is_none() {
            return Err(Error::NotFound("event not found".to_owned()));
        }
        if webhooks::redeliver(self.db, scope, id).await? {
            Ok(())
        } else {
            Err(Error::Conflict(
                "the device has no enabled webhook to deliver to".to_owned(),
            ))
        }
    }

    /// Saves (or clears) the URL applied, with every event, to each device `user` creates from
    /// now on; answers the secret those webhooks will sign with (shown this once).
    pub async fn set_pending(
        &self,
        tenant: TenantId,
        user: UserId,
        url: Option<&str>,
    ) -> Result<Option<String>, Error> {
        let Some(url) = url else {
            webhooks::set_pending(self.db, self.deliveries.sealer(), tenant, user, None).await?;
            return Ok(None);
        };
        self.check_url(url).await?;
        let secret = sign::generate();
        webhooks::set_pending(
            self.db,
            self.deliveries.sealer(),
            tenant,
            user,
            Some((url.trim(), &secret)),
        )
        .await?;
        Ok(Some(secret))
    }

    /// Gives a new device the webhook its creator saved for new devices, if any.
    pub async fn apply_pending(&self, scope: &DeviceScope, user: UserId) -> Result<(), Error> {
        let Some((url, secret)) =
            webhooks::pending(self.db, self.deliveries.sealer(), scope.tenant(), user).await?
        else {
            return Ok(());
        };
        let config = WebhookConfig {
            url,
            enabled_events: EventFilter::All.names(),
            enabled: true,
            retry_attempts: DEFAULT_RETRY_ATTEMPTS,
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            headers: serde_json::json!({}),
            secret,
        };
        webhooks::put(self.db, self.deliveries.sealer(), scope, &config).await?;
        Ok(())
    }
}

/// Attempts after the first, unless configured.
pub const DEFAULT_RETRY_ATTEMPTS: i32 = 10;
/// Seconds a receiver has to answer, unless configured.
pub const DEFAULT_TIMEOUT_SECS: i32 = 15;
