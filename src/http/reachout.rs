//! WhatsApp's 463 (the account's reach-out time-lock refused a first contact with a stranger)
//! answered as what it is: `429 RATE_LIMITED` with `Retry-After` until the lock ends, not a
//! generic `DEVICE_ERROR`. Seeing one reads the lock again, so `GET /status` shows it.

use std::time::Duration;

use chrono::Utc;

use super::error::ApiError;
use crate::services;
use crate::session::reachout::REACHOUT_REFUSED;
use crate::session::{DeviceSession, SessionError};

/// `Retry-After` when WhatsApp does not say when the lock ends.
const UNKNOWN_END_RETRY_SECS: u64 = 3600;

/// How long reading the lock may hold up the answer to the refused request.
const LOCK_READ_DEADLINE: Duration = Duration::from_secs(5);

/// A service's outcome, with WhatsApp's 463 turned into `RATE_LIMITED`.
pub async fn checked<T>(
    session: &DeviceSession,
    outcome: Result<T, services::Error>,
) -> Result<T, ApiError> {
    match outcome {
        Err(services::Error::Session(SessionError::WhatsApp {
            code: REACHOUT_REFUSED,
            ..
        })) => Err(refused(session).await),
        other => other.map_err(ApiError::from),
    }
}

async fn refused(session: &DeviceSession) -> ApiError {
    let lock = session.reachout_lock(true, LOCK_READ_DEADLINE).await;
    if let Err(err) = &lock {
        tracing::warn!(error = %err, "reach-out time-lock not read after a 463");
    }
    let retry_after_secs = lock
        .ok()
        .and_then(|lock| lock.retry_after_secs(Utc::now()))
        .unwrap_or(UNKNOWN_END_RETRY_SECS);
    ApiError::RateLimited {
        reason: "WhatsApp's reach-out time-lock refuses this account's new contacts for now",
        retry_after_secs,
    }
}
