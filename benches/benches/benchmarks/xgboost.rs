//! XGBoost models from the boosting parity fixtures (`tests/fixtures/boosting/latest`), served through
//! `Model::infer` (input conversion, the trees, output tensors) at 1 and 1024 rows: the native regressor
//! file (`model.ubj`), the same regressor pickled as an `XGBRegressor`, and the platform's
//! predictive-analytics pipeline (`StandardScaler` → `MultiOutputRegressor(XGBRegressor)`, 30 features,
//! 5 targets), beside its random-forest fallback for comparison. Rows are the case's own rows (NaN
//! included), repeated.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use ferroserve_formats::layout::ArtifactFiles;
use ferroserve_formats::{Model, Tensor, TensorData, load_model};
use std::hint::black_box;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/boosting/latest")
}

/// The case's rows (`"nan"` as NaN), repeated to `n` rows, as one `[n, features]` FP64 input.
fn rows(dir: &Path, case: &str, n: usize) -> Tensor {
    let text = std::fs::read(dir.join(format!("{case}.json"))).expect("case file");
    let json: serde_json::Value = serde_json::from_slice(&text).expect("case JSON");
    let x: Vec<Vec<f64>> = json["X"]
        .as_array()
        .expect("X")
        .iter()
        .map(|r| r.as_array().expect("row").iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect())
        .collect();
    let cols = x[0].len();
    let data: Vec<f64> = x.iter().cycle().take(n).flatten().copied().collect();
    Tensor::new("input-0", vec![n, cols], TensorData::Fp64(data)).expect("input")
}

fn bench_model(c: &mut Criterion, group: &str, model: &Arc<dyn Model>, case: &str) {
    bench_model_in(c, group, model, &fixtures(), case);
}

fn bench_model_in(c: &mut Criterion, group: &str, model: &Arc<dyn Model>, dir: &Path, case: &str) {
    let mut g = c.benchmark_group(format!("predict/{group}"));
    for batch in [1usize, 1024] {
        let x = rows(dir, case, batch);
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_with_input(BenchmarkId::from_parameter(batch), &x, |b, x| {
            b.iter(|| black_box(model.infer(std::slice::from_ref(black_box(x)), &[]).expect("infer")));
        });
    }
    g.finish();
}

fn xgboost_models(c: &mut Criterion) {
    let dir = fixtures();
    let native = load_model(&ArtifactFiles::XGBoost { file: dir.join("xgb_regressor.model.ubj") }).expect("fixture");
    bench_model(c, "xgboost_regressor", &native, "xgb_regressor");
    let pickled = load_model(&ArtifactFiles::Pickle { file: dir.join("xgb_regressor.joblib") }).expect("fixture");
    bench_model(c, "xgboost_regressor_joblib", &pickled, "xgb_regressor");
    for case in ["platform_predictive_xgb", "platform_predictive_rf"] {
        let model =
            load_model(&ArtifactFiles::Pickle { file: dir.join(format!("{case}.model.pkl")) }).expect("fixture");
        bench_model(c, case, &model, case);
    }
    // The platform's model at its real size (5 × 100 trees of depth 10), written by
    // `tests/fixtures/boosting/generate.py --full-platform DIR` (not committed: several MB).
    if let Some(full) = std::env::var_os("FERROSERVE_PLATFORM_FULL") {
        let dir = std::path::PathBuf::from(full);
        let case = "platform_predictive_xgb_full";
        let model =
            load_model(&ArtifactFiles::Pickle { file: dir.join(format!("{case}.model.pkl")) }).expect("full model");
        bench_model_in(c, case, &model, &dir, case);
    }
}

criterion_group!(benches, xgboost_models);
