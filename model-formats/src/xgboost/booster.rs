//! The model document's schema (`src/learner.cc`, `src/gbm/gbtree_model.cc`, `src/tree/tree_model.cc`),
//! read into a validated [`Booster`]: every tree a tree (children in range, each node reached once from
//! the root, so no cycle), split features below `num_feature`, array lengths consistent, categories in
//! range. Anything this build does not predict exactly as XGBoost does is refused, naming it.

use super::ModelError;
use super::document::Node;

/// The largest category XGBoost can represent exactly (`common::OutOfRangeCat`): inputs at or above it,
/// and negative ones, go left at a categorical split.
pub(crate) const MAX_CATEGORY: i64 = 16_777_216;

/// A leaf's `left` in [`TreeNode`].
pub(crate) const LEAF: u32 = u32::MAX;

/// How an objective turns `base_score` into a margin and a margin into its prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Objective {
    /// `reg:squarederror` and the other regression losses with an identity link.
    Identity,
    /// `binary:logistic`, `reg:logistic`: margin `logit(base_score)`, prediction the sigmoid.
    Logistic,
    /// `binary:logitraw`: the margin itself.
    LogitRaw,
    /// `count:poisson`, `reg:gamma`, `reg:tweedie`: margin `ln(base_score)`, prediction `exp`.
    Exp,
    /// `multi:softprob`: the softmax over the class margins.
    SoftProb,
    /// `multi:softmax`: the index of the largest class margin.
    SoftMax,
}

/// The objectives served, as XGBoost names them.
pub(crate) const OBJECTIVES: &[(&str, Objective)] = &[
    ("reg:squarederror", Objective::Identity),
    ("reg:linear", Objective::Identity),
    ("reg:squaredlogerror", Objective::Identity),
    ("reg:absoluteerror", Objective::Identity),
    ("reg:pseudohubererror", Objective::Identity),
    ("reg:quantileerror", Objective::Identity),
    ("reg:logistic", Objective::Logistic),
    ("binary:logistic", Objective::Logistic),
    ("binary:logitraw", Objective::LogitRaw),
    ("count:poisson", Objective::Exp),
    ("reg:gamma", Objective::Exp),
    ("reg:tweedie", Objective::Exp),
    ("multi:softprob", Objective::SoftProb),
    ("multi:softmax", Objective::SoftMax),
];

/// One node of a validated tree, in breadth-first order from the root (node 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TreeNode {
    /// The left child's index, [`LEAF`] at a leaf.
    pub(crate) left: u32,
    /// The right child's index (meaningless at a leaf).
    pub(crate) right: u32,
    /// The feature tested.
    pub(crate) feature: u32,
    /// The split condition (`x < value` goes left), or the leaf value.
    pub(crate) value: f32,
    /// Where a missing value goes.
    pub(crate) default_left: bool,
    /// A categorical split: the range of [`Tree::categories`] holding the categories that go right.
    pub(crate) categories: Option<(u32, u32)>,
}

/// A validated tree: the nodes reachable from the root, renumbered breadth-first (XGBoost's own numbering
/// may leave deleted nodes behind; they are dropped).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tree {
    pub(crate) nodes: Vec<TreeNode>,
    /// The categories of every categorical split, each node's sorted and without repeats.
    pub(crate) categories: Vec<i32>,
}

impl Tree {
    pub(crate) fn has_categorical(&self) -> bool {
        self.nodes.iter().any(|n| n.categories.is_some())
    }
}

/// A gradient-boosted tree model as XGBoost saves it, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Booster {
    pub(crate) objective_name: String,
    pub(crate) objective: Objective,
    pub(crate) n_features: usize,
    /// `num_class` (0 or 1 when not multi-class).
    pub(crate) num_class: usize,
    /// Outputs per row before the transform: classes, targets, or 1.
    pub(crate) n_groups: usize,
    /// `base_score` per output group, as stored (a probability for logistic objectives).
    pub(crate) base_score: Vec<f32>,
    pub(crate) trees: Vec<Tree>,
    /// The output group of each tree (`tree_info`).
    pub(crate) tree_group: Vec<u32>,
    /// Where each boosting round's trees start, and the tree count last (`iteration_indptr`).
    pub(crate) indptr: Vec<usize>,
    /// `attributes.best_iteration`, set by early stopping.
    pub(crate) best_iteration: Option<usize>,
    /// `feature_names`, when the model was fitted on named columns.
    pub(crate) feature_names: Option<Vec<String>>,
}

impl Booster {
    /// The objective's name (`reg:squarederror`).
    pub fn objective(&self) -> &str {
        &self.objective_name
    }

    /// `num_feature`: the input width.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// The number of trees.
    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }

    /// The number of boosting rounds.
    pub fn n_rounds(&self) -> usize {
        self.indptr.len().saturating_sub(1)
    }

    /// Outputs per row before the transform (classes, targets, or 1).
    pub(crate) fn n_groups(&self) -> usize {
        self.n_groups
    }

    pub(crate) fn objective_kind(&self) -> Objective {
        self.objective
    }

    /// The best round of early stopping (`best_iteration`, 0-based), when the model records one.
    pub fn best_iteration(&self) -> Option<usize> {
        self.best_iteration
    }

    /// The number of trees of the first `rounds` boosting rounds (all trees for `None`), as
    /// `iteration_range=(0, rounds)` selects them.
    ///
    /// # Errors
    /// When the model has fewer rounds.
    pub fn trees_of_rounds(&self, rounds: Option<usize>) -> Result<usize, ModelError> {
        match rounds {
            None => Ok(self.trees.len()),
            Some(r) => self.indptr.get(r).copied().ok_or_else(|| {
                ModelError::Invalid(format!(
                    "best_iteration {} but the model has {} boosting rounds",
                    r.saturating_sub(1),
                    self.n_rounds()
                ))
            }),
        }
    }

    /// Reads the model document: `{"learner": …, "version": …}` as `save_model` writes it, or
    /// `{"Config": …, "Model": {"learner": …}}` as a pickled `Booster` holds it.
    pub(crate) fn from_document(root: &Node) -> Result<Booster, ModelError> {
        let root = match (root.get("learner"), root.get("Model")) {
            (None, Some(model)) => model,
            _ => root,
        };
        let Some(learner) = root.get("learner") else {
            return Err(ModelError::Invalid(format!(
                "not an XGBoost model: the document is {} without a `learner` object",
                root.kind()
            )));
        };
        let gb = member(learner, "gradient_booster", "learner")?;
        match text(gb, "name", "learner.gradient_booster")? {
            "gbtree" => {}
            "dart" => {
                return Err(ModelError::Unsupported(
                    "booster `dart` is not supported (its trees are weighted by dropout); train with booster=\"gbtree\""
                        .to_owned(),
                ));
            }
            "gblinear" => {
                return Err(ModelError::Unsupported(
                    "booster `gblinear` (a linear model) is not supported; only tree boosters (`gbtree`) are served"
                        .to_owned(),
                ));
            }
            other => return Err(ModelError::Unsupported(format!("booster `{other}` is not supported"))),
        }
        let objective_name = text(member(learner, "objective", "learner")?, "name", "learner.objective")?.to_owned();
        let Some(objective) = OBJECTIVES.iter().find(|(n, _)| *n == objective_name).map(|(_, o)| *o) else {
            let served: Vec<&str> = OBJECTIVES.iter().map(|(n, _)| *n).collect();
            return Err(ModelError::Unsupported(format!(
                "objective `{objective_name}` is not supported; served: {}",
                served.join(", ")
            )));
        };
        let param = member(learner, "learner_model_param", "learner")?;
        let at = "learner.learner_model_param";
        let n_features = count(member(param, "num_feature", at)?, "num_feature")?;
        if n_features == 0 || n_features >= 1 << 30 {
            return Err(ModelError::Invalid(format!("num_feature is {n_features}")));
        }
        let num_class = param.get("num_class").map(|v| count(v, "num_class")).transpose()?.unwrap_or(0);
        let num_target = param.get("num_target").map(|v| count(v, "num_target")).transpose()?.unwrap_or(1);
        if num_class > 1 && num_target > 1 {
            return Err(ModelError::Unsupported(format!(
                "{num_class} classes with {num_target} targets (multi-label classification) is not supported"
            )));
        }
        let n_groups = num_class.max(num_target).max(1);
        if n_groups > 1 << 16 {
            return Err(ModelError::Invalid(format!("{n_groups} output groups")));
        }
        let multi = matches!(objective, Objective::SoftProb | Objective::SoftMax);
        if multi != (num_class > 1) {
            return Err(ModelError::Invalid(format!("objective `{objective_name}` with num_class {num_class}")));
        }
        let base_score = base_score(text(param, "base_score", at)?, n_groups)?;

        let best_iteration = match learner.get("attributes").and_then(|a| a.get("best_iteration")) {
            None => None,
            Some(v) => Some(count(v, "attributes.best_iteration")?),
        };
        let feature_names = match learner.get("feature_names") {
            None | Some(Node::Null) => None,
            Some(v) => {
                let list = v.as_list().ok_or_else(|| bad_type("learner.feature_names", "an array", v))?;
                let names = list
                    .iter()
                    .map(|n| n.as_str().map(str::to_owned))
                    .collect::<Option<Vec<String>>>()
                    .ok_or_else(|| ModelError::Invalid("learner.feature_names holds a non-string".to_owned()))?;
                if names.is_empty() {
                    None
                } else if names.len() != n_features {
                    return Err(ModelError::Invalid(format!(
                        "{} feature names for num_feature {n_features}",
                        names.len()
                    )));
                } else {
                    Some(names)
                }
            }
        };

        let model = member(gb, "model", "learner.gradient_booster")?;
        let at = "learner.gradient_booster.model";
        let gparam = member(model, "gbtree_model_param", at)?;
        let num_trees = count(member(gparam, "num_trees", "gbtree_model_param")?, "num_trees")?;
        let parallel = match gparam.get("num_parallel_tree") {
            None => 1,
            Some(v) => count(v, "num_parallel_tree")?.max(1),
        };
        let trees_node = member(model, "trees", at)?;
        let trees_json = trees_node.as_list().ok_or_else(|| bad_type("trees", "an array of trees", trees_node))?;
        if trees_json.len() != num_trees {
            return Err(ModelError::Invalid(format!(
                "num_trees is {num_trees} but {} trees are saved",
                trees_json.len()
            )));
        }
        let info = ints(member(model, "tree_info", at)?, "tree_info")?;
        if info.len() != num_trees {
            return Err(ModelError::Invalid(format!("tree_info has {} entries for {num_trees} trees", info.len())));
        }
        let tree_group =
            info.iter()
                .enumerate()
                .map(|(t, &g)| {
                    u32::try_from(g).ok().filter(|&g| (g as usize) < n_groups).ok_or_else(|| {
                        ModelError::Invalid(format!("tree {t} belongs to output group {g} of {n_groups}"))
                    })
                })
                .collect::<Result<Vec<u32>, ModelError>>()?;
        let indptr = match model.get("iteration_indptr") {
            Some(v) => {
                let raw = ints(v, "iteration_indptr")?;
                let ok = raw.first() == Some(&0)
                    && raw.last().and_then(|&l| usize::try_from(l).ok()) == Some(num_trees)
                    && raw.windows(2).all(|w| w[0] <= w[1]);
                if !ok {
                    return Err(ModelError::Invalid(format!(
                        "iteration_indptr must rise from 0 to the tree count {num_trees}"
                    )));
                }
                raw.into_iter().map(|i| usize::try_from(i).unwrap_or(0)).collect()
            }
            None => {
                // XGBoost < 2 saved no indptr: every round has num_parallel_tree trees per group.
                let per_round = parallel.saturating_mul(n_groups);
                (0..=num_trees / per_round).map(|r| r * per_round).collect()
            }
        };
        let mut trees = Vec::with_capacity(num_trees);
        for (t, tj) in trees_json.iter().enumerate() {
            trees.push(read_tree(tj, t, n_features).map_err(|e| e.within(&format!("tree {t}")))?);
        }
        Ok(Booster {
            objective_name,
            objective,
            n_features,
            num_class,
            n_groups,
            base_score,
            trees,
            tree_group,
            indptr,
            best_iteration,
            feature_names,
        })
    }
}

/// `base_score`: `"[5.347222E-1]"` (one float32 per output group, XGBoost ≥ 3.1) or `"5E-1"` (older, the
/// same for every group).
fn base_score(s: &str, n_groups: usize) -> Result<Vec<f32>, ModelError> {
    let s = s.trim();
    let parse = |v: &str| {
        v.trim().parse::<f32>().map_err(|_| ModelError::Invalid(format!("base_score `{s}` is not a number list")))
    };
    let values = match s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        Some(list) => list.split(',').map(parse).collect::<Result<Vec<f32>, _>>()?,
        None => vec![parse(s)?],
    };
    match values.len() {
        1 => Ok(vec![values[0]; n_groups]),
        n if n == n_groups => Ok(values),
        n => Err(ModelError::Invalid(format!("base_score has {n} values for {n_groups} outputs"))),
    }
}

fn member<'a>(obj: &'a Node, key: &str, at: &str) -> Result<&'a Node, ModelError> {
    match obj {
        Node::Object(_) => obj.get(key).ok_or_else(|| ModelError::Invalid(format!("{at}: missing `{key}`"))),
        other => Err(bad_type(at, "an object", other)),
    }
}

fn text<'a>(obj: &'a Node, key: &str, at: &str) -> Result<&'a str, ModelError> {
    let v = member(obj, key, at)?;
    v.as_str().ok_or_else(|| bad_type(&format!("{at}.{key}"), "a string", v))
}

fn bad_type(what: &str, expected: &str, found: &Node) -> ModelError {
    ModelError::Invalid(format!("{what} is {}, expected {expected}", found.kind()))
}

/// A count, which XGBoost writes as a string (`"num_feature": "4"`); an integer is taken too.
fn count(v: &Node, what: &str) -> Result<usize, ModelError> {
    let n = match v {
        Node::Int(i) => usize::try_from(*i).ok(),
        Node::Str(s) => s.trim().parse::<usize>().ok(),
        _ => None,
    };
    n.ok_or_else(|| ModelError::Invalid(format!("{what} is not a count: {}", shown(v))))
}

fn shown(v: &Node) -> String {
    match v {
        Node::Str(s) => format!("`{}`", s.chars().take(40).collect::<String>()),
        Node::Int(i) => i.to_string(),
        other => other.kind().to_owned(),
    }
}

fn ints(v: &Node, what: &str) -> Result<Vec<i64>, ModelError> {
    v.ints().ok_or_else(|| bad_type(what, "an array of integers", v))
}

fn floats(v: &Node, what: &str) -> Result<Vec<f32>, ModelError> {
    v.floats().ok_or_else(|| bad_type(what, "an array of numbers", v))
}

/// Reads and validates tree `index`.
fn read_tree(t: &Node, index: usize, n_features: usize) -> Result<Tree, ModelError> {
    if !matches!(t, Node::Object(_)) {
        return Err(bad_type("the tree", "an object", t));
    }
    match t.get("id") {
        Some(Node::Int(id)) if usize::try_from(*id) == Ok(index) => {}
        Some(other) => {
            return Err(ModelError::Invalid(format!("its id is {}, not its position {index}", shown(other))));
        }
        None => return Err(ModelError::Invalid("missing `id`".to_owned())),
    }
    let param = member(t, "tree_param", "the tree")?;
    let n = count(member(param, "num_nodes", "tree_param")?, "num_nodes")?;
    if n == 0 || n > i32::MAX as usize {
        return Err(ModelError::Invalid(format!("num_nodes is {n}")));
    }
    if let Some(v) = param.get("size_leaf_vector")
        && count(v, "size_leaf_vector")? > 1
    {
        return Err(ModelError::Unsupported(
            "vector-leaf trees (multi_strategy=\"multi_output_tree\") are not supported; train with the default \
             one_output_per_tree"
                .to_owned(),
        ));
    }
    let arr = |key: &str| member(t, key, "the tree");
    let left = ints(arr("left_children")?, "left_children")?;
    let right = ints(arr("right_children")?, "right_children")?;
    let feature = ints(arr("split_indices")?, "split_indices")?;
    let cond = floats(arr("split_conditions")?, "split_conditions")?;
    let default_left = ints(arr("default_left")?, "default_left")?;
    for (name, len) in [
        ("left_children", left.len()),
        ("right_children", right.len()),
        ("split_indices", feature.len()),
        ("split_conditions", cond.len()),
        ("default_left", default_left.len()),
    ] {
        if len != n {
            return Err(ModelError::Invalid(format!("{name} has {len} entries for num_nodes {n}")));
        }
    }
    for name in ["parents", "base_weights", "loss_changes", "sum_hessian"] {
        if let Some(len) = t.get(name).and_then(Node::array_len)
            && len != n
        {
            return Err(ModelError::Invalid(format!("{name} has {len} entries for num_nodes {n}")));
        }
    }
    let split_type = match t.get("split_type") {
        None => vec![0; n],
        Some(v) => ints(v, "split_type")?,
    };
    if split_type.len() != n {
        return Err(ModelError::Invalid(format!("split_type has {} entries for num_nodes {n}", split_type.len())));
    }
    if let Some(i) = split_type.iter().position(|&s| s != 0 && s != 1) {
        return Err(ModelError::Invalid(format!("node {i} has split_type {}", split_type[i])));
    }
    let cats = categorical_splits(t, &split_type)?;

    // Breadth-first from the root: every reachable node once. A child seen before (the root included) is
    // a cycle or a shared subtree; unreachable nodes (deleted by pruning) are dropped.
    let mut new_index = vec![LEAF; n];
    let mut order: Vec<usize> = vec![0];
    new_index[0] = 0;
    let mut head = 0;
    while head < order.len() {
        let i = order[head];
        head += 1;
        if left[i] == -1 {
            continue;
        }
        let l = usize::try_from(left[i]).ok().filter(|&l| l < n);
        let r = usize::try_from(right[i]).ok().filter(|&r| r < n);
        let (Some(l), Some(r)) = (l, r) else {
            return Err(ModelError::Invalid(format!(
                "node {i} has children {} and {}, outside 0..{n}",
                left[i], right[i]
            )));
        };
        if r != l + 1 {
            // XGBoost's predictor takes the right child to be left + 1 (`predict_fn.h` `GetNextNode`).
            return Err(ModelError::Invalid(format!(
                "node {i} has children {l} and {r}; XGBoost requires the right child to follow the left one"
            )));
        }
        for c in [l, r] {
            if new_index[c] != LEAF {
                return Err(ModelError::Invalid(format!("node {c} is reached twice (a cycle or a shared subtree)")));
            }
            new_index[c] = u32::try_from(order.len()).unwrap_or(LEAF);
            order.push(c);
        }
        if usize::try_from(feature[i]).map_or(true, |f| f >= n_features) {
            return Err(ModelError::Invalid(format!(
                "node {i} splits on feature {} but the model has {n_features} features",
                feature[i]
            )));
        }
    }

    let mut categories = Vec::new();
    let mut nodes = Vec::with_capacity(order.len());
    for &i in &order {
        if left[i] == -1 {
            if !cond[i].is_finite() {
                return Err(ModelError::Invalid(format!("leaf {i} holds {}", cond[i])));
            }
            nodes.push(TreeNode {
                left: LEAF,
                right: LEAF,
                feature: 0,
                value: cond[i],
                default_left: false,
                categories: None,
            });
            continue;
        }
        // Validated above: children reached, feature in range.
        let child = |c: i64| usize::try_from(c).ok().and_then(|c| new_index.get(c).copied()).unwrap_or(LEAF);
        let node_categories = match (split_type[i], cats.get(&i)) {
            (1, Some(set)) => {
                let start = u32::try_from(categories.len()).unwrap_or(u32::MAX);
                categories.extend_from_slice(set);
                Some((start, u32::try_from(set.len()).unwrap_or(0)))
            }
            _ => None,
        };
        nodes.push(TreeNode {
            left: child(left[i]),
            right: child(right[i]),
            feature: u32::try_from(feature[i]).unwrap_or(0),
            value: cond[i],
            default_left: default_left[i] != 0,
            categories: node_categories,
        });
    }
    Ok(Tree { nodes, categories })
}

/// The category sets of the categorical splits (`categories_nodes`, `categories_segments`,
/// `categories_sizes`, `categories`), by node, each sorted without repeats.
fn categorical_splits(t: &Node, split_type: &[i64]) -> Result<std::collections::HashMap<usize, Vec<i32>>, ModelError> {
    let mut out = std::collections::HashMap::new();
    let n_cat = split_type.iter().filter(|&&s| s == 1).count();
    if n_cat == 0 {
        return Ok(out);
    }
    let arr = |key: &str| member(t, key, "the tree").and_then(|v| ints(v, key));
    let nodes = arr("categories_nodes")?;
    let segments = arr("categories_segments")?;
    let sizes = arr("categories_sizes")?;
    let values = arr("categories")?;
    if nodes.len() != n_cat || segments.len() != n_cat || sizes.len() != n_cat {
        return Err(ModelError::Invalid(format!(
            "{n_cat} categorical splits but categories_nodes, categories_segments, categories_sizes have {}, {}, {} entries",
            nodes.len(),
            segments.len(),
            sizes.len()
        )));
    }
    let mut previous = -1i64;
    for k in 0..n_cat {
        let node = nodes[k];
        let ok = node > previous && usize::try_from(node).ok().and_then(|i| split_type.get(i)) == Some(&1);
        if !ok {
            return Err(ModelError::Invalid(format!(
                "categories_nodes[{k}] = {node} is not the next categorical split"
            )));
        }
        previous = node;
        let (seg, size) = (segments[k], sizes[k]);
        let range = usize::try_from(seg)
            .ok()
            .zip(usize::try_from(size).ok())
            .filter(|&(s, z)| z > 0 && s.checked_add(z).is_some_and(|e| e <= values.len()));
        let Some((s, z)) = range else {
            return Err(ModelError::Invalid(format!(
                "categorical split {node}: categories {seg}..{seg}+{size} outside the {} saved",
                values.len()
            )));
        };
        let mut set = Vec::with_capacity(z);
        for &c in &values[s..s + z] {
            if !(0..MAX_CATEGORY).contains(&c) {
                return Err(ModelError::Invalid(format!("categorical split {node}: category {c} is out of range")));
            }
            set.push(i32::try_from(c).unwrap_or(0));
        }
        set.sort_unstable();
        set.dedup();
        out.insert(usize::try_from(node).unwrap_or(0), set);
    }
    Ok(out)
}
