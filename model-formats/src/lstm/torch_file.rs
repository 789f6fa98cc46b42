//! The LSTM autoencoder from a `torch.save`d `state_dict` (`model.pt` / `model.pth`), with an optional
//! `scaler.pkl` (StandardScaler or MinMaxScaler, pickle or joblib) and `config.json` / `metadata.json`
//! (`threshold`, `seq_len`) beside it.
//!
//! The architecture is inferred from the tensor names and shapes: `encoder.weight_ih_l0` is
//! `[4H, F]`, the number of `encoder.weight_ih_l*` is the number of layers, and an `output_layer.*`
//! makes it the documented form ([`DecoderForm::Repeated`]); without it the notebook's
//! ([`DecoderForm::Sequence`]). Every tensor is then checked against the inferred network.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor as CTensor;
use candle_nn::VarBuilder;

use super::autoencoder::{DecoderForm, LstmAutoencoder, LstmAutoencoderConfig, Scaler};
use super::device::DeviceChoice;
use super::layer::DTYPE;
use crate::error::{Error, Result};
use crate::pickle::Value;
use crate::torch::{StateDict, TorchTensor, read_state_dict_file};

/// The input scaling beside a torch file.
pub const SCALER_PKL: &str = "scaler.pkl";

/// Loads the LSTM autoencoder saved as a `state_dict` in `file`, with the files beside it.
///
/// # Errors
/// The torch reader's errors ([`crate::torch::read_state_dict_file`]); [`Error::InvalidModel`] when the
/// tensors are not an LSTM autoencoder or disagree with `config.json`; the scaler's pickle errors.
pub fn load_torch(file: &Path, options: &crate::LoadOptions) -> Result<LstmAutoencoder> {
    load_torch_with(file, options, true)
}

/// [`load_torch`], reading the files beside `file` only when `siblings` (a single mounted model file
/// has no folder of its own: only its weights are read).
///
/// # Errors
/// As [`load_torch`].
pub fn load_torch_with(file: &Path, options: &crate::LoadOptions, siblings: bool) -> Result<LstmAutoencoder> {
    let (device, limits) = (options.device, options.pickle_limits());
    let sd = read_state_dict_file(file, &limits)?;
    let mut cfg = infer_config(&sd).map_err(|r| Error::invalid(file, r))?;
    if !siblings {
        return build(file, &cfg, sd, device);
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    apply_json(dir, &mut cfg)?;
    let scaler_path = dir.join(SCALER_PKL);
    // Present but not a regular file (a FIFO, a device): fail, never serve without the scaling.
    if scaler_path.exists() {
        let v = crate::pickle::load_file(&scaler_path, &limits)?;
        cfg.scaler = Some(scaler_from(&v).map_err(|r| Error::invalid(&scaler_path, r))?);
    }
    build(file, &cfg, sd, device)
}

/// Builds the network from checked tensors.
pub(crate) fn build(
    path: &Path,
    cfg: &LstmAutoencoderConfig,
    sd: StateDict,
    device: DeviceChoice,
) -> Result<LstmAutoencoder> {
    cfg.validate().map_err(|r| Error::invalid(path, r))?;
    let expected = cfg.tensors();
    let mut by_name: HashMap<String, TorchTensor> = HashMap::with_capacity(sd.len());
    for (name, t) in sd {
        if !expected.iter().any(|(e, _)| *e == name) {
            return Err(Error::invalid(
                path,
                format!(
                    "holds tensor `{name}`, which a {}-layer LSTM autoencoder ({:?} form, n_features {}, hidden_size {}) \
                     does not have",
                    cfg.num_layers, cfg.decoder, cfg.n_features, cfg.hidden_size
                ),
            ));
        }
        by_name.insert(name, t);
    }
    let device = device.candle_device()?;
    let mut tensors = HashMap::with_capacity(expected.len());
    for (name, shape) in expected {
        let t = by_name
            .remove(&name)
            .ok_or_else(|| Error::MissingTensor { path: path.to_path_buf(), name: name.clone() })?;
        if t.shape != shape {
            return Err(Error::BadTensor {
                path: path.to_path_buf(),
                name,
                expected: format!("shape {shape:?}"),
                found: format!("shape {:?}", t.shape),
            });
        }
        if t.values.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(path, format!("tensor `{name}` holds NaN or infinite values")));
        }
        tensors.insert(name, CTensor::from_vec(t.values, shape.as_slice(), &device)?);
    }
    LstmAutoencoder::new(cfg, VarBuilder::from_tensors(tensors, DTYPE, &device))
        .and_then(LstmAutoencoder::with_cpu_kernel)
        .map_err(|e| match e {
            Error::InvalidModel { reason, .. } => Error::invalid(path, reason),
            other => other,
        })
}

/// The network's shape from the tensors' names and shapes.
pub(crate) fn infer_config(sd: &StateDict) -> std::result::Result<LstmAutoencoderConfig, String> {
    let shape = |name: &str| sd.iter().find(|(n, _)| n == name).map(|(_, t)| t.shape.clone());
    let Some(w) = shape("encoder.weight_ih_l0") else {
        let names: Vec<&str> = sd.iter().take(4).map(|(n, _)| n.as_str()).collect();
        return Err(format!(
            "the state_dict has no `encoder.weight_ih_l0`, so it is not an LSTM autoencoder (its tensors: {}{})",
            names.join(", "),
            if sd.len() > 4 { ", …" } else { "" }
        ));
    };
    let [h4, f] = w.as_slice() else {
        return Err(format!("`encoder.weight_ih_l0` has shape {w:?}, not [4·hidden, features]"));
    };
    if h4 % 4 != 0 {
        return Err(format!("`encoder.weight_ih_l0` has {h4} rows, not a multiple of 4"));
    }
    let num_layers = (0..).take_while(|k| shape(&format!("encoder.weight_ih_l{k}")).is_some()).count();
    let decoder = if shape("output_layer.weight").is_some() { DecoderForm::Repeated } else { DecoderForm::Sequence };
    Ok(LstmAutoencoderConfig {
        n_features: *f,
        hidden_size: h4 / 4,
        num_layers,
        decoder,
        seq_len: None,
        threshold: None,
        scaler: None,
    })
}

/// `threshold` and `seq_len` from `config.json` (first) or `metadata.json` (top level or under
/// `hyperparameters`); sizes in `config.json` must agree with the tensors.
fn apply_json(dir: &Path, cfg: &mut LstmAutoencoderConfig) -> Result<()> {
    let mut threshold = None;
    let mut seq_len = None;
    for name in [super::CONFIG_JSON, crate::layout::METADATA_JSON] {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let bytes = crate::files::read_side_file(&path)?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|source| Error::Json { path: path.clone(), source })?;
        let field = |key: &str| v.get(key).or_else(|| v.get("hyperparameters").and_then(|h| h.get(key))).cloned();
        if name == super::CONFIG_JSON {
            for (key, inferred) in
                [("n_features", cfg.n_features), ("hidden_size", cfg.hidden_size), ("num_layers", cfg.num_layers)]
            {
                if let Some(n) = v.get(key).and_then(serde_json::Value::as_u64)
                    && n != inferred as u64
                {
                    return Err(Error::invalid(
                        &path,
                        format!("says {key} {n}, but the weights in the torch file have {inferred}"),
                    ));
                }
            }
        }
        if threshold.is_none()
            && let Some(t) = field("threshold")
        {
            threshold = Some(t.as_f64().ok_or_else(|| Error::invalid(&path, "threshold is not a number"))?);
        }
        if seq_len.is_none()
            && let Some(t) = field("seq_len")
        {
            let n = t.as_u64().ok_or_else(|| Error::invalid(&path, "seq_len is not a non-negative integer"))?;
            seq_len = Some(usize::try_from(n).map_err(|_| Error::invalid(&path, "seq_len is too large"))?);
        }
    }
    cfg.threshold = threshold;
    cfg.seq_len = seq_len;
    Ok(())
}

/// A fitted scikit-learn StandardScaler or MinMaxScaler as the autoencoder's `(x − mean) / scale`.
/// MinMax's `x · s + m` is `(x − (−m/s)) / (1/s)`.
pub(crate) fn scaler_from(v: &Value) -> std::result::Result<Scaler, String> {
    let class = v.class().ok_or_else(|| format!("holds a {}, not a scikit-learn scaler", v.type_name()))?;
    let vector = |name: &str| -> std::result::Result<Vec<f64>, String> {
        let a = v.attr(name).and_then(|a| a.as_array()).ok_or_else(|| format!("{class} has no array `{name}`"))?;
        a.to_f64().map_err(|e| format!("{class}.{name}: {e}"))
    };
    let flag = |name: &str| v.attr(name).and_then(|f| f.as_bool()).unwrap_or(true);
    match (class.module.as_str(), class.name.as_str()) {
        ("sklearn.preprocessing._data", "StandardScaler") => {
            let scale = if flag("with_std") { Some(vector("scale_")?) } else { None };
            let mean = if flag("with_mean") { Some(vector("mean_")?) } else { None };
            let n = mean.as_ref().or(scale.as_ref()).map_or(0, Vec::len);
            Ok(Scaler { mean: mean.unwrap_or_else(|| vec![0.0; n]), scale: scale.unwrap_or_else(|| vec![1.0; n]) })
        }
        ("sklearn.preprocessing._data", "MinMaxScaler") => {
            if v.attr("clip").and_then(|c| c.as_bool()) == Some(true) {
                return Err("a MinMaxScaler with clip=True is not supported".to_owned());
            }
            let (s, m) = (vector("scale_")?, vector("min_")?);
            if s.len() != m.len() {
                return Err("MinMaxScaler's scale_ and min_ differ in length".to_owned());
            }
            if let Some(bad) = s.iter().find(|x| **x == 0.0 || !x.is_finite()) {
                return Err(format!("MinMaxScaler scale_ {bad} is not finite and non-zero"));
            }
            Ok(Scaler {
                mean: s.iter().zip(&m).map(|(s, m)| -m / s).collect(),
                scale: s.iter().map(|s| 1.0 / s).collect(),
            })
        }
        _ => Err(format!("holds a {class}, not a StandardScaler or MinMaxScaler")),
    }
}
