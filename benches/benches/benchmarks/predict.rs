//! Model inference alone, at batch 1, 64 and 1024.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use std::hint::black_box;

use super::{head, isolation_forest, metrics};

fn isolation_forest_score(c: &mut Criterion) {
    let forest = isolation_forest();
    let x = metrics(1024);
    let mut group = c.benchmark_group("predict/isolation_forest");
    for batch in [1usize, 64, 1024] {
        let rows = head(&x, batch);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &rows, |b, rows| {
            b.iter(|| black_box(forest.predict(black_box(rows))));
        });
    }
    group.finish();
}

/// scikit-learn pickles from the parity fixtures (scikit-learn's newest pinned release), served through
/// `Model::infer` (input conversion, the model, output tensors) at batch 1, 64 and 1024.
fn sklearn_pickles(c: &mut Criterion) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/sklearn/latest");
    for kind in [
        "random_forest_classifier",
        "random_forest_regressor",
        "gradient_boosting_classifier",
        "logistic_regression",
        "pipeline_scaler_forest",
    ] {
        let files = ferroserve_formats::layout::ArtifactFiles::Pickle { file: dir.join(format!("{kind}.joblib")) };
        let model = ferroserve_formats::load_model(&files).expect("fixture");
        let spec = &model.signature().inputs[0];
        let cols = usize::try_from(*spec.shape.last().expect("rank 2")).expect("fixed features");
        let mut group = c.benchmark_group(format!("predict/sklearn_{kind}"));
        for batch in [1usize, 64, 1024] {
            let data: Vec<f32> = (0..batch * cols).map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0).collect();
            let x = ferroserve_formats::Tensor::new(
                spec.name.clone(),
                vec![batch, cols],
                ferroserve_formats::TensorData::Fp32(data),
            )
            .expect("input");
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(BenchmarkId::from_parameter(batch), &x, |b, x| {
                b.iter(|| black_box(model.infer(std::slice::from_ref(black_box(x)), &[]).expect("infer")));
            });
        }
        group.finish();
    }
}

criterion_group!(benches, isolation_forest_score, sklearn_pickles);
