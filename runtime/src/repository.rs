//! The model repository extension's operations, shared by REST (`/v2/repository/…`) and gRPC
//! (`RepositoryIndex`, `RepositoryModelLoad`, `RepositoryModelUnload`).
//!
//! `load` of a loaded model is a make-before-break reload: every selected version is loaded afresh,
//! and only then swapped in; a version that fails keeps its previous copy serving. Front-ends serve
//! these outside the load shedder and the request timeout: an operator must be able to act on a
//! saturated server, and a large model may take longer to load than a request may take.

use crate::api_error::ApiError;
use crate::protocol::v2::{ModelVersionState, RepositoryIndexEntry};
use crate::state::AppState;
use crate::store::{LookupError, ModelSnapshot, ModelState, Reload};

/// The extension's name in `GET /v2` and gRPC `ServerMetadata`.
pub const EXTENSION: &str = "model_repository";

/// Every model version of the repository with its state; only those that can answer when `ready`.
pub fn index(state: &AppState, ready: bool) -> Vec<RepositoryIndexEntry> {
    let mut entries: Vec<RepositoryIndexEntry> = state.store().snapshots().iter().flat_map(|s| entries(s)).collect();
    if ready {
        entries.retain(|e| e.state == ModelVersionState::Ready);
    }
    entries
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

/// Loads model `name`, or reloads it make-before-break.
///
/// # Errors
/// 404 for a name with no folder in the repository; 503 when no version could be loaded (the reasons
/// are in the message).
pub async fn load(state: &AppState, name: &str) -> Result<(), ApiError> {
    let snapshot = state.store().reload(name, Reload::Everything).await?;
    if !snapshot.is_ready() {
        let mut reasons: Vec<String> =
            snapshot.failures().iter().map(|f| format!("{}: {}", f.version, f.reason)).collect();
        reasons.extend(snapshot.error().map(str::to_owned));
        let reason = if reasons.is_empty() { "no version could be loaded".to_owned() } else { reasons.join("; ") };
        return Err(
            LookupError::NotReady { model: name.to_owned(), reason: format!("loading failed: {reason}") }.into()
        );
    }
    Ok(())
}

/// Unloads model `name`.
///
/// # Errors
/// 404 for an unknown model.
pub async fn unload(state: &AppState, name: &str) -> Result<(), ApiError> {
    state.store().unload(name).await?;
    Ok(())
}
