//! Ferroserve's server: KServe v1 and the v2 Open Inference Protocol over HTTP and gRPC, serving the
//! models of `ferroserve-formats` from a model folder or repository.
//!
//! The binary is thin: `Args` → [`Config`] → [`telemetry::init`] → bind → [`serve`]. Everything is
//! in this library so that tests drive [`app`] with `tower::ServiceExt::oneshot` and [`serve`] on a
//! port-0 listener with their own shutdown future.
//!
//! # Layout
//! - [`config`]: command-line flags ([`Args`]) and their validated form ([`Config`]).
//! - [`protocol::v2`]: the v2 wire types, defined once; tensor `data` decodes straight into typed buffers,
//!   from JSON or from the binary tensor data extension ([`protocol::v2::binary`]).
//! - [`protocol::v1`]: KServe v1's `instances` (rows, records, pandas forms) and `predictions`.
//! - [`inference`]: the inference core every front-end shares (version choice, accounting, the model call,
//!   drift and feedback).
//! - [`store`]: [`ModelStore`], every served model as an `ArcSwap` of its loaded versions; loading,
//!   warm-up and readiness.
//! - [`state`]: [`AppState`] (the store and the request [`Limits`]) shared by the handlers.
//! - [`grpc`]: the Open Inference Protocol over gRPC (`inference.GRPCInferenceService`, with Triton's
//!   statistics and repository RPCs) and `grpc.health.v1`, a front-end over the same core.
//! - [`repository`], [`statistics`]: the model repository and statistics extensions, shared by REST and gRPC.
//! - `http`: the REST handlers (v2 `health`, `metadata`, `infer`, `observe`, `repository`; `v1`) and the
//!   middleware.
//! - [`budget`]: the budget of request bodies in flight (`--max_inflight_body_bytes`).
//! - [`server`]: the accept loop (connection limits, header timeout, graceful drain).
//! - [`batch`]: dynamic batching for models that gain from it.
//! - [`metrics`], [`drift`], [`feedback`]: Prometheus metrics, input drift, accuracy from feedback.
//! - `watch`: the model folders' watcher (events and polling), which reloads the store.
//! - [`validate`]: `ferroserve validate`, post-deployment checks against a running server.
//! - [`error`]: [`Error`], what stops the server from starting.
//! - [`api_error`]: [`ApiError`], why a request fails, and the one owner of statuses.
//! - [`example`]: the ready-to-paste `curl` lines printed at startup.
//! - [`telemetry`]: the log subscriber, installed by the binary.
//! - [`shutdown`]: SIGTERM / ctrl-c.
#![warn(missing_docs)]

pub mod api_error;
pub mod batch;
pub mod budget;
pub mod config;
pub mod drift;
pub mod error;
pub mod example;
pub mod feedback;
pub mod grpc;
mod http;
pub mod inference;
pub mod metrics;
pub mod protocol;
pub mod repository;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod statistics;
pub mod store;
pub mod telemetry;
pub mod validate;
mod watch;

use std::future::Future;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::timeout::TimeoutLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::{Instrument as _, Level, info};

pub use api_error::ApiError;
pub use config::{Args, Config, ConnectionLimits, LogFormat, ModelSource};
pub use error::Error;
pub use state::{AppState, Limits};
pub use store::{LoadedVersion, ModelSnapshot, ModelStore, Reload, StoreConfig, VersionPolicy};

/// The REST router over `state`: KServe v1 and v2.
///
/// Model routes (metadata and inference, v1 `:predict` included) are bounded: at most `max_concurrency` at once, the rest
/// shed with 503 instead of queueing, and each limited to `request_timeout` (503). Health routes and
/// `GET /v2` are not, so that probes answer under any load. Every response outside the handlers
/// (unknown route, wrong method, body too large) is JSON `{"error"}` as well.
pub fn app(state: AppState) -> Router {
    let limits = *state.limits();
    let timeout = limits.request_timeout;
    let metrics = std::sync::Arc::clone(state.metrics());
    let bounded = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(move |e: tower::BoxError| {
            let metrics = std::sync::Arc::clone(&metrics);
            async move { http::overload_error(timeout, &e, &metrics) }
        }))
        .layer(LoadShedLayer::new())
        // Global: one semaphore for every route and the gRPC service (the plain layer would give each route its own).
        .layer(GlobalConcurrencyLimitLayer::with_semaphore(std::sync::Arc::clone(state.concurrency())))
        .layer(TimeoutLayer::new(timeout));
    let models = Router::new()
        .route("/v2/models/{model_name}", get(http::metadata::model))
        .route("/v2/models/{model_name}/versions/{model_version}", get(http::metadata::model))
        .route("/v2/models/{model_name}/infer", post(http::infer::infer))
        .route("/v2/models/{model_name}/versions/{model_version}/infer", post(http::infer::infer))
        .route("/v1/models/{model_name}", post(http::v1::post))
        .route_layer(bounded);
    Router::new()
        .route("/v1/models", get(http::v1::models))
        .route("/v1/models/{model_name}", get(http::v1::model))
        .route("/v2/health/live", get(http::health::live))
        .route("/v2/health/ready", get(http::health::ready))
        .route("/v2", get(http::metadata::server))
        .route("/v2/models/{model_name}/ready", get(http::health::model_ready))
        .route("/v2/models/{model_name}/versions/{model_version}/ready", get(http::health::model_ready))
        .route("/v2/models/{model_name}/drift", get(http::observe::drift))
        .route("/v2/models/{model_name}/versions/{model_version}/drift", get(http::observe::drift))
        .route("/v2/models/{model_name}/stats", get(http::observe::stats))
        .route("/v2/models/{model_name}/versions/{model_version}/stats", get(http::observe::stats))
        .route("/v2/models/{model_name}/feedback", post(http::observe::feedback))
        .route("/metrics", get(http::observe::metrics))
        .route("/v2/repository/index", post(http::repository::index))
        .route("/v2/repository/models/{model_name}/load", post(http::repository::load))
        .route("/v2/repository/models/{model_name}/unload", post(http::repository::unload))
        .merge(models)
        .fallback(http::no_route)
        .method_not_allowed_fallback(http::method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        // A body that stalls between chunks fails its read (408), so a half-sent body never holds a handler.
        .layer(RequestBodyTimeoutLayer::new(state.connections().body_read_timeout))
        .layer(axum::middleware::from_fn(http::log_internal_errors))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(http::request_span)
                // 5xx causes are logged by `log_internal_errors`; 503s are expected under load.
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        .with_state(state)
}

/// Serves the models of `config` on `listener` until `shutdown` resolves, then stops accepting and
/// waits for in-flight requests, up to `--shutdown_timeout` ([`server`]).
///
/// The listener answers at once (`/v2/health/live` is 200, `/v2/health/ready` 503) while the models
/// load in the background; see [`serve_state`].
///
/// # Errors
/// [`Error::ModelRoot`] when the model folder or repository cannot be used; [`Error::Serve`].
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    serve_state(AppState::open(&config)?, listener, shutdown).await
}

/// Serves `state` on `listener` (REST only) until `shutdown` resolves, loading its models in the
/// background; [`serve_listeners`] with no gRPC listener.
///
/// Readiness can be awaited on a clone of the store taken before the call
/// (`state.store().wait_ready()`).
///
/// # Errors
/// [`Error::Serve`] when accepting connections fails.
pub async fn serve_state(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    serve_listeners(state, Listeners { http: listener, grpc: None }, shutdown).await
}

/// The sockets one server answers on.
#[derive(Debug)]
pub struct Listeners {
    /// REST (KServe v1 and v2): `--http_port`.
    pub http: TcpListener,
    /// The Open Inference Protocol over gRPC ([`grpc`]): `--grpc_port`; `None` serves REST only.
    pub grpc: Option<TcpListener>,
}

/// Serves `state` on both `listeners` from one process, loading its models in the background, until
/// `shutdown` resolves; then both stop accepting and drain together, each within `--shutdown_timeout`.
///
/// # Errors
/// [`Error::Serve`] when accepting connections fails.
pub async fn serve_listeners(
    state: AppState,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let Listeners { http, grpc } = listeners;
    for (protocol, listener) in [("http", Some(&http)), ("grpc", grpc.as_ref())] {
        if let Some(addr) = listener.and_then(|l| l.local_addr().ok()) {
            info!(%addr, protocol, "listening");
        }
    }
    // Watching starts before loading, so that no change made while the models load is missed.
    let watcher = watch::start(state.store(), state.watch())?;
    let store = state.store().clone();
    let loader = tokio::spawn(async move { store.load_all().await });
    let connections = state.connections();
    // One signal, two servers: each waits for the flag (a dropped sender counts as set).
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signal = tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let until = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let rest = server::serve(http, app(state.clone()), connections, server::Http2::Hyper, until(stopped.clone()))
        .instrument(tracing::info_span!("http"));
    let grpc = async {
        match grpc {
            Some(listener) => {
                let direct = server::Http2::Inline(Some(grpc::service::DirectInfer::new(state.clone())));
                let router = grpc::router(state, stopped.clone());
                server::serve(listener, router, connections, direct, until(stopped))
                    .instrument(tracing::info_span!("grpc"))
                    .await
            }
            None => Ok(()),
        }
    };
    let (rest, grpc) = tokio::join!(rest, grpc);
    signal.abort();
    // Loads still running are abandoned with the server: there is nobody left to serve them to.
    loader.abort();
    drop(watcher);
    info!("server stopped");
    rest.and(grpc).map_err(Error::Serve)
}
