//! Reading the EXIF fields the pipeline needs, with `kamadak-exif`.
//!
//! Every field is validated: a zero denominator, a negative or absurd value is dropped with a warning
//! naming the tag, never a panic. Containers: JPEG, PNG, TIFF, WebP and HEIF (whatever kamadak-exif
//! reads).

use exif::{In, Reader, Tag, Value};
use flythrough_core::manifest::ExifFields;
use std::path::Path;

/// EXIF fields plus warnings about values that were present but unusable.
#[derive(Debug, Clone, Default)]
pub struct ExifRead {
    pub fields: ExifFields,
    /// `false` when the file has no EXIF block at all.
    pub present: bool,
    pub warnings: Vec<String>,
}

/// Read EXIF from a photo file. A missing or unreadable EXIF block is not an error: `present` is false
/// and the reason is in `warnings` (unless there simply is none).
pub fn read_exif(path: &Path) -> ExifRead {
    let mut out = ExifRead::default();
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            out.warnings.push(format!("cannot open: {e}"));
            return out;
        }
    };
    let ex = match Reader::new().read_from_container(&mut std::io::BufReader::new(file)) {
        Ok(ex) => ex,
        Err(exif::Error::NotFound(_)) => return out,
        Err(e) => {
            // There is an EXIF block, but it is malformed: keep the photo, use none of its values.
            out.present = true;
            out.warnings
                .push(format!("unreadable EXIF ({e}); its values are not used"));
            return out;
        }
    };
    out.present = true;
    let warnings = std::cell::RefCell::new(Vec::new());
    let warn = |tag: Tag, why: &str| {
        warnings
            .borrow_mut()
            .push(format!("EXIF {tag}: {why}; ignored"))
    };
    let field = |tag: Tag| ex.get_field(tag, In::PRIMARY);
    let rational = |tag: Tag| -> Option<Result<f64, String>> {
        let f = field(tag)?;
        Some(match &f.value {
            Value::Rational(v) if !v.is_empty() => {
                if v[0].denom == 0 {
                    Err(format!("zero denominator ({}/0)", v[0].num))
                } else {
                    Ok(v[0].to_f64())
                }
            }
            Value::SRational(v) if !v.is_empty() => {
                if v[0].denom == 0 {
                    Err(format!("zero denominator ({}/0)", v[0].num))
                } else {
                    Ok(v[0].to_f64())
                }
            }
            other => other
                .get_uint(0)
                .map(|u| u as f64)
                .ok_or_else(|| "not a number".to_string()),
        })
    };
    let uint = |tag: Tag| field(tag).and_then(|f| f.value.get_uint(0));
    let text = |tag: Tag| {
        field(tag).and_then(|f| match &f.value {
            Value::Ascii(v) if !v.is_empty() => {
                let s = String::from_utf8_lossy(&v[0])
                    .trim_matches(|c: char| c == '\0' || c.is_whitespace())
                    .to_string();
                (!s.is_empty()).then_some(s)
            }
            _ => None,
        })
    };
    // A positive, finite value within a plausible range, else a warning.
    let positive = |tag: Tag, max: f64| -> Option<f64> {
        match rational(tag)? {
            Ok(v) if v.is_finite() && v > 0.0 && v <= max => Some(v),
            Ok(v) => {
                warn(tag, &format!("implausible value {v}"));
                None
            }
            Err(e) => {
                warn(tag, &e);
                None
            }
        }
    };
    let f = &mut out.fields;
    f.exposure_time_s = positive(Tag::ExposureTime, 3600.0);
    f.f_number = positive(Tag::FNumber, 256.0);
    f.focal_mm = positive(Tag::FocalLength, 5000.0);
    f.iso = [
        Tag::PhotographicSensitivity,
        Tag::ISOSpeed,
        Tag::StandardOutputSensitivity,
        Tag::RecommendedExposureIndex,
    ]
    .into_iter()
    .find_map(|t| {
        uint(t)
            .filter(|&v| v > 0 && v < 10_000_000)
            .map(|v| v as f64)
    });
    f.focal_35mm = uint(Tag::FocalLengthIn35mmFilm)
        .filter(|&v| v > 0 && v < 10_000)
        .map(|v| v as f64);
    let unit_mm = match uint(Tag::FocalPlaneResolutionUnit) {
        Some(2) | None => Some(25.4),
        Some(3) => Some(10.0),
        Some(4) => Some(1.0),
        Some(5) => Some(0.001),
        Some(u) => {
            warn(Tag::FocalPlaneResolutionUnit, &format!("unknown unit {u}"));
            None
        }
    };
    if let (Some(res), Some(unit)) = (positive(Tag::FocalPlaneXResolution, 1e9), unit_mm) {
        f.focal_plane_px_per_mm = Some(res / unit);
    }
    f.pixel_x_dimension = uint(Tag::PixelXDimension).filter(|&v| v > 0);
    f.orientation = match uint(Tag::Orientation) {
        Some(o @ 1..=8) => Some(o as u16),
        Some(o) => {
            warn(Tag::Orientation, &format!("invalid orientation {o}"));
            None
        }
        None => None,
    };
    f.make = text(Tag::Make);
    f.model = text(Tag::Model);
    f.lens_model = text(Tag::LensModel);
    f.white_balance = uint(Tag::WhiteBalance).map(|v| v as u16);
    f.datetime = [Tag::DateTimeOriginal, Tag::DateTime]
        .into_iter()
        .find_map(|t| {
            let fld = field(t)?;
            match &fld.value {
                Value::Ascii(v) if !v.is_empty() => {
                    exif::DateTime::from_ascii(&v[0]).ok().map(|d| {
                        format!(
                            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                            d.year, d.month, d.day, d.hour, d.minute, d.second
                        )
                    })
                }
                _ => None,
            }
        });
    out.warnings.extend(warnings.into_inner());
    out
}
