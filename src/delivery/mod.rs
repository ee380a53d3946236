//! Webhook delivery: the workers that take events from each device's queue and send them to
//! its webhook, in order, signed per the Standard Webhooks specification, with retries on a
//! schedule measured in hours.
//!
//! - [`address`]: which addresses a webhook may reach (no private networks unless allowed).
//! - [`sign`]: secrets and signatures.
//! - [`send`]: one HTTP attempt, bounded in time and in what it reads.
//! - [`worker`]: claiming, sending and recording; wake-ups, sweeps, pruning.

pub mod address;
pub mod send;
pub mod sign;
pub mod worker;

use std::time::Duration;

pub use send::{Sender, Sent};
pub use worker::Deliverer;

/// How deliveries behave (operator settings).
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Let webhooks reach loopback, private, link-local and multicast addresses.
    pub allow_private: bool,
    /// The waits between attempts; the last one repeats.
    pub retry_schedule: Vec<Duration>,
    /// A webhook failing without a success for this long is disabled.
    pub disable_after: Duration,
    /// Events older than this are pruned.
    pub retention: Duration,
    /// Deliveries in flight at once on this node.
    pub concurrency: usize,
    /// The safety-net sweep, in case a wake-up was missed.
    pub sweep: Duration,
}

/// The retry schedule of the contract: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h.
pub const RETRY_SCHEDULE: [Duration; 9] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(14 * 3600),
    Duration::from_secs(20 * 3600),
    Duration::from_secs(24 * 3600),
];

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            allow_private: false,
            retry_schedule: RETRY_SCHEDULE.to_vec(),
            disable_after: Duration::from_secs(5 * 24 * 3600),
            retention: Duration::from_secs(7 * 24 * 3600),
            concurrency: 64,
            sweep: Duration::from_secs(5),
        }
    }
}

impl DeliveryConfig {
    /// The wait after the `failures`-th failed attempt (1 = the first), with ±10 % jitter.
    pub fn retry_after(&self, failures: u32) -> Duration {
        let at = (failures.max(1) as usize - 1).min(self.retry_schedule.len().saturating_sub(1));
        let base = self
            .retry_schedule
            .get(at)
            .copied()
            .unwrap_or(Duration::from_secs(5));
        let jitter = rand::random_range(0.9..=1.1);
        base.mul_f64(jitter)
    }
}
