//! `[bake]` — owned by the bake stage (`crates/bake`).
use super::{KeyDoc, ensure};
use serde::{Deserialize, Serialize};

/// `[bake]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BakeConfig {
    pub resolution: usize,
    pub min_weight: f64,
    pub cull_rays: usize,
    pub finetune_steps: usize,
    pub finetune_batch_rays: usize,
    pub finetune_lr_features: f64,
    pub finetune_lr_density: f64,
    pub finetune_lr_head: f64,
    pub finetune_distortion: f64,
    pub memory_budget_gb: f64,
}

impl Default for BakeConfig {
    fn default() -> Self {
        BakeConfig {
            resolution: 256,
            min_weight: 0.005,
            cull_rays: 400_000,
            finetune_steps: 1500,
            finetune_batch_rays: 4096,
            finetune_lr_features: 0.03,
            finetune_lr_density: 0.01,
            finetune_lr_head: 3e-3,
            finetune_distortion: 0.01,
            memory_budget_gb: 8.0,
        }
    }
}

pub(super) const DOCS: &[KeyDoc] = &[
    (
        "resolution",
        "Voxels per side of the baked grid over the contracted space [-2, 2]^3 (a multiple of 8,\n16..=1024). 256: 1/64 of the unit ball per voxel; memory and bake time grow with its cube.",
    ),
    (
        "min_weight",
        "Blocks of the grid that no training ray composites with at least this weight are dropped\n(visibility culling, as MERF): space the photos never saw is not stored.",
    ),
    (
        "cull_rays",
        "Training-photo rays marched for the visibility culling (spread over every photo).",
    ),
    (
        "finetune_steps",
        "Adam steps of fine-tuning the baked grid and colour head on the training photos, with the\n8-bit quantisation in the loop (MERF). 0: the grid as sampled from the NeRF.",
    ),
    ("finetune_batch_rays", "Training rays per fine-tuning step."),
    (
        "finetune_lr_features",
        "Fine-tuning learning rate of the geometry features, as a fraction of each channel's 8-bit\nrange per step (decayed to a tenth by the last step).",
    ),
    (
        "finetune_lr_density",
        "Fine-tuning learning rate of the pre-activation density, as a fraction of its 8-bit range\n(25 units of log-density) per step. 0: the geometry stays as baked.",
    ),
    (
        "finetune_lr_head",
        "Fine-tuning learning rate of the colour head's weights (Adam).",
    ),
    (
        "finetune_distortion",
        "Weight of mip-NeRF 360's distortion loss on each ray's weights during fine-tuning: thinner\nsurfaces, fewer grid lookups per ray (faster rendering), at some cost in PSNR. 0: none.",
    ),
    (
        "memory_budget_gb",
        "Most memory (GB) the bake may use at its peak (sampling and fine-tuning, about 200 KB per\nstored 8^3 block): checked before the fine grid is allocated; the bake stops naming this key\nwhen the space the photos saw needs more at this resolution.",
    ),
];

impl BakeConfig {
    pub fn check(&self) -> Result<(), String> {
        ensure(
            (16..=1024).contains(&self.resolution) && self.resolution.is_multiple_of(8),
            "resolution",
            self.resolution,
            "must be a multiple of 8 in 16..=1024",
        )?;
        ensure(
            self.min_weight.is_finite() && (0.0..1.0).contains(&self.min_weight),
            "min_weight",
            self.min_weight,
            "must be in [0, 1)",
        )?;
        ensure(
            (1000..=100_000_000).contains(&self.cull_rays),
            "cull_rays",
            self.cull_rays,
            "must be in 1000..=100000000",
        )?;
        ensure(
            self.finetune_steps <= 1_000_000,
            "finetune_steps",
            self.finetune_steps,
            "must be at most 1000000",
        )?;
        ensure(
            (1..=1 << 20).contains(&self.finetune_batch_rays),
            "finetune_batch_rays",
            self.finetune_batch_rays,
            "must be in 1..=1048576",
        )?;
        ensure(
            self.memory_budget_gb.is_finite() && self.memory_budget_gb > 0.0,
            "memory_budget_gb",
            self.memory_budget_gb,
            "must be positive",
        )?;
        for (key, v) in [
            ("finetune_lr_features", self.finetune_lr_features),
            ("finetune_lr_density", self.finetune_lr_density),
            ("finetune_lr_head", self.finetune_lr_head),
            ("finetune_distortion", self.finetune_distortion),
        ] {
            ensure(
                v.is_finite() && (0.0..=1.0).contains(&v),
                key,
                v,
                "must be in [0, 1]",
            )?;
        }
        Ok(())
    }
}
