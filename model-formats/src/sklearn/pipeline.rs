//! `sklearn.pipeline.Pipeline`: transformers, then a final estimator (or transformers only).
//!
//! `predict`, `predict_proba`, `decision_function`, `score_samples` pass the input through every
//! step's `transform` and call the last step's method, as `Pipeline` does; a pipeline of transformers
//! only answers `transform`. `"passthrough"` and `None` steps are skipped. The pipeline's inputs are
//! its first step's (`n_features_in_`, `feature_names_in_`).

use super::{Attrs, Estimator, Features, Precision, estimator};
use crate::error::{Error, InferError, Result};
use crate::model::{LabelOutput, TabularInput, TensorSpec};
use crate::pickle::Value;
use crate::tensor::Tensor;

/// A fitted pipeline.
#[derive(Debug)]
pub(crate) struct Pipeline {
    transformers: Vec<Box<dyn Estimator>>,
    last: Box<dyn Estimator>,
}

impl Pipeline {
    pub(crate) fn read(obj: &Attrs<'_>) -> Result<Self> {
        let steps = obj.get("steps")?.as_seq().ok_or_else(|| obj.bad("steps is not a list"))?;
        let mut estimators: Vec<(String, Box<dyn Estimator>)> = Vec::with_capacity(steps.len());
        for (i, step) in steps.iter().enumerate() {
            let pair = step.as_seq().unwrap_or_default();
            let [name, est] = pair.as_slice() else {
                return Err(obj.bad(format!("step {i} is not a (name, estimator) pair")));
            };
            let name = name.as_str().unwrap_or("?").to_owned();
            if matches!(est, Value::None) || est.as_str() == Some("passthrough") {
                continue;
            }
            let e = estimator(est, obj.path()).map_err(|e| match e {
                Error::Pickle { path, reason } => {
                    Error::Pickle { path, reason: format!("pipeline step `{name}`: {reason}") }
                }
                other => other,
            })?;
            estimators.push((name, e));
        }
        for pair in estimators.windows(2) {
            let [(_, before), (name, after)] = pair else { continue };
            if after.input().n_features != before.n_outputs() {
                return Err(obj.bad(format!(
                    "step `{name}` takes {} features but the step before gives {}",
                    after.input().n_features,
                    before.n_outputs()
                )));
            }
        }
        let Some((_, last)) = estimators.pop() else {
            return Err(obj.bad("the pipeline has no estimator"));
        };
        let mut boxed = Vec::with_capacity(estimators.len());
        for (name, t) in estimators {
            if t.outputs().first().map(|o| o.name.as_str()) != Some("transform") {
                return Err(obj.bad(format!("step `{name}` ({}) is not a transformer", t.kind())));
            }
            boxed.push(t);
        }
        Ok(Pipeline { transformers: boxed, last })
    }

    fn first(&self) -> &dyn Estimator {
        self.transformers.first().map_or(&*self.last, |t| &**t)
    }
}

impl Estimator for Pipeline {
    fn kind(&self) -> &'static str {
        "Pipeline"
    }
    fn label(&self) -> Option<LabelOutput> {
        self.last.label()
    }
    fn input(&self) -> &TabularInput {
        self.first().input()
    }
    fn precision(&self) -> Precision {
        self.first().precision()
    }
    fn outputs(&self) -> &[TensorSpec] {
        self.last.outputs()
    }

    fn run(&self, mut x: Features, input: &str, names: &[String]) -> Result<Vec<Tensor>, InferError> {
        for t in &self.transformers {
            // Pipeline::read keeps only transformers before the last step.
            let m =
                t.transform(x, input).ok_or_else(|| InferError::compute(format!("{} cannot transform", t.kind())))?;
            x = Features::F64(m?);
        }
        self.last.run(x, input, names)
    }
}
