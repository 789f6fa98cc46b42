//! The platform's two pipelines at their real sizes, as `benches/peers/make_model.py` writes them into
//! `benches/results/models/` (`benches/peers/run.sh` makes them; or `make_model.py KIND DIR` in its venv):
//! `anomaly-detector` (RobustScaler + IsolationForest, 200 trees, 45 features) and `predictive-analytics`
//! (StandardScaler + MultiOutputRegressor of 5 XGBRegressors, 100 trees of depth 10, 30 features), loaded from their
//! `model.pkl` as the server loads them and scored on their `rows.csv` at 1 and 1024 rows
//! (`cargo bench -p ferroserve-benches -- predict/platform_`). A model not made yet is skipped, and says so.

use std::path::Path;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use ferroserve_formats::layout::ArtifactFiles;
use ferroserve_formats::{Model, Tensor, TensorData, load_model};
use std::hint::black_box;

/// The first `n` rows of `rows.csv` (cycled), as one `[n, features]` FP32 input.
fn rows(dir: &Path, n: usize) -> Tensor {
    let text = std::fs::read_to_string(dir.join("rows.csv")).expect("rows.csv");
    let all: Vec<Vec<f32>> = text
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').map(|v| v.parse().expect("number")).collect())
        .collect();
    let cols = all[0].len();
    let data: Vec<f32> = all.iter().cycle().take(n).flatten().copied().collect();
    Tensor::new("input-0", vec![n, cols], TensorData::Fp32(data)).expect("input")
}

fn platform(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/models");
    for kind in ["anomaly-detector", "predictive-analytics"] {
        let dir = root.join(kind);
        let file = dir.join("model.pkl");
        if !file.is_file() {
            eprintln!("SKIPPED predict/platform_{kind}: {} not made (run benches/peers/run.sh)", file.display());
            continue;
        }
        let model: Arc<dyn Model> = load_model(&ArtifactFiles::Pickle { file }).expect("model");
        let mut g = c.benchmark_group(format!("predict/platform_{kind}"));
        for batch in [1usize, 1024] {
            let x = rows(&dir, batch);
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_with_input(BenchmarkId::from_parameter(batch), &x, |b, x| {
                b.iter(|| black_box(model.infer(std::slice::from_ref(black_box(x)), &[]).expect("infer")));
            });
        }
        g.finish();
    }
}

criterion_group!(benches, platform);
