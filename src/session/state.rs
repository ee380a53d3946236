//! What a device session is doing, as the rest of the gateway sees it.

use chrono::{DateTime, Utc};

pub use crate::domain::SessionStatus;

/// A QR code currently offered for pairing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingQr {
    /// The `2@...` string to encode. Never logged.
    pub code: String,
    pub generated_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A pairing code currently offered ("link with phone number").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingCode {
    /// The 8 characters as WhatsApp shows them. Never logged.
    pub code: String,
    /// The phone number it was requested for (digits).
    pub phone: String,
    pub expires_at: DateTime<Utc>,
}

/// The observable state of one device session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    pub status: SessionStatus,
    /// The device's JID once paired (`<digits>:<device>@s.whatsapp.net`).
    pub jid: Option<String>,
    /// The account's LID JID once paired.
    pub lid: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
    pub qr: Option<PairingQr>,
    pub pairing_code: Option<PairingCode>,
    /// Why the session last stopped on its own.
    pub last_error: Option<String>,
    /// Bumped whenever the session changes what the device's contacts look like (block list,
    /// names): read-side caches compare it to know they are current.
    pub contacts_version: u64,
    /// Connection attempts to WhatsApp that failed (the cause is in `last_error`).
    pub connect_failures: u64,
}

impl SessionState {
    pub fn new(status: SessionStatus) -> Self {
        Self {
            status,
            jid: None,
            lid: None,
            last_seen: None,
            qr: None,
            pairing_code: None,
            last_error: None,
            contacts_version: 0,
            connect_failures: 0,
        }
    }

    /// The phone number of the paired account (digits), from its JID.
    pub fn phone_number(&self) -> Option<String> {
        let jid = self.jid.as_deref()?;
        let user = jid.split('@').next()?;
        let digits = user.split([':', '.']).next()?;
        (!digits.is_empty()).then(|| digits.to_owned())
    }

    /// The QR code, if one is out and has not expired.
    pub fn live_qr(&self, now: DateTime<Utc>) -> Option<&PairingQr> {
        self.qr.as_ref().filter(|qr| qr.expires_at > now)
    }
}

/// Why a session could not do what was asked. Each maps to one contract error code.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Not paired, not connected, or served by another node (`DEVICE_NOT_READY`).
    #[error("{0}")]
    NotReady(String),
    /// The state forbids the action, e.g. pairing a paired device (`CONFLICT`).
    #[error("{0}")]
    Conflict(String),
    /// WhatsApp could not be reached at all; the reason says why (`WHATSAPP_TIMEOUT`).
    #[error("{0}")]
    Unreachable(String),
    /// WhatsApp did not answer in time (`WHATSAPP_TIMEOUT`).
    #[error("WhatsApp did not answer in time")]
    Timeout,
    /// WhatsApp answered with an error (`DEVICE_ERROR`).
    #[error("whatsapp error {code}: {text}")]
    WhatsApp { code: u16, text: String },
    /// The device's command queue is full (`RATE_LIMITED`).
    #[error("too many requests in flight for this device")]
    Busy,
    /// The device's pace for sensitive WhatsApp calls is spent and its queue full
    /// (`RATE_LIMITED`).
    #[error("too many WhatsApp lookups or participant changes for this device")]
    Paced { retry_after_secs: u64 },
    /// The device's stored keys do not open with the configured store keys
    /// (`DEVICE_NOT_READY`; the reason names the key id, never the key).
    #[error("{0}")]
    Keys(String),
    /// The store failed (`SERVICE_UNAVAILABLE` or `INTERNAL_ERROR`).
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Anything else (`INTERNAL_ERROR`).
    #[error("session failure")]
    Internal(#[source] anyhow::Error),
}

impl From<whatsapp_rust::request::IqError> for SessionError {
    fn from(err: whatsapp_rust::request::IqError) -> Self {
        use whatsapp_rust::request::IqError;
        match err {
            IqError::Timeout => SessionError::Timeout,
            IqError::ServerError { code, text, .. } => SessionError::WhatsApp { code, text },
            IqError::NotConnected | IqError::Disconnected(_) | IqError::InternalChannelClosed => {
                SessionError::NotReady("the device is not connected".to_owned())
            }
            other => SessionError::Internal(anyhow::Error::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_number_comes_from_the_device_jid() {
        let mut state = SessionState::new(SessionStatus::Connected);
        state.jid = Some("5511999999999:12@s.whatsapp.net".to_owned());
        assert_eq!(state.phone_number().as_deref(), Some("5511999999999"));
        state.jid = None;
        assert_eq!(state.phone_number(), None);
    }
}
