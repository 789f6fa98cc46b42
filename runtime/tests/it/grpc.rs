//! The Open Inference Protocol over gRPC: a tonic client (generated from the same .proto) against a
//! server on two real 127.0.0.1 sockets, REST and gRPC, sharing one state; every answer is compared
//! with REST's.

use std::net::SocketAddr;

use ferroserve::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use ferroserve::grpc::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use ferroserve::grpc::proto::{
    InferTensorContents, ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelReadyRequest,
    ModelStatisticsRequest, RepositoryIndexRequest, RepositoryModelLoadRequest, RepositoryModelUnloadRequest,
    ServerLiveRequest, ServerMetadataRequest, ServerReadyRequest,
};
use ferroserve::{AppState, ConnectionLimits, Limits, Listeners, ModelStore, StoreConfig, VersionPolicy};
use prost::bytes::Bytes;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::{Fixture, MODEL, get, post, scores, v1, v2};

type Client = GrpcInferenceServiceClient<Channel>;

/// A server on two loopback sockets, its REST router (over the same state) and a gRPC client.
struct Running {
    http: SocketAddr,
    grpc: SocketAddr,
    rest: axum::Router,
    client: Client,
    channel: Channel,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), ferroserve::Error>>,
}

impl Running {
    async fn start(fx: &Fixture, limits: Limits) -> Running {
        Running::start_with(fx, limits, ConnectionLimits::default()).await
    }

    async fn start_with(fx: &Fixture, limits: Limits, connections: ConnectionLimits) -> Running {
        let config = StoreConfig { policy: VersionPolicy::All, ..StoreConfig::default() };
        let state = AppState::new(ModelStore::open_with(&fx.repository(), config).unwrap(), limits)
            .with_connections(connections);
        let rest = ferroserve::app(state.clone());
        let store = state.store().clone();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (http_addr, grpc_addr) = (http.local_addr().unwrap(), grpc.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(ferroserve::serve_listeners(state, Listeners { http, grpc: Some(grpc) }, async {
            let _ = stopped.await;
        }));
        tokio::time::timeout(std::time::Duration::from_secs(30), store.wait_ready()).await.unwrap();
        let channel = Channel::from_shared(format!("http://{grpc_addr}")).unwrap().connect().await.unwrap();
        let client = GrpcInferenceServiceClient::new(channel.clone());
        Running { http: http_addr, grpc: grpc_addr, rest, client, channel, stop, task }
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

fn input(name: &str, datatype: &str, shape: Vec<i64>, contents: Option<InferTensorContents>) -> InferInputTensor {
    InferInputTensor { name: name.into(), datatype: datatype.into(), shape, parameters: Default::default(), contents }
}

fn outputs(names: &[&str]) -> Vec<InferRequestedOutputTensor> {
    names.iter().map(|n| InferRequestedOutputTensor { name: (*n).into(), parameters: Default::default() }).collect()
}

/// `rows` as FP32 typed contents.
fn typed_request(model: &str, rows: &[[f32; 2]]) -> ModelInferRequest {
    let contents = InferTensorContents { fp32_contents: rows.concat(), ..Default::default() };
    ModelInferRequest {
        model_name: model.into(),
        inputs: vec![input("input-0", "FP32", vec![rows.len() as i64, 2], Some(contents))],
        outputs: outputs(&["predict", "score_samples"]),
        ..Default::default()
    }
}

/// The same rows as raw little-endian bytes of `datatype`.
fn raw_request(model: &str, rows: &[[f32; 2]], datatype: &str) -> ModelInferRequest {
    let values = rows.concat();
    let bytes: Vec<u8> = match datatype {
        "FP32" => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        "FP64" => values.iter().flat_map(|v| f64::from(*v).to_le_bytes()).collect(),
        "INT64" => values.iter().flat_map(|v| (*v as i64).to_le_bytes()).collect(),
        "BOOL" => values.iter().map(|v| u8::from(*v != 0.0)).collect(),
        other => panic!("{other}"),
    };
    ModelInferRequest {
        model_name: model.into(),
        inputs: vec![input("input-0", datatype, vec![rows.len() as i64, 2], None)],
        outputs: outputs(&["predict", "score_samples"]),
        raw_input_contents: vec![Bytes::from(bytes)],
        ..Default::default()
    }
}

/// The outputs of a gRPC answer as REST writes them: `[{name, datatype, shape, data}]`.
fn as_rest(r: &ModelInferResponse) -> Value {
    let outputs: Vec<Value> = r
        .outputs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let data: Vec<Value> = match (&o.contents, r.raw_output_contents.get(i)) {
                (Some(c), _) => match o.datatype.as_str() {
                    "INT64" => c.int64_contents.iter().map(|v| json!(v)).collect(),
                    "FP32" => c.fp32_contents.iter().map(|v| json!(v)).collect(),
                    "FP64" => c.fp64_contents.iter().map(|v| json!(v)).collect(),
                    "BOOL" => c.bool_contents.iter().map(|v| json!(v)).collect(),
                    "BYTES" => c.bytes_contents.iter().map(|v| json!(String::from_utf8_lossy(v))).collect(),
                    other => panic!("{other}"),
                },
                (None, Some(raw)) => match o.datatype.as_str() {
                    "INT64" => raw.chunks_exact(8).map(|c| json!(i64::from_le_bytes(c.try_into().unwrap()))).collect(),
                    "FP32" => raw.chunks_exact(4).map(|c| json!(f32::from_le_bytes(c.try_into().unwrap()))).collect(),
                    "FP64" => raw.chunks_exact(8).map(|c| json!(f64::from_le_bytes(c.try_into().unwrap()))).collect(),
                    other => panic!("{other}"),
                },
                (None, None) => panic!("output {} has no data", o.name),
            };
            json!({"name": o.name, "datatype": o.datatype, "shape": o.shape, "data": data})
        })
        .collect();
    Value::Array(outputs)
}

fn rest_body(rows: &[[f32; 2]], datatype: &str, id: Option<&str>) -> String {
    let data: Vec<Value> = rows
        .iter()
        .flatten()
        .map(|v| match datatype {
            "INT64" => json!(*v as i64),
            "BOOL" => json!(*v != 0.0),
            _ => json!(v),
        })
        .collect();
    let mut body = json!({
        "inputs": [{"name": "input-0", "shape": [rows.len(), 2], "datatype": datatype, "data": data}],
        "outputs": [{"name": "predict"}, {"name": "score_samples"}],
    });
    if let Some(id) = id {
        body["id"] = json!(id);
    }
    body.to_string()
}

const ROWS: [[f32; 2]; 3] = [[0.0, 0.0], [1.0, 3.0], [4.0, 0.0]];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metadata_and_readiness() {
    let fx = Fixture::new();
    let s = Running::start(&fx, Limits::default()).await;
    let mut c = s.client.clone();
    assert!(c.server_live(ServerLiveRequest {}).await.unwrap().into_inner().live);
    assert!(c.server_ready(ServerReadyRequest {}).await.unwrap().into_inner().ready);
    let meta = c.server_metadata(ServerMetadataRequest {}).await.unwrap().into_inner();
    assert_eq!(meta.name, "ferroserve");
    assert_eq!(meta.extensions, ["model_repository", "statistics"]);

    // Model metadata equals REST's, for the default and a pinned version.
    for (version, path) in [("", format!("/v2/models/{MODEL}")), ("v1", format!("/v2/models/{MODEL}/versions/v1"))] {
        let m = c
            .model_metadata(ModelMetadataRequest { name: MODEL.into(), version: version.into() })
            .await
            .unwrap()
            .into_inner();
        let (status, rest) = get(&s.rest, &path).await;
        assert_eq!(status, 200);
        assert_eq!(json!(m.versions), rest["versions"]);
        assert_eq!(m.platform, rest["platform"]);
        let tensors = |t: &[ferroserve::grpc::proto::model_metadata_response::TensorMetadata]| {
            t.iter().map(|t| json!({"name": t.name, "datatype": t.datatype, "shape": t.shape})).collect::<Vec<_>>()
        };
        assert_eq!(json!(tensors(&m.inputs)), rest["inputs"]);
        assert_eq!(json!(tensors(&m.outputs)), rest["outputs"]);
    }

    let ready = |name: &str, version: &str| ModelReadyRequest { name: name.into(), version: version.into() };
    assert!(c.model_ready(ready(MODEL, "")).await.unwrap().into_inner().ready);
    assert!(c.model_ready(ready(MODEL, "1")).await.unwrap().into_inner().ready);
    assert_eq!(c.model_ready(ready("nope", "")).await.unwrap_err().code(), Code::NotFound);
    let e = c.model_ready(ready(MODEL, "v9")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("has no version `v9`"), "{}", e.message());
    let e = c.model_metadata(ModelMetadataRequest { name: "nope".into(), version: String::new() }).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::NotFound, "model `nope` not found"));

    // grpc.health.v1 for Kubernetes probes.
    let mut health = HealthClient::new(s.channel.clone());
    for service in ["", "inference.GRPCInferenceService", "ready", "live"] {
        let r = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }
    let e = health.check(HealthCheckRequest { service: "other".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let mut watch = health.watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(watch.message().await.unwrap().unwrap().status(), ServingStatus::Serving);
    // The drain does not wait for the open Watch (its deadline is 25 s): the stream says NOT_SERVING and ends.
    tokio::time::timeout(std::time::Duration::from_secs(5), s.stop()).await.expect("drained with a Watch open");
    assert_eq!(watch.message().await.unwrap().unwrap().status(), ServingStatus::NotServing);
    assert!(!matches!(watch.message().await, Ok(Some(_))), "the stream ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_answers_as_rest_does_for_every_datatype_typed_and_raw() {
    let fx = Fixture::new();
    let s = Running::start(&fx, Limits::default()).await;
    let mut c = s.client.clone();
    let uri = format!("/v2/models/{MODEL}/infer");

    // Typed FP32: the model's own scores; the answer is typed too.
    let r = c.model_infer(typed_request(MODEL, &ROWS)).await.unwrap();
    assert_eq!(r.metadata().get("x-model-version").unwrap(), "v2");
    let r = r.into_inner();
    assert_eq!((r.model_name.as_str(), r.model_version.as_str()), (MODEL, "v2"));
    assert!(r.raw_output_contents.is_empty(), "a typed request is answered typed");
    assert_eq!(r.outputs[1].contents.as_ref().unwrap().fp64_contents, scores(&v2(), &ROWS));
    assert_eq!(r.outputs[0].shape, [3]);
    let (status, rest) = post(&s.rest, &uri, rest_body(&ROWS, "FP32", None)).await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(as_rest(&r), rest["outputs"]);

    // Raw contents of every numeric type the model takes, as Triton's client sends them: answered raw,
    // identical to REST's answer to the same values.
    let rows: [[f32; 2]; 3] = [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
    for datatype in ["FP32", "FP64", "INT64", "BOOL"] {
        let r = c.model_infer(raw_request(MODEL, &rows, datatype)).await.unwrap().into_inner();
        assert_eq!(r.raw_output_contents.len(), 2, "{datatype}: a raw request is answered raw");
        assert!(r.outputs.iter().all(|o| o.contents.is_none()));
        let (status, rest) = post(&s.rest, &uri, rest_body(&rows, datatype, None)).await;
        assert_eq!(status, 200, "{datatype}: {rest}");
        assert_eq!(as_rest(&r), rest["outputs"], "{datatype}");
    }

    // The id is echoed; a pinned version answers, by field or by metadata; the default output alone
    // when none is asked for.
    let mut request = typed_request(MODEL, &ROWS);
    request.id = "req-7".into();
    request.model_version = "1".into();
    request.outputs.clear();
    let r = c.model_infer(request).await.unwrap().into_inner();
    assert_eq!((r.id.as_str(), r.model_version.as_str(), r.outputs.len()), ("req-7", "v1", 1));
    let mut pinned = tonic::Request::new(typed_request(MODEL, &ROWS));
    pinned.metadata_mut().insert("x-model-version", "v1".parse().unwrap());
    let r = c.model_infer(pinned).await.unwrap().into_inner();
    assert_eq!(r.model_version, "v1");
    assert_eq!(r.outputs[1].contents.as_ref().unwrap().fp64_contents, scores(&v1(), &ROWS));

    // BYTES: no model here takes strings; refused as REST refuses them.
    let strings = InferTensorContents { bytes_contents: vec![b"a".to_vec(), b"b".to_vec()], ..Default::default() };
    let request = ModelInferRequest {
        model_name: MODEL.into(),
        inputs: vec![input("input-0", "BYTES", vec![1, 2], Some(strings))],
        ..Default::default()
    };
    let e = c.model_infer(request).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let (status, rest) = post(
        &s.rest,
        &uri,
        json!({"inputs": [{"name": "input-0", "shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]}]}).to_string(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(e.message(), rest["error"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_their_codes_and_say_why() {
    let fx = Fixture::new();
    let s = Running::start(&fx, Limits::default()).await;
    let mut c = s.client.clone();
    let code = |r: Result<tonic::Response<ModelInferResponse>, tonic::Status>| {
        let e = r.unwrap_err();
        (e.code(), e.message().to_owned())
    };
    let (status, message) = code(c.model_infer(typed_request("nope", &ROWS)).await);
    assert_eq!((status, message.as_str()), (Code::NotFound, "model `nope` not found"));
    let mut request = typed_request(MODEL, &ROWS);
    request.model_version = "v9".into();
    assert_eq!(code(c.model_infer(request).await).0, Code::NotFound);

    // Three features for a two-feature model: the model's own message, as REST's.
    let request = ModelInferRequest {
        model_name: MODEL.into(),
        inputs: vec![input(
            "input-0",
            "FP32",
            vec![1, 3],
            Some(InferTensorContents { fp32_contents: vec![1.0, 2.0, 3.0], ..Default::default() }),
        )],
        ..Default::default()
    };
    let (status, message) = code(c.model_infer(request).await);
    assert_eq!(status, Code::InvalidArgument);
    let (rest_status, rest) = post(
        &s.rest,
        &format!("/v2/models/{MODEL}/infer"),
        json!({"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}).to_string(),
    )
    .await;
    assert_eq!(rest_status, 400);
    assert_eq!(message, rest["error"]);

    // Data that does not fill its shape, raw bytes of the wrong size, an unknown datatype, an
    // unknown output: each named.
    let mut request = typed_request(MODEL, &ROWS);
    request.inputs[0].shape = vec![4, 2];
    let (status, message) = code(c.model_infer(request).await);
    assert_eq!(status, Code::InvalidArgument);
    assert!(message.contains("input-0"), "{message}");
    let mut request = raw_request(MODEL, &ROWS, "FP32");
    request.raw_input_contents[0] = Bytes::from_static(&[0; 5]);
    let (status, message) = code(c.model_infer(request).await);
    assert_eq!(status, Code::InvalidArgument);
    assert!(message.contains("input-0") && message.contains('5'), "{message}");
    let mut request = typed_request(MODEL, &ROWS);
    request.inputs[0].datatype = "FLOAT".into();
    let (status, message) = code(c.model_infer(request).await);
    assert_eq!(status, Code::InvalidArgument);
    assert!(message.starts_with("input `input-0`: unknown datatype `FLOAT`"), "{message}");
    let mut request = typed_request(MODEL, &ROWS);
    request.outputs = outputs(&["nope"]);
    let (status, message) = code(c.model_infer(request).await);
    assert_eq!(status, Code::InvalidArgument);
    assert!(message.contains("nope"), "{message}");
    let mut bad_header = tonic::Request::new(typed_request(MODEL, &ROWS));
    bad_header.metadata_mut().insert("x-model-version", "v1".parse().unwrap());
    bad_header.get_mut().model_version = "v2".into();
    assert_eq!(code(c.model_infer(bad_header).await).0, Code::InvalidArgument);

    // The server lives on after every one of them.
    assert!(c.model_infer(typed_request(MODEL, &ROWS)).await.is_ok());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_statistics_metrics_drift_and_feedback_are_shared_with_rest() {
    let fx = Fixture::new();
    let s = Running::start(&fx, Limits::default()).await;
    let mut c = s.client.clone();

    // Index as REST lists it; the broken v3 is UNAVAILABLE with its reason.
    let index = c.repository_index(RepositoryIndexRequest::default()).await.unwrap().into_inner().models;
    let (_, rest) = post(&s.rest, "/v2/repository/index", "").await;
    let listed: Vec<Value> = index
        .iter()
        .map(|m| {
            let mut e = json!({"name": m.name, "state": m.state, "reason": m.reason});
            if !m.version.is_empty() {
                e["version"] = json!(m.version);
            }
            e
        })
        .collect();
    assert_eq!(Value::Array(listed), rest);
    assert!(index.iter().any(|m| m.version == "v3" && m.state == "UNAVAILABLE"), "{index:?}");
    let ready = c.repository_index(RepositoryIndexRequest { ready: true, ..Default::default() }).await.unwrap();
    assert!(ready.into_inner().models.iter().all(|m| m.state == "READY"));

    // Unload, then infer: NOT_FOUND? No: the model is known but unloaded, so UNAVAILABLE; load brings it back.
    let unload = RepositoryModelUnloadRequest { model_name: "bare".into(), ..Default::default() };
    c.repository_model_unload(unload).await.unwrap();
    let e = c.model_infer(typed_request("bare", &ROWS)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{}", e.message());
    assert!(
        !c.model_ready(ModelReadyRequest { name: "bare".into(), version: String::new() })
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    c.repository_model_load(RepositoryModelLoadRequest { model_name: "bare".into(), ..Default::default() })
        .await
        .unwrap();
    assert!(c.model_infer(typed_request("bare", &ROWS)).await.is_ok());
    let e = c
        .repository_model_load(RepositoryModelLoadRequest { model_name: "nope".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{}", e.message());
    let e = c
        .repository_model_unload(RepositoryModelUnloadRequest { model_name: "nope".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Statistics: two gRPC and one REST request of 3 rows to v2, one failure; gRPC and REST report the same.
    for _ in 0..2 {
        c.model_infer(typed_request(MODEL, &ROWS)).await.unwrap();
    }
    let (status, _) = post(&s.rest, &format!("/v2/models/{MODEL}/infer"), rest_body(&ROWS, "FP32", None)).await;
    assert_eq!(status, 200);
    let mut bad = typed_request(MODEL, &ROWS);
    bad.outputs = outputs(&["nope"]);
    c.model_infer(bad).await.unwrap_err();
    let stats = c
        .model_statistics(ModelStatisticsRequest { name: MODEL.into(), version: "v2".into() })
        .await
        .unwrap()
        .into_inner();
    let (status, rest) = get(&s.rest, &format!("/v2/models/{MODEL}/versions/v2/stats")).await;
    assert_eq!(status, 200, "{rest}");
    let [m] = &stats.model_stats[..] else { panic!("{stats:?}") };
    let r = &rest["model_stats"][0];
    assert_eq!((m.name.as_str(), m.version.as_str()), (MODEL, "v2"));
    let i = m.inference_stats.as_ref().unwrap();
    assert_eq!(i.success.unwrap().count, 3);
    assert_eq!(i.fail.unwrap().count, 1);
    assert_eq!(m.inference_count, 9, "3 requests of 3 rows");
    assert_eq!(m.execution_count, 3);
    assert!(i.compute_infer.unwrap().count >= 3 && i.success.unwrap().ns > 0);
    assert!(m.last_inference > 1_700_000_000_000, "milliseconds since the epoch: {}", m.last_inference);
    assert_eq!(r["inference_count"], 9);
    assert_eq!(r["execution_count"], 3);
    assert_eq!(r["last_inference"], m.last_inference);
    assert_eq!(r["inference_stats"]["success"]["count"], 3);
    assert_eq!(r["inference_stats"]["fail"]["count"], 1);
    for phase in ["queue", "compute_input", "compute_infer", "compute_output"] {
        assert!(r["inference_stats"][phase]["ns"].is_u64(), "{phase}: {r}");
    }
    assert_eq!(r["batch_stats"], json!([]));
    // Every version of the model, every model, and the errors.
    let all = c.model_statistics(ModelStatisticsRequest { name: MODEL.into(), version: String::new() }).await.unwrap();
    assert_eq!(all.into_inner().model_stats.iter().map(|m| m.version.as_str()).collect::<Vec<_>>(), ["v1", "v2"]);
    let (_, rest_all) = get(&s.rest, &format!("/v2/models/{MODEL}/stats")).await;
    assert_eq!(rest_all["model_stats"].as_array().unwrap().len(), 2);
    let every = c.model_statistics(ModelStatisticsRequest::default()).await.unwrap().into_inner();
    assert_eq!(every.model_stats.len(), 3, "anomaly-detector v1, v2 and bare");
    let e = c.model_statistics(ModelStatisticsRequest { name: "nope".into(), version: String::new() }).await;
    assert_eq!(e.unwrap_err().code(), Code::NotFound);
    let e = c.model_statistics(ModelStatisticsRequest { name: MODEL.into(), version: "v9".into() }).await;
    assert_eq!(e.unwrap_err().code(), Code::NotFound);
    assert_eq!(get(&s.rest, "/v2/models/nope/stats").await.0, 404);

    // Metrics: gRPC inference is in the same families as REST's, and in its own series by code.
    let text = metrics(&s.rest).await;
    let v2_ok = format!(r#"kserve_inference_requests_total{{model="{MODEL}",status="200",version="v2"}} 3"#);
    assert!(text.contains(&v2_ok), "{text}");
    assert!(text.contains(r#"ferroserve_grpc_requests_total{code="OK",method="ModelInfer"} "#), "{text}");
    assert!(text.contains(r#"ferroserve_grpc_requests_total{code="NOT_FOUND",method="RepositoryModelLoad"} 1"#));

    // Drift and feedback: a gRPC request with an id is kept for feedback given over REST.
    let (_, before) = get(&s.rest, &format!("/v2/models/{MODEL}/drift")).await;
    let mut request = typed_request(MODEL, &ROWS);
    request.id = "grpc-1".into();
    c.model_infer(request).await.unwrap();
    let (_, after) = get(&s.rest, &format!("/v2/models/{MODEL}/drift")).await;
    assert_eq!(after["samples"].as_u64().unwrap(), before["samples"].as_u64().unwrap() + 3, "{after}");
    let (status, body) = post(
        &s.rest,
        &format!("/v2/models/{MODEL}/feedback"),
        json!({"id": "grpc-1", "labels": [1, 1, -1]}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    s.stop().await;
}

async fn metrics(rest: &axum::Router) -> String {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let request = axum::http::Request::get("/metrics").body(axum::body::Body::empty()).unwrap();
    let body = rest.clone().oneshot(request).await.unwrap().into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_apply_to_grpc_and_spare_health() {
    let fx = Fixture::new();
    // No permit at all: every model call is shed; health and readiness still answer.
    let s = Running::start(&fx, Limits { max_concurrency: 0, max_body_bytes: 4096, ..Limits::default() }).await;
    let mut c = s.client.clone();
    let e = c.model_infer(typed_request(MODEL, &ROWS)).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::Unavailable, "server overloaded; retry later"));
    let e = c.model_metadata(ModelMetadataRequest { name: MODEL.into(), version: String::new() }).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(c.server_ready(ServerReadyRequest {}).await.unwrap().into_inner().ready);
    let mut health = HealthClient::new(s.channel.clone());
    let r = health.check(HealthCheckRequest::default()).await.unwrap().into_inner();
    assert_eq!(r.status(), ServingStatus::Serving);
    assert!(metrics(&s.rest).await.contains(r#"ferroserve_requests_rejected_total{reason="overloaded"} 2"#));

    // A message over --max_body_bytes is refused before it is decoded (tonic's code for it).
    let big = raw_request(MODEL, &[[1.0, 2.0]; 1000], "FP32");
    let e = c.model_infer(big).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{}", e.message());
    assert!(e.message().contains("the limit is: 4096 bytes"), "{}", e.message());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ports_serve_one_state_and_stop_together() {
    let fx = Fixture::new();
    let s = Running::start(&fx, Limits::default()).await;
    let (http, grpc) = (s.http, s.grpc);
    assert!(tokio::net::TcpStream::connect(http).await.is_ok());
    s.stop().await;
    assert!(tokio::net::TcpStream::connect(http).await.is_err(), "the REST listener is closed");
    assert!(tokio::net::TcpStream::connect(grpc).await.is_err(), "the gRPC listener is closed");
}

/// A raw HTTP/2 connection to the gRPC port (the `h2` crate, no gRPC library): what the wire carries.
async fn h2_connect(addr: SocketAddr, window: u32) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::Builder::new().initial_window_size(window).handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// `message` as one length-prefixed gRPC message.
fn grpc_frame(message: &impl prost::Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(&body);
    Bytes::from(framed)
}

fn model_infer_call() -> http::Request<()> {
    http::Request::post("/inference.GRPCInferenceService/ModelInfer")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
}

/// Sends one ModelInfer call on `send`; returns the answer's headers, its whole body (the client's window given
/// back as it reads) and its trailers.
async fn h2_call(
    send: &mut h2::client::SendRequest<Bytes>,
    request: &ModelInferRequest,
) -> (http::response::Parts, bool, Vec<u8>, Option<http::HeaderMap>) {
    let (answer, mut body) = send.clone().ready().await.unwrap().send_request(model_infer_call(), false).unwrap();
    body.send_data(grpc_frame(request), true).unwrap();
    let (parts, mut stream) = answer.await.unwrap().into_parts();
    let ended_with_headers = stream.is_end_stream();
    let mut data = Vec::new();
    while let Some(chunk) = stream.data().await {
        let chunk = chunk.unwrap();
        stream.flow_control().release_capacity(chunk.len()).unwrap();
        data.extend_from_slice(&chunk);
    }
    let trailers = stream.trailers().await.unwrap();
    (parts, ended_with_headers, data, trailers)
}

/// The connection behind `send` goes on serving: a good call gets its answer and `grpc-status: 0`.
async fn answers_a_good_call(send: &mut h2::client::SendRequest<Bytes>) {
    let (_, _, data, trailers) = h2_call(send, &typed_request(MODEL, &ROWS)).await;
    assert_eq!(trailers.expect("trailers")["grpc-status"], "0");
    assert!(!data.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_wire_errors_are_trailers_only_and_answers_end_with_trailers() {
    let fx = Fixture::new();
    let s = Running::start(&fx, Limits::default()).await;
    let mut send = h2_connect(s.grpc, 65_535).await;
    // An unknown model: one HEADERS frame that ends the stream and carries the status (gRPC's trailers-only form,
    // which grpc-core clients require).
    let (parts, ended, data, _) = h2_call(&mut send, &typed_request("nope", &ROWS)).await;
    assert_eq!(parts.status, 200);
    assert!(ended, "an error answer is one HEADERS frame with END_STREAM");
    assert!(data.is_empty());
    assert_eq!(parts.headers["grpc-status"], "5", "{:?}", parts.headers);
    // A good call on the same connection: headers, one message, then trailers with grpc-status 0.
    let (parts, ended, data, trailers) = h2_call(&mut send, &typed_request(MODEL, &ROWS)).await;
    assert!(!ended);
    assert_eq!(parts.headers["content-type"], "application/grpc");
    let answer = <ModelInferResponse as prost::Message>::decode(&data[5..]).unwrap();
    assert_eq!(answer.model_name, MODEL);
    assert_eq!(trailers.expect("trailers")["grpc-status"], "0");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_answer_arrives_whole_through_a_small_flow_control_window() {
    let fx = Fixture::new();
    let s = Running::start(&fx, Limits::default()).await;
    // A 1 KiB stream window for an answer of about 400 KB: the server must wait for the window, chunk by chunk.
    let mut send = h2_connect(s.grpc, 1024).await;
    let rows: Vec<[f32; 2]> = (0..25_000).map(|i| [i as f32 % 7.0, i as f32 % 3.0]).collect();
    let (_, _, data, trailers) = h2_call(&mut send, &typed_request(MODEL, &rows)).await;
    assert_eq!(trailers.expect("trailers")["grpc-status"], "0");
    let length = u32::from_be_bytes(data[1..5].try_into().unwrap()) as usize;
    assert_eq!(data.len(), 5 + length, "the whole message arrived");
    let answer = <ModelInferResponse as prost::Message>::decode(&data[5..]).unwrap();
    assert!(answer.outputs.iter().all(|o| o.shape == vec![25_000]), "{:?}", answer.outputs);
    // The same call through tonic's client (its default window) gets the same answer.
    let through_tonic = s.client.clone().model_infer(typed_request(MODEL, &rows)).await.unwrap().into_inner();
    assert_eq!(answer, through_tonic);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_call_leaves_its_connection_serving() {
    let fx = Fixture::new();
    let s = Running::start(&fx, Limits::default()).await;
    let mut send = h2_connect(s.grpc, 65_535).await;
    // A call whose body never comes, then cancelled by the client.
    let (_, mut body) = send.clone().ready().await.unwrap().send_request(model_infer_call(), false).unwrap();
    body.send_data(Bytes::from_static(&[0, 0, 0, 1]), false).unwrap();
    body.send_reset(h2::Reason::CANCEL);
    answers_a_good_call(&mut send).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_port_answers_http1_and_disconnects_silent_clients() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let fx = Fixture::new();
    let connections =
        ConnectionLimits { header_read_timeout: std::time::Duration::from_millis(300), ..ConnectionLimits::default() };
    let s = Running::start_with(&fx, Limits::default(), connections).await;
    // HTTP/1.1 (no preface) still reaches the gRPC router, through hyper.
    let mut tcp = tokio::net::TcpStream::connect(s.grpc).await.unwrap();
    tcp.write_all(b"GET /grpc.health.v1.Health/Check HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    // A client that connects and says nothing is let go after --header_read_timeout.
    let mut silent = tokio::net::TcpStream::connect(s.grpc).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), silent.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "the silent connection was closed: {read:?}");
    s.stop().await;
}

/// What a raw call got: the HTTP status, the gRPC status and message (from the trailers, or the headers of a
/// trailers-only answer), `x-model-version`, and the answer's message.
#[derive(Debug, PartialEq)]
struct Answered {
    status: u16,
    grpc_status: String,
    grpc_message: Option<String>,
    version: Option<String>,
    message: Option<ModelInferResponse>,
}

/// Sends a ModelInfer call whose body is `chunks`, one DATA frame each, then `trailers` if given, with `headers`
/// added to the call's.
async fn h2_raw_call(
    send: &mut h2::client::SendRequest<Bytes>,
    headers: &[(&'static str, &'static str)],
    chunks: &[Bytes],
    trailers: Option<http::HeaderMap>,
) -> Answered {
    let mut call = model_infer_call();
    for (name, value) in headers {
        call.headers_mut().insert(*name, http::HeaderValue::from_static(value));
    }
    let (answer, mut body) = send.clone().ready().await.unwrap().send_request(call, false).unwrap();
    for (i, chunk) in chunks.iter().enumerate() {
        body.send_data(chunk.clone(), i + 1 == chunks.len() && trailers.is_none()).unwrap();
    }
    match trailers {
        Some(t) => body.send_trailers(t).unwrap(),
        None if chunks.is_empty() => body.send_data(Bytes::new(), true).unwrap(),
        None => {}
    }
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), answer).await.expect("answered in time");
    let (parts, mut stream) = answer.unwrap().into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = stream.data().await {
        let chunk = chunk.unwrap();
        stream.flow_control().release_capacity(chunk.len()).unwrap();
        data.extend_from_slice(&chunk);
    }
    let trailers = stream.trailers().await.unwrap().unwrap_or_else(|| parts.headers.clone());
    let text = |v: Option<&http::HeaderValue>| v.map(|v| v.to_str().unwrap().to_owned());
    Answered {
        status: parts.status.as_u16(),
        grpc_status: text(trailers.get("grpc-status")).expect("a grpc-status"),
        grpc_message: text(trailers.get("grpc-message")).map(|m| percent_decoded(&m)),
        version: text(parts.headers.get("x-model-version")),
        message: (!data.is_empty()).then(|| <ModelInferResponse as prost::Message>::decode(&data[5..]).unwrap()),
    }
}

/// A raw call's case: its name, its body as DATA frames, headers added to the call's, the grpc-status expected and
/// words of the message expected.
type Case = (&'static str, Vec<Bytes>, &'static [(&'static str, &'static str)], &'static str, &'static str);

/// `grpc-message` as written: percent-encoded (gRPC over HTTP/2, "Responses").
fn percent_decoded(text: &str) -> String {
    let (mut out, mut bytes) = (Vec::new(), text.bytes());
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex: String = bytes.by_ref().take(2).map(char::from).collect();
            out.push(u8::from_str_radix(&hex, 16).unwrap());
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_infer_answers_alike_whether_or_not_its_body_takes_the_direct_route() {
    let fx = Fixture::new();
    let s = Running::start(&fx, Limits::default()).await;
    let mut send = h2_connect(s.grpc, 65_535).await;
    let good = grpc_frame(&raw_request(MODEL, &ROWS, "FP32"));
    let prefixed = |flag: u8, len: u32, bytes: &[u8]| {
        let mut framed = vec![flag];
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(bytes);
        Bytes::from(framed)
    };
    let two = Bytes::from([&good[..], &grpc_frame(&typed_request("nope", &ROWS))[..]].concat());
    let cases: Vec<Case> = vec![
        ("one message", vec![good.clone()], &[], "0", ""),
        ("one message in three frames", vec![good.slice(..3), good.slice(3..9), good.slice(9..)], &[], "0", ""),
        ("`identity` encoding", vec![good.clone()], &[("grpc-encoding", "identity")], "0", ""),
        ("two messages (the first is answered)", vec![two], &[], "0", ""),
        ("an unknown model", vec![grpc_frame(&typed_request("nope", &ROWS))], &[], "5", "not found"),
        ("not protobuf", vec![prefixed(0, 3, &[0xff, 0xff, 0xff])], &[], "13", "decode"),
        ("a message cut short", vec![prefixed(0, 100, &[0; 10])], &[], "13", "Unexpected EOF"),
        ("no message", vec![], &[], "13", "Missing request message"),
        ("compressed, no grpc-encoding", vec![prefixed(1, 3, b"abc")], &[], "13", "compressed-flag"),
        ("an unknown flag", vec![prefixed(7, 3, b"abc")], &[], "13", "invalid compression flag"),
        ("gzip, which is not served", vec![prefixed(1, 3, b"abc")], &[("grpc-encoding", "gzip")], "12", "gzip"),
    ];
    for (case, chunks, headers, code, words) in cases {
        let direct = h2_raw_call(&mut send, headers, &chunks, None).await;
        assert_eq!(direct.status, 200, "{case}");
        assert_eq!(direct.grpc_status, code, "{case}: {direct:?}");
        let message = direct.grpc_message.as_deref().unwrap_or("");
        assert!(message.contains(words), "{case}: {message}");
        // The same body with trailers after it cannot take the direct route: tonic's own stack answers it.
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-request-note", http::HeaderValue::from_static("1"));
        let mut through_tonic = h2_raw_call(&mut send, headers, &chunks, Some(trailers)).await;
        if case == "a message cut short" {
            // tonic itself words this one by what ended the body: trailers make it "Missing request message."
            through_tonic.grpc_message.clone_from(&direct.grpc_message);
        }
        assert_eq!(direct, through_tonic, "{case}");
        if code == "0" {
            let answer = direct.message.expect("an answer");
            assert_eq!(direct.version.as_deref(), Some(answer.model_version.as_str()), "{case}");
            let expected = s.client.clone().model_infer(raw_request(MODEL, &ROWS, "FP32")).await.unwrap();
            assert_eq!(as_rest(&answer), as_rest(expected.get_ref()), "{case}");
        }
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_announced_over_the_limit_is_refused_before_its_bytes_arrive() {
    let fx = Fixture::new();
    let s = Running::start(&fx, Limits { max_body_bytes: 4096, ..Limits::default() }).await;
    let mut send = h2_connect(s.grpc, 65_535).await;
    // The prefix announces 1 MiB and the stream stays open: the answer must come from the prefix alone.
    let (answer, mut body) = send.clone().ready().await.unwrap().send_request(model_infer_call(), false).unwrap();
    body.send_data(Bytes::from_static(&[0, 0, 0x10, 0, 0, 1, 2, 3]), false).unwrap();
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), answer).await.expect("answered in time");
    let parts = answer.unwrap().into_parts().0;
    assert_eq!(parts.headers["grpc-status"], "11", "{:?}", parts.headers);
    let message = percent_decoded(parts.headers["grpc-message"].to_str().unwrap());
    assert!(message.contains("found 1048576 bytes, the limit is: 4096 bytes"), "{message}");
    drop(body);
    answers_a_good_call(&mut send).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_infer_is_answered_by_the_direct_route_without_the_router() {
    // The gRPC port's driver over a router that answers nothing (404 for every path) and `ModelInfer`'s direct
    // route: a plain call can only be answered by the direct route; one with request trailers must reach the router.
    let fx = Fixture::new();
    let config = StoreConfig { policy: VersionPolicy::All, ..StoreConfig::default() };
    let state = AppState::new(ModelStore::open_with(&fx.repository(), config).unwrap(), Limits::default());
    let store = state.store().clone();
    let loader = store.clone();
    tokio::spawn(async move { loader.load_all().await });
    tokio::time::timeout(std::time::Duration::from_secs(30), store.wait_ready()).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let direct = ferroserve::server::Http2::Inline(Some(ferroserve::grpc::service::DirectInfer::new(state)));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(ferroserve::server::serve(
        listener,
        axum::Router::new(),
        ConnectionLimits::default(),
        direct,
        async {
            let _ = stopped.await;
        },
    ));
    let mut send = h2_connect(addr, 65_535).await;
    let good = grpc_frame(&raw_request(MODEL, &ROWS, "FP32"));
    let answered = h2_raw_call(&mut send, &[], std::slice::from_ref(&good), None).await;
    assert_eq!((answered.status, answered.grpc_status.as_str()), (200, "0"), "{answered:?}");
    let answer = answered.message.expect("an answer");
    assert_eq!(answer.model_name, MODEL);
    assert_eq!(answered.version.as_deref(), Some(answer.model_version.as_str()));
    // Trailers after the message: not the direct route's, so the empty router's 404.
    let (call, mut body) = send.clone().ready().await.unwrap().send_request(model_infer_call(), false).unwrap();
    body.send_data(good, false).unwrap();
    body.send_trailers(http::HeaderMap::new()).unwrap();
    assert_eq!(call.await.unwrap().status(), 404);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
