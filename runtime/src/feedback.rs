//! Accuracy from feedback: ground-truth labels sent later for requests answered earlier.
//!
//! An inference request with an `id` whose response holds the model's label output, as the model
//! declares it ([`ferroserve_formats::Model::label`]: `predict` for scikit-learn classifiers and for
//! IsolationForest, alone or at the end of a pipeline, native or pickled; `is_anomaly` for the LSTM
//! autoencoder) has its predicted labels kept, by model and id, up to `--feedback_capacity` per server
//! (the oldest are forgotten first). `POST /v2/models/{m}/feedback` with `{"id", "labels"}` scores
//! those predictions once: accuracy over the last `--feedback_window` labelled rows of the version that
//! answered, and precision and recall when the model names a positive class (the anomaly: `-1` from
//! IsolationForest's `predict`, `true` from `is_anomaly`; a binary classifier's second class). The gauges
//! `model_prediction_accuracy`, `model_prediction_precision` and `model_prediction_recall` follow.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use ferroserve_formats::{Label, LabelOutput, Tensor};
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;

/// Feedback settings (`--feedback_capacity`, `--feedback_window`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedbackConfig {
    /// Predictions kept, over all models; 0 turns feedback off.
    pub capacity: usize,
    /// Labelled rows each version's scores are computed over.
    pub window: usize,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        FeedbackConfig { capacity: 10_000, window: 1000 }
    }
}

/// One `POST /v2/models/{m}/feedback` item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackItem {
    /// The `id` of the inference request.
    pub id: String,
    /// The true label of each of its rows, in order.
    pub labels: Vec<Label>,
}

/// A version's scores from feedback.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    /// Labelled rows in the window.
    pub labelled: usize,
    /// Share predicted right.
    pub accuracy: f64,
    /// With a positive class: of the rows predicted positive, the share that were (absent if none were).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<f64>,
    /// With a positive class: of the positive rows, the share predicted so (absent if none were).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recall: Option<f64>,
}

/// The answer to a feedback request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedbackResponse {
    /// The model.
    pub model: String,
    /// Rows scored by this request.
    pub scored: usize,
    /// Ids with no recorded prediction (never seen, forgotten, or already scored).
    pub unknown_ids: Vec<String>,
    /// The scores of each version that received feedback in this request, after it.
    pub versions: HashMap<String, Scores>,
}

/// Why feedback was refused.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    /// An item does not fit its prediction.
    #[error("{0}")]
    Invalid(String),
    /// None of the ids has a recorded prediction: never recorded (or forgotten), or already scored.
    #[error("{}", unknown_message(.unrecorded, .scored))]
    Unknown {
        /// Ids never recorded, or forgotten since.
        unrecorded: Vec<String>,
        /// Ids whose prediction was already scored by earlier feedback.
        scored: Vec<String>,
    },
}

fn unknown_message(unrecorded: &[String], scored: &[String]) -> String {
    let mut parts = Vec::new();
    if !scored.is_empty() {
        parts.push(format!(
            "id(s) {} already received feedback (each prediction is scored once; send feedback for new predictions)",
            scored.join(", ")
        ));
    }
    if !unrecorded.is_empty() {
        parts.push(format!(
            "no prediction is recorded for id(s) {}; send an `id` with the inference request and ask for its label output",
            unrecorded.join(", ")
        ));
    }
    parts.join("; ")
}

#[derive(Debug)]
struct Recorded {
    version: String,
    labels: Vec<Label>,
    /// The positive class (the anomaly, for a detector), when the model names one.
    positive: Option<Label>,
}

#[derive(Debug, Clone, Copy)]
struct Outcome {
    correct: bool,
    /// (predicted positive, actually positive), for anomaly detectors.
    positives: Option<(bool, bool)>,
}

#[derive(Debug, Default)]
struct Inner {
    predictions: HashMap<(String, String), Recorded>,
    order: VecDeque<(String, String)>,
    outcomes: HashMap<(String, String), VecDeque<Outcome>>,
    /// Ids scored recently (at most `capacity`), to tell "already scored" from "never recorded".
    scored: HashSet<(String, String)>,
    scored_order: VecDeque<(String, String)>,
}

/// Recorded predictions and the scores of feedback on them.
#[derive(Debug)]
pub struct Feedback {
    config: FeedbackConfig,
    inner: Mutex<Inner>,
}

impl Feedback {
    /// An empty record.
    pub fn new(config: FeedbackConfig) -> Self {
        Feedback { config, inner: Mutex::new(Inner::default()) }
    }

    /// Records the predicted labels of request `id` answered by `version` of `model`, if `outputs` hold
    /// the model's label output (`label`, as the model declares it: `predict`, `is_anomaly`).
    pub fn record(&self, model: &str, version: &str, label: Option<&LabelOutput>, id: &str, outputs: &[Tensor]) {
        if self.config.capacity == 0 {
            return;
        }
        let Some(label) = label else { return };
        let Some(labels) = outputs.iter().find(|t| t.name == label.output).and_then(LabelOutput::labels) else {
            return;
        };
        let positive = label.positive.clone();
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (model.to_owned(), id.to_owned());
        inner.scored.remove(&key);
        if inner.predictions.insert(key.clone(), Recorded { version: version.to_owned(), labels, positive }).is_none() {
            inner.order.push_back(key);
        }
        while inner.predictions.len() > self.config.capacity {
            let Some(oldest) = inner.order.pop_front() else { break };
            inner.predictions.remove(&oldest);
        }
        // Ids re-used after scoring leave stale keys in `order`; keep it bounded too.
        while inner.order.len() > 2 * self.config.capacity {
            inner.order.pop_front();
        }
    }

    /// Scores `items` for `model` and updates the gauges. Nothing changes if any item is invalid.
    ///
    /// # Errors
    /// [`FeedbackError::Invalid`] when an item's label count differs from its prediction's rows or a
    /// label's type from the prediction's; [`FeedbackError::Unknown`] when no item's id is recorded.
    pub fn score(
        &self,
        model: &str,
        items: &[FeedbackItem],
        metrics: &Metrics,
    ) -> Result<FeedbackResponse, FeedbackError> {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut unknown = Vec::new();
        let mut known = Vec::new();
        for item in items {
            let key = (model.to_owned(), item.id.clone());
            match inner.predictions.get(&key) {
                None => unknown.push(item.id.clone()),
                Some(p) => {
                    if p.labels.len() != item.labels.len() {
                        return Err(FeedbackError::Invalid(format!(
                            "id `{}`: {} labels for a prediction of {} rows",
                            item.id,
                            item.labels.len(),
                            p.labels.len()
                        )));
                    }
                    if let Some((want, got)) = p
                        .labels
                        .iter()
                        .zip(&item.labels)
                        .find(|(a, b)| std::mem::discriminant(*a) != std::mem::discriminant(*b))
                    {
                        return Err(FeedbackError::Invalid(format!(
                            "id `{}`: label {} is not of the type the model predicts (like {})",
                            item.id,
                            json(got),
                            json(want)
                        )));
                    }
                    known.push(key);
                }
            }
        }
        if known.is_empty() {
            let (scored, unrecorded) =
                unknown.into_iter().partition(|id| inner.scored.contains(&(model.to_owned(), id.clone())));
            return Err(FeedbackError::Unknown { unrecorded, scored });
        }
        let mut touched = Vec::new();
        let mut scored = 0;
        for (key, item) in known.into_iter().zip(items.iter().filter(|i| !unknown.contains(&i.id))) {
            let Some(p) = inner.predictions.remove(&key) else { continue };
            if inner.scored.insert(key.clone()) {
                inner.scored_order.push_back(key.clone());
            }
            while inner.scored_order.len() > self.config.capacity {
                let Some(oldest) = inner.scored_order.pop_front() else { break };
                inner.scored.remove(&oldest);
            }
            let version_key = (model.to_owned(), p.version.clone());
            let window = inner.outcomes.entry(version_key.clone()).or_default();
            for (predicted, actual) in p.labels.iter().zip(&item.labels) {
                let positives = p.positive.as_ref().map(|label| (predicted == label, actual == label));
                window.push_back(Outcome { correct: predicted == actual, positives });
                while window.len() > self.config.window.max(1) {
                    window.pop_front();
                }
            }
            scored += item.labels.len();
            metrics.feedback.with_label_values(&[model, &p.version]).inc_by(item.labels.len() as u64);
            if !touched.contains(&version_key) {
                touched.push(version_key);
            }
        }
        let mut versions = HashMap::new();
        for key in touched {
            let Some(scores) = inner.outcomes.get(&key).map(scores) else { continue };
            let labels = [key.0.as_str(), key.1.as_str()];
            metrics.accuracy.with_label_values(&labels).set(scores.accuracy);
            if let Some(p) = scores.precision {
                metrics.precision.with_label_values(&labels).set(p);
            }
            if let Some(r) = scores.recall {
                metrics.recall.with_label_values(&labels).set(r);
            }
            versions.insert(key.1, scores);
        }
        Ok(FeedbackResponse { model: model.to_owned(), scored, unknown_ids: unknown, versions })
    }
}

fn json(label: &Label) -> String {
    serde_json::to_string(label).unwrap_or_default()
}

fn scores(window: &VecDeque<Outcome>) -> Scores {
    let n = window.len();
    let correct = window.iter().filter(|o| o.correct).count();
    let pairs: Vec<(bool, bool)> = window.iter().filter_map(|o| o.positives).collect();
    let tp = pairs.iter().filter(|(p, a)| *p && *a).count();
    let predicted = pairs.iter().filter(|(p, _)| *p).count();
    let actual = pairs.iter().filter(|(_, a)| *a).count();
    #[allow(clippy::cast_precision_loss)]
    let ratio = |a: usize, b: usize| if b == 0 { None } else { Some(a as f64 / b as f64) };
    Scores {
        labelled: n,
        accuracy: ratio(correct, n).unwrap_or(0.0),
        precision: if pairs.is_empty() { None } else { ratio(tp, predicted) },
        recall: if pairs.is_empty() { None } else { ratio(tp, actual) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use ferroserve_formats::TensorData;

    fn detector() -> Option<LabelOutput> {
        Some(LabelOutput::new("predict", Some(Label::Int(-1))))
    }

    fn predict(labels: &[i64]) -> Vec<Tensor> {
        vec![Tensor::new("predict", vec![labels.len()], TensorData::Int64(labels.to_vec())).unwrap()]
    }

    fn item(id: &str, labels: &[i64]) -> FeedbackItem {
        FeedbackItem { id: id.into(), labels: labels.iter().map(|&l| Label::Int(l)).collect() }
    }

    #[test]
    fn feedback_scores_accuracy_precision_and_recall() {
        let metrics = Metrics::new();
        let f = Feedback::new(FeedbackConfig::default());
        f.record("m", "v1", detector().as_ref(), "a", &predict(&[-1, 1, 1, -1]));
        f.record("m", "v1", detector().as_ref(), "b", &predict(&[1, 1]));
        // Truth: a = [-1, 1, -1, 1], b = [1, -1]: 3 of 6 right; predicted anomalies 2, of which 1 true;
        // true anomalies 3, of which 1 found.
        let r = f.score("m", &[item("a", &[-1, 1, -1, 1]), item("b", &[1, -1]), item("zzz", &[1])], &metrics).unwrap();
        assert_eq!(r.scored, 6);
        assert_eq!(r.unknown_ids, ["zzz"]);
        let s = &r.versions["v1"];
        assert_eq!((s.labelled, s.accuracy), (6, 0.5));
        assert_eq!(s.precision, Some(0.5));
        assert_eq!(s.recall, Some(1.0 / 3.0));
        assert_eq!(metrics.accuracy.with_label_values(&["m", "v1"]).get(), 0.5);
        // Scored once: the same id again is refused, saying it was already scored.
        let e = f.score("m", &[item("a", &[1, 1, 1, 1]), item("nope", &[1])], &metrics).unwrap_err();
        assert_eq!(
            e.to_string(),
            "id(s) a already received feedback (each prediction is scored once; send feedback for new predictions); \
             no prediction is recorded for id(s) nope; send an `id` with the inference request and ask for its label output"
        );
        // A new prediction under the same id can be scored again.
        f.record("m", "v1", detector().as_ref(), "a", &predict(&[1]));
        assert_eq!(f.score("m", &[item("a", &[1])], &metrics).unwrap().scored, 1);
    }

    #[test]
    fn invalid_feedback_changes_nothing() {
        let metrics = Metrics::new();
        let f = Feedback::new(FeedbackConfig::default());
        f.record("m", "v1", detector().as_ref(), "a", &predict(&[-1, 1]));
        let err = f.score("m", &[item("a", &[1])], &metrics).unwrap_err();
        assert_eq!(err.to_string(), "id `a`: 1 labels for a prediction of 2 rows");
        let wrong_type = FeedbackItem { id: "a".into(), labels: vec![Label::Bool(true), Label::Bool(false)] };
        assert!(f.score("m", &[wrong_type], &metrics).unwrap_err().to_string().contains("not of the type"));
        assert_eq!(f.score("m", &[item("a", &[-1, 1])], &metrics).unwrap().versions["v1"].accuracy, 1.0);
    }

    #[test]
    fn memory_is_bounded() {
        let metrics = Metrics::new();
        let f = Feedback::new(FeedbackConfig { capacity: 3, window: 2 });
        for i in 0..10 {
            let classifier = LabelOutput::new("predict", None);
            f.record("m", "v1", Some(&classifier), &i.to_string(), &predict(&[1]));
        }
        assert!(matches!(f.score("m", &[item("0", &[1])], &metrics), Err(FeedbackError::Unknown { .. })), "forgotten");
        let r = f.score("m", &[item("7", &[0]), item("8", &[1]), item("9", &[1])], &metrics).unwrap();
        assert_eq!(r.versions["v1"].labelled, 2, "the window keeps the last 2 rows");
        assert_eq!(r.versions["v1"].accuracy, 1.0);
        assert_eq!(r.versions["v1"].precision, None, "not an anomaly detector");
        // No label output, nothing recorded.
        f.record(
            "m",
            "v1",
            detector().as_ref(),
            "s",
            &[Tensor::new("score_samples", vec![1], TensorData::Fp64(vec![0.1])).unwrap()],
        );
        assert!(f.score("m", &[item("s", &[1])], &metrics).is_err());
    }
}
