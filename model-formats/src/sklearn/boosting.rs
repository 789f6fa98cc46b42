//! Gradient boosting (`sklearn/ensemble/_gb.py`, `_gb_losses.py`, `sklearn/_loss/`), on the flat
//! tree layout of [`super::trees`].
//!
//! - raw prediction = init + Σ `learning_rate` · leaf value, stage by stage (`predict_stages`), the
//!   input cast to float32 as for every tree model;
//! - the init comes from the fitted `DummyClassifier` / `DummyRegressor` (`init_`) exactly as
//!   `_raw_predict_init` computes it in the writing version: probabilities clipped to [ε, 1-ε] (ε of
//!   float32 before 1.8, of float64 from 1.8), then log-odds / `log p` (`_gb_losses`, before 1.4) or
//!   `logit` / the symmetric multinomial logit (`sklearn._loss`, from 1.4); zero for `init='zero'`;
//! - the loss object's class (`_loss`) picks sigmoid or softmax for `predict_proba`, and how labels are
//!   chosen (argmax of probabilities before 1.4, `raw >= 0` / argmax of raw from 1.4).
//!
//! NaN is refused, as GradientBoosting's `check_array` refuses it in every version.

use super::trees::{compile, read_trees, single_output};
use super::{Attrs, Estimator, Features, Labels, Precision, argmax, dim, kind_of, np_sum, tensor};
use crate::error::{InferError, Result};
use crate::model::{LabelOutput, Matrix, NonFinite, TabularInput, TensorSpec};
use crate::tensor::{DataType, Tensor, TensorData};
use crate::tree::FlatForest;

/// How gradient boosting turns raw predictions into probabilities and labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GbLoss {
    /// Regression (any loss): `predict` is the raw prediction.
    Regression,
    /// Binary log-loss: sigmoid. `legacy` (`_gb_losses`, before 1.4) predicts by argmax of the
    /// probabilities; newer releases by `raw >= 0`.
    Binomial { legacy: bool },
    /// Binary exponential loss: sigmoid of twice the raw prediction.
    Exponential { legacy: bool },
    /// Multiclass log-loss: softmax.
    Multinomial { legacy: bool },
}

impl GbLoss {
    fn read(obj: &Attrs<'_>, classifier: bool, n_classes: usize) -> Result<GbLoss> {
        let class = obj.opt("_loss").and_then(|l| l.class());
        let legacy = match &class {
            Some(c) => c.module == "sklearn.ensemble._gb_losses",
            None => !obj.at_least((1, 4)),
        };
        if !classifier {
            return Ok(GbLoss::Regression);
        }
        let exponential = match &class {
            Some(c) => c.name == "ExponentialLoss",
            None => obj.str("loss").as_deref() == Some("exponential"),
        };
        let loss = match (exponential, n_classes) {
            (true, 2) => GbLoss::Exponential { legacy },
            (false, 2) => GbLoss::Binomial { legacy },
            (false, _) => GbLoss::Multinomial { legacy },
            (true, _) => return Err(obj.bad("exponential loss with more than two classes")),
        };
        if let Some(c) = &class {
            let known = matches!(
                c.name.as_str(),
                "BinomialDeviance"
                    | "MultinomialDeviance"
                    | "ExponentialLoss"
                    | "HalfBinomialLoss"
                    | "HalfMultinomialLoss"
            );
            if !known {
                return Err(obj.bad(format!("unsupported classification loss {c}")));
            }
        }
        Ok(loss)
    }
}

/// scipy's `expit`.
fn expit(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// scipy's `logit` (≥ 1.11: `log1p` differences near ½ for precision).
fn logit(p: f64) -> f64 {
    let s = 2.0 * (p - 0.5);
    if -0.5 < s && s < 0.5 { s.ln_1p() - (-s).ln_1p() } else { (p / (1.0 - p)).ln() }
}

/// GradientBoostingClassifier and GradientBoostingRegressor.
#[derive(Debug)]
pub(crate) struct GradientBoosting {
    kind: &'static str,
    input: TabularInput,
    outputs: Vec<TensorSpec>,
    classes: Option<Labels>,
    loss: GbLoss,
    /// Trees per stage (`n_trees_per_iteration_`): 1, or the number of classes.
    k: usize,
    learning_rate: f64,
    /// The raw prediction of the init estimator, per tree of a stage (constant over samples).
    init: Vec<f64>,
    flat: FlatForest,
    leaf_value: Vec<f64>,
}

impl GradientBoosting {
    pub(crate) fn read(obj: &Attrs<'_>) -> Result<Self> {
        let input = obj.input()?;
        let classifier = obj.name == "GradientBoostingClassifier";
        let classes = if classifier { Some(Labels::read(obj)?) } else { None };
        let n_classes = classes.as_ref().map_or(1, Labels::len);
        let loss = GbLoss::read(obj, classifier, n_classes)?;
        let k = if n_classes > 2 { n_classes } else { 1 };
        let estimators = obj.array("estimators_")?;
        let members = estimators.to_values().map_err(|e| obj.bad(format!("estimators_: {e}")))?;
        match estimators.shape.as_slice() {
            [stages, kk] if *kk == k && *stages > 0 => {}
            shape => return Err(obj.bad(format!("estimators_ has shape {shape:?}, expected [n_stages, {k}]"))),
        }
        let trees = read_trees(obj, &members, input.n_features)?;
        single_output(obj, &trees)?;
        let learning_rate = obj.f64("learning_rate")?;
        let init = init_raw(obj, loss, k, n_classes)?;
        let mut leaf_value = Vec::new();
        let flat = compile(&trees, input.n_features, |t, node| leaf_value.push(trees[t].value(node)[0]));
        let outputs = match &classes {
            Some(labels) => vec![
                TensorSpec::new("predict", labels.datatype(), vec![-1]),
                TensorSpec::new("predict_proba", DataType::Fp64, vec![-1, dim(n_classes)]),
                TensorSpec::new("decision_function", DataType::Fp64, if k == 1 { vec![-1] } else { vec![-1, dim(k)] }),
            ],
            None => vec![TensorSpec::new("predict", DataType::Fp64, vec![-1])],
        };
        Ok(GradientBoosting {
            kind: kind_of(&obj.name),
            input,
            outputs,
            classes,
            loss,
            k,
            learning_rate,
            init,
            flat,
            leaf_value,
        })
    }

    /// `_raw_predict`: `[rows, k]`.
    fn raw(&self, x: &Matrix<f32>) -> Vec<f64> {
        let k = self.k;
        let mut raw: Vec<f64> = self.init.iter().copied().cycle().take(x.rows * k).collect();
        self.flat.accumulate(&x.data, x.cols, &mut raw, k, |r, t, leaf| {
            r[t % k] += self.learning_rate * self.leaf_value[leaf]
        });
        raw
    }

    fn proba(&self, raw: &[f64]) -> Vec<f64> {
        match self.loss {
            GbLoss::Binomial { .. } | GbLoss::Exponential { .. } => {
                let scale = if matches!(self.loss, GbLoss::Exponential { .. }) { 2.0 } else { 1.0 };
                raw.iter()
                    .flat_map(|&r| {
                        let p1 = expit(scale * r);
                        [1.0 - p1, p1]
                    })
                    .collect()
            }
            GbLoss::Multinomial { legacy } => {
                let mut out = Vec::with_capacity(raw.len());
                for row in raw.chunks_exact(self.k) {
                    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    if legacy {
                        // exp(raw - logsumexp(raw)), logsumexp = log(Σ exp(raw - max)) + max.
                        let exps: Vec<f64> = row.iter().map(|r| (r - max).exp()).collect();
                        let lse = np_sum(&exps).ln() + max;
                        out.extend(row.iter().map(|r| {
                            let p = (r - lse).exp();
                            if p.is_finite() { p } else { 0.0 }
                        }));
                    } else {
                        // sklearn.utils.extmath.softmax.
                        let exps: Vec<f64> = row.iter().map(|r| (r - max).exp()).collect();
                        let sum = np_sum(&exps);
                        out.extend(exps.iter().map(|e| e / sum));
                    }
                }
                out
            }
            GbLoss::Regression => Vec::new(),
        }
    }

    fn labels(&self, raw: &[f64], proba: &[f64]) -> Vec<usize> {
        match self.loss {
            GbLoss::Binomial { legacy: true } => proba.chunks_exact(2).map(argmax).collect(),
            GbLoss::Binomial { legacy: false } | GbLoss::Exponential { .. } => {
                raw.iter().map(|&r| usize::from(r >= 0.0)).collect()
            }
            GbLoss::Multinomial { legacy: true } => proba.chunks_exact(self.k).map(argmax).collect(),
            GbLoss::Multinomial { legacy: false } => raw.chunks_exact(self.k).map(argmax).collect(),
            GbLoss::Regression => Vec::new(),
        }
    }
}

/// `_raw_predict_init` for one sample (every sample gets the same: the init estimators are
/// constant), in the writing version's arithmetic.
fn init_raw(obj: &Attrs<'_>, loss: GbLoss, k: usize, n_classes: usize) -> Result<Vec<f64>> {
    let init = obj.get("init_")?;
    if init.as_str() == Some("zero") {
        return Ok(vec![0.0; k]);
    }
    let dummy = obj.child(&init)?;
    if loss == GbLoss::Regression {
        if dummy.class() != "sklearn.dummy.DummyRegressor" {
            return Err(obj.bad(format!("unsupported init estimator {}", dummy.class())));
        }
        let constant = dummy.vector("constant_", 1)?;
        return Ok(constant);
    }
    if dummy.class() != "sklearn.dummy.DummyClassifier" {
        return Err(obj.bad(format!("unsupported init estimator {}", dummy.class())));
    }
    let prior = dummy.vector("class_prior_", n_classes)?;
    // DummyClassifier.predict_proba for the deterministic strategies.
    let strategy = dummy.str("strategy").unwrap_or_else(|| "prior".to_owned());
    #[allow(clippy::cast_precision_loss)]
    let proba: Vec<f64> = match strategy.as_str() {
        "prior" => prior,
        "most_frequent" => {
            let best = argmax(&prior);
            (0..n_classes).map(|i| if i == best { 1.0 } else { 0.0 }).collect()
        }
        "uniform" => vec![1.0 / n_classes as f64; n_classes],
        other => return Err(dummy.bad(format!("strategy `{other}` is not supported as a gradient boosting init"))),
    };
    let eps = if obj.at_least((1, 8)) { f64::EPSILON } else { f64::from(f32::EPSILON) };
    let clip = |p: f64| p.clamp(eps, 1.0 - eps);
    Ok(match loss {
        GbLoss::Binomial { legacy } | GbLoss::Exponential { legacy } => {
            let p = clip(proba[1]);
            let half = matches!(loss, GbLoss::Exponential { .. });
            let raw = if legacy { (p / (1.0 - p)).ln() } else { logit(p) };
            vec![if half { 0.5 * raw } else { raw }]
        }
        GbLoss::Multinomial { legacy: true } => proba.iter().map(|&p| clip(p).ln()).collect(),
        GbLoss::Multinomial { legacy: false } => {
            // MultinomialLogit.link: log(p / gmean(p)), gmean = exp(mean(log p)).
            let p: Vec<f64> = proba.iter().map(|&p| clip(p)).collect();
            let logs: Vec<f64> = p.iter().map(|v| v.ln()).collect();
            #[allow(clippy::cast_precision_loss)]
            let gm = (np_sum(&logs) / k as f64).exp();
            p.iter().map(|v| (v / gm).ln()).collect()
        }
        GbLoss::Regression => vec![0.0; k],
    })
}

impl Estimator for GradientBoosting {
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
        Precision::F32
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(&self, x: Features, input: &str, names: &[String]) -> Result<Vec<Tensor>, InferError> {
        let x = x.into_f32(input, NonFinite::Reject)?;
        let raw = self.raw(&x);
        let Some(classes) = &self.classes else {
            return names.iter().map(|name| tensor(name, x.rows, None, TensorData::Fp64(raw.clone()))).collect();
        };
        let proba = self.proba(&raw);
        names
            .iter()
            .map(|name| match name.as_str() {
                "predict_proba" => tensor(name, x.rows, Some(classes.len()), TensorData::Fp64(proba.clone())),
                "decision_function" => {
                    tensor(name, x.rows, (self.k > 1).then_some(self.k), TensorData::Fp64(raw.clone()))
                }
                _ => tensor(name, x.rows, None, classes.take(&self.labels(&raw, &proba))),
            })
            .collect()
    }
}
