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
    match std::fs::File::open(path) {
        Ok(f) => read_exif_from(&mut std::io::BufReader::new(f)),
        Err(e) => ExifRead {
            warnings: vec![format!("cannot open: {e}")],
            ..Default::default()
        },
    }
}

/// [`read_exif`] from an open photo (any container kamadak-exif reads). The bytes are untrusted:
/// whatever they hold, the result is fields, `present` and warnings, never a panic.
pub fn read_exif_from<R: std::io::BufRead + std::io::Seek>(reader: &mut R) -> ExifRead {
    let mut out = ExifRead::default();
    let ex = match Reader::new().read_from_container(reader) {
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

/// Fuzz property of the EXIF reader (issue 20): arbitrary bytes (after each container's magic
/// number or none) and damaged valid JPEG, PNG and TIFF files with a full EXIF block give fields and
/// warnings, never a panic. [`flythrough_testkit::fuzz::CASES`] (256) cases.
#[cfg(test)]
mod fuzz {
    use super::*;
    use exif::{Field, Rational};
    use flythrough_testkit::fuzz::{self as fz, proptest::prelude::*};
    use std::io::Cursor;

    /// A TIFF block with every field the reader looks at.
    fn tiff(little_endian: bool) -> Vec<u8> {
        let r = |n, d| Value::Rational(vec![Rational { num: n, denom: d }]);
        let ascii = |s: &str| Value::Ascii(vec![s.as_bytes().to_vec()]);
        let fields = [
            (Tag::ExposureTime, r(1, 125)),
            (Tag::FNumber, r(28, 10)),
            (Tag::FocalLength, r(35, 1)),
            (Tag::PhotographicSensitivity, Value::Short(vec![200])),
            (Tag::FocalLengthIn35mmFilm, Value::Short(vec![50])),
            (Tag::FocalPlaneXResolution, r(4000, 1)),
            (Tag::FocalPlaneResolutionUnit, Value::Short(vec![3])),
            (Tag::PixelXDimension, Value::Long(vec![4000])),
            (Tag::Orientation, Value::Short(vec![6])),
            (Tag::WhiteBalance, Value::Short(vec![0])),
            (Tag::Make, ascii("Maker")),
            (Tag::Model, ascii("Model 1")),
            (Tag::LensModel, ascii("Lens 35mm")),
            (Tag::DateTimeOriginal, ascii("2024:05:06 07:08:09")),
        ]
        .map(|(tag, value)| Field {
            tag,
            ifd_num: In::PRIMARY,
            value,
        });
        let mut w = exif::experimental::Writer::new();
        for f in &fields {
            w.push_field(f);
        }
        let mut out = Cursor::new(Vec::new());
        w.write(&mut out, little_endian).unwrap();
        out.into_inner()
    }

    fn seeds() -> Vec<Vec<u8>> {
        let t = tiff(false);
        // JPEG: SOI, APP1 "Exif\0\0" + TIFF, EOI.
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE1];
        jpeg.extend(((2 + 6 + t.len()) as u16).to_be_bytes());
        jpeg.extend(b"Exif\0\0");
        jpeg.extend(&t);
        jpeg.extend([0xFF, 0xD9]);
        // PNG: signature, an IHDR chunk, the eXIf chunk, IEND (CRCs are not checked).
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(13u32.to_be_bytes());
        png.extend(b"IHDR");
        png.extend([0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0, 0, 0, 0, 0]);
        png.extend((t.len() as u32).to_be_bytes());
        png.extend(b"eXIf");
        png.extend(&t);
        png.extend([0; 4]);
        png.extend(0u32.to_be_bytes());
        png.extend(b"IEND");
        png.extend([0; 4]);
        vec![jpeg, png, tiff(true)]
    }

    /// Arbitrary bytes after a container's magic number, so they reach that container's parser.
    fn after_magic() -> impl Strategy<Value = Vec<u8>> {
        let magics: Vec<&'static [u8]> = vec![
            b"\xFF\xD8",
            b"\xFF\xD8\xFF\xE1",
            b"\x89PNG\r\n\x1a\n",
            b"II*\0",
            b"MM\0*",
            b"RIFF\0\0\0\0WEBP",
            b"\0\0\0\x18ftypheic",
            b"",
        ];
        (
            proptest::sample::select(magics),
            proptest::collection::vec(any::<u8>(), 0..256),
        )
            .prop_map(|(m, rest)| [m, &rest].concat())
    }

    fn read(bytes: Vec<u8>) -> ExifRead {
        read_exif_from(&mut Cursor::new(bytes))
    }

    #[test]
    fn the_seeds_read() {
        for s in seeds() {
            let r = read(s);
            assert!(r.present && r.warnings.is_empty(), "{:?}", r.warnings);
            assert_eq!(r.fields.orientation, Some(6));
            assert_eq!(r.fields.make.as_deref(), Some("Maker"));
        }
    }

    proptest! {
        #![proptest_config(fz::config())]

        #[test]
        fn exif_never_panics(bytes in prop_oneof![
            1 => after_magic(),
            3 => fz::bytes_or_mutated(seeds(), 256),
        ]) {
            let _ = read(bytes);
        }
    }
}
