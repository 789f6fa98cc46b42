//! Inference: `POST /v2/models/{m}[/versions/{v}]/infer`.
//!
//! The body is read as bytes and parsed as JSON whatever its `Content-Type` says (`curl -d` sends
//! `application/x-www-form-urlencoded`, Triton's client sends binary bodies without one). With an
//! `Inference-Header-Content-Length` header it is JSON followed by binary tensor data
//! ([`crate::protocol::v2::binary`]); the response carries binary outputs the same way when the request
//! asks for them. The handler only translates: decode → [`crate::inference`] → encode. Bodies up to
//! [`crate::Limits::inline_body_bytes`] are decoded and encoded right on the async executor, larger
//! ones on the blocking pool; where the model runs is the core's choice.

use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use ferroserve_formats::Tensor;
use tracing::{debug, field, instrument};

use super::RawBody;
use crate::api_error::ApiError;
use crate::inference::{Account, Inference, ModelRef, Target, run_sized};
use crate::protocol::v2::binary::{self, HEADER_CONTENT_LENGTH};
use crate::protocol::v2::{BinaryOutputs, InferRequest, InferResponse, InferTensor, ResponseBody};
use crate::state::AppState;

/// `POST /v2/models/{model_name}[/versions/{model_version}]/infer`.
#[instrument(name = "infer", skip_all, fields(model = %model.model, version = field::Empty))]
pub(crate) async fn infer(
    State(state): State<AppState>,
    model: ModelRef,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, ApiError> {
    let mut account = Account::open(&state);
    let result = answer(&state, &model, &headers, body, &mut account).await;
    account.finish(&state, &model.model, &result);
    result
}

async fn answer(
    state: &AppState,
    model: &ModelRef,
    headers: &HeaderMap,
    RawBody(body, _permit): RawBody,
    account: &mut Account,
) -> Result<Response, ApiError> {
    let json_len = json_len(headers)?;
    let target = Target::resolve(state, model, account)?;
    let inline = body.len() <= state.limits().inline_body_bytes;
    let t = target.clone();
    let (request, binary_outputs) = run_sized(inline, move || decode(&t, &body, json_len)).await??;
    let id = request.id.clone();
    let tensors = target.infer(request).await?;
    let t = target.clone();
    let encoded = run_sized(inline, move || encode(&t, id, tensors, &binary_outputs)).await??;
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
    target.name_version(&mut response);
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

/// Parses the body (JSON, or JSON and binary tensor data) into the core's terms.
fn decode(target: &Target, body: &[u8], json_len: Option<usize>) -> Result<(Inference, BinaryOutputs), ApiError> {
    let started = Instant::now();
    // serde would say "invalid type: sequence"; say it in the client's terms.
    let json = json_len.and_then(|n| body.get(..n)).unwrap_or(body);
    if json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::BadRequest(
            "invalid inference request: the body is a JSON array; expected an object {\"inputs\": [...]}".to_owned(),
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
    target.metrics().preprocess.observe(started.elapsed().as_secs_f64());
    Ok((Inference { id: request.id, inputs, outputs }, binary_outputs))
}

/// Writes the response body naming the model and the version that answered.
fn encode(
    target: &Target,
    id: Option<String>,
    tensors: Vec<Tensor>,
    binary_outputs: &BinaryOutputs,
) -> Result<ResponseBody, ApiError> {
    let started = Instant::now();
    let response = InferResponse {
        model_name: target.model_name().to_owned(),
        model_version: target.version().name().to_owned(),
        id,
        parameters: None,
        outputs: tensors.into_iter().map(InferTensor::from).collect(),
    };
    let body =
        response.to_body(binary_outputs).map_err(|e| ApiError::internal(format!("encoding the response: {e}")))?;
    target.metrics().postprocess.observe(started.elapsed().as_secs_f64());
    Ok(body)
}
