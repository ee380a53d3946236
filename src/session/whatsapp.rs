//! Calling WhatsApp from a device session: every call has a deadline, is timed, and maps
//! whatsapp-rust's errors onto the session errors the API answers with.

use std::future::Future;
use std::time::{Duration, Instant};

use whatsapp_rust::features::ContactError;

use super::state::SessionError;

impl From<ContactError> for SessionError {
    fn from(err: ContactError) -> Self {
        match err {
            ContactError::Iq(iq) => iq.into(),
            other => SessionError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<whatsapp_rust::features::GroupError> for SessionError {
    fn from(err: whatsapp_rust::features::GroupError) -> Self {
        use whatsapp_rust::features::GroupError;
        match err {
            GroupError::Iq(iq) => iq.into(),
            // Refusals of the request itself, answered as WhatsApp refusals (with the reason),
            // not as failures of the gateway.
            e @ GroupError::InvalidRequest(_) => SessionError::WhatsApp {
                code: 400,
                text: e.to_string(),
            },
            e @ GroupError::DescriptionConflict => SessionError::WhatsApp {
                code: 409,
                text: e.to_string(),
            },
            other => SessionError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<whatsapp_rust::features::CommunityError> for SessionError {
    fn from(err: whatsapp_rust::features::CommunityError) -> Self {
        use whatsapp_rust::features::CommunityError;
        match err {
            CommunityError::Iq(iq) => iq.into(),
            CommunityError::Group(group) => group.into(),
            other => SessionError::Internal(anyhow::Error::new(other)),
        }
    }
}

/// Runs one WhatsApp call with the session's deadline, recording its latency under `kind`.
pub async fn call<T, E>(
    kind: &'static str,
    timeout: Duration,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, SessionError>
where
    E: Into<SessionError>,
{
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout, work).await;
    crate::metrics::command_latency(kind, started.elapsed().as_secs_f64());
    match outcome {
        Err(_) => Err(SessionError::Timeout),
        Ok(Err(err)) => Err(err.into()),
        Ok(Ok(value)) => Ok(value),
    }
}

impl From<whatsapp_rust::features::ProfileError> for SessionError {
    fn from(err: whatsapp_rust::features::ProfileError) -> Self {
        use whatsapp_rust::features::ProfileError;
        match err {
            ProfileError::Iq(iq) => iq.into(),
            other => SessionError::Internal(anyhow::Error::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_group_requests_are_whatsapp_refusals_not_internal_errors() {
        use whatsapp_rust::features::GroupError;
        let refused = SessionError::from(GroupError::InvalidRequest("empty code".to_owned()));
        assert!(
            matches!(&refused, SessionError::WhatsApp { code: 400, text } if text.contains("empty code")),
            "{refused:?}"
        );
        let changed = SessionError::from(GroupError::DescriptionConflict);
        assert!(matches!(changed, SessionError::WhatsApp { code: 409, .. }));
    }
}
