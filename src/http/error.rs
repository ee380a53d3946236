//! The WUTS error envelope and the catalogue of error codes.
//!
//! Every failure a client can see is an [`ApiError`]; its `IntoResponse` is the only place an
//! error body is written. 5xx bodies never carry the cause: it is logged once, here, inside the
//! request's span (which carries the request id).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::services;
use crate::session::SessionError;
use crate::store::StoreError;

/// Stable, machine-readable error codes. Clients branch on these, never on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    ValidationError,
    Unauthorized,
    Forbidden,
    NotFound,
    NotOnWhatsapp,
    MethodNotAllowed,
    DeviceNotReady,
    Conflict,
    PayloadTooLarge,
    RateLimited,
    DeviceError,
    WhatsappTimeout,
    ServiceUnavailable,
    InternalError,
}

impl ErrorCode {
    /// The HTTP status that goes with the code.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::ValidationError => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound | ErrorCode::NotOnWhatsapp => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::DeviceNotReady | ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::DeviceError => StatusCode::BAD_GATEWAY,
            ErrorCode::WhatsappTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// One field-level problem: which field, what is wrong, and (when short and harmless) the value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            value: None,
        }
    }

    /// Adds the offending value, cut to a length that keeps error bodies small.
    pub fn with_value(mut self, value: impl Into<serde_json::Value>) -> Self {
        let value = value.into();
        self.value = Some(match value {
            serde_json::Value::String(s) if s.chars().count() > 100 => {
                serde_json::Value::String(s.chars().take(100).collect::<String>() + "…")
            }
            other => other,
        });
        self
    }
}

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Validation {
        message: String,
        fields: Vec<FieldError>,
    },
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    NotOnWhatsapp(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    DeviceNotReady(String),
    /// The device is served by another gateway node: the forwarding layer sends the request
    /// there (see `http::forward`); without it, `DEVICE_NOT_READY`.
    #[error("the device is served by another gateway node")]
    Elsewhere(crate::domain::DeviceId, crate::store::nodes::LiveNode),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than the limit")]
    PayloadTooLarge,
    #[error("{reason}; retry after {retry_after_secs} s")]
    RateLimited {
        reason: &'static str,
        retry_after_secs: u64,
    },
    #[error("{0}")]
    Device(String),
    #[error("{0}")]
    WhatsappTimeout(String),
    #[error("{0}")]
    ServiceUnavailable(String),
    /// Anything unexpected. The cause is logged, never answered.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// A validation failure of one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::fields(vec![FieldError::new(field, message)])
    }

    /// A validation failure of several fields. The summary names the first one.
    pub fn fields(fields: Vec<FieldError>) -> Self {
        let message = match fields.first() {
            Some(first) if fields.len() == 1 => format!("{}: {}", first.field, first.message),
            Some(first) => format!(
                "{}: {} (and {} more)",
                first.field,
                first.message,
                fields.len() - 1
            ),
            None => "invalid request".to_owned(),
        };
        Self::Validation { message, fields }
    }

    /// A resource that does not exist, or exists for someone else (never distinguished).
    pub fn not_found(what: &str) -> Self {
        Self::NotFound(format!("{what} not found"))
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into())
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Validation { .. } => ErrorCode::ValidationError,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::NotOnWhatsapp(_) => ErrorCode::NotOnWhatsapp,
            ApiError::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            ApiError::DeviceNotReady(_) | ApiError::Elsewhere(..) => ErrorCode::DeviceNotReady,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::Device(_) => ErrorCode::DeviceError,
            ApiError::WhatsappTimeout(_) => ErrorCode::WhatsappTimeout,
            ApiError::ServiceUnavailable(_) => ErrorCode::ServiceUnavailable,
            ApiError::Internal(_) => ErrorCode::InternalError,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            // The pool could not hand out a connection in time: the database is down or
            // saturated. Retryable, and not the client's fault.
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                tracing::error!(error = %err, "database unavailable");
                Self::ServiceUnavailable("database unavailable, retry later".to_owned())
            }
            other => Self::Internal(other.into()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(what) => Self::Conflict(what.to_owned()),
            StoreError::Db(err) => err.into(),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(err: SessionError) -> Self {
        match err {
            SessionError::NotReady(m) | SessionError::Keys(m) => Self::DeviceNotReady(m),
            SessionError::Conflict(m) => Self::Conflict(m),
            SessionError::Unreachable(m) => Self::WhatsappTimeout(m),
            SessionError::Timeout => {
                Self::WhatsappTimeout("WhatsApp did not answer in time".to_owned())
            }
            e @ SessionError::WhatsApp { .. } => Self::Device(e.to_string()),
            SessionError::Busy => Self::RateLimited {
                reason: "too many requests in flight for this device",
                retry_after_secs: 1,
            },
            SessionError::Paced { retry_after_secs } => Self::RateLimited {
                reason: "too many WhatsApp lookups or participant changes for this device",
                retry_after_secs,
            },
            SessionError::Store(e) => e.into(),
            SessionError::Internal(e) => Self::Internal(e),
        }
    }
}

impl From<services::Error> for ApiError {
    fn from(err: services::Error) -> Self {
        use services::Error;
        match err {
            Error::Invalid { field, message } => Self::field(field, message),
            Error::NotFound(m) => Self::NotFound(m),
            Error::NotOnWhatsapp(m) => Self::NotOnWhatsapp(m),
            Error::Conflict(m) => Self::Conflict(m),
            Error::Forbidden(m) => Self::Forbidden(m),
            Error::Session(e) => e.into(),
            Error::Store(e) => e.into(),
            Error::Internal(e) => Self::Internal(e),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    success: bool,
    error: &'a str,
    error_code: ErrorCode,
    timestamp: String,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    validation: &'a [FieldError],
}

/// Writes the error envelope. Used by [`ApiError`] and by the layers that turn non-envelope
/// responses (timeouts, panics) into envelopes.
pub fn envelope(code: ErrorCode, message: &str, fields: &[FieldError]) -> Response {
    let body = ErrorBody {
        success: false,
        error: message,
        error_code: code,
        timestamp: crate::http::envelope::now_rfc3339(),
        validation: fields,
    };
    (code.status(), axum::Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        match &self {
            ApiError::Internal(cause) => {
                tracing::error!(error = ?cause, "internal error");
                envelope(code, "internal error", &[])
            }
            ApiError::Validation { message, fields } => envelope(code, message, fields),
            ApiError::RateLimited {
                retry_after_secs, ..
            } => {
                let mut response = envelope(code, &self.to_string(), &[]);
                if let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                response
            }
            ApiError::Elsewhere(device, node) => {
                let mut response = envelope(code, &self.to_string(), &[]);
                response
                    .extensions_mut()
                    .insert(super::forward::ForwardTo(*device, node.clone()));
                response
            }
            _ => envelope(code, &self.to_string(), &[]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_the_contract_status() {
        assert_eq!(ErrorCode::ValidationError.status(), 400);
        assert_eq!(ErrorCode::NotOnWhatsapp.status(), 404);
        assert_eq!(ErrorCode::DeviceNotReady.status(), 409);
        assert_eq!(ErrorCode::DeviceError.status(), 502);
        assert_eq!(ErrorCode::WhatsappTimeout.status(), 504);
        assert_eq!(
            serde_json::to_value(ErrorCode::NotOnWhatsapp).ok(),
            Some(serde_json::json!("NOT_ON_WHATSAPP"))
        );
    }

    #[test]
    fn validation_summary_names_the_field() {
        let err = ApiError::fields(vec![
            FieldError::new("email", "not an e-mail address"),
            FieldError::new("role", "unknown role"),
        ]);
        assert_eq!(err.to_string(), "email: not an e-mail address (and 1 more)");
    }

    #[test]
    fn long_values_are_cut() {
        let field = FieldError::new("name", "too long").with_value("x".repeat(500));
        let Some(serde_json::Value::String(shown)) = field.value else {
            panic!("value kept as a string");
        };
        assert_eq!(shown.chars().count(), 101);
    }
}
