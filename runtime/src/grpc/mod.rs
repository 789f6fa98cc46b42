//! The Open Inference Protocol over gRPC: KServe's `inference.GRPCInferenceService`, with the RPCs
//! Triton's clients call on it (statistics, model repository), and `grpc.health.v1` for Kubernetes'
//! gRPC probes.
//!
//! A thin front-end over the same core as REST, like `http::infer`: [`service`] names the model and
//! version ([`crate::inference::ModelRef`], with `x-model-version` read from the call's metadata),
//! [`convert`] decodes the message into the core's tensors, [`crate::inference::Target`] runs them, and
//! [`convert`] encodes the answer. So versions, the canary split, limits, metrics, drift and feedback
//! are REST's. Failures are [`ApiError`](crate::ApiError)s, coded by [`ApiError::code`](crate::ApiError::code).
//!
//! The service is an axum [`Router`] ([`router`]), served on `--grpc_port` by the same connection
//! layer as REST ([`crate::server`]): connection limit, HTTP/2 keep-alive and graceful drain are shared. Its HTTP/2
//! connections are driven by [`crate::server::http2`], one task per connection answering its calls in turn.
//!
//! # Layout
//! - [`proto`]: the messages, server trait and client generated from `proto/grpc_predict_v2.proto`.
//! - [`service`]: the service: one method per RPC, each a few lines over the core.
//! - [`convert`]: proto messages ↔ the core's tensors and the v2 protocol types.
//! - [`health`]: `grpc.health.v1`, following the store's readiness.

pub mod convert;
pub mod health;
pub mod service;

/// The generated `inference` package: messages, the server trait
/// ([`proto::grpc_inference_service_server`]) and the client
/// ([`proto::grpc_inference_service_client`]).
#[allow(missing_docs, clippy::all, clippy::pedantic, unreachable_pub, missing_debug_implementations)]
pub mod proto {
    tonic::include_proto!("inference");
}

use axum::Router;
use tokio::sync::watch;
use tonic::service::Routes;

use crate::state::AppState;
use proto::grpc_inference_service_server::GrpcInferenceServiceServer;

/// The gRPC service's full name, as clients and health checks name it.
pub const SERVICE: &str = "inference.GRPCInferenceService";

/// The gRPC services over `state`, as an axum router for [`crate::server::serve`]:
/// `inference.GRPCInferenceService` and `grpc.health.v1.Health`.
///
/// `draining` turns `true` when the server starts draining: the health service then answers
/// NOT_SERVING and ends its `Watch` streams (a receiver whose sender is gone never drains).
///
/// Messages larger than `--max_body_bytes` are refused before they are decoded (OUT_OF_RANGE, tonic's
/// code for it), as REST refuses such bodies with 413.
pub fn router(state: AppState, draining: watch::Receiver<bool>) -> Router {
    let limit = state.limits().max_body_bytes;
    let health = health::service(state.store().clone(), draining);
    let inference = GrpcInferenceServiceServer::new(service::Inference::new(state))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    Routes::new(inference).add_service(health).prepare().into_axum_router()
}
