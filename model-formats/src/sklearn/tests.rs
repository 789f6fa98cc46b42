//! Estimators built by hand as the values the pickle interpreter produces: dispatch, errors, input
//! rules and version-dependent behaviour that the parity fixtures do not reach.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use super::*;
use crate::pickle::{ArrayData, Dtype, Global, Object};

fn global(module: &str, name: &str) -> Global {
    Global { module: module.to_owned(), name: name.to_owned() }
}

fn object(module: &str, name: &str, args: Vec<Value>, state: &[(&str, Value)]) -> Value {
    let dict = state.iter().map(|(k, v)| (Value::Str(Rc::from(*k)), v.clone())).collect();
    Value::Object(Rc::new(RefCell::new(Object {
        class: global(module, name),
        args,
        state: Some(Value::Dict(Rc::new(RefCell::new(dict)))),
        items: Vec::new(),
    })))
}

fn array(kind: char, size: usize, shape: Vec<usize>, bytes: Vec<u8>) -> Value {
    Value::Array(Rc::new(NdArray {
        dtype: Dtype::simple(kind, size),
        shape,
        fortran: false,
        data: ArrayData::Raw(bytes),
    }))
}

fn f64s(shape: Vec<usize>, v: &[f64]) -> Value {
    array('f', 8, shape, v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

fn i64s(v: &[i64]) -> Value {
    array('i', 8, vec![v.len()], v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

fn strs(v: &[&str]) -> Value {
    let objects = v.iter().map(|s| Value::Str(Rc::from(*s))).collect();
    Value::Array(Rc::new(NdArray {
        dtype: Dtype::simple('O', 8),
        shape: vec![v.len()],
        fortran: false,
        data: ArrayData::Objects(objects),
    }))
}

fn s(v: &str) -> Value {
    Value::Str(Rc::from(v))
}

fn version(v: &str) -> (&'static str, Value) {
    ("_sklearn_version", s(v))
}

/// `sklearn.tree._tree.Tree`: a stump on feature 0 at 0.5, NaN going left when `nan_left`.
fn tree(values: &[f64], classes: usize, nan_left: Option<bool>) -> Value {
    let mut fields = vec![
        ("left_child".to_owned(), Dtype::simple('i', 8), 0),
        ("right_child".to_owned(), Dtype::simple('i', 8), 8),
        ("feature".to_owned(), Dtype::simple('i', 8), 16),
        ("threshold".to_owned(), Dtype::simple('f', 8), 24),
        ("n_node_samples".to_owned(), Dtype::simple('i', 8), 32),
    ];
    let mut itemsize = 40;
    if nan_left.is_some() {
        fields.push(("missing_go_to_left".to_owned(), Dtype::simple('u', 1), 40));
        itemsize = 48;
    }
    let mut bytes = Vec::new();
    for (l, r, f, t, n, m) in [
        (1i64, 2i64, 0i64, 0.5f64, 4i64, nan_left.unwrap_or(false)),
        (-1, -1, -2, -2.0, 3, false),
        (-1, -1, -2, -2.0, 1, false),
    ] {
        let mut rec = Vec::new();
        rec.extend(l.to_le_bytes());
        rec.extend(r.to_le_bytes());
        rec.extend(f.to_le_bytes());
        rec.extend(t.to_le_bytes());
        rec.extend(n.to_le_bytes());
        rec.resize(itemsize, 0);
        if nan_left.is_some() {
            rec[40] = u8::from(m);
        }
        bytes.extend(rec);
    }
    let nodes = Value::Array(Rc::new(NdArray {
        dtype: Dtype { kind: 'V', itemsize, big_endian: false, fields },
        shape: vec![3],
        fortran: false,
        data: ArrayData::Raw(bytes),
    }));
    object(
        "sklearn.tree._tree",
        "Tree",
        vec![Value::Int(1), i64s(&[classes as i64]), Value::Int(1)],
        &[("node_count", Value::Int(3)), ("nodes", nodes), ("values", f64s(vec![3, 1, classes], values))],
    )
}

fn load(v: &Value) -> Result<Arc<dyn Model>> {
    from_value(v, Path::new("model.pkl"))
}

fn x(name: &str, shape: Vec<usize>, v: &[f64]) -> Tensor {
    Tensor::new(name, shape, TensorData::Fp64(v.to_vec())).unwrap()
}

fn fp64(t: &Tensor) -> &[f64] {
    let TensorData::Fp64(v) = &t.data else { panic!("{:?}", t.datatype()) };
    v
}

#[test]
fn unsupported_estimators_and_non_estimators_are_named() {
    let svc = object("sklearn.svm._classes", "SVC", vec![], &[("n_features_in_", Value::Int(2))]);
    let err = load(&svc).unwrap_err();
    assert_eq!(err.to_string(), "model.pkl: unsupported estimator sklearn.svm._classes.SVC");
    let err = load(&Value::Int(3)).unwrap_err();
    assert!(err.to_string().contains("holds a int, not a scikit-learn estimator"), "{err}");
}

#[test]
fn unfitted_estimators_name_the_missing_attribute() {
    let lr = object("sklearn.linear_model._base", "LinearRegression", vec![], &[("fit_intercept", Value::Bool(true))]);
    let err = load(&lr).unwrap_err();
    assert!(matches!(err, Error::Pickle { .. }));
    assert!(err.to_string().contains("LinearRegression: missing attribute `n_features_in_`"), "{err}");
}

#[test]
fn linear_regression_predicts_and_refuses_nan() {
    let lr = object(
        "sklearn.linear_model._base",
        "LinearRegression",
        vec![],
        &[
            ("n_features_in_", Value::Int(2)),
            ("coef_", f64s(vec![2], &[2.0, -1.0])),
            ("intercept_", Value::Float(0.5)),
            version("1.5.0"),
        ],
    );
    let m = load(&lr).unwrap();
    assert_eq!(m.kind(), ModelKind::Sklearn("LinearRegression"));
    assert_eq!(m.signature().inputs[0].datatype, DataType::Fp64);
    let out = m.infer(&[x("x", vec![2, 2], &[1.0, 1.0, 3.0, 0.0])], &[]).unwrap();
    assert_eq!(out[0].name, "predict");
    assert_eq!(fp64(&out[0]), &[1.5, 6.5]);
    let err = m.infer(&[x("x", vec![1, 2], &[f64::NAN, 1.0])], &[]).unwrap_err();
    assert!(err.is_client_error() && err.to_string().contains("NaN at row 0, column 0"), "{err}");
}

#[test]
fn scalers_pass_nan_through_and_refuse_infinity() {
    let scaler = object(
        "sklearn.preprocessing._data",
        "StandardScaler",
        vec![],
        &[
            ("n_features_in_", Value::Int(2)),
            ("with_mean", Value::Bool(true)),
            ("with_std", Value::Bool(false)),
            ("mean_", f64s(vec![2], &[1.0, 2.0])),
            ("scale_", Value::None),
            ("feature_names_in_", strs(&["a", "b"])),
        ],
    );
    let m = load(&scaler).unwrap();
    let names: Vec<&str> = m.signature().inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    // Columns by name, in any order.
    let out = m.infer(&[x("b", vec![2], &[2.0, 5.0]), x("a", vec![2], &[f64::NAN, 4.0])], &[]).unwrap();
    assert_eq!(out[0].name, "transform");
    assert_eq!(out[0].shape, vec![2, 2]);
    let v = fp64(&out[0]);
    assert!(v[0].is_nan());
    assert_eq!(&v[1..], &[0.0, 3.0, 3.0]);
    let err = m.infer(&[x("x", vec![1, 2], &[f64::INFINITY, 1.0])], &[]).unwrap_err();
    assert!(err.to_string().contains("infinity"), "{err}");
}

fn tree_classifier(version_tag: &str, nan_left: Option<bool>, values: &[f64]) -> Value {
    object(
        "sklearn.tree._classes",
        "DecisionTreeClassifier",
        vec![],
        &[
            ("n_features_in_", Value::Int(1)),
            ("classes_", strs(&["no", "yes"])),
            ("splitter", s("best")),
            ("criterion", s("gini")),
            ("tree_", tree(values, 2, nan_left)),
            version(version_tag),
        ],
    )
}

#[test]
fn tree_values_are_counts_before_1_4_and_fractions_after() {
    // Before 1.4 the leaf holds weighted counts: [3, 0] and [0, 1].
    let old = load(&tree_classifier("1.3.2", Some(false), &[3.0, 1.0, 3.0, 0.0, 0.0, 1.0])).unwrap();
    let new = load(&tree_classifier("1.5.0", Some(false), &[0.75, 0.25, 1.0, 0.0, 0.0, 1.0])).unwrap();
    for m in [old, new] {
        let out = m.infer(&[x("x", vec![2, 1], &[0.0, 1.0])], &["predict".into(), "predict_proba".into()]).unwrap();
        assert_eq!(out[0].data, TensorData::Bytes(vec![b"no".to_vec(), b"yes".to_vec()]));
        assert_eq!(fp64(&out[1]), &[1.0, 0.0, 0.0, 1.0]);
        assert_eq!(m.signature().outputs[0].datatype, DataType::Bytes);
    }
}

#[test]
fn nan_follows_missing_go_to_left_where_the_version_takes_nan() {
    let values = [0.75, 0.25, 1.0, 0.0, 0.0, 1.0];
    let nan = [x("x", vec![1, 1], &[f64::NAN])];
    // 1.3+: a best-splitter tree takes NaN and sends it where the node says.
    let left = load(&tree_classifier("1.4.2", Some(true), &values)).unwrap();
    assert_eq!(left.infer(&nan, &[]).unwrap()[0].data, TensorData::Bytes(vec![b"no".to_vec()]));
    let right = load(&tree_classifier("1.4.2", Some(false), &values)).unwrap();
    assert_eq!(right.infer(&nan, &[]).unwrap()[0].data, TensorData::Bytes(vec![b"yes".to_vec()]));
    // Before 1.3 (no missing_go_to_left) NaN is refused, as check_array refuses it.
    let old = load(&tree_classifier("1.2.2", None, &[3.0, 1.0, 3.0, 0.0, 0.0, 1.0])).unwrap();
    let err = old.infer(&nan, &[]).unwrap_err();
    assert!(err.is_client_error() && err.to_string().contains("NaN"), "{err}");
    // Infinity is refused everywhere trees take NaN.
    let err = left.infer(&[x("x", vec![1, 1], &[f64::INFINITY])], &[]).unwrap_err();
    assert!(err.to_string().contains("infinity"), "{err}");
}

#[test]
fn pipelines_skip_passthrough_and_check_widths() {
    let scaler = object(
        "sklearn.preprocessing._data",
        "MinMaxScaler",
        vec![],
        &[
            ("n_features_in_", Value::Int(1)),
            ("scale_", f64s(vec![1], &[0.5])),
            ("min_", f64s(vec![1], &[0.25])),
            ("clip", Value::Bool(true)),
            ("feature_range", Value::Tuple(Rc::from(vec![Value::Int(0), Value::Int(1)]))),
        ],
    );
    let clf = tree_classifier("1.6.1", Some(false), &[0.75, 0.25, 1.0, 0.0, 0.0, 1.0]);
    let step = |name: &str, v: Value| Value::Tuple(Rc::from(vec![s(name), v]));
    let steps = Value::List(Rc::new(RefCell::new(vec![
        step("skip", s("passthrough")),
        step("scale", scaler.clone()),
        step("clf", clf),
    ])));
    let p = object("sklearn.pipeline", "Pipeline", vec![], &[("steps", steps)]);
    let m = load(&p).unwrap();
    assert_eq!(m.kind(), ModelKind::Sklearn("Pipeline"));
    // A binary classifier's positive class is its second class, as scikit-learn's `pos_label`.
    assert_eq!(m.label(), Some(LabelOutput::new("predict", Some(Label::Text("yes".to_owned())))));
    // The first step (the scaler) decides the input type.
    assert_eq!(m.signature().inputs[0].datatype, DataType::Fp64);
    // x = 0.4 → 0.45 → left ("no"); x = 10 → clipped to 1.0 → right ("yes").
    let out = m.infer(&[x("x", vec![2, 1], &[0.4, 10.0])], &[]).unwrap();
    assert_eq!(out[0].data, TensorData::Bytes(vec![b"no".to_vec(), b"yes".to_vec()]));

    let wide = object(
        "sklearn.linear_model._base",
        "LinearRegression",
        vec![],
        &[("n_features_in_", Value::Int(3)), ("coef_", f64s(vec![3], &[1.0, 1.0, 1.0]))],
    );
    let steps = Value::List(Rc::new(RefCell::new(vec![step("scale", scaler), step("reg", wide)])));
    let err = load(&object("sklearn.pipeline", "Pipeline", vec![], &[("steps", steps)])).unwrap_err();
    assert!(err.to_string().contains("step `reg` takes 3 features but the step before gives 1"), "{err}");
}

#[test]
fn gradient_boosting_init_follows_the_version() {
    // One stage, one stump; the init DummyClassifier's prior for class 1 is 0.25.
    let gb = |v: &str, loss: Value| {
        let reg = object(
            "sklearn.tree._classes",
            "DecisionTreeRegressor",
            vec![],
            &[("tree_", tree(&[0.0, -1.0, 2.0], 1, None)), ("n_features_in_", Value::Int(1))],
        );
        let estimators = Value::Array(Rc::new(NdArray {
            dtype: Dtype::simple('O', 8),
            shape: vec![1, 1],
            fortran: false,
            data: ArrayData::Objects(vec![reg]),
        }));
        let dummy = object(
            "sklearn.dummy",
            "DummyClassifier",
            vec![],
            &[("class_prior_", f64s(vec![2], &[0.75, 0.25])), ("strategy", s("prior"))],
        );
        object(
            "sklearn.ensemble._gb",
            "GradientBoostingClassifier",
            vec![],
            &[
                ("n_features_in_", Value::Int(1)),
                ("classes_", i64s(&[0, 1])),
                ("estimators_", estimators),
                ("learning_rate", Value::Float(0.5)),
                ("init_", dummy),
                ("_loss", loss),
                version(v),
            ],
        )
    };
    let legacy = object("sklearn.ensemble._gb_losses", "BinomialDeviance", vec![], &[]);
    let new = object("sklearn._loss.loss", "HalfBinomialLoss", vec![], &[]);
    let init = (0.25f64 / 0.75).ln();
    for m in [load(&gb("1.3.2", legacy)).unwrap(), load(&gb("1.9.1", new)).unwrap()] {
        let out =
            m.infer(&[x("x", vec![2, 1], &[0.0, 1.0])], &["decision_function".into(), "predict_proba".into()]).unwrap();
        let d = fp64(&out[0]);
        assert!((d[0] - (init - 0.5)).abs() < 1e-15 && (d[1] - (init + 1.0)).abs() < 1e-15, "{d:?}");
        let p = fp64(&out[1]);
        assert!((p[1] - 1.0 / (1.0 + (-d[0]).exp())).abs() < 1e-16);
        assert_eq!(m.signature().outputs.len(), 3);
    }
}

#[test]
fn np_sum_groups_as_numpy_does() {
    let small = [0.1, 0.2, 0.3];
    assert_eq!(np_sum(&small), (0.1 + 0.2) + 0.3);
    let v: Vec<f64> = (0..9).map(|i| 0.1 * f64::from(i)).collect();
    let r: Vec<f64> = (0..8).map(|j| if j == 0 { v[0] } else { v[j] }).collect();
    let expected = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7])) + v[8];
    assert_eq!(np_sum(&v), expected);
}

#[test]
fn versions_parse() {
    assert_eq!(parse_version("1.3.2"), Some((1, 3)));
    assert_eq!(parse_version("1.10.dev0"), Some((1, 10)));
    assert_eq!(parse_version("1.6rc1"), Some((1, 6)));
    assert_eq!(parse_version("x"), None);
}
