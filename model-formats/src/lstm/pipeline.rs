//! The LSTM notebook's `LSTMPipeline`, pickled whole (`pickle.dump(pipeline, f)`), read structurally.
//!
//! The class is the notebook's own (`__main__.LSTMPipeline`), so it is not on the allowlist: the file is
//! read with the pickle crate's structural records (class name + `BUILD` state, never called) and this
//! module recognises the shape of its state: `scaler` (a fitted StandardScaler or MinMaxScaler),
//! `model_state_dict` (an OrderedDict of tensors, each storage a `torch.storage._load_from_bytes(b)`
//! whose bytes are a legacy `torch.save` of that one storage, read here by the bounded legacy reader),
//! `model_class` (a bare class reference, only a name), `model_config` (`input_size`, `hidden_size`,
//! `num_layers`), `threshold` and `device`.
//!
//! Served as the class's `predict`: rows of `F` features in (`[N, F]`), each row a window of one step;
//! outputs `predict` (INT64 `[N]`: −1 where the reconstruction error exceeds the threshold, else 1; the
//! default) and `reconstruction_error` (FP64 `[N]`).

use std::path::Path;

use super::autoencoder::{LstmAutoencoder, LstmAutoencoderConfig};
use super::device::DeviceChoice;
use super::torch_file::{build, infer_config, scaler_from};
use crate::error::{Error, InferError, InputError, Result};
use crate::model::{Label, LabelOutput, Model, ModelKind, Signature, TensorSpec};
use crate::pickle::{Limits, Value};
use crate::tensor::{DataType, Tensor, TensorData};
use crate::torch::{StateDict, element_budget, read_legacy, state_dict_of, tensor_from};

/// The attributes that make an object an `LSTMPipeline`.
const SHAPE: [&str; 3] = ["scaler", "model_state_dict", "threshold"];

/// Whether a structurally read object has the `LSTMPipeline`'s shape.
pub fn is_pipeline(v: &Value) -> bool {
    matches!(v, Value::Object(_)) && SHAPE.iter().all(|a| v.attr(a).is_some())
}

/// The pickled `LSTMPipeline` as a served model.
#[derive(Debug)]
pub struct LstmPipeline {
    autoencoder: LstmAutoencoder,
    class: String,
    signature: Signature,
}

impl LstmPipeline {
    /// Reads an object recognised by [`is_pipeline`]; `path` names the file in errors.
    ///
    /// # Errors
    /// [`Error::Pickle`] when a part is not what the class stores (with the attribute's name), and the
    /// network's errors as for a torch file.
    pub fn from_value(v: &Value, path: &Path, device: DeviceChoice) -> Result<Self> {
        let class = v.class().map_or_else(|| "LSTMPipeline".to_owned(), |c| c.to_string());
        let bad = |reason: String| Error::Pickle { path: path.to_path_buf(), reason: format!("{class}: {reason}") };
        let attr = |name: &str| v.attr(name).ok_or_else(|| bad(format!("has no `{name}`")));
        let sd = read_state_dict(&attr("model_state_dict")?).map_err(|e| bad(format!("model_state_dict: {e}")))?;
        let mut cfg = infer_config(&sd).map_err(|e| bad(format!("model_state_dict: {e}")))?;
        if let Some(mc) = v.attr("model_config") {
            for (key, inferred) in
                [("input_size", cfg.n_features), ("hidden_size", cfg.hidden_size), ("num_layers", cfg.num_layers)]
            {
                match mc.get(key).and_then(|n| n.as_int()) {
                    Some(n) if n == inferred as i64 => {}
                    None => {}
                    Some(n) => {
                        return Err(bad(format!("model_config says {key} {n}, the weights have {inferred}")));
                    }
                }
            }
        }
        let threshold = attr("threshold")?.as_f64().ok_or_else(|| bad("threshold is not a number".to_owned()))?;
        cfg.threshold = Some(threshold);
        cfg.seq_len = Some(1);
        cfg.scaler = Some(scaler_from(&attr("scaler")?).map_err(|e| bad(format!("scaler: {e}")))?);
        let autoencoder = build(path, &cfg, sd, device)?;
        Ok(Self::new(autoencoder, class, &cfg))
    }

    fn new(autoencoder: LstmAutoencoder, class: String, cfg: &LstmAutoencoderConfig) -> Self {
        let f = cfg.n_features as i64;
        let signature = Signature {
            inputs: vec![TensorSpec::new("input-0", DataType::Fp32, vec![-1, f])],
            outputs: vec![
                TensorSpec::new("predict", DataType::Int64, vec![-1]),
                TensorSpec::new("reconstruction_error", DataType::Fp64, vec![-1]),
            ],
        };
        LstmPipeline { autoencoder, class, signature }
    }

    /// The pickled class (`__main__.LSTMPipeline`).
    pub fn class(&self) -> &str {
        &self.class
    }
}

/// The state_dict of `_rebuild_tensor_v2` objects whose storages are `_load_from_bytes(b)`.
fn read_state_dict(v: &Value) -> std::result::Result<StateDict, String> {
    let limits = Limits::default();
    let storage_of = |s: &Value| {
        let Value::Object(o) = s else { return Err(format!("the storage is a {}", s.type_name())) };
        let o = o.borrow();
        let (true, [Value::Bytes(b)]) =
            (o.class.module == "torch.storage" && o.class.name == "_load_from_bytes", o.args.as_slice())
        else {
            return Err(format!("the storage is a {}, not torch.storage._load_from_bytes(bytes)", o.class));
        };
        let (value, storages) = read_legacy(b, &limits).map_err(|e| match e {
            crate::torch::ReadError::Format(r) => format!("its storage bytes: {r}"),
            crate::torch::ReadError::Pickle(p) => format!("its storage bytes: {p}"),
        })?;
        let key = match value.as_seq().as_deref() {
            Some([Value::Global(_), Value::Str(k)]) => k.to_string(),
            _ => return Err("its storage bytes do not hold one storage".to_owned()),
        };
        storages.get(&key).cloned().ok_or_else(|| "its storage bytes do not hold their storage".to_owned())
    };
    let mut budget = element_budget(&limits);
    state_dict_of(v)?
        .into_iter()
        .map(|(name, t)| {
            tensor_from(&t, &storage_of, &mut budget)
                .map(|t| (name.clone(), t))
                .map_err(|e| format!("tensor `{name}`: {e}"))
        })
        .collect()
}

impl Model for LstmPipeline {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn kind(&self) -> ModelKind {
        ModelKind::LstmAutoencoder
    }

    fn label(&self) -> Option<LabelOutput> {
        Some(LabelOutput::new("predict", Some(Label::Int(-1))))
    }

    fn is_compute_heavy(&self) -> bool {
        true
    }

    fn infer(&self, inputs: &[Tensor], outputs: &[String]) -> std::result::Result<Vec<Tensor>, InferError> {
        self.signature.check_outputs(outputs)?;
        let f = self.autoencoder.config().n_features;
        let x = match inputs {
            [x] => x,
            _ => {
                return Err(InputError::Inputs(format!(
                    "the request has {} inputs; this model takes one input of shape [N, {f}]",
                    inputs.len()
                ))
                .into());
            }
        };
        let n = match x.shape.as_slice() {
            [n, ff] if *ff == f => *n,
            s => {
                return Err(InputError::Shape {
                    input: x.name.clone(),
                    reason: format!(
                        "shape {s:?} does not fit this model, which takes [N, {f}] (N rows of {f} features)"
                    ),
                }
                .into());
            }
        };
        let windows = Tensor::new(x.name.clone(), vec![n, 1, f], x.data.clone())?;
        let wanted = ["reconstruction_error".to_owned(), "is_anomaly".to_owned()];
        let out = self.autoencoder.infer(&[windows], &wanted)?;
        let (TensorData::Fp64(errors), TensorData::Bool(anomalous)) = (&out[0].data, &out[1].data) else {
            return Err(InferError::compute("the autoencoder's outputs have unexpected types"));
        };
        let default = ["predict".to_owned()];
        let names = if outputs.is_empty() { &default[..] } else { outputs };
        let mut result = Vec::with_capacity(names.len());
        for name in names {
            let data = if name == "predict" {
                TensorData::Int64(anomalous.iter().map(|&a| if a { -1 } else { 1 }).collect())
            } else {
                TensorData::Fp64(errors.clone())
            };
            result.push(Tensor::new(name.clone(), vec![n], data)?);
        }
        Ok(result)
    }
}
