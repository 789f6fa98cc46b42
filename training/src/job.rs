//! A training job end to end: data set → fitted model → evaluation → a new version folder with its
//! `metadata.json`. The CLI is a thin layer over this, and integration tests call it directly.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ferroserve_formats::NativeModel;
use ferroserve_formats::metadata::{ModelMetadata, PerformanceMetrics};

use crate::dataset::Dataset;
use crate::error::Result;
use crate::evaluation::{Evaluation, unlabelled_metrics};
use crate::gate::{Gate, Samples, Validation, validate};
use crate::isolation_forest::{FittedIsolationForest, IsolationForestConfig, score};
use crate::output::{Written, model_name_of, rfc3339, write_version_validated};
use crate::plot::PLOT_SVG;
use crate::progress::Progress;

/// `validation_status` of a freshly trained version: the platform's pipeline validates it later.
pub const VALIDATION_PENDING: &str = "pending";

/// Where and how a job records its result.
#[derive(Debug, Clone, PartialEq)]
pub struct JobOptions {
    /// The model folder that receives the new version.
    pub model_dir: PathBuf,
    /// The version number to write; `None` = the one after the highest existing.
    pub version: Option<u64>,
    /// `model_name`; `None` = the model folder's name.
    pub model_name: Option<String>,
    /// `created_at`.
    pub created_at: SystemTime,
    /// `training_command`, the command line as typed.
    pub training_command: Option<String>,
    /// `git_commit`, the source revision.
    pub git_commit: Option<String>,
    /// The pre-deploy gate; `None` = publish without checks (`validation_status: pending`).
    pub gate: Option<Gate>,
}

impl JobOptions {
    /// Options writing the next version of `model_dir`, created now, without provenance.
    pub fn new(model_dir: impl Into<PathBuf>) -> Self {
        JobOptions {
            model_dir: model_dir.into(),
            version: None,
            model_name: None,
            created_at: SystemTime::now(),
            training_command: None,
            git_commit: None,
            gate: None,
        }
    }
}

/// What a job produced.
#[derive(Debug, Clone)]
pub struct TrainedVersion {
    /// The version folder written (`…/anomaly-detector/v3`), or where a version the gate refused was set
    /// aside (`…/anomaly-detector/_rejected/v3-20260112T000000Z`).
    pub path: PathBuf,
    /// The fitted model and what fitting learnt.
    pub fitted: FittedIsolationForest,
    /// The metadata written (with `version` set).
    pub metadata: ModelMetadata,
    /// The evaluation against the data's labels, when it has some.
    pub evaluation: Option<Evaluation>,
    /// The gate's result, when gated.
    pub validation: Option<Validation>,
}

impl TrainedVersion {
    /// Whether the version was published as `vN/` (the gate passed it, or there was none).
    pub fn published(&self) -> bool {
        self.validation.as_ref().is_none_or(Validation::passed)
    }
}

/// Fits an IsolationForest on `data` and writes it as a new version of `options.model_dir`.
///
/// `performance_metrics` are measured on the training rows: against the labels when the data has a
/// label column, otherwise only the fraction of rows flagged.
///
/// With a gate in `options`, the written version is checked (see [`crate::gate`]) and published only
/// when it passes; otherwise it is set aside under `_rejected/` and [`TrainedVersion::published`] is false.
///
/// # Errors
/// The errors of [`Gate::check_usable`] (before any fitting), [`IsolationForestConfig::fit_with`],
/// [`crate::gate::validate`] and [`crate::write_version`]. Nothing is visible in `model_dir` after an error.
pub fn train_isolation_forest(
    data: &Dataset,
    config: &IsolationForestConfig,
    options: &JobOptions,
    progress: &mut dyn Progress,
) -> Result<TrainedVersion> {
    if let Some(gate) = &options.gate {
        gate.check_usable(data)?;
    }
    let x = data.matrix();
    let mut fitted = config.fit_with(&x, Some(data.feature_names.clone()), progress)?;
    let scores = match fitted.training_scores.take() {
        Some(s) => s,
        None => score(&fitted.model, &x, progress),
    };
    let offset = fitted.model.params().offset;
    // The same arithmetic as IsolationForest::predict: decision_function = score - offset < 0.
    let flagged: Vec<bool> = scores.iter().map(|s| s - offset < 0.0).collect();
    let evaluation = data.labels.as_ref().map(|labels| Evaluation::new(labels, &flagged));
    let performance: PerformanceMetrics =
        evaluation.as_ref().map_or_else(|| unlabelled_metrics(&flagged), Evaluation::to_metrics);
    fitted.training_scores = Some(scores);

    let mut metadata = ModelMetadata {
        model_name: options.model_name.clone().or_else(|| model_name_of(&options.model_dir)),
        created_at: Some(rfc3339(options.created_at)),
        training_command: options.training_command.clone(),
        git_commit: options.git_commit.clone(),
        training_data: Some(data.training_data()),
        hyperparameters: Some(config.hyperparameters(&fitted)),
        performance_metrics: Some(performance),
        validation_status: Some(VALIDATION_PENDING.to_owned()),
        reference_distribution: Some(data.reference_distribution()),
        ..ModelMetadata::default()
    };
    metadata.extra.insert("plot".to_owned(), PLOT_SVG.into());
    let plot = crate::plot::histogram(
        "Training scores (score_samples); red: flagged as anomalies",
        "score_samples (lower is more anomalous)",
        fitted.training_scores.as_deref().unwrap_or_default(),
        offset,
        false,
        40,
    );
    let model = NativeModel::IsolationForest(fitted.model.clone());
    let save = |dir: &Path| {
        model.save(dir)?;
        let file = dir.join(PLOT_SVG);
        std::fs::write(&file, plot).map_err(|e| ferroserve_formats::Error::Io { path: file, source: e })?;
        Ok(())
    };
    let check = |dir: &Path| {
        let Some(gate) = &options.gate else { return Ok(None) };
        let samples = Samples::rows(gate.data(data))?;
        validate(dir, &gate.thresholds, &samples, &gate.origin).map(Some)
    };
    let Written { path, metadata, validation } =
        write_version_validated(&options.model_dir, options.version, &metadata, save, check)?;
    Ok(TrainedVersion { path, fitted, metadata, evaluation, validation })
}
