//! The LSTM autoencoder in PyTorch's import form (`config.json` + `model.safetensors`), served over
//! HTTP with PyTorch's numbers: the parity fixtures of model-formats (`make_lstm_golden.py`).

use std::path::PathBuf;

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
    let source = ModelSource::Repository { root: fixtures() };
    let config = StoreConfig { load: LoadOptions { device: DeviceChoice::Cpu }, ..StoreConfig::default() };
    let store = ModelStore::open_with(&source, config).unwrap();
    store.load_all().await;
    assert!(store.is_ready(), "the fixtures load");
    ferroserve::app(AppState::new(store, Limits::default()))
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
