//! Parity with the libraries that wrote the files: every case of `tests/fixtures/boosting/` (multi-output
//! scikit-learn models, XGBoost and LightGBM, pickled and native) loads through Ferroserve as a model
//! folder would hold it, and answers as the library did, for the rows of the case and its NaN rows.
//!
//! Each file is copied into a fresh folder under the name a model folder gives it (`model.pkl`,
//! `model.json`, `model.ubj`, `model.bst`, `model.txt`) and read with `layout::find_artifact` +
//! `load_model`, exactly as the server does. `FERROSERVE_BOOSTING_FIXTURES` points at a regenerated set
//! (`tests/fixtures/boosting/check.sh`); by default the committed one is read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use ferroserve_formats::{Model, Tensor, TensorData, layout, load_model};
use serde_json::Value;

mod common;
use common::{compare, float, rows};

/// Float outputs: scikit-learn paths compute in float64 (1e-9); XGBoost and LightGBM sum in float32 or
/// float64 as the library does, so they agree to its last bits. XGBoost's outputs are float32 values, for
/// which 1e-9 relative is less than one ulp: they must be identical (they are, with glibc's `expf`/`logf`,
/// which `f32::exp`/`f32::ln` call on Linux).
const REL: f64 = 1e-9;
const ABS: f64 = 1e-12;
/// LightGBM sums and converts in float64 exactly as Ferroserve does: only libm's `exp` may differ.
const LIGHTGBM: (f64, f64) = (0.0, 1e-15);

/// Whether this build serves a case (by its class's library): every case of the fixtures.
fn served(case: &Value) -> bool {
    let class = case["class"].as_str().unwrap();
    class.starts_with("sklearn.") || class.starts_with("xgboost.") || class.starts_with("lightgbm.")
}

fn fixture_root() -> PathBuf {
    match std::env::var_os("FERROSERVE_BOOSTING_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/boosting/latest"),
    }
}

fn request(x: &[Vec<f64>]) -> Vec<Tensor> {
    let f = x.first().map_or(0, Vec::len);
    vec![Tensor::new("input-0", vec![x.len(), f], TensorData::Fp64(x.iter().flatten().copied().collect())).unwrap()]
}

/// Whether `file` is a booster's native file, which has no `classes_`: its `predict` is the class index.
/// A LightGBM text model: a native booster, which answers class indices where the wrapper answers labels.
fn lightgbm_text(file: &str) -> bool {
    file.ends_with(".model.txt")
}

/// `outputs` as a native booster gives them: class labels replaced by their index in `classes`.
fn as_native(outputs: &Value, classes: &Value) -> Value {
    let mut out = outputs.clone();
    if let (Some(classes), Some(Value::Array(labels))) = (classes.as_array(), outputs.get("predict")) {
        let index: Vec<Value> =
            labels.iter().map(|l| Value::from(classes.iter().position(|c| c == l).expect("a known label"))).collect();
        out["predict"] = Value::Array(index);
    }
    out
}

/// The name a model folder gives `file`.
fn folder_name(file: &str) -> &'static str {
    if file.ends_with(".model.json") {
        "model.json"
    } else if file.ends_with(".model.ubj") {
        "model.ubj"
    } else if file.ends_with(".bst") {
        "model.bst"
    } else if file.ends_with(".model.txt") {
        "model.txt"
    } else if file.ends_with(".joblib") {
        "model.joblib"
    } else {
        "model.pkl"
    }
}

/// What a native booster file answers: `xgboost.Booster(model_file=…).predict(DMatrix(X))` (the case's
/// `native`, every tree) under the served names — a classifier's probabilities become `predict_proba`
/// (`[1 − p, p]` in float32 for a binary one) and its `predict` the first most probable class.
fn native_outputs(case: &Value) -> Value {
    let native = &case["native"]["predict"];
    if case["outputs"].get("predict_proba").is_none() {
        return serde_json::json!({ "predict": native });
    }
    let rows = native.as_array().unwrap();
    let proba: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| match r {
            Value::Array(p) => p.iter().map(float).collect(),
            #[allow(clippy::cast_possible_truncation)]
            p => vec![f64::from(1.0f32 - float(p) as f32), float(p)],
        })
        .collect();
    let predict: Vec<i64> = match rows.first() {
        Some(Value::Array(_)) => proba
            .iter()
            .map(|p| p.iter().enumerate().fold(0, |best, (i, &v)| if v > p[best] { i } else { best }) as i64)
            .collect(),
        _ => proba.iter().map(|p| i64::from(p[1] > 0.5)).collect(),
    };
    serde_json::json!({ "predict": predict, "predict_proba": proba })
}

/// Loads `file` as the server would find it in a model folder.
fn load(root: &Path, file: &str) -> std::sync::Arc<dyn Model> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(root.join(file), dir.path().join(folder_name(file))).unwrap();
    let files = layout::find_artifact(dir.path()).unwrap().unwrap_or_else(|| panic!("{file}: no artifact found"));
    load_model(&files).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn cases(root: &Path) -> Vec<Value> {
    let mut jsons: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".json") && !name.ends_with(".model.json")
        })
        .collect();
    jsons.sort();
    jsons.iter().map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()).collect()
}

#[test]
fn every_served_case_answers_as_its_library() {
    let root = fixture_root();
    let all = cases(&root);
    assert!(all.len() >= 20, "{} cases under {}", all.len(), root.display());
    let served: Vec<&Value> = all.iter().filter(|c| served(c)).collect();
    let mut files = 0;
    for case in &served {
        let x = rows(&case["X"]);
        // A multi-output classifier whose targets have different class counts answers `predict_proba_<k>`.
        let mut want = case["outputs"].clone();
        let ragged = case["class"].as_str().unwrap().ends_with("MultiOutputClassifier")
            && case["classes"]
                .as_array()
                .is_some_and(|c| c.windows(2).any(|w| w[0].as_array().map(Vec::len) != w[1].as_array().map(Vec::len)));
        if ragged && let Some(p) = want.as_object_mut().unwrap().remove("predict_proba") {
            for (k, target) in p.as_array().unwrap().iter().enumerate() {
                want[format!("predict_proba_{k}")] = target.clone();
            }
        }
        let case = &{
            let mut c = (*case).clone();
            c["outputs"] = want;
            c
        };
        let outputs: Vec<String> = case["outputs"].as_object().unwrap().keys().cloned().collect();
        let tol = if case["class"].as_str().unwrap().starts_with("lightgbm.") { LIGHTGBM } else { (REL, ABS) };
        let native_files = case["native"]["files"].as_array().cloned().unwrap_or_default();
        for file in case["files"].as_array().unwrap() {
            // A native XGBoost file answers as `xgboost.Booster.predict` (every tree); a wrapper as itself (a
            // LightGBM text model: below).
            let native = native_files.contains(file) && !lightgbm_text(file.as_str().unwrap_or_default());
            let case = &{
                let mut c = case.clone();
                if native {
                    c["outputs"] = native_outputs(case);
                    if !case["best_iteration"].is_null() {
                        // The NaN rows' outputs are the wrapper's (best_iteration's trees only).
                        c["nan"] = Value::Null;
                    }
                }
                c
            };
            let file = file.as_str().unwrap();
            let model = load(&root, file);
            files += 1;
            let declared: Vec<&str> = model.signature().outputs.iter().map(|o| o.name.as_str()).collect();
            for name in &outputs {
                assert!(declared.contains(&name.as_str()), "{file}: no output {name} in {declared:?}");
            }
            let expected = |o: &Value| if lightgbm_text(file) { as_native(o, &case["classes"]) } else { o.clone() };
            let want = expected(&case["outputs"]);
            let got = model.infer(&request(&x), &outputs).unwrap_or_else(|e| panic!("{file}: {e}"));
            for (t, name) in got.iter().zip(&outputs) {
                compare(&format!("{file} {name}"), t, &want[name], tol);
            }
            let nan = &case["nan"];
            if let Some(want) = nan.get("outputs").map(expected) {
                let got = model.infer(&request(&rows(&nan["X"])), &outputs).unwrap_or_else(|e| panic!("{file}: {e}"));
                for (t, name) in got.iter().zip(&outputs) {
                    compare(&format!("{file} NaN {name}"), t, &want[name], tol);
                }
            }
        }
    }
    eprintln!("boosting parity: {} of {} cases served, {files} files", served.len(), all.len());
    assert!(files >= served.len(), "every served case has files");
}
