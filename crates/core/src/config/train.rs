//! `[train]` — owned by the NeRF stage.
use super::{KeyDoc, ensure};
use serde::{Deserialize, Serialize};

/// `[train]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub steps: usize,
    pub max_seconds: f64,
    pub seed: u64,
    pub holdout_every: usize,
    pub glo_dim: usize,
    pub exposure_conditioning: bool,
    pub checkpoint_every: usize,
    pub image_downscale: u32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 2000,
            max_seconds: 0.0,
            seed: 0,
            holdout_every: 8,
            glo_dim: 32,
            exposure_conditioning: true,
            checkpoint_every: 250,
            image_downscale: 1,
        }
    }
}

pub(super) const DOCS: &[KeyDoc] = &[
    ("steps", "Training steps."),
    (
        "max_seconds",
        "Stop training after this many seconds of wall time even if steps remain (0 = no limit).",
    ),
    (
        "seed",
        "Random seed (ray sampling, initialisation): runs with the same seed are repeatable.",
    ),
    (
        "holdout_every",
        "Every n-th photo is held out for evaluation (0 = none).",
    ),
    (
        "glo_dim",
        "Dimension of the per-photo appearance (GLO) latent; 0 disables it.",
    ),
    (
        "exposure_conditioning",
        "Feed each photo's exposure value (from EXIF) to the colour head.",
    ),
    (
        "checkpoint_every",
        "Write a checkpoint every this many steps (training resumes from the last one).",
    ),
    (
        "image_downscale",
        "Train on photos downscaled by this integer factor.",
    ),
];

impl TrainConfig {
    pub(super) fn check(&self) -> Result<(), String> {
        ensure(self.steps >= 1, "steps", self.steps, "must be at least 1")?;
        ensure(
            self.max_seconds >= 0.0,
            "max_seconds",
            self.max_seconds,
            "must be >= 0",
        )?;
        ensure(
            self.image_downscale >= 1,
            "image_downscale",
            self.image_downscale,
            "must be at least 1",
        )?;
        ensure(
            self.checkpoint_every >= 1,
            "checkpoint_every",
            self.checkpoint_every,
            "must be at least 1",
        )
    }
}
