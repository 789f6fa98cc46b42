//! The monitoring manifests use only metrics Ferroserve exports: every metric name in the PrometheusRule's
//! expressions and the Grafana dashboard's queries is scraped from a real server after real traffic.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

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
