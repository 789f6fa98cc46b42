//! The committed example repository (`examples/models`: the IsolationForest `anomaly-detector` and the LSTM
//! autoencoder `lstm-detector`) serves, and its answers match what its training metrics say about the
//! example data.

use std::path::{Path, PathBuf};

use ferroserve_train::{Dataset, DatasetOptions};

use crate::client::{Server, request};

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models")
}

fn example_dir() -> PathBuf {
    models_dir().join("anomaly-detector")
}

fn example_data() -> Dataset {
    let csv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data/metrics.csv");
    Dataset::read_csv(&csv, &DatasetOptions::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latest_version_serves_by_default() {
    let server = Server::model("anomaly-detector", &example_dir()).await;
    let (status, meta) = server.get("/v2/models/anomaly-detector").await;
    assert_eq!(status, 200);
    assert_eq!(meta["versions"], serde_json::json!(["v2"]), "--version_policy latest");
    let (status, _) =
        server.post("/v2/models/anomaly-detector/versions/v1/infer", &request(&[vec![0.0; 6]], &[])).await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_model_serves_both_versions() {
    let dir = example_dir();
    let args = ["--model_name", "anomaly-detector", "--model_dir", dir.to_str().unwrap(), "--version_policy", "all"];
    let server = Server::start(&args).await;
    let (status, meta) = server.get("/v2/models/anomaly-detector").await;
    assert_eq!(status, 200);
    assert_eq!(meta["versions"], serde_json::json!(["v1", "v2"]));
    assert_eq!(meta["platform"], "ferroserve/isolation_forest");

    // Every labelled row of the example data, through each version: the served labels reproduce the
    // precision and recall recorded in that version's metadata.json.
    let data = example_data();
    let rows: Vec<Vec<f64>> = (0..data.rows).map(|i| data.columns.iter().map(|c| c[i]).collect()).collect();
    let labels = data.labels.as_ref().unwrap();
    for version in ["v1", "v2"] {
        let path = format!("/v2/models/anomaly-detector/versions/{version}/infer");
        let (status, body) = server.post(&path, &request(&rows, &["predict"])).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["model_version"], version);
        let predicted: Vec<bool> =
            body["outputs"][0]["data"].as_array().unwrap().iter().map(|v| v.as_i64() == Some(-1)).collect();
        let tp = predicted.iter().zip(labels).filter(|(p, l)| **p && **l).count() as f64;
        let precision = tp / predicted.iter().filter(|p| **p).count() as f64;
        let recall = tp / labels.iter().filter(|l| **l).count() as f64;
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(example_dir().join(version).join("metadata.json")).unwrap()).unwrap();
        let recorded = &meta["performance_metrics"];
        assert!((precision - recorded["precision"].as_f64().unwrap()).abs() < 1e-12, "{version} precision");
        assert!((recall - recorded["recall"].as_f64().unwrap()).abs() < 1e-12, "{version} recall");
    }

    // The default version is the latest.
    let (_, body) = server.post("/v2/models/anomaly-detector/infer", &request(&rows[..1], &[])).await;
    assert_eq!(body["model_version"], "v2");
    server.stop().await;
}

/// The LSTM autoencoder trained in Rust by `examples/regenerate.sh`, served from the whole repository: every
/// training window of the example data, sent in one request, gets the flags that reproduce the precision and
/// recall recorded in its metadata.json, and a quiet window is not an anomaly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_trained_lstm_serves_its_training_numbers() {
    let root = models_dir();
    let server = Server::start(&["--model_repository", root.to_str().unwrap()]).await;
    let (status, meta) = server.get("/v2/models/lstm-detector").await;
    assert_eq!(status, 200, "{meta}");
    assert_eq!(meta["platform"], "ferroserve/lstm_autoencoder");
    assert_eq!(meta["inputs"][0]["shape"], serde_json::json!([-1, 30, 6]));

    let dir = root.join("lstm-detector/v1");
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("metadata.json")).unwrap()).unwrap();
    let hyper = &recorded["hyperparameters"];
    let (w, stride) = (hyper["window"].as_u64().unwrap() as usize, hyper["stride"].as_u64().unwrap() as usize);
    let data = example_data();
    let labels = data.labels.as_ref().unwrap();
    let starts: Vec<usize> = (0..=data.rows - w).step_by(stride).collect();
    let windows: Vec<f64> =
        starts.iter().flat_map(|&s| (s..s + w).flat_map(|r| data.columns.iter().map(move |c| c[r]))).collect();
    let body = serde_json::json!({
        "id": "all-windows",
        "inputs": [{"name": "input-0", "shape": [starts.len(), w, 6], "datatype": "FP64", "data": windows}],
        "outputs": [{"name": "is_anomaly"}, {"name": "reconstruction_error"}],
    });
    let (status, out) = server.post("/v2/models/lstm-detector/infer", &body).await;
    assert_eq!(status, 200, "{out}");
    let flagged: Vec<bool> =
        out["outputs"][0]["data"].as_array().unwrap().iter().map(|v| v.as_bool().unwrap()).collect();
    let anomalous: Vec<bool> = starts.iter().map(|&s| labels[s..s + w].iter().any(|&l| l)).collect();
    let tp = flagged.iter().zip(&anomalous).filter(|(f, a)| **f && **a).count() as f64;
    let precision = tp / flagged.iter().filter(|f| **f).count() as f64;
    let recall = tp / anomalous.iter().filter(|a| **a).count() as f64;
    let metrics = &recorded["performance_metrics"];
    assert!((precision - metrics["precision"].as_f64().unwrap()).abs() < 1e-12, "precision {precision}: {metrics}");
    assert!((recall - metrics["recall"].as_f64().unwrap()).abs() < 1e-12, "recall {recall}: {metrics}");
    assert!(recall > 0.3 && precision > 0.5, "the example detects anomalies: precision {precision}, recall {recall}");

    // The first half hour of the week is quiet: not an anomaly.
    let quiet = starts.iter().position(|&s| !anomalous[s / stride]).unwrap();
    assert!(!flagged[quiet]);
    server.stop().await;
}
