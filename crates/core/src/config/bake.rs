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
}

impl Default for BakeConfig {
    fn default() -> Self {
        BakeConfig {
            resolution: 256,
            min_weight: 0.005,
            cull_rays: 400_000,
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
        )
    }
}
