//! A stack of LSTM layers with PyTorch's tensor names and gate order.
//!
//! candle-nn's `lstm` builds one layer and projects the input at every step; this stack holds
//! `num_layers` layers (as `nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)`) and
//! computes each layer's input projection for all time steps in one matmul (`x·W_ihᵀ + b` over
//! `[T·B, In]`), leaving only the recurrent `h·W_hhᵀ` inside the time loop.
//!
//! Sequences are time-major (`[T, B, In]`) inside the stack so that step `s` is a contiguous slice.

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

/// The shape of a stacked LSTM (`nn.LSTM`'s constructor arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LstmConfig {
    /// Features per time step of the input.
    pub input_size: usize,
    /// Hidden (and output) features per step.
    pub hidden_size: usize,
    /// Layers; layer `k > 0` reads layer `k - 1`'s outputs.
    pub num_layers: usize,
}

impl Default for LstmConfig {
    fn default() -> Self {
        LstmConfig { input_size: 6, hidden_size: 32, num_layers: 2 }
    }
}

impl LstmConfig {
    /// The tensors of layer `k` as PyTorch names them, with their shapes:
    /// `weight_ih_l{k}` `[4H, In_k]`, `weight_hh_l{k}` `[4H, H]`, `bias_ih_l{k}` `[4H]`, `bias_hh_l{k}` `[4H]`.
    pub fn layer_tensors(&self, k: usize) -> [(String, Vec<usize>); 4] {
        let h = self.hidden_size;
        let input = if k == 0 { self.input_size } else { h };
        [
            (format!("weight_ih_l{k}"), vec![4 * h, input]),
            (format!("weight_hh_l{k}"), vec![4 * h, h]),
            (format!("bias_ih_l{k}"), vec![4 * h]),
            (format!("bias_hh_l{k}"), vec![4 * h]),
        ]
    }
}

/// One layer's parameters as `nn.LSTM` stores them. They are kept as loaded (for training they are
/// `Var`s, updated in place by the optimiser) and turned into a [`LstmLayer`] at each forward pass,
/// so the transposed copies never go stale and gradients flow back to the parameters.
#[derive(Debug, Clone)]
struct LstmWeights {
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
}

impl LstmWeights {
    fn prepare(&self) -> Result<LstmLayer> {
        Ok(LstmLayer {
            w_ih_t: self.w_ih.t()?.contiguous()?,
            w_hh_t: self.w_hh.t()?.contiguous()?,
            bias: (&self.b_ih + &self.b_hh)?,
        })
    }
}

/// One layer, its weights transposed once per forward pass so every matmul reads them contiguously.
#[derive(Debug, Clone)]
struct LstmLayer {
    /// `weight_ih_lkᵀ`: `[In, 4H]`.
    w_ih_t: Tensor,
    /// `weight_hh_lkᵀ`: `[H, 4H]`.
    w_hh_t: Tensor,
    /// `bias_ih_lk + bias_hh_lk`: `[4H]`.
    bias: Tensor,
}

/// A stacked LSTM: PyTorch's `nn.LSTM` with `batch_first=True`, zero initial states, gates (i, f, g, o).
#[derive(Debug, Clone)]
pub struct Lstm {
    layers: Vec<LstmWeights>,
    hidden: usize,
}

impl Lstm {
    /// Reads the layers' weights from `vb` under PyTorch's names (`weight_ih_l0`, …).
    ///
    /// # Errors
    /// candle's error when a tensor is missing or has another shape.
    pub fn new(cfg: &LstmConfig, vb: VarBuilder<'_>) -> Result<Self> {
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for k in 0..cfg.num_layers {
            let [(w_ih, s_ih), (w_hh, s_hh), (b_ih, s_bih), (b_hh, s_bhh)] = cfg.layer_tensors(k);
            let w_ih = vb.get(s_ih.as_slice(), &w_ih)?;
            let w_hh = vb.get(s_hh.as_slice(), &w_hh)?;
            let b_ih = vb.get(s_bih.as_slice(), &b_ih)?;
            let b_hh = vb.get(s_bhh.as_slice(), &b_hh)?;
            layers.push(LstmWeights { w_ih, w_hh, b_ih, b_hh });
        }
        Ok(Lstm { layers, hidden: cfg.hidden_size })
    }

    /// Every layer's weights as float32 vectors, for the CPU kernel ([`super::cpu`]).
    ///
    /// # Errors
    /// candle's error reading a tensor.
    pub(crate) fn layer_weights(&self) -> Result<Vec<super::cpu::LayerWeights>> {
        let flat = |t: &Tensor| t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>();
        self.layers
            .iter()
            .map(|l| {
                Ok(super::cpu::LayerWeights {
                    w_ih: flat(&l.w_ih)?,
                    w_hh: flat(&l.w_hh)?,
                    b_ih: flat(&l.b_ih)?,
                    b_hh: flat(&l.b_hh)?,
                })
            })
            .collect()
    }

    /// Runs the stack over a time-major sequence `x` `[T, B, In]`; returns the last layer's outputs
    /// `[T, B, H]` and its final hidden state `[B, H]` (PyTorch's `h_n[-1]`).
    ///
    /// # Errors
    /// candle's error on a shape mismatch.
    pub fn forward_time_major(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (t, b, _) = x.dims3()?;
        let mut input = x.clone();
        let mut last = Tensor::zeros((b, self.hidden), x.dtype(), x.device())?;
        for weights in &self.layers {
            let layer = &weights.prepare()?;
            let proj = project(&input, layer)?;
            let (out, h) = self.recur(layer, t, b, |s| proj.get(s))?;
            input = out;
            last = h;
        }
        Ok((input, last))
    }

    /// Runs the stack over `z` `[B, In]` repeated at each of `t` steps (the autoencoder's decoder
    /// input): the first layer's input projection is one `[B, In]·[In, 4H]` matmul, reused at every step.
    ///
    /// # Errors
    /// candle's error on a shape mismatch.
    pub fn forward_repeated(&self, z: &Tensor, t: usize) -> Result<Tensor> {
        let (b, _) = z.dims2()?;
        let mut layers = self.layers.iter();
        let Some(first) = layers.next() else {
            return z.unsqueeze(0)?.repeat((t, 1, 1));
        };
        let first = &first.prepare()?;
        let proj = z.matmul(&first.w_ih_t)?.broadcast_add(&first.bias)?;
        let (mut input, _) = self.recur(first, t, b, |_| Ok(proj.clone()))?;
        for weights in layers {
            let layer = &weights.prepare()?;
            let proj = project(&input, layer)?;
            input = self.recur(layer, t, b, |s| proj.get(s))?.0;
        }
        Ok(input)
    }

    /// The recurrence of one layer; `proj_at(s)` is the input projection (with both biases) of step `s`,
    /// `[B, 4H]`. Returns the outputs `[T, B, H]` and the final hidden state.
    fn recur(
        &self,
        layer: &LstmLayer,
        t: usize,
        b: usize,
        mut proj_at: impl FnMut(usize) -> Result<Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let hs = self.hidden;
        let mut h = Tensor::zeros((b, hs), layer.w_hh_t.dtype(), layer.w_hh_t.device())?;
        let mut c = h.clone();
        let mut outs = Vec::with_capacity(t);
        for s in 0..t {
            // h₀ = 0, so step 0 needs no recurrent matmul.
            let gates = if s == 0 { proj_at(s)? } else { (proj_at(s)? + h.matmul(&layer.w_hh_t)?)? };
            // One sigmoid over all four gates (g's is unused) costs less than three narrow calls.
            let act = candle_nn::ops::sigmoid(&gates)?;
            let i = act.narrow(D::Minus1, 0, hs)?;
            let f = act.narrow(D::Minus1, hs, hs)?;
            let g = gates.narrow(D::Minus1, 2 * hs, hs)?.tanh()?;
            let o = act.narrow(D::Minus1, 3 * hs, hs)?;
            c = if s == 0 { (i * g)? } else { ((f * &c)? + (i * g)?)? };
            h = (o * c.tanh()?)?;
            outs.push(h.clone());
        }
        Ok((Tensor::stack(&outs, 0)?, h))
    }
}

/// `x·W_ihᵀ + b` for every step at once: `[T, B, In]` → `[T, B, 4H]`.
fn project(x: &Tensor, layer: &LstmLayer) -> Result<Tensor> {
    let (t, b, input) = x.dims3()?;
    let out = x.reshape((t * b, input))?.matmul(&layer.w_ih_t)?.broadcast_add(&layer.bias)?;
    out.reshape((t, b, ()))
}

/// The output layer over a time-major sequence: `[T, B, H]` → `[T, B, F]`.
pub(crate) fn linear_time_major(x: &Tensor, linear: &candle_nn::Linear) -> Result<Tensor> {
    let (t, b, h) = x.dims3()?;
    linear.forward(&x.reshape((t * b, h))?)?.reshape((t, b, ()))
}

/// The dtype every LSTM tensor is computed in (PyTorch's default).
pub(crate) const DTYPE: DType = DType::F32;
