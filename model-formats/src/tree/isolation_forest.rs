//! IsolationForest inference with scikit-learn's exact semantics (`sklearn/ensemble/_iforest.py`).
//!
//! - the input is cast to float32 and compared `<=` with float64 thresholds (done here with an
//!   equivalent float32 threshold, see [`super::f32_floor`]);
//! - a sample's path length in a tree is the depth of its leaf plus `c(n_node_samples[leaf])`,
//!   computed per leaf exactly as scikit-learn does (`(depth + 1) + c(n) - 1.0`) and summed over trees
//!   in tree order, so results agree to the last bit or two;
//! - `score_samples = -2^(-mean path / c(max_samples_))`, `decision_function = score_samples - offset_`,
//!   `predict = -1 where decision_function < 0 else 1`.

use serde::{Deserialize, Serialize};

use super::{DecisionTree, FlatForest};
use crate::error::{Error, InferError, Result};
use crate::model::{Label, LabelOutput, Matrix, Model, ModelKind, Signature, TabularInput, TensorSpec};
use crate::tensor::{DataType, Tensor, TensorData};

/// The Euler–Mascheroni constant (`numpy.euler_gamma`).
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// `c(n)`, the average path length of an unsuccessful search in a binary search tree of `n` nodes
/// (scikit-learn's `_average_path_length`): 0 for `n <= 1`, 1 for `n == 2`, else
/// `2 (ln(n - 1) + γ) - 2 (n - 1) / n`.
pub fn average_path_length(n: f64) -> f64 {
    if n <= 1.0 {
        0.0
    } else if n == 2.0 {
        1.0
    } else {
        2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
    }
}

/// How the decision threshold `offset_` was chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Contamination {
    /// `contamination="auto"`: `offset_ = -0.5`, as in the original paper.
    Auto,
    /// The expected fraction of outliers in (0, 0.5]; `offset_` is that percentile of training scores.
    Fraction(f64),
}

impl Serialize for Contamination {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Contamination::Auto => s.serialize_str("auto"),
            Contamination::Fraction(f) => s.serialize_f64(*f),
        }
    }
}

impl<'de> Deserialize<'de> for Contamination {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(f64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) if s == "auto" => Ok(Contamination::Auto),
            Raw::Number(f) if f > 0.0 && f <= 0.5 => Ok(Contamination::Fraction(f)),
            Raw::Text(s) => {
                Err(serde::de::Error::custom(format!("contamination must be \"auto\" or a number, not `{s}`")))
            }
            Raw::Number(f) => Err(serde::de::Error::custom(format!("contamination {f} is outside (0, 0.5]"))),
        }
    }
}

/// The fitted attributes of an IsolationForest besides its trees (`model.json`'s `params`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationForestParams {
    /// The number of trees (`n_estimators`).
    pub n_estimators: usize,
    /// Samples drawn per tree (`max_samples_`, already resolved from "auto"/float).
    pub max_samples: usize,
    /// Features drawn per tree (`max_features` resolved to a count).
    pub max_features: usize,
    /// Whether samples were drawn with replacement.
    pub bootstrap: bool,
    /// How `offset` was chosen.
    pub contamination: Contamination,
    /// `offset_`: `decision_function = score_samples - offset`.
    pub offset: f64,
    /// The seed the trees were grown with, when known.
    pub random_state: Option<u64>,
}

impl IsolationForestParams {
    /// Defaults of scikit-learn (`contamination="auto"`, no bootstrap) with the given `max_samples_`;
    /// `n_estimators` and `max_features` are set from the trees by [`IsolationForest::new`].
    pub fn with_max_samples(max_samples: usize) -> Self {
        IsolationForestParams {
            n_estimators: 0,
            max_samples,
            max_features: 0,
            bootstrap: false,
            contamination: Contamination::Auto,
            offset: -0.5,
            random_state: None,
        }
    }
}

/// A fitted IsolationForest, ready to score.
#[derive(Debug, Clone)]
pub struct IsolationForest {
    params: IsolationForestParams,
    input: TabularInput,
    trees: Vec<DecisionTree>,
    features: Vec<Vec<usize>>,
    flat: FlatForest,
    /// Per leaf id: `(depth + 1) + c(n_node_samples) - 1.0`, scikit-learn's per-tree increment.
    leaf_path: Vec<f64>,
    /// `n_estimators * c(max_samples_)`.
    denominator: f64,
    signature: Signature,
}

impl IsolationForest {
    /// Output names, as scikit-learn's methods.
    pub const OUTPUTS: [&'static str; 3] = ["predict", "decision_function", "score_samples"];

    /// Assembles a forest from its trees and each tree's feature subset (`estimators_features_`),
    /// validating every tree. `n_estimators` and `max_features` of `params` are set from the trees.
    ///
    /// # Errors
    /// [`Error::InvalidModel`] (with an empty path; loaders replace it) when a tree is malformed, a
    /// feature subset names a column `>= n_features`, or the counts disagree.
    pub fn new(
        mut params: IsolationForestParams,
        n_features: usize,
        feature_names: Option<Vec<String>>,
        trees: Vec<DecisionTree>,
        features: Vec<Vec<usize>>,
    ) -> Result<Self> {
        let invalid = |reason: String| Error::invalid("", reason);
        if trees.is_empty() {
            return Err(invalid("the forest has no trees".to_owned()));
        }
        if n_features == 0 {
            return Err(invalid("n_features is 0".to_owned()));
        }
        if features.len() != trees.len() {
            return Err(invalid(format!("{} trees but {} feature subsets", trees.len(), features.len())));
        }
        if let Some(names) = feature_names.as_ref().filter(|n| n.len() != n_features) {
            return Err(invalid(format!("{} feature names for {n_features} features", names.len())));
        }
        if params.max_samples == 0 {
            return Err(invalid("max_samples is 0".to_owned()));
        }
        let mut depths = Vec::with_capacity(trees.len());
        for (t, (tree, cols)) in trees.iter().zip(&features).enumerate() {
            if let Some(c) = cols.iter().find(|&&c| c >= n_features) {
                return Err(invalid(format!("tree {t} uses column {c} of {n_features}")));
            }
            depths.push(tree.validate(cols.len()).map_err(|e| invalid(format!("tree {t}: {e}")))?);
        }
        let mut leaf_path = Vec::new();
        let flat = FlatForest::build(&trees, &features, None, |t, node| {
            let depth = f64::from(depths[t][node]);
            #[allow(clippy::cast_precision_loss)]
            let n = trees[t].n_node_samples[node] as f64;
            leaf_path.push((depth + 1.0 + average_path_length(n)) - 1.0);
        });
        debug_assert_eq!(flat.n_leaves(), leaf_path.len());
        params.n_estimators = trees.len();
        params.max_features = features.first().map_or(0, Vec::len);
        #[allow(clippy::cast_precision_loss)]
        let denominator = trees.len() as f64 * average_path_length(params.max_samples as f64);
        let signature = Signature {
            inputs: vec![TensorSpec::new("input-0", DataType::Fp32, vec![-1, n_features as i64])],
            outputs: vec![
                TensorSpec::new("predict", DataType::Int64, vec![-1]),
                TensorSpec::new("decision_function", DataType::Fp64, vec![-1]),
                TensorSpec::new("score_samples", DataType::Fp64, vec![-1]),
            ],
        };
        Ok(IsolationForest {
            params,
            input: TabularInput { n_features, feature_names },
            trees,
            features,
            flat,
            leaf_path,
            denominator,
            signature,
        })
    }

    /// Sends missing values (NaN) down the branch scikit-learn recorded for each split node
    /// (`tree_.missing_go_to_left`, scikit-learn ≥ 1.3); without it a NaN goes right. The caller decides
    /// whether NaN inputs are accepted at all.
    ///
    /// # Errors
    /// [`Error::InvalidModel`] (with an empty path) when `flags` does not have one entry per node of
    /// every tree.
    pub fn with_missing_go_to_left(mut self, flags: &[Vec<bool>]) -> Result<Self> {
        let fits =
            flags.len() == self.trees.len() && self.trees.iter().zip(flags).all(|(t, f)| f.len() == t.node_count());
        if !fits {
            return Err(Error::invalid("", "missing_go_to_left does not have one entry per node"));
        }
        let leaves = self.flat.n_leaves();
        self.flat = FlatForest::build(&self.trees, &self.features, Some(flags), |_, _| {});
        debug_assert_eq!(leaves, self.flat.n_leaves());
        Ok(self)
    }

    /// The fitted attributes besides the trees.
    pub fn params(&self) -> &IsolationForestParams {
        &self.params
    }

    /// The number of input features (`n_features_in_`).
    pub fn n_features(&self) -> usize {
        self.input.n_features
    }

    /// The feature names (`feature_names_in_`), when fitted on named columns.
    pub fn feature_names(&self) -> Option<&[String]> {
        self.input.feature_names.as_deref()
    }

    /// The trees (`estimators_[i].tree_`).
    pub fn trees(&self) -> &[DecisionTree] {
        &self.trees
    }

    /// Each tree's input columns (`estimators_features_`).
    pub fn estimators_features(&self) -> &[Vec<usize>] {
        &self.features
    }

    /// `score_samples`: the opposite of the anomaly score; lower is more abnormal.
    ///
    /// # Panics
    /// When `x.cols` differs from [`Self::n_features`].
    pub fn score_samples(&self, x: &Matrix<f32>) -> Vec<f64> {
        assert_eq!(x.cols, self.n_features(), "score_samples: wrong number of columns");
        let mut depths = vec![0.0f64; x.rows];
        // Sums over trees in tree order for each row, as scikit-learn adds them.
        self.flat.accumulate(&x.data, x.cols, &mut depths, 1, |d, _, leaf| d[0] += self.leaf_path[leaf]);
        for d in &mut depths {
            let ratio = if self.denominator != 0.0 { *d / self.denominator } else { 1.0 };
            *d = -(2.0f64.powf(-ratio));
        }
        depths
    }

    /// `decision_function = score_samples - offset_`: negative for outliers.
    pub fn decision_function(&self, x: &Matrix<f32>) -> Vec<f64> {
        let mut s = self.score_samples(x);
        for v in &mut s {
            *v -= self.params.offset;
        }
        s
    }

    /// `predict`: `-1` for outliers, `1` for inliers.
    pub fn predict(&self, x: &Matrix<f32>) -> Vec<i64> {
        self.decision_function(x).into_iter().map(|d| if d < 0.0 { -1 } else { 1 }).collect()
    }
}

impl Model for IsolationForest {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn kind(&self) -> ModelKind {
        ModelKind::IsolationForest
    }

    fn label(&self) -> Option<LabelOutput> {
        Some(LabelOutput::new("predict", Some(Label::Int(-1))))
    }

    fn infer(&self, inputs: &[Tensor], outputs: &[String]) -> Result<Vec<Tensor>, InferError> {
        self.signature.check_outputs(outputs)?;
        let x = self.input.to_f32(inputs)?;
        let scores = self.score_samples(&x);
        let n = x.rows;
        let default = [Self::OUTPUTS[0].to_owned()];
        let names = if outputs.is_empty() { &default[..] } else { outputs };
        names
            .iter()
            .map(|name| {
                let data = match name.as_str() {
                    "score_samples" => TensorData::Fp64(scores.clone()),
                    "decision_function" => TensorData::Fp64(scores.iter().map(|s| s - self.params.offset).collect()),
                    _ => TensorData::Int64(
                        scores.iter().map(|s| if s - self.params.offset < 0.0 { -1 } else { 1 }).collect(),
                    ),
                };
                Ok(Tensor::new(name.clone(), vec![n], data)?)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two trees over two features, written out by hand.
    ///
    /// Tree 0 (feature subset [1]): root splits column 1 at 0.5; left is a leaf of 5 samples; right
    /// splits again at 2.0 into leaves of 2 and 1 samples.
    /// Tree 1 (feature subset [0]): root splits column 0 at -1.0 into leaves of 1 and 7 samples.
    fn forest(offset: f64) -> IsolationForest {
        let t0 = DecisionTree {
            children_left: vec![1, -1, 3, -1, -1],
            children_right: vec![2, -1, 4, -1, -1],
            feature: vec![0, -2, 0, -2, -2],
            threshold: vec![0.5, -2.0, 2.0, -2.0, -2.0],
            n_node_samples: vec![8, 5, 3, 2, 1],
        };
        let t1 = DecisionTree {
            children_left: vec![1, -1, -1],
            children_right: vec![2, -1, -1],
            feature: vec![0, -2, -2],
            threshold: vec![-1.0, -2.0, -2.0],
            n_node_samples: vec![8, 1, 7],
        };
        let mut params = IsolationForestParams::with_max_samples(8);
        params.offset = offset;
        IsolationForest::new(params, 2, None, vec![t0, t1], vec![vec![1], vec![0]]).unwrap()
    }

    fn c(n: f64) -> f64 {
        2.0 * ((n - 1.0).ln() + 0.5772156649015329) - 2.0 * (n - 1.0) / n
    }

    #[test]
    fn average_path_length_matches_the_formula() {
        assert_eq!(average_path_length(0.0), 0.0);
        assert_eq!(average_path_length(1.0), 0.0);
        assert_eq!(average_path_length(2.0), 1.0);
        assert_eq!(average_path_length(256.0), c(256.0));
        // Known value: c(256) ≈ 10.2448.
        assert!((average_path_length(256.0) - 10.244_770_920_119_917).abs() < 1e-12);
    }

    #[test]
    fn scores_follow_the_formulas_by_hand() {
        let f = forest(-0.5);
        let x = Matrix { data: vec![0.0, 0.0, -5.0, 3.0, 0.0, 1.0], rows: 3, cols: 2 };
        // Row 0 (x0=0, x1=0): tree0 left leaf depth 1, n=5 → 1 + c(5); tree1 right leaf depth 1, n=7 → 1 + c(7).
        // Row 1 (x0=-5, x1=3): tree0 right-right leaf depth 2, n=1 → 2; tree1 left leaf depth 1, n=1 → 1.
        // Row 2 (x0=0, x1=1): tree0 right-left leaf depth 2, n=2 → 3; tree1 → 1 + c(7).
        let h = [1.0 + c(5.0) + 1.0 + c(7.0), 2.0 + 1.0, 3.0 + 1.0 + c(7.0)];
        let denom = 2.0 * c(8.0);
        let expected: Vec<f64> = h.iter().map(|h| -(2f64.powf(-h / denom))).collect();
        let got = f.score_samples(&x);
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() <= 1e-15 * e.abs(), "{g} vs {e}");
        }
        let d = f.decision_function(&x);
        assert!((d[0] - (expected[0] + 0.5)).abs() < 1e-15);
        let p = f.predict(&x);
        let by_hand: Vec<i64> = expected.iter().map(|s| if s + 0.5 < 0.0 { -1 } else { 1 }).collect();
        assert_eq!(p, by_hand);
        // Row 1 isolates fast: it is the outlier of the three.
        assert!(got[1] < got[0] && got[1] < got[2]);
    }

    #[test]
    fn offset_moves_the_decision() {
        let x = Matrix { data: vec![0.0, 0.0], rows: 1, cols: 2 };
        let s = forest(-0.5).score_samples(&x)[0];
        assert_eq!(forest(s + 1e-9).predict(&x), vec![-1]);
        assert_eq!(forest(s - 1e-9).predict(&x), vec![1]);
    }

    #[test]
    fn zero_denominator_scores_like_sklearn() {
        // max_samples_ = 1 → c(1) = 0 → scikit-learn divides into ones: score = -2^-1.
        let t = DecisionTree {
            children_left: vec![-1],
            children_right: vec![-1],
            feature: vec![-2],
            threshold: vec![-2.0],
            n_node_samples: vec![1],
        };
        let f =
            IsolationForest::new(IsolationForestParams::with_max_samples(1), 1, None, vec![t], vec![vec![0]]).unwrap();
        let x = Matrix { data: vec![3.0], rows: 1, cols: 1 };
        assert_eq!(f.score_samples(&x), vec![-0.5]);
    }

    #[test]
    fn infer_selects_outputs_and_rejects_unknown_ones() {
        let f = forest(-0.5);
        let x = Tensor::new("input-0", vec![2, 2], TensorData::Fp64(vec![0.0, 0.0, -5.0, 3.0])).unwrap();
        let out = f.infer(std::slice::from_ref(&x), &[]).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].name, "predict");
        let out = f.infer(std::slice::from_ref(&x), &["score_samples".into(), "decision_function".into()]).unwrap();
        assert_eq!(out[0].datatype(), DataType::Fp64);
        let (TensorData::Fp64(s), TensorData::Fp64(d)) = (&out[0].data, &out[1].data) else { panic!() };
        assert!((s[0] + 0.5 - d[0]).abs() < 1e-15);
        let err = f.infer(&[x], &["predict_proba".into()]).unwrap_err();
        assert!(err.is_client_error());
        assert!(err.to_string().contains("predict, decision_function, score_samples"), "{err}");
    }

    #[test]
    fn new_rejects_inconsistent_parts() {
        let t = forest(-0.5).trees()[1].clone();
        let p = IsolationForestParams::with_max_samples(8);
        assert!(IsolationForest::new(p.clone(), 2, None, vec![t.clone()], vec![vec![2]]).is_err());
        assert!(IsolationForest::new(p.clone(), 2, None, vec![t.clone()], vec![]).is_err());
        assert!(IsolationForest::new(p.clone(), 2, Some(vec!["a".into()]), vec![t.clone()], vec![vec![0]]).is_err());
        assert!(IsolationForest::new(p, 2, None, vec![], vec![]).is_err());
    }
}
