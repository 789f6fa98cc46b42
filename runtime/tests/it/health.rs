//! Liveness and readiness.

use axum::http::StatusCode;
use ferroserve::{Limits, ModelSource, ModelStore};
use serde_json::json;

use crate::support::{Fixture, MODEL, get, loaded, message, save, unloaded, v1};

#[tokio::test]
async fn live_at_once_ready_only_when_loaded() {
    let fx = Fixture::new();
    let app = unloaded(&fx.single());
    assert_eq!(get(&app, "/v2/health/live").await, (StatusCode::OK, json!({"live": true})));
    let (status, body) = get(&app, "/v2/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(message(&body), "model `anomaly-detector` is not ready: loading");
    let (status, _) = get(&app, "/v2/models/anomaly-detector/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    let app = loaded(&fx.single(), Limits::default()).await;
    assert_eq!(get(&app, "/v2/health/ready").await, (StatusCode::OK, json!({"ready": true})));
    assert_eq!(
        get(&app, "/v2/models/anomaly-detector/ready").await,
        (StatusCode::OK, json!({"name": MODEL, "ready": true}))
    );
}

#[tokio::test]
async fn version_readiness() {
    let fx = Fixture::new();
    let app = loaded(&fx.single(), Limits::default()).await;
    for v in ["v1", "1", "v2", "2"] {
        let (status, body) = get(&app, &format!("/v2/models/anomaly-detector/versions/{v}/ready")).await;
        assert_eq!((status, &body), (StatusCode::OK, &json!({"name": MODEL, "ready": true})), "{v}");
    }
    // v3's artifact is corrupt: not served, and v1/v2 are unaffected.
    let (status, body) = get(&app, "/v2/models/anomaly-detector/versions/v3/ready").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(message(&body), "model `anomaly-detector` has no version `v3`; loaded versions: v1, v2");
    let (status, body) = get(&app, "/v2/models/nope/ready").await;
    assert_eq!((status, message(&body)), (StatusCode::NOT_FOUND, "model `nope` not found"));
}

#[tokio::test]
async fn a_model_without_a_loadable_version_keeps_the_server_unready() {
    let fx = Fixture::new();
    std::fs::create_dir(fx.root.path().join("empty")).unwrap();
    let app = loaded(&fx.repository(), Limits::default()).await;
    let (status, body) = get(&app, "/v2/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let message = message(&body);
    assert!(message.starts_with("model `empty` is not ready: no version could be loaded: "), "{message}");
    assert!(message.ends_with("no model found (expected model.json + model.safetensors, config.json + model.safetensors (PyTorch), model.pt or model.pth (PyTorch state_dict), model.joblib, model.pkl or model.pickle, or version folders v1/, v2/ …)"), "{message}");
    // The other models serve regardless.
    assert_eq!(get(&app, "/v2/models/bare/ready").await.0, StatusCode::OK);
    assert_eq!(get(&app, "/v2/models/anomaly-detector/ready").await.0, StatusCode::OK);
}

#[tokio::test]
async fn readiness_can_be_awaited() {
    let dir = tempfile::tempdir().unwrap();
    save(dir.path(), &v1(), None);
    let store = ModelStore::open(&ModelSource::Single { name: "m".into(), dir: dir.path().into() }).unwrap();
    let mut ready = store.subscribe_ready();
    assert!(!*ready.borrow_and_update());
    let loader = tokio::spawn({
        let store = store.clone();
        async move { store.load_all().await }
    });
    store.wait_ready().await;
    assert!(*ready.borrow_and_update());
    loader.await.unwrap();
}
