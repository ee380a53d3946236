//! The event catalogue (contract section 6) and the identifiers of events and webhooks.

use std::fmt;

use uuid::Uuid;

/// Every event a device's stream can carry, with the WUTS name it is delivered under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    DeviceConnected,
    DeviceDisconnected,
    DeviceLoggedOut,
    StreamReplaced,
    TemporaryBan,
    ConnectFailure,
    QrGenerated,
    PairSuccess,
    PairError,
    Blocklist,
    PushName,
    ContactLid,
    GroupJoined,
    GroupLeft,
    GroupInfo,
    WebhookTest,
}

impl EventKind {
    /// The catalogue, in the order `GET /webhook/events` lists it.
    pub const ALL: [EventKind; 16] = [
        EventKind::DeviceConnected,
        EventKind::DeviceDisconnected,
        EventKind::DeviceLoggedOut,
        EventKind::StreamReplaced,
        EventKind::TemporaryBan,
        EventKind::ConnectFailure,
        EventKind::QrGenerated,
        EventKind::PairSuccess,
        EventKind::PairError,
        EventKind::Blocklist,
        EventKind::PushName,
        EventKind::ContactLid,
        EventKind::GroupJoined,
        EventKind::GroupLeft,
        EventKind::GroupInfo,
        EventKind::WebhookTest,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventKind::DeviceConnected => "device.connected",
            EventKind::DeviceDisconnected => "device.disconnected",
            EventKind::DeviceLoggedOut => "device.logged_out",
            EventKind::StreamReplaced => "connection.stream_replaced",
            EventKind::TemporaryBan => "connection.temporary_ban",
            EventKind::ConnectFailure => "connection.failure",
            EventKind::QrGenerated => "qr.generated",
            EventKind::PairSuccess => "pair.success",
            EventKind::PairError => "pair.error",
            EventKind::Blocklist => "privacy.blocklist",
            EventKind::PushName => "contact.pushname",
            EventKind::ContactLid => "contact.lid",
            EventKind::GroupJoined => "group.joined",
            EventKind::GroupLeft => "group.left",
            EventKind::GroupInfo => "group.info",
            EventKind::WebhookTest => "webhook.test",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            EventKind::DeviceConnected => "The session is logged in",
            EventKind::DeviceDisconnected => {
                "The session closed (by request, network, or WhatsApp)"
            }
            EventKind::DeviceLoggedOut => {
                "The device was unlinked (by the phone, by /logout, or WhatsApp); keys erased"
            }
            EventKind::StreamReplaced => "Another connection took the session over",
            EventKind::TemporaryBan => "WhatsApp banned the account for a while",
            EventKind::ConnectFailure => "WhatsApp refused the login",
            EventKind::QrGenerated => "A pairing QR code is ready",
            EventKind::PairSuccess => "The device was linked",
            EventKind::PairError => "Linking failed",
            EventKind::Blocklist => "The block list changed, on the phone or through the API",
            EventKind::PushName => "A contact's push name was seen or changed",
            EventKind::ContactLid => "A LID/phone-number pair was learned",
            EventKind::GroupJoined => {
                "The device was added to a group or community, or created one"
            }
            EventKind::GroupLeft => "The device left a group or was removed",
            EventKind::GroupInfo => {
                "A group's members, roles, name, description, settings or links changed"
            }
            EventKind::WebhookTest => "Sent by POST /webhook/test",
        }
    }

    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The events a webhook wants: every one (`*`), or the ones named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    All,
    Only(Vec<EventKind>),
}

impl EventFilter {
    /// Reads `enabled_events`: at least one name from the catalogue, or `"*"`.
    pub fn parse(names: &[String]) -> Result<EventFilter, (usize, String)> {
        if names.is_empty() {
            return Err((0, "name at least one event, or \"*\" for all".to_owned()));
        }
        let mut kinds = Vec::new();
        for (at, name) in names.iter().enumerate() {
            if name == "*" {
                return Ok(EventFilter::All);
            }
            let kind = EventKind::parse(name).ok_or_else(|| {
                (
                    at,
                    "not an event name (GET /webhook/events lists them)".to_owned(),
                )
            })?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        Ok(EventFilter::Only(kinds))
    }

    /// As stored and answered.
    pub fn names(&self) -> Vec<String> {
        match self {
            EventFilter::All => vec!["*".to_owned()],
            EventFilter::Only(kinds) => kinds.iter().map(|k| k.name().to_owned()).collect(),
        }
    }
}

/// An identifier shown with a prefix (`evt_`, `wh_`) and the UUID as 32 hex digits.
fn prefixed(prefix: &str, id: Uuid, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{prefix}{}", id.simple())
}

fn parse_prefixed(prefix: &str, text: &str) -> Option<Uuid> {
    let hex = text.strip_prefix(prefix)?;
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Uuid::try_parse(hex).ok()
}

/// An event's id (`evt_<32 hex>`): a UUID v7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct EventId(pub Uuid);

impl EventId {
    pub fn new() -> Self {
        EventId(Uuid::now_v7())
    }

    pub fn parse(text: &str) -> Option<Self> {
        parse_prefixed("evt_", text).map(EventId)
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        prefixed("evt_", self.0, f)
    }
}

/// A webhook's id (`wh_<32 hex>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct WebhookId(pub Uuid);

impl WebhookId {
    pub fn new() -> Self {
        WebhookId(Uuid::now_v7())
    }
}

impl Default for WebhookId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for WebhookId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        prefixed("wh_", self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.name()), Some(kind));
            assert!(seen.insert(kind.name()));
        }
        assert_eq!(EventKind::parse("privacy.blocklist.x"), None);
    }

    #[test]
    fn filters_name_the_bad_entry() {
        assert_eq!(EventFilter::parse(&["*".to_owned()]), Ok(EventFilter::All));
        let names = ["device.connected".to_owned(), "nope".to_owned()];
        assert_eq!(EventFilter::parse(&names).map_err(|e| e.0), Err(1));
        assert!(EventFilter::parse(&[]).is_err());
    }

    #[test]
    fn event_ids_round_trip() {
        let id = EventId::new();
        let shown = id.to_string();
        assert!(shown.starts_with("evt_") && shown.len() == 36);
        assert_eq!(EventId::parse(&shown), Some(id));
        assert_eq!(EventId::parse("evt_xyz"), None);
        assert_eq!(EventId::parse(&shown.replace("evt_", "wh_")), None);
    }
}
