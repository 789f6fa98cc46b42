//! v2 JSON: request decoding (straight into typed tensors) and response encoding, at 1, 64 and 1024 rows.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use ferroserve::protocol::v2::{InferRequest, InferResponse, InferTensor};
use ferroserve_formats::{Tensor, TensorData};
use std::hint::black_box;

use super::{head, metrics};

/// A v2 request body with `rows` rows of 6 FP32 features, nested row-major as clients send them.
pub fn request_body(rows: usize) -> Vec<u8> {
    let x = head(&metrics(rows), rows);
    let data: Vec<Vec<f32>> = x.row_iter().map(<[f32]>::to_vec).collect();
    serde_json::to_vec(&serde_json::json!({
        "id": "bench",
        "inputs": [{"name": "input-0", "shape": [rows, 6], "datatype": "FP32", "data": data}],
        "outputs": [{"name": "score_samples"}],
    }))
    .expect("json")
}

/// The same rows as a KServe v1 `:predict` body.
pub fn predict_body(rows: usize) -> Vec<u8> {
    let x = head(&metrics(rows), rows);
    let data: Vec<Vec<f32>> = x.row_iter().map(<[f32]>::to_vec).collect();
    serde_json::to_vec(&serde_json::json!({ "instances": data })).expect("json")
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("protocol/decode_fp32");
    for rows in [1usize, 64, 1024] {
        let body = request_body(rows);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(rows), &body, |b, body| {
            b.iter(|| {
                let request: InferRequest = serde_json::from_slice(black_box(body)).expect("decode");
                let tensors: Vec<Tensor> =
                    request.inputs.into_iter().map(|t| Tensor::try_from(t).expect("tensor")).collect();
                black_box(tensors)
            });
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("protocol/encode_fp64");
    for rows in [1usize, 64, 1024] {
        let scores: Vec<f64> = (0..rows).map(|i| -0.4 - (i as f64) * 1e-4).collect();
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::from_parameter(rows), &scores, |b, scores| {
            b.iter(|| {
                let tensor =
                    Tensor::new("score_samples", vec![scores.len()], TensorData::Fp64(scores.clone())).expect("tensor");
                let response = InferResponse {
                    model_name: "anomaly-detector".to_owned(),
                    model_version: "v2".to_owned(),
                    id: Some("bench".to_owned()),
                    parameters: None,
                    outputs: vec![InferTensor::from(tensor)],
                };
                black_box(serde_json::to_vec(&response).expect("encode"))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, decode, encode);
