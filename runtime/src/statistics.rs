//! The statistics extension (Triton's): the cumulative request statistics of model versions, for REST
//! `GET /v2/models/{m}[/versions/{v}]/stats` and gRPC `ModelStatistics` alike.
//!
//! Nothing is counted here: the counts and durations are those the request path already keeps for
//! Prometheus ([`crate::metrics::VersionMetrics`]) and the dynamic batcher ([`crate::batch::BatchStats`]),
//! read when asked.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::api_error::ApiError;
use crate::metrics::VersionMetrics;
use crate::protocol::v2::{InferStatistics, ModelStatistics, ModelStatisticsResponse, StatisticDuration};
use crate::state::AppState;
use crate::store::{LoadedVersion, LookupError};

/// The statistics of `model` (every model when `None`), of version `version` only when given.
///
/// Every loaded version is listed, those not asked yet with zeros, as Triton lists them.
///
/// # Errors
/// 404 for an unknown model, or a version the model has not loaded; 400 for a version without a model.
pub fn collect(
    state: &AppState,
    model: Option<&str>,
    version: Option<&str>,
) -> Result<ModelStatisticsResponse, ApiError> {
    let snapshots = match model {
        Some(name) => vec![state.store().snapshot(name)?],
        None if version.is_some() => {
            return Err(ApiError::BadRequest("statistics of a version need the model's name as well".to_owned()));
        }
        None => state.store().snapshots(),
    };
    let mut model_stats = Vec::new();
    for snapshot in snapshots {
        let name = snapshot.name();
        match version {
            Some(wanted) => {
                let v = snapshot
                    .versions()
                    .iter()
                    .find(|v| ferroserve_formats::serving::same_version(v.name(), wanted))
                    .ok_or_else(|| LookupError::UnknownVersion {
                        model: name.to_owned(),
                        version: wanted.to_owned(),
                        available: snapshot.version_names(),
                    })?;
                model_stats.push(statistics(state, name, v));
            }
            None => model_stats.extend(snapshot.versions().iter().map(|v| statistics(state, name, v))),
        }
    }
    Ok(ModelStatisticsResponse { model_stats })
}

/// The statistics of one version of `model`.
fn statistics(state: &AppState, model: &str, version: &LoadedVersion) -> ModelStatistics {
    let metrics = state.metrics().version(model, version);
    let VersionMetrics { stats, preprocess, predict, postprocess, .. } = &*metrics;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let (queue, execution_count) = match version.batcher() {
        Some(b) => {
            let s = b.stats();
            let queue = StatisticDuration { count: get(&s.requests), ns: get(&s.queue_micros).saturating_mul(1000) };
            (queue, get(&s.batches))
        }
        None => (StatisticDuration::default(), get(&stats.execution_count)),
    };
    ModelStatistics {
        name: model.to_owned(),
        version: version.name().to_owned(),
        last_inference: get(&stats.last_inference_ms),
        inference_count: get(&stats.inference_count),
        execution_count,
        inference_stats: InferStatistics {
            success: StatisticDuration { count: get(&stats.success_count), ns: get(&stats.success_ns) },
            fail: StatisticDuration { count: get(&stats.fail_count), ns: get(&stats.fail_ns) },
            queue,
            compute_input: duration(preprocess),
            compute_infer: duration(predict),
            compute_output: duration(postprocess),
        },
        batch_stats: Vec::new(),
    }
}

/// A histogram's count and sum (seconds) as a count and nanoseconds.
fn duration(h: &prometheus::Histogram) -> StatisticDuration {
    // The sum of non-negative seconds; `as` saturates.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ns = (h.get_sample_sum() * 1e9).round() as u64;
    StatisticDuration { count: h.get_sample_count(), ns }
}
