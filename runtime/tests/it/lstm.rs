//! The LSTM autoencoder in PyTorch's import form (`config.json` + `model.safetensors`), served over
//! HTTP with PyTorch's numbers: the parity fixtures of model-formats (`make_lstm_golden.py`).

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use ferroserve::protocol::v2::InferResponse;
use ferroserve::{AppState, Limits, ModelSource, ModelStore, StoreConfig};
use ferroserve_formats::lstm::DeviceChoice;
use ferroserve_formats::{LoadOptions, TensorData};
use serde_json::{Value, json};

use crate::support::{get, post};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model-formats/tests/fixtures/lstm")
}

fn golden(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join(name).join("golden.json")).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

async fn app() -> axum::Router {
    ferroserve::app(AppState::new(store().await, Limits::default()))
}

async fn store() -> ModelStore {
    let source = ModelSource::Repository { root: fixtures() };
    let config = StoreConfig {
        load: LoadOptions { device: DeviceChoice::Cpu, ..LoadOptions::default() },
        ..StoreConfig::default()
    };
    let store = ModelStore::open_with(&source, config).unwrap();
    store.load_all().await;
    assert!(store.is_ready(), "the fixtures load");
    store
}

fn assert_close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{what}: {g} vs PyTorch's {w}");
    }
}

#[tokio::test]
async fn pytorch_weights_serve_pytorch_numbers() {
    let app = app().await;
    for name in ["small", "scaled"] {
        let g = golden(name);
        let with_threshold = g.get("is_anomaly").is_some();
        let mut outputs = vec![json!({"name": "reconstruction"}), json!({"name": "reconstruction_error"})];
        if with_threshold {
            outputs.push(json!({"name": "is_anomaly"}));
        }
        let request = json!({
            "id": name,
            "inputs": [{"name": "input-0", "shape": g["input_shape"], "datatype": "FP32", "data": g["input"]}],
            "outputs": outputs,
        });
        let (status, body) = post(&app, &format!("/v2/models/{name}/infer"), request.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let r: InferResponse = serde_json::from_value(body).unwrap();
        let TensorData::Fp32(recon) = &r.outputs[0].data else { panic!("{:?}", r.outputs[0].data) };
        let recon: Vec<f64> = recon.iter().map(|&v| f64::from(v)).collect();
        assert_close(name, &recon, &floats(&g["reconstruction"]));
        let TensorData::Fp64(errors) = &r.outputs[1].data else { panic!("{:?}", r.outputs[1].data) };
        assert_close(name, errors, &floats(&g["reconstruction_error"]));
        if with_threshold {
            let flags: Vec<bool> = g["is_anomaly"].as_array().unwrap().iter().map(|b| b.as_bool().unwrap()).collect();
            assert_eq!(r.outputs[2].data, TensorData::Bool(flags));
        }
    }
}

#[tokio::test]
async fn metadata_and_client_errors() {
    let app = app().await;
    let (status, meta) = get(&app, "/v2/models/scaled").await;
    assert_eq!(status, StatusCode::OK, "{meta}");
    assert_eq!(meta["platform"], "ferroserve/lstm_autoencoder");
    let outputs: Vec<&str> = meta["outputs"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(outputs, ["reconstruction", "reconstruction_error", "is_anomaly"]);
    assert_eq!(meta["inputs"][0]["shape"], json!([-1, 12, 4]));
    let (_, small) = get(&app, "/v2/models/small").await;
    assert_eq!(small["outputs"].as_array().unwrap().len(), 2, "no threshold, no is_anomaly: {small}");

    // A window of the wrong length (seq_len is 12) is the client's mistake.
    let short = json!({"inputs": [{"name": "x", "shape": [11, 4], "datatype": "FP32", "data": vec![0.0; 44]}]});
    let (status, body) = post(&app, "/v2/models/scaled/infer", short.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("12 steps"), "{body}");
    let (status, body) = post(
        &app,
        "/v2/models/small/infer",
        json!({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [0.0, 1.0]}]}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

/// Concurrent requests are batched (`--max_batch_size`), and each still gets PyTorch's numbers for its
/// own windows; a bad request in the crowd gets its own 400 and nobody else's answer changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_batched_with_each_answer_its_own() {
    let store = store().await;
    let app = ferroserve::app(AppState::new(store.clone(), Limits::default()));
    let g = golden("scaled");
    let [b, t, f] = [0, 1, 2].map(|i| usize::try_from(g["input_shape"][i].as_u64().unwrap()).unwrap());
    let input = floats(&g["input"]);
    let errors = floats(&g["reconstruction_error"]);
    let mut tasks = Vec::new();
    for i in 0..48usize {
        let app = app.clone();
        let window = i % b;
        let data = &input[window * t * f..(window + 1) * t * f];
        let data: Vec<Value> = data.iter().map(|&v| json!(v)).collect();
        // Request 29 sends a window one step short: it cannot join the others and gets its own 400.
        let (steps, data) = if i == 29 { (t - 1, data[..(t - 1) * f].to_vec()) } else { (t, data) };
        let request = json!({
            "inputs": [{"name": "input-0", "shape": [1, steps, f], "datatype": "FP32", "data": data}],
            "outputs": [{"name": "reconstruction_error"}],
        });
        tasks.push(tokio::spawn(async move {
            (i, window, post(&app, "/v2/models/scaled/infer", request.to_string()).await)
        }));
    }
    for task in tasks {
        let (i, window, (status, body)) = task.await.unwrap();
        if i == 29 {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            continue;
        }
        assert_eq!(status, StatusCode::OK, "request {i}: {body}");
        let r: InferResponse = serde_json::from_value(body).unwrap();
        assert_eq!(r.outputs[0].shape, vec![1]);
        let TensorData::Fp64(e) = &r.outputs[0].data else { panic!("{:?}", r.outputs[0].data) };
        assert_close(&format!("request {i}"), e, &errors[window..=window]);
    }
    let snapshot = store.snapshot("scaled").unwrap();
    let stats = snapshot.default_version().unwrap().batcher().expect("the LSTM is batched").stats();
    let (batches, requests) = (stats.batches.load(Ordering::Relaxed), stats.requests.load(Ordering::Relaxed));
    assert_eq!(requests, 48);
    assert!(batches < requests, "some requests shared a batch: {batches} batches for {requests} requests");
}
