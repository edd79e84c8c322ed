//! Fine-tuning the baked model against the training photos, with the 8-bit quantisation in the loop
//! (MERF, Reiser et al. 2023, §3.4 and §4: after distillation the baked representation itself is
//! optimised on the training images; SNeRG §4.3 fine-tunes its deferred MLP the same way).
//!
//! The parameters are the stored vertices' values (pre-activation density and geometry features)
//! and the colour head. A batch of training rays is marched through the grid exactly as rendering
//! does (the same steps, skipping and early termination); the loss is the squared error of the
//! pixel `O · head(G / O)` against the photo, with `G = Σ w_i g_i` the composited features and
//! `O = Σ w_i` the opacity (deferred shading). Gradients (volume rendering, Mildenhall et al. 2020
//! Eq. 3 differentiated):
//! - `∂L/∂g_i = w_i ∂L/∂G` for the features of sample `i`;
//! - `∂L/∂σ_i = Δt_i (T_{i+1} s_i − Σ_{j>i} w_j s_j)` with `s_j = ∂L/∂G · g_j + ∂L/∂O` and
//!   `T_{i+1} = T_i (1 − α_i)`, then `∂σ/∂raw = σ` (`σ = exp(raw)`);
//! - each sample's gradient goes to its voxel's 8 vertices by their trilinear weights.
//!
//! Quantisation in the loop is straight-through: every vertex keeps an f32 master value that Adam
//! updates, and the grid's 8-bit code is re-derived from it after each step, so the forward pass
//! always renders the bytes that will be written.

use crate::BakedModel;
use crate::grid::{CHANNELS, RaySample, STEP_VOXELS, VERTS, Visit};
use flythrough_nerf::data::Dataset;
use flythrough_nerf::kernels::{
    Adam, AdamConfig, MlpCache, MlpInput, mlp_backward_grouped, mlp_forward_grouped_into,
};
use flythrough_nerf::model::{GEO_DIM, Rays, color_act};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::time::Instant;

/// Vertices per task of the Adam update.
const ADAM_RUN: usize = 4096;

/// What to fine-tune and how long.
#[derive(Debug, Clone, PartialEq)]
pub struct FinetuneOptions {
    /// Adam steps (0: no fine-tuning).
    pub steps: usize,
    /// Training rays per step.
    pub batch_rays: usize,
    /// Learning rates at the first step (decayed exponentially to a tenth by the last): the
    /// geometry features, the pre-activation density, the colour head.
    pub lr_features: f32,
    pub lr_density: f32,
    pub lr_head: f32,
    /// Weight of the distortion loss (mip-NeRF 360 Eq. 15) on each ray's weights, in contracted
    /// distance: concentrates the weights, so surfaces get thinner and the march makes fewer
    /// lookups (0: none).
    pub distortion: f32,
    pub seed: u64,
}

impl Default for FinetuneOptions {
    fn default() -> Self {
        FinetuneOptions {
            steps: 500,
            batch_rays: 4096,
            lr_features: 0.03,
            lr_density: 0.01,
            lr_head: 3e-3,
            distortion: 0.01,
            seed: 0,
        }
    }
}

/// What fine-tuning did: PSNR on the training batches (mean squared error of the first and last
/// tenth of the steps).
#[derive(Debug, Clone, PartialEq)]
pub struct FinetuneReport {
    pub steps: usize,
    pub psnr_train_start: f64,
    pub psnr_train_end: f64,
    pub seconds: f64,
}

/// Adam moments of the grid's vertices, updated lazily (only the vertices a batch touched, bias
/// corrected with the global step, as TensorFlow's LazyAdam).
struct VertexAdam {
    m: Vec<f32>,
    v: Vec<f32>,
}

/// Gradients of the fine-tuned parameters.
pub struct Grads {
    /// The colour head's weights.
    pub head: Vec<f32>,
    /// The vertices' values (`slots × VERTS³ × CHANNELS`, as [`crate::grid::Grid::data`]).
    pub grid: Vec<f32>,
    /// Per vertex: the last step that gave it a gradient.
    pub stamp: Vec<usize>,
    /// The background colour.
    pub background: [f32; 3],
}

impl Grads {
    /// Zero gradients for `baked`.
    pub fn new(baked: &BakedModel) -> Grads {
        Grads {
            head: vec![0.0; baked.head.params.len()],
            grid: vec![0.0; baked.grid.data.len()],
            stamp: vec![usize::MAX; baked.grid.data.len() / CHANNELS],
            background: [0.0; 3],
        }
    }
}

/// A ray's gradient: `∂L/∂G` (to the features of every sample, times its weight) and each
/// sample with `∂L/∂raw` of its density.
struct RayGrad {
    d_g: [f32; GEO_DIM],
    samples: Vec<SampleGrad>,
    /// The ray's distortion loss (times its weight).
    dist: f32,
}

/// One sample's share of a ray's gradient: its voxel's first vertex (`slot × VERTS³ + local`), the
/// trilinear fractions, its weight `w` and `∂L/∂raw`.
#[derive(Clone, Copy)]
struct SampleGrad {
    vertex: u32,
    f: [f32; 3],
    weight: f32,
    d_raw: f32,
}

impl SampleGrad {
    /// The 8 corners: vertex id and trilinear weight.
    fn corners(&self) -> impl Iterator<Item = (usize, f32)> + '_ {
        const DV: [usize; 8] = {
            let mut d = [0; 8];
            let mut k = 0;
            while k < 8 {
                d[k] = ((k >> 2) * VERTS + ((k >> 1) & 1)) * VERTS + (k & 1);
                k += 1;
            }
            d
        };
        (0..8).map(move |k| {
            let w = |bit: usize, a: usize| if bit == 0 { 1.0 - self.f[a] } else { self.f[a] };
            (
                self.vertex as usize + DV[k],
                w(k & 1, 0) * w((k >> 1) & 1, 1) * w(k >> 2, 2),
            )
        })
    }
}

/// The samples of one marched ray and what the ray gathered.
struct Marched {
    sample: RaySample,
    visits: Vec<Visit>,
}

/// Fine-tune `baked` on the training photos of `ds` (rays of the norm frame, each with its photo's
/// latent and exposure); `progress(step, steps)` after each step.
pub fn finetune(
    baked: &mut BakedModel,
    ds: &Dataset,
    opts: &FinetuneOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> FinetuneReport {
    let t0 = Instant::now();
    if opts.steps == 0 {
        return FinetuneReport {
            steps: 0,
            psnr_train_start: 0.0,
            psnr_train_end: 0.0,
            seconds: 0.0,
        };
    }
    let (lo, scale) = (baked.grid.lo, baked.grid.scale);
    let mut master: Vec<f32> = baked
        .grid
        .data
        .par_chunks(CHANNELS)
        .flat_map_iter(|q| (0..CHANNELS).map(move |c| lo[c] + q[c] as f32 * scale[c]))
        .collect();
    let mut adam = VertexAdam {
        m: vec![0.0; master.len()],
        v: vec![0.0; master.len()],
    };
    let mut grads = Grads::new(baked);
    let mut head_adam = Adam::new(baked.head.params.len(), AdamConfig::default());
    let mut bg_adam = Adam::new(3, AdamConfig::default());
    let gd = baked.head.glo_dim;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0xBA4E);
    let n = opts.batch_rays.max(1);
    let tenth = (opts.steps / 10).max(1);
    let (mut sse_start, mut sse_end) = (0f64, 0f64);
    let mut cache = MlpCache::default();
    for step in 0..opts.steps {
        let decay = 0.1f32.powf(step as f32 / opts.steps.max(2) as f32);
        let (rays, target, _) = ds.sample_batch(n, &mut rng, &baked.glo, gd);
        grads.head.iter_mut().for_each(|g| *g = 0.0);
        grads.background = [0.0; 3];
        let (mse, _) = gradients(
            baked,
            &rays,
            &target,
            &mut cache,
            &mut grads,
            step,
            opts.distortion,
        );
        if step < tenth {
            sse_start += mse;
        }
        if step + tenth >= opts.steps {
            sse_end += mse;
        }
        // Lazy Adam on the touched vertices, then their 8-bit codes.
        let t = (step + 1) as i32;
        let cfg = AdamConfig::default();
        let (bc1, bc2) = (1.0 - cfg.beta1.powi(t), 1.0 - cfg.beta2.powi(t));
        let lrs: [f32; CHANNELS] = std::array::from_fn(|c| {
            decay
                * if c == 0 {
                    opts.lr_density
                } else {
                    opts.lr_features
                }
        });
        let hi: [f32; CHANNELS] = std::array::from_fn(|c| lo[c] + 255.0 * scale[c]);
        // Vertices in runs of ADAM_RUN per task; only the touched ones are updated.
        let run = ADAM_RUN * CHANNELS;
        baked
            .grid
            .data
            .par_chunks_mut(run)
            .zip(master.par_chunks_mut(run))
            .zip(grads.grid.par_chunks_mut(run))
            .zip(adam.m.par_chunks_mut(run))
            .zip(adam.v.par_chunks_mut(run))
            .zip(grads.stamp.par_chunks(ADAM_RUN))
            .for_each(|(((((q, p), g), m), v), st)| {
                for (j, _) in st.iter().enumerate().filter(|(_, s)| **s == step) {
                    for c in 0..CHANNELS {
                        let k = j * CHANNELS + c;
                        let g = std::mem::take(&mut g[k]);
                        if lrs[c] == 0.0 {
                            continue;
                        }
                        m[k] = cfg.beta1 * m[k] + (1.0 - cfg.beta1) * g;
                        v[k] = cfg.beta2 * v[k] + (1.0 - cfg.beta2) * g * g;
                        let upd = lrs[c] * (m[k] / bc1) / ((v[k] / bc2).sqrt() + 1e-8);
                        p[k] = (p[k] - upd * 255.0 * scale[c]).clamp(lo[c], hi[c]);
                        q[k] = ((p[k] - lo[c]) / scale[c] + 0.5) as u8;
                    }
                }
            });
        head_adam.update(&mut baked.head.params, &grads.head, opts.lr_head * decay);
        bg_adam.update(
            &mut baked.background[..],
            &grads.background,
            opts.lr_head * decay,
        );
        baked
            .background
            .iter_mut()
            .for_each(|b| *b = b.clamp(0.0, 1.0));
        progress(step + 1, opts.steps);
    }
    // The voxel masks follow the new densities.
    let g = &mut baked.grid;
    *g = crate::grid::rebuild(
        g.res,
        std::mem::take(&mut g.index),
        std::mem::take(&mut g.data),
        g.lo,
        g.scale,
    );
    let psnr = |mse: f64| -10.0 * (mse / tenth as f64).max(1e-12).log10();
    FinetuneReport {
        steps: opts.steps,
        psnr_train_start: psnr(sse_start),
        psnr_train_end: psnr(sse_end),
        seconds: t0.elapsed().as_secs_f64(),
    }
}

/// The mean squared error of `rays` against `target` rendered as the march and deferred shading
/// render them, and its gradients (see the module doc), accumulated into `grads` (`+=`); the
/// vertices given a gradient get `step` in `grads.stamp`.
pub fn gradients(
    baked: &BakedModel,
    rays: &Rays,
    target: &[[f32; 3]],
    cache: &mut MlpCache,
    grads: &mut Grads,
    step: usize,
    distortion: f32,
) -> (f64, f64) {
    let Grads {
        head: head_grad,
        grid: grad,
        stamp,
        background: bg_grad,
    } = grads;
    let n = rays.o.len();
    let grid = &baked.grid;
    let near = baked.norm.near as f32;
    let marched: Vec<Marched> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut visits = Vec::new();
            let s = grid.march_visiting(rays.o[i], rays.d[i], near, &mut |v| visits.push(*v));
            Marched { sample: s, visits }
        })
        .collect();
    let geo: Vec<f32> = marched
        .iter()
        .flat_map(|m| m.sample.shading_features())
        .collect();
    let head_cfg = baked.head.mlp();
    let ray_in = baked.head.ray_inputs(&rays.d, &rays.latent, &rays.ev);
    let input = MlpInput {
        rows: &geo,
        d_local: GEO_DIM,
        groups: &ray_in,
        group_rows: 1,
    };
    let mut logits = vec![0f32; n * 3];
    mlp_forward_grouped_into(&head_cfg, &baked.head.params, &input, &mut logits, cache);
    // Pixel = O c(logits): ∂L/∂logits and the direct part of ∂L/∂O.
    let mut d_logits = vec![0f32; n * 3];
    let mut d_opacity = vec![0f32; n];
    let mut sse = 0f64;
    let norm = 2.0 / (n * 3) as f32;
    for i in 0..n {
        let op = marched[i].sample.opacity;
        for c in 0..3 {
            let (col, dcol) = color_act(logits[i * 3 + c]);
            let bg = baked.background[c];
            let r = op * col + (1.0 - op) * bg - target[i][c];
            sse += (r * r) as f64;
            d_logits[i * 3 + c] = norm * r * op * dcol;
            d_opacity[i] += norm * r * (col - bg);
            bg_grad[c] += norm * r * (1.0 - op);
        }
    }
    let mut d_geo = vec![0f32; n * GEO_DIM];
    mlp_backward_grouped(
        &head_cfg,
        &baked.head.params,
        &input,
        cache,
        &d_logits,
        head_grad,
        Some(&mut d_geo),
        None,
    );
    let lambda = distortion / n as f32;
    // Through G/O and the compositing to each sample, per ray in parallel.
    let per_block = VERTS * VERTS * VERTS;
    let rays_grad: Vec<RayGrad> = marched
        .par_iter()
        .enumerate()
        .map(|(i, m)| {
            let mut out = RayGrad {
                d_g: [0f32; GEO_DIM],
                samples: Vec::new(),
                dist: 0.0,
            };
            if m.sample.opacity <= 1e-6 || m.visits.is_empty() {
                return out;
            }
            let u = &geo[i * GEO_DIM..(i + 1) * GEO_DIM];
            let du = &d_geo[i * GEO_DIM..(i + 1) * GEO_DIM];
            let mut du_u = 0f32;
            for k in 0..GEO_DIM {
                out.d_g[k] = du[k] / m.sample.opacity;
                du_u += du[k] * u[k];
            }
            let d_o = d_opacity[i] - du_u / m.sample.opacity;
            let (dist, d_w) = distortion_grad(&m.visits, grid.voxel() * STEP_VOXELS, lambda);
            out.dist = dist;
            out.samples.reserve(m.visits.len());
            // Backwards over the samples, carrying Σ_{j>i} w_j s_j.
            let mut after = 0f32;
            for (v, dw) in m.visits.iter().zip(&d_w).rev() {
                let vals = &v.values;
                let mut s = d_o + dw;
                for k in 0..GEO_DIM {
                    s += out.d_g[k] * vals[1 + k];
                }
                let d_sigma = v.dt * (v.trans_after * s - after);
                after += v.weight * s;
                // σ = exp(min(raw, 15)): no gradient where clamped.
                let d_raw = if vals[0] < 15.0 {
                    d_sigma * v.sigma
                } else {
                    0.0
                };
                out.samples.push(SampleGrad {
                    vertex: (v.slot as usize * per_block
                        + (v.i0[2] * VERTS + v.i0[1]) * VERTS
                        + v.i0[0]) as u32,
                    f: v.f,
                    weight: v.weight,
                    d_raw,
                });
            }
            out
        })
        .collect();
    // Then to the 8 vertices of each sample: the vertices split into ranges, one task per range
    // adding every sample's share in ray order (deterministic, no atomics).
    let nverts = grad.len() / CHANNELS;
    let parts = rayon::current_num_threads().min(nverts.max(1));
    let span = nverts.div_ceil(parts).max(1);
    grad.par_chunks_mut(span * CHANNELS)
        .zip(stamp.par_chunks_mut(span))
        .enumerate()
        .for_each(|(p, (grad, stamp))| {
            let lo = p * span;
            let hi = lo + stamp.len();
            for r in &rays_grad {
                for v in &r.samples {
                    let first = v.vertex as usize;
                    if first + per_block <= lo || first >= hi {
                        continue;
                    }
                    let d_raw = v.d_raw;
                    for (id, tw) in v.corners() {
                        if tw == 0.0 || id < lo || id >= hi {
                            continue;
                        }
                        stamp[id - lo] = step;
                        let g = &mut grad[(id - lo) * CHANNELS..(id - lo + 1) * CHANNELS];
                        g[0] += tw * d_raw;
                        let tw_w = tw * v.weight;
                        for k in 0..GEO_DIM {
                            g[1 + k] += tw_w * r.d_g[k];
                        }
                    }
                }
            }
        });
    let dist: f64 = rays_grad.iter().map(|r| r.dist as f64).sum();
    (sse / (n * 3) as f64, dist)
}

/// The distortion loss of one ray's composited samples (mip-NeRF 360, Barron et al. 2022, Eq. 15)
/// on intervals of length `delta` starting at contracted distances `u` (in order):
/// `L = Σ_ij w_i w_j |m_i − m_j| + δ/3 Σ_i w_i²` with midpoints `m`, and
/// `∂L/∂w_i = 2 Σ_j w_j |m_i − m_j| + 2δ/3 w_i` by prefix sums of `w` and `w m`; both times `lambda`.
fn distortion_grad(visits: &[Visit], delta: f32, lambda: f32) -> (f32, Vec<f32>) {
    let n = visits.len();
    if lambda == 0.0 || n == 0 {
        return (0.0, vec![0.0; n]);
    }
    let mid: Vec<f32> = visits.iter().map(|v| v.u + 0.5 * delta).collect();
    let (w_all, s_all) = visits
        .iter()
        .zip(&mid)
        .fold((0f32, 0f32), |(w, s), (v, m)| {
            (w + v.weight, s + v.weight * m)
        });
    let (mut w_lt, mut s_lt) = (0f32, 0f32);
    let mut loss = 0f32;
    let mut grad = Vec::with_capacity(n);
    for (v, &m) in visits.iter().zip(&mid) {
        let w = v.weight;
        let (w_gt, s_gt) = (w_all - w_lt - w, s_all - s_lt - w * m);
        let spread = m * w_lt - s_lt + s_gt - m * w_gt;
        loss += w * spread + delta / 3.0 * w * w;
        grad.push(lambda * (2.0 * spread + 2.0 * delta / 3.0 * w));
        w_lt += w;
        s_lt += w * m;
    }
    (lambda * loss, grad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::from_field;
    use flythrough_nerf::coord::SceneNorm;
    use flythrough_nerf::field::ColorHead;
    use flythrough_nerf::kernels::MlpConfig;

    /// A 32^3 grid with two stored blocks side by side around the centre, smooth semi-transparent
    /// density and varied features; a random colour head with a 2-d latent.
    fn model() -> BakedModel {
        let mut lo = [-1.0f32; CHANNELS];
        let mut scale = [2.0 / 255.0; CHANNELS];
        lo[0] = -10.0;
        scale[0] = 25.0 / 255.0;
        let keep = |b: [usize; 3], _: &[[f32; CHANNELS]]| b == [2, 2, 2] || b == [1, 2, 2];
        let grid = from_field(32, lo, scale, keep, |p| {
            // log σ between about -1 and 1.5: every ray keeps some transmittance.
            let mut v = [0f32; CHANNELS];
            v[0] = 0.3 + 1.2 * (3.0 * p[0]).sin() * (2.0 * p[1] + 1.0).cos();
            for (c, f) in v.iter_mut().enumerate().skip(1) {
                *f = 0.8 * (c as f32 * 0.7 + 2.0 * p[0] - p[1] + 3.0 * p[2]).sin();
            }
            v
        });
        let head = ColorHead {
            mlp_width: 16,
            glo_dim: 2,
            exposure: true,
            params: Vec::new(),
        };
        let cfg: MlpConfig = head.mlp();
        let params = cfg.init_params(3);
        BakedModel {
            grid,
            head: ColorHead { params, ..head },
            glo: vec![0.3, -0.2, 0.1, 0.4],
            norm: SceneNorm {
                center: [0.0; 3],
                scale: 1.0,
                near: 0.0,
            },
            ev_mean: 0.0,
            train_names: vec!["a".into(), "b".into()],
            background: [0.3, 0.5, 0.2],
        }
    }

    fn rays() -> (Rays, Vec<[f32; 3]>) {
        let mut r = Rays::default();
        let mut target = Vec::new();
        for k in 0..6 {
            let a = 0.15 * k as f32;
            let d = [a.sin() * 0.3, 0.2, a.cos()];
            let l = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
            r.o.push([-0.3 + 0.05 * k as f32, 0.3, -1.5]);
            r.d.push([d[0] / l, d[1] / l, d[2] / l]);
            r.r.push(1e-3);
            r.ev.push(0.1 * k as f32 - 0.2);
            r.latent.extend_from_slice(&[0.3, -0.2 + 0.1 * k as f32]);
            target.push([0.2 + 0.1 * k as f32, 0.5, 0.3]);
        }
        (r, target)
    }

    fn loss(m: &BakedModel, rays: &Rays, target: &[[f32; 3]]) -> (f64, Vec<f32>, Vec<f32>) {
        let (l, g) = loss_grads(m, rays, target);
        (l, g.grid, g.head)
    }

    fn loss_grads(m: &BakedModel, rays: &Rays, target: &[[f32; 3]]) -> (f64, Grads) {
        let mut g = Grads::new(m);
        let (mse, dist) = gradients(m, rays, target, &mut MlpCache::default(), &mut g, 0, 0.05);
        (mse + dist, g)
    }

    /// A frame's rays rendered together (a packet and a remainder) give what each gives
    /// rendered alone: the same opacity and depth, bit for bit, and the same colour.
    #[test]
    fn rays_render_in_packets_as_each_alone() {
        let m = model();
        let latent = m.latent(None);
        let (mut o, mut d) = (Vec::new(), Vec::new());
        for k in 0..21 {
            let a = 0.11 * k as f32 - 1.0;
            let v = [a.sin() * 0.4, 0.25 - 0.02 * k as f32, a.cos()];
            let l = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
            o.push([-0.3 + 0.03 * k as f32, 0.3, -1.5]);
            d.push(v.map(|x| x / l));
        }
        let all = m.render_norm(&o, &d, &[0.2; 21], &latent);
        assert_eq!(all.rgb.len(), 21);
        for k in 0..21 {
            let one = m.render_norm(&o[k..k + 1], &d[k..k + 1], &[0.2], &latent);
            assert_eq!(all.opacity[k], one.opacity[0], "ray {k}");
            assert_eq!(all.depth[k], one.depth[0], "ray {k}");
            for c in 0..3 {
                assert!((all.rgb[k][c] - one.rgb[0][c]).abs() < 1e-6, "ray {k}");
            }
        }
        assert!(all.opacity.iter().filter(|&&a| a > 0.1).count() >= 10);
    }

    /// The distortion loss by prefix sums equals the double sum, and its gradient equals finite
    /// differences in every weight.
    #[test]
    fn distortion_matches_its_definition() {
        let visit = |u: f32, w: f32| Visit {
            block: 0,
            slot: 0,
            i0: [0; 3],
            f: [0.0; 3],
            weight: w,
            trans_after: 0.0,
            sigma: 0.0,
            dt: 0.0,
            values: [0.0; CHANNELS],
            u,
        };
        let vs: Vec<Visit> = [
            (0.1, 0.05),
            (0.3, 0.2),
            (0.35, 0.4),
            (0.9, 0.1),
            (1.4, 0.02),
        ]
        .iter()
        .map(|&(u, w)| visit(u, w))
        .collect();
        let delta = 0.05;
        let brute = |vs: &[Visit]| {
            let mut l = 0f64;
            for a in vs {
                for b in vs {
                    l += (a.weight * b.weight * (a.u - b.u).abs()) as f64;
                }
                l += (delta / 3.0 * a.weight * a.weight) as f64;
            }
            l
        };
        let (l, g) = distortion_grad(&vs, delta, 2.0);
        assert!(
            (l as f64 - 2.0 * brute(&vs)).abs() < 1e-5,
            "{l} vs {}",
            2.0 * brute(&vs)
        );
        for i in 0..vs.len() {
            let h = 1e-3;
            let (mut p, mut m) = (vs.clone(), vs.clone());
            p[i].weight += h;
            m[i].weight -= h;
            let fd = 2.0 * (brute(&p) - brute(&m)) / (2.0 * h as f64);
            assert!(
                (fd - g[i] as f64).abs() < 1e-3,
                "weight {i}: {} vs {fd}",
                g[i]
            );
        }
    }

    /// The analytic gradient of the loss with respect to the stored values equals central finite
    /// differences of one 8-bit code (density and features, on vertices of both blocks), and the
    /// colour head's gradient equals finite differences of its weights.
    #[test]
    fn gradients_match_finite_differences() {
        let m = model();
        let (rays, target) = rays();
        let (l0, grad, head) = loss(&m, &rays, &target);
        assert!(l0 > 1e-3, "a loss to reduce: {l0}");
        // The vertices with the largest gradients in each channel group.
        let mut checked = 0;
        for c in [0usize, 1, 7, 15] {
            let mut ids: Vec<usize> = (0..grad.len() / CHANNELS).collect();
            ids.sort_by(|&a, &b| {
                grad[b * CHANNELS + c]
                    .abs()
                    .total_cmp(&grad[a * CHANNELS + c].abs())
            });
            for &id in ids.iter().take(4) {
                let k = id * CHANNELS + c;
                let q = m.grid.data[k];
                assert!((2..254).contains(&q), "code {q} at the edge of the range");
                let mut plus = m.clone();
                plus.grid.data[k] = q + 1;
                let mut minus = m.clone();
                minus.grid.data[k] = q - 1;
                let fd = (loss(&plus, &rays, &target).0 - loss(&minus, &rays, &target).0)
                    / (2.0 * m.grid.scale[c] as f64);
                let an = grad[k] as f64;
                assert!(
                    (fd - an).abs() <= 0.05 * an.abs().max(fd.abs()) + 1e-6,
                    "vertex {id} channel {c}: analytic {an:e}, finite differences {fd:e}"
                );
                assert!(an.abs() > 1e-6, "vertex {id} channel {c}: no gradient");
                checked += 1;
            }
        }
        assert_eq!(checked, 16);
        // The background colour, seen through the transmittance the rays keep.
        let bg = loss_grads(&m, &rays, &target).1.background;
        for (c, &an) in bg.iter().enumerate() {
            let h = 1e-3f32;
            let mut plus = m.clone();
            plus.background[c] += h;
            let mut minus = m.clone();
            minus.background[c] -= h;
            let fd =
                (loss(&plus, &rays, &target).0 - loss(&minus, &rays, &target).0) / (2.0 * h as f64);
            let an = an as f64;
            assert!(
                (fd - an).abs() <= 0.02 * an.abs().max(fd.abs()) + 1e-6 && an.abs() > 1e-5,
                "background {c}: analytic {an:e}, finite differences {fd:e}"
            );
        }
        for i in [0usize, 5, m.head.params.len() / 2, m.head.params.len() - 1] {
            let h = 1e-3f32;
            let mut plus = m.clone();
            plus.head.params[i] += h;
            let mut minus = m.clone();
            minus.head.params[i] -= h;
            let fd =
                (loss(&plus, &rays, &target).0 - loss(&minus, &rays, &target).0) / (2.0 * h as f64);
            let an = head[i] as f64;
            assert!(
                (fd - an).abs() <= 0.02 * an.abs().max(fd.abs()) + 1e-6,
                "head parameter {i}: analytic {an:e}, finite differences {fd:e}"
            );
        }
    }
}
