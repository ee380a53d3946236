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

/// Fields written on one line whatever a value's `Debug` prints. anyhow's errors print their
/// whole backtrace in `Debug` when `RUST_BACKTRACE` is set (common on developer machines), and
/// whatsapp-rust logs each failed connection attempt that way: some 80 lines per retry. The cause
/// chain stays, on the same line; the backtrace is left out. Like the default formatter, it leaves
/// out the `log.*` fields of events that came through the `log` crate.
pub struct OneLineFields;

impl<'writer> tracing_subscriber::fmt::FormatFields<'writer> for OneLineFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: tracing_subscriber::fmt::format::Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = OneLine {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct OneLine<'writer> {
    writer: tracing_subscriber::fmt::format::Writer<'writer>,
    first: bool,
    result: std::fmt::Result,
}

impl tracing::field::Visit for OneLine<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        let raw = format!("{value:?}");
        let text = one_line(&raw);
        let separator = if std::mem::take(&mut self.first) {
            ""
        } else {
            " "
        };
        self.result = if field.name() == "message" {
            write!(self.writer, "{separator}{text}")
        } else {
            write!(self.writer, "{separator}{}={text}", field.name())
        };
    }
}

/// A value's text on one line: an error's cause chain kept, its backtrace left out.
fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('\n') {
        return text.into();
    }
    let cause = text
        .split("\n\nStack backtrace:")
        .next()
        .unwrap_or_default();
    cause
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .into()
}

/// Installs the global subscriber. Calling it again is harmless (the first one stays).
pub fn init(format: LogFormat) {
    let filter = filter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => builder.fmt_fields(OneLineFields).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What anyhow's `Debug` prints for an error with a cause, when backtraces are captured.
    struct WithBacktrace;

    impl std::fmt::Debug for WithBacktrace {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "Version(Failed to fetch latest WhatsApp version\n\nCaused by:\n    HTTP request \
                 failed: dns error\n\nStack backtrace:\n   0: anyhow::error::capture\n             \
                 at src/error.rs:1:1\n   1: whatsapp_rust::version::fetch)"
            )
        }
    }

    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failure_with_a_backtrace_is_one_line_with_its_cause() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .fmt_fields(OneLineFields)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(error = ?WithBacktrace, attempt = 2, "connect failed");
        });
        let text = String::from_utf8(buffer.0.lock().expect("buffer").clone()).expect("utf-8");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("connect failed error=Version(Failed to fetch latest WhatsApp version Caused by: HTTP request failed: dns error attempt=2"), "{text}");
        assert!(!text.contains("anyhow::error::capture"), "{text}");
    }
}
