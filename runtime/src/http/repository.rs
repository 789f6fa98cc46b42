//! The model repository extension over REST: `POST /v2/repository/index`,
//! `POST /v2/repository/models/{m}/load` and `…/unload`, as KServe's model agent, ModelMesh and
//! Triton's clients call them. The operations are [`crate::repository`]'s, shared with gRPC.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;

use super::ModelPath;
use crate::api_error::ApiError;
use crate::protocol::v2::{
    RepositoryIndexEntry, RepositoryIndexRequest, RepositoryLoadResponse, RepositoryUnloadResponse,
};
use crate::repository;
use crate::state::AppState;

/// `POST /v2/repository/index`.
pub(crate) async fn index(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<Vec<RepositoryIndexEntry>>, ApiError> {
    let request: RepositoryIndexRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RepositoryIndexRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid repository index request: {e}")))?
    };
    Ok(Json(repository::index(&state, request.ready)))
}

/// `POST /v2/repository/models/{model_name}/load`: loads the model, or reloads it make-before-break.
pub(crate) async fn load(
    State(state): State<AppState>,
    ModelPath(name): ModelPath<String>,
) -> Result<Json<RepositoryLoadResponse>, ApiError> {
    repository::load(&state, &name).await?;
    Ok(Json(RepositoryLoadResponse { name, load: true }))
}

/// `POST /v2/repository/models/{model_name}/unload`.
pub(crate) async fn unload(
    State(state): State<AppState>,
    ModelPath(name): ModelPath<String>,
) -> Result<Json<RepositoryUnloadResponse>, ApiError> {
    repository::unload(&state, &name).await?;
    Ok(Json(RepositoryUnloadResponse { name, unload: true }))
}
