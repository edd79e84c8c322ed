use super::{KeyDoc, ensure};
use serde::{Deserialize, Serialize};

/// What to do with a photo that cannot be decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BrokenPhotoPolicy {
    /// Leave it out with a warning (it is named in `capture/qa.json`).
    #[default]
    Skip,
    /// Stop the run.
    Fail,
}

/// `[capture]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    pub on_broken_photo: BrokenPhotoPolicy,
    pub blur_threshold: f64,
    pub qa_max_side: u32,
    pub overexposed_fraction: f64,
    pub underexposed_fraction: f64,
    pub duplicate_distance: u32,
    pub min_photos: usize,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            on_broken_photo: BrokenPhotoPolicy::Skip,
            blur_threshold: 30.0,
            qa_max_side: 512,
            overexposed_fraction: 0.25,
            underexposed_fraction: 0.25,
            duplicate_distance: 4,
            min_photos: 8,
        }
    }
}

pub(super) const DOCS: &[KeyDoc] = &[
    (
        "on_broken_photo",
        "A photo that cannot be decoded: \"skip\" (leave it out, with a warning in qa.json) or \"fail\" (stop).",
    ),
    (
        "blur_threshold",
        "A photo is flagged blurry when the variance of the Laplacian of its grey image,\nresized to qa_max_side, is below this.",
    ),
    (
        "qa_max_side",
        "Longest side, in pixels, that photos are resized to for the quality checks.",
    ),
    (
        "overexposed_fraction",
        "Flag a photo when more than this fraction of its pixels is clipped white (>= 250).",
    ),
    (
        "underexposed_fraction",
        "Flag a photo when more than this fraction of its pixels is black (<= 5).",
    ),
    (
        "duplicate_distance",
        "Flag two photos as near-duplicates when their 64-bit difference hashes differ in at most this many bits.",
    ),
    (
        "min_photos",
        "Fewer usable photos than this is flagged: a reconstruction needs many overlapping views.",
    ),
];

impl CaptureConfig {
    pub(super) fn check(&self) -> Result<(), String> {
        ensure(
            self.blur_threshold >= 0.0,
            "blur_threshold",
            self.blur_threshold,
            "must be >= 0",
        )?;
        ensure(
            self.qa_max_side >= 32,
            "qa_max_side",
            self.qa_max_side,
            "must be at least 32",
        )?;
        ensure(
            (0.0..=1.0).contains(&self.overexposed_fraction),
            "overexposed_fraction",
            self.overexposed_fraction,
            "must be in 0..1",
        )?;
        ensure(
            (0.0..=1.0).contains(&self.underexposed_fraction),
            "underexposed_fraction",
            self.underexposed_fraction,
            "must be in 0..1",
        )?;
        ensure(
            self.duplicate_distance <= 64,
            "duplicate_distance",
            self.duplicate_distance,
            "must be in 0..=64",
        )
    }
}
