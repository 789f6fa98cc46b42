//! The parser of LightGBM's text model (`GBDT::SaveModelToString`, `Tree::ToString`), read as data and
//! validated before anything is built: every count is checked against a bound before it sizes an
//! allocation, and every index (child, feature, categorical bitset) is checked against what it indexes,
//! so that prediction can neither index out of bounds nor loop.
//!
//! Reader semantics follow `GBDT::LoadModelFromString` and `Tree::Tree(const char*, size_t*)`
//! (LightGBM 4.x, `src/boosting/gbdt_model_text.cpp`, `src/io/tree.cpp`): the required keys are those
//! LightGBM requires, lists must hold exactly the number of values their count says, and optional keys
//! take LightGBM's defaults (`num_tree_per_iteration` = `num_class`, `decision_type` = 0). Where
//! LightGBM trusts the file (tree numbering, children, categorical indices) this reader checks it.

use std::collections::HashMap;
use std::str::FromStr;

use super::{Booster, MAX_CLASSES, MAX_LEAVES, Objective, Tree};

/// A failed parse: what is wrong, with the line where it applies.
pub(crate) type ParseResult<T> = Result<T, String>;

/// The lines of the file, numbered from 1, without their `\r`.
struct Lines<'a> {
    inner: std::iter::Peekable<std::iter::Enumerate<std::str::Split<'a, char>>>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Lines { inner: text.split('\n').enumerate().peekable() }
    }

    fn next(&mut self) -> Option<(usize, &'a str)> {
        self.inner.next().map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
    }

    fn peek(&mut self) -> Option<&'a str> {
        self.inner.peek().map(|(_, l)| l.strip_suffix('\r').unwrap_or(l))
    }

    fn skip_blank(&mut self) {
        while self.peek().is_some_and(str::is_empty) {
            self.next();
        }
    }
}

/// At most `max` characters of `s`, for messages.
fn excerpt(s: &str) -> String {
    const MAX: usize = 60;
    let mut out: String = s.chars().take(MAX).filter(|c| !c.is_control()).collect();
    if s.chars().count() > MAX {
        out.push('…');
    }
    out
}

/// A header or tree block: `key=value` lines, each key once.
struct Block<'a> {
    what: String,
    entries: HashMap<&'a str, (usize, &'a str)>,
}

impl<'a> Block<'a> {
    fn new(what: String) -> Self {
        Block { what, entries: HashMap::new() }
    }

    fn insert(&mut self, line: usize, key: &'a str, value: &'a str) -> ParseResult<()> {
        if self.entries.insert(key, (line, value)).is_some() {
            return Err(format!("line {line}: `{}` appears twice in {}", excerpt(key), self.what));
        }
        Ok(())
    }

    fn opt(&self, key: &str) -> Option<(usize, &'a str)> {
        self.entries.get(key).copied()
    }

    fn get(&self, key: &str) -> ParseResult<(usize, &'a str)> {
        self.opt(key).ok_or_else(|| format!("{} has no `{key}` line", self.what))
    }

    /// An integer value.
    fn int<T: FromStr>(&self, key: &str) -> ParseResult<T> {
        let (line, v) = self.get(key)?;
        v.trim().parse().map_err(|_| format!("line {line}: `{key}={}` is not an integer in range", excerpt(v)))
    }

    /// A list of exactly `n` values.
    fn list<T: FromStr>(&self, key: &str, n: usize) -> ParseResult<Vec<T>> {
        let (line, v) = self.get(key)?;
        list(line, key, v, n)
    }
}

/// Parses the space-separated `value` of `key` as exactly `n` numbers. The vector is sized by `n` only up
/// to what the text can hold (a number takes at least one character and a separator).
fn list<T: FromStr>(line: usize, key: &str, value: &str, n: usize) -> ParseResult<Vec<T>> {
    let mut out = Vec::with_capacity(n.min(value.len() / 2 + 1));
    for token in value.split(' ').filter(|t| !t.is_empty()) {
        if out.len() == n {
            return Err(format!("line {line}: `{key}` has more than {n} values"));
        }
        let v =
            token.parse().map_err(|_| format!("line {line}: `{key}` value {} is not a valid number", out.len() + 1))?;
        out.push(v);
    }
    if out.len() != n {
        return Err(format!("line {line}: `{key}` has {} values, expected {n}", out.len()));
    }
    Ok(out)
}

/// A count that must lie in `lo..=hi`.
fn bounded(block: &Block<'_>, key: &str, lo: i64, hi: usize) -> ParseResult<usize> {
    let v: i64 = block.int(key)?;
    let hi_i = i64::try_from(hi).unwrap_or(i64::MAX);
    if v < lo || v > hi_i {
        return Err(format!("{key}={v} is out of range ({lo} to {hi})"));
    }
    usize::try_from(v).map_err(|_| format!("{key}={v} is out of range"))
}

/// Parses a whole model text.
pub(crate) fn parse(text: &str) -> ParseResult<Booster> {
    let mut lines = Lines::new(text);
    match lines.next() {
        Some((_, "tree")) => {}
        _ => return Err("not a LightGBM text model: the first line is not `tree`".to_owned()),
    }

    // The header: `key=value` lines (or bare keys such as `average_output`) up to the first tree.
    let mut header = Block::new("the header".to_owned());
    loop {
        match lines.peek() {
            None => break,
            Some(l) if l.starts_with("Tree=") || l == "end of trees" => break,
            _ => {}
        }
        let Some((n, line)) = lines.next() else { break };
        if line.is_empty() {
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        if value.contains('=') && !matches!(key, "feature_names" | "monotone_constraints") {
            return Err(format!("line {n}: unexpected line `{}` in the header", excerpt(line)));
        }
        header.insert(n, key, value)?;
    }

    let num_class = bounded(&header, "num_class", 1, MAX_CLASSES)?;
    let per_iteration = if header.opt("num_tree_per_iteration").is_some() {
        bounded(&header, "num_tree_per_iteration", 1, MAX_CLASSES)?
    } else {
        num_class
    };
    header.int::<i64>("label_index")?;
    let max_feature_idx: i64 = header.int("max_feature_idx")?;
    if !(0..i64::from(i32::MAX)).contains(&max_feature_idx) {
        return Err(format!("max_feature_idx={max_feature_idx} is out of range (0 to {})", i32::MAX - 1));
    }
    let n_features = usize::try_from(max_feature_idx).map_err(|_| "max_feature_idx out of range")? + 1;
    let (line, names) = header.get("feature_names")?;
    let feature_names: Vec<String> = names.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    if feature_names.len() != n_features {
        return Err(format!(
            "line {line}: {} feature names for {n_features} features (max_feature_idx={max_feature_idx})",
            feature_names.len()
        ));
    }
    let (line, infos) = header.get("feature_infos")?;
    let feature_infos: Vec<String> = infos.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    if feature_infos.len() != n_features {
        return Err(format!("line {line}: {} feature_infos for {n_features} features", feature_infos.len()));
    }
    let average_output = header.opt("average_output").is_some();
    let objective = match header.opt("objective") {
        Some((line, text)) => Objective::parse(text).map_err(|e| format!("line {line}: {e}"))?,
        None => {
            return Err("the model has no `objective` line (trained with a custom objective function, whose \
                        outputs are raw scores): not supported"
                .to_owned());
        }
    };
    objective.check(num_class, per_iteration)?;

    // The trees, numbered 0, 1, … in order, each a block of `key=value` lines ended by a blank line.
    let mut trees: Vec<Tree> = Vec::new();
    loop {
        lines.skip_blank();
        match lines.next() {
            None => {
                return Err(format!(
                    "truncated model: the text ends after {} tree(s) without an `end of trees` line",
                    trees.len()
                ));
            }
            Some((_, "end of trees")) => break,
            Some((n, l)) => {
                let Some(index) = l.strip_prefix("Tree=") else {
                    return Err(format!("line {n}: expected `Tree=<index>` or `end of trees`, found `{}`", excerpt(l)));
                };
                let index: usize = index
                    .trim()
                    .parse()
                    .map_err(|_| format!("line {n}: `Tree={}` is not a tree index", excerpt(index)))?;
                if index != trees.len() {
                    return Err(format!(
                        "line {n}: tree index {index} out of order (expected Tree={}: trees are numbered 0, 1, … in order)",
                        trees.len()
                    ));
                }
                let mut block = Block::new(format!("tree {index}"));
                // Up to a blank line (or the next tree, should the blank line be missing).
                while let Some(l) = lines.peek() {
                    if l.is_empty() || l.starts_with("Tree=") || l == "end of trees" {
                        break;
                    }
                    let Some((n, line)) = lines.next() else { break };
                    let Some((key, value)) = line.split_once('=') else {
                        return Err(format!("line {n}: `{}` in tree {index} is not a `key=value` line", excerpt(line)));
                    };
                    block.insert(n, key, value)?;
                }
                trees.push(Tree::parse(&block, n_features).map_err(|e| format!("tree {index}: {e}"))?);
            }
        }
    }
    if trees.is_empty() {
        return Err("the model holds no trees".to_owned());
    }
    if !trees.len().is_multiple_of(per_iteration) {
        return Err(format!(
            "{} trees is not a whole number of iterations of {per_iteration} trees (num_tree_per_iteration)",
            trees.len()
        ));
    }
    if let Some((line, sizes)) = header.opt("tree_sizes") {
        let count = sizes.split(' ').filter(|s| !s.is_empty()).count();
        if count != trees.len() {
            return Err(format!("line {line}: tree_sizes lists {count} trees, the model holds {}", trees.len()));
        }
    }

    // After the trees: feature importances, parameters, and (last) `pandas_categorical:`.
    let mut pandas_categorical = None;
    while let Some((n, line)) = lines.next() {
        if let Some(json) = line.strip_prefix("pandas_categorical:") {
            pandas_categorical = parse_pandas_categorical(json).map_err(|e| format!("line {n}: {e}"))?;
        }
    }

    let iterations = trees.len() / per_iteration;
    Ok(Booster {
        num_class,
        per_iteration,
        n_features,
        feature_names,
        feature_infos,
        objective,
        average_output,
        trees,
        iterations,
        pandas_categorical,
    })
}

/// `pandas_categorical:` — JSON `null`, or one list of categories per pandas `category` column.
fn parse_pandas_categorical(json: &str) -> ParseResult<Option<Vec<Vec<serde_json::Value>>>> {
    let value: serde_json::Value =
        serde_json::from_str(json.trim()).map_err(|e| format!("pandas_categorical is not valid JSON: {e}"))?;
    match value {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Array(columns) => columns
            .into_iter()
            .map(|c| match c {
                serde_json::Value::Array(categories) => Ok(categories),
                other => Err(format!("pandas_categorical holds a {other}, expected a list of categories")),
            })
            .collect::<ParseResult<Vec<_>>>()
            .map(Some),
        other => Err(format!("pandas_categorical is {other}, expected null or a list of lists")),
    }
}

impl Objective {
    /// Parses an `objective=` value (`ObjectiveFunction::CreateObjectiveFunction`).
    fn parse(text: &str) -> ParseResult<Objective> {
        let mut tokens = text.split(' ').filter(|t| !t.is_empty());
        let name = tokens.next().unwrap_or("");
        let mut sigmoid = None;
        let mut num_class = None;
        let mut sqrt = false;
        for t in tokens {
            match t.split_once(':') {
                Some(("sigmoid", v)) => sigmoid = Some(v.parse::<f64>().map_err(|_| format!("bad `{}`", excerpt(t)))?),
                Some(("num_class", v)) => {
                    num_class = Some(v.parse::<usize>().map_err(|_| format!("bad `{}`", excerpt(t)))?);
                }
                None if t == "sqrt" => sqrt = true,
                _ => {}
            }
        }
        let sigmoid = |name: &str| match sigmoid {
            Some(s) if s.is_finite() && s > 0.0 => Ok(s),
            Some(s) => Err(format!("objective `{name}`: sigmoid {s} must be a positive number")),
            None => Err(format!("objective `{name}` has no `sigmoid:` parameter")),
        };
        let classes = |name: &str| match num_class {
            Some(k) if (2..=MAX_CLASSES).contains(&k) => Ok(k),
            Some(k) => Err(format!("objective `{name}`: num_class:{k} is out of range (2 to {MAX_CLASSES})")),
            None => Err(format!("objective `{name}` has no `num_class:` parameter")),
        };
        Ok(match name {
            // The L2 family converts with `sign(x)·x²` under `sqrt` (reg_sqrt); huber refuses sqrt on load.
            "regression" | "regression_l1" | "fair" | "quantile" | "mape" => Objective::Regression { sqrt },
            "huber" => Objective::Regression { sqrt: false },
            "binary" => Objective::Binary { sigmoid: sigmoid(name)? },
            "multiclass" => Objective::Multiclass { num_class: classes(name)? },
            "multiclassova" => Objective::MulticlassOva { num_class: classes(name)?, sigmoid: sigmoid(name)? },
            "poisson"
            | "gamma"
            | "tweedie"
            | "cross_entropy"
            | "cross_entropy_lambda"
            | "lambdarank"
            | "rank_xendcg"
            | "custom" => {
                return Err(format!(
                    "objective `{name}` is not supported (served: regression, regression_l1, huber, fair, quantile, \
                     mape, binary, multiclass, multiclassova)"
                ));
            }
            other => return Err(format!("unknown objective `{}`", excerpt(other))),
        })
    }

    /// Checks the objective against the header's counts.
    fn check(&self, num_class: usize, per_iteration: usize) -> ParseResult<()> {
        let (want_class, want_trees) = match *self {
            Objective::Regression { .. } | Objective::Binary { .. } => (1, 1),
            Objective::Multiclass { num_class: k } | Objective::MulticlassOva { num_class: k, .. } => (k, k),
        };
        if num_class != want_class || per_iteration != want_trees {
            return Err(format!(
                "num_class={num_class} and num_tree_per_iteration={per_iteration} do not fit the objective \
                 (expected {want_class} and {want_trees})"
            ));
        }
        Ok(())
    }
}

impl Tree {
    /// Reads and validates one tree block.
    fn parse(block: &Block<'_>, n_features: usize) -> ParseResult<Tree> {
        let num_leaves = bounded(block, "num_leaves", 1, MAX_LEAVES)?;
        let internal = num_leaves - 1;
        let num_cat = bounded(block, "num_cat", 0, internal)?;
        if let Some((line, v)) = block.opt("is_linear")
            && v.trim() != "0"
        {
            return Err(format!(
                "line {line}: a linear tree (is_linear={}, trained with linear_tree=true) is not supported",
                excerpt(v)
            ));
        }
        let leaf_value: Vec<f64> = block.list("leaf_value", num_leaves)?;
        if internal == 0 {
            return Ok(Tree::leaf(leaf_value));
        }
        let left: Vec<i32> = block.list("left_child", internal)?;
        let right: Vec<i32> = block.list("right_child", internal)?;
        let split_feature: Vec<i32> = block.list("split_feature", internal)?;
        let threshold: Vec<f64> = block.list("threshold", internal)?;
        let decision_type: Vec<i8> = match block.opt("decision_type") {
            Some(_) => block.list("decision_type", internal)?,
            None => vec![0; internal],
        };
        let (cat_boundaries, cat_threshold) = if num_cat > 0 {
            let (line, _) = block.get("cat_boundaries")?;
            let bounds: Vec<i64> = block.list("cat_boundaries", num_cat + 1)?;
            if bounds.windows(2).any(|w| w[0] > w[1]) || bounds.first().is_some_and(|&b| b < 0) {
                return Err(format!("line {line}: cat_boundaries are not increasing from 0"));
            }
            let total = bounds.last().copied().unwrap_or(0);
            let (line, words) = block.get("cat_threshold")?;
            let total = usize::try_from(total).map_err(|_| format!("line {line}: cat_boundaries out of range"))?;
            let words: Vec<u32> = list(line, "cat_threshold", words, total)?;
            let bounds: Vec<usize> = bounds.iter().filter_map(|&b| usize::try_from(b).ok()).collect();
            (bounds, words)
        } else {
            (Vec::new(), Vec::new())
        };

        let mut features = Vec::with_capacity(internal);
        let mut cat_ranges = Vec::new();
        for node in 0..internal {
            let f = usize::try_from(split_feature[node])
                .ok()
                .filter(|&f| f < n_features)
                .ok_or_else(|| format!("node {node} splits on feature {} of {n_features}", split_feature[node]))?;
            features.push(f);
            let d = decision_type[node];
            if !(0..=15).contains(&d) || (d >> 2) & 3 == 3 {
                return Err(format!("node {node} has an unknown decision_type {d}"));
            }
            // Categorical bits count only when the tree has categorical splits (`Tree::GetLeaf`).
            if num_cat > 0 && d & 1 == 1 {
                let t = threshold[node];
                if !(t >= 0.0 && t.fract() == 0.0 && t < num_cat as f64) {
                    return Err(format!(
                        "node {node}: categorical split {t} is not an index into cat_boundaries (num_cat={num_cat})"
                    ));
                }
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let c = t as usize;
                cat_ranges.push((node, cat_boundaries[c], cat_boundaries[c + 1]));
            }
        }
        check_structure(&left, &right, num_leaves)?;
        Ok(Tree::new(
            leaf_value,
            left,
            right,
            features,
            threshold,
            decision_type,
            num_cat > 0,
            &cat_ranges,
            cat_threshold,
        ))
    }
}

/// Checks that the children describe one tree rooted at node 0: every child index in range, every node
/// but the root and every leaf the child of exactly one node, and every node reachable from the root (so
/// there is no cycle, and a walk from the root ends at a leaf within `num_leaves - 1` steps).
fn check_structure(left: &[i32], right: &[i32], num_leaves: usize) -> ParseResult<()> {
    let internal = num_leaves - 1;
    let mut node_parents = vec![0u8; internal];
    let mut leaf_parents = vec![0u8; num_leaves];
    for node in 0..internal {
        for (side, c) in [("left", left[node]), ("right", right[node])] {
            let slot = if c >= 0 {
                let i = usize::try_from(c).unwrap_or(usize::MAX);
                if i >= internal {
                    return Err(format!("node {node}: {side} child {c} is out of range ({internal} internal nodes)"));
                }
                if i == 0 {
                    return Err(format!("node {node}: {side} child is the root (a cycle)"));
                }
                &mut node_parents[i]
            } else {
                let leaf = usize::try_from(!c).unwrap_or(usize::MAX);
                if leaf >= num_leaves {
                    return Err(format!(
                        "node {node}: {side} child {c} is leaf {leaf}, out of range ({num_leaves} leaves)"
                    ));
                }
                &mut leaf_parents[leaf]
            };
            *slot = slot.saturating_add(1);
        }
    }
    if let Some(i) = node_parents.iter().skip(1).position(|&p| p != 1) {
        return Err(format!("node {} is the child of {} nodes, expected 1", i + 1, node_parents[i + 1]));
    }
    if let Some(i) = leaf_parents.iter().position(|&p| p != 1) {
        return Err(format!("leaf {i} is the child of {} nodes, expected 1", leaf_parents[i]));
    }
    // With one parent each and none for the root, a walk from the root visits every node at most once; a
    // node it never reaches is on a cycle detached from the root.
    let mut stack = vec![0usize];
    let mut seen = 0usize;
    while let Some(node) = stack.pop() {
        seen += 1;
        if seen > internal {
            return Err("the nodes form a cycle".to_owned());
        }
        for c in [left[node], right[node]] {
            if let Ok(c) = usize::try_from(c) {
                stack.push(c);
            }
        }
    }
    if seen != internal {
        return Err(format!("{} of {internal} nodes are not reachable from the root (a cycle)", internal - seen));
    }
    Ok(())
}
