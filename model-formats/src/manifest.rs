//! `model.json`: what a native artifact is (its kind, fitted parameters and signature).
//!
//! ```json
//! {
//!   "format": "ferroserve",
//!   "format_version": 1,
//!   "kind": "isolation_forest",
//!   "params": { "n_estimators": 100, "max_samples": 256, … },
//!   "n_features": 5,
//!   "feature_names": ["cpu_usage", …],
//!   "signature": { "inputs": [ … ], "outputs": [ … ] }
//! }
//! ```
//! The tensors live beside it in `model.safetensors`; `docs/formats.md` lists them per kind.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Signature;
use crate::tree::IsolationForestParams;

/// The value of `format`.
pub const FORMAT: &str = "ferroserve";
/// The newest `format_version` this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Kinds this build can load.
pub const KINDS: [&str; 1] = ["isolation_forest"];

/// A model's kind with its kind-specific fitted parameters (`kind` + `params` in `model.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "params", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ModelSpec {
    /// `sklearn.ensemble.IsolationForest`.
    IsolationForest(IsolationForestParams),
}

/// The parsed `model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The layout version of the artifact, [`FORMAT_VERSION`] when written by this build.
    pub format_version: u32,
    /// The kind and its parameters.
    #[serde(flatten)]
    pub spec: ModelSpec,
    /// The number of input features.
    pub n_features: usize,
    /// Feature names, when the model was fitted on named columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_names: Option<Vec<String>>,
    /// Inputs and outputs, as served in the model's metadata.
    pub signature: Signature,
}

impl Manifest {
    /// Reads and checks `model.json`: the format, a supported version, a known kind.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Json`], or [`Error::UnsupportedFormat`] naming the field.
    pub fn read(path: &Path) -> Result<Manifest> {
        let bytes = crate::files::read_side_file(path)?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|source| Error::Json { path: path.into(), source })?;
        let field = |name: &str| value.get(name).cloned().unwrap_or(serde_json::Value::Null);
        let shown = |v: serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        if field("format") != FORMAT {
            return Err(Error::UnsupportedFormat { path: path.into(), what: "format", found: shown(field("format")) });
        }
        match field("format_version").as_u64() {
            Some(v) if v >= 1 && v <= u64::from(FORMAT_VERSION) => {}
            _ => {
                return Err(Error::UnsupportedFormat {
                    path: path.into(),
                    what: "format_version",
                    found: shown(field("format_version")),
                });
            }
        }
        let kind = field("kind");
        if !kind.as_str().is_some_and(|k| KINDS.contains(&k)) {
            return Err(Error::UnsupportedFormat { path: path.into(), what: "kind", found: shown(kind) });
        }
        serde_json::from_value(value).map_err(|source| Error::Json { path: path.into(), source })
    }

    /// The bytes of `model.json`: pretty JSON with a final newline, stable for equal manifests.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}
