//! Decision trees: scikit-learn's array form (what is stored and what pickles hold) and the flat
//! form inference walks.
//!
//! [`DecisionTree`] mirrors `sklearn.tree._tree.Tree`'s parallel arrays, so that trees read from a
//! scikit-learn pickle and trees grown by `ferroserve-train` share one representation. At load every
//! tree is validated ([`DecisionTree::validate`]) and compiled into a [`FlatForest`]: all trees' nodes
//! in one contiguous array of 16-byte nodes with float32 thresholds, so a row's walk touches one cache
//! line per level and compares in the input's own type.

mod isolation_forest;

pub use isolation_forest::{Contamination, IsolationForest, IsolationForestParams, average_path_length};

/// scikit-learn's `TREE_LEAF`: the child index of a leaf.
pub const TREE_LEAF: i64 = -1;

/// One fitted tree in scikit-learn's array form (`tree_.children_left`, … of the same names).
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionTree {
    /// Left child of each node (`x[feature] <= threshold`), `-1` for a leaf.
    pub children_left: Vec<i64>,
    /// Right child of each node, `-1` for a leaf.
    pub children_right: Vec<i64>,
    /// The feature a split node tests (an index into the tree's own feature subset); ignored at leaves
    /// (scikit-learn stores `-2`).
    pub feature: Vec<i64>,
    /// The split threshold (float64, compared with the float32 input); ignored at leaves.
    pub threshold: Vec<f64>,
    /// How many training samples reached each node.
    pub n_node_samples: Vec<i64>,
}

/// Why a tree is not a valid tree, without the file name (the caller adds it).
pub(crate) type TreeFault = String;

impl DecisionTree {
    /// The number of nodes.
    pub fn node_count(&self) -> usize {
        self.children_left.len()
    }

    /// Checks that the arrays describe one tree rooted at node 0, every node reachable exactly once,
    /// children after their parent (so that a walk always terminates), features below `n_features`,
    /// and finite thresholds at split nodes; returns each node's depth (root = 0).
    pub(crate) fn validate(&self, n_features: usize) -> Result<Vec<u32>, TreeFault> {
        let n = self.children_left.len();
        if n == 0 {
            return Err("a tree has no nodes".to_owned());
        }
        if n > u32::MAX as usize / 2 {
            return Err(format!("a tree has {n} nodes, more than supported"));
        }
        for (name, len) in [
            ("children_right", self.children_right.len()),
            ("feature", self.feature.len()),
            ("threshold", self.threshold.len()),
            ("n_node_samples", self.n_node_samples.len()),
        ] {
            if len != n {
                return Err(format!("{name} has {len} entries but children_left has {n}"));
            }
        }
        let mut depth: Vec<Option<u32>> = vec![None; n];
        depth[0] = Some(0);
        for i in 0..n {
            let (l, r) = (self.children_left[i], self.children_right[i]);
            let Some(d) = depth[i] else {
                return Err(format!("node {i} is not reachable from the root"));
            };
            if self.n_node_samples[i] < 0 {
                return Err(format!("node {i} has a negative sample count"));
            }
            if l == TREE_LEAF && r == TREE_LEAF {
                continue;
            }
            for c in [l, r] {
                let Ok(ci) = usize::try_from(c) else {
                    return Err(format!("node {i} has child {c}"));
                };
                if ci <= i || ci >= n {
                    return Err(format!("node {i} has child {c}, outside {}..{n}", i + 1));
                }
                if depth[ci].is_some() {
                    return Err(format!("node {ci} has two parents"));
                }
                depth[ci] = Some(d + 1);
            }
            let f = self.feature[i];
            if usize::try_from(f).map_or(true, |f| f >= n_features) {
                return Err(format!("node {i} tests feature {f} of {n_features}"));
            }
            if !self.threshold[i].is_finite() {
                return Err(format!("node {i} has threshold {}", self.threshold[i]));
            }
        }
        Ok(depth.into_iter().map(|d| d.unwrap_or(0)).collect())
    }
}

/// A node of a [`FlatForest`]: 16 bytes, so four share a cache line.
///
/// A leaf is its own left and right child, so a walk may take more steps than a row's path needs and
/// stay on the leaf: several rows (or trees) then walk in lockstep for a tree's whole depth, with no
/// branch on "is this a leaf", and their independent memory loads overlap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FlatNode {
    /// The largest float32 not above the float64 threshold: for a float32 `x`,
    /// `x <= threshold_f32` exactly when `f64::from(x) <= threshold_f64`.
    threshold: f32,
    /// The input column tested (low 30 bits; 0 at a leaf), bit 31 set when a NaN goes left, bit 30 set
    /// at a leaf.
    feature: u32,
    /// The left child's index in the forest (the node itself at a leaf).
    left: u32,
    /// The right child's index in the forest (the node itself at a leaf).
    right: u32,
}

impl FlatNode {
    /// Set in `feature` when a missing value (NaN) takes the left branch (`missing_go_to_left`).
    const NAN_LEFT: u32 = 1 << 31;
    /// Set in `feature` at a leaf.
    const LEAF: u32 = 1 << 30;
    const COLUMN: u32 = Self::LEAF - 1;

    /// The child a row goes to (the node itself at a leaf), without branches.
    #[inline(always)]
    fn next(self, row: &[f32]) -> u32 {
        let x = row[(self.feature & Self::COLUMN) as usize];
        // NaN fails `<=`: it goes right unless the node sends missing values left. Non-short-circuit
        // `|` and `&`, so the choice compiles to a select rather than a branch.
        let left = (x <= self.threshold) | ((self.feature & Self::NAN_LEFT != 0) & x.is_nan());
        if left { self.left } else { self.right }
    }
}

/// Batches of at least this many rows are split across threads ([`FlatForest::accumulate`]).
pub(crate) const PARALLEL_ROWS: usize = 512;

/// Rows (or trees) walked in lockstep: enough independent walks to hide a cache miss or a load's
/// latency behind the others.
const LANES: usize = 8;

/// Every tree of an ensemble in one array. Leaves carry a dense leaf id; the model keeps its leaf
/// payloads (a path length, a class distribution) in its own array indexed by that id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FlatForest {
    nodes: Vec<FlatNode>,
    /// Per node: its leaf id (meaningful at leaves only).
    leaf_ids: Vec<u32>,
    roots: Vec<u32>,
    /// Per tree: its depth (the most steps from the root to a leaf).
    depths: Vec<u32>,
    n_leaves: usize,
}

/// The largest `f32` that is `<= t`.
pub(crate) fn f32_floor(t: f64) -> f32 {
    #[allow(clippy::cast_possible_truncation)]
    let c = t as f32;
    if f64::from(c) > t { c.next_down() } else { c }
}

impl FlatForest {
    /// Compiles validated trees. `columns[t][f]` maps tree `t`'s feature `f` to an input column;
    /// `missing_left[t][node]`, when given, says where a NaN goes at a split (scikit-learn's
    /// `missing_go_to_left`; without it a NaN goes right, as `NaN <= threshold` is false);
    /// `leaf(t, node)` is called once per leaf, in leaf-id order.
    ///
    /// Input columns must be below 2³⁰.
    pub(crate) fn build(
        trees: &[DecisionTree],
        columns: &[Vec<usize>],
        missing_left: Option<&[Vec<bool>]>,
        mut leaf: impl FnMut(usize, usize),
    ) -> Self {
        let total: usize = trees.iter().map(DecisionTree::node_count).sum();
        let mut nodes = Vec::with_capacity(total);
        let mut leaf_ids = Vec::with_capacity(total);
        let mut roots = Vec::with_capacity(trees.len());
        let mut depths = Vec::with_capacity(trees.len());
        let mut n_leaves = 0u32;
        for (t, tree) in trees.iter().enumerate() {
            let base = u32::try_from(nodes.len()).unwrap_or(u32::MAX);
            roots.push(base);
            // Validated: children come after their parent, so one forward pass gives every depth.
            let mut depth = vec![0u32; tree.node_count()];
            for i in 0..tree.node_count() {
                let here = base + u32::try_from(i).unwrap_or(0);
                let (l, r) = (tree.children_left[i], tree.children_right[i]);
                if l == TREE_LEAF && r == TREE_LEAF {
                    nodes.push(FlatNode { threshold: 0.0, feature: FlatNode::LEAF, left: here, right: here });
                    leaf_ids.push(n_leaves);
                    leaf(t, i);
                    n_leaves += 1;
                } else {
                    // Validated: 0 <= feature < columns[t].len(), children in range.
                    let col =
                        usize::try_from(tree.feature[i]).ok().and_then(|f| columns[t].get(f).copied()).unwrap_or(0);
                    let nan_left = missing_left.and_then(|m| m.get(t)).and_then(|m| m.get(i)).copied().unwrap_or(false);
                    let col = u32::try_from(col).unwrap_or(0) & FlatNode::COLUMN;
                    let below = depth[i] + 1;
                    for c in [l, r] {
                        if let Some(d) = usize::try_from(c).ok().and_then(|c| depth.get_mut(c)) {
                            *d = below;
                        }
                    }
                    nodes.push(FlatNode {
                        threshold: f32_floor(tree.threshold[i]),
                        feature: if nan_left { col | FlatNode::NAN_LEFT } else { col },
                        left: base + u32::try_from(l).unwrap_or(0),
                        right: base + u32::try_from(r).unwrap_or(0),
                    });
                    leaf_ids.push(0);
                }
            }
            depths.push(depth.into_iter().max().unwrap_or(0));
        }
        FlatForest { nodes, leaf_ids, roots, depths, n_leaves: n_leaves as usize }
    }

    /// The number of trees.
    pub(crate) fn n_trees(&self) -> usize {
        self.roots.len()
    }

    /// The number of leaves of all trees.
    pub(crate) fn n_leaves(&self) -> usize {
        self.n_leaves
    }

    /// The leaf id `row` reaches in tree `tree`. `row` must have every column the trees test (and at
    /// least one).
    #[inline]
    pub(crate) fn leaf(&self, tree: usize, row: &[f32]) -> usize {
        let mut i = self.roots[tree];
        loop {
            let n = self.nodes[i as usize];
            if n.feature & FlatNode::LEAF != 0 {
                return self.leaf_ids[i as usize] as usize;
            }
            i = n.next(row);
        }
    }

    /// The leaf ids of tree `tree` for every row of `rows` (row-major, `cols` columns, at least one),
    /// into `out` (one per row). Rows go [`LANES`] at a time in lockstep.
    pub(crate) fn leaves_of_rows(&self, tree: usize, rows: &[f32], cols: usize, out: &mut [u32]) {
        let (root, steps) = (self.roots[tree], self.depths[tree]);
        let mut blocks = rows.chunks_exact(cols * LANES);
        let mut outs = out.chunks_exact_mut(LANES);
        for (block, out) in (&mut blocks).zip(&mut outs) {
            let lanes: [&[f32]; LANES] = std::array::from_fn(|k| &block[k * cols..(k + 1) * cols]);
            let mut at = [root; LANES];
            for _ in 0..steps {
                for (i, row) in at.iter_mut().zip(lanes) {
                    *i = self.nodes[*i as usize].next(row);
                }
            }
            for (o, i) in out.iter_mut().zip(at) {
                *o = self.leaf_ids[i as usize];
            }
        }
        for (row, o) in blocks.remainder().chunks_exact(cols).zip(outs.into_remainder()) {
            *o = u32::try_from(self.leaf(tree, row)).unwrap_or(u32::MAX);
        }
    }

    /// The leaf id `row` reaches in every tree, into `out` (one per tree, in tree order). Trees go
    /// [`LANES`] at a time in lockstep: the single-row path.
    pub(crate) fn leaves_of_row(&self, row: &[f32], out: &mut [u32]) {
        let mut trees = self.roots.chunks_exact(LANES).zip(self.depths.chunks_exact(LANES));
        let mut outs = out.chunks_exact_mut(LANES);
        for ((roots, depths), out) in (&mut trees).zip(&mut outs) {
            let mut at: [u32; LANES] = std::array::from_fn(|k| roots[k]);
            let steps = depths.iter().copied().max().unwrap_or(0);
            for _ in 0..steps {
                for i in &mut at {
                    *i = self.nodes[*i as usize].next(row);
                }
            }
            for (o, i) in out.iter_mut().zip(at) {
                *o = self.leaf_ids[i as usize];
            }
        }
        let done = self.n_trees() - self.n_trees() % LANES;
        for (t, o) in (done..self.n_trees()).zip(outs.into_remainder()) {
            *o = u32::try_from(self.leaf(t, row)).unwrap_or(u32::MAX);
        }
    }

    /// Calls `visit(row, tree, leaf)` for every row of `x` (row-major, `cols` columns) and tree: for each
    /// row the trees come in order (so sums over trees add in scikit-learn's order). Rows go in blocks
    /// so that a tree is walked for a whole block while it is in cache; a single row walks the trees in
    /// lockstep instead.
    pub(crate) fn for_each_leaf(&self, x: &[f32], cols: usize, mut visit: impl FnMut(usize, usize, usize)) {
        /// Rows walked together per tree, so that a tree stays in cache across the block.
        const ROW_BLOCK: usize = 64;
        if cols == 0 {
            return;
        }
        let rows = x.len() / cols;
        if rows < LANES {
            let mut leaves = vec![0u32; self.n_trees()];
            for (r, row) in x.chunks_exact(cols).enumerate() {
                self.leaves_of_row(row, &mut leaves);
                for (t, &l) in leaves.iter().enumerate() {
                    visit(r, t, l as usize);
                }
            }
            return;
        }
        let mut leaves = [0u32; ROW_BLOCK];
        for (b, block) in x.chunks(ROW_BLOCK * cols).enumerate() {
            let n = block.len() / cols;
            for t in 0..self.n_trees() {
                self.leaves_of_rows(t, block, cols, &mut leaves[..n]);
                for (i, &l) in leaves[..n].iter().enumerate() {
                    visit(b * ROW_BLOCK + i, t, l as usize);
                }
            }
        }
    }

    /// For every row of `x` (row-major, `cols` columns) and every tree in order, calls
    /// `visit(row_out, tree, leaf)`, where `row_out` is the row's `width` values in `out`
    /// (`out.len()` = rows × `width`). Batches of [`PARALLEL_ROWS`] rows or more are split into chunks
    /// scored on rayon's threads; each row is still summed over trees in order, so the result is the
    /// same bit for bit, and a small batch never pays for a thread hand-off.
    pub(crate) fn accumulate<T: Send>(
        &self,
        x: &[f32],
        cols: usize,
        out: &mut [T],
        width: usize,
        visit: impl Fn(&mut [T], usize, usize) + Sync,
    ) {
        /// Rows per parallel task: big enough to amortise scheduling, small enough to balance.
        const CHUNK_ROWS: usize = 256;
        if cols == 0 || width == 0 {
            return;
        }
        let rows = x.len() / cols;
        let score = |x: &[f32], out: &mut [T]| {
            self.for_each_leaf(x, cols, |r, t, leaf| visit(&mut out[r * width..(r + 1) * width], t, leaf));
        };
        if rows < PARALLEL_ROWS || rayon::current_num_threads() < 2 {
            score(x, out);
            return;
        }
        use rayon::prelude::*;
        x.par_chunks(CHUNK_ROWS * cols).zip(out.par_chunks_mut(CHUNK_ROWS * width)).for_each(|(x, out)| score(x, out));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn stump(threshold: f64) -> DecisionTree {
        DecisionTree {
            children_left: vec![1, -1, -1],
            children_right: vec![2, -1, -1],
            feature: vec![0, -2, -2],
            threshold: vec![threshold, -2.0, -2.0],
            n_node_samples: vec![3, 2, 1],
        }
    }

    #[test]
    fn f32_floor_preserves_the_f64_comparison() {
        for t in [0.1f64, -0.1, 1.0, 1e-40, -1e-40, 3.4e38, 0.3333333333333333, 16_777_217.0] {
            let c = f32_floor(t);
            assert!(f64::from(c) <= t);
            assert!(f64::from(c.next_up()) > t, "{t}");
        }
    }

    #[test]
    fn threshold_comparison_matches_sklearn_on_the_boundary() {
        // 0.1 is not a float32: float32(0.1) = 0.10000000149 > 0.1, so it goes right, as in scikit-learn.
        let forest = FlatForest::build(&[stump(0.1)], &[vec![0]], None, |_, _| {});
        assert_eq!(forest.leaf(0, &[0.1f32]), 1);
        assert_eq!(forest.leaf(0, &[0.099_999_99f32]), 0);
    }

    #[test]
    fn nan_follows_missing_go_to_left() {
        let right = FlatForest::build(&[stump(0.5)], &[vec![0]], None, |_, _| {});
        assert_eq!(right.leaf(0, &[f32::NAN]), 1);
        let left = FlatForest::build(&[stump(0.5)], &[vec![0]], Some(&[vec![true, false, false]]), |_, _| {});
        assert_eq!(left.leaf(0, &[f32::NAN]), 0);
        assert_eq!(left.leaf(0, &[0.7]), 1);
        assert_eq!(left.leaf(0, &[0.2]), 0);
    }

    #[test]
    fn a_split_sends_every_value_where_the_f64_comparison_does() {
        let tiny = f32::from_bits(1);
        let thresholds = [0.1f64, 0.5, 0.0, -0.0, -2.5, 1e-45, -1e-45, 3.4e38, 3.5e38, -3.5e38, 16_777_217.0];
        for t in thresholds {
            let c = f32_floor(t);
            let mut xs = vec![0.0f32, -0.0, tiny, -tiny, 1.0, -1.0, f32::MAX, f32::MIN, f32::INFINITY];
            xs.extend([f32::NEG_INFINITY, f32::NAN, c, c.next_up(), c.next_down(), -c, -c.next_up()]);
            for nan_left in [false, true] {
                let flags = [vec![nan_left, false, false]];
                let forest = FlatForest::build(&[stump(t)], &[vec![0]], Some(&flags), |_, _| {});
                for &x in &xs {
                    let left = if x.is_nan() { nan_left } else { f64::from(x) <= t };
                    assert_eq!(
                        forest.leaf(0, &[x]),
                        usize::from(!left),
                        "x {x:e}, threshold {t:e}, nan_left {nan_left}"
                    );
                }
            }
        }
    }

    /// A deeper, lopsided tree: leaves at depths 1, 2 and 3.
    fn ladder() -> DecisionTree {
        DecisionTree {
            children_left: vec![1, -1, 3, -1, 5, -1, -1],
            children_right: vec![2, -1, 4, -1, 6, -1, -1],
            feature: vec![0, -2, 1, -2, 0, -2, -2],
            threshold: vec![0.0, -2.0, 0.0, -2.0, 1.0, -2.0, -2.0],
            n_node_samples: vec![7, 1, 6, 1, 5, 2, 3],
        }
    }

    #[test]
    fn lockstep_walks_agree_with_the_scalar_walk() {
        let trees =
            [ladder(), stump(0.25), ladder(), stump(-1.0), ladder(), stump(3.0), ladder(), stump(0.5), ladder()];
        let columns: Vec<Vec<usize>> =
            (0..trees.len()).map(|t| if t % 2 == 0 { vec![0, 1] } else { vec![1] }).collect();
        let forest = FlatForest::build(&trees, &columns, None, |_, _| {});
        let values = [-2.0f32, -0.5, 0.0, 0.3, 0.75, 1.0, 1.5, 4.0, f32::NAN];
        let rows: Vec<f32> = values.iter().flat_map(|&a| values.iter().flat_map(move |&b| [a, b])).collect();
        let n = rows.len() / 2;
        let scalar: Vec<Vec<usize>> =
            (0..forest.n_trees()).map(|t| rows.chunks(2).map(|r| forest.leaf(t, r)).collect()).collect();
        for (t, want) in scalar.iter().enumerate() {
            let mut out = vec![0u32; n];
            forest.leaves_of_rows(t, &rows, 2, &mut out);
            assert_eq!(&out.iter().map(|&l| l as usize).collect::<Vec<_>>(), want, "tree {t}");
        }
        let mut out = vec![0u32; forest.n_trees()];
        for (r, row) in rows.chunks(2).enumerate() {
            forest.leaves_of_row(row, &mut out);
            let want: Vec<usize> = (0..forest.n_trees()).map(|t| scalar[t][r]).collect();
            assert_eq!(out.iter().map(|&l| l as usize).collect::<Vec<_>>(), want, "row {r}");
        }
        // The parallel split gives the same per-row sums.
        let big: Vec<f32> = rows.iter().copied().cycle().take(2 * 2000).collect();
        let mut par = vec![0u64; 2000];
        forest.accumulate(&big, 2, &mut par, 1, |o, t, l| o[0] = o[0] * 31 + (t * 1000 + l) as u64);
        let mut serial = vec![0u64; 2000];
        forest.for_each_leaf(&big, 2, |r, t, l| serial[r] = serial[r] * 31 + (t * 1000 + l) as u64);
        assert_eq!(par, serial);
        for take in [1, 7, 8, 9, 64, 65, n] {
            let mut seen = Vec::new();
            forest.for_each_leaf(&rows[..take * 2], 2, |r, t, l| seen.push((r, t, l)));
            let mut want = Vec::new();
            for r in 0..take {
                for (t, leaves) in scalar.iter().enumerate() {
                    want.push((r, t, leaves[r]));
                }
            }
            seen.sort_unstable();
            assert_eq!(seen, want, "{take} rows");
        }
    }

    #[test]
    fn validation_rejects_broken_trees() {
        let mut t = stump(0.5);
        assert_eq!(t.validate(1).unwrap(), vec![0, 1, 1]);
        assert!(t.validate(0).unwrap_err().contains("feature 0 of 0"));
        t.children_left[0] = 0;
        assert!(t.validate(1).unwrap_err().contains("child 0"));
        let mut t = stump(0.5);
        t.children_right[0] = 1;
        assert!(t.validate(1).unwrap_err().contains("two parents"));
        let mut t = stump(0.5);
        t.threshold[0] = f64::NAN;
        assert!(t.validate(1).unwrap_err().contains("threshold NaN"));
        let mut t = stump(0.5);
        t.n_node_samples.pop();
        assert!(t.validate(1).unwrap_err().contains("n_node_samples has 2"));
        let mut t = stump(0.5);
        t.children_left[0] = 7;
        assert!(t.validate(1).is_err());
    }
}
