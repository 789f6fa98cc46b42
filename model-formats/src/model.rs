//! The interface every served model implements, and the tabular-input rules shared by the
//! scikit-learn-style models.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{InferError, InputError};
use crate::tensor::{DataType, Tensor};

/// One input or output as a model declares it (KServe v2 `metadata_tensor`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// The tensor's name.
    pub name: String,
    /// Its element type. For inputs, the type the model computes in; every numeric type is accepted
    /// and converted.
    pub datatype: DataType,
    /// Its shape; `-1` marks a variable dimension (the batch).
    pub shape: Vec<i64>,
}

impl TensorSpec {
    /// Builds a spec.
    pub fn new(name: impl Into<String>, datatype: DataType, shape: Vec<i64>) -> Self {
        TensorSpec { name: name.into(), datatype, shape }
    }
}

/// What a model takes and returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    /// The inputs a request must carry.
    pub inputs: Vec<TensorSpec>,
    /// Every output the model can produce, the default first.
    pub outputs: Vec<TensorSpec>,
}

impl Signature {
    /// The output returned when a request names none (the first declared output).
    pub fn default_output(&self) -> Option<&str> {
        self.outputs.first().map(|o| o.name.as_str())
    }

    /// Whether requests written for `other` fit this signature too: the same input names, datatypes and
    /// shapes, so that two versions can share traffic (a canary, a new default) without a client seeing a 400.
    ///
    /// # Errors
    /// What differs, in words.
    pub fn same_inputs(&self, other: &Signature) -> Result<(), String> {
        let show = |s: &Signature| {
            s.inputs.iter().map(|i| format!("{} {} {:?}", i.name, i.datatype, i.shape)).collect::<Vec<_>>().join(", ")
        };
        if self.inputs == other.inputs {
            Ok(())
        } else {
            Err(format!("inputs [{}] differ from [{}]", show(self), show(other)))
        }
    }

    /// Checks that every requested output exists.
    ///
    /// # Errors
    /// [`InputError::UnknownOutput`] naming the first unknown output and the available ones.
    pub fn check_outputs(&self, requested: &[String]) -> Result<(), InputError> {
        for name in requested {
            if !self.outputs.iter().any(|o| &o.name == name) {
                return Err(InputError::UnknownOutput {
                    name: name.clone(),
                    available: self.outputs.iter().map(|o| o.name.clone()).collect(),
                });
            }
        }
        Ok(())
    }
}

/// A loaded model: pure computation, safe to share between threads.
///
/// Implementations validate their inputs and never panic on client data: every bad input is an
/// [`InferError::Input`].
///
/// ```
/// use ferroserve_formats::{DataType, Model, Tensor, TensorData};
/// use ferroserve_formats::tree::{DecisionTree, IsolationForest, IsolationForestParams};
///
/// // One tree: split feature 0 at 0.5; left leaf holds 3 training samples, right leaf 1.
/// let tree = DecisionTree {
///     children_left: vec![1, -1, -1],
///     children_right: vec![2, -1, -1],
///     feature: vec![0, -2, -2],
///     threshold: vec![0.5, -2.0, -2.0],
///     n_node_samples: vec![4, 3, 1],
/// };
/// let params = IsolationForestParams::with_max_samples(4);
/// let forest = IsolationForest::new(params, 1, None, vec![tree], vec![vec![0]]).unwrap();
///
/// let x = Tensor::new("input-0", vec![2, 1], TensorData::Fp64(vec![0.0, 1.0])).unwrap();
/// let out = forest.infer(&[x], &["predict".to_owned(), "score_samples".to_owned()]).unwrap();
/// assert_eq!(out[0].datatype(), DataType::Int64);
/// assert_eq!(out[1].shape, vec![2]);
/// ```
pub trait Model: Send + Sync + fmt::Debug {
    /// The inputs and outputs, for model metadata and request validation.
    fn signature(&self) -> &Signature;

    /// The model's kind; its text form (`isolation_forest`, `sklearn.Pipeline`) is the v2 `platform`.
    fn kind(&self) -> ModelKind;

    /// The output that holds the model's predicted label, and its positive value (the anomaly, for a
    /// detector), when the model predicts labels; `None` for regressors and transformers. Servers keep
    /// this output for feedback (accuracy, and precision/recall when a positive value is declared).
    fn label(&self) -> Option<LabelOutput> {
        None
    }

    /// Whether even a small request costs enough compute (about a millisecond or more) that a server
    /// should run it off its async executor. Tree and linear models answer a row in microseconds and keep
    /// the default `false`; recurrent networks say `true`.
    fn is_compute_heavy(&self) -> bool {
        false
    }

    /// Whether running several requests as one batch (concatenated along the first dimension of every
    /// input and output) costs less than running them one by one, so that a server should batch
    /// concurrent requests. By default the compute-heavy models: for the LSTM autoencoder a batch of 64
    /// windows costs a fraction of 64 single windows, while a tree model's per-request overhead is
    /// already small next to its per-row cost. A model that says `true` must give each row of a batch
    /// the answer it would give that row alone.
    fn gains_from_batching(&self) -> bool {
        self.is_compute_heavy()
    }

    /// Runs the model on `inputs` and returns the `outputs` named (in that order), or the default
    /// output when `outputs` is empty.
    ///
    /// # Errors
    /// [`InferError::Input`] for inputs of the wrong shape, type or value and for unknown output names;
    /// [`InferError::Compute`] when the computation itself fails.
    fn infer(&self, inputs: &[Tensor], outputs: &[String]) -> Result<Vec<Tensor>, InferError>;
}

/// What kind of model serves: Ferroserve's own artifacts, or the library class a file was written from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ModelKind {
    /// Ferroserve's native IsolationForest artifact (`model.json` + `model.safetensors`).
    IsolationForest,
    /// The LSTM autoencoder (PyTorch weights).
    LstmAutoencoder,
    /// A native XGBoost model file (`model.json`, `model.ubj`, `model.bst`).
    XGBoost,
    /// A scikit-learn estimator read from a pickle: its class name (`IsolationForest`, `Pipeline`).
    Sklearn(&'static str),
    /// A native LightGBM text model (`model.txt`, `model.bst`).
    LightGbm,
    /// A model implemented outside this crate (by an embedding program or a test), by its name.
    Other(&'static str),
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelKind::IsolationForest => f.write_str("isolation_forest"),
            ModelKind::LstmAutoencoder => f.write_str("lstm_autoencoder"),
            ModelKind::XGBoost => f.write_str("xgboost"),
            ModelKind::Sklearn(class) => write!(f, "sklearn.{class}"),
            ModelKind::LightGbm => f.write_str("lightgbm"),
            ModelKind::Other(name) => f.write_str(name),
        }
    }
}

/// A predicted label: an integer class, a flag or a string class (feedback compares them by type and
/// value, and a JSON client gets them with that type).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Label {
    /// An integer class (`-1`/`1` from IsolationForest's `predict`).
    Int(i64),
    /// A flag (`is_anomaly`).
    Bool(bool),
    /// A string class.
    Text(String),
}

/// Which output of a model holds its predicted label, and which label is the positive class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelOutput {
    /// The output's name (`predict`, `is_anomaly`).
    pub output: String,
    /// The positive class (the anomaly, for a detector), for precision and recall; `None` when the
    /// model names none (a multi-class classifier): accuracy only.
    pub positive: Option<Label>,
}

impl LabelOutput {
    /// The label output `output` whose positive class is `positive`.
    pub fn new(output: impl Into<String>, positive: Option<Label>) -> Self {
        LabelOutput { output: output.into(), positive }
    }

    /// The labels held by `tensor` (this output), one per row; `None` when its type holds no labels
    /// (floats).
    pub fn labels(tensor: &Tensor) -> Option<Vec<Label>> {
        use crate::tensor::TensorData;
        Some(match &tensor.data {
            TensorData::Int64(v) => v.iter().map(|&i| Label::Int(i)).collect(),
            TensorData::Int32(v) => v.iter().map(|&i| Label::Int(i64::from(i))).collect(),
            TensorData::Bool(v) => v.iter().map(|&b| Label::Bool(b)).collect(),
            TensorData::Bytes(v) => v.iter().map(|b| Label::Text(String::from_utf8_lossy(b).into_owned())).collect(),
            _ => return None,
        })
    }
}

/// A row-major matrix of `rows × cols` values.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix<T> {
    /// The values, row after row.
    pub data: Vec<T>,
    /// The number of rows (samples).
    pub rows: usize,
    /// The number of columns (features).
    pub cols: usize,
}

impl<T> Matrix<T> {
    /// Row `i`.
    ///
    /// # Panics
    /// When `i >= rows`.
    pub fn row(&self, i: usize) -> &[T] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Iterates over the rows.
    pub fn row_iter(&self) -> impl Iterator<Item = &[T]> {
        self.data.chunks_exact(self.cols.max(1)).take(self.rows)
    }
}

/// How a tabular model (one row per sample, one column per feature) reads a request's inputs.
///
/// - one input of shape `[N, F]`: the feature matrix, whatever its name;
/// - `F` inputs of shape `[N]` or `[N, 1]`: one column each (as a pandas DataFrame sent by KServe's and
///   MLServer's clients), placed by name when every name is one of the model's feature names, otherwise
///   in the order given.
#[derive(Debug, Clone, PartialEq)]
pub struct TabularInput {
    /// The number of features (`n_features_in_`).
    pub n_features: usize,
    /// Feature names (`feature_names_in_`), when the model was fitted on named columns.
    pub feature_names: Option<Vec<String>>,
}

impl TabularInput {
    /// Builds the `[N, F]` float32 matrix, as scikit-learn's tree models do with `check_array(dtype=float32)`,
    /// and rejects NaN and infinite values (also values too large for float32) as scikit-learn does.
    ///
    /// # Errors
    /// Client errors for a wrong number of inputs, wrong shapes, BYTES data, or non-finite values.
    pub fn to_f32(&self, inputs: &[Tensor]) -> Result<Matrix<f32>, InputError> {
        self.to_f32_allowing(inputs, NonFinite::Reject)
    }

    /// Builds the `[N, F]` float32 matrix, rejecting the non-finite values `allow` does not admit
    /// (scikit-learn's `check_array(dtype=float32, ensure_all_finite=…)`).
    ///
    /// # Errors
    /// As [`Self::to_f32`].
    pub fn to_f32_allowing(&self, inputs: &[Tensor], allow: NonFinite) -> Result<Matrix<f32>, InputError> {
        let m = self.gather(inputs, |t, out| t.data.extend_f32(out))?;
        let first = inputs.first().map_or("", |t| t.name.as_str());
        check_finite(&m, first, allow, "infinity or a value too large for float32")?;
        Ok(m)
    }

    /// Builds the `[N, F]` float64 matrix (every numeric type widened exactly, as numpy's
    /// `astype(float64)`), rejecting the non-finite values `allow` does not admit.
    ///
    /// # Errors
    /// Client errors for a wrong number of inputs, wrong shapes, BYTES data, or non-finite values.
    pub fn to_f64(&self, inputs: &[Tensor], allow: NonFinite) -> Result<Matrix<f64>, InputError> {
        let m = self.gather(inputs, |t, out| t.data.extend_f64(out))?;
        let first = inputs.first().map_or("", |t| t.name.as_str());
        check_finite(&m, first, allow, "infinity")?;
        Ok(m)
    }

    fn gather<T>(
        &self,
        inputs: &[Tensor],
        extend: impl Fn(&Tensor, &mut Vec<T>) -> Option<()>,
    ) -> Result<Matrix<T>, InputError>
    where
        T: Copy + Default,
    {
        let f = self.n_features;
        match inputs {
            [] => Err(InputError::Inputs(format!("the request has no inputs; expected one input of shape [N, {f}]"))),
            [t] => {
                let rows = match t.shape.as_slice() {
                    [n, c] if *c == f => *n,
                    [n] if f == 1 => *n,
                    shape => {
                        return Err(InputError::Shape {
                            input: t.name.clone(),
                            reason: format!(
                                "shape {shape:?} does not fit this model, which takes [N, {f}] (N rows of {f} features)"
                            ),
                        });
                    }
                };
                let mut data = Vec::with_capacity(t.data.len());
                extend(t, &mut data).ok_or_else(|| not_numeric(t))?;
                Ok(Matrix { data, rows, cols: f })
            }
            columns if columns.len() == f => self.gather_columns(columns, extend),
            more => Err(InputError::Inputs(format!(
                "the request has {} inputs; this model takes one input of shape [N, {f}] or {f} inputs of shape [N] (one per feature)",
                more.len()
            ))),
        }
    }

    fn gather_columns<T>(
        &self,
        columns: &[Tensor],
        extend: impl Fn(&Tensor, &mut Vec<T>) -> Option<()>,
    ) -> Result<Matrix<T>, InputError>
    where
        T: Copy + Default,
    {
        let f = self.n_features;
        let rows = columns[0].data.len();
        for c in columns {
            let ok = matches!(c.shape.as_slice(), [n] | [n, 1] if *n == rows);
            if !ok {
                return Err(InputError::Shape {
                    input: c.name.clone(),
                    reason: format!(
                        "shape {:?}: with one input per feature, every input must have shape [{rows}] or [{rows}, 1]",
                        c.shape
                    ),
                });
            }
        }
        // Place columns by feature name when all names match, as a DataFrame would be.
        let order: Vec<usize> = match &self.feature_names {
            Some(names) if columns.iter().all(|c| names.contains(&c.name)) => {
                let mut order = Vec::with_capacity(f);
                for name in names {
                    let hits: Vec<usize> =
                        columns.iter().enumerate().filter(|(_, c)| &c.name == name).map(|(i, _)| i).collect();
                    match hits.as_slice() {
                        [i] => order.push(*i),
                        _ => {
                            return Err(InputError::Inputs(format!(
                                "feature `{name}` must be given exactly once, found {} times",
                                hits.len()
                            )));
                        }
                    }
                }
                order
            }
            _ => (0..f).collect(),
        };
        let mut data = vec![T::default(); rows * f];
        let mut col = Vec::with_capacity(rows);
        for (j, &src) in order.iter().enumerate() {
            col.clear();
            extend(&columns[src], &mut col).ok_or_else(|| not_numeric(&columns[src]))?;
            for (i, v) in col.iter().enumerate() {
                data[i * f + j] = *v;
            }
        }
        Ok(Matrix { data, rows, cols: f })
    }
}

/// Which non-finite values a model takes: scikit-learn's `ensure_all_finite` (`True`, `"allow-nan"`,
/// `False`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonFinite {
    /// NaN and infinities are errors.
    Reject,
    /// NaN is taken (a missing value), infinities are errors.
    AllowNan,
    /// Everything is taken.
    Allow,
}

/// A float element whose finiteness can be checked.
pub trait FloatElement: Copy {
    /// `is_nan`.
    fn nan(self) -> bool;
    /// `is_infinite`.
    fn inf(self) -> bool;
}

impl FloatElement for f32 {
    fn nan(self) -> bool {
        self.is_nan()
    }
    fn inf(self) -> bool {
        self.is_infinite()
    }
}

impl FloatElement for f64 {
    fn nan(self) -> bool {
        self.is_nan()
    }
    fn inf(self) -> bool {
        self.is_infinite()
    }
}

/// Rejects the values of `m` that `allow` does not admit, naming the first one's row and column.
/// `infinity` words what an infinite value means for the caller (for float32, also an overflow).
///
/// # Errors
/// [`InputError::Value`] naming `input`.
pub fn check_finite<T: FloatElement>(
    m: &Matrix<T>,
    input: &str,
    allow: NonFinite,
    infinity: &str,
) -> Result<(), InputError> {
    let bad = |v: T| match allow {
        NonFinite::Reject => v.nan() || v.inf(),
        NonFinite::AllowNan => v.inf(),
        NonFinite::Allow => false,
    };
    if let Some(pos) = m.data.iter().position(|&v| bad(v)) {
        let kind = if m.data[pos].nan() { "NaN" } else { infinity };
        return Err(InputError::Value {
            input: input.to_owned(),
            reason: format!("contains {kind} at row {}, column {}", pos / m.cols.max(1), pos % m.cols.max(1)),
        });
    }
    Ok(())
}

fn not_numeric(t: &Tensor) -> InputError {
    InputError::DataType { input: t.name.clone(), expected: "a numeric or BOOL tensor".to_owned(), got: t.datatype() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::TensorData;

    fn spec(names: Option<&[&str]>) -> TabularInput {
        TabularInput { n_features: 2, feature_names: names.map(|n| n.iter().map(|s| (*s).to_owned()).collect()) }
    }

    #[test]
    fn one_matrix_input() {
        let t = Tensor::new("anything", vec![2, 2], TensorData::Int32(vec![1, 2, 3, 4])).unwrap();
        let m = spec(None).to_f32(&[t]).unwrap();
        assert_eq!((m.rows, m.cols), (2, 2));
        assert_eq!(m.row(1), &[3.0, 4.0]);
    }

    #[test]
    fn wrong_feature_count_names_the_expected_shape() {
        let t = Tensor::new("x", vec![1, 3], TensorData::Fp32(vec![1.0, 2.0, 3.0])).unwrap();
        let err = spec(None).to_f32(&[t]).unwrap_err();
        assert!(matches!(err, InputError::Shape { .. }));
        assert!(err.to_string().contains("[N, 2]"), "{err}");
    }

    #[test]
    fn columns_are_placed_by_feature_name() {
        let b = Tensor::new("b", vec![2], TensorData::Fp64(vec![10.0, 20.0])).unwrap();
        let a = Tensor::new("a", vec![2, 1], TensorData::Int64(vec![1, 2])).unwrap();
        let m = spec(Some(&["a", "b"])).to_f32(&[b.clone(), a.clone()]).unwrap();
        assert_eq!(m.data, vec![1.0, 10.0, 2.0, 20.0]);
        // Without names, the order given is kept.
        let m = spec(None).to_f32(&[b, a]).unwrap();
        assert_eq!(m.data, vec![10.0, 1.0, 20.0, 2.0]);
    }

    #[test]
    fn nan_and_overflow_are_rejected() {
        let t = Tensor::new("x", vec![1, 2], TensorData::Fp64(vec![1.0, f64::NAN])).unwrap();
        let err = spec(None).to_f32(&[t]).unwrap_err();
        assert!(err.to_string().contains("NaN at row 0, column 1"), "{err}");
        let t = Tensor::new("x", vec![1, 2], TensorData::Fp64(vec![1e300, 0.0])).unwrap();
        assert!(spec(None).to_f32(&[t]).unwrap_err().to_string().contains("too large"));
    }

    #[test]
    fn bytes_are_rejected() {
        let t = Tensor::new("x", vec![1, 2], TensorData::Bytes(vec![b"a".to_vec(), b"b".to_vec()])).unwrap();
        let err = spec(None).to_f32(&[t]).unwrap_err();
        assert!(matches!(err, InputError::DataType { got: DataType::Bytes, .. }));
    }
}
