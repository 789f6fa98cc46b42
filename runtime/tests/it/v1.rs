//! The KServe v1 protocol: the same store, versions and errors as v2, in KServe's shapes.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use ferroserve::Limits;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::support::{Fixture, MODEL, call, get, loaded, message, post, rows_request, unloaded};

const ROWS: [[f32; 2]; 3] = [[0.2, 0.3], [3.0, 2.5], [1.0, 0.0]];

fn instances(rows: &[[f32; 2]]) -> Value {
    json!(rows.iter().map(|r| r.iter().map(|v| f64::from(*v)).collect::<Vec<_>>()).collect::<Vec<_>>())
}

#[tokio::test]
async fn lists_models_and_answers_readiness() {
    let f = Fixture::new();
    let app = loaded(&f.repository(), Limits::default()).await;
    let (status, body) = get(&app, "/v1/models").await;
    assert_eq!(status, StatusCode::OK);
    let mut models: Vec<String> = serde_json::from_value(body["models"].clone()).unwrap();
    models.sort();
    assert_eq!(models, ["anomaly-detector", "bare"]);

    let (status, body) = get(&app, &format!("/v1/models/{MODEL}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"name": MODEL, "ready": true}));

    let (status, body) = get(&app, "/v1/models/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(message(&body).contains("nope"), "{body}");

    // Before loading, the model exists but is not ready: 503, as KServe answers.
    let (status, body) = get(&unloaded(&f.repository()), &format!("/v1/models/{MODEL}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    message(&body);
}

#[tokio::test]
async fn predictions_are_v2_predict_with_json_integers() {
    let f = Fixture::new();
    let app = loaded(&f.single(), Limits::default()).await;
    let (status, v2) = post(&app, &format!("/v2/models/{MODEL}/infer"), rows_request(&ROWS, "")).await;
    assert_eq!(status, StatusCode::OK, "{v2}");

    let uri = format!("/v1/models/{MODEL}:predict");
    let (status, v1) = post(&app, &uri, json!({"instances": instances(&ROWS)}).to_string()).await;
    assert_eq!(status, StatusCode::OK, "{v1}");
    assert_eq!(v1.as_object().unwrap().len(), 1, "only `predictions`, as KServe: {v1}");
    assert_eq!(v1["predictions"], v2["outputs"][0]["data"]);
    // A strict client (Go's []int) takes only integers: -1 and 1, never -1.0.
    for p in v1["predictions"].as_array().unwrap() {
        assert!(p.is_i64(), "{p} is not a JSON integer");
    }
    let labels: Vec<i64> = serde_json::from_value(v1["predictions"].clone()).unwrap();
    assert!(labels.iter().all(|l| *l == 1 || *l == -1));

    // `inputs` works the same, and wins over `instances` when both are present.
    let both = json!({"instances": [[9.0, 9.0]], "inputs": instances(&ROWS), "id": "ignored-by-kserve"});
    let (status, v1b) = post(&app, &uri, both.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{v1b}");
    assert_eq!(v1b, v1);

    // Integers and booleans are numbers to the model, as numpy reads them.
    let (_, ints) = post(&app, &uri, r#"{"instances": [[3, 2], [1, 0]]}"#).await;
    let (_, floats) = post(&app, &uri, r#"{"instances": [[3.0, 2.0], [true, false]]}"#).await;
    assert_eq!(ints, floats);
}

#[tokio::test]
async fn records_and_pandas_columns_are_rows() {
    let f = Fixture::new();
    let app = loaded(&f.single(), Limits::default()).await;
    let uri = format!("/v1/models/{MODEL}:predict");
    let (_, rows) = post(&app, &uri, json!({"instances": instances(&ROWS)}).to_string()).await;
    // This model was fitted without feature names: columns are taken in the order sent.
    let forms = [
        json!({"instances": [{"a": 0.2, "b": 0.3}, {"a": 3.0, "b": 2.5}, {"a": 1.0, "b": 0.0}]}),
        json!({"instances": [{"a": [0.2, 3.0, 1.0], "b": [0.3, 2.5, 0.0]}]}),
        json!({"instances": [{"a": {"0": 0.2, "1": 3.0, "2": 1.0}, "b": {"0": 0.3, "1": 2.5, "2": 0.0}}]}),
        json!({"inputs": {"a": {"0": 0.2, "1": 3.0, "2": 1.0}, "b": {"2": 0.0, "0": 0.3, "1": 2.5}}}),
        json!({"instances": [[{"a": 0.2, "b": 0.3}, {"a": 3.0, "b": 2.5}], {"a": 1.0, "b": 0.0}]}),
    ];
    for form in forms {
        let (status, body) = post(&app, &uri, form.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{form}: {body}");
        assert_eq!(body, rows, "{form}");
    }
}

#[tokio::test]
async fn bad_requests_are_400_with_the_reason() {
    let f = Fixture::new();
    let app = loaded(&f.single(), Limits::default()).await;
    let uri = format!("/v1/models/{MODEL}:predict");
    let cases: [(&str, &str); 12] = [
        ("{", "malformed JSON"),
        ("", "empty"),
        ("[[1, 2]]", "not a JSON object"),
        (r#"{"rows": [[1, 2]]}"#, "neither `instances` nor `inputs`"),
        (r#"{"instances": []}"#, "empty"),
        (r#"{"instances": "1,2"}"#, "not a string"),
        (r#"{"instances": [[1, 2, 3]]}"#, "[N, 2]"),
        (r#"{"instances": [[1, 2], [3]]}"#, "ragged"),
        (r#"{"instances": [[1, [2]]]}"#, "ragged"),
        (r#"{"instances": [["1", 2]]}"#, "must be numbers"),
        (r#"{"instances": [{"a": 1}, {"b": 2}]}"#, "different columns"),
        (r#"{"instances": [[1, 2], {"a": 1}]}"#, "mix"),
    ];
    for (body, expected) in cases {
        let (status, answer) = post(&app, &uri, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(message(&answer).contains(expected), "{body}: {answer}");
    }
    // Deeply nested lists are refused before they cost anything.
    let deep = format!(r#"{{"instances": {}1{}}}"#, "[".repeat(100), "]".repeat(100));
    let (status, answer) = post(&app, &uri, deep).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
}

#[tokio::test]
async fn unknown_models_verbs_and_explain() {
    let f = Fixture::new();
    let app = loaded(&f.single(), Limits::default()).await;
    let body = r#"{"instances": [[1, 2]]}"#;
    let (status, answer) = post(&app, "/v1/models/nope:predict", body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(message(&answer).contains("nope"));
    let (status, answer) = post(&app, &format!("/v1/models/{MODEL}:explain"), body).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{answer}");
    assert!(message(&answer).contains("explainer"));
    let (status, _) = post(&app, "/v1/models/nope:explain", body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, answer) = post(&app, &format!("/v1/models/{MODEL}:train"), body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(message(&answer).contains(":predict"));
    let (status, _) = post(&app, &format!("/v1/models/{MODEL}"), body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(&app, &format!("/v1/models/{MODEL}:predict")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = call(&app, Method::DELETE, "/v1/models", Body::empty()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn versions_are_pinned_by_header_and_reported() {
    let f = Fixture::new();
    let app = loaded(&f.single(), Limits::default()).await;
    let uri = format!("/v1/models/{MODEL}:predict");
    let body = json!({"instances": instances(&ROWS)}).to_string();
    let mut answers = Vec::new();
    for version in ["v1", "v2"] {
        let request = Request::post(&uri).header("x-model-version", version).body(Body::from(body.clone())).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-model-version"], version);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        // The same version through v2 gives the same labels.
        let v2_uri = format!("/v2/models/{MODEL}/versions/{version}/infer");
        let (_, v2) = post(&app, &v2_uri, rows_request(&ROWS, "")).await;
        assert_eq!(v["predictions"], v2["outputs"][0]["data"], "{version}");
        answers.push(v);
    }
    assert_ne!(answers[0], answers[1], "the two versions score these rows differently");
    let request = Request::post(&uri).header("x-model-version", "v9").body(Body::from(body)).unwrap();
    assert_eq!(app.clone().oneshot(request).await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn v1_requests_are_counted_and_feed_drift() {
    let f = Fixture::new();
    let app = loaded(&f.single(), Limits::default()).await;
    let uri = format!("/v1/models/{MODEL}:predict");
    for _ in 0..3 {
        let (status, _) = post(&app, &uri, json!({"instances": instances(&ROWS)}).to_string()).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _) = post(&app, &uri, r#"{"instances": [[1, 2, 3]]}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let request = Request::get("/metrics").body(Body::empty()).unwrap();
    let bytes = app.clone().oneshot(request).await.unwrap().into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let line = |prefix: &str| text.lines().find(|l| l.starts_with(prefix)).map(str::to_owned);
    assert_eq!(
        line(&format!(r#"kserve_inference_requests_total{{model="{MODEL}",status="200",version="v2"}}"#)).as_deref(),
        Some(&*format!(r#"kserve_inference_requests_total{{model="{MODEL}",status="200",version="v2"}} 3"#)),
        "{text}"
    );
    assert!(
        line(&format!(r#"kserve_inference_errors_total{{model="{MODEL}",status="400",version="v2"}} 1"#)).is_some()
    );
    // Checks marked as probes (`ferroserve validate`) are answered but feed neither drift nor feedback.
    for (uri, body) in [
        (uri.clone(), json!({"id": "probe-1", "instances": instances(&ROWS)}).to_string()),
        (format!("/v2/models/{MODEL}/infer"), rows_request(&ROWS, r#""id": "probe-2", "#)),
    ] {
        let request = Request::post(&uri).header("x-ferroserve-probe", "validate").body(Body::from(body)).unwrap();
        assert_eq!(app.clone().oneshot(request).await.unwrap().status(), StatusCode::OK, "{uri}");
    }
    for id in ["probe-1", "probe-2"] {
        let (status, _) =
            post(&app, &format!("/v2/models/{MODEL}/feedback"), json!({"id": id, "labels": [1, 1, 1]}).to_string())
                .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "a probe's labels are not kept");
    }
    // v2 has a reference distribution: the 9 rows sent as traffic are in its drift window, the probes' are not.
    let (status, drift) = get(&app, &format!("/v2/models/{MODEL}/drift")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(drift["samples"], 9, "{drift}");
}
