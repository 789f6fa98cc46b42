//! A whole infer request through the axum `Router` (`oneshot`, no socket): decode, model, encode; over v2
//! (`score_samples`) and KServe v1 (`predict`, the default output).

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use ferroserve::{AppState, Limits, LoadedVersion, ModelStore};
use http_body_util::BodyExt as _;
use std::hint::black_box;
use tower::ServiceExt as _;

use super::isolation_forest;
use super::protocol::{predict_body, request_body};

fn infer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    let model: Arc<dyn ferroserve_formats::Model> = Arc::new(isolation_forest());
    let store = ModelStore::from_versions([("anomaly-detector".to_owned(), vec![LoadedVersion::new("v1", model)])]);
    let app = ferroserve::app(AppState::new(store, Limits::default()));
    for (group, uri, body) in [
        ("e2e/infer_isolation_forest", "/v2/models/anomaly-detector/infer", request_body as fn(usize) -> Vec<u8>),
        ("e2e/predict_v1_isolation_forest", "/v1/models/anomaly-detector:predict", predict_body),
    ] {
        requests(c, &runtime, &app, group, uri, body);
    }
}

fn requests(
    c: &mut Criterion,
    runtime: &tokio::runtime::Runtime,
    app: &axum::Router,
    group: &str,
    uri: &str,
    body: fn(usize) -> Vec<u8>,
) {
    let mut group = c.benchmark_group(group);
    for rows in [1usize, 64, 1024] {
        let body = body(rows);
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::from_parameter(rows), &body, |b, body| {
            b.iter(|| {
                runtime.block_on(async {
                    let request = Request::post(uri).body(Body::from(body.clone())).expect("request");
                    let response = app.clone().oneshot(request).await.expect("infallible");
                    assert!(response.status().is_success());
                    black_box(response.into_body().collect().await.expect("body").to_bytes())
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, infer);
