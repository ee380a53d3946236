//! The session states of the contract (`GET /status`), as stored in `devices.status`.

use std::fmt;
use std::str::FromStr;

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};

/// What a device session is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionStatus {
    /// Never paired, or pairing gave up.
    Unpaired,
    /// A QR code or pairing code is out, waiting for the phone.
    Pairing,
    /// Paired; connecting or reconnecting to WhatsApp.
    Connecting,
    /// Connected and logged in: WhatsApp requests can be served.
    Connected,
    /// Paired, but the session is closed (on request, or stopped by WhatsApp).
    Disconnected,
    /// Unlinked: the credentials are gone; pair again to use the device.
    LoggedOut,
}

impl SessionStatus {
    /// Every status, for metrics.
    pub const ALL: [SessionStatus; 6] = [
        SessionStatus::Unpaired,
        SessionStatus::Pairing,
        SessionStatus::Connecting,
        SessionStatus::Connected,
        SessionStatus::Disconnected,
        SessionStatus::LoggedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Unpaired => "unpaired",
            SessionStatus::Pairing => "pairing",
            SessionStatus::Connecting => "connecting",
            SessionStatus::Connected => "connected",
            SessionStatus::Disconnected => "disconnected",
            SessionStatus::LoggedOut => "logged_out",
        }
    }
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored status the gateway does not know (a newer schema, or a hand-edited row).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown session status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for SessionStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SessionStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

// Stored as text; an unknown value fails to decode rather than reading as some other status.
impl Type<Postgres> for SessionStatus {
    fn type_info() -> PgTypeInfo {
        <&str as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <&str as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for SessionStatus {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Postgres>>::decode(value)?;
        Ok(text.parse()?)
    }
}

impl Encode<'_, Postgres> for SessionStatus {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as Encode<Postgres>>::encode_by_ref(&self.as_str(), buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_text() {
        for status in SessionStatus::ALL {
            assert_eq!(status.as_str().parse::<SessionStatus>(), Ok(status));
        }
    }

    #[test]
    fn an_unknown_stored_value_is_an_error() {
        assert_eq!(
            "paired".parse::<SessionStatus>(),
            Err(UnknownStatus("paired".to_owned()))
        );
        assert!("".parse::<SessionStatus>().is_err());
    }
}
