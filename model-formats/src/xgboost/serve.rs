//! What an XGBoost model answers: scikit-learn's output names over the booster's predictions, for a native
//! file ([`XGBoostModel`]) and for the pickled scikit-learn wrappers (`crate::sklearn`).

use std::path::Path;

use super::booster::{Booster, Objective};
use super::predict::{Predictor, first_max};
use crate::error::{InferError, Result};
use crate::model::{Label, LabelOutput, Matrix, Model, ModelKind, NonFinite, Signature, TabularInput, TensorSpec};
use crate::tensor::{DataType, Tensor, TensorData};

const PREDICT: &str = "predict";
const PREDICT_PROBA: &str = "predict_proba";

/// How the booster's transformed predictions become outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Head {
    /// `predict`: the transformed values, FP64 `[N]` (or `[N, outputs]`).
    Regressor,
    /// A binary classifier over one value `p` per row: `predict` is `1` when `p > 0.5` (INT64),
    /// `predict_proba` `[1 − p, p]` (`1 − p` in float32, as the wrapper's numpy computes it).
    Binary,
    /// `multi:softprob`: `predict` the first most probable class, `predict_proba` the probabilities.
    MultiProb,
    /// `multi:softmax`: `predict` the booster's class index; with `proba`, `predict_proba` as the
    /// wrapper computes it (`scipy.special.softmax` of the margins, in float32).
    MultiMax { proba: bool },
}

/// A booster with its outputs: the part shared by native files and the scikit-learn wrappers.
#[derive(Debug)]
pub(crate) struct Served {
    predictor: Predictor,
    head: Head,
    input: TabularInput,
    outputs: Vec<TensorSpec>,
}

impl Served {
    /// Serves the first `n_trees` trees of `booster` as `head` says.
    pub(crate) fn new(booster: &Booster, n_trees: usize, missing: f32, head: Head) -> Self {
        let predictor = Predictor::new(booster, n_trees, missing);
        let w = predictor.width();
        let classes = i64::try_from(booster.n_groups.max(2)).unwrap_or(i64::MAX);
        let outputs = match head {
            Head::Regressor => {
                let shape = if w == 1 { vec![-1] } else { vec![-1, i64::try_from(w).unwrap_or(i64::MAX)] };
                vec![TensorSpec::new(PREDICT, DataType::Fp64, shape)]
            }
            Head::Binary | Head::MultiProb | Head::MultiMax { proba: true } => vec![
                TensorSpec::new(PREDICT, DataType::Int64, vec![-1]),
                TensorSpec::new(PREDICT_PROBA, DataType::Fp64, vec![-1, classes]),
            ],
            Head::MultiMax { proba: false } => vec![TensorSpec::new(PREDICT, DataType::Int64, vec![-1])],
        };
        let input = TabularInput { n_features: booster.n_features, feature_names: booster.feature_names.clone() };
        Served { predictor, head, input, outputs }
    }

    pub(crate) fn input(&self) -> &TabularInput {
        &self.input
    }

    pub(crate) fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    /// The label output: `predict` of a classifier, whose positive class is 1 for a binary one.
    pub(crate) fn label(&self) -> Option<LabelOutput> {
        match self.head {
            Head::Regressor => None,
            Head::Binary => Some(LabelOutput::new(PREDICT, Some(Label::Int(1)))),
            Head::MultiProb | Head::MultiMax { .. } => Some(LabelOutput::new(PREDICT, None)),
        }
    }

    /// Computes `names` (each one of [`Self::outputs`]) for `x` (`num_feature` float32 columns).
    pub(crate) fn run(&self, x: &Matrix<f32>, names: &[String]) -> Result<Vec<Tensor>, InferError> {
        let rows = x.rows;
        let margins = self.predictor.margins(x);
        let values = self.predictor.transform(&margins);
        let w = self.predictor.width();
        let tensor = |name: &str, shape: Vec<usize>, data: TensorData| {
            Tensor::new(name, shape, data).map_err(InferError::compute)
        };
        let wide = |v: &[f32]| v.iter().map(|&p| f64::from(p)).collect::<Vec<f64>>();
        names
            .iter()
            .map(|name| match (self.head, name.as_str()) {
                (Head::Regressor, _) => {
                    let shape = if w == 1 { vec![rows] } else { vec![rows, w] };
                    tensor(name, shape, TensorData::Fp64(wide(&values)))
                }
                (Head::Binary, PREDICT_PROBA) => {
                    let data = values.iter().flat_map(|&p| [f64::from(1.0f32 - p), f64::from(p)]).collect();
                    tensor(name, vec![rows, 2], TensorData::Fp64(data))
                }
                (Head::Binary, _) => {
                    let data = values.iter().map(|&p| i64::from(p > 0.5)).collect();
                    tensor(name, vec![rows], TensorData::Int64(data))
                }
                (Head::MultiProb, PREDICT_PROBA) => tensor(name, vec![rows, w], TensorData::Fp64(wide(&values))),
                (Head::MultiProb, _) => {
                    let data = values.chunks_exact(w.max(1)).map(|p| first_max(p) as i64).collect();
                    tensor(name, vec![rows], TensorData::Int64(data))
                }
                (Head::MultiMax { .. }, PREDICT_PROBA) => {
                    let k = self.predictor.n_groups();
                    let data = margins.chunks_exact(k).flat_map(scipy_softmax).map(f64::from).collect();
                    tensor(name, vec![rows, k], TensorData::Fp64(data))
                }
                #[allow(clippy::cast_possible_truncation)]
                (Head::MultiMax { .. }, _) => {
                    tensor(name, vec![rows], TensorData::Int64(values.iter().map(|&i| i as i64).collect()))
                }
            })
            .collect()
    }
}

/// `scipy.special.softmax` of a float32 row: `exp(x − max)` over their float32 sum.
fn scipy_softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = row.iter().map(|&v| (v - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// A native XGBoost model file (`model.json`, `model.ubj`, `model.bst`) served as
/// `xgboost.Booster(model_file=…).predict(DMatrix(X))` computes it — every tree, whatever
/// `best_iteration` says — under scikit-learn's output names: `predict` (FP64) for regression objectives,
/// `binary:logitraw` and `reg:logistic`; `predict` (INT64 class index) and `predict_proba` for
/// `binary:logistic` and `multi:softprob`; `predict` (class index) for `multi:softmax`.
#[derive(Debug)]
pub struct XGBoostModel {
    served: Served,
    signature: Signature,
    objective: String,
}

impl XGBoostModel {
    /// Reads a model file.
    ///
    /// # Errors
    /// [`crate::Error::Io`]; [`crate::Error::InvalidModel`] for a file that is not a well-formed XGBoost
    /// model; [`crate::Error::Unsupported`] for one this build does not serve (the legacy binary format, `gblinear`,
    /// `dart`, other objectives, vector-leaf trees).
    pub fn load(path: &Path) -> Result<XGBoostModel> {
        Self::load_with(path, &super::Limits::default())
    }

    /// [`XGBoostModel::load`] within `limits` (the file's size is `limits.max_bytes` at most).
    ///
    /// # Errors
    /// As [`XGBoostModel::load`]; [`crate::Error::TooLarge`] for a file over the limit.
    pub fn load_with(path: &Path, limits: &super::Limits) -> Result<XGBoostModel> {
        let bytes = super::read_file(path, limits)?;
        let booster = super::parse(&bytes, limits).map_err(|e| e.into_error(path))?;
        Ok(XGBoostModel::from_booster(&booster))
    }

    /// Serves `booster` with native semantics.
    pub fn from_booster(booster: &Booster) -> XGBoostModel {
        let head = match booster.objective {
            Objective::Logistic if booster.objective_name == "binary:logistic" && booster.n_groups == 1 => Head::Binary,
            Objective::SoftProb => Head::MultiProb,
            Objective::SoftMax => Head::MultiMax { proba: false },
            _ => Head::Regressor,
        };
        let served = Served::new(booster, booster.trees.len(), f32::NAN, head);
        let signature = signature(&served);
        XGBoostModel { served, signature, objective: booster.objective_name.clone() }
    }

    /// The objective's name (`binary:logistic`).
    pub fn objective(&self) -> &str {
        &self.objective
    }
}

/// The inputs a tabular float32 model declares (as scikit-learn models do), and its outputs.
fn signature(served: &Served) -> Signature {
    let input = served.input();
    let n = i64::try_from(input.n_features).unwrap_or(i64::MAX);
    let inputs = match &input.feature_names {
        Some(names) => names.iter().map(|name| TensorSpec::new(name.clone(), DataType::Fp32, vec![-1])).collect(),
        None => vec![TensorSpec::new("input-0", DataType::Fp32, vec![-1, n])],
    };
    Signature { inputs, outputs: served.outputs().to_vec() }
}

impl Model for XGBoostModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn kind(&self) -> ModelKind {
        ModelKind::XGBoost
    }

    fn label(&self) -> Option<LabelOutput> {
        self.served.label()
    }

    fn infer(&self, inputs: &[Tensor], outputs: &[String]) -> Result<Vec<Tensor>, InferError> {
        self.signature.check_outputs(outputs)?;
        let default: Vec<String> = self.signature.default_output().map(str::to_owned).into_iter().collect();
        let names = if outputs.is_empty() { &default[..] } else { outputs };
        // DMatrix takes NaN as missing and refuses infinities ("Input data contains `inf`").
        let x = self.served.input().to_f32_allowing(inputs, NonFinite::AllowNan)?;
        self.served.run(&x, names)
    }
}
