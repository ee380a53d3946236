//! What a service can fail with. `http/error.rs` alone turns these into statuses and codes.

use crate::session::SessionError;
use crate::store::StoreError;

/// A service's failure, in the service's words.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input the caller sent was refused by a rule found below the edge (WhatsApp's limits
    /// on a subject, for instance); `field` names the input.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// No such thing for this caller (`what` says which).
    #[error("{0}")]
    NotFound(String),
    /// The state forbids the action (nothing to act on, already done).
    #[error("{0}")]
    Conflict(String),
    /// The phone number has no WhatsApp account.
    #[error("{0}")]
    NotOnWhatsapp(String),
    /// WhatsApp refused a change for lack of rights.
    #[error("{0}")]
    Forbidden(String),
    /// The session or WhatsApp failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else; never answered in detail.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl Error {
    pub fn invalid(field: &'static str, message: impl ToString) -> Self {
        Self::Invalid {
            field,
            message: message.to_string(),
        }
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into())
    }
}

/// What a request to a group was doing, for [`group_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupAccess {
    /// Reading a group's metadata or members.
    Read,
    /// Changing a group (members, settings, links), creating or leaving one.
    Change,
}

/// The one policy for WhatsApp's group-level refusals: a group that is gone is 404 whatever
/// was asked; a group the device may not read (not a participant) reads as one that does not
/// exist, so nothing is learned about groups one is not in; a change refused for lack of rights
/// is a refusal the caller can act on.
pub fn group_failure(err: SessionError, access: GroupAccess) -> Error {
    match (err, access) {
        (SessionError::WhatsApp { code: 404, .. }, _) => {
            Error::NotFound("group not found".to_owned())
        }
        (
            SessionError::WhatsApp {
                code: 401 | 403, ..
            },
            GroupAccess::Read,
        ) => Error::NotFound("group not found (or the device is not in it)".to_owned()),
        (
            SessionError::WhatsApp {
                code: 401 | 403, ..
            },
            GroupAccess::Change,
        ) => Error::Forbidden(
            "WhatsApp refused: the device is not a participant or not an admin of this group"
                .to_owned(),
        ),
        (other, _) => Error::Session(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wa(code: u16) -> SessionError {
        SessionError::WhatsApp {
            code,
            text: String::new(),
        }
    }

    #[test]
    fn group_refusals_follow_one_policy() {
        assert!(matches!(
            group_failure(wa(404), GroupAccess::Change),
            Error::NotFound(_)
        ));
        assert!(matches!(
            group_failure(wa(403), GroupAccess::Read),
            Error::NotFound(_)
        ));
        assert!(matches!(
            group_failure(wa(401), GroupAccess::Read),
            Error::NotFound(_)
        ));
        assert!(matches!(
            group_failure(wa(403), GroupAccess::Change),
            Error::Forbidden(_)
        ));
        assert!(matches!(
            group_failure(wa(500), GroupAccess::Read),
            Error::Session(SessionError::WhatsApp { code: 500, .. })
        ));
        assert!(matches!(
            group_failure(SessionError::Timeout, GroupAccess::Change),
            Error::Session(SessionError::Timeout)
        ));
    }
}
