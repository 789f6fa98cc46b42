//! [`ApiError`]: why a request cannot be answered with a result, and the one place that decides its
//! status.
//!
//! Every front-end (v1 and v2 REST, gRPC) reports failures as an [`ApiError`]: [`ApiError::status`]
//! maps each variant, by type, to the HTTP status, and [`ApiError::code`] to the gRPC code, beside it,
//! as KServe and Triton map them. The REST body is KServe's `{"error": "<message>"}`; 4xx messages tell the
//! client what to fix, 5xx messages are generic and the cause travels in the response's extensions
//! ([`InternalCause`]) to a middleware that logs it inside the request's span.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use ferroserve_formats::{InferError, InputError};

use crate::protocol::v2::{BinaryError, DecodeError, ErrorResponse};
use crate::store::LookupError;

/// The cause of a 500, kept out of the body and logged by the `log_internal_errors` middleware.
#[derive(Debug, Clone)]
pub struct InternalCause(pub Arc<str>);

/// A request that cannot be answered with a result, and the status it gets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request is malformed: not JSON, not the protocol's shape (400).
    #[error("{0}")]
    BadRequest(String),
    /// The request's tensors do not fit the model: shape, type, values, output names (400).
    #[error(transparent)]
    Input(#[from] InputError),
    /// An unknown model or version (404), or a model that is not ready (503).
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// Something the request names does not exist, beyond models and versions (404).
    #[error("{0}")]
    NotFound(String),
    /// No route has this path (404).
    #[error(
        "no route for {method} {path}; the protocol routes start with /v2 (Open Inference Protocol) or /v1 (KServe v1)"
    )]
    NoRoute {
        /// The request's method.
        method: Method,
        /// The request's path.
        path: String,
    },
    /// The route exists but not for this method (405).
    #[error("method {method} is not allowed for {path}")]
    MethodNotAllowed {
        /// The request's method.
        method: Method,
        /// The request's path.
        path: String,
    },
    /// The request body stalled longer than `--body_read_timeout` between two chunks (408).
    #[error("the request body stalled for more than {} s (--body_read_timeout)", .0.as_secs())]
    BodyTimeout(Duration),
    /// The body is larger than `--max_body_bytes` (413).
    #[error("request body exceeds the limit of {limit} bytes (--max_body_bytes)")]
    PayloadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// More requests are in flight than `--max_concurrency` allows (503, `Retry-After`).
    #[error("server overloaded; retry later")]
    Overloaded,
    /// The request's body would take the bodies in flight over `--max_inflight_body_bytes` (503,
    /// `Retry-After`).
    #[error("request bodies in flight would exceed {limit} bytes (--max_inflight_body_bytes); retry later")]
    BodyBudget {
        /// The budget.
        limit: usize,
    },
    /// The request took longer than `--request_timeout_secs` (503).
    #[error("request timed out after {} s", .0.as_secs())]
    Timeout(Duration),
    /// The route exists but the feature does not (501): v1 `:explain` without an explainer.
    #[error("{0}")]
    NotImplemented(String),
    /// The server or model failed (500). The cause is logged, never sent.
    #[error("internal server error")]
    Internal {
        /// What failed, for the log.
        cause: String,
    },
}

impl ApiError {
    /// A 500 whose `cause` is logged but not returned.
    pub fn internal(cause: impl Into<String>) -> Self {
        ApiError::Internal { cause: cause.into() }
    }

    /// The HTTP status; the one place statuses are decided.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Input(_) => StatusCode::BAD_REQUEST,
            ApiError::Lookup(LookupError::UnknownModel { .. } | LookupError::UnknownVersion { .. })
            | ApiError::NoRoute { .. }
            | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Lookup(LookupError::NotReady { .. })
            | ApiError::Overloaded
            | ApiError::BodyBudget { .. }
            | ApiError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl ApiError {
    /// The gRPC status code: the one place codes are decided, variant by variant as [`ApiError::status`].
    ///
    /// INVALID_ARGUMENT for the client's mistakes, NOT_FOUND for unknown models and versions,
    /// UNAVAILABLE when not ready, shedding or timed out (a client may retry), INTERNAL for the server's
    /// own failures, whose message is generic ([`ApiError::Internal`]).
    pub fn code(&self) -> tonic::Code {
        match self {
            ApiError::BadRequest(_) | ApiError::Input(_) | ApiError::MethodNotAllowed { .. } => {
                tonic::Code::InvalidArgument
            }
            ApiError::Lookup(LookupError::UnknownModel { .. } | LookupError::UnknownVersion { .. })
            | ApiError::NoRoute { .. }
            | ApiError::NotFound(_) => tonic::Code::NotFound,
            ApiError::Lookup(LookupError::NotReady { .. })
            | ApiError::Overloaded
            | ApiError::BodyBudget { .. }
            | ApiError::Timeout(_) => tonic::Code::Unavailable,
            ApiError::PayloadTooLarge { .. } => tonic::Code::ResourceExhausted,
            ApiError::BodyTimeout(_) => tonic::Code::DeadlineExceeded,
            ApiError::NotImplemented(_) => tonic::Code::Unimplemented,
            ApiError::Internal { .. } => tonic::Code::Internal,
        }
    }
}

impl From<ApiError> for tonic::Status {
    /// The gRPC status of `e`: [`ApiError::code`] and the same message as the REST body (generic for
    /// INTERNAL; the gRPC front-end logs the cause before converting).
    fn from(e: ApiError) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, Json(ErrorResponse { error: self.to_string() })).into_response();
        // Shedding is momentary: tell clients (and proxies) when to come back.
        if matches!(self, ApiError::Overloaded | ApiError::BodyBudget { .. }) {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        if let ApiError::Internal { cause } = self {
            response.extensions_mut().insert(InternalCause(cause.into()));
        }
        response
    }
}

impl From<InferError> for ApiError {
    /// Inputs the model cannot take are the client's (400); a failed computation is the model's (500).
    fn from(e: InferError) -> Self {
        match e {
            InferError::Input(e) => ApiError::Input(e),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<serde_json::Error> for ApiError {
    /// A request body that is not JSON, or not an inference request.
    fn from(e: serde_json::Error) -> Self {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::BadRequest(format!("invalid inference request: {e}")),
            Category::Syntax | Category::Eof => ApiError::BadRequest(format!("malformed JSON: {e}")),
            Category::Io => ApiError::internal(format!("reading the request: {e}")),
        }
    }
}

impl From<BinaryError> for ApiError {
    /// Binary tensor data that does not match its description (a client's error; the one encoding
    /// error, a BYTES element too long to send, is reported by the encoder as a JSON error).
    fn from(e: BinaryError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Json(e) => e.into(),
            DecodeError::Binary(e) => e.into(),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_cause() {
        let e = ApiError::internal("disk on fire at /secret/path");
        assert_eq!(e.to_string(), "internal server error");
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(&*r.extensions().get::<InternalCause>().unwrap().0, "disk on fire at /secret/path");
    }

    #[test]
    fn model_errors_split_by_fault() {
        let client = InferError::Input(InputError::Inputs("two inputs".into()));
        assert_eq!(ApiError::from(client).status(), StatusCode::BAD_REQUEST);
        let server = InferError::Compute("cycle".into());
        let e = ApiError::from(server);
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.to_string().contains("cycle"));
    }

    #[test]
    fn grpc_codes_follow_the_statuses() {
        let cases = [
            (ApiError::BadRequest("x".into()), tonic::Code::InvalidArgument),
            (ApiError::Lookup(LookupError::UnknownModel { model: "m".into() }), tonic::Code::NotFound),
            (
                ApiError::Lookup(LookupError::NotReady { model: "m".into(), reason: "r".into() }),
                tonic::Code::Unavailable,
            ),
            (ApiError::Overloaded, tonic::Code::Unavailable),
            (ApiError::Timeout(Duration::from_secs(1)), tonic::Code::Unavailable),
        ];
        for (e, code) in cases {
            assert_eq!(e.code(), code, "{e}");
        }
        let status = tonic::Status::from(ApiError::internal("disk on fire at /secret/path"));
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "internal server error");
    }

    #[test]
    fn json_errors_are_bad_requests() {
        let e = ApiError::from(serde_json::from_str::<u8>("1 2").unwrap_err());
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.to_string().starts_with("malformed JSON"), "{e}");
        let e = ApiError::from(serde_json::from_str::<u8>("300").unwrap_err());
        assert!(e.to_string().starts_with("invalid inference request"), "{e}");
    }
}
