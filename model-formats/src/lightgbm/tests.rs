//! The LightGBM parser on hand-written and hostile models, and the decision rules on rows chosen to hit
//! each one. The parity with LightGBM itself is `tests/boosting_parity.rs`.

use std::path::Path;

use super::*;

/// A header for `features` features, then `trees` (each a block without its `Tree=` line).
fn model(objective: &str, extra_header: &str, features: usize, trees: &[&str]) -> String {
    let names: Vec<String> = (0..features).map(|i| format!("Column_{i}")).collect();
    let infos = vec!["[0:1]"; features].join(" ");
    let (num_class, per_iteration) = match objective.split_once("num_class:") {
        Some((_, k)) => {
            let k = k.split(' ').next().unwrap_or("1");
            (k.to_owned(), k.to_owned())
        }
        None => ("1".to_owned(), "1".to_owned()),
    };
    let mut s = format!(
        "tree\nversion=v4\nnum_class={num_class}\nnum_tree_per_iteration={per_iteration}\nlabel_index=0\n\
         max_feature_idx={}\nobjective={objective}\n{extra_header}feature_names={}\nfeature_infos={infos}\n\
         tree_sizes={}\n\n",
        features - 1,
        names.join(" "),
        vec!["1"; trees.len()].join(" ")
    );
    for (i, t) in trees.iter().enumerate() {
        s.push_str(&format!("Tree={i}\n{t}\nis_linear=0\nshrinkage=1\n\n\n"));
    }
    s.push_str("end of trees\n\nfeature_importances:\n\nparameters:\n[boosting: gbdt]\nend of parameters\n\npandas_categorical:null\n");
    s
}

/// One numerical split on feature 0 at `threshold` with `decision_type`: left leaf 1.0, right leaf 2.0.
fn stump(threshold: f64, decision_type: u8) -> String {
    format!(
        "num_leaves=2\nnum_cat=0\nsplit_feature=0\nsplit_gain=1\nthreshold={threshold}\ndecision_type={decision_type}\n\
         left_child=-1\nright_child=-2\nleaf_value=1 2"
    )
}

/// The categorical tree of [`categorical_model`].
const CAT_TREE: &str = "num_leaves=3\nnum_cat=1\nsplit_feature=1 0\nsplit_gain=1 1\nthreshold=0 0.5\n\
                        decision_type=1 10\nleft_child=-1 -2\nright_child=1 -3\nleaf_value=1 2 3\n\
                        cat_boundaries=0 1\ncat_threshold=5";

/// Node 0 sends categories {0, 2} of feature 1 to leaf 0 (1.0), the rest to node 1, which splits feature
/// 0 at 0.5 (missing type NaN, default left): leaf 1 (2.0) or leaf 2 (3.0).
fn categorical_model() -> Booster {
    Booster::parse(&model("regression", "", 2, &[CAT_TREE])).unwrap()
}

fn rows(rows: &[&[f64]]) -> Matrix<f64> {
    let cols = rows[0].len();
    Matrix { data: rows.iter().flat_map(|r| r.iter().copied()).collect(), rows: rows.len(), cols }
}

fn err(text: &str) -> String {
    Booster::parse(text).expect_err("the model must be refused")
}

#[test]
fn the_zero_threshold_is_the_float32_constant() {
    assert_eq!(ZERO_THRESHOLD, f64::from(1e-35_f32));
}

#[test]
fn categorical_splits_follow_the_bitset() {
    let b = categorical_model();
    let cases: &[(&[f64], f64)] = &[
        (&[0.7, 2.0], 1.0),
        (&[0.7, 2.9], 1.0),           // (int)2.9 = 2
        (&[0.7, 1.0], 3.0),           // category 1 is not in the set
        (&[0.2, -0.5], 1.0),          // (int)-0.5 = 0
        (&[0.2, -1.0], 2.0),          // negative: right
        (&[f64::NAN, f64::NAN], 2.0), // NaN category: right; NaN numeric (type NaN): default left
        (&[0.7, 40.0], 3.0),          // beyond the bitset: right
        (&[0.7, 1e10], 3.0),          // beyond int: right
        (&[0.7, f64::INFINITY], 3.0),
        (&[0.7, 1e-36], 1.0), // read as 0.0: category 0
        (&[0.5, 5.0], 2.0),   // x <= threshold goes left
        (&[0.500_000_000_000_000_1, 5.0], 3.0),
    ];
    for (x, want) in cases {
        assert_eq!(b.predict(&rows(&[x])), vec![*want], "{x:?}");
    }
    assert_eq!(b.categorical_features(), Vec::<usize>::new());
}

#[test]
fn missing_types_and_default_directions() {
    // (decision_type, x, leaf value): None (0) takes NaN as 0.0; Zero (4, 6) sends zeros and NaN the default
    // way; NaN (8, 10) sends only NaN the default way.
    let cases: &[(u8, f64, f64)] = &[
        (0, f64::NAN, 2.0), // NaN → 0.0 > -1 → right
        (2, f64::NAN, 2.0), // default-left ignored without a missing type
        (4, 0.0, 2.0),
        (6, 0.0, 1.0),
        (6, -0.0, 1.0),
        (6, 1e-36, 1.0),
        (6, f64::NAN, 1.0),
        (4, f64::NAN, 2.0),
        (6, -3.0, 1.0), // not missing: compared, -3 <= -1
        (8, 0.0, 2.0),  // zero is a value for type NaN
        (10, f64::NAN, 1.0),
        (8, f64::NAN, 2.0),
        (10, f64::NEG_INFINITY, 1.0),
        (10, f64::INFINITY, 2.0),
    ];
    for &(d, x, want) in cases {
        let b = Booster::parse(&model("regression", "", 1, &[&stump(-1.0, d)])).unwrap();
        assert_eq!(b.predict(&rows(&[&[x]])), vec![want], "decision_type {d}, x {x}");
    }
}

#[test]
fn objectives_convert_as_lightgbm() {
    let x = rows(&[&[0.0], &[5.0]]);
    let b = Booster::parse(&model("binary sigmoid:2", "", 1, &[&stump(1.0, 0)])).unwrap();
    let p = b.predict(&x);
    assert_eq!(p, vec![1.0 / (1.0 + (-2.0f64).exp()), 1.0 / (1.0 + (-4.0f64).exp())]);
    assert_eq!(b.predict_proba(&x).unwrap(), vec![1.0 - p[0], p[0], 1.0 - p[1], p[1]]);
    assert_eq!(b.predict_raw(&x), vec![1.0, 2.0]);

    let b = Booster::parse(&model(
        "regression sqrt",
        "",
        1,
        &[&stump(1.0, 0).replace("leaf_value=1 2", "leaf_value=-3 2")],
    ))
    .unwrap();
    assert_eq!(b.predict(&x), vec![-9.0, 4.0]);
    assert_eq!(b.predict_proba(&x), None);

    let t = stump(1.0, 0);
    let b = Booster::parse(&model(
        "multiclass num_class:3",
        "",
        1,
        &[&t, &t, &t.replace("leaf_value=1 2", "leaf_value=2 3")],
    ))
    .unwrap();
    let p = b.predict(&rows(&[&[0.0]]));
    let e = [(-1.0f64).exp(), (-1.0f64).exp(), 1.0];
    let s = e[0] + e[1] + e[2];
    assert_eq!(p, vec![e[0] / s, e[1] / s, e[2] / s]);

    // Random forests average their iterations; `best_iteration` limits them.
    let mut b =
        Booster::parse(&model("regression", "average_output\n", 1, &[&stump(1.0, 0), &stump(-1.0, 0)])).unwrap();
    assert_eq!(b.predict(&rows(&[&[0.0]])), vec![1.5]);
    b.limit_iterations(1);
    assert_eq!(b.predict(&rows(&[&[0.0]])), vec![1.0]);
    b.limit_iterations(0);
    assert_eq!(b.iterations(), 2);
}

#[test]
fn unsupported_models_are_refused_with_a_reason() {
    assert!(err(&model("poisson", "", 1, &[&stump(1.0, 0)])).contains("objective `poisson` is not supported"));
    assert!(err(&model("lambdarank", "", 1, &[&stump(1.0, 0)])).contains("not supported"));
    assert!(
        err(&model("regression", "", 1, &[&stump(1.0, 0)]).replace("objective=regression\n", ""))
            .contains("custom objective")
    );
    let linear = model("regression", "", 1, &[&stump(1.0, 0)]).replace("is_linear=0", "is_linear=1");
    assert!(err(&linear).contains("linear tree"));
    assert!(err(&model("binary", "", 1, &[&stump(1.0, 0)])).contains("no `sigmoid:`"));
    assert!(err(&model("binary sigmoid:-1", "", 1, &[&stump(1.0, 0)])).contains("positive"));
    assert!(err("{\"learner\": {}}").contains("not a LightGBM text model"));
    assert!(Booster::from_bytes(b"tree\n\xff\xfe").unwrap_err().contains("UTF-8"));
}

#[test]
fn hostile_tree_indices_children_and_cycles_fail_cleanly() {
    let good = model("regression", "", 2, &[CAT_TREE, CAT_TREE]);
    Booster::parse(&good).unwrap();

    // A tree index out of range / out of order.
    assert!(err(&good.replace("Tree=1", "Tree=7")).contains("tree index 7 out of order"));
    assert!(err(&good.replace("Tree=1", "Tree=99999999999999999999999")).contains("not a tree index"));
    // A child index out of range, a leaf out of range.
    assert!(err(&good.replace("right_child=1 -3", "right_child=5 -3")).contains("out of range"));
    assert!(err(&good.replace("right_child=1 -3", "right_child=1 -9")).contains("leaf 8, out of range"));
    // The root as a child, a node twice, and a cycle detached from the root.
    assert!(err(&good.replace("right_child=1 -3", "right_child=1 0")).contains("root"));
    assert!(err(&good.replace("left_child=-1 -2", "left_child=1 -2")).contains("child of 2 nodes"));
    let detached = "num_leaves=4\nnum_cat=0\nsplit_feature=0 0 0\nthreshold=0 0 0\ndecision_type=0 0 0\n\
                    left_child=-1 2 1\nright_child=-2 -3 -4\nleaf_value=1 2 3 4";
    assert!(err(&model("regression", "", 2, &[detached])).contains("not reachable from the root"));
    // A feature out of range.
    assert!(err(&good.replace("split_feature=1 0", "split_feature=2 0")).contains("feature 2 of 2"));
    assert!(err(&good.replace("split_feature=1 0", "split_feature=-1 0")).contains("feature -1"));
    // Lists of the wrong length.
    assert!(err(&good.replace("leaf_value=1 2 3", "leaf_value=1 2")).contains("has 2 values, expected 3"));
    assert!(err(&good.replace("threshold=0 0.5", "threshold=0 0.5 7")).contains("more than 2 values"));
    assert!(err(&good.replace("threshold=0 0.5", "threshold=0 x")).contains("not a valid number"));
    // An unknown decision type.
    assert!(err(&good.replace("decision_type=1 10", "decision_type=1 12")).contains("decision_type 12"));
    // A key twice; a line that is not key=value.
    assert!(err(&good.replace("shrinkage=1", "shrinkage=1\nshrinkage=1")).contains("appears twice"));
    assert!(err(&good.replace("shrinkage=1", "shrinkage")).contains("not a `key=value` line"));
}

#[test]
fn hostile_counts_fail_before_allocating() {
    let good = model("regression", "", 2, &[CAT_TREE]);
    assert!(
        err(&good.replace("num_leaves=3", "num_leaves=1000000000")).contains("num_leaves=1000000000 is out of range")
    );
    assert!(err(&good.replace("num_leaves=3", "num_leaves=-3")).contains("out of range"));
    assert!(err(&good.replace("num_leaves=3", "num_leaves=0")).contains("out of range"));
    assert!(err(&good.replace("num_class=1", "num_class=4294967296")).contains("num_class=4294967296 is out of range"));
    assert!(err(&good.replace("num_tree_per_iteration=1", "num_tree_per_iteration=70000")).contains("out of range"));
    let multi = model("multiclass num_class:99999999", "", 2, &[CAT_TREE]);
    assert!(err(&multi).contains("out of range"));
    assert!(err(&good.replace("max_feature_idx=1", "max_feature_idx=99999999999")).contains("out of range"));
    assert!(err(&good.replace("max_feature_idx=1", "max_feature_idx=5")).contains("2 feature names for 6 features"));
    assert!(err(&good.replace("num_cat=1", "num_cat=3")).contains("num_cat=3 is out of range"));
    // Whole iterations only.
    let two = model("multiclass num_class:2", "", 2, &[CAT_TREE, CAT_TREE, CAT_TREE]);
    assert!(err(&two).contains("whole number of iterations"));
}

#[test]
fn bad_cat_boundaries_fail_cleanly() {
    let good = model("regression", "", 2, &[CAT_TREE]);
    assert!(err(&good.replace("cat_boundaries=0 1", "cat_boundaries=1 0")).contains("not increasing"));
    assert!(err(&good.replace("cat_boundaries=0 1", "cat_boundaries=-1 1")).contains("not increasing"));
    assert!(err(&good.replace("cat_boundaries=0 1", "cat_boundaries=0 4000000000")).contains("cat_threshold"));
    assert!(err(&good.replace("cat_boundaries=0 1", "cat_boundaries=0 2")).contains("has 1 values, expected 2"));
    assert!(err(&good.replace("cat_boundaries=0 1", "cat_boundaries=0")).contains("expected 2"));
    assert!(err(&good.replace("cat_boundaries=0 1\n", "")).contains("no `cat_boundaries`"));
    // The split's threshold must index cat_boundaries.
    assert!(err(&good.replace("threshold=0 0.5", "threshold=1 0.5")).contains("not an index into cat_boundaries"));
    assert!(err(&good.replace("threshold=0 0.5", "threshold=0.5 0.5")).contains("not an index"));
    assert!(err(&good.replace("threshold=0 0.5", "threshold=nan 0.5")).contains("not an index"));
    assert!(err(&good.replace("cat_threshold=5", "cat_threshold=-5")).contains("not a valid number"));
}

#[test]
fn truncated_and_mangled_files_fail_cleanly() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/boosting/latest/lgbm_classifier_multi.model.txt");
    let text = std::fs::read_to_string(path).unwrap();
    let full = Booster::parse(&text).unwrap();
    assert_eq!((full.n_trees(), full.outputs_per_row(), full.n_features()), (12, 3, 4));
    let end = text.find("end of trees").unwrap();
    let mut cuts: Vec<usize> = (0..text.len()).step_by(37).collect();
    cuts.extend(end.saturating_sub(3)..end + 14);
    for cut in cuts {
        let Some(prefix) = text.get(..cut) else { continue };
        let result = Booster::parse(prefix);
        if cut < end + "end of trees".len() {
            assert!(result.is_err(), "a model cut at byte {cut} must be refused");
        }
    }
    assert!(err(&text[..end]).contains("truncated model"));
    // Every single-byte corruption of the first tree either parses or is refused; none panics.
    let tree0 = text.find("Tree=0").unwrap();
    for i in tree0..tree0 + 700 {
        for b in [b'0', b'-', b' ', b'\n', b'9', b'='] {
            let mut bytes = text.as_bytes().to_vec();
            bytes[i] = b;
            if let Ok(booster) = Booster::from_bytes(&bytes) {
                let x = rows(&[&[0.0, 1.0, f64::NAN, -2.0], &[1e9, -1e9, 0.5, 3.0]]);
                let p = booster.predict(&x);
                assert_eq!(p.len(), 2 * booster.outputs_per_row());
            }
        }
    }
}

#[test]
fn native_model_serves_with_scikit_learn_names() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/boosting/latest");
    let m = load_file(&dir.join("lgbm_classifier_pandas_categorical.model.txt"), 1 << 30).unwrap();
    assert_eq!(m.kind(), ModelKind::LightGbm);
    assert_eq!(m.kind().to_string(), "lightgbm");
    assert_eq!(m.label(), Some(LabelOutput::new("predict", Some(Label::Int(1)))));
    let names: Vec<&str> = m.signature().inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["cpu", "mem", "latency_ms", "region"]);
    assert_eq!(m.booster().categorical_features(), vec![3]);
    assert_eq!(m.booster().pandas_categorical().map(<[_]>::len), Some(1));
    // Category strings cannot be mapped to codes here: the error says what to send.
    let column = |name: &str, data: TensorData| Tensor::new(name, vec![1], data).unwrap();
    let request = [
        column("cpu", TensorData::Fp64(vec![0.1])),
        column("mem", TensorData::Fp64(vec![5.0])),
        column("latency_ms", TensorData::Fp64(vec![0.0])),
        column("region", TensorData::Bytes(vec![b"us-east".to_vec()])),
    ];
    let e = m.infer(&request, &[]).unwrap_err();
    assert!(e.is_client_error() && e.to_string().contains("its code, its index"), "{e}");
    let mut request = request.to_vec();
    request[3] = column("region", TensorData::Int64(vec![1]));
    let out = m.infer(&request, &["predict".to_owned(), "predict_proba".to_owned()]).unwrap();
    assert_eq!((out[0].datatype(), out[1].shape.clone()), (DataType::Int64, vec![1, 2]));

    let m = load_file(&dir.join("lgbm_regressor.model.txt"), 1 << 30).unwrap();
    assert_eq!(m.label(), None);
    assert_eq!(m.signature().inputs[0].shape, vec![-1, 4]);
    assert_eq!(m.signature().outputs.len(), 1);

    let m = load_file(&dir.join("lgbm_classifier_multi.model.txt"), 1 << 30).unwrap();
    assert_eq!(m.label(), Some(LabelOutput::new("predict", None)));
    assert_eq!(m.signature().outputs[1].shape, vec![-1, 3]);

    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("model.txt");
    std::fs::write(&bad, "tree\nnum_class=1\n").unwrap();
    let e = load_file(&bad, 1 << 30).unwrap_err();
    assert!(matches!(e, Error::InvalidModel { .. }) && e.to_string().contains("model.txt"), "{e}");
}

#[test]
fn a_defaultdict_of_ordered_dicts_is_a_dict() {
    // `defaultdict(OrderedDict, {'valid_0': OrderedDict([('l2', 0.5)])})` as pickle protocol 4 writes it:
    // the factory is the bare class.
    let pickle: &[u8] = b"\x80\x04\x95[\x00\x00\x00\x00\x00\x00\x00\x8c\x0bcollections\x94\x8c\x0bdefaultdict\x94\x93\x94h\x00\x8c\x0bOrderedDict\x94\x93\x94\x85\x94R\x94(\x8c\x07valid_0\x94h\x04)R\x94\x8c\x02l2\x94G?\xe0\x00\x00\x00\x00\x00\x00s\x8c\x01k\x94K\x01u.";
    let v = crate::pickle::loads(pickle, Path::new("t.pkl"), &crate::pickle::Limits::default()).unwrap();
    let inner = v.get("valid_0").unwrap();
    assert_eq!(inner.get("l2").and_then(|v| v.as_f64()), Some(0.5));
    assert_eq!(v.get("k").and_then(|v| v.as_int()), Some(1));
}
