//! Benchmark groups and the fixtures they share.

pub mod e2e;
pub mod grpc;
pub mod lstm;
pub mod platform;
pub mod predict;
pub mod protocol;
pub mod xgboost;

use ferroserve_formats::Matrix;
use ferroserve_formats::tree::IsolationForest;
use ferroserve_train::IsolationForestConfig;
use ferroserve_train::synth::{SynthConfig, generate};

/// Synthetic cluster metrics (seed 42): `rows × 6` float32 features.
pub fn metrics(rows: usize) -> Matrix<f32> {
    let data = generate(&SynthConfig { rows, seed: 42, ..SynthConfig::default() }).expect("synth data");
    let values: Vec<f32> = data.rows.iter().flat_map(|r| r.features()).map(|v| v as f32).collect();
    Matrix { data: values, rows, cols: 6 }
}

/// An IsolationForest as the example's v1: 100 trees, max_samples auto (256), seed 1.
pub fn isolation_forest() -> IsolationForest {
    let config = IsolationForestConfig { seed: 1, ..IsolationForestConfig::default() };
    config.fit(&metrics(10_080), None).expect("fit")
}

/// The first `n` rows of `m`.
pub fn head(m: &Matrix<f32>, n: usize) -> Matrix<f32> {
    Matrix { data: m.data[..n * m.cols].to_vec(), rows: n, cols: m.cols }
}
