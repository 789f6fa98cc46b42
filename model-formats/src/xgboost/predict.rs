//! Prediction exactly as XGBoost computes it (`src/predictor/cpu_predictor.cc`, `predict_fn.h`,
//! `src/common/math.h`): the input as float32; a value that is NaN (or equal to the `missing` value) takes
//! the node's default branch; `x < split_condition` goes left; each output group starts from the margin of
//! its `base_score` and adds its trees' leaf values in float32, tree by tree in order; the objective's
//! transform in float32 (`expf`, `logf` from the C library, as `f32::exp` / `f32::ln` call them).
//!
//! Numerical trees are walked by [`FlatForest`], scikit-learn's compact walker, which goes left on
//! `x <= t`: a float32 `x` is `< c` exactly when it is `<= c.next_down()`, so the condition is stored as
//! that (a condition of −∞ or NaN, which nothing is below, as NaN, which nothing is `<=`). Trees with
//! categorical splits, which it cannot express, are walked node by node.

use super::booster::{Booster, LEAF, MAX_CATEGORY, Objective, Tree};
use crate::model::Matrix;
use crate::tree::{DecisionTree, FlatForest, PARALLEL_ROWS};

/// A booster's trees compiled for prediction, with the margins they start from.
#[derive(Debug)]
pub(crate) struct Predictor {
    walker: Walker,
    /// Per output group: the margin of `base_score`.
    base_margin: Vec<f32>,
    n_groups: usize,
    objective: Objective,
    /// The wrapper's `missing` value when it is not NaN.
    missing: Option<f32>,
}

#[derive(Debug)]
enum Walker {
    Flat {
        forest: FlatForest,
        /// Per leaf id: the leaf value.
        leaf_value: Vec<f32>,
        /// Per tree: its output group.
        group: Vec<u32>,
    },
    Nodes {
        trees: Vec<Tree>,
        group: Vec<u32>,
    },
}

impl Predictor {
    /// The first `n_trees` trees of `booster` (all of them, or those of the rounds `iteration_range`
    /// selects), with `missing` also taken as missing when it is not NaN.
    pub(crate) fn new(booster: &Booster, n_trees: usize, missing: f32) -> Self {
        let n_trees = n_trees.min(booster.trees.len());
        let trees = &booster.trees[..n_trees];
        let group = booster.tree_group[..n_trees].to_vec();
        let walker = if trees.iter().any(Tree::has_categorical) {
            Walker::Nodes { trees: trees.to_vec(), group }
        } else {
            let flat: Vec<DecisionTree> = trees.iter().map(as_decision_tree).collect();
            let columns = vec![(0..booster.n_features).collect::<Vec<usize>>(); n_trees];
            let default_left: Vec<Vec<bool>> =
                trees.iter().map(|t| t.nodes.iter().map(|n| n.default_left).collect()).collect();
            let mut leaf_value = Vec::new();
            let forest = FlatForest::build(&flat, &columns, Some(&default_left), |t, node| {
                leaf_value.push(trees[t].nodes[node].value);
            });
            Walker::Flat { forest, leaf_value, group }
        };
        let base_margin = booster.base_score.iter().map(|&b| margin(booster.objective, b)).collect();
        Predictor {
            walker,
            base_margin,
            n_groups: booster.n_groups,
            objective: booster.objective,
            missing: (!missing.is_nan()).then_some(missing),
        }
    }

    /// Margins per row: the output groups.
    pub(crate) fn n_groups(&self) -> usize {
        self.n_groups
    }

    /// The values per row after the transform: the output groups, or one for `multi:softmax`.
    pub(crate) fn width(&self) -> usize {
        if self.objective == Objective::SoftMax { 1 } else { self.n_groups }
    }

    /// The margins (`output_margin=True`): `x.rows × n_groups`, row-major. `x` has the booster's
    /// `num_feature` columns.
    pub(crate) fn margins(&self, x: &Matrix<f32>) -> Vec<f32> {
        let g = self.n_groups;
        let mut out: Vec<f32> = Vec::with_capacity(x.rows * g);
        for _ in 0..x.rows {
            out.extend_from_slice(&self.base_margin);
        }
        if x.cols == 0 {
            return out;
        }
        let replaced;
        let data = match self.missing {
            Some(m) => {
                replaced = x.data.iter().map(|&v| if v == m { f32::NAN } else { v }).collect::<Vec<f32>>();
                &replaced
            }
            None => &x.data,
        };
        match &self.walker {
            Walker::Flat { forest, leaf_value, group } => {
                forest.accumulate(data, x.cols, &mut out, g, |row, t, leaf| {
                    row[group[t] as usize] += leaf_value[leaf];
                });
            }
            Walker::Nodes { trees, group } => {
                let score = |rows: &[f32], out: &mut [f32]| {
                    for (row, acc) in rows.chunks_exact(x.cols).zip(out.chunks_exact_mut(g)) {
                        for (tree, &grp) in trees.iter().zip(group) {
                            acc[grp as usize] += leaf_value(tree, row);
                        }
                    }
                };
                if x.rows < PARALLEL_ROWS || rayon::current_num_threads() < 2 {
                    score(data, &mut out);
                } else {
                    use rayon::prelude::*;
                    const CHUNK: usize = 256;
                    data.par_chunks(CHUNK * x.cols)
                        .zip(out.par_chunks_mut(CHUNK * g))
                        .for_each(|(rows, out)| score(rows, out));
                }
            }
        }
        out
    }

    /// The objective's transform (`PredTransform`) of rows of margins: [`Self::width`] values per row.
    pub(crate) fn transform(&self, margins: &[f32]) -> Vec<f32> {
        let g = self.n_groups.max(1);
        match self.objective {
            Objective::Identity | Objective::LogitRaw => margins.to_vec(),
            Objective::Logistic => margins.iter().map(|&m| sigmoid(m)).collect(),
            Objective::Exp => margins.iter().map(|&m| m.exp()).collect(),
            Objective::SoftProb => {
                let mut out = margins.to_vec();
                for row in out.chunks_exact_mut(g) {
                    softmax(row);
                }
                out
            }
            #[allow(clippy::cast_precision_loss)]
            Objective::SoftMax => margins.chunks_exact(g).map(|row| first_max(row) as f32).collect(),
        }
    }
}

/// The margin of a `base_score` (`ObjFunction::ProbToMargin`), in float32.
fn margin(objective: Objective, base: f32) -> f32 {
    /// `kRtEps`.
    const EPS: f32 = 1e-6;
    match objective {
        Objective::Logistic => {
            // `common::Min(common::Max(b, kRtEps), 1 - kRtEps)`, then `Logit`: -logf(1/x - 1).
            let b = if base > EPS { base } else { EPS };
            let b = if b < 1.0 - EPS { b } else { 1.0 - EPS };
            -(1.0f32 / b - 1.0f32).ln()
        }
        Objective::Exp => base.ln(),
        _ => base,
    }
}

/// `common::Sigmoid(float)`: `1 / (expf(min(-x, 88.7)) + 1 + 1e-16)`, with `std::min`'s NaN behaviour.
fn sigmoid(x: f32) -> f32 {
    const EPS: f32 = 1e-16;
    let neg = -x;
    let capped = if 88.7f32 < neg { 88.7f32 } else { neg };
    let denominator = capped.exp() + 1.0f32 + EPS;
    1.0f32 / denominator
}

/// `common::Softmax`: `e = expf(x - max)` in float32, their sum in float64, each `e / (float)sum`.
fn softmax(row: &mut [f32]) {
    let Some(&first) = row.first() else { return };
    // `fmaxf` ignores NaN, as `f32::max` does.
    let wmax = row.iter().fold(first, |m, &v| v.max(m));
    let mut wsum = 0.0f64;
    for v in row.iter_mut() {
        *v = (*v - wmax).exp();
        wsum += f64::from(*v);
    }
    #[allow(clippy::cast_possible_truncation)]
    let s = wsum as f32;
    for v in row.iter_mut() {
        *v /= s;
    }
}

/// The index of the first largest value (`common::FindMaxIndex`, and numpy's `argmax` for non-NaN rows).
pub(crate) fn first_max(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// The leaf value `row` reaches in `tree` (the node-by-node walk, for trees with categorical splits).
fn leaf_value(tree: &Tree, row: &[f32]) -> f32 {
    let mut i = 0usize;
    loop {
        // Validated at load: indices in range, each node reached once, so the walk ends at a leaf.
        let n = &tree.nodes[i];
        if n.left == LEAF {
            return n.value;
        }
        let x = row[n.feature as usize];
        let left = if x.is_nan() {
            n.default_left
        } else if let Some((start, len)) = n.categories {
            // `common::Decision`: right only for a valid category in the node's set.
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
            let valid = x >= 0.0 && x < MAX_CATEGORY as f32;
            #[allow(clippy::cast_possible_truncation)]
            let right = valid && {
                let set = &tree.categories[start as usize..(start + len) as usize];
                set.binary_search(&(x as i32)).is_ok()
            };
            !right
        } else {
            x < n.value
        };
        i = if left { n.left } else { n.right } as usize;
    }
}

/// A numerical tree in scikit-learn's array form, for [`FlatForest`]: `x < c` as `x <= c.next_down()`.
fn as_decision_tree(t: &Tree) -> DecisionTree {
    let n = t.nodes.len();
    let mut d = DecisionTree {
        children_left: Vec::with_capacity(n),
        children_right: Vec::with_capacity(n),
        feature: Vec::with_capacity(n),
        threshold: Vec::with_capacity(n),
        n_node_samples: vec![0; n],
    };
    for node in &t.nodes {
        if node.left == LEAF {
            d.children_left.push(-1);
            d.children_right.push(-1);
            d.feature.push(-2);
            d.threshold.push(-2.0);
        } else {
            d.children_left.push(i64::from(node.left));
            d.children_right.push(i64::from(node.right));
            d.feature.push(i64::from(node.feature));
            let c = node.value;
            let t = if c.is_nan() || c == f32::NEG_INFINITY { f32::NAN } else { c.next_down() };
            d.threshold.push(f64::from(t));
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xgboost::booster::TreeNode;

    fn split(feature: u32, value: f32, default_left: bool) -> TreeNode {
        TreeNode { left: 1, right: 2, feature, value, default_left, categories: None }
    }

    fn leaf(value: f32) -> TreeNode {
        TreeNode { left: LEAF, right: LEAF, feature: 0, value, default_left: false, categories: None }
    }

    #[test]
    fn flat_walk_matches_the_strict_comparison() {
        for c in [0.5f32, 0.0, -0.0, 1e-45, -1e-45, f32::MAX, f32::MIN, f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
            for default_left in [false, true] {
                let tree = Tree { nodes: vec![split(0, c, default_left), leaf(1.0), leaf(2.0)], categories: vec![] };
                let flat = as_decision_tree(&tree);
                let mut leaves = Vec::new();
                let forest = FlatForest::build(&[flat], &[vec![0]], Some(&[vec![default_left; 3]]), |_, node| {
                    leaves.push(tree.nodes[node].value);
                });
                let xs = [
                    c,
                    c.next_down(),
                    c.next_up(),
                    0.0,
                    -0.0,
                    1.0,
                    -1.0,
                    f32::INFINITY,
                    f32::NEG_INFINITY,
                    f32::NAN,
                    f32::MAX,
                    f32::MIN,
                ];
                for x in xs {
                    let want = leaf_value(&tree, &[x]);
                    let got = leaves[forest.leaf(0, &[x])];
                    assert_eq!(got, want, "condition {c:e}, x {x:e}, default_left {default_left}");
                }
            }
        }
    }

    #[test]
    fn transforms_follow_xgboost() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(sigmoid(-1000.0), 1.0 / (88.7f32.exp() + 1.0));
        assert_eq!(sigmoid(1000.0), 1.0);
        let mut row = [1.0f32, 2.0, 3.0];
        softmax(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6 && row[2] > row[1]);
        assert_eq!(first_max(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(margin(Objective::Logistic, 0.5), 0.0);
        assert_eq!(margin(Objective::Logistic, 0.0), -(1.0f32 / 1e-6 - 1.0).ln());
    }
}
