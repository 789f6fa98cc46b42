//! `promote`, `canary`, `rollback` and `serving`: serving.json rewritten as a rollout needs, and left
//! untouched when a command is refused.

use std::path::Path;
use std::process::{Command, Output};

use ferroserve_formats::serving::SERVING_JSON;
use serde_json::{Value, json};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferroserve-train")).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

fn serving(dir: &Path) -> Option<Value> {
    std::fs::read(dir.join(SERVING_JSON)).ok().map(|b| serde_json::from_slice(&b).unwrap())
}

#[test]
fn a_canary_rollout_then_a_rollback() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    for v in ["v1", "v2", "v3"] {
        std::fs::create_dir(dir.join(v)).unwrap();
    }
    let d = dir.to_str().unwrap();
    assert_eq!(
        ok(&["serving", "--model-dir", d]),
        "versions: v1, v2, v3\ndefault:  v3 (the highest)\ncanary:   none\n"
    );

    // 10 % to v3, with the default pinned to the version answering today.
    let out = ok(&["canary", "--model-dir", d, "--version", "3", "--percent", "10"]);
    assert!(
        out.contains(r#"serving.json: (none) -> {"default":"v2","canary":{"version":"v3","percent":10}}"#),
        "{out}"
    );
    assert_eq!(serving(dir), Some(json!({"default": "v2", "canary": {"version": "v3", "percent": 10}})));
    ok(&["canary", "--model-dir", d, "--version", "v3", "--percent", "50"]);
    assert_eq!(serving(dir), Some(json!({"default": "v2", "canary": {"version": "v3", "percent": 50}})));
    assert_eq!(ok(&["serving", "--model-dir", d]), "versions: v1, v2, v3\ndefault:  v2\ncanary:   v3 at 50%\n");

    // A bad canary: ends the canary, the default keeps everything.
    let out = ok(&["rollback", "--model-dir", d]);
    assert!(out.contains("(canary `v3` ended; all traffic to the default)"), "{out}");
    assert_eq!(serving(dir), Some(json!({"default": "v2"})));

    // A good one: promoted, then a bad release found later: back one version, then to v1 explicitly.
    ok(&["canary", "--model-dir", d, "--version", "v3", "--percent", "10"]);
    ok(&["promote", "--model-dir", d, "--version", "v3"]);
    assert_eq!(serving(dir), Some(json!({"default": "v3"})));
    assert!(ok(&["rollback", "--model-dir", d]).contains("(default `v3` → `v2`)"));
    ok(&["rollback", "--model-dir", d, "--to", "1"]);
    assert_eq!(serving(dir), Some(json!({"default": "v1"})));
    let leftovers: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(!leftovers.iter().any(|n| n.starts_with('.')), "no temporary file is left: {leftovers:?}");
}

#[test]
fn refused_commands_change_nothing() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    std::fs::create_dir(dir.join("v1")).unwrap();
    std::fs::create_dir(dir.join("v2")).unwrap();
    let d = dir.to_str().unwrap();
    ok(&["promote", "--model-dir", d, "--version", "v1"]);
    let before = std::fs::read(dir.join(SERVING_JSON)).unwrap();
    let err = fails(&["promote", "--model-dir", d, "--version", "v9"]);
    assert!(err.contains("no version folder `v9`; versions: v1, v2"), "{err}");
    let err = fails(&["canary", "--model-dir", d, "--version", "v2", "--percent", "101"]);
    assert!(err.contains("percent 101 is over 100"), "{err}");
    let err = fails(&["canary", "--model-dir", d, "--version", "v1", "--percent", "5"]);
    assert!(err.contains("already the default"), "{err}");
    let err = fails(&["rollback", "--model-dir", d]);
    assert!(err.contains("no version older than `v1`"), "{err}");
    assert_eq!(std::fs::read(dir.join(SERVING_JSON)).unwrap(), before, "untouched");

    std::fs::write(dir.join(SERVING_JSON), "{broken").unwrap();
    let err = fails(&["promote", "--model-dir", d, "--version", "v2"]);
    assert!(err.contains(SERVING_JSON), "{err}");
    assert_eq!(std::fs::read(dir.join(SERVING_JSON)).unwrap(), b"{broken", "a broken file is not overwritten blindly");

    let bare = tempfile::tempdir().unwrap();
    let err = fails(&["promote", "--model-dir", bare.path().to_str().unwrap(), "--version", "v1"]);
    assert!(err.contains("not a versioned model folder"), "{err}");
}

/// `reference` writes the training distribution beside a model trained elsewhere, keeping its other metadata.
#[test]
fn reference_writes_the_training_distribution_beside_a_model() {
    let root = tempfile::tempdir().unwrap();
    let csv = root.path().join("train.csv");
    let mut text = String::from("timestamp,cpu,mem,label\n");
    for i in 0..200 {
        text.push_str(&format!(
            "2026-01-05T00:{:02}:00Z,{},{},{}\n",
            i % 60,
            i % 10,
            50 + i % 7,
            i32::from(i % 50 == 0)
        ));
    }
    std::fs::write(&csv, text).unwrap();
    let model = root.path().join("v1");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(model.join("metadata.json"), r#"{"version": "v1", "owner": "team-sre"}"#).unwrap();
    let out = ok(&["reference", "--data", csv.to_str().unwrap(), "--model-dir", model.to_str().unwrap()]);
    assert!(out.contains("reference distribution of 200 rows, features cpu, mem"), "{out}");
    let written: Value = serde_json::from_slice(&std::fs::read(model.join("metadata.json")).unwrap()).unwrap();
    assert_eq!((&written["version"], &written["owner"]), (&json!("v1"), &json!("team-sre")), "kept: {written}");
    let features = written["reference_distribution"]["features"].as_array().unwrap();
    assert_eq!(features.len(), 2);
    assert_eq!((&features[0]["name"], &features[0]["count"]), (&json!("cpu"), &json!(200)));
    assert_eq!(features[0]["quantiles"].as_array().unwrap().len(), 101);
    let err = fails(&["reference", "--data", csv.to_str().unwrap(), "--model-dir", "/nonexistent/model"]);
    assert!(err.contains("is not a folder"), "{err}");
}

/// A one-tree IsolationForest over `features` columns, saved as version folder `dir`.
fn detector(dir: &Path, features: usize) {
    use ferroserve_formats::NativeModel;
    use ferroserve_formats::tree::{DecisionTree, IsolationForest, IsolationForestParams};
    let tree = DecisionTree {
        children_left: vec![1, -1, -1],
        children_right: vec![2, -1, -1],
        feature: vec![0, -2, -2],
        threshold: vec![0.5, -2.0, -2.0],
        n_node_samples: vec![4, 3, 1],
    };
    let params = IsolationForestParams::with_max_samples(4);
    let forest = IsolationForest::new(params, features, None, vec![tree], vec![vec![0]]).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    NativeModel::IsolationForest(forest).save(dir).unwrap();
}

/// A version that takes other inputs cannot share traffic with the one serving: requests written for it
/// would fail. `canary` and `promote` refuse it and leave serving.json as it was.
#[test]
fn versions_with_other_inputs_never_share_traffic() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let d = dir.to_str().unwrap();
    detector(&dir.join("v1"), 2);
    detector(&dir.join("v2"), 2);
    detector(&dir.join("v3"), 3);
    let err = fails(&["canary", "--model-dir", d, "--version", "v3", "--percent", "10"]);
    assert!(err.contains("the canary `v3` cannot share traffic with `v2`"), "{err}");
    assert!(err.contains("[N") || err.contains("input-0"), "the message shows the inputs: {err}");
    assert_eq!(serving(dir), None, "nothing written");
    // Two versions with the same inputs: fine.
    std::fs::remove_dir_all(dir.join("v3")).unwrap();
    let out = ok(&["canary", "--model-dir", d, "--version", "v2", "--percent", "10"]);
    assert!(out.contains(r#""canary":{"version":"v2","percent":10}"#), "{out}");
    // Promoting a version with other inputs over the default is refused too.
    detector(&dir.join("v4"), 3);
    let before = serving(dir);
    let err = fails(&["promote", "--model-dir", d, "--version", "v4"]);
    assert!(err.contains("the new default `v4` cannot share traffic with `v1`"), "{err}");
    assert_eq!(serving(dir), before, "serving.json unchanged");
}
