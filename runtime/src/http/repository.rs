//! The model repository extension: `POST /v2/repository/index`,
//! `POST /v2/repository/models/{m}/load` and `…/unload`, as KServe's model agent, ModelMesh and
//! Triton's clients call them.
//!
//! `load` of a loaded model is a make-before-break reload: every selected version is loaded afresh,
//! and only then swapped in; a version that fails keeps its previous copy serving. These routes are
//! outside the load shedder and the request timeout: an operator must be able to act on a saturated
//! server, and a large model may take longer to load than a request may take.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;

use super::ModelPath;
use crate::api_error::ApiError;
use crate::protocol::v2::{
    ModelVersionState, RepositoryIndexEntry, RepositoryIndexRequest, RepositoryLoadResponse, RepositoryUnloadResponse,
};
use crate::state::AppState;
use crate::store::{LookupError, ModelSnapshot, ModelState, Reload};

/// The extension's name in `GET /v2`.
pub const EXTENSION: &str = "model_repository";

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
    let mut entries: Vec<RepositoryIndexEntry> = state.store().snapshots().iter().flat_map(|s| entries(s)).collect();
    if request.ready {
        entries.retain(|e| e.state == ModelVersionState::Ready);
    }
    Ok(Json(entries))
}

/// The index entries of one model.
fn entries(snapshot: &ModelSnapshot) -> Vec<RepositoryIndexEntry> {
    let name = snapshot.name();
    let entry = |version: Option<&str>, state, reason: String| RepositoryIndexEntry {
        name: name.to_owned(),
        version: version.map(str::to_owned),
        state,
        reason,
    };
    match snapshot.state() {
        ModelState::Loading => return vec![entry(None, ModelVersionState::Loading, String::new())],
        ModelState::Unloaded => {
            let reason = snapshot.error().map_or_else(|| "unloaded".to_owned(), |e| format!("unloaded: {e}"));
            return vec![entry(None, ModelVersionState::Unavailable, reason)];
        }
        ModelState::Loaded => {}
    }
    let mut out = Vec::new();
    for v in snapshot.versions() {
        let failed = snapshot.failures().iter().find(|f| f.version == v.name());
        let reason = failed
            .map_or_else(String::new, |f| format!("serving the copy loaded before; reloading it failed: {}", f.reason));
        out.push(entry(Some(v.name()), ModelVersionState::Ready, reason));
    }
    for f in snapshot.failures().iter().filter(|f| !snapshot.versions().iter().any(|v| v.name() == f.version)) {
        out.push(entry(Some(&f.version), ModelVersionState::Unavailable, f.reason.clone()));
    }
    if out.is_empty() {
        let reason = snapshot.error().unwrap_or("no version could be loaded").to_owned();
        out.push(entry(None, ModelVersionState::Unavailable, reason));
    }
    out
}

/// `POST /v2/repository/models/{model_name}/load`: loads the model, or reloads it make-before-break.
pub(crate) async fn load(
    State(state): State<AppState>,
    ModelPath(name): ModelPath<String>,
) -> Result<Json<RepositoryLoadResponse>, ApiError> {
    let snapshot = state.store().reload(&name, Reload::Everything).await?;
    if !snapshot.is_ready() {
        let mut reasons: Vec<String> =
            snapshot.failures().iter().map(|f| format!("{}: {}", f.version, f.reason)).collect();
        reasons.extend(snapshot.error().map(str::to_owned));
        let reason = if reasons.is_empty() { "no version could be loaded".to_owned() } else { reasons.join("; ") };
        return Err(LookupError::NotReady { model: name, reason: format!("loading failed: {reason}") }.into());
    }
    Ok(Json(RepositoryLoadResponse { name, load: true }))
}

/// `POST /v2/repository/models/{model_name}/unload`.
pub(crate) async fn unload(
    State(state): State<AppState>,
    ModelPath(name): ModelPath<String>,
) -> Result<Json<RepositoryUnloadResponse>, ApiError> {
    state.store().unload(&name).await?;
    Ok(Json(RepositoryUnloadResponse { name, unload: true }))
}
