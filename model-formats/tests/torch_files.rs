//! PyTorch `torch.save` files read as data: parity with PyTorch's numbers (within 1e-5) through
//! `find_artifact` + `load_model` on copies of `tests/fixtures/torch/`, the fixtures' checksums, and
//! hostile variants that must fail to load with a clear error, never a panic.

// clippy's allow-unwrap-in-tests covers `#[test]` functions only, not the helpers they share.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};

use ferroserve_formats::layout::{ArtifactFiles, find_artifact};
use ferroserve_formats::{Error, Tensor, TensorData, load_model};
use serde::Deserialize;

mod common;
use sha2::{Digest, Sha256};

const TOLERANCE: f64 = 1e-5;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch")
}

#[derive(Deserialize)]
struct Golden {
    input_shape: Vec<usize>,
    input: Vec<f32>,
    reconstruction: Vec<f32>,
    reconstruction_error: Vec<f64>,
    is_anomaly: Vec<bool>,
    threshold: f64,
}

/// Copies a fixture's `v1/` into a fresh folder (so the test sees only what it copies).
fn copy_version(case: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("v1");
    std::fs::create_dir(&dst).unwrap();
    for entry in std::fs::read_dir(fixtures().join(case).join("v1")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
    (tmp, dst)
}

fn assert_close(what: &str, got: impl IntoIterator<Item = f64>, want: impl IntoIterator<Item = f64>) {
    common::assert_close(what, got, want, TOLERANCE);
}

fn check(case: &str) {
    let golden: Golden =
        serde_json::from_slice(&std::fs::read(fixtures().join(case).join("golden.json")).unwrap()).unwrap();
    let (_tmp, dir) = copy_version(case);
    let files = find_artifact(&dir).unwrap().unwrap();
    assert!(matches!(&files, ArtifactFiles::Torch { file } if file.ends_with("model.pt")), "{case}: {files:?}");
    let model = load_model(&files).unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_eq!(model.kind().to_string(), "lstm_autoencoder");
    let x = Tensor::new("input-0", golden.input_shape.clone(), TensorData::Fp32(golden.input.clone())).unwrap();
    let outputs = ["reconstruction", "reconstruction_error", "is_anomaly"].map(str::to_owned);
    let out = model.infer(&[x], &outputs).unwrap_or_else(|e| panic!("{case}: {e}"));
    let TensorData::Fp32(recon) = &out[0].data else { panic!("reconstruction is {}", out[0].datatype()) };
    assert_close(
        &format!("{case} reconstruction"),
        recon.iter().map(|&v| f64::from(v)),
        golden.reconstruction.iter().map(|&v| f64::from(v)),
    );
    let TensorData::Fp64(errors) = &out[1].data else { panic!() };
    assert_close(&format!("{case} reconstruction_error"), errors.iter().copied(), golden.reconstruction_error);
    let TensorData::Bool(flags) = &out[2].data else { panic!() };
    assert_eq!(flags, &golden.is_anomaly, "{case}: is_anomaly (threshold {})", golden.threshold);
    assert!(flags.iter().any(|&a| a) && flags.iter().any(|&a| !a));
}

#[test]
fn documented_form_zip_matches_pytorch() {
    check("documented");
}

#[test]
fn notebook_form_zip_matches_pytorch() {
    check("notebook");
}

#[test]
fn notebook_form_with_minmax_scaler_matches_pytorch() {
    check("notebook_minmax");
}

#[test]
fn legacy_format_matches_pytorch() {
    check("legacy");
}

#[test]
fn fixture_checksums_hold() {
    let root = fixtures();
    let sums = std::fs::read_to_string(root.join("CHECKSUMS")).unwrap();
    let mut n = 0;
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (hash, name) = line.split_once("  ").unwrap();
        let bytes = std::fs::read(root.join(name.trim())).unwrap();
        let got: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, hash, "{name}");
        n += 1;
    }
    assert_eq!(n, 23, "CHECKSUMS lists the 23 generated files");
}

/// Loads `bytes` as `v1/model.pt` (with the documented case's other files) and returns the error.
fn load_err(bytes: &[u8]) -> String {
    let (_tmp, dir) = copy_version("documented");
    std::fs::write(dir.join("model.pt"), bytes).unwrap();
    let files = find_artifact(&dir).unwrap().unwrap();
    match load_model(&files) {
        Ok(_) => panic!("a hostile file loaded"),
        Err(e) => {
            assert!(e.to_string().contains("model.pt"), "the error names the file: {e}");
            e.to_string()
        }
    }
}

fn documented_pt() -> Vec<u8> {
    std::fs::read(fixtures().join("documented/v1/model.pt")).unwrap()
}

/// Rewrites the documented zip with `edit` applied to its members (name, bytes), stored.
fn rezip(edit: impl Fn(&str, Vec<u8>) -> Vec<(String, Vec<u8>)>) -> Vec<u8> {
    let src = documented_pt();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&src)).unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let name = f.name().unwrap().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut data).unwrap();
        for (n, d) in edit(&name, data) {
            out.start_file(n, opts).unwrap();
            out.write_all(&d).unwrap();
        }
    }
    out.finish().unwrap().into_inner()
}

#[test]
fn a_rezipped_file_still_loads() {
    // The rewriting helper itself yields a loadable file, so the hostile variants test what they change.
    let (_tmp, dir) = copy_version("documented");
    std::fs::write(dir.join("model.pt"), rezip(|n, d| vec![(n.to_owned(), d)])).unwrap();
    load_model(&find_artifact(&dir).unwrap().unwrap()).unwrap();
}

#[test]
fn hostile_torch_files_fail_cleanly() {
    // A storage member shorter than its declared numel.
    let e = load_err(&rezip(|n, mut d| {
        if n == "model/data/0" {
            d.truncate(d.len() - 4);
        }
        vec![(n.to_owned(), d)]
    }));
    assert!(e.contains("storage `0`") && e.contains("holds 508 bytes"), "{e}");
    // A storage member longer than its declared numel (numel smaller than the member).
    let e = load_err(&rezip(|n, mut d| {
        if n == "model/data/3" {
            d.extend_from_slice(&[0; 8]);
        }
        vec![(n.to_owned(), d)]
    }));
    assert!(e.contains("storage `3`"), "{e}");
    // A persistent ID naming a key that is not in the zip.
    let e = load_err(&rezip(|n, d| if n == "model/data/5" { vec![] } else { vec![(n.to_owned(), d)] }));
    assert!(e.contains("storage `5` is not in the zip"), "{e}");
    // Big-endian data.
    let e = load_err(&rezip(|n, d| {
        if n == "model/byteorder" { vec![(n.to_owned(), b"big".to_vec())] } else { vec![(n.to_owned(), d)] }
    }));
    assert!(e.contains("big-endian"), "{e}");
    // Two data.pkl records.
    let e = load_err(&rezip(|n, d| {
        if n == "model/data.pkl" {
            vec![(n.to_owned(), d.clone()), ("other/data.pkl".to_owned(), d)]
        } else {
            vec![(n.to_owned(), d)]
        }
    }));
    assert!(e.contains("2 data.pkl"), "{e}");
    // A view past the end of its storage: the first tensor's offset (BININT1 0 after the persistent ID) → 200.
    let e = load_err(&rezip(|n, mut d| {
        if n == "model/data.pkl" {
            let at = d.windows(3).position(|w| w == b"QK\x00").unwrap();
            d[at + 2] = 200;
        }
        vec![(n.to_owned(), d)]
    }));
    assert!(e.contains("encoder.weight_ih_l0") && e.contains("reaches element"), "{e}");
    // Truncated and garbage files.
    let pt = documented_pt();
    for cut in [10, 100, pt.len() / 2, pt.len() - 10] {
        load_err(&pt[..cut]);
    }
    let e = load_err(b"not a torch file at all");
    assert!(e.contains("not a torch.save file"), "{e}");
}

#[test]
fn hostile_legacy_files_fail_cleanly() {
    let legacy = std::fs::read(fixtures().join("legacy/v1/model.pt")).unwrap();
    // The first storage's int64 numel prefix is at byte 2402 (see the fixtures' notes): make it bogus.
    for bogus in [255i64, -1, i64::MAX, 1 << 40] {
        let mut b = legacy.clone();
        b[2402..2410].copy_from_slice(&bogus.to_le_bytes());
        let e = load_err(&b);
        assert!(e.contains("legacy storage"), "{e}");
    }
    // Cut short, and with trailing bytes.
    let e = load_err(&legacy[..legacy.len() - 1]);
    assert!(e.contains("past the end"), "{e}");
    let mut b = legacy.clone();
    b.push(0);
    assert!(load_err(&b).contains("follow the last legacy storage"));
    for cut in [20, 200, 2100, 2405] {
        load_err(&legacy[..cut]);
    }
}

#[test]
fn a_whole_module_is_refused_with_state_dict_advice() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(fixtures().join("whole_module/model.pt"), tmp.path().join("model.pt")).unwrap();
    let files = find_artifact(tmp.path()).unwrap().unwrap();
    let e = load_model(&files).err().unwrap();
    assert!(matches!(e, Error::Pickle { .. }), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("whole nn.Module") && e.contains("torch.save(model.state_dict()"), "{e}");
}

#[test]
fn torch_folders_must_hold_one_model() {
    let (_tmp, dir) = copy_version("documented");
    std::fs::copy(dir.join("model.pt"), dir.join("model.pth")).unwrap();
    assert!(matches!(find_artifact(&dir), Err(Error::Ambiguous { .. })));
    std::fs::remove_file(dir.join("model.pth")).unwrap();
    std::fs::copy(dir.join("scaler.pkl"), dir.join("model.pkl")).unwrap();
    let e = find_artifact(&dir).unwrap_err();
    assert!(matches!(e, Error::Ambiguous { .. }) && e.to_string().contains("model.pkl"), "{e}");
    std::fs::remove_file(dir.join("model.pkl")).unwrap();
    assert!(matches!(find_artifact(&dir).unwrap(), Some(ArtifactFiles::Torch { .. })));
    // The pth spelling.
    std::fs::rename(dir.join("model.pt"), dir.join("model.pth")).unwrap();
    assert!(load_model(&find_artifact(&dir).unwrap().unwrap()).is_ok());
}

#[derive(Deserialize)]
struct PipelineGolden {
    #[serde(rename = "X_shape")]
    x_shape: Vec<usize>,
    #[serde(rename = "X")]
    x: Vec<f64>,
    predict: Vec<i64>,
    reconstruction_error_f64: Vec<f64>,
}

#[test]
fn the_notebooks_lstm_pipeline_matches_pytorch() {
    let src = fixtures().join("lstm_pipeline");
    let golden: PipelineGolden = serde_json::from_slice(&std::fs::read(src.join("golden.json")).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("model.pkl"), tmp.path().join("model.pkl")).unwrap();
    let files = find_artifact(tmp.path()).unwrap().unwrap();
    assert!(matches!(files, ArtifactFiles::Pickle { .. }), "{files:?}");
    let model = load_model(&files).unwrap_or_else(|e| panic!("{e}"));
    let label = model.label().unwrap();
    assert_eq!(label.output, "predict");
    assert_eq!(label.positive, Some(ferroserve_formats::Label::Int(-1)));
    for data in [TensorData::Fp64(golden.x.clone()), TensorData::Fp32(golden.x.iter().map(|&v| v as f32).collect())] {
        let x = Tensor::new("input-0", golden.x_shape.clone(), data).unwrap();
        let out = model.infer(std::slice::from_ref(&x), &[]).unwrap();
        assert_eq!(out[0].name, "predict");
        assert_eq!(out[0].data, TensorData::Int64(golden.predict.clone()));
        let out = model.infer(&[x], &["reconstruction_error".to_owned()]).unwrap();
        let TensorData::Fp64(errors) = &out[0].data else { panic!() };
        assert_close("pipeline reconstruction_error", errors.iter().copied(), golden.reconstruction_error_f64.clone());
    }
    // A window shape is refused: the pipeline takes rows.
    let x = Tensor::new("input-0", vec![1, 2, 4], TensorData::Fp32(vec![0.0; 8])).unwrap();
    assert!(model.infer(&[x], &[]).is_err());
}

#[test]
fn an_unrecognised_object_names_its_class() {
    // pickle.dumps(Other(), 4) for a `class Other` in __main__ with {'a': 1}: not a known shape.
    let bytes = b"\x80\x04\x8c\x08__main__\x94\x8c\x05Other\x94\x93\x94)\x81\x94}\x94\x8c\x01a\x94K\x01sb.";
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("model.pkl"), bytes).unwrap();
    let e = load_model(&find_artifact(tmp.path()).unwrap().unwrap()).err().unwrap();
    assert!(e.to_string().contains("__main__.Other"), "{e}");
}

#[test]
fn a_single_torch_file_whatever_its_name_is_read_as_torch() {
    // KServe mounts a storageUri naming a file under the mount's name: the content decides.
    for case in ["documented", "legacy"] {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("mounted-model");
        std::fs::copy(fixtures().join(case).join("v1/model.pt"), &file).unwrap();
        // A stray scaler.pkl beside the mount is not read.
        std::fs::write(tmp.path().join("scaler.pkl"), b"garbage").unwrap();
        let model = load_model(&ArtifactFiles::Pickle { file }).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(model.kind().to_string(), "lstm_autoencoder");
        // Without a threshold: no is_anomaly output.
        assert!(model.signature().outputs.iter().all(|o| o.name != "is_anomaly"));
    }
}

#[test]
fn a_damaged_lstm_pipeline_fails_cleanly() {
    let src = std::fs::read(fixtures().join("lstm_pipeline/model.pkl")).unwrap();
    let magic = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e";
    let at = src.windows(magic.len()).position(|w| w == magic).unwrap();
    let load = |bytes: &[u8]| {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("model.pkl"), bytes).unwrap();
        load_model(&find_artifact(tmp.path()).unwrap().unwrap()).err().map(|e| e.to_string())
    };
    // The nested storage's magic number, and its int64 element count (the 8 bytes before its 128 data bytes).
    let mut b = src.clone();
    b[at + 5] ^= 0xff;
    let e = load(&b).unwrap();
    assert!(e.contains("encoder.weight_ih_l0") && e.contains("storage bytes"), "{e}");
    let blob_len = u32::from_le_bytes(src[at - 4..at].try_into().unwrap()) as usize;
    let numel_at = at + blob_len - 128 * 4 - 8;
    let mut b = src.clone();
    b[numel_at..numel_at + 8].copy_from_slice(&(1i64 << 40).to_le_bytes());
    let e = load(&b).unwrap();
    assert!(e.contains("legacy storage"), "{e}");
    for cut in [50, 500, at + 40, src.len() - 20] {
        assert!(load(&src[..cut]).is_some());
    }
}

/// Single-byte corruptions of the zip and legacy fixtures, and truncations, read to a state_dict
/// or an error: never a panic.
#[test]
fn every_byte_flip_and_cut_reads_or_fails_cleanly() {
    let limits = ferroserve_formats::pickle::Limits::default();
    for case in ["documented", "legacy"] {
        let src = std::fs::read(fixtures().join(case).join("v1/model.pt")).unwrap();
        let path = Path::new("model.pt");
        let (mut tried, mut failures) = (0, 0);
        // Every third byte flipped and every fifth cut (all of them take ~30 s unoptimised).
        for i in (0..src.len()).step_by(3) {
            let mut b = src.clone();
            b[i] ^= 0xff;
            failures += usize::from(ferroserve_formats::torch::read_state_dict(&b, path, &limits).is_err());
            tried += 1;
        }
        for i in (0..src.len()).step_by(5) {
            assert!(
                ferroserve_formats::torch::read_state_dict(&src[..i], path, &limits).is_err(),
                "{case}: cut at {i}"
            );
        }
        eprintln!("{case}: {failures} of {tried} byte flips refused");
    }
}
