//! Inference: `POST /v2/models/{m}[/versions/{v}]/infer`.
//!
//! The body is read as bytes and parsed as JSON whatever its `Content-Type` says (`curl -d` sends
//! `application/x-www-form-urlencoded`, Triton's client sends binary bodies without one). With an
//! `Inference-Header-Content-Length` header it is JSON followed by binary tensor data
//! ([`crate::protocol::v2::binary`]); the response carries binary outputs the same way when the request
//! asks for them. Small requests to light models (trees, linear) are decoded, run and encoded right on the
//! async executor; large ones, and every request to a model that says it is compute-heavy (the LSTM
//! autoencoder), on the blocking pool (see [`crate::Limits::inline_body_bytes`] and
//! `Model::is_compute_heavy`).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferroserve_formats::Tensor;
use tracing::{Span, debug, field, instrument};

use super::{ModelPath, VersionParams};
use crate::batch::guarded_infer;
use crate::error::ApiError;
use crate::feedback::Feedback;
use crate::metrics::{UNKNOWN_MODEL, VersionMetrics};
use crate::protocol::v2::binary::{self, HEADER_CONTENT_LENGTH};
use crate::protocol::v2::{BinaryOutputs, InferRequest, InferResponse, InferTensor, ResponseBody};
use crate::state::AppState;
use crate::store::LoadedVersion;

/// The request body, with over-limit bodies answered by a JSON 413.
#[derive(Debug)]
pub(crate) struct RawBody(Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        Bytes::from_request(request, state).await.map(RawBody).map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit: state.limits().max_body_bytes }
            } else {
                ApiError::BadRequest(format!("cannot read the request body: {}", rejection.body_text()))
            }
        })
    }
}

/// `POST /v2/models/{model_name}/infer`: the default version answers.
pub(crate) async fn infer(
    State(state): State<AppState>,
    ModelPath(model_name): ModelPath<String>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, ApiError> {
    run(&state, model_name, None, &headers, body).await
}

/// `POST /v2/models/{model_name}/versions/{model_version}/infer`.
pub(crate) async fn infer_version(
    State(state): State<AppState>,
    ModelPath(p): ModelPath<VersionParams>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, ApiError> {
    run(&state, p.model_name, Some(p.model_version), &headers, body).await
}

#[instrument(name = "infer", skip_all, fields(model = %model_name, version = field::Empty))]
async fn run(
    state: &AppState,
    model_name: String,
    version: Option<String>,
    headers: &HeaderMap,
    body: RawBody,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let metrics = state.metrics();
    let _in_flight = metrics.in_flight();
    let mut answered_by = None;
    let result = answer(state, model_name.clone(), version, headers, body, &mut answered_by).await;
    let elapsed = started.elapsed();
    match (&answered_by, &result) {
        (Some(vm), Ok(_)) => vm.ok(elapsed),
        (Some(vm), Err(e)) => vm.failed(metrics, e.status().as_u16(), elapsed),
        (None, Err(e)) => {
            // Labels come from served models only, so that clients cannot create series.
            let label = if state.store().snapshot(&model_name).is_ok() { model_name.as_str() } else { UNKNOWN_MODEL };
            metrics.unresolved(label, e.status().as_u16(), elapsed);
        }
        (None, Ok(_)) => {}
    }
    result
}

/// What an inference needs besides the request: where it goes and what records it.
struct Target {
    model_name: String,
    version: Arc<LoadedVersion>,
    metrics: Arc<VersionMetrics>,
    feedback: Arc<Feedback>,
}

async fn answer(
    state: &AppState,
    model_name: String,
    version: Option<String>,
    headers: &HeaderMap,
    RawBody(body): RawBody,
    answered_by: &mut Option<Arc<VersionMetrics>>,
) -> Result<Response, ApiError> {
    let json_len = json_len(headers)?;
    let version = super::requested_version(headers, version)?;
    // One snapshot for the whole request: a version swapped meanwhile does not affect it.
    let snapshot = state.store().snapshot(&model_name)?;
    let loaded = Arc::clone(snapshot.resolve(version.as_deref())?);
    Span::current().record("version", loaded.name());
    let metrics = state.metrics().version(&model_name, &loaded);
    *answered_by = Some(Arc::clone(&metrics));
    let answered = HeaderValue::from_str(loaded.name()).ok();
    let inline = body.len() <= state.limits().inline_body_bytes;
    let target = Target { model_name, version: loaded, metrics, feedback: Arc::clone(state.feedback()) };
    let encoded = if let Some(batcher) = target.version.batcher().cloned() {
        // Batched: decode, queue with other requests, encode. Only the model call leaves the executor
        // (the batch runs on the blocking pool), unless the body is large.
        let target = Arc::new(target);
        let decoded = if inline {
            target.decode(&body, json_len)?
        } else {
            let t = Arc::clone(&target);
            blocking(move || t.decode(&body, json_len)).await??
        };
        let Decoded { id, inputs, outputs, binary_outputs } = decoded;
        let predicting = Instant::now();
        let tensors = batcher.infer(target.version.model(), inputs, outputs).await?;
        target.metrics.predict.observe(predicting.elapsed().as_secs_f64());
        let encode = move || target.encode(id, tensors, &binary_outputs);
        if inline { encode()? } else { blocking(encode).await?? }
    } else if inline && !target.version.model().is_compute_heavy() {
        target.execute(&body, json_len)?
    } else {
        // If the request times out, this task still runs to its end: compute cannot be interrupted,
        // but its result is dropped and the client has its 503.
        blocking(move || target.execute(&body, json_len)).await??
    };
    let mut response = match encoded {
        ResponseBody { bytes, json_len: None } => {
            ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response()
        }
        ResponseBody { bytes, json_len: Some(json_len) } => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
                (HeaderName::from_static(HEADER_CONTENT_LENGTH), HeaderValue::from(json_len)),
            ],
            bytes,
        )
            .into_response(),
    };
    if let Some(v) = answered {
        response.headers_mut().insert(HeaderName::from_static(super::MODEL_VERSION_HEADER), v);
    }
    Ok(response)
}

/// The `Inference-Header-Content-Length` header: the length of the body's JSON part, when binary
/// tensor data follows it.
fn json_len(headers: &HeaderMap) -> Result<Option<usize>, ApiError> {
    let mut values = headers.get_all(HEADER_CONTENT_LENGTH).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::BadRequest("the Inference-Header-Content-Length header is repeated".to_owned()));
    }
    Ok(Some(binary::parse_header(value.as_bytes())?))
}

/// Runs `f` on the blocking pool, inside the request's span.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    let span = Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| ApiError::internal(format!("inference task failed: {e}")))
}

/// A request decoded into the model's terms.
struct Decoded {
    id: Option<String>,
    inputs: Vec<Tensor>,
    outputs: Vec<String>,
    binary_outputs: BinaryOutputs,
}

impl Target {
    /// Parses the body (JSON, or JSON and binary tensor data) into tensors, and records the inputs in
    /// the version's drift window.
    fn decode(&self, body: &[u8], json_len: Option<usize>) -> Result<Decoded, ApiError> {
        let started = Instant::now();
        // serde would say "invalid type: sequence"; say it in the client's terms.
        let json = json_len.and_then(|n| body.get(..n)).unwrap_or(body);
        if json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(ApiError::BadRequest(
                "invalid inference request: the body is a JSON array; expected an object {\"inputs\": [...]}"
                    .to_owned(),
            ));
        }
        let request = InferRequest::from_body(body, json_len)?;
        let binary_outputs = request.binary_outputs()?;
        debug!(
            id = ?request.id,
            inputs = ?request.inputs.iter().map(|t| (&t.name, t.datatype().as_str(), &t.shape)).collect::<Vec<_>>(),
            "inference request"
        );
        let inputs = request.inputs.into_iter().map(Tensor::try_from).collect::<Result<Vec<_>, _>>()?;
        let outputs = request.outputs.into_iter().map(|o| o.name).collect();
        if let Some(drift) = self.version.drift() {
            drift.record(&inputs);
        }
        self.metrics.preprocess.observe(started.elapsed().as_secs_f64());
        Ok(Decoded { id: request.id, inputs, outputs, binary_outputs })
    }

    /// Writes the response body naming the model and the version that answered; keeps the predicted
    /// labels of a request with an `id` for feedback.
    fn encode(
        &self,
        id: Option<String>,
        tensors: Vec<Tensor>,
        binary_outputs: &BinaryOutputs,
    ) -> Result<ResponseBody, ApiError> {
        let started = Instant::now();
        if let Some(id) = &id {
            let kind = self.version.model().kind();
            self.feedback.record(&self.model_name, self.version.name(), kind, id, &tensors);
        }
        let response = InferResponse {
            model_name: self.model_name.clone(),
            model_version: self.version.name().to_owned(),
            id,
            parameters: None,
            outputs: tensors.into_iter().map(InferTensor::from).collect(),
        };
        let body =
            response.to_body(binary_outputs).map_err(|e| ApiError::internal(format!("encoding the response: {e}")))?;
        self.metrics.postprocess.observe(started.elapsed().as_secs_f64());
        Ok(body)
    }

    /// Decodes the request, runs the model, encodes the response: the CPU-bound part.
    fn execute(&self, body: &[u8], json_len: Option<usize>) -> Result<ResponseBody, ApiError> {
        let Decoded { id, inputs, outputs, binary_outputs } = self.decode(body, json_len)?;
        let started = Instant::now();
        let tensors = guarded_infer(self.version.model().as_ref(), &inputs, &outputs)?;
        self.metrics.predict.observe(started.elapsed().as_secs_f64());
        self.encode(id, tensors, &binary_outputs)
    }
}
