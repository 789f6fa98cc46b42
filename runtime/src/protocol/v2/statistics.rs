//! The statistics extension's messages, in Triton's JSON shape
//! (<https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_statistics.md>):
//! `GET /v2/models/{m}[/versions/{v}]/stats` and gRPC `ModelStatistics` answer the same values.

use serde::{Deserialize, Serialize};

/// The extension's name in `GET /v2` and gRPC `ServerMetadata`.
pub const EXTENSION: &str = "statistics";

/// `GET /v2/models/{m}[/versions/{v}]/stats` response: one entry per model version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelStatisticsResponse {
    /// The versions' statistics, by model then version.
    pub model_stats: Vec<ModelStatistics>,
}

/// The cumulative statistics of one model version since it was loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelStatistics {
    /// The model.
    pub name: String,
    /// The version.
    pub version: String,
    /// When the version last answered an inference request, in milliseconds since the Unix epoch; 0 before.
    pub last_inference: u64,
    /// Rows inferred successfully: a request of 64 rows counts 64.
    pub inference_count: u64,
    /// Model executions: a dynamic batch of many requests counts once.
    pub execution_count: u64,
    /// Counts and cumulative durations of the request's phases.
    pub inference_stats: InferStatistics,
    /// Per batch size statistics; empty (Ferroserve does not break executions down by batch size).
    pub batch_stats: Vec<InferBatchStatistics>,
}

/// Counts and cumulative durations of inference requests, by outcome and phase.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferStatistics {
    /// Requests answered, and their time in the server.
    pub success: StatisticDuration,
    /// Requests that failed after their version was chosen, and their time in the server.
    pub fail: StatisticDuration,
    /// Waiting for a dynamic batch (zero for versions without batching).
    pub queue: StatisticDuration,
    /// Decoding the request into tensors.
    pub compute_input: StatisticDuration,
    /// Running the model.
    pub compute_infer: StatisticDuration,
    /// Encoding the response.
    pub compute_output: StatisticDuration,
}

/// Statistics of executions of one batch size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferBatchStatistics {
    /// The batch size.
    pub batch_size: u64,
    /// Decoding.
    pub compute_input: StatisticDuration,
    /// Running the model.
    pub compute_infer: StatisticDuration,
    /// Encoding.
    pub compute_output: StatisticDuration,
}

/// How many times something happened and how long it took in all, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatisticDuration {
    /// Occurrences.
    pub count: u64,
    /// Total duration, nanoseconds.
    pub ns: u64,
}
