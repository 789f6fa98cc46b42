//! Input drift: a bounded window of each version's recent input rows, compared with the training
//! distribution in its `metadata.json` (`reference_distribution`) by [`ferroserve_formats::drift`].
//!
//! Rows are the input's last dimension: a tabular model's `[B, F]` rows, an LSTM's `[B, T, F]` time
//! steps. The window keeps the last `--drift_window` rows (older ones are overwritten); statistics are
//! computed when asked (`/metrics` scrape, the drift endpoint), never on the request path, where
//! recording a row is one copy into the ring under a short lock.

use std::sync::Mutex;

use ferroserve_formats::drift::{FeatureDrift, feature_drift};
use ferroserve_formats::metadata::FeatureReference;
use ferroserve_formats::{Tensor, TensorData};
use serde::Serialize;

/// Drift settings (`--drift_window`, `--drift_pvalue`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftConfig {
    /// Rows kept per model version; 0 turns drift tracking off.
    pub window: usize,
    /// A feature drifts when its KS p-value is below this.
    pub level: f64,
    /// Rows needed before the drift flag can be raised.
    pub min_samples: usize,
}

impl Default for DriftConfig {
    fn default() -> Self {
        DriftConfig { window: 1000, level: 0.05, min_samples: 100 }
    }
}

/// The recent rows of one model version and its training distribution.
#[derive(Debug)]
pub struct DriftWindow {
    config: DriftConfig,
    reference: Vec<FeatureReference>,
    ring: Mutex<Ring>,
}

#[derive(Debug)]
struct Ring {
    /// `window × features` values, row-major.
    values: Vec<f64>,
    /// The next row to write.
    next: usize,
    /// Rows held (at most `window`).
    len: usize,
}

/// What the drift endpoint and the metrics show.
#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    /// Rows in the window.
    pub samples: usize,
    /// The window's capacity.
    pub window: usize,
    /// The p-value below which a feature drifts.
    pub level: f64,
    /// Rows needed before the flag can be raised.
    pub min_samples: usize,
    /// Whether any feature drifts (and the window holds `min_samples` rows).
    pub detected: bool,
    /// Per feature, in column order.
    pub features: Vec<FeatureReport>,
}

/// One feature's drift.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureReport {
    /// The feature's name from the reference.
    pub name: String,
    /// The statistics; `None` while the window has no finite value of it.
    #[serde(flatten)]
    pub stats: Option<FeatureDrift>,
    /// Whether this feature's p-value is below the level.
    pub drifted: bool,
}

impl DriftWindow {
    /// A window for a model whose training distribution is `reference`; `None` when tracking is off or
    /// there is no reference.
    pub fn new(reference: &[FeatureReference], config: DriftConfig) -> Option<DriftWindow> {
        if config.window == 0 || reference.is_empty() {
            return None;
        }
        let ring = Ring { values: vec![0.0; config.window * reference.len()], next: 0, len: 0 };
        Some(DriftWindow { config, reference: reference.to_vec(), ring: Mutex::new(ring) })
    }

    /// Records the rows of the first input whose last dimension is the number of reference features.
    pub fn record(&self, inputs: &[Tensor]) {
        let f = self.reference.len();
        let Some(input) = inputs.iter().find(|t| t.shape.last() == Some(&f) && t.shape.len() >= 2) else {
            return;
        };
        let rows = input.data.len() / f;
        // Only the last `window` rows of a large batch can stay; skip converting the rest.
        let skip = rows.saturating_sub(self.config.window);
        let mut ring = self.ring.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for r in skip..rows {
            let at = ring.next * f;
            for c in 0..f {
                ring.values[at + c] = value(&input.data, r * f + c);
            }
            ring.next = (ring.next + 1) % self.config.window;
            ring.len = (ring.len + 1).min(self.config.window);
        }
    }

    /// The statistics of the rows in the window.
    pub fn report(&self) -> DriftReport {
        let f = self.reference.len();
        let (columns, samples) = {
            let ring = self.ring.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let rows = &ring.values[..ring.len * f];
            let columns: Vec<Vec<f64>> = (0..f).map(|c| rows.iter().skip(c).step_by(f).copied().collect()).collect();
            (columns, ring.len)
        };
        let features: Vec<FeatureReport> = self
            .reference
            .iter()
            .zip(&columns)
            .map(|(reference, column)| {
                let stats = feature_drift(column, reference);
                let drifted = stats.is_some_and(|s| s.ks_pvalue < self.config.level);
                FeatureReport { name: reference.name.clone(), stats, drifted }
            })
            .collect();
        let detected = samples >= self.config.min_samples && features.iter().any(|f| f.drifted);
        DriftReport {
            samples,
            window: self.config.window,
            level: self.config.level,
            min_samples: self.config.min_samples,
            detected,
            features,
        }
    }
}

/// Element `i` as `f64` (NaN for BYTES, which a reference never describes).
fn value(data: &TensorData, i: usize) -> f64 {
    match data {
        TensorData::Fp64(v) => v.get(i).copied().unwrap_or(f64::NAN),
        other => other.get_f32(i).map_or(f64::NAN, f64::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> Vec<FeatureReference> {
        let values: Vec<f64> = (0..1000).map(|i| f64::from(i) / 1000.0).collect();
        vec![FeatureReference::from_values("cpu", &values), FeatureReference::from_values("mem", &values)]
    }

    fn rows(n: usize, shift: f64) -> Tensor {
        let data: Vec<f64> =
            (0..n).flat_map(|i| [i as f64 / n as f64, (i * 7 % n) as f64 / n as f64 + shift]).collect();
        Tensor::new("x", vec![n, 2], TensorData::Fp64(data)).unwrap()
    }

    #[test]
    fn a_shifted_feature_raises_the_flag_once_the_window_holds_enough() {
        let config = DriftConfig { window: 300, level: 0.05, min_samples: 100 };
        let w = DriftWindow::new(&reference(), config).unwrap();
        w.record(&[rows(50, 0.5)]);
        let r = w.report();
        assert_eq!(r.samples, 50);
        assert!(r.features[1].drifted && !r.detected, "too few rows to raise the flag: {r:?}");
        w.record(&[rows(250, 0.5)]);
        let r = w.report();
        assert_eq!(r.samples, 300, "bounded");
        assert!(r.detected);
        assert!(!r.features[0].drifted, "cpu did not move: {:?}", r.features[0]);
        assert!(r.features[1].drifted);
        // The stream returns to normal: the window forgets the shift.
        w.record(&[rows(300, 0.0)]);
        assert!(!w.report().detected, "{:?}", w.report());
    }

    #[test]
    fn inputs_of_other_shapes_are_not_recorded() {
        let w = DriftWindow::new(&reference(), DriftConfig::default()).unwrap();
        w.record(&[Tensor::new("x", vec![3, 3], TensorData::Fp32(vec![0.0; 9])).unwrap()]);
        w.record(&[Tensor::new("x", vec![2], TensorData::Fp32(vec![0.0; 2])).unwrap()]);
        assert_eq!(w.report().samples, 0);
        // [B, T, F]: every step is a row.
        w.record(&[Tensor::new("x", vec![2, 3, 2], TensorData::Fp32(vec![0.5; 12])).unwrap()]);
        assert_eq!(w.report().samples, 6);
        assert!(DriftWindow::new(&[], DriftConfig::default()).is_none());
        assert!(DriftWindow::new(&reference(), DriftConfig { window: 0, ..DriftConfig::default() }).is_none());
    }
}
