//! Prometheus metrics: `GET /metrics`, in an owned registry (no process-wide globals).
//!
//! The request path only touches pre-resolved handles: each model version gets its counters and
//! histograms once ([`Metrics::version`], cached on the version), so a request costs a few atomic
//! additions. Everything the store knows (readiness, load times, load failures, swaps, batches, drift)
//! is read at scrape time ([`Metrics::render`]), so it costs the request path nothing.
//!
//! Labels are `model` and `version` (and `status`, the HTTP status code, on request counters), taken
//! from served models only: a request for an unknown model is counted under `model="<unknown>"`, so a
//! client cannot create series.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus::core::{AtomicU64 as PromU64, GenericCounter};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::store::{LoadedVersion, ModelStore};

/// Histogram buckets in seconds: fine from 50 µs (a tree model's single row) to 10 s.
pub const LATENCY_BUCKETS: [f64; 20] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.003, 0.005, 0.007_5, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The model label of requests for a model that is not served.
pub const UNKNOWN_MODEL: &str = "<unknown>";

type Counter = GenericCounter<PromU64>;

/// Every metric family, registered in one registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    errors: IntCounterVec,
    latency: HistogramVec,
    preprocess: HistogramVec,
    predict: HistogramVec,
    postprocess: HistogramVec,
    inflight: IntGauge,
    shed: IntCounterVec,
    grpc: IntCounterVec,
    pub(crate) accuracy: GaugeVec,
    pub(crate) precision: GaugeVec,
    pub(crate) recall: GaugeVec,
    pub(crate) feedback: IntCounterVec,
    model_ready: GaugeVec,
    versions_loaded: GaugeVec,
    load_seconds: GaugeVec,
    loads: IntCounterVec,
    load_failures: IntCounterVec,
    swaps: IntCounterVec,
    batches: IntCounterVec,
    batched_requests: IntCounterVec,
    batched_rows: IntCounterVec,
    batch_queue_seconds: prometheus::CounterVec,
    drift_ks: GaugeVec,
    drift_pvalue: GaugeVec,
    drift_psi: GaugeVec,
    drift_detected: GaugeVec,
    drift_samples: GaugeVec,
}

/// One model version's request-path handles.
#[derive(Debug)]
pub struct VersionMetrics {
    model: String,
    version: String,
    ok: Counter,
    latency: prometheus::Histogram,
    pub(crate) preprocess: prometheus::Histogram,
    pub(crate) predict: prometheus::Histogram,
    pub(crate) postprocess: prometheus::Histogram,
    /// The version's statistics in Triton's terms (the statistics extension).
    pub(crate) stats: VersionStats,
}

/// A version's cumulative request statistics, as the statistics extension reports them (the phase
/// durations come from the `request_*_seconds` histograms).
#[derive(Debug, Default)]
pub struct VersionStats {
    pub(crate) success_count: AtomicU64,
    pub(crate) success_ns: AtomicU64,
    pub(crate) fail_count: AtomicU64,
    pub(crate) fail_ns: AtomicU64,
    /// Milliseconds since the Unix epoch of the last answered request.
    pub(crate) last_inference_ms: AtomicU64,
    /// Rows inferred.
    pub(crate) inference_count: AtomicU64,
    /// Model executions outside a batcher (a batcher counts its own).
    pub(crate) execution_count: AtomicU64,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    GaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
}

fn histogram(name: &str, help: &str) -> HistogramVec {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()), &["model", "version"])
        .expect("valid metric")
}

const MV: [&str; 2] = ["model", "version"];
const MVS: [&str; 3] = ["model", "version", "status"];
const MVF: [&str; 3] = ["model", "version", "feature"];

impl Metrics {
    /// A registry with every family, plus the process collector (memory, CPU, file descriptors).
    #[allow(clippy::expect_used, clippy::too_many_lines)]
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let m = Metrics {
            requests: counter("kserve_inference_requests_total", "Inference requests, by answer status.", &MVS),
            errors: counter("kserve_inference_errors_total", "Inference requests answered with an error.", &MVS),
            latency: histogram("kserve_inference_latency", "Inference request latency in the server, seconds."),
            preprocess: histogram("request_preprocess_seconds", "Decoding the request into tensors, seconds."),
            predict: histogram("request_predict_seconds", "Running the model (with batch queueing), seconds."),
            postprocess: histogram("request_postprocess_seconds", "Encoding the response, seconds."),
            inflight: IntGauge::new("ferroserve_inflight_requests", "Inference requests being handled.")
                .expect("valid metric"),
            shed: counter(
                "ferroserve_requests_rejected_total",
                "Model requests refused before a handler ran: shed over --max_concurrency or timed out.",
                &["reason"],
            ),
            grpc: counter(
                "ferroserve_grpc_requests_total",
                "gRPC requests by method and status code (inference requests are also in kserve_inference_*).",
                &["method", "code"],
            ),
            accuracy: gauge("model_prediction_accuracy", "Share of labelled feedback the model predicted right.", &MV),
            precision: gauge("model_prediction_precision", "Anomaly detectors: precision on labelled feedback.", &MV),
            recall: gauge("model_prediction_recall", "Anomaly detectors: recall on labelled feedback.", &MV),
            feedback: counter("model_feedback_total", "Labelled rows received as feedback.", &MV),
            model_ready: gauge("ferroserve_model_ready", "1 when the model has a version that answers.", &["model"]),
            versions_loaded: gauge("ferroserve_model_versions_loaded", "Versions loaded.", &["model"]),
            load_seconds: gauge("ferroserve_model_load_seconds", "Time to load and warm up the version.", &MV),
            loads: counter("ferroserve_model_loads_total", "Versions loaded (first loads and reloads).", &["model"]),
            load_failures: counter("ferroserve_model_load_failures_total", "Versions that failed to load.", &["model"]),
            swaps: counter(
                "ferroserve_model_swaps_total",
                "Changes of what a model serves after its first load.",
                &["model"],
            ),
            batches: counter("ferroserve_batches_total", "Batches run by the dynamic batcher.", &MV),
            batched_requests: counter("ferroserve_batched_requests_total", "Requests run through the batcher.", &MV),
            batched_rows: counter("ferroserve_batched_rows_total", "Rows run through the batcher.", &MV),
            batch_queue_seconds: prometheus::CounterVec::new(
                Opts::new("ferroserve_batch_queue_seconds_total", "Total time requests waited for their batch."),
                &MV,
            )
            .expect("valid metric"),
            drift_ks: gauge("ferroserve_drift_ks_statistic", "KS statistic of recent inputs vs training.", &MVF),
            drift_pvalue: gauge("ferroserve_drift_ks_pvalue", "KS test p-value of recent inputs vs training.", &MVF),
            drift_psi: gauge("ferroserve_drift_psi", "Population stability index of recent inputs vs training.", &MVF),
            drift_detected: gauge(
                "ferroserve_drift_detected",
                "1 when a feature's KS p-value is below the level.",
                &MV,
            ),
            drift_samples: gauge("ferroserve_drift_window_samples", "Rows in the drift window.", &MV),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.requests.clone()),
            Box::new(m.errors.clone()),
            Box::new(m.latency.clone()),
            Box::new(m.preprocess.clone()),
            Box::new(m.predict.clone()),
            Box::new(m.postprocess.clone()),
            Box::new(m.inflight.clone()),
            Box::new(m.shed.clone()),
            Box::new(m.grpc.clone()),
            Box::new(m.accuracy.clone()),
            Box::new(m.precision.clone()),
            Box::new(m.recall.clone()),
            Box::new(m.feedback.clone()),
            Box::new(m.model_ready.clone()),
            Box::new(m.versions_loaded.clone()),
            Box::new(m.load_seconds.clone()),
            Box::new(m.loads.clone()),
            Box::new(m.load_failures.clone()),
            Box::new(m.swaps.clone()),
            Box::new(m.batches.clone()),
            Box::new(m.batched_requests.clone()),
            Box::new(m.batched_rows.clone()),
            Box::new(m.batch_queue_seconds.clone()),
            Box::new(m.drift_ks.clone()),
            Box::new(m.drift_pvalue.clone()),
            Box::new(m.drift_psi.clone()),
            Box::new(m.drift_detected.clone()),
            Box::new(m.drift_samples.clone()),
        ];
        for c in collectors {
            m.registry.register(c).expect("metric names are unique");
        }
        // Exported at 0 from the start, so that rate() and alerts see them before the first rejection.
        for reason in ["overloaded", "timeout", "body_budget"] {
            m.shed.with_label_values(&[reason]);
        }
        #[cfg(target_os = "linux")]
        m.registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())).expect("unique");
        Arc::new(m)
    }

    /// The request-path handles of `version` of `model`, created once and cached on the version.
    pub fn version(self: &Arc<Self>, model: &str, version: &LoadedVersion) -> Arc<VersionMetrics> {
        version.attached(self, || {
            let labels = [model, version.name()];
            Arc::new(VersionMetrics {
                model: model.to_owned(),
                version: version.name().to_owned(),
                ok: self.requests.with_label_values(&[model, version.name(), "200"]),
                latency: self.latency.with_label_values(&labels),
                preprocess: self.preprocess.with_label_values(&labels),
                predict: self.predict.with_label_values(&labels),
                postprocess: self.postprocess.with_label_values(&labels),
                stats: VersionStats::default(),
            })
        })
    }

    /// Counts a request that failed before a version was chosen (unknown model, not ready, bad header).
    pub fn unresolved(&self, model: &str, status: u16, elapsed: Duration) {
        let status = status.to_string();
        self.requests.with_label_values(&[model, "", &status]).inc();
        self.errors.with_label_values(&[model, "", &status]).inc();
        self.latency.with_label_values(&[model, ""]).observe(elapsed.as_secs_f64());
    }

    /// Counts a request refused by the load shedder or the timeout.
    pub fn rejected(&self, reason: &'static str) {
        self.shed.with_label_values(&[reason]).inc();
    }

    /// Counts a gRPC call of `method` (`ModelInfer`, …) answered with `code` (`OK`, `NOT_FOUND`, …).
    pub fn grpc(&self, method: &str, code: &str) {
        self.grpc.with_label_values(&[method, code]).inc();
    }

    /// The in-flight gauge, raised until the guard is dropped.
    pub fn in_flight(self: &Arc<Self>) -> InFlight {
        self.inflight.inc();
        InFlight(Arc::clone(self))
    }

    /// The text exposition of every metric, after reading the store's state.
    pub fn render(&self, store: &ModelStore) -> String {
        self.refresh(store);
        let mut out = Vec::new();
        // The text encoder only fails on a broken writer; a Vec never is.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Copies the store's state into the store-derived families. Gauges are reset first, so that models
    /// and versions no longer served disappear; counters only grow.
    fn refresh(&self, store: &ModelStore) {
        for g in [
            &self.model_ready,
            &self.versions_loaded,
            &self.load_seconds,
            &self.drift_ks,
            &self.drift_pvalue,
            &self.drift_psi,
            &self.drift_detected,
            &self.drift_samples,
        ] {
            g.reset();
        }
        let mut loaded = std::collections::HashSet::new();
        for snapshot in store.snapshots() {
            let model = snapshot.name();
            loaded.extend(snapshot.versions().iter().map(|v| (model.to_owned(), v.name().to_owned())));
            self.model_ready.with_label_values(&[model]).set(if snapshot.is_ready() { 1.0 } else { 0.0 });
            #[allow(clippy::cast_precision_loss)]
            self.versions_loaded.with_label_values(&[model]).set(snapshot.versions().len() as f64);
            if let Some(stats) = store.stats(model) {
                catch_up(&self.loads.with_label_values(&[model]), stats.loads.load(Ordering::Relaxed));
                catch_up(&self.load_failures.with_label_values(&[model]), stats.load_failures.load(Ordering::Relaxed));
                catch_up(&self.swaps.with_label_values(&[model]), stats.swaps.load(Ordering::Relaxed));
            }
            for v in snapshot.versions() {
                let labels = [model, v.name()];
                if let Some(s) = v.load_seconds() {
                    self.load_seconds.with_label_values(&labels).set(s);
                }
                if let Some(b) = v.batcher() {
                    let s = b.stats();
                    catch_up(&self.batches.with_label_values(&labels), s.batches.load(Ordering::Relaxed));
                    catch_up(&self.batched_requests.with_label_values(&labels), s.requests.load(Ordering::Relaxed));
                    catch_up(&self.batched_rows.with_label_values(&labels), s.rows.load(Ordering::Relaxed));
                    let queued = self.batch_queue_seconds.with_label_values(&labels);
                    #[allow(clippy::cast_precision_loss)]
                    let total = s.queue_micros.load(Ordering::Relaxed) as f64 / 1e6;
                    if total > queued.get() {
                        queued.inc_by(total - queued.get());
                    }
                }
                if let Some(drift) = v.drift().map(|d| d.report()) {
                    #[allow(clippy::cast_precision_loss)]
                    self.drift_samples.with_label_values(&labels).set(drift.samples as f64);
                    self.drift_detected.with_label_values(&labels).set(if drift.detected { 1.0 } else { 0.0 });
                    for f in &drift.features {
                        let Some(stats) = f.stats else { continue };
                        let labels = [model, v.name(), f.name.as_str()];
                        self.drift_ks.with_label_values(&labels).set(stats.ks_statistic);
                        self.drift_pvalue.with_label_values(&labels).set(stats.ks_pvalue);
                        self.drift_psi.with_label_values(&labels).set(stats.psi);
                    }
                }
            }
        }
        // Feedback sets these when it arrives; a version no longer loaded (replaced, rolled back, deleted) keeps
        // no quality figures, so that a retrained model's alert resolves and dashboards show what serves.
        for g in [&self.accuracy, &self.precision, &self.recall] {
            for family in prometheus::core::Collector::collect(g) {
                for m in family.get_metric() {
                    let label = |name: &str| {
                        m.get_label().iter().find(|l| l.name() == name).map_or("", |l| l.value()).to_owned()
                    };
                    let (model, version) = (label("model"), label("version"));
                    if !loaded.contains(&(model.clone(), version.clone())) {
                        let _ = g.remove_label_values(&[&model, &version]);
                    }
                }
            }
        }
    }
}

/// Raises `counter` to `total` (counters only grow; the store's totals only grow).
fn catch_up(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

impl VersionMetrics {
    /// The model's name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Counts an answered request.
    pub fn ok(&self, elapsed: Duration) {
        self.ok.inc();
        self.latency.observe(elapsed.as_secs_f64());
        add_duration(&self.stats.success_count, &self.stats.success_ns, elapsed);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        self.stats.last_inference_ms.store(saturating_u64(now.as_millis()), Ordering::Relaxed);
    }

    /// Counts one model execution over `rows` rows that ran outside a batcher.
    pub fn executed(&self, rows: u64, batched: bool) {
        self.stats.inference_count.fetch_add(rows, Ordering::Relaxed);
        if !batched {
            self.stats.execution_count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a request that failed after its version was chosen.
    pub fn failed(&self, metrics: &Metrics, status: u16, elapsed: Duration) {
        let status = status.to_string();
        let labels = [self.model.as_str(), self.version.as_str(), status.as_str()];
        metrics.requests.with_label_values(&labels).inc();
        metrics.errors.with_label_values(&labels).inc();
        self.latency.observe(elapsed.as_secs_f64());
        add_duration(&self.stats.fail_count, &self.stats.fail_ns, elapsed);
    }
}

fn add_duration(count: &AtomicU64, ns: &AtomicU64, elapsed: Duration) {
    count.fetch_add(1, Ordering::Relaxed);
    ns.fetch_add(saturating_u64(elapsed.as_nanos()), Ordering::Relaxed);
}

fn saturating_u64(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Lowers the in-flight gauge when dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.dec();
    }
}
