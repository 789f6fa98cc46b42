//! Server and model metadata: `GET /v2`, `GET /v2/models/{m}[/versions/{v}]`.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;

use super::{ModelPath, VersionParams};
use crate::error::ApiError;
use crate::protocol::v2::{ModelMetadataResponse, ServerMetadataResponse, binary};
use crate::state::AppState;

/// The protocol extensions implemented, as `GET /v2` lists them. Only complete ones are listed.
pub const EXTENSIONS: [&str; 2] = [binary::EXTENSION, super::repository::EXTENSION];

/// `GET /v2`.
pub(crate) async fn server() -> Json<ServerMetadataResponse> {
    Json(ServerMetadataResponse {
        name: env!("CARGO_PKG_NAME").to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        extensions: EXTENSIONS.iter().map(|e| (*e).to_owned()).collect(),
    })
}

/// `GET /v2/models/{model_name}`: the default version's signature.
/// A `x-model-version` header pins the version described.
pub(crate) async fn model(
    State(state): State<AppState>,
    ModelPath(model_name): ModelPath<String>,
    headers: HeaderMap,
) -> Result<Json<ModelMetadataResponse>, ApiError> {
    let version = super::requested_version(&headers, None)?;
    describe(&state, model_name, version.as_deref())
}

/// `GET /v2/models/{model_name}/versions/{model_version}`.
pub(crate) async fn model_version(
    State(state): State<AppState>,
    ModelPath(p): ModelPath<VersionParams>,
) -> Result<Json<ModelMetadataResponse>, ApiError> {
    describe(&state, p.model_name, Some(&p.model_version))
}

fn describe(state: &AppState, name: String, version: Option<&str>) -> Result<Json<ModelMetadataResponse>, ApiError> {
    let snapshot = state.store().snapshot(&name)?;
    // Describing the default must not count towards the canary split.
    let model = match version {
        Some(v) => snapshot.resolve(Some(v))?,
        None => snapshot.resolve_default()?,
    }
    .model();
    let signature = model.signature();
    Ok(Json(ModelMetadataResponse {
        versions: snapshot.version_names(),
        platform: format!("ferroserve/{}", model.kind()),
        inputs: signature.inputs.clone(),
        outputs: signature.outputs.clone(),
        name,
    }))
}
