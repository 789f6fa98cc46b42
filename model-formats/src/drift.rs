//! Input drift against a feature's training distribution ([`FeatureReference`] in `metadata.json`).
//!
//! - **Kolmogorov–Smirnov**: the largest gap `D` between the empirical CDF of recent values and the
//!   training CDF. The training CDF is the piecewise-linear CDF through the stored percentiles 0…100
//!   (the stored summary of the training sample), and the p-value is the two-sample asymptotic one with
//!   the effective size `n·m / (n + m)` (`m` = the training count) and Stephens' small-sample correction
//!   (as in *Numerical Recipes* `kstwo`), so that it reads like `scipy.stats.ks_2samp` run on the
//!   recent values against the training values.
//! - **PSI** (population stability index) over the reference histogram's bins (values outside the training
//!   range fall in the first or last bin): `Σ (p − q) · ln(p / q)`, each proportion floored at 1e-4. Common
//!   reading: < 0.1 stable, 0.1–0.2 moderate shift, > 0.2 significant shift.

use serde::Serialize;

use crate::metadata::FeatureReference;

/// The drift statistics of one feature.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FeatureDrift {
    /// The KS statistic `D` (0–1).
    pub ks_statistic: f64,
    /// The KS test's p-value: small means the recent values are unlikely under the training distribution.
    pub ks_pvalue: f64,
    /// The population stability index.
    pub psi: f64,
}

/// The smallest proportion PSI uses, so that an empty bin does not make it infinite.
const PSI_FLOOR: f64 = 1e-4;

/// Compares `sample` (recent finite values of one feature, any order) with `reference`; `None` when either
/// is empty or the reference has no percentiles.
pub fn feature_drift(sample: &[f64], reference: &FeatureReference) -> Option<FeatureDrift> {
    let mut sorted: Vec<f64> = sample.iter().copied().filter(|x| x.is_finite()).collect();
    if sorted.is_empty() || reference.quantiles.len() < 2 || reference.count == 0 {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let d = ks_statistic(&sorted, &reference.quantiles);
    #[allow(clippy::cast_precision_loss)]
    let (n, m) = (sorted.len() as f64, reference.count as f64);
    let effective = n * m / (n + m);
    let root = effective.sqrt();
    let ks_pvalue = kolmogorov_q((root + 0.12 + 0.11 / root) * d);
    Some(FeatureDrift { ks_statistic: d, ks_pvalue, psi: psi(&sorted, reference) })
}

/// The training CDF at `x`: linear between the percentiles `quantiles[p]` (p = 0…100 ⇒ F = p/100).
fn reference_cdf(quantiles: &[f64], x: f64) -> f64 {
    let last = quantiles.len() - 1;
    #[allow(clippy::cast_precision_loss)]
    let step = 1.0 / last as f64;
    if x < quantiles[0] {
        return 0.0;
    }
    if x >= quantiles[last] {
        return 1.0;
    }
    // The first percentile above x; ties (a flat run of equal percentiles) take the highest, as a CDF is
    // right-continuous.
    let hi = quantiles.partition_point(|&q| q <= x);
    let lo = hi - 1;
    let (a, b) = (quantiles[lo], quantiles[hi]);
    #[allow(clippy::cast_precision_loss)]
    let base = lo as f64 * step;
    if b > a { base + step * (x - a) / (b - a) } else { base }
}

/// The training CDF just below `x` (differs from [`reference_cdf`] where percentiles repeat: a point mass).
fn reference_cdf_left(quantiles: &[f64], x: f64) -> f64 {
    let last = quantiles.len() - 1;
    #[allow(clippy::cast_precision_loss)]
    let step = 1.0 / last as f64;
    if x <= quantiles[0] {
        return 0.0;
    }
    if x > quantiles[last] {
        return 1.0;
    }
    let hi = quantiles.partition_point(|&q| q < x);
    let lo = hi - 1;
    let (a, b) = (quantiles[lo], quantiles[hi]);
    #[allow(clippy::cast_precision_loss)]
    let base = lo as f64 * step;
    if b > a { base + step * (x - a) / (b - a) } else { base }
}

/// `sup |F_n − F_ref|`, checked on both sides of every sample value and at every percentile.
fn ks_statistic(sorted: &[f64], quantiles: &[f64]) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let n = sorted.len() as f64;
    let mut d = 0.0f64;
    let mut i = 0;
    while i < sorted.len() {
        let x = sorted[i];
        let mut j = i;
        while j < sorted.len() && sorted[j] == x {
            j += 1;
        }
        #[allow(clippy::cast_precision_loss)]
        let (below, at) = (i as f64 / n, j as f64 / n);
        let gap_left = (reference_cdf_left(quantiles, x) - below).abs();
        d = d.max(gap_left).max((at - reference_cdf(quantiles, x)).abs());
        i = j;
    }
    for &q in quantiles {
        let f = reference_cdf(quantiles, q);
        #[allow(clippy::cast_precision_loss)]
        let fn_q = sorted.partition_point(|&x| x <= q) as f64 / n;
        d = d.max((fn_q - f).abs());
    }
    d.min(1.0)
}

/// The Kolmogorov distribution's survival function `Q(λ) = 2 Σ (−1)^(k−1) e^(−2k²λ²)`.
pub fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda < 0.2 {
        return 1.0;
    }
    let mut sum = 0.0;
    let mut sign = 1.0;
    for k in 1..=100u32 {
        let kf = f64::from(k);
        let term = (-2.0 * kf * kf * lambda * lambda).exp();
        sum += sign * term;
        if term < 1e-12 {
            break;
        }
        sign = -sign;
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

/// PSI of the sorted `sample` against the reference histogram.
fn psi(sorted: &[f64], reference: &FeatureReference) -> f64 {
    let counts = &reference.histogram_counts;
    let edges = &reference.histogram_edges;
    let total: u64 = counts.iter().sum();
    if counts.is_empty() || edges.len() != counts.len() + 1 || total == 0 {
        return 0.0;
    }
    let mut recent = vec![0u64; counts.len()];
    for &x in sorted {
        // Bin i holds [edges[i], edges[i+1]); the last bin also its upper edge; outside values go to the ends.
        let bin = edges[1..counts.len()].partition_point(|&e| e <= x);
        recent[bin] += 1;
    }
    #[allow(clippy::cast_precision_loss)]
    let (n, m) = (sorted.len() as f64, total as f64);
    counts
        .iter()
        .zip(&recent)
        .map(|(&r, &s)| {
            #[allow(clippy::cast_precision_loss)]
            let (q, p) = ((r as f64 / m).max(PSI_FLOOR), (s as f64 / n).max(PSI_FLOOR));
            (p - q) * (p / q).ln()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic spread of `n` values over [lo, hi): a stand-in for a uniform sample.
    fn spread(n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|i| lo + (hi - lo) * ((i * 7919) % n) as f64 / n as f64).collect()
    }

    #[test]
    fn kolmogorov_q_matches_known_values() {
        // Q(1.36) ≈ 0.049 (the 5% critical value), Q(1.63) ≈ 0.010, Q(0.5) ≈ 0.964.
        assert!((kolmogorov_q(1.358) - 0.05).abs() < 1e-3, "{}", kolmogorov_q(1.358));
        assert!((kolmogorov_q(1.628) - 0.01).abs() < 1e-3);
        assert!((kolmogorov_q(0.5) - 0.9639).abs() < 1e-3);
        assert_eq!(kolmogorov_q(0.0), 1.0);
        assert!(kolmogorov_q(5.0) < 1e-12);
    }

    #[test]
    fn the_same_distribution_does_not_drift_and_a_shift_does() {
        let reference = FeatureReference::from_values("cpu", &spread(10_000, 0.0, 1.0));
        let same = feature_drift(&spread(1000, 0.0, 1.0), &reference).unwrap();
        assert!(same.ks_statistic < 0.01, "{same:?}");
        assert!(same.ks_pvalue > 0.5, "{same:?}");
        assert!(same.psi < 0.01, "{same:?}");

        let shifted = feature_drift(&spread(1000, 0.3, 1.3), &reference).unwrap();
        // A uniform shifted by 0.3: D = 0.3 exactly.
        assert!((shifted.ks_statistic - 0.3).abs() < 0.01, "{shifted:?}");
        assert!(shifted.ks_pvalue < 1e-10, "{shifted:?}");
        assert!(shifted.psi > 0.2, "{shifted:?}");

        let slight = feature_drift(&spread(200, 0.02, 1.02), &reference).unwrap();
        assert!(slight.ks_pvalue > 0.05, "a 2% shift on 200 values is not significant: {slight:?}");
    }

    #[test]
    fn edge_cases_are_defined() {
        let reference = FeatureReference::from_values("x", &[1.0, 1.0, 1.0]);
        let d = feature_drift(&[1.0, 1.0], &reference).unwrap();
        assert_eq!(d.ks_statistic, 0.0, "a constant feature seen again: no drift");
        let d = feature_drift(&[2.0], &reference).unwrap();
        assert_eq!(d.ks_statistic, 1.0);
        assert!(feature_drift(&[], &reference).is_none());
        assert!(feature_drift(&[f64::NAN], &reference).is_none());
        assert!(feature_drift(&[1.0], &FeatureReference::default()).is_none());
    }
}
