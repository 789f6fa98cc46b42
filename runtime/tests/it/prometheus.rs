//! A real Prometheus scraping the real binary: every query of the Grafana dashboard and every alert of the
//! PrometheusRule (in `servingruntime-manifests/monitoring/`) asked of Prometheus's HTTP API after known traffic.
//!
//! The binary serves the example models and a model whose only version is broken (so: a load failure, a model
//! that is not ready, and 5xx answers); Prometheus (the `prometheus` on `PATH`, or `$PROMETHEUS`) scrapes it every
//! second and evaluates the rules extracted from the PrometheusRule. Both listen on free ports of 127.0.0.1 and
//! are stopped by their PIDs. Checked:
//! - every dashboard query, with `$model` as Grafana's "All", returns a non-empty vector (instant query) and
//!   matrix (range query) of finite values, with exactly the `by (…)` labels when it aggregates, and the
//!   dashboard variable's `label_values` lists the served models;
//! - every alert's expression without its threshold returns the labels its annotations use, for the models
//!   the traffic reaches;
//! - the alerts Prometheus itself reports pending or firing are exactly those the traffic should raise.
//!
//! The test is `#[ignore]`d (cargo reports it as ignored, with the reason): `tests/prometheus/check.sh`
//! installs Prometheus when it can and runs it with `--ignored`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

fn monitoring_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../servingruntime-manifests/monitoring")
}

/// `name` on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A child process, killed when dropped; its output goes to `log`, printed if the test fails.
struct Process {
    name: &'static str,
    child: tokio::process::Child,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &'static str, program: &Path, args: &[String], log: PathBuf) -> Process {
        let out = std::fs::File::create(&log).unwrap();
        let child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} ({}) did not start: {e}", program.display()));
        Process { name, child, log }
    }

    /// Panics, with the log, if the process has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited ({status}):\n{}", self.name, std::fs::read_to_string(&self.log).unwrap_or_default());
        }
    }

    /// SIGTERM by PID, then SIGKILL if it has not exited within 10 s.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
            if tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.is_err() {
                let _ = self.child.kill().await;
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("--- last lines of {}'s log:", self.name);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// One HTTP/1.0 exchange (so that neither server chunks its answer): status and body.
async fn http(addr: SocketAddr, method: &str, target: &str, body: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!(
            "{method} {target} HTTP/1.0\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {target}: no answer in 30 s"))
        .unwrap_or_else(|e| panic!("{method} {target}: {e}"));
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, body.to_owned())
}

async fn post_json(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let (status, text) = http(addr, "POST", path, &body.to_string()).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Percent-encoding of a query parameter's value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus's HTTP API.
struct Prometheus {
    addr: SocketAddr,
}

impl Prometheus {
    /// `GET /api/v1/<path>?<params>`: the `data` of a successful answer; panics on an error answer.
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
        let (status, body) = http(self.addr, "GET", &format!("/api/v1/{path}?{}", query.join("&")), "").await;
        let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert_eq!((status, answer["status"].as_str()), (200, Some("success")), "{path} {params:?}: {body}");
        answer["data"].clone()
    }

    /// An instant query's series.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api("query", &[("query", expr)]).await;
        assert_eq!(data["resultType"], "vector", "{expr}: {data}");
        data["result"].as_array().unwrap().clone()
    }

    /// The instant query's series once there are any, or none after `deadline`.
    async fn query_until_data(&self, expr: &str, deadline: Instant) -> Vec<Value> {
        loop {
            let result = self.query(expr).await;
            if !result.is_empty() || Instant::now() > deadline {
                return result;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// A range query over the last 30 s, every second.
    async fn query_range(&self, expr: &str) -> Vec<Value> {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64();
        let (start, end) = (format!("{:.3}", now - 30.0), format!("{now:.3}"));
        let data = self.api("query_range", &[("query", expr), ("start", &start), ("end", &end), ("step", "1")]).await;
        assert_eq!(data["resultType"], "matrix", "{expr}: {data}");
        data["result"].as_array().unwrap().clone()
    }
}

/// The label names of a series, without `__name__`.
fn label_names(series: &Value) -> BTreeSet<String> {
    series["metric"].as_object().unwrap().keys().filter(|k| *k != "__name__").cloned().collect()
}

/// `labels` less `version` for the broken model: its requests fail before a version is chosen and count under
/// `version=""`, which Prometheus stores as no label at all.
fn required(labels: &BTreeSet<String>, series: &Value) -> BTreeSet<String> {
    let broken = series["metric"]["model"] == "broken";
    labels.iter().filter(|l| !(broken && *l == "version")).cloned().collect()
}

/// The labels of the outermost `by (…)` of an expression (without `le`, which histogram_quantile consumes), or
/// `Some(empty)` for an aggregation without `by`; `None` when the expression does not aggregate.
fn aggregated_labels(expr: &str) -> Option<BTreeSet<String>> {
    if let Some(at) = expr.find(" by (") {
        let rest = &expr[at + " by (".len()..];
        let list = &rest[..rest.find(')').unwrap()];
        return Some(list.split(',').map(str::trim).filter(|l| *l != "le").map(str::to_owned).collect());
    }
    ["sum(", "min(", "max(", "avg(", "count("].iter().any(|a| expr.starts_with(a)).then(BTreeSet::new)
}

/// The expression without a trailing comparison with a number (`… < 0.85`, `… == 1`), if it has one.
fn without_threshold(expr: &str) -> Option<&str> {
    let expr = expr.trim();
    let at = expr.rfind(['<', '>', '='])?;
    let (left, right) = expr.split_at(at);
    let number = right.trim_start_matches(['<', '>', '=', '!']).trim();
    number.parse::<f64>().ok()?;
    Some(left.trim_end_matches(['<', '>', '=', '!']).trim_end())
}

/// The labels an alert's annotation templates read (`{{ $labels.model }}` → `model`).
fn template_labels(rule: &Value) -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    for text in rule["annotations"].as_object().into_iter().flat_map(|a| a.values()).filter_map(Value::as_str) {
        for part in text.split("$labels.").skip(1) {
            labels.insert(part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect());
        }
    }
    labels
}

#[test]
fn the_expression_helpers() {
    let expr = r#"histogram_quantile(0.95, sum by (le, model, version) (rate(x_bucket{model=~"$model"}[5m]))) > 0.05"#;
    assert_eq!(without_threshold(expr), Some(&expr[..expr.len() - " > 0.05".len()]));
    assert_eq!(without_threshold("max by (model) (x) == 1"), Some("max by (model) (x)"));
    assert_eq!(without_threshold("increase(x[15m]) > 0 or (x unless x offset 15m)"), None);
    let labels = aggregated_labels(expr).unwrap();
    assert_eq!(labels.into_iter().collect::<Vec<_>>(), ["model", "version"]);
    assert_eq!(aggregated_labels("sum(ferroserve_inflight_requests)"), Some(BTreeSet::new()));
    assert_eq!(aggregated_labels(r#"rate(process_cpu_seconds_total[5m])"#), None);
    let rule = json!({"annotations": {"summary": "{{ $labels.model }} {{$labels.version}}: {{ $value }}"}});
    assert_eq!(template_labels(&rule).into_iter().collect::<Vec<_>>(), ["model", "version"]);
}

/// Copies `from` into `to`, recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

const NORMAL: [f64; 6] = [30.0, 60.0, 90.0, 0.0, 0.0, 180.0];
const SATURATED: [f64; 6] = [99.0, 97.0, 2400.0, 0.4, 3.0, 320.0];

/// One round of traffic: the isolation forest (normal rows, rows shifted far from training, a request it refuses
/// with 400), the LSTM autoencoder (one window of a repeated row, through its batcher), and the broken model (503).
async fn traffic(server: SocketAddr, round: usize) {
    let infer = "/v2/models/anomaly-detector/infer";
    let rows = |rows: Vec<[f64; 6]>| {
        json!({"id": format!("round-{round}"), "inputs": [{"name": "x", "shape": [rows.len(), 6], "datatype": "FP64", "data": rows}],
               "outputs": [{"name": "predict"}]})
    };
    // Predicted [1, -1]; feedback says [1, -1] in round 0 and [-1, 1] in round 1: accuracy 0.5 over 4 rows.
    let (status, body) = post_json(server, infer, &rows(vec![NORMAL, SATURATED])).await;
    assert_eq!((status, &body["outputs"][0]["data"]), (200, &json!([1, -1])), "{body}");
    let truth = if round == 0 { json!([1, -1]) } else { json!([-1, 1]) };
    let (status, body) = post_json(
        server,
        "/v2/models/anomaly-detector/feedback",
        &json!({"id": format!("round-{round}"), "labels": truth}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // memory_usage 40 above training: drift once the window holds --drift_min_samples rows.
    let shifted: Vec<[f64; 6]> = (0..15).map(|i| [30.0 + f64::from(i), 100.0, 90.0, 0.0, 0.0, 180.0]).collect();
    let (status, body) = post_json(server, infer, &rows(shifted)).await;
    assert_eq!(status, 200, "{body}");
    let bad = json!({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [1.0]}]});
    assert_eq!(post_json(server, infer, &bad).await.0, 400);
    let window: Vec<[f64; 6]> = (0..30).map(|_| NORMAL).collect();
    let lstm = json!({"inputs": [{"name": "x", "shape": [1, 30, 6], "datatype": "FP64", "data": window}]});
    let (status, body) = post_json(server, "/v2/models/lstm-detector/infer", &lstm).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_json(server, "/v2/models/broken/infer", &rows(vec![NORMAL])).await;
    assert_eq!(status, 503, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus (`prometheus` on PATH or $PROMETHEUS); tests/prometheus/check.sh runs it with --ignored"]
async fn a_real_prometheus_answers_the_dashboard_and_the_alerts() {
    let prometheus_bin = std::env::var_os("PROMETHEUS").map(PathBuf::from).or_else(|| on_path("prometheus")).expect(
        "no `prometheus` on PATH and $PROMETHEUS is unset (tests/prometheus/check.sh installs it where it can)",
    );
    let dir = tempfile::tempdir().unwrap();

    // The model repository: the examples, and `broken`, whose only version cannot load.
    let repository = dir.path().join("models");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models"), &repository);
    let broken = repository.join("broken/v1");
    copy_dir(&repository.join("anomaly-detector/v2"), &broken);
    std::fs::write(broken.join("model.safetensors"), b"not safetensors").unwrap();

    let (http_port, grpc_port) = (free_port(), free_port());
    let server_addr = SocketAddr::from(([127, 0, 0, 1], http_port));
    let args: Vec<String> = [
        "--model_repository",
        repository.to_str().unwrap(),
        "--host",
        "127.0.0.1",
        "--http_port",
        &http_port.to_string(),
        "--grpc_port",
        &grpc_port.to_string(),
        "--drift_min_samples",
        "20",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut server = Process::spawn(
        "ferroserve",
        Path::new(env!("CARGO_BIN_EXE_ferroserve")),
        &args,
        dir.path().join("ferroserve.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    for model in ["anomaly-detector", "lstm-detector"] {
        loop {
            server.assert_running();
            let ready = match TcpStream::connect(server_addr).await {
                Ok(_) => http(server_addr, "GET", &format!("/v2/models/{model}/ready"), "").await.0 == 200,
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "{model} not ready in 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Prometheus: scrapes every second and evaluates the PrometheusRule's rules, extracted into a rules file.
    let rule: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(monitoring_dir().join("prometheusrule.yaml")).unwrap())
            .unwrap();
    std::fs::write(dir.path().join("rules.yaml"), serde_yaml_ng::to_string(&rule["spec"]).unwrap()).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yaml]\nscrape_configs:\n  \
         - job_name: ferroserve\n    static_configs:\n      - targets: ['{server_addr}']\n"
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let prometheus_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let prometheus_args = vec![
        format!("--config.file={}", dir.path().join("prometheus.yml").display()),
        format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()),
        format!("--web.listen-address={prometheus_addr}"),
        "--log.level=warn".to_owned(),
    ];
    let mut prometheus =
        Process::spawn("prometheus", &prometheus_bin, &prometheus_args, dir.path().join("prometheus.log"));
    let prom = Prometheus { addr: prometheus_addr };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        prometheus.assert_running();
        if TcpStream::connect(prometheus_addr).await.is_ok()
            && http(prometheus_addr, "GET", "/-/ready", "").await.0 == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus not ready in 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let up = prom.query_until_data(r#"up{job="ferroserve"} == 1"#, Instant::now() + Duration::from_secs(30)).await;
    assert_eq!(up.len(), 1, "Prometheus never scraped the server: {:?}", prom.api("targets", &[]).await);

    // Two rounds of traffic a few scrapes apart, so that every rate() sees an increase.
    traffic(server_addr, 0).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    traffic(server_addr, 1).await;
    let deadline = Instant::now() + Duration::from_secs(30);

    // The dashboard: every query, as Grafana sends it with `$model` = All.
    let dashboard: Value =
        serde_json::from_slice(&std::fs::read(monitoring_dir().join("grafana-dashboard.json")).unwrap()).unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().replace("$model", ".*");
            let what = format!("panel {:?}: {expr}", panel["title"]);
            assert!(!expr.contains('$'), "{what}: a variable the test does not know");
            let mut result = prom.query_until_data(&expr, deadline).await;
            // A rate() needs the second round's samples: wait until every value is a number.
            while result.iter().any(|s| !s["value"][1].as_str().unwrap().parse::<f64>().unwrap().is_finite())
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
                result = prom.query(&expr).await;
            }
            assert!(!result.is_empty(), "{what}: no data");
            for series in &result {
                let value: f64 = series["value"][1].as_str().unwrap().parse().unwrap();
                assert!(value.is_finite(), "{what}: {series}");
                let labels = label_names(series);
                match aggregated_labels(&expr) {
                    Some(by) => {
                        assert!(
                            labels.is_subset(&by) && labels.is_superset(&required(&by, series)),
                            "{what}: {series}"
                        );
                    }
                    None => {
                        assert!(labels.is_superset(&["instance".into(), "job".into()].into()), "{what}: {series}");
                        if expr.contains("model=~") {
                            assert!(labels.contains("model"), "{what}: {series}");
                        }
                    }
                }
            }
            let range = prom.query_range(&expr).await;
            assert!(!range.is_empty(), "{what}: no data over the last 30 s");
            assert!(range.iter().all(|s| !s["values"].as_array().unwrap().is_empty()), "{what}: {range:?}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} dashboard queries");
    eprintln!("{checked} dashboard queries answered by Prometheus");

    // The dashboard's variable: label_values(kserve_inference_requests_total, model).
    let variable = dashboard["templating"]["list"].as_array().unwrap().iter().find(|v| v["name"] == "model").unwrap();
    let query = variable["query"].as_str().unwrap();
    let (metric, label) = query.strip_prefix("label_values(").unwrap().trim_end_matches(')').split_once(", ").unwrap();
    let values = prom.api(&format!("label/{label}/values"), &[("match[]", metric)]).await;
    for model in ["anomaly-detector", "lstm-detector", "broken"] {
        assert!(values.as_array().unwrap().contains(&json!(model)), "$model offers {values}");
    }

    // The alerts: every expression without its threshold returns series with the labels the annotations use,
    // for the models the traffic reaches.
    let mut alerts = 0;
    for group in rule["spec"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let (name, expr) = (rule["alert"].as_str().unwrap(), rule["expr"].as_str().unwrap());
            let inner = without_threshold(expr).unwrap_or(expr);
            let result = prom.query_until_data(inner, deadline).await;
            let models: BTreeSet<&str> = result.iter().filter_map(|s| s["metric"]["model"].as_str()).collect();
            let wanted: &[&str] = match name {
                "ModelAccuracyDegraded" => &["anomaly-detector"],
                "ModelInputDrift" => &["anomaly-detector", "lstm-detector"],
                "ModelErrorRateHigh" | "ModelVersionLoadFailed" => &["broken"],
                _ => &["anomaly-detector", "broken", "lstm-detector"],
            };
            let wanted: BTreeSet<&str> = wanted.iter().copied().collect();
            assert!(models.is_superset(&wanted), "{name}: {inner} gives models {models:?}, not {wanted:?}");
            for series in &result {
                let labels = label_names(series);
                let used = required(&template_labels(rule), series);
                assert!(labels.is_superset(&used), "{name}: {inner}: {series} lacks a label its annotations use");
                if let Some(by) = aggregated_labels(inner) {
                    assert!(
                        labels.is_subset(&by) && labels.is_superset(&required(&by, series)),
                        "{name}: {inner}: {series}"
                    );
                }
            }
            alerts += 1;
        }
    }
    assert!(alerts >= 6, "{alerts} alerts");

    // What Prometheus itself raises from the rules: exactly what the traffic should (pending for those with a
    // `for`, firing for the load failure). The latency alert depends on the machine's speed, so it is left out.
    let expected: BTreeSet<(String, String)> = [
        ("ModelAccuracyDegraded", "anomaly-detector"),
        ("ModelInputDrift", "anomaly-detector"),
        // Its windows repeat one row 30 times: far from any training distribution.
        ("ModelInputDrift", "lstm-detector"),
        ("ModelErrorRateHigh", "broken"),
        ("ModelNotReady", "broken"),
        ("ModelVersionLoadFailed", "broken"),
    ]
    .map(|(a, m)| (a.to_owned(), m.to_owned()))
    .into();
    let mut raised = BTreeMap::new();
    loop {
        raised.clear();
        for alert in prom.api("alerts", &[]).await["alerts"].as_array().unwrap() {
            let name = alert["labels"]["alertname"].as_str().unwrap().to_owned();
            if name != "ModelLatencyP95High" {
                let model = alert["labels"]["model"].as_str().unwrap_or_default().to_owned();
                raised.insert((name, model), alert["state"].as_str().unwrap().to_owned());
            }
        }
        if raised.keys().cloned().collect::<BTreeSet<_>>() == expected || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(raised.keys().cloned().collect::<BTreeSet<_>>(), expected, "{raised:?}");
    let load_failed = ("ModelVersionLoadFailed".to_owned(), "broken".to_owned());
    assert_eq!(raised[&load_failed], "firing", "{raised:?}");
    eprintln!("{alerts} alert expressions answered; Prometheus raised {raised:?}");

    server.assert_running();
    prometheus.assert_running();
    prometheus.stop().await;
    server.stop().await;
}
