//! Ferroserve's model formats: what a model is on disk and how it computes.
//!
//! This crate is the shared core of the runtime (`ferroserve`) and the trainer (`ferroserve-train`):
//! both read and write models only through it. It has no HTTP, no async runtime and no CLI.
//!
//! # Layout
//! - [`layout`]: the model repository on disk (bare, versioned, repository forms) and the atomic
//!   [`layout::VersionWriter`].
//! - [`manifest`]: `model.json`, the native artifact's description.
//! - [`metadata`]: `metadata.json`, the MLOps record and training reference distribution.
//! - [`serving`]: `serving.json`, a versioned model's default version and canary.
//! - [`drift`]: input drift against a feature's training distribution (Kolmogorov–Smirnov).
//! - [`artifact`]: native artifact save/load ([`NativeModel`]) and [`load_model`] for any artifact.
//! - [`model`]: the [`Model`] trait, signatures, and tabular input assembly.
//! - [`tensor`]: typed tensors ([`Tensor`], [`TensorData`], [`DataType`]).
//! - [`tree`]: decision trees in scikit-learn's array form, the flat inference layout, and
//!   [`tree::IsolationForest`].
//! - [`pickle`]: the restricted pickle interpreter and the inert values it builds (the
//!   `ferroserve-pickle` crate, re-exported, with errors naming the file).
//! - [`sklearn`]: scikit-learn estimators read from pickles, served with scikit-learn's outputs.
//! - [`xgboost`]: XGBoost models (JSON and UBJSON files, and inside pickled scikit-learn wrappers).
//! - [`lightgbm`]: LightGBM text models (native `model.txt` / `model.bst`, and the booster inside a
//!   pickled scikit-learn wrapper).
//! - [`lstm`]: the LSTM autoencoder (PyTorch weights, candle inference on CPU or CUDA).
//! - [`torch`]: `torch.save` files (zip and legacy) read as data into a `state_dict`.
//! - [`files`]: opening model files (regular files only, never blocking, within a size limit).
//! - [`error`]: the crate's [`Error`].
#![warn(missing_docs)]

pub mod artifact;
pub mod drift;
pub mod error;
pub mod files;
pub mod layout;
pub mod lightgbm;
pub mod lstm;
pub mod manifest;
pub mod metadata;
pub mod model;
pub mod pickle;
pub mod serving;
pub mod sklearn;
pub mod tensor;
pub mod torch;
pub mod tree;
pub mod xgboost;

pub use artifact::{LoadOptions, NativeModel, load_model, load_model_with};
pub use error::{Error, InferError, InputError, Result};
pub use metadata::ModelMetadata;
pub use model::{Label, LabelOutput, Matrix, Model, ModelKind, NonFinite, Signature, TabularInput, TensorSpec};
pub use tensor::{DataType, Tensor, TensorData};
