//! The LSTM autoencoder through the served path (`Model::infer`: input checks, the forward pass,
//! per-window errors, threshold) at batch 1, 64 and 256 windows of 60 steps × 6 features, hidden 32,
//! 2 layers, with random weights from a fixed seed: `predict/lstm_autoencoder` is the CPU kernel (what
//! serves on the CPU), `predict/lstm_autoencoder_candle` the candle path (CUDA, training).
//!
//! `benches/lstm_pytorch.py` times PyTorch on the same shapes; figures are in docs/lstm.md.

use std::collections::HashMap;
use std::hint::black_box;

use candle_core::{DType, Device, Tensor as CTensor};
use candle_nn::VarBuilder;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use ferroserve_formats::lstm::{LstmAutoencoder, LstmAutoencoderConfig};
use ferroserve_formats::{Model, Tensor, TensorData};

const STEPS: usize = 60;
const FEATURES: usize = 6;

/// A xorshift stream in [-0.5, 0.5): fixed-seed values without a dependency.
fn uniform(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// Hidden 32, 2 layers, threshold 1.0; weights uniform in ±1/√H as PyTorch initialises them.
pub fn autoencoder() -> LstmAutoencoder {
    let cfg = LstmAutoencoderConfig {
        n_features: FEATURES,
        hidden_size: 32,
        num_layers: 2,
        decoder: ferroserve_formats::lstm::DecoderForm::Repeated,
        seq_len: Some(STEPS),
        threshold: Some(1.0),
        scaler: None,
    };
    let bound = 2.0 / (cfg.hidden_size as f32).sqrt();
    let tensors: HashMap<String, CTensor> = cfg
        .tensors()
        .into_iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let n = shape.iter().product();
            let values = uniform(42 + i as u64, n).into_iter().map(|v| v * bound).collect();
            (name, CTensor::from_vec(values, shape.as_slice(), &Device::Cpu).expect("tensor"))
        })
        .collect();
    LstmAutoencoder::new(&cfg, VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu)).expect("model")
}

fn lstm_autoencoder(c: &mut Criterion) {
    let candle = autoencoder();
    let kernel = candle.clone().with_cpu_kernel().expect("kernel");
    run(c, "predict/lstm_autoencoder", &kernel);
    run(c, "predict/lstm_autoencoder_candle", &candle);
}

fn run(c: &mut Criterion, name: &str, model: &LstmAutoencoder) {
    let outputs = ["reconstruction_error".to_owned(), "is_anomaly".to_owned()];
    let mut group = c.benchmark_group(name);
    for batch in [1usize, 64, 256] {
        let x = Tensor::new(
            "input-0",
            vec![batch, STEPS, FEATURES],
            TensorData::Fp32(uniform(7, batch * STEPS * FEATURES)),
        )
        .expect("input");
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &x, |b, x| {
            b.iter(|| black_box(model.infer(std::slice::from_ref(black_box(x)), &outputs).expect("infer")));
        });
    }
    group.finish();
}

criterion_group!(benches, lstm_autoencoder);
