//! `metadata.json`: the MLOps record beside a model (the platform's ADR fields), plus the
//! training-time reference distribution Ferroserve uses for drift.
//!
//! Every field is optional and unknown fields are kept (and written back) so that records written by
//! notebooks, pipelines or later versions survive a round trip.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The parsed `metadata.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// The model's name (`anomaly-detector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// The version this folder holds (`v2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// When it was trained (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// The notebook that trained it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_notebook: Option<String>,
    /// The command that trained it (when not a notebook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_command: Option<String>,
    /// The source revision the training ran at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    /// What it was trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_data: Option<TrainingData>,
    /// The training hyper-parameters, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyperparameters: Option<Map<String, Value>>,
    /// Quality measured at training time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance_metrics: Option<PerformanceMetrics>,
    /// `validated`, `pending`, `failed` … as the platform's pipeline sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_status: Option<String>,
    /// Where it is deployed (a string or a list, as the platform writes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_to: Option<Value>,
    /// Per-feature distribution of the training data, for input-drift tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_distribution: Option<ReferenceDistribution>,
    /// Every other field, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `training_data` of the ADR.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingData {
    /// First timestamp of the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    /// Last timestamp of the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
    /// Number of rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Content hash (`sha256:<hex>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Every other field, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `performance_metrics` of the ADR.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PerformanceMetrics {
    /// Fraction of correct labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Of the samples flagged anomalous, the fraction that are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<f64>,
    /// Of the anomalous samples, the fraction flagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall: Option<f64>,
    /// Harmonic mean of precision and recall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f1_score: Option<f64>,
    /// Every other metric, kept as written.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The training data's per-feature distributions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReferenceDistribution {
    /// One entry per input feature, in column order.
    pub features: Vec<FeatureReference>,
}

/// One feature's training distribution: moments, 101 quantiles (for a KS test against the empirical
/// CDF) and a 10-bin histogram over the training range (for PSI).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureReference {
    /// The feature's name.
    pub name: String,
    /// Number of finite values seen.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Percentiles 0, 1, …, 100 (linear interpolation, as `numpy.percentile`).
    pub quantiles: Vec<f64>,
    /// Histogram bin edges (`counts.len() + 1` of them).
    pub histogram_edges: Vec<f64>,
    /// Counts per bin; the last bin includes its upper edge.
    pub histogram_counts: Vec<u64>,
}

impl FeatureReference {
    /// Number of histogram bins written by [`FeatureReference::from_values`].
    pub const BINS: usize = 10;

    /// Summarises the finite values of one feature.
    pub fn from_values(name: impl Into<String>, values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let name = name.into();
        let Some((&min, &max)) = v.first().zip(v.last()) else {
            return FeatureReference { name, ..FeatureReference::default() };
        };
        #[allow(clippy::cast_precision_loss)]
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let std = (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n).sqrt();
        let quantiles = (0..=100).map(|p| percentile_sorted(&v, f64::from(p))).collect();
        #[allow(clippy::cast_precision_loss)]
        let edges: Vec<f64> = (0..=Self::BINS).map(|i| min + (max - min) * (i as f64) / (Self::BINS as f64)).collect();
        let mut counts = vec![0u64; Self::BINS];
        for x in &v {
            let bin = if max > min {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let b = ((x - min) / (max - min) * Self::BINS as f64) as usize;
                b.min(Self::BINS - 1)
            } else {
                0
            };
            counts[bin] += 1;
        }
        FeatureReference {
            name,
            count: v.len() as u64,
            mean,
            std,
            min,
            max,
            quantiles,
            histogram_edges: edges,
            histogram_counts: counts,
        }
    }
}

/// `numpy.percentile(sorted, p)` with the default linear interpolation; `sorted` must be ascending and
/// non-empty, `p` in [0, 100].
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    #[allow(clippy::cast_precision_loss)]
    let pos = p / 100.0 * last as f64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let lo = (pos.floor() as usize).min(last);
    let hi = (lo + 1).min(last);
    #[allow(clippy::cast_precision_loss)]
    let frac = pos - lo as f64;
    // numpy's _lerp: a + (b - a) * t, switched to b - (b - a) * (1 - t) for t >= 0.5.
    let (a, b) = (sorted[lo], sorted[hi]);
    let diff = b - a;
    if frac >= 0.5 { b - diff * (1.0 - frac) } else { a + diff * frac }
}

impl ModelMetadata {
    /// Reads `metadata.json`.
    ///
    /// # Errors
    /// [`crate::files::read_side_file`]'s errors, or [`Error::Json`], naming the file.
    pub fn read(path: &Path) -> Result<ModelMetadata> {
        let bytes = crate::files::read_side_file(path)?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Json { path: path.into(), source })
    }

    /// The bytes of `metadata.json`: pretty JSON with a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let text = r#"{"model_name":"anomaly-detector","version":"v2","owner":"sre",
            "training_data":{"rows":10,"hash":"sha256:ab","source":"prometheus"},
            "performance_metrics":{"precision":0.9,"auc":0.95},"deployed_to":["staging"]}"#;
        let m: ModelMetadata = serde_json::from_str(text).unwrap();
        assert_eq!(m.version.as_deref(), Some("v2"));
        assert_eq!(m.extra["owner"], "sre");
        assert_eq!(m.training_data.as_ref().unwrap().extra["source"], "prometheus");
        assert_eq!(m.performance_metrics.as_ref().unwrap().extra["auc"], 0.95);
        let back: ModelMetadata = serde_json::from_slice(&m.to_bytes()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn percentile_matches_numpy() {
        // numpy.percentile([1, 2, 3, 4], [0, 10, 50, 90, 100]) = [1.0, 1.3, 2.5, 3.7, 4.0]
        let v = [1.0, 2.0, 3.0, 4.0];
        let got: Vec<f64> = [0.0, 10.0, 50.0, 90.0, 100.0].iter().map(|&p| percentile_sorted(&v, p)).collect();
        let want = [1.0, 1.3, 2.5, 3.7, 4.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{g} vs {w}");
        }
    }

    #[test]
    fn feature_reference_summarises() {
        let r = FeatureReference::from_values("x", &[0.0, 10.0, 5.0, f64::NAN]);
        assert_eq!(r.count, 3);
        assert_eq!((r.min, r.max, r.mean), (0.0, 10.0, 5.0));
        assert_eq!(r.quantiles.len(), 101);
        assert_eq!(r.quantiles[50], 5.0);
        assert_eq!(r.histogram_counts.iter().sum::<u64>(), 3);
        assert_eq!(r.histogram_counts[9], 1);
    }
}
