//! Every error path: status, and a JSON `{"error"}` body that explains a client's mistake and hides a
//! server's.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode};
use ferroserve::{AppState, Limits, LoadedVersion, ModelStore};
use ferroserve_formats::{DataType, Model, Signature, Tensor, TensorSpec};
use http_body_util::channel::Channel;
use tower::ServiceExt as _;

use crate::support::{Fixture, call, get, loaded, message, post, rows_request, unloaded};

const INFER: &str = "/v2/models/anomaly-detector/infer";

async fn bad_request(body: &str) -> String {
    let app = loaded(&Fixture::new().single(), Limits::default()).await;
    let (status, json) = post(&app, INFER, body.to_owned()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    message(&json).to_owned()
}

fn input(shape: &str, datatype: &str, data: &str) -> String {
    format!(r#"{{"inputs":[{{"name":"input-0","shape":{shape},"datatype":"{datatype}","data":{data}}}]}}"#)
}

#[tokio::test]
async fn malformed_json_is_400() {
    let m = bad_request(r#"{"inputs": ["#).await;
    assert!(m.starts_with("malformed JSON: EOF while parsing"), "{m}");
    let m = bad_request("").await;
    assert!(m.starts_with("malformed JSON"), "{m}");
    let m = bad_request("[1, 2]").await;
    assert!(m.starts_with("invalid inference request: the body is a JSON array"), "{m}");
    let m = bad_request("7").await;
    assert!(m.starts_with("invalid inference request: invalid type: integer `7`"), "{m}");
    let m = bad_request(r#"{"id": "1"}"#).await;
    assert!(m.contains("missing field `inputs`"), "{m}");
}

#[tokio::test]
async fn datatypes_and_values_are_checked() {
    let m = bad_request(&input("[1,2]", "FLOAT32", "[1,2]")).await;
    assert!(m.contains("input `input-0`: unknown datatype `FLOAT32`; valid datatypes are BOOL, UINT8"), "{m}");
    let m = bad_request(&input("[1,2]", "INT32", "[1,1.5]")).await;
    assert!(m.contains("input `input-0`: 1.5 at data index 1 is not an integer, which INT32 requires"), "{m}");
    let m = bad_request(&input("[1,2]", "UINT8", "[300,1]")).await;
    assert!(m.contains("input `input-0`: 300 at data index 0 is out of range for UINT8 (0..=255)"), "{m}");
    // A datatype the model cannot take is refused by the model, still as the client's error.
    let m = bad_request(&input("[1,2]", "BYTES", r#"["a","b"]"#)).await;
    assert!(m.contains("input `input-0`: datatype BYTES is not accepted"), "{m}");
}

#[tokio::test]
async fn shapes_are_checked() {
    let m = bad_request(&input("[2,2]", "FP32", "[1,2,3]")).await;
    assert!(m.contains("input `input-0`: shape [2, 2] holds 4 elements but data has 3"), "{m}");
    let m = bad_request(&input("[-1,2]", "FP32", "[1,2]")).await;
    assert!(m.contains("input `input-0`: shape [-1, 2] has a negative dimension"), "{m}");
    let m = bad_request(&input("[1,3]", "FP32", "[1,2,3]")).await;
    assert!(m.contains("shape [1, 3] does not fit this model, which takes [N, 2]"), "{m}");
    let m = bad_request(&input("[2,2]", "FP32", "[[1,2,3],[4]]")).await;
    assert!(m.contains("nested data is ragged"), "{m}");
}

#[tokio::test]
async fn unknown_outputs_are_400() {
    let m = bad_request(&rows_request(&[[0.0, 0.0]], r#""outputs":[{"name":"predict_proba"}],"#)).await;
    assert_eq!(m, "unknown output `predict_proba`; this model produces: predict, decision_function, score_samples");
}

#[tokio::test]
async fn oversized_bodies_are_413_json() {
    let limits = Limits { max_body_bytes: 64, ..Limits::default() };
    let app = loaded(&Fixture::new().single(), limits).await;
    let body = rows_request(&[[0.0, 0.0]; 20], "");
    assert!(body.len() > 64);
    let (status, json) = post(&app, INFER, body.clone()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(message(&json), "request body exceeds the limit of 64 bytes (--max_body_bytes)");
    // Also when the client announces the length up front.
    let request = Request::post(INFER).header("content-length", body.len()).body(Body::from(body)).unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn unknown_models_versions_and_routes_are_404_json() {
    let app = loaded(&Fixture::new().single(), Limits::default()).await;
    let request = rows_request(&[[0.0, 0.0]], "");
    let (status, json) = post(&app, "/v2/models/nope/infer", request.clone()).await;
    assert_eq!((status, message(&json)), (StatusCode::NOT_FOUND, "model `nope` not found"));
    let (status, json) = post(&app, "/v2/models/anomaly-detector/versions/v3/infer", request).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(message(&json), "model `anomaly-detector` has no version `v3`; loaded versions: v1, v2");
    let (status, json) = get(&app, "/v3/models/anomaly-detector").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(message(&json).starts_with("no route for GET /v3/models/anomaly-detector"), "{json}");
    let (status, json) = get(&app, INFER).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(message(&json), "method GET is not allowed for /v2/models/anomaly-detector/infer");
    let (status, _) = call(&app, Method::DELETE, "/v2/health/live", Body::empty()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // A path that is not UTF-8 after percent-decoding.
    let (status, json) = get(&app, "/v2/models/%FF").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
}

#[tokio::test]
async fn models_that_are_not_loaded_yet_are_503() {
    let app = unloaded(&Fixture::new().single());
    let (status, json) = post(&app, INFER, rows_request(&[[0.0, 0.0]], "")).await;
    assert_eq!(
        (status, message(&json)),
        (StatusCode::SERVICE_UNAVAILABLE, "model `anomaly-detector` is not ready: loading")
    );
    let (status, _) = get(&app, "/v2/models/anomaly-detector").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

/// A model that fails the way a broken artifact would, or panics.
#[derive(Debug)]
struct Broken {
    signature: Signature,
    panics: bool,
}

impl Model for Broken {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn kind(&self) -> ferroserve_formats::ModelKind {
        ferroserve_formats::ModelKind::Other("broken")
    }

    fn infer(&self, _: &[Tensor], _: &[String]) -> Result<Vec<Tensor>, ferroserve_formats::InferError> {
        assert!(!self.panics, "secret panic detail");
        Err(ferroserve_formats::InferError::Compute("/secret/model.safetensors: bad".into()))
    }
}

#[tokio::test]
async fn model_failures_are_500_without_the_cause() {
    let signature = Signature {
        inputs: vec![TensorSpec::new("input-0", DataType::Fp32, vec![-1, 2])],
        outputs: vec![TensorSpec::new("predict", DataType::Int64, vec![-1])],
    };
    let model = |panics| -> Arc<dyn Model> { Arc::new(Broken { signature: signature.clone(), panics }) };
    let store = ModelStore::from_versions([
        ("fails".to_owned(), vec![LoadedVersion::new("1", model(false))]),
        ("panics".to_owned(), vec![LoadedVersion::new("1", model(true))]),
    ]);
    let app = ferroserve::app(AppState::new(store, Limits::default()));
    for name in ["fails", "panics"] {
        let (status, json) = post(&app, &format!("/v2/models/{name}/infer"), rows_request(&[[0.0, 0.0]], "")).await;
        assert_eq!((status, message(&json)), (StatusCode::INTERNAL_SERVER_ERROR, "internal server error"), "{name}");
    }
    // The server still answers.
    assert_eq!(get(&app, "/v2/health/ready").await.0, StatusCode::OK);
}

#[tokio::test]
async fn requests_beyond_the_concurrency_limit_are_shed() {
    let limits = Limits { max_concurrency: 1, ..Limits::default() };
    let app = loaded(&Fixture::new().single(), limits).await;
    let (mut sender, body) = Channel::<Bytes>::new(1);
    let mut first = pin!(app.clone().oneshot(Request::post(INFER).body(Body::new(body)).unwrap()));
    // Poll the first request once: it takes the only slot, then waits for its body.
    tokio::select! {
        biased;
        _ = &mut first => panic!("the first request cannot finish before its body arrives"),
        () = std::future::ready(()) => {}
    }
    let (status, json) = post(&app, INFER, rows_request(&[[0.0, 0.0]], "")).await;
    assert_eq!((status, message(&json)), (StatusCode::SERVICE_UNAVAILABLE, "server overloaded; retry later"));
    // Health stays outside the limit.
    assert_eq!(get(&app, "/v2/health/live").await.0, StatusCode::OK);
    // The first request completes once its body arrives.
    sender.send_data(Bytes::from(rows_request(&[[0.0, 0.0]], ""))).await.unwrap();
    drop(sender);
    assert_eq!(first.await.unwrap().status(), StatusCode::OK);
    assert_eq!(post(&app, INFER, rows_request(&[[0.0, 0.0]], "")).await.0, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn slow_requests_time_out_with_503() {
    let limits = Limits { request_timeout: Duration::from_secs(5), ..Limits::default() };
    let app = loaded(&Fixture::new().single(), limits).await;
    let (_sender, body) = Channel::<Bytes>::new(1);
    // The body never arrives; the paused clock jumps to the deadline once nothing else can run.
    let (status, json) = call(&app, Method::POST, INFER, Body::new(body)).await;
    assert_eq!((status, message(&json)), (StatusCode::SERVICE_UNAVAILABLE, "request timed out after 5 s"));
}
