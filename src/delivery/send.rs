//! One delivery attempt over HTTP: no proxy, no redirects, a timeout on the whole exchange, at
//! most a few KiB of the answer read, and connections only to addresses that pass
//! [`super::address`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::address;

/// How much of a receiver's answer is read (the rest is dropped with the connection).
const MAX_ANSWER_BYTES: usize = 4096;

/// Headers a webhook's configured headers may not set.
pub const RESERVED_HEADERS: [&str; 7] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
];

/// Resolves names and keeps only the addresses a webhook may reach.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || address::is_public(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!(
                    "{host} resolves to no address a webhook may reach (private addresses are \
                     refused)"
                )
                .into());
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// Makes ring the process's TLS provider, if none is yet. reqwest (built with rustls and no
/// provider of its own) asks for the process default whenever any client is built, in this
/// process's code or a library's.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What an attempt came to.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    pub status: Option<u16>,
    pub error: Option<String>,
    /// The receiver's `Retry-After`, on a 429 or 503.
    pub retry_after: Option<Duration>,
    pub duration: Duration,
}

impl Sent {
    pub fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// One signed request to send.
pub struct Delivery<'a> {
    pub url: &'a str,
    pub headers: &'a serde_json::Value,
    pub signature: String,
    pub id: &'a str,
    pub timestamp: i64,
    pub body: Vec<u8>,
    pub timeout: Duration,
}

/// The HTTP client deliveries go through.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
}

impl Sender {
    pub fn new(allow_private: bool) -> anyhow::Result<Self> {
        install_tls_provider();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(GuardedResolver { allow_private })
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("wuts-gateway/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            allow_private,
        })
    }

    /// Sends once; never takes longer than the delivery's timeout.
    pub async fn send(&self, delivery: Delivery<'_>) -> Sent {
        let started = Instant::now();
        let mut sent = match tokio::time::timeout(delivery.timeout, self.exchange(&delivery)).await
        {
            Ok(sent) => sent,
            Err(_) => Sent {
                error: Some(timed_out(delivery.timeout)),
                ..Sent::default()
            },
        };
        sent.duration = started.elapsed();
        sent
    }

    async fn exchange(&self, delivery: &Delivery<'_>) -> Sent {
        let failed = |error: String| Sent {
            error: Some(error),
            ..Sent::default()
        };
        let url = match address::parse_url(delivery.url) {
            Ok(url) => url,
            Err(err) => return failed(format!("webhook URL refused: {err}")),
        };
        // Names are checked by the resolver as they are looked up; literal addresses here.
        if !matches!(url.host(), Some(url::Host::Domain(_)))
            && let Err(err) = address::resolve(&url, self.allow_private).await
        {
            return failed(format!("webhook URL refused: {err}"));
        }
        let mut headers = HeaderMap::new();
        if let Some(configured) = delivery.headers.as_object() {
            for (name, value) in configured {
                let Some(value) = value.as_str() else {
                    continue;
                };
                if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                    continue;
                }
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    headers.insert(name, value);
                }
            }
        }
        let mut signed = |name: &'static str, value: &str| {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        };
        signed("content-type", "application/json");
        signed("webhook-id", delivery.id);
        signed("webhook-timestamp", &delivery.timestamp.to_string());
        signed("webhook-signature", &delivery.signature);
        let answer = self
            .client
            .post(url)
            .headers(headers)
            .body(delivery.body.clone())
            .timeout(delivery.timeout)
            .send()
            .await;
        let mut response = match answer {
            Ok(response) => response,
            Err(err) if err.is_timeout() => return failed(timed_out(delivery.timeout)),
            Err(err) => return failed(describe(&err)),
        };
        let status = response.status().as_u16();
        let retry_after = if status == 429 || status == 503 {
            response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after)
        } else {
            None
        };
        // Read a little of the answer (so the connection can be reused) and no more.
        let mut read = 0;
        while read < MAX_ANSWER_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                _ => break,
            }
        }
        Sent {
            status: Some(status),
            error: (!(200..300).contains(&status))
                .then(|| format!("the receiver answered {status}")),
            retry_after,
            duration: Duration::ZERO,
        }
    }
}

fn timed_out(timeout: Duration) -> String {
    format!("no answer within {} s", timeout.as_secs_f64())
}

/// A transport failure in a few words (no URL: it is the user's own).
fn describe(err: &reqwest::Error) -> String {
    let mut text = if err.is_connect() {
        "could not connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// `Retry-After`: seconds, or an HTTP date; at most a day.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let wait = match value.trim().parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value.trim()).ok()?;
            (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                .to_std()
                .unwrap_or_default()
        }
    };
    Some(wait.min(Duration::from_secs(24 * 3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("999999"),
            Some(Duration::from_secs(24 * 3600))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
