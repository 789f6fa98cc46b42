//! scikit-learn parity: real estimators pickled by real scikit-learn, loaded through Ferroserve's
//! unpickler, must give scikit-learn's outputs.
//!
//! Fixtures: `tests/fixtures/sklearn/<set>/<case>.{joblib,zlib.joblib,gzip.joblib,p4.pkl,p5.pkl}` and
//! `<case>.json` (inputs, every method's output, fitted metadata, what scikit-learn does with NaN),
//! written by `tests/fixtures/sklearn/generate.py` (see its README). `FERROSERVE_SKLEARN_FIXTURES`
//! points the test at another folder of sets (CI regenerates them into a temporary folder).
//!
//! Checked for every file: the kind, the signature (inputs from `n_features_in_` /
//! `feature_names_in_`, outputs = scikit-learn's methods, label datatype, probability width), labels
//! identical, floats within 1e-9 relative (1e-12 absolute near zero), and NaN taken or refused as
//! scikit-learn does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use ferroserve_formats::layout::ArtifactFiles;
use ferroserve_formats::{DataType, Model, Tensor, TensorData, load_model};
use serde_json::Value;

mod common;
use common::{compare, rows};

const REL: f64 = 1e-9;
const ABS: f64 = 1e-12;

fn fixture_root() -> PathBuf {
    match std::env::var_os("FERROSERVE_SKLEARN_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/sklearn"),
    }
}

/// Every folder under the root holding `*.json` cases (the root itself included).
fn sets(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let mut has_case = false;
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "json") {
                has_case = true;
            }
        }
        if has_case {
            out.push(d);
        }
    }
    out.sort();
    out
}

/// The request: one [N, F] matrix, or (fitted on named columns) one column per feature, given in
/// reverse order so that placement by name is exercised.
fn request(case: &Value, x: &[Vec<f64>]) -> Vec<Tensor> {
    let n = x.len();
    match case["feature_names_in"].as_array() {
        Some(names) => names
            .iter()
            .enumerate()
            .rev()
            .map(|(j, name)| {
                Tensor::new(name.as_str().unwrap(), vec![n], TensorData::Fp64(x.iter().map(|r| r[j]).collect()))
                    .unwrap()
            })
            .collect(),
        None => {
            let f = x.first().map_or(0, Vec::len);
            vec![Tensor::new("input-0", vec![n, f], TensorData::Fp64(x.iter().flatten().copied().collect())).unwrap()]
        }
    }
}

fn check_signature(what: &str, model: &dyn Model, case: &Value) {
    let sig = model.signature();
    let n = case["n_features_in"].as_u64().unwrap() as i64;
    match case["feature_names_in"].as_array() {
        Some(names) => {
            let got: Vec<&str> = sig.inputs.iter().map(|i| i.name.as_str()).collect();
            let want: Vec<&str> = names.iter().map(|v| v.as_str().unwrap()).collect();
            assert_eq!(got, want, "{what}: inputs by feature name");
            assert!(sig.inputs.iter().all(|i| i.shape == vec![-1]), "{what}: column shapes");
        }
        None => {
            assert_eq!(sig.inputs.len(), 1, "{what}");
            assert_eq!(sig.inputs[0].shape, vec![-1, n], "{what}: input shape");
        }
    }
    let mut got: Vec<&str> = sig.outputs.iter().map(|o| o.name.as_str()).collect();
    let mut want: Vec<&str> = case["outputs"].as_object().unwrap().keys().map(String::as_str).collect();
    let default = got[0];
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "{what}: outputs are scikit-learn's methods");
    assert!(default == "predict" || (default == "transform" && !want.contains(&"predict")), "{what}: default output");
    if let Some(classes) = case["classes"].as_array() {
        let predict = sig.outputs.iter().find(|o| o.name == "predict").unwrap();
        let want = match &classes[0] {
            Value::String(_) => DataType::Bytes,
            Value::Bool(_) => DataType::Bool,
            Value::Number(n) if n.is_i64() => DataType::Int64,
            _ => DataType::Fp64,
        };
        assert_eq!(predict.datatype, want, "{what}: label datatype");
        if let Some(p) = sig.outputs.iter().find(|o| o.name == "predict_proba") {
            assert_eq!(p.shape, vec![-1, classes.len() as i64], "{what}: predict_proba shape");
        }
    }
}

#[test]
fn every_fixture_matches_scikit_learn() {
    let root = fixture_root();
    let sets = sets(&root);
    assert!(!sets.is_empty(), "no fixtures under {}", root.display());
    let (mut files, mut cases, mut expected_files, mut worst) = (0usize, 0usize, 0usize, 0.0f64);
    for set in &sets {
        let mut jsons: Vec<PathBuf> = std::fs::read_dir(set)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        jsons.sort();
        for json in jsons {
            let case: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
            let x = rows(&case["X"]);
            let class = case["class"].as_str().unwrap();
            let short = class.rsplit('.').next().unwrap();
            let outputs: Vec<String> = case["outputs"].as_object().unwrap().keys().cloned().collect();
            cases += 1;
            // `platform_anomaly_detector` is saved once, as the platform's notebook saves it; every other case five ways.
            expected_files += if case["case"] == "platform_anomaly_detector" { 1 } else { 5 };
            for file in case["files"].as_array().unwrap() {
                let path = set.join(file.as_str().unwrap());
                let what = format!("{} ({})", path.display(), case["sklearn_version"]);
                let model =
                    load_model(&ArtifactFiles::Pickle { file: path.clone() }).unwrap_or_else(|e| panic!("{what}: {e}"));
                files += 1;
                assert_eq!(model.kind().to_string(), format!("sklearn.{short}"), "{what}: kind");
                check_signature(&what, &*model, &case);

                let got = model.infer(&request(&case, &x), &outputs).unwrap_or_else(|e| panic!("{what}: {e}"));
                for (t, name) in got.iter().zip(&outputs) {
                    assert_eq!(&t.name, name);
                    worst = worst.max(compare(&format!("{what} {name}"), t, &case["outputs"][name], (REL, ABS)));
                }
                // The default output is `predict` (or `transform`).
                let default = model.infer(&request(&case, &x), &[]).unwrap();
                assert_eq!(default.len(), 1);

                let nan = &case["nan"];
                let x_nan = rows(&nan["X"]);
                match model.infer(&request(&case, &x_nan), &outputs) {
                    Ok(got) => {
                        assert!(nan.get("outputs").is_some(), "{what}: NaN accepted but scikit-learn refuses it");
                        for (t, name) in got.iter().zip(&outputs) {
                            compare(&format!("{what} NaN {name}"), t, &nan["outputs"][name], (REL, ABS));
                        }
                    }
                    Err(e) => {
                        assert!(nan.get("error").is_some(), "{what}: NaN refused ({e}) but scikit-learn takes it");
                        assert!(e.is_client_error(), "{what}: {e}");
                        assert!(e.to_string().contains("NaN"), "{what}: {e}");
                    }
                }
            }
        }
    }
    eprintln!(
        "scikit-learn parity: {cases} cases, {files} files in {} sets; largest relative difference {worst:e}",
        sets.len()
    );
    assert!(files >= expected_files && cases >= 20, "too few fixtures: {cases} cases, {files} files");
}

#[test]
fn unsupported_estimators_are_named() {
    // A plain dict is not an estimator at all (an SVC is refused by name: see the unit tests of
    // `ferroserve_formats::sklearn`).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.pkl");
    // pickle.dumps({"n": 3}, protocol=4)
    std::fs::write(&file, b"\x80\x04\x95\n\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01n\x94K\x03s.").unwrap();
    let err = load_model(&ArtifactFiles::Pickle { file }).unwrap_err();
    assert!(err.to_string().contains("not a scikit-learn estimator"), "{err}");
}
