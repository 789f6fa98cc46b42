//! Real scikit-learn files served over a socket, beside hostile and broken ones: the good models answer
//! with scikit-learn's numbers, the bad ones never run anything and never take a working version down.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::client::Server;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sklearn/latest").join(name)
}

fn golden(case: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture(&format!("{case}.json"))).unwrap()).unwrap()
}

fn place(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    std::fs::copy(src, dst).unwrap();
}

/// A protocol-0 pickle equivalent to `os.system("touch <marker>")`, as a `__reduce__` exploit writes it.
fn os_system_pickle(marker: &Path) -> Vec<u8> {
    format!("cos\nsystem\n(S'touch {}'\ntR.", marker.display()).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sklearn_files_serve_and_hostile_ones_run_nothing() {
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("models");
    let marker = root.path().join("pwned");

    // A versioned detector: v1 a real joblib IsolationForest, v2 an exploit that must be refused.
    place(&fixture("isolation_forest.joblib"), &repo.join("detector/v1/model.joblib"));
    std::fs::create_dir_all(repo.join("detector/v2")).unwrap();
    std::fs::write(repo.join("detector/v2/model.pkl"), os_system_pickle(&marker)).unwrap();
    // A string-labelled random forest saved with pickle protocol 5.
    place(&fixture("random_forest_classifier_str.p5.pkl"), &repo.join("forest/model.pkl"));
    // A version truncated mid-write beside a good one.
    place(&fixture("ridge.joblib"), &repo.join("ridge/1/model.joblib"));
    let good = std::fs::read(fixture("ridge.joblib")).unwrap();
    std::fs::create_dir_all(repo.join("ridge/2")).unwrap();
    std::fs::write(repo.join("ridge/2/model.joblib"), &good[..good.len() / 2]).unwrap();

    let server = Server::start(&["--model_repository", repo.to_str().unwrap()]).await;
    assert!(!marker.exists(), "a pickle executed code");

    // The exploit was refused; v1 serves, and only v1 is listed.
    let (status, meta) = server.get("/v2/models/detector").await;
    assert_eq!(status, 200, "{meta}");
    assert_eq!(meta["versions"], json!(["v1"]));
    let (status, _) = server.get("/v2/models/detector/versions/v2/ready").await;
    assert_eq!(status, 404, "the refused version is not served");

    // IsolationForest from joblib: scikit-learn's labels and scores.
    let iforest = golden("isolation_forest");
    let x = &iforest["X"];
    let rows = x.as_array().unwrap().len();
    let cols = x[0].as_array().unwrap().len();
    let request = json!({"inputs": [{"name": "input-0", "shape": [rows, cols], "datatype": "FP64", "data": x}],
                         "outputs": [{"name": "predict"}, {"name": "score_samples"}]});
    let (status, body) = server.post("/v2/models/detector/infer", &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model_version"], "v1");
    assert_eq!(body["outputs"][0]["data"], iforest["outputs"]["predict"]);
    close(&body["outputs"][1]["data"], &iforest["outputs"]["score_samples"]);

    // String classes come back as BYTES strings, probabilities as FP64 [N, 3].
    let forest = golden("random_forest_classifier_str");
    let x = &forest["X"];
    let rows = x.as_array().unwrap().len();
    let cols = x[0].as_array().unwrap().len();
    let request = json!({"inputs": [{"name": "input-0", "shape": [rows, cols], "datatype": "FP64", "data": x}],
                         "outputs": [{"name": "predict"}, {"name": "predict_proba"}]});
    let (status, body) = server.post("/v2/models/forest/infer", &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"][0]["datatype"], "BYTES");
    assert_eq!(body["outputs"][0]["data"], forest["outputs"]["predict"]);
    assert_eq!(body["outputs"][1]["shape"], json!([rows, 3]));
    let flat: Vec<Value> = forest["outputs"]["predict_proba"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().clone())
        .collect();
    close(&body["outputs"][1]["data"], &Value::Array(flat));

    // The truncated version is refused; version 1 keeps serving.
    let (status, meta) = server.get("/v2/models/ridge").await;
    assert_eq!(status, 200);
    assert_eq!(meta["versions"], json!(["1"]));

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_with_only_a_hostile_file_never_becomes_ready() {
    let root = tempfile::tempdir().unwrap();
    let marker = root.path().join("pwned");
    let dir = root.path().join("evil");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.pkl"), os_system_pickle(&marker)).unwrap();
    let server = Server::start_unready(&["--model_name", "evil", "--model_dir", dir.to_str().unwrap()]).await;
    // Give the loader time to fail (it runs in the background; readiness never comes).
    for _ in 0..50 {
        if server.get("/v2/models/evil/ready").await.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.get("/v2/health/live").await.0, 200);
    assert_eq!(server.get("/v2/health/ready").await.0, 503);
    let (status, body) = server
        .post(
            "/v2/models/evil/infer",
            &json!({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [1]}]}),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(!marker.exists(), "a pickle executed code");
    server.stop().await;
}

fn close(got: &Value, want: &Value) {
    let (got, want) = (got.as_array().unwrap(), want.as_array().unwrap());
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
        assert!((g - w).abs() <= 1e-9 * w.abs().max(1e-3), "{g} vs scikit-learn {w}");
    }
}

/// Flattens nested JSON arrays (row-major), as the v2 response's flat `data`.
fn flatten(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other.clone()),
    }
}

/// Every estimator of every parity case written by scikit-learn (each saved as a notebook saves it, with
/// joblib), served together from one repository: over HTTP, every method's output equals scikit-learn's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_estimator_answers_over_http_as_scikit_learn_does() {
    for set in ["1.3", "1.8", "latest"] {
        let root = tempfile::tempdir().unwrap();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sklearn").join(set);
        let mut cases = Vec::new();
        for entry in std::fs::read_dir(&fixtures).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let case: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                let name = case["case"].as_str().unwrap().to_owned();
                // The first file form of each case (`.joblib`; the platform's pipeline only as `model.pkl`).
                let file = case["files"][0].as_str().unwrap();
                let target = if file.ends_with(".joblib") { "model.joblib" } else { "model.pkl" };
                place(&fixtures.join(file), &root.path().join(&name).join(target));
                cases.push((name, case));
            }
        }
        assert!(cases.len() >= 25, "{set}: {} cases", cases.len());
        let server = Server::start(&["--model_repository", root.path().to_str().unwrap()]).await;
        for (name, case) in &cases {
            let x = &case["X"];
            // Rows holding NaN (written as the string "nan") cannot travel in JSON; their handling is covered
            // by model-formats' parity test.
            let mut values = Vec::new();
            flatten(x, &mut values);
            if values.iter().any(Value::is_string) {
                continue;
            }
            let (rows, cols) = (x.as_array().unwrap().len(), x[0].as_array().unwrap().len());
            let methods: Vec<&String> = case["outputs"].as_object().unwrap().keys().collect();
            let request = json!({
                "inputs": [{"name": "input-0", "shape": [rows, cols], "datatype": "FP64", "data": x}],
                "outputs": methods.iter().map(|m| json!({"name": m})).collect::<Vec<_>>(),
            });
            let (status, body) = server.post(&format!("/v2/models/{name}/infer"), &request).await;
            assert_eq!(status, 200, "{set}/{name}: {body}");
            for (i, method) in methods.iter().enumerate() {
                let got = &body["outputs"][i];
                assert_eq!(got["name"], json!(method), "{set}/{name}");
                let mut want = Vec::new();
                flatten(&case["outputs"][method.as_str()], &mut want);
                let got_data = got["data"].as_array().unwrap();
                assert_eq!(got_data.len(), want.len(), "{set}/{name} {method}");
                for (g, w) in got_data.iter().zip(&want) {
                    match (g.as_f64(), w.as_f64()) {
                        (Some(g), Some(w))
                            if !(g.fract() == 0.0 && w.fract() == 0.0 && w.abs() < 1e15)
                                || got["datatype"] == "FP64" =>
                        {
                            assert!((g - w).abs() <= 1e-9 * w.abs().max(1e-3), "{set}/{name} {method}: {g} vs {w}");
                        }
                        _ => assert_eq!(g, w, "{set}/{name} {method}"),
                    }
                }
            }
        }
        server.stop().await;
    }
}

/// A `storageUri` naming one file (`pvc://…/anomaly-detector.pkl`): KServe mounts that file at `/mnt/models`,
/// under its own name or under the mount's. Both serve, as does a repository entry that is one file; a new
/// file copied over the old one is picked up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_model_file_is_a_model() {
    let root = tempfile::tempdir().unwrap();
    let iforest = golden("isolation_forest");
    let x = &iforest["X"];
    let rows = x.as_array().unwrap().len();
    let cols = x[0].as_array().unwrap().len();
    let request = json!({"inputs": [{"name": "input-0", "shape": [rows, cols], "datatype": "FP64", "data": x}]});

    for name in ["anomaly-detector.pkl", "models"] {
        let file = root.path().join(name);
        place(&fixture("isolation_forest.joblib"), &file);
        let server = Server::start(&["--model_dir", file.to_str().unwrap()]).await;
        let (status, body) = server.post("/v2/models/model/infer", &request).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["model_version"], "1");
        assert_eq!(body["outputs"][0]["data"], iforest["outputs"]["predict"], "{name}");
        server.stop().await;
    }

    // In a repository, `detector.pkl` is model `detector`, beside a model folder.
    let repo = root.path().join("repo");
    place(&fixture("isolation_forest.joblib"), &repo.join("detector.pkl"));
    place(&fixture("ridge.joblib"), &repo.join("ridge/model.joblib"));
    std::fs::write(repo.join("notes.txt"), "not a model").unwrap();
    let server =
        Server::start(&["--model_repository", repo.to_str().unwrap(), "--watch", "poll", "--watch_interval", "200ms"])
            .await;
    let (status, index) = server.post("/v2/repository/index", &json!({})).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = index.as_array().unwrap().iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(names, ["detector", "ridge"], "{index}");
    let (status, body) = server.post("/v2/models/detector/infer", &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"][0]["data"], iforest["outputs"]["predict"]);

    // A new file copied over the old one (here a string-labelled forest) serves once it is read again.
    let forest = golden("random_forest_classifier_str");
    std::fs::copy(fixture("random_forest_classifier_str.joblib"), repo.join("detector.pkl.tmp")).unwrap();
    std::fs::rename(repo.join("detector.pkl.tmp"), repo.join("detector.pkl")).unwrap();
    let x = &forest["X"];
    let request = json!({"inputs": [{"name": "input-0", "shape": [x.as_array().unwrap().len(), 4], "datatype": "FP64", "data": x}]});
    let mut swapped = false;
    for _ in 0..100 {
        let (status, body) = server.post("/v2/models/detector/infer", &request).await;
        if status == 200 && body["outputs"][0]["data"] == forest["outputs"]["predict"] {
            swapped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(swapped, "the replaced file was not picked up");
    server.stop().await;
}
