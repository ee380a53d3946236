//! The success side of the WUTS envelope: `{"success": true, ...}`.
//!
//! Routes keep the published API's shapes: some put their payload under `data`, others at the top
//! level. [`Success`] flattens a payload struct next to `success`; [`Data`] nests it under `data`.

#![expect(
    clippy::disallowed_types,
    reason = "the envelope types are built on axum's own; everything else uses these"
)]

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The current time as RFC 3339 UTC with second precision (`2026-06-15T12:00:00Z`).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `{"success": true, ...payload}` with the payload's fields at top level.
#[derive(Debug)]
pub struct Success<T>(pub StatusCode, pub T);

impl<T> Success<T> {
    pub fn ok(payload: T) -> Self {
        Self(StatusCode::OK, payload)
    }

    pub fn created(payload: T) -> Self {
        Self(StatusCode::CREATED, payload)
    }
}

#[derive(Serialize)]
struct Flattened<T> {
    success: bool,
    #[serde(flatten)]
    payload: T,
}

impl<T: Serialize> IntoResponse for Success<T> {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(Flattened {
                success: true,
                payload: self.1,
            }),
        )
            .into_response()
    }
}

/// `{"success": true, "data": payload}`.
#[derive(Debug)]
pub struct Data<T>(pub T);

#[derive(Serialize)]
struct Nested<T> {
    success: bool,
    data: T,
}

impl<T: Serialize> IntoResponse for Data<T> {
    fn into_response(self) -> Response {
        Json(Nested {
            success: true,
            data: self.0,
        })
        .into_response()
    }
}

/// `{"success": true, "message": "..."}`, for actions with nothing else to say.
#[derive(Debug, Serialize)]
pub struct Message {
    pub message: String,
}

impl Message {
    pub fn new(message: impl Into<String>) -> Success<Self> {
        Success::ok(Self {
            message: message.into(),
        })
    }
}
