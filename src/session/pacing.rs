//! Per-device pacing of the WhatsApp calls that get accounts banned when abused (number checks,
//! resolve usync queries, participant changes). A generic cell rate algorithm: `burst` calls may go
//! at once, then one per `1/rate` seconds; a call over that waits its turn, up to `queue` calls
//! deep; beyond that it is refused at once with the time to wait (`RATE_LIMITED`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    /// Time between calls; `None` when pacing is off.
    interval: Option<Duration>,
    /// How far ahead of the schedule a call may go (the burst).
    tolerance: Duration,
    /// Longest wait a call accepts (the queue).
    max_wait: Duration,
    /// When the next call is due on the steady schedule (GCRA's theoretical arrival time).
    due: Mutex<Option<Instant>>,
}

impl Pacer {
    pub fn new(pace: Pace) -> Self {
        let interval = (pace.rate.is_finite() && pace.rate > 0.0)
            .then(|| Duration::from_secs_f64(1.0 / pace.rate));
        let step = interval.unwrap_or_default();
        Self {
            interval,
            tolerance: step * pace.burst.max(1).saturating_sub(1),
            max_wait: step * pace.queue,
            due: Mutex::new(None),
        }
    }

    /// Reserves the next slot: how long to wait for it, or a refusal. A reserved slot is spent
    /// even if the caller gives up waiting.
    pub fn reserve(&self, now: Instant) -> Result<Duration, Refused> {
        let Some(interval) = self.interval else {
            return Ok(Duration::ZERO);
        };
        let Ok(mut due) = self.due.lock() else {
            return Ok(Duration::ZERO);
        };
        let scheduled = due.map_or(now, |d| d.max(now));
        let start = scheduled
            .checked_sub(self.tolerance)
            .unwrap_or(now)
            .max(now);
        let wait = start - now;
        if wait > self.max_wait {
            return Err(Refused {
                retry_after: wait - self.max_wait,
            });
        }
        *due = Some(scheduled + interval);
        Ok(wait)
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
