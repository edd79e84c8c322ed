use super::{KeyDoc, ensure};
use serde::{Deserialize, Serialize};

/// `[venue]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Venue {
    pub name: String,
    pub photos: String,
    #[serde(default)]
    pub keyframes: Vec<String>,
}

pub(super) const DOCS: &[KeyDoc] = &[
    (
        "name",
        "Venue name; the run folder defaults to runs/<name> beside this file. Required.",
    ),
    (
        "photos",
        "Folder of the photos (JPEG, PNG, TIFF), relative to this file. Opened read-only. Required.",
    ),
    (
        "keyframes",
        "Ordered photo file names that define the fly-through path (at least 2 for the render stage).",
    ),
];

impl Venue {
    pub(super) fn check(&self) -> Result<(), String> {
        let ok_name = !self.name.trim().is_empty()
            && !self.name.contains(['/', '\\'])
            && !self.name.chars().any(char::is_control)
            && self.name != "."
            && self.name != "..";
        ensure(
            ok_name,
            "[venue] name",
            &self.name,
            "must be a non-empty name without slashes or control characters (line breaks, tabs)",
        )?;
        ensure(
            !self.photos.trim().is_empty(),
            "[venue] photos",
            &self.photos,
            "must name the photo folder",
        )?;
        super::check_location("[venue] photos", &self.photos)?;
        for (i, w) in self.keyframes.windows(2).enumerate() {
            ensure(
                w[0] != w[1],
                &format!("[venue] keyframes #{}", i + 2),
                &w[1],
                "repeats the keyframe before it; the path would stand still there (list each stop once)",
            )?;
        }
        Ok(())
    }
}

/// `[[calibration]]`: two photos taken `distance_m` apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub a: String,
    pub b: String,
    #[serde(default = "default_distance")]
    pub distance_m: f64,
}

fn default_distance() -> f64 {
    3.0
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration {
            a: String::new(),
            b: String::new(),
            distance_m: default_distance(),
        }
    }
}

pub(super) const CALIBRATION_DOCS: &[KeyDoc] = &[
    ("a", "First photo's file name."),
    ("b", "Second photo's file name."),
    (
        "distance_m",
        "True distance between the two camera positions, in metres (0.05-100; 3.6 m is 3.6, not 3600).",
    ),
];

/// Plausible distances between the two photos of a calibration pair, in metres: a step apart to
/// across a hall. Outside this a value is almost surely in the wrong unit.
pub const CALIBRATION_RANGE_M: (f64, f64) = (0.05, 100.0);

impl Calibration {
    pub(super) fn check(&self) -> Result<(), String> {
        let (lo, hi) = CALIBRATION_RANGE_M;
        let d = self.distance_m;
        if !(d.is_finite() && (lo..=hi).contains(&d)) {
            let shown = if d.abs() >= 1e6 || (d != 0.0 && d.abs() < 1e-4) {
                format!("{d:e}")
            } else {
                format!("{d}")
            };
            let hint = if d.is_finite() && d > hi && (lo..=hi).contains(&(d / 1000.0)) {
                format!(
                    " ({d} mm would be {} m: write distance_m = {})",
                    d / 1000.0,
                    d / 1000.0
                )
            } else if d.is_finite() && d > hi && (lo..=hi).contains(&(d / 100.0)) {
                format!(
                    " ({d} cm would be {} m: write distance_m = {})",
                    d / 100.0,
                    d / 100.0
                )
            } else {
                String::new()
            };
            return Err(format!(
                "distance_m = {shown}: the distance between the two camera positions is in metres and must be within {lo}-{hi} m{hint}"
            ));
        }
        ensure(self.a != self.b, "b", &self.b, "must differ from a")
    }
}
