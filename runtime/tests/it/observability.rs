//! `/metrics` after known traffic, input drift under a shifted stream, accuracy from feedback.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use ferroserve::{AppState, Limits, ModelSource, ModelStore, StoreConfig, VersionPolicy};
use ferroserve_formats::ModelMetadata;
use ferroserve_formats::metadata::{FeatureReference, ReferenceDistribution};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::support::{Fixture, get, post, rows_request, save, v2};

async fn scrape(app: &Router) -> String {
    let request = Request::builder().method(Method::GET).uri("/metrics").body(Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// The value of the series `series` (name and labels exactly as exposed), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn app_over(source: &ModelSource) -> (Router, ModelStore) {
    let config = StoreConfig { policy: VersionPolicy::All, ..StoreConfig::default() };
    let store = ModelStore::open_with(source, config).unwrap();
    store.load_all().await;
    (ferroserve::app(AppState::new(store.clone(), Limits::default())), store)
}

#[tokio::test]
async fn metrics_count_known_traffic_with_the_platform_names() {
    let fx = Fixture::new();
    let (app, _) = app_over(&fx.repository()).await;
    for _ in 0..5 {
        let (status, _) = post(&app, "/v2/models/anomaly-detector/infer", rows_request(&[[0.0, 0.0]], "")).await;
        assert_eq!(status, StatusCode::OK);
    }
    for _ in 0..2 {
        let (status, _) =
            post(&app, "/v2/models/anomaly-detector/versions/v1/infer", rows_request(&[[0.0, 0.0], [1.0, 1.0]], ""))
                .await;
        assert_eq!(status, StatusCode::OK);
    }
    let bad = r#"{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}"#;
    assert_eq!(post(&app, "/v2/models/anomaly-detector/infer", bad).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(post(&app, "/v2/models/nope/infer", bad).await.0, StatusCode::NOT_FOUND);
    assert_eq!(post(&app, "/v2/models/client-chosen-name/infer", bad).await.0, StatusCode::NOT_FOUND);

    let text = scrape(&app).await;
    let m = r#"model="anomaly-detector""#;
    assert_eq!(
        value(&text, &format!(r#"kserve_inference_requests_total{{{m},status="200",version="v2"}}"#)),
        Some(5.0)
    );
    assert_eq!(
        value(&text, &format!(r#"kserve_inference_requests_total{{{m},status="200",version="v1"}}"#)),
        Some(2.0)
    );
    assert_eq!(
        value(&text, &format!(r#"kserve_inference_requests_total{{{m},status="400",version="v2"}}"#)),
        Some(1.0)
    );
    assert_eq!(value(&text, &format!(r#"kserve_inference_errors_total{{{m},status="400",version="v2"}}"#)), Some(1.0));
    assert_eq!(
        value(&text, r#"kserve_inference_errors_total{model="<unknown>",status="404",version=""}"#),
        Some(2.0),
        "unknown model names share one series"
    );
    assert!(!text.contains("client-chosen-name"), "a client cannot create series");
    assert_eq!(value(&text, &format!(r#"kserve_inference_latency_count{{{m},version="v2"}}"#)), Some(6.0));
    assert_eq!(value(&text, &format!(r#"kserve_inference_latency_bucket{{{m},version="v2",le="+Inf"}}"#)), Some(6.0));
    assert!(text.contains(r#"kserve_inference_latency_bucket{model="anomaly-detector",version="v2",le="0.00005"}"#));
    // The bad request was decoded, then refused by the model.
    for (phase, n) in
        [("request_preprocess_seconds", 6.0), ("request_predict_seconds", 5.0), ("request_postprocess_seconds", 5.0)]
    {
        assert_eq!(value(&text, &format!(r#"{phase}_count{{{m},version="v2"}}"#)), Some(n), "{phase}");
    }
    assert_eq!(value(&text, &format!("ferroserve_model_ready{{{m}}}")), Some(1.0));
    assert_eq!(value(&text, &format!("ferroserve_model_versions_loaded{{{m}}}")), Some(2.0));
    assert_eq!(value(&text, &format!("ferroserve_model_load_failures_total{{{m}}}")), Some(1.0), "v3 is broken");
    assert!(value(&text, &format!(r#"ferroserve_model_load_seconds{{{m},version="v2"}}"#)).unwrap() > 0.0);
    assert_eq!(value(&text, "ferroserve_inflight_requests"), Some(0.0));
    #[cfg(target_os = "linux")]
    assert!(value(&text, "process_resident_memory_bytes").unwrap() > 1e6);
}

/// A model whose training distribution is uniform on [0, 1) in both features.
fn model_with_reference(dir: &std::path::Path) {
    let values: Vec<f64> = (0..2000).map(|i| f64::from(i) / 2000.0).collect();
    let metadata = ModelMetadata {
        version: Some("v1".into()),
        reference_distribution: Some(ReferenceDistribution {
            features: vec![
                FeatureReference::from_values("cpu", &values),
                FeatureReference::from_values("mem", &values),
            ],
        }),
        ..ModelMetadata::default()
    };
    save(&dir.join("v1"), &v2(), Some(&metadata));
}

#[tokio::test]
async fn a_shifted_input_stream_raises_the_drift_flag() {
    let root = tempfile::tempdir().unwrap();
    model_with_reference(root.path());
    let (app, _) = app_over(&ModelSource::Single { name: "m".into(), dir: root.path().into() }).await;
    // 300 rows like the training data: no drift.
    let normal: Vec<[f32; 2]> =
        (0..300).map(|i| [(i * 7 % 300) as f32 / 300.0, (i * 13 % 300) as f32 / 300.0]).collect();
    for chunk in normal.chunks(30) {
        assert_eq!(post(&app, "/v2/models/m/infer", rows_request(chunk, "")).await.0, StatusCode::OK);
    }
    let (status, report) = get(&app, "/v2/models/m/drift").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!((report["samples"].as_u64(), report["detected"].as_bool()), (Some(300), Some(false)), "{report}");
    assert!(report["features"][1]["ks_pvalue"].as_f64().unwrap() > 0.05, "{report}");
    assert!(scrape(&app).await.contains(r#"ferroserve_drift_detected{model="m",version="v1"} 0"#));

    // Memory use jumps by 0.4: a shifted stream fills the window.
    let shifted: Vec<[f32; 2]> = normal.iter().map(|[c, m]| [*c, m + 0.4]).collect();
    for chunk in shifted.chunks(100).cycle().take(10) {
        assert_eq!(post(&app, "/v2/models/m/infer", rows_request(chunk, "")).await.0, StatusCode::OK);
    }
    let (_, report) = get(&app, "/v2/models/m/versions/v1/drift").await;
    assert_eq!(report["detected"], json!(true), "{report}");
    assert_eq!(report["features"][0]["drifted"], json!(false), "cpu did not move: {report}");
    assert_eq!(report["features"][1]["name"], json!("mem"));
    assert_eq!(report["features"][1]["drifted"], json!(true));
    assert!(report["features"][1]["psi"].as_f64().unwrap() > 0.2, "{report}");
    let text = scrape(&app).await;
    assert_eq!(value(&text, r#"ferroserve_drift_detected{model="m",version="v1"}"#), Some(1.0));
    assert!(value(&text, r#"ferroserve_drift_ks_pvalue{feature="mem",model="m",version="v1"}"#).unwrap() < 0.05);

    // A model without a reference says how to get one.
    let fx = Fixture::new();
    let (app, _) = app_over(&fx.repository()).await;
    let (status, body) = get(&app, "/v2/models/bare/drift").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("reference_distribution"), "{body}");
}

#[tokio::test]
async fn feedback_moves_the_accuracy_gauge() {
    let fx = Fixture::new();
    let (app, _) = app_over(&fx.repository()).await;
    // Four requests with ids; the model predicts 1 (normal) for the origin and -1 far away.
    let mut predicted = Vec::new();
    for (i, rows) in [[[0.0f32, 0.0]], [[9.0, 9.0]], [[0.0, 0.0]], [[9.0, 9.0]]].iter().enumerate() {
        let extra = format!(r#""id":"req-{i}","#);
        let (status, body) = post(&app, "/v2/models/anomaly-detector/infer", rows_request(rows, &extra)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        predicted.push(body["outputs"][0]["data"][0].as_i64().unwrap());
    }
    // The truth: the first three as predicted, the last one wrong.
    let truth: Vec<i64> = predicted.iter().enumerate().map(|(i, &p)| if i == 3 { -p } else { p }).collect();
    let items: Vec<Value> =
        truth.iter().enumerate().map(|(i, t)| json!({"id": format!("req-{i}"), "labels": [t]})).collect();
    let (status, body) = post(&app, "/v2/models/anomaly-detector/feedback", Value::Array(items).to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scored"], json!(4));
    assert_eq!(body["versions"]["v2"]["accuracy"], json!(0.75));
    let text = scrape(&app).await;
    assert_eq!(value(&text, r#"model_prediction_accuracy{model="anomaly-detector",version="v2"}"#), Some(0.75));
    assert_eq!(value(&text, r#"model_feedback_total{model="anomaly-detector",version="v2"}"#), Some(4.0));
    assert!(text.contains("model_prediction_precision{"), "an anomaly detector also gets precision");

    // Bad feedback changes nothing and says why.
    let (status, body) = post(&app, "/v2/models/anomaly-detector/feedback", r#"{"id": "req-0"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = post(&app, "/v2/models/anomaly-detector/feedback", r#"{"id": "never", "labels": [1]}"#).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["error"].as_str().unwrap().contains("never"), "{body}");
    let (status, _) = post(&app, "/v2/models/nope/feedback", r#"{"id": "x", "labels": [1]}"#).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A version no longer loaded keeps no quality figures (a retrained model's accuracy alert resolves); what it
    // was fed stays counted.
    let (app, store) = app_over(&fx.repository()).await;
    let (status, body) =
        post(&app, "/v2/models/anomaly-detector/infer", rows_request(&[[0.0, 0.0]], r#""id":"x","#)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = post(&app, "/v2/models/anomaly-detector/feedback", r#"{"id": "x", "labels": [1]}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(scrape(&app).await.contains(r#"model_prediction_accuracy{model="anomaly-detector",version="v2"}"#));
    store.unload("anomaly-detector").await.unwrap();
    let text = scrape(&app).await;
    assert!(!text.contains("model_prediction_accuracy{"), "{text}");
    assert!(!text.contains("model_prediction_precision{") && !text.contains("model_prediction_recall{"), "{text}");
    assert_eq!(value(&text, r#"model_feedback_total{model="anomaly-detector",version="v2"}"#), Some(1.0));
}
