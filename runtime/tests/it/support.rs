//! Test models on disk and request helpers.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use ferroserve::{AppState, Limits, ModelSource, ModelStore, StoreConfig, VersionPolicy};
use ferroserve_formats::metadata::{FeatureReference, ReferenceDistribution};
use ferroserve_formats::tree::{DecisionTree, IsolationForest, IsolationForestParams};
use ferroserve_formats::{Matrix, ModelMetadata, NativeModel};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tempfile::TempDir;
use tower::ServiceExt as _;

pub const MODEL: &str = "anomaly-detector";

/// Two trees over two features (see model-formats' IsolationForest tests); `threshold` moves the
/// first split so that versions score differently.
pub fn forest(threshold: f64, offset: f64) -> IsolationForest {
    let t0 = DecisionTree {
        children_left: vec![1, -1, 3, -1, -1],
        children_right: vec![2, -1, 4, -1, -1],
        feature: vec![0, -2, 0, -2, -2],
        threshold: vec![threshold, -2.0, 2.0, -2.0, -2.0],
        n_node_samples: vec![8, 5, 3, 2, 1],
    };
    let t1 = DecisionTree {
        children_left: vec![1, -1, -1],
        children_right: vec![2, -1, -1],
        feature: vec![0, -2, -2],
        threshold: vec![-1.0, -2.0, -2.0],
        n_node_samples: vec![8, 1, 7],
    };
    let mut params = IsolationForestParams::with_max_samples(8);
    params.offset = offset;
    IsolationForest::new(params, 2, None, vec![t0, t1], vec![vec![1], vec![0]]).unwrap()
}

/// The model of `v1`.
pub fn v1() -> IsolationForest {
    forest(0.5, -0.5)
}

/// The model of `v2` (and of the bare model).
pub fn v2() -> IsolationForest {
    forest(1.5, -0.45)
}

/// `score_samples` called directly.
pub fn scores(model: &IsolationForest, rows: &[[f32; 2]]) -> Vec<f64> {
    model.score_samples(&Matrix { data: rows.concat(), rows: rows.len(), cols: 2 })
}

pub fn save(dir: &Path, model: &IsolationForest, metadata: Option<&ModelMetadata>) {
    std::fs::create_dir_all(dir).unwrap();
    NativeModel::IsolationForest(model.clone()).save(dir).unwrap();
    if let Some(m) = metadata {
        std::fs::write(dir.join("metadata.json"), m.to_bytes()).unwrap();
    }
}

/// metadata.json with training means 1.25 and -0.5.
pub fn metadata(version: &str) -> ModelMetadata {
    ModelMetadata {
        version: Some(version.to_owned()),
        reference_distribution: Some(ReferenceDistribution {
            features: vec![
                FeatureReference::from_values("cpu", &[1.0, 1.5]),
                FeatureReference::from_values("mem", &[-1.0, 0.0]),
            ],
        }),
        ..ModelMetadata::default()
    }
}

/// A repository: `anomaly-detector/{v1, v2, v3 (broken)}` and `bare/` (v2's model, no metadata).
pub struct Fixture {
    pub root: TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let versioned = root.path().join(MODEL);
        save(&versioned.join("v1"), &v1(), None);
        save(&versioned.join("v2"), &v2(), Some(&metadata("v2")));
        let broken = versioned.join("v3");
        save(&broken, &v2(), None);
        std::fs::write(broken.join("model.safetensors"), b"not safetensors").unwrap();
        save(&root.path().join("bare"), &v2(), None);
        Fixture { root }
    }

    pub fn versioned(&self) -> PathBuf {
        self.root.path().join(MODEL)
    }

    pub fn single(&self) -> ModelSource {
        ModelSource::Single { name: MODEL.to_owned(), dir: self.versioned() }
    }

    pub fn repository(&self) -> ModelSource {
        ModelSource::Repository { root: self.root.path().to_path_buf() }
    }
}

/// A router over `source` with every model loaded, every version of each (`--version_policy all`).
pub async fn loaded(source: &ModelSource, limits: Limits) -> Router {
    let config = StoreConfig { policy: VersionPolicy::All, ..StoreConfig::default() };
    let store = ModelStore::open_with(source, config).unwrap();
    store.load_all().await;
    ferroserve::app(AppState::new(store, limits))
}

/// A router over `source` before any model is loaded.
pub fn unloaded(source: &ModelSource) -> Router {
    ferroserve::app(AppState::new(ModelStore::open(source).unwrap(), Limits::default()))
}

/// Sends a request and returns its status and JSON body (every response must be JSON).
pub async fn call(app: &Router, method: Method, uri: &str, body: impl Into<Body>) -> (StatusCode, Value) {
    let request = Request::builder().method(method).uri(uri).body(body.into()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
    (status, json)
}

pub async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    call(app, Method::GET, uri, Body::empty()).await
}

pub async fn post(app: &Router, uri: &str, body: impl Into<Body>) -> (StatusCode, Value) {
    call(app, Method::POST, uri, body).await
}

/// A v2 request body with one FP32 input `input-0` of `rows`.
pub fn rows_request(rows: &[[f32; 2]], extra: &str) -> String {
    let data: Vec<String> = rows.iter().flatten().map(f32::to_string).collect();
    format!(
        r#"{{{extra}"inputs":[{{"name":"input-0","shape":[{},2],"datatype":"FP32","data":[{}]}}]}}"#,
        rows.len(),
        data.join(",")
    )
}

/// The error message of an error body.
pub fn message(body: &Value) -> &str {
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "an error body has exactly one field: {body}");
    body["error"].as_str().unwrap()
}
