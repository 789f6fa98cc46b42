//! Tree models: decision trees, random forests and extra trees (classifier and regressor) and
//! IsolationForest, compiled into [`FlatForest`]'s one-array layout; the tree reading shared with
//! gradient boosting (`super::boosting`).
//!
//! scikit-learn semantics reproduced here (`sklearn/tree/_classes.py`, `sklearn/ensemble/_forest.py`,
//! `sklearn/ensemble/_iforest.py`):
//! - the input is cast to float32 and compared `<=` with the float64 thresholds;
//! - a classifier tree's `predict_proba` is its leaf's `value` row: weighted class counts before
//!   scikit-learn 1.4, normalised per leaf as scikit-learn did then (a zero sum divides by 1), and
//!   class fractions from 1.4, used as they are;
//! - forests add the trees' outputs in tree order, starting from zero, then divide by the tree count;
//!   a forest classifier predicts the first class of largest mean probability, a single tree the
//!   first class of largest leaf value;
//! - NaN inputs are taken where the writing version of scikit-learn takes them, and follow each
//!   split's `missing_go_to_left`; elsewhere they are refused as `check_array` refuses them.

use std::rc::Rc;

use super::{Attrs, Estimator, Features, Labels, Precision, argmax, dim, kind_of, np_sum, tensor};
use crate::error::{Error, InferError, Result};
use crate::model::{Label, LabelOutput, NonFinite, TabularInput, TensorSpec};
use crate::pickle::{NdArray, Value};
use crate::tensor::{DataType, Tensor, TensorData};
use crate::tree::{Contamination, DecisionTree, FlatForest, IsolationForest, IsolationForestParams};

/// One `sklearn.tree._tree.Tree`, read.
#[derive(Debug)]
pub(crate) struct SkTree {
    tree: DecisionTree,
    /// `missing_go_to_left` per node (scikit-learn ≥ 1.3).
    missing_left: Option<Vec<bool>>,
    /// `value`, `[node_count, n_outputs, max_n_classes]`.
    value: Vec<f64>,
    max_n_classes: usize,
    /// Outputs (targets) per node: 1, or more for a multi-output regressor.
    n_outputs: usize,
    n_features: usize,
}

impl SkTree {
    /// Reads `est.tree_`.
    fn read(est: &Attrs<'_>) -> Result<SkTree> {
        let tree_value = est.get("tree_")?;
        let t = est.child(&tree_value)?;
        if t.class() != "sklearn.tree._tree.Tree" {
            return Err(est.bad(format!("tree_ is a {}, expected sklearn.tree._tree.Tree", t.class())));
        }
        let args = match &tree_value {
            Value::Object(o) => o.borrow().args.clone(),
            _ => Vec::new(),
        };
        let [n_features, _n_classes, n_outputs] = args.as_slice() else {
            return Err(t.bad(format!("expected (n_features, n_classes, n_outputs) arguments, found {}", args.len())));
        };
        let (Some(n_features), Some(n_outputs)) = (n_features.as_int(), n_outputs.as_int()) else {
            return Err(t.bad("n_features and n_outputs must be integers"));
        };
        let n_outputs =
            usize::try_from(n_outputs).ok().filter(|&k| k >= 1).ok_or_else(|| t.bad("n_outputs below 1"))?;
        let n_features = usize::try_from(n_features).map_err(|_| t.bad("negative n_features"))?;
        let nodes = t.array("nodes")?;
        let node_count = t.usize("node_count")?;
        if nodes.len() != node_count || nodes.shape.len() != 1 {
            return Err(t.bad(format!("nodes has shape {:?}, node_count is {node_count}", nodes.shape)));
        }
        let ints = |name: &str| -> Result<Vec<i64>> {
            nodes.field(name).and_then(|f| f.to_i64()).map_err(|e| t.bad(format!("nodes: {e}")))
        };
        let missing_left = if nodes.has_field("missing_go_to_left") {
            Some(ints("missing_go_to_left")?.into_iter().map(|v| v != 0).collect())
        } else {
            None
        };
        let tree = DecisionTree {
            children_left: ints("left_child")?,
            children_right: ints("right_child")?,
            feature: ints("feature")?,
            threshold: nodes.field("threshold").and_then(|f| f.to_f64()).map_err(|e| t.bad(format!("nodes: {e}")))?,
            n_node_samples: ints("n_node_samples")?,
        };
        let values = t.array("values")?;
        let value = values.to_f64().map_err(|e| t.bad(format!("values: {e}")))?;
        let max_n_classes = match values.shape.as_slice() {
            [n, k, c] if *n == node_count && *k == n_outputs && *c > 0 => *c,
            shape => {
                return Err(t.bad(format!("values has shape {shape:?}, expected [{node_count}, {n_outputs}, _]")));
            }
        };
        tree.validate(n_features).map_err(|e| t.bad(e))?;
        Ok(SkTree { tree, missing_left, value, max_n_classes, n_outputs, n_features })
    }

    /// Node `node`'s value row (of the first output).
    pub(crate) fn value(&self, node: usize) -> &[f64] {
        let width = self.n_outputs * self.max_n_classes;
        &self.value[node * width..node * width + self.max_n_classes]
    }

    /// Node `node`'s first value for each output (a regressor's predictions).
    fn outputs(&self, node: usize) -> impl Iterator<Item = f64> + '_ {
        let width = self.n_outputs * self.max_n_classes;
        self.value[node * width..(node + 1) * width].iter().step_by(self.max_n_classes).copied()
    }
}

/// Refuses multi-output trees where only single-output ones have a meaning here (classifiers, boosting).
pub(crate) fn single_output(obj: &Attrs<'_>, trees: &[SkTree]) -> Result<()> {
    match trees.iter().find(|t| t.n_outputs != 1) {
        Some(t) => Err(obj.bad(format!(
            "{} outputs; multi-output {} is not supported (a MultiOutputClassifier of single-output ones is)",
            t.n_outputs, obj.name
        ))),
        None => Ok(()),
    }
}

/// The sub-estimators of an ensemble (`estimators_`, a list or an object array), or the estimator
/// itself when it is a single tree.
fn members(obj: &Attrs<'_>) -> Result<Vec<Value>> {
    if obj.name.starts_with("DecisionTree") || obj.name.starts_with("ExtraTree") && !obj.name.starts_with("ExtraTrees")
    {
        return Ok(vec![obj_value(obj)]);
    }
    let v = obj.get("estimators_")?;
    let members = match &v {
        Value::Array(a) => a.to_values().map_err(|e| obj.bad(format!("estimators_: {e}")))?,
        other => other.as_seq().ok_or_else(|| obj.bad(format!("estimators_ is a {}", other.type_name())))?,
    };
    if members.is_empty() {
        return Err(obj.bad("estimators_ is empty"));
    }
    Ok(members)
}

fn obj_value(obj: &Attrs<'_>) -> Value {
    obj.value_handle()
}

/// Reads every member's tree, checking it tests `n_features` columns.
pub(crate) fn read_trees(obj: &Attrs<'_>, members: &[Value], n_features: usize) -> Result<Vec<SkTree>> {
    members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let est = obj.child(m)?;
            let t = SkTree::read(&est).map_err(|e| match e {
                Error::Pickle { path, reason } => Error::Pickle { path, reason: format!("estimator {i}: {reason}") },
                other => other,
            })?;
            if t.n_features != n_features {
                return Err(obj.bad(format!("estimator {i} has {} features, the model {n_features}", t.n_features)));
            }
            Ok(t)
        })
        .collect()
}

/// Whether the writing scikit-learn accepts NaN at predict time for this (sub-)estimator, from its
/// class, `splitter`, `criterion` and `monotonic_cst` (`_support_missing_values` and the
/// `allow_nan` tags of each release).
fn tree_takes_nan(est: &Attrs<'_>) -> bool {
    let splitter = est.str("splitter").unwrap_or_default();
    let criterion = est.str("criterion").unwrap_or_default();
    let classifier = est.name.ends_with("Classifier");
    let criterion_ok = if classifier {
        matches!(criterion.as_str(), "gini" | "log_loss" | "entropy")
    } else {
        matches!(criterion.as_str(), "squared_error" | "friedman_mse" | "poisson")
    };
    let monotonic = est.opt("monotonic_cst").is_some();
    let extra = est.name.starts_with("ExtraTree");
    if est.at_least((1, 9)) {
        return if extra { splitter == "random" } else { true };
    }
    if est.at_least((1, 6)) {
        let splitter_ok = if extra { splitter == "random" } else { matches!(splitter.as_str(), "best" | "random") };
        return splitter_ok && criterion_ok && !monotonic;
    }
    if est.at_least((1, 3)) {
        return !extra && splitter == "best" && criterion_ok && !monotonic;
    }
    false
}

/// The NaN policy of a tree ensemble: single trees from 1.3, random forests from 1.4 (as their
/// first tree decides), extra trees when their trees do (1.6).
fn forest_nan(obj: &Attrs<'_>, members: &[Value], trees: &[SkTree]) -> Result<NonFinite> {
    if trees.iter().any(|t| t.missing_left.is_none()) {
        return Ok(NonFinite::Reject);
    }
    let single = members.len() == 1 && !obj.name.contains("Forest") && !obj.name.starts_with("ExtraTrees");
    let first = obj.child(&members[0])?;
    let takes = if single { tree_takes_nan(obj) } else { obj.at_least((1, 4)) && tree_takes_nan(&first) };
    Ok(if takes { NonFinite::AllowNan } else { NonFinite::Reject })
}

pub(crate) fn compile(trees: &[SkTree], n_features: usize, leaf: impl FnMut(usize, usize)) -> FlatForest {
    let columns: Vec<Vec<usize>> = trees.iter().map(|_| (0..n_features).collect()).collect();
    let dts: Vec<DecisionTree> = trees.iter().map(|t| t.tree.clone()).collect();
    let missing: Option<Vec<Vec<bool>>> = trees.iter().map(|t| t.missing_left.clone()).collect();
    FlatForest::build(&dts, &columns, missing.as_deref(), leaf)
}

/// DecisionTreeClassifier, ExtraTreeClassifier, RandomForestClassifier, ExtraTreesClassifier.
#[derive(Debug)]
pub(crate) struct ForestClassifier {
    kind: &'static str,
    input: TabularInput,
    outputs: Vec<TensorSpec>,
    classes: Labels,
    flat: FlatForest,
    /// Per leaf id: the tree's `predict_proba` row (`n_classes` values).
    leaf_proba: Vec<f64>,
    /// Per leaf id: the raw `value` row, for a single tree's `predict` (argmax of the raw values).
    leaf_raw: Vec<f64>,
    /// An ensemble averages; a single tree does not.
    ensemble: bool,
    nan: NonFinite,
}

impl ForestClassifier {
    pub(crate) fn read(obj: &Attrs<'_>) -> Result<Self> {
        let input = obj.input()?;
        let classes = Labels::read(obj)?;
        let c = classes.len();
        let members = members(obj)?;
        let ensemble = !(obj.name.starts_with("DecisionTree") || obj.name == "ExtraTreeClassifier");
        let trees = read_trees(obj, &members, input.n_features)?;
        single_output(obj, &trees)?;
        if let Some(t) = trees.iter().find(|t| t.max_n_classes < c) {
            return Err(obj.bad(format!("a tree has {} class values for {c} classes", t.max_n_classes)));
        }
        // Values are fractions from 1.4 on (used as they are), counts before (normalised).
        let normalise = !obj.at_least((1, 4));
        let nan = forest_nan(obj, &members, &trees)?;
        let (mut leaf_proba, mut leaf_raw) = (Vec::new(), Vec::new());
        let flat = compile(&trees, input.n_features, |t, node| {
            let row = &trees[t].value(node)[..c];
            leaf_raw.extend_from_slice(row);
            if normalise {
                let sum = np_sum(row);
                let sum = if sum == 0.0 { 1.0 } else { sum };
                leaf_proba.extend(row.iter().map(|v| v / sum));
            } else {
                leaf_proba.extend_from_slice(row);
            }
        });
        let outputs = vec![
            TensorSpec::new("predict", classes.datatype(), vec![-1]),
            TensorSpec::new("predict_proba", DataType::Fp64, vec![-1, dim(c)]),
        ];
        Ok(ForestClassifier {
            kind: kind_of(&obj.name),
            input,
            outputs,
            classes,
            flat,
            leaf_proba,
            leaf_raw,
            ensemble,
            nan,
        })
    }
}

impl Estimator for ForestClassifier {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn label(&self) -> Option<LabelOutput> {
        self.classes.label_output()
    }
    fn input(&self) -> &TabularInput {
        &self.input
    }
    fn precision(&self) -> Precision {
        Precision::F32
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(&self, x: Features, input: &str, names: &[String]) -> Result<Vec<Tensor>, InferError> {
        let x = x.into_f32(input, self.nan)?;
        let c = self.classes.len();
        let n_trees = self.flat.n_trees();
        let mut proba = vec![0.0f64; x.rows * c];
        let mut leaves = vec![0usize; if self.ensemble { 0 } else { x.rows }];
        if self.ensemble {
            self.flat.accumulate(&x.data, x.cols, &mut proba, c, |acc, _, leaf| {
                for (a, p) in acc.iter_mut().zip(&self.leaf_proba[leaf * c..(leaf + 1) * c]) {
                    *a += p;
                }
            });
        } else {
            // One tree: the row's leaf decides the label (its raw values), and its probabilities are the answer.
            self.flat.accumulate(&x.data, x.cols, &mut leaves, 1, |l, _, leaf| l[0] = leaf);
            for (acc, &leaf) in proba.chunks_exact_mut(c).zip(&leaves) {
                acc.copy_from_slice(&self.leaf_proba[leaf * c..(leaf + 1) * c]);
            }
        }
        let labels: Vec<usize> = if self.ensemble {
            #[allow(clippy::cast_precision_loss)]
            let denominator = n_trees as f64;
            proba
                .chunks_exact_mut(c)
                .map(|acc| {
                    for a in acc.iter_mut() {
                        *a /= denominator;
                    }
                    argmax(acc)
                })
                .collect()
        } else {
            leaves.iter().map(|&leaf| argmax(&self.leaf_raw[leaf * c..(leaf + 1) * c])).collect()
        };
        names
            .iter()
            .map(|name| match name.as_str() {
                "predict_proba" => tensor(name, x.rows, Some(c), TensorData::Fp64(proba.clone())),
                _ => tensor(name, x.rows, None, self.classes.take(&labels)),
            })
            .collect()
    }
}

/// DecisionTreeRegressor, ExtraTreeRegressor, RandomForestRegressor, ExtraTreesRegressor; single- or
/// multi-output (fitted on a 2-D `y`: `predict` is then `[N, n_outputs]`).
#[derive(Debug)]
pub(crate) struct ForestRegressor {
    kind: &'static str,
    input: TabularInput,
    outputs: Vec<TensorSpec>,
    flat: FlatForest,
    /// Per leaf id: its `n_outputs` values.
    leaf_value: Vec<f64>,
    n_outputs: usize,
    ensemble: bool,
    nan: NonFinite,
}

impl ForestRegressor {
    pub(crate) fn read(obj: &Attrs<'_>) -> Result<Self> {
        let input = obj.input()?;
        let members = members(obj)?;
        let ensemble = !(obj.name.starts_with("DecisionTree") || obj.name == "ExtraTreeRegressor");
        let trees = read_trees(obj, &members, input.n_features)?;
        let n_outputs = trees[0].n_outputs;
        if let Some(t) = trees.iter().find(|t| t.n_outputs != n_outputs) {
            return Err(obj.bad(format!("trees with {} and {} outputs", n_outputs, t.n_outputs)));
        }
        let nan = forest_nan(obj, &members, &trees)?;
        let mut leaf_value = Vec::new();
        let flat = compile(&trees, input.n_features, |t, node| leaf_value.extend(trees[t].outputs(node)));
        let shape = if n_outputs == 1 { vec![-1] } else { vec![-1, dim(n_outputs)] };
        Ok(ForestRegressor {
            kind: kind_of(&obj.name),
            input,
            outputs: vec![TensorSpec::new("predict", DataType::Fp64, shape)],
            flat,
            leaf_value,
            n_outputs,
            ensemble,
            nan,
        })
    }
}

impl Estimator for ForestRegressor {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn input(&self) -> &TabularInput {
        &self.input
    }
    fn precision(&self) -> Precision {
        Precision::F32
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(&self, x: Features, input: &str, names: &[String]) -> Result<Vec<Tensor>, InferError> {
        let x = x.into_f32(input, self.nan)?;
        let n_trees = self.flat.n_trees();
        #[allow(clippy::cast_precision_loss)]
        let denominator = n_trees as f64;
        let k = self.n_outputs;
        let mut predictions = vec![0.0f64; x.rows * k];
        self.flat.accumulate(&x.data, x.cols, &mut predictions, k, |p, _, leaf| {
            for (p, v) in p.iter_mut().zip(&self.leaf_value[leaf * k..(leaf + 1) * k]) {
                *p += v;
            }
        });
        if self.ensemble {
            for p in &mut predictions {
                *p /= denominator;
            }
        }
        let cols = (k > 1).then_some(k);
        names.iter().map(|name| tensor(name, x.rows, cols, TensorData::Fp64(predictions.clone()))).collect()
    }
}

/// IsolationForest, served with the fitted trees, `estimators_features_`, `max_samples_` and
/// `offset_` (the cached `_decision_path_lengths` / `_average_path_length_per_tree` are recomputed).
#[derive(Debug)]
pub(crate) struct IsolationForestModel {
    forest: IsolationForest,
    input: TabularInput,
    outputs: Vec<TensorSpec>,
    nan: NonFinite,
}

pub(crate) fn isolation_forest(obj: &Attrs<'_>) -> Result<IsolationForestModel> {
    let input = obj.input()?;
    let members = members(obj)?;
    let features_value = obj.get("estimators_features_")?;
    let subsets = features_value.as_seq().ok_or_else(|| obj.bad("estimators_features_ is not a list"))?;
    if subsets.len() != members.len() {
        return Err(obj.bad(format!("{} trees but {} feature subsets", members.len(), subsets.len())));
    }
    let mut features = Vec::with_capacity(subsets.len());
    let mut trees = Vec::with_capacity(members.len());
    for (i, (m, cols)) in members.iter().zip(&subsets).enumerate() {
        let cols: Vec<usize> = cols
            .as_array()
            .and_then(|a: Rc<NdArray>| a.to_i64().ok())
            .and_then(|v| v.into_iter().map(|c| usize::try_from(c).ok()).collect())
            .ok_or_else(|| obj.bad(format!("estimators_features_[{i}] is not an array of columns")))?;
        let t = SkTree::read(&obj.child(m)?)?;
        if t.n_features != cols.len() {
            return Err(obj.bad(format!("tree {i} has {} features but a subset of {}", t.n_features, cols.len())));
        }
        features.push(cols);
        trees.push(t);
    }
    let mut params = IsolationForestParams::with_max_samples(obj.usize("max_samples_")?);
    params.offset = obj.f64("offset_")?;
    params.bootstrap = obj.opt("bootstrap").and_then(|b| b.as_bool()).unwrap_or(false);
    params.contamination = match obj.opt("contamination").and_then(|c| c.as_f64()) {
        Some(f) if f > 0.0 && f <= 0.5 => Contamination::Fraction(f),
        _ => Contamination::Auto,
    };
    params.random_state = obj.opt("random_state").and_then(|r| r.as_int()).and_then(|r| u64::try_from(r).ok());
    let missing: Option<Vec<Vec<bool>>> = trees.iter().map(|t| t.missing_left.clone()).collect();
    let dts = trees.into_iter().map(|t| t.tree).collect();
    let with_path = |e: Error| match e {
        Error::InvalidModel { reason, .. } => obj.bad(reason),
        other => other,
    };
    let mut forest = IsolationForest::new(params, input.n_features, input.feature_names.clone(), dts, features)
        .map_err(with_path)?;
    // From 1.6 IsolationForest scores any input (`ensure_all_finite=False`); NaN follows the splits.
    let nan = match &missing {
        Some(flags) if obj.at_least((1, 6)) => {
            forest = forest.with_missing_go_to_left(flags).map_err(with_path)?;
            NonFinite::Allow
        }
        _ => NonFinite::Reject,
    };
    let outputs = IsolationForest::OUTPUTS
        .iter()
        .map(|&name| {
            let datatype = if name == "predict" { DataType::Int64 } else { DataType::Fp64 };
            TensorSpec::new(name, datatype, vec![-1])
        })
        .collect();
    Ok(IsolationForestModel { forest, input, outputs, nan })
}

impl Estimator for IsolationForestModel {
    fn kind(&self) -> &'static str {
        "IsolationForest"
    }
    fn label(&self) -> Option<LabelOutput> {
        Some(LabelOutput::new("predict", Some(Label::Int(-1))))
    }
    fn input(&self) -> &TabularInput {
        &self.input
    }
    fn precision(&self) -> Precision {
        Precision::F32
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(&self, x: Features, input: &str, names: &[String]) -> Result<Vec<Tensor>, InferError> {
        let x = x.into_f32(input, self.nan)?;
        let scores = self.forest.score_samples(&x);
        let offset = self.forest.params().offset;
        names
            .iter()
            .map(|name| {
                let data = match name.as_str() {
                    "score_samples" => TensorData::Fp64(scores.clone()),
                    "decision_function" => TensorData::Fp64(scores.iter().map(|s| s - offset).collect()),
                    _ => TensorData::Int64(scores.iter().map(|s| if s - offset < 0.0 { -1 } else { 1 }).collect()),
                };
                tensor(name, x.rows, None, data)
            })
            .collect()
    }
}
