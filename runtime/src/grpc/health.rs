//! `grpc.health.v1.Health`, the standard gRPC health service, for Kubernetes' `grpc` probes and
//! `grpc_health_probe`.
//!
//! Checked live against the store, never cached, so an unloaded model turns the server NOT_SERVING at
//! once. Service names, as Kubernetes probes name them (`grpc.service` in a probe):
//! - `""` (a probe without a service), `inference.GRPCInferenceService` and `ready`: SERVING when every
//!   configured model can answer, like `GET /v2/health/ready`; Triton answers the same way;
//! - `live`: SERVING whenever the server answers, like `GET /v2/health/live`, for a liveness probe
//!   that must not restart a pod whose model is still loading.
//!
//! Any other name is NOT_FOUND for `Check` and SERVICE_UNKNOWN for `Watch`, as the protocol says
//! (<https://github.com/grpc/grpc/blob/master/doc/health-checking.md>).
//!
//! Once the server drains, every name but `live` is NOT_SERVING, and `Watch` streams send that and
//! end, as grpc-go's health server does: a stream left open would hold the drain to its deadline.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::store::ModelStore;

/// How often a `Watch` re-reads readiness between the store's own notifications (unloads and failed
/// reloads do not notify).
const WATCH_POLL: Duration = Duration::from_secs(1);

/// The health service over `store`; `draining` turns `true` when the server starts its drain.
pub fn service(store: ModelStore, draining: watch::Receiver<bool>) -> HealthServer<HealthService> {
    HealthServer::new(HealthService { store, draining })
}

/// `grpc.health.v1.Health` over a store (see the module documentation).
#[derive(Debug, Clone)]
pub struct HealthService {
    store: ModelStore,
    draining: watch::Receiver<bool>,
}

impl HealthService {
    /// The status of `service`, `None` for a name the server does not know.
    fn status(&self, service: &str) -> Option<ServingStatus> {
        match service {
            "" | super::SERVICE | "ready" => Some(if self.store.is_ready() && !*self.draining.borrow() {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            }),
            "live" => Some(ServingStatus::Serving),
            _ => None,
        }
    }
}

/// Resolves when the drain starts; never when nobody can start it.
async fn drained(draining: &mut watch::Receiver<bool>) {
    if draining.wait_for(|d| *d).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse { status: status.into() }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(&self, request: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        let service = request.into_inner().service;
        match self.status(&service) {
            Some(status) => Ok(Response::new(response(status))),
            None => Err(Status::not_found(format!(
                "unknown service `{service}`; this server reports \"\", `{}`, `ready` and `live`",
                super::SERVICE
            ))),
        }
    }

    type WatchStream = ReceiverStream<Result<HealthCheckResponse, Status>>;

    /// Sends the status at once, then each change, until the client goes away.
    async fn watch(&self, request: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let service = request.into_inner().service;
        let (tx, rx) = mpsc::channel(4);
        let this = self.clone();
        tokio::spawn(async move {
            let mut ready = this.store.subscribe_ready();
            let mut draining = this.draining.clone();
            let mut last = None;
            loop {
                let status = this.status(&service).unwrap_or(ServingStatus::ServiceUnknown);
                if last != Some(status) {
                    if tx.send(Ok(response(status))).await.is_err() {
                        return;
                    }
                    last = Some(status);
                }
                if *draining.borrow() {
                    return;
                }
                tokio::select! {
                    changed = ready.changed() => if changed.is_err() { return },
                    () = drained(&mut draining) => {}
                    () = tokio::time::sleep(WATCH_POLL) => {}
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
