//! `ferroserve validate`, the real binary, against a real server on 127.0.0.1: passes on the example model, fails
//! clearly on a broken case, and tells an unreachable server apart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Output;

use ferroserve::{AppState, Limits, ModelSource, ModelStore};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::support::save;

async fn validate(args: Vec<String>) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ferroserve")).arg("validate").args(args).output().await.unwrap()
}

async fn serve(source: ModelSource) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let store = ModelStore::open(&source).unwrap();
    let state = AppState::new(store.clone(), Limits::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        ferroserve::serve_state(state, listener, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    store.wait_ready().await;
    (addr, stop, task)
}

fn args(addr: SocketAddr, model: &str, extra: &[&str]) -> Vec<String> {
    let mut a = vec!["--url".to_owned(), format!("http://{addr}"), "--model".to_owned(), model.to_owned()];
    a.extend(extra.iter().map(|s| (*s).to_owned()));
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_on_the_example_model_and_fails_clearly_otherwise() {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/models/anomaly-detector");
    let (addr, stop, task) = serve(ModelSource::Single { name: "anomaly-detector".into(), dir: example }).await;

    let out = validate(args(addr, "anomaly-detector", &["--requests", "20", "--p95-budget", "1s"])).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for check in ["server live", "server ready", "model ready", "metadata", "inference", "latency", "metrics"] {
        assert!(stdout.lines().any(|l| l.starts_with("PASS") && l.contains(check)), "{check}:\n{stdout}");
    }
    assert!(stdout.contains("from version v2: predict INT64 [1]"), "{stdout}");
    assert!(stdout.trim_end().ends_with(": all checks passed"), "{stdout}");

    // --json for a pipeline.
    let out = validate(args(addr, "anomaly-detector", &["--requests", "5", "--json"])).await;
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((json["passed"].as_bool(), json["exit_code"].as_u64()), (Some(true), Some(0)), "{json}");
    assert_eq!(json["checks"].as_array().unwrap().len(), 7);

    // --report writes the same JSON to a file (a Tekton result); an empty --version is the default version,
    // as a pipeline passes the flag whether or not it names one.
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out =
        validate(args(addr, "anomaly-detector", &["--requests", "3", "--version", "", "--json", "--report"])).await;
    assert_eq!(out.status.code(), Some(2), "--report without a file is a usage error");
    let r = report.to_str().unwrap();
    let out = validate(args(addr, "anomaly-detector", &["--requests", "3", "--version", "", "--report", r])).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let written: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!((written["passed"].as_bool(), written["exit_code"].as_u64()), (Some(true), Some(0)), "{written}");
    assert!(written["checks"][3]["detail"].as_str().unwrap().contains("versions [v2]"), "{written}");
    let out =
        validate(args(addr, "anomaly-detector", &["--requests", "3", "--report", "/nonexistent-dir/r.json"])).await;
    assert_eq!(out.status.code(), Some(2), "an unwritable report fails the step");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--report /nonexistent-dir/r.json"), "{out:?}");

    // A reader that stops at once (`… --json | head -1`): the verdict is still the exit code, and nothing panics.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferroserve"))
        .arg("validate")
        .args(args(addr, "anomaly-detector", &["--requests", "5", "--json"]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // An unknown model: exit 1, naming the failing check.
    let out = validate(args(addr, "nope", &[])).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL model ready") && stdout.contains("model `nope` not found"), "{stdout}");

    // A latency budget no server meets.
    let out = validate(args(addr, "anomaly-detector", &["--requests", "5", "--p95-budget", "1us"])).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL latency") && stdout.contains("budget 0.00 ms"), "{stdout}");

    // A request the model refuses (given with --input).
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"inputs":[{"name":"input-0","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}"#).unwrap();
    let out = validate(args(addr, "anomaly-detector", &["--input", bad.to_str().unwrap()])).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL inference") && stdout.contains("400"), "{stdout}");

    let _ = stop.send(());
    task.await.unwrap();

    // Nobody listens any more: exit 2.
    let out = validate(args(addr, "anomaly-detector", &["--timeout", "2s"])).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("Connection refused"), "the OS's reason, not only the client's: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_ready_fails() {
    let root = tempfile::tempdir().unwrap();
    save(&root.path().join("good/v1"), &crate::support::v1(), None);
    std::fs::create_dir(root.path().join("broken")).unwrap();
    let store = ModelStore::open(&ModelSource::Repository { root: root.path().into() }).unwrap();
    let state = AppState::new(store.clone(), Limits::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(ferroserve::serve_state(state, listener, async {
        let _ = stopped.await;
    }));
    store.load_all().await;
    let out = validate(args(addr, "good", &[])).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL server ready") && stdout.contains("model `broken` is not ready"), "{stdout}");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
