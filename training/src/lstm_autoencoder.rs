//! Training the LSTM autoencoder the server runs ([`LstmAutoencoder`], built here on a `VarMap`):
//! sliding windows over the feature columns, a scaler fitted on the training windows only, AdamW on
//! the mean squared reconstruction error, early stopping on the last windows in time, and a threshold
//! at a percentile of the training windows' errors. The result is written in the PyTorch import form
//! (`config.json` + `model.safetensors`), the form the runtime serves.
//!
//! Reproducible on CPU: weights are drawn from a seeded ChaCha stream (PyTorch's
//! uniform(-1/√hidden, 1/√hidden)), and batches are shuffled with it, so a seed gives the same bytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::PoisonError;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use ferroserve_formats::ModelMetadata;
use ferroserve_formats::lstm::{DecoderForm, LstmAutoencoder, LstmAutoencoderConfig, Scaler, save_pytorch};
use ferroserve_formats::metadata::PerformanceMetrics;
use serde_json::{Map, Value};

use crate::dataset::Dataset;
use crate::error::{Error, Result};
use crate::evaluation::{Evaluation, unlabelled_metrics};
use crate::gate::{Samples, Validation, validate};
use crate::job::{JobOptions, VALIDATION_PENDING};
use crate::output::{Written, model_name_of, rfc3339, write_version_validated};
use crate::progress::{Progress, Step};
use crate::rng::Stream;

/// Windows per forward pass when scoring (not training).
const SCORE_BATCH: usize = 256;

/// Hyperparameters of [`train_lstm_autoencoder`]; the defaults are the CLI's.
#[derive(Debug, Clone, PartialEq)]
pub struct LstmTrainingConfig {
    /// Rows per window (the model's `seq_len`).
    pub window: usize,
    /// Rows between the starts of consecutive windows.
    pub stride: usize,
    /// LSTM hidden size.
    pub hidden_size: usize,
    /// Stacked LSTM layers in the encoder and in the decoder.
    pub num_layers: usize,
    /// Maximum number of epochs.
    pub epochs: usize,
    /// Windows per optimiser step.
    pub batch_size: usize,
    /// AdamW's learning rate.
    pub learning_rate: f64,
    /// Fraction of windows, the last in time, held out for early stopping, in [0, 1).
    pub validation_fraction: f64,
    /// Epochs without a better validation loss before training stops.
    pub patience: usize,
    /// Seed of weight initialisation and shuffling.
    pub seed: u64,
    /// Percentile of the training windows' reconstruction errors used as the anomaly threshold.
    pub threshold_percentile: f64,
}

impl Default for LstmTrainingConfig {
    fn default() -> Self {
        LstmTrainingConfig {
            window: 60,
            stride: 1,
            hidden_size: 32,
            num_layers: 1,
            epochs: 20,
            batch_size: 64,
            learning_rate: 1e-3,
            validation_fraction: 0.2,
            patience: 3,
            seed: 0,
            threshold_percentile: 99.0,
        }
    }
}

impl LstmTrainingConfig {
    fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("window", self.window),
            ("stride", self.stride),
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
            ("epochs", self.epochs),
            ("batch_size", self.batch_size),
            ("patience", self.patience),
        ] {
            if v == 0 {
                return Err(Error::parameter(name, v, "must be at least 1"));
            }
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(Error::parameter("learning_rate", self.learning_rate, "must be a positive number"));
        }
        if !(0.0..1.0).contains(&self.validation_fraction) {
            return Err(Error::parameter("validation_fraction", self.validation_fraction, "must be in [0, 1)"));
        }
        if !(0.0..=100.0).contains(&self.threshold_percentile) {
            return Err(Error::parameter("threshold_percentile", self.threshold_percentile, "must be in [0, 100]"));
        }
        Ok(())
    }

    fn hyperparameters(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("window".to_owned(), Value::from(self.window));
        m.insert("stride".to_owned(), Value::from(self.stride));
        m.insert("hidden_size".to_owned(), Value::from(self.hidden_size));
        m.insert("num_layers".to_owned(), Value::from(self.num_layers));
        m.insert("epochs".to_owned(), Value::from(self.epochs));
        m.insert("batch_size".to_owned(), Value::from(self.batch_size));
        m.insert("learning_rate".to_owned(), Value::from(self.learning_rate));
        m.insert("optimizer".to_owned(), Value::from("AdamW"));
        m.insert("validation_fraction".to_owned(), Value::from(self.validation_fraction));
        m.insert("patience".to_owned(), Value::from(self.patience));
        m.insert("seed".to_owned(), Value::from(self.seed));
        m.insert("threshold_percentile".to_owned(), Value::from(self.threshold_percentile));
        m
    }
}

/// Losses per epoch (index 0 = epoch 1).
#[derive(Debug, Clone, PartialEq)]
pub struct LossCurve {
    /// Mean training loss over each epoch's batches.
    pub train: Vec<f64>,
    /// Validation loss after each epoch (the training loss when nothing is held out).
    pub validation: Vec<f64>,
    /// The epoch (from 1) whose weights were kept: the lowest validation loss.
    pub best_epoch: usize,
}

impl LossCurve {
    fn summary(&self) -> Value {
        let at = |v: &[f64], i: usize| v.get(i).copied().unwrap_or(f64::NAN);
        let best = self.best_epoch.saturating_sub(1);
        serde_json::json!({
            "epochs_run": self.train.len(),
            "best_epoch": self.best_epoch,
            "train_loss_first": at(&self.train, 0),
            "train_loss_best": at(&self.train, best),
            "val_loss_best": at(&self.validation, best),
        })
    }
}

/// What [`train_lstm_autoencoder`] wrote and measured.
#[derive(Debug, Clone)]
pub struct TrainedLstm {
    /// The new version folder.
    pub path: PathBuf,
    /// The model's `config.json` (with seq_len, threshold and scaler).
    pub config: LstmAutoencoderConfig,
    /// Losses per epoch.
    pub curve: LossCurve,
    /// Reconstruction error of every training window, in time order, as the server computes it.
    pub training_errors: Vec<f64>,
    /// Precision, recall and F1 over all windows, when the data has labels.
    pub evaluation: Option<Evaluation>,
    /// What `metadata.json` holds.
    pub metadata: ModelMetadata,
    /// The gate's result, when gated.
    pub validation: Option<Validation>,
}

impl TrainedLstm {
    /// Whether the version was published as `vN/` (the gate passed it, or there was none).
    pub fn published(&self) -> bool {
        self.validation.as_ref().is_none_or(Validation::passed)
    }
}

/// Trains an LSTM autoencoder on `data` and writes it as the next version of `options.model_dir`.
///
/// With a gate in `options`, the written version is checked on windows of the hold-out (the training
/// window and stride; see [`crate::gate`]) and published only when it passes.
///
/// # Errors
/// The errors of [`crate::Gate::check_usable`] (before training);
/// [`Error::InvalidParameter`] for bad hyperparameters or too few rows for a training window;
/// [`Error::Candle`] from the tensor arithmetic; [`Error::Format`] and [`Error::Io`] writing.
pub fn train_lstm_autoencoder(
    data: &Dataset,
    config: &LstmTrainingConfig,
    options: &JobOptions,
    progress: &mut dyn Progress,
) -> Result<TrainedLstm> {
    config.validate()?;
    if let Some(gate) = &options.gate {
        gate.check_usable(data)?;
        // Too few hold-out rows for a window is a usage error too: say so before training.
        Samples::windows(gate.data(data), config.window, config.stride)?;
    }
    let (w, f) = (config.window, data.columns.len());
    let n_windows = if data.rows >= w { (data.rows - w) / config.stride + 1 } else { 0 };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let n_val = (n_windows as f64 * config.validation_fraction).floor() as usize;
    let n_train = n_windows - n_val;
    if n_train == 0 {
        return Err(Error::parameter(
            "window",
            w,
            format!("{} rows leave no training window ({n_val} held out for validation)", data.rows),
        ));
    }
    let starts: Vec<usize> = (0..n_windows).map(|i| i * config.stride).collect();
    let scaler = fit_scaler(&data.columns, (n_train - 1) * config.stride + w);

    let dev = Device::Cpu;
    let mut scaled = Vec::with_capacity(data.rows * f);
    for r in 0..data.rows {
        for (c, col) in data.columns.iter().enumerate() {
            // The server's arithmetic (LstmAutoencoder::windows), so errors match it.
            #[allow(clippy::cast_possible_truncation)]
            scaled.push(((col[r] - scaler.mean[c]) / scaler.scale[c]) as f32);
        }
    }
    let mut windows = Vec::with_capacity(n_windows * w * f);
    for &s in &starts {
        windows.extend_from_slice(&scaled[s * f..(s + w) * f]);
    }
    let all = Tensor::from_vec(windows, (n_windows, w, f), &dev)?;

    let model_cfg = LstmAutoencoderConfig {
        n_features: f,
        hidden_size: config.hidden_size,
        num_layers: config.num_layers,
        decoder: DecoderForm::Repeated,
        seq_len: Some(w),
        threshold: None,
        scaler: Some(scaler),
    };
    let mut rng = Stream::new(config.seed);
    let varmap = init_varmap(&model_cfg, &mut rng, &dev)?;
    let model = LstmAutoencoder::new(&model_cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
    let params = ParamsAdamW { lr: config.learning_rate, ..ParamsAdamW::default() };
    let mut opt = AdamW::new(varmap.all_vars(), params)?;

    let mut curve = LossCurve { train: Vec::new(), validation: Vec::new(), best_epoch: 0 };
    let mut best: Option<(f64, HashMap<String, Tensor>)> = None;
    let mut order: Vec<usize> = (0..n_train).collect();
    progress.start(Step::TrainEpochs, config.epochs as u64);
    for epoch in 1..=config.epochs {
        shuffle(&mut order, &mut rng);
        let mut sum = 0.0;
        for batch in order.chunks(config.batch_size) {
            #[allow(clippy::cast_possible_truncation)]
            let idx: Vec<u32> = batch.iter().map(|&i| i as u32).collect();
            let x = all.index_select(&Tensor::new(idx, &dev)?, 0)?;
            let loss = candle_nn::loss::mse(&model.forward(&x)?, &x)?;
            opt.backward_step(&loss)?;
            #[allow(clippy::cast_precision_loss)]
            let weight = batch.len() as f64;
            sum += f64::from(loss.to_scalar::<f32>()?) * weight;
        }
        #[allow(clippy::cast_precision_loss)]
        let train_loss = sum / n_train as f64;
        let val_loss = if n_val == 0 { train_loss } else { mean(&window_errors(&model, &all, n_train, n_windows)?) };
        curve.train.push(train_loss);
        curve.validation.push(val_loss);
        progress.advance(1);
        progress.note(&format!("epoch {epoch}: train loss {train_loss:.6}, validation loss {val_loss:.6}"));
        if best.as_ref().is_none_or(|(b, _)| val_loss < *b) {
            best = Some((val_loss, snapshot(&varmap)?));
            curve.best_epoch = epoch;
        } else if epoch - curve.best_epoch >= config.patience {
            break;
        }
    }
    progress.finish();
    if let Some((_, weights)) = &best {
        restore(&varmap, weights)?;
    }

    let errors = window_errors(&model, &all, 0, n_windows)?;
    let training_errors = errors[..n_train].to_vec();
    let threshold = percentile(&training_errors, config.threshold_percentile);
    let flagged: Vec<bool> = errors.iter().map(|e| *e > threshold).collect();
    let evaluation = data.labels.as_ref().map(|labels| {
        let anomalous: Vec<bool> = starts.iter().map(|&s| labels[s..s + w].iter().any(|&l| l)).collect();
        Evaluation::new(&anomalous, &flagged)
    });
    let mut performance: PerformanceMetrics =
        evaluation.as_ref().map_or_else(|| unlabelled_metrics(&flagged), Evaluation::to_metrics);
    performance.extra.insert("loss_curve".to_owned(), curve.summary());
    performance.extra.insert("threshold".to_owned(), Value::from(threshold));
    performance.extra.insert("windows".to_owned(), Value::from(n_windows));

    let model_cfg = LstmAutoencoderConfig { threshold: Some(threshold), ..model_cfg };
    let tensors = snapshot(&varmap)?;
    let mut metadata = ModelMetadata {
        model_name: options.model_name.clone().or_else(|| model_name_of(&options.model_dir)),
        created_at: Some(rfc3339(options.created_at)),
        training_command: options.training_command.clone(),
        git_commit: options.git_commit.clone(),
        training_data: Some(data.training_data()),
        hyperparameters: Some(config.hyperparameters()),
        performance_metrics: Some(performance),
        validation_status: Some(VALIDATION_PENDING.to_owned()),
        reference_distribution: Some(data.reference_distribution()),
        ..ModelMetadata::default()
    };
    metadata.extra.insert("plot".to_owned(), crate::plot::PLOT_SVG.into());
    let plot = crate::plot::loss_curve(&curve.train, &curve.validation, curve.best_epoch);
    let save = |dir: &Path| {
        save_pytorch(dir, &model_cfg, &tensors)?;
        let file = dir.join(crate::plot::PLOT_SVG);
        std::fs::write(&file, plot).map_err(|e| ferroserve_formats::Error::Io { path: file, source: e })?;
        Ok(())
    };
    let check = |dir: &Path| {
        let Some(gate) = &options.gate else { return Ok(None) };
        let samples = Samples::windows(gate.data(data), config.window, config.stride)?;
        validate(dir, &gate.thresholds, &samples, &gate.origin).map(Some)
    };
    let Written { path, metadata, validation } =
        write_version_validated(&options.model_dir, options.version, &metadata, save, check)?;
    Ok(TrainedLstm { path, config: model_cfg, curve, training_errors, evaluation, metadata, validation })
}

/// Mean and population standard deviation of the first `rows` rows (a constant column scales by 1).
fn fit_scaler(columns: &[Vec<f64>], rows: usize) -> Scaler {
    let mut scaler = Scaler { mean: Vec::with_capacity(columns.len()), scale: Vec::with_capacity(columns.len()) };
    for col in columns {
        let m = mean(&col[..rows]);
        #[allow(clippy::cast_precision_loss)]
        let var = col[..rows].iter().map(|v| (v - m).powi(2)).sum::<f64>() / rows as f64;
        let sd = var.sqrt();
        scaler.mean.push(m);
        scaler.scale.push(if sd > f64::EPSILON * m.abs().max(1.0) { sd } else { 1.0 });
    }
    scaler
}

/// Every tensor of the autoencoder drawn from uniform(-1/√hidden, 1/√hidden), as PyTorch
/// initialises `nn.LSTM` and (its fan-in being hidden) the output `nn.Linear`.
fn init_varmap(cfg: &LstmAutoencoderConfig, rng: &mut Stream, dev: &Device) -> Result<VarMap> {
    let varmap = VarMap::new();
    #[allow(clippy::cast_precision_loss)]
    let k = 1.0 / (cfg.hidden_size as f64).sqrt();
    {
        let mut vars = varmap.data().lock().unwrap_or_else(PoisonError::into_inner);
        for (name, shape) in cfg.tensors() {
            #[allow(clippy::cast_possible_truncation)]
            let values: Vec<f32> = (0..shape.iter().product()).map(|_| rng.between(-k, k) as f32).collect();
            vars.insert(name, Var::from_vec(values, shape.as_slice(), dev)?);
        }
    }
    Ok(varmap)
}

fn snapshot(varmap: &VarMap) -> Result<HashMap<String, Tensor>> {
    let vars = varmap.data().lock().unwrap_or_else(PoisonError::into_inner);
    let mut out = HashMap::with_capacity(vars.len());
    for (name, var) in vars.iter() {
        out.insert(name.clone(), var.as_tensor().copy()?);
    }
    Ok(out)
}

fn restore(varmap: &VarMap, weights: &HashMap<String, Tensor>) -> Result<()> {
    let vars = varmap.data().lock().unwrap_or_else(PoisonError::into_inner);
    for (name, var) in vars.iter() {
        if let Some(t) = weights.get(name) {
            var.set(t)?;
        }
    }
    Ok(())
}

/// Fisher–Yates with the seeded stream.
fn shuffle(v: &mut [usize], rng: &mut Stream) {
    for i in (1..v.len()).rev() {
        let j = rng.index(i + 1);
        v.swap(i, j);
    }
}

/// Reconstruction error of windows `from..to`, computed as the server computes it: the mean over
/// the window of the squared differences, in float64.
fn window_errors(model: &LstmAutoencoder, all: &Tensor, from: usize, to: usize) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(to - from);
    let mut start = from;
    while start < to {
        let len = SCORE_BATCH.min(to - start);
        let x = all.narrow(0, start, len)?.contiguous()?;
        let y = model.forward(&x)?.flatten_all()?.to_vec1::<f32>()?;
        let x = x.flatten_all()?.to_vec1::<f32>()?;
        let per = x.len() / len;
        for (xw, yw) in x.chunks_exact(per).zip(y.chunks_exact(per)) {
            let sum: f64 = xw.iter().zip(yw).map(|(a, b)| (f64::from(*b) - f64::from(*a)).powi(2)).sum();
            #[allow(clippy::cast_precision_loss)]
            out.push(sum / per as f64);
        }
        start += len;
    }
    Ok(out)
}

fn mean(v: &[f64]) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let n = v.len().max(1) as f64;
    v.iter().sum::<f64>() / n
}

/// NumPy's default (linear) percentile.
fn percentile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    #[allow(clippy::cast_precision_loss)]
    let pos = q / 100.0 * (s.len() - 1) as f64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(s.len() - 1);
    #[allow(clippy::cast_precision_loss)]
    let frac = pos - lo as f64;
    s[lo] + (s[hi] - s[lo]) * frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy() {
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 100.0), 4.0);
        assert!((percentile(&v, 50.0) - 2.5).abs() < 1e-12);
        assert!((percentile(&v, 99.0) - 3.97).abs() < 1e-12);
    }

    #[test]
    fn scaler_uses_only_the_training_rows() {
        let s = fit_scaler(&[vec![1.0, 3.0, 100.0], vec![5.0, 5.0, 0.0]], 2);
        assert_eq!(s.mean, vec![2.0, 5.0]);
        assert_eq!(s.scale, vec![1.0, 1.0]);
    }
}
