//! The model: proposal fields, the NeRF field (hash-grid or IPE backbone), GLO latents, and the
//! forward/backward pass over a batch of rays. This file only wires the small functions of
//! [`crate::coord`], [`crate::stepfun`], [`crate::composite`], [`crate::encoding`] and the kernels.
//!
//! Naming: `R` rays, level `k` has `n_k` samples per ray, `S_k = R * n_k` samples (ray-major). Per level
//! `s` holds `R * (n_k + 1)` fenceposts in normalised disparity and `t` the same in distance.
//! Parameters are flat f32 buffers (`Model::params`, names in `Model::names`), layouts from the kernels.

use crate::composite;
use crate::coord;
use crate::encoding::{self, DIR_DIM, EXPOSURE_DIM};
use crate::kernels::mlp::CHUNK_ROWS;
use crate::kernels::{
    HashGridConfig, MlpCache, MlpConfig, MlpInput, hash_encode_backward,
    hash_encode_backward_positions, hash_encode_forward, mlp_backward, mlp_backward_grouped,
    mlp_forward_grouped_inference, mlp_forward_grouped_into, mlp_forward_inference,
    mlp_forward_into,
};
use crate::stepfun;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Geometry features passed from the density MLP to the colour head (nerfacto: 15).
pub const GEO_DIM: usize = 15;
/// Octaves of the IPE backbone.
pub const IPE_DEGREES: usize = 10;
/// Hidden width of the proposal MLPs.
pub const PROP_WIDTH: usize = 16;

/// The field backbone: the config's enum (`[train] backbone`), stored in checkpoints as spelled there.
pub use flythrough_core::config::Backbone;

/// Everything that fixes the parameter layout (stored in every checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub backbone: Backbone,
    pub prop_samples: Vec<usize>,
    pub nerf_samples: usize,
    pub prop_grids: Vec<HashGridConfig>,
    pub nerf_grid: HashGridConfig,
    pub mlp_width: usize,
    pub ipe_width: usize,
    pub glo_dim: usize,
    pub num_latents: usize,
    pub exposure: bool,
    /// Per training photo camera correction (`cam_opt`, 6 floats each; see [`Model::idx_cam_opt`]).
    #[serde(default)]
    pub pose_refine: bool,
}

impl ModelConfig {
    /// From the `[train]` section, for `num_latents` training photos.
    pub fn from_train(cfg: &flythrough_core::config::TrainConfig, num_latents: usize) -> Self {
        let prop_grid = |max_res: u32| HashGridConfig {
            levels: 5,
            features_per_level: 2,
            log2_table_size: 17.min(cfg.hash_table_log2),
            base_resolution: 16,
            max_resolution: max_res,
        };
        let nlev = cfg.prop_samples.len();
        ModelConfig {
            backbone: cfg.backbone,
            prop_samples: cfg.prop_samples.clone(),
            nerf_samples: cfg.nerf_samples,
            // nerfacto: proposal grids up to 128 and 256.
            prop_grids: (0..nlev)
                .map(|k| prop_grid(if k == 0 { 128 } else { 256 }))
                .collect(),
            nerf_grid: HashGridConfig {
                levels: cfg.hash_levels,
                features_per_level: 2,
                log2_table_size: cfg.hash_table_log2,
                base_resolution: 16,
                max_resolution: cfg.hash_max_res as u32,
            },
            mlp_width: cfg.mlp_width,
            ipe_width: cfg.ipe_width,
            glo_dim: cfg.glo_dim,
            num_latents,
            exposure: cfg.exposure_conditioning,
            pose_refine: cfg.pose_lr > 0.0 && cfg.backbone == Backbone::HashGrid,
        }
    }
    pub(crate) fn prop_mlp(&self, k: usize) -> MlpConfig {
        MlpConfig::new(&[self.prop_grids[k].output_dim(), PROP_WIDTH, 1], true)
    }
    pub(crate) fn density_mlp(&self) -> MlpConfig {
        match self.backbone {
            Backbone::HashGrid => MlpConfig::new(
                &[self.nerf_grid.output_dim(), self.mlp_width, 1 + GEO_DIM],
                true,
            ),
            Backbone::IpeMlp => {
                let w = self.ipe_width;
                MlpConfig::new(
                    &[encoding::ipe_dim(IPE_DEGREES), w, w, w, 1 + GEO_DIM],
                    true,
                )
            }
        }
    }
    /// Width of the colour head's input: geometry, direction, GLO latent, exposure.
    pub fn color_in(&self) -> usize {
        GEO_DIM + DIR_DIM + self.glo_dim + if self.exposure { EXPOSURE_DIM } else { 0 }
    }
    pub(crate) fn color_mlp(&self) -> MlpConfig {
        let w = self.mlp_width;
        MlpConfig::new(&[self.color_in(), w, w, 3], true)
    }

    /// Names and lengths of the parameter buffers, in [`Model::params`] order, after checking every
    /// size against the ranges the kernels accept: a checkpoint's metadata is read from a file, and
    /// its buffers are checked against these lengths before anything is allocated from it.
    pub fn param_shapes(&self) -> Result<Vec<(String, usize)>, String> {
        let nprop = self.prop_samples.len();
        if nprop == 0 || self.prop_samples.iter().any(|n| !(2..=1024).contains(n)) {
            return Err(format!(
                "prop_samples = {:?} must list at least one proposal level, each with 2..=1024 samples",
                self.prop_samples
            ));
        }
        if self.prop_grids.len() != nprop {
            return Err(format!(
                "prop_grids lists {} grids for {nprop} proposal levels (prop_samples)",
                self.prop_grids.len()
            ));
        }
        if !(2..=1024).contains(&self.nerf_samples) {
            return Err(format!(
                "nerf_samples = {} must be in 2..=1024",
                self.nerf_samples
            ));
        }
        if self.glo_dim > 4096 {
            return Err(format!("glo_dim = {} must be at most 4096", self.glo_dim));
        }
        for g in self.prop_grids.iter().chain([&self.nerf_grid]) {
            g.validate().map_err(|e| e.to_string())?;
        }
        let mut mlps: Vec<MlpConfig> = (0..nprop).map(|k| self.prop_mlp(k)).collect();
        mlps.extend([self.density_mlp(), self.color_mlp()]);
        for m in &mlps {
            m.validate().map_err(|e| e.to_string())?;
        }
        let per_latent = |what: &str, dim: usize| {
            self.num_latents.checked_mul(dim).ok_or_else(|| {
                format!(
                    "{what}: num_latents = {} x {dim} overflows",
                    self.num_latents
                )
            })
        };
        let mut out = Vec::new();
        for k in 0..nprop {
            out.push((format!("prop{k}.grid"), self.prop_grids[k].num_params()));
            out.push((format!("prop{k}.mlp"), mlps[k].num_params()));
        }
        out.push((
            "nerf.grid".into(),
            match self.backbone {
                Backbone::HashGrid => self.nerf_grid.num_params(),
                Backbone::IpeMlp => 0,
            },
        ));
        out.push(("nerf.density_mlp".into(), mlps[nprop].num_params()));
        out.push(("nerf.color_mlp".into(), mlps[nprop + 1].num_params()));
        out.push(("glo".into(), per_latent("glo", self.glo_dim)?));
        if self.pose_refine {
            out.push(("cam_opt".into(), per_latent("cam_opt", 6)?));
        }
        Ok(out)
    }
}

/// Parameters: flat buffers. Index layout: proposal `k` grid `2k`, MLP `2k+1`; then the NeRF grid
/// (empty for the IPE backbone), density MLP, colour MLP, GLO table `[num_latents * glo_dim]`, and
/// with `pose_refine` the camera corrections `cam_opt` `[num_latents * 6]`: per training photo a
/// translation `tau` and a rotation vector `omega` in the norm frame, applied to its rays as
/// `o' = o + tau`, `d' = Exp(omega) d` (a rotation about the camera centre).
#[derive(Debug, Clone)]
pub struct Model {
    pub cfg: ModelConfig,
    pub names: Vec<String>,
    pub params: Vec<Vec<f32>>,
    /// Near plane in norm units (from [`crate::coord::SceneNorm::near`]).
    pub near: f32,
}

impl Model {
    pub fn new(cfg: ModelConfig, near: f32, seed: u64) -> Self {
        let mut names = Vec::new();
        let mut params = Vec::new();
        for k in 0..cfg.prop_samples.len() {
            names.push(format!("prop{k}.grid"));
            params.push(cfg.prop_grids[k].init_params(seed + 10 + k as u64));
            names.push(format!("prop{k}.mlp"));
            params.push(cfg.prop_mlp(k).init_params(seed + 20 + k as u64));
        }
        names.push("nerf.grid".into());
        params.push(match cfg.backbone {
            Backbone::HashGrid => cfg.nerf_grid.init_params(seed + 1),
            Backbone::IpeMlp => Vec::new(),
        });
        names.push("nerf.density_mlp".into());
        params.push(cfg.density_mlp().init_params(seed + 2));
        names.push("nerf.color_mlp".into());
        params.push(cfg.color_mlp().init_params(seed + 3));
        names.push("glo".into());
        params.push(vec![0.0; cfg.num_latents * cfg.glo_dim]);
        if cfg.pose_refine {
            names.push("cam_opt".into());
            params.push(vec![0.0; cfg.num_latents * 6]);
        }
        Model {
            cfg,
            names,
            params,
            near,
        }
    }
    fn nprop(&self) -> usize {
        self.cfg.prop_samples.len()
    }
    pub fn idx_grid(&self) -> usize {
        2 * self.nprop()
    }
    pub fn idx_glo(&self) -> usize {
        2 * self.nprop() + 3
    }
    /// Index of the camera corrections `cam_opt` (with `pose_refine`).
    pub fn idx_cam_opt(&self) -> Option<usize> {
        self.cfg.pose_refine.then(|| 2 * self.nprop() + 4)
    }
    /// Zeroed gradient buffers of the same shapes.
    pub fn zeros_like(&self) -> Vec<Vec<f32>> {
        self.params.iter().map(|p| vec![0.0; p.len()]).collect()
    }
    /// The mean GLO latent over training photos (used when rendering novel views).
    pub fn mean_latent(&self) -> Vec<f32> {
        let d = self.cfg.glo_dim;
        let glo = &self.params[self.idx_glo()];
        let n = self.cfg.num_latents.max(1);
        (0..d)
            .map(|j| {
                (0..self.cfg.num_latents)
                    .map(|i| glo[i * d + j])
                    .sum::<f32>()
                    / n as f32
            })
            .collect()
    }
    pub fn latent(&self, i: usize) -> Vec<f32> {
        let d = self.cfg.glo_dim;
        self.params[self.idx_glo()][i * d..(i + 1) * d].to_vec()
    }
}

/// A batch of rays in the norm frame, with what the colour head needs per ray.
#[derive(Debug, Clone, Default)]
pub struct Rays {
    pub o: Vec<[f32; 3]>,
    pub d: Vec<[f32; 3]>,
    /// Cone radius per unit distance.
    pub r: Vec<f32>,
    /// `[R * glo_dim]` latent per ray.
    pub latent: Vec<f32>,
    /// Exposure value relative to the training mean, per ray.
    pub ev: Vec<f32>,
}

impl Rays {
    pub fn len(&self) -> usize {
        self.o.len()
    }
    pub fn is_empty(&self) -> bool {
        self.o.is_empty()
    }
}

/// Gradients of the loss with respect to each ray's origin and unit direction (norm frame), for
/// camera-pose refinement. Through the NeRF level's density and colour (the proposals' resampling is
/// a stop-gradient, as for every parameter) and the direction encoding.
#[derive(Debug, Clone, Default)]
pub struct RayGrads {
    pub o: Vec<[f32; 3]>,
    pub d: Vec<[f32; 3]>,
}

/// How samples are placed: random jitter and annealing when training.
#[derive(Debug, Clone, Copy)]
pub struct SampleMode<'a> {
    /// Per level, per ray jitter in [0,1) (training); `None` = deterministic centres.
    pub jitter: Option<&'a [Vec<f32>]>,
    /// Fraction of training done (anneals the proposal weights); 1 at render time.
    pub train_frac: f32,
}

/// One level's state after the forward pass.
#[derive(Debug, Default)]
pub struct Level {
    pub n: usize,
    pub s: Vec<f32>,
    pub t: Vec<f32>,
    pub sigma: Vec<f32>,
    pub w: Vec<f32>,
    // network inputs and caches
    pub(crate) pos: Vec<f32>,
    pub(crate) fsig: Vec<f32>,
    enc: Vec<f32>,
    raw: Vec<f32>,
    cache: MlpCache,
}

/// Forward state of the NeRF level's colour head. Its input row for a sample is
/// `[geo | dir enc | latent | exposure enc]`; all but the geometry features are constant along a
/// ray, so they are kept once per ray and the head runs as a grouped MLP ([`MlpInput`]).
#[derive(Debug, Default)]
pub struct ColorState {
    /// `[S * GEO_DIM]` geometry features per sample.
    pub geo: Vec<f32>,
    /// `[R * (color_in - GEO_DIM)]` direction encoding, latent and exposure encoding per ray.
    pub ray: Vec<f32>,
    cache: MlpCache,
    /// Colours `[S * 3]` (padded sigmoid) and their derivatives w.r.t. the logits.
    pub rgb: Vec<f32>,
    drgb: Vec<f32>,
}

/// Everything the backward pass needs.
#[derive(Debug, Default)]
pub struct Forward {
    pub levels: Vec<Level>,
    pub color: ColorState,
    pub rgb: Vec<[f32; 3]>,
    pub depth: Vec<f32>,
    pub acc: Vec<f32>,
}

/// `trunc_exp` density activation (nerfacto / torch-ngp): `exp(min(x, 15))`; its derivative is the
/// same value (the clamp is ignored in the backward, as in `TruncExp`).
#[inline]
fn trunc_exp(x: f32) -> f32 {
    x.min(15.0).exp()
}

#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// multinerf `rgb_padding`: colours are `sigmoid(x) (1 + 2p) - p`, so black and white are reached at
/// finite logits and the sigmoid does not saturate on dark backgrounds.
pub const RGB_PADDING: f32 = 0.001;

/// Padded sigmoid colour activation and its derivative.
#[inline]
pub fn color_act(x: f32) -> (f32, f32) {
    let s = sigmoid(x);
    (
        s * (1.0 + 2.0 * RGB_PADDING) - RGB_PADDING,
        (1.0 + 2.0 * RGB_PADDING) * s * (1.0 - s),
    )
}

/// The colour head's grouped input: `geo` (`[S * GEO_DIM]`) per sample, `ray` (`[R * (color_in -
/// GEO_DIM)]`) shared by the `n` samples of each ray.
fn color_head_input<'a>(geo: &'a [f32], ray: &'a [f32], n: usize) -> MlpInput<'a> {
    MlpInput {
        rows: geo,
        d_local: GEO_DIM,
        groups: ray,
        group_rows: n,
    }
}

/// Sample positions of one level: bin midpoints in distance, contracted, in grid units, with the
/// footprint of each sample (Zip-NeRF-style isotropic scale through the contraction).
fn sample_points(
    rays: &Rays,
    n: usize,
    t: &[f32],
    pos: &mut Vec<f32>,
    fsig: &mut Vec<f32>,
    contracted: bool,
) {
    let r_count = rays.len();
    pos.resize(r_count * n * 3, 0.0);
    fsig.resize(r_count * n, 0.0);
    pos.par_chunks_mut(n * 3)
        .zip(fsig.par_chunks_mut(n))
        .enumerate()
        .for_each(|(i, (p, f))| {
            let (o, d) = (rays.o[i], rays.d[i]);
            let tt = &t[i * (n + 1)..(i + 1) * (n + 1)];
            for j in 0..n {
                let tm = 0.5 * (tt[j] + tt[j + 1]);
                let x = [o[0] + d[0] * tm, o[1] + d[1] * tm, o[2] + d[2] * tm];
                let y = coord::contract(x);
                let sig = coord::grid_sigma(rays.r[i], tm, x);
                if contracted {
                    p[3 * j..3 * j + 3].copy_from_slice(&y);
                    f[j] = sig * 4.0;
                } else {
                    p[3 * j..3 * j + 3].copy_from_slice(&coord::to_grid(y));
                    f[j] = sig;
                }
            }
        });
}

/// Resample the next level's fenceposts from the previous level's histogram (multinerf
/// `Model.__call__`): dilate, anneal, inverse-CDF sample.
fn resample(
    prev: Option<(&[f32], &[f32], usize)>,
    prod_prev: usize,
    n: usize,
    r_count: usize,
    mode: &SampleMode,
    level: usize,
    s: &mut Vec<f32>,
) {
    s.resize(r_count * (n + 1), 0.0);
    let anneal = stepfun::anneal_power(mode.train_frac, 10.0);
    s.par_chunks_mut(n + 1).enumerate().for_each_init(
        || (Vec::new(), Vec::new()),
        |(td, wd), (i, out)| {
            let u0 = mode.jitter.map(|j| j[level][i]);
            match prev {
                None => stepfun::sample_intervals(&[0.0, 1.0], &[1.0], n, u0, (0.0, 1.0), out),
                Some((ps, pw, pn)) => {
                    let ts = &ps[i * (pn + 1)..(i + 1) * (pn + 1)];
                    let ws = &pw[i * pn..(i + 1) * pn];
                    let dil = stepfun::dilation(prod_prev);
                    stepfun::max_dilate_weights_into(ts, ws, dil, (0.0, 1.0), td, wd);
                    if anneal != 1.0 {
                        wd.iter_mut().for_each(|w| *w = w.max(1e-12).powf(anneal));
                    } else {
                        wd.iter_mut().for_each(|w| *w = w.max(1e-12));
                    }
                    stepfun::sample_intervals(td, wd, n, u0, (0.0, 1.0), out);
                }
            }
        },
    );
}

impl Model {
    /// Densities of proposal level `k` at the level's samples (fills the level's caches).
    fn prop_forward(&self, k: usize, lvl: &mut Level, train: bool) {
        let gcfg = &self.cfg.prop_grids[k];
        let mcfg = self.cfg.prop_mlp(k);
        let ns = lvl.pos.len() / 3;
        lvl.enc.resize(ns * gcfg.output_dim(), 0.0);
        hash_encode_forward(
            gcfg,
            &self.params[2 * k],
            &lvl.pos,
            Some(&lvl.fsig),
            &mut lvl.enc,
        );
        lvl.raw.resize(ns, 0.0);
        if train {
            mlp_forward_into(
                &mcfg,
                &self.params[2 * k + 1],
                &lvl.enc,
                &mut lvl.raw,
                &mut lvl.cache,
            );
        } else {
            mlp_forward_inference(&mcfg, &self.params[2 * k + 1], &lvl.enc, &mut lvl.raw);
        }
        lvl.sigma.resize(ns, 0.0);
        lvl.sigma
            .par_iter_mut()
            .zip(&lvl.raw)
            .for_each(|(s, &x)| *s = trunc_exp(x));
    }

    /// Density and geometry features of the NeRF level.
    fn nerf_density_forward(&self, lvl: &mut Level, train: bool) {
        let ns = lvl.pos.len() / 3;
        let g = self.idx_grid();
        let mcfg = self.cfg.density_mlp();
        match self.cfg.backbone {
            Backbone::HashGrid => {
                let gcfg = &self.cfg.nerf_grid;
                lvl.enc.resize(ns * gcfg.output_dim(), 0.0);
                hash_encode_forward(
                    gcfg,
                    &self.params[g],
                    &lvl.pos,
                    Some(&lvl.fsig),
                    &mut lvl.enc,
                );
            }
            Backbone::IpeMlp => {
                let dim = encoding::ipe_dim(IPE_DEGREES);
                lvl.enc.resize(ns * dim, 0.0);
                lvl.enc.par_chunks_mut(dim).enumerate().for_each(|(i, e)| {
                    let x = [lvl.pos[3 * i], lvl.pos[3 * i + 1], lvl.pos[3 * i + 2]];
                    encoding::ipe(x, lvl.fsig[i] * lvl.fsig[i], IPE_DEGREES, e);
                });
            }
        }
        lvl.raw.resize(ns * (1 + GEO_DIM), 0.0);
        if train {
            mlp_forward_into(
                &mcfg,
                &self.params[g + 1],
                &lvl.enc,
                &mut lvl.raw,
                &mut lvl.cache,
            );
        } else {
            mlp_forward_inference(&mcfg, &self.params[g + 1], &lvl.enc, &mut lvl.raw);
        }
        lvl.sigma.resize(ns, 0.0);
        lvl.sigma
            .par_iter_mut()
            .zip(lvl.raw.par_chunks(1 + GEO_DIM))
            .for_each(|(s, r)| *s = trunc_exp(r[0]));
    }

    /// Colour head inputs: per-sample geometry features (`[S * GEO_DIM]`, from the density
    /// MLP's output) and per-ray `[dir enc | latent | exposure enc]` rows.
    fn color_input(&self, rays: &Rays, lvl: &Level, geo: &mut Vec<f32>, ray: &mut Vec<f32>) {
        geo.resize(lvl.raw.len() / (1 + GEO_DIM) * GEO_DIM, 0.0);
        geo.par_chunks_mut(GEO_DIM * CHUNK_ROWS)
            .zip(lvl.raw.par_chunks(CHUNK_ROWS * (1 + GEO_DIM)))
            .for_each(|(g, raw)| {
                for (gr, rr) in g
                    .chunks_exact_mut(GEO_DIM)
                    .zip(raw.chunks_exact(1 + GEO_DIM))
                {
                    gr.copy_from_slice(&rr[1..]);
                }
            });
        self.ray_features(rays, ray);
    }

    /// Per-ray colour-head features `[dir enc | latent | exposure enc]`.
    fn ray_features(&self, rays: &Rays, ray: &mut Vec<f32>) {
        let w = self.cfg.color_in() - GEO_DIM;
        let gd = self.cfg.glo_dim;
        ray.resize(rays.len() * w, 0.0);
        ray.par_chunks_mut(w).enumerate().for_each(|(i, row)| {
            encoding::dir_encoding(rays.d[i], &mut row[..DIR_DIM]);
            row[DIR_DIM..DIR_DIM + gd].copy_from_slice(&rays.latent[i * gd..(i + 1) * gd]);
            if self.cfg.exposure {
                encoding::exposure_encoding(rays.ev[i], &mut row[DIR_DIM + gd..]);
            }
        });
    }

    /// Full forward pass over a batch of rays: proposal levels, resampling, NeRF level, compositing.
    pub fn forward(&self, rays: &Rays, mode: &SampleMode, train: bool) -> Forward {
        let mut fwd = Forward::default();
        self.forward_into(rays, mode, train, &mut fwd);
        fwd
    }

    /// [`Model::forward`] into a reused [`Forward`]: every buffer is resized and overwritten, so a
    /// training loop that keeps one `Forward` allocates nothing per step.
    pub fn forward_into(&self, rays: &Rays, mode: &SampleMode, train: bool, fwd: &mut Forward) {
        let r_count = rays.len();
        let near = self.near();
        let nprop = self.nprop();
        fwd.levels.resize_with(nprop + 1, Level::default);
        let mut prod = 1usize;
        for k in 0..=nprop {
            let n = if k < nprop {
                self.cfg.prop_samples[k]
            } else {
                self.cfg.nerf_samples
            };
            let (done, rest) = fwd.levels.split_at_mut(k);
            let lvl = &mut rest[0];
            lvl.n = n;
            let prev = done.last().map(|l| (l.s.as_slice(), l.w.as_slice(), l.n));
            resample(prev, prod, n, r_count, mode, k, &mut lvl.s);
            prod *= n;
            lvl.t.resize(lvl.s.len(), 0.0);
            lvl.t
                .par_iter_mut()
                .zip(&lvl.s)
                .for_each(|(t, &s)| *t = coord::s_to_t(s, near));
            let contracted = self.cfg.backbone == Backbone::IpeMlp && k == nprop;
            sample_points(rays, n, &lvl.t, &mut lvl.pos, &mut lvl.fsig, contracted);
            if k < nprop {
                self.prop_forward(k, lvl, train);
            } else {
                self.nerf_density_forward(lvl, train);
            }
            lvl.w.resize(r_count * n, 0.0);
            let (sigma, t) = (&lvl.sigma, &lvl.t);
            lvl.w.par_chunks_mut(n).enumerate().for_each(|(i, wr)| {
                composite::weights(
                    &sigma[i * n..(i + 1) * n],
                    &t[i * (n + 1)..(i + 1) * (n + 1)],
                    wr,
                );
            });
        }
        // Colour head on the NeRF level.
        let lvl = fwd.levels.last().expect("at least one level");
        let color = &mut fwd.color;
        self.color_input(rays, lvl, &mut color.geo, &mut color.ray);
        let ccfg = self.cfg.color_mlp();
        let n = lvl.n;
        let ns = r_count * n;
        let cidx = self.idx_grid() + 2;
        let input = color_head_input(&color.geo, &color.ray, n);
        // The logits go into `drgb` and are replaced by the activation's derivative below.
        color.drgb.resize(ns * 3, 0.0);
        if train {
            mlp_forward_grouped_into(
                &ccfg,
                &self.params[cidx],
                &input,
                &mut color.drgb,
                &mut color.cache,
            );
        } else {
            mlp_forward_grouped_inference(&ccfg, &self.params[cidx], &input, &mut color.drgb);
        }
        color.rgb.resize(ns * 3, 0.0);
        color
            .rgb
            .par_iter_mut()
            .zip(color.drgb.par_iter_mut())
            .for_each(|(c, d)| (*c, *d) = color_act(*d));
        fwd.rgb.resize(r_count, [0.0; 3]);
        fwd.depth.resize(r_count, 0.0);
        fwd.acc.resize(r_count, 0.0);
        let rgb = &color.rgb;
        fwd.rgb
            .par_iter_mut()
            .zip(fwd.depth.par_iter_mut())
            .zip(fwd.acc.par_iter_mut())
            .enumerate()
            .for_each(|(i, ((c, d), a))| {
                (*c, *d, *a) = composite::composite(
                    &lvl.w[i * n..(i + 1) * n],
                    &rgb[i * n * 3..(i + 1) * n * 3],
                    &lvl.t[i * (n + 1)..(i + 1) * (n + 1)],
                );
            });
    }

    pub fn near(&self) -> f32 {
        self.near
    }
}

/// Per-ray origin and direction gradients from the NeRF level's sample-position gradients `d_pos`
/// (grid units, `[S * 3]`) and the colour head's per-ray input gradients `d_ray` (rows of `rw`, the
/// direction encoding first).
fn ray_gradients(
    rays: &Rays,
    lvl: &Level,
    d_pos: &[f32],
    d_ray: &[f32],
    rw: usize,
    out: &mut RayGrads,
) {
    let n = lvl.n;
    let r_count = rays.len();
    out.o.resize(r_count, [0.0; 3]);
    out.d.resize(r_count, [0.0; 3]);
    out.o
        .par_iter_mut()
        .zip(out.d.par_iter_mut())
        .enumerate()
        .for_each(|(i, (go, gd))| {
            let (o, d) = (rays.o[i], rays.d[i]);
            let t = &lvl.t[i * (n + 1)..(i + 1) * (n + 1)];
            let (mut so, mut sd) = ([0f32; 3], [0f32; 3]);
            for j in 0..n {
                let tm = 0.5 * (t[j] + t[j + 1]);
                let x = [o[0] + d[0] * tm, o[1] + d[1] * tm, o[2] + d[2] * tm];
                let gp = &d_pos[3 * (i * n + j)..3 * (i * n + j) + 3];
                let gx = coord::contract_vjp(x, [0.25 * gp[0], 0.25 * gp[1], 0.25 * gp[2]]);
                for a in 0..3 {
                    so[a] += gx[a];
                    sd[a] += tm * gx[a];
                }
            }
            let ge = encoding::dir_encoding_vjp(d, &d_ray[i * rw..i * rw + DIR_DIM]);
            *go = so;
            *gd = [sd[0] + ge[0], sd[1] + ge[1], sd[2] + ge[2]];
        });
}

/// Weights of the regularisers.
#[derive(Debug, Clone, Copy)]
pub struct LossWeights {
    pub distortion: f32,
    pub interlevel: f32,
}

/// Loss terms of a batch (means as in multinerf) and the batch MSE.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Losses {
    pub data: f64,
    pub distortion: f64,
    pub interlevel: f64,
    pub mse: f64,
}

impl Losses {
    pub fn total(&self, lw: &LossWeights) -> f64 {
        self.data + lw.distortion as f64 * self.distortion + lw.interlevel as f64 * self.interlevel
    }
}

impl Model {
    /// Backward pass of `Charbonnier(rgb, target) + distortion + interlevel` (multinerf's loss with
    /// `data_coarse_loss_mult = 0`): accumulates parameter gradients into `grads` (same layout as
    /// `params`) and, if given, the per-ray latent gradients into `d_latent` (`[R * glo_dim]`, added).
    /// The proposal levels receive gradient only from the interlevel loss (stop-gradient on the NeRF
    /// histogram and on the resampling, as in multinerf).
    pub fn backward(
        &self,
        rays: &Rays,
        fwd: &Forward,
        target: &[[f32; 3]],
        lw: &LossWeights,
        grads: &mut [Vec<f32>],
        d_latent: Option<&mut [f32]>,
    ) -> Losses {
        self.backward_with_rays(rays, fwd, target, lw, grads, d_latent, None)
    }

    /// [`Model::backward`] that also writes the per-ray origin and direction gradients into
    /// `d_rays` when given (hash-grid backbone; left empty for the IPE backbone). A sample at
    /// `x = o + t d` (bin midpoint `t`) enters the grid at `(contract(x) + 2) / 4`, so
    /// `dL/dx = J_contract(x)^T dL/dgrid / 4` ([`kernels::hash_encode_backward_positions`] for
    /// `dL/dgrid`), `dL/do = sum dL/dx`, `dL/dd = sum t dL/dx` plus the direction encoding's part.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_with_rays(
        &self,
        rays: &Rays,
        fwd: &Forward,
        target: &[[f32; 3]],
        lw: &LossWeights,
        grads: &mut [Vec<f32>],
        d_latent: Option<&mut [f32]>,
        d_rays: Option<&mut RayGrads>,
    ) -> Losses {
        let r_count = rays.len();
        let nprop = self.nprop();
        let nl = &fwd.levels[nprop];
        let n = nl.n;
        let inv_r = 1.0 / r_count as f32;
        // --- NeRF level: per-ray data + distortion loss, gradients w.r.t. sigma and sample colours.
        let mut g_sigma = vec![0.0f32; r_count * n];
        let mut g_out = vec![0.0f32; r_count * n * 3];
        let per_ray: Vec<(f64, f64, f64)> = g_sigma
            .par_chunks_mut(n)
            .zip(g_out.par_chunks_mut(n * 3))
            .enumerate()
            .map(|(i, (gs, go))| {
                let w = &nl.w[i * n..(i + 1) * n];
                let s = &nl.s[i * (n + 1)..(i + 1) * (n + 1)];
                let t = &nl.t[i * (n + 1)..(i + 1) * (n + 1)];
                let rgb = &fwd.color.rgb[i * n * 3..(i + 1) * n * 3];
                let drgb = &fwd.color.drgb[i * n * 3..(i + 1) * n * 3];
                let mut gc = [0.0f32; 3];
                let mut data = 0.0f64;
                let mut se = 0.0f64;
                for k in 0..3 {
                    let r = fwd.rgb[i][k] - target[i][k];
                    let (v, dv) = composite::charbonnier(r);
                    data += v as f64;
                    se += (r * r) as f64;
                    gc[k] = dv * inv_r / 3.0;
                }
                let mut gw = vec![0.0f32; n];
                let dist = stepfun::distortion_loss(s, w, lw.distortion * inv_r, &mut gw);
                for j in 0..n {
                    let c = &rgb[3 * j..3 * j + 3];
                    gw[j] += gc[0] * c[0] + gc[1] * c[1] + gc[2] * c[2];
                    for k in 0..3 {
                        go[3 * j + k] = gc[k] * w[j] * drgb[3 * j + k];
                    }
                }
                composite::weights_backward(&nl.sigma[i * n..(i + 1) * n], t, w, &gw, gs);
                (data, dist as f64, se)
            })
            .collect();
        let mut losses = Losses::default();
        for (d, di, se) in &per_ray {
            losses.data += d;
            losses.distortion += di;
            losses.mse += se;
        }
        losses.data /= (3 * r_count) as f64;
        losses.distortion /= r_count as f64;
        losses.mse /= (3 * r_count) as f64;

        // --- Colour head backward.
        let gidx = self.idx_grid();
        let rw = self.cfg.color_in() - GEO_DIM;
        let ns = r_count * n;
        let mut d_geo = vec![0.0f32; ns * GEO_DIM];
        let mut d_ray = vec![0.0f32; r_count * rw];
        let ccfg = self.cfg.color_mlp();
        let input = color_head_input(&fwd.color.geo, &fwd.color.ray, n);
        mlp_backward_grouped(
            &ccfg,
            &self.params[gidx + 2],
            &input,
            &fwd.color.cache,
            &g_out,
            &mut grads[gidx + 2],
            Some(&mut d_geo),
            Some(&mut d_ray),
        );
        let gd = self.cfg.glo_dim;
        if let Some(dl) = d_latent
            && gd > 0
        {
            for (dli, row) in dl.chunks_exact_mut(gd).zip(d_ray.chunks_exact(rw)) {
                for (a, b) in dli.iter_mut().zip(&row[DIR_DIM..DIR_DIM + gd]) {
                    *a += b;
                }
            }
        }
        // --- Density MLP backward: d raw = [g_sigma * sigma, d geo].
        let mut d_raw = vec![0.0f32; ns * (1 + GEO_DIM)];
        d_raw
            .par_chunks_mut(1 + GEO_DIM)
            .enumerate()
            .for_each(|(i, dr)| {
                dr[0] = g_sigma[i] * nl.sigma[i];
                dr[1..].copy_from_slice(&d_geo[i * GEO_DIM..(i + 1) * GEO_DIM]);
            });
        drop(d_geo);
        let dcfg = self.cfg.density_mlp();
        match self.cfg.backbone {
            Backbone::HashGrid => {
                let mut d_enc = vec![0.0f32; nl.enc.len()];
                mlp_backward(
                    &dcfg,
                    &self.params[gidx + 1],
                    &nl.enc,
                    &nl.cache,
                    &d_raw,
                    &mut grads[gidx + 1],
                    Some(&mut d_enc),
                );
                hash_encode_backward(
                    &self.cfg.nerf_grid,
                    &nl.pos,
                    Some(&nl.fsig),
                    &d_enc,
                    &mut grads[gidx],
                );
                if let Some(dr) = d_rays {
                    let mut d_pos = vec![0.0f32; nl.pos.len()];
                    hash_encode_backward_positions(
                        &self.cfg.nerf_grid,
                        &self.params[gidx],
                        &nl.pos,
                        Some(&nl.fsig),
                        &d_enc,
                        &mut d_pos,
                    );
                    ray_gradients(rays, nl, &d_pos, &d_ray, rw, dr);
                }
            }
            Backbone::IpeMlp => {
                mlp_backward(
                    &dcfg,
                    &self.params[gidx + 1],
                    &nl.enc,
                    &nl.cache,
                    &d_raw,
                    &mut grads[gidx + 1],
                    None,
                );
            }
        }

        // --- Proposal levels: interlevel loss against the (fixed) NeRF histogram.
        let scale = lw.interlevel / (r_count * n) as f32;
        for k in 0..nprop {
            let pl = &fwd.levels[k];
            let m = pl.n;
            let mut gsig = vec![0.0f32; r_count * m];
            let li: f64 = gsig
                .par_chunks_mut(m)
                .enumerate()
                .map_init(Vec::new, |gw, (i, gs)| {
                    gw.clear();
                    gw.resize(m, 0.0);
                    let l = stepfun::interlevel_loss(
                        &nl.s[i * (n + 1)..(i + 1) * (n + 1)],
                        &nl.w[i * n..(i + 1) * n],
                        &pl.s[i * (m + 1)..(i + 1) * (m + 1)],
                        &pl.w[i * m..(i + 1) * m],
                        scale,
                        gw,
                    );
                    composite::weights_backward(
                        &pl.sigma[i * m..(i + 1) * m],
                        &pl.t[i * (m + 1)..(i + 1) * (m + 1)],
                        &pl.w[i * m..(i + 1) * m],
                        gw,
                        gs,
                    );
                    l as f64
                })
                .sum();
            losses.interlevel += li / (r_count * n) as f64;
            let d_raw: Vec<f32> = gsig.par_iter().zip(&pl.sigma).map(|(g, s)| g * s).collect();
            let mut d_enc = vec![0.0f32; pl.enc.len()];
            let (a, b) = grads.split_at_mut(2 * k + 1);
            mlp_backward(
                &self.cfg.prop_mlp(k),
                &self.params[2 * k + 1],
                &pl.enc,
                &pl.cache,
                &d_raw,
                &mut b[0],
                Some(&mut d_enc),
            );
            hash_encode_backward(
                &self.cfg.prop_grids[k],
                &pl.pos,
                Some(&pl.fsig),
                &d_enc,
                &mut a[2 * k],
            );
        }
        losses
    }
}

impl Model {
    /// NeRF-W evaluation protocol: optimise one latent (starting at `init`) so that the rays' colours
    /// match `target`, with the network fixed. The density does not depend on the latent, so the
    /// proposal and density passes run once and only the colour head is iterated (Adam, MSE).
    pub fn optimize_latent(
        &self,
        rays: &Rays,
        target: &[[f32; 3]],
        init: &[f32],
        steps: usize,
        lr: f32,
    ) -> Vec<f32> {
        let gd = self.cfg.glo_dim;
        let mut z = init.to_vec();
        if gd == 0 || steps == 0 || rays.is_empty() {
            return z;
        }
        let mode = SampleMode {
            jitter: None,
            train_frac: 1.0,
        };
        let mut fwd = self.forward(rays, &mode, false);
        let r_count = rays.len();
        let lvl = fwd.levels.pop().expect("NeRF level");
        let n = lvl.n;
        let ccfg = self.cfg.color_mlp();
        let cidx = self.idx_grid() + 2;
        let mut adam = crate::kernels::Adam::new(
            gd,
            crate::kernels::AdamConfig {
                beta1: 0.9,
                beta2: 0.99,
                eps: 1e-15,
            },
        );
        let rw = self.cfg.color_in() - GEO_DIM;
        let mut rays_z = rays.clone();
        let mut geo = Vec::new();
        let mut ray = Vec::new();
        self.color_input(rays, &lvl, &mut geo, &mut ray);
        let mut out = vec![0.0f32; r_count * n * 3];
        let mut cache = MlpCache::default();
        let mut d_ray = vec![0.0f32; r_count * rw];
        let mut dummy = vec![0.0f32; self.params[cidx].len()];
        for _ in 0..steps {
            for i in 0..r_count {
                rays_z.latent[i * gd..(i + 1) * gd].copy_from_slice(&z);
            }
            self.ray_features(&rays_z, &mut ray);
            let input = color_head_input(&geo, &ray, n);
            mlp_forward_grouped_into(&ccfg, &self.params[cidx], &input, &mut out, &mut cache);
            let mut g_out = vec![0.0f32; r_count * n * 3];
            g_out.par_chunks_mut(n * 3).enumerate().for_each(|(i, go)| {
                let w = &lvl.w[i * n..(i + 1) * n];
                let mut c = [0.0f32; 3];
                for j in 0..n {
                    for k in 0..3 {
                        c[k] += w[j] * color_act(out[(i * n + j) * 3 + k]).0;
                    }
                }
                for k in 0..3 {
                    let g = 2.0 * (c[k] - target[i][k]) / (3 * r_count) as f32;
                    for j in 0..n {
                        go[3 * j + k] = g * w[j] * color_act(out[(i * n + j) * 3 + k]).1;
                    }
                }
            });
            mlp_backward_grouped(
                &ccfg,
                &self.params[cidx],
                &input,
                &cache,
                &g_out,
                &mut dummy,
                None,
                Some(&mut d_ray),
            );
            let mut gz = vec![0.0f32; gd];
            for row in d_ray.chunks(rw) {
                for (a, b) in gz.iter_mut().zip(&row[DIR_DIM..DIR_DIM + gd]) {
                    *a += b;
                }
            }
            adam.update(&mut z, &gz, lr);
        }
        z
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Adam;
    use rand::{Rng, SeedableRng};

    /// [`ModelConfig::param_shapes`] (what a checkpoint is checked against) is what [`Model::new`]
    /// allocates, for both backbones, with and without pose refinement.
    #[test]
    fn param_shapes_are_what_the_model_allocates() {
        for (backbone, pose_lr) in [
            (Backbone::HashGrid, 0.0),
            (Backbone::HashGrid, 1e-4),
            (Backbone::IpeMlp, 0.0),
        ] {
            let tc = flythrough_core::config::TrainConfig {
                backbone,
                pose_lr,
                hash_levels: 4,
                hash_table_log2: 10,
                ..Default::default()
            };
            let m = Model::new(ModelConfig::from_train(&tc, 3), 0.05, 0);
            let shapes = m.cfg.param_shapes().unwrap();
            let got: Vec<(String, usize)> = m
                .names
                .iter()
                .cloned()
                .zip(m.params.iter().map(Vec::len))
                .collect();
            assert_eq!(shapes, got, "{backbone:?}, pose_lr {pose_lr}");
        }
    }

    /// Both backbones fit a fixed batch (colour depends on the ray): the loss falls by half in 60 steps.
    #[test]
    fn both_backbones_fit_a_fixed_batch() {
        for backbone in [Backbone::HashGrid, Backbone::IpeMlp] {
            let tc = flythrough_core::config::TrainConfig {
                backbone,
                prop_samples: vec![16, 16],
                nerf_samples: 16,
                hash_levels: 8,
                hash_table_log2: 14,
                hash_max_res: 128,
                mlp_width: 32,
                ipe_width: 32,
                glo_dim: 2,
                ..Default::default()
            };
            let mut model = Model::new(ModelConfig::from_train(&tc, 1), 0.2, 3);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
            let r = 256;
            let mut rays = Rays::default();
            let mut target = Vec::new();
            for _ in 0..r {
                let d: [f32; 3] = [
                    rng.random_range(-1.0..1.0),
                    rng.random_range(-1.0..1.0),
                    rng.random_range(-1.0..1.0),
                ];
                let l = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
                let d = [d[0] / l, d[1] / l, d[2] / l];
                rays.o.push([0.0; 3]);
                rays.d.push(d);
                rays.r.push(0.002);
                rays.ev.push(0.0);
                rays.latent.extend([0.0, 0.0]);
                target.push([0.5 + 0.4 * d[0], 0.5 + 0.4 * d[1], 0.3]);
            }
            let mut adams: Vec<Adam> = model
                .params
                .iter()
                .map(|p| Adam::new(p.len(), crate::train::ADAM))
                .collect();
            let lw = LossWeights {
                distortion: 0.01,
                interlevel: 1.0,
            };
            let mut first = 0.0;
            let mut last = 0.0;
            for step in 0..60 {
                let mode = SampleMode {
                    jitter: None,
                    train_frac: step as f32 / 60.0,
                };
                let fwd = model.forward(&rays, &mode, true);
                let mut grads = model.zeros_like();
                let l = model.backward(&rays, &fwd, &target, &lw, &mut grads, None);
                if step == 0 {
                    first = l.data;
                }
                last = l.data;
                for ((p, g), a) in model.params.iter_mut().zip(&grads).zip(adams.iter_mut()) {
                    if !p.is_empty() {
                        a.update(p, g, 5e-3);
                    }
                }
            }
            assert!(
                last < 0.5 * first,
                "{backbone}: data loss {first} -> {last}"
            );
        }
    }

    /// The ray gradients (for camera-pose refinement) against central differences of the loss when
    /// every ray's origin (direction) is moved by `h e`: with constant proposal densities (so the
    /// resampling does not move), point samples (`r = 0`) and no interlevel loss, the loss depends on
    /// the rays only through what `backward_with_rays` differentiates.
    #[test]
    fn ray_gradients_match_finite_differences() {
        let tc = flythrough_core::config::TrainConfig {
            prop_samples: vec![16, 16],
            nerf_samples: 24,
            hash_levels: 6,
            hash_table_log2: 14,
            hash_max_res: 64,
            mlp_width: 32,
            glo_dim: 2,
            ..Default::default()
        };
        let mut model = Model::new(ModelConfig::from_train(&tc, 1), 0.1, 4);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        let r = 512;
        let mut rays = Rays::default();
        let mut target = Vec::new();
        for _ in 0..r {
            let v: [f32; 3] = std::array::from_fn(|_| rng.random_range(-1.0f32..1.0));
            let l = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
            let d = [v[0] / l, v[1] / l, v[2] / l];
            rays.o
                .push(std::array::from_fn(|_| rng.random_range(-0.3f32..0.3)));
            rays.d.push(d);
            rays.r.push(0.0);
            rays.ev.push(0.0);
            rays.latent.extend([0.1, -0.2]);
            target.push([0.5 + 0.4 * d[0], 0.5 + 0.4 * d[1], 0.3 + 0.3 * d[2]]);
        }
        // A field with structure: random grid features larger than the init.
        let g = model.idx_grid();
        for v in model.params[g].iter_mut() {
            *v = rng.random_range(-0.5f32..0.5);
        }
        // Constant proposal densities: zero proposal MLPs.
        for k in 0..2 {
            model.params[2 * k + 1].iter_mut().for_each(|v| *v = 0.0);
        }
        let lw = LossWeights {
            distortion: 0.01,
            interlevel: 0.0,
        };
        let mode = SampleMode {
            jitter: None,
            train_frac: 1.0,
        };
        let loss = |rays: &Rays| {
            let fwd = model.forward(rays, &mode, true);
            let mut grads = model.zeros_like();
            model
                .backward(rays, &fwd, &target, &lw, &mut grads, None)
                .total(&lw)
        };
        let fwd = model.forward(&rays, &mode, true);
        let mut grads = model.zeros_like();
        let mut dr = RayGrads::default();
        model.backward_with_rays(&rays, &fwd, &target, &lw, &mut grads, None, Some(&mut dr));
        // Move every ray along its own gradient (the stacked gradient's direction, step norm h):
        // the directional derivative is the stacked gradient's norm, a sum without cancellation.
        let h: f32 = 1e-3;
        let tangent = |g: &[f32; 3], d: &[f32; 3]| {
            let gd = g[0] * d[0] + g[1] * d[1] + g[2] * d[2];
            [g[0] - gd * d[0], g[1] - gd * d[1], g[2] - gd * d[2]]
        };
        let norm = |v: &[[f32; 3]]| {
            v.iter()
                .map(|g| (g[0] * g[0] + g[1] * g[1] + g[2] * g[2]) as f64)
                .sum::<f64>()
                .sqrt()
        };
        let go_norm = norm(&dr.o);
        let shift = |s: f32| {
            let mut q = rays.clone();
            for (o, g) in q.o.iter_mut().zip(&dr.o) {
                (0..3).for_each(|a| o[a] += s * g[a] / go_norm as f32);
            }
            q
        };
        let fd = (loss(&shift(h)) - loss(&shift(-h))) / (2.0 * h as f64);
        assert!(
            (fd / go_norm - 1.0).abs() < 0.03,
            "origins: |dL/do| {go_norm} vs differences {fd}"
        );
        let gt: Vec<[f32; 3]> =
            dr.d.iter()
                .zip(&rays.d)
                .map(|(g, d)| tangent(g, d))
                .collect();
        let gd_norm = norm(&gt);
        let turn = |s: f32| {
            let mut q = rays.clone();
            for (d, g) in q.d.iter_mut().zip(&gt) {
                let v: [f32; 3] = std::array::from_fn(|a| d[a] + s * g[a] / gd_norm as f32);
                let l = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
                *d = [v[0] / l, v[1] / l, v[2] / l];
            }
            q
        };
        let fd = (loss(&turn(h)) - loss(&turn(-h))) / (2.0 * h as f64);
        assert!(
            (fd / gd_norm - 1.0).abs() < 0.03,
            "directions: |dL/dd| {gd_norm} vs differences {fd}"
        );
    }
}
