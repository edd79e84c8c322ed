//! `[render]` — owned by the render stage.
use super::{KeyDoc, ensure};
use serde::{Deserialize, Serialize};

/// `[render]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RenderConfig {
    pub speed_m_per_s: f64,
    pub fps: f64,
    pub width: u32,
    pub height: u32,
    pub crf: u32,
}

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig {
            speed_m_per_s: 1.0,
            fps: 30.0,
            width: 1024,
            height: 512,
            crf: 18,
        }
    }
}

pub(super) const DOCS: &[KeyDoc] = &[
    (
        "speed_m_per_s",
        "Camera speed along the path, metres per second (uses SfM's metric scale).",
    ),
    ("fps", "Frames per second of the videos."),
    (
        "width",
        "Width of the 360° (equirectangular) frames; must be 2 x height.",
    ),
    ("height", "Height of the 360° frames."),
    (
        "crf",
        "H.264 constant rate factor (0 = lossless .. 51 = worst; 18 is visually lossless).",
    ),
];

impl RenderConfig {
    pub(super) fn check(&self) -> Result<(), String> {
        ensure(
            self.speed_m_per_s > 0.0,
            "speed_m_per_s",
            self.speed_m_per_s,
            "must be > 0",
        )?;
        ensure(
            self.fps > 0.0 && self.fps <= 240.0,
            "fps",
            self.fps,
            "must be in (0, 240]",
        )?;
        ensure(
            self.width == 2 * self.height && self.height >= 8,
            "width",
            self.width,
            "must be 2 x height (equirectangular 2:1)",
        )?;
        ensure(self.crf <= 51, "crf", self.crf, "must be in 0..=51")
    }
}
