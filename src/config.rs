//! Command line and environment configuration (`wuts --help` documents every setting).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

pub use crate::store::redact_url_password;

/// Default database: the local PostgreSQL with trust authentication, database `wuts`.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/wuts";

/// WUTS gateway: a multi-tenant REST API for WhatsApp linked-device sessions.
///
/// With no subcommand, `wuts` serves the API (the same as `wuts serve`).
#[derive(Debug, Parser)]
#[command(
    name = "wuts",
    version,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true,
    after_help = LOGGING_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub serve: ServeArgs,
}

/// What `--help` says about logging (`RUST_LOG` is read by the log filter, not by clap).
const LOGGING_HELP: &str = "Logging:\n  RUST_LOG  Log filter, as tracing's EnvFilter reads it (default `info,sqlx=warn`; \
     for example `RUST_LOG=wuts_gateway=debug,info`). Whatever it says, the targets that would \
     log pairing codes or phone numbers stay capped at warn.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    #[command(after_help = LOGGING_HELP)]
    Serve(Box<ServeArgs>),
    /// Create the database if needed, apply migrations, and exit.
    Migrate(DatabaseArgs),
    /// Tenant administration without the master token.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Maintenance of the stored WhatsApp key material.
    #[command(subcommand)]
    Store(StoreCommand),
    /// List the gateway nodes running on the database: id, URL, heartbeat age, whether draining,
    /// and how many devices each serves (`--devices`: which ones). JSON, one object.
    Nodes(NodesArgs),
    /// Ask a gateway on this machine whether it is alive (`GET /healthz`): exit 0 if it answers
    /// 200 within 3 s, 1 otherwise. For container health checks (the image has no curl).
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, Args)]
pub struct NodesArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Also list each node's devices (tenant and device ids).
    #[arg(long)]
    pub devices: bool,
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The address the gateway listens on; an unspecified address (0.0.0.0) is asked on
    /// loopback.
    #[arg(long, env = "WUTS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Rewrite every device's key material as the configured store key seals it: seals rows
    /// written in clear, moves rows sealed with a previous key (WUTS_STORE_KEY_PREVIOUS) to
    /// WUTS_STORE_KEY, or, with no WUTS_STORE_KEY, writes them back in clear. Safe while
    /// gateways run; exits non-zero if a row opens with no configured key.
    Reseal(StoreResealArgs),
}

#[derive(Debug, Args)]
pub struct StoreResealArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub keys: StoreKeyArgs,
}

/// The keys that seal WhatsApp key material in PostgreSQL.
#[derive(Clone, Debug, Default, Args)]
pub struct StoreKeyArgs {
    /// Key sealing the WhatsApp key material stored in PostgreSQL (Signal sessions, pre-keys,
    /// the device's identity and noise keys, app-state keys): 32 random bytes as 64 hex digits
    /// or base64 (`openssl rand -hex 32`). Unset: stored in clear. Rows written before it was
    /// set stay readable and are sealed when next written, or at once by `wuts store reseal`.
    #[arg(long, env = "WUTS_STORE_KEY", hide_env_values = true, value_parser = parse_secret)]
    pub store_key: Option<SecretString>,

    /// Keys that sealed rows before the current one (comma-separated): still opened, never
    /// used to seal. Keep them until `wuts store reseal` has run.
    #[arg(
        long,
        env = "WUTS_STORE_KEY_PREVIOUS",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub store_key_previous: Vec<SecretString>,
}

impl StoreKeyArgs {
    /// The sealer these keys describe; the error names the setting, never the key.
    pub fn sealer(&self) -> Result<wuts_wa_store::Sealer, String> {
        use wuts_wa_store::StoreKey;
        let current = self
            .store_key
            .as_ref()
            .map(ExposeSecret::expose_secret)
            .filter(|k| !k.trim().is_empty())
            .map(StoreKey::parse)
            .transpose()
            .map_err(|e| format!("WUTS_STORE_KEY: {e}"))?;
        let previous = self
            .store_key_previous
            .iter()
            .map(ExposeSecret::expose_secret)
            .filter(|k| !k.trim().is_empty())
            .enumerate()
            .map(|(i, k)| {
                StoreKey::parse(k)
                    .map_err(|e| format!("WUTS_STORE_KEY_PREVIOUS (key {}): {e}", i + 1))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(wuts_wa_store::Sealer::new(current, previous))
    }
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and its first admin user, and print the admin's token once.
    Create(TenantCreateArgs),
}

#[derive(Debug, Args)]
pub struct TenantCreateArgs {
    /// Tenant name (unique, case-insensitive).
    #[arg(long)]
    pub name: String,
    /// E-mail address of the tenant's first admin user.
    #[arg(long)]
    pub email: String,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL. The database is created if it does not exist.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,

    /// Largest number of PostgreSQL connections the gateway opens.
    #[arg(long, env = "WUTS_DB_MAX_CONNECTIONS", default_value_t = 20)]
    pub db_max_connections: u32,
}

impl std::fmt::Debug for DatabaseArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseArgs")
            .field("database_url", &redact_url_password(&self.database_url))
            .field("db_max_connections", &self.db_max_connections)
            .finish()
    }
}

/// Running several gateway nodes on one database.
#[derive(Clone, Args)]
pub struct NodeArgs {
    /// The URL other gateway nodes reach this node's API at (for example
    /// `http://10.0.0.5:8080`). Default: `http://` and the listen address (loopback when it
    /// listens on every interface).
    #[arg(long, env = "WUTS_NODE_URL")]
    pub node_url: Option<String>,

    /// The secret nodes authenticate the requests they forward to each other with (the same on
    /// every node, at least 16 characters). Required as soon as a second node runs on the
    /// database; never logged.
    #[arg(long, env = "WUTS_NODE_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub node_secret: Option<SecretString>,

    /// A node that has not proved alive for this long is declared dead, and its devices are
    /// taken over by the others (a killed node is noticed sooner: its database connection ends).
    #[arg(long, env = "WUTS_NODE_TTL", default_value = "6s", value_parser = parse_duration)]
    pub node_ttl: Duration,

    /// How long a request for a device being handed from one node to another waits for the new
    /// owner before `DEVICE_NOT_READY`.
    #[arg(long, env = "WUTS_HANDOFF_WAIT", default_value = "5s", value_parser = parse_duration)]
    pub handoff_wait: Duration,

    /// Devices a node hands over at once (when another node joins, and when it drains).
    #[arg(long, env = "WUTS_HANDOFF_BATCH", default_value_t = 8)]
    pub handoff_batch: usize,
}

impl std::fmt::Debug for NodeArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeArgs")
            .field("node_url", &self.node_url)
            .field(
                "node_secret",
                &self.node_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("node_ttl", &self.node_ttl)
            .field("handoff_wait", &self.handoff_wait)
            .field("handoff_batch", &self.handoff_batch)
            .finish()
    }
}

#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Address the HTTP API listens on.
    #[arg(long, env = "WUTS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Platform master token for the super-admin routes (/register, /tenants, /global/tenants).
    /// No default: when unset those routes answer 403. At least 16 characters.
    #[arg(long, env = "WUTS_MASTER_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    pub master_token: Option<SecretString>,

    /// Log format.
    #[arg(long, env = "WUTS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Longest time a request may take before the gateway answers 503 (e.g. 30s, 1500ms).
    #[arg(long, env = "WUTS_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// How long a client has to send a request's headers (and how long an idle keep-alive
    /// connection stays open); slower clients are disconnected.
    #[arg(long, env = "WUTS_HEADER_READ_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Origins whose browser pages may call the API (comma-separated, e.g.
    /// `https://app.example.com`; `*` for any). Empty: no CORS headers, browsers refuse
    /// cross-origin calls.
    #[arg(long, env = "WUTS_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Largest request body accepted, in bytes; larger bodies get 413.
    #[arg(long, env = "WUTS_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,

    /// How long a verified token is remembered before the database is asked again. Rotation,
    /// deactivation and deletion are announced to every node, which forget the token at once;
    /// this bounds how long a node that missed the announcement (its listening connection was
    /// down) keeps it.
    #[arg(long, env = "WUTS_AUTH_CACHE_TTL", default_value = "10s", value_parser = parse_duration)]
    pub auth_cache_ttl: Duration,

    /// Largest number of tokens remembered at once.
    #[arg(long, env = "WUTS_AUTH_CACHE_CAPACITY", default_value_t = 10_000)]
    pub auth_cache_capacity: usize,

    /// Requests per second each tenant may make (a token bucket per tenant and node); 0 turns
    /// budgets off. A tenant's row may set its own (`rate_rps`, `rate_burst`).
    #[arg(long, env = "WUTS_TENANT_RPS", default_value_t = 100.0)]
    pub tenant_rps: f64,

    /// Requests a tenant may make at once after a quiet spell.
    #[arg(long, env = "WUTS_TENANT_BURST", default_value_t = 200)]
    pub tenant_burst: u32,

    /// How long graceful shutdown waits for in-flight requests before closing them.
    #[arg(long, env = "WUTS_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// This process's name among gateway nodes, in device-ownership records and logs (each
    /// process adds a random suffix, so two processes never share an id). Default: the
    /// `HOSTNAME` variable (a container's name), else `node`.
    #[arg(long, env = "WUTS_NODE_ID")]
    pub node_id: Option<String>,

    #[command(flatten)]
    pub nodes: NodeArgs,

    #[command(flatten)]
    pub store_keys: StoreKeyArgs,

    #[command(flatten)]
    pub whatsapp: WhatsAppArgs,

    #[command(flatten)]
    pub events: EventArgs,
}

/// Events and webhook deliveries.
#[derive(Debug, Clone, Args)]
pub struct EventArgs {
    /// How long events stay readable (`GET /events`) before they are pruned.
    #[arg(long, env = "WUTS_EVENT_RETENTION", default_value = "7d", value_parser = parse_duration)]
    pub event_retention: Duration,

    /// Let webhooks reach loopback, private, link-local and multicast addresses (refused
    /// otherwise, when configured and at every delivery).
    #[arg(long, env = "WUTS_WEBHOOK_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,

    /// The waits between a webhook's attempts, comma-separated; the last one repeats.
    #[arg(
        long,
        env = "WUTS_WEBHOOK_RETRY_SCHEDULE",
        default_value = "5s,5m,30m,2h,5h,10h,14h,20h,24h",
        value_parser = parse_schedule
    )]
    pub webhook_retry_schedule: Schedule,

    /// A webhook whose every delivery failed for this long is disabled.
    #[arg(long, env = "WUTS_WEBHOOK_DISABLE_AFTER", default_value = "5d", value_parser = parse_duration)]
    pub webhook_disable_after: Duration,

    /// Webhook deliveries in flight at once on this node (one per device at most).
    #[arg(long, env = "WUTS_WEBHOOK_CONCURRENCY", default_value_t = 64)]
    pub webhook_concurrency: usize,
}

/// A list of waits (`5s,5m,30m`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(pub Vec<Duration>);

fn parse_schedule(raw: &str) -> Result<Schedule, String> {
    let waits = raw
        .split(',')
        .map(parse_duration)
        .collect::<Result<Vec<_>, _>>()?;
    if waits.is_empty() || waits.iter().any(Duration::is_zero) {
        return Err("name at least one wait, none of them zero (for example 5s,5m,30m)".to_owned());
    }
    Ok(Schedule(waits))
}

impl EventArgs {
    pub fn delivery(&self) -> crate::delivery::DeliveryConfig {
        crate::delivery::DeliveryConfig {
            allow_private: self.webhook_allow_private,
            retry_schedule: self.webhook_retry_schedule.0.clone(),
            disable_after: self.webhook_disable_after,
            retention: self.event_retention,
            concurrency: self.webhook_concurrency.max(1),
            ..crate::delivery::DeliveryConfig::default()
        }
    }
}

/// How the gateway talks to WhatsApp.
#[derive(Debug, Clone, Args)]
pub struct WhatsAppArgs {
    /// WhatsApp's WebSocket endpoint.
    #[arg(long, env = "WUTS_WA_URL", default_value = WHATSAPP_WS_URL)]
    pub wa_url: String,

    /// WhatsApp Web version to announce (e.g. 2.3000.1023456789). When unset it is fetched from
    /// WhatsApp at startup; set it when WhatsApp declares the client outdated.
    #[arg(long, env = "WUTS_WA_VERSION", value_parser = parse_wa_version)]
    pub wa_version: Option<(u32, u32, u32)>,

    /// How long one WhatsApp request may take before the gateway answers 504.
    #[arg(long, env = "WUTS_WA_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub wa_timeout: Duration,

    /// Devices reconnecting at once when the gateway starts.
    #[arg(long, env = "WUTS_RESTORE_CONCURRENCY", default_value_t = 32)]
    pub restore_concurrency: usize,

    /// Largest random delay before each restored device connects (spreads reconnects).
    #[arg(long, env = "WUTS_RESTORE_JITTER", default_value = "2s", value_parser = parse_duration)]
    pub restore_jitter: Duration,

    /// Largest random delay before a session whose connection dropped reconnects (on top of
    /// WhatsApp's own 1 s backoff), so that sessions dropped together do not return together.
    #[arg(long, env = "WUTS_RECONNECT_JITTER", default_value = "5s", value_parser = parse_duration)]
    pub reconnect_jitter: Duration,

    /// Commands queued per device before requests are answered 429.
    #[arg(long, env = "WUTS_DEVICE_QUEUE", default_value_t = 64)]
    pub device_queue: usize,

    /// Number checks, resolve lookups and participant changes each device may send WhatsApp per
    /// second once its burst is spent (WhatsApp bans accounts that look up or add people too
    /// fast); 0 turns pacing off.
    #[arg(long, env = "WUTS_DEVICE_WA_RPS", default_value_t = 1.0)]
    pub device_wa_rps: f64,

    /// Such calls a device may send at once after a quiet spell.
    #[arg(long, env = "WUTS_DEVICE_WA_BURST", default_value_t = 10)]
    pub device_wa_burst: u32,

    /// Such calls that may wait their turn; more are answered 429 with `Retry-After`.
    #[arg(long, env = "WUTS_DEVICE_WA_QUEUE", default_value_t = 20)]
    pub device_wa_queue: u32,
}

/// WhatsApp Web's WebSocket endpoint.
pub const WHATSAPP_WS_URL: &str = "wss://web.whatsapp.com/ws/chat";

/// Parses `2.3000.1023456789`.
pub fn parse_wa_version(raw: &str) -> Result<(u32, u32, u32), String> {
    let parts: Vec<&str> = raw.trim().split('.').collect();
    let parse = |s: &str| s.parse::<u32>().ok();
    match parts.as_slice() {
        [a, b, c] => match (parse(a), parse(b), parse(c)) {
            (Some(a), Some(b), Some(c)) => Ok((a, b, c)),
            _ => Err(format!(
                "`{raw}` is not a version such as 2.3000.1023456789"
            )),
        },
        _ => Err(format!(
            "`{raw}` is not a version such as 2.3000.1023456789"
        )),
    }
}

/// Whether the URL's host is this machine.
pub fn is_loopback_url(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Shortest master token accepted: anything shorter is guessable.
pub const MIN_MASTER_TOKEN_CHARS: usize = 16;

impl ServeArgs {
    /// The node name: `WUTS_NODE_ID`, else `HOSTNAME`, else `node`.
    pub fn node_name(&self) -> String {
        self.node_id
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "node".to_owned())
    }

    /// This process's id among gateway nodes: its name (at most 40 characters of it) and a
    /// random suffix, so that two processes never share one. It is also the `application_name`
    /// of the process's database connections (at most 63 bytes).
    pub fn new_node_id(&self) -> String {
        let name: String = self.node_name().chars().take(40).collect();
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        format!("{name}-{}", &suffix[..12])
    }

    /// Where other nodes reach this one: `WUTS_NODE_URL`, else the listen address.
    pub fn node_url(&self) -> String {
        if let Some(url) = &self.nodes.node_url {
            return url.trim_end_matches('/').to_owned();
        }
        let mut address = self.listen;
        if address.ip().is_unspecified() {
            address.set_ip(match address.ip() {
                std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("http://{address}")
    }

    /// Settings that clap cannot check on its own.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(secret) = &self.nodes.node_secret
            && secret.expose_secret().trim().chars().count() < MIN_MASTER_TOKEN_CHARS
        {
            return Err(format!(
                "WUTS_NODE_SECRET must be at least {MIN_MASTER_TOKEN_CHARS} characters \
                 (for example the output of `openssl rand -hex 32`), the same on every node"
            ));
        }
        if let Some(url) = &self.nodes.node_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(format!(
                "WUTS_NODE_URL `{url}` must be an http:// or https:// URL, such as http://10.0.0.5:8080"
            ));
        }
        if let Some(token) = &self.master_token
            && token.expose_secret().trim().chars().count() < MIN_MASTER_TOKEN_CHARS
        {
            return Err(format!(
                "WUTS_MASTER_TOKEN must be at least {MIN_MASTER_TOKEN_CHARS} characters \
                 (for example the output of `openssl rand -hex 32`)"
            ));
        }
        if let Some(name) = &self.node_id
            && (name.trim().is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(format!(
                "WUTS_NODE_ID `{name}` must be 1 to 64 letters, digits, `-`, `_` or `.`"
            ));
        }
        if self.body_limit == 0 {
            return Err("WUTS_BODY_LIMIT must be greater than 0".to_owned());
        }
        if self.request_timeout.is_zero() {
            return Err("WUTS_REQUEST_TIMEOUT must be greater than 0".to_owned());
        }
        for origin in &self.cors_origins {
            let valid = origin == "*"
                || ((origin.starts_with("http://") || origin.starts_with("https://"))
                    && axum::http::HeaderValue::from_str(origin).is_ok()
                    && !origin
                        .trim_end_matches('/')
                        .contains(|c: char| c.is_whitespace()));
            if !valid {
                return Err(format!(
                    "WUTS_CORS_ORIGINS: `{origin}` is not an origin such as https://app.example.com (or *)"
                ));
            }
        }
        self.store_keys.sealer()?;
        if self.header_read_timeout.is_zero() {
            return Err("WUTS_HEADER_READ_TIMEOUT must be greater than 0".to_owned());
        }
        if !self.whatsapp.device_wa_rps.is_finite() || self.whatsapp.device_wa_rps < 0.0 {
            return Err("WUTS_DEVICE_WA_RPS must be 0 (no pacing) or a positive number".to_owned());
        }
        if !self.tenant_rps.is_finite() || self.tenant_rps < 0.0 {
            return Err("WUTS_TENANT_RPS must be 0 (no budget) or a positive number".to_owned());
        }
        if cfg!(feature = "insecure-test-server") && !is_loopback_url(&self.whatsapp.wa_url) {
            return Err(format!(
                "this build skips WhatsApp's certificate check (insecure-test-server) and only \
                 connects to loopback; refusing WUTS_WA_URL={}",
                self.whatsapp.wa_url
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Parses a duration as humantime writes them (`250ms`, `30s`, `2m`, `1h 30m`), or a bare
/// number of seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        return raw
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("`{raw}` is too large a number of seconds"));
    }
    humantime::parse_duration(raw)
        .map_err(|_| format!("`{raw}` is not a duration such as 30s, 1500ms or 2m"))
}

/// A secret setting: kept out of `Debug` output and logs, exposed only where it is used.
fn parse_secret(raw: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_documents_the_log_filter_and_the_node_id() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        let top = cli.render_long_help().to_string();
        let serve = cli
            .find_subcommand_mut("serve")
            .expect("serve")
            .render_long_help()
            .to_string();
        for help in [&top, &serve] {
            assert!(help.contains("RUST_LOG"), "{help}");
            assert!(help.contains("WUTS_NODE_ID"), "{help}");
            assert!(help.contains("HOSTNAME"), "{help}");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn versions_and_loopback_urls() {
        assert_eq!(
            parse_wa_version("2.3000.1023456789"),
            Ok((2, 3000, 1_023_456_789))
        );
        assert!(parse_wa_version("2.3000").is_err());
        assert!(parse_wa_version("a.b.c").is_err());
        assert!(is_loopback_url("ws://127.0.0.1:4000/ws/chat"));
        assert!(is_loopback_url("ws://localhost/ws/chat"));
        assert!(is_loopback_url("ws://[::1]:80/ws/chat"));
        assert!(!is_loopback_url("wss://web.whatsapp.com/ws/chat"));
        assert!(!is_loopback_url("ws://10.0.0.1/ws/chat"));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url_password("postgres://app:s3cret@db:5432/wuts"),
            "postgres://app:***@db:5432/wuts"
        );
        assert_eq!(
            redact_url_password("postgres://postgres@127.0.0.1:5432/wuts"),
            "postgres://postgres@127.0.0.1:5432/wuts"
        );
    }

    #[test]
    fn no_subcommand_means_serve_with_defaults() {
        let cli = Cli::try_parse_from(["wuts"]).expect("parses");
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn short_master_tokens_are_refused() {
        let mut cli = Cli::try_parse_from(["wuts"]).expect("parses");
        cli.serve.whatsapp.wa_url = "ws://127.0.0.1:1/ws/chat".to_owned();
        cli.serve.master_token = Some(SecretString::from("short"));
        assert!(cli.serve.validate().is_err());
        cli.serve.master_token = Some(SecretString::from("a-long-enough-master-token"));
        assert!(cli.serve.validate().is_ok());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let mut cli = Cli::try_parse_from(["wuts"]).expect("parses");
        cli.serve.master_token = Some(SecretString::from("a-long-enough-master-token"));
        cli.serve.database.database_url = "postgres://app:s3cret@db/wuts".to_owned();
        let shown = format!("{:?}", cli.serve);
        assert!(!shown.contains("a-long-enough-master-token"));
        assert!(!shown.contains("s3cret"));
    }

    proptest::proptest! {
        #[test]
        fn durations_round_trip_and_nothing_panics(ms in 0u64..10_000_000, raw in "\\PC{0,12}") {
            proptest::prop_assert_eq!(parse_duration(&format!("{ms}ms")), Ok(Duration::from_millis(ms)));
            proptest::prop_assert_eq!(parse_duration(&format!(" {ms}s ")), Ok(Duration::from_secs(ms)));
            let _ = parse_duration(&raw);
        }

        #[test]
        fn versions_round_trip_and_nothing_panics(
            a in 0u32..100, b in 0u32..100_000, c in 0u32..u32::MAX, raw in "\\PC{0,24}"
        ) {
            proptest::prop_assert_eq!(parse_wa_version(&format!("{a}.{b}.{c}")), Ok((a, b, c)));
            let _ = parse_wa_version(&raw);
            let _ = is_loopback_url(&raw);
            let password = format!("{raw}x");
            let url = format!("postgres://u:{password}@h/db");
            proptest::prop_assert_eq!(redact_url_password(&url), "postgres://u:***@h/db");
        }
    }
}
