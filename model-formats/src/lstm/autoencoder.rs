//! The LSTM autoencoder network and the served model around it (scaling, errors, threshold).

use candle_core::{Device, Tensor as CTensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::cpu::CpuAutoencoder;
use super::layer::{Lstm, LstmConfig, linear_time_major};
use crate::error::{Error, InferError, InputError, Result};
use crate::model::{Label, LabelOutput, Model, ModelKind, Signature, TensorSpec};
use crate::tensor::{DataType, Tensor, TensorData};

/// Standardisation applied to every time step before the network: `(x − mean) / scale` per feature
/// (scikit-learn's `StandardScaler` fitted on training windows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    /// Per-feature mean.
    pub mean: Vec<f64>,
    /// Per-feature scale (standard deviation), finite and non-zero.
    pub scale: Vec<f64>,
}

/// How the decoder is wired: the two forms of LSTM autoencoder the platform writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderForm {
    /// The documented form (docs/lstm.md, the MLOps ADR): the decoder, `LSTM(H→H)`, reads the encoder's
    /// last hidden state repeated over the window, and a `Linear(H→F)` (`output_layer`) maps it back.
    #[default]
    Repeated,
    /// The LSTM notebook's form: the decoder, `LSTM(H→F)`, reads the encoder's whole output sequence;
    /// its outputs are the reconstruction (no `output_layer`).
    Sequence,
}

/// The autoencoder's hyper-parameters and serving settings: `config.json` of the PyTorch import form
/// (without its `architecture` key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LstmAutoencoderConfig {
    /// Features per time step (`F`).
    pub n_features: usize,
    /// Hidden size of both LSTMs (`H`).
    pub hidden_size: usize,
    /// Layers of each LSTM.
    pub num_layers: usize,
    /// How the decoder is wired (`repeated` when absent).
    #[serde(default, skip_serializing_if = "is_repeated")]
    pub decoder: DecoderForm,
    /// The window length every request must have; any length when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_len: Option<usize>,
    /// A window is an anomaly when its reconstruction error exceeds this; without it the model has no
    /// `is_anomaly` output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Input standardisation; errors are measured in its (scaled) space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaler: Option<Scaler>,
}

impl Default for LstmAutoencoderConfig {
    /// The benchmark's shape: 6 metrics, hidden 32, 2 layers, any window length.
    fn default() -> Self {
        LstmAutoencoderConfig {
            n_features: 6,
            hidden_size: 32,
            num_layers: 2,
            decoder: DecoderForm::Repeated,
            seq_len: None,
            threshold: None,
            scaler: None,
        }
    }
}

impl LstmAutoencoderConfig {
    /// The encoder's shape (`nn.LSTM(n_features, hidden_size, num_layers)`).
    pub fn encoder(&self) -> LstmConfig {
        LstmConfig { input_size: self.n_features, hidden_size: self.hidden_size, num_layers: self.num_layers }
    }

    /// The decoder's shape: `nn.LSTM(hidden_size, hidden_size, num_layers)`, or in the sequence form
    /// `nn.LSTM(hidden_size, n_features, num_layers)`.
    pub fn decoder(&self) -> LstmConfig {
        let hidden = match self.decoder {
            DecoderForm::Repeated => self.hidden_size,
            DecoderForm::Sequence => self.n_features,
        };
        LstmConfig { input_size: self.hidden_size, hidden_size: hidden, num_layers: self.num_layers }
    }

    /// Every tensor of the network with its shape, under the `state_dict` names.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::with_capacity(8 * self.num_layers + 2);
        for (prefix, lstm) in [("encoder", self.encoder()), ("decoder", self.decoder())] {
            for k in 0..self.num_layers {
                out.extend(lstm.layer_tensors(k).into_iter().map(|(n, s)| (format!("{prefix}.{n}"), s)));
            }
        }
        if self.decoder == DecoderForm::Repeated {
            out.push(("output_layer.weight".to_owned(), vec![self.n_features, self.hidden_size]));
            out.push(("output_layer.bias".to_owned(), vec![self.n_features]));
        }
        out
    }

    /// Checks sizes, the scaler and the threshold.
    ///
    /// # Errors
    /// The reason, for the caller to wrap with the file's name.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (name, v) in
            [("n_features", self.n_features), ("hidden_size", self.hidden_size), ("num_layers", self.num_layers)]
        {
            if v == 0 {
                return Err(format!("{name} is 0"));
            }
        }
        // Keep 4·H·max(F, H) far from overflow and from absurd allocations.
        if self.hidden_size > 1 << 16 || self.n_features > 1 << 20 || self.num_layers > 1 << 10 {
            return Err("n_features, hidden_size or num_layers is implausibly large".to_owned());
        }
        if self.seq_len == Some(0) {
            return Err("seq_len is 0".to_owned());
        }
        if let Some(t) = self.threshold.filter(|t| !t.is_finite()) {
            return Err(format!("threshold is {t}"));
        }
        if let Some(s) = &self.scaler {
            if s.mean.len() != self.n_features || s.scale.len() != self.n_features {
                return Err(format!(
                    "scaler has {} means and {} scales for {} features",
                    s.mean.len(),
                    s.scale.len(),
                    self.n_features
                ));
            }
            if let Some(m) = s.mean.iter().find(|m| !m.is_finite()) {
                return Err(format!("scaler mean {m} is not finite"));
            }
            if let Some(v) = s.scale.iter().find(|v| !v.is_finite() || **v == 0.0) {
                return Err(format!("scaler scale {v} is not finite and non-zero"));
            }
        }
        Ok(())
    }
}

fn is_repeated(form: &DecoderForm) -> bool {
    *form == DecoderForm::Repeated
}

/// PyTorch's `LSTMAutoencoder`: encoder LSTM → last layer's final hidden state repeated over the
/// window → decoder LSTM → linear layer (or, in the notebook's [`DecoderForm::Sequence`], encoder LSTM →
/// its output sequence → decoder LSTM), served with scaling, per-window reconstruction error and an
/// anomaly threshold.
///
/// Outputs: `reconstruction` (FP32, the input's shape, in the input's units), `reconstruction_error`
/// (FP64 `[B]`, mean squared error per window in scaled space), and, when a threshold is set,
/// `is_anomaly` (BOOL `[B]`, error > threshold).
#[derive(Debug, Clone)]
pub struct LstmAutoencoder {
    cfg: LstmAutoencoderConfig,
    encoder: Lstm,
    decoder: Lstm,
    /// `None` in the sequence form.
    output_layer: Option<candle_nn::Linear>,
    device: Device,
    signature: Signature,
    /// The CPU kernel, when enabled ([`LstmAutoencoder::with_cpu_kernel`]).
    cpu: Option<std::sync::Arc<CpuAutoencoder>>,
}

impl LstmAutoencoder {
    /// Output names, the default first.
    pub const OUTPUTS: [&'static str; 3] = ["reconstruction", "reconstruction_error", "is_anomaly"];

    /// Builds the network from `vb` (`encoder.*`, `decoder.*`, `output_layer.*`) on `vb`'s device.
    ///
    /// # Errors
    /// [`Error::InvalidModel`] (empty path; loaders set it) for an invalid configuration;
    /// [`Error::Candle`] for a missing or misshapen tensor.
    pub fn new(cfg: &LstmAutoencoderConfig, vb: VarBuilder<'_>) -> Result<Self> {
        cfg.validate().map_err(|reason| Error::invalid("", reason))?;
        let encoder = Lstm::new(&cfg.encoder(), vb.pp("encoder"))?;
        let decoder = Lstm::new(&cfg.decoder(), vb.pp("decoder"))?;
        let output_layer = match cfg.decoder {
            DecoderForm::Repeated => Some(candle_nn::linear(cfg.hidden_size, cfg.n_features, vb.pp("output_layer"))?),
            DecoderForm::Sequence => None,
        };
        let t = cfg.seq_len.map_or(-1, |t| t as i64);
        let f = cfg.n_features as i64;
        let mut outputs = vec![
            TensorSpec::new(Self::OUTPUTS[0], DataType::Fp32, vec![-1, t, f]),
            TensorSpec::new(Self::OUTPUTS[1], DataType::Fp64, vec![-1]),
        ];
        if cfg.threshold.is_some() {
            outputs.push(TensorSpec::new(Self::OUTPUTS[2], DataType::Bool, vec![-1]));
        }
        let signature = Signature { inputs: vec![TensorSpec::new("input-0", DataType::Fp32, vec![-1, t, f])], outputs };
        Ok(LstmAutoencoder {
            cfg: cfg.clone(),
            encoder,
            decoder,
            output_layer,
            device: vb.device().clone(),
            signature,
            cpu: None,
        })
    }

    /// Serves from the CPU kernel ([`super::cpu`]) when the model is on the CPU: its weights are
    /// packed once now, so it is for inference only (a model being trained keeps candle, whose
    /// parameters change).
    ///
    /// # Errors
    /// [`Error::Candle`] reading the weights.
    pub fn with_cpu_kernel(mut self) -> Result<Self> {
        if !self.device.is_cpu() {
            return Ok(self);
        }
        let output = match &self.output_layer {
            Some(linear) => {
                let out_w = linear.weight().flatten_all()?.to_vec1::<f32>()?;
                let out_b = match linear.bias() {
                    Some(b) => b.to_vec1::<f32>()?,
                    None => vec![0.0; self.cfg.n_features],
                };
                Some((out_w, out_b))
            }
            None => None,
        };
        let (encoder, decoder) = (self.encoder.layer_weights()?, self.decoder.layer_weights()?);
        let kernel = CpuAutoencoder::new(
            (&self.cfg.encoder(), &encoder),
            (&self.cfg.decoder(), &decoder),
            output.as_ref().map(|(w, b)| (w.as_slice(), b.as_slice())),
        );
        self.cpu = Some(std::sync::Arc::new(kernel));
        Ok(self)
    }

    /// Serves through candle even on the CPU (the reference path the kernel is tested against).
    #[must_use]
    pub fn without_cpu_kernel(mut self) -> Self {
        self.cpu = None;
        self
    }

    /// Whether inference runs on the CPU kernel rather than candle.
    pub fn uses_cpu_kernel(&self) -> bool {
        self.cpu.is_some()
    }

    /// The configuration.
    pub fn config(&self) -> &LstmAutoencoderConfig {
        &self.cfg
    }

    /// The device the network runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The network alone, as PyTorch's `forward`: `x` `[B, T, F]` (already scaled) → `[B, T, F]`.
    ///
    /// # Errors
    /// candle's error on a shape mismatch.
    pub fn forward(&self, x: &CTensor) -> candle_core::Result<CTensor> {
        let (_, t, _) = x.dims3()?;
        let x = x.transpose(0, 1)?.contiguous()?;
        let (sequence, z) = self.encoder.forward_time_major(&x)?;
        let y = match &self.output_layer {
            Some(linear) => linear_time_major(&self.decoder.forward_repeated(&z, t)?, linear)?,
            None => self.decoder.forward_time_major(&sequence)?.0,
        };
        y.transpose(0, 1)?.contiguous()
    }

    /// Reconstructs `b` scaled windows of `t` steps (row-major `[b, t, F]`), on the model's device.
    ///
    /// On the CPU, candle's matmul uses `RAYON_NUM_THREADS` threads (default: the physical cores); serve
    /// with `RAYON_NUM_THREADS=1` (docs/lstm.md, Threading).
    ///
    /// # Errors
    /// [`Error::Candle`] when the computation fails.
    pub fn reconstruct(&self, windows: Vec<f32>, b: usize, t: usize) -> Result<Vec<f32>> {
        if let Some(cpu) = &self.cpu {
            return Ok(cpu.reconstruct(&windows, b, t));
        }
        let x = CTensor::from_vec(windows, (b, t, self.cfg.n_features), &self.device)?;
        Ok(self.forward(&x)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// Reads the request's one input into scaled float32 windows: `(values, b, t, input shape)`.
    fn windows(&self, inputs: &[Tensor]) -> Result<(Vec<f32>, usize, usize), InputError> {
        let f = self.cfg.n_features;
        let x = match inputs {
            [x] => x,
            _ => {
                return Err(InputError::Inputs(format!(
                    "the request has {} inputs; this model takes one input of shape [B, T, {f}] (or [T, {f}] for one window)",
                    inputs.len()
                )));
            }
        };
        let shape_error = |reason: String| InputError::Shape { input: x.name.clone(), reason };
        let (b, t) = match x.shape.as_slice() {
            [b, t, ff] if *ff == f => (*b, *t),
            [t, ff] if *ff == f => (1, *t),
            s => {
                return Err(shape_error(format!(
                    "shape {s:?} does not fit this model, which takes [B, T, {f}] (B windows of T steps of {f} features) or [T, {f}]"
                )));
            }
        };
        if let Some(want) = self.cfg.seq_len.filter(|&w| w != t) {
            return Err(shape_error(format!("windows of {t} steps; this model takes windows of {want} steps")));
        }
        if t == 0 {
            return Err(shape_error("a window needs at least one time step".to_owned()));
        }
        if matches!(x.data, TensorData::Bytes(_)) {
            return Err(InputError::DataType {
                input: x.name.clone(),
                expected: "FP32 or FP64".to_owned(),
                got: x.datatype(),
            });
        }
        let non_finite = |pos: usize, what: &str| InputError::Value {
            input: x.name.clone(),
            reason: format!("contains {what} at window {}, step {}, feature {}", pos / (t * f), pos / f % t, pos % f),
        };
        let values = match &self.cfg.scaler {
            None => {
                let mut v = Vec::with_capacity(x.data.len());
                x.data.extend_f32(&mut v);
                if let Some(pos) = v.iter().position(|v| !v.is_finite()) {
                    let what = if v[pos].is_nan() { "NaN" } else { "infinity or a value too large for float32" };
                    return Err(non_finite(pos, what));
                }
                v
            }
            Some(s) => {
                let mut raw = Vec::with_capacity(x.data.len());
                x.data.extend_f64(&mut raw);
                let mut v = Vec::with_capacity(raw.len());
                for (pos, r) in raw.iter().enumerate() {
                    if !r.is_finite() {
                        return Err(non_finite(pos, if r.is_nan() { "NaN" } else { "infinity" }));
                    }
                    #[allow(clippy::cast_possible_truncation)]
                    let scaled = ((r - s.mean[pos % f]) / s.scale[pos % f]) as f32;
                    if !scaled.is_finite() {
                        return Err(non_finite(pos, "a value too large for float32 once scaled"));
                    }
                    v.push(scaled);
                }
                v
            }
        };
        Ok((values, b, t))
    }
}

impl Model for LstmAutoencoder {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn kind(&self) -> ModelKind {
        ModelKind::LstmAutoencoder
    }

    fn label(&self) -> Option<LabelOutput> {
        Some(LabelOutput::new("is_anomaly", Some(Label::Bool(true))))
    }

    fn is_compute_heavy(&self) -> bool {
        // One window is ~1 ms of candle work (60 steps × 2 layers): never on the async executor.
        true
    }

    fn infer(&self, inputs: &[Tensor], outputs: &[String]) -> Result<Vec<Tensor>, InferError> {
        self.signature.check_outputs(outputs)?;
        let (x, b, t) = self.windows(inputs)?;
        let y = if b == 0 { Vec::new() } else { self.reconstruct(x.clone(), b, t).map_err(InferError::compute)? };
        let f = self.cfg.n_features;
        let window = t * f;
        let mut errors = Vec::with_capacity(b);
        for (xw, yw) in x.chunks_exact(window).zip(y.chunks_exact(window)) {
            let sum: f64 = xw.iter().zip(yw).map(|(a, b)| (f64::from(*b) - f64::from(*a)).powi(2)).sum();
            #[allow(clippy::cast_precision_loss)]
            errors.push(sum / window as f64);
        }
        let input_shape = inputs.first().map(|x| x.shape.clone()).unwrap_or_default();
        let default = [Self::OUTPUTS[0].to_owned()];
        let names = if outputs.is_empty() { &default[..] } else { outputs };
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let tensor = match name.as_str() {
                "reconstruction" => {
                    let data = match &self.cfg.scaler {
                        None => y.clone(),
                        #[allow(clippy::cast_possible_truncation)]
                        Some(s) => y
                            .iter()
                            .enumerate()
                            .map(|(i, v)| (f64::from(*v) * s.scale[i % f] + s.mean[i % f]) as f32)
                            .collect(),
                    };
                    Tensor::new(name.clone(), input_shape.clone(), TensorData::Fp32(data))?
                }
                "reconstruction_error" => Tensor::new(name.clone(), vec![b], TensorData::Fp64(errors.clone()))?,
                _ => {
                    // check_outputs admitted it, so it is `is_anomaly` and a threshold is set.
                    let threshold = self.cfg.threshold.unwrap_or(f64::INFINITY);
                    Tensor::new(
                        name.clone(),
                        vec![b],
                        TensorData::Bool(errors.iter().map(|e| *e > threshold).collect()),
                    )?
                }
            };
            out.push(tensor);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::lstm::layer::DTYPE;

    /// A tiny model with all weights 0.1 and biases 0: deterministic without a fixture.
    fn model(cfg: &LstmAutoencoderConfig) -> LstmAutoencoder {
        let dev = Device::Cpu;
        let tensors: HashMap<String, CTensor> = cfg
            .tensors()
            .into_iter()
            .map(|(n, s)| {
                let v = if n.contains("bias") { 0.0f32 } else { 0.1 };
                (n, CTensor::full(v, s.as_slice(), &dev).unwrap())
            })
            .collect();
        LstmAutoencoder::new(cfg, VarBuilder::from_tensors(tensors, DTYPE, &dev)).unwrap()
    }

    fn cfg() -> LstmAutoencoderConfig {
        LstmAutoencoderConfig { n_features: 2, hidden_size: 3, num_layers: 2, ..Default::default() }
    }

    fn input(shape: Vec<usize>, v: Vec<f32>) -> Tensor {
        Tensor::new("x", shape, TensorData::Fp32(v)).unwrap()
    }

    #[test]
    fn one_window_keeps_its_shape_and_matches_the_batched_form() {
        let m = model(&cfg());
        let xs: Vec<f32> = (0..8).map(|i| i as f32 / 8.0).collect();
        let all = ["reconstruction".to_owned(), "reconstruction_error".to_owned()];
        let one = m.infer(&[input(vec![4, 2], xs.clone())], &all).unwrap();
        assert_eq!(one[0].shape, vec![4, 2]);
        assert_eq!(one[1].shape, vec![1]);
        let batch: Vec<f32> = xs.iter().chain(&xs).copied().collect();
        let two = m.infer(&[input(vec![2, 4, 2], batch)], &all).unwrap();
        let TensorData::Fp32(a) = &one[0].data else { panic!() };
        let TensorData::Fp32(b) = &two[0].data else { panic!() };
        for (x, y) in a.iter().zip(&b[..8]).chain(a.iter().zip(&b[8..])) {
            assert!((x - y).abs() < 1e-6);
        }
        assert!(m.signature().outputs.iter().all(|o| o.name != "is_anomaly"), "no threshold, no is_anomaly");
        assert!(m.infer(&[input(vec![4, 2], xs)], &["is_anomaly".to_owned()]).unwrap_err().is_client_error());
    }

    #[test]
    fn bad_inputs_are_client_errors() {
        let c = LstmAutoencoderConfig { seq_len: Some(3), ..cfg() };
        let m = model(&c);
        let cases = [
            vec![input(vec![1, 3, 3], vec![0.0; 9])],
            vec![input(vec![1, 4, 2], vec![0.0; 8])],
            vec![input(vec![6], vec![0.0; 6])],
            vec![input(vec![1, 3, 2], vec![0.0, f32::NAN, 0.0, 0.0, 0.0, 0.0])],
            vec![input(vec![3, 2], vec![0.0, 0.0, f32::INFINITY, 0.0, 0.0, 0.0])],
            vec![Tensor::new("x", vec![3, 2], TensorData::Bytes(vec![vec![]; 6])).unwrap()],
            vec![],
            vec![input(vec![3, 2], vec![0.0; 6]), input(vec![3, 2], vec![0.0; 6])],
        ];
        for inputs in cases {
            let err = m.infer(&inputs, &[]).unwrap_err();
            assert!(err.is_client_error(), "{err}");
        }
        let err = m.infer(&[input(vec![1, 3, 2], vec![0.0, 0.0, 0.0, f32::NAN, 0.0, 0.0])], &[]).unwrap_err();
        assert!(err.to_string().contains("window 0, step 1, feature 1"), "{err}");
        let empty = m.infer(&[input(vec![0, 3, 2], vec![])], &["reconstruction_error".to_owned()]).unwrap();
        assert_eq!(empty[0].shape, vec![0]);
    }

    #[test]
    fn scaling_overflow_and_threshold() {
        let c = LstmAutoencoderConfig {
            threshold: Some(0.5),
            scaler: Some(Scaler { mean: vec![0.0, 0.0], scale: vec![1e-300, 1.0] }),
            ..cfg()
        };
        let m = model(&c);
        let x = Tensor::new("x", vec![1, 2], TensorData::Fp64(vec![1.0, 0.0])).unwrap();
        assert!(m.infer(&[x], &[]).unwrap_err().to_string().contains("too large for float32 once scaled"));
        let x = Tensor::new("x", vec![2, 1, 2], TensorData::Fp64(vec![0.0, 0.0, 1e-299, 5.0])).unwrap();
        let out = m.infer(&[x], &["is_anomaly".to_owned(), "reconstruction_error".to_owned()]).unwrap();
        let TensorData::Bool(flags) = &out[0].data else { panic!() };
        assert_eq!(flags, &[false, true]);
    }

    #[test]
    fn invalid_configs_are_refused() {
        for bad in [
            LstmAutoencoderConfig { hidden_size: 0, ..cfg() },
            LstmAutoencoderConfig { seq_len: Some(0), ..cfg() },
            LstmAutoencoderConfig { threshold: Some(f64::NAN), ..cfg() },
            LstmAutoencoderConfig { scaler: Some(Scaler { mean: vec![0.0], scale: vec![1.0] }), ..cfg() },
            LstmAutoencoderConfig { scaler: Some(Scaler { mean: vec![0.0; 2], scale: vec![1.0, 0.0] }), ..cfg() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
