//! `[privacy]` — owned by the privacy stage.
use super::{KeyDoc, ensure};
use serde::{Deserialize, Serialize};

/// An extra rectangle to blur in one photo (pixels of the upright photo).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionOverride {
    pub photo: String,
    /// `[x, y, width, height]`
    pub rect: [u32; 4],
}

/// A detection to leave unblurred (a false positive): any detection in `photo` whose box overlaps
/// `rect` with IoU >= 0.3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepDetection {
    pub photo: String,
    pub rect: [u32; 4],
}

/// `[privacy]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    pub score_threshold: f32,
    pub on_unscannable_photo: super::BrokenPhotoPolicy,
    pub extra_regions: Vec<RegionOverride>,
    pub keep: Vec<KeepDetection>,
    pub min_face_px: f32,
    pub blur_padding: f32,
    /// GiB the photos in flight may hold between them (0 = automatic).
    /// A machine setting ([`crate::Machine`]): read by the stages only from there, never serialised
    /// with the section, so it is in no stage's hash and is printed by [`super::Config::documented`]
    /// as a machine key.
    #[serde(skip_serializing)]
    pub memory_budget_gb: f64,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            score_threshold: 0.5,
            on_unscannable_photo: super::BrokenPhotoPolicy::Skip,
            extra_regions: vec![],
            keep: vec![],
            min_face_px: 24.0,
            blur_padding: 0.35,
            memory_budget_gb: 0.0,
        }
    }
}

pub(super) const DOCS: &[KeyDoc] = &[
    (
        "score_threshold",
        "Minimum detector score for a face to be blurred (0..1). Lower finds more faces and more false positives.",
    ),
    (
        "on_unscannable_photo",
        "A photo the detector could not scan is never passed on: \"skip\" it (reported) or \"fail\" the run.",
    ),
    (
        "extra_regions",
        "Extra rectangles to blur: [[privacy.extra_regions]] photo = \"IMG_1.JPG\", rect = [x, y, w, h].",
    ),
    (
        "keep",
        "Detections to leave unblurred (false positives): [[privacy.keep]] photo = \"IMG_1.JPG\", rect = [x, y, w, h].",
    ),
    (
        "min_face_px",
        "Smallest face (shorter side, px of the photo) the scan is sized to find: the photo is scanned at scale min(1, 14 / min_face_px), since the detector finds faces from about 14 px, plus coarser levels made by halving. Smaller finds smaller faces; the time grows as 1 / min_face_px^2.",
    ),
    (
        "blur_padding",
        "Each face box is grown by this fraction of its size on every side before the ellipse inside it is blurred (0..1).",
    ),
    (
        "memory_budget_gb",
        "Memory (GiB) the photos being decoded and scanned may hold between them, in capture and privacy:\nphotos run in parallel only while their estimated needs fit, and a photo that alone needs more\nis refused, naming its size. 0 = automatic: half of MemAvailable (/proc/meminfo) at the start.\nA machine setting: changing it re-runs nothing.",
    ),
];

impl PrivacyConfig {
    pub(super) fn check(&self) -> Result<(), String> {
        ensure(
            (0.0..=1.0).contains(&self.score_threshold),
            "score_threshold",
            self.score_threshold,
            "must be in 0..1",
        )?;
        ensure(
            (8.0..=1000.0).contains(&self.min_face_px),
            "min_face_px",
            self.min_face_px,
            "must be in 8..1000 pixels",
        )?;
        ensure(
            (0.0..=1.0).contains(&self.blur_padding),
            "blur_padding",
            self.blur_padding,
            "must be in 0..1",
        )?;
        ensure(
            self.memory_budget_gb.is_finite() && self.memory_budget_gb >= 0.0,
            "memory_budget_gb",
            self.memory_budget_gb,
            "must be >= 0 GiB (0 = automatic)",
        )?;
        for (i, r) in self.extra_regions.iter().enumerate() {
            ensure(
                r.rect[2] > 0 && r.rect[3] > 0,
                &format!("extra_regions #{} rect", i + 1),
                r.rect,
                "width and height must be > 0",
            )?;
        }
        for (i, r) in self.keep.iter().enumerate() {
            ensure(
                r.rect[2] > 0 && r.rect[3] > 0,
                &format!("keep #{} rect", i + 1),
                r.rect,
                "width and height must be > 0",
            )?;
        }
        Ok(())
    }
}
