//! Fused small MLP (ReLU hidden layers, linear output) over row chunks, with a hand-written backward.
//!
//! # Conventions (shared with the WGSL port)
//! - `sizes = [d_0, d_1, ..., d_K]`: `K` linear layers, layer `k` maps `d_k -> d_{k+1}`. Hidden
//!   layers (`k < K - 1`) are followed by ReLU; the last layer has no activation (the caller applies
//!   density / colour activations).
//! - **Params** `[P]` f32, layer after layer; layer `k` stores `W_k` as a row-major `d_k x d_{k+1}`
//!   matrix (`W_k[i * d_{k+1} + j]` connects input `i` to output `j`) followed, when `bias` is set,
//!   by `b_k` (`d_{k+1}` values). So `y = x W_k + b_k` for a row vector `x`.
//!   `P = sum_k d_k * d_{k+1} (+ d_{k+1} with bias)`; offsets from [`MlpConfig::layer_offsets`].
//! - **Input** `x` `[N * d_0]` and **output** `[N * d_K]`, row-major (sample-major).
//! - [`MlpCache`] keeps the post-ReLU hidden activations `h_1 .. h_{K-1}` (all that backward needs
//!   besides `x` and the params; ReLU's derivative is `h > 0`).
//!
//! # Kernel
//! Rows are processed in chunks of [`CHUNK_ROWS`] in rayon; each chunk runs every layer as one
//! single-threaded product of [`super::gemm`] (unpacked register tiles, AVX-512 / AVX2 chosen at run
//! time; 1.5-1.7x matrixmultiply's packed sgemm at these sizes). Backward accumulates `dW_k += h_k^T dY_k`,
//! `db_k += 1^T dY_k` into a per-rayon-task partial gradient, reduced once at the end, and
//! propagates `dH_k = (dY_k W_k^T) * [h_k > 0]`.

use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::gemm::gemm;

use super::KernelError;

/// Rows per rayon task (and per sgemm call).
pub const CHUNK_ROWS: usize = 256;

/// Shape of one MLP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    /// Layer widths, input first, output last (at least 2 entries, all >= 1).
    pub sizes: Vec<usize>,
    /// Whether every layer has a bias vector.
    pub bias: bool,
}

/// Where one layer's weights and bias live in the flat parameter buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerOffsets {
    /// Input width `d_k`.
    pub fan_in: usize,
    /// Output width `d_{k+1}`.
    pub fan_out: usize,
    /// Offset of `W_k` (`fan_in * fan_out` values, row-major `fan_in x fan_out`).
    pub weight: usize,
    /// Offset of `b_k` (`fan_out` values), when the MLP has biases.
    pub bias: Option<usize>,
}

impl MlpConfig {
    /// A config from widths, e.g. `MlpConfig::new(&[32, 64, 64, 16], false)`.
    pub fn new(sizes: &[usize], bias: bool) -> Self {
        Self {
            sizes: sizes.to_vec(),
            bias,
        }
    }

    /// Checks `sizes` (>= 2 entries, each in 1..=4096).
    pub fn validate(&self) -> Result<(), KernelError> {
        if self.sizes.len() < 2 || self.sizes.iter().any(|&d| d == 0 || d > 4096) {
            return Err(KernelError::Config(format!(
                "mlp: sizes {:?} must have at least 2 entries, each in 1..=4096",
                self.sizes
            )));
        }
        Ok(())
    }

    /// Number of linear layers `K`.
    pub fn num_layers(&self) -> usize {
        self.sizes.len() - 1
    }

    /// `d_0`.
    pub fn input_dim(&self) -> usize {
        self.sizes[0]
    }

    /// `d_K`.
    pub fn output_dim(&self) -> usize {
        *self.sizes.last().unwrap()
    }

    /// Sum of the hidden widths `d_1 + ... + d_{K-1}` (floats cached per row).
    pub fn hidden_width(&self) -> usize {
        self.sizes[1..self.sizes.len() - 1].iter().sum()
    }

    /// Offsets of every layer in the flat buffer.
    pub fn layer_offsets(&self) -> Vec<LayerOffsets> {
        let mut off = 0;
        self.sizes
            .windows(2)
            .map(|w| {
                let weight = off;
                off += w[0] * w[1];
                let bias = self.bias.then(|| {
                    let b = off;
                    off += w[1];
                    b
                });
                LayerOffsets {
                    fan_in: w[0],
                    fan_out: w[1],
                    weight,
                    bias,
                }
            })
            .collect()
    }

    /// Total parameter count `P`.
    pub fn num_params(&self) -> usize {
        self.sizes
            .windows(2)
            .map(|w| w[0] * w[1] + if self.bias { w[1] } else { 0 })
            .sum()
    }

    /// He/Kaiming-uniform weights (`U(-sqrt(6/fan_in), sqrt(6/fan_in))`, He et al. 2015, suited to
    /// ReLU), zero biases; ChaCha8 seeded.
    pub fn init_params(&self, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut p = vec![0f32; self.num_params()];
        for lo in self.layer_offsets() {
            let a = (6.0 / lo.fan_in as f32).sqrt();
            for v in &mut p[lo.weight..lo.weight + lo.fan_in * lo.fan_out] {
                *v = rng.random_range(-a..a);
            }
        }
        p
    }
}

/// What [`mlp_backward`] needs from the forward pass: the post-ReLU hidden activations.
///
/// Internal layout (opaque to callers): per chunk of [`CHUNK_ROWS`] rows `r`, a block of
/// `r * hidden_width` floats holding `h_1 (r x d_1)`, then `h_2 (r x d_2)`, ...
#[derive(Clone, Debug, Default)]
pub struct MlpCache {
    rows: usize,
    hidden: Vec<f32>,
}

impl MlpCache {
    /// Number of rows the cache was built for.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// `y (r x d_out) = x (r x d_in) W (+ b)`, row-major everything, optional ReLU.
fn linear(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    y: &mut [f32],
    d_in: usize,
    d_out: usize,
    relu: bool,
) {
    let r = x.len() / d_in;
    debug_assert_eq!(y.len(), r * d_out);
    debug_assert_eq!(w.len(), d_in * d_out);
    let beta = match b {
        Some(b) => {
            for row in y.chunks_exact_mut(d_out) {
                row.copy_from_slice(b);
            }
            1.0
        }
        None => 0.0,
    };
    // SAFETY: x is r x d_in, w is d_in x d_out, y is r x d_out, all row-major with exactly these
    // lengths (checked above / by the callers); y is a distinct &mut borrow.
    unsafe {
        gemm(
            r,
            d_in,
            d_out,
            x.as_ptr(),
            d_in as isize,
            1,
            w.as_ptr(),
            d_out as isize,
            beta,
            y.as_mut_ptr(),
            d_out as isize,
        )
    };
    if relu {
        for v in y.iter_mut() {
            *v = v.max(0.0);
        }
    }
}

/// The input rows of an MLP, optionally **grouped**: the first `d_local` input features vary per
/// row (`rows`, `N x d_local`), the remaining `d_0 - d_local` are shared by each run of
/// `group_rows` consecutive rows (`groups`, `(N / group_rows) x (d_0 - d_local)`).
///
/// Same function, same parameter layout as the dense MLP on the concatenated rows
/// `[rows_i | groups_{i / group_rows}]`, but the first layer is split (nerfacto / Instant-NGP's
/// colour head, where direction, appearance latent and exposure are constant along a ray):
/// `x W_0 + b_0 = x_local W_0[..d_local] + (x_group W_0[d_local..] + b_0)`, and the bracket is
/// computed once per group. Backward: `dW_0[d_local..] += x_group^T (sum over the group's rows of
/// dY_0)`, and the gradient of the shared features is that sum times `W_0[d_local..]^T`.
#[derive(Clone, Copy, Debug)]
pub struct MlpInput<'a> {
    /// `N x d_local` per-row features.
    pub rows: &'a [f32],
    /// Width of the per-row features (`d_0` for a dense input).
    pub d_local: usize,
    /// `G x (d_0 - d_local)` shared features (empty for a dense input).
    pub groups: &'a [f32],
    /// Rows per group (`N = G * group_rows`); 1 for a dense input.
    pub group_rows: usize,
}

impl<'a> MlpInput<'a> {
    /// A plain `N x d_0` input.
    pub fn dense(x: &'a [f32], cfg: &MlpConfig) -> Self {
        Self {
            rows: x,
            d_local: cfg.input_dim(),
            groups: &[],
            group_rows: 1,
        }
    }

    /// Width of the shared features for `cfg`.
    fn d_shared(&self, cfg: &MlpConfig) -> usize {
        cfg.input_dim() - self.d_local
    }

    /// Rows per kernel chunk: whole groups, about [`CHUNK_ROWS`].
    fn chunk_rows(&self) -> usize {
        (CHUNK_ROWS / self.group_rows).max(1) * self.group_rows
    }

    /// Checks the shapes against `cfg`; returns `N`.
    fn check(&self, cfg: &MlpConfig, params: &[f32]) -> usize {
        assert_eq!(
            params.len(),
            cfg.num_params(),
            "mlp: params length != MlpConfig::num_params()"
        );
        assert!(
            self.d_local >= 1 && self.d_local <= cfg.input_dim() && self.group_rows >= 1,
            "mlp: d_local must be in 1..=input width and group_rows >= 1"
        );
        assert_eq!(
            self.rows.len() % self.d_local,
            0,
            "mlp: x length must be a multiple of the input width"
        );
        let n = self.rows.len() / self.d_local;
        let ds = self.d_shared(cfg);
        if ds > 0 {
            assert_eq!(
                n % self.group_rows,
                0,
                "mlp: N must be a multiple of group_rows"
            );
            assert_eq!(
                self.groups.len(),
                n / self.group_rows * ds,
                "mlp: groups length must be G * shared width"
            );
        }
        n
    }

    /// The chunk of rows `r0 .. r0 + r` (whole groups).
    fn chunk(&self, cfg: &MlpConfig, r0: usize, r: usize) -> MlpInput<'a> {
        let ds = self.d_shared(cfg);
        let (g0, g1) = (r0 / self.group_rows, (r0 + r).div_ceil(self.group_rows));
        MlpInput {
            rows: &self.rows[r0 * self.d_local..(r0 + r) * self.d_local],
            d_local: self.d_local,
            groups: if ds > 0 {
                &self.groups[g0 * ds..g1 * ds]
            } else {
                &[]
            },
            group_rows: self.group_rows,
        }
    }
}

/// First layer on a chunk: `y = x_local W[..d_local] + broadcast(x_group W[d_local..] + b)`, or the
/// plain `linear` when the input is dense; ReLU when the layer is hidden. `c` is scratch for the
/// per-group offsets (`G_chunk x d_out`).
fn first_layer(
    input: &MlpInput,
    lo: &LayerOffsets,
    params: &[f32],
    y: &mut [f32],
    c: &mut Vec<f32>,
    relu: bool,
) {
    let (a, b) = (lo.fan_in, lo.fan_out);
    let w = &params[lo.weight..lo.weight + a * b];
    let bias = lo.bias.map(|o| &params[o..o + b]);
    let dl = input.d_local;
    if dl == a {
        linear(input.rows, w, bias, y, a, b, relu);
        return;
    }
    let ng = input.groups.len() / (a - dl);
    c.resize(ng * b, 0.0);
    linear(input.groups, &w[dl * b..], bias, c, a - dl, b, false);
    for (yg, cg) in y.chunks_mut(input.group_rows * b).zip(c.chunks_exact(b)) {
        for row in yg.chunks_exact_mut(b) {
            row.copy_from_slice(cg);
        }
    }
    let r = input.rows.len() / dl;
    // SAFETY: rows is r x dl, w[..dl*b] is dl x b, y is r x b, all row-major; y is a distinct borrow.
    unsafe {
        gemm(
            r,
            dl,
            b,
            input.rows.as_ptr(),
            dl as isize,
            1,
            w.as_ptr(),
            b as isize,
            1.0,
            y.as_mut_ptr(),
            b as isize,
        )
    };
    if relu {
        for v in y.iter_mut() {
            *v = v.max(0.0);
        }
    }
}

/// Runs one chunk through all layers. `hidden` holds `r * hidden_width` floats; `c` is scratch.
fn forward_chunk(
    offs: &[LayerOffsets],
    params: &[f32],
    input: &MlpInput,
    hidden: &mut [f32],
    out: &mut [f32],
    c: &mut Vec<f32>,
) {
    let r = input.rows.len() / input.d_local;
    let k_last = offs.len() - 1;
    let mut h_prev_start = 0;
    let mut h_off = 0;
    for (k, lo) in offs.iter().enumerate() {
        let dst: &mut [f32] = if k == k_last {
            &mut *out
        } else {
            &mut hidden[h_off..h_off + r * lo.fan_out]
        };
        if k == 0 {
            first_layer(input, lo, params, dst, c, k != k_last);
        } else {
            let w = &params[lo.weight..lo.weight + lo.fan_in * lo.fan_out];
            let b = lo.bias.map(|o| &params[o..o + lo.fan_out]);
            if k == k_last {
                let src = &hidden[h_prev_start..h_prev_start + r * lo.fan_in];
                linear(src, w, b, out, lo.fan_in, lo.fan_out, false);
            } else {
                let (before, after) = hidden.split_at_mut(h_off);
                let src = &before[h_prev_start..h_prev_start + r * lo.fan_in];
                linear(
                    src,
                    w,
                    b,
                    &mut after[..r * lo.fan_out],
                    lo.fan_in,
                    lo.fan_out,
                    true,
                );
            }
        }
        if k != k_last {
            h_prev_start = h_off;
            h_off += r * lo.fan_out;
        }
    }
}

/// Forward pass for inference: `out (N x d_K)` is overwritten; nothing is cached.
pub fn mlp_forward_inference(cfg: &MlpConfig, params: &[f32], x: &[f32], out: &mut [f32]) {
    mlp_forward_grouped_inference(cfg, params, &MlpInput::dense(x, cfg), out);
}

/// [`mlp_forward_inference`] on a (possibly grouped) [`MlpInput`].
pub fn mlp_forward_grouped_inference(
    cfg: &MlpConfig,
    params: &[f32],
    input: &MlpInput,
    out: &mut [f32],
) {
    let n = input.check(cfg, params);
    let dout = cfg.output_dim();
    assert_eq!(
        out.len(),
        n * dout,
        "mlp: out length must be N * output width"
    );
    let offs = cfg.layer_offsets();
    let (cr, hw) = (input.chunk_rows(), cfg.hidden_width());
    out.par_chunks_mut(cr * dout).enumerate().for_each_init(
        || (vec![0f32; cr * hw], Vec::new()),
        |(scratch, c), (ci, oc)| {
            let r = oc.len() / dout;
            let inp = input.chunk(cfg, ci * cr, r);
            forward_chunk(&offs, params, &inp, &mut scratch[..r * hw], oc, c);
        },
    );
}

/// Forward pass for training: overwrites `out (N x d_K)` and fills `cache` (reusing its memory).
pub fn mlp_forward_into(
    cfg: &MlpConfig,
    params: &[f32],
    x: &[f32],
    out: &mut [f32],
    cache: &mut MlpCache,
) {
    mlp_forward_grouped_into(cfg, params, &MlpInput::dense(x, cfg), out, cache);
}

/// [`mlp_forward_into`] on a (possibly grouped) [`MlpInput`].
pub fn mlp_forward_grouped_into(
    cfg: &MlpConfig,
    params: &[f32],
    input: &MlpInput,
    out: &mut [f32],
    cache: &mut MlpCache,
) {
    let n = input.check(cfg, params);
    let dout = cfg.output_dim();
    assert_eq!(
        out.len(),
        n * dout,
        "mlp: out length must be N * output width"
    );
    let offs = cfg.layer_offsets();
    let (cr, hw) = (input.chunk_rows(), cfg.hidden_width());
    cache.rows = n;
    cache.hidden.resize(n * hw, 0.0);
    let run = |ci: usize, oc: &mut [f32], hc: &mut [f32], c: &mut Vec<f32>| {
        let r = oc.len() / dout;
        let inp = input.chunk(cfg, ci * cr, r);
        forward_chunk(&offs, params, &inp, hc, oc, c);
    };
    if hw == 0 {
        out.par_chunks_mut(cr * dout)
            .enumerate()
            .for_each_init(Vec::new, |c, (ci, oc)| run(ci, oc, &mut [], c));
        return;
    }
    out.par_chunks_mut(cr * dout)
        .zip(cache.hidden.par_chunks_mut(cr * hw))
        .enumerate()
        .for_each_init(Vec::new, |c, (ci, (oc, hc))| run(ci, oc, hc, c));
}

/// Forward pass for training: returns `(out (N x d_K), cache)`.
pub fn mlp_forward(cfg: &MlpConfig, params: &[f32], x: &[f32]) -> (Vec<f32>, MlpCache) {
    let n = MlpInput::dense(x, cfg).check(cfg, params);
    let mut out = vec![0f32; n * cfg.output_dim()];
    let mut cache = MlpCache::default();
    mlp_forward_into(cfg, params, x, &mut out, &mut cache);
    (out, cache)
}

/// Backward pass. `x` and `cache` are the forward's input and cache, `d_out` is `N x d_K`.
/// Accumulates into `d_params` (`+=`, not zeroed) and, when given, overwrites `d_x` (`N x d_0`).
pub fn mlp_backward(
    cfg: &MlpConfig,
    params: &[f32],
    x: &[f32],
    cache: &MlpCache,
    d_out: &[f32],
    d_params: &mut [f32],
    d_x: Option<&mut [f32]>,
) {
    let input = MlpInput::dense(x, cfg);
    mlp_backward_grouped(cfg, params, &input, cache, d_out, d_params, d_x, None);
}

/// [`mlp_backward`] on a (possibly grouped) [`MlpInput`]: overwrites, when given, `d_rows`
/// (`N x d_local`) and `d_groups` (`G x (d_0 - d_local)`).
#[allow(clippy::too_many_arguments)]
pub fn mlp_backward_grouped(
    cfg: &MlpConfig,
    params: &[f32],
    input: &MlpInput,
    cache: &MlpCache,
    d_out: &[f32],
    d_params: &mut [f32],
    d_rows: Option<&mut [f32]>,
    d_groups: Option<&mut [f32]>,
) {
    let n = input.check(cfg, params);
    let dout = cfg.output_dim();
    let ds = input.d_shared(cfg);
    assert_eq!(
        cache.rows, n,
        "mlp: cache was built for a different number of rows"
    );
    assert_eq!(
        d_out.len(),
        n * dout,
        "mlp: d_out length must be N * output width"
    );
    assert_eq!(
        d_params.len(),
        params.len(),
        "mlp: d_params length != params length"
    );
    let cr = input.chunk_rows();
    let nchunks = n.div_ceil(cr);
    let rows_chunks: Vec<Option<&mut [f32]>> = match d_rows {
        Some(d) => {
            assert_eq!(
                d.len(),
                n * input.d_local,
                "mlp: d_x length must be N * input width"
            );
            d.chunks_mut(cr * input.d_local).map(Some).collect()
        }
        None => (0..nchunks).map(|_| None).collect(),
    };
    let group_chunks: Vec<Option<&mut [f32]>> = match d_groups {
        Some(d) if ds > 0 => {
            assert_eq!(
                d.len(),
                n / input.group_rows * ds,
                "mlp: d_groups length must be G * shared width"
            );
            d.chunks_mut(cr / input.group_rows * ds).map(Some).collect()
        }
        _ => (0..nchunks).map(|_| None).collect(),
    };
    let offs = cfg.layer_offsets();
    let wt = transposed_weights(&offs, params);
    let maxw = *cfg.sizes.iter().max().unwrap();
    let np = params.len();
    let hw = cfg.hidden_width();
    let total = rows_chunks
        .into_par_iter()
        .zip(group_chunks)
        .enumerate()
        .fold(
            || {
                (
                    vec![0f32; np],
                    vec![0f32; cr * maxw],
                    vec![0f32; cr * maxw],
                    Vec::new(),
                )
            },
            |(mut acc, mut dy, mut dh, mut gsum), (ci, (dxc, dgc))| {
                let r0 = ci * cr;
                let r = cr.min(n - r0);
                let inp = input.chunk(cfg, r0, r);
                let hc = &cache.hidden[r0 * hw..(r0 + r) * hw];
                dy[..r * dout].copy_from_slice(&d_out[r0 * dout..(r0 + r) * dout]);
                let grads = ChunkGrads {
                    acc: &mut acc,
                    d_rows: dxc,
                    d_groups: dgc,
                    gsum: &mut gsum,
                };
                backward_chunk(cfg, &offs, &wt, &inp, hc, &mut dy, &mut dh, grads, r);
                (acc, dy, dh, gsum)
            },
        )
        .map(|(acc, ..)| acc)
        .reduce_with(|mut a, b| {
            for (x, y) in a.iter_mut().zip(&b) {
                *x += y;
            }
            a
        });
    if let Some(t) = total {
        for (d, t) in d_params.iter_mut().zip(&t) {
            *d += t;
        }
    }
}

/// Where one chunk's backward writes: the task's parameter-gradient accumulator, the chunk's input
/// gradients, and scratch for the per-group sums of the first layer's output gradient.
struct ChunkGrads<'a> {
    acc: &'a mut [f32],
    d_rows: Option<&'a mut [f32]>,
    d_groups: Option<&'a mut [f32]>,
    gsum: &'a mut Vec<f32>,
}

/// `dW (a x b) += input^T (r x a)^T g (r x b)`.
fn accumulate_weight_grad(input: &[f32], g: &[f32], dw: &mut [f32], r: usize, a: usize, b: usize) {
    // input is r x a row-major, so A = input^T has rs 1, cs a.
    // SAFETY: input is r x a, g is r x b, dw is a x b; all row-major, lengths checked by callers.
    unsafe {
        gemm(
            a,
            r,
            b,
            input.as_ptr(),
            1,
            a as isize,
            g.as_ptr(),
            b as isize,
            1.0,
            dw.as_mut_ptr(),
            b as isize,
        )
    };
}

/// Every layer's `W_k^T` (`d_{k+1} x d_k`, row-major) at `W_k`'s offset of the parameter layout
/// (biases left zero): the GEMM wants `B`'s rows contiguous, so the input-gradient products read
/// these. Built once per backward call, shared by all chunks.
fn transposed_weights(offs: &[LayerOffsets], params: &[f32]) -> Vec<f32> {
    let mut wt = vec![0.0f32; params.len()];
    for lo in offs {
        let (a, b) = (lo.fan_in, lo.fan_out);
        let w = &params[lo.weight..lo.weight + a * b];
        let t = &mut wt[lo.weight..lo.weight + a * b];
        for (i, wr) in w.chunks_exact(b).enumerate() {
            for (j, &v) in wr.iter().enumerate() {
                t[j * a + i] = v;
            }
        }
    }
    wt
}

/// `target (r x cols) = g (r x b) W^T[:, c0..c0 + cols]`, where `wt` starts at column `c0` of a
/// row-major `b x a` matrix `W^T` (row stride `a`).
fn backprop_input(
    g: &[f32],
    wt: &[f32],
    a: usize,
    target: &mut [f32],
    r: usize,
    cols: usize,
    b: usize,
) {
    debug_assert!(b == 0 || wt.len() >= (b - 1) * a + cols);
    // SAFETY: g is r x b, wt holds b rows of `cols` values at stride a, target is r x cols.
    unsafe {
        gemm(
            r,
            b,
            cols,
            g.as_ptr(),
            b as isize,
            1,
            wt.as_ptr(),
            a as isize,
            0.0,
            target.as_mut_ptr(),
            cols as isize,
        )
    };
}

/// Backward through one chunk of `r` rows; `dy` holds `dL/d(out)` on entry (first `r * d_K`).
#[allow(clippy::too_many_arguments)]
fn backward_chunk(
    cfg: &MlpConfig,
    offs: &[LayerOffsets],
    wt: &[f32],
    input: &MlpInput,
    hc: &[f32],
    dy: &mut Vec<f32>,
    dh: &mut Vec<f32>,
    out: ChunkGrads,
    r: usize,
) {
    // Start offsets of h_1.. inside this chunk's hidden block.
    let mut starts = Vec::with_capacity(offs.len());
    let mut s = 0;
    for &d in &cfg.sizes[1..cfg.sizes.len() - 1] {
        starts.push(s);
        s += r * d;
    }
    let ChunkGrads {
        acc,
        d_rows,
        d_groups,
        gsum,
    } = out;
    for k in (1..offs.len()).rev() {
        let lo = offs[k];
        let (a, b) = (lo.fan_in, lo.fan_out);
        let h = &hc[starts[k - 1]..starts[k - 1] + r * a];
        let g = &dy[..r * b];
        accumulate_weight_grad(h, g, &mut acc[lo.weight..lo.weight + a * b], r, a, b);
        if let Some(bo) = lo.bias {
            add_row_sums(g, b, &mut acc[bo..bo + b]);
        }
        let target = &mut dh[..r * a];
        backprop_input(g, &wt[lo.weight..], a, target, r, a, b);
        // ReLU'(pre) = [h > 0] with h the post-activation input of this layer.
        // Written as an unconditional select so that it vectorises (a conditional store does not).
        for (d, h) in target.iter_mut().zip(h) {
            *d = if *h > 0.0 { *d } else { 0.0 };
        }
        std::mem::swap(dy, dh);
    }
    // First layer: local rows as usual, shared features through the per-group sums.
    let lo = offs[0];
    let (a, b, dl) = (lo.fan_in, lo.fan_out, input.d_local);
    let g = &dy[..r * b];
    accumulate_weight_grad(
        input.rows,
        g,
        &mut acc[lo.weight..lo.weight + dl * b],
        r,
        dl,
        b,
    );
    if let Some(bo) = lo.bias {
        add_row_sums(g, b, &mut acc[bo..bo + b]);
    }
    if let Some(d) = d_rows {
        backprop_input(g, &wt[lo.weight..], a, d, r, dl, b);
    }
    if dl < a {
        let ng = r / input.group_rows;
        gsum.clear();
        gsum.resize(ng * b, 0.0);
        for (gs, gg) in gsum.chunks_exact_mut(b).zip(g.chunks(input.group_rows * b)) {
            add_row_sums(gg, b, gs);
        }
        let dw = &mut acc[lo.weight + dl * b..lo.weight + a * b];
        accumulate_weight_grad(input.groups, gsum, dw, ng, a - dl, b);
        if let Some(d) = d_groups {
            backprop_input(gsum, &wt[lo.weight + dl..], a, d, ng, a - dl, b);
        }
    }
}

/// `acc (b) += sum of the rows of g (_ x b)`.
fn add_row_sums(g: &[f32], b: usize, acc: &mut [f32]) {
    for row in g.chunks_exact(b) {
        for (d, v) in acc.iter_mut().zip(row) {
            *d += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain f64 reference: forward and analytic backward, one sample at a time.
    fn reference(
        cfg: &MlpConfig,
        p: &[f32],
        x: &[f32],
        g: &[f32],
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let offs = cfg.layer_offsets();
        let (din, dout) = (cfg.input_dim(), cfg.output_dim());
        let n = x.len() / din;
        let mut out = vec![0f64; n * dout];
        let mut dp = vec![0f64; p.len()];
        let mut dx = vec![0f64; n * din];
        for s in 0..n {
            let mut acts: Vec<Vec<f64>> = vec![
                x[s * din..(s + 1) * din]
                    .iter()
                    .map(|v| *v as f64)
                    .collect(),
            ];
            for (k, lo) in offs.iter().enumerate() {
                let h = acts.last().unwrap();
                let mut y: Vec<f64> = (0..lo.fan_out)
                    .map(|j| lo.bias.map_or(0.0, |o| p[o + j] as f64))
                    .collect();
                for i in 0..lo.fan_in {
                    for j in 0..lo.fan_out {
                        y[j] += h[i] * p[lo.weight + i * lo.fan_out + j] as f64;
                    }
                }
                if k + 1 < offs.len() {
                    y.iter_mut().for_each(|v| *v = v.max(0.0));
                }
                acts.push(y);
            }
            out[s * dout..(s + 1) * dout].copy_from_slice(acts.last().unwrap());
            let mut dy: Vec<f64> = g[s * dout..(s + 1) * dout]
                .iter()
                .map(|v| *v as f64)
                .collect();
            for k in (0..offs.len()).rev() {
                let lo = offs[k];
                let h = &acts[k];
                let mut dh = vec![0f64; lo.fan_in];
                for i in 0..lo.fan_in {
                    for j in 0..lo.fan_out {
                        dp[lo.weight + i * lo.fan_out + j] += h[i] * dy[j];
                        dh[i] += dy[j] * p[lo.weight + i * lo.fan_out + j] as f64;
                    }
                }
                if let Some(o) = lo.bias {
                    for j in 0..lo.fan_out {
                        dp[o + j] += dy[j];
                    }
                }
                if k > 0 {
                    for i in 0..lo.fan_in {
                        if h[i] <= 0.0 {
                            dh[i] = 0.0;
                        }
                    }
                } else {
                    dx[s * din..(s + 1) * din].copy_from_slice(&dh);
                }
                dy = dh;
            }
        }
        (out, dp, dx)
    }

    fn rel_err(a: &[f32], b: &[f64]) -> f64 {
        let num: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - y).powi(2))
            .sum::<f64>()
            .sqrt();
        let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
        num / den.max(1e-30)
    }

    #[test]
    fn matches_f64_reference_over_several_chunks() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for (sizes, bias) in [
            (vec![7, 33, 20, 5], true),
            (vec![32, 64, 64, 16], false),
            (vec![9, 4], true),
        ] {
            let cfg = MlpConfig::new(&sizes, bias);
            cfg.validate().unwrap();
            let mut p = cfg.init_params(2);
            if bias {
                for lo in cfg.layer_offsets() {
                    for v in &mut p[lo.bias.unwrap()..lo.bias.unwrap() + lo.fan_out] {
                        *v = rng.random_range(-0.2f32..0.2);
                    }
                }
            }
            let n = 2 * CHUNK_ROWS + 37;
            let x: Vec<f32> = (0..n * cfg.input_dim())
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect();
            let g: Vec<f32> = (0..n * cfg.output_dim())
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect();
            let (out, cache) = mlp_forward(&cfg, &p, &x);
            let mut out2 = vec![0f32; out.len()];
            mlp_forward_inference(&cfg, &p, &x, &mut out2);
            assert_eq!(out, out2);
            let mut dp = vec![1f32; p.len()]; // accumulates onto 1
            let mut dx = vec![0f32; x.len()];
            mlp_backward(&cfg, &p, &x, &cache, &g, &mut dp, Some(&mut dx));
            dp.iter_mut().for_each(|v| *v -= 1.0);
            let (ro, rdp, rdx) = reference(&cfg, &p, &x, &g);
            assert!(rel_err(&out, &ro) < 1e-5, "{sizes:?} out");
            assert!(
                rel_err(&dp, &rdp) < 1e-5,
                "{sizes:?} d_params {}",
                rel_err(&dp, &rdp)
            );
            assert!(rel_err(&dx, &rdx) < 1e-5, "{sizes:?} d_x");
        }
    }

    /// The grouped input gives the dense MLP's outputs and gradients on the concatenated rows,
    /// with chunks that do not align with CHUNK_ROWS and groups longer than a chunk.
    #[test]
    fn grouped_input_matches_dense_concatenation() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for (sizes, d_local, group_rows, groups) in [
            (vec![11, 24, 24, 3], 4, 7, 80),
            (vec![9, 16, 2], 3, 300, 2),
            (vec![6, 5], 2, 32, 9),
        ] {
            let cfg = MlpConfig::new(&sizes, true);
            let mut p = cfg.init_params(4);
            for lo in cfg.layer_offsets() {
                for v in &mut p[lo.bias.unwrap()..lo.bias.unwrap() + lo.fan_out] {
                    *v = rng.random_range(-0.2f32..0.2);
                }
            }
            let (d0, ds) = (sizes[0], sizes[0] - d_local);
            let n = group_rows * groups;
            let rows: Vec<f32> = (0..n * d_local)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect();
            let shared: Vec<f32> = (0..groups * ds)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect();
            let mut x = Vec::with_capacity(n * d0);
            for i in 0..n {
                x.extend_from_slice(&rows[i * d_local..(i + 1) * d_local]);
                let gi = i / group_rows;
                x.extend_from_slice(&shared[gi * ds..(gi + 1) * ds]);
            }
            let g: Vec<f32> = (0..n * cfg.output_dim())
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect();
            let (out, cache) = mlp_forward(&cfg, &p, &x);
            let mut dp = vec![0f32; p.len()];
            let mut dx = vec![0f32; x.len()];
            mlp_backward(&cfg, &p, &x, &cache, &g, &mut dp, Some(&mut dx));

            let input = MlpInput {
                rows: &rows,
                d_local,
                groups: &shared,
                group_rows,
            };
            let mut out2 = vec![0f32; out.len()];
            let mut cache2 = MlpCache::default();
            mlp_forward_grouped_into(&cfg, &p, &input, &mut out2, &mut cache2);
            let mut out3 = vec![0f32; out.len()];
            mlp_forward_grouped_inference(&cfg, &p, &input, &mut out3);
            let mut dp2 = vec![0f32; p.len()];
            let mut drows = vec![0f32; rows.len()];
            let mut dgroups = vec![0f32; shared.len()];
            mlp_backward_grouped(
                &cfg,
                &p,
                &input,
                &cache2,
                &g,
                &mut dp2,
                Some(&mut drows),
                Some(&mut dgroups),
            );
            let f64s = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
            assert!(rel_err(&out2, &f64s(&out)) < 1e-5, "{sizes:?} out");
            assert_eq!(out2, out3, "{sizes:?} inference");
            assert!(rel_err(&dp2, &f64s(&dp)) < 1e-5, "{sizes:?} d_params");
            let mut dr_ref = Vec::new();
            let mut dg_ref = vec![0f64; shared.len()];
            for i in 0..n {
                dr_ref.extend(f64s(&dx[i * d0..i * d0 + d_local]));
                let gi = i / group_rows;
                for j in 0..ds {
                    dg_ref[gi * ds + j] += dx[i * d0 + d_local + j] as f64;
                }
            }
            assert!(rel_err(&drows, &dr_ref) < 1e-5, "{sizes:?} d_rows");
            assert!(rel_err(&dgroups, &dg_ref) < 1e-5, "{sizes:?} d_groups");
        }
    }

    #[test]
    fn layout_offsets() {
        let cfg = MlpConfig::new(&[3, 4, 2], true);
        let o = cfg.layer_offsets();
        assert_eq!(
            o[0],
            LayerOffsets {
                fan_in: 3,
                fan_out: 4,
                weight: 0,
                bias: Some(12)
            }
        );
        assert_eq!(
            o[1],
            LayerOffsets {
                fan_in: 4,
                fan_out: 2,
                weight: 16,
                bias: Some(24)
            }
        );
        assert_eq!(cfg.num_params(), 26);
        assert!(MlpConfig::new(&[3], false).validate().is_err());
    }
}
