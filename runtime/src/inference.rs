//! The inference core that every protocol front-end shares.
//!
//! A front-end (KServe v1 REST, v2 REST, and any later one) does three things: it names the model and
//! the version a request asks for ([`ModelRef`]), decodes the request into tensors ([`Inference`]),
//! and encodes the tensors it gets back. Everything between is here, once:
//! - [`Account`]: the request's accounting (in-flight gauge, request counters and latency by status),
//!   opened before anything can fail so that every failure is counted;
//! - [`Target::resolve`]: one snapshot of the model, the version chosen in one place (path version,
//!   `x-model-version` header, canary split), and the version's metric handles;
//! - [`Target::infer`]: the model call, run where it belongs (the version's dynamic batcher when it has
//!   one, the blocking pool for compute-heavy models and large inputs, else inline on the executor, where
//!   a small tree-model request is done in microseconds), with the inputs recorded for drift and the
//!   predicted labels of a request with an `id` kept for feedback.
//!
//! Failures are [`ApiError`]s, whose variants decide statuses by type; the model's own errors come
//! typed from the formats crate ([`ferroserve_formats::InferError`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ferroserve_formats::Tensor;
use serde::Deserialize;
use tracing::Span;

use crate::api_error::ApiError;
use crate::batch::guarded_infer;
use crate::feedback::Feedback;
use crate::metrics::{InFlight, UNKNOWN_MODEL, VersionMetrics};
use crate::protocol::v2::ModelMetadataResponse;
use crate::state::AppState;
use crate::store::{LoadedVersion, ModelSnapshot};

/// The header that pins the version of a request to a route without a version in its path.
pub const MODEL_VERSION_HEADER: &str = "x-model-version";

/// A request header that marks a request as a check, not traffic (`ferroserve validate` sends it): it is
/// answered and counted as any other, but its inputs never enter a drift window and its predictions are
/// never kept for feedback, so a post-deployment check cannot raise a drift alert or skew accuracy.
pub const PROBE_HEADER: &str = "x-ferroserve-probe";

/// Inputs with more elements than this run on the blocking pool: a tree model scores ~2,000 values in
/// tens of microseconds, about what a thread hand-off costs; more would stall other requests on the
/// executor thread.
pub const INLINE_ELEMENTS: usize = 2048;

/// The model and version a request names: its path's `{model_name}` and `{model_version}`, else the
/// `x-model-version` header. An axum extractor for every route that addresses a model
/// (`/v2/models/{model_name}[/versions/{model_version}]/…`, `/v1/models/{model_name}…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    /// The model's name.
    pub model: String,
    /// The version asked for; `None` for the default (or the canary, for its share).
    pub version: Option<String>,
    /// Whether the request is traffic, whose inputs feed drift and labels feedback; `false` for checks
    /// ([`PROBE_HEADER`]).
    pub observed: bool,
}

impl ModelRef {
    /// The reference named by a path and the request's headers.
    ///
    /// # Errors
    /// 400 when the `x-model-version` header is repeated, empty or not text, or names another version
    /// than the path.
    pub fn new(model: String, path_version: Option<String>, headers: &HeaderMap) -> Result<Self, ApiError> {
        let observed = !headers.contains_key(PROBE_HEADER);
        Ok(ModelRef { model, version: requested_version(headers, path_version)?, observed })
    }
}

#[derive(Debug, Deserialize)]
struct RefParams {
    model_name: String,
    model_version: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for ModelRef {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(p) = axum::extract::Path::<RefParams>::from_request_parts(parts, state).await?;
        ModelRef::new(p.model_name, p.model_version, &parts.headers)
    }
}

/// The version a request asks for: the path's, else the `x-model-version` header's.
fn requested_version(headers: &HeaderMap, path: Option<String>) -> Result<Option<String>, ApiError> {
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

/// What a request needs of a model version, whatever its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Inference: an unpinned request takes its place in the canary split.
    Infer,
    /// Metadata, readiness, drift: an unpinned request describes the default version and does not count
    /// towards the canary split.
    Describe,
}

/// Decides which version answers a request for `model`: one place for every route.
///
/// # Errors
/// 404 for an unknown model or version, 503 when the model has no version that answers.
pub fn resolve(
    state: &AppState,
    model: &ModelRef,
    purpose: Purpose,
) -> Result<(Arc<ModelSnapshot>, Arc<LoadedVersion>), ApiError> {
    let snapshot = state.store().snapshot(&model.model)?;
    let version = match (purpose, model.version.as_deref()) {
        (Purpose::Describe, None) => snapshot.resolve_default()?,
        (_, wanted) => snapshot.resolve(wanted)?,
    };
    let version = Arc::clone(version);
    Ok((snapshot, version))
}

/// The metadata of the version `model` names (the default version's unless it names one): its
/// signature, and the versions that can be requested.
///
/// # Errors
/// As [`resolve`].
pub fn metadata(state: &AppState, model: &ModelRef) -> Result<ModelMetadataResponse, ApiError> {
    // Describing the default must not count towards the canary split.
    let (snapshot, version) = resolve(state, model, Purpose::Describe)?;
    let m = version.model();
    let signature = m.signature();
    Ok(ModelMetadataResponse {
        versions: snapshot.version_names(),
        platform: format!("ferroserve/{}", m.kind()),
        inputs: signature.inputs.clone(),
        outputs: signature.outputs.clone(),
        name: model.model.clone(),
    })
}

/// One inference request in the model's terms.
#[derive(Debug)]
pub struct Inference {
    /// The request's `id`: its predicted labels are kept for feedback under it.
    pub id: Option<String>,
    /// The input tensors.
    pub inputs: Vec<Tensor>,
    /// The outputs asked for, by name; empty for the model's default output.
    pub outputs: Vec<String>,
}

/// The accounting of one inference request: in flight until finished, then counted by status with
/// its latency, under the version that answered once one was chosen.
#[derive(Debug)]
pub struct Account {
    started: Instant,
    _in_flight: InFlight,
    answered_by: Option<Arc<VersionMetrics>>,
}

impl Account {
    /// Opens the account of a request that has just arrived.
    pub fn open(state: &AppState) -> Self {
        Account { started: Instant::now(), _in_flight: state.metrics().in_flight(), answered_by: None }
    }

    /// Counts the request's outcome. Requests that failed before a version was chosen are counted under
    /// the model's name when it is served, else under `<unknown>`, so that clients cannot create series.
    pub fn finish<T>(self, state: &AppState, model: &str, result: &Result<T, ApiError>) -> Duration {
        let elapsed = self.started.elapsed();
        let metrics = state.metrics();
        match (&self.answered_by, result) {
            (Some(vm), Ok(_)) => vm.ok(elapsed),
            (Some(vm), Err(e)) => vm.failed(metrics, e.status().as_u16(), elapsed),
            (None, Err(e)) => {
                let label = if state.store().snapshot(model).is_ok() { model } else { UNKNOWN_MODEL };
                metrics.unresolved(label, e.status().as_u16(), elapsed);
            }
            (None, Ok(_)) => {}
        }
        elapsed
    }
}

/// The version that answers one inference request, with what records it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Target {
    version: Arc<LoadedVersion>,
    observed: bool,
    metrics: Arc<VersionMetrics>,
    feedback: Arc<Feedback>,
}

impl Target {
    /// Chooses the version that answers an inference request for `model` (the canary split applies to
    /// unpinned requests) and charges `account` to it.
    ///
    /// # Errors
    /// As [`resolve`].
    pub fn resolve(state: &AppState, model: &ModelRef, account: &mut Account) -> Result<Target, ApiError> {
        let (_, version) = resolve(state, model, Purpose::Infer)?;
        Span::current().record("version", version.name());
        let metrics = state.metrics().version(&model.model, &version);
        account.answered_by = Some(Arc::clone(&metrics));
        Ok(Target { version, observed: model.observed, metrics, feedback: Arc::clone(state.feedback()) })
    }

    /// The model's name.
    pub fn model_name(&self) -> &str {
        self.metrics.model()
    }

    /// The version that answers.
    pub fn version(&self) -> &Arc<LoadedVersion> {
        &self.version
    }

    /// Names the version that answered in the response's `x-model-version` header.
    pub fn name_version(&self, response: &mut axum::response::Response) {
        if let Ok(v) = axum::http::HeaderValue::from_str(self.version.name()) {
            response.headers_mut().insert(axum::http::HeaderName::from_static(MODEL_VERSION_HEADER), v);
        }
    }

    /// The version's request-path metric handles (the front-ends time their decoding and encoding).
    pub fn metrics(&self) -> &VersionMetrics {
        &self.metrics
    }

    /// Runs `request` through the version: the one inference path of every protocol.
    ///
    /// The inputs are recorded in the version's drift window; the model runs in the version's batcher
    /// when it has one, on the blocking pool when the model is compute-heavy or the inputs are large
    /// (more than [`INLINE_ELEMENTS`] values), else right here; the predicted labels of a request with an
    /// `id` are kept for feedback.
    ///
    /// # Errors
    /// [`ApiError::Input`] when the inputs do not fit the model; a 500 when the model fails or panics.
    pub async fn infer(&self, request: Inference) -> Result<Vec<Tensor>, ApiError> {
        let Inference { id, inputs, outputs } = request;
        let observed = self.observed;
        if observed && let Some(drift) = self.version.drift() {
            drift.record(&inputs);
        }
        let started = Instant::now();
        let rows = inputs.first().and_then(|t| t.shape.first()).map_or(1, |&n| n as u64);
        let model = self.version.model();
        let tensors = if let Some(batcher) = self.version.batcher() {
            batcher.infer(model, inputs, outputs).await?
        } else if model.is_compute_heavy() || element_count(&inputs) > INLINE_ELEMENTS {
            let model = Arc::clone(model);
            // If the request times out, this task still runs to its end: compute cannot be interrupted,
            // but its result is dropped and the client has its 503.
            blocking(move || guarded_infer(model.as_ref(), &inputs, &outputs)).await??
        } else {
            guarded_infer(model.as_ref(), &inputs, &outputs)?
        };
        self.metrics.predict.observe(started.elapsed().as_secs_f64());
        self.metrics.executed(rows, self.version.batcher().is_some());
        if observed && let Some(id) = &id {
            self.feedback.record(self.model_name(), self.version.name(), model.label().as_ref(), id, &tensors);
        }
        Ok(tensors)
    }
}

fn element_count(inputs: &[Tensor]) -> usize {
    inputs.iter().map(|t| t.data.len()).sum()
}

/// Runs `f` on the blocking pool, inside the request's span.
///
/// # Errors
/// A 500 when the task cannot be joined (it panicked or the runtime is shutting down).
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    let span = Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| ApiError::internal(format!("inference task failed: {e}")))
}

/// Runs `f` inline when `inline`, else on the blocking pool: how front-ends decode and encode bodies,
/// whose cost grows with their size.
///
/// # Errors
/// As [`blocking`].
pub async fn run_sized<T: Send + 'static>(inline: bool, f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    if inline { Ok(f()) } else { blocking(f).await }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(MODEL_VERSION_HEADER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_path_version_wins_and_the_header_must_agree() {
        let r = ModelRef::new("m".into(), None, &headers(&["v2"])).unwrap();
        assert_eq!(r.version.as_deref(), Some("v2"));
        let r = ModelRef::new("m".into(), Some("2".into()), &headers(&["v2"])).unwrap();
        assert_eq!(r.version.as_deref(), Some("2"));
        let e = ModelRef::new("m".into(), Some("1".into()), &headers(&["v2"])).unwrap_err();
        assert_eq!(e.status(), 400);
        for bad in [&["v1", "v2"][..], &[" "][..]] {
            assert_eq!(ModelRef::new("m".into(), None, &headers(bad)).unwrap_err().status(), 400, "{bad:?}");
        }
        assert_eq!(ModelRef::new("m".into(), None, &HeaderMap::new()).unwrap().version, None);
    }
}
