//! KServe v1 over a real socket, as the platform's callers use it: the coordination engine's exact calls on
//! the notebook's anomaly-detector pipeline, and v1 against v2 on every scikit-learn parity fixture.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::client::{Server, request};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sklearn/latest")
}

fn golden_case(case: &str) -> Value {
    golden(case)
}

fn golden(case: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join(format!("{case}.json"))).unwrap()).unwrap()
}

fn rows(x: &Value) -> Vec<Vec<f64>> {
    serde_json::from_value(x.clone()).unwrap()
}

/// The fixture's `X` with its "nan" strings as JSON null, the missing value of a v1 request.
fn nan_as_null(x: &Value) -> Value {
    match x {
        Value::Array(items) => Value::Array(items.iter().map(nan_as_null).collect()),
        Value::String(s) if s == "nan" => Value::Null,
        other => other.clone(),
    }
}

/// Flattens nested JSON arrays (row-major), as v2's flat `data`.
fn flatten(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other.clone()),
    }
}

fn flat(v: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    flatten(v, &mut out);
    out
}

/// Same labels exactly, or the same floats within 1e-9 relative.
fn agree(got: &[Value], want: &[Value], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (g, w) in got.iter().zip(want) {
        match (g.as_f64(), w.as_f64()) {
            (Some(g), Some(w)) if !(g.is_nan() && w.is_nan()) => {
                assert!((g - w).abs() <= 1e-9 * w.abs().max(1e-3), "{what}: {g} vs {w}");
            }
            _ => assert_eq!(g, w, "{what}"),
        }
    }
}

/// The engine's decoding of `{"predictions": [...]}` into a Go `[]int`: JSON integers only.
fn engine_decode(body: &Value) -> Vec<i64> {
    serde_json::from_value(body["predictions"].clone())
        .unwrap_or_else(|e| panic!("the engine cannot decode {body} into []int: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_calls_the_notebook_pipeline_over_v1() {
    let case = golden("platform_anomaly_detector");
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("anomaly-detector");
    std::fs::create_dir_all(&model_dir).unwrap();
    std::fs::copy(fixtures().join("platform_anomaly_detector.model.pkl"), model_dir.join("model.pkl")).unwrap();
    // As the InferenceService runs it without a name: KServe's default name, `model`.
    let server = Server::start(&["--model_dir", model_dir.to_str().unwrap()]).await;

    // The engine's health check.
    let (status, body) = server.get("/v1/models/model").await;
    assert_eq!((status, &body), (200, &json!({"name": "model", "ready": true})));

    let x = rows(&case["X"]);
    assert_eq!(x[0].len(), 45);
    let want: Vec<i64> = serde_json::from_value(case["outputs"]["predict"].clone()).unwrap();
    assert!(want.contains(&-1) && want.contains(&1), "the fixture holds anomalies and normal rows");
    // One row a call, as the engine sends them.
    for (i, row) in x.iter().enumerate() {
        let (status, body) = server.post("/v1/models/model:predict", &json!({"instances": [row]})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(engine_decode(&body), [want[i]], "row {i}");
    }
    // All rows in one call; the same through v2 with scikit-learn's scores.
    let (status, body) = server.post("/v1/models/model:predict", &json!({"instances": x})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(engine_decode(&body), want);
    let (status, v2) = server.post("/v2/models/model/infer", &request(&x, &["predict", "decision_function"])).await;
    assert_eq!(status, 200, "{v2}");
    assert_eq!(flat(&v2["outputs"][0]["data"]), flat(&body["predictions"]));
    agree(&flat(&v2["outputs"][1]["data"]), &flat(&case["outputs"]["decision_function"]), "decision_function");

    // A wrong feature count is the caller's error, with the reason (KServe answers 500).
    let (status, body) = server.post("/v1/models/model:predict", &json!({"instances": [vec![0.5; 44]]})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("45"), "{body}");

    // Feedback on a pickled IsolationForest: labels kept from a v1 call with an `id`, then scored with
    // precision and recall (the anomaly, -1, is the positive class).
    let (status, _) = server.post("/v1/models/model:predict", &json!({"id": "minute-1", "instances": x})).await;
    assert_eq!(status, 200);
    let mut truth = want.clone();
    let flipped = truth.iter().position(|&l| l == -1).unwrap();
    truth[flipped] = 1;
    let (status, scored) = server.post("/v2/models/model/feedback", &json!({"id": "minute-1", "labels": truth})).await;
    assert_eq!(status, 200, "{scored}");
    let scores = scored["versions"].as_object().unwrap().values().next().unwrap().clone();
    let anomalies = want.iter().filter(|&&l| l == -1).count();
    #[allow(clippy::cast_precision_loss)]
    let precision = (anomalies - 1) as f64 / anomalies as f64;
    assert_eq!(scores["precision"], json!(precision), "{scored}");
    assert_eq!(scores["recall"], json!(1.0), "{scored}");
    let metrics = server.get_text("/metrics").await;
    assert!(metrics.lines().any(|l| l.starts_with("model_prediction_precision{model=\"model\"")), "{metrics}");
    server.stop().await;
}

/// The model file of a fixture case, as a model folder names it.
fn place(case: &Value, repo: &Path) -> String {
    let name = case["case"].as_str().unwrap().to_owned();
    let file = case["files"][0].as_str().unwrap();
    let target = if file.ends_with(".joblib") { "model.joblib" } else { "model.pkl" };
    let dir = repo.join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixtures().join(file), dir.join(target)).unwrap();
    name
}

fn cases() -> Vec<Value> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    names.iter().map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_and_v2_agree_on_every_scikit_learn_fixture() {
    let repo = tempfile::tempdir().unwrap();
    let cases = cases();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let names: Vec<String> = cases.iter().map(|c| place(c, repo.path())).collect();
    let server = Server::start(&["--model_repository", repo.path().to_str().unwrap()]).await;
    let (status, listed) = server.get("/v1/models").await;
    assert_eq!(status, 200);
    assert_eq!(listed["models"].as_array().unwrap().len(), cases.len(), "{listed}");

    for (case, name) in cases.iter().zip(&names) {
        // Missing values: the fixtures write NaN as "nan"; v1 carries it as null, v2's JSON cannot.
        let with_nan = flat(&case["X"]).iter().any(Value::is_string);
        let x_v1 = nan_as_null(&case["X"]);
        let (status, v1) = server.post(&format!("/v1/models/{name}:predict"), &json!({"instances": x_v1})).await;
        assert_eq!(status, 200, "{name}: {v1}");
        let predictions = v1["predictions"].as_array().unwrap();
        assert_eq!(predictions.len(), x_v1.as_array().unwrap().len(), "{name}: one prediction per instance");
        let (status, meta) = server.get(&format!("/v2/models/{name}")).await;
        assert_eq!(status, 200);
        let output = meta["outputs"][0]["name"].as_str().unwrap().to_owned();
        if !with_nan {
            // The same numbers, to the bit, as v2.
            let x = rows(&case["X"]);
            let (status, v2) = server.post(&format!("/v2/models/{name}/infer"), &request(&x, &[])).await;
            assert_eq!(status, 200, "{name}: {v2}");
            assert_eq!(v2["outputs"][0]["name"], output.as_str());
            assert_eq!(flat(&v1["predictions"]), flat(&v2["outputs"][0]["data"]), "{name}");
        }
        // scikit-learn's numbers, with scikit-learn's JSON types.
        let want = &case["outputs"][&output];
        agree(&flat(&v1["predictions"]), &flat(want), &format!("{name} {output}"));
        for (g, w) in flat(&v1["predictions"]).iter().zip(flat(want)) {
            let same_type = (g.is_i64() && w.is_i64())
                || (g.is_boolean() && w.is_boolean())
                || (g.is_string() && w.is_string())
                || (g.is_f64() && (w.is_f64() || w.is_string()));
            assert!(same_type, "{name}: {g} where scikit-learn gives {w}");
        }
        if output == "transform" {
            assert!(predictions[0].is_array(), "{name}: 2-D outputs are nested lists");
        }

        // Models fitted on named columns take records in any key order, and name what is missing.
        if let Some(features) = case["feature_names_in"].as_array() {
            let x: Vec<Vec<Value>> = serde_json::from_value(x_v1.clone()).unwrap();
            let records: Vec<Value> = x
                .iter()
                .map(|row| {
                    let mut record = serde_json::Map::new();
                    for (f, v) in features.iter().zip(row).rev() {
                        record.insert(f.as_str().unwrap().to_owned(), v.clone());
                    }
                    Value::Object(record)
                })
                .collect();
            let (status, by_name) =
                server.post(&format!("/v1/models/{name}:predict"), &json!({"instances": records})).await;
            assert_eq!(status, 200, "{name}: {by_name}");
            assert_eq!(by_name, v1, "{name}: records placed by feature name");
            let mut short = records[0].as_object().unwrap().clone();
            let dropped = features[0].as_str().unwrap();
            short.remove(dropped);
            short.insert("bogus".to_owned(), json!(1.0));
            let (status, err) =
                server.post(&format!("/v1/models/{name}:predict"), &json!({"instances": [short]})).await;
            assert_eq!(status, 400, "{name}: {err}");
            let message = err["error"].as_str().unwrap();
            assert!(message.contains("`bogus`"), "{name}: {message}");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_proba_answers_probabilities_where_the_model_has_them() {
    let repo = tempfile::tempdir().unwrap();
    let classifier = golden("random_forest_classifier_str");
    let regressor = golden("ridge");
    let c = place(&classifier, repo.path());
    let r = place(&regressor, repo.path());
    let server = Server::start(&["--model_repository", repo.path().to_str().unwrap(), "--predict_proba", "TRUE"]).await;
    let x = rows(&classifier["X"]);
    let (status, body) = server.post(&format!("/v1/models/{c}:predict"), &json!({"instances": x})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["predictions"].as_array().unwrap().len(), x.len());
    assert_eq!(body["predictions"][0].as_array().unwrap().len(), 3, "[N, classes] as nested lists");
    agree(&flat(&body["predictions"]), &flat(&classifier["outputs"]["predict_proba"]), "predict_proba");
    // A regressor has no predict_proba: it still predicts.
    let x = rows(&regressor["X"]);
    let (status, body) = server.post(&format!("/v1/models/{r}:predict"), &json!({"instances": x})).await;
    assert_eq!(status, 200, "{body}");
    agree(&flat(&body["predictions"]), &flat(&regressor["outputs"]["predict"]), "ridge predict");
    server.stop().await;
}

/// The platform's second model, `predictive-analytics/model.pkl`: `Pipeline(StandardScaler,
/// MultiOutputRegressor(XGBRegressor))`, 30 features → 5 forecasts, called over v1 as the engine calls it and
/// over v2, with XGBoost's numbers; and its RandomForest fallback beside it in a repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_predictive_analytics_pipeline_serves_its_forecasts() {
    let boosting = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/boosting/latest");
    let repo = tempfile::tempdir().unwrap();
    for (case, model) in [("platform_predictive_xgb", "predictive-analytics"), ("platform_predictive_rf", "fallback")] {
        std::fs::create_dir_all(repo.path().join(model)).unwrap();
        std::fs::copy(boosting.join(format!("{case}.model.pkl")), repo.path().join(model).join("model.pkl")).unwrap();
    }
    let server = Server::start(&["--model_repository", repo.path().to_str().unwrap()]).await;
    for (case, model) in [("platform_predictive_xgb", "predictive-analytics"), ("platform_predictive_rf", "fallback")] {
        let golden: Value =
            serde_json::from_slice(&std::fs::read(boosting.join(format!("{case}.json"))).unwrap()).unwrap();
        // Rows with missing values (null in v1, as XGBoost and the forest take NaN) and without.
        let x = nan_as_null(&golden["X"]);
        let rows_v1 = x.as_array().unwrap();
        assert_eq!(rows_v1[0].as_array().unwrap().len(), 30);
        let (status, body) =
            server.post(&format!("/v1/models/{model}:predict"), &json!({"instances": [rows_v1[0]]})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["predictions"].as_array().unwrap().len(), 1);
        assert_eq!(body["predictions"][0].as_array().unwrap().len(), 5, "{body}");
        let (status, body) = server.post(&format!("/v1/models/{model}:predict"), &json!({"instances": x})).await;
        assert_eq!(status, 200, "{body}");
        agree(&flat(&body["predictions"]), &flat(&golden["outputs"]["predict"]), case);
        // v2 (JSON has no NaN): the complete rows, the same numbers as v1.
        let complete: Vec<usize> =
            (0..rows_v1.len()).filter(|&i| !flat(&rows_v1[i]).iter().any(Value::is_null)).collect();
        let x2: Vec<Vec<f64>> = complete.iter().map(|&i| serde_json::from_value(rows_v1[i].clone()).unwrap()).collect();
        let (status, v2) = server.post(&format!("/v2/models/{model}/infer"), &request(&x2, &[])).await;
        assert_eq!(status, 200, "{v2}");
        assert_eq!(v2["outputs"][0]["shape"], json!([x2.len(), 5]));
        let v1_complete: Vec<Value> = complete.iter().flat_map(|&i| flat(&body["predictions"][i])).collect();
        assert_eq!(flat(&v2["outputs"][0]["data"]), v1_complete, "{case}: v1 = v2");
    }
    server.stop().await;
}

/// The platform's LSTM artifacts in its own layouts: `lstm-autoencoder/v1/model.pt` + `scaler.pkl` (the MLOps
/// ADR's), and the notebook's pickled `LSTMPipeline` as `lstm-predictor/model.pkl`, beside a single-file
/// `anomaly-detector.pkl`, served from one repository with PyTorch's numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platforms_lstm_artifacts_serve_in_its_layouts() {
    let torch = Path::new(env!("CARGO_MANIFEST_DIR")).join("../model-formats/tests/fixtures/torch");
    let repo = tempfile::tempdir().unwrap();
    let version = repo.path().join("lstm-autoencoder/v1");
    std::fs::create_dir_all(&version).unwrap();
    for file in ["model.pt", "scaler.pkl", "config.json", "metadata.json"] {
        std::fs::copy(torch.join("documented/v1").join(file), version.join(file)).unwrap();
    }
    std::fs::create_dir_all(repo.path().join("lstm-predictor")).unwrap();
    std::fs::copy(torch.join("lstm_pipeline/model.pkl"), repo.path().join("lstm-predictor/model.pkl")).unwrap();
    std::fs::copy(fixtures().join("platform_anomaly_detector.model.pkl"), repo.path().join("anomaly-detector.pkl"))
        .unwrap();
    let server = Server::start(&["--model_repository", repo.path().to_str().unwrap()]).await;
    let (_, listed) = server.get("/v1/models").await;
    let mut names: Vec<String> = serde_json::from_value(listed["models"].clone()).unwrap();
    names.sort();
    assert_eq!(names, ["anomaly-detector", "lstm-autoencoder", "lstm-predictor"]);

    // model.pt + scaler.pkl: the autoencoder, not the scaler.
    let golden: Value = serde_json::from_slice(&std::fs::read(torch.join("documented/golden.json")).unwrap()).unwrap();
    let (status, meta) = server.get("/v2/models/lstm-autoencoder").await;
    assert_eq!(status, 200);
    assert_eq!(meta["platform"], "ferroserve/lstm_autoencoder", "{meta}");
    let shape = golden["input_shape"].clone();
    let request = json!({"inputs": [{"name": "input-0", "shape": shape, "datatype": "FP32", "data": golden["input"]}],
                         "outputs": [{"name": "reconstruction_error"}, {"name": "is_anomaly"}]});
    let (status, body) = server.post("/v2/models/lstm-autoencoder/infer", &request).await;
    assert_eq!(status, 200, "{body}");
    for (g, w) in flat(&body["outputs"][0]["data"]).iter().zip(flat(&golden["reconstruction_error"])) {
        let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
        assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{g} vs PyTorch {w}");
    }
    assert_eq!(body["outputs"][1]["data"], golden["is_anomaly"]);

    // The notebook's LSTMPipeline: rows in, -1/1 out, as its predict; over v1 as the engine calls it.
    let golden: Value =
        serde_json::from_slice(&std::fs::read(torch.join("lstm_pipeline/golden.json")).unwrap()).unwrap();
    let f = golden["X_shape"][1].as_u64().unwrap() as usize;
    let x: Vec<f64> = serde_json::from_value(golden["X"].clone()).unwrap();
    let rows: Vec<&[f64]> = x.chunks(f).collect();
    let (status, body) = server.post("/v1/models/lstm-predictor:predict", &json!({"instances": rows})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(engine_decode(&body), serde_json::from_value::<Vec<i64>>(golden["predict"].clone()).unwrap());

    // The single-file detector beside them.
    let case = golden_case("platform_anomaly_detector");
    let (status, body) = server.post("/v1/models/anomaly-detector:predict", &json!({"instances": case["X"]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(engine_decode(&body), serde_json::from_value::<Vec<i64>>(case["outputs"]["predict"].clone()).unwrap());
    server.stop().await;
}
