//! `[sfm]` — owned by the SfM stage.
use super::{KeyDoc, ensure};
use serde::{Deserialize, Serialize};

/// `[sfm] up_axis`: the world axis the cameras' mean up direction is rotated onto.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpAxis {
    /// +z up (nerfstudio convention).
    #[default]
    #[serde(rename = "+z")]
    PlusZ,
    /// -y up (OpenCV-style image y down).
    #[serde(rename = "-y")]
    MinusY,
}

/// `[sfm]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SfmConfig {
    pub import: Option<String>,
    pub max_image_size: u32,
    pub max_features: usize,
    pub features_per_megapixel: f64,
    pub min_features: usize,
    pub exhaustive_max_images: usize,
    pub sequential_overlap: usize,
    pub retrieval_k: usize,
    pub max_error_px: f64,
    pub init_min_tri_angle_deg: f64,
    pub abs_pose_min_inliers: usize,
    pub local_ba_images: usize,
    pub up_axis: UpAxis,
}

impl Default for SfmConfig {
    fn default() -> Self {
        SfmConfig {
            import: None,
            max_image_size: 1600,
            max_features: 8192,
            features_per_megapixel: 5000.0,
            min_features: 4096,
            exhaustive_max_images: 60,
            sequential_overlap: 10,
            retrieval_k: 8,
            max_error_px: 4.0,
            init_min_tri_angle_deg: 16.0,
            abs_pose_min_inliers: 30,
            local_ba_images: 6,
            up_axis: UpAxis::PlusZ,
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
        "features_per_megapixel",
        "SIFT features per photo scale with its size at the extraction resolution (after max_image_size):\nthis many per megapixel, at least min_features, at most max_features (the cap wins). The defaults\ngive 8192 for 4:3 and 3:2 photos at 1600 px, 7200 for 16:9 frames, 4096 for VGA. 0: always max_features.",
    ),
    (
        "min_features",
        "Floor of the per-megapixel feature count (see features_per_megapixel).",
    ),
    (
        "exhaustive_max_images",
        "Match every pair of photos up to this many photos; above, sequential neighbours plus retrieval.",
    ),
    (
        "sequential_overlap",
        "With sequential pair selection, each photo is matched with this many following photos.",
    ),
    (
        "retrieval_k",
        "With sequential pair selection, each photo is also matched with this many most similar photos\n(bag of visual words); 0 turns retrieval off.",
    ),
    (
        "max_error_px",
        "Inlier threshold in pixels (at the feature-extraction resolution) for two-view verification,\ntriangulation and outlier filtering (COLMAP: 4).",
    ),
    (
        "init_min_tri_angle_deg",
        "The initial pair must have at least this median triangulation angle in degrees (COLMAP: 16);\nrelaxed step by step to 2 when no pair qualifies.",
    ),
    (
        "abs_pose_min_inliers",
        "A photo is registered when P3P RANSAC finds at least this many 2D-3D inliers (COLMAP: 30);\na second pass for the photos left over accepts half as many.",
    ),
    (
        "local_ba_images",
        "Local bundle adjustment after each registration refines the new photo and this many minus one\nof its most connected neighbours.",
    ),
    (
        "up_axis",
        "World axis the cameras' mean up direction is rotated onto: \"+z\" (nerfstudio convention) or \"-y\".\nThe world origin is the centroid of the camera centres; units are metres with calibration pairs.",
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
        )?;
        ensure(
            self.features_per_megapixel.is_finite()
                && (0.0..=1e6).contains(&self.features_per_megapixel),
            "features_per_megapixel",
            self.features_per_megapixel,
            "must be in [0, 1000000] (0: always max_features)",
        )?;
        ensure(
            self.exhaustive_max_images >= 2,
            "exhaustive_max_images",
            self.exhaustive_max_images,
            "must be at least 2",
        )?;
        ensure(
            self.sequential_overlap >= 1,
            "sequential_overlap",
            self.sequential_overlap,
            "must be at least 1",
        )?;
        ensure(
            self.retrieval_k <= 1000,
            "retrieval_k",
            self.retrieval_k,
            "must be at most 1000",
        )?;
        ensure(
            self.max_error_px > 0.1 && self.max_error_px <= 50.0,
            "max_error_px",
            self.max_error_px,
            "must be in (0.1, 50]",
        )?;
        ensure(
            (1.0..=60.0).contains(&self.init_min_tri_angle_deg),
            "init_min_tri_angle_deg",
            self.init_min_tri_angle_deg,
            "must be in [1, 60]",
        )?;
        ensure(
            (6..=10000).contains(&self.abs_pose_min_inliers),
            "abs_pose_min_inliers",
            self.abs_pose_min_inliers,
            "must be in [6, 10000]",
        )?;
        ensure(
            (2..=100).contains(&self.local_ba_images),
            "local_ba_images",
            self.local_ba_images,
            "must be in [2, 100]",
        )
    }
}
