//! The pre-deploy gate against the real server: a version the gate refuses is set aside under
//! `_rejected/`, and the server, watching the folder, never lists, loads or serves it.

use std::time::{Duration, Instant};

use ferroserve_train::synth::{SynthConfig, generate};
use ferroserve_train::{
    Dataset, DatasetOptions, Gate, IsolationForestConfig, JobOptions, Thresholds, train_isolation_forest,
};

use crate::client::{Server, request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_version_is_never_served() {
    let work = tempfile::tempdir().unwrap();
    let csv = work.path().join("metrics.csv");
    let data = generate(&SynthConfig { rows: 1500, seed: 5, ..SynthConfig::default() }).unwrap();
    data.write_file(&csv).unwrap();
    let dataset = Dataset::read_csv(&csv, &DatasetOptions::default()).unwrap();
    // The same rows with every label flipped: no detector reaches the accuracy asked for on them.
    let mut flipped = dataset.clone();
    flipped.labels = flipped.labels.map(|l| l.into_iter().map(|a| !a).collect());
    let model_dir = work.path().join("detector");
    let config = IsolationForestConfig { n_estimators: 30, seed: 3, ..IsolationForestConfig::default() };
    let gate = |holdout: &Dataset| Gate {
        thresholds: Thresholds { min_accuracy: Some(0.85), max_latency_ms: Some(100.0), ..Thresholds::default() },
        holdout: Some(holdout.clone()),
        origin: "flags".to_owned(),
    };
    let options = |holdout: &Dataset| JobOptions { gate: Some(gate(holdout)), ..JobOptions::new(&model_dir) };

    let v1 = train_isolation_forest(&dataset, &config, &options(&dataset), &mut ()).unwrap();
    assert!(v1.published() && v1.path.ends_with("v1"), "{}", v1.path.display());
    let server = Server::start(&[
        "--model_name",
        "detector",
        "--model_dir",
        model_dir.to_str().unwrap(),
        "--version_policy",
        "all",
        "--watch",
        "poll",
        "--watch_interval",
        "100ms",
    ])
    .await;

    // Refused while the server watches: set aside, with its own complete artifact.
    let refused = train_isolation_forest(&dataset, &config, &options(&flipped), &mut ()).unwrap();
    assert!(!refused.published());
    assert_eq!(refused.metadata.validation_status.as_deref(), Some("failed"));
    assert!(refused.path.starts_with(model_dir.join("_rejected")), "{}", refused.path.display());
    assert!(refused.path.join("model.json").is_file());
    // A published v2 after it shows the watcher is live, and that the refused one did not take its number.
    let v2 = train_isolation_forest(&dataset, &config, &options(&dataset), &mut ()).unwrap();
    assert!(v2.published() && v2.path.ends_with("v2"), "{}", v2.path.display());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, meta) = server.get("/v2/models/detector").await;
        assert_eq!(status, 200, "{meta}");
        if meta["versions"] == serde_json::json!(["v1", "v2"]) {
            break;
        }
        assert!(Instant::now() < deadline, "v2 not served after 30 s: {meta}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, index) = server.post("/v2/repository/index", &serde_json::json!({})).await;
    assert_eq!(status, 200, "{index}");
    assert!(!index.to_string().contains("_rejected"), "{index}");
    let row = vec![data.rows[0].features().to_vec()];
    let (status, body) = server.post("/v2/models/detector/infer", &request(&row, &[])).await;
    assert_eq!((status, &body["model_version"]), (200, &serde_json::json!("v2")), "{body}");
    let name = refused.path.file_name().unwrap().to_str().unwrap().to_owned();
    for version in [name.as_str(), "_rejected"] {
        let (status, _) =
            server.post(&format!("/v2/models/detector/versions/{version}/infer"), &request(&row, &[])).await;
        assert_eq!(status, 404, "{version}");
    }
    server.stop().await;
}
