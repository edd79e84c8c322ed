//! `[sfm]` — owned by the SfM stage.
use super::{KeyDoc, ensure};
use serde::{Deserialize, Serialize};

/// `[sfm]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SfmConfig {
    pub import: Option<String>,
    pub max_image_size: u32,
    pub max_features: usize,
    pub exhaustive_max_images: usize,
    pub sequential_overlap: usize,
}

impl Default for SfmConfig {
    fn default() -> Self {
        SfmConfig {
            import: None,
            max_image_size: 1600,
            max_features: 8192,
            exhaustive_max_images: 60,
            sequential_overlap: 10,
        }
    }
}

pub(super) const DOCS: &[KeyDoc] = &[
    (
        "import",
        "Use an existing COLMAP/GLOMAP sparse model (text or binary folder, relative to this file) instead of\nrunning SfM. Example: import = \"colmap/sparse/0\"",
    ),
    (
        "max_image_size",
        "Photos are downscaled to this longest side (pixels) for feature extraction.",
    ),
    (
        "max_features",
        "At most this many SIFT features per photo (the largest scales are kept).",
    ),
    (
        "exhaustive_max_images",
        "Match every pair of photos up to this many photos; above, sequential neighbours plus retrieval.",
    ),
    (
        "sequential_overlap",
        "With sequential pair selection, each photo is matched with this many following photos.",
    ),
];

impl SfmConfig {
    pub(super) fn check(&self) -> Result<(), String> {
        ensure(
            self.max_image_size >= 64,
            "max_image_size",
            self.max_image_size,
            "must be at least 64",
        )?;
        ensure(
            self.max_features >= 64,
            "max_features",
            self.max_features,
            "must be at least 64",
        )
    }
}
