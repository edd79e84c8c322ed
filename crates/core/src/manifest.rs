//! `capture/manifest.json`: what the capture stage learned about each photo, read by every later stage.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// EXIF fields the pipeline uses. Every field is optional: phones, editors and scanners drop tags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExifFields {
    /// Shutter time in seconds (`ExposureTime`).
    pub exposure_time_s: Option<f64>,
    /// Aperture f-number (`FNumber`).
    pub f_number: Option<f64>,
    /// ISO sensitivity (`PhotographicSensitivity`, else `ISOSpeed`/`StandardOutputSensitivity`).
    pub iso: Option<f64>,
    /// Focal length in millimetres (`FocalLength`).
    pub focal_mm: Option<f64>,
    /// 35 mm-equivalent focal length in millimetres (`FocalLengthIn35mmFilm`).
    pub focal_35mm: Option<f64>,
    /// `FocalPlaneXResolution` converted to pixels per millimetre (of the sensor-resolution image).
    pub focal_plane_px_per_mm: Option<f64>,
    /// `PixelXDimension` (width the focal-plane resolution refers to), if present.
    pub pixel_x_dimension: Option<u32>,
    /// EXIF orientation 1..=8 (1 = upright).
    pub orientation: Option<u16>,
    pub make: Option<String>,
    pub model: Option<String>,
    pub lens_model: Option<String>,
    /// `DateTimeOriginal` (else `DateTime`) as `YYYY-MM-DDTHH:MM:SS`.
    pub datetime: Option<String>,
    /// `WhiteBalance`: 0 auto, 1 manual.
    pub white_balance: Option<u16>,
}

/// Which rule produced a photo's focal prior (COLMAP's order, `Bitmap::ExifFocalLength`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FocalRule {
    /// `f35 / 43.27 × sqrt(w² + h²)` (CIPA diagonal of a 36×24 mm frame).
    Equivalent35mm,
    /// `focal_mm × FocalPlaneXResolution` (pixels per mm), rescaled to the image width.
    FocalPlaneResolution,
    /// `1.2 × max(w, h)`: no usable EXIF; treat as a weak guess.
    DefaultFactor,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FocalPrior {
    /// Focal length in pixels of the image as stored in `privacy/images` (orientation applied).
    pub px: f64,
    pub rule: FocalRule,
}

/// Where a photo's exposure value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExposureSource {
    /// All of exposure time, ISO and f-number were in the EXIF.
    Exif,
    /// Some fields were missing and were replaced by the capture's median of that field.
    PartlyImputed,
    /// No field was present in any photo: EV 0 (all photos treated as equally exposed).
    Default,
}

/// Relative sensor exposure for conditioning: `ev = log2(t × ISO/100 / N²)` (t in seconds, N the
/// f-number). One stop brighter is +1. Only differences between photos matter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    pub ev: f64,
    pub source: ExposureSource,
}

/// One photo of the capture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhotoRecord {
    /// Stable id, 1-based, in file-name order.
    pub id: u32,
    /// File name inside the photo folder (and inside `privacy/images`).
    pub file: String,
    /// Pixel size after the EXIF orientation is applied.
    pub width: u32,
    pub height: u32,
    pub exif: ExifFields,
    pub exposure: Exposure,
    pub focal_prior: FocalPrior,
    /// Photos with equal keys share intrinsics in SfM: `make|model|lens|focal_mm|WxH`.
    pub camera_key: String,
}

/// The whole manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub photos: Vec<PhotoRecord>,
}

impl Manifest {
    pub fn read(path: &Path) -> std::io::Result<Manifest> {
        let s = std::fs::read_to_string(path)?;
        serde_json::from_str(&s)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))
    }

    pub fn photo(&self, file: &str) -> Option<&PhotoRecord> {
        self.photos.iter().find(|p| p.file == file)
    }
}

/// `log2(t × ISO/100 / N²)`.
pub fn exposure_value(exposure_time_s: f64, iso: f64, f_number: f64) -> f64 {
    (exposure_time_s * iso / 100.0 / (f_number * f_number)).log2()
}
