//! `ferroserve validate`: the platform's post-deployment checks against a running v2 server, as one command
//! with exit codes, for a pipeline step after a rollout.
//!
//! ```text
//! ferroserve validate --url http://anomaly-detector.models.svc:8080 --model anomaly-detector --p95-budget 50ms
//! ```
//!
//! Checks, in order: the server is live and ready; the model (version) is ready; its metadata reads; an inference
//! answers 200 with the outputs the metadata declares (names, datatypes, shapes); `--requests` sequential inferences
//! have a p95 latency under `--p95-budget`; `/metrics` is served and counts this model's requests. Exit code 0 when
//! every check passes, 1 when one fails, 2 when the server cannot be reached or the arguments are wrong.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use ferroserve_formats::{DataType, TensorSpec};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use crate::protocol::v2::{InferRequest, InferResponse, InferTensor, ModelMetadataResponse};
use crate::store::zeros;

/// `ferroserve validate`'s flags.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "ferroserve validate",
    bin_name = "ferroserve validate",
    about = "Post-deployment checks of a v2 server and one of its models"
)]
pub struct ValidateArgs {
    /// The server's base URL (`http://host:port`).
    #[arg(long)]
    pub url: String,
    /// The model to check.
    #[arg(long)]
    pub model: String,
    /// A version to check instead of the default (empty: the default, for pipelines that always pass the flag).
    #[arg(long)]
    pub version: Option<String>,
    /// Sequential inference requests timed for the latency check.
    #[arg(long, default_value_t = 50)]
    pub requests: usize,
    /// The p95 latency the model must stay under (`50ms`, `1s`).
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    pub p95_budget: Duration,
    /// A v2 inference request body (JSON) to send instead of one built from the metadata (zeros of the declared
    /// shapes, one row).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Each HTTP request's time limit.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the result as JSON to this file (a Tekton result, a CI artifact), whatever `--json` says.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// What was seen.
    pub detail: String,
}

/// Every check, and the exit code they add up to.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The server checked.
    pub url: String,
    /// The model checked.
    pub model: String,
    /// Whether every check passed.
    pub passed: bool,
    /// The checks run, in order (the run stops at the first failure that makes the rest meaningless).
    pub checks: Vec<Check>,
    /// 0 passed, 1 a check failed, 2 unreachable or bad arguments.
    pub exit_code: u8,
}

struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    timeout: Duration,
}

impl Http {
    async fn send(&self, method: &str, path: &str, body: Vec<u8>) -> Result<(u16, Bytes, Duration), String> {
        let uri = format!("{}{path}", self.base);
        let request = hyper::Request::builder()
            .method(method)
            .uri(&uri)
            .header("content-type", "application/json")
            // Check traffic: the server keeps it out of drift windows and feedback.
            .header(crate::inference::PROBE_HEADER, "validate")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("{uri}: {e}"))?;
        let started = Instant::now();
        let answer = async {
            let response = self.client.request(request).await.map_err(|e| format!("{uri}: {}", causes(&e)))?;
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await.map_err(|e| format!("{uri}: {e}"))?.to_bytes();
            Ok::<_, String>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, answer)
            .await
            .map_err(|_| format!("{uri}: no answer in {}", humantime::format_duration(self.timeout)))??;
        Ok((status, bytes, started.elapsed()))
    }
}

/// An error with its causes (`client error (Connect): tcp connect error: Connection refused (os error 111)`): the
/// client's own message alone does not say why.
fn causes(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

fn short(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.chars().count() > 200 {
        format!("{}…", text.chars().take(200).collect::<String>())
    } else {
        text.to_owned()
    }
}

/// Runs the checks.
pub async fn validate(args: &ValidateArgs) -> Outcome {
    let mut checks = Vec::new();
    let code = run(args, &mut checks).await;
    Outcome { url: args.url.clone(), model: args.model.clone(), passed: code == 0, checks, exit_code: code }
}

async fn run(args: &ValidateArgs, checks: &mut Vec<Check>) -> u8 {
    let base = args.url.trim_end_matches('/').to_owned();
    if !base.starts_with("http://") {
        checks.push(Check {
            name: "arguments",
            passed: false,
            detail: format!("--url {base}: expected http://host:port"),
        });
        return 2;
    }
    let http = Http { client: Client::builder(TokioExecutor::new()).build_http(), base, timeout: args.timeout };
    let mut pass = |name, passed, detail: String| {
        checks.push(Check { name, passed, detail });
        passed
    };
    let m = &args.model;
    let model_path = match args.version.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => format!("/v2/models/{m}/versions/{v}"),
        None => format!("/v2/models/{m}"),
    };

    // Live: also tells an unreachable server (exit 2) from a failing one.
    match http.send("GET", "/v2/health/live", Vec::new()).await {
        Ok((200, _, t)) => pass("server live", true, format!("200 in {}", ms(t))),
        Ok((s, b, _)) => return u8::from(!pass("server live", false, format!("{s}: {}", short(&b)))),
        Err(e) => {
            pass("server live", false, e);
            return 2;
        }
    };
    for (name, path) in
        [("server ready", "/v2/health/ready".to_owned()), ("model ready", format!("{model_path}/ready"))]
    {
        match http.send("GET", &path, Vec::new()).await {
            Ok((200, _, t)) => pass(name, true, format!("200 in {}", ms(t))),
            Ok((s, b, _)) => return u8::from(!pass(name, false, format!("{path}: {s}: {}", short(&b)))),
            Err(e) => return u8::from(!pass(name, false, e)),
        };
    }
    let metadata: ModelMetadataResponse = match http.send("GET", &model_path, Vec::new()).await {
        Ok((200, body, _)) => match serde_json::from_slice(&body) {
            Ok(meta) => meta,
            Err(e) => return u8::from(!pass("metadata", false, format!("not v2 model metadata: {e}"))),
        },
        Ok((s, b, _)) => return u8::from(!pass("metadata", false, format!("{s}: {}", short(&b)))),
        Err(e) => return u8::from(!pass("metadata", false, e)),
    };
    pass(
        "metadata",
        true,
        format!(
            "{} versions [{}], {} input(s), outputs [{}]",
            metadata.platform,
            metadata.versions.join(", "),
            metadata.inputs.len(),
            metadata.outputs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
    );

    let body = match request_body(args, &metadata.inputs) {
        Ok(b) => b,
        Err(e) => {
            pass("inference", false, e);
            return 2;
        }
    };
    let infer_path = format!("{model_path}/infer");
    match http.send("POST", &infer_path, body.clone()).await {
        Ok((200, answer, t)) => match serde_json::from_slice::<InferResponse>(&answer) {
            Ok(r) => {
                let problems = check_outputs(&r, &metadata.outputs);
                let detail = if problems.is_empty() {
                    format!(
                        "200 in {} from version {}: {}",
                        ms(t),
                        r.model_version,
                        r.outputs
                            .iter()
                            .map(|o| format!("{} {} {:?}", o.name, o.datatype(), o.shape))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else {
                    problems.join("; ")
                };
                if !pass("inference", problems.is_empty(), detail) {
                    return 1;
                }
            }
            Err(e) => return u8::from(!pass("inference", false, format!("200 but not a v2 response: {e}"))),
        },
        Ok((s, b, _)) => return u8::from(!pass("inference", false, format!("{s}: {}", short(&b)))),
        Err(e) => return u8::from(!pass("inference", false, e)),
    }

    let mut times = Vec::with_capacity(args.requests);
    let mut failed = None;
    for _ in 0..args.requests {
        match http.send("POST", &infer_path, body.clone()).await {
            Ok((200, _, t)) => times.push(t),
            Ok((s, b, _)) => {
                failed = Some(format!("{s}: {}", short(&b)));
                break;
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let latency_ok = match (failed, p95(&mut times)) {
        (Some(e), _) => pass("latency", false, format!("a request failed: {e}")),
        (None, None) => pass("latency", true, "skipped (--requests 0)".to_owned()),
        (None, Some(p)) => pass(
            "latency",
            p <= args.p95_budget,
            format!("p95 {} over {} requests (budget {})", ms(p), times.len(), ms(args.p95_budget)),
        ),
    };

    let metrics_ok = match http.send("GET", "/metrics", Vec::new()).await {
        Ok((200, text, _)) => {
            let text = String::from_utf8_lossy(&text);
            let series = format!("kserve_inference_requests_total{{model=\"{m}\"");
            let found = text.lines().any(|l| l.starts_with(&series));
            pass(
                "metrics",
                found,
                if found {
                    format!("/metrics counts `{m}`'s requests")
                } else {
                    format!("/metrics has no {series}…}}")
                },
            )
        }
        Ok((s, b, _)) => pass("metrics", false, format!("/metrics: {s}: {}", short(&b))),
        Err(e) => pass("metrics", false, e),
    };
    u8::from(!(latency_ok && metrics_ok))
}

/// The request to send: `--input`'s body, or zeros of the declared inputs (variable dimensions 1).
fn request_body(args: &ValidateArgs, inputs: &[TensorSpec]) -> Result<Vec<u8>, String> {
    if let Some(path) = &args.input {
        return std::fs::read(path).map_err(|e| format!("--input {}: {e}", path.display()));
    }
    let mut tensors = Vec::with_capacity(inputs.len());
    for spec in inputs {
        let shape: Vec<usize> = spec.shape.iter().map(|&d| usize::try_from(d).unwrap_or(1).max(1)).collect();
        let n: usize = shape.iter().product();
        if n > 1 << 20 {
            return Err(format!("input `{}` declares {n} elements; pass a request with --input", spec.name));
        }
        let datatype = if spec.datatype == DataType::Bytes { DataType::Bytes } else { spec.datatype };
        tensors.push(InferTensor { name: spec.name.clone(), shape, data: zeros(datatype, n), parameters: None });
    }
    let request =
        InferRequest { id: Some("ferroserve-validate".to_owned()), inputs: tensors, ..InferRequest::default() };
    serde_json::to_vec(&request).map_err(|e| e.to_string())
}

/// What in `response` differs from the declared outputs.
fn check_outputs(response: &InferResponse, declared: &[TensorSpec]) -> Vec<String> {
    let mut problems = Vec::new();
    if response.outputs.is_empty() {
        problems.push("the response has no output".to_owned());
    }
    for out in &response.outputs {
        let Some(spec) = declared.iter().find(|s| s.name == out.name) else {
            problems.push(format!("output `{}` is not in the model's metadata", out.name));
            continue;
        };
        if spec.datatype != out.datatype() {
            problems.push(format!("output `{}` is {}, metadata declares {}", out.name, out.datatype(), spec.datatype));
        }
        let fits = spec.shape.len() == out.shape.len()
            && spec.shape.iter().zip(&out.shape).all(|(&d, &s)| d < 0 || usize::try_from(d).ok() == Some(s));
        if !fits {
            problems
                .push(format!("output `{}` has shape {:?}, metadata declares {:?}", out.name, out.shape, spec.shape));
        }
    }
    problems
}

fn p95(times: &mut [Duration]) -> Option<Duration> {
    if times.is_empty() {
        return None;
    }
    times.sort_unstable();
    let rank = (times.len() * 95).div_ceil(100).max(1) - 1;
    times.get(rank).copied()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Writes `outcome` as JSON to `path` (`--report`).
///
/// # Errors
/// When the file cannot be written; the message names it.
pub fn write_report(outcome: &Outcome, path: &std::path::Path) -> Result<(), String> {
    let json = serde_json::to_vec_pretty(outcome).map_err(|e| e.to_string())?;
    std::fs::write(path, json).map_err(|e| format!("--report {}: {e}", path.display()))
}

/// Writes the outcome for a person (one line per check and a summary) or as JSON.
///
/// # Errors
/// What writing to `out` returns: a reader that stops early (`ferroserve validate --json | head`) is a broken pipe,
/// which the caller may ignore, where `println!` would panic.
pub fn print(outcome: &Outcome, json: bool, out: &mut impl std::io::Write) -> std::io::Result<()> {
    if json {
        return writeln!(out, "{}", serde_json::to_string_pretty(outcome).unwrap_or_default());
    }
    for c in &outcome.checks {
        writeln!(out, "{} {:<13} {}", if c.passed { "PASS" } else { "FAIL" }, c.name, c.detail)?;
    }
    let verdict = match outcome.exit_code {
        0 => "all checks passed",
        1 => "a check failed",
        _ => "the server could not be checked",
    };
    let status = if outcome.passed { "OK" } else { "NOT OK" };
    writeln!(out, "{status} `{}` at {}: {verdict}", outcome.model, outcome.url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_is_the_nearest_rank() {
        let mut t: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(p95(&mut t), Some(Duration::from_millis(95)));
        assert_eq!(p95(&mut [Duration::from_millis(3)]), Some(Duration::from_millis(3)));
        assert_eq!(p95(&mut []), None);
    }
}
