//! Hostile and broken XGBoost files: each fails to load with an error saying what is wrong, and nothing
//! panics or allocates what the file claims without having it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use ferroserve_formats::xgboost::{self, Limits, ModelError};
use ferroserve_formats::{Error, Tensor, TensorData, layout, load_model};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/boosting/latest")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap()
}

/// Loads `bytes` as `name` in a model folder, as the server does; the error.
fn load_error(name: &str, bytes: &[u8]) -> Error {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), bytes).unwrap();
    let files = layout::find_artifact(dir.path()).unwrap().unwrap();
    assert!(matches!(files, layout::ArtifactFiles::XGBoost { .. }), "{name}: {files:?}");
    load_model(&files).expect_err("a broken model must not load")
}

/// The regressor's JSON model with `edit` applied to tree 0.
fn edited(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut doc: Value = serde_json::from_slice(&fixture("xgb_regressor.model.json")).unwrap();
    edit(&mut doc["learner"]["gradient_booster"]["model"]["trees"][0]);
    serde_json::to_vec(&doc).unwrap()
}

fn invalid(name: &str, bytes: &[u8], want: &str) {
    let err = load_error(name, bytes);
    assert!(matches!(err, Error::InvalidModel { .. }), "{want}: {err:?}");
    let message = err.to_string();
    assert!(message.contains(name) && message.contains(want), "expected `{want}` in: {message}");
}

#[test]
fn a_ubjson_length_of_two_to_the_62_fails_cleanly() {
    let huge = (1i64 << 62).to_be_bytes();
    // A typed array, an untyped array, a string and a key claiming 2^62.
    let mut typed = b"{L\x00\x00\x00\x00\x00\x00\x00\x01a[$d#L".to_vec();
    typed.extend(huge);
    invalid("model.ubj", &typed, "typed array of 4611686018427387904 elements");
    let mut counted = b"{L\x00\x00\x00\x00\x00\x00\x00\x01a[#L".to_vec();
    counted.extend(huge);
    invalid("model.ubj", &counted, "array of 4611686018427387904 values");
    let mut string = b"{L\x00\x00\x00\x00\x00\x00\x00\x01aSL".to_vec();
    string.extend(huge);
    invalid("model.ubj", &string, "a string of 4611686018427387904 bytes");
    let mut key = b"{L".to_vec();
    key.extend(huge);
    invalid("model.bst", &key, "a string of 4611686018427387904 bytes");
    // The same inside the real model: the first typed array's count replaced.
    let mut real = fixture("xgb_regressor.model.ubj");
    let at = real.windows(4).position(|w| w == b"[$d#").unwrap() + 5;
    real[at..at + 8].copy_from_slice(&huge);
    invalid("model.ubj", &real, "4611686018427387904 elements");
}

#[test]
fn every_truncation_is_an_error() {
    for name in ["xgb_regressor.model.ubj", "xgb_regressor.model.json", "xgb_regressor_categorical.model.ubj"] {
        let bytes = fixture(name);
        assert!(xgboost::parse(&bytes, &Limits::default()).is_ok(), "{name}");
        for len in 0..bytes.len() {
            let err = xgboost::parse(&bytes[..len], &Limits::default());
            assert!(matches!(err, Err(ModelError::Invalid(_))), "{name} cut at {len}: {err:?}");
        }
    }
    invalid("model.ubj", &fixture("xgb_regressor.model.ubj")[..5000], "truncated");
    invalid("model.json", &fixture("xgb_regressor.model.json")[..5000], "truncated");
}

#[test]
fn broken_trees_are_refused_naming_the_tree_and_node() {
    invalid(
        "model.json",
        &edited(|t| {
            t["left_children"][0] = 99.into();
            t["right_children"][0] = 100.into();
        }),
        "tree 0: node 0 has children 99 and 100, outside 0..",
    );
    // Node 1's children point back at nodes 1 and 2, already reached from the root: a cycle.
    invalid(
        "model.json",
        &edited(|t| {
            t["left_children"][1] = 1.into();
            t["right_children"][1] = 2.into();
        }),
        "tree 0: node 1 is reached twice (a cycle or a shared subtree)",
    );
    invalid(
        "model.json",
        &edited(|t| {
            t["left_children"][0] = 0.into();
            t["right_children"][0] = 1.into();
        }),
        "reached twice",
    );
    invalid(
        "model.json",
        &edited(|t| t["split_indices"][0] = 4.into()),
        "node 0 splits on feature 4 but the model has 4 features",
    );
    invalid("model.json", &edited(|t| t["split_indices"][0] = (-1).into()), "splits on feature -1");
    invalid(
        "model.json",
        &edited(|t| {
            t["split_conditions"].as_array_mut().unwrap().pop();
        }),
        "split_conditions has",
    );
    invalid(
        "model.json",
        &edited(|t| {
            t["default_left"].as_array_mut().unwrap().push(0.into());
        }),
        "default_left has",
    );
    invalid(
        "model.json",
        &edited(|t| t["tree_param"]["num_nodes"] = "1000000".into()),
        "entries for num_nodes 1000000",
    );
    invalid("model.json", &edited(|t| t["id"] = 5.into()), "its id is 5");
    invalid(
        "model.json",
        &edited(|t| {
            t["right_children"][0] = t["left_children"][0].as_i64().map(|l| l + 2).unwrap().into();
        }),
        "right child to follow the left one",
    );
}

#[test]
fn broken_categorical_splits_are_refused() {
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut doc: Value = serde_json::from_slice(&fixture("xgb_regressor_categorical.model.json")).unwrap();
        f(&mut doc["learner"]["gradient_booster"]["model"]["trees"][0]);
        serde_json::to_vec(&doc).unwrap()
    };
    invalid("model.json", &edit(&|t| t["categories_sizes"][0] = 1000.into()), "outside the 9 saved");
    invalid("model.json", &edit(&|t| t["categories"][0] = (-3).into()), "category -3 is out of range");
    invalid("model.json", &edit(&|t| t["categories_nodes"][1] = 3.into()), "is not the next categorical split");
    invalid(
        "model.json",
        &edit(&|t| {
            t["categories_nodes"].as_array_mut().unwrap().pop();
        }),
        "3 categorical splits but",
    );
}

#[test]
fn inconsistent_models_are_refused() {
    let model = |f: &dyn Fn(&mut Value)| {
        let mut doc: Value = serde_json::from_slice(&fixture("xgb_classifier_multi.model.json")).unwrap();
        f(&mut doc);
        serde_json::to_vec(&doc).unwrap()
    };
    invalid(
        "model.json",
        &model(&|d| d["learner"]["gradient_booster"]["model"]["tree_info"][3] = 7.into()),
        "tree 3 belongs to output group 7 of 3",
    );
    invalid(
        "model.json",
        &model(&|d| d["learner"]["gradient_booster"]["model"]["gbtree_model_param"]["num_trees"] = "13".into()),
        "num_trees is 13 but 12 trees are saved",
    );
    invalid(
        "model.json",
        &model(&|d| d["learner"]["gradient_booster"]["model"]["iteration_indptr"][1] = 30.into()),
        "iteration_indptr",
    );
    invalid(
        "model.json",
        &model(&|d| d["learner"]["learner_model_param"]["base_score"] = "[1E0,2E0]".into()),
        "base_score has 2 values for 3 outputs",
    );
    invalid("model.json", &model(&|d| d["learner"]["learner_model_param"]["num_feature"] = "x".into()), "num_feature");
    invalid("model.json", &model(&|d| d["learner"]["feature_names"] = serde_json::json!(["a"])), "1 feature names");
}

#[test]
fn unsupported_models_say_so() {
    let unsupported = |name: &str, bytes: &[u8], want: &str| {
        let err = load_error(name, bytes);
        assert!(matches!(err, Error::Unsupported { .. }), "{want}: {err:?}");
        assert!(err.to_string().contains(want), "expected `{want}` in: {err}");
    };
    unsupported("model.bst", b"binf\x00\x00\x00\x3f\x04\x00\x00\x00", "legacy binary XGBoost model");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut doc: Value = serde_json::from_slice(&fixture("xgb_regressor.model.json")).unwrap();
        f(&mut doc["learner"]);
        serde_json::to_vec(&doc).unwrap()
    };
    unsupported("model.json", &with(&|l| l["objective"]["name"] = "rank:pairwise".into()), "objective `rank:pairwise`");
    unsupported("model.json", &with(&|l| l["gradient_booster"]["name"] = "gblinear".into()), "gblinear");
    unsupported("model.json", &with(&|l| l["gradient_booster"]["name"] = "dart".into()), "dart");
    unsupported(
        "model.json",
        &with(&|l| l["gradient_booster"]["model"]["trees"][0]["tree_param"]["size_leaf_vector"] = "3".into()),
        "vector-leaf trees",
    );
}

#[test]
fn deep_nesting_fails_cleanly() {
    // Deep enough to overflow a recursive reader's stack many times over.
    let mut json = b"{\"learner\": ".to_vec();
    json.extend(std::iter::repeat_n(b'[', 2_000_000));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.json"), &json).unwrap();
    let files = layout::find_artifact(dir.path()).unwrap().unwrap();
    let err = load_model(&files).unwrap_err().to_string();
    assert!(err.contains("nested deeper than 64"), "{err}");
    let mut ubj = b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner".to_vec();
    ubj.extend(std::iter::repeat_n(b'[', 2_000_000));
    invalid("model.ubj", &ubj, "nested deeper than 64");
}

#[test]
fn mutated_models_never_panic() {
    // A fixed-seed generator: reproducible mutations of real files (bytes flipped, runs copied over other
    // runs); each either fails to load or loads and predicts.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let x = Tensor::new(
        "input-0",
        vec![3, 4],
        TensorData::Fp32(vec![0.5, f32::NAN, -3.0, 1e30, 0.0, 2.0, 5.0, -1.0, 3.0, 1.0, 9.0, 0.1]),
    )
    .unwrap();
    let mut loaded = 0;
    for name in [
        "xgb_regressor.model.ubj",
        "xgb_classifier_multi.model.ubj",
        "xgb_regressor_categorical.model.ubj",
        "xgb_regressor.model.json",
    ] {
        let good = fixture(name);
        for _ in 0..300 {
            let mut bytes = good.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % bytes.len();
                if next() % 2 == 0 {
                    bytes[at] = next() as u8;
                } else {
                    let from = (next() as usize) % bytes.len();
                    let n = ((next() as usize) % 16).min(bytes.len() - at).min(bytes.len() - from);
                    let run = bytes[from..from + n].to_vec();
                    bytes[at..at + n].copy_from_slice(&run);
                }
            }
            if let Ok(b) = xgboost::parse(&bytes, &Limits::default()) {
                let model = ferroserve_formats::xgboost::XGBoostModel::from_booster(&b);
                if b.n_features() == 4 {
                    let _ = ferroserve_formats::Model::infer(&model, std::slice::from_ref(&x), &[]);
                }
                loaded += 1;
            }
        }
    }
    assert!(loaded > 0, "some mutations (in unused fields) still load");
}
