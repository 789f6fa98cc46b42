//! Server and model metadata.

use axum::http::StatusCode;
use ferroserve::Limits;
use serde_json::json;

use crate::support::{Fixture, get, loaded, message};

#[tokio::test]
async fn server_metadata() {
    let app = loaded(&Fixture::new().single(), Limits::default()).await;
    let (status, body) = get(&app, "/v2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"name": "ferroserve", "version": env!("CARGO_PKG_VERSION"), "extensions": ["binary_tensor_data", "model_repository", "statistics"]})
    );
}

#[tokio::test]
async fn model_metadata_lists_versions_and_signature() {
    let app = loaded(&Fixture::new().single(), Limits::default()).await;
    let expected = json!({
        "name": "anomaly-detector",
        "versions": ["v1", "v2"],
        "platform": "ferroserve/isolation_forest",
        "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, 2]}],
        "outputs": [
            {"name": "predict", "datatype": "INT64", "shape": [-1]},
            {"name": "decision_function", "datatype": "FP64", "shape": [-1]},
            {"name": "score_samples", "datatype": "FP64", "shape": [-1]},
        ],
    });
    for uri in [
        "/v2/models/anomaly-detector",
        "/v2/models/anomaly-detector/versions/v1",
        "/v2/models/anomaly-detector/versions/2",
    ] {
        assert_eq!(get(&app, uri).await, (StatusCode::OK, expected.clone()), "{uri}");
    }
}

#[tokio::test]
async fn unknown_models_and_versions_are_404() {
    let app = loaded(&Fixture::new().single(), Limits::default()).await;
    let (status, body) = get(&app, "/v2/models/bare").await;
    assert_eq!((status, message(&body)), (StatusCode::NOT_FOUND, "model `bare` not found"));
    let (status, body) = get(&app, "/v2/models/anomaly-detector/versions/9").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(message(&body), "model `anomaly-detector` has no version `9`; loaded versions: v1, v2");
}

#[tokio::test]
async fn a_repository_serves_every_folder() {
    let app = loaded(&Fixture::new().repository(), Limits::default()).await;
    let (status, body) = get(&app, "/v2/models/bare").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["versions"], json!(["1"]));
    let (_, body) = get(&app, "/v2/models/anomaly-detector").await;
    assert_eq!(body["versions"], json!(["v1", "v2"]));
}
