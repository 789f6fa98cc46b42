//! `ferroserve-load`: drives any KServe v2 (Open Inference Protocol) or KServe v1 server over HTTP/1.1 keep-alive,
//! or the Open Inference Protocol over gRPC, and reports throughput and latency percentiles.
//!
//! ```text
//! ferroserve-load run --url http://127.0.0.1:8080 --model anomaly-detector --concurrency 16 --duration 10s
//! ferroserve-load run ... --mode open --rate 2000           # requests scheduled at a fixed rate
//! ferroserve-load run ... --rows 1000 --body binary          # binary tensor data extension
//! ferroserve-load run ... --protocol v1                      # KServe v1: {"instances": ...} to /v1/models/{m}:predict
//! ferroserve-load run --url http://127.0.0.1:8081 ... --protocol grpc --body binary   # gRPC ModelInfer, raw tensors
//! ferroserve-load table results/*.json                       # a Markdown table
//! ferroserve-load plot --out latency.svg results/*.json      # latency percentiles per run, as SVG
//! ```
//!
//! - **closed loop**: `--concurrency` connections, each sending its next request when the previous answer arrives:
//!   the throughput a server sustains, and its latency at that load.
//! - **open loop**: requests are dispatched at a fixed `--rate` whatever the answers do (each on its own task, so a
//!   slow answer never delays the next dispatch: no coordinated omission), and latency runs from dispatch to answer.
//!   Dispatch follows the schedule in the tokio timer's 1 ms ticks, so requests leave in small bursts.
//!
//! - **protocol**: v2 (the default) posts `inputs` to `/v2/models/{m}/infer`, as JSON `data` or binary tensors; v1
//!   posts the same rows as `{"instances": [[f1, f2, ...], ...]}` to `/v1/models/{m}:predict` (JSON only); grpc
//!   calls `inference.GRPCInferenceService/ModelInfer` on the gRPC port, the rows as typed `fp32_contents`
//!   (`--body json`) or as `raw_input_contents` (`--body binary`, what Triton's client sends), each closed-loop
//!   connection an HTTP/2 connection of its own (as each REST one is an HTTP/1.1 connection of its own).
//!
//! A request counts as an error unless it is answered 200 (and, with `--expect-output`, the body names that
//! output; in v1, the body is JSON whose `predictions` array has one entry per row sent). Warm-up requests are not
//! counted. Talks to the URL given only; use 127.0.0.1.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use ferroserve::grpc::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use ferroserve::grpc::proto::{InferTensorContents, ModelInferRequest};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Parser)]
#[command(name = "ferroserve-load", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load a server and print (or write) the result.
    Run(Box<RunArgs>),
    /// Print a Markdown table of result files.
    Table {
        /// Result JSON files written by `run --out`.
        files: Vec<PathBuf>,
    },
    /// Draw the latency percentiles of result files as an SVG bar chart.
    Plot {
        /// The SVG file to write.
        #[arg(long)]
        out: PathBuf,
        /// Result JSON files written by `run --out`.
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Closed,
    Open,
}

/// The KServe inference protocol requests follow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Protocol {
    /// KServe v2 (Open Inference Protocol): `POST /v2/models/{m}/infer` with `inputs`.
    #[default]
    V2,
    /// KServe v1: `POST /v1/models/{m}:predict` with `instances`, answered with `predictions` (JSON only).
    V1,
    /// The Open Inference Protocol over gRPC: `ModelInfer` (`--url` is the gRPC port).
    Grpc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum BodyKind {
    /// JSON `data` (gRPC: typed contents).
    Json,
    /// The binary tensor data extension, for the input and the output (gRPC: raw contents).
    Binary,
}

#[derive(Debug, Clone, Parser)]
struct RunArgs {
    /// The server's base URL (http only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The model's name.
    #[arg(long)]
    model: String,
    /// v2 (`/v2/models/{m}/infer`) or v1 (`/v1/models/{m}:predict`, JSON only).
    #[arg(long, value_enum, default_value_t = Protocol::V2)]
    protocol: Protocol,
    /// A version to pin (`/v2/models/{m}/versions/{v}/infer`; v2 only).
    #[arg(long)]
    version: Option<String>,
    /// What to call this server in reports.
    #[arg(long)]
    label: Option<String>,
    /// Closed loop (concurrency) or open loop (rate).
    #[arg(long, value_enum, default_value_t = Mode::Closed)]
    mode: Mode,
    /// Connections, each sending back to back (closed loop); gRPC: callers, each sending back to back.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// gRPC only: the HTTP/2 connections the callers share (closed loop), as a gRPC client shares its channel; 0 gives
    /// each caller a connection of its own, as HTTP/1.1 needs.
    #[arg(long, default_value_t = 0)]
    connections: usize,
    /// Requests per second (open loop).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Requests outstanding at most (open loop); beyond it, scheduled requests count as errors.
    #[arg(long, default_value_t = 4096)]
    max_outstanding: usize,
    /// Warm-up before measuring.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// How long to measure.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Rows per request.
    #[arg(long, default_value_t = 1)]
    rows: usize,
    /// Features per row (when no --csv).
    #[arg(long, default_value_t = 6)]
    features: usize,
    /// Take the rows from this CSV (its numeric columns named in --columns).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// The CSV columns to use, comma-separated.
    #[arg(long, default_value = "cpu_usage,memory_usage,latency_p95_ms,error_rate,pod_restarts,request_rate")]
    columns: String,
    /// The input tensor's name (v2; v1 instances have none).
    #[arg(long, default_value = "input-0")]
    input_name: String,
    /// JSON or binary tensor data (binary: v2 only).
    #[arg(long, value_enum, default_value_t = BodyKind::Json)]
    body: BodyKind,
    /// An output to ask for by name (the binary body asks for it as binary data; v2 only).
    #[arg(long)]
    output: Option<String>,
    /// Count an answer as an error unless its body contains this output name (v2 only).
    #[arg(long)]
    expect_output: Option<String>,
    /// Write the result as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.trim().split_at(s.trim().find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len()));
    let n: f64 = n.parse().map_err(|_| format!("`{s}`: expected a duration like 500ms, 10s, 1m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}`")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// A run's result, as written to JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Report {
    label: String,
    url: String,
    model: String,
    /// Absent from result files written before v1 existed, which were all v2.
    #[serde(default)]
    protocol: Protocol,
    mode: Mode,
    concurrency: usize,
    /// gRPC: the HTTP/2 connections the callers shared (absent: one each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    connections: Option<usize>,
    rate: Option<f64>,
    rows: usize,
    body: BodyKind,
    seconds: f64,
    requests: u64,
    errors: u64,
    throughput_rps: f64,
    rows_per_s: f64,
    latency_ms: Latency,
    first_error: Option<String>,
    /// The load generator's own CPU time (user and system, every thread) over the measured window, per answered
    /// request: with one caller it is on every round trip, so it says how much of a protocol's latency is the
    /// client's. Absent where `/proc` is not (and from files written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_cpu_us: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Latency {
    mean: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

/// The request body and its headers.
#[derive(Debug, Clone)]
struct Body {
    bytes: Bytes,
    json_len: Option<usize>,
}

/// Rows of `features` values: from the CSV's columns, cycling, or a fixed deterministic spread.
fn rows(args: &RunArgs) -> anyhow::Result<Vec<Vec<f32>>> {
    let Some(path) = &args.csv else {
        return Ok((0..args.rows)
            .map(|r| (0..args.features).map(|c| ((r * 31 + c * 17) % 100) as f32 / 10.0).collect())
            .collect());
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().context("empty CSV")?.split(',').collect();
    let wanted: Vec<usize> = args
        .columns
        .split(',')
        .map(|c| header.iter().position(|h| *h == c.trim()).with_context(|| format!("no column `{c}`")))
        .collect::<anyhow::Result<_>>()?;
    let all: Vec<Vec<f32>> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let fields: Vec<&str> = l.split(',').collect();
            wanted.iter().map(|&i| fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0.0)).collect()
        })
        .collect();
    if all.is_empty() {
        bail!("{} has no rows", path.display());
    }
    Ok((0..args.rows).map(|i| all[i % all.len()].clone()).collect())
}

/// Refuses options the chosen protocol has no place for, rather than ignoring them.
fn check_args(args: &RunArgs) -> anyhow::Result<()> {
    if args.connections > 0 && args.protocol != Protocol::Grpc {
        bail!("--connections shares HTTP/2 connections between gRPC callers; HTTP/1.1 needs one per caller");
    }
    if args.protocol == Protocol::V1 {
        if args.body == BodyKind::Binary {
            bail!("--body binary is v2's binary tensor data extension; KServe v1 is JSON only (use --body json)");
        }
        if args.version.is_some() {
            bail!("--version pins a version in the v2 path; KServe v1's `/v1/models/{{m}}:predict` has none");
        }
        if args.output.is_some() || args.expect_output.is_some() {
            bail!("--output and --expect-output name v2 outputs; a KServe v1 answer has `predictions` only");
        }
    }
    Ok(())
}

/// Where requests go.
fn endpoint(args: &RunArgs) -> String {
    let base = args.url.trim_end_matches('/');
    match (args.protocol, &args.version) {
        (Protocol::V1, _) => format!("{base}/v1/models/{}:predict", args.model),
        (Protocol::Grpc, _) => base.to_owned(),
        (Protocol::V2, Some(v)) => format!("{base}/v2/models/{}/versions/{v}/infer", args.model),
        (Protocol::V2, None) => format!("{base}/v2/models/{}/infer", args.model),
    }
}

/// The request for `rows`, in the chosen protocol.
fn body(args: &RunArgs, rows: &[Vec<f32>]) -> Body {
    match args.protocol {
        Protocol::V1 => v1_body(rows),
        Protocol::V2 | Protocol::Grpc => v2_body(args, rows),
    }
}

/// The gRPC `ModelInfer` request for `rows`: raw contents for `--body binary`, else typed.
fn grpc_request(args: &RunArgs, rows: &[Vec<f32>]) -> ModelInferRequest {
    let features = rows.first().map_or(0, Vec::len);
    let values: Vec<f32> = rows.iter().flatten().copied().collect();
    let (contents, raw) = match args.body {
        BodyKind::Json => (Some(InferTensorContents { fp32_contents: values, ..Default::default() }), Vec::new()),
        BodyKind::Binary => (None, vec![Bytes::from(values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())]),
    };
    ModelInferRequest {
        model_name: args.model.clone(),
        model_version: args.version.clone().unwrap_or_default(),
        inputs: vec![InferInputTensor {
            name: args.input_name.clone(),
            datatype: "FP32".to_owned(),
            shape: vec![rows.len() as i64, features as i64],
            parameters: Default::default(),
            contents,
        }],
        outputs: args
            .output
            .iter()
            .map(|o| InferRequestedOutputTensor { name: o.clone(), parameters: Default::default() })
            .collect(),
        raw_input_contents: raw,
        ..Default::default()
    }
}

/// One HTTP/2 connection to a gRPC server, driven with the `h2` crate itself, as lean as the REST side's HTTP/1.1
/// client: tonic's `Channel` adds a buffer task and a balancer per call, and hyper's HTTP/2 client a task per request
/// body, load-generator work that the cores the server shares with this harness would pay for, and that REST does
/// not. Cheap to clone: clones share the connection, each call a stream of its own.
#[derive(Debug, Clone)]
struct GrpcConnection {
    send: h2::client::SendRequest<Bytes>,
    /// `{url}/inference.GRPCInferenceService/ModelInfer`.
    uri: hyper::Uri,
}

impl GrpcConnection {
    async fn open(url: &str) -> anyhow::Result<Self> {
        let uri: hyper::Uri =
            format!("{}/inference.GRPCInferenceService/ModelInfer", url.trim_end_matches('/')).parse()?;
        let authority = uri.authority().with_context(|| format!("{url} names no host"))?.as_str().to_owned();
        let stream =
            tokio::net::TcpStream::connect(&authority).await.with_context(|| format!("connecting to {url}"))?;
        stream.set_nodelay(true)?;
        let (send, connection) = h2::client::handshake(stream).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(GrpcConnection { send, uri })
    }

    /// One unary call of `message` (a length-prefixed protobuf message, as gRPC frames it): the answer's message,
    /// or why there is none.
    async fn call(&mut self, message: &Bytes) -> Result<Bytes, String> {
        let connection = |e: h2::Error| format!("connection: {e}");
        let mut send = self.send.clone().ready().await.map_err(connection)?;
        let request = hyper::Request::post(self.uri.clone())
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .map_err(|e| e.to_string())?;
        let (response, mut body) = send.send_request(request, false).map_err(connection)?;
        body.send_data(message.clone(), true).map_err(connection)?;
        let response = response.await.map_err(connection)?;
        if response.status() != 200 {
            return Err(format!("HTTP {}", response.status()));
        }
        let (head, mut body) = response.into_parts();
        let mut framed = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(connection)?;
            let _ = body.flow_control().release_capacity(chunk.len());
            framed.extend_from_slice(&chunk);
        }
        // A call that fails at once answers with its status in the headers ("trailers-only").
        let trailers = body.trailers().await.map_err(connection)?.unwrap_or_default();
        let status = trailers.get("grpc-status").or_else(|| head.headers.get("grpc-status"));
        if status.is_none_or(|s| s != "0") {
            let message = trailers.get("grpc-message").or_else(|| head.headers.get("grpc-message"));
            return Err(format!(
                "grpc-status {}: {}",
                status.and_then(|s| s.to_str().ok()).unwrap_or("missing"),
                message.and_then(|m| m.to_str().ok()).unwrap_or("")
            ));
        }
        Ok(Bytes::from(framed.split_off(framed.len().min(5))))
    }
}

/// `message` framed as gRPC sends it: not compressed, its length (4 bytes, big-endian), the message.
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0);
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap_or(u32::MAX).to_be_bytes());
    framed.extend_from_slice(message);
    Bytes::from(framed)
}

/// Where and what one connection sends: a REST request, or a gRPC call.
// One per connection, never in a collection that its size would bloat.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Target {
    Http { client: HttpClient, uri: hyper::Uri, body: Arc<Body> },
    Grpc { connection: GrpcConnection, request: Bytes },
}

/// What every connection sends, prepared once.
#[derive(Debug, Clone)]
enum Prepared {
    Http { uri: hyper::Uri, body: Arc<Body> },
    Grpc { url: String, request: Bytes },
}

impl Prepared {
    fn new(args: &RunArgs) -> anyhow::Result<Self> {
        let rows = rows(args)?;
        let path = endpoint(args);
        Ok(match args.protocol {
            Protocol::Grpc => {
                let message = prost::Message::encode_to_vec(&grpc_request(args, &rows));
                Prepared::Grpc { url: path, request: grpc_frame(&message) }
            }
            Protocol::V1 | Protocol::V2 => Prepared::Http {
                uri: path.parse().with_context(|| format!("bad URL {path}"))?,
                body: Arc::new(body(args, &rows)),
            },
        })
    }

    /// A target on a connection of its own (`pool`: HTTP keeps at most one idle connection).
    async fn connect(&self, one_connection: bool) -> anyhow::Result<Target> {
        Ok(match self {
            Prepared::Http { uri, body } => {
                let mut builder = Client::builder(TokioExecutor::new());
                if one_connection {
                    builder.pool_max_idle_per_host(1);
                }
                Target::Http { client: builder.build_http(), uri: uri.clone(), body: Arc::clone(body) }
            }
            Prepared::Grpc { url, request } => {
                Target::Grpc { connection: GrpcConnection::open(url).await?, request: request.clone() }
            }
        })
    }
}

/// The v1 request for `rows`: `{"instances": rows}`, one instance per row.
fn v1_body(rows: &[Vec<f32>]) -> Body {
    let bytes = serde_json::to_vec(&serde_json::json!({ "instances": rows })).unwrap_or_default();
    Body { bytes: Bytes::from(bytes), json_len: None }
}

/// A v2 input, its fields in the order Triton's and KServe's clients write them (`name`, `shape`, `datatype`,
/// `parameters`, `data`): a server reading `data` after `datatype` can decode it in one pass.
#[derive(Serialize)]
struct V2Input<'a> {
    name: &'a str,
    shape: [usize; 2],
    datatype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a [Vec<f32>]>,
}

/// A v2 request: inputs first, then the outputs asked for and the request's parameters, as clients write them.
#[derive(Serialize)]
struct V2Request<'a> {
    inputs: [V2Input<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    outputs: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<serde_json::Value>,
}

/// The v2 request for `rows`.
fn v2_body(args: &RunArgs, rows: &[Vec<f32>]) -> Body {
    let features = rows.first().map_or(0, Vec::len);
    let binary = args.body == BodyKind::Binary;
    let input = V2Input {
        name: &args.input_name,
        shape: [rows.len(), features],
        datatype: "FP32",
        parameters: binary.then(|| serde_json::json!({"binary_data_size": rows.len() * features * 4})),
        data: (!binary).then_some(rows),
    };
    let mut request = V2Request { inputs: [input], outputs: None, parameters: None };
    if let Some(o) = &args.output {
        request.outputs = Some(serde_json::json!([{"name": o, "parameters": {"binary_data": binary}}]));
    } else if binary {
        request.parameters = Some(serde_json::json!({"binary_data_output": true}));
    }
    let mut bytes = serde_json::to_vec(&request).unwrap_or_default();
    match args.body {
        BodyKind::Json => Body { bytes: Bytes::from(bytes), json_len: None },
        BodyKind::Binary => {
            let json_len = bytes.len();
            for v in rows.iter().flatten() {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            Body { bytes: Bytes::from(bytes), json_len: Some(json_len) }
        }
    }
}

/// What an answer needs, besides its 200, to count as a success.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Check {
    /// v2: with a name, the body names that output.
    V2 { expect_output: Option<String> },
    /// v1: the body is JSON whose `predictions` array has one entry per row sent.
    V1 { rows: usize },
}

impl Check {
    fn new(args: &RunArgs) -> Self {
        match args.protocol {
            Protocol::V1 => Check::V1 { rows: args.rows },
            Protocol::V2 | Protocol::Grpc => Check::V2 { expect_output: args.expect_output.clone() },
        }
    }
}

/// The length of a JSON array, counted without keeping its elements.
#[derive(Debug)]
struct ArrayLen(usize);

impl<'de> Deserialize<'de> for ArrayLen {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Debug)]
        struct Count;
        impl<'de> serde::de::Visitor<'de> for Count {
            type Value = ArrayLen;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ArrayLen, A::Error> {
                let mut n = 0;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(ArrayLen(n))
            }
        }
        deserializer.deserialize_seq(Count)
    }
}

/// A v1 answer, as far as the check reads it.
#[derive(Debug, Deserialize)]
struct V1Answer {
    predictions: ArrayLen,
}

/// `Err` with a short reason unless the answer is a 200 that passes `check`.
fn check_answer(check: &Check, status: hyper::StatusCode, bytes: &[u8]) -> Result<(), String> {
    let excerpt = || String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    if status != 200 {
        return Err(format!("{status}: {}", excerpt()));
    }
    match check {
        Check::V2 { expect_output: Some(name) }
            if !bytes.windows(name.len() + 2).any(|w| w[1..=name.len()] == *name.as_bytes()) =>
        {
            Err(format!("200 without output `{name}`"))
        }
        Check::V2 { .. } => Ok(()),
        Check::V1 { rows } => match serde_json::from_slice::<V1Answer>(bytes) {
            Ok(V1Answer { predictions: ArrayLen(n) }) if n == *rows => Ok(()),
            Ok(V1Answer { predictions: ArrayLen(n) }) => Err(format!("200 with {n} predictions for {rows} rows")),
            Err(e) => Err(format!("200 without a `predictions` array ({e}): {}", excerpt())),
        },
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Sends one request; `Err` with a short reason unless the answer passes `check`.
async fn send(target: &mut Target, check: &Check) -> Result<(), String> {
    match target {
        Target::Http { client, uri, body } => send_http(client, uri, body, check).await,
        Target::Grpc { connection, request } => {
            let answer = connection.call(request).await?;
            match check {
                // An output's name is in the message as its UTF-8 bytes.
                Check::V2 { expect_output: Some(name) }
                    if !answer.windows(name.len()).any(|w| w == name.as_bytes()) =>
                {
                    Err(format!("OK without output `{name}`"))
                }
                _ => Ok(()),
            }
        }
    }
}

/// Sends one REST request.
async fn send_http(client: &HttpClient, uri: &hyper::Uri, body: &Body, check: &Check) -> Result<(), String> {
    let request = hyper::Request::post(uri.clone());
    // One content type: `header` appends, so a binary body must not also say JSON.
    let request = match body.json_len {
        Some(n) => {
            request.header("content-type", "application/octet-stream").header("inference-header-content-length", n)
        }
        None => request.header("content-type", "application/json"),
    };
    let request = request.body(Full::new(body.bytes.clone())).map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| format!("connection: {e}"))?;
    let status = response.status();
    let bytes = response.into_body().collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
    check_answer(check, status, &bytes)
}

fn histogram() -> Histogram<u64> {
    // Microseconds, 1 µs to 100 s, 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).clamp(1, 100_000_000)
}

#[derive(Debug)]
struct Tally {
    latency: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Self {
        Tally { latency: histogram(), errors: 0, first_error: None }
    }
    fn record(&mut self, took: Duration, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                let _ = self.latency.record(micros(took));
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
    fn merge(&mut self, other: Tally) {
        let _ = self.latency.add(&other.latency);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<Report> {
    check_args(&args)?;
    let prepared = Prepared::new(&args)?;
    let check = Check::new(&args);
    // One request first: a wrong URL or model fails fast and clearly.
    let mut probe = prepared.connect(false).await?;
    send(&mut probe, &check).await.map_err(|e| anyhow::anyhow!("the first request failed: {e}"))?;

    let started = Instant::now();
    let measure_from = started + args.warmup;
    let end = measure_from + args.duration;
    let cpu_from = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        process_cpu()
    });
    let tally = match args.mode {
        Mode::Closed => closed(&args, &prepared, &check, measure_from, end).await?,
        Mode::Open => open(&args, probe, &check, measure_from, end).await?,
    };
    let cpu = cpu_from.await.ok().flatten().zip(process_cpu()).map(|(from, to)| to.saturating_sub(from));
    let seconds = args.duration.as_secs_f64();
    let h = &tally.latency;
    let ms = |us: u64| us as f64 / 1000.0;
    let requests = h.len() + tally.errors;
    Ok(Report {
        label: args.label.clone().unwrap_or_else(|| args.url.clone()),
        url: args.url.clone(),
        model: args.model.clone(),
        protocol: args.protocol,
        mode: args.mode,
        concurrency: args.concurrency,
        connections: (args.protocol == Protocol::Grpc && args.connections > 0).then_some(args.connections),
        rate: (args.mode == Mode::Open).then_some(args.rate),
        rows: args.rows,
        body: args.body,
        seconds,
        requests,
        errors: tally.errors,
        throughput_rps: h.len() as f64 / seconds,
        rows_per_s: (h.len() as f64 * args.rows as f64) / seconds,
        latency_ms: Latency {
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        },
        first_error: tally.first_error,
        client_cpu_us: cpu.map(|cpu| cpu.as_secs_f64() * 1e6 / h.len().max(1) as f64),
    })
}

/// This process's CPU time so far, user and system, from `/proc/self/stat` (in USER_HZ ticks, 100 a second on
/// Linux); `None` without `/proc`.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After the command's name (in parentheses, which may hold spaces): field 3 on, utime and stime are 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

async fn closed(
    args: &RunArgs,
    prepared: &Prepared,
    check: &Check,
    measure_from: Instant,
    end: Instant,
) -> anyhow::Result<Tally> {
    let mut tasks = Vec::new();
    // `--connections` shared HTTP/2 connections (gRPC), else one per task.
    let mut shared = Vec::new();
    if args.protocol == Protocol::Grpc {
        for _ in 0..args.connections {
            shared.push(prepared.connect(true).await?);
        }
    }
    for i in 0..args.concurrency.max(1) {
        let check = check.clone();
        // Its own client: one keep-alive connection (HTTP/1.1) or one HTTP/2 connection (gRPC) per task, unless
        // gRPC callers share theirs.
        let mut target = match shared.get(i % shared.len().max(1)) {
            Some(t) => t.clone(),
            None => prepared.connect(true).await?,
        };
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    return tally;
                }
                let outcome = send(&mut target, &check).await;
                if t0 >= measure_from {
                    tally.record(t0.elapsed(), outcome);
                }
            }
        }));
    }
    let mut all = Tally::new();
    for t in tasks {
        if let Ok(t) = t.await {
            all.merge(t);
        }
    }
    Ok(all)
}

/// Requests on `target`'s client (HTTP: its pool of connections; gRPC: one multiplexed HTTP/2 connection).
async fn open(
    args: &RunArgs,
    target: Target,
    check: &Check,
    measure_from: Instant,
    end: Instant,
) -> anyhow::Result<Tally> {
    if args.rate.is_nan() || args.rate <= 0.0 {
        bail!("--rate must be positive");
    }
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let outstanding = Arc::new(tokio::sync::Semaphore::new(args.max_outstanding.max(1)));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Duration, Result<(), String>)>();
    let collector = tokio::spawn(async move {
        let mut tally = Tally::new();
        while let Some((took, outcome)) = rx.recv().await {
            tally.record(took, outcome);
        }
        tally
    });
    let mut next = Instant::now();
    while next < end {
        tokio::time::sleep_until(next.into()).await;
        let scheduled = next;
        let measured = scheduled >= measure_from;
        let dispatched = Instant::now();
        match Arc::clone(&outstanding).try_acquire_owned() {
            Ok(permit) => {
                let (mut target, check, tx) = (target.clone(), check.clone(), tx.clone());
                tokio::spawn(async move {
                    let outcome = send(&mut target, &check).await;
                    drop(permit);
                    if measured {
                        // From dispatch: waiting for a connection is part of it, the harness's timer tick is not.
                        let _ = tx.send((dispatched.elapsed(), outcome));
                    }
                });
            }
            Err(_) if measured => {
                let _ =
                    tx.send((Duration::ZERO, Err(format!("more than {} requests outstanding", args.max_outstanding))));
            }
            Err(_) => {}
        }
        // Keep to the schedule even when a tick was late: the next request is due one interval after this one
        // was due, not after it went out.
        next = scheduled + interval;
    }
    // Wait for what is still in flight.
    let _ = outstanding.acquire_many(u32::try_from(args.max_outstanding.max(1)).unwrap_or(u32::MAX)).await;
    drop(tx);
    Ok(collector.await?)
}

fn markdown_header() -> &'static str {
    "| server | protocol | mode | load | rows/request | body | req/s | rows/s | p50 ms | p90 ms | p99 ms | \
     p99.9 ms | max ms | errors |\n\
     | --- | --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
}

fn markdown_row(r: &Report) -> String {
    let load = match r.mode {
        Mode::Closed => match r.connections {
            Some(n) => format!("{} calls / {n} conn", r.concurrency),
            None => format!("{} conn", r.concurrency),
        },
        Mode::Open => format!("{} req/s", r.rate.unwrap_or(0.0)),
    };
    let body = match (r.protocol, r.body) {
        (Protocol::Grpc, BodyKind::Json) => "typed",
        (Protocol::Grpc, BodyKind::Binary) => "raw",
        (_, BodyKind::Json) => "JSON",
        (_, BodyKind::Binary) => "binary",
    };
    let protocol = protocol_name(r.protocol);
    let l = &r.latency_ms;
    format!(
        "| {} | {} | {:?} | {load} | {} | {body} | {:.0} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} |",
        r.label, protocol, r.mode, r.rows, r.throughput_rps, r.rows_per_s, l.p50, l.p90, l.p99, l.p999, l.max, r.errors
    )
    .replace("Closed", "closed")
    .replace("Open", "open")
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::V2 => "v2",
        Protocol::V1 => "v1",
        Protocol::Grpc => "grpc",
    }
}

fn read_reports(files: &[PathBuf]) -> anyhow::Result<Vec<Report>> {
    files
        .iter()
        .map(|f| {
            let text = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            serde_json::from_slice(&text).with_context(|| format!("{} is not a result file", f.display()))
        })
        .collect()
}

/// A grouped bar chart of p50 / p99 / p99.9 per run, on a log scale.
fn svg(reports: &[Report]) -> String {
    let (bar, gap, left, top, height) = (14.0, 18.0, 70.0, 30.0, 300.0);
    let groups = reports.len().max(1) as f64;
    let width = left + groups * (3.0 * bar + gap) + 20.0;
    let values: Vec<[f64; 3]> =
        reports.iter().map(|r| [r.latency_ms.p50, r.latency_ms.p99, r.latency_ms.p999]).collect();
    let max = values.iter().flatten().copied().fold(0.01f64, f64::max);
    let (lo, hi) = (0.01f64.log10(), max.log10().ceil().max(0.0));
    let y = |v: f64| top + height * (1.0 - ((v.max(0.01).log10() - lo) / (hi - lo)));
    let colours = ["#4c78a8", "#f58518", "#e45756"];
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{:.0}" font-family="sans-serif" font-size="11">"#,
        top + height + 150.0
    );
    out.push_str(&format!(r#"<text x="{left}" y="16" font-size="13">Latency (ms, log scale): p50, p99, p99.9</text>"#));
    let mut tick = lo;
    while tick <= hi + 1e-9 {
        let v = 10f64.powf(tick);
        out.push_str(&format!(
            r##"<line x1="{left}" x2="{width:.0}" y1="{0:.1}" y2="{0:.1}" stroke="#ddd"/><text x="{1}" y="{2:.1}" text-anchor="end">{v}</text>"##,
            y(v),
            left - 6.0,
            y(v) + 4.0
        ));
        tick += 1.0;
    }
    for (i, (r, vals)) in reports.iter().zip(&values).enumerate() {
        let x0 = left + gap / 2.0 + i as f64 * (3.0 * bar + gap);
        for (k, v) in vals.iter().enumerate() {
            let x = x0 + k as f64 * bar;
            out.push_str(&format!(
                r#"<rect x="{x:.1}" y="{:.1}" width="{bar}" height="{:.1}" fill="{}"><title>{} {v:.3} ms</title></rect>"#,
                y(*v),
                (top + height - y(*v)).max(0.0),
                colours[k],
                escape(&r.label)
            ));
        }
        let cx = x0 + 1.5 * bar;
        let ly = top + height + 10.0;
        out.push_str(&format!(
            r#"<text transform="translate({cx:.1},{ly:.1}) rotate(45)" font-size="10">{}</text>"#,
            escape(&format!("{} · {}", r.label, scenario(r)))
        ));
    }
    for (k, name) in ["p50", "p99", "p99.9"].iter().enumerate() {
        let x = width - 150.0 + k as f64 * 45.0;
        out.push_str(&format!(
            r#"<rect x="{x:.0}" y="6" width="10" height="10" fill="{}"/><text x="{:.0}" y="15">{name}</text>"#,
            colours[k],
            x + 13.0
        ));
    }
    out.push_str("</svg>\n");
    out
}

fn scenario(r: &Report) -> String {
    let load = match r.mode {
        Mode::Closed => format!("{}c", r.concurrency),
        Mode::Open => format!("{}/s", r.rate.unwrap_or(0.0)),
    };
    let body = if r.body == BodyKind::Binary { " bin" } else { "" };
    format!("{} rows {load} {}{body}", r.rows, protocol_name(r.protocol))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => {
            let out = args.out.clone();
            let report = run(*args).await?;
            println!("{}\n{}", markdown_header(), markdown_row(&report));
            if let Some(e) = &report.first_error {
                eprintln!("first error: {e}");
            }
            if let Some(path) = out {
                std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Command::Table { files } => {
            println!("{}", markdown_header());
            for r in read_reports(&files)? {
                println!("{}", markdown_row(&r));
            }
        }
        Command::Plot { out, files } => {
            std::fs::write(&out, svg(&read_reports(&files)?)).with_context(|| format!("writing {}", out.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn args(body: BodyKind, rows: usize) -> RunArgs {
        RunArgs::parse_from([
            "x",
            "--model",
            "m",
            "--rows",
            &rows.to_string(),
            "--body",
            if body == BodyKind::Json { "json" } else { "binary" },
            "--output",
            "predict",
        ])
    }

    #[test]
    fn grpc_requests_carry_the_same_rows_typed_or_raw() {
        let rows = vec![vec![1.5f32, -2.0, 3.25], vec![0.0, 4.0, 5.5]];
        let typed = grpc_request(&args(BodyKind::Json, 2), &rows);
        let raw = grpc_request(&args(BodyKind::Binary, 2), &rows);
        for r in [&typed, &raw] {
            assert_eq!(r.model_name, "m");
            assert_eq!(r.inputs[0].shape, vec![2, 3]);
            assert_eq!(r.inputs[0].datatype, "FP32");
            assert_eq!(r.outputs[0].name, "predict");
        }
        let flat: Vec<f32> = rows.concat();
        assert_eq!(typed.inputs[0].contents.as_ref().unwrap().fp32_contents, flat);
        assert!(typed.raw_input_contents.is_empty());
        assert!(raw.inputs[0].contents.is_none());
        let decoded: Vec<f32> =
            raw.raw_input_contents[0].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(decoded, flat);
    }

    #[test]
    fn json_and_binary_bodies_follow_the_protocol() {
        let a = args(BodyKind::Json, 2);
        let b = body(&a, &[vec![1.0, 2.0], vec![3.0, 4.5]]);
        assert_eq!(b.json_len, None);
        let v: serde_json::Value = serde_json::from_slice(&b.bytes).unwrap();
        assert_eq!(v["inputs"][0]["shape"], serde_json::json!([2, 2]));
        assert_eq!(v["inputs"][0]["data"], serde_json::json!([[1.0, 2.0], [3.0, 4.5]]));
        // In the order Triton's and KServe's clients write it: the data after its datatype.
        let text = std::str::from_utf8(&b.bytes).unwrap();
        assert!(text.find("\"datatype\"").unwrap() < text.find("\"data\"").unwrap(), "{text}");

        let a = args(BodyKind::Binary, 2);
        let b = body(&a, &[vec![1.0, 2.0], vec![3.0, 4.5]]);
        let n = b.json_len.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&b.bytes[..n]).unwrap();
        assert_eq!(v["inputs"][0]["parameters"]["binary_data_size"], 16);
        assert_eq!(v["outputs"][0]["parameters"]["binary_data"], true);
        let floats: Vec<f32> = b.bytes[n..].chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert_eq!(floats, [1.0, 2.0, 3.0, 4.5]);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn reports_become_table_rows_and_a_chart() {
        let mut t = Tally::new();
        for us in [100u64, 200, 300, 400, 10_000] {
            t.record(Duration::from_micros(us), Ok(()));
        }
        t.record(Duration::ZERO, Err("503".into()));
        assert_eq!((t.latency.len(), t.errors), (5, 1));
        assert_eq!(t.latency.value_at_quantile(0.5), 300);
        let r = Report {
            label: "ferroserve".into(),
            url: "u".into(),
            model: "m".into(),
            protocol: Protocol::V2,
            mode: Mode::Closed,
            concurrency: 16,
            connections: None,
            rate: None,
            rows: 1,
            body: BodyKind::Json,
            seconds: 1.0,
            requests: 6,
            errors: 1,
            throughput_rps: 5.0,
            rows_per_s: 5.0,
            latency_ms: Latency { mean: 2.2, p50: 0.3, p90: 10.0, p99: 10.0, p999: 10.0, max: 10.0 },
            first_error: Some("503".into()),
            client_cpu_us: None,
        };
        assert_eq!(
            markdown_row(&r),
            "| ferroserve | v2 | closed | 16 conn | 1 | JSON | 5 | 5 | 0.300 | 10.000 | 10.000 | 10.000 | 10.000 | 1 |"
        );
        assert_eq!(markdown_header().lines().map(|l| l.matches('|').count()).collect::<Vec<_>>(), [15, 15]);
        let v1 = Report { protocol: Protocol::V1, ..r.clone() };
        assert!(markdown_row(&v1).starts_with("| ferroserve | v1 | closed |"), "{}", markdown_row(&v1));
        assert_eq!((scenario(&r).as_str(), scenario(&v1).as_str()), ("1 rows 16c v2", "1 rows 16c v1"));
        let chart = svg(&[r.clone(), v1.clone()]);
        assert!(chart.starts_with("<svg") && chart.matches("<rect").count() >= 6, "{chart}");
        assert!(chart.contains("16c v1") && chart.contains("16c v2"), "{chart}");

        // The protocol is in the JSON, and result files from before it existed read as v2.
        let json = serde_json::to_value(&v1).unwrap();
        assert_eq!(json["protocol"], "v1");
        let mut old = serde_json::to_value(&r).unwrap();
        old.as_object_mut().unwrap().remove("protocol");
        assert_eq!(serde_json::from_value::<Report>(old).unwrap().protocol, Protocol::V2);
    }

    fn v1_args(extra: &[&str]) -> RunArgs {
        RunArgs::parse_from(["x", "--model", "anomaly-detector", "--protocol", "v1"].iter().chain(extra))
    }

    #[test]
    fn v2_stays_the_default() {
        let a = RunArgs::parse_from(["x", "--model", "m", "--version", "3"]);
        assert_eq!(a.protocol, Protocol::V2);
        assert!(check_args(&a).is_ok());
        assert_eq!(endpoint(&a), "http://127.0.0.1:8080/v2/models/m/versions/3/infer");
        let a = RunArgs::parse_from(["x", "--model", "m", "--url", "http://127.0.0.1:9/", "--expect-output", "p"]);
        assert_eq!(endpoint(&a), "http://127.0.0.1:9/v2/models/m/infer");
        assert_eq!(Check::new(&a), Check::V2 { expect_output: Some("p".into()) });
    }

    #[test]
    fn v1_posts_the_rows_as_instances_to_predict() {
        let a = v1_args(&["--rows", "2", "--url", "http://127.0.0.1:8080/"]);
        assert!(check_args(&a).is_ok());
        assert_eq!(endpoint(&a), "http://127.0.0.1:8080/v1/models/anomaly-detector:predict");
        assert!(endpoint(&a).parse::<hyper::Uri>().is_ok());
        assert_eq!(Check::new(&a), Check::V1 { rows: 2 });

        let sent = [vec![1.0, 2.0, 0.25], vec![3.0, 4.5, -1.0]];
        let b = body(&a, &sent);
        assert_eq!(b.json_len, None);
        let v: serde_json::Value = serde_json::from_slice(&b.bytes).unwrap();
        assert_eq!(v, serde_json::json!({"instances": [[1.0, 2.0, 0.25], [3.0, 4.5, -1.0]]}));
        assert_eq!(std::str::from_utf8(&b.bytes).unwrap(), r#"{"instances":[[1.0,2.0,0.25],[3.0,4.5,-1.0]]}"#);
        // The same rows v2 would send as `data`.
        let v2 = body(&RunArgs { protocol: Protocol::V2, ..a.clone() }, &sent);
        let v2: serde_json::Value = serde_json::from_slice(&v2.bytes).unwrap();
        assert_eq!(v2["inputs"][0]["data"], v["instances"]);

        // The CSV rows and --rows carry over unchanged.
        let csv = std::env::temp_dir().join(format!("ferroserve-load-v1-{}.csv", std::process::id()));
        std::fs::write(&csv, "a,b,c\n1,2,x\n3.5,4,y\n").unwrap();
        let a = v1_args(&["--rows", "3", "--csv", csv.to_str().unwrap(), "--columns", "b,a"]);
        let v: serde_json::Value = serde_json::from_slice(&body(&a, &rows(&a).unwrap()).bytes).unwrap();
        std::fs::remove_file(&csv).unwrap();
        assert_eq!(v, serde_json::json!({"instances": [[2.0, 1.0], [4.0, 3.5], [2.0, 1.0]]}));
    }

    #[test]
    fn v1_refuses_v2_only_options() {
        let e = check_args(&v1_args(&["--body", "binary"])).unwrap_err().to_string();
        assert!(e.contains("--body binary") && e.contains("v1"), "{e}");
        assert!(check_args(&v1_args(&["--body", "json"])).is_ok());
        assert!(check_args(&v1_args(&["--version", "2"])).unwrap_err().to_string().contains("--version"));
        assert!(check_args(&v1_args(&["--output", "predict"])).unwrap_err().to_string().contains("--output"));
        assert!(check_args(&v1_args(&["--expect-output", "predict"])).is_err());
    }

    #[test]
    fn v1_answers_need_a_prediction_per_row() {
        let ok = hyper::StatusCode::OK;
        let two = Check::V1 { rows: 2 };
        assert_eq!(check_answer(&two, ok, br#"{"predictions": [1, -1]}"#), Ok(()));
        assert_eq!(check_answer(&two, ok, br#"{"model_name": "m", "predictions": [[0.1, 0.9], {"a": [1]}]}"#), Ok(()));
        assert_eq!(check_answer(&Check::V1 { rows: 1 }, ok, br#"{"predictions":[-1]}"#), Ok(()));
        assert_eq!(check_answer(&two, ok, br#"{"predictions": [1]}"#), Err("200 with 1 predictions for 2 rows".into()));
        for bad in [&br#"{"outputs": []}"#[..], br#"{"predictions": 1}"#, b"not json", b""] {
            let e = check_answer(&two, ok, bad).unwrap_err();
            assert!(e.starts_with("200 without a `predictions` array"), "{e}");
        }
        let e = check_answer(&two, hyper::StatusCode::NOT_FOUND, br#"{"error": "no model"}"#).unwrap_err();
        assert_eq!(e, r#"404 Not Found: {"error": "no model"}"#);
    }

    #[test]
    fn v2_answers_are_checked_as_before() {
        let ok = hyper::StatusCode::OK;
        let any = Check::V2 { expect_output: None };
        assert_eq!(check_answer(&any, ok, b"{}"), Ok(()));
        assert!(check_answer(&any, hyper::StatusCode::SERVICE_UNAVAILABLE, b"busy").unwrap_err().starts_with("503"));
        let named = Check::V2 { expect_output: Some("predict".into()) };
        assert_eq!(check_answer(&named, ok, br#"{"outputs":[{"name":"predict"}]}"#), Ok(()));
        assert_eq!(check_answer(&named, ok, br#"{"outputs":[]}"#), Err("200 without output `predict`".into()));
    }

    #[test]
    fn process_cpu_counts_this_process_working() {
        let Some(before) = process_cpu() else {
            eprintln!("SKIPPED process_cpu_counts_this_process_working: no /proc/self/stat here");
            return;
        };
        // Work until the count moves by 100 ms of CPU; a reading that never moved would spin to the cap.
        let cap = std::time::Instant::now() + Duration::from_secs(60);
        let mut x = 0u64;
        let mut now = before;
        while now < before + Duration::from_millis(100) && std::time::Instant::now() < cap {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            now = process_cpu().expect("read once, read again");
        }
        assert!(now >= before + Duration::from_millis(100), "{before:?} → {now:?}");
    }
}
