//! The anomaly notebook's 45 features from the platform's five metric series, as pandas computes them,
//! and the CSV `ferroserve-train dataset` writes (the input of `isolation-forest`).
//!
//! Per metric, in [`crate::prometheus::DEFAULT_QUERIES`]' order, nine columns `<metric>_<feature>`
//! ([`FEATURES`]), with `v` the series on the grid:
//! `value` = v; `mean_5m`, `std_5m`, `min_5m`, `max_5m` = `v.rolling(5)` mean, std (ddof 1), min, max;
//! `lag_1`, `lag_5` = `v.shift(1)`, `v.shift(5)`; `diff` = `v.diff()`; `pct_change` = `v.pct_change()`
//! (`v / v.shift(1) - 1`).
//!
//! Before that, missing points (no sample, NaN, ±infinity) are filled forward, then backward (pandas
//! `ffill().bfill()`); after it, every NaN or infinity (a `pct_change` from 0) becomes 0. The grid starts
//! [`WARMUP`] steps before the first row written, so that every window and lag of a written row is full:
//! as the notebook, which drops its first 5 rows.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::output::rfc3339;
use crate::prometheus::Grid;

/// The nine features of a metric, in column order.
pub const FEATURES: [&str; 9] =
    ["value", "mean_5m", "std_5m", "min_5m", "max_5m", "lag_1", "lag_5", "diff", "pct_change"];
/// Points in a rolling window.
pub const WINDOW: usize = 5;
/// Grid points computed before the first row written (the longest lag, `lag_5`).
pub const WARMUP: usize = 5;
/// The provenance file written beside a data set: `data.csv` → `data.csv.provenance.json`.
pub const PROVENANCE_SUFFIX: &str = ".provenance.json";

/// Where the provenance of the data set `csv` is kept.
pub fn provenance_path(csv: &Path) -> PathBuf {
    let mut name = csv.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    name.push(PROVENANCE_SUFFIX);
    csv.with_file_name(name)
}

/// pandas `ffill().bfill()`, with infinities missing too.
pub fn fill(values: &mut [f64]) {
    let mut last = None;
    for v in values.iter_mut() {
        if v.is_finite() {
            last = Some(*v);
        } else if let Some(l) = last {
            *v = l;
        } else {
            *v = f64::NAN;
        }
    }
    if let Some(first) = values.iter().copied().find(|v| v.is_finite()) {
        for v in values.iter_mut().take_while(|v| !v.is_finite()) {
            *v = first;
        }
    }
}

/// The nine feature columns of one filled series, as pandas gives them (NaN where pandas gives NaN).
pub fn derive(v: &[f64]) -> [Vec<f64>; 9] {
    let n = v.len();
    let shift = |k: usize| (0..n).map(|i| if i >= k { v[i - k] } else { f64::NAN }).collect::<Vec<_>>();
    // rolling(5) with pandas' default min_periods (the window size): NaN until the window is full.
    let window = |f: &dyn Fn(&[f64]) -> f64| {
        (0..n).map(|i| if i + 1 >= WINDOW { f(&v[i + 1 - WINDOW..=i]) } else { f64::NAN }).collect::<Vec<_>>()
    };
    #[allow(clippy::cast_precision_loss)]
    let mean = |w: &[f64]| w.iter().sum::<f64>() / w.len() as f64;
    let std = |w: &[f64]| {
        let m = mean(w);
        #[allow(clippy::cast_precision_loss)]
        let var = w.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (w.len() - 1) as f64;
        var.sqrt()
    };
    let lag_1 = shift(1);
    let diff = v.iter().zip(&lag_1).map(|(x, p)| x - p).collect();
    let pct_change = v.iter().zip(&lag_1).map(|(x, p)| x / p - 1.0).collect();
    [
        v.to_vec(),
        window(&mean),
        window(&std),
        window(&|w| w.iter().copied().fold(f64::INFINITY, f64::min)),
        window(&|w| w.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
        lag_1,
        shift(5),
        diff,
        pct_change,
    ]
}

/// The data set: one row per grid point after the warm-up, a `timestamp` column and 9 columns per metric.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureTable {
    /// Each row's time, Unix seconds.
    pub timestamps: Vec<i64>,
    /// Column names, `<metric>_<feature>`.
    pub names: Vec<String>,
    /// Column values (finite).
    pub columns: Vec<Vec<f64>>,
}

impl FeatureTable {
    /// The features of `series` (metric name, values on `grid`, raw), keeping the rows from `skip` on.
    pub fn build(series: &[(String, Vec<f64>)], grid: &Grid, skip: usize) -> FeatureTable {
        let mut names = Vec::with_capacity(series.len() * FEATURES.len());
        let mut columns = Vec::with_capacity(names.capacity());
        for (metric, raw) in series {
            let mut v = raw.clone();
            fill(&mut v);
            for (feature, column) in FEATURES.iter().zip(derive(&v)) {
                names.push(format!("{metric}_{feature}"));
                columns.push(column.into_iter().skip(skip).map(|x| if x.is_finite() { x } else { 0.0 }).collect());
            }
        }
        let timestamps = (skip..grid.len()).map(|i| grid.at(i)).collect();
        FeatureTable { timestamps, names, columns }
    }

    /// The rows written.
    pub fn rows(&self) -> usize {
        self.timestamps.len()
    }

    /// The CSV: `timestamp` (RFC 3339, UTC) then the feature columns, values in Rust's shortest exact form.
    pub fn to_csv(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let header: Vec<&str> = std::iter::once("timestamp").chain(self.names.iter().map(String::as_str)).collect();
        let _ = writeln!(out, "{}", header.join(","));
        for (r, t) in self.timestamps.iter().enumerate() {
            let _ = write!(out, "{}", unix_rfc3339(*t));
            for c in &self.columns {
                let _ = write!(out, ",{}", c[r]);
            }
            out.push(b'\n');
        }
        out
    }
}

/// Unix seconds as RFC 3339 UTC (`1970-01-01T00:00:00Z` for times before 1970).
pub fn unix_rfc3339(t: i64) -> String {
    let secs = u64::try_from(t).unwrap_or(0);
    rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// What a data set came from, kept beside it ([`provenance_path`]) and carried into `metadata.json`
/// (`training_data.source`) when a model is trained on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    /// The Prometheus URL.
    pub url: String,
    /// `(column prefix, PromQL)`, in column order.
    pub queries: Vec<(String, String)>,
    /// The rows' grid (the first written row is `grid.at(WARMUP)`).
    pub grid: Grid,
    /// Rows written.
    pub rows: usize,
    /// When Prometheus was queried.
    pub queried_at: std::time::SystemTime,
}

impl Provenance {
    /// The provenance JSON, with the CSV's hash so that a reader can tell it describes that file.
    pub fn to_json(&self, csv: &[u8]) -> Value {
        // A list, not an object: it keeps the columns' order.
        let queries: Vec<Value> = self.queries.iter().map(|(n, q)| json!({"name": n, "promql": q})).collect();
        json!({
            "source": "prometheus",
            "prometheus_url": self.url,
            "queries": queries,
            "start": unix_rfc3339(self.grid.at(WARMUP)),
            "end": unix_rfc3339(self.grid.end),
            "step_seconds": self.grid.step,
            "warmup_steps": WARMUP,
            "rows": self.rows,
            "queried_at": rfc3339(self.queried_at),
            "csv_sha256": format!("sha256:{:x}", Sha256::digest(csv)),
        })
    }
}

/// Writes the CSV to `out` and its provenance beside it; returns the provenance file.
///
/// # Errors
/// [`Error::Io`] when a file cannot be written.
pub fn write_dataset(out: &Path, table: &FeatureTable, provenance: &Provenance) -> Result<PathBuf> {
    let csv = table.to_csv();
    let sidecar = provenance_path(out);
    let mut json = serde_json::to_vec_pretty(&provenance.to_json(&csv)).unwrap_or_default();
    json.push(b'\n');
    std::fs::write(out, &csv).map_err(|e| Error::io(out, e))?;
    std::fs::write(&sidecar, json).map_err(|e| Error::io(&sidecar, e))?;
    Ok(sidecar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_forward_then_backward() {
        let mut v = [f64::NAN, f64::NAN, 2.0, f64::NAN, f64::INFINITY, 5.0, f64::NAN];
        fill(&mut v);
        assert_eq!(v, [2.0, 2.0, 2.0, 2.0, 2.0, 5.0, 5.0]);
        let mut none = [f64::NAN; 3];
        fill(&mut none);
        assert!(none.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn derives_pandas_columns() {
        let v = [1.0, 2.0, 4.0, 4.0, 0.0, 5.0, 0.0, 0.0];
        let [value, mean, std, min, max, lag_1, lag_5, diff, pct] = derive(&v);
        assert_eq!(value, v);
        assert!(mean[..4].iter().chain(&std[..4]).chain(&lag_5[..5]).all(|x| x.is_nan()));
        assert_eq!((mean[4], min[4], max[4], lag_1[1], lag_5[5], diff[2]), (2.2, 0.0, 4.0, 1.0, 1.0, 2.0));
        // pandas: pd.Series([1, 2, 4, 4, 0]).std() = 1.7888543819998317
        assert!((std[4] - 1.788_854_381_999_831_7).abs() < 1e-15);
        assert_eq!((pct[1], pct[4]), (1.0, -1.0));
        assert!(pct[5].is_infinite() && pct[7].is_nan());
    }

    #[test]
    fn provenance_sits_beside_the_csv() {
        assert_eq!(provenance_path(Path::new("d/data.csv")), Path::new("d/data.csv.provenance.json"));
    }
}
