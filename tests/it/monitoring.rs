//! The monitoring manifests use only metrics Ferroserve exports: every metric name in the PrometheusRule's
//! expressions and the Grafana dashboard's queries is scraped from a real server after real traffic.
//!
//! The rules' own unit tests (`servingruntime-manifests/monitoring/tests/*.test.yaml`) run under `promtool test
//! rules` against the PrometheusRule's `spec`, extracted here into a plain rules file, so the rules are kept in one
//! place. That test needs promtool: it is `#[ignore]`d (cargo reports it as ignored, with the reason) and
//! `tests/prometheus/check.sh` installs Prometheus where it can and runs it with `--ignored`. A real Prometheus
//! scraping the binary is in the runtime's tests (`runtime/tests/it/prometheus.rs`), which can start the binary.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::client::{Server, request};

fn monitoring_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../servingruntime-manifests/monitoring")
}

/// PromQL function names and keywords that look like metric names.
const PROMQL_WORDS: [&str; 20] = [
    "sum",
    "by",
    "rate",
    "increase",
    "histogram_quantile",
    "min",
    "max",
    "avg",
    "without",
    "on",
    "and",
    "or",
    "unless",
    "le",
    "bool",
    "offset",
    "count",
    "label_values",
    "humanizePercentage",
    "humanizeDuration",
];

/// The metric names a PromQL expression reads: identifiers with an underscore (every metric name here has one; the
/// label names in `by (…)` lists do not) outside braces and strings, that are not functions or keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut depth = 0;
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            depth += 1;
        } else if c == '}' {
            depth -= 1;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
        } else if depth == 0 && (c.is_ascii_alphabetic() || c == '_') {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
            if next != Some('(') && !PROMQL_WORDS.contains(&word.as_str()) && word.contains('_') {
                names.insert(word);
            }
            continue;
        }
        i += 1;
    }
    names
}

#[test]
fn the_extractor_finds_metrics_only() {
    let names = metric_names(
        r#"histogram_quantile(0.95, sum by (le, model, version) (rate(kserve_inference_latency_bucket{model=~"$model"}[5m]))) > 0.05"#,
    );
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["kserve_inference_latency_bucket"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_manifests_use_is_exported() {
    // Expressions from the rules and the dashboard.
    let mut exprs = Vec::new();
    let rules: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(monitoring_dir().join("prometheusrule.yaml")).unwrap())
            .unwrap();
    for group in rules["spec"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            exprs.push(rule["expr"].as_str().unwrap().to_owned());
        }
    }
    let alerts: Vec<&str> = rules["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter().map(|r| r["alert"].as_str().unwrap()))
        .collect();
    for wanted in ["ModelAccuracyDegraded", "ModelInputDrift", "ModelErrorRateHigh", "ModelLatencyP95High"] {
        assert!(alerts.contains(&wanted), "{wanted} in {alerts:?}");
    }
    let accuracy = &rules["spec"]["groups"][0]["rules"][0];
    assert_eq!((accuracy["expr"].as_str().unwrap().ends_with("< 0.85"), accuracy["for"].as_str()), (true, Some("1h")));
    let dashboard: Value =
        serde_json::from_slice(&std::fs::read(monitoring_dir().join("grafana-dashboard.json")).unwrap()).unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(used.len() >= 20, "{used:?}");

    // A real server after real traffic, with a drift window and feedback, exports them.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models");
    let server = Server::start(&["--model_repository", root.to_str().unwrap()]).await;
    // A normal row and a saturated one (predicted -1: an anomaly, so precision and recall are defined), a request
    // the model refuses (an error), feedback on the first.
    let rows = [vec![30.0, 60.0, 90.0, 0.0, 0.0, 180.0], vec![99.0, 97.0, 2400.0, 0.4, 3.0, 320.0]];
    let (status, body) = server.post("/v2/models/anomaly-detector/infer", &request(&rows, &["predict"])).await;
    assert_eq!((status, &body["outputs"][0]["data"]), (200, &serde_json::json!([1, -1])), "{body}");
    assert_eq!(server.post("/v2/models/anomaly-detector/infer", &request(&[vec![1.0]], &[])).await.0, 400);
    let feedback = serde_json::json!({"id": "it-1", "labels": [1, -1]});
    assert_eq!(server.post("/v2/models/anomaly-detector/feedback", &feedback).await.0, 200);
    let window: Vec<Vec<f64>> = (0..30).map(|_| vec![30.0, 60.0, 90.0, 0.0, 0.0, 180.0]).collect();
    let body = serde_json::json!({"inputs": [{"name": "x", "shape": [1, 30, 6], "datatype": "FP64", "data": window}]});
    assert_eq!(server.post("/v2/models/lstm-detector/infer", &body).await.0, 200);
    let text = server.get_text("/metrics").await;
    let exported: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .flat_map(|l| {
            let mut parts = l.split_whitespace();
            let (name, kind) = (parts.next().unwrap().to_owned(), parts.next().unwrap_or(""));
            if kind == "histogram" {
                vec![format!("{name}_bucket"), format!("{name}_sum"), format!("{name}_count"), name]
            } else {
                vec![name]
            }
        })
        .collect();
    let missing: Vec<&String> = used.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(missing.is_empty(), "the manifests use metrics Ferroserve does not export: {missing:?}");
    server.stop().await;
}

/// `name` on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// Runs `promtool` with `args` in `dir`; panics, with its output, unless it succeeds.
fn promtool(promtool: &Path, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(promtool).args(args).current_dir(dir).output().expect("promtool runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
#[ignore = "needs promtool (`promtool` on PATH or $PROMTOOL); tests/prometheus/check.sh runs it with --ignored"]
fn alert_rules_pass_their_promtool_tests() {
    let promtool_bin = std::env::var_os("PROMTOOL")
        .map(PathBuf::from)
        .or_else(|| on_path("promtool"))
        .expect("no `promtool` on PATH and $PROMTOOL is unset (tests/prometheus/check.sh installs it where it can)");
    let rule: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(monitoring_dir().join("prometheusrule.yaml")).unwrap())
            .unwrap();
    let alerts: BTreeSet<String> = rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter().map(|r| r["alert"].as_str().unwrap().to_owned()))
        .collect();

    // The rules file the tests name (`rule_files: [rules.yaml]`), beside copies of the tests.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), serde_yaml_ng::to_string(&rule["spec"]).unwrap()).unwrap();
    let out = promtool(&promtool_bin, dir.path(), &["check", "rules", "rules.yaml"]);
    assert!(out.contains(&format!("SUCCESS: {} rules found", alerts.len())), "{out}");

    // Every alert has a case where it fires and one where it stays silent.
    let (mut fires, mut silent, mut cases) = (BTreeSet::new(), BTreeSet::new(), 0);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(monitoring_dir().join("tests")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if !name.ends_with(".test.yaml") {
            continue;
        }
        let tests: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(tests["rule_files"], serde_json::json!(["rules.yaml"]), "{name}");
        for test in tests["tests"].as_array().unwrap() {
            for case in test["alert_rule_test"].as_array().unwrap() {
                let alert = case["alertname"].as_str().unwrap().to_owned();
                assert!(alerts.contains(&alert), "{name}: {alert} is not a rule");
                match case["exp_alerts"].as_array().map_or(0, Vec::len) {
                    0 => silent.insert(alert),
                    _ => fires.insert(alert),
                };
                cases += 1;
            }
        }
        std::fs::copy(&path, dir.path().join(&name)).unwrap();
        files.push(name);
    }
    files.sort();
    assert_eq!(fires, alerts, "alerts with no test that they fire");
    assert_eq!(silent, alerts, "alerts with no test that they stay silent");

    let mut args = vec!["test", "rules"];
    args.extend(files.iter().map(String::as_str));
    let out = promtool(&promtool_bin, dir.path(), &args);
    assert_eq!(out.matches("SUCCESS").count(), files.len(), "{out}");
    eprintln!("promtool: {} rules checked, {cases} cases in {} files passed", alerts.len(), files.len());
}
