//! A real HTTP/1.1 client (hyper) and a running server on 127.0.0.1:0 (REST, and gRPC on a second
//! port) that stops by its own future.

use std::net::SocketAddr;
use std::path::Path;

use clap::Parser as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A `ferroserve` serving on an ephemeral loopback port.
pub struct Server {
    pub addr: SocketAddr,
    /// The gRPC port ([`Server::grpc`]).
    pub grpc_addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ferroserve::Error>>,
    store: ferroserve::ModelStore,
}

impl Server {
    /// Starts the server with these CLI args (plus `--host 127.0.0.1`), as the binary would parse them,
    /// and waits until it reports ready.
    pub async fn start(args: &[&str]) -> Server {
        let server = Server::start_unready(args).await;
        tokio::time::timeout(std::time::Duration::from_secs(60), server.store.wait_ready())
            .await
            .expect("ready in 60 s");
        server
    }

    /// Starts the server without waiting for its models to load.
    pub async fn start_unready(args: &[&str]) -> Server {
        let argv = ["ferroserve", "--host", "127.0.0.1"].iter().chain(args);
        let config = ferroserve::Config::try_from(ferroserve::Args::try_parse_from(argv).unwrap()).unwrap();
        let state = ferroserve::AppState::open(&config).unwrap();
        let store = state.store().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_addr = grpc.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let listeners = ferroserve::Listeners { http: listener, grpc: Some(grpc) };
        let task = tokio::spawn(ferroserve::serve_listeners(state, listeners, async {
            let _ = stopped.await;
        }));
        let client = Client::builder(TokioExecutor::new()).build_http();
        Server { addr, grpc_addr, client, stop: Some(stop), task, store }
    }

    /// A gRPC client of the server's `inference.GRPCInferenceService`.
    pub async fn grpc(
        &self,
    ) -> ferroserve::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient<tonic::transport::Channel>
    {
        ferroserve::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient::connect(format!(
            "http://{}",
            self.grpc_addr
        ))
        .await
        .unwrap()
    }

    /// Starts serving one model folder.
    pub async fn model(name: &str, dir: &Path) -> Server {
        Server::start(&["--model_name", name, "--model_dir", dir.to_str().unwrap()]).await
    }

    async fn send(&self, method: hyper::Method, path: &str, body: Bytes) -> (u16, Value) {
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("content-type", "application/json")
            .body(Full::new(body))
            .unwrap();
        let response = self.client.request(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
        (status, value)
    }

    /// A GET whose answer is text (`/metrics`); panics unless it is 200.
    pub async fn get_text(&self, path: &str) -> String {
        let request = hyper::Request::get(format!("http://{}{path}", self.addr)).body(Full::new(Bytes::new())).unwrap();
        let response = self.client.request(request).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(hyper::Method::GET, path, Bytes::new()).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(hyper::Method::POST, path, Bytes::from(serde_json::to_vec(body).unwrap())).await
    }

    pub async fn post_raw(&self, path: &str, body: &'static str) -> (u16, Value) {
        self.send(hyper::Method::POST, path, Bytes::from_static(body.as_bytes())).await
    }

    /// Stops accepting, lets in-flight requests finish, and checks the server returned cleanly.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }
}

/// A v2 request with one FP64 input of `rows`.
pub fn request(rows: &[Vec<f64>], outputs: &[&str]) -> Value {
    let cols = rows.first().map_or(0, Vec::len);
    let mut body = serde_json::json!({
        "id": "it-1",
        "inputs": [{"name": "input-0", "shape": [rows.len(), cols], "datatype": "FP64", "data": rows}],
    });
    if !outputs.is_empty() {
        body["outputs"] = outputs.iter().map(|o| serde_json::json!({"name": o})).collect();
    }
    body
}
