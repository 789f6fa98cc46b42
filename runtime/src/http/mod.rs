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
use axum::http::{Method, Uri};
use axum::middleware::Next;
use axum::response::Response;
use tower::BoxError;
use tracing::{Span, debug, error, warn};

use crate::api_error::{ApiError, InternalCause};
use crate::budget::BodyPermit;
use crate::state::AppState;

/// `axum::extract::Path` with a JSON-shaped rejection.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct ModelPath<T>(pub T);

/// The request body, read within `--max_body_bytes` (413), `--body_read_timeout` (408) and the
/// budget of bodies in flight (503, [`crate::budget`]); the permit holds the body's share of the budget
/// until the handler is done with the request.
#[derive(Debug)]
pub(crate) struct RawBody(pub Bytes, pub BodyPermit);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.limits().max_body_bytes;
        let declared = request
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        let budget = state.bodies();
        let mut permit = budget.permit();
        // A declared length is taken whole before anything is read; a chunked body as it arrives.
        let refused = declared.is_some_and(|n| !permit.cover(usize::try_from(n).unwrap_or(usize::MAX)));
        let body = Counted { inner: http_body_util::Limited::new(request.into_body(), limit), permit, seen: 0 };
        let collected = body.collect_bytes(refused).await;
        collected.map(|(bytes, permit)| RawBody(bytes, permit)).map_err(|e| {
            if is::<http_body_util::LengthLimitError>(&*e) {
                ApiError::PayloadTooLarge { limit }
            } else if is::<tower_http::timeout::TimeoutError>(&*e) {
                ApiError::BodyTimeout(state.connections().body_read_timeout)
            } else if is::<OverBudget>(&*e) {
                state.metrics().rejected("body_budget");
                ApiError::BodyBudget { limit: budget.limit() }
            } else {
                ApiError::BadRequest(format!("cannot read the request body: {e}"))
            }
        })
    }
}

/// The body budget could not cover the body.
#[derive(Debug, thiserror::Error)]
#[error("request bodies in flight are over --max_inflight_body_bytes")]
struct OverBudget;

/// A body that charges its permit for every chunk before keeping it.
struct Counted {
    inner: http_body_util::Limited<axum::body::Body>,
    permit: BodyPermit,
    seen: usize,
}

impl Counted {
    /// The whole body, and the permit covering it. A body the budget cannot cover (`refused` already,
    /// or once a chunk goes over) is read to its end and dropped chunk by chunk, taking no memory, so
    /// that the client, still sending, reads a clean 503 instead of a reset connection.
    async fn collect_bytes(mut self, mut refused: bool) -> Result<(Bytes, BodyPermit), BoxError> {
        use http_body_util::BodyExt;
        let mut first: Option<Bytes> = None;
        let mut rest: Vec<u8> = Vec::new();
        while let Some(frame) = self.inner.frame().await {
            let Ok(data) = frame?.into_data() else { continue };
            if refused {
                continue;
            }
            self.seen = self.seen.saturating_add(data.len());
            if !self.permit.cover(self.seen) {
                refused = true;
                (first, rest) = (None, Vec::new());
                continue;
            }
            // One chunk (a small request, usually) is kept as it came, without a copy.
            match first.take() {
                None if rest.is_empty() => first = Some(data),
                None => rest.extend_from_slice(&data),
                Some(head) => {
                    // What is still to come, when the length was declared (the permit already covers it).
                    let remaining = usize::try_from(axum::body::HttpBody::size_hint(&self.inner).lower()).unwrap_or(0);
                    rest.reserve_exact(self.seen.saturating_add(remaining));
                    rest.extend_from_slice(&head);
                    rest.extend_from_slice(&data);
                }
            }
        }
        if refused {
            return Err(Box::new(OverBudget));
        }
        let bytes = first.unwrap_or_else(|| Bytes::from(rest));
        Ok((bytes, self.permit))
    }
}

/// Whether error `e`, or one of its sources, is an `E`.
fn is<E: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(e) = source {
        if e.is::<E>() {
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
