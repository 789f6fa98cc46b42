//! [`Inference`]: `inference.GRPCInferenceService`, one method per RPC, each a translation over the
//! shared core ([`crate::inference`], [`crate::repository`], [`crate::statistics`]).
//!
//! As on REST, `ModelInfer` and `ModelMetadata` are bounded: they share the `--max_concurrency`
//! permits with REST's model routes (past them a call is shed with UNAVAILABLE, not queued) and end
//! after `--request_timeout_secs` (UNAVAILABLE); health, readiness, repository and statistics calls
//! are not, so that probes and operators get answers from a saturated server.

use std::future::Future;

use bytes::{BufMut as _, Bytes};
use prost::Message as _;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status};
use tracing::{Instrument as _, error, field, info_span};

use super::convert::{self, Encoding};
use super::proto::grpc_inference_service_server::GrpcInferenceService;
use super::proto::{
    ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelMetadataResponse, ModelReadyRequest,
    ModelReadyResponse, ModelStatisticsRequest, ModelStatisticsResponse, RepositoryIndexRequest,
    RepositoryIndexResponse, RepositoryModelLoadRequest, RepositoryModelLoadResponse, RepositoryModelUnloadRequest,
    RepositoryModelUnloadResponse, ServerLiveRequest, ServerLiveResponse, ServerMetadataRequest,
    ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
};
use crate::api_error::ApiError;
use crate::inference::{self, Account, MODEL_VERSION_HEADER, ModelRef, Purpose, Target, run_sized};
use crate::protocol::v2::statistics;
use crate::state::AppState;
use crate::store::LookupError;

/// The protocol extensions listed by `ServerMetadata` (the binary tensor data extension is REST's;
/// gRPC has raw contents instead).
pub const EXTENSIONS: [&str; 2] = [crate::repository::EXTENSION, statistics::EXTENSION];

/// The service over the server's state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Inference {
    state: AppState,
}

impl Inference {
    /// The service over `state`.
    pub fn new(state: AppState) -> Self {
        Inference { state }
    }

    /// Answers a call of `method`: counts it by code, logs the cause of an INTERNAL, and turns the
    /// error into its status.
    async fn answer<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<Response<T>, ApiError>>,
    ) -> Result<Response<T>, Status> {
        let result = call.await;
        let code = match &result {
            Ok(_) => tonic::Code::Ok,
            Err(e) => e.code(),
        };
        self.state.metrics().grpc(method, code_name(code));
        result.map_err(|e| {
            if let ApiError::Internal { cause } = &e {
                error!(method, cause = %cause, "request failed");
            }
            Status::from(e)
        })
    }

    /// Runs `call` within the server's model-request limits: a permit of `--max_concurrency` (none
    /// left: UNAVAILABLE at once) and `--request_timeout_secs`.
    async fn bounded<T>(&self, call: impl Future<Output = Result<T, ApiError>>) -> Result<T, ApiError> {
        let metrics = self.state.metrics();
        let Ok(_permit) = self.state.concurrency().try_acquire() else {
            metrics.rejected("overloaded");
            return Err(ApiError::Overloaded);
        };
        let timeout = self.state.limits().request_timeout;
        tokio::time::timeout(timeout, call).await.unwrap_or_else(|_| {
            metrics.rejected("timeout");
            Err(ApiError::Timeout(timeout))
        })
    }

    /// `ModelInfer` within its account: decode → core → encode.
    async fn infer(
        &self,
        model: &ModelRef,
        message: ModelInferRequest,
    ) -> Result<Response<ModelInferResponse>, ApiError> {
        let state = &self.state;
        let mut account = Account::open(state);
        let result = async {
            let target = Target::resolve(state, model, &mut account)?;
            let inline = payload_len(&message) <= state.limits().inline_body_bytes;
            let t = target.clone();
            let (request, encoding) = run_sized(inline, move || decode(&t, message)).await??;
            let id = request.id.clone();
            let tensors = target.infer(request).await?;
            let t = target.clone();
            let message = run_sized(inline, move || encode(&t, id, tensors, encoding)).await??;
            let mut response = Response::new(message);
            if let Ok(v) = MetadataValue::try_from(target.version().name()) {
                response.metadata_mut().insert(MODEL_VERSION_HEADER, v);
            }
            Ok(response)
        }
        .await;
        account.finish(state, &model.model, &result);
        result
    }
}

/// `ModelInfer` answered from its message's bytes, without the router and tonic's body streams around it: what the
/// gRPC port's HTTP/2 driver ([`crate::server::http2`]) does with a call whose request body is one uncompressed
/// message within `--max_body_bytes`, the case every gRPC client sends. The call itself is the service's
/// [`model_infer`](GrpcInferenceService::model_infer), so both routes answer alike; every other request (compressed,
/// oversized, framed otherwise) goes through tonic, which answers it with its own status.
#[derive(Debug, Clone)]
pub struct DirectInfer {
    service: std::sync::Arc<Inference>,
    limit: usize,
}

impl DirectInfer {
    /// The method's path.
    pub const PATH: &'static str = "/inference.GRPCInferenceService/ModelInfer";

    /// `ModelInfer` of `state`, taking messages of at most `--max_body_bytes`.
    pub fn new(state: AppState) -> Self {
        let limit = state.limits().max_body_bytes;
        DirectInfer { service: std::sync::Arc::new(Inference::new(state)), limit }
    }

    /// The largest message taken, in bytes (tonic's `max_decoding_message_size` on the other route).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Answers `message` (the protobuf bytes, without gRPC's 5-byte prefix), with the call's `headers` as its
    /// metadata: the answer's metadata and its message framed as gRPC sends it; or the status to end the call with.
    /// Statuses are tonic's for the same failure (INTERNAL for a message that does not decode).
    ///
    /// # Errors
    /// The call's status when it fails.
    pub async fn call(&self, headers: http::HeaderMap, message: Bytes) -> Result<(http::HeaderMap, Bytes), Status> {
        let message = ModelInferRequest::decode(message).map_err(|e| Status::internal(e.to_string()))?;
        let request = Request::from_parts(MetadataMap::from_headers(headers), tonic::Extensions::default(), message);
        let (metadata, message, _) = self.service.model_infer(request).await?.into_parts();
        let len = message.encoded_len();
        let Ok(prefix) = u32::try_from(len) else {
            return Err(Status::resource_exhausted(format!(
                "Cannot return body with more than 4GB of data but got {len} bytes"
            )));
        };
        let mut framed = Vec::with_capacity(5 + len);
        framed.put_u8(0);
        framed.put_u32(prefix);
        message.encode_raw(&mut framed);
        Ok((metadata.into_headers(), Bytes::from(framed)))
    }
}

/// Decodes the message, timed as REST's decoding is.
fn decode(target: &Target, message: ModelInferRequest) -> Result<(inference::Inference, Encoding), ApiError> {
    let started = std::time::Instant::now();
    let decoded = convert::decode(message)?;
    target.metrics().preprocess.observe(started.elapsed().as_secs_f64());
    Ok(decoded)
}

/// Encodes the answer naming the model and version that answered, timed as REST's encoding is.
fn encode(
    target: &Target,
    id: Option<String>,
    tensors: Vec<ferroserve_formats::Tensor>,
    encoding: Encoding,
) -> Result<ModelInferResponse, ApiError> {
    let started = std::time::Instant::now();
    let message = convert::encode(target.model_name(), target.version().name(), id, tensors, encoding)?;
    target.metrics().postprocess.observe(started.elapsed().as_secs_f64());
    Ok(message)
}

/// About the bytes of the message's tensor data, to choose where to decode it, as REST chooses by body size.
fn payload_len(message: &ModelInferRequest) -> usize {
    let raw: usize = message.raw_input_contents.iter().map(|b| b.len()).sum();
    let typed: usize = message
        .inputs
        .iter()
        .filter_map(|i| i.contents.as_ref())
        .map(|c| {
            c.bool_contents.len()
                + 4 * (c.int_contents.len() + c.uint_contents.len() + c.fp32_contents.len())
                + 8 * (c.int64_contents.len() + c.uint64_contents.len() + c.fp64_contents.len())
                + c.bytes_contents.iter().map(|b| b.len() + 4).sum::<usize>()
        })
        .sum();
    raw + typed
}

/// The reference a call names: `model_version` (empty for none) or the `x-model-version` metadata.
fn model_ref(name: String, version: String, metadata: tonic::metadata::MetadataMap) -> Result<ModelRef, ApiError> {
    if name.is_empty() {
        return Err(ApiError::BadRequest("the model name is empty".to_owned()));
    }
    let version = (!version.is_empty()).then_some(version);
    ModelRef::new(name, version, &metadata.into_headers())
}

/// The canonical name of a gRPC code, as the metric label.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(&self, _: Request<ServerLiveRequest>) -> Result<Response<ServerLiveResponse>, Status> {
        self.answer("ServerLive", async { Ok(Response::new(ServerLiveResponse { live: true })) }).await
    }

    /// `ready: false` (not an error) while a model cannot answer, as Triton and KServe answer.
    async fn server_ready(&self, _: Request<ServerReadyRequest>) -> Result<Response<ServerReadyResponse>, Status> {
        let ready = self.state.store().is_ready();
        self.answer("ServerReady", async { Ok(Response::new(ServerReadyResponse { ready })) }).await
    }

    /// NOT_FOUND for an unknown model or version; `ready: false` for one that cannot answer yet.
    async fn model_ready(&self, request: Request<ModelReadyRequest>) -> Result<Response<ModelReadyResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        self.answer("ModelReady", async {
            let model = model_ref(message.name, message.version, metadata)?;
            let ready = match inference::resolve(&self.state, &model, Purpose::Describe) {
                Ok(_) => true,
                Err(ApiError::Lookup(LookupError::NotReady { .. })) => false,
                Err(e) => return Err(e),
            };
            Ok(Response::new(ModelReadyResponse { ready }))
        })
        .await
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        self.answer("ServerMetadata", async {
            Ok(Response::new(ServerMetadataResponse {
                name: env!("CARGO_PKG_NAME").to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                extensions: EXTENSIONS.iter().map(|e| (*e).to_owned()).collect(),
            }))
        })
        .await
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        self.answer("ModelMetadata", async {
            let model = model_ref(message.name, message.version, metadata)?;
            let described = self.bounded(async { inference::metadata(&self.state, &model) }).await?;
            Ok(Response::new(described.into()))
        })
        .await
    }

    async fn model_infer(&self, request: Request<ModelInferRequest>) -> Result<Response<ModelInferResponse>, Status> {
        let (metadata, _, mut message) = request.into_parts();
        let span = info_span!("grpc", method = "ModelInfer", model = %message.model_name, version = field::Empty);
        let call = async {
            let name = std::mem::take(&mut message.model_name);
            let version = std::mem::take(&mut message.model_version);
            let model = model_ref(name, version, metadata)?;
            self.bounded(self.infer(&model, message)).await
        };
        self.answer("ModelInfer", call).instrument(span).await
    }

    async fn model_statistics(
        &self,
        request: Request<ModelStatisticsRequest>,
    ) -> Result<Response<ModelStatisticsResponse>, Status> {
        let message = request.into_inner();
        self.answer("ModelStatistics", async {
            let name = (!message.name.is_empty()).then_some(message.name.as_str());
            let version = (!message.version.is_empty()).then_some(message.version.as_str());
            let stats = crate::statistics::collect(&self.state, name, version)?;
            Ok(Response::new(stats.into()))
        })
        .await
    }

    /// Ferroserve serves one repository: `repository_name` is not checked.
    async fn repository_index(
        &self,
        request: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        let ready = request.into_inner().ready;
        self.answer("RepositoryIndex", async { Ok(Response::new(crate::repository::index(&self.state, ready).into())) })
            .await
    }

    /// Triton's `config` and `file:` parameters (a model given in the request) are refused: models load
    /// from their folders only.
    async fn repository_model_load(
        &self,
        request: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        let message = request.into_inner();
        self.answer("RepositoryModelLoad", async {
            if message.model_name.is_empty() {
                return Err(ApiError::BadRequest("the model name is empty".to_owned()));
            }
            if let Some(key) = message.parameters.keys().find(|k| *k == "config" || k.starts_with("file:")) {
                return Err(ApiError::BadRequest(format!(
                    "the `{key}` load parameter is not supported: Ferroserve loads models from their folders in \
                     the repository"
                )));
            }
            crate::repository::load(&self.state, &message.model_name).await?;
            Ok(Response::new(RepositoryModelLoadResponse {}))
        })
        .await
    }

    async fn repository_model_unload(
        &self,
        request: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        let message = request.into_inner();
        self.answer("RepositoryModelUnload", async {
            if message.model_name.is_empty() {
                return Err(ApiError::BadRequest("the model name is empty".to_owned()));
            }
            crate::repository::unload(&self.state, &message.model_name).await?;
            Ok(Response::new(RepositoryModelUnloadResponse {}))
        })
        .await
    }
}
