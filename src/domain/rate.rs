//! The gateway's one rate-limiting algorithm: the generic cell rate algorithm (GCRA), pure and
//! clock-free (callers pass `now`). `burst` calls may go at once, then one every `1/rate`
//! seconds. Used for tenants' request budgets (no waiting: refuse with the time to wait) and
//! for devices' WhatsApp pacing (wait in line up to a bound).

use std::time::{Duration, Instant};

/// A rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gcra {
    /// Time between calls on the steady schedule; `None`: no limit.
    interval: Option<Duration>,
    /// How far ahead of the schedule a call may go (the burst).
    tolerance: Duration,
}

/// When the next call is due on the steady schedule (GCRA's theoretical arrival time).
pub type Schedule = Option<Instant>;

impl Gcra {
    /// `rate` calls per second (zero, negative or not finite: no limit) after `burst` at once.
    pub fn new(rate: f64, burst: u32) -> Self {
        let interval =
            (rate.is_finite() && rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
        let step = interval.unwrap_or_default();
        Self {
            interval,
            tolerance: step * burst.max(1).saturating_sub(1),
        }
    }

    /// Whether this limits nothing.
    pub fn is_unlimited(&self) -> bool {
        self.interval.is_none()
    }

    /// The time between calls on the steady schedule (zero when unlimited).
    pub fn interval(&self) -> Duration {
        self.interval.unwrap_or_default()
    }

    /// Reserves the next slot for a call arriving at `now` that accepts to wait up to
    /// `max_wait`: answers the wait, and moves `schedule` on; or, when the wait would be
    /// longer, answers how much longer and leaves `schedule` as it was.
    pub fn reserve(
        &self,
        schedule: &mut Schedule,
        now: Instant,
        max_wait: Duration,
    ) -> Result<Duration, Duration> {
        let Some(interval) = self.interval else {
            return Ok(Duration::ZERO);
        };
        let scheduled = schedule.map_or(now, |due| due.max(now));
        let start = scheduled
            .checked_sub(self.tolerance)
            .unwrap_or(now)
            .max(now);
        let wait = start - now;
        if wait > max_wait {
            return Err(wait - max_wait);
        }
        *schedule = Some(scheduled + interval);
        Ok(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_goes_at_once_then_the_rate() {
        let gcra = Gcra::new(2.0, 3);
        let mut schedule = None;
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(
                gcra.reserve(&mut schedule, t0, Duration::ZERO),
                Ok(Duration::ZERO)
            );
        }
        assert_eq!(
            gcra.reserve(&mut schedule, t0, Duration::ZERO),
            Err(Duration::from_millis(500))
        );
        // A refusal spends nothing: half a second later one call goes.
        let later = t0 + Duration::from_millis(500);
        assert_eq!(
            gcra.reserve(&mut schedule, later, Duration::ZERO),
            Ok(Duration::ZERO)
        );
        assert!(gcra.reserve(&mut schedule, later, Duration::ZERO).is_err());
    }

    #[test]
    fn waiting_callers_are_spaced_by_the_interval() {
        let gcra = Gcra::new(1.0, 1);
        let mut schedule = None;
        let t0 = Instant::now();
        let bound = Duration::from_secs(2);
        assert_eq!(gcra.reserve(&mut schedule, t0, bound), Ok(Duration::ZERO));
        assert_eq!(
            gcra.reserve(&mut schedule, t0, bound),
            Ok(Duration::from_secs(1))
        );
        assert_eq!(
            gcra.reserve(&mut schedule, t0, bound),
            Ok(Duration::from_secs(2))
        );
        assert_eq!(
            gcra.reserve(&mut schedule, t0, bound),
            Err(Duration::from_secs(1))
        );
    }

    #[test]
    fn no_rate_limits_nothing() {
        let gcra = Gcra::new(0.0, 1);
        assert!(gcra.is_unlimited());
        let mut schedule = None;
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(
                gcra.reserve(&mut schedule, t0, Duration::ZERO),
                Ok(Duration::ZERO)
            );
        }
    }
}
