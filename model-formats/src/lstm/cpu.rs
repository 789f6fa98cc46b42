//! The served LSTM autoencoder on the CPU, without candle: weights packed once at load, one GEMM per
//! layer for the input projection of every step, one GEMM per step for the recurrence, and one fused,
//! vectorisable pass for the gates.
//!
//! candle runs each step as about a dozen tensor operations, each allocating its result; at a hidden
//! size of 32 that per-operation cost, not arithmetic, dominated (docs/lstm.md). Here a step is:
//! `gates = proj[t] + h·W_hhᵀ` (one `sgemm` into a reused buffer), then one pass that computes every
//! gate, the cell and the hidden state. The g gate's rows are stored doubled, so that all four
//! activations are one sigmoid pass (`tanh(x) = 2σ(2x) − 1`), and `exp` is a branch-free polynomial the
//! compiler vectorises. Results agree with PyTorch within 1e-5 (the parity tests run both paths).
//!
//! Batches split across rayon's threads by windows, which are independent; a batch below
//! [`PARALLEL_WINDOWS`] stays on the calling thread.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

use super::layer::LstmConfig;

/// Batches of at least this many windows are split across threads.
pub const PARALLEL_WINDOWS: usize = 16;

/// The most windows one thread runs at once: a chunk's projections (`T·B·4H` floats) stay in cache.
const MAX_CHUNK: usize = 64;

/// One layer's weights, packed for row-major GEMMs.
#[derive(Debug, Clone)]
struct Layer {
    input: usize,
    /// `W_ihᵀ`, `[In, 4H]`, the g gate's columns doubled.
    w_ih_t: Vec<f32>,
    /// `W_hhᵀ`, `[H, 4H]`, the g gate's columns doubled.
    w_hh_t: Vec<f32>,
    /// `b_ih + b_hh`, `[4H]`, the g gate's entries doubled.
    bias: Vec<f32>,
}

/// The network's weights, packed once.
#[derive(Debug, Clone)]
pub struct CpuAutoencoder {
    features: usize,
    hidden: usize,
    encoder: Vec<Layer>,
    decoder: Vec<Layer>,
    /// The output layer's `Wᵀ` `[H, F]` and bias, in the repeated form; `None` in the sequence form,
    /// where the decoder reads the encoder's outputs and its own outputs are the reconstruction.
    output: Option<(Vec<f32>, Vec<f32>)>,
}

/// The weights of one layer as PyTorch stores them (row-major): `W_ih` `[4H, In]`, `W_hh` `[4H, H]`,
/// `b_ih`, `b_hh` `[4H]`.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    /// `weight_ih_l{k}`.
    pub w_ih: Vec<f32>,
    /// `weight_hh_l{k}`.
    pub w_hh: Vec<f32>,
    /// `bias_ih_l{k}`.
    pub b_ih: Vec<f32>,
    /// `bias_hh_l{k}`.
    pub b_hh: Vec<f32>,
}

impl Layer {
    fn pack(w: &LayerWeights, input: usize, hidden: usize) -> Layer {
        let g = 4 * hidden;
        // Row r of W (gate unit r) becomes column r of Wᵀ; the g gate (rows 2H..3H) is doubled.
        let scale = |r: usize| if (2 * hidden..3 * hidden).contains(&r) { 2.0 } else { 1.0 };
        let transpose = |m: &[f32], cols: usize| {
            let mut t = vec![0.0f32; cols * g];
            for r in 0..g {
                for c in 0..cols {
                    t[c * g + r] = m[r * cols + c] * scale(r);
                }
            }
            t
        };
        Layer {
            input,
            w_ih_t: transpose(&w.w_ih, input),
            w_hh_t: transpose(&w.w_hh, hidden),
            bias: (0..g).map(|r| (w.b_ih[r] + w.b_hh[r]) * scale(r)).collect(),
        }
    }
}

impl CpuAutoencoder {
    /// Packs the weights of `encoder`/`decoder` layers and the output layer (`out_w` `[F, H]`, `out_b` `[F]`);
    /// without an output layer, the sequence form.
    pub fn new(
        encoder: (&LstmConfig, &[LayerWeights]),
        decoder: (&LstmConfig, &[LayerWeights]),
        output: Option<(&[f32], &[f32])>,
    ) -> CpuAutoencoder {
        let hidden = encoder.0.hidden_size;
        let features = encoder.0.input_size;
        let pack = |cfg: &LstmConfig, layers: &[LayerWeights]| {
            layers
                .iter()
                .enumerate()
                .map(|(k, w)| Layer::pack(w, if k == 0 { cfg.input_size } else { cfg.hidden_size }, cfg.hidden_size))
                .collect()
        };
        let output = output.map(|(out_w, out_b)| {
            let mut out_w_t = vec![0.0f32; hidden * features];
            for f in 0..features {
                for h in 0..hidden {
                    out_w_t[h * features + f] = out_w[f * hidden + h];
                }
            }
            (out_w_t, out_b.to_vec())
        });
        CpuAutoencoder {
            features,
            hidden,
            encoder: pack(encoder.0, encoder.1),
            decoder: pack(decoder.0, decoder.1),
            output,
        }
    }

    /// Reconstructs `b` windows of `t` steps (row-major `[b, t, F]`, already scaled) into a new
    /// `[b, t, F]`.
    pub fn reconstruct(&self, windows: &[f32], b: usize, t: usize) -> Vec<f32> {
        let per_window = t * self.features;
        let mut out = vec![0.0f32; b * per_window];
        if b == 0 || t == 0 {
            return out;
        }
        if b >= PARALLEL_WINDOWS && (rayon::current_num_threads() > 1 || b > MAX_CHUNK) {
            // One chunk of whole windows per thread (larger GEMMs are more efficient), but at most
            // MAX_CHUNK windows, whose buffers stay in cache.
            let chunk = b.div_ceil(rayon::current_num_threads()).clamp(PARALLEL_WINDOWS / 2, MAX_CHUNK);
            windows.par_chunks(chunk * per_window).zip(out.par_chunks_mut(chunk * per_window)).for_each(|(x, y)| {
                self.run(x, x.len() / per_window, t, y);
            });
        } else {
            self.run(windows, b, t, &mut out);
        }
        out
    }

    /// The network on one chunk of `b` windows.
    fn run(&self, windows: &[f32], b: usize, t: usize, out: &mut [f32]) {
        let (f, h) = (self.features, self.hidden);
        // Time-major input: row s·b + w is window w's step s.
        let mut x = vec![0.0f32; t * b * f];
        for w in 0..b {
            for s in 0..t {
                let from = (w * t + s) * f;
                let to = (s * b + w) * f;
                x[to..to + f].copy_from_slice(&windows[from..from + f]);
            }
        }
        let mut scratch = Scratch::new(b, h);
        // Encoder: each layer's outputs feed the next; the last layer's final hidden state is z.
        let mut seq = x;
        for layer in &self.encoder {
            seq = scratch.layer(layer, Input::Sequence(&seq), t, b);
        }
        let Some((out_w_t, out_b)) = &self.output else {
            // The sequence form: the decoder reads the encoder's outputs; its outputs are `[T·B, F]`.
            for layer in &self.decoder {
                seq = scratch.layer(layer, Input::Sequence(&seq), t, b);
            }
            to_batch_major(&seq, t, b, f, out);
            return;
        };
        let z = seq[(t - 1) * b * h..].to_vec();
        // Decoder: its first layer sees z at every step.
        let mut layers = self.decoder.iter();
        if let Some(first) = layers.next() {
            seq = scratch.layer(first, Input::Repeated(&z), t, b);
        } else {
            seq = z.repeat(t);
        }
        for layer in layers {
            seq = scratch.layer(layer, Input::Sequence(&seq), t, b);
        }
        // Output layer over all T·B rows, then back to batch-major.
        let rows = t * b;
        let mut y = vec![0.0f32; rows * f];
        for r in y.chunks_exact_mut(f) {
            r.copy_from_slice(out_b);
        }
        gemm(&seq, rows, h, out_w_t, f, &mut y, 1.0);
        to_batch_major(&y, t, b, f, out);
    }
}

/// Time-major `[T·B, F]` rows into batch-major `[B, T, F]`.
fn to_batch_major(y: &[f32], t: usize, b: usize, f: usize, out: &mut [f32]) {
    for s in 0..t {
        for w in 0..b {
            let from = (s * b + w) * f;
            let to = (w * t + s) * f;
            out[to..to + f].copy_from_slice(&y[from..from + f]);
        }
    }
}

/// A layer's input: a time-major sequence `[T·B, In]`, or one `[B, In]` repeated at every step.
enum Input<'a> {
    Sequence(&'a [f32]),
    Repeated(&'a [f32]),
}

/// Buffers reused across the steps and layers of one chunk.
struct Scratch {
    h: Vec<f32>,
    c: Vec<f32>,
    gates: Vec<f32>,
}

impl Scratch {
    fn new(b: usize, hidden: usize) -> Scratch {
        Scratch { h: vec![0.0; b * hidden], c: vec![0.0; b * hidden], gates: vec![0.0; b * 4 * hidden] }
    }

    /// Runs one layer over `t` steps of `b` windows; returns its outputs `[T·B, H]`, time-major.
    fn layer(&mut self, layer: &Layer, input: Input<'_>, t: usize, b: usize) -> Vec<f32> {
        let hidden = layer.bias.len() / 4;
        let g = 4 * hidden;
        // Layers of another width (the sequence form's decoder, `H → F`) resize the buffers.
        self.h.resize(b * hidden, 0.0);
        self.c.resize(b * hidden, 0.0);
        self.gates.resize(b * g, 0.0);
        // Input projections with both biases: every step at once, or once for a repeated input.
        let (proj, per_step) = match input {
            Input::Sequence(x) => {
                let rows = t * b;
                let mut p = vec![0.0f32; rows * g];
                for r in p.chunks_exact_mut(g) {
                    r.copy_from_slice(&layer.bias);
                }
                gemm(x, rows, layer.input, &layer.w_ih_t, g, &mut p, 1.0);
                (p, true)
            }
            Input::Repeated(z) => {
                let mut p = vec![0.0f32; b * g];
                for r in p.chunks_exact_mut(g) {
                    r.copy_from_slice(&layer.bias);
                }
                gemm(z, b, layer.input, &layer.w_ih_t, g, &mut p, 1.0);
                (p, false)
            }
        };
        let mut out = vec![0.0f32; t * b * hidden];
        self.h.iter_mut().for_each(|v| *v = 0.0);
        self.c.iter_mut().for_each(|v| *v = 0.0);
        for s in 0..t {
            let step = if per_step { &proj[s * b * g..(s + 1) * b * g] } else { &proj[..] };
            self.gates.copy_from_slice(step);
            // h₀ = 0: no recurrent product at the first step.
            if s > 0 {
                gemm(&self.h, b, hidden, &layer.w_hh_t, g, &mut self.gates, 1.0);
            }
            sigmoid_in_place(&mut self.gates);
            for w in 0..b {
                let gates = &self.gates[w * g..(w + 1) * g];
                let (i, rest) = gates.split_at(hidden);
                let (f, rest) = rest.split_at(hidden);
                let (gg, o) = rest.split_at(hidden);
                let c = &mut self.c[w * hidden..(w + 1) * hidden];
                let h = &mut self.h[w * hidden..(w + 1) * hidden];
                // c = f·c + i·tanh(g), with tanh(g) = 2σ(2g) − 1 (the rows were doubled at load).
                for j in 0..hidden {
                    c[j] = f[j] * c[j] + i[j] * (2.0 * gg[j] - 1.0);
                }
                // h = o·tanh(c).
                for j in 0..hidden {
                    h[j] = o[j] * tanh(c[j]);
                }
            }
            out[s * b * hidden..(s + 1) * b * hidden].copy_from_slice(&self.h);
        }
        out
    }
}

/// `c += a·b` for row-major `a` `[m, k]`, `b` `[k, n]`, `c` `[m, n]` (`beta` scales `c` first).
fn gemm(a: &[f32], m: usize, k: usize, b: &[f32], n: usize, c: &mut [f32], beta: f32) {
    let (Ok(a), Ok(b), Ok(mut c)) = (
        ArrayView2::from_shape((m, k), &a[..m * k]),
        ArrayView2::from_shape((k, n), &b[..k * n]),
        ArrayViewMut2::from_shape((m, n), &mut c[..m * n]),
    ) else {
        // The shapes are the packing's own; a mismatch is a bug caught by the parity tests.
        return;
    };
    general_mat_mul(1.0, &a, &b, beta, &mut c);
}

/// `e^x` for `x` in float range, branch-free so that loops over it vectorise: `x = n·ln2 + r`,
/// `e^r` by a degree-6 polynomial on `|r| ≤ ln2/2` (relative error below 2e-7), `2^n` by building the
/// float's exponent.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest by the 1.5·2²³ trick (no `round`, which needs SSE4.1 to vectorise).
    const SHIFTER: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    // t's low mantissa bits hold n (plus the shifter's): n comes out as an integer without a float →
    // integer conversion, which would not vectorise (Rust's `as` saturates, lane by lane).
    let t = x * LOG2E + SHIFTER;
    let n = t - SHIFTER;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0 + r * (0.5 + r * (0.166_666_67 + r * (0.041_666_41 + r * (0.008_333_452 + r * 0.001_388_397_3)))));
    // 2ⁿ: the exponent field n + 127.
    let bits = t.to_bits().wrapping_sub(SHIFTER.to_bits()).wrapping_add(127) << 23;
    p * f32::from_bits(bits)
}

/// `1 / (1 + e^−x)`.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh(x) = 2σ(2x) − 1`.
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

fn sigmoid_in_place(v: &mut [f32]) {
    for x in v {
        *x = sigmoid(*x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activations_are_accurate_everywhere() {
        let mut worst = [0.0f64; 3];
        let mut x = -100.0f32;
        while x <= 100.0 {
            let xd = f64::from(x);
            if x.abs() < 87.0 {
                let e = (f64::from(exp(x)) - xd.exp()).abs() / xd.exp();
                worst[0] = worst[0].max(e);
            }
            worst[1] = worst[1].max((f64::from(sigmoid(x)) - 1.0 / (1.0 + (-xd).exp())).abs());
            worst[2] = worst[2].max((f64::from(tanh(x)) - xd.tanh()).abs());
            x += 0.001_3;
        }
        assert!(worst[0] < 3e-7, "exp relative error {}", worst[0]);
        assert!(worst[1] < 2e-7, "sigmoid absolute error {}", worst[1]);
        assert!(worst[2] < 5e-7, "tanh absolute error {}", worst[2]);
        assert_eq!(tanh(0.0), 0.0);
        assert_eq!(sigmoid(0.0), 0.5);
        assert!(sigmoid(-1e30) >= 0.0 && sigmoid(1e30) <= 1.0 && tanh(-1e30) == -1.0 && tanh(1e30) == 1.0);
    }
}
