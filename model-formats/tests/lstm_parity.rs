//! Parity with PyTorch: the LSTM autoencoder's weights, saved by `safetensors.torch.save_file`, served
//! with PyTorch's numbers (within 1e-5).
//!
//! The fixtures in `tests/fixtures/lstm/` are written by `make_lstm_golden.py` beside them (pinned torch,
//! safetensors and numpy in `requirements.txt`; the command is in that folder's README). CI does not
//! run torch, so the small outputs are committed.

// clippy's allow-unwrap-in-tests covers `#[test]` functions only, not the helpers they share.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use ferroserve_formats::layout::{self, ArtifactFiles, ModelLayout};
use ferroserve_formats::lstm::{DeviceChoice, load_pytorch};
use ferroserve_formats::{DataType, Tensor, TensorData, load_model};
use serde::Deserialize;

mod common;

const TOLERANCE: f64 = 1e-5;

#[derive(Deserialize)]
struct Golden {
    input_shape: Vec<usize>,
    input: Vec<f32>,
    reconstruction: Vec<f32>,
    reconstruction_error: Vec<f64>,
    is_anomaly: Option<Vec<bool>>,
}

fn fixture(name: &str) -> (PathBuf, Golden) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lstm").join(name);
    let golden = serde_json::from_slice(&std::fs::read(dir.join("golden.json")).unwrap()).unwrap();
    (dir, golden)
}

fn assert_close(what: &str, got: impl IntoIterator<Item = f64>, want: impl IntoIterator<Item = f64>) {
    common::assert_close(what, got, want, TOLERANCE);
}

/// Which implementation computes: the CPU kernel (what serves on the CPU) or candle (CUDA, training).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Path2 {
    Kernel,
    Candle,
}

fn load(dir: &Path, path: Path2) -> std::sync::Arc<dyn ferroserve_formats::Model> {
    match path {
        Path2::Kernel => {
            let model = load_pytorch(dir, DeviceChoice::Cpu).unwrap();
            assert!(model.uses_cpu_kernel());
            std::sync::Arc::new(model)
        }
        Path2::Candle => std::sync::Arc::new(load_pytorch(dir, DeviceChoice::Cpu).unwrap().without_cpu_kernel()),
    }
}

fn check(name: &str, datatype: DataType) {
    let (dir, golden) = fixture(name);
    let ModelLayout::Bare(files) = layout::inspect(&dir).unwrap() else { panic!("{name} is not a bare model") };
    assert!(matches!(files, ArtifactFiles::PyTorch { .. }), "{name}: detected as {files:?}");
    assert_eq!(load_model(&files).unwrap().kind().to_string(), "lstm_autoencoder");
    for path in [Path2::Kernel, Path2::Candle] {
        check_path(name, datatype, &dir, &golden, path);
    }
}

fn check_path(name: &str, datatype: DataType, dir: &Path, golden: &Golden, path: Path2) {
    let name = &format!("{name} ({path:?})");
    let model = load(dir, path);
    assert_eq!(model.kind().to_string(), "lstm_autoencoder");
    let data = match datatype {
        DataType::Fp64 => TensorData::Fp64(golden.input.iter().map(|&v| f64::from(v)).collect()),
        _ => TensorData::Fp32(golden.input.clone()),
    };
    let x = Tensor::new("input-0", golden.input_shape.clone(), data).unwrap();
    let mut outputs = vec!["reconstruction".to_owned(), "reconstruction_error".to_owned()];
    if golden.is_anomaly.is_some() {
        outputs.push("is_anomaly".to_owned());
    }
    let out = model.infer(&[x], &outputs).unwrap();
    assert_eq!(out[0].shape, golden.input_shape);
    let TensorData::Fp32(recon) = &out[0].data else { panic!("reconstruction is {}", out[0].datatype()) };
    // Reconstructions are in the input's units (tens, for the scaled fixture): compare relative to them.
    assert_close(
        &format!("{name} reconstruction"),
        recon.iter().map(|&v| f64::from(v)),
        golden.reconstruction.iter().map(|&v| f64::from(v)),
    );
    let TensorData::Fp64(errors) = &out[1].data else { panic!("reconstruction_error is {}", out[1].datatype()) };
    assert_close(
        &format!("{name} reconstruction_error"),
        errors.iter().copied(),
        golden.reconstruction_error.iter().copied(),
    );
    if let Some(want) = &golden.is_anomaly {
        let TensorData::Bool(flags) = &out[2].data else { panic!("is_anomaly is {}", out[2].datatype()) };
        assert_eq!(flags, want);
        assert!(want.iter().any(|&a| a) && want.iter().any(|&a| !a), "the fixture has both kinds of window");
    } else {
        assert!(model.signature().outputs.iter().all(|o| o.name != "is_anomaly"));
    }
}

#[test]
fn one_layer_without_scaler_matches_pytorch() {
    check("small", DataType::Fp32);
}

#[test]
fn two_layers_with_scaler_and_threshold_match_pytorch() {
    check("scaled", DataType::Fp32);
    check("scaled", DataType::Fp64);
}

/// A batch large enough to be split across threads gives every window PyTorch's numbers.
/// The notebook's form: the decoder (`LSTM(H→F)`) reads the encoder's whole output sequence, no Linear.
#[test]
fn the_sequence_decoder_form_matches_pytorch() {
    check("sequence", DataType::Fp32);
    check("sequence", DataType::Fp64);
    check("sequence_2_layers", DataType::Fp32);
}

#[test]
fn a_large_batch_split_across_threads_matches_pytorch() {
    let (dir, golden) = fixture("scaled");
    let copies = 9;
    let mut input = Vec::new();
    let mut want = Vec::new();
    for _ in 0..copies {
        input.extend_from_slice(&golden.input);
        want.extend_from_slice(&golden.reconstruction_error);
    }
    let mut shape = golden.input_shape.clone();
    shape[0] *= copies;
    assert!(shape[0] >= ferroserve_formats::lstm::cpu::PARALLEL_WINDOWS);
    let model = load(&dir, Path2::Kernel);
    let x = Tensor::new("input-0", shape, TensorData::Fp32(input)).unwrap();
    let out = model.infer(&[x], &["reconstruction_error".to_owned()]).unwrap();
    let TensorData::Fp64(errors) = &out[0].data else { panic!() };
    assert_close("45 windows, threaded", errors.iter().copied(), want);
}

#[test]
fn a_single_window_matches_its_row_of_the_batch() {
    let (dir, golden) = fixture("scaled");
    let model = load_model(&ArtifactFiles::PyTorch { dir }).unwrap();
    let (t, f) = (golden.input_shape[1], golden.input_shape[2]);
    let last = golden.input_shape[0] - 1;
    let window = golden.input[last * t * f..].to_vec();
    let x = Tensor::new("w", vec![t, f], TensorData::Fp32(window)).unwrap();
    let out = model.infer(&[x], &["reconstruction_error".to_owned(), "is_anomaly".to_owned()]).unwrap();
    let TensorData::Fp64(e) = &out[0].data else { panic!() };
    assert_close("single window", e.iter().copied(), [golden.reconstruction_error[last]]);
    assert_eq!(out[1].data, TensorData::Bool(vec![true]));
    // seq_len is set in this fixture: another window length is the client's mistake.
    let short = Tensor::new("w", vec![t - 1, f], TensorData::Fp32(vec![0.0; (t - 1) * f])).unwrap();
    assert!(model.infer(&[short], &[]).unwrap_err().is_client_error());
}
