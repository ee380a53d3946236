//! The running server's shared state: its identity, the world, stats and faults.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::faults::Faults;
use crate::noise::ServerIdentity;
use crate::stats::Stats;
use crate::world::World;

pub struct Sim {
    pub identity: ServerIdentity,
    pub world: World,
    pub stats: Stats,
    pub faults: Faults,
    next_connection: AtomicU64,
    next_stanza_id: AtomicU64,
}

impl Sim {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            identity: ServerIdentity::generate()?,
            world: World::default(),
            stats: Stats::default(),
            faults: Faults::default(),
            next_connection: AtomicU64::new(1),
            next_stanza_id: AtomicU64::new(1),
        })
    }

    pub fn next_connection_id(&self) -> u64 {
        self.stats.connection();
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// An id for a server-initiated stanza.
    pub fn stanza_id(&self) -> String {
        format!(
            "s.{:x}",
            self.next_stanza_id.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
