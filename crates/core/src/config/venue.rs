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
            && self.name != "."
            && self.name != "..";
        ensure(
            ok_name,
            "[venue] name",
            &self.name,
            "must be a non-empty name without slashes",
        )?;
        ensure(
            !self.photos.trim().is_empty(),
            "[venue] photos",
            &self.photos,
            "must name the photo folder",
        )
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
        "True distance between the two camera positions, in metres.",
    ),
];

impl Calibration {
    pub(super) fn check(&self) -> Result<(), String> {
        ensure(
            self.distance_m.is_finite() && self.distance_m > 0.0,
            "distance_m",
            self.distance_m,
            "must be a positive distance in metres",
        )?;
        ensure(self.a != self.b, "b", &self.b, "must differ from a")
    }
}
