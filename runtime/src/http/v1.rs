//! The KServe v1 REST protocol, as KServe's Python model server and its scikit-learn server answer it:
//! `GET /v1/models`, `GET /v1/models/{m}`, `POST /v1/models/{m}:predict` and `:explain`.
//!
//! The same model store, versions, canary split, `x-model-version` pin, limits, metrics, drift and
//! feedback as v2: the handler decodes the instances into one tensor ([`crate::protocol::v1`]), runs it
//! through the inference core ([`crate::inference`]) and writes the model's default output (its
//! `predict_proba` with `PREDICT_PROBA=true`) as `{"predictions": [...]}`.
//!
//! Where KServe answers 500 for a client's mistake (a wrong feature count, a value that is not a
//! number), Ferroserve answers 400 with the reason; every error body is `{"error": "..."}`.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tracing::{Span, field, instrument};

use super::{ModelPath, RawBody};
use crate::api_error::ApiError;
use crate::inference::{Account, Inference, ModelRef, Purpose, Target, resolve, run_sized};
use crate::protocol::v1::{ModelReadyResponse, ModelsResponse, PredictRequest, PredictResponse};
use crate::state::AppState;

/// The output answered instead of the default with `PREDICT_PROBA=true`, when the model has it.
pub const PREDICT_PROBA: &str = "predict_proba";

/// `GET /v1/models`: the served models' names.
pub(crate) async fn models(State(state): State<AppState>) -> Json<ModelsResponse> {
    let models = state.store().snapshots().iter().map(|s| s.name().to_owned()).collect();
    Json(ModelsResponse { models })
}

/// `GET /v1/models/{model_name}`: `{"name", "ready": true}`, 503 while the model cannot answer.
pub(crate) async fn model(
    State(state): State<AppState>,
    ModelPath(model_name): ModelPath<String>,
    headers: HeaderMap,
) -> Result<Json<ModelReadyResponse>, ApiError> {
    if let Some((_, verb)) = split_verb(&model_name) {
        return Err(ApiError::MethodNotAllowed {
            method: axum::http::Method::GET,
            path: format!("/v1/models/{model_name} (:{verb} takes POST)"),
        });
    }
    let model = ModelRef::new(model_name, None, &headers)?;
    resolve(&state, &model, Purpose::Describe)?;
    Ok(Json(ModelReadyResponse { name: model.model, ready: true }))
}

/// `POST /v1/models/{model_name}:predict` and `:explain`.
#[instrument(name = "v1", skip_all, fields(model = field::Empty, version = field::Empty))]
pub(crate) async fn post(
    State(state): State<AppState>,
    ModelPath(target): ModelPath<String>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, ApiError> {
    let Some((name, verb)) = split_verb(&target) else {
        return Err(ApiError::NotFound(format!(
            "no route for POST /v1/models/{target}; the v1 protocol predicts with POST /v1/models/{{name}}:predict"
        )));
    };
    Span::current().record("model", name);
    let model = ModelRef::new(name.to_owned(), None, &headers)?;
    match verb {
        "predict" => {
            let mut account = Account::open(&state);
            let result = predict(&state, &model, body, &mut account).await;
            account.finish(&state, &model.model, &result);
            result
        }
        "explain" => {
            // As KServe: the model must exist and be ready; then there is no explainer.
            resolve(&state, &model, Purpose::Describe)?;
            Err(ApiError::NotImplemented(format!(
                "model `{}` has no explainer; Ferroserve does not serve explanations yet",
                model.model
            )))
        }
        other => Err(ApiError::NotFound(format!(
            "no route for POST /v1/models/{name}:{other}; the v1 protocol's verbs are :predict and :explain"
        ))),
    }
}

/// `name:verb` → `(name, verb)`, at the last colon.
fn split_verb(target: &str) -> Option<(&str, &str)> {
    target.rsplit_once(':').filter(|(name, verb)| !name.is_empty() && !verb.is_empty())
}

async fn predict(
    state: &AppState,
    model: &ModelRef,
    RawBody(body, _permit): RawBody,
    account: &mut Account,
) -> Result<Response, ApiError> {
    let target = Target::resolve(state, model, account)?;
    let inline = body.len() <= state.limits().inline_body_bytes;
    let proba =
        state.predict_proba() && target.version().model().signature().outputs.iter().any(|o| o.name == PREDICT_PROBA);
    let t = target.clone();
    let request = run_sized(inline, move || decode(&t, &body, proba)).await??;
    let tensors = target.infer(request).await?;
    let t = target.clone();
    let bytes = run_sized(inline, move || encode(&t, &tensors)).await??;
    let mut response = ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response();
    target.name_version(&mut response);
    Ok(response)
}

/// The instances as the model's input tensor.
fn decode(target: &Target, body: &[u8], proba: bool) -> Result<Inference, ApiError> {
    let started = Instant::now();
    let request = PredictRequest::from_body(body).map_err(|e| ApiError::BadRequest(e.0))?;
    let inputs = &target.version().model().signature().inputs;
    let tensor = request.instances.into_tensor(inputs).map_err(|e| ApiError::BadRequest(e.0))?;
    target.metrics().preprocess.observe(started.elapsed().as_secs_f64());
    let outputs = if proba { vec![PREDICT_PROBA.to_owned()] } else { Vec::new() };
    Ok(Inference { id: request.id, inputs: vec![tensor], outputs })
}

/// `{"predictions": ...}` from the one output.
fn encode(target: &Target, tensors: &[ferroserve_formats::Tensor]) -> Result<Vec<u8>, ApiError> {
    let started = Instant::now();
    let output = tensors.first().ok_or_else(|| ApiError::internal("the model returned no output"))?;
    let bytes = serde_json::to_vec(&PredictResponse(output))
        .map_err(|e| ApiError::internal(format!("encoding the response: {e}")))?;
    target.metrics().postprocess.observe(started.elapsed().as_secs_f64());
    Ok(bytes)
}
