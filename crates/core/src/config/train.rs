//! `[train]` — owned by the NeRF stage (`crates/nerf`, see its README for the model these keys drive).
use super::{Device, KeyDoc, ensure};
use serde::{Deserialize, Serialize};

/// `[train] backbone`: the NeRF field's backbone (stored in checkpoints with the same spelling).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backbone {
    /// Anti-aliased multiresolution hash grid + small MLP (fast).
    #[default]
    HashGrid,
    /// mip-NeRF 360 integrated positional encoding + MLP (slow on a CPU).
    IpeMlp,
}

/// `[train]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// A machine setting ([`crate::Machine`]): read by the stages only from there, never serialised
    /// with the section, so it is in no stage's hash and is printed by [`super::Config::documented`]
    /// as a machine key.
    #[serde(skip_serializing)]
    pub device: Device,
    pub steps: usize,
    pub max_seconds: f64,
    pub seed: u64,
    pub holdout_every: usize,
    pub glo_dim: usize,
    pub exposure_conditioning: bool,
    pub checkpoint_every: usize,
    pub checkpoint_seconds: f64,
    pub image_downscale: u32,
    pub backbone: Backbone,
    pub batch_rays: usize,
    pub prop_samples: Vec<usize>,
    pub nerf_samples: usize,
    pub lr_init: f64,
    pub lr_final: f64,
    pub lr_warmup_steps: usize,
    pub grad_max_norm: f64,
    pub distortion_weight: f64,
    pub interlevel_weight: f64,
    pub hash_levels: usize,
    pub hash_table_log2: u32,
    pub hash_max_res: usize,
    pub mlp_width: usize,
    pub ipe_width: usize,
    pub near: f64,
    pub metrics_every: usize,
    pub eval_downscale: u32,
    pub glo_eval_steps: usize,
    pub train_max_side: u32,
    pub skip_blurry: bool,
    pub eval_max_photos: usize,
    pub pose_lr: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            device: Device::Auto,
            steps: 1500,
            max_seconds: 270.0,
            seed: 0,
            holdout_every: 8,
            glo_dim: 32,
            exposure_conditioning: true,
            checkpoint_every: 0,
            checkpoint_seconds: 60.0,
            image_downscale: 0,
            backbone: Backbone::HashGrid,
            batch_rays: 2048,
            prop_samples: vec![64, 64],
            nerf_samples: 32,
            lr_init: 3e-3,
            lr_final: 3e-4,
            lr_warmup_steps: 50,
            grad_max_norm: 0.0,
            distortion_weight: 0.01,
            interlevel_weight: 1.0,
            hash_levels: 16,
            hash_table_log2: 19,
            hash_max_res: 2048,
            mlp_width: 64,
            ipe_width: 128,
            near: 0.0,
            metrics_every: 10,
            eval_downscale: 0,
            glo_eval_steps: 32,
            train_max_side: 1600,
            skip_blurry: false,
            eval_max_photos: 8,
            pose_lr: 0.0,
        }
    }
}

pub(super) const DOCS: &[KeyDoc] = &[
    ("device", super::device::DOC),
    ("steps", "Training steps (optimizer updates)."),
    (
        "max_seconds",
        "Stop training after this many seconds of wall time even if steps remain (0 = no limit).\nThe learning-rate schedule is stretched over whichever budget ends first.",
    ),
    (
        "seed",
        "Random seed (ray sampling, initialisation): runs with the same seed are repeatable.",
    ),
    (
        "holdout_every",
        "Every n-th photo (0-based index 0, n, 2n, ... of the sorted names) is held out for evaluation (0 = none).",
    ),
    (
        "glo_dim",
        "Dimension of the per-photo appearance (GLO, NeRF-W) latent fed to the colour head; 0 disables it.",
    ),
    (
        "exposure_conditioning",
        "Feed each photo's exposure value (EV from EXIF, Block-NeRF style sinusoidal encoding) to the colour head.",
    ),
    (
        "checkpoint_every",
        "Also write a resume checkpoint every this many steps (0 = by time only, see checkpoint_seconds).",
    ),
    (
        "checkpoint_seconds",
        "Write a resume checkpoint when this many seconds have passed since the last one (0 = not by time);\ntraining resumes from the last checkpoint after a kill. A background thread writes it while training\ngoes on; the end of training always writes one.",
    ),
    (
        "image_downscale",
        "Training resolution: 0 = automatic (the photos are downscaled so that the training pixels\nnumber about the rays trained in `steps`, never below a 480-px long side nor above\ntrain_max_side; see crates/nerf/README.md); n >= 1 = downscale by this integer factor (1 = full size).",
    ),
    (
        "backbone",
        "Field backbone: \"hash-grid\" (anti-aliased multiresolution hash grid + small MLP, fast) or\n\"ipe-mlp\" (mip-NeRF 360 integrated positional encoding + MLP, slow on a CPU).",
    ),
    (
        "batch_rays",
        "Rays per training step (random pixels over all training photos).",
    ),
    (
        "prop_samples",
        "Samples per ray of each proposal level (mip-NeRF 360: two levels of 64).",
    ),
    (
        "nerf_samples",
        "Samples per ray of the final NeRF level (mip-NeRF 360: 32).",
    ),
    (
        "lr_init",
        "Adam learning rate after warm-up (decays log-linearly to lr_final).",
    ),
    ("lr_final", "Adam learning rate at the last step."),
    (
        "lr_warmup_steps",
        "Warm-up steps: the rate ramps from 1% of lr_init by a sine (multinerf lr_delay).",
    ),
    (
        "grad_max_norm",
        "Clip the global gradient norm to this value (0 = no clipping).",
    ),
    (
        "distortion_weight",
        "Weight of the mip-NeRF 360 distortion loss (Eq. 15).",
    ),
    (
        "interlevel_weight",
        "Weight of the proposal (interlevel) loss that distils the NeRF weights into the proposals.",
    ),
    (
        "hash_levels",
        "Levels of the NeRF hash grid (2 features each).",
    ),
    (
        "hash_table_log2",
        "log2 of the hash-table size per level of the NeRF grid.",
    ),
    (
        "hash_max_res",
        "Finest grid resolution of the NeRF hash grid (the coarsest is 16).",
    ),
    (
        "mlp_width",
        "Width of the density and colour MLPs of the hash-grid backbone.",
    ),
    ("ipe_width", "Width of the MLP of the ipe-mlp backbone."),
    (
        "near",
        "Near plane in the normalised scene frame (0 = automatic, from the sparse points' depths).",
    ),
    (
        "metrics_every",
        "Write a metrics.jsonl line every this many steps.",
    ),
    (
        "eval_downscale",
        "Evaluation resolution of the held-out photos: 0 = automatic (the evaluated pixels are at most a\nquarter of the rays trained, so evaluation takes well under a fifth of the training time);\nn >= 1 = the training resolution downscaled by n (1 = full training resolution).",
    ),
    (
        "glo_eval_steps",
        "Steps of latent optimisation on a held-out photo's left half (NeRF-W evaluation protocol).",
    ),
    (
        "train_max_side",
        "Largest long side (px) of a training photo when image_downscale = 0 (automatic).",
    ),
    (
        "skip_blurry",
        "Leave photos that capture's QA flagged blurry (capture/qa.json) out of training (held-out\nphotos are still scored).",
    ),
    (
        "eval_max_photos",
        "Score at most this many held-out photos, spread evenly over them (0 = all).",
    ),
    (
        "pose_lr",
        "Camera pose refinement during training (nerfacto-style SE(3) correction per training photo):\nits Adam learning rate, decayed like the model's (0 = off).",
    ),
];

impl TrainConfig {
    pub(super) fn check(&self) -> Result<(), String> {
        ensure(self.steps >= 1, "steps", self.steps, "must be at least 1")?;
        ensure(
            self.holdout_every != 1,
            "holdout_every",
            self.holdout_every,
            "1 would hold out every photo and leave none to train on: use 0 (none) or >= 2",
        )?;
        ensure(
            self.max_seconds >= 0.0,
            "max_seconds",
            self.max_seconds,
            "must be >= 0",
        )?;
        ensure(
            self.image_downscale <= 64,
            "image_downscale",
            self.image_downscale,
            "must be in 0..=64 (0 = automatic)",
        )?;
        ensure(
            (16..=16384).contains(&self.train_max_side),
            "train_max_side",
            self.train_max_side,
            "must be in 16..=16384",
        )?;
        ensure(
            self.checkpoint_seconds.is_finite() && self.checkpoint_seconds >= 0.0,
            "checkpoint_seconds",
            self.checkpoint_seconds,
            "must be >= 0 (0 = not by time)",
        )?;
        ensure(
            (1..=1 << 20).contains(&self.batch_rays),
            "batch_rays",
            self.batch_rays,
            "must be in 1..=1048576",
        )?;
        ensure(
            !self.prop_samples.is_empty()
                && self.prop_samples.iter().all(|&n| (2..=1024).contains(&n)),
            "prop_samples",
            &self.prop_samples,
            "must list at least one proposal level, each with 2..=1024 samples",
        )?;
        ensure(
            (2..=1024).contains(&self.nerf_samples),
            "nerf_samples",
            self.nerf_samples,
            "must be in 2..=1024",
        )?;
        ensure(
            self.lr_init > 0.0 && self.lr_init <= 1.0,
            "lr_init",
            self.lr_init,
            "must be in (0, 1]",
        )?;
        ensure(
            self.lr_final > 0.0 && self.lr_final <= self.lr_init,
            "lr_final",
            self.lr_final,
            "must be in (0, lr_init]",
        )?;
        ensure(
            self.grad_max_norm >= 0.0,
            "grad_max_norm",
            self.grad_max_norm,
            "must be >= 0",
        )?;
        ensure(
            self.distortion_weight >= 0.0,
            "distortion_weight",
            self.distortion_weight,
            "must be >= 0",
        )?;
        ensure(
            self.interlevel_weight >= 0.0,
            "interlevel_weight",
            self.interlevel_weight,
            "must be >= 0",
        )?;
        ensure(
            (1..=32).contains(&self.hash_levels),
            "hash_levels",
            self.hash_levels,
            "must be in 1..=32",
        )?;
        ensure(
            (10..=24).contains(&self.hash_table_log2),
            "hash_table_log2",
            self.hash_table_log2,
            "must be in 10..=24",
        )?;
        ensure(
            (16..=16384).contains(&self.hash_max_res),
            "hash_max_res",
            self.hash_max_res,
            "must be in 16..=16384",
        )?;
        ensure(
            (8..=512).contains(&self.mlp_width),
            "mlp_width",
            self.mlp_width,
            "must be in 8..=512",
        )?;
        ensure(
            (8..=1024).contains(&self.ipe_width),
            "ipe_width",
            self.ipe_width,
            "must be in 8..=1024",
        )?;
        ensure(
            self.near >= 0.0,
            "near",
            self.near,
            "must be >= 0 (0 = automatic)",
        )?;
        ensure(
            self.metrics_every >= 1,
            "metrics_every",
            self.metrics_every,
            "must be at least 1",
        )?;
        ensure(
            (0.0..=0.1).contains(&self.pose_lr),
            "pose_lr",
            self.pose_lr,
            "must be in [0, 0.1] (0 = off)",
        )?;
        ensure(
            self.eval_downscale <= 64,
            "eval_downscale",
            self.eval_downscale,
            "must be in 0..=64 (0 = automatic)",
        )?;
        ensure(
            self.glo_eval_steps <= 10000,
            "glo_eval_steps",
            self.glo_eval_steps,
            "must be at most 10000",
        )
    }
}
