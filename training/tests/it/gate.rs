//! The pre-deploy gate, through the binary as a pipeline runs it: real training on small data, real
//! predictions timed on the written model, real sizes on disk; a refused version is set aside where the
//! server's layout code never looks, and the exit code says what happened.

use std::path::Path;
use std::process::Output;

use crate::run;

use ferroserve_formats::ModelMetadata;
use ferroserve_formats::layout::{self, METADATA_JSON};
use serde_json::Value;

const REJECTED_V1: &str = "_rejected/v1-20260112T000000Z";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Synthetic metrics, and the same rows with every label flipped (a model cannot match those).
fn data(dir: &Path, rows: &str) {
    let out = run(dir, &["synth", "--seed", "5", "--rows", rows, "--out", "metrics.csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let label = header.split(',').position(|c| c == "label").unwrap();
    let mut flipped = vec![header.to_owned()];
    let mut unlabelled = vec![header.split(',').filter(|c| *c != "label").collect::<Vec<_>>().join(",")];
    for line in lines {
        let mut cells: Vec<&str> = line.split(',').collect();
        cells[label] = if cells[label] == "1" { "0" } else { "1" };
        flipped.push(cells.join(","));
        cells.remove(label);
        unlabelled.push(cells.join(","));
    }
    std::fs::write(dir.join("flipped.csv"), flipped.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("unlabelled.csv"), unlabelled.join("\n") + "\n").unwrap();
}

fn checks(meta: &ModelMetadata) -> Vec<Value> {
    meta.extra["validation"]["checks"].as_array().unwrap().clone()
}

fn check<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no check {name}: {checks:?}"))
}

fn folder_bytes(dir: &Path) -> u64 {
    crate::tree_bytes(dir).iter().filter(|(n, _)| n != METADATA_JSON).map(|(_, b)| b.len() as u64).sum()
}

const IF_GATE: [&str; 6] = ["--gate-min-accuracy", "0.85", "--gate-max-latency-ms", "100", "--gate-max-size-mb", "100"];

#[test]
fn a_model_that_misses_the_labels_is_set_aside_and_a_good_one_published() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    data(dir, "1500");
    let train = |data: &str| {
        let mut args = vec!["isolation-forest", "--data", data, "--out", "models/detector", "--n-estimators", "30"];
        args.extend_from_slice(&IF_GATE);
        run(dir, &args)
    };
    let model_dir = dir.join("models/detector");

    // Labels the model cannot match: accuracy far below 0.85, so the version is refused.
    let out = train("flipped.csv");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("FAIL accuracy") && err.contains("PASS latency_p99_ms") && err.contains("PASS size_mb"),
        "{err}"
    );
    assert!(err.contains("gate FAILED (accuracy): not published; set aside in models/detector/_rejected/v1-"), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("models/detector/{REJECTED_V1}\n"));
    assert_eq!(crate::names(&model_dir), ["_rejected"], "no v1/, no leftover .v1.tmp/");
    let rejected = model_dir.join(REJECTED_V1);
    let meta = ModelMetadata::read(&rejected.join(METADATA_JSON)).unwrap();
    assert_eq!(meta.validation_status.as_deref(), Some("failed"));
    assert_eq!(meta.version.as_deref(), Some("v1"));
    let c = checks(&meta);
    let accuracy = check(&c, "accuracy");
    assert_eq!((accuracy["passed"].as_bool(), accuracy["threshold"].as_f64()), (Some(false), Some(0.85)));
    assert!(accuracy["measured"].as_f64().unwrap() < 0.2, "{accuracy}");
    // The recorded accuracy is the training evaluation's complement: every prediction is the same, only the
    // labels flipped.
    let training_accuracy = meta.performance_metrics.as_ref().unwrap().accuracy.unwrap();
    assert!((accuracy["measured"].as_f64().unwrap() - training_accuracy).abs() < 1e-12);
    let latency = check(&c, "latency_p99_ms");
    let measured = latency["measured"].as_f64().unwrap();
    assert!(measured > 0.0 && measured < 100.0 && latency["passed"] == true, "{latency}");
    let size = check(&c, "size_mb");
    #[allow(clippy::cast_precision_loss)]
    let on_disk = folder_bytes(&rejected) as f64 / 1e6;
    assert_eq!(size["measured"].as_f64(), Some(on_disk));
    assert!(on_disk > 0.0);
    assert_eq!(meta.extra["validation"]["holdout"]["samples"], 1500);
    // The server's layout code sees no version, and a repository scan no extra model.
    assert!(layout::version_dirs(&model_dir).unwrap().is_empty());
    let models = layout::scan_repository(&dir.join("models")).unwrap();
    assert_eq!(models.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["detector"]);

    // The same run again is set aside beside the first, not over it.
    assert_eq!(train("flipped.csv").status.code(), Some(3));
    assert!(model_dir.join(format!("{REJECTED_V1}-2")).is_dir());

    // The true labels: published as v1 with every check passed.
    let out = train("metrics.csv");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "models/detector/v1\n");
    assert!(err.contains("gate passed: published models/detector/v1"), "{err}");
    let meta = ModelMetadata::read(&model_dir.join("v1").join(METADATA_JSON)).unwrap();
    assert_eq!(meta.validation_status.as_deref(), Some("passed"));
    let c = checks(&meta);
    assert_eq!(c.len(), 3);
    assert!(c.iter().all(|c| c["passed"] == true), "{c:?}");
    assert!(check(&c, "accuracy")["measured"].as_f64().unwrap() > 0.85);
    let versions = layout::version_dirs(&model_dir).unwrap();
    assert_eq!(versions.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["v1"]);
    assert!(matches!(layout::inspect(&model_dir).unwrap(), layout::ModelLayout::Versioned(v) if v.len() == 1));

    // A refused v2 does not hide v1, and is numbered after it.
    let out = train("flipped.csv");
    assert_eq!(out.status.code(), Some(3));
    assert!(model_dir.join("_rejected/v2-20260112T000000Z").is_dir());
    assert_eq!(layout::version_dirs(&model_dir).unwrap().len(), 1);

    // `serving` lists what serves, and what the gate set aside with the checks it failed.
    let out = run(dir, &["serving", "--model-dir", "models/detector"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(shown.starts_with("versions: v1\n"), "{shown}");
    let rejected: Vec<&str> = shown.lines().filter(|l| l.starts_with("rejected: ")).collect();
    assert_eq!(rejected.len(), 3, "{shown}");
    assert!(rejected[0].starts_with("rejected: v1-20260112T000000Z (accuracy 0.0"), "{shown}");
    assert!(rejected[0].ends_with(" < 0.85)") && rejected[2].starts_with("rejected: v2-"), "{shown}");
}

#[test]
fn a_gate_file_and_a_separate_holdout() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    data(dir, "800");
    std::fs::write(dir.join("gate.json"), r#"{"min_recall": 0.5, "max_size_mb": 0.000001}"#).unwrap();
    // The file's size limit cannot be met; the flag beside it wins for recall.
    let args = ["isolation-forest", "--data", "unlabelled.csv", "--out", "m", "--n-estimators", "10"];
    let gated = [&args[..], &["--gate", "gate.json", "--holdout", "metrics.csv", "--gate-min-recall", "0.01"]].concat();
    let out = run(dir, &gated);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("pre-deploy gate (gate.json), 800 samples of metrics.csv"), "{err}");
    let meta = ModelMetadata::read(&dir.join("m").join(REJECTED_V1).join(METADATA_JSON)).unwrap();
    let c = checks(&meta);
    assert_eq!(check(&c, "recall")["threshold"].as_f64(), Some(0.01));
    assert_eq!(check(&c, "size_mb")["passed"], false);
    assert_eq!(meta.extra["validation"]["gate"], "gate.json");
    assert_eq!(meta.extra["validation"]["holdout"]["path"], "metrics.csv");
}

#[test]
fn a_gate_that_cannot_be_measured_is_a_usage_error() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    data(dir, "200");
    std::fs::write(dir.join("typo.json"), r#"{"min_acuracy": 0.85}"#).unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &["--data", "unlabelled.csv", "--gate-min-accuracy", "0.85"],
            "the gate checks accuracy but unlabelled.csv has no label column",
        ),
        (&["--data", "metrics.csv", "--holdout", "unlabelled.csv", "--gate-min-f1", "0.5"], "checks f1"),
        (&["--data", "metrics.csv", "--holdout", "metrics.csv"], "--holdout is the gate's data, but no gate limit"),
        (&["--data", "metrics.csv", "--gate", "typo.json"], "gate file typo.json: unknown field `min_acuracy`"),
        (&["--data", "metrics.csv", "--gate", "missing.json"], "gate file missing.json: No such file"),
        (&["--data", "metrics.csv", "--gate-min-accuracy", "85"], "--gate-min-accuracy = 85: must be in [0, 1]"),
    ];
    for (args, message) in cases {
        let all = [&["isolation-forest", "--out", "m", "--n-estimators", "5"][..], args].concat();
        let out = run(dir, &all);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("ferroserve-train: ") && err.contains(message), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!dir.join("m").exists(), "{args:?} wrote something");
    }
    // Without any limit nothing is gated: published, validation pending.
    let out = run(dir, &["isolation-forest", "--out", "m", "--n-estimators", "5", "--data", "unlabelled.csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let meta = ModelMetadata::read(&dir.join("m/v1").join(METADATA_JSON)).unwrap();
    assert_eq!(meta.validation_status.as_deref(), Some("pending"));
    assert!(!meta.extra.contains_key("validation"));
}

#[test]
fn the_lstm_autoencoder_is_gated_on_timed_windows() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    data(dir, "240");
    let lstm = [
        "lstm-autoencoder",
        "--data",
        "metrics.csv",
        "--out",
        "lstm",
        "--window",
        "10",
        "--stride",
        "5",
        "--hidden-size",
        "8",
        "--epochs",
        "2",
        "--gate-max-latency-ms",
        "1000",
    ];
    // The size limit is below the weights' bytes: refused.
    let out = run(dir, &[&lstm[..], &["--gate-max-size-mb", "0.001"]].concat());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let rejected = dir.join("lstm").join(REJECTED_V1);
    let meta = ModelMetadata::read(&rejected.join(METADATA_JSON)).unwrap();
    assert_eq!(meta.validation_status.as_deref(), Some("failed"));
    let c = checks(&meta);
    assert_eq!(check(&c, "size_mb")["passed"], false);
    assert!(check(&c, "latency_p99_ms")["measured"].as_f64().unwrap() > 0.0);
    // (240 - 10) / 5 + 1 windows, each predicted alone.
    assert_eq!(meta.extra["validation"]["holdout"]["samples"], 47);
    assert!(layout::version_dirs(&dir.join("lstm")).unwrap().is_empty());

    let out = run(dir, &[&lstm[..], &["--gate-max-size-mb", "100", "--gate-min-recall", "0"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let meta = ModelMetadata::read(&dir.join("lstm/v1").join(METADATA_JSON)).unwrap();
    assert_eq!(meta.validation_status.as_deref(), Some("passed"));
    assert_eq!(checks(&meta).len(), 3);
}

/// `--canary`: the trained version is published as a canary beside the version serving today, never as the
/// newest version taking all traffic; a refused version leaves serving.json as it was.
#[test]
fn canary_publishes_beside_the_serving_version() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    data(dir, "1200");
    let train = |data: &str, extra: &[&str]| {
        let mut args = vec!["isolation-forest", "--data", data, "--out", "models/detector", "--n-estimators", "20"];
        args.extend_from_slice(extra);
        run(dir, &args)
    };
    let serving = || std::fs::read_to_string(dir.join("models/detector/serving.json")).ok();

    // The first version has nothing to share traffic with: it serves alone, and no serving.json is written.
    let out = train("metrics.csv", &["--canary", "10"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("v1 is the model's first version"), "{}", stderr(&out));
    assert_eq!(serving(), None);

    // The second: v1 pinned as the default first, then v2 at 10 %.
    let out = train("metrics.csv", &["--canary", "10"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config: Value = serde_json::from_str(&serving().unwrap()).unwrap();
    assert_eq!(config, serde_json::json!({"default": "v1", "canary": {"version": "v2", "percent": 10}}));

    // A refused third changes nothing the server reads.
    let before = serving();
    let mut gated = vec!["--canary", "50"];
    gated.extend_from_slice(&IF_GATE);
    let out = train("flipped.csv", &gated);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(serving(), before);
    let names: Vec<String> =
        layout::version_dirs(&dir.join("models/detector")).unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(names, ["v1", "v2"]);

    // `latest` names the newest folder wherever a version is named.
    let out = run(dir, &["promote", "--model-dir", "models/detector", "--version", "latest"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config: Value = serde_json::from_str(&serving().unwrap()).unwrap();
    assert_eq!(config, serde_json::json!({"default": "v2"}));
    let out = run(dir, &["isolation-forest", "--data", "metrics.csv", "--out", "models/detector", "--canary", "101"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
