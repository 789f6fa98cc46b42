//! The v2 REST handlers and the middleware around them.
//!
//! Handlers only translate: HTTP in, a store lookup or a model call, HTTP out. Every failure is an
//! [`ApiError`], so every error body, including those of unknown routes, bad paths and rejected
//! bodies, is `{"error": "<message>"}`.

pub(crate) mod health;
pub(crate) mod infer;
pub(crate) mod metadata;
pub(crate) mod observe;
pub(crate) mod repository;

use std::time::Duration;

use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::http::{Method, Uri};
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;
use tower::BoxError;
use tracing::{Span, debug, error, warn};

use crate::error::{ApiError, InternalCause};

/// `axum::extract::Path` with a JSON-shaped rejection.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct ModelPath<T>(pub T);

/// The parameters of a `/v2/models/{model_name}/versions/{model_version}/…` route.
#[derive(Debug, Deserialize)]
pub(crate) struct VersionParams {
    pub model_name: String,
    pub model_version: String,
}

/// The header that pins the version of a request to `/v2/models/{m}/…` routes without one.
pub const MODEL_VERSION_HEADER: &str = "x-model-version";

/// The version a request asks for: the path's, else the `x-model-version` header's.
///
/// # Errors
/// 400 when the header is repeated, empty or not text, or names another version than the path.
pub(crate) fn requested_version(
    headers: &axum::http::HeaderMap,
    path: Option<String>,
) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(MODEL_VERSION_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(path);
    };
    let bad = |why: &str| ApiError::BadRequest(format!("the {MODEL_VERSION_HEADER} header {why}"));
    if values.next().is_some() {
        return Err(bad("is repeated"));
    }
    let header = value.to_str().map_err(|_| bad("is not text"))?.trim();
    if header.is_empty() {
        return Err(bad("is empty"));
    }
    match path {
        Some(p) if !ferroserve_formats::serving::same_version(&p, header) => {
            Err(bad(&format!("asks for version `{header}` but the path for `{p}`")))
        }
        Some(p) => Ok(Some(p)),
        None => Ok(Some(header.to_owned())),
    }
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
