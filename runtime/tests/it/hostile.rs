//! Hostile files and hostile request mixes against the real binary, on real sockets: files are created
//! in the served repository while it serves, and the process's peak memory (`VmHWM`) is read from
//! `/proc` at the end.
//!
//! Each hostile model costs its own load, with a reason naming what was wrong; the good model keeps
//! answering and still hot-swaps; the process's peak resident memory stays under 1 GiB; SIGTERM then
//! exits 0.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::support::{rows_request, save, v1, v2};

/// How long a change may take to show; generous, since CI machines are slow and shared.
const PATIENCE: Duration = Duration::from_secs(60);
const GIB: u64 = 1 << 30;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The real binary serving `repo` on 127.0.0.1, its folders watched (re-read every 300 ms).
struct Process {
    child: tokio::process::Child,
    addr: SocketAddr,
    client: HttpClient,
}

impl Process {
    async fn start(repo: &Path) -> Process {
        let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (port, grpc) = (free(), free());
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferroserve"))
            .args(["--model_repository", repo.to_str().unwrap(), "--host", "127.0.0.1"])
            .args(["--http_port", &port.to_string(), "--watch_interval", "300ms", "--watch_debounce", "50ms"])
            .args(["--shutdown_timeout", "5s", "--grpc_port", &grpc.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let p = Process {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            client: Client::builder(TokioExecutor::new()).build_http(),
        };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Ok((200, _, _)) = p.try_send("GET", "/v2/health/ready", Bytes::new()).await {
                return p;
            }
            assert!(tokio::time::Instant::now() < deadline, "the server never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn try_send(&self, method: &str, path: &str, body: Bytes) -> Result<(u16, Value, Option<String>), String> {
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .body(Full::new(body))
            .unwrap();
        let response = self.client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), retry))
    }

    async fn send(&self, method: &str, path: &str, body: impl Into<Bytes>) -> (u16, Value, Option<String>) {
        self.try_send(method, path, body.into()).await.unwrap()
    }

    /// Waits until the good model's unpinned answers come from `version`.
    async fn wait_for(&self, model: &str, version: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let body = rows_request(&[[0.0, 0.0], [3.0, -1.0]], "");
        loop {
            let (status, answer, _) = self.send("POST", &format!("/v2/models/{model}/infer"), body.clone()).await;
            if status == 200 && answer["model_version"] == version {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{version} never answered; last answer {status} {answer}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The repository index entry of `model`, once it is no longer loading.
    async fn settled(&self, model: &str) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (_, index, _) = self.send("POST", "/v2/repository/index", "{}").await;
            let entry = index.as_array().unwrap().iter().find(|e| e["name"] == model).cloned();
            if let Some(e) = entry
                && e["state"] != "LOADING"
                && e["reason"] != ""
            {
                return e;
            }
            assert!(tokio::time::Instant::now() < deadline, "{model} never settled: {index}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The peak resident memory of the process so far, in bytes.
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id().unwrap())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    /// SIGTERM; the process must exit 0 within its drain deadline.
    async fn terminate(mut self) {
        let pid = self.child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await.expect("exited").unwrap();
        assert!(status.success(), "exit status {status}");
    }
}

/// A zlib stream (a joblib file's container) of `gib` GiB of zeros in a few MB, built from one
/// sync-flushed deflate block of 1 MiB repeated (deflate blocks may follow each other; references reach
/// back only into zeros), without the trailer a decoder would only reach at the very end.
fn zlib_bomb(gib: usize) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let zeros = vec![0u8; 1 << 20];
    let mut c = Compress::new(Compression::best(), false);
    let block = |c: &mut Compress| {
        let mut out = Vec::with_capacity(1 << 16);
        c.compress_vec(&zeros, &mut out, FlushCompress::Sync).unwrap();
        out
    };
    let first = block(&mut c);
    let steady = block(&mut c);
    let mut file = vec![0x78, 0xda];
    file.extend_from_slice(&first);
    for _ in 1..(gib << 10) {
        file.extend_from_slice(&steady);
    }
    file
}

fn mkfifo(path: &Path) -> bool {
    std::process::Command::new("mkfifo").arg(path).status().is_ok_and(|s| s.success())
}

/// Every kind of hostile file at once, created while the server serves: each fails its own model with a
/// reason, the good model hot-swaps meanwhile, the peak RSS stays under 1 GiB, and SIGTERM exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_files_cost_only_their_own_model() {
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("repo");
    save(&repo.join("good/v1"), &v1(), None);
    let server = Process::start(&repo).await;
    server.wait_for("good", "v1").await;

    // 1. A joblib file of a few MB that inflates to 2 GiB: decompression stops at --max_model_bytes.
    let bomb = zlib_bomb(2);
    assert!(bomb.len() < 8 << 20, "{} bytes", bomb.len());
    std::fs::create_dir_all(repo.join("bomb/v1")).unwrap();
    std::fs::write(repo.join("bomb/v1/model.joblib"), &bomb).unwrap();
    // 2. A FIFO in place of the model file: opened without blocking, and refused.
    std::fs::create_dir_all(repo.join("fifo/v1")).unwrap();
    let fifo_made = mkfifo(&repo.join("fifo/v1/model.pkl"));
    // 3. A model file that is a symlink to /dev/zero (never ends), and one to a real model outside the root.
    std::fs::create_dir_all(repo.join("zero/v1")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", repo.join("zero/v1/model.pkl")).unwrap();
    let outside = root.path().join("outside");
    save(&outside, &v2(), None);
    std::fs::create_dir_all(repo.join("escape/v1")).unwrap();
    for f in ["model.json", "model.safetensors"] {
        std::os::unix::fs::symlink(outside.join(f), repo.join("escape/v1").join(f)).unwrap();
    }
    // 4. A sparse 20 GiB file: refused by its size before a byte is read.
    std::fs::create_dir_all(repo.join("sparse/v1")).unwrap();
    std::fs::File::create(repo.join("sparse/v1/model.pkl")).unwrap().set_len(20 * GIB).unwrap();
    // 5. A metadata.json that is a FIFO beside a good model: the model serves without it.
    save(&repo.join("meta/v1"), &v1(), None);
    let meta_fifo = mkfifo(&repo.join("meta/v1/metadata.json"));

    // Meanwhile the good model gets a new version, and a serving.json that is a FIFO.
    let serving_fifo = mkfifo(&repo.join("good/serving.json"));
    let writer = repo.join("good/.v2.tmp");
    save(&writer, &v2(), None);
    std::fs::rename(&writer, repo.join("good/v2")).unwrap();
    server.wait_for("good", "v2").await;

    let reason = |e: &Value| e["reason"].as_str().unwrap_or_default().to_owned();
    let bomb = server.settled("bomb").await;
    assert_eq!(bomb["state"], "UNAVAILABLE", "{bomb}");
    assert!(reason(&bomb).contains("max_decompressed_bytes = 268435456"), "{bomb}");
    if fifo_made {
        let fifo = server.settled("fifo").await;
        assert!(reason(&fifo).contains("is a FIFO (named pipe), not a regular file"), "{fifo}");
    } else {
        eprintln!("SKIPPED: mkfifo is not available; the FIFO cases were not checked");
    }
    let zero = server.settled("zero").await;
    assert!(reason(&zero).contains("path escapes the model root"), "{zero}");
    let escape = server.settled("escape").await;
    assert!(reason(&escape).contains("path escapes the model root"), "{escape}");
    let sparse = server.settled("sparse").await;
    assert!(reason(&sparse).contains("the file is 21474836480 bytes, over the limit max_model_bytes"), "{sparse}");
    if meta_fifo {
        server.wait_for("meta", "v1").await;
    }
    if !(meta_fifo && serving_fifo) {
        eprintln!("SKIPPED: mkfifo is not available; the metadata.json and serving.json FIFOs were not checked");
    }
    // The good model still answers, and hot-swaps again after all of it.
    server.wait_for("good", "v2").await;
    save(&repo.join("good/.v3.tmp"), &v1(), None);
    std::fs::rename(repo.join("good/.v3.tmp"), repo.join("good/v3")).unwrap();
    server.wait_for("good", "v3").await;

    let peak = server.peak_rss();
    assert!(peak < GIB, "peak RSS {} MiB", peak >> 20);
    eprintln!("hostile files: peak RSS {} MiB", peak >> 20);
    server.terminate().await;
}

/// Eight concurrent 31 MiB numeric JSON bodies: the bodies in flight stay within the budget (the rest get
/// 503 with Retry-After), every admitted one is decoded and answered (400: it has 3 columns where the
/// model takes 2), and the peak RSS stays under 1 GiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_concurrent_bodies_stay_within_the_budget() {
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("repo");
    save(&repo.join("good/v1"), &v1(), None);
    let server = std::sync::Arc::new(Process::start(&repo).await);
    // ~31 MiB: rows of three numbers as clients write them.
    let rows = 1_150_000;
    let mut body = Vec::with_capacity(32 << 20);
    write!(body, r#"{{"inputs":[{{"name":"x","shape":[{rows},3],"datatype":"FP32","data":["#).unwrap();
    for i in 0..rows {
        let sep = if i + 1 == rows { "" } else { "," };
        write!(body, "{:.6},{:.6},{:.6}{sep}", i as f64 * 1e-6, 0.5, -1.25).unwrap();
    }
    body.extend_from_slice(b"]}]}");
    assert!((30 << 20..32 << 20).contains(&body.len()), "{} bytes", body.len());
    let body = Bytes::from(body);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (server, body) = (std::sync::Arc::clone(&server), body.clone());
            tokio::spawn(async move { server.send("POST", "/v2/models/good/infer", body).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        let (status, answer, retry) = t.await.unwrap();
        match status {
            400 => assert!(answer["error"].as_str().unwrap().contains("3"), "{answer}"),
            503 => {
                assert_eq!(retry.as_deref(), Some("1"), "{answer}");
                assert!(answer["error"].as_str().unwrap().contains("--max_inflight_body_bytes"), "{answer}");
            }
            other => panic!("unexpected {other}: {answer}"),
        }
        statuses.push(status);
    }
    assert!(statuses.contains(&400), "{statuses:?}");
    // Each refusal is counted.
    let refused = statuses.iter().filter(|&&s| s == 503).count();
    let metrics = server
        .client
        .request(hyper::Request::get(format!("http://{}/metrics", server.addr)).body(Full::new(Bytes::new())).unwrap());
    let text = metrics.await.unwrap().into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains(&format!("ferroserve_requests_rejected_total{{reason=\"body_budget\"}} {refused}\n")),
        "{refused} refusals: {text}"
    );
    // Small requests are never refused for the budget, and the budget is free again afterwards.
    server.wait_for("good", "v1").await;
    let (status, answer, _) = server.send("POST", "/v2/models/good/infer", body.clone()).await;
    assert_eq!(status, 400, "{answer}");
    let peak = server.peak_rss();
    eprintln!("8 × 31 MiB bodies ({statuses:?}): peak RSS {} MiB", peak >> 20);
    assert!(peak < GIB, "peak RSS {} MiB", peak >> 20);
    let server = std::sync::Arc::into_inner(server).unwrap();
    server.terminate().await;
}
