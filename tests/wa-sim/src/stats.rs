//! What the server has seen, for tests and benchmarks: IQs by namespace and type, stanzas by
//! tag, handshakes by kind, logins and connections.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use crate::noise::HandshakeKind;

/// A snapshot, as `GET /stats` answers it.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// IQs received, keyed `"<xmlns>:<type>"` (e.g. `"usync:get"`).
    pub iq: BTreeMap<String, u64>,
    /// Stanzas received, by tag.
    pub stanzas: BTreeMap<String, u64>,
    /// Completed handshakes, by kind (`xx`, `ik`, `xx_fallback`).
    pub handshakes: BTreeMap<String, u64>,
    /// Successful logins of paired companions.
    pub logins: u64,
    /// Companions paired.
    pub pairings: u64,
    /// Connections accepted.
    pub connections: u64,
    /// Logins refused with a `<failure>` (unknown companions, injected refusals).
    #[serde(default)]
    pub refused_logins: u64,
    /// When each successful login happened, in milliseconds since the stats were last reset
    /// (the first 100,000), so a test can see how reconnects spread over time.
    #[serde(default)]
    pub login_times_ms: Vec<u64>,
    /// Receipts received, by type (`delivery` when the receipt has none; `peer_msg` for a
    /// message from the account's own phone that the companion decrypted, `retry` for one it
    /// could not).
    #[serde(default)]
    pub receipts: BTreeMap<String, u64>,
    /// App-state key shares the phones sent their new companions.
    #[serde(default)]
    pub key_shares: u64,
    /// Sessions closed with a `replaced` conflict because the same companion logged in again
    /// while still connected (two clients for one device).
    #[serde(default)]
    pub replaced_sessions: u64,
}

impl StatsSnapshot {
    /// IQs seen for a namespace and type.
    pub fn iq_count(&self, xmlns: &str, kind: &str) -> u64 {
        self.iq
            .get(&format!("{xmlns}:{kind}"))
            .copied()
            .unwrap_or(0)
    }

    pub fn handshake_count(&self, kind: &str) -> u64 {
        self.handshakes.get(kind).copied().unwrap_or(0)
    }
}

/// Most login times kept between resets.
const MAX_LOGIN_TIMES: usize = 100_000;

pub struct Stats {
    inner: Mutex<StatsSnapshot>,
    since: Mutex<Instant>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            since: Mutex::new(Instant::now()),
        }
    }
}

impl Stats {
    fn with(&self, f: impl FnOnce(&mut StatsSnapshot)) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard);
    }

    pub fn iq(&self, xmlns: &str, kind: &str) {
        self.with(|s| *s.iq.entry(format!("{xmlns}:{kind}")).or_default() += 1);
    }

    pub fn receipt(&self, kind: &str) {
        self.with(|s| *s.receipts.entry(kind.to_owned()).or_default() += 1);
    }

    pub fn key_share(&self) {
        self.with(|s| s.key_shares += 1);
    }

    pub fn stanza(&self, tag: &str) {
        self.with(|s| *s.stanzas.entry(tag.to_owned()).or_default() += 1);
    }

    pub fn handshake(&self, kind: HandshakeKind) {
        self.with(|s| *s.handshakes.entry(kind.as_str().to_owned()).or_default() += 1);
    }

    pub fn login(&self) {
        let since = *self.since.lock().unwrap_or_else(|p| p.into_inner());
        let at = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.with(|s| {
            s.logins += 1;
            if s.login_times_ms.len() < MAX_LOGIN_TIMES {
                s.login_times_ms.push(at);
            }
        });
    }

    pub fn replaced_session(&self) {
        self.with(|s| s.replaced_sessions += 1);
    }

    pub fn refused_login(&self) {
        self.with(|s| s.refused_logins += 1);
    }

    pub fn pairing(&self) {
        self.with(|s| s.pairings += 1);
    }

    pub fn connection(&self) {
        self.with(|s| s.connections += 1);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn reset(&self) {
        self.with(|s| *s = StatsSnapshot::default());
        *self.since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }
}
