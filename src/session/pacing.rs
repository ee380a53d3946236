//! Per-device pacing of the WhatsApp calls that get accounts banned when abused (number checks,
//! resolve usync queries, participant changes), with the gateway's one rate algorithm
//! ([`crate::domain::rate`]): `burst` calls may go at once, then one per `1/rate` seconds; a
//! call over that waits its turn, up to `queue` calls deep; beyond that it is refused at once
//! with the time to wait (`RATE_LIMITED`).

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::domain::rate::{Gcra, Schedule};

/// The pace of one device's sensitive WhatsApp calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// Calls per second once the burst is spent; zero or less: no pacing.
    pub rate: f64,
    /// Calls that may go at once after a quiet spell.
    pub burst: u32,
    /// Calls that may wait their turn; more are refused.
    pub queue: u32,
}

/// A call that would wait longer than the queue allows: retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_after: Duration,
}

/// One device's pacer.
#[derive(Debug)]
pub struct Pacer {
    gcra: Gcra,
    /// Longest wait a call accepts (the queue).
    max_wait: Duration,
    schedule: Mutex<Schedule>,
}

impl Pacer {
    pub fn new(pace: Pace) -> Self {
        let gcra = Gcra::new(pace.rate, pace.burst);
        Self {
            gcra,
            max_wait: gcra.interval() * pace.queue,
            schedule: Mutex::new(None),
        }
    }

    /// Reserves the next slot: how long to wait for it, or a refusal. A reserved slot is spent
    /// even if the caller gives up waiting.
    pub fn reserve(&self, now: Instant) -> Result<Duration, Refused> {
        if self.gcra.is_unlimited() {
            return Ok(Duration::ZERO);
        }
        // A poisoned lock means a panic while it was held; the schedule is one instant and
        // still meaningful, so keep pacing with it rather than letting calls through.
        let mut schedule = self.schedule.lock().unwrap_or_else(PoisonError::into_inner);
        self.gcra
            .reserve(&mut schedule, now, self.max_wait)
            .map_err(|retry_after| Refused { retry_after })
    }

    /// Waits for the next slot, or answers the refusal at once.
    pub async fn wait(&self) -> Result<(), Refused> {
        let wait = self.reserve(Instant::now())?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer(rate: f64, burst: u32, queue: u32) -> Pacer {
        Pacer::new(Pace { rate, burst, queue })
    }

    #[test]
    fn burst_goes_at_once_then_the_rate_and_the_queue() {
        let p = pacer(2.0, 3, 2);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(p.reserve(t0), Ok(Duration::ZERO));
        }
        assert_eq!(p.reserve(t0), Ok(Duration::from_millis(500)));
        assert_eq!(p.reserve(t0), Ok(Duration::from_millis(1000)));
        let refused = p.reserve(t0).expect_err("queue full");
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        // Time restores the budget: two seconds later the schedule has caught up.
        let later = t0 + Duration::from_secs(3);
        assert_eq!(p.reserve(later), Ok(Duration::ZERO));
    }

    #[test]
    fn a_rate_of_zero_never_waits() {
        let p = pacer(0.0, 1, 0);
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(p.reserve(t0), Ok(Duration::ZERO));
        }
    }

    #[test]
    fn no_queue_means_refusal_past_the_burst() {
        let p = pacer(1.0, 1, 0);
        let t0 = Instant::now();
        assert_eq!(p.reserve(t0), Ok(Duration::ZERO));
        assert_eq!(
            p.reserve(t0),
            Err(Refused {
                retry_after: Duration::from_secs(1)
            })
        );
        assert_eq!(p.reserve(t0 + Duration::from_secs(1)), Ok(Duration::ZERO));
    }
}
