//! Linear models, in float64 (`sklearn/linear_model/_base.py`, `_logistic.py`):
//! `decision_function = X · coef_ᵀ + intercept_`.
//!
//! - LinearRegression, Ridge, Lasso, ElasticNet: `predict` is the decision function (single target).
//! - LogisticRegression: `predict` is `classes_[score > 0]` (binary) or `classes_[argmax]`;
//!   `predict_proba` is one-vs-rest (`expit`, normalised over classes; binary `[1 - p, p]`) or softmax,
//!   chosen as the writing version chose it from `multi_class`, `solver` and the class count.
//!
//! The dot product adds the features in order; scikit-learn's BLAS may group the additions
//! differently, which moves the last bit or two (far inside the 1e-9 relative parity tolerance).

use super::{Attrs, Estimator, Features, Labels, Precision, argmax, dim, kind_of, np_sum, tensor};
use crate::error::{InferError, Result};
use crate::model::{LabelOutput, Matrix, NonFinite, TabularInput, TensorSpec};
use crate::tensor::{DataType, Tensor, TensorData};

/// `coef_` as `[rows, n_features]` and `intercept_` as `rows` values.
fn coefficients(obj: &Attrs<'_>, n_features: usize) -> Result<(Vec<f64>, Vec<f64>, usize)> {
    let (coef, shape) = obj.f64s("coef_")?;
    let rows = match shape.as_slice() {
        [f] if *f == n_features => 1,
        [r, f] if *f == n_features && *r > 0 => *r,
        _ => return Err(obj.bad(format!("coef_ has shape {shape:?}, expected [{n_features}] or [_, {n_features}]"))),
    };
    let intercept = match obj.opt("intercept_") {
        None => vec![0.0; rows],
        Some(_) => {
            let (v, _) = obj.f64s("intercept_")?;
            match v.len() {
                n if n == rows => v,
                1 => vec![v[0]; rows],
                n => return Err(obj.bad(format!("intercept_ has {n} values for {rows} rows of coef_"))),
            }
        }
    };
    Ok((coef, intercept, rows))
}

/// `X · coefᵀ + intercept`, `[x.rows, rows]`.
fn scores(x: &Matrix<f64>, coef: &[f64], intercept: &[f64]) -> Vec<f64> {
    let f = x.cols;
    let mut out = Vec::with_capacity(x.rows * intercept.len());
    for row in x.row_iter() {
        for (w, b) in coef.chunks_exact(f.max(1)).zip(intercept) {
            let mut dot = 0.0;
            for (xi, wi) in row.iter().zip(w) {
                dot += xi * wi;
            }
            out.push(dot + b);
        }
    }
    out
}

/// LinearRegression, Ridge, Lasso, ElasticNet.
#[derive(Debug)]
pub(crate) struct LinearRegressor {
    kind: &'static str,
    input: TabularInput,
    outputs: Vec<TensorSpec>,
    coef: Vec<f64>,
    intercept: Vec<f64>,
}

impl LinearRegressor {
    pub(crate) fn read(obj: &Attrs<'_>) -> Result<Self> {
        let input = obj.input()?;
        let (coef, intercept, rows) = coefficients(obj, input.n_features)?;
        if rows != 1 {
            return Err(obj.bad(format!("{rows} targets; only single-target regressors are supported")));
        }
        Ok(LinearRegressor {
            kind: kind_of(&obj.name),
            input,
            outputs: vec![TensorSpec::new("predict", DataType::Fp64, vec![-1])],
            coef,
            intercept,
        })
    }
}

impl Estimator for LinearRegressor {
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
        let x = x.into_f64(input, NonFinite::Reject)?;
        let y = scores(&x, &self.coef, &self.intercept);
        names.iter().map(|name| tensor(name, x.rows, None, TensorData::Fp64(y.clone()))).collect()
    }
}

/// scipy's `expit`.
fn expit(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `sklearn.utils.extmath.softmax` of one row, in place.
fn softmax(row: &mut [f64]) {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    for v in row.iter_mut() {
        *v = (*v - max).exp();
    }
    let sum = np_sum(row);
    for v in row.iter_mut() {
        *v /= sum;
    }
}

/// LogisticRegression.
#[derive(Debug)]
pub(crate) struct LogisticRegression {
    input: TabularInput,
    outputs: Vec<TensorSpec>,
    classes: Labels,
    coef: Vec<f64>,
    intercept: Vec<f64>,
    /// Rows of `coef_`: 1 for a binary model, else the number of classes.
    rows: usize,
    /// One-vs-rest probabilities rather than softmax.
    ovr: bool,
}

impl LogisticRegression {
    pub(crate) fn read(obj: &Attrs<'_>) -> Result<Self> {
        let input = obj.input()?;
        let classes = Labels::read(obj)?;
        let (coef, intercept, rows) = coefficients(obj, input.n_features)?;
        let binary = classes.len() <= 2;
        if (binary && rows != 1) || (!binary && rows != classes.len()) {
            return Err(obj.bad(format!("coef_ has {rows} rows for {} classes", classes.len())));
        }
        let multi_class = obj.str("multi_class").unwrap_or_else(|| "auto".to_owned());
        let solver = obj.str("solver").unwrap_or_default();
        let ovr = if obj.at_least((1, 8)) {
            binary
        } else {
            match multi_class.as_str() {
                "ovr" | "warn" => true,
                "multinomial" => false,
                _ => binary || solver == "liblinear" || (solver == "newton-cholesky" && !obj.at_least((1, 6))),
            }
        };
        let c = classes.len();
        let outputs = vec![
            TensorSpec::new("predict", classes.datatype(), vec![-1]),
            TensorSpec::new("predict_proba", DataType::Fp64, vec![-1, dim(c)]),
            TensorSpec::new(
                "decision_function",
                DataType::Fp64,
                if rows == 1 { vec![-1] } else { vec![-1, dim(rows)] },
            ),
        ];
        Ok(LogisticRegression { input, outputs, classes, coef, intercept, rows, ovr })
    }

    fn proba(&self, scores: &[f64]) -> Vec<f64> {
        let c = self.classes.len();
        let mut out = Vec::with_capacity(scores.len() / self.rows * c);
        for s in scores.chunks_exact(self.rows) {
            let start = out.len();
            match (self.rows, self.ovr) {
                (1, true) => {
                    let p = expit(s[0]);
                    out.extend([1.0 - p, p]);
                }
                (1, false) => {
                    out.extend([-s[0], s[0]]);
                    softmax(&mut out[start..]);
                }
                (_, true) => {
                    out.extend(s.iter().map(|&v| expit(v)));
                    let row = &mut out[start..];
                    let sum = np_sum(row);
                    if sum == 0.0 {
                        // scikit-learn ≥ 1.8 makes an all-zero row uniform rather than NaN.
                        #[allow(clippy::cast_precision_loss)]
                        row.fill(1.0 / c as f64);
                    } else {
                        for v in row.iter_mut() {
                            *v /= sum;
                        }
                    }
                }
                (_, false) => {
                    out.extend_from_slice(s);
                    softmax(&mut out[start..]);
                }
            }
        }
        out
    }
}

impl Estimator for LogisticRegression {
    fn kind(&self) -> &'static str {
        "LogisticRegression"
    }
    fn label(&self) -> Option<LabelOutput> {
        self.classes.label_output()
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
        let x = x.into_f64(input, NonFinite::Reject)?;
        let scores = scores(&x, &self.coef, &self.intercept);
        names
            .iter()
            .map(|name| match name.as_str() {
                "decision_function" => {
                    tensor(name, x.rows, (self.rows > 1).then_some(self.rows), TensorData::Fp64(scores.clone()))
                }
                "predict_proba" => {
                    tensor(name, x.rows, Some(self.classes.len()), TensorData::Fp64(self.proba(&scores)))
                }
                _ => {
                    let labels: Vec<usize> = if self.rows == 1 {
                        scores.iter().map(|&s| usize::from(s > 0.0)).collect()
                    } else {
                        scores.chunks_exact(self.rows).map(argmax).collect()
                    };
                    tensor(name, x.rows, None, self.classes.take(&labels))
                }
            })
            .collect()
    }
}
