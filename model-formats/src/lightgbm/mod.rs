//! LightGBM models: the text model LightGBM writes (`booster.save_model("model.txt")`, also the
//! `model.bst` of KServe's LightGBM server, and the string a pickled `lightgbm.Booster` holds in
//! `_handle`), read as data by a bounded parser and predicted exactly as LightGBM predicts.
//!
//! Prediction (`src/boosting/gbdt_prediction.cpp`, `include/LightGBM/tree.h`), all in float64:
//! - values with `|x| <= 1e-35` (`kZeroThreshold`, a float32 constant) become `0.0`, as LightGBM's
//!   dense-to-sparse row conversion drops them; NaN is kept;
//! - numerical split: NaN becomes `0.0` unless the split's missing type is NaN; then a missing value
//!   (NaN for type NaN, zero for type Zero) goes the split's default way (`decision_type` bit 1), and any
//!   other value goes left when `x <= threshold`;
//! - categorical split (only in trees with `num_cat > 0`): NaN and negative values go right, otherwise
//!   `(int)x` (truncated) goes left when its bit is set in the split's `cat_threshold` bitset;
//! - the raw score of output `k` is the sum of the leaf values of trees `it × num_tree_per_iteration + k`,
//!   iteration by iteration from `0.0` (divided by the iteration count for `average_output`, random
//!   forests); then the objective converts it: identity (or `sign(x)·x²` under `sqrt`) for regression,
//!   `1 / (1 + exp(-sigmoid·x))` for binary and per class for multiclassova, softmax for multiclass.
//!
//! [`LightGbmModel`] serves a native file with scikit-learn's output names; `crate::sklearn` serves the
//! pickled `LGBMRegressor` / `LGBMClassifier` wrappers on the same [`Booster`].

#[cfg(test)]
mod tests;
mod text;

use std::path::Path;

use crate::error::{Error, InferError, InputError, Result};
use crate::model::{Label, LabelOutput, Matrix, Model, ModelKind, NonFinite, Signature, TabularInput, TensorSpec};
use crate::tensor::{DataType, Tensor, TensorData};

/// The file names a model folder gives a LightGBM text model: `model.txt` (LightGBM's own habit) and
/// `model.bst` (KServe's LightGBM server, MLServer). Either is a LightGBM model only when its content is.
pub const FILE_NAMES: [&str; 2] = ["model.txt", "model.bst"];

/// The most leaves a tree may have (LightGBM's own bound on `num_leaves`).
pub const MAX_LEAVES: usize = 131_072;

/// The most classes (and trees per iteration) a model may have.
pub const MAX_CLASSES: usize = 1 << 16;

/// `kZeroThreshold`: `1e-35f` widened to double.
const ZERO_THRESHOLD: f64 = 1.000_000_018_002_509_5e-35;

/// How a model's raw scores become its predictions (the `objective=` line).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    /// `regression`, `regression_l1`, `huber`, `fair`, `quantile`, `mape`: the raw score, or
    /// `sign(x)·x²` when trained with `reg_sqrt` (`sqrt`).
    Regression {
        /// `reg_sqrt`: the model was fitted on `sign(y)·sqrt(|y|)`.
        sqrt: bool,
    },
    /// `binary sigmoid:S`: the probability of the positive class, `1 / (1 + exp(-S·x))`.
    Binary {
        /// The sigmoid's scale.
        sigmoid: f64,
    },
    /// `multiclass num_class:K`: softmax over the `K` raw scores.
    Multiclass {
        /// The number of classes.
        num_class: usize,
    },
    /// `multiclassova num_class:K sigmoid:S`: one sigmoid per class (the rows do not sum to 1).
    MulticlassOva {
        /// The number of classes.
        num_class: usize,
        /// The sigmoid's scale.
        sigmoid: f64,
    },
}

impl Objective {
    /// The number of classes of a classifier; `None` for regression.
    pub fn n_classes(self) -> Option<usize> {
        match self {
            Objective::Regression { .. } => None,
            Objective::Binary { .. } => Some(2),
            Objective::Multiclass { num_class } | Objective::MulticlassOva { num_class, .. } => Some(num_class),
        }
    }
}

/// One internal node of a tree.
#[derive(Debug, Clone, Copy)]
struct Node {
    threshold: f64,
    feature: usize,
    left: i32,
    right: i32,
    decision: i8,
    /// The categorical bitset of a categorical split: `cat_threshold[cat_start..cat_end]`.
    cat_start: usize,
    cat_end: usize,
}

/// One tree, validated: every child is a node or leaf of this tree, reached from the root exactly once.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    nodes: Vec<Node>,
    leaf_value: Vec<f64>,
    /// `num_cat > 0`: categorical bits are honoured (LightGBM's `GetLeaf` ignores them otherwise).
    categorical: bool,
    cat_threshold: Vec<u32>,
}

impl Tree {
    fn leaf(leaf_value: Vec<f64>) -> Tree {
        Tree { nodes: Vec::new(), leaf_value, categorical: false, cat_threshold: Vec::new() }
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        leaf_value: Vec<f64>,
        left: Vec<i32>,
        right: Vec<i32>,
        features: Vec<usize>,
        threshold: Vec<f64>,
        decision: Vec<i8>,
        categorical: bool,
        cat_ranges: &[(usize, usize, usize)],
        cat_threshold: Vec<u32>,
    ) -> Tree {
        let mut nodes: Vec<Node> = (0..left.len())
            .map(|i| Node {
                threshold: threshold[i],
                feature: features[i],
                left: left[i],
                right: right[i],
                decision: decision[i],
                cat_start: 0,
                cat_end: 0,
            })
            .collect();
        for &(node, start, end) in cat_ranges {
            nodes[node].cat_start = start;
            nodes[node].cat_end = end;
        }
        Tree { nodes, leaf_value, categorical, cat_threshold }
    }

    /// The leaf value `x` (a row, zeros already normalised) reaches.
    fn predict(&self, x: &[f64]) -> f64 {
        if self.nodes.is_empty() {
            return self.leaf_value[0];
        }
        let mut node: i32 = 0;
        // Validation guarantees every index below is in range and that the walk ends at a leaf.
        while let Ok(i) = usize::try_from(node) {
            let n = &self.nodes[i];
            let v = x[n.feature];
            node = if self.categorical && n.decision & 1 == 1 {
                self.categorical_decision(n, v)
            } else {
                numerical_decision(n, v)
            };
        }
        self.leaf_value[usize::try_from(!node).unwrap_or(0)]
    }

    /// `Tree::CategoricalDecision`.
    fn categorical_decision(&self, n: &Node, v: f64) -> i32 {
        if v.is_nan() {
            return n.right;
        }
        // `static_cast<int>`: truncation; out of int's range x86 gives INT_MIN, which goes right too.
        if !(v > -2_147_483_649.0 && v < 2_147_483_648.0) {
            return n.right;
        }
        #[allow(clippy::cast_possible_truncation)]
        let i = v as i32;
        let Ok(i) = usize::try_from(i) else { return n.right };
        let bits = &self.cat_threshold[n.cat_start..n.cat_end];
        match bits.get(i / 32) {
            Some(word) if (word >> (i % 32)) & 1 == 1 => n.left,
            _ => n.right,
        }
    }
}

/// `Tree::NumericalDecision`.
fn numerical_decision(n: &Node, v: f64) -> i32 {
    let missing = (n.decision >> 2) & 3;
    let v = if v.is_nan() && missing != 2 { 0.0 } else { v };
    if (missing == 1 && (-ZERO_THRESHOLD..=ZERO_THRESHOLD).contains(&v)) || (missing == 2 && v.is_nan()) {
        return if n.decision & 2 != 0 { n.left } else { n.right };
    }
    if v <= n.threshold { n.left } else { n.right }
}

/// A LightGBM model (`GBDT`), parsed and validated.
#[derive(Debug, Clone)]
pub struct Booster {
    num_class: usize,
    /// Trees per iteration: 1, or the number of classes.
    per_iteration: usize,
    n_features: usize,
    feature_names: Vec<String>,
    feature_infos: Vec<String>,
    objective: Objective,
    average_output: bool,
    trees: Vec<Tree>,
    /// Iterations used for prediction (all, or `best_iteration`).
    iterations: usize,
    pandas_categorical: Option<Vec<Vec<serde_json::Value>>>,
}

impl Booster {
    /// Parses a LightGBM text model.
    ///
    /// # Errors
    /// Why the text is not a model this build serves: a malformed, truncated or inconsistent model (with
    /// the line), or an unsupported objective or linear trees.
    pub fn parse(text: &str) -> Result<Booster, String> {
        text::parse(text)
    }

    /// Parses a LightGBM text model from bytes (UTF-8).
    ///
    /// # Errors
    /// As [`Booster::parse`], and for bytes that are not UTF-8.
    pub fn from_bytes(bytes: &[u8]) -> Result<Booster, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| format!("not a LightGBM text model (not UTF-8: {e})"))?;
        Booster::parse(text)
    }

    /// The number of features (`max_feature_idx + 1`).
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// The feature names (`feature_names=`; `Column_0`, `Column_1` … when fitted without names).
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// Whether the feature names are the ones LightGBM makes up for unnamed columns (`Column_<i>`).
    pub fn has_default_feature_names(&self) -> bool {
        self.feature_names.iter().enumerate().all(|(i, n)| n.strip_prefix("Column_") == Some(&i.to_string()))
    }

    /// The features declared categorical (their `feature_infos` list categories, not a `[min:max]` range).
    pub fn categorical_features(&self) -> Vec<usize> {
        (0..self.n_features)
            .filter(|&i| {
                let info = self.feature_infos[i].as_str();
                !info.starts_with('[') && info != "none"
            })
            .collect()
    }

    /// The objective.
    pub fn objective(&self) -> Objective {
        self.objective
    }

    /// The number of classes (`num_class`; 1 for regression and binary models).
    pub fn num_class(&self) -> usize {
        self.num_class
    }

    /// Raw scores per row: 1, or the number of classes of a multiclass model.
    pub fn outputs_per_row(&self) -> usize {
        self.per_iteration
    }

    /// The number of trees in the file.
    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }

    /// The boosting iterations prediction uses.
    pub fn iterations(&self) -> usize {
        self.iterations
    }

    /// Predicts with the first `n` iterations only, as `Booster.predict(num_iteration=n)` does for
    /// `n > 0` (what the scikit-learn wrapper passes when the booster has a `best_iteration`); `0` means
    /// all of them.
    pub fn limit_iterations(&mut self, n: usize) {
        let all = self.trees.len() / self.per_iteration;
        self.iterations = if n == 0 { all } else { n.min(all) };
    }

    /// The categories of the pandas `category` columns the model was fitted on (`pandas_categorical`),
    /// in column order; a request carries their codes (index in the list).
    pub fn pandas_categorical(&self) -> Option<&[Vec<serde_json::Value>]> {
        self.pandas_categorical.as_deref()
    }

    /// Raw scores (`raw_score=True`), `[rows, outputs_per_row]` row-major.
    ///
    /// # Panics
    /// When `x.cols` differs from [`Self::n_features`].
    pub fn predict_raw(&self, x: &Matrix<f64>) -> Vec<f64> {
        assert_eq!(x.cols, self.n_features, "predict_raw: wrong number of columns");
        let k = self.per_iteration;
        let mut out = vec![0.0; x.rows * k];
        let mut row = vec![0.0; self.n_features];
        for (r, xr) in x.row_iter().enumerate() {
            for (dst, &v) in row.iter_mut().zip(xr) {
                *dst = if v.abs() <= ZERO_THRESHOLD { 0.0 } else { v };
            }
            let acc = &mut out[r * k..(r + 1) * k];
            for trees in self.trees.chunks_exact(k).take(self.iterations) {
                for (a, tree) in acc.iter_mut().zip(trees) {
                    *a += tree.predict(&row);
                }
            }
            if self.average_output {
                #[allow(clippy::cast_precision_loss)]
                let n = self.iterations as f64;
                for a in acc.iter_mut() {
                    *a /= n;
                }
            }
        }
        out
    }

    /// Predictions (`Booster.predict`), `[rows, outputs_per_row]` row-major: the objective's conversion
    /// of the raw scores.
    ///
    /// # Panics
    /// As [`Self::predict_raw`].
    pub fn predict(&self, x: &Matrix<f64>) -> Vec<f64> {
        let mut out = self.predict_raw(x);
        match self.objective {
            Objective::Regression { sqrt: false } => {}
            Objective::Regression { sqrt: true } => {
                for v in &mut out {
                    let sign = f64::from(i8::from(*v > 0.0) - i8::from(*v < 0.0));
                    *v = sign * *v * *v;
                }
            }
            Objective::Binary { sigmoid } | Objective::MulticlassOva { sigmoid, .. } => {
                for v in &mut out {
                    *v = 1.0 / (1.0 + (-sigmoid * *v).exp());
                }
            }
            Objective::Multiclass { num_class } => {
                for row in out.chunks_exact_mut(num_class) {
                    softmax(row);
                }
            }
        }
        out
    }

    /// Class probabilities as the scikit-learn wrapper's `predict_proba` gives them, `[rows, n_classes]`:
    /// `[1 - p, p]` for a binary model, the converted scores otherwise; `None` for regression.
    ///
    /// # Panics
    /// As [`Self::predict_raw`].
    pub fn predict_proba(&self, x: &Matrix<f64>) -> Option<Vec<f64>> {
        self.objective.n_classes()?;
        let p = self.predict(x);
        Some(match self.objective {
            Objective::Binary { .. } => p.iter().flat_map(|&p| [1.0 - p, p]).collect(),
            _ => p,
        })
    }
}

/// `Common::Softmax`, in place.
fn softmax(row: &mut [f64]) {
    let mut wmax = row[0];
    for &v in &row[1..] {
        // `std::max(v, wmax)`.
        wmax = if v < wmax { wmax } else { v };
    }
    let mut wsum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - wmax).exp();
        wsum += *v;
    }
    for v in row.iter_mut() {
        *v /= wsum;
    }
}

/// Whether `prefix` (a file's first bytes) starts a LightGBM text model: its first line is `tree`.
pub fn is_text_model(prefix: &[u8]) -> bool {
    prefix.starts_with(b"tree\n") || prefix.starts_with(b"tree\r\n")
}

/// Whether the file at `path` is a LightGBM text model, by its first bytes (`false` when unreadable).
pub fn is_text_model_file(path: &Path) -> bool {
    crate::files::read_prefix(path, 6).is_ok_and(|prefix| is_text_model(&prefix))
}

/// Reads and parses a LightGBM text model file, ready to serve.
///
/// # Errors
/// [`crate::files::read`]'s errors (a file over `max_bytes` is [`Error::TooLarge`]); [`Error::InvalidModel`]
/// for one [`Booster::parse`]
/// refuses, with its reason.
pub fn load_file(path: &Path, max_bytes: u64) -> Result<LightGbmModel> {
    let bytes = crate::files::read(path, max_bytes, crate::files::MAX_MODEL_BYTES)?;
    let booster = Booster::from_bytes(&bytes).map_err(|reason| Error::invalid(path, reason))?;
    Ok(LightGbmModel::new(booster))
}

/// The outputs of a LightGBM model served with scikit-learn's names: `predict` (FP64 for regression,
/// `labels` for a classifier) and, for classifiers, `predict_proba` (`[N, n_classes]`).
pub(crate) fn output_specs(booster: &Booster, labels: DataType) -> Vec<TensorSpec> {
    match booster.objective.n_classes() {
        None => vec![TensorSpec::new("predict", DataType::Fp64, vec![-1])],
        Some(k) => vec![
            TensorSpec::new("predict", labels, vec![-1]),
            TensorSpec::new("predict_proba", DataType::Fp64, vec![-1, i64::try_from(k).unwrap_or(i64::MAX)]),
        ],
    }
}

/// The input specification: one input per named column, or one `[N, F]` matrix.
pub(crate) fn input_specs(input: &TabularInput) -> Vec<TensorSpec> {
    match &input.feature_names {
        Some(names) => names.iter().map(|n| TensorSpec::new(n.clone(), DataType::Fp64, vec![-1])).collect(),
        None => vec![TensorSpec::new(
            "input-0",
            DataType::Fp64,
            vec![-1, i64::try_from(input.n_features).unwrap_or(i64::MAX)],
        )],
    }
}

/// Computes `names` (each one of [`output_specs`]) for `x`; `labels` turns class indices into the
/// `predict` output.
pub(crate) fn run(
    booster: &Booster,
    x: &Matrix<f64>,
    names: &[String],
    labels: impl Fn(&[usize]) -> TensorData,
) -> Result<Vec<Tensor>, InferError> {
    let rows = x.rows;
    let Some(proba) = booster.predict_proba(x) else {
        let predict = booster.predict(x);
        return names
            .iter()
            .map(|name| Ok(Tensor::new(name.clone(), vec![rows], TensorData::Fp64(predict.clone()))?))
            .collect();
    };
    let k = booster.objective.n_classes().unwrap_or(1);
    names
        .iter()
        .map(|name| {
            let t = match name.as_str() {
                "predict_proba" => Tensor::new(name.clone(), vec![rows, k], TensorData::Fp64(proba.clone())),
                _ => {
                    let index: Vec<usize> = proba.chunks_exact(k).map(argmax).collect();
                    Tensor::new(name.clone(), vec![rows], labels(&index))
                }
            };
            t.map_err(InferError::compute)
        })
        .collect()
}

/// The first index of the largest value (`numpy.argmax`).
fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// Refuses BYTES inputs of a model fitted on pandas categories with what to send instead: LightGBM's
/// wrapper maps category strings to codes through `pandas_categorical`, which a request does not carry.
pub(crate) fn check_text_inputs(booster: &Booster, inputs: &[Tensor]) -> Result<(), InputError> {
    let Some(categories) = booster.pandas_categorical() else { return Ok(()) };
    let Some(t) = inputs.iter().find(|t| t.datatype() == DataType::Bytes) else { return Ok(()) };
    let mut listed = serde_json::to_string(categories).unwrap_or_default();
    if listed.chars().count() > 200 {
        listed = listed.chars().take(200).collect::<String>() + "…";
    }
    Err(InputError::DataType {
        input: t.name.clone(),
        expected: format!(
            "numbers; the model was fitted on pandas categories {listed}: send each category as its code, its \
             index in that list (NaN when missing)"
        ),
        got: DataType::Bytes,
    })
}

/// A native LightGBM text model served as a [`Model`]: `predict` and, for classifiers, `predict_proba`,
/// named as scikit-learn's wrapper names them. A native booster has no `classes_`: a classifier's
/// `predict` is the class index (INT64), and its positive class is `1`.
#[derive(Debug)]
pub struct LightGbmModel {
    booster: Booster,
    input: TabularInput,
    signature: Signature,
}

impl LightGbmModel {
    /// Serves `booster`, with all its trees. Its feature names name the inputs unless they are
    /// LightGBM's made-up `Column_<i>`.
    pub fn new(booster: Booster) -> Self {
        let feature_names =
            if booster.has_default_feature_names() { None } else { Some(booster.feature_names().to_vec()) };
        let input = TabularInput { n_features: booster.n_features(), feature_names };
        let signature = Signature { inputs: input_specs(&input), outputs: output_specs(&booster, DataType::Int64) };
        LightGbmModel { booster, input, signature }
    }

    /// The model.
    pub fn booster(&self) -> &Booster {
        &self.booster
    }
}

impl Model for LightGbmModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn kind(&self) -> ModelKind {
        ModelKind::LightGbm
    }

    fn label(&self) -> Option<LabelOutput> {
        let k = self.booster.objective.n_classes()?;
        Some(LabelOutput::new("predict", (k == 2).then_some(Label::Int(1))))
    }

    fn infer(&self, inputs: &[Tensor], outputs: &[String]) -> Result<Vec<Tensor>, InferError> {
        self.signature.check_outputs(outputs)?;
        check_text_inputs(&self.booster, inputs)?;
        let x = self.input.to_f64(inputs, NonFinite::Allow)?;
        let default: Vec<String> = self.signature.default_output().map(str::to_owned).into_iter().collect();
        let names = if outputs.is_empty() { &default[..] } else { outputs };
        run(&self.booster, &x, names, |index| {
            TensorData::Int64(index.iter().map(|&i| i64::try_from(i).unwrap_or(i64::MAX)).collect())
        })
    }
}
