//! The PyTorch import form: a folder with `config.json` and `model.safetensors` (the module's
//! `state_dict`, as `safetensors.torch.save_file` writes it) and no `model.json`.
//!
//! Every tensor is checked against `config.json` before the network is built, so a wrong file fails
//! with the tensor's name, the expected shape and what was found.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor as CTensor;
use candle_nn::VarBuilder;
use safetensors::{Dtype, SafeTensors};

use super::autoencoder::{LstmAutoencoder, LstmAutoencoderConfig};
use super::device::DeviceChoice;
use super::layer::DTYPE;
use crate::error::{Error, Result};
use crate::layout::MODEL_SAFETENSORS;

/// The import form's description of the network.
pub const CONFIG_JSON: &str = "config.json";

/// The `architecture` of `config.json` this module reads.
pub const ARCHITECTURE: &str = "lstm_autoencoder";

/// Reads `config.json`: its `architecture` must be `lstm_autoencoder`; unknown keys are ignored.
///
/// # Errors
/// [`Error::Io`], [`Error::Json`], [`Error::UnsupportedFormat`] (another architecture),
/// [`Error::InvalidModel`] (sizes, scaler or threshold out of range).
pub fn read_config(dir: &Path) -> Result<LstmAutoencoderConfig> {
    let path = dir.join(CONFIG_JSON);
    let bytes = crate::files::read_side_file(&path)?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|source| Error::Json { path: path.clone(), source })?;
    match value.get("architecture").and_then(serde_json::Value::as_str) {
        Some(ARCHITECTURE) => {}
        other => {
            return Err(Error::UnsupportedFormat {
                path,
                what: "architecture",
                found: other.unwrap_or("(none)").to_owned(),
            });
        }
    }
    let cfg: LstmAutoencoderConfig =
        serde_json::from_value(value).map_err(|source| Error::Json { path: path.clone(), source })?;
    cfg.validate().map_err(|reason| Error::invalid(&path, reason))?;
    Ok(cfg)
}

/// Loads the PyTorch import form in `dir` onto `device`.
///
/// # Errors
/// As [`read_config`]; for the weights [`Error::Safetensors`], [`Error::MissingTensor`],
/// [`Error::BadTensor`] (dtype or shape), [`Error::InvalidModel`] (a tensor `config.json` does not
/// describe, non-finite weights); [`Error::Candle`] when the device cannot be opened.
pub fn load_pytorch(dir: &Path, device: DeviceChoice) -> Result<LstmAutoencoder> {
    load_pytorch_with(dir, &crate::LoadOptions { device, ..crate::LoadOptions::default() })
}

/// [`load_pytorch`] with the device and the file limit of `options`.
///
/// # Errors
/// As [`load_pytorch`]; [`Error::TooLarge`] for weights over `options.max_model_bytes`.
pub fn load_pytorch_with(dir: &Path, options: &crate::LoadOptions) -> Result<LstmAutoencoder> {
    let device = options.device;
    let cfg = read_config(dir)?;
    let path = dir.join(MODEL_SAFETENSORS);
    let bytes = crate::files::read(&path, options.max_model_bytes, crate::files::MAX_MODEL_BYTES)?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::Safetensors { path: path.clone(), message: e.to_string() })?;
    let expected = cfg.tensors();
    if let Some(extra) = st.names().into_iter().find(|n| !expected.iter().any(|(e, _)| e == *n)) {
        return Err(Error::invalid(
            &path,
            format!(
                "holds tensor `{extra}`, which a {}-layer autoencoder with n_features {} and hidden_size {} does not have; does config.json match the weights?",
                cfg.num_layers, cfg.n_features, cfg.hidden_size
            ),
        ));
    }
    let device = device.candle_device()?;
    let mut tensors = HashMap::with_capacity(expected.len());
    for (name, shape) in expected {
        let view = st.tensor(&name).map_err(|_| Error::MissingTensor { path: path.clone(), name: name.clone() })?;
        let bad = |expected: String, found: String| Error::BadTensor {
            path: path.clone(),
            name: name.clone(),
            expected,
            found,
        };
        if view.shape() != shape.as_slice() {
            return Err(bad(format!("shape {shape:?}"), format!("shape {:?}", view.shape())));
        }
        let values = to_f32(view.dtype(), view.data())
            .ok_or_else(|| bad("dtype F32, F64, F16 or BF16".to_owned(), format!("dtype {:?}", view.dtype())))?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(&path, format!("tensor `{name}` holds NaN or infinite values")));
        }
        tensors.insert(name, CTensor::from_vec(values, shape.as_slice(), &device)?);
    }
    LstmAutoencoder::new(&cfg, VarBuilder::from_tensors(tensors, DTYPE, &device))
        .and_then(LstmAutoencoder::with_cpu_kernel)
        .map_err(|e| match e {
            Error::InvalidModel { reason, .. } => Error::invalid(&path, reason),
            other => other,
        })
}

/// Little-endian floats of a safetensors buffer as f32 (PyTorch computes in f32); `None` for other
/// dtypes.
/// Writes `cfg` and `tensors` (the `state_dict` names of [`LstmAutoencoderConfig::tensors`]) into `dir`
/// in the PyTorch import form that [`load_pytorch`] reads: `config.json` (with `architecture`) and
/// `model.safetensors` (float32). The bytes depend only on the values, so a seeded training run
/// writes identical files.
///
/// # Errors
/// [`Error::InvalidModel`] when the configuration is invalid or a tensor is missing or misshapen;
/// [`Error::Candle`] reading a tensor; [`Error::Io`] and [`Error::Safetensors`] writing.
pub fn save_pytorch(dir: &Path, cfg: &LstmAutoencoderConfig, tensors: &HashMap<String, CTensor>) -> Result<()> {
    cfg.validate().map_err(|reason| Error::invalid(dir, reason))?;
    let mut data: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, shape) in cfg.tensors() {
        let t =
            tensors.get(&name).ok_or_else(|| Error::MissingTensor { path: dir.to_path_buf(), name: name.clone() })?;
        if t.dims() != shape.as_slice() {
            return Err(Error::invalid(dir, format!("tensor `{name}` has shape {:?}, not {shape:?}", t.dims())));
        }
        let values = t.to_dtype(DTYPE)?.flatten_all()?.to_vec1::<f32>()?;
        data.push((name, shape, values.iter().flat_map(|v| v.to_le_bytes()).collect()));
    }
    let mut views = Vec::with_capacity(data.len());
    for (name, shape, bytes) in &data {
        let view = safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), bytes)
            .map_err(|e| Error::Safetensors { path: dir.join(MODEL_SAFETENSORS), message: e.to_string() })?;
        views.push((name.clone(), view));
    }
    let path = dir.join(MODEL_SAFETENSORS);
    let bytes = safetensors::serialize(views, None)
        .map_err(|e| Error::Safetensors { path: path.clone(), message: e.to_string() })?;
    std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
    let mut config = serde_json::to_value(cfg).map_err(|source| Error::Json { path: dir.join(CONFIG_JSON), source })?;
    if let serde_json::Value::Object(map) = &mut config {
        map.insert("architecture".to_owned(), serde_json::Value::from(ARCHITECTURE));
    }
    let path = dir.join(CONFIG_JSON);
    let mut text =
        serde_json::to_string_pretty(&config).map_err(|source| Error::Json { path: path.clone(), source })?;
    text.push('\n');
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
}

fn to_f32(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        #[allow(clippy::cast_possible_truncation)]
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        Dtype::F16 => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, config: &str, tensors: &[(&str, Vec<usize>)]) {
        std::fs::write(dir.join(CONFIG_JSON), config).unwrap();
        let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .iter()
            .map(|(n, s)| ((*n).to_owned(), s.clone(), vec![0u8; 4 * s.iter().product::<usize>()]))
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
            .iter()
            .map(|(n, s, b)| (n.clone(), safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, None, &dir.join(MODEL_SAFETENSORS)).unwrap();
    }

    const CONFIG: &str = r#"{"architecture": "lstm_autoencoder", "n_features": 2, "hidden_size": 3, "num_layers": 1}"#;

    fn tensors() -> Vec<(&'static str, Vec<usize>)> {
        vec![
            ("encoder.weight_ih_l0", vec![12, 2]),
            ("encoder.weight_hh_l0", vec![12, 3]),
            ("encoder.bias_ih_l0", vec![12]),
            ("encoder.bias_hh_l0", vec![12]),
            ("decoder.weight_ih_l0", vec![12, 3]),
            ("decoder.weight_hh_l0", vec![12, 3]),
            ("decoder.bias_ih_l0", vec![12]),
            ("decoder.bias_hh_l0", vec![12]),
            ("output_layer.weight", vec![2, 3]),
            ("output_layer.bias", vec![2]),
        ]
    }

    #[test]
    fn loads_and_names_the_faulty_tensor() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), CONFIG, &tensors());
        assert!(load_pytorch(dir.path(), DeviceChoice::Cpu).is_ok());

        let mut t = tensors();
        t[1].1 = vec![12, 4];
        write(dir.path(), CONFIG, &t);
        let err = load_pytorch(dir.path(), DeviceChoice::Cpu).unwrap_err();
        assert!(matches!(&err, Error::BadTensor { name, .. } if name == "encoder.weight_hh_l0"), "{err}");
        assert!(err.to_string().contains("[12, 3]") && err.to_string().contains("[12, 4]"), "{err}");

        let mut t = tensors();
        t.remove(9);
        write(dir.path(), CONFIG, &t);
        let err = load_pytorch(dir.path(), DeviceChoice::Cpu).unwrap_err();
        assert!(matches!(&err, Error::MissingTensor { name, .. } if name == "output_layer.bias"), "{err}");

        let mut t = tensors();
        t.push(("encoder.weight_ih_l1", vec![12, 3]));
        write(dir.path(), CONFIG, &t);
        let err = load_pytorch(dir.path(), DeviceChoice::Cpu).unwrap_err();
        assert!(err.to_string().contains("encoder.weight_ih_l1"), "{err}");
    }

    #[test]
    fn config_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), r#"{"architecture": "transformer"}"#, &tensors());
        assert!(matches!(load_pytorch(dir.path(), DeviceChoice::Cpu), Err(Error::UnsupportedFormat { .. })));
        write(dir.path(), r#"{"architecture": "lstm_autoencoder", "n_features": 2}"#, &tensors());
        assert!(matches!(load_pytorch(dir.path(), DeviceChoice::Cpu), Err(Error::Json { .. })));
        let zero = CONFIG.replace("\"num_layers\": 1", "\"num_layers\": 0");
        write(dir.path(), &zero, &tensors());
        let err = load_pytorch(dir.path(), DeviceChoice::Cpu).unwrap_err();
        assert!(err.to_string().contains("config.json") && err.to_string().contains("num_layers is 0"), "{err}");
    }
}
