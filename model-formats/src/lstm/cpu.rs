//! The served LSTM autoencoder on the CPU, without candle: weights packed once at load, and each step
//! of a layer one fused pass over blocks of windows.
//!
//! candle runs each step as about a dozen tensor operations, each allocating its result; at a hidden
//! size of 32 that per-operation cost, not arithmetic, dominated (docs/lstm.md). Here, for a block of
//! 8 windows (AVX-512; 4 with AVX2), a step is: the gates start as the bias, take `x·W_ihᵀ` and `h·W_hhᵀ`
//! in registers (an explicit SIMD kernel over `W` as packed at load, where a GEMM library would repack
//! `W_hhᵀ` at every step), then one pass computes every gate, the cell and the hidden state while the
//! block is in L1. The g gate's rows are stored doubled, so that all four activations are one sigmoid pass
//! (`tanh(x) = 2σ(2x) − 1`), and `exp` is a branch-free polynomial the compiler vectorises.
//!
//! The whole network is compiled once per SIMD level and the widest the CPU has is chosen at run time
//! (`pulp`, and SSE4.2 below AVX2: AVX-512, AVX2 + FMA, SSE4.2, scalar; NEON on aarch64), so one x86-64 binary uses
//! AVX-512 where it exists and still runs everywhere. Results agree with PyTorch within 1e-5 (the parity
//! tests run both paths); every level is checked against an f64 reference in this module's tests.
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

    /// The network on one chunk of `b` windows, compiled for the widest SIMD this CPU has (chosen at run
    /// time by `pulp`).
    fn run(&self, windows: &[f32], b: usize, t: usize, out: &mut [f32]) {
        let call = Run { network: self, windows, b, t, out };
        // pulp's dispatch goes from AVX2 straight to scalar code (2.3× slower than 4-lane SSE here): below AVX2,
        // x86-64 takes SSE4.2, which every x86-64 server since 2008 has.
        #[cfg(target_arch = "x86_64")]
        if matches!(pulp::Arch::new(), pulp::Arch::Scalar)
            && let Some(sse) = pulp::x86::V2::try_new()
        {
            return pulp::Simd::vectorize(sse, call);
        }
        pulp::Arch::new().dispatch(call);
    }

    #[inline(always)]
    fn run_with<S: pulp::Simd, const R: usize, const V: usize>(
        &self,
        simd: S,
        windows: &[f32],
        b: usize,
        t: usize,
        out: &mut [f32],
    ) {
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
            seq = scratch.layer::<S, R, V>(simd, layer, Input::Sequence(&seq), t, b);
        }
        let Some((out_w_t, out_b)) = &self.output else {
            // The sequence form: the decoder reads the encoder's outputs; its outputs are `[T·B, F]`.
            for layer in &self.decoder {
                seq = scratch.layer::<S, R, V>(simd, layer, Input::Sequence(&seq), t, b);
            }
            to_batch_major(&seq, t, b, f, out);
            return;
        };
        let z = seq[(t - 1) * b * h..].to_vec();
        // Decoder: its first layer sees z at every step.
        let mut layers = self.decoder.iter();
        if let Some(first) = layers.next() {
            seq = scratch.layer::<S, R, V>(simd, first, Input::Repeated(&z), t, b);
        } else {
            seq = z.repeat(t);
        }
        for layer in layers {
            seq = scratch.layer::<S, R, V>(simd, layer, Input::Sequence(&seq), t, b);
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

/// [`CpuAutoencoder::run`]'s call, for `pulp` to compile it once per SIMD level (`with_simd` is inlined
/// into a function with that level's target features, and everything it calls inlined into it).
struct Run<'a> {
    network: &'a CpuAutoencoder,
    windows: &'a [f32],
    b: usize,
    t: usize,
    out: &'a mut [f32],
}

impl pulp::WithSimd for Run<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        // Register blocks of rows × vectors of gate columns: AVX-512's 32 registers hold 8 × 2 accumulators
        // (8 windows × 32 gates), AVX2's 16 hold 4 × 2 (4 × 16), SSE's 16 4 × 2 (4 × 8).
        if S::F32_LANES >= 16 {
            self.network.run_with::<S, 8, 2>(simd, self.windows, self.b, self.t, self.out);
        } else {
            self.network.run_with::<S, 4, 2>(simd, self.windows, self.b, self.t, self.out);
        }
    }
}

/// Time-major `[T·B, F]` rows into batch-major `[B, T, F]`.
#[inline(always)]
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

/// Where a layer's gates start at each step: the input sequence `[T·B, In]`, projected step by step, or
/// a repeated input's projection `[B, 4H]` (biases included), the same at every step.
enum Source<'a> {
    Sequence(&'a [f32]),
    Projected(Vec<f32>),
}

/// Buffers reused across the steps and layers of one chunk.
struct Scratch {
    c: Vec<f32>,
    gates: Vec<f32>,
}

impl Scratch {
    fn new(b: usize, hidden: usize) -> Scratch {
        Scratch { c: vec![0.0; b * hidden], gates: Vec::new() }
    }

    /// Runs one layer over `t` steps of `b` windows; returns its outputs `[T·B, H]`, time-major.
    ///
    /// A step runs in blocks of `R` windows: their gates start as the bias (or, for a repeated input, its
    /// projection, computed once), take the input's product `x·W_ihᵀ` and the recurrent product `h·W_hhᵀ`
    /// in registers ([`product`]), go through the activations and update the block's cell and hidden state
    /// while they are still in L1. The hidden states are the layer's outputs: step s reads step s − 1's.
    #[inline(always)]
    fn layer<S: pulp::Simd, const R: usize, const V: usize>(
        &mut self,
        simd: S,
        layer: &Layer,
        input: Input<'_>,
        t: usize,
        b: usize,
    ) -> Vec<f32> {
        let hidden = layer.bias.len() / 4;
        let g = 4 * hidden;
        let n_in = layer.input;
        // Layers of another width (the sequence form's decoder, `H → F`) resize the buffers.
        self.c.resize(b * hidden, 0.0);
        self.gates.resize(R * g, 0.0);
        // Where a step's gates start: a sequence is projected step by step below; a repeated input is
        // projected once, with both biases, for every step.
        let source = match input {
            Input::Sequence(x) => Source::Sequence(x),
            Input::Repeated(z) => {
                let mut p = vec![0.0f32; b * g];
                for r in p.chunks_exact_mut(g) {
                    r.copy_from_slice(&layer.bias);
                }
                for (z, p) in z.chunks_exact(n_in).zip(p.chunks_exact_mut(g)) {
                    product::<S, 1, V>(simd, z, n_in, &layer.w_ih_t, p);
                }
                Source::Projected(p)
            }
        };
        let step = b * hidden;
        let mut out = vec![0.0f32; t * step];
        self.c.iter_mut().for_each(|v| *v = 0.0);
        for s in 0..t {
            // h_{s−1} (the previous step's outputs; none at the first step, where h₀ = 0) and h_s.
            let (done, rest) = out.split_at_mut(s * step);
            let previous = s.checked_sub(1).map(|p| &done[p * step..]);
            let current = &mut rest[..step];
            let mut w0 = 0;
            while w0 < b {
                let rows = (b - w0).min(R);
                let gates = &mut self.gates[..rows * g];
                match &source {
                    Source::Projected(p) => gates.copy_from_slice(&p[w0 * g..(w0 + rows) * g]),
                    Source::Sequence(x) => {
                        for row in gates.chunks_exact_mut(g) {
                            row.copy_from_slice(&layer.bias);
                        }
                        let x = &x[(s * b + w0) * n_in..(s * b + w0 + rows) * n_in];
                        product::<S, R, V>(simd, x, n_in, &layer.w_ih_t, gates);
                    }
                }
                if let Some(previous) = previous {
                    product::<S, R, V>(
                        simd,
                        &previous[w0 * hidden..(w0 + rows) * hidden],
                        hidden,
                        &layer.w_hh_t,
                        gates,
                    );
                }
                sigmoid_in_place::<S>(gates);
                let h = &mut current[w0 * hidden..(w0 + rows) * hidden];
                let c = &mut self.c[w0 * hidden..(w0 + rows) * hidden];
                for ((gates, c), h) in
                    gates.chunks_exact(g).zip(c.chunks_exact_mut(hidden)).zip(h.chunks_exact_mut(hidden))
                {
                    let (i, rest) = gates.split_at(hidden);
                    let (f, rest) = rest.split_at(hidden);
                    let (gg, o) = rest.split_at(hidden);
                    // c = f·c + i·tanh(g), with tanh(g) = 2σ(2g) − 1 (the rows were doubled at load).
                    for j in 0..hidden {
                        c[j] = mul_add_scalar::<S>(f[j], c[j], i[j] * mul_add_scalar::<S>(2.0, gg[j], -1.0));
                    }
                    // h = o·tanh(c).
                    for j in 0..hidden {
                        h[j] = o[j] * tanh_at::<S>(c[j]);
                    }
                }
                w0 += rows;
            }
        }
        out
    }
}

/// `a·b + c`, fused (one rounding, one instruction) at the SIMD levels that have FMA (AVX2 and above), a
/// multiplication and an addition below them, where `f32::mul_add` could be a slow library call.
#[inline(always)]
fn mul_add<S: pulp::Simd>(simd: S, a: S::f32s, b: S::f32s, c: S::f32s) -> S::f32s {
    if S::F32_LANES >= 8 { simd.mul_add_f32s(a, b, c) } else { simd.add_f32s(simd.mul_f32s(a, b), c) }
}

/// [`mul_add`] on one lane.
#[inline(always)]
fn mul_add_scalar<S: pulp::Simd>(a: f32, b: f32, c: f32) -> f32 {
    if S::F32_LANES >= 8 { a.mul_add(b, c) } else { a * b + c }
}

/// `gates[r] += a[r]·W` for the rows of one block (`a` `[rows, K]`, `w` `[K, G]`, `gates` `[rows, G]`), `W`
/// read in place: no packing per step, as a GEMM library would do.
#[inline(always)]
fn product<S: pulp::Simd, const R: usize, const V: usize>(simd: S, a: &[f32], k: usize, w: &[f32], gates: &mut [f32]) {
    if k == 0 {
        return;
    }
    let g = w.len() / k;
    if gates.len() == R * g {
        product_block::<S, R, V>(simd, a, k, w, gates);
    } else {
        for (a, gates) in a.chunks_exact(k).zip(gates.chunks_exact_mut(g)) {
            product_block::<S, 1, V>(simd, a, k, w, gates);
        }
    }
}

/// [`product`] for exactly `R` rows: `R × V` vectors of accumulators stay in registers through the `K` terms.
#[inline(always)]
fn product_block<S: pulp::Simd, const R: usize, const V: usize>(
    simd: S,
    a: &[f32],
    k: usize,
    w: &[f32],
    gates: &mut [f32],
) {
    let g = gates.len() / R;
    let c = V * S::F32_LANES;
    let rows: [&[f32]; R] = std::array::from_fn(|r| &a[r * k..(r + 1) * k]);
    let w = &w[..k * g];
    let mut j0 = 0;
    while j0 + c <= g {
        let mut acc = [[simd.splat_f32s(0.0); V]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            let (from, _) = S::as_simd_f32s(&gates[r * g + j0..][..c]);
            acc.copy_from_slice(&from[..V]);
        }
        for i in 0..k {
            let (wi, _) = S::as_simd_f32s(&w[i * g + j0..][..c]);
            let wi: [S::f32s; V] = std::array::from_fn(|q| wi[q]);
            for r in 0..R {
                let x = simd.splat_f32s(rows[r][i]);
                for q in 0..V {
                    acc[r][q] = mul_add(simd, x, wi[q], acc[r][q]);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let (to, _) = S::as_mut_simd_f32s(&mut gates[r * g + j0..][..c]);
            to[..V].copy_from_slice(acc);
        }
        j0 += c;
    }
    // The columns left over when G is not a multiple of a block's width.
    if j0 < g {
        for (r, row) in gates.chunks_exact_mut(g).enumerate() {
            for i in 0..k {
                let x = rows[r][i];
                for (acc, &wv) in row[j0..].iter_mut().zip(&w[i * g + j0..(i + 1) * g]) {
                    *acc = mul_add_scalar::<S>(x, wv, *acc);
                }
            }
        }
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
/// float's exponent. Its multiply-adds are fused at the SIMD levels that have FMA ([`mul_add_scalar`]).
#[inline(always)]
fn exp_at<S: pulp::Simd>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest by the 1.5·2²³ trick (no `round`, which needs SSE4.1 to vectorise).
    const SHIFTER: f32 = 12_582_912.0;
    let fma = mul_add_scalar::<S>;
    let x = x.clamp(-87.0, 88.0);
    // t's low mantissa bits hold n (plus the shifter's): n comes out as an integer without a float →
    // integer conversion, which would not vectorise (Rust's `as` saturates, lane by lane).
    let t = fma(x, LOG2E, SHIFTER);
    let n = t - SHIFTER;
    let r = fma(-n, LN2_LO, fma(-n, LN2_HI, x));
    let mut p = 0.001_388_397_3;
    for c in [0.008_333_452, 0.041_666_41, 0.166_666_67, 0.5, 1.0, 1.0] {
        p = fma(p, r, c);
    }
    // 2ⁿ: the exponent field n + 127.
    let bits = t.to_bits().wrapping_sub(SHIFTER.to_bits()).wrapping_add(127) << 23;
    p * f32::from_bits(bits)
}

/// `1 / (1 + e^−x)`.
#[inline(always)]
fn sigmoid_at<S: pulp::Simd>(x: f32) -> f32 {
    1.0 / (1.0 + exp_at::<S>(-x))
}

/// `tanh(x) = 2σ(2x) − 1`.
#[inline(always)]
fn tanh_at<S: pulp::Simd>(x: f32) -> f32 {
    2.0 * sigmoid_at::<S>(2.0 * x) - 1.0
}

#[inline(always)]
fn sigmoid_in_place<S: pulp::Simd>(v: &mut [f32]) {
    for x in v {
        *x = sigmoid_at::<S>(*x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activations_are_accurate_everywhere() {
        activations_at::<pulp::Scalar>("separate multiply-adds");
        // The fused form, as AVX2 and AVX-512 run it (here through `f32::mul_add`, exact wherever it runs).
        #[cfg(target_arch = "x86_64")]
        activations_at::<pulp::x86::V3>("fused multiply-adds");
    }

    fn activations_at<S: pulp::Simd>(form: &str) {
        let (exp, sigmoid, tanh) = (exp_at::<S>, sigmoid_at::<S>, tanh_at::<S>);
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
        assert!(worst[0] < 3e-7, "{form}: exp relative error {}", worst[0]);
        assert!(worst[1] < 2e-7, "{form}: sigmoid absolute error {}", worst[1]);
        assert!(worst[2] < 5e-7, "{form}: tanh absolute error {}", worst[2]);
        assert_eq!(tanh(0.0), 0.0);
        assert_eq!(sigmoid(0.0), 0.5);
        assert!(sigmoid(-1e30) >= 0.0 && sigmoid(1e30) <= 1.0 && tanh(-1e30) == -1.0 && tanh(1e30) == 1.0);
    }

    /// A seeded stream of uniform values in `[-scale, scale)` (xorshift), for weights and inputs.
    fn uniform(seed: u64, n: usize, scale: f32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    fn weights(seed: u64, cfg: &LstmConfig) -> Vec<LayerWeights> {
        let (h, g) = (cfg.hidden_size, 4 * cfg.hidden_size);
        (0..cfg.num_layers as u64)
            .map(|k| {
                let input = if k == 0 { cfg.input_size } else { h };
                LayerWeights {
                    w_ih: uniform(seed + 10 * k, g * input, 0.4),
                    w_hh: uniform(seed + 10 * k + 1, g * h, 0.4),
                    b_ih: uniform(seed + 10 * k + 2, g, 0.2),
                    b_hh: uniform(seed + 10 * k + 3, g, 0.2),
                }
            })
            .collect()
    }

    /// `nn.LSTM` on one window (`[T][In]`), in f64, straight from PyTorch's equations and weight layout.
    fn lstm_reference(x: &[Vec<f64>], layers: &[LayerWeights], hidden: usize) -> Vec<Vec<f64>> {
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let mut seq = x.to_vec();
        for w in layers {
            let (mut h, mut c) = (vec![0.0f64; hidden], vec![0.0f64; hidden]);
            let input = seq[0].len();
            let mut out = Vec::new();
            for xt in &seq {
                let gate = |r: usize| {
                    let mut v = f64::from(w.b_ih[r]) + f64::from(w.b_hh[r]);
                    v += (0..input).map(|k| f64::from(w.w_ih[r * input + k]) * xt[k]).sum::<f64>();
                    v + (0..hidden).map(|k| f64::from(w.w_hh[r * hidden + k]) * h[k]).sum::<f64>()
                };
                let gates: Vec<f64> = (0..4 * hidden).map(gate).collect();
                for j in 0..hidden {
                    let (i, f, g, o) = (
                        sig(gates[j]),
                        sig(gates[hidden + j]),
                        gates[2 * hidden + j].tanh(),
                        sig(gates[3 * hidden + j]),
                    );
                    c[j] = f * c[j] + i * g;
                    h[j] = o * c[j].tanh();
                }
                out.push(h.clone());
            }
            seq = out;
        }
        seq
    }

    /// The network's answer compiled for one SIMD level, or `None` (said on stderr) where this CPU lacks it.
    fn at_level<S: pulp::Simd>(
        simd: Option<S>,
        level: &str,
        net: &CpuAutoencoder,
        x: &[f32],
        b: usize,
        t: usize,
    ) -> Option<Vec<f32>> {
        let Some(simd) = simd else {
            eprintln!("skipped: this CPU has no {level}; the {level} path is not checked");
            return None;
        };
        let mut got = vec![0.0f32; x.len()];
        simd.vectorize(Run { network: net, windows: x, b, t, out: &mut got });
        Some(got)
    }

    /// The network at every SIMD level this CPU has (scalar, and on x86-64 AVX2 and AVX-512) against the
    /// f64 reference, over shapes that leave partial register blocks: batches that are not a multiple
    /// of the block's rows, gate widths that are not a multiple of its columns, both decoder forms.
    #[test]
    fn every_simd_level_matches_the_reference() {
        for (features, hidden, layers, repeated) in
            [(6, 32, 2, true), (3, 5, 1, true), (4, 9, 2, false), (6, 32, 1, false)]
        {
            let enc = LstmConfig { input_size: features, hidden_size: hidden, num_layers: layers };
            let dec_hidden = if repeated { hidden } else { features };
            let dec = LstmConfig { input_size: hidden, hidden_size: dec_hidden, num_layers: layers };
            let (enc_w, dec_w) = (weights(1, &enc), weights(2, &dec));
            let out_w = uniform(3, features * hidden, 0.3);
            let out_b = uniform(4, features, 0.1);
            let net = CpuAutoencoder::new(
                (&enc, &enc_w),
                (&dec, &dec_w),
                repeated.then_some((out_w.as_slice(), out_b.as_slice())),
            );
            for b in [1usize, 3, 9, 17] {
                let t = 7;
                let x = uniform(5 + b as u64, b * t * features, 1.0);
                let mut want = Vec::new();
                for w in 0..b {
                    let window: Vec<Vec<f64>> = (0..t)
                        .map(|s| x[(w * t + s) * features..][..features].iter().map(|&v| f64::from(v)).collect())
                        .collect();
                    let z = lstm_reference(&window, &enc_w, hidden);
                    let y = if repeated {
                        let last = z[t - 1].clone();
                        let d = lstm_reference(&vec![last; t], &dec_w, hidden);
                        d.iter()
                            .map(|h| {
                                (0..features)
                                    .map(|f| {
                                        f64::from(out_b[f])
                                            + (0..hidden).map(|k| f64::from(out_w[f * hidden + k]) * h[k]).sum::<f64>()
                                    })
                                    .collect::<Vec<f64>>()
                            })
                            .collect()
                    } else {
                        lstm_reference(&z, &dec_w, features)
                    };
                    want.extend(y.into_iter().flatten());
                }
                let check = |level: &str, got: &[f32]| {
                    let worst = got.iter().zip(&want).map(|(g, w)| (f64::from(*g) - w).abs()).fold(0.0, f64::max);
                    assert!(worst < 2e-6, "{level}, H={hidden}, B={b}, repeated={repeated}: off by {worst}");
                };
                let scalar = at_level(Some(pulp::Scalar::new()), "scalar code", &net, &x, b, t);
                check("scalar", &scalar.expect("scalar code runs everywhere"));
                #[cfg(target_arch = "x86_64")]
                {
                    for (level, got) in [
                        ("SSE4.2", at_level(pulp::x86::V2::try_new(), "SSE4.2", &net, &x, b, t)),
                        ("AVX2", at_level(pulp::x86::V3::try_new(), "AVX2", &net, &x, b, t)),
                        ("AVX-512", at_level(pulp::x86::V4::try_new(), "AVX-512", &net, &x, b, t)),
                    ] {
                        if let Some(got) = got {
                            check(level, &got);
                        }
                    }
                }
                check("dispatched", &net.reconstruct(&x, b, t));
            }
        }
    }
}
