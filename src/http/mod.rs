//! The HTTP API: router, layers, extractors, envelope and handlers.

pub mod auth;
pub mod budget;
pub mod credentials;
pub mod device;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod forward;
pub mod idempotency;
pub mod qr;
pub mod reachout;
pub mod routes;
pub mod server;
pub mod state;

use std::any::Any;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, Response};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response as AxumResponse};

use auth::AuthUser;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Level;

use error::{ApiError, ErrorCode};
pub use routes::ROUTES;
use state::AppState;

/// The header that carries the request id (echoed when the client sent one).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Limits applied to every request, and the origins allowed to call from a browser.
#[derive(Debug, Clone, Default)]
pub struct HttpLimits {
    pub request_timeout: Duration,
    pub body_limit: usize,
    pub cors_origins: Vec<String>,
}

/// The whole API with its layers, ready to serve.
pub fn router(state: AppState, limits: HttpLimits) -> Router {
    // Route layers run outermost last. From the outside in: a forwarded request is verified;
    // the budget layer finds the caller; the Idempotency-Key layer answers under the caller's
    // scope (at the node that received the request, not again where it is forwarded); then a
    // request for a device another node serves is forwarded there.
    let keys = idempotency::Idempotency::new(state.clone(), limits.request_timeout);
    let routes = routes::api_router()
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            forward::forward_elsewhere,
        ))
        .route_layer(middleware::from_fn_with_state(
            keys,
            idempotency::answer_once,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            take_tenant_budget,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            forward::accept_forwarded,
        ));
    with_layers(routes, limits).with_state(state)
}

/// The layer that takes a tenant's budget: once a request's bearer token names a user, one
/// request comes off its tenant's budget before the handler runs; the caller found is handed
/// to the handler's [`AuthUser`] so the token is looked up once. A request without a user
/// token goes on as it is (the handler's extractor answers 401, or it is a public or master
/// route).
async fn take_tenant_budget(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> AxumResponse {
    let (mut parts, body) = request.into_parts();
    match AuthUser::authenticate(&parts, &state).await {
        Ok(Some(user)) => {
            tracing::Span::current().record("tenant.id", tracing::field::display(user.tenant_id));
            // A forwarded request was counted by the node that received it.
            let forwarded = parts.extensions.get::<forward::ForwardedIn>().is_some();
            let nodes = state.sessions.cluster().live().len();
            if !forwarded
                && let Err(refused) = state.budgets.take(&state.db, user.tenant_id, nodes).await
            {
                return refused.into_response();
            }
            parts.extensions.insert(user);
        }
        Ok(None) => {}
        Err(err) => return err.into_response(),
    }
    next.run(Request::from_parts(parts, body)).await
}

/// Lets browser pages from `origins` call the API (CORS). No origins: no layer, no CORS headers
/// at all.
fn cors_layer(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                axum::http::header::AUTHORIZATION,
                axum::http::header::CONTENT_TYPE,
                REQUEST_ID,
                idempotency::IDEMPOTENCY_KEY,
            ])
            .expose_headers([
                REQUEST_ID,
                axum::http::header::RETRY_AFTER,
                idempotency::IDEMPOTENT_REPLAYED,
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// Adds the fallbacks and the layer stack every route gets: request id, trace span, panic
/// catcher, metrics, timeout and body limit (outermost first).
pub fn with_layers<S>(routes: Router<S>, limits: HttpLimits) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let cors = cors_layer(&limits.cors_origins);
    let routes = routes
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.body_limit))
        .layer(middleware::from_fn_with_state(
            limits.request_timeout,
            request_timeout,
        ))
        .layer(middleware::from_fn(record_metrics))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(
                    tower_http::trace::DefaultOnResponse::new()
                        .level(Level::INFO)
                        .latency_unit(tower_http::LatencyUnit::Micros),
                )
                .on_failure(()),
        );
    // Inside the request-id layers, so that preflight answers carry an id too.
    let routes = match cors {
        Some(cors) => routes.layer(cors),
        None => routes,
    };
    routes
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// One span per request, named by the route template rather than the URI: paths and query
/// strings can hold phone numbers, which never go to the logs.
fn request_span(req: &Request) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("<unmatched>");
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // The tenant and device are recorded once known (the budget layer, the device scope).
    tracing::info_span!(
        "request",
        method = %req.method(),
        route,
        "request.id" = request_id,
        "tenant.id" = tracing::field::Empty,
        "device.id" = tracing::field::Empty,
    )
}

async fn record_metrics(req: Request, next: Next) -> axum::response::Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "<unmatched>".to_owned());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(crate::metrics::HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(crate::metrics::HTTP_DURATION, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

async fn request_timeout(
    State(timeout): State<Duration>,
    req: Request,
    next: Next,
) -> axum::response::Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(timeout_ms = timeout.as_millis() as u64, "request timed out");
            ApiError::ServiceUnavailable("the request took too long; retry later".to_owned())
                .into_response()
        }
    }
}

fn panic_response(_payload: Box<dyn Any + Send + 'static>) -> Response<axum::body::Body> {
    // The payload may hold anything the panicking code had in hand: it is not logged.
    tracing::error!("handler panicked");
    error::envelope(ErrorCode::InternalError, "internal error", &[])
}

async fn route_not_found() -> ApiError {
    ApiError::NotFound("no such route".to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn limits() -> HttpLimits {
        HttpLimits {
            request_timeout: Duration::from_millis(50),
            body_limit: 1024,
            cors_origins: Vec::new(),
        }
    }

    async fn call(router: Router, uri: &str) -> (u16, serde_json::Value) {
        let response = router
            .oneshot(
                Request::builder()
                    .uri(uri)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("infallible");
        let status = response.status().as_u16();
        assert!(response.headers().contains_key(REQUEST_ID));
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).expect("JSON envelope"),
        )
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_an_opaque_500() {
        async fn boom() -> &'static str {
            panic!("secret detail")
        }
        let router = with_layers(Router::new().route("/boom", get(boom)), limits());
        let (status, body) = call(router, "/boom").await;
        assert_eq!(status, 500);
        assert_eq!(body["error_code"], "INTERNAL_ERROR");
        assert!(!body.to_string().contains("secret detail"));
    }

    #[tokio::test]
    async fn a_slow_handler_answers_503_at_the_deadline() {
        async fn slow() -> &'static str {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late"
        }
        let router = with_layers(Router::new().route("/slow", get(slow)), limits());
        let started = std::time::Instant::now();
        let (status, body) = call(router, "/slow").await;
        assert_eq!(status, 503);
        assert_eq!(body["error_code"], "SERVICE_UNAVAILABLE");
        assert!(started.elapsed() < Duration::from_secs(4));
    }
}
