//! Criterion benchmarks: `cargo bench -p ferroserve-benches` (one group: `cargo bench -p ferroserve-benches -- predict`).
//!
//! - `predict`: each model kind's inference at batch 1, 64 and 1024 rows;
//! - `protocol`: v2 JSON request decoding and response encoding;
//! - `e2e`: a whole infer request through the axum `Router` (no socket); `e2e/grpc_model_infer_1_row`: one gRPC
//!   call over a real loopback HTTP/2 connection, the gRPC port's inline driver against hyper's;
//! - `lstm`: the LSTM autoencoder at batch 1, 64 and 256 windows (`-- lstm`);
//! - `xgboost`: XGBoost files and pickles and the platform's predictive-analytics pipeline, at 1 and 1024
//!   rows (`-- xgboost`, `-- platform`);
//! - `platform_`: the platform's anomaly-detector and predictive-analytics pipelines at their real sizes, from
//!   `benches/peers/make_model.py` (`-- predict/platform_`).
//!
//! Fixtures are generated in the bench with fixed seeds, so runs compare.

mod benchmarks;

criterion::criterion_main!(
    benchmarks::predict::benches,
    benchmarks::protocol::benches,
    benchmarks::e2e::benches,
    benchmarks::grpc::benches,
    benchmarks::lstm::benches,
    benchmarks::xgboost::benches,
    benchmarks::platform::benches,
);
