//! Server and model metadata: `GET /v2`, `GET /v2/models/{m}[/versions/{v}]`.

use axum::Json;
use axum::extract::State;

use crate::api_error::ApiError;
use crate::inference::{self, ModelRef};
use crate::protocol::v2::{ModelMetadataResponse, ServerMetadataResponse, binary, statistics};
use crate::state::AppState;

/// The protocol extensions implemented, as `GET /v2` lists them. Only complete ones are listed.
pub const EXTENSIONS: [&str; 3] = [binary::EXTENSION, crate::repository::EXTENSION, statistics::EXTENSION];

/// `GET /v2`.
pub(crate) async fn server() -> Json<ServerMetadataResponse> {
    Json(ServerMetadataResponse {
        name: env!("CARGO_PKG_NAME").to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        extensions: EXTENSIONS.iter().map(|e| (*e).to_owned()).collect(),
    })
}

/// `GET /v2/models/{model_name}[/versions/{model_version}]`: the version's signature (the default
/// version's, unless the path or a `x-model-version` header names one).
pub(crate) async fn model(
    State(state): State<AppState>,
    model: ModelRef,
) -> Result<Json<ModelMetadataResponse>, ApiError> {
    Ok(Json(inference::metadata(&state, &model)?))
}
