//! XGBoost models as served: how files are recognised, the kind, label output and signature of native
//! files and of the scikit-learn wrappers, and their input rules (the parity of the numbers is
//! `boosting_parity.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferroserve_formats::layout::{self, ArtifactFiles, ModelLayout};
use ferroserve_formats::{DataType, Label, Model, ModelKind, Tensor, TensorData, TensorSpec, load_model};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/boosting/latest")
}

/// `file` copied into a folder as `name`, found and loaded as the server does.
fn load_as(file: &str, name: &str) -> (ArtifactFiles, Arc<dyn Model>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixtures().join(file), dir.path().join(name)).unwrap();
    let files = layout::find_artifact(dir.path()).unwrap().unwrap();
    let model = load_model(&files).unwrap();
    (files, model)
}

fn outputs(model: &dyn Model) -> Vec<(String, DataType, Vec<i64>)> {
    model.signature().outputs.iter().map(|o| (o.name.clone(), o.datatype, o.shape.clone())).collect()
}

fn spec(name: &str, datatype: DataType, shape: &[i64]) -> (String, DataType, Vec<i64>) {
    (name.to_owned(), datatype, shape.to_vec())
}

#[test]
fn native_files_are_found_by_name_and_content() {
    for (file, name) in [
        ("xgb_regressor.model.json", "model.json"),
        ("xgb_regressor.model.ubj", "model.ubj"),
        ("xgb_regressor.model.bst", "model.bst"),
    ] {
        let (files, model) = load_as(file, name);
        assert!(matches!(files, ArtifactFiles::XGBoost { .. }), "{name}: {files:?}");
        assert_eq!(model.kind(), ModelKind::XGBoost);
        assert_eq!(model.kind().to_string(), "xgboost");
        assert_eq!(model.label(), None);
        assert_eq!(outputs(model.as_ref()), [spec("predict", DataType::Fp64, &[-1])]);
        assert_eq!(model.signature().inputs, [TensorSpec::new("input-0", DataType::Fp32, vec![-1, 4])]);
    }

    // Ferroserve's own model.json is told apart by its content.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.json"), b"{\n  \"format\": \"ferroserve\"\n}").unwrap();
    assert!(matches!(layout::find_artifact(dir.path()).unwrap(), Some(ArtifactFiles::Native { .. })));
    // An XGBoost model.json beside an XGBoost model.ubj, or beside a pickle, is ambiguous.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixtures().join("xgb_regressor.model.json"), dir.path().join("model.json")).unwrap();
    std::fs::copy(fixtures().join("xgb_regressor.model.ubj"), dir.path().join("model.ubj")).unwrap();
    let err = layout::find_artifact(dir.path()).unwrap_err().to_string();
    assert!(err.contains("2 XGBoost model files (model.json, model.ubj)"), "{err}");
    std::fs::remove_file(dir.path().join("model.ubj")).unwrap();
    std::fs::copy(fixtures().join("xgb_regressor.pkl"), dir.path().join("model.pkl")).unwrap();
    let err = layout::find_artifact(dir.path()).unwrap_err().to_string();
    assert!(err.contains("holds both model.json and model.pkl"), "{err}");

    // A single file named by --model_dir: by extension, or by content for JSON.
    let dir = tempfile::tempdir().unwrap();
    for (file, name) in [("xgb_regressor.model.ubj", "anything.bst"), ("xgb_regressor.model.json", "m.json")] {
        let path = dir.path().join(name);
        std::fs::copy(fixtures().join(file), &path).unwrap();
        let ModelLayout::Bare(files) = layout::inspect(&path).unwrap() else { panic!("{name}") };
        assert_eq!(files, ArtifactFiles::XGBoost { file: path.clone() });
        assert_eq!(files.dir(), dir.path());
        load_model(&files).unwrap();
    }
}

#[test]
fn native_classifiers_answer_labels_and_probabilities() {
    let (_, binary) = load_as("xgb_classifier.model.ubj", "model.ubj");
    assert_eq!(binary.label().unwrap().output, "predict");
    assert_eq!(binary.label().unwrap().positive, Some(Label::Int(1)));
    assert_eq!(
        outputs(binary.as_ref()),
        [spec("predict", DataType::Int64, &[-1]), spec("predict_proba", DataType::Fp64, &[-1, 2])]
    );
    let (_, multi) = load_as("xgb_classifier_multi.model.json", "model.json");
    assert_eq!(multi.label().unwrap().positive, None);
    assert_eq!(
        outputs(multi.as_ref()),
        [spec("predict", DataType::Int64, &[-1]), spec("predict_proba", DataType::Fp64, &[-1, 3])]
    );
    let (_, targets) = load_as("xgb_regressor_multi_target.model.ubj", "model.ubj");
    assert_eq!(outputs(targets.as_ref()), [spec("predict", DataType::Fp64, &[-1, 3])]);

    // The default output is `predict`; a row of one-per-feature inputs works as for scikit-learn models.
    let columns: Vec<Tensor> = (0..4)
        .map(|j| Tensor::new(format!("f{j}"), vec![1], TensorData::Fp64(vec![0.5 * j as f64])).unwrap())
        .collect();
    let out = binary.infer(&columns, &[]).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].name, "predict");
    assert_eq!(out[0].datatype(), DataType::Int64);
}

#[test]
fn native_files_refuse_infinity_as_dmatrix_does_and_wrappers_take_it() {
    let x = Tensor::new("input-0", vec![1, 4], TensorData::Fp64(vec![f64::INFINITY, 1.0, 0.0, f64::NAN])).unwrap();
    let (_, native) = load_as("xgb_regressor.model.ubj", "model.ubj");
    let err = native.infer(std::slice::from_ref(&x), &[]).unwrap_err();
    assert!(err.is_client_error() && err.to_string().contains("infinity"), "{err}");
    let nan = Tensor::new("input-0", vec![1, 4], TensorData::Fp64(vec![f64::NAN; 4])).unwrap();
    native.infer(&[nan], &[]).unwrap();
    let (_, wrapper) = load_as("xgb_regressor.pkl", "model.pkl");
    wrapper.infer(&[x], &[]).unwrap();
}

#[test]
fn pickled_wrappers_keep_the_wrappers_names() {
    let (files, reg) = load_as("xgb_regressor.joblib", "model.joblib");
    assert!(matches!(files, ArtifactFiles::Pickle { .. }));
    assert_eq!(reg.kind(), ModelKind::Sklearn("XGBRegressor"));
    assert_eq!(reg.label(), None);
    let (_, clf) = load_as("xgb_classifier.p5.pkl", "model.pkl");
    assert_eq!(clf.kind(), ModelKind::Sklearn("XGBClassifier"));
    assert_eq!(clf.label().unwrap().positive, Some(Label::Int(1)));
    assert_eq!(
        outputs(clf.as_ref()),
        [spec("predict", DataType::Int64, &[-1]), spec("predict_proba", DataType::Fp64, &[-1, 2])]
    );
    let (_, platform) = load_as("platform_predictive_xgb.model.pkl", "model.pkl");
    assert_eq!(platform.kind(), ModelKind::Sklearn("Pipeline"));
    assert_eq!(outputs(platform.as_ref()), [spec("predict", DataType::Fp64, &[-1, 5])]);
    assert_eq!(platform.signature().inputs[0].shape, vec![-1, 30]);
}
