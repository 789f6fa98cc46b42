//! scikit-learn estimators read from a pickle, served with scikit-learn's own outputs.
//!
//! The pickle interpreter ([`crate::pickle`]) turns a `model.joblib` / `model.pkl` into inert
//! [`Value`]s; [`from_value`] reads the fitted attributes of the estimator they describe and builds
//! Ferroserve's own representation of it (trees compiled into the flat layout of [`crate::tree`],
//! coefficients and scaling vectors as plain `Vec<f64>`), so that nothing of the pickle outlives the
//! load. Outputs are named after the estimator's methods, as MLServer names them: `predict` (the
//! default, as KServe's sklearn server), `predict_proba`, `decision_function`, `score_samples`,
//! `transform`.
//!
//! Semantics follow the scikit-learn version that wrote the file (`_sklearn_version`), where
//! versions differ: tree values are weighted class counts before 1.4 and class fractions from 1.4;
//! GradientBoosting's losses live in `sklearn.ensemble._gb_losses` before 1.4 and in
//! `sklearn._loss` from 1.4; which estimators take NaN at predict time changes from 1.3 on.
//! See `docs/formats.md` for the full list.
//!
//! # Layout
//! - this file: [`from_value`], attribute reading, class labels, the served [`Model`] wrapper.
//! - `trees`: decision trees, random forests, extra trees, IsolationForest; reading `Tree` objects.
//! - `boosting`: gradient boosting classifier and regressor.
//! - `linear`: LinearRegression, Ridge, Lasso, ElasticNet, LogisticRegression.
//! - `scaler`: StandardScaler, MinMaxScaler, RobustScaler.
//! - `pipeline`: `Pipeline` of the above.
//! - `multioutput`: `MultiOutputRegressor`, `MultiOutputClassifier` over any of these.
//! - `xgb`: XGBoost's `XGBRegressor` and `XGBClassifier` (the booster is read by [`crate::xgboost`]).
//! - `multioutput`: `MultiOutputRegressor` / `MultiOutputClassifier` of the above.
//! - `lgbm`: LightGBM's `LGBMRegressor` / `LGBMClassifier` (on [`crate::lightgbm`]).

mod boosting;
mod lgbm;
mod linear;
mod multioutput;
mod pipeline;
mod scaler;
mod trees;
mod xgb;

use std::fmt;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use crate::error::{Error, InferError, InputError, Result};
use crate::model::{
    Label, LabelOutput, Matrix, Model, ModelKind, NonFinite, Signature, TabularInput, TensorSpec, check_finite,
};
use crate::pickle::{NdArray, Value};
use crate::tensor::{DataType, Tensor, TensorData};

/// Builds a servable model from the estimator a pickle evaluated to.
///
/// `path` is the pickle file, for error messages.
///
/// # Errors
/// [`Error::Pickle`] when the value is not an estimator Ferroserve serves (`unsupported estimator
/// sklearn.svm._classes.SVC`), is not fitted, or has attributes of unexpected types or shapes;
/// the reason names the class and the attribute.
pub fn from_value(value: &Value, path: &Path) -> Result<Arc<dyn Model>> {
    let estimator = estimator(value, path)?;
    Ok(Arc::new(SklearnModel::new(estimator)))
}

/// Reads any supported estimator (also a pipeline step).
fn estimator(value: &Value, path: &Path) -> Result<Box<dyn Estimator>> {
    let Some(class) = value.class() else {
        return Err(Error::Pickle {
            path: path.to_path_buf(),
            reason: format!("the pickle holds a {}, not a scikit-learn estimator", value.type_name()),
        });
    };
    let obj = Attrs::new(value, path)?;
    let full = class.to_string();
    let est: Box<dyn Estimator> = match (class.module.as_str(), class.name.as_str()) {
        ("sklearn.ensemble._iforest", "IsolationForest") => Box::new(trees::isolation_forest(&obj)?),
        ("sklearn.ensemble._forest", "RandomForestClassifier" | "ExtraTreesClassifier")
        | ("sklearn.tree._classes", "DecisionTreeClassifier" | "ExtraTreeClassifier") => {
            Box::new(trees::ForestClassifier::read(&obj)?)
        }
        ("sklearn.ensemble._forest", "RandomForestRegressor" | "ExtraTreesRegressor")
        | ("sklearn.tree._classes", "DecisionTreeRegressor" | "ExtraTreeRegressor") => {
            Box::new(trees::ForestRegressor::read(&obj)?)
        }
        ("sklearn.ensemble._gb", "GradientBoostingClassifier" | "GradientBoostingRegressor") => {
            Box::new(boosting::GradientBoosting::read(&obj)?)
        }
        ("sklearn.linear_model._base", "LinearRegression")
        | ("sklearn.linear_model._ridge", "Ridge")
        | ("sklearn.linear_model._coordinate_descent", "Lasso" | "ElasticNet") => {
            Box::new(linear::LinearRegressor::read(&obj)?)
        }
        ("sklearn.linear_model._logistic", "LogisticRegression") => Box::new(linear::LogisticRegression::read(&obj)?),
        ("sklearn.preprocessing._data", "StandardScaler" | "MinMaxScaler" | "RobustScaler") => {
            Box::new(scaler::Scaler::read(&obj)?)
        }
        ("sklearn.pipeline", "Pipeline") => Box::new(pipeline::Pipeline::read(&obj)?),
        ("sklearn.multioutput", "MultiOutputRegressor" | "MultiOutputClassifier") => {
            Box::new(multioutput::MultiOutput::read(&obj)?)
        }
        ("xgboost.sklearn", "XGBRegressor" | "XGBClassifier") => Box::new(xgb::XgbEstimator::read(&obj)?),
        ("lightgbm.sklearn", "LGBMRegressor" | "LGBMClassifier") => Box::new(lgbm::Lgbm::read(&obj)?),
        _ => return Err(Error::Pickle { path: path.to_path_buf(), reason: format!("unsupported estimator {full}") }),
    };
    Ok(est)
}

/// The class name of a supported estimator, as [`ModelKind::Sklearn`] holds it.
fn kind_of(class: &str) -> &'static str {
    match class {
        "IsolationForest" => "IsolationForest",
        "RandomForestClassifier" => "RandomForestClassifier",
        "ExtraTreesClassifier" => "ExtraTreesClassifier",
        "DecisionTreeClassifier" => "DecisionTreeClassifier",
        "ExtraTreeClassifier" => "ExtraTreeClassifier",
        "RandomForestRegressor" => "RandomForestRegressor",
        "ExtraTreesRegressor" => "ExtraTreesRegressor",
        "DecisionTreeRegressor" => "DecisionTreeRegressor",
        "ExtraTreeRegressor" => "ExtraTreeRegressor",
        "GradientBoostingClassifier" => "GradientBoostingClassifier",
        "GradientBoostingRegressor" => "GradientBoostingRegressor",
        "LinearRegression" => "LinearRegression",
        "Ridge" => "Ridge",
        "Lasso" => "Lasso",
        "ElasticNet" => "ElasticNet",
        "LogisticRegression" => "LogisticRegression",
        "StandardScaler" => "StandardScaler",
        "MinMaxScaler" => "MinMaxScaler",
        "RobustScaler" => "RobustScaler",
        "Pipeline" => "Pipeline",
        "MultiOutputRegressor" => "MultiOutputRegressor",
        "MultiOutputClassifier" => "MultiOutputClassifier",
        "XGBRegressor" => "XGBRegressor",
        "XGBClassifier" => "XGBClassifier",
        "LGBMRegressor" => "LGBMRegressor",
        "LGBMClassifier" => "LGBMClassifier",
        _ => "estimator",
    }
}

/// A scikit-learn `major.minor` version.
pub(crate) type Version = (u32, u32);

/// An estimator object and the file it came from: typed attribute reads whose errors name the
/// class and the attribute.
pub(crate) struct Attrs<'a> {
    value: &'a Value,
    path: &'a Path,
    class: String,
    /// The class's own name (`RandomForestClassifier`).
    pub(crate) name: String,
    /// `_sklearn_version`, the scikit-learn that pickled the estimator.
    pub(crate) version: Option<Version>,
}

impl<'a> Attrs<'a> {
    pub(crate) fn new(value: &'a Value, path: &'a Path) -> Result<Self> {
        let Some(class) = value.class() else {
            return Err(Error::Pickle {
                path: path.to_path_buf(),
                reason: format!("expected a scikit-learn object, found a {}", value.type_name()),
            });
        };
        let version = value.attr("_sklearn_version").and_then(|v| v.as_str().and_then(parse_version));
        Ok(Attrs { value, path, class: class.to_string(), name: class.name.clone(), version })
    }

    /// A child object (a tree, a step), read with the same file; it inherits the version when it
    /// records none.
    pub(crate) fn child<'b>(&self, value: &'b Value) -> Result<Attrs<'b>>
    where
        'a: 'b,
    {
        let mut a = Attrs::new(value, self.path)?;
        a.version = a.version.or(self.version);
        Ok(a)
    }

    pub(crate) fn path(&self) -> &Path {
        self.path
    }

    /// A handle on the object itself (cheap: values are shared).
    pub(crate) fn value_handle(&self) -> Value {
        self.value.clone()
    }

    pub(crate) fn class(&self) -> &str {
        &self.class
    }

    /// An error about this object.
    pub(crate) fn bad(&self, reason: impl fmt::Display) -> Error {
        Error::Pickle { path: self.path.to_path_buf(), reason: format!("{}: {reason}", self.class) }
    }

    /// The attribute, `None` when absent or `None`.
    pub(crate) fn opt(&self, name: &str) -> Option<Value> {
        self.value.attr(name).filter(|v| !matches!(v, Value::None))
    }

    /// The attribute, required.
    pub(crate) fn get(&self, name: &str) -> Result<Value> {
        self.opt(name).ok_or_else(|| self.bad(format!("missing attribute `{name}` (is the estimator fitted?)")))
    }

    pub(crate) fn f64(&self, name: &str) -> Result<f64> {
        let v = self.get(name)?;
        v.as_f64()
            .or_else(|| v.as_array().filter(|a| a.len() == 1).and_then(|a| a.to_f64().ok()?.first().copied()))
            .ok_or_else(|| self.bad(format!("attribute `{name}` is a {}, expected a number", v.type_name())))
    }

    pub(crate) fn usize(&self, name: &str) -> Result<usize> {
        let v = self.get(name)?;
        v.as_int()
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| self.bad(format!("attribute `{name}` is a {}, expected a count", v.type_name())))
    }

    pub(crate) fn str(&self, name: &str) -> Option<String> {
        self.opt(name).and_then(|v| v.as_str().map(str::to_owned))
    }

    pub(crate) fn array(&self, name: &str) -> Result<Rc<NdArray>> {
        let v = self.get(name)?;
        v.as_array().ok_or_else(|| self.bad(format!("attribute `{name}` is a {}, expected an array", v.type_name())))
    }

    /// A numeric array as float64, with its shape.
    pub(crate) fn f64s(&self, name: &str) -> Result<(Vec<f64>, Vec<usize>)> {
        let v = self.get(name)?;
        if let Some(x) = v.as_f64() {
            return Ok((vec![x], Vec::new()));
        }
        let a = v
            .as_array()
            .ok_or_else(|| self.bad(format!("attribute `{name}` is a {}, expected an array", v.type_name())))?;
        let data = a.to_f64().map_err(|e| self.bad(format!("attribute `{name}`: {e}")))?;
        Ok((data, a.shape.clone()))
    }

    /// A numeric vector of `n` float64 (a 1-D array, or a 2-D array of one row).
    pub(crate) fn vector(&self, name: &str, n: usize) -> Result<Vec<f64>> {
        let (data, shape) = self.f64s(name)?;
        if data.len() != n || shape.iter().filter(|&&d| d != 1).count() > 1 {
            return Err(self.bad(format!("attribute `{name}` has shape {shape:?}, expected {n} values")));
        }
        Ok(data)
    }

    /// `n_features_in_` and `feature_names_in_`.
    pub(crate) fn input(&self) -> Result<TabularInput> {
        let n_features = self.usize("n_features_in_")?;
        if n_features == 0 {
            return Err(self.bad("n_features_in_ is 0"));
        }
        let feature_names = match self.opt("feature_names_in_") {
            None => None,
            Some(v) => {
                let a = v.as_array().ok_or_else(|| self.bad("feature_names_in_ is not an array"))?;
                let names = a.to_strings().map_err(|e| self.bad(format!("feature_names_in_: {e}")))?;
                if names.len() != n_features {
                    return Err(self.bad(format!("{} feature names for {n_features} features", names.len())));
                }
                Some(names)
            }
        };
        Ok(TabularInput { n_features, feature_names })
    }

    /// The scikit-learn version is at least `v` (unknown versions count as old).
    pub(crate) fn at_least(&self, v: Version) -> bool {
        self.version.is_some_and(|have| have >= v)
    }
}

fn parse_version(s: &str) -> Option<Version> {
    let mut parts = s.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts.next()?.chars().take_while(char::is_ascii_digit).collect();
    Some((major, minor.parse().ok()?))
}

/// Class labels (`classes_`), returned as their own type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Labels {
    /// Integer classes → INT64.
    Int(Vec<i64>),
    /// Float classes → FP64.
    Float(Vec<f64>),
    /// Boolean classes → BOOL.
    Bool(Vec<bool>),
    /// String classes → BYTES (UTF-8).
    Str(Vec<String>),
}

impl Labels {
    pub(crate) fn read(obj: &Attrs<'_>) -> Result<Labels> {
        Labels::read_named(obj, "classes_")
    }

    /// The labels in attribute `name` (`classes_`, or LightGBM's `_classes`).
    pub(crate) fn read_named(obj: &Attrs<'_>, name: &str) -> Result<Labels> {
        let a = obj.array(name)?;
        let bad = |e: String| obj.bad(format!("{name}: {e}"));
        let labels = match a.dtype.kind {
            'b' => Labels::Bool(a.to_i64().map_err(bad)?.into_iter().map(|v| v != 0).collect()),
            'i' | 'u' => Labels::Int(a.to_i64().map_err(bad)?),
            'f' => Labels::Float(a.to_f64().map_err(bad)?),
            'U' | 'S' => Labels::Str(a.to_strings().map_err(bad)?),
            'O' => {
                let values = a.to_values().map_err(bad)?;
                if values.iter().all(|v| v.as_str().is_some()) {
                    Labels::Str(values.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                } else if values.iter().all(|v| matches!(v, Value::Bool(_))) {
                    Labels::Bool(values.iter().filter_map(Value::as_bool).collect())
                } else if values.iter().all(|v| matches!(v, Value::Int(_))) {
                    Labels::Int(values.iter().filter_map(Value::as_int).collect())
                } else if values.iter().all(|v| matches!(v, Value::Float(_) | Value::Int(_))) {
                    Labels::Float(values.iter().filter_map(Value::as_f64).collect())
                } else {
                    return Err(bad("an object array of mixed or unsupported label types".to_owned()));
                }
            }
            _ => return Err(bad(format!("labels of dtype {} are not supported", a.dtype.descr()))),
        };
        if labels.len() < 2 {
            return Err(obj.bad(format!("{name} has {} classes; at least 2 are needed", labels.len())));
        }
        Ok(labels)
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Labels::Int(v) => v.len(),
            Labels::Float(v) => v.len(),
            Labels::Bool(v) => v.len(),
            Labels::Str(v) => v.len(),
        }
    }

    pub(crate) fn datatype(&self) -> DataType {
        match self {
            Labels::Int(_) => DataType::Int64,
            Labels::Float(_) => DataType::Fp64,
            Labels::Bool(_) => DataType::Bool,
            Labels::Str(_) => DataType::Bytes,
        }
    }

    /// The label output of a classifier with these classes: `predict`, whose positive class is the
    /// second of two (scikit-learn's `pos_label` for binary problems); `None` for float classes, which
    /// are values, not labels a client can send back.
    pub(crate) fn label_output(&self) -> Option<LabelOutput> {
        let positive = match self {
            Labels::Float(_) => return None,
            _ if self.len() != 2 => None,
            Labels::Int(v) => Some(Label::Int(v[1])),
            Labels::Bool(v) => Some(Label::Bool(v[1])),
            Labels::Str(v) => Some(Label::Text(v[1].clone())),
        };
        Some(LabelOutput::new("predict", positive))
    }

    /// The labels at `indices` (each below [`Self::len`]).
    pub(crate) fn take(&self, indices: &[usize]) -> TensorData {
        match self {
            Labels::Int(v) => TensorData::Int64(indices.iter().map(|&i| v[i]).collect()),
            Labels::Float(v) => TensorData::Fp64(indices.iter().map(|&i| v[i]).collect()),
            Labels::Bool(v) => TensorData::Bool(indices.iter().map(|&i| v[i]).collect()),
            Labels::Str(v) => TensorData::Bytes(indices.iter().map(|&i| v[i].as_bytes().to_vec()).collect()),
        }
    }
}

/// The feature matrix an estimator receives: float32 straight from the request (tree models cast
/// to float32, and casting the request's own values avoids a double rounding), or float64.
#[derive(Debug, Clone)]
pub(crate) enum Features {
    F32(Matrix<f32>),
    F64(Matrix<f64>),
}

/// The precision an estimator computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Precision {
    /// `check_array(dtype=float32)`: trees.
    F32,
    /// float64: linear models, scalers.
    F64,
}

impl Features {
    /// As float32 (numpy's `astype(float32)`: round to nearest), checked against `allow`.
    pub(crate) fn into_f32(self, input: &str, allow: NonFinite) -> Result<Matrix<f32>, InputError> {
        let m = match self {
            Features::F32(m) => m,
            #[allow(clippy::cast_possible_truncation)]
            Features::F64(m) => Matrix { data: m.data.iter().map(|&v| v as f32).collect(), rows: m.rows, cols: m.cols },
        };
        check_finite(&m, input, allow, "infinity or a value too large for float32")?;
        Ok(m)
    }

    /// As float64 (exact), checked against `allow`.
    pub(crate) fn into_f64(self, input: &str, allow: NonFinite) -> Result<Matrix<f64>, InputError> {
        let m = match self {
            Features::F64(m) => m,
            Features::F32(m) => {
                Matrix { data: m.data.iter().map(|&v| f64::from(v)).collect(), rows: m.rows, cols: m.cols }
            }
        };
        check_finite(&m, input, allow, "infinity")?;
        Ok(m)
    }
}

/// A fitted estimator computing on a feature matrix; the served [`SklearnModel`] and pipelines
/// drive it.
pub(crate) trait Estimator: Send + Sync + fmt::Debug {
    /// The class name ([`ModelKind::Sklearn`]).
    fn kind(&self) -> &'static str;
    /// [`Model::label`].
    fn label(&self) -> Option<LabelOutput> {
        None
    }
    /// `n_features_in_` and `feature_names_in_`.
    fn input(&self) -> &TabularInput;
    /// What the estimator casts its input to.
    fn precision(&self) -> Precision;
    /// Every output, the default (`predict`, or `transform` for transformers) first.
    fn outputs(&self) -> &[TensorSpec];
    /// Computes the outputs `names` (each one of [`Self::outputs`]) for `x`; `input` names the
    /// request input in errors.
    fn run(&self, x: Features, input: &str, names: &[String]) -> Result<Vec<Tensor>, InferError>;
    /// `transform`, for transformers (pipeline steps before the last); `None` for other estimators.
    fn transform(&self, x: Features, input: &str) -> Option<Result<Matrix<f64>, InferError>> {
        let _ = (x, input);
        None
    }
    /// The number of columns `transform` returns.
    fn n_outputs(&self) -> usize {
        self.input().n_features
    }
    /// Refuses a request before its inputs are assembled, with a reason more helpful than the generic
    /// one (LightGBM's category columns sent as strings); by default every request passes.
    fn check_request(&self, inputs: &[Tensor]) -> Result<(), InputError> {
        let _ = inputs;
        Ok(())
    }
}

/// A scikit-learn estimator served as a [`Model`].
#[derive(Debug)]
pub(crate) struct SklearnModel {
    estimator: Box<dyn Estimator>,
    signature: Signature,
}

impl SklearnModel {
    fn new(estimator: Box<dyn Estimator>) -> Self {
        let input = estimator.input();
        let datatype = match estimator.precision() {
            Precision::F32 => DataType::Fp32,
            Precision::F64 => DataType::Fp64,
        };
        // Fitted on named columns: declare one input per column, as a DataFrame is sent; a single
        // [N, F] matrix is accepted all the same.
        let inputs = match &input.feature_names {
            Some(names) => names.iter().map(|n| TensorSpec::new(n.clone(), datatype, vec![-1])).collect(),
            None => vec![TensorSpec::new("input-0", datatype, vec![-1, dim(input.n_features)])],
        };
        let signature = Signature { inputs, outputs: estimator.outputs().to_vec() };
        SklearnModel { estimator, signature }
    }
}

impl Model for SklearnModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn kind(&self) -> ModelKind {
        ModelKind::Sklearn(self.estimator.kind())
    }

    fn label(&self) -> Option<LabelOutput> {
        self.estimator.label()
    }

    fn infer(&self, inputs: &[Tensor], outputs: &[String]) -> Result<Vec<Tensor>, InferError> {
        self.signature.check_outputs(outputs)?;
        let default: Vec<String> = self.signature.default_output().map(str::to_owned).into_iter().collect();
        let names = if outputs.is_empty() { &default[..] } else { outputs };
        self.estimator.check_request(inputs)?;
        let input = self.estimator.input();
        // Non-finite values are checked by the estimator, which knows what scikit-learn admits.
        let x = match self.estimator.precision() {
            Precision::F32 => Features::F32(input.to_f32_allowing(inputs, NonFinite::Allow)?),
            Precision::F64 => Features::F64(input.to_f64(inputs, NonFinite::Allow)?),
        };
        let first = inputs.first().map_or("", |t| t.name.as_str());
        self.estimator.run(x, first, names)
    }
}

/// A dimension for a [`TensorSpec`].
pub(crate) fn dim(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The first index of the largest value (`numpy.argmax`; NaN never wins here as outputs are finite).
pub(crate) fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// numpy's sum of a contiguous float64 run (`np.sum` along the last axis): pairwise summation with
/// eight accumulators in blocks of up to 128, so that results agree bit for bit.
pub(crate) fn np_sum(a: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = a.len();
    if n < 8 {
        // numpy starts from -0.0 so that a sum of negative zeros stays -0.0.
        let mut res = -0.0;
        for &v in a {
            res += v;
        }
        res
    } else if n <= BLOCK {
        let mut r = [a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]];
        let mut i = 8;
        while i + 8 <= n {
            for (j, rj) in r.iter_mut().enumerate() {
                *rj += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &a[i..] {
            res += v;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        np_sum(&a[..n2]) + np_sum(&a[n2..])
    }
}

/// A tensor of `rows` values, or `rows × cols` when `cols` is given.
pub(crate) fn tensor(name: &str, rows: usize, cols: Option<usize>, data: TensorData) -> Result<Tensor, InferError> {
    let shape = match cols {
        Some(c) => vec![rows, c],
        None => vec![rows],
    };
    // The estimator sized `data` itself: a mismatch is its failure, not the caller's.
    Tensor::new(name, shape, data).map_err(InferError::compute)
}

#[cfg(test)]
pub(crate) mod tests;
