//! The pre-deploy gate on the command line: `--gate*` and `--holdout`, and what a gated run prints.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use ferroserve_train::{Dataset, DatasetOptions, Gate, Thresholds, Validation};

use super::{Outcome, UsageError};

/// The pre-deploy gate. Without any limit the version is published with `validation_status: pending`;
/// with one, it is published only when every check passes (exit code 0), else set aside under
/// `MODEL_DIR/_rejected/` (exit code 3).
#[derive(Debug, Args)]
pub struct GateArgs {
    /// A JSON gate file of limits, e.g. {"min_accuracy": 0.85, "max_latency_ms": 100, "max_size_mb": 100}
    /// (keys: the --gate-* flags' names without `gate-`, in snake_case); a --gate-* flag given too wins.
    #[arg(long, value_name = "GATE_JSON")]
    pub gate: Option<PathBuf>,
    /// Lowest accuracy on the labelled hold-out, in [0, 1].
    #[arg(long)]
    gate_min_accuracy: Option<f64>,
    /// Lowest precision (of the flagged samples, the fraction labelled anomalies), in [0, 1].
    #[arg(long)]
    gate_min_precision: Option<f64>,
    /// Lowest recall (of the labelled anomalies, the fraction flagged), in [0, 1].
    #[arg(long)]
    gate_min_recall: Option<f64>,
    /// Lowest F1 score, in [0, 1].
    #[arg(long)]
    gate_min_f1: Option<f64>,
    /// Highest 99th-percentile time to predict one sample with the written model, in milliseconds.
    #[arg(long)]
    gate_max_latency_ms: Option<f64>,
    /// Highest size of the version folder (metadata.json excepted), in MB (10^6 bytes).
    #[arg(long)]
    gate_max_size_mb: Option<f64>,
    /// Labelled CSV the gate measures on, with the training features and label column [default: the
    /// training data].
    #[arg(long)]
    holdout: Option<PathBuf>,
}

/// The gate of the shared arguments, checked against the training data before any training; `None` when
/// no limit is given.
pub fn gate(args: &GateArgs, dataset_options: &DatasetOptions, training: &Dataset) -> anyhow::Result<Option<Gate>> {
    let flags = Thresholds {
        min_accuracy: args.gate_min_accuracy,
        min_precision: args.gate_min_precision,
        min_recall: args.gate_min_recall,
        min_f1: args.gate_min_f1,
        max_latency_ms: args.gate_max_latency_ms,
        max_size_mb: args.gate_max_size_mb,
    };
    flags.validate().map_err(|e| UsageError(format!("--gate-{}", e.to_string().replace('_', "-"))))?;
    let (thresholds, origin) = match &args.gate {
        Some(file) => (flags.or(Thresholds::read(file)?), file.display().to_string()),
        None => (flags, "flags".to_owned()),
    };
    if thresholds.is_empty() {
        if args.holdout.is_some() {
            return Err(UsageError("--holdout is the gate's data, but no gate limit is given".to_owned()).into());
        }
        return Ok(None);
    }
    let holdout = match &args.holdout {
        Some(path) => {
            let options = DatasetOptions { features: Some(training.feature_names.clone()), ..dataset_options.clone() };
            Some(Dataset::read_csv(path, &options).context("reading the --holdout data")?)
        }
        None => None,
    };
    let gate = Gate { thresholds, holdout, origin };
    gate.check_usable(training)?;
    Ok(Some(gate))
}

/// Prints the gate's checks (standard error) and the version folder (standard output); the outcome.
pub fn report(validation: Option<&Validation>, path: &Path) -> anyhow::Result<Outcome> {
    let mut stdout = std::io::stdout().lock();
    let Some(v) = validation else {
        writeln!(stdout, "{}", path.display())?;
        return Ok(Outcome::Done);
    };
    eprintln!("pre-deploy gate ({}), {} samples of {}:", v.origin, v.samples, v.holdout.0.display());
    for line in v.summary() {
        eprintln!("  {line}");
    }
    let outcome = if v.passed() {
        eprintln!("gate passed: published {}", path.display());
        Outcome::Done
    } else {
        let failed: Vec<&str> = v.checks.iter().filter(|c| !c.passed).map(|c| c.name).collect();
        eprintln!("gate FAILED ({}): not published; set aside in {}", failed.join(", "), path.display());
        Outcome::Rejected
    };
    writeln!(stdout, "{}", path.display())?;
    Ok(outcome)
}
