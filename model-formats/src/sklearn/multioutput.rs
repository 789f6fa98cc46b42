//! `sklearn.multioutput.MultiOutputRegressor` and `MultiOutputClassifier`: one fitted estimator per
//! target, any estimator Ferroserve serves (also a pipeline, or an XGBoost regressor).
//!
//! scikit-learn (`sklearn/multioutput.py`) calls each of `estimators_` on the same `X` and stacks the
//! answers as columns: `predict` is `[N, n_targets]`. The input is passed on as it came (each estimator
//! casts it as it does alone), so the wrapper reads it in float64, which loses nothing.
//!
//! `MultiOutputClassifier.predict_proba` is a list of `n_targets` arrays `[N, n_classes]` in
//! scikit-learn; a tensor has its rows first, so it is served as `[N, n_targets, n_classes]` (row `i`,
//! target `k` is scikit-learn's `predict_proba(X)[k][i]`), when every target has the same number of
//! classes; each target's own is `predict_proba_<k>` (`[N, n_classes_k]`) in every case.

use super::{Attrs, Estimator, Features, Precision, dim, estimator, kind_of};

/// scikit-learn's probability method.
const PREDICT_PROBA: &str = "predict_proba";
use crate::error::{Error, InferError, Result};
use crate::model::{TabularInput, TensorSpec};
use crate::tensor::{DataType, Tensor, TensorData};

/// A fitted multi-output wrapper.
#[derive(Debug)]
pub(crate) struct MultiOutput {
    kind: &'static str,
    input: TabularInput,
    estimators: Vec<Box<dyn Estimator>>,
    outputs: Vec<TensorSpec>,
}

impl MultiOutput {
    pub(crate) fn read(obj: &Attrs<'_>) -> Result<Self> {
        let members = obj.get("estimators_")?;
        let members = members.as_seq().ok_or_else(|| obj.bad("estimators_ is not a list"))?;
        if members.is_empty() {
            return Err(obj.bad("estimators_ is empty"));
        }
        let mut estimators = Vec::with_capacity(members.len());
        for (i, m) in members.iter().enumerate() {
            let e = estimator(m, obj.path()).map_err(|e| match e {
                Error::Pickle { path, reason } => Error::Pickle { path, reason: format!("estimator {i}: {reason}") },
                other => other,
            })?;
            estimators.push(e);
        }
        // The wrapper's own `n_features_in_` (set since scikit-learn 0.24), else the first estimator's.
        let input = match obj.opt("n_features_in_") {
            Some(_) => obj.input()?,
            None => estimators[0].input().clone(),
        };
        let mut datatype = None;
        for (i, e) in estimators.iter().enumerate() {
            if e.input().n_features != input.n_features {
                return Err(obj.bad(format!(
                    "estimator {i} takes {} features, the model {}",
                    e.input().n_features,
                    input.n_features
                )));
            }
            let predict = e.outputs().first().filter(|o| o.name == "predict" && o.shape.len() == 1);
            let Some(predict) = predict else {
                return Err(obj.bad(format!("estimator {i} ({}) has no one-column `predict`", e.kind())));
            };
            match datatype {
                None => datatype = Some(predict.datatype),
                Some(d) if d == predict.datatype => {}
                Some(d) => {
                    return Err(obj.bad(format!(
                        "estimator {i} predicts {} where estimator 0 predicts {d}; mixed label types are not supported",
                        predict.datatype
                    )));
                }
            }
        }
        let mut outputs =
            vec![TensorSpec::new("predict", datatype.unwrap_or(DataType::Fp64), vec![-1, dim(estimators.len())])];
        let proba = |e: &dyn Estimator| {
            e.outputs().iter().find(|o| o.name == PREDICT_PROBA).and_then(|o| match o.shape.as_slice() {
                [-1, c] => Some(*c),
                _ => None,
            })
        };
        let classes: Vec<Option<i64>> = estimators.iter().map(|e| proba(e.as_ref())).collect();
        if let Some(Some(c)) = classes.first()
            && classes.iter().all(|k| *k == Some(*c))
        {
            outputs.push(TensorSpec::new(PREDICT_PROBA, DataType::Fp64, vec![-1, dim(estimators.len()), *c]));
        }
        if classes.iter().all(Option::is_some) {
            for (k, c) in classes.iter().flatten().enumerate() {
                outputs.push(TensorSpec::new(format!("{PREDICT_PROBA}_{k}"), DataType::Fp64, vec![-1, *c]));
            }
        }
        Ok(MultiOutput { kind: kind_of(&obj.name), input, estimators, outputs })
    }
}

impl Estimator for MultiOutput {
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
        let rows = match &x {
            Features::F32(m) => m.rows,
            Features::F64(m) => m.rows,
        };
        let k = self.estimators.len();
        names
            .iter()
            .map(|name| {
                // One target's probabilities: `predict_proba_<k>`.
                if let Some(k) = name.strip_prefix("predict_proba_").and_then(|k| k.parse::<usize>().ok())
                    && let Some(e) = self.estimators.get(k)
                {
                    let mut out = e.run(x.clone(), input, &[PREDICT_PROBA.to_owned()])?;
                    let mut t = out.pop().ok_or_else(|| InferError::compute("no predict_proba"))?;
                    t.name.clone_from(name);
                    return Ok(t);
                }
                let method = [name.clone()];
                let columns = self
                    .estimators
                    .iter()
                    .map(|e| {
                        let mut out = e.run(x.clone(), input, &method)?;
                        out.pop().ok_or_else(|| InferError::compute(format!("{} returned no {name}", e.kind())))
                    })
                    .collect::<Result<Vec<Tensor>, InferError>>()?;
                // Each target's answer is `[N]` (predict) or `[N, c]` (predict_proba): row i of the result
                // is every target's row i, in target order.
                let width = columns.first().map_or(1, |c| c.shape.get(1).copied().unwrap_or(1));
                let data = stack(&columns, rows, width)?;
                let shape = if name == PREDICT_PROBA { vec![rows, k, width] } else { vec![rows, k] };
                Tensor::new(name.clone(), shape, data).map_err(InferError::compute)
            })
            .collect()
    }
}

/// Blocks of `rows × width` values, one per target, as `[rows, targets, width]` (`numpy.asarray(...).T`
/// for `predict`, whose width is 1).
fn stack(columns: &[Tensor], rows: usize, width: usize) -> Result<TensorData, InferError> {
    fn interleave<T: Clone>(columns: &[&[T]], rows: usize, width: usize) -> Vec<T> {
        let mut out = Vec::with_capacity(rows * width * columns.len());
        for r in 0..rows {
            for c in columns {
                out.extend_from_slice(&c[r * width..(r + 1) * width]);
            }
        }
        out
    }
    macro_rules! stack_as {
        ($variant:ident) => {{
            let mut cols = Vec::with_capacity(columns.len());
            for c in columns {
                match &c.data {
                    TensorData::$variant(v) if v.len() == rows * width => cols.push(v.as_slice()),
                    _ => return Err(InferError::compute("the estimators' predictions differ in type or length")),
                }
            }
            TensorData::$variant(interleave(&cols, rows, width))
        }};
    }
    Ok(match columns.first().map(|c| &c.data) {
        Some(TensorData::Fp64(_)) => stack_as!(Fp64),
        Some(TensorData::Int64(_)) => stack_as!(Int64),
        Some(TensorData::Bool(_)) => stack_as!(Bool),
        Some(TensorData::Bytes(_)) => stack_as!(Bytes),
        _ => return Err(InferError::compute("unsupported prediction type in a multi-output model")),
    })
}
