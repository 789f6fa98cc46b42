//! Scalers, in float64 (`sklearn/preprocessing/_data.py`). Each takes NaN (a missing value, passed
//! through as scikit-learn does with `ensure_all_finite="allow-nan"`) and refuses infinities.
//!
//! - StandardScaler: `(x - mean_) / scale_`, each step only when fitted with it (`with_mean`, `with_std`).
//! - MinMaxScaler: `x * scale_ + min_`, then clipped to `feature_range` when `clip`.
//! - RobustScaler: `(x - center_) / scale_` (`with_centering`, `with_scaling`).
//!
//! Float32 requests are widened to float64 (scikit-learn would keep a float32 array float32).

use super::{Attrs, Estimator, Features, Precision, dim, kind_of, tensor};
use crate::error::{InferError, Result};
use crate::model::{Matrix, NonFinite, TabularInput, TensorSpec};
use crate::tensor::{DataType, Tensor, TensorData};

/// One of the three scalers, as a sequence of per-column operations.
#[derive(Debug)]
pub(crate) struct Scaler {
    kind: &'static str,
    input: TabularInput,
    outputs: Vec<TensorSpec>,
    op: Op,
}

#[derive(Debug)]
enum Op {
    /// `(x - center) / scale` with either part optional (Standard, Robust).
    CenterScale { center: Option<Vec<f64>>, scale: Option<Vec<f64>> },
    /// `x * scale + min`, clipped to `clip` (MinMax).
    ScaleShift { scale: Vec<f64>, min: Vec<f64>, clip: Option<(f64, f64)> },
}

impl Scaler {
    pub(crate) fn read(obj: &Attrs<'_>) -> Result<Self> {
        let input = obj.input()?;
        let f = input.n_features;
        // A step applies when its parameter says so (`with_mean`, …), whatever attributes were stored.
        let step = |flag: &str, name: &str| -> Result<Option<Vec<f64>>> {
            let on = obj.opt(flag).and_then(|v| v.as_bool()).unwrap_or(true);
            if on { obj.vector(name, f).map(Some) } else { Ok(None) }
        };
        let op = match obj.name.as_str() {
            "StandardScaler" => {
                Op::CenterScale { center: step("with_mean", "mean_")?, scale: step("with_std", "scale_")? }
            }
            "RobustScaler" => {
                Op::CenterScale { center: step("with_centering", "center_")?, scale: step("with_scaling", "scale_")? }
            }
            _ => {
                let clip = if obj.opt("clip").and_then(|c| c.as_bool()).unwrap_or(false) {
                    let range = obj.get("feature_range")?.as_seq().unwrap_or_default();
                    match range.as_slice() {
                        [lo, hi] => match (lo.as_f64(), hi.as_f64()) {
                            (Some(lo), Some(hi)) if lo <= hi => Some((lo, hi)),
                            _ => return Err(obj.bad("feature_range must be two increasing numbers")),
                        },
                        _ => return Err(obj.bad("feature_range must be a pair")),
                    }
                } else {
                    None
                };
                Op::ScaleShift { scale: obj.vector("scale_", f)?, min: obj.vector("min_", f)?, clip }
            }
        };
        Ok(Scaler {
            kind: kind_of(&obj.name),
            outputs: vec![TensorSpec::new("transform", DataType::Fp64, vec![-1, dim(f)])],
            input,
            op,
        })
    }

    fn apply(&self, mut x: Matrix<f64>) -> Matrix<f64> {
        let f = x.cols.max(1);
        match &self.op {
            Op::CenterScale { center, scale } => {
                for row in x.data.chunks_exact_mut(f) {
                    if let Some(c) = center {
                        for (v, c) in row.iter_mut().zip(c) {
                            *v -= c;
                        }
                    }
                    if let Some(s) = scale {
                        for (v, s) in row.iter_mut().zip(s) {
                            *v /= s;
                        }
                    }
                }
            }
            Op::ScaleShift { scale, min, clip } => {
                for row in x.data.chunks_exact_mut(f) {
                    for ((v, s), m) in row.iter_mut().zip(scale).zip(min) {
                        *v *= s;
                        *v += m;
                        if let Some((lo, hi)) = clip {
                            // np.clip: NaN stays NaN.
                            if *v < *lo {
                                *v = *lo;
                            } else if *v > *hi {
                                *v = *hi;
                            }
                        }
                    }
                }
            }
        }
        x
    }
}

impl Estimator for Scaler {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn input(&self) -> &TabularInput {
        &self.input
    }
    fn precision(&self) -> Precision {
        Precision::F64
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(&self, x: Features, input: &str, names: &[String]) -> Result<Vec<Tensor>, InferError> {
        let y = self.apply(x.into_f64(input, NonFinite::AllowNan)?);
        names.iter().map(|name| tensor(name, y.rows, Some(y.cols), TensorData::Fp64(y.data.clone()))).collect()
    }

    fn transform(&self, x: Features, input: &str) -> Option<Result<Matrix<f64>, InferError>> {
        Some(x.into_f64(input, NonFinite::AllowNan).map(|m| self.apply(m)).map_err(InferError::from))
    }
}
