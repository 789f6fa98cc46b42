//! Command-line flags and their validated form.
//!
//! [`Args`] is what clap parses: flags named as in KServe's sklearn server (`--model_name`,
//! `--model_dir`, `--http_port`), each also read from the environment. [`Config`] is what the rest of
//! the server takes: checked once by `Config::try_from(args)`, so nothing downstream re-validates.
//!
//! A flag given twice keeps its last value (`args_override_self`): KServe appends the
//! InferenceService's `args` after the ServingRuntime's, and the InferenceService must win.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use ferroserve_formats::lstm::DeviceChoice;

pub use crate::batch::BatchConfig;
pub use crate::drift::DriftConfig;
use crate::error::Error;
pub use crate::feedback::FeedbackConfig;
pub use crate::store::{ModelSource, VersionPolicy};

/// The raw command line, as clap parses it; validate with `Config::try_from`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "ferroserve",
    version,
    about,
    rename_all = "snake_case",
    args_override_self = true,
    after_help = "Sub-command:\n  ferroserve validate --url URL --model NAME   post-deployment checks of a running server \
                  (see `ferroserve validate --help`)\n\nEvery flag can also be set by its environment variable \
                  (MODEL_NAME, MODEL_DIR, …); docs/operations.md lists them all."
)]
pub struct Args {
    /// The name the model is served under (`/v2/models/{model_name}`); KServe passes the
    /// InferenceService's name.
    #[arg(long, env, default_value = "model")]
    pub model_name: String,

    /// The model folder: a bare model, or version folders `v1/`, `v2/`. KServe mounts the
    /// `storageUri` here.
    #[arg(long, env, default_value = "/mnt/models")]
    pub model_dir: PathBuf,

    /// Serve every visible sub-folder of this folder as a model named after the folder, instead of
    /// `--model_dir` as `--model_name`.
    #[arg(long, env)]
    pub model_repository: Option<PathBuf>,

    /// The port of the HTTP (v2 REST) endpoint.
    #[arg(long, env, default_value_t = 8080)]
    pub http_port: u16,

    /// The gRPC port: the v2 Open Inference Protocol (`inference.GRPCInferenceService`) and `grpc.health.v1`.
    #[arg(long, env, default_value_t = 8081)]
    pub grpc_port: u16,

    /// The address to listen on. (Its variable is FERROSERVE_HOST, not HOST, which some shells set to the
    /// machine's name.)
    #[arg(long, env = "FERROSERVE_HOST", default_value = "0.0.0.0")]
    pub host: String,

    /// The largest request body accepted, in bytes; larger requests get 413.
    #[arg(long, env, default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Model requests handled at once; beyond it requests are shed with 503 rather than queued, so
    /// that a load balancer retries elsewhere instead of latency growing without bound.
    #[arg(long, env, default_value_t = 1024)]
    pub max_concurrency: usize,

    /// Seconds a model request may take before it is answered with 503.
    #[arg(long, env, default_value_t = 60)]
    pub request_timeout_secs: u64,

    /// Where candle models (the LSTM autoencoder) run: `auto` (the first GPU when this build has the
    /// `cuda` feature and one answers, else the CPU), `cpu`, `cuda` or `cuda:N`.
    #[arg(long, env, default_value = "auto")]
    pub device: DeviceChoice,

    /// Log line format: human-readable text, or one JSON object per line for log collectors.
    #[arg(long, env, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Which version folders are loaded: `latest` (the highest that loads), `latest:N`, `all`, or
    /// `specific:v1,v3`. Versions named in `serving.json` are loaded as well.
    #[arg(long, env, default_value = "latest")]
    pub version_policy: VersionPolicy,

    /// How model folders are watched for new, removed and changed versions and `serving.json`:
    /// `auto` (filesystem events, or polling where they cannot be set up), `events`, `poll`, or `off`.
    #[arg(long, env, value_enum, default_value_t = WatchMode::Auto)]
    pub watch: WatchMode,

    /// How often model folders are re-read: the polling interval, and with events a re-check that
    /// catches events a network filesystem never sends (`10s`, `500ms`, `1m`).
    #[arg(long, env, default_value = "10s", value_parser = humantime::parse_duration)]
    pub watch_interval: Duration,

    /// How long the folder must stay quiet after an event before it is re-read, so that a version
    /// being copied file by file is loaded once, complete.
    #[arg(long, env, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub watch_debounce: Duration,

    /// The most rows (windows) one batch holds, for models that gain from batching concurrent
    /// requests (the LSTM autoencoder); 0 or 1 turns batching off.
    #[arg(long, env, default_value_t = 64)]
    pub max_batch_size: usize,

    /// How long a request may wait for others to share its batch (`0ms`: never; batches then form
    /// only from requests that queued while the CPUs were busy).
    #[arg(long, env, default_value = "0ms", value_parser = humantime::parse_duration)]
    pub max_batch_delay: Duration,

    /// Recent input rows kept per model version for the drift tests (needs a reference distribution in
    /// the version's metadata.json); 0 turns drift tracking off.
    #[arg(long, env, default_value_t = 1000)]
    pub drift_window: usize,

    /// A feature drifts when its Kolmogorov–Smirnov p-value is below this.
    #[arg(long, env, default_value_t = 0.05)]
    pub drift_pvalue: f64,

    /// Rows the drift window needs before the drift flag can be raised.
    #[arg(long, env, default_value_t = 100)]
    pub drift_min_samples: usize,

    /// Predictions kept per model for feedback (by request `id`); the oldest are forgotten first.
    #[arg(long, env, default_value_t = 10_000)]
    pub feedback_capacity: usize,

    /// Labelled rows the accuracy, precision and recall from feedback are computed over (the most recent).
    #[arg(long, env, default_value_t = 1000)]
    pub feedback_window: usize,

    /// How long a client may take to send a request's headers (also how long an idle keep-alive
    /// connection waits for its next request); slower connections are closed.
    #[arg(long, env, default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// How long a request body may stall between two chunks; a body that stalls longer gets 408.
    #[arg(long, env, default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: Duration,

    /// Client connections open at once; more wait in the listen backlog until one closes.
    #[arg(long, env, default_value_t = 4096)]
    pub max_connections: usize,

    /// After SIGTERM, how long in-flight requests may take to finish before the remaining connections are
    /// closed and the process exits 0 (below Kubernetes' default 30 s grace period).
    #[arg(long, env, default_value = "25s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// The largest model file read, and the most a compressed model file (joblib with zlib or gzip) may
    /// decompress to, in bytes; a larger one fails to load, naming this limit. A load builds at most twice
    /// this much from the file, so one load's memory stays within about 3× it.
    #[arg(long, env, default_value_t = ferroserve_formats::files::DEFAULT_MAX_MODEL_BYTES)]
    pub max_model_bytes: u64,

    /// How long loading one model version may take; a load still running then is abandoned and recorded
    /// as that version's failure (the versions already serving go on serving).
    #[arg(long, env, default_value = "120s", value_parser = humantime::parse_duration)]
    pub load_timeout: Duration,

    /// Request bodies (over 64 KiB each) being read, decoded and answered at once, in bytes; a request that
    /// would go over it is answered 503 with `Retry-After`. Default: 4 × `--max_body_bytes`.
    #[arg(long, env)]
    pub max_inflight_body_bytes: Option<usize>,

    /// KServe v1 `:predict` answers `predict_proba` instead of `predict` for models that have it, as
    /// KServe's scikit-learn server does with `PREDICT_PROBA=true` (only `true`, in any case, turns it on).
    #[arg(long = "predict_proba", env = "PREDICT_PROBA", value_name = "BOOL", default_value = "false",
          action = clap::ArgAction::Set, value_parser = kserve_bool)]
    pub predict_proba: bool,
}

/// KServe's reading of a boolean environment variable: `true` in any case is true, anything else false.
fn kserve_bool(value: &str) -> Result<bool, std::convert::Infallible> {
    Ok(value.trim().eq_ignore_ascii_case("true"))
}

/// How model folders are watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WatchMode {
    /// Filesystem events where the platform gives them, else polling.
    Auto,
    /// Filesystem events (inotify, FSEvents, …); starting fails if they cannot be set up.
    Events,
    /// Re-read the folders every `--watch_interval`.
    Poll,
    /// Load once at start; changes are applied only through the repository API.
    Off,
}

/// The watcher's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchConfig {
    /// Events, polling or neither.
    pub mode: WatchMode,
    /// The polling (and re-check) interval.
    pub interval: Duration,
    /// The quiet time after an event.
    pub debounce: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig { mode: WatchMode::Auto, interval: Duration::from_secs(10), debounce: Duration::from_millis(500) }
    }
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The validated configuration every part of the server reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The models to serve.
    pub models: ModelSource,
    /// The address to listen on.
    pub host: String,
    /// The HTTP port.
    pub http_port: u16,
    /// The gRPC port.
    pub grpc_port: u16,
    /// The largest request body, in bytes (at least 1).
    pub max_body_bytes: usize,
    /// Model requests handled at once (at least 1).
    pub max_concurrency: usize,
    /// How long a model request may take (at least 1 s).
    pub request_timeout: Duration,
    /// The log line format.
    pub log_format: LogFormat,
    /// The device asked for; probed when the state opens (`AppState::open`).
    pub device: DeviceChoice,
    /// Which versions are loaded.
    pub version_policy: VersionPolicy,
    /// How model folders are watched.
    pub watch: WatchConfig,
    /// How requests are batched.
    pub batch: BatchConfig,
    /// How input drift is tracked.
    pub drift: DriftConfig,
    /// How feedback is kept.
    pub feedback: FeedbackConfig,
    /// v1 `:predict` answers `predict_proba` for models that have it.
    pub predict_proba: bool,
    /// Connection limits and the drain deadline.
    pub connections: ConnectionLimits,
    /// Bounds on loading a model version.
    pub loading: LoadLimits,
    /// Bytes of request bodies (over [`crate::state::Limits::UNCOUNTED_BODY_BYTES`] each) in flight at once.
    pub max_inflight_body_bytes: usize,
}

/// How model loads are bounded (`--max_model_bytes`, `--load_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadLimits {
    /// The largest model file, and the most a compressed one may decompress to.
    pub max_model_bytes: u64,
    /// How long one version's load may take before it is abandoned.
    pub timeout: Duration,
}

impl Default for LoadLimits {
    /// The command line's defaults.
    fn default() -> Self {
        LoadLimits {
            max_model_bytes: ferroserve_formats::files::DEFAULT_MAX_MODEL_BYTES,
            timeout: crate::store::DEFAULT_LOAD_TIMEOUT,
        }
    }
}

/// How client connections are bounded (`--header_read_timeout`, `--body_read_timeout`,
/// `--max_connections`, `--shutdown_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time to send a request's headers; also the idle time of a keep-alive connection.
    pub header_read_timeout: Duration,
    /// Longest stall between two chunks of a request body (408 after it).
    pub body_read_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// How long SIGTERM waits for in-flight requests.
    pub shutdown_timeout: Duration,
}

impl Default for ConnectionLimits {
    /// The command line's defaults.
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 4096,
            shutdown_timeout: Duration::from_secs(25),
        }
    }
}

impl TryFrom<Args> for Config {
    type Error = Error;

    /// Checks the flags: ports and limits non-zero, a model name that is one URL path segment.
    ///
    /// Folder existence is checked when the model store opens (`AppState::open`), since it is a
    /// property of the machine rather than of the command line.
    fn try_from(args: Args) -> Result<Self, Error> {
        let invalid = |flag: &'static str, reason: &str| Err(Error::InvalidArg { flag, reason: reason.to_owned() });
        if args.http_port == 0 {
            return invalid("--http_port", "must be between 1 and 65535");
        }
        if args.grpc_port == 0 {
            return invalid("--grpc_port", "must be between 1 and 65535");
        }
        if args.max_body_bytes == 0 {
            return invalid("--max_body_bytes", "must be at least 1");
        }
        if args.max_concurrency == 0 {
            return invalid("--max_concurrency", "must be at least 1");
        }
        if args.request_timeout_secs == 0 {
            return invalid("--request_timeout_secs", "must be at least 1");
        }
        for (flag, d) in
            [("--header_read_timeout", args.header_read_timeout), ("--body_read_timeout", args.body_read_timeout)]
        {
            if d.is_zero() {
                return invalid(flag, "must be longer than zero");
            }
        }
        if args.max_connections == 0 {
            return invalid("--max_connections", "must be at least 1");
        }
        if args.max_model_bytes == 0 {
            return invalid("--max_model_bytes", "must be at least 1");
        }
        if args.load_timeout.is_zero() {
            return invalid("--load_timeout", "must be longer than zero");
        }
        let max_inflight_body_bytes = args.max_inflight_body_bytes.unwrap_or(args.max_body_bytes.saturating_mul(4));
        if max_inflight_body_bytes < args.max_body_bytes {
            return invalid(
                "--max_inflight_body_bytes",
                "must be at least --max_body_bytes (otherwise the largest allowed body could never be read)",
            );
        }
        if args.watch_interval.is_zero() {
            return invalid("--watch_interval", "must be longer than zero");
        }
        if !(args.drift_pvalue > 0.0 && args.drift_pvalue < 1.0) {
            return invalid("--drift_pvalue", "must be between 0 and 1");
        }
        if args.host.trim().is_empty() {
            return invalid("--host", "must not be empty");
        }
        let models = match args.model_repository {
            Some(root) => ModelSource::Repository { root },
            None => {
                let name = args.model_name;
                // The name is a path segment of every model URL, so it must be one.
                if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\\') {
                    return Err(Error::InvalidArg {
                        flag: "--model_name",
                        reason: format!("`{name}` is not usable in a URL path (empty, `.`, `..` or containing `/`)"),
                    });
                }
                ModelSource::Single { name, dir: args.model_dir }
            }
        };
        Ok(Config {
            models,
            host: args.host,
            http_port: args.http_port,
            grpc_port: args.grpc_port,
            max_body_bytes: args.max_body_bytes,
            max_concurrency: args.max_concurrency,
            request_timeout: Duration::from_secs(args.request_timeout_secs),
            log_format: args.log_format,
            device: args.device,
            version_policy: args.version_policy,
            watch: WatchConfig { mode: args.watch, interval: args.watch_interval, debounce: args.watch_debounce },
            batch: BatchConfig { max_batch_size: args.max_batch_size, max_delay: args.max_batch_delay },
            drift: DriftConfig {
                window: args.drift_window,
                level: args.drift_pvalue,
                min_samples: args.drift_min_samples,
            },
            feedback: FeedbackConfig { capacity: args.feedback_capacity, window: args.feedback_window },
            predict_proba: args.predict_proba,
            connections: ConnectionLimits {
                header_read_timeout: args.header_read_timeout,
                body_read_timeout: args.body_read_timeout,
                max_connections: args.max_connections,
                shutdown_timeout: args.shutdown_timeout,
            },
            loading: LoadLimits { max_model_bytes: args.max_model_bytes, timeout: args.load_timeout },
            max_inflight_body_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Config {
        let argv = std::iter::once("ferroserve").chain(args.iter().copied());
        Config::try_from(Args::try_parse_from(argv).unwrap()).unwrap()
    }

    #[test]
    fn command_is_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_follow_kserve() {
        let args = Args::try_parse_from(["ferroserve"]).unwrap();
        // Only meaningful when the test runs without the variables set; CI and `cargo test` do.
        if std::env::var_os("MODEL_NAME").is_none() && std::env::var_os("HTTP_PORT").is_none() {
            assert_eq!(args.model_name, "model");
            assert_eq!(args.http_port, 8080);
        }
        let c = parse(&["--model_dir", "/m"]);
        assert_eq!(c.max_body_bytes, 33_554_432);
        assert_eq!(c.max_concurrency, 1024);
        assert_eq!(c.request_timeout, Duration::from_secs(60));
        assert_eq!(c.loading, LoadLimits::default());
        assert_eq!(c.loading.max_model_bytes, 256 << 20);
        assert_eq!(c.max_inflight_body_bytes, 4 * 33_554_432);
        let c = parse(&["--max_body_bytes=1000", "--max_model_bytes=5000", "--load_timeout=3s"]);
        assert_eq!(c.max_inflight_body_bytes, 4000);
        assert_eq!(c.loading, LoadLimits { max_model_bytes: 5000, timeout: Duration::from_secs(3) });
    }

    #[test]
    fn repeated_flags_keep_the_last_value() {
        let c = parse(&[
            "--model_name=first",
            "--model_dir=/mnt/models",
            "--http_port=8080",
            "--model_name",
            "second",
            "--http_port=9000",
            "--model_dir",
            "/mnt/models/v2",
        ]);
        assert_eq!(c.models, ModelSource::Single { name: "second".into(), dir: "/mnt/models/v2".into() });
        assert_eq!(c.http_port, 9000);
    }

    #[test]
    fn repository_replaces_the_single_model() {
        let c = parse(&["--model_repository", "/repo", "--log_format", "json"]);
        assert_eq!(c.models, ModelSource::Repository { root: "/repo".into() });
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(parse(&["--device", "cuda:1"]).device, DeviceChoice::Cuda(1));
        assert_eq!(parse(&["--device=cpu"]).device, DeviceChoice::Cpu);
        let c = parse(&["--version_policy", "latest:2", "--watch=poll", "--watch_interval=250ms"]);
        assert_eq!(c.version_policy, VersionPolicy::Latest(2));
        assert_eq!(c.watch.mode, WatchMode::Poll);
        assert_eq!(c.watch.interval, Duration::from_millis(250));
        assert_eq!(parse(&[]).version_policy, VersionPolicy::Latest(1));
        assert_eq!(parse(&[]).watch, WatchConfig::default());
        assert_eq!(parse(&[]).batch, BatchConfig::default());
        let c = parse(&["--max_batch_size=0", "--max_batch_delay=2ms"]);
        assert!(!c.batch.enabled());
        assert_eq!(c.batch.max_delay, Duration::from_millis(2));
    }

    #[test]
    fn invalid_values_are_refused() {
        for (args, flag) in [
            (&["--http_port=0"][..], "--http_port"),
            (&["--max_body_bytes=0"], "--max_body_bytes"),
            (&["--max_concurrency=0"], "--max_concurrency"),
            (&["--request_timeout_secs=0"], "--request_timeout_secs"),
            (&["--model_name=a/b"], "--model_name"),
            (&["--max_model_bytes=0"], "--max_model_bytes"),
            (&["--load_timeout=0s"], "--load_timeout"),
            (&["--max_body_bytes=100", "--max_inflight_body_bytes=99"], "--max_inflight_body_bytes"),
            (&["--model_name=.."], "--model_name"),
        ] {
            let argv = std::iter::once("ferroserve").chain(args.iter().copied());
            let err = Config::try_from(Args::try_parse_from(argv).unwrap()).unwrap_err();
            assert!(err.to_string().contains(flag), "{err}");
        }
        assert!(Args::try_parse_from(["ferroserve", "--http_port=70000"]).is_err());
        assert!(Args::try_parse_from(["ferroserve", "--log_format=xml"]).is_err());
        assert!(Args::try_parse_from(["ferroserve", "--device=tpu"]).is_err());
        assert!(Args::try_parse_from(["ferroserve", "--version_policy=newest"]).is_err());
        assert!(Args::try_parse_from(["ferroserve", "--watch=inotify"]).is_err());
        assert!(Args::try_parse_from(["ferroserve", "--watch_interval=soon"]).is_err());
        let argv = ["ferroserve", "--watch_interval=0s"];
        assert!(
            Config::try_from(Args::try_parse_from(argv).unwrap()).unwrap_err().to_string().contains("--watch_interval")
        );
    }

    #[test]
    fn predict_proba_is_on_only_for_true() {
        assert!(!parse(&[]).predict_proba);
        for (value, on) in [("true", true), ("TRUE", true), ("1", false), ("yes", false), ("false", false)] {
            assert_eq!(parse(&["--predict_proba", value]).predict_proba, on, "{value}");
        }
    }

    /// Reads flags from the environment in a child process: setting variables in this process is
    /// `unsafe` (other test threads read the environment) and the crate forbids unsafe code.
    #[test]
    fn environment_variables_are_read_and_flags_override_them() {
        const CHILD: &str = "FERROSERVE_CONFIG_ENV_CHILD";
        if std::env::var_os(CHILD).is_some() {
            let c = parse(&["--http_port=9001"]);
            assert_eq!(c.models, ModelSource::Single { name: "from-env".into(), dir: "/env/models".into() });
            assert_eq!(c.http_port, 9001, "a flag beats its variable");
            assert_eq!(c.max_concurrency, 7);
            assert_eq!(c.log_format, LogFormat::Json);
            assert!(c.predict_proba, "PREDICT_PROBA=True, as KServe reads it");
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args(["--exact", "config::tests::environment_variables_are_read_and_flags_override_them", "--nocapture"])
            .env(CHILD, "1")
            .env("MODEL_NAME", "from-env")
            .env("MODEL_DIR", "/env/models")
            .env("HTTP_PORT", "9000")
            .env("MAX_CONCURRENCY", "7")
            .env("LOG_FORMAT", "json")
            .env("PREDICT_PROBA", "True")
            .env_remove("MODEL_REPOSITORY")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("1 passed"), "the child ran no test:\n{stdout}");
    }
}
