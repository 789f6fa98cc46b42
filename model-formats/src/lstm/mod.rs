//! The LSTM autoencoder: PyTorch's weights served with candle, on CPU or CUDA.
//!
//! A window of metrics `[T, F]` goes through an encoder LSTM; the last layer's final hidden state,
//! repeated `T` times, goes through a decoder LSTM and a linear layer back to `[T, F]`. A window whose
//! reconstruction error exceeds a threshold is an anomaly. The network is PyTorch's
//! `LSTMAutoencoder` (see `docs/lstm.md`), with the same tensor names, so `state_dict` weights load as
//! they are.
//!
//! # Layout
//! - [`layer`]: [`Lstm`], a stack of LSTM layers with PyTorch's names and gate order.
//! - [`autoencoder`]: [`LstmAutoencoder`], the network and the served [`crate::Model`].
//! - [`cpu`]: the served network on the CPU without candle (packed weights, fused gates), which
//!   [`load_pytorch`] enables on the CPU; candle serves CUDA and trains.
//! - [`import`]: the PyTorch import form (`config.json` + `model.safetensors`), validated at load.
//! - [`torch_file`]: a `torch.save`d `state_dict` (`model.pt`), its architecture inferred from the
//!   tensors, with `scaler.pkl` and `config.json`/`metadata.json` beside it.
//! - [`pipeline`]: the notebook's whole pickled `LSTMPipeline`, read structurally.
//! - [`device`]: [`DeviceChoice`] (`auto`, `cpu`, `cuda[:N]`) and its fallback to CPU.

pub mod autoencoder;
pub mod cpu;
pub mod device;
pub mod import;
pub mod layer;
pub mod pipeline;
pub mod torch_file;

pub use autoencoder::{DecoderForm, LstmAutoencoder, LstmAutoencoderConfig, Scaler};
pub use device::{DeviceChoice, ResolvedDevice};
pub use import::{CONFIG_JSON, load_pytorch, load_pytorch_with, save_pytorch};
pub use layer::{Lstm, LstmConfig};
pub use pipeline::LstmPipeline;
pub use torch_file::load_torch;
