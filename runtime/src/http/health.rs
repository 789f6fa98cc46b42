//! Liveness and readiness: `/v2/health/live`, `/v2/health/ready`, `/v2/models/{m}[/versions/{v}]/ready`.
//!
//! These routes sit outside the load shedder and timeout: a kubelet probe must get an answer from an
//! overloaded server, or Kubernetes restarts a pod that is merely busy.

use axum::Json;
use axum::extract::State;

use crate::api_error::ApiError;
use crate::inference::{ModelRef, Purpose, resolve};
use crate::protocol::v2::{LiveResponse, ModelReadyResponse, ReadyResponse};
use crate::state::AppState;

/// `GET /v2/health/live`: answering is being alive.
pub(crate) async fn live() -> Json<LiveResponse> {
    Json(LiveResponse { live: true })
}

/// `GET /v2/health/ready`: 200 once every configured model has a version that can answer.
pub(crate) async fn ready(State(state): State<AppState>) -> Result<Json<ReadyResponse>, ApiError> {
    state.store().check_ready()?;
    Ok(Json(ReadyResponse { ready: true }))
}

/// `GET /v2/models/{model_name}[/versions/{model_version}]/ready`.
pub(crate) async fn model_ready(
    State(state): State<AppState>,
    model: ModelRef,
) -> Result<Json<ModelReadyResponse>, ApiError> {
    resolve(&state, &model, Purpose::Describe)?;
    Ok(Json(ModelReadyResponse { name: model.model, ready: true }))
}
