//! `ferroserve-train`: generate demo data and train models into versioned model folders.
//!
//! ```text
//! ferroserve-train synth --seed 42 --out metrics.csv
//! ferroserve-train isolation-forest --data metrics.csv --out models/anomaly-detector
//! ferroserve-train isolation-forest --data metrics.csv --out models/anomaly-detector \
//!     --holdout holdout.csv --gate-min-accuracy 0.85 --gate-max-latency-ms 100 --gate-max-size-mb 100
//! ferroserve-train dataset --prometheus http://127.0.0.1:9090 --start 2026-01-05T00:00:00Z \
//!     --end 2026-01-12T00:00:00Z --out data.csv
//! ferroserve-train canary --model-dir models/anomaly-detector --version v3 --percent 10
//! ferroserve-train promote --model-dir models/anomaly-detector --version v3
//! ferroserve-train rollback --model-dir models/anomaly-detector
//! ```
//!
//! Exit codes: 0 done (a trained version published), 1 an error, 2 a usage error, 3 the pre-deploy gate
//! refused the trained version (set aside under `MODEL_DIR/_rejected/`). See docs/mlops.md.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use ferroserve_formats::ModelMetadata;
use ferroserve_formats::layout::{self, VersionDir};
use ferroserve_formats::serving::ServingConfig;
use ferroserve_formats::tree::Contamination;
use ferroserve_train::dataset::{DEFAULT_TIMESTAMP_COLUMN, DatasetOptions, LabelColumn};
use ferroserve_train::isolation_forest::parse_contamination;
use ferroserve_train::output::{creation_time, git_head, shell_command};
use ferroserve_train::synth::{self, DEFAULT_START_UNIX, SynthConfig};
use ferroserve_train::{
    Dataset, IsolationForestConfig, JobOptions, LstmTrainingConfig, MaxFeatures, MaxSamples, Progress, Step,
};
use indicatif::{ProgressBar, ProgressStyle};

mod cli;

use cli::dataset::DatasetArgs;
use cli::gate::{GateArgs, gate, report};
use cli::{Outcome, UsageError, parse_time};

/// Trains scikit-learn-equivalent anomaly detectors and writes versioned Ferroserve artifacts.
#[derive(Debug, Parser)]
#[command(name = "ferroserve-train", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a labeled, seeded CSV of synthetic cluster metrics (one week of minutes by default).
    Synth(SynthArgs),
    /// Query Prometheus for the platform's five metrics and write the anomaly notebook's 45 features as a
    /// CSV (the input of isolation-forest), with its provenance beside it (OUT.provenance.json).
    Dataset(DatasetArgs),
    /// Fit scikit-learn's IsolationForest on a CSV and write the next version of a model folder.
    IsolationForest(IsolationForestArgs),
    /// Train an LSTM autoencoder on windows of a CSV and write the next version of a model folder
    /// (PyTorch import form: config.json + model.safetensors).
    LstmAutoencoder(LstmAutoencoderArgs),
    /// Make a version the default of a model folder and end any canary (rewrites serving.json).
    Promote(PromoteArgs),
    /// Send a percentage of a model's unpinned requests to a version (rewrites serving.json).
    Canary(CanaryArgs),
    /// End a running canary, or move the default back one version (or to --to) (rewrites serving.json).
    Rollback(RollbackArgs),
    /// Show a model folder's versions, default and canary.
    Serving(ServingArgs),
    /// Write the training data's per-feature distribution into a model folder's metadata.json (for drift tests of
    /// models trained elsewhere, such as a scikit-learn model.joblib); other metadata is kept.
    Reference(ReferenceArgs),
}

#[derive(Debug, Args)]
struct ReferenceArgs {
    /// The training data: a CSV file with a header.
    #[arg(long)]
    data: PathBuf,
    /// The folder holding the model (a version folder, or a bare model folder).
    #[arg(long)]
    model_dir: PathBuf,
    /// Feature columns, comma-separated, in the model's input order [default: every numeric column but the label
    /// and timestamp].
    #[arg(long, value_delimiter = ',')]
    features: Option<Vec<String>>,
    /// The label column (`none` if the data has none) [default: `label` when present].
    #[arg(long)]
    label_column: Option<String>,
    /// The timestamp column, which is not a feature.
    #[arg(long, default_value = DEFAULT_TIMESTAMP_COLUMN)]
    timestamp_column: String,
}

#[derive(Debug, Args)]
struct ServingArgs {
    /// The model folder holding the version folders (and serving.json).
    #[arg(long)]
    model_dir: PathBuf,
}

#[derive(Debug, Args)]
struct PromoteArgs {
    /// The model folder holding the version folders (and serving.json).
    #[arg(long)]
    model_dir: PathBuf,
    /// The version to make the default (`v3`, `3`, or `latest`: the newest folder).
    #[arg(long)]
    version: String,
}

#[derive(Debug, Args)]
struct CanaryArgs {
    /// The model folder holding the version folders (and serving.json).
    #[arg(long)]
    model_dir: PathBuf,
    /// The canary version (`v3`, `3`, or `latest`: the newest folder).
    #[arg(long)]
    version: String,
    /// Its share of unpinned requests, 0–100.
    #[arg(long)]
    percent: u8,
}

#[derive(Debug, Args)]
struct RollbackArgs {
    /// The model folder holding the version folders (and serving.json).
    #[arg(long)]
    model_dir: PathBuf,
    /// The version to make the default; without it, a running canary ends, or else the default moves
    /// to the version below it.
    #[arg(long)]
    to: Option<String>,
}

#[derive(Debug, Args)]
struct SynthArgs {
    /// Number of rows.
    #[arg(long, default_value_t = 10_080)]
    rows: usize,
    /// Random seed; the same seed gives byte-identical output.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fraction of rows inside injected anomalies, in [0, 0.5].
    #[arg(long, default_value_t = 0.03)]
    anomaly_rate: f64,
    /// First timestamp (RFC 3339, UTC) [default: 2026-01-05T00:00:00Z].
    #[arg(long, value_parser = parse_time)]
    start: Option<SystemTime>,
    /// Seconds between rows.
    #[arg(long, default_value_t = 60)]
    interval_secs: u64,
    /// Output file; standard output when absent.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct IsolationForestArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Number of trees.
    #[arg(long, default_value_t = 100)]
    n_estimators: usize,
    /// Rows per tree: `auto` (min(256, n)), an integer, or a fraction in (0, 1].
    #[arg(long, default_value = "auto")]
    max_samples: MaxSamples,
    /// Columns per tree: an integer, or a fraction in (0, 1] (1.0 = all).
    #[arg(long, default_value = "1.0")]
    max_features: MaxFeatures,
    /// Draw rows with replacement.
    #[arg(long)]
    bootstrap: bool,
    /// Expected fraction of outliers: `auto` (offset -0.5) or a float in (0, 0.5].
    #[arg(long, default_value = "auto", value_parser = parse_contamination)]
    contamination: Contamination,
    /// Random seed; the same data and seed give byte-identical artifacts.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// What every training subcommand shares: data, output folder and provenance.
#[derive(Debug, Args)]
struct CommonArgs {
    /// The training data: a CSV file with a header.
    #[arg(long)]
    data: PathBuf,
    /// The model folder; the new version is written inside it (`MODEL_DIR/vN`).
    #[arg(long, value_name = "MODEL_DIR")]
    out: PathBuf,
    /// Feature columns, comma-separated [default: every numeric column but the label and timestamp].
    #[arg(long, value_delimiter = ',')]
    features: Option<Vec<String>>,
    /// The label column (1/true = anomaly), used for performance metrics; `none` for no labels
    /// [default: `label` when present].
    #[arg(long)]
    label_column: Option<String>,
    /// The timestamp column, whose first and last values are recorded as the data's time range.
    #[arg(long, default_value = DEFAULT_TIMESTAMP_COLUMN)]
    timestamp_column: String,
    /// The version number to write, from 1 [default: one above the highest existing].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    version: Option<u64>,
    /// The model name recorded in metadata.json [default: MODEL_DIR's folder name].
    #[arg(long)]
    model_name: Option<String>,
    /// The source revision recorded: `auto` (git rev-parse HEAD here, omitted outside a repository),
    /// `none`, or a commit SHA.
    #[arg(long, default_value = "auto")]
    git_commit: String,
    #[command(flatten)]
    gate: GateArgs,
    /// Publish the new version as a canary taking PERCENT % (0–100) of unpinned requests. serving.json pins the
    /// version serving today as the default before the new one appears, so the newest version never takes all
    /// traffic on its own; a version the gate refuses takes none. Without it, the newest version serves
    /// (unless serving.json names a default).
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(0..=100))]
    canary: Option<u8>,
}

#[derive(Debug, Args)]
struct LstmAutoencoderArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Rows per window (the model's seq_len).
    #[arg(long, default_value_t = 60)]
    window: usize,
    /// Rows between the starts of consecutive windows.
    #[arg(long, default_value_t = 1)]
    stride: usize,
    /// LSTM hidden size.
    #[arg(long, default_value_t = 32)]
    hidden_size: usize,
    /// Stacked LSTM layers in the encoder and in the decoder.
    #[arg(long, default_value_t = 1)]
    num_layers: usize,
    /// Maximum number of epochs.
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// Windows per optimiser step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// AdamW's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f64,
    /// Fraction of windows, the last in time, held out for early stopping, in [0, 1).
    #[arg(long, default_value_t = 0.2)]
    validation_fraction: f64,
    /// Epochs without a better validation loss before training stops (the best weights are kept).
    #[arg(long, default_value_t = 3)]
    patience: usize,
    /// Random seed; the same data and seed give byte-identical artifacts on CPU.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Percentile of the training windows' reconstruction errors used as the anomaly threshold.
    #[arg(long, default_value_t = 99.0)]
    threshold_percentile: f64,
}

/// Progress bars on standard error; indicatif hides them when it is not a terminal.
#[derive(Debug, Default)]
struct Bars(Option<ProgressBar>);

impl Progress for Bars {
    fn start(&mut self, step: Step, total: u64) {
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template("{msg:>14} [{bar:40}] {pos}/{len} ({elapsed}, ETA {eta})") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(step.to_string());
        self.0 = Some(bar);
    }

    fn advance(&mut self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(n);
        }
    }

    fn note(&mut self, line: &str) {
        match &self.0 {
            Some(bar) if !bar.is_hidden() => bar.println(line),
            _ => eprintln!("{line}"),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}

/// Exit code of a run whose version the pre-deploy gate refused (set aside under `_rejected/`).
const EXIT_REJECTED: u8 = 3;
/// Exit code of a usage error: clap's for bad flags, ours for a gate that cannot be measured.
const EXIT_USAGE: u8 = 2;

/// Runs the command. Exit codes: 0 done (a trained version published), 1 an error, 2 a usage error, 3 the
/// gate refused the version. An error is one line on standard error (with its causes), never a stack
/// trace, whatever `RUST_BACKTRACE` says: every error here is the user's to fix, and says how.
fn main() -> std::process::ExitCode {
    match run(Cli::parse().command) {
        Ok(Outcome::Done) => std::process::ExitCode::SUCCESS,
        Ok(Outcome::Rejected) => std::process::ExitCode::from(EXIT_REJECTED),
        Err(e) => {
            eprintln!("ferroserve-train: {}", one_line(&e));
            let usage = e.chain().any(|c| {
                c.is::<UsageError>()
                    || matches!(
                        c.downcast_ref::<ferroserve_train::Error>(),
                        Some(
                            ferroserve_train::Error::GateFile { .. }
                                | ferroserve_train::Error::HoldoutUnlabelled { .. }
                                | ferroserve_train::Error::HoldoutFeatures { .. }
                        )
                    )
            });
            if usage { std::process::ExitCode::from(EXIT_USAGE) } else { std::process::ExitCode::FAILURE }
        }
    }
}

/// The error and its causes on one line, each cause once: an error that already ends with its cause's text (a
/// file error names the file, then what the OS said) is not followed by it again.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !line.ends_with(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}

fn run(command: Command) -> anyhow::Result<Outcome> {
    let done = |r: anyhow::Result<()>| r.map(|()| Outcome::Done);
    match command {
        Command::Synth(args) => done(synth_command(args)),
        Command::Dataset(args) => done(cli::dataset::run(&args)),
        Command::IsolationForest(args) => isolation_forest_command(args),
        Command::LstmAutoencoder(args) => lstm_autoencoder_command(args),
        Command::Promote(a) => {
            done(edit_serving(&a.model_dir, |c, v| c.promote(v, &a.version).map(|()| String::new())))
        }
        Command::Canary(a) => {
            done(edit_serving(&a.model_dir, |c, v| c.start_canary(v, &a.version, a.percent).map(|()| String::new())))
        }
        Command::Rollback(a) => done(edit_serving(&a.model_dir, |c, v| c.rollback(v, a.to.as_deref()))),
        Command::Serving(a) => done(show_serving(&a.model_dir)),
        Command::Reference(a) => done(reference_command(&a)),
    }
}

fn reference_command(args: &ReferenceArgs) -> anyhow::Result<()> {
    if !args.model_dir.is_dir() {
        bail!("{} is not a folder", args.model_dir.display());
    }
    // `reference` writes into one version (unlike promote/canary/rollback, which take the folder of versions).
    let versions = layout::version_dirs(&args.model_dir).unwrap_or_default();
    if let Some(last) = versions.last() {
        bail!(
            "{} holds version folders ({}): --model-dir of `reference` is one version's folder, e.g. {}",
            args.model_dir.display(),
            versions.iter().map(|v| format!("{}/", v.name)).collect::<Vec<_>>().join(", "),
            last.path.display()
        );
    }
    let described = args.model_dir.join(ferroserve_formats::layout::METADATA_JSON).exists();
    if !described && layout::find_artifact(&args.model_dir).ok().flatten().is_none() {
        bail!(
            "{} holds no model: --model-dir of `reference` is the folder of one model version",
            args.model_dir.display()
        );
    }
    let options = DatasetOptions {
        features: args.features.clone(),
        label_column: match args.label_column.as_deref() {
            None => LabelColumn::Auto,
            Some("none") => LabelColumn::Absent,
            Some(name) => LabelColumn::Named(name.to_owned()),
        },
        timestamp_column: args.timestamp_column.clone(),
    };
    let data = Dataset::read_csv(&args.data, &options)?;
    let path = args.model_dir.join(ferroserve_formats::layout::METADATA_JSON);
    let mut metadata = if path.is_file() { ModelMetadata::read(&path)? } else { ModelMetadata::default() };
    let reference = data.reference_distribution();
    let names: Vec<&str> = reference.features.iter().map(|f| f.name.as_str()).collect();
    println!("{}: reference distribution of {} rows, features {}", path.display(), data.rows, names.join(", "));
    metadata.reference_distribution = Some(reference);
    // Written beside, then renamed: a watching server never reads half a file.
    let tmp = args.model_dir.join(format!(".{}.tmp", ferroserve_formats::layout::METADATA_JSON));
    std::fs::write(&tmp, metadata.to_bytes()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The version folders of `dir` and its serving.json (empty when absent).
fn serving_state(dir: &Path) -> anyhow::Result<(Vec<VersionDir>, ServingConfig)> {
    let versions = layout::version_dirs(dir).with_context(|| format!("reading the model folder {}", dir.display()))?;
    if versions.is_empty() {
        bail!("{} holds no version folder (v1/, v2/, …): not a versioned model folder", dir.display());
    }
    let config = ServingConfig::read(dir)?.unwrap_or_default();
    Ok((versions, config))
}

/// Applies `edit` to serving.json and writes it atomically; prints the change. Nothing is written when the
/// edit is refused.
fn edit_serving(
    dir: &Path,
    edit: impl FnOnce(&mut ServingConfig, &[VersionDir]) -> Result<String, String>,
) -> anyhow::Result<()> {
    let (versions, before) = serving_state(dir)?;
    let mut after = before.clone();
    let note = edit(&mut after, &versions).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    check_inputs(dir, &versions, &before, &after)?;
    let path = after.write(dir)?;
    let show = |c: &ServingConfig| {
        if *c == ServingConfig::default() { "(none)".to_owned() } else { serde_json::to_string(c).unwrap_or_default() }
    };
    let note = if note.is_empty() { String::new() } else { format!(" ({note})") };
    println!("{}: {} -> {}{note}", path.display(), show(&before), show(&after));
    Ok(())
}

/// Refuses an edit that would make versions with other inputs share traffic: a canary beside the default, or
/// a new default after the one serving now. Versions that cannot be loaded are left to the server, which
/// never serves them.
fn check_inputs(
    dir: &Path,
    versions: &[VersionDir],
    before: &ServingConfig,
    after: &ServingConfig,
) -> anyhow::Result<()> {
    let highest = versions.last().map(|v| v.name.clone());
    let default_before = before.default.clone().or_else(|| highest.clone());
    let default_after = after.default.clone().or(highest);
    let mut pairs = Vec::new();
    if let (Some(c), Some(d)) = (&after.canary, &default_after) {
        pairs.push((c.version.clone(), d.clone(), "the canary"));
    }
    if let (Some(new), Some(old)) = (&default_after, &default_before)
        && !ferroserve_formats::serving::same_version(new, old)
    {
        pairs.push((new.clone(), old.clone(), "the new default"));
    }
    for (candidate, serving, role) in pairs {
        let (Some(a), Some(b)) = (signature(versions, &candidate), signature(versions, &serving)) else { continue };
        if let Err(why) = a.same_inputs(&b) {
            bail!(
                "{}: {role} `{candidate}` cannot share traffic with `{serving}`: its {why}; requests written for \
                 `{serving}` would fail — serve it under another model name",
                dir.display()
            );
        }
    }
    Ok(())
}

/// The signature of version `name`, when it loads.
fn signature(versions: &[VersionDir], name: &str) -> Option<ferroserve_formats::Signature> {
    let dir = versions.iter().find(|v| ferroserve_formats::serving::same_version(&v.name, name))?;
    let files = layout::find_artifact(&dir.path).ok()??;
    Some(ferroserve_formats::load_model(&files).ok()?.signature().clone())
}

fn show_serving(dir: &Path) -> anyhow::Result<()> {
    let (versions, config) = serving_state(dir)?;
    let names: Vec<&str> = versions.iter().map(|v| v.name.as_str()).collect();
    let default = config.default.clone().unwrap_or_else(|| format!("{} (the highest)", names.last().unwrap_or(&"-")));
    println!("versions: {}", names.join(", "));
    println!("default:  {default}");
    match &config.canary {
        Some(c) => println!("canary:   {} at {}%", c.version, c.percent),
        None => println!("canary:   none"),
    }
    for (name, why) in rejected(dir) {
        println!("rejected: {name} ({why})");
    }
    Ok(())
}

/// The versions the pre-deploy gate set aside under `_rejected/`, oldest first, each with the checks it failed.
fn rejected(dir: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dir.join(ferroserve_train::gate::REJECTED_DIR)) else { return Vec::new() };
    let mut out: Vec<(String, String)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let failed = ModelMetadata::read(&e.path().join(layout::METADATA_JSON))
                .ok()
                .and_then(|m| m.extra.get("validation")?.get("checks")?.as_array().cloned())
                .map(|checks| {
                    checks
                        .iter()
                        .filter(|c| c["passed"] == false)
                        .map(|c| {
                            let (name, cmp) =
                                (c["name"].as_str().unwrap_or("?"), c["comparison"].as_str().unwrap_or(""));
                            let not = if cmp == ">=" { "<" } else { ">" };
                            let measured = c["measured"].as_f64().unwrap_or(f64::NAN);
                            format!("{name} {measured:.4} {not} {}", c["threshold"])
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "no gate record".to_owned());
            (name, failed)
        })
        .collect();
    // By version number (v10 after v2), then name (a second refusal of one number after the first).
    out.sort_by_cached_key(|(name, _)| {
        (layout::parse_version(name.split('-').next().unwrap_or_default()).unwrap_or(u64::MAX), name.clone())
    });
    out
}

fn synth_command(args: SynthArgs) -> anyhow::Result<()> {
    let config = SynthConfig {
        rows: args.rows,
        seed: args.seed,
        anomaly_rate: args.anomaly_rate,
        start: args.start.unwrap_or(UNIX_EPOCH + Duration::from_secs(DEFAULT_START_UNIX)),
        interval_secs: args.interval_secs,
    };
    let data = synth::generate(&config)?;
    let anomalies = data.rows.iter().filter(|r| r.is_anomaly()).count();
    match &args.out {
        Some(path) => {
            cli::create_parent(path)?;
            data.write_file(path)?;
            println!(
                "{}: {} rows, {anomalies} labelled anomalies (seed {})",
                path.display(),
                data.rows.len(),
                args.seed
            );
        }
        None => {
            let stdout = std::io::stdout().lock();
            match data.write_csv(std::io::BufWriter::new(stdout)) {
                // `synth | head` closing the pipe early is not a failure.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other.context("writing to standard output")?,
            }
        }
    }
    Ok(())
}

fn isolation_forest_command(args: IsolationForestArgs) -> anyhow::Result<Outcome> {
    let (mut options, dataset_options) = job_and_dataset(&args.common)?;
    let config = IsolationForestConfig {
        n_estimators: args.n_estimators,
        max_samples: args.max_samples,
        max_features: args.max_features,
        bootstrap: args.bootstrap,
        contamination: args.contamination,
        seed: args.seed,
    };

    let dataset = Dataset::read_csv(&args.common.data, &dataset_options)?;
    options.gate = gate(&args.common.gate, &dataset_options, &dataset)?;
    // Resolve first so that scikit-learn's warning comes before the work, not after it.
    for warning in config.resolve(dataset.rows, dataset.feature_names.len())?.warnings {
        eprintln!("warning: {warning}");
    }
    pin_default(&args.common)?;
    let trained = ferroserve_train::train_isolation_forest(&dataset, &config, &options, &mut Bars::default())?;
    if let Some(e) = &trained.evaluation {
        eprintln!(
            "trained on {} rows: precision {:.3}, recall {:.3}, f1 {:.3}, flagged {:.2}%",
            dataset.rows,
            e.precision(),
            e.recall(),
            e.f1_score(),
            100.0 * e.anomaly_rate()
        );
    }
    let outcome = report(trained.validation.as_ref(), &trained.path)?;
    start_canary(&args.common, outcome, &trained.path)
}

/// With `--canary`, before training: pins serving.json's default to the version that serves now (the newest,
/// when serving.json names none), so that the version about to be published does not take all traffic as the
/// newest. Nothing to pin in a folder without versions.
fn pin_default(common: &CommonArgs) -> anyhow::Result<()> {
    if common.canary.is_none() {
        return Ok(());
    }
    let has_versions = common.out.is_dir()
        && !layout::version_dirs(&common.out).with_context(|| format!("reading {}", common.out.display()))?.is_empty();
    if !has_versions || ServingConfig::read(&common.out)?.is_some_and(|c| c.default.is_some()) {
        return Ok(());
    }
    edit_serving(&common.out, |c, versions| {
        c.default = versions.last().map(|v| v.name.clone());
        Ok("the default pinned before a canary is published".to_owned())
    })
}

/// With `--canary`, after a published version: starts its canary (the first version of a model has nothing to
/// share traffic with and serves alone).
fn start_canary(common: &CommonArgs, outcome: Outcome, path: &Path) -> anyhow::Result<Outcome> {
    let Some(percent) = common.canary else { return Ok(outcome) };
    if outcome != Outcome::Done {
        return Ok(outcome);
    }
    let version = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if layout::version_dirs(&common.out)?.len() < 2 {
        eprintln!("--canary: {version} is the model's first version; it serves all traffic");
        return Ok(outcome);
    }
    edit_serving(&common.out, |c, versions| c.start_canary(versions, &version, percent).map(|()| String::new()))?;
    Ok(outcome)
}

/// Job options and data set options from the shared arguments.
fn job_and_dataset(common: &CommonArgs) -> anyhow::Result<(JobOptions, DatasetOptions)> {
    let git_commit = match common.git_commit.as_str() {
        "auto" => git_head(Path::new(".")),
        "none" => None,
        sha if (4..=64).contains(&sha.len()) && sha.bytes().all(|b| b.is_ascii_hexdigit()) => Some(sha.to_owned()),
        other => bail!("--git-commit `{other}` is not auto, none or a hexadecimal commit SHA"),
    };
    let source_date_epoch = std::env::var("SOURCE_DATE_EPOCH").ok();
    let command = std::iter::once("ferroserve-train".into()).chain(std::env::args_os().skip(1));
    let options = JobOptions {
        model_dir: common.out.clone(),
        version: common.version,
        model_name: common.model_name.clone(),
        created_at: creation_time(source_date_epoch.as_deref())?,
        training_command: Some(shell_command(command)),
        git_commit,
        gate: None,
    };
    let dataset_options = DatasetOptions {
        features: common.features.clone(),
        label_column: match common.label_column.as_deref() {
            None => LabelColumn::Auto,
            Some("none") => LabelColumn::Absent,
            Some(name) => LabelColumn::Named(name.to_owned()),
        },
        timestamp_column: common.timestamp_column.clone(),
    };
    Ok((options, dataset_options))
}

fn lstm_autoencoder_command(args: LstmAutoencoderArgs) -> anyhow::Result<Outcome> {
    let (mut options, dataset_options) = job_and_dataset(&args.common)?;
    let config = LstmTrainingConfig {
        window: args.window,
        stride: args.stride,
        hidden_size: args.hidden_size,
        num_layers: args.num_layers,
        epochs: args.epochs,
        batch_size: args.batch_size,
        learning_rate: args.learning_rate,
        validation_fraction: args.validation_fraction,
        patience: args.patience,
        seed: args.seed,
        threshold_percentile: args.threshold_percentile,
    };
    let dataset = Dataset::read_csv(&args.common.data, &dataset_options)?;
    options.gate = gate(&args.common.gate, &dataset_options, &dataset)?;
    pin_default(&args.common)?;
    let trained = ferroserve_train::train_lstm_autoencoder(&dataset, &config, &options, &mut Bars::default())?;
    let c = &trained.curve;
    eprintln!(
        "trained {} epochs (best {}): threshold {:.6}",
        c.train.len(),
        c.best_epoch,
        trained.config.threshold.unwrap_or(f64::NAN)
    );
    if let Some(e) = &trained.evaluation {
        eprintln!("windows: precision {:.3}, recall {:.3}, f1 {:.3}", e.precision(), e.recall(), e.f1_score());
    }
    let outcome = report(trained.validation.as_ref(), &trained.path)?;
    start_canary(&args.common, outcome, &trained.path)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_hyperparameters_and_rejects_bad_ones() {
        let cli = Cli::try_parse_from([
            "ferroserve-train",
            "isolation-forest",
            "--data",
            "d.csv",
            "--out",
            "m",
            "--max-samples",
            "512",
            "--max-features",
            "0.5",
            "--contamination",
            "0.03",
            "--features",
            "a,b",
            "--version",
            "2",
        ])
        .unwrap();
        let Command::IsolationForest(a) = cli.command else { panic!("wrong subcommand") };
        assert_eq!(a.max_samples, MaxSamples::Count(512));
        assert_eq!(a.max_features, MaxFeatures::Fraction(0.5));
        assert_eq!(a.contamination, Contamination::Fraction(0.03));
        assert_eq!(a.common.features, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(a.common.version, Some(2));
        for bad in [["--max-samples", "1.5"], ["--contamination", "0.9"], ["--max-features", "0"]] {
            let args = ["ferroserve-train", "isolation-forest", "--data", "d", "--out", "m", bad[0], bad[1]];
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
        let cli = Cli::try_parse_from(["ferroserve-train", "synth", "--start", "2026-02-01T00:00:00Z"]).unwrap();
        let Command::Synth(s) = cli.command else { panic!("wrong subcommand") };
        assert_eq!(s.start, Some(UNIX_EPOCH + Duration::from_secs(1_769_904_000)));
        assert!(Cli::try_parse_from(["ferroserve-train", "synth", "--start", "tomorrow"]).is_err());
        let cli = Cli::try_parse_from([
            "ferroserve-train",
            "lstm-autoencoder",
            "--data",
            "d.csv",
            "--out",
            "m",
            "--window",
            "30",
            "--hidden-size",
            "16",
        ])
        .unwrap();
        let Command::LstmAutoencoder(a) = cli.command else { panic!("wrong subcommand") };
        assert_eq!((a.window, a.stride, a.hidden_size, a.num_layers, a.epochs), (30, 1, 16, 1, 20));
        assert_eq!((a.batch_size, a.patience, a.seed), (64, 3, 0));
        assert_eq!((a.learning_rate, a.validation_fraction, a.threshold_percentile), (1e-3, 0.2, 99.0));
        assert_eq!(a.common.out, PathBuf::from("m"));
    }
}
