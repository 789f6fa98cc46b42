//! `ferroserve-train`: trains anomaly detectors with scikit-learn's algorithms and writes them as
//! versioned Ferroserve artifacts, only through `ferroserve-formats`' save API (so what is written is
//! exactly what the runtime loads).
//!
//! ```no_run
//! # fn main() -> Result<(), ferroserve_train::Error> {
//! use std::path::Path;
//! use ferroserve_train::{Dataset, DatasetOptions, IsolationForestConfig, JobOptions, synth};
//!
//! let data = synth::generate(&synth::SynthConfig::default())?;
//! data.write_file(Path::new("metrics.csv"))?;
//! let dataset = Dataset::read_csv(Path::new("metrics.csv"), &DatasetOptions::default())?;
//! let trained = ferroserve_train::train_isolation_forest(
//!     &dataset,
//!     &IsolationForestConfig::default(),
//!     &JobOptions::new("models/anomaly-detector"),
//!     &mut (),
//! )?;
//! println!("{}", trained.path.display()); // models/anomaly-detector/v1
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`synth`]: seeded, labeled synthetic cluster metrics (`ferroserve-train synth`).
//! - [`dataset`]: CSV → feature columns, labels, time range and content hash ([`Dataset`]).
//! - [`isolation_forest`]: scikit-learn's IsolationForest fitting ([`IsolationForestConfig`]).
//! - [`evaluation`]: accuracy, precision, recall, F1 against labels ([`Evaluation`]).
//! - [`prometheus`]: metric series from Prometheus's `query_range` API.
//! - [`features`]: the anomaly notebook's 45 features from those series, and the data set's CSV and provenance.
//! - [`gate`]: the pre-deploy gate ([`Gate`]): quality, latency and size checks before `vN/` is published.
//! - [`plot`]: the SVG plot written beside `metadata.json` (loss per epoch, training score histogram).
//! - [`output`]: atomic version writing ([`write_version`]) and provenance (time, command, commit).
//! - [`job`]: one training run end to end ([`train_isolation_forest`]).
//! - [`lstm_autoencoder`]: the LSTM autoencoder's training loop ([`train_lstm_autoencoder`]).
//! - [`progress`]: progress of long steps ([`Progress`]; the CLI draws it with indicatif).
//! - [`error`]: the crate's [`Error`].
//! - `rng` (private): seeded ChaCha8 streams that stay identical across platforms and versions.
//!
//! The binary (`src/main.rs`) has one subcommand per model kind plus `synth`.
#![warn(missing_docs)]

pub mod dataset;
pub mod error;
pub mod evaluation;
pub mod features;
pub mod gate;
pub mod isolation_forest;
pub mod job;
pub mod lstm_autoencoder;
pub mod output;
pub mod plot;
pub mod progress;
pub mod prometheus;
mod rng;
pub mod synth;

pub use dataset::{Dataset, DatasetOptions, LabelColumn};
pub use error::{Error, Result, ValueFault};
pub use evaluation::Evaluation;
pub use gate::{Gate, Thresholds, Validation};
pub use isolation_forest::{FittedIsolationForest, IsolationForestConfig, MaxFeatures, MaxSamples, Resolved};
pub use job::{JobOptions, TrainedVersion, train_isolation_forest};
pub use lstm_autoencoder::{LossCurve, LstmTrainingConfig, TrainedLstm, train_lstm_autoencoder};
pub use output::{Written, write_version, write_version_validated, write_version_with};
pub use progress::{Progress, Step};
