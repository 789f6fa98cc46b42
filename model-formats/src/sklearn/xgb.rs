//! XGBoost's scikit-learn wrappers, `xgboost.sklearn.XGBRegressor` and `XGBClassifier`, pickled or saved
//! with joblib (alone, in a `Pipeline`, or as the estimators of a `MultiOutputRegressor`).
//!
//! The wrapper's state is its constructor parameters plus `_Booster`, an `xgboost.core.Booster` whose
//! only state is `handle`: the booster saved as UBJSON (`{"Config": …, "Model": …}`), read by
//! [`crate::xgboost`]. `classes_`, `n_features_in_`, `feature_names_in_` and `best_iteration` are
//! properties over the booster, so they come from it: classes `0..n_classes_`, `num_feature`, the
//! booster's feature names, `attributes.best_iteration`.
//!
//! Semantics are the wrapper's (`python-package/xgboost/sklearn.py`): `predict` and `predict_proba` use
//! the rounds up to `best_iteration` when early stopping recorded one (`iteration_range=(0, best + 1)`),
//! all of them otherwise; the wrapper's `missing` value is missing as NaN is; infinities are values
//! (`inplace_predict` takes them). `XGBRegressor.predict` is the transformed prediction;
//! `XGBClassifier.predict` is `p > 0.5` (binary) or the first most probable class, `predict_proba`
//! `[1 − p, p]` or the class probabilities (`multi:softmax`: scipy's softmax of the margins).

use super::{Attrs, Estimator, Features, Precision, kind_of};
use crate::error::{InferError, Result};
use crate::model::{LabelOutput, NonFinite, TabularInput, TensorSpec};
use crate::pickle::Value;
use crate::tensor::Tensor;
use crate::xgboost::{self, Head, Objective, Served};

/// A fitted `XGBRegressor` or `XGBClassifier`.
#[derive(Debug)]
pub(crate) struct XgbEstimator {
    kind: &'static str,
    served: Served,
}

impl XgbEstimator {
    pub(crate) fn read(obj: &Attrs<'_>) -> Result<Self> {
        let booster = obj.get("_Booster")?;
        if !booster.is_instance("xgboost.core", "Booster") {
            return Err(obj.bad(format!("_Booster is a {}, expected an xgboost.core.Booster", booster.type_name())));
        }
        // `handle` since XGBoost 1.0 (raw bytes of the UBJSON model since 2.0).
        let handle = booster.attr("handle").ok_or_else(|| obj.bad("_Booster has no `handle` (the saved model)"))?;
        let Value::Bytes(bytes) = handle else {
            return Err(obj.bad(format!("_Booster.handle is a {}, expected bytes", handle.type_name())));
        };
        if bytes.first() != Some(&b'{') {
            return Err(obj.bad(
                "_Booster.handle is not a UBJSON model (pickles of XGBoost < 2 hold a binary snapshot): load the \
                 model with the XGBoost that wrote it and save it with save_model(\"model.json\"), or pickle it \
                 again with XGBoost >= 2",
            ));
        }
        let b = xgboost::parse(&bytes, &xgboost::Limits::default()).map_err(|e| obj.bad(format!("_Booster: {e}")))?;
        let missing = match obj.opt("missing") {
            None => f32::NAN,
            #[allow(clippy::cast_possible_truncation)]
            Some(v) => v.as_f64().map(|m| m as f32).ok_or_else(|| obj.bad("`missing` is not a number"))?,
        };
        // `_get_iteration_range`: (0, best_iteration + 1) when the booster has one, else every round.
        let n_trees = b.trees_of_rounds(b.best_iteration().map(|i| i + 1)).map_err(|e| obj.bad(e))?;
        let head = if obj.name.ends_with("Classifier") {
            // `n_classes_` is fitted state; classes_ is arange(n_classes_).
            let n_classes = match obj.opt("n_classes_") {
                Some(v) => v
                    .as_int()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| obj.bad("n_classes_ is not a count"))?,
                None => b.n_groups().max(2),
            };
            match b.objective_kind() {
                Objective::Logistic | Objective::LogitRaw if b.n_groups() == 1 && n_classes == 2 => Head::Binary,
                Objective::SoftProb if n_classes > 2 && b.n_groups() == n_classes => Head::MultiProb,
                Objective::SoftMax if n_classes > 2 && b.n_groups() == n_classes => Head::MultiMax { proba: true },
                _ => {
                    return Err(obj.bad(format!(
                        "objective `{}` with {} output groups for {n_classes} classes is not a classifier Ferroserve \
                         serves (binary:logistic, binary:logitraw, multi:softprob, multi:softmax)",
                        b.objective(),
                        b.n_groups()
                    )));
                }
            }
        } else {
            Head::Regressor
        };
        Ok(XgbEstimator { kind: kind_of(&obj.name), served: Served::new(&b, n_trees, missing, head) })
    }
}

impl Estimator for XgbEstimator {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn label(&self) -> Option<LabelOutput> {
        self.served.label()
    }
    fn input(&self) -> &TabularInput {
        self.served.input()
    }
    fn precision(&self) -> Precision {
        Precision::F32
    }
    fn outputs(&self) -> &[TensorSpec] {
        self.served.outputs()
    }

    fn run(&self, x: Features, input: &str, names: &[String]) -> Result<Vec<Tensor>, InferError> {
        // XGBoost casts to float32 itself and takes NaN and infinities.
        let x = x.into_f32(input, NonFinite::Allow)?;
        self.served.run(&x, names)
    }
}
