//! WhatsApp's reach-out time-lock on the device's account: while it holds, WhatsApp refuses the
//! account's first contacts with strangers (error 463). Read through whatsapp-rust's MEX query
//! (`fetch_reachout_timelock`), kept with the device for a short while, and read again whenever
//! a 463 is seen.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::device::DeviceSession;
use super::state::SessionError;
use super::whatsapp::call;

/// WhatsApp's error code for a contact refused by the reach-out time-lock.
pub const REACHOUT_REFUSED: u16 = 463;

/// How long a read of the lock is trusted.
const TRUSTED_FOR: Duration = Duration::from_secs(60);

/// How long a failed read keeps unasked reads from trying again (a slow WhatsApp must not
/// slow every `GET /status` down).
const FAILED_FOR: Duration = Duration::from_secs(15);

/// The account's reach-out time-lock as WhatsApp last told it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReachoutLock {
    pub active: bool,
    /// When it ends, if WhatsApp said.
    pub until: Option<DateTime<Utc>>,
}

impl ReachoutLock {
    /// Seconds until the lock ends (at least 1), if it holds and its end is known.
    pub fn retry_after_secs(&self, now: DateTime<Utc>) -> Option<u64> {
        let until = self.until.filter(|_| self.active)?;
        Some(
            u64::try_from((until - now).num_seconds())
                .unwrap_or(0)
                .max(1),
        )
    }
}

/// The last read of the lock, kept with the device.
#[derive(Default)]
pub struct ReachoutCache {
    /// When it was last read, and what was read (`None`: the read failed).
    last: Mutex<Option<(Instant, Option<ReachoutLock>)>>,
}

/// What the cache says.
enum Cached {
    Lock(ReachoutLock),
    RecentlyFailed,
    Stale,
}

impl ReachoutCache {
    fn get(&self) -> Cached {
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last {
            Some((at, Some(lock))) if at.elapsed() < TRUSTED_FOR => Cached::Lock(lock),
            Some((at, None)) if at.elapsed() < FAILED_FOR => Cached::RecentlyFailed,
            _ => Cached::Stale,
        }
    }

    fn put(&self, lock: Option<ReachoutLock>) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), lock));
    }
}

impl From<whatsapp_rust::features::MexError> for SessionError {
    fn from(err: whatsapp_rust::features::MexError) -> Self {
        use whatsapp_rust::features::MexError;
        match err {
            MexError::Request(iq) => iq.into(),
            MexError::ExtensionError { code, message } => SessionError::WhatsApp {
                code: u16::try_from(code).unwrap_or(500),
                text: message,
            },
            other => SessionError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl DeviceSession {
    /// The account's reach-out time-lock: the last read while it is recent, unless `refresh`;
    /// else asked of WhatsApp within `deadline`.
    pub async fn reachout_lock(
        &self,
        refresh: bool,
        deadline: Duration,
    ) -> Result<ReachoutLock, SessionError> {
        let cache = &self.caches().reachout;
        if !refresh {
            match cache.get() {
                Cached::Lock(lock) => return Ok(lock),
                Cached::RecentlyFailed => {
                    return Err(SessionError::Unreachable(
                        "the reach-out time-lock could not be read lately".to_owned(),
                    ));
                }
                Cached::Stale => {}
            }
        }
        let answer = match call(
            "reachout_timelock",
            deadline.min(self.timeout()),
            self.client().mex().fetch_reachout_timelock(),
        )
        .await
        {
            Ok(answer) => answer,
            Err(err) => {
                cache.put(None);
                return Err(err);
            }
        };
        let until = answer
            .time_enforcement_ends
            .as_deref()
            .and_then(|secs| secs.parse::<i64>().ok())
            .and_then(|secs| DateTime::from_timestamp(secs, 0));
        let lock = ReachoutLock {
            active: answer.is_active.unwrap_or(false),
            until,
        };
        cache.put(Some(lock));
        Ok(lock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_counts_to_the_end_of_an_active_lock() {
        let now = Utc::now();
        let lock = ReachoutLock {
            active: true,
            until: Some(now + chrono::Duration::seconds(90)),
        };
        assert_eq!(lock.retry_after_secs(now), Some(90));
        let ended = ReachoutLock {
            active: true,
            until: Some(now - chrono::Duration::seconds(5)),
        };
        assert_eq!(ended.retry_after_secs(now), Some(1));
        let inactive = ReachoutLock {
            active: false,
            until: Some(now + chrono::Duration::seconds(90)),
        };
        assert_eq!(inactive.retry_after_secs(now), None);
    }
}
