//! LightGBM's scikit-learn wrappers, `lightgbm.sklearn.LGBMRegressor` and `LGBMClassifier`
//! (`python-package/lightgbm/sklearn.py`), on the [`Booster`] parsed from the model text their
//! `lightgbm.basic.Booster` keeps in `_handle`.
//!
//! - `predict` of a regressor is `Booster.predict` (float64); `predict_proba` of a classifier is
//!   `[1 - p, p]` for two classes and the converted scores otherwise, and `predict` is
//!   `_classes[argmax(predict_proba)]` (`_le.inverse_transform`), so string labels come back as strings;
//! - the wrapper passes `num_iteration=None`, so the Booster's `best_iteration` (when above 0) bounds the
//!   iterations used;
//! - the input is taken in float64, NaN and infinities included (LightGBM validates with
//!   `ensure_all_finite=False`); columns that were pandas categories are sent as their codes.

use super::{Attrs, Estimator, Features, Labels, Precision, kind_of};
use crate::error::{InferError, InputError, Result};
use crate::lightgbm::{self, Booster};
use crate::model::{LabelOutput, NonFinite, TabularInput, TensorSpec};
use crate::tensor::{DataType, Tensor, TensorData};

/// A fitted `LGBMRegressor` or `LGBMClassifier`.
#[derive(Debug)]
pub(crate) struct Lgbm {
    kind: &'static str,
    input: TabularInput,
    outputs: Vec<TensorSpec>,
    classes: Option<Labels>,
    booster: Booster,
}

impl Lgbm {
    pub(crate) fn read(obj: &Attrs<'_>) -> Result<Self> {
        let handle = obj.get("_Booster")?;
        let state = obj.child(&handle)?;
        if state.class() != "lightgbm.basic.Booster" {
            return Err(obj.bad(format!("_Booster is a {}, expected lightgbm.basic.Booster", state.class())));
        }
        // `Booster.__getstate__` keeps the model as text in `_handle` (`handle` before lightgbm 4).
        let text = state
            .opt("_handle")
            .or_else(|| state.opt("handle"))
            .ok_or_else(|| obj.bad("_Booster holds no model text (`_handle`)"))?;
        let text = text
            .as_str()
            .ok_or_else(|| obj.bad(format!("_Booster._handle is a {}, expected the model text", text.type_name())))?;
        let mut booster = Booster::parse(text).map_err(|e| obj.bad(format!("_Booster: {e}")))?;
        let best = state.opt("best_iteration").or_else(|| obj.opt("_best_iteration")).and_then(|v| v.as_int());
        if let Some(best) = best.and_then(|b| usize::try_from(b).ok()) {
            booster.limit_iterations(best);
        }

        let n_features = match obj.opt("_n_features_in") {
            Some(_) => obj.usize("_n_features_in")?,
            None => obj.usize("_n_features")?,
        };
        if n_features != booster.n_features() {
            return Err(
                obj.bad(format!("_n_features_in is {n_features}, the booster takes {} features", booster.n_features()))
            );
        }
        let named = obj.opt("_fitted_with_feature_names").and_then(|v| v.as_bool()).unwrap_or(false);
        let feature_names = named.then(|| booster.feature_names().to_vec());
        let input = TabularInput { n_features, feature_names };

        let classifier = obj.name == "LGBMClassifier";
        let classes = if classifier {
            let classes = match obj.opt("_classes") {
                Some(_) => Labels::read_named(obj, "_classes")?,
                None => Labels::read(obj)?,
            };
            if booster.objective().n_classes() != Some(classes.len()) {
                return Err(obj.bad(format!(
                    "{} classes, but the booster's objective is {:?}",
                    classes.len(),
                    booster.objective()
                )));
            }
            Some(classes)
        } else {
            if booster.outputs_per_row() != 1 {
                return Err(obj.bad(format!(
                    "a regressor whose booster predicts {} scores per row is not supported",
                    booster.outputs_per_row()
                )));
            }
            None
        };
        let outputs = lightgbm::output_specs(&booster, classes.as_ref().map_or(DataType::Fp64, Labels::datatype));
        Ok(Lgbm { kind: kind_of(&obj.name), input, outputs, classes, booster })
    }
}

impl Estimator for Lgbm {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn label(&self) -> Option<LabelOutput> {
        self.classes.as_ref().and_then(Labels::label_output)
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
    fn check_request(&self, inputs: &[Tensor]) -> Result<(), InputError> {
        lightgbm::check_text_inputs(&self.booster, inputs)
    }

    fn run(&self, x: Features, input: &str, names: &[String]) -> Result<Vec<Tensor>, InferError> {
        let x = x.into_f64(input, NonFinite::Allow)?;
        lightgbm::run(&self.booster, &x, names, |index| match &self.classes {
            Some(classes) => classes.take(index),
            // A regressor has no labels; `run` asks for them only of a classifier.
            None => TensorData::Int64(Vec::new()),
        })
    }
}
