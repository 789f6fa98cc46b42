//! The REST handlers (KServe v1 and v2) and the middleware around them.
//!
//! Handlers only translate: HTTP in, a store lookup or a call to the inference core
//! ([`crate::inference`]), HTTP out. Every failure is an
//! [`ApiError`], so every error body, including those of unknown routes, bad paths and rejected
//! bodies, is `{"error": "<message>"}`.

pub(crate) mod health;
pub(crate) mod infer;
pub(crate) mod metadata;
pub(crate) mod observe;
pub(crate) mod repository;
pub(crate) mod v1;

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::Response;
use tower::BoxError;
use tracing::{Span, debug, error, warn};

use crate::api_error::{ApiError, InternalCause};
use crate::state::AppState;

/// `axum::extract::Path` with a JSON-shaped rejection.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct ModelPath<T>(pub T);

/// The request body, with over-limit bodies answered by a JSON 413.
#[derive(Debug)]
pub(crate) struct RawBody(pub Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        Bytes::from_request(request, state).await.map(RawBody).map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit: state.limits().max_body_bytes }
            } else if caused_by_timeout(&rejection) {
                ApiError::BodyTimeout(state.connections().body_read_timeout)
            } else {
                ApiError::BadRequest(format!("cannot read the request body: {}", rejection.body_text()))
            }
        })
    }
}

/// Whether reading a body failed because it stalled past `--body_read_timeout`.
fn caused_by_timeout(rejection: &axum::extract::rejection::BytesRejection) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(e) = source {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Logs the cause of every 500, inside the request's span; the body only says "internal server error".
pub(crate) async fn log_internal_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if let Some(InternalCause(cause)) = response.extensions().get::<InternalCause>() {
        error!(status = response.status().as_u16(), cause = %cause, "request failed");
    }
    response
}

/// The fallback for paths no route matches.
pub(crate) async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NoRoute { method, path: uri.path().to_owned() }
}

/// The fallback for a known path with the wrong method.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed { method, path: uri.path().to_owned() }
}

/// Turns the errors of the concurrency limit, load shedder and timeout into 503s.
pub(crate) fn overload_error(timeout: Duration, error: &BoxError, metrics: &crate::metrics::Metrics) -> ApiError {
    if error.is::<tower::load_shed::error::Overloaded>() {
        metrics.rejected("overloaded");
        // Debug, not warn: under overload this would be one line per shed request.
        debug!("request shed: too many requests in flight");
        ApiError::Overloaded
    } else if error.is::<tower::timeout::error::Elapsed>() {
        metrics.rejected("timeout");
        warn!(timeout_secs = timeout.as_secs(), "request timed out");
        ApiError::Timeout(timeout)
    } else {
        ApiError::internal(format!("middleware failed: {error}"))
    }
}

/// The request's span, named by its route template (`/v2/models/{model_name}/infer`), never by its
/// raw path, so that spans and any metric derived from them have bounded cardinality.
pub(crate) fn request_span(request: &Request) -> Span {
    let route = request.extensions().get::<MatchedPath>().map_or("<unmatched>", MatchedPath::as_str);
    tracing::info_span!("request", method = %request.method(), route)
}
