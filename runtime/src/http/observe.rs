//! Observability routes: `GET /metrics` (Prometheus), `GET /v2/models/{m}[/versions/{v}]/drift`,
//! `GET /v2/models/{m}[/versions/{v}]/stats` (Triton's statistics extension) and
//! `POST /v2/models/{m}/feedback`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::ModelPath;
use crate::api_error::ApiError;
use crate::drift::DriftReport;
use crate::feedback::{FeedbackError, FeedbackItem, FeedbackResponse};
use crate::inference::{ModelRef, Purpose, resolve};
use crate::protocol::v2::ModelStatisticsResponse;
use crate::state::AppState;
use crate::statistics;

/// `GET /metrics`: the Prometheus text format.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.metrics().render(state.store());
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))], text)
        .into_response()
}

/// The drift endpoint's answer.
#[derive(Debug, Serialize)]
pub(crate) struct DriftResponse {
    model: String,
    version: String,
    #[serde(flatten)]
    report: DriftReport,
}

/// `GET /v2/models/{model_name}[/versions/{model_version}]/drift`: the input drift of the default
/// version, or of the version the path or a `x-model-version` header names.
pub(crate) async fn drift(State(state): State<AppState>, model: ModelRef) -> Result<Json<DriftResponse>, ApiError> {
    let (_, v) = resolve(&state, &model, Purpose::Describe)?;
    let Some(window) = v.drift() else {
        return Err(ApiError::NotFound(format!(
            "model `{}` version `{}` has no reference distribution: add `reference_distribution` to its \
             metadata.json (ferroserve-train writes it), or drift tracking is off (--drift_window 0)",
            model.model,
            v.name()
        )));
    };
    Ok(Json(DriftResponse { model: model.model, version: v.name().to_owned(), report: window.report() }))
}

/// `GET /v2/models/{model_name}[/versions/{model_version}]/stats`: the statistics of every loaded version,
/// or of the version the path or a `x-model-version` header names, in Triton's shape.
pub(crate) async fn stats(
    State(state): State<AppState>,
    model: ModelRef,
) -> Result<Json<ModelStatisticsResponse>, ApiError> {
    Ok(Json(statistics::collect(&state, Some(&model.model), model.version.as_deref())?))
}

/// `POST /v2/models/{model_name}/feedback`: `{"id", "labels"}` or an array of them.
pub(crate) async fn feedback(
    State(state): State<AppState>,
    ModelPath(model): ModelPath<String>,
    body: Bytes,
) -> Result<Json<FeedbackResponse>, ApiError> {
    state.store().snapshot(&model)?;
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Body {
        One(FeedbackItem),
        Many(Vec<FeedbackItem>),
    }
    let items = match serde_json::from_slice::<Body>(&body) {
        Ok(Body::One(item)) => vec![item],
        Ok(Body::Many(items)) if !items.is_empty() => items,
        Ok(Body::Many(_)) => return Err(ApiError::BadRequest("the feedback array is empty".to_owned())),
        Err(e) => {
            return Err(ApiError::BadRequest(format!(
                "invalid feedback: expected {{\"id\": \"<request id>\", \"labels\": [...]}} or an array of them ({e})"
            )));
        }
    };
    match state.feedback().score(&model, &items, state.metrics()) {
        Ok(r) => Ok(Json(r)),
        Err(FeedbackError::Invalid(e)) => Err(ApiError::BadRequest(e)),
        Err(e @ FeedbackError::Unknown { .. }) => Err(ApiError::NotFound(e.to_string())),
    }
}
