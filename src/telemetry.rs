//! Logging: a tracing subscriber writing pretty or JSON lines, filtered by `RUST_LOG`.
//!
//! What never reaches the logs: tokens, QR payloads, pairing codes, key material, full phone
//! numbers. Requests are logged by route template, not by URI, for that reason.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The filter when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// Caps applied whatever `RUST_LOG` says: at info level whatsapp-rust logs pairing codes with
/// their phone number, the account's own LID/phone pair at pairing, phone numbers in LID
/// migrations, and the account's own number when WhatsApp tells it its device list changed
/// (`account_sync <devices>`), under these targets.
const SECRET_CAPS: [&str; 5] = [
    "Client/AccountSync=warn",
    "whatsapp_rust::pair=warn",
    "Client/PairCode=warn",
    "whatsapp_rust::pair_code=warn",
    "whatsapp_rust::client::lid_pn=warn",
];

/// The filter: `RUST_LOG` (or the default), with the caps that keep secrets out.
pub fn filter() -> EnvFilter {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    for cap in SECRET_CAPS {
        if let Ok(directive) = cap.parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Installs the global subscriber. Calling it again is harmless (the first one stays).
pub fn init(format: LogFormat) {
    let filter = filter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
