//! One gRPC `ModelInfer` call (a single row, raw tensor contents) over a real HTTP/2 connection on 127.0.0.1, one
//! call after another, on the same model: the gRPC port as it serves (`direct`: [`Http2::Inline`] with
//! [`DirectInfer`], the call answered in the connection's task straight from the message's bytes); the same driver
//! through the router and tonic (`inline`); hyper's HTTP/2 server, a task per stream (`hyper`).

use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use ferroserve::grpc::proto::ModelInferRequest;
use ferroserve::grpc::proto::model_infer_request::InferInputTensor;
use ferroserve::grpc::service::DirectInfer;
use ferroserve::server::Http2;
use ferroserve::{AppState, ConnectionLimits, Limits, LoadedVersion, ModelStore};
use prost::Message as _;
use std::hint::black_box;

use super::{isolation_forest, metrics};

fn call(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    let model: Arc<dyn ferroserve_formats::Model> = Arc::new(isolation_forest());
    let row: Vec<u8> = metrics(1).data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let request = ModelInferRequest {
        model_name: "anomaly-detector".into(),
        inputs: vec![InferInputTensor {
            name: "input-0".into(),
            datatype: "FP32".into(),
            shape: vec![1, 6],
            ..Default::default()
        }],
        raw_input_contents: vec![Bytes::from(row)],
        ..Default::default()
    };
    let body = request.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(body.len()).expect("small").to_be_bytes());
    framed.extend_from_slice(&body);
    let framed = Bytes::from(framed);
    let mut group = c.benchmark_group("e2e/grpc_model_infer_1_row");
    for name in ["direct", "inline", "hyper"] {
        let store =
            ModelStore::from_versions([("anomaly-detector".to_owned(), vec![LoadedVersion::new("v1", model.clone())])]);
        let state = AppState::new(store, Limits::default());
        let driver = match name {
            "direct" => Http2::Inline(Some(DirectInfer::new(state.clone()))),
            "inline" => Http2::Inline(None),
            _ => Http2::Hyper,
        };
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let mut client = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let router = ferroserve::grpc::router(state, stopped.clone());
            let mut until = stopped.clone();
            tokio::spawn(ferroserve::server::serve(
                listener,
                router,
                ConnectionLimits::default(),
                driver,
                async move {
                    let _ = until.wait_for(|s| *s).await;
                },
            ));
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (client, conn) = h2::client::handshake(tcp).await.expect("handshake");
            tokio::spawn(conn);
            client
        });
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let call = http::Request::post("/inference.GRPCInferenceService/ModelInfer")
                        .header("content-type", "application/grpc")
                        .header("te", "trailers")
                        .body(())
                        .expect("request");
                    client = client.clone().ready().await.expect("ready");
                    let (answer, mut send) = client.send_request(call, false).expect("send");
                    send.send_data(framed.clone(), true).expect("data");
                    let mut body = answer.await.expect("answer").into_body();
                    let mut bytes = 0;
                    while let Some(chunk) = body.data().await {
                        let chunk = chunk.expect("chunk");
                        bytes += chunk.len();
                        let _ = body.flow_control().release_capacity(chunk.len());
                    }
                    let trailers = body.trailers().await.expect("trailers").expect("trailers");
                    assert_eq!(trailers["grpc-status"], "0");
                    black_box(bytes)
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, call);
