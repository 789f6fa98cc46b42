//! [`AppState`]: what every handler shares.

use std::sync::Arc;
use std::time::Duration;

use ferroserve_formats::LoadOptions;
use tokio::sync::Semaphore;
use tracing::{debug, info};

use crate::budget::BodyBudget;
use crate::config::{Config, ConnectionLimits, WatchConfig, WatchMode};
use crate::error::Error;
use crate::feedback::{Feedback, FeedbackConfig};
use crate::metrics::Metrics;
use crate::store::{ModelStore, StoreConfig};

/// Request limits applied by the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest request body, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Model requests handled at once; more are shed with 503.
    pub max_concurrency: usize,
    /// How long a model request may take before it is answered with 503.
    pub request_timeout: Duration,
    /// Request bodies up to this size are decoded and run on the async executor; larger ones on the
    /// blocking pool. A small request is done in tens of microseconds, less than a thread hand-off
    /// costs; a large one would stall every other request on its executor thread.
    pub inline_body_bytes: usize,
    /// Bytes of request bodies (over [`crate::budget::UNCOUNTED_BODY_BYTES`] each) in flight at once;
    /// past it, 503 with `Retry-After`.
    pub max_inflight_body_bytes: usize,
}

impl Default for Limits {
    /// The command line's defaults.
    fn default() -> Self {
        Limits {
            max_body_bytes: 32 * 1024 * 1024,
            max_concurrency: 1024,
            request_timeout: Duration::from_secs(60),
            inline_body_bytes: 16 * 1024,
            max_inflight_body_bytes: 4 * 32 * 1024 * 1024,
        }
    }
}

impl From<&Config> for Limits {
    fn from(config: &Config) -> Self {
        Limits {
            max_body_bytes: config.max_body_bytes,
            max_concurrency: config.max_concurrency,
            request_timeout: config.request_timeout,
            max_inflight_body_bytes: config.max_inflight_body_bytes,
            ..Limits::default()
        }
    }
}

/// The state handlers share: the models and the limits. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    store: ModelStore,
    limits: Limits,
    watch: WatchConfig,
    metrics: Arc<Metrics>,
    feedback: Arc<Feedback>,
    predict_proba: bool,
    connections: ConnectionLimits,
    bodies: Arc<BodyBudget>,
    /// Model requests in flight, over every protocol: `max_concurrency` permits, shared by the REST
    /// router's limit and the gRPC service, so that the bound is the server's, not each port's.
    concurrency: Arc<Semaphore>,
}

impl AppState {
    /// State over an existing store, whose folders are not watched (see [`AppState::with_watch`]).
    pub fn new(store: ModelStore, limits: Limits) -> Self {
        let watch = WatchConfig { mode: WatchMode::Off, ..WatchConfig::default() };
        let feedback = Arc::new(Feedback::new(FeedbackConfig::default()));
        AppState {
            store,
            limits,
            watch,
            metrics: Metrics::new(),
            feedback,
            predict_proba: false,
            connections: ConnectionLimits::default(),
            bodies: BodyBudget::new(limits.max_inflight_body_bytes),
            concurrency: Arc::new(Semaphore::new(limits.max_concurrency)),
        }
    }

    /// Watches the store's folders as `watch` says once served.
    #[must_use]
    pub fn with_watch(mut self, watch: WatchConfig) -> Self {
        self.watch = watch;
        self
    }

    /// State for `config`: its models registered (not loaded yet; `serve_state` loads them) and its
    /// limits.
    ///
    /// The device (`--device`) is probed here, once: `auto` falls back to the CPU without the `cuda`
    /// feature or a GPU, and the log says which device serves.
    ///
    /// # Errors
    /// [`Error::ModelRoot`] when the model folder or repository cannot be used; [`Error::InvalidArg`]
    /// when an explicit `--device cuda[:N]` cannot be opened.
    pub fn open(config: &Config) -> Result<Self, Error> {
        let device = config
            .device
            .resolve()
            .map_err(|e| Error::InvalidArg { flag: "--device", reason: format!("`{}`: {e}", config.device) })?;
        match &device.fallback {
            // `auto` on a CPU-only build or machine is the expected case: not worth a line at every start (most
            // servers hold no LSTM at all).
            Some(reason) => {
                debug!(requested = %config.device, device = %device.choice, reason = %reason, "candle models run on the CPU")
            }
            None if device.choice == ferroserve_formats::lstm::DeviceChoice::Cpu => {
                debug!(requested = %config.device, "candle models run on the CPU");
            }
            None => info!(requested = %config.device, device = %device.choice, "candle models run on this device"),
        }
        let store = StoreConfig {
            load: LoadOptions { device: device.choice, max_model_bytes: config.loading.max_model_bytes },
            load_timeout: config.loading.timeout,
            policy: config.version_policy.clone(),
            batch: config.batch,
            drift: config.drift,
        };
        Ok(AppState {
            store: ModelStore::open_with(&config.models, store)?,
            limits: Limits::from(config),
            watch: config.watch,
            metrics: Metrics::new(),
            feedback: Arc::new(Feedback::new(config.feedback)),
            predict_proba: config.predict_proba,
            connections: config.connections,
            bodies: BodyBudget::new(config.max_inflight_body_bytes),
            concurrency: Arc::new(Semaphore::new(config.max_concurrency)),
        })
    }

    /// The served models; also how to wait for readiness ([`ModelStore::wait_ready`]).
    pub fn store(&self) -> &ModelStore {
        &self.store
    }

    /// The request limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// How the model folders are watched.
    pub fn watch(&self) -> WatchConfig {
        self.watch
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Answers v1 `:predict` with `predict_proba` for models that have it (`PREDICT_PROBA=true`).
    #[must_use]
    pub fn with_predict_proba(mut self, on: bool) -> Self {
        self.predict_proba = on;
        self
    }

    /// Bounds client connections as `connections` says.
    #[must_use]
    pub fn with_connections(mut self, connections: ConnectionLimits) -> Self {
        self.connections = connections;
        self
    }

    /// How client connections are bounded.
    pub fn connections(&self) -> ConnectionLimits {
        self.connections
    }

    /// The budget of request bodies in flight.
    pub fn bodies(&self) -> &Arc<BodyBudget> {
        &self.bodies
    }

    /// Whether v1 `:predict` answers `predict_proba` for models that have it.
    pub fn predict_proba(&self) -> bool {
        self.predict_proba
    }

    /// The permits of model requests in flight (`max_concurrency` of them), shared by every protocol.
    pub fn concurrency(&self) -> &Arc<Semaphore> {
        &self.concurrency
    }

    /// The predictions kept for feedback.
    pub fn feedback(&self) -> &Arc<Feedback> {
        &self.feedback
    }
}
