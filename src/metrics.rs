//! Prometheus metrics: the recorder, and the names the gateway records under.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests served, by method, route template and status.
pub const HTTP_REQUESTS: &str = "wuts_http_requests_total";
/// Request latency in seconds, by method and route template.
pub const HTTP_DURATION: &str = "wuts_http_request_duration_seconds";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder on first use and returns the handle that renders it.
/// `None` if another recorder was installed first (metrics then go there instead).
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".to_owned()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0, 30.0,
                    ],
                )
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            // Histograms buffer samples until upkeep folds them in; without it memory grows
            // between scrapes (or forever when nothing scrapes).
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".to_owned())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .ok()?;
            Some(handle)
        })
        .clone()
}

/// Gives every metric its `# HELP` line (Prometheus shows a metric's description once the metric
/// has a sample). A metric recorded without a description here fails the metrics test.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by method, route template and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request latency in seconds, by method and route template"
    );
    describe_gauge!(
        DEVICES,
        "Device sessions known to this node, by status (sampled when /metrics is read)"
    );
    describe_counter!(
        SESSIONS_BY_STATUS,
        "Device session status changes, by the status entered"
    );
    describe_counter!(
        SESSIONS_STARTED,
        "WhatsApp clients started, by purpose (pairing or connect)"
    );
    describe_counter!(PAIRINGS, "Pairing attempts that ended, by outcome");
    describe_counter!(
        CONNECTION_EVENTS,
        "Connection events of device sessions (connected, disconnected, logged_out, ...)"
    );
    describe_histogram!(
        COMMAND_DURATION,
        Unit::Seconds,
        "Latency of commands sent to WhatsApp in seconds, by kind"
    );
    describe_counter!(
        EVENTS_CREATED,
        "Events appended to device event streams, by event type"
    );
    describe_counter!(
        DELIVERIES,
        "Webhook delivery attempts, by outcome (delivered, retry, failed, disabled)"
    );
    describe_histogram!(
        DELIVERY_LATENCY,
        Unit::Seconds,
        "Seconds from an event's creation to its receiver's 2xx"
    );
    describe_gauge!(
        QUEUE_DEPTH,
        "Webhook deliveries waiting in enabled webhooks' queues on the database (sampled)"
    );
    describe_gauge!(
        QUEUE_OLDEST,
        "Age in seconds of the oldest webhook delivery waiting (sampled)"
    );
    describe_gauge!(
        NODES_LIVE,
        "Gateway nodes alive on the database, this one included"
    );
    describe_gauge!(
        DEVICES_OWNED,
        "Devices this node serves (holds the lock and lease of; sampled)"
    );
    describe_counter!(
        FORWARDED,
        "Requests forwarded to the node serving their device, by outcome (answered, failed) and by \
         how the node was found (known: remembered from an earlier request; placed: read from \
         the device's lease)"
    );
    describe_histogram!(
        FORWARD_DURATION,
        Unit::Seconds,
        "Seconds a forwarded request took, to the owner's answer"
    );
    describe_counter!(HANDOFFS, "Devices this node handed to another node");
    describe_counter!(
        TAKEOVERS,
        "Devices this node took over, by how (handed: given by their owner; orphan: nobody served them)"
    );
    describe_counter!(NODES_DEAD, "Other gateway nodes this node declared dead");
}

/// Device sessions running on this node, by status.
pub const DEVICES: &str = "wuts_devices";
/// Device sessions by status (updated as statuses change).
pub const SESSIONS_BY_STATUS: &str = "wuts_sessions_status_changes_total";
/// Clients started, by purpose (pairing or connecting).
pub const SESSIONS_STARTED: &str = "wuts_sessions_started_total";
/// Pairing outcomes.
pub const PAIRINGS: &str = "wuts_pairings_total";
/// Connection events (connected, disconnected, logged_out, replaced, ...).
pub const CONNECTION_EVENTS: &str = "wuts_connection_events_total";
/// WhatsApp command latency in seconds, by kind.
pub const COMMAND_DURATION: &str = "wuts_whatsapp_command_duration_seconds";

pub fn status_changed(status: crate::domain::SessionStatus) {
    metrics::counter!(SESSIONS_BY_STATUS, "status" => status.as_str()).increment(1);
}

pub fn session_started(pairing: bool) {
    let purpose = if pairing { "pairing" } else { "connect" };
    metrics::counter!(SESSIONS_STARTED, "purpose" => purpose).increment(1);
}

pub fn pairing_outcome(outcome: &'static str) {
    metrics::counter!(PAIRINGS, "outcome" => outcome).increment(1);
}

pub fn connection_event(kind: &'static str) {
    metrics::counter!(CONNECTION_EVENTS, "event" => kind).increment(1);
}

pub fn command_latency(kind: &'static str, seconds: f64) {
    metrics::histogram!(COMMAND_DURATION, "kind" => kind).record(seconds);
}

/// Events appended to device streams, by event name.
pub const EVENTS_CREATED: &str = "wuts_events_created_total";
/// Webhook delivery attempts, by outcome (delivered, retry, failed, disabled).
pub const DELIVERIES: &str = "wuts_webhook_deliveries_total";
/// Webhook delivery latency in seconds: from the event's creation to the receiver's 2xx.
pub const DELIVERY_LATENCY: &str = "wuts_webhook_delivery_latency_seconds";
/// Deliveries waiting in enabled webhooks' queues (sampled).
pub const QUEUE_DEPTH: &str = "wuts_webhook_queue_depth";
/// Age in seconds of the oldest delivery waiting (sampled).
pub const QUEUE_OLDEST: &str = "wuts_webhook_queue_oldest_seconds";

pub fn event_created(kind: crate::domain::EventKind) {
    metrics::counter!(EVENTS_CREATED, "event" => kind.name()).increment(1);
}

pub fn delivery_outcome(outcome: &'static str) {
    metrics::counter!(DELIVERIES, "outcome" => outcome).increment(1);
}

pub fn delivery_latency(seconds: f64) {
    metrics::histogram!(DELIVERY_LATENCY).record(seconds);
}

pub fn delivery_backlog(pending: i64, oldest_seconds: f64) {
    metrics::gauge!(QUEUE_DEPTH).set(pending as f64);
    metrics::gauge!(QUEUE_OLDEST).set(oldest_seconds);
}

/// Live gateway nodes.
pub const NODES_LIVE: &str = "wuts_nodes_live";
/// Devices this node serves.
pub const DEVICES_OWNED: &str = "wuts_devices_owned";
/// Requests forwarded to another node, by outcome.
pub const FORWARDED: &str = "wuts_forwarded_requests_total";
/// Latency of forwarded requests in seconds.
pub const FORWARD_DURATION: &str = "wuts_forwarded_request_duration_seconds";
/// Devices handed to another node.
pub const HANDOFFS: &str = "wuts_handoffs_total";
/// Devices taken over, by how.
pub const TAKEOVERS: &str = "wuts_takeovers_total";
/// Other nodes declared dead.
pub const NODES_DEAD: &str = "wuts_nodes_declared_dead_total";

pub fn nodes_live(count: usize) {
    metrics::gauge!(NODES_LIVE).set(count as f64);
}

pub fn devices_owned(count: usize) {
    metrics::gauge!(DEVICES_OWNED).set(count as f64);
}

pub fn request_forwarded(took: Duration, answered: bool, known: bool) {
    let outcome = if answered { "answered" } else { "failed" };
    let route = if known { "known" } else { "placed" };
    metrics::counter!(FORWARDED, "outcome" => outcome, "route" => route).increment(1);
    metrics::histogram!(FORWARD_DURATION).record(took.as_secs_f64());
}

pub fn device_handed_off() {
    metrics::counter!(HANDOFFS).increment(1);
}

pub fn device_taken(handed: bool) {
    let how = if handed { "handed" } else { "orphan" };
    metrics::counter!(TAKEOVERS, "how" => how).increment(1);
}

pub fn node_declared_dead() {
    metrics::counter!(NODES_DEAD).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_described() {
        let handle = handle().expect("the recorder");
        status_changed(crate::domain::SessionStatus::Connected);
        session_started(true);
        pairing_outcome("success");
        connection_event("connected");
        command_latency("block", 0.01);
        event_created(crate::domain::EventKind::DeviceConnected);
        delivery_outcome("delivered");
        delivery_latency(0.02);
        delivery_backlog(1, 2.0);
        nodes_live(2);
        devices_owned(3);
        request_forwarded(Duration::from_millis(2), true, false);
        device_handed_off();
        device_taken(true);
        node_declared_dead();
        metrics::counter!(HTTP_REQUESTS, "status" => "200").increment(1);
        metrics::histogram!(HTTP_DURATION).record(0.001);
        metrics::gauge!(DEVICES, "status" => "connected").set(1.0);
        let text = handle.render();
        let typed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(typed.len(), 20, "{text}");
        for name in typed {
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no HELP line:\n{text}"
            );
        }
    }
}
