//! The LSTM autoencoder trainer: learning, reproducibility, early stopping, and that the folder it
//! writes is served with the errors training measured.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use ferroserve_formats::layout::{self, METADATA_JSON, MODEL_SAFETENSORS};
use ferroserve_formats::tensor::{Tensor, TensorData};
use ferroserve_formats::{ModelMetadata, load_model};
use ferroserve_train::synth::{self, SynthConfig};
use ferroserve_train::{Dataset, DatasetOptions, JobOptions, LstmTrainingConfig, TrainedLstm, train_lstm_autoencoder};

fn data(rows: usize) -> Dataset {
    let data = synth::generate(&SynthConfig { rows, seed: 3, ..SynthConfig::default() }).unwrap();
    Dataset::from_csv_bytes(&data.to_csv(), Path::new("synth.csv"), &DatasetOptions::default()).unwrap()
}

fn tiny() -> LstmTrainingConfig {
    LstmTrainingConfig {
        window: 10,
        hidden_size: 8,
        epochs: 3,
        batch_size: 32,
        learning_rate: 1e-2,
        seed: 5,
        ..LstmTrainingConfig::default()
    }
}

fn train(dir: &Path, d: &Dataset, cfg: &LstmTrainingConfig) -> TrainedLstm {
    let options = JobOptions { created_at: UNIX_EPOCH + Duration::from_secs(1_768_176_000), ..JobOptions::new(dir) };
    train_lstm_autoencoder(d, cfg, &options, &mut ()).unwrap()
}

#[test]
fn learns_and_writes_what_the_server_loads() {
    let d = data(300);
    let root = tempfile::tempdir().unwrap();
    let t = train(&root.path().join("lstm"), &d, &tiny());
    let c = &t.curve;
    assert_eq!(c.train.len(), 3);
    assert!(c.train[2] < c.train[0], "loss goes down: {:?}", c.train);
    assert!(t.path.ends_with("v1"));

    let files = layout::find_artifact(&t.path).unwrap().unwrap();
    let model = load_model(&files).unwrap();
    let cfg = &t.config;
    let (w, f) = (cfg.seq_len.unwrap(), cfg.n_features);
    let n = t.training_errors.len();
    let mut raw = Vec::with_capacity(n * w * f);
    for s in 0..n {
        for r in s..s + w {
            raw.extend(d.columns.iter().map(|col| col[r]));
        }
    }
    let x = Tensor::new("input-0", vec![n, w, f], TensorData::Fp64(raw)).unwrap();
    let out = model.infer(&[x], &["reconstruction_error".to_owned(), "is_anomaly".to_owned()]).unwrap();
    let TensorData::Fp64(served) = &out[0].data else { panic!("reconstruction_error is FP64") };
    for (i, (a, b)) in served.iter().zip(&t.training_errors).enumerate() {
        assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-6), "window {i}: served {a}, trained {b}");
    }
    let TensorData::Bool(flags) = &out[1].data else { panic!("is_anomaly is BOOL") };
    let flagged = flags.iter().filter(|&&b| b).count();
    assert!(flagged <= n / 50 + 1, "the 99th percentile flags about 1% of training windows: {flagged}/{n}");

    let meta = ModelMetadata::read(&t.path.join(METADATA_JSON)).unwrap();
    assert_eq!(meta.version.as_deref(), Some("v1"));
    assert_eq!(meta.created_at.as_deref(), Some("2026-01-12T00:00:00Z"));
    let perf = meta.performance_metrics.unwrap();
    assert_eq!(perf.extra["loss_curve"]["epochs_run"], 3);
    // The loss curve is drawn beside metadata.json, which names it.
    assert_eq!(meta.extra["plot"], "training.svg");
    let svg = std::fs::read_to_string(t.path.join("training.svg")).unwrap();
    assert!(svg.starts_with("<svg ") && svg.contains("Loss per epoch"), "{svg}");
    assert!(perf.f1_score.is_some(), "synth data is labelled");
    assert_eq!(meta.hyperparameters.unwrap()["hidden_size"], 8);
    assert_eq!(meta.training_data.unwrap().rows, Some(300));
}

#[test]
fn a_seed_gives_identical_bytes() {
    let d = data(300);
    let root = tempfile::tempdir().unwrap();
    let a = train(&root.path().join("a/m"), &d, &tiny());
    let b = train(&root.path().join("b/m"), &d, &tiny());
    let (ta, tb) = (crate::tree_bytes(&a.path), crate::tree_bytes(&b.path));
    let differ: Vec<&str> = ta.iter().zip(&tb).filter(|(x, y)| x != y).map(|(x, _)| x.0.as_str()).collect();
    assert!(ta.len() == 4 && tb.len() == 4 && differ.is_empty(), "files differ: {differ:?}");
    let c = train(&root.path().join("c"), &d, &LstmTrainingConfig { seed: 6, ..tiny() });
    let bytes = |p: &Path| std::fs::read(p.join(MODEL_SAFETENSORS)).unwrap();
    assert_ne!(bytes(&a.path), bytes(&c.path));
}

#[test]
fn early_stopping_keeps_the_best_epoch() {
    let d = data(300);
    let root = tempfile::tempdir().unwrap();
    // A learning rate this high overshoots, so validation loss stops improving early.
    let cfg = LstmTrainingConfig { epochs: 12, patience: 1, learning_rate: 0.3, ..tiny() };
    let t = train(&root.path().join("m"), &d, &cfg);
    let c = &t.curve;
    let best = c.validation.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(c.validation[c.best_epoch - 1], best, "{c:?}");
    assert!(c.train.len() < 12 && c.train.len() == c.best_epoch + 1, "stops after patience runs out: {c:?}");
    // The kept weights are the best epoch's: the served validation loss equals it.
    let files = layout::find_artifact(&t.path).unwrap().unwrap();
    let model = load_model(&files).unwrap();
    let (w, f) = (10, d.columns.len());
    let n_windows = 300 - w + 1;
    let n_train = t.training_errors.len();
    let mut raw = Vec::new();
    for s in n_train..n_windows {
        for r in s..s + w {
            raw.extend(d.columns.iter().map(|col| col[r]));
        }
    }
    let x = Tensor::new("x", vec![n_windows - n_train, w, f], TensorData::Fp64(raw)).unwrap();
    let out = model.infer(&[x], &["reconstruction_error".to_owned()]).unwrap();
    let TensorData::Fp64(e) = &out[0].data else { panic!() };
    let served = e.iter().sum::<f64>() / e.len() as f64;
    assert!((served - best).abs() <= 1e-6 * best, "served {served}, best {best}");
}

#[test]
fn rejects_too_few_rows_and_bad_parameters() {
    let d = data(300);
    let root = tempfile::tempdir().unwrap();
    let options = JobOptions::new(root.path().join("m"));
    for cfg in [
        LstmTrainingConfig { window: 400, ..tiny() },
        LstmTrainingConfig { hidden_size: 0, ..tiny() },
        LstmTrainingConfig { validation_fraction: 1.0, ..tiny() },
        LstmTrainingConfig { learning_rate: -1.0, ..tiny() },
    ] {
        assert!(train_lstm_autoencoder(&d, &cfg, &options, &mut ()).is_err(), "{cfg:?}");
    }
    assert!(!root.path().join("m").join("v1").exists());
}
