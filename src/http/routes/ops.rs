//! Liveness, readiness, metrics and the contract document.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::Serialize;

use crate::http::envelope::Success;
use crate::http::error::ApiError;
use crate::http::state::AppState;

/// The OpenAPI document, embedded at build time.
pub const OPENAPI_YAML: &str = include_str!("../../../openapi.yaml");

#[derive(Serialize)]
pub struct Health {
    status: &'static str,
}

/// Liveness: the process answers.
pub async fn healthz() -> Success<Health> {
    Success::ok(Health { status: "ok" })
}

/// Readiness: the database answers and every migration is applied.
pub async fn readyz(State(state): State<AppState>) -> Result<Success<Health>, ApiError> {
    if state.sessions.cluster().draining() {
        return Err(ApiError::ServiceUnavailable(
            "this node is draining: it hands its devices to the other nodes and stops".to_owned(),
        ));
    }
    if crate::store::is_ready(&state.db).await {
        Ok(Success::ok(Health { status: "ready" }))
    } else {
        Err(ApiError::ServiceUnavailable(
            "database unreachable or migrations pending".to_owned(),
        ))
    }
}

/// Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let counts = state.sessions.status_counts();
    crate::metrics::devices_owned(state.sessions.held_count());
    for status in crate::session::SessionStatus::ALL {
        let count = counts.get(&status).copied().unwrap_or(0);
        metrics::gauge!(crate::metrics::DEVICES, "status" => status.as_str()).set(count as f64);
    }
    let body = crate::metrics::handle()
        .map(|handle| handle.render())
        .unwrap_or_default();
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
}

/// The contract.
pub async fn openapi() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/yaml")], OPENAPI_YAML)
}
