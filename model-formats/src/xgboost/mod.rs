//! XGBoost models, read as data: the JSON (`save_model("model.json")`) and UBJSON (`model.ubj`, and
//! `model.bst`, which XGBoost ≥ 2 writes as UBJSON) files, and the same UBJSON inside a pickled
//! `xgboost.core.Booster` (see `crate::sklearn` for the scikit-learn wrappers).
//!
//! Both encodings decode to one document ([`document`]), bounded by [`Limits`]: every length is checked
//! against the bytes left before anything is allocated, nesting is limited, and a malformed file is an
//! error naming the byte offset or the field, never a panic. [`Booster`] then reads the schema and
//! validates it (each tree a tree, features in range, consistent lengths), and [`XGBoostModel`] serves a
//! native file with the predictions `xgboost.Booster.predict` gives, bit for bit
//! (`tests/fixtures/boosting`, `docs/formats.md`).
//!
//! ```
//! use ferroserve_formats::xgboost::{self, Limits};
//!
//! let err = xgboost::parse(b"binf\x00\x00\x00\x00", &Limits::default()).unwrap_err();
//! assert!(err.to_string().contains("legacy binary"));
//! ```
//!
//! # Layout
//! - [`document`]: the decoded value and the [`Limits`]; `ubjson`, `json`: the two decoders.
//! - `booster`: the schema, validated into a [`Booster`].
//! - `predict`: the trees compiled for prediction, margins and transforms as XGBoost computes them.
//! - `serve`: scikit-learn's output names over them; [`XGBoostModel`] for native files.

mod booster;
pub mod document;
mod json;
mod predict;
mod serve;
mod ubjson;

use std::fmt;
use std::path::Path;

pub use booster::Booster;
pub(crate) use booster::Objective;
pub use document::Limits;
pub use serve::XGBoostModel;
pub(crate) use serve::{Head, Served};

use crate::error::{Error, Result};

/// Why bytes are not a model this build serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelError {
    /// Not a well-formed XGBoost model: the reason, with the byte offset or the field.
    Invalid(String),
    /// A well-formed model that uses what this build does not serve, and what to do instead.
    Unsupported(String),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Invalid(s) | ModelError::Unsupported(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for ModelError {}

impl ModelError {
    /// The same error, said of `part` (`tree 3: node 7 …`).
    pub(crate) fn within(self, part: &str) -> Self {
        match self {
            ModelError::Invalid(s) => ModelError::Invalid(format!("{part}: {s}")),
            ModelError::Unsupported(s) => ModelError::Unsupported(format!("{part}: {s}")),
        }
    }

    /// The crate's error for file `path`.
    pub(crate) fn into_error(self, path: &Path) -> Error {
        match self {
            ModelError::Invalid(reason) => Error::InvalidModel { path: path.to_path_buf(), reason },
            ModelError::Unsupported(reason) => Error::Unsupported { path: path.to_path_buf(), reason },
        }
    }
}

/// The encoding of a model document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    Ubjson,
}

/// Tells the encoding as XGBoost does (`DispatchModelType`): `{` then `"` is JSON, `{` then a letter UBJSON;
/// `binf` is the legacy binary format.
fn encoding(bytes: &[u8]) -> Result<Encoding, ModelError> {
    if bytes.starts_with(b"binf") {
        return Err(ModelError::Unsupported(
            "a legacy binary XGBoost model (`binf`, written by XGBoost < 2), which XGBoost ≥ 3 cannot read either: \
             load it with the XGBoost that wrote it and re-save it with booster.save_model(\"model.json\") \
             (or \"model.ubj\")"
                .to_owned(),
        ));
    }
    // UBJSON: `{` and a key's length marker, nothing between.
    if bytes.first() == Some(&b'{') && bytes.get(1).is_some_and(u8::is_ascii_alphabetic) {
        return Ok(Encoding::Ubjson);
    }
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Err(ModelError::Invalid("the file is empty".to_owned())),
        Some(b'{') => Ok(Encoding::Json),
        Some(&c) => Err(ModelError::Invalid(format!(
            "not an XGBoost model: it starts with {} where a JSON or UBJSON object (`{{`) starts",
            if c.is_ascii_graphic() { format!("`{}`", c as char) } else { format!("byte 0x{c:02x}") }
        ))),
    }
}

/// Reads an XGBoost model from the bytes of a JSON or UBJSON file (or a pickled `Booster`'s `handle`)
/// and validates it.
///
/// # Errors
/// [`ModelError::Invalid`] for bytes that are not a well-formed model (with the byte offset or the
/// field), [`ModelError::Unsupported`] for a model this build does not serve.
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Booster, ModelError> {
    let doc = match encoding(bytes)? {
        Encoding::Json => json::parse(bytes, limits),
        Encoding::Ubjson => ubjson::parse(bytes, limits),
    }
    .map_err(ModelError::Invalid)?;
    Booster::from_document(&doc)
}

/// The bytes of a model file, at most [`Limits::max_bytes`].
pub(crate) fn read_file(path: &Path, limits: &Limits) -> Result<Vec<u8>> {
    crate::files::read(path, limits.max_bytes, crate::files::MAX_MODEL_BYTES)
}

/// Whether the JSON file at `path` is an XGBoost model (a top-level `learner` object) rather than
/// Ferroserve's own `model.json` (whose first member is `format`). XGBoost writes `learner` first (its
/// members are sorted); a document that starts otherwise is read whole to look for it.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read.
pub fn is_model_json(path: &Path) -> Result<bool> {
    let head = crate::files::read_prefix(path, 4096)?;
    match first_key(&head) {
        Some(k) if k == b"learner" => return Ok(true),
        Some(k) if k == b"format" => return Ok(false),
        _ => {}
    }
    let limits = Limits::default();
    let Ok(bytes) = read_file(path, &limits) else { return Ok(false) };
    Ok(matches!(encoding(&bytes), Ok(Encoding::Json))
        && json::parse(&bytes, &limits).is_ok_and(|doc| doc.get("learner").is_some()))
}

/// The first member name of a JSON object, when the bytes start with one (no escapes in it).
fn first_key(bytes: &[u8]) -> Option<&[u8]> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let at = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = bytes[at..].strip_prefix(b"{")?;
    let at = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = rest[at..].strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_told_as_xgboost_tells_them() {
        assert_eq!(encoding(b"{\"learner\": {}}"), Ok(Encoding::Json));
        assert_eq!(encoding(b"  {\n  \"learner\": {}}"), Ok(Encoding::Json));
        assert_eq!(encoding(b"{L\x00\x00"), Ok(Encoding::Ubjson));
        assert_eq!(encoding(b"{}"), Ok(Encoding::Json));
        assert!(matches!(encoding(b"binf\x01"), Err(ModelError::Unsupported(m)) if m.contains("legacy binary")));
        assert!(matches!(encoding(b""), Err(ModelError::Invalid(m)) if m.contains("empty")));
        assert!(matches!(encoding(b"\x80\x04"), Err(ModelError::Invalid(m)) if m.contains("byte 0x80")));
        assert_eq!(first_key(b" {\n \"learner\":"), Some(&b"learner"[..]));
        assert_eq!(first_key(b"{\"format\": \"ferroserve\""), Some(&b"format"[..]));
        assert_eq!(first_key(b"[]"), None);
    }

    /// Two trees on two features: `x0 < 0.5` (NaN right) → 1 else −1; a categorical split on `x1` whose
    /// categories {2, 5} go right (0.5), others left (−0.25).
    fn tiny(objective: &str, base_score: &str, trees: usize) -> Booster {
        let numeric = r#"{"id": 0, "tree_param": {"num_nodes": "3", "num_feature": "2", "size_leaf_vector": "1",
            "num_deleted": "0"}, "left_children": [1, -1, -1], "right_children": [2, -1, -1],
            "parents": [2147483647, 0, 0], "split_indices": [0, 0, 0], "split_conditions": [5E-1, 1E0, -1E0],
            "default_left": [0, 0, 0], "split_type": [0, 0, 0], "categories_nodes": [], "categories_segments": [],
            "categories_sizes": [], "categories": []}"#;
        let categorical = r#"{"id": 1, "tree_param": {"num_nodes": "3", "num_feature": "2", "size_leaf_vector": "1",
            "num_deleted": "0"}, "left_children": [1, -1, -1], "right_children": [2, -1, -1],
            "parents": [2147483647, 0, 0], "split_indices": [1, 0, 0], "split_conditions": [1E-45, -2.5E-1, 5E-1],
            "default_left": [0, 0, 0], "split_type": [1, 0, 0], "categories_nodes": [0], "categories_segments": [0],
            "categories_sizes": [2], "categories": [5, 2]}"#;
        let list = [numeric, categorical][..trees].join(",");
        let indptr: Vec<String> = (0..=trees).map(|i| i.to_string()).collect();
        let info = vec!["0"; trees].join(",");
        let doc = format!(
            r#"{{"learner": {{"attributes": {{}}, "feature_names": [], "feature_types": [],
            "gradient_booster": {{"name": "gbtree", "model": {{"gbtree_model_param": {{"num_parallel_tree": "1",
            "num_trees": "{trees}"}}, "iteration_indptr": [{}], "tree_info": [{info}], "trees": [{list}]}}}},
            "learner_model_param": {{"base_score": "{base_score}", "num_class": "0", "num_feature": "2",
            "num_target": "1"}}, "objective": {{"name": "{objective}"}}}}, "version": [3, 2, 0]}}"#,
            indptr.join(",")
        );
        parse(doc.as_bytes(), &Limits::default()).unwrap()
    }

    fn margins(b: &Booster, missing: f32, rows: &[[f32; 2]]) -> Vec<f32> {
        let p = predict::Predictor::new(b, b.n_trees(), missing);
        let data = rows.iter().flatten().copied().collect();
        p.margins(&crate::model::Matrix { data, rows: rows.len(), cols: 2 })
    }

    #[test]
    fn splits_missing_values_and_categories_follow_xgboost() {
        let b = tiny("reg:squarederror", "[0E0]", 2);
        let rows = [
            [0.0, 2.0],                    // left (1) + category 2 (0.5)
            [f32::NAN, 2.7],               // NaN goes right (−1) + 2.7 is category 2 (0.5)
            [0.5, -1.0],                   // 0.5 < 0.5 fails (−1) + negative: left (−0.25)
            [1.0, 9.0],                    // −1 + unseen category: left
            [f32::INFINITY, 16_777_216.0], // −1 + beyond float32's exact integers: left
            [f32::NEG_INFINITY, f32::NAN], // −inf < 0.5 (1) + NaN goes right (0.5)
            [0.499_999_97, 5.0],           // one float32 step below the condition: left (1) + 0.5
        ];
        assert_eq!(margins(&b, f32::NAN, &rows), vec![1.5, -0.5, -1.25, -1.25, -1.25, 1.5, 1.5]);
        // The wrapper's `missing` value counts as missing too.
        assert_eq!(margins(&b, 0.0, &[[0.0, 2.0], [-0.0, 2.0], [1.0, 0.0]]), vec![-0.5, -0.5, -0.5]);
        // Numerical trees alone go through the flat walker; same answers.
        let numeric = tiny("reg:squarederror", "[0E0]", 1);
        let flat = margins(&numeric, f32::NAN, &rows);
        assert_eq!(flat, vec![1.0, -1.0, -1.0, -1.0, -1.0, 1.0, 1.0]);
        assert_eq!(margins(&numeric, 0.0, &[[0.0, 1.0], [0.25, 1.0]]), vec![-1.0, 1.0]);
    }

    #[test]
    fn base_score_is_a_margin_through_the_link() {
        // logit(0.3) in float32, as XGBoost computes it: -logf(1/0.3f - 1).
        let b = tiny("binary:logistic", "[3E-1]", 1);
        let want = -(1.0f32 / 0.3f32 - 1.0).ln();
        assert_eq!(margins(&b, f32::NAN, &[[0.0, 0.0]]), vec![want + 1.0]);
        // An old scalar base_score is broadcast; count:poisson starts from ln(base_score).
        let b = tiny("count:poisson", "5E-1", 1);
        assert_eq!(margins(&b, f32::NAN, &[[1.0, 0.0]]), vec![0.5f32.ln() - 1.0]);
        let served = XGBoostModel::from_booster(&b);
        assert_eq!(served.objective(), "count:poisson");
    }
}
