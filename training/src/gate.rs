//! The pre-deploy gate: a trained version is published as `vN/` only when it meets the platform's
//! thresholds (the MLOps ADR: accuracy above 0.85, under 0.1 s a sample, under 100 MB).
//!
//! Every check is measured on what the server will load: the version folder is written first (hidden),
//! its artifact loaded back with [`ferroserve_formats::load_model`] (the server's loader), and each
//! hold-out sample predicted alone, timed, through [`ferroserve_formats::Model::infer`] on the model's label output. Quality
//! is the confusion matrix of those predictions against the hold-out labels ([`Evaluation`]); latency is
//! the 99th percentile of the single-sample calls after one untimed warm-up call (a server warms a
//! model up before it serves); size is the bytes of the folder's files (`metadata.json` excepted).
//!
//! Limits are inclusive: a check passes when the measured value is at least its minimum or at most its
//! maximum. A version that fails any check is set aside under [`REJECTED_DIR`] (a name the server never
//! reads) with `validation_status: failed`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ferroserve_formats::layout::{self, METADATA_JSON};
use ferroserve_formats::metadata::percentile_sorted;
use ferroserve_formats::{Label, LabelOutput, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::evaluation::Evaluation;

/// `validation_status` of a version that passed every check.
pub const VALIDATION_PASSED: &str = "passed";
/// `validation_status` of a version that failed a check (it is never published).
pub const VALIDATION_FAILED: &str = "failed";
/// The folder of a model folder that holds rejected versions: `MODEL_DIR/_rejected/v3-20260112T000000Z/`.
/// Names starting with `_` are never read by the server (see [`layout::is_hidden`]).
pub const REJECTED_DIR: &str = "_rejected";

/// The limits a version must meet; `None` = not checked. Read from flags, or from a JSON gate file whose
/// keys are these fields' names (unknown keys are an error: a misspelt limit must not pass silently).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Lowest accuracy on the labelled hold-out, in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_accuracy: Option<f64>,
    /// Lowest precision (of the flagged samples, the fraction that are anomalies), in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_precision: Option<f64>,
    /// Lowest recall (of the anomalies, the fraction flagged), in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_recall: Option<f64>,
    /// Lowest F1 score, in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_f1: Option<f64>,
    /// Highest 99th-percentile latency of one sample, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<f64>,
    /// Highest size of the version folder, in megabytes (10^6 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size_mb: Option<f64>,
}

impl Thresholds {
    /// Reads a JSON gate file.
    ///
    /// # Errors
    /// [`Error::GateFile`] when it cannot be read, or is not a JSON object of known limits with valid
    /// values (a gate that cannot be read is the command line's mistake, like a bad limit).
    pub fn read(path: &Path) -> Result<Thresholds> {
        let bytes =
            std::fs::read(path).map_err(|e| Error::GateFile { path: path.to_path_buf(), reason: e.to_string() })?;
        let t: Thresholds = serde_json::from_slice(&bytes)
            .map_err(|e| Error::GateFile { path: path.to_path_buf(), reason: e.to_string() })?;
        t.validate().map_err(|e| Error::GateFile { path: path.to_path_buf(), reason: e.to_string() })?;
        Ok(t)
    }

    /// These limits, with `other`'s where these have none (flags over a file).
    pub fn or(self, other: Thresholds) -> Thresholds {
        Thresholds {
            min_accuracy: self.min_accuracy.or(other.min_accuracy),
            min_precision: self.min_precision.or(other.min_precision),
            min_recall: self.min_recall.or(other.min_recall),
            min_f1: self.min_f1.or(other.min_f1),
            max_latency_ms: self.max_latency_ms.or(other.max_latency_ms),
            max_size_mb: self.max_size_mb.or(other.max_size_mb),
        }
    }

    /// Whether no limit is set (then nothing is gated).
    pub fn is_empty(&self) -> bool {
        *self == Thresholds::default()
    }

    /// The quality limits set, which need labels.
    pub fn label_checks(&self) -> Vec<&'static str> {
        [
            ("accuracy", self.min_accuracy),
            ("precision", self.min_precision),
            ("recall", self.min_recall),
            ("f1", self.min_f1),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.map(|_| name))
        .collect()
    }

    /// Checks the ranges: quality limits in [0, 1], latency and size limits positive.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the first bad limit.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("min_accuracy", self.min_accuracy),
            ("min_precision", self.min_precision),
            ("min_recall", self.min_recall),
            ("min_f1", self.min_f1),
        ] {
            if let Some(v) = v
                && !(0.0..=1.0).contains(&v)
            {
                return Err(Error::parameter(name, v, "must be in [0, 1]"));
            }
        }
        for (name, v) in [("max_latency_ms", self.max_latency_ms), ("max_size_mb", self.max_size_mb)] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                return Err(Error::parameter(name, v, "must be a positive number"));
            }
        }
        Ok(())
    }
}

/// A gate: limits, and the labelled data they are measured on.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// The limits.
    pub thresholds: Thresholds,
    /// The hold-out data; `None` = the training data (the samples the trainer evaluates on).
    pub holdout: Option<Dataset>,
    /// Where the limits came from (`flags`, or the gate file's path), for the record.
    pub origin: String,
}

impl Gate {
    /// The data the checks run on: the hold-out, else the training data.
    pub fn data<'a>(&'a self, training: &'a Dataset) -> &'a Dataset {
        self.holdout.as_ref().unwrap_or(training)
    }

    /// Checks, before any training, that the limits are valid and the data can measure them: labels when
    /// a quality limit is set, and the training features in the hold-out.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a bad limit; [`Error::HoldoutUnlabelled`]; [`Error::HoldoutFeatures`].
    pub fn check_usable(&self, training: &Dataset) -> Result<()> {
        self.thresholds.validate()?;
        let data = self.data(training);
        let checks = self.thresholds.label_checks();
        if !checks.is_empty() && data.labels.is_none() {
            return Err(Error::HoldoutUnlabelled { path: data.path.clone(), checks });
        }
        if data.feature_names != training.feature_names {
            return Err(Error::HoldoutFeatures {
                path: data.path.clone(),
                expected: training.feature_names.clone(),
                got: data.feature_names.clone(),
            });
        }
        Ok(())
    }
}

/// The hold-out as the model takes it: one tensor per sample (batch 1), and its label when known.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    /// Each sample, a batch of one (`[1, F]` rows, `[1, T, F]` windows).
    pub inputs: Vec<Tensor>,
    /// Per sample, whether it is an anomaly.
    pub labels: Option<Vec<bool>>,
    /// The data they were cut from.
    pub path: PathBuf,
    /// The data's rows.
    pub rows: usize,
}

impl Samples {
    /// One sample per row (tabular models).
    ///
    /// # Errors
    /// [`Error::Gate`] if a tensor cannot be built (never: its shape is built from its values).
    pub fn rows(data: &Dataset) -> Result<Samples> {
        let inputs = (0..data.rows)
            .map(|r| {
                let row: Vec<f64> = data.columns.iter().map(|c| c[r]).collect();
                tensor(vec![1, row.len()], row)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Samples { inputs, labels: data.labels.clone(), path: data.path.clone(), rows: data.rows })
    }

    /// One sample per window of `window` rows, starting every `stride` rows; a window is an anomaly when
    /// any of its rows is (as the LSTM trainer evaluates).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when the data has fewer rows than a window.
    pub fn windows(data: &Dataset, window: usize, stride: usize) -> Result<Samples> {
        if data.rows < window || window == 0 || stride == 0 {
            return Err(Error::parameter(
                "window",
                window,
                format!("{} has {} rows: no gate sample of {window} rows", data.path.display(), data.rows),
            ));
        }
        let starts: Vec<usize> = (0..=(data.rows - window) / stride).map(|i| i * stride).collect();
        let f = data.columns.len();
        let inputs = starts
            .iter()
            .map(|&s| {
                let mut v = Vec::with_capacity(window * f);
                for r in s..s + window {
                    v.extend(data.columns.iter().map(|c| c[r]));
                }
                tensor(vec![1, window, f], v)
            })
            .collect::<Result<Vec<_>>>()?;
        let labels =
            data.labels.as_ref().map(|l| starts.iter().map(|&s| l[s..s + window].iter().any(|&a| a)).collect());
        Ok(Samples { inputs, labels, path: data.path.clone(), rows: data.rows })
    }
}

fn tensor(shape: Vec<usize>, values: Vec<f64>) -> Result<Tensor> {
    // The server receives the features as written; float64 keeps them exact, as training read them.
    Tensor::new("input-0", shape, TensorData::Fp64(values)).map_err(|e| Error::Gate { reason: e.to_string() })
}

/// One check of the gate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// `accuracy`, `precision`, `recall`, `f1`, `latency_p99_ms`, `size_mb`.
    pub name: &'static str,
    /// `>=` (a minimum) or `<=` (a maximum).
    pub comparison: &'static str,
    /// The limit.
    pub threshold: f64,
    /// What was measured.
    pub measured: f64,
    /// Whether the measured value is within the limit.
    pub passed: bool,
}

impl Check {
    fn min(name: &'static str, threshold: f64, measured: f64) -> Check {
        Check { name, comparison: ">=", threshold, measured, passed: measured >= threshold }
    }

    fn max(name: &'static str, threshold: f64, measured: f64) -> Check {
        Check { name, comparison: "<=", threshold, measured, passed: measured <= threshold }
    }
}

/// What the gate measured and decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Validation {
    /// Every check, in the order accuracy, precision, recall, f1, latency, size (those asked for).
    pub checks: Vec<Check>,
    /// The predictions against the labels, when the hold-out has labels.
    pub evaluation: Option<Evaluation>,
    /// Samples predicted (and timed).
    pub samples: usize,
    /// Latency percentiles of one sample (p50, p99), in milliseconds.
    pub latency_ms: (f64, f64),
    /// The version folder's bytes, `metadata.json` excepted.
    pub size_bytes: u64,
    /// Where the limits came from.
    pub origin: String,
    /// The hold-out's path and rows.
    pub holdout: (PathBuf, usize),
}

impl Validation {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// `passed` or `failed`, for `validation_status`.
    pub fn status(&self) -> &'static str {
        if self.passed() { VALIDATION_PASSED } else { VALIDATION_FAILED }
    }

    /// The record kept in `metadata.json` under `validation`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "gate": self.origin,
            "status": self.status(),
            "checks": self.checks,
            "holdout": {"path": self.holdout.0.to_string_lossy(), "rows": self.holdout.1, "samples": self.samples},
            "latency_ms": {"p50": self.latency_ms.0, "p99": self.latency_ms.1, "warmup_calls": 1, "batch": 1},
            "size_bytes": self.size_bytes,
        });
        if let Some(e) = &self.evaluation {
            v["confusion"] = json!({
                "true_positives": e.true_positives,
                "false_positives": e.false_positives,
                "true_negatives": e.true_negatives,
                "false_negatives": e.false_negatives,
            });
        }
        v
    }

    /// One line per check, for people: `PASS accuracy 0.9712 >= 0.85`.
    pub fn summary(&self) -> Vec<String> {
        self.checks
            .iter()
            .map(|c| {
                let verdict = if c.passed { "PASS" } else { "FAIL" };
                format!("{verdict} {:<14} {:>12.4} {} {}", c.name, c.measured, c.comparison, c.threshold)
            })
            .collect()
    }
}

/// Measures the version written in `dir` against `thresholds` on `samples`.
///
/// # Errors
/// [`Error::Format`] when the artifact does not load; [`Error::Gate`] when the model has no label output
/// or a prediction fails; [`Error::Io`] reading the folder.
pub fn validate(dir: &Path, thresholds: &Thresholds, samples: &Samples, origin: &str) -> Result<Validation> {
    let size_bytes = folder_bytes(dir)?;
    let files = layout::find_artifact(dir)?
        .ok_or_else(|| Error::Gate { reason: format!("{} holds no model artifact", dir.display()) })?;
    let model = ferroserve_formats::load_model(&files)?;
    let Some(LabelOutput { output, positive }) = model.label() else {
        return Err(Error::Gate { reason: format!("a {} model predicts no label to check", model.kind()) });
    };
    let positive = positive.unwrap_or(Label::Bool(true));
    let outputs = [output];
    let predict = |x: &Tensor| -> Result<bool> {
        let out = model.infer(std::slice::from_ref(x), &outputs).map_err(|e| Error::Gate { reason: e.to_string() })?;
        let label = out.first().and_then(LabelOutput::labels).and_then(|l| l.into_iter().next());
        label.map(|l| l == positive).ok_or_else(|| Error::Gate { reason: format!("`{}` holds no label", outputs[0]) })
    };
    if let Some(first) = samples.inputs.first() {
        predict(first)?;
    }
    let mut flagged = Vec::with_capacity(samples.inputs.len());
    let mut millis = Vec::with_capacity(samples.inputs.len());
    for x in &samples.inputs {
        let start = Instant::now();
        flagged.push(predict(x)?);
        millis.push(start.elapsed().as_secs_f64() * 1e3);
    }
    millis.sort_by(f64::total_cmp);
    let latency_ms = (percentile_sorted(&millis, 50.0), percentile_sorted(&millis, 99.0));
    let evaluation = samples.labels.as_ref().map(|labels| Evaluation::new(labels, &flagged));

    let mut checks = Vec::new();
    let quality = [
        ("accuracy", thresholds.min_accuracy, Evaluation::accuracy as fn(&Evaluation) -> f64),
        ("precision", thresholds.min_precision, Evaluation::precision),
        ("recall", thresholds.min_recall, Evaluation::recall),
        ("f1", thresholds.min_f1, Evaluation::f1_score),
    ];
    for (name, limit, measure) in quality {
        let Some(limit) = limit else { continue };
        let e = evaluation.as_ref().ok_or_else(|| Error::HoldoutUnlabelled {
            path: samples.path.clone(),
            checks: thresholds.label_checks(),
        })?;
        checks.push(Check::min(name, limit, measure(e)));
    }
    if let Some(limit) = thresholds.max_latency_ms {
        checks.push(Check::max("latency_p99_ms", limit, latency_ms.1));
    }
    if let Some(limit) = thresholds.max_size_mb {
        #[allow(clippy::cast_precision_loss)]
        checks.push(Check::max("size_mb", limit, size_bytes as f64 / 1e6));
    }
    Ok(Validation {
        checks,
        evaluation,
        samples: samples.inputs.len(),
        latency_ms,
        size_bytes,
        origin: origin.to_owned(),
        holdout: (samples.path.clone(), samples.rows),
    })
}

/// The bytes of the files under `dir`, `metadata.json` at its top excepted.
fn folder_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let entry = entry.map_err(|e| Error::io(&d, e))?;
            let meta = entry.metadata().map_err(|e| Error::io(entry.path(), e))?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if !(d == dir && entry.file_name() == METADATA_JSON) {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_read_merge_and_validate() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gate.json");
        std::fs::write(&file, r#"{"min_accuracy": 0.85, "max_latency_ms": 100, "max_size_mb": 100}"#).unwrap();
        let from_file = Thresholds::read(&file).unwrap();
        assert_eq!(from_file.min_accuracy, Some(0.85));
        let flags = Thresholds { min_accuracy: Some(0.9), min_f1: Some(0.5), ..Thresholds::default() };
        let merged = flags.or(from_file);
        assert_eq!((merged.min_accuracy, merged.min_f1, merged.max_size_mb), (Some(0.9), Some(0.5), Some(100.0)));
        assert_eq!(merged.label_checks(), ["accuracy", "f1"]);
        assert!(Thresholds::default().is_empty() && !merged.is_empty());

        std::fs::write(&file, r#"{"min_acuracy": 0.85}"#).unwrap();
        let err = Thresholds::read(&file).unwrap_err().to_string();
        assert!(err.contains("unknown field `min_acuracy`"), "{err}");
        std::fs::write(&file, r#"{"min_recall": 85}"#).unwrap();
        let err = Thresholds::read(&file).unwrap_err().to_string();
        assert!(err.contains("min_recall = 85: must be in [0, 1]"), "{err}");
        assert!(Thresholds { max_latency_ms: Some(0.0), ..Thresholds::default() }.validate().is_err());
    }

    #[test]
    fn checks_compare_inclusively() {
        assert!(Check::min("accuracy", 0.85, 0.85).passed);
        assert!(!Check::min("accuracy", 0.85, 0.849).passed);
        assert!(Check::max("size_mb", 100.0, 100.0).passed);
        assert!(!Check::max("size_mb", 100.0, 100.1).passed);
    }
}
