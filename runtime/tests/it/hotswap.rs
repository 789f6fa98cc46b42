//! Hot-swap over a real socket under continuous load: a new version, a corrupt version, a removed
//! version, `serving.json` changes, and load/unload through the repository API, each with zero failed
//! requests and the expected `model_version` answering.
//!
//! The load: 8 client tasks on keep-alive connections to 127.0.0.1, each sending inference requests
//! back to back until stopped. Each task's sequence of answering versions is kept, so a swap can be
//! checked exactly: a task's requests start after the previous one ended, so once it has seen the new
//! version it must never see the old one again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use ferroserve::config::{WatchConfig, WatchMode};
use ferroserve::{AppState, Limits, ModelSource, ModelStore, Reload, StoreConfig, VersionPolicy};
use ferroserve_formats::layout::VersionWriter;
use ferroserve_formats::{NativeModel, tree::IsolationForest};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::{rows_request, save, v1, v2};

const CLIENTS: usize = 8;
/// How long a change may take to show; generous, since CI machines are slow and shared.
const PATIENCE: Duration = Duration::from_secs(30);

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn send(
    client: &HttpClient,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value, Option<String>) {
    let mut request = hyper::Request::builder().method(method).uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let header = response.headers().get("x-model-version").map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
    (status, body, header)
}

/// A server on 127.0.0.1:0 watching its folders (events, debounce 20 ms, re-read every 200 ms).
struct Server {
    addr: SocketAddr,
    store: ModelStore,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ferroserve::Error>>>,
}

impl Server {
    async fn start(source: &ModelSource, policy: VersionPolicy, mode: WatchMode) -> Server {
        let config = StoreConfig { policy, ..StoreConfig::default() };
        let store = ModelStore::open_with(source, config).unwrap();
        let watch = WatchConfig { mode, interval: Duration::from_millis(200), debounce: Duration::from_millis(20) };
        let state = AppState::new(store.clone(), Limits::default()).with_watch(watch);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(ferroserve::serve_state(state, listener, async {
            let _ = stopped.await;
        }));
        tokio::time::timeout(PATIENCE, store.wait_ready()).await.expect("the server gets ready");
        Server { addr, store, stop: Some(stop), task: Some(task) }
    }

    async fn infer(&self, model: &str, headers: &[(&str, &str)]) -> (u16, Value, Option<String>) {
        let body = rows_request(&[[0.0, 0.0], [3.0, -1.0]], "");
        send(&client(), self.addr, "POST", &format!("/v2/models/{model}/infer"), headers, &body).await
    }

    /// The version answering unpinned requests, once `version` does (panics after [`PATIENCE`]).
    async fn wait_for(&self, model: &str, version: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (status, body, _) = self.infer(model, &[]).await;
            if status == 200 && body["model_version"] == version {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{version} never answered; last answer {status} {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn index(&self) -> Value {
        send(&client(), self.addr, "POST", "/v2/repository/index", &[], "").await.1
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// Continuous load on one model: `CLIENTS` tasks sending requests back to back.
struct Load {
    running: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Vec<Result<String, String>>>>,
}

impl Load {
    fn start(addr: SocketAddr, model: &str) -> Load {
        let running = Arc::new(AtomicBool::new(true));
        let path = format!("/v2/models/{model}/infer");
        let tasks = (0..CLIENTS)
            .map(|_| {
                let (running, path, client) = (Arc::clone(&running), path.clone(), client());
                tokio::spawn(async move {
                    let body = rows_request(&[[0.0, 0.0], [3.0, -1.0]], "");
                    let mut answers = Vec::new();
                    while running.load(Ordering::Relaxed) {
                        let (status, body, header) = send(&client, addr, "POST", &path, &[], &body).await;
                        let version = body["model_version"].as_str().map(str::to_owned);
                        answers.push(match (status, version) {
                            (200, Some(v)) if header.as_deref() == Some(v.as_str()) => Ok(v),
                            (status, _) => Err(format!("{status} {body} (x-model-version {header:?})")),
                        });
                    }
                    answers
                })
            })
            .collect();
        Load { running, tasks }
    }

    /// Stops the load; returns each client's answering versions in order, after checking none failed.
    /// The clients first run on for a moment, so that each one's last request was sent after the state the
    /// caller just waited for (a request in flight across a swap is answered by the version it resolved).
    async fn stop(self) -> Vec<Vec<String>> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.running.store(false, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            let answers = task.await.unwrap();
            let failed: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
            assert!(failed.is_empty(), "{} of {} requests failed, first: {}", failed.len(), answers.len(), failed[0]);
            all.push(answers.into_iter().map(Result::unwrap).collect());
        }
        let total: usize = all.iter().map(Vec::len).sum();
        assert!(total >= CLIENTS * 2, "the load ran ({total} requests)");
        all
    }
}

/// Checks that every client saw `versions` in this order (each possibly zero times, except the last),
/// never going back.
fn assert_sequence(answers: &[Vec<String>], versions: &[&str]) {
    for (client, seen) in answers.iter().enumerate() {
        let mut stage = 0;
        for v in seen {
            let at = versions.iter().position(|w| w == v).unwrap_or_else(|| panic!("client {client}: unexpected {v}"));
            assert!(at >= stage, "client {client} went back from {} to {v}: {seen:?}", versions[stage]);
            stage = at;
        }
        assert_eq!(seen.last().map(String::as_str), versions.last().copied(), "client {client} ended on the last");
    }
}

fn counts(answers: &[Vec<String>]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for v in answers.iter().flatten() {
        *counts.entry(v.clone()).or_default() += 1;
    }
    counts
}

/// Writes a version the way a trainer does: into a hidden folder, renamed into place.
fn publish(model_dir: &Path, number: u64, model: &IsolationForest) {
    let writer = VersionWriter::begin(model_dir, Some(number)).unwrap();
    NativeModel::IsolationForest(model.clone()).save(writer.dir()).unwrap();
    writer.commit().unwrap();
}

/// A version whose tensors are corrupt, renamed into place complete (so only loading can tell).
fn publish_corrupt(model_dir: &Path, number: u64) {
    let writer = VersionWriter::begin(model_dir, Some(number)).unwrap();
    NativeModel::IsolationForest(v2()).save(writer.dir()).unwrap();
    std::fs::write(writer.dir().join("model.safetensors"), b"\x08\0\0\0\0\0\0\0{broken}").unwrap();
    writer.commit().unwrap();
}

fn single(dir: &Path) -> ModelSource {
    ModelSource::Single { name: "m".into(), dir: dir.to_path_buf() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_takes_over_under_load() {
    let root = tempfile::tempdir().unwrap();
    save(&root.path().join("v1"), &v1(), None);
    let server = Server::start(&single(root.path()), VersionPolicy::Latest(1), WatchMode::Events).await;
    let load = Load::start(server.addr, "m");
    server.wait_for("m", "v1").await;
    // Folders being written are ignored, complete or not.
    save(&root.path().join(".v5.tmp"), &v2(), None);
    save(&root.path().join("_v6"), &v2(), None);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.infer("m", &[]).await.1["model_version"], "v1");

    publish(root.path(), 2, &v2());
    server.wait_for("m", "v2").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answers = load.stop().await;
    assert_sequence(&answers, &["v1", "v2"]);
    assert!(counts(&answers)["v1"] > 0, "v1 answered before the swap");

    // `latest`: v1 is no longer served.
    let (status, body, _) = server.infer("m", &[("x-model-version", "v1")]).await;
    assert_eq!((status, body["error"].as_str().unwrap()), (404, "model `m` has no version `v1`; loaded versions: v2"));
    assert_eq!(server.index().await, json!([{"name": "m", "version": "v2", "state": "READY", "reason": ""}]));
    assert_eq!(server.store.stats("m").unwrap().swaps.load(Ordering::Relaxed), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_version_is_refused_and_its_correction_is_picked_up() {
    let root = tempfile::tempdir().unwrap();
    save(&root.path().join("v1"), &v1(), None);
    // Polling only: the fallback for volumes without events.
    let server = Server::start(&single(root.path()), VersionPolicy::Latest(1), WatchMode::Poll).await;
    let load = Load::start(server.addr, "m");

    publish_corrupt(root.path(), 2);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let index = loop {
        let index = server.index().await;
        if index.as_array().unwrap().len() == 2 {
            break index;
        }
        assert!(tokio::time::Instant::now() < deadline, "v2's failure never showed: {index}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(index[0], json!({"name": "m", "version": "v1", "state": "READY", "reason": ""}));
    assert_eq!((&index[1]["version"], &index[1]["state"]), (&json!("v2"), &json!("UNAVAILABLE")));
    let reason = index[1]["reason"].as_str().unwrap();
    assert!(reason.contains("model.safetensors"), "the reason names the file: {reason}");
    assert_eq!(server.store.stats("m").unwrap().load_failures.load(Ordering::Relaxed), 1);
    // Re-reads of the unchanged broken folder do not retry it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(server.store.stats("m").unwrap().load_failures.load(Ordering::Relaxed), 1, "not retried unchanged");

    // The corrected files replace the broken ones in place.
    let fixed = tempfile::tempdir().unwrap();
    NativeModel::IsolationForest(v2()).save(fixed.path()).unwrap();
    std::fs::copy(fixed.path().join("model.safetensors"), root.path().join("v2/.model.safetensors.new")).unwrap();
    std::fs::rename(root.path().join("v2/.model.safetensors.new"), root.path().join("v2/model.safetensors")).unwrap();
    server.wait_for("m", "v2").await;
    let answers = load.stop().await;
    assert_sequence(&answers, &["v1", "v2"]);
    assert_eq!(server.index().await, json!([{"name": "m", "version": "v2", "state": "READY", "reason": ""}]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_copied_file_by_file_serves_once_complete() {
    let root = tempfile::tempdir().unwrap();
    save(&root.path().join("v1"), &v1(), None);
    let server = Server::start(&single(root.path()), VersionPolicy::Latest(1), WatchMode::Events).await;
    let load = Load::start(server.addr, "m");
    // As `kubectl cp` or a plain `cp -r` writes: the folder appears, then its files, with pauses.
    let staged = tempfile::tempdir().unwrap();
    NativeModel::IsolationForest(v2()).save(staged.path()).unwrap();
    let v2_dir = root.path().join("v2");
    std::fs::create_dir(&v2_dir).unwrap();
    std::fs::copy(staged.path().join("model.json"), v2_dir.join("model.json")).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(server.infer("m", &[]).await.1["model_version"], "v1", "half a version does not serve");
    std::fs::copy(staged.path().join("model.safetensors"), v2_dir.join("model.safetensors")).unwrap();
    server.wait_for("m", "v2").await;
    let answers = load.stop().await;
    assert_sequence(&answers, &["v1", "v2"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_version_hands_over_to_the_one_before() {
    let root = tempfile::tempdir().unwrap();
    save(&root.path().join("v1"), &v1(), None);
    save(&root.path().join("v2"), &v2(), None);
    let server = Server::start(&single(root.path()), VersionPolicy::All, WatchMode::Events).await;
    let load = Load::start(server.addr, "m");
    server.wait_for("m", "v2").await;

    std::fs::remove_dir_all(root.path().join("v2")).unwrap();
    server.wait_for("m", "v1").await;
    let answers = load.stop().await;
    assert_sequence(&answers, &["v2", "v1"]);

    // Removing the last version keeps it serving: an emptied folder is more often a storage problem
    // than a wish to stop serving.
    std::fs::remove_dir_all(root.path().join("v1")).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, body, _) = server.infer("m", &[]).await;
    assert_eq!((status, &body["model_version"]), (200, &json!("v1")), "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_json_runs_a_canary_and_rolls_back() {
    let root = tempfile::tempdir().unwrap();
    save(&root.path().join("v1"), &v1(), None);
    save(&root.path().join("v2"), &v2(), None);
    std::fs::write(root.path().join("serving.json"), r#"{"default": "v1"}"#).unwrap();
    let server = Server::start(&single(root.path()), VersionPolicy::Latest(1), WatchMode::Events).await;
    // `latest` selects v2; serving.json's default v1 is loaded too, and answers.
    server.wait_for("m", "v1").await;

    let load = Load::start(server.addr, "m");
    let canary = |percent: u8| json!({"default": "v1", "canary": {"version": "v2", "percent": percent}});
    write_serving(root.path(), &canary(10));
    server.wait_for("m", "v2").await;
    let answers = load.stop().await;
    assert!(answers.iter().flatten().all(|v| v == "v1" || v == "v2"));

    // The split is exact: of any 200 consecutive unpinned requests, 20 go to the canary.
    let mut split = BTreeMap::new();
    for _ in 0..200 {
        *split.entry(server.infer("m", &[]).await.1["model_version"].as_str().unwrap().to_owned()).or_insert(0) += 1;
    }
    assert_eq!(split, BTreeMap::from([("v1".to_owned(), 180), ("v2".to_owned(), 20)]));
    // The header pins a version.
    for _ in 0..20 {
        let (status, body, header) = server.infer("m", &[("x-model-version", "2")]).await;
        assert_eq!((status, &body["model_version"], header.as_deref()), (200, &json!("v2"), Some("v2")));
    }
    let (status, body, _) = server.infer("m", &[("x-model-version", "v9")]).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (404, "model `m` has no version `v9`; loaded versions: v1, v2")
    );

    // Rollback under load: the default keeps all traffic.
    let load = Load::start(server.addr, "m");
    write_serving(root.path(), &json!({"default": "v1"}));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while server.store.snapshot("m").unwrap().canary().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the rollback never applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answers = load.stop().await;
    let after = Load::start(server.addr, "m");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(counts(&after.stop().await).keys().collect::<Vec<_>>(), ["v1"], "after the rollback only v1 answers");
    assert!(counts(&answers).contains_key("v1"));

    // A broken serving.json changes nothing.
    std::fs::write(root.path().join("serving.json"), "{\"default\": ").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let snapshot = server.store.snapshot("m").unwrap();
    assert_eq!(snapshot.default_version().unwrap().name(), "v1");
    assert!(snapshot.serving_notes()[0].contains("serving.json"), "{:?}", snapshot.serving_notes());
    server.stop().await;
}

/// The real binary, started in a folder and given the model folder relative to it (as the README's first hour
/// does), applies a `serving.json` change from its filesystem events, without waiting for a poll.
#[tokio::test]
async fn a_relative_model_folder_is_watched_by_events() {
    let root = tempfile::tempdir().unwrap();
    save(&root.path().join("models/m/v1"), &v1(), None);
    save(&root.path().join("models/m/v2"), &v2(), None);
    let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (port, grpc_port) = (free_port(), free_port());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferroserve"))
        .current_dir(root.path())
        .args(["--model_repository", "models", "--host", "127.0.0.1", "--http_port", &port.to_string()])
        .args(["--grpc_port", &grpc_port.to_string(), "--watch", "events", "--watch_interval", "1h"])
        .args(["--watch_debounce", "20ms"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (client, addr) = (client(), SocketAddr::from(([127, 0, 0, 1], port)));
    let answer = async || {
        let body = rows_request(&[[0.0, 0.0]], "");
        send(&client, addr, "POST", "/v2/models/m/infer", &[], &body).await.2
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::net::TcpStream::connect(addr).await.is_err() || answer().await.as_deref() != Some("v2") {
        assert!(tokio::time::Instant::now() < deadline, "the server never served v2");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    write_serving(&root.path().join("models/m"), &json!({"default": "v1"}));
    // Polling is hourly: only an event can make v1 the default within PATIENCE.
    while answer().await.as_deref() != Some("v1") {
        assert!(tokio::time::Instant::now() < deadline, "the serving.json change was not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().await.unwrap();
}

fn write_serving(dir: &Path, value: &Value) {
    let config: ferroserve_formats::serving::ServingConfig = serde_json::from_value(value.clone()).unwrap();
    config.write(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_and_unload_through_the_repository_api() {
    let root = tempfile::tempdir().unwrap();
    save(&root.path().join("a/v1"), &v1(), None);
    save(&root.path().join("b/v1"), &v2(), None);
    let source = ModelSource::Repository { root: root.path().to_path_buf() };
    // No watcher: the API alone applies changes.
    let server = Server::start(&source, VersionPolicy::Latest(1), WatchMode::Off).await;
    let http = client();
    let post = |path: String| {
        let http = http.clone();
        async move { send(&http, server.addr, "POST", &path, &[], "").await }
    };

    let load = Load::start(server.addr, "a");
    // A make-before-break reload of the loaded model, twice, under load.
    for _ in 0..2 {
        let (status, body, _) = post("/v2/repository/models/a/load".into()).await;
        assert_eq!((status, body), (200, json!({"name": "a", "load": true})));
    }
    // A new version is taken only when loaded (no watcher).
    publish(&root.path().join("a"), 2, &v2());
    assert_eq!(server.infer("a", &[]).await.1["model_version"], "v1");
    assert_eq!(post("/v2/repository/models/a/load".into()).await.0, 200);
    assert_eq!(server.infer("a", &[]).await.1["model_version"], "v2");

    // Unloading b does not disturb a, nor readiness.
    let (status, body, _) = post("/v2/repository/models/b/unload".into()).await;
    assert_eq!((status, body), (200, json!({"name": "b", "unload": true})));
    let (status, body, _) = server.infer("b", &[]).await;
    assert_eq!((status, body["error"].as_str().unwrap()), (503, "model `b` is not ready: unloaded"));
    let ready = send(&http, server.addr, "GET", "/v2/health/ready", &[], "").await;
    assert_eq!((ready.0, ready.1), (200, json!({"ready": true})));
    let index = server.index().await;
    let b: Vec<&Value> = index.as_array().unwrap().iter().filter(|e| e["name"] == "b").collect();
    assert_eq!(b, [&json!({"name": "b", "state": "UNAVAILABLE", "reason": "unloaded"})]);
    let ready_only = send(&http, server.addr, "POST", "/v2/repository/index", &[], r#"{"ready": true}"#).await.1;
    assert_eq!(ready_only.as_array().unwrap().len(), 1, "{ready_only}");

    // Loading it again, a model folder added since the start, an unknown name, a broken model.
    assert_eq!(post("/v2/repository/models/b/load".into()).await.0, 200);
    assert_eq!(server.infer("b", &[]).await.1["model_version"], "v1");
    save(&root.path().join("c/v4"), &v1(), None);
    assert_eq!(post("/v2/repository/models/c/load".into()).await.0, 200);
    assert_eq!(server.infer("c", &[]).await.1["model_version"], "v4");
    let (status, body, _) = post("/v2/repository/models/nope/load".into()).await;
    assert_eq!((status, body), (404, json!({"error": "model `nope` not found"})));
    publish_corrupt(&root.path().join("d"), 1);
    let (status, body, _) = post("/v2/repository/models/d/load".into()).await;
    let message = body["error"].as_str().unwrap();
    assert_eq!(status, 503);
    assert!(message.starts_with("model `d` is not ready: loading failed: v1: "), "{message}");

    let answers = load.stop().await;
    assert_sequence(&answers, &["v1", "v2"]);
    server.stop().await;
}

/// The store's rules without a server: what a reload keeps, loads, refuses and retries.
#[tokio::test]
async fn reload_rules() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    save(&dir.join("v1"), &v1(), None);
    save(&dir.join("v2"), &v1(), None);
    let store =
        ModelStore::open_with(&single(dir), StoreConfig { policy: VersionPolicy::Latest(2), ..StoreConfig::default() })
            .unwrap();
    store.load_all().await;
    let first = store.snapshot("m").unwrap();
    assert_eq!(first.version_names(), ["v1", "v2"]);

    // Nothing changed: nothing is loaded or published.
    let again = store.reload("m", Reload::Changes).await.unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    // A broken v3 does not count towards latest:2 — v1 and v2 stay.
    publish_corrupt(dir, 3);
    let s = store.reload("m", Reload::Changes).await.unwrap();
    assert_eq!((s.version_names(), s.failures().len()), (vec!["v1".to_owned(), "v2".to_owned()], 1));
    assert!(Arc::ptr_eq(&first.versions()[0], &s.versions()[0]), "unchanged versions are reused, not reloaded");
    // A changed artifact is reloaded; if the change is broken, the copy loaded before serves on.
    std::fs::write(dir.join("v2/model.json"), "{").unwrap();
    let s = store.reload("m", Reload::Changes).await.unwrap();
    assert_eq!(s.version_names(), ["v1", "v2"]);
    assert!(Arc::ptr_eq(&first.versions()[1], &s.versions()[1]), "the working copy of v2 serves on");
    assert_eq!(s.failures().iter().map(|f| f.version.as_str()).collect::<Vec<_>>(), ["v2", "v3"]);
    // Reload::Everything loads every selected version afresh.
    save(&dir.join("v2"), &v2(), None);
    let s = store.reload("m", Reload::Everything).await.unwrap();
    assert!(!Arc::ptr_eq(&first.versions()[0], &s.versions()[0]));
    assert_eq!(s.versions()[1].model().kind(), ferroserve_formats::ModelKind::IsolationForest);
    assert_eq!(s.failures().len(), 1, "v3 is still broken");
    let stats = store.stats("m").unwrap();
    assert_eq!(stats.loads.load(Ordering::Relaxed), 2 + 2, "v1 and v2 at first, both again");
    assert_eq!(stats.load_failures.load(Ordering::Relaxed), 3, "v3, the broken v2, v3 again");
}
