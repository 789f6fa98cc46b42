//! The binary as a user (and `examples/regenerate.sh`) runs it.

use std::path::Path;
use std::process::Command;

use crate::run;

use ferroserve_formats::ModelMetadata;
use ferroserve_formats::layout::METADATA_JSON;

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// What regenerate.sh does, at a smaller scale.
fn regenerate(dir: &Path) {
    ok(dir, &["synth", "--seed", "5", "--rows", "3000", "--out", "metrics.csv"]);
    let v1 = ok(
        dir,
        &[
            "isolation-forest",
            "--data",
            "metrics.csv",
            "--out",
            "models/detector",
            "--seed",
            "1",
            "--git-commit",
            "none",
        ],
    );
    assert_eq!(v1, "models/detector/v1\n");
    let v2 = ok(
        dir,
        &[
            "isolation-forest",
            "--data",
            "metrics.csv",
            "--out",
            "models/detector",
            "--n-estimators",
            "60",
            "--max-samples",
            "512",
            "--max-features",
            "0.5",
            "--bootstrap",
            "--contamination",
            "0.03",
            "--seed",
            "2",
            "--git-commit",
            "none",
        ],
    );
    assert_eq!(v2, "models/detector/v2\n");
}

#[test]
fn two_runs_give_byte_identical_files() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    regenerate(a.path());
    regenerate(b.path());
    let files = crate::tree_bytes(a.path());
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "metrics.csv",
            "models/detector/v1/metadata.json",
            "models/detector/v1/model.json",
            "models/detector/v1/model.safetensors",
            "models/detector/v1/training.svg",
            "models/detector/v2/metadata.json",
            "models/detector/v2/model.json",
            "models/detector/v2/model.safetensors",
            "models/detector/v2/training.svg",
        ]
    );
    for ((name, x), (_, y)) in files.iter().zip(crate::tree_bytes(b.path())) {
        assert!(*x == y, "{name} differs between two runs");
    }
    // The versions differ from each other (other hyper-parameters, other seed).
    assert_ne!(files[3].1, files[6].1);
}

#[test]
fn metadata_records_the_command_line_and_time() {
    let dir = tempfile::tempdir().unwrap();
    regenerate(dir.path());
    let meta = |v: &str| ModelMetadata::read(&dir.path().join("models/detector").join(v).join(METADATA_JSON)).unwrap();
    let (m1, m2) = (meta("v1"), meta("v2"));
    assert_eq!(
        m1.training_command.as_deref(),
        Some("ferroserve-train isolation-forest --data metrics.csv --out models/detector --seed 1 --git-commit none")
    );
    assert_eq!(m1.created_at.as_deref(), Some("2026-01-12T00:00:00Z"));
    assert_eq!((m1.git_commit, m1.model_name.as_deref(), m1.version.as_deref()), (None, Some("detector"), Some("v1")));
    let hp = m2.hyperparameters.unwrap();
    assert_eq!(
        (hp["max_samples"].as_u64(), hp["max_features"].as_f64(), hp["bootstrap"].as_bool()),
        (Some(512), Some(0.5), Some(true))
    );
    assert_eq!((hp["resolved"]["max_samples"].as_u64(), hp["resolved"]["max_features"].as_u64()), (Some(512), Some(3)));
    let flagged = m2.performance_metrics.unwrap().extra["anomaly_rate"].as_f64().unwrap();
    assert!((flagged - 0.03).abs() < 0.002, "{flagged}");

    // --git-commit: a SHA is recorded as given; auto outside a repository records nothing.
    let out = ok(
        dir.path(),
        &[
            "isolation-forest",
            "--data",
            "metrics.csv",
            "--out",
            "other",
            "--n-estimators",
            "3",
            "--git-commit",
            "abc123f",
            "--model-name",
            "custom",
        ],
    );
    let m = ModelMetadata::read(&dir.path().join(out.trim()).join(METADATA_JSON)).unwrap();
    assert_eq!((m.git_commit.as_deref(), m.model_name.as_deref()), (Some("abc123f"), Some("custom")));
    let out = ok(dir.path(), &["isolation-forest", "--data", "metrics.csv", "--out", "other", "--n-estimators", "3"]);
    assert_eq!(out, "other/v2\n");
    assert_eq!(ModelMetadata::read(&dir.path().join("other/v2").join(METADATA_JSON)).unwrap().git_commit, None);
    let out = ok(
        dir.path(),
        &["isolation-forest", "--data", "metrics.csv", "--out", "other", "--n-estimators", "3", "--version", "9"],
    );
    assert_eq!(out, "other/v9\n");
}

#[test]
fn synth_writes_the_same_bytes_to_stdout_and_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = ok(
        dir.path(),
        &["synth", "--rows", "50", "--seed", "3", "--start", "2026-03-01T12:00:00Z", "--interval-secs", "30"],
    );
    let summary = ok(
        dir.path(),
        &[
            "synth",
            "--rows",
            "50",
            "--seed",
            "3",
            "--start",
            "2026-03-01T12:00:00Z",
            "--interval-secs",
            "30",
            "--out",
            "s.csv",
        ],
    );
    assert_eq!(stdout.as_bytes(), std::fs::read(dir.path().join("s.csv")).unwrap());
    // Writing a file says what it wrote.
    let label = stdout.lines().next().unwrap().split(',').position(|c| c == "label").unwrap();
    let anomalies = stdout.lines().skip(1).filter(|l| l.split(',').nth(label) == Some("1")).count();
    assert_eq!(summary, format!("s.csv: 50 rows, {anomalies} labelled anomalies (seed 3)\n"));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 51);
    assert!(lines[1].starts_with("2026-03-01T12:00:00Z,") && lines[2].starts_with("2026-03-01T12:00:30Z,"));
}

#[test]
fn bad_data_fails_clearly_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.csv"), "timestamp,cpu_usage,memory_usage\nt0,1,2\nt1,3,oops\n").unwrap();
    std::fs::write(dir.path().join("empty.csv"), "timestamp,cpu_usage\n").unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["--data", "bad.csv"], "bad.csv: row 2 (line 3), column `memory_usage`: not a number (found `oops`)"),
        (&["--data", "empty.csv"], "empty.csv: no data rows"),
        (&["--data", "missing.csv"], "missing.csv: No such file"),
        (&["--data", "bad.csv", "--features", "cpu_usage,gpu"], "no column `gpu` (the feature column)"),
        (&["--data", "bad.csv", "--features", "cpu_usage", "--max-samples", "1000"], ""),
    ];
    for (args, message) in cases {
        let mut all = vec!["isolation-forest", "--out", "model"];
        all.extend_from_slice(args);
        let out = run(dir.path(), &all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if message.is_empty() {
            // Valid data with an oversized max_samples: scikit-learn's warning, then success.
            assert!(out.status.success(), "{stderr}");
            assert!(
                stderr.contains("warning: max_samples (1000) is greater than the total number of samples (2)"),
                "{stderr}"
            );
            continue;
        }
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty());
        assert!(!dir.path().join("model").exists() || crate::names(&dir.path().join("model")).is_empty());
    }
    assert_eq!(crate::names(&dir.path().join("model")), ["v1"]);
    assert!(
        !run(dir.path(), &["isolation-forest", "--data", "bad.csv", "--out", "model", "--version", "0"])
            .status
            .success()
    );
    let out = run(dir.path(), &["isolation-forest", "--data", "bad.csv", "--out", "model", "--git-commit", "main"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--git-commit `main`"));
}

/// User errors are one line on standard error and exit code 1, never a stack trace, even with
/// `RUST_BACKTRACE=1` set.
#[test]
fn user_errors_print_no_stack_trace() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferroserve-train"))
        .args(["isolation-forest", "--data", "missing.csv", "--out", "model"])
        .current_dir(dir.path())
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("ferroserve-train: missing.csv: No such file"), "{stderr}");
    assert!(!stderr.contains("Stack backtrace") && !stderr.contains("stack backtrace"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(stderr.matches("No such file").count(), 1, "the OS's message once: {stderr}");
}

/// `reference` takes one version's folder: pointed at the folder of versions (as promote/canary take), it
/// says so and writes nothing.
#[test]
fn reference_refuses_the_folder_of_versions() {
    let dir = tempfile::tempdir().unwrap();
    ok(dir.path(), &["synth", "--seed", "5", "--rows", "500", "--out", "metrics.csv"]);
    ok(dir.path(), &["isolation-forest", "--data", "metrics.csv", "--out", "model", "--n-estimators", "10"]);
    let out = run(dir.path(), &["reference", "--data", "metrics.csv", "--model-dir", "model"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "model holds version folders (v1/): --model-dir of `reference` is one version's folder, e.g. model/v1"
        ),
        "{stderr}"
    );
    assert!(!dir.path().join("model").join(METADATA_JSON).exists());
    let out = run(dir.path(), &["reference", "--data", "metrics.csv", "--model-dir", "."]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds no model"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.path().join(METADATA_JSON).exists());
    ok(dir.path(), &["reference", "--data", "metrics.csv", "--model-dir", "model/v1"]);
}

/// An output file's folder is made, as for any output path (`--out data/week.csv`).
#[test]
fn output_folders_are_made() {
    let dir = tempfile::tempdir().unwrap();
    ok(dir.path(), &["synth", "--seed", "5", "--rows", "100", "--out", "new/folder/metrics.csv"]);
    assert!(dir.path().join("new/folder/metrics.csv").is_file());
    std::fs::write(dir.path().join("file"), "").unwrap();
    let out = run(dir.path(), &["synth", "--rows", "100", "--out", "file/metrics.csv"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("file: cannot make the folder of --out"), "{stderr}");
}
