//! The EXIF block of each photo, built with kamadak-exif's writer (a TIFF structure that the JPEG
//! encoder stores in an APP1 `Exif` segment).

use crate::walk::{CROP_FACTOR, F_NUMBER, FOCAL_35MM, Shot};
use exif::experimental::Writer;
use exif::{Field, In, Rational, Tag, Value};

fn ascii(tag: Tag, s: &str) -> Field {
    Field {
        tag,
        ifd_num: In::PRIMARY,
        value: Value::Ascii(vec![s.as_bytes().to_vec()]),
    }
}

fn rational(tag: Tag, num: u32, denom: u32) -> Field {
    Field {
        tag,
        ifd_num: In::PRIMARY,
        value: Value::Rational(vec![Rational { num, denom }]),
    }
}

fn short(tag: Tag, v: u16) -> Field {
    Field {
        tag,
        ifd_num: In::PRIMARY,
        value: Value::Short(vec![v]),
    }
}

fn long(tag: Tag, v: u32) -> Field {
    Field {
        tag,
        ifd_num: In::PRIMARY,
        value: Value::Long(vec![v]),
    }
}

/// The TIFF-structured EXIF payload (without the `Exif\0\0` prefix) for one photo.
pub fn exif_payload(shot: &Shot, width: u32, height: u32) -> Result<Vec<u8>, exif::Error> {
    // Focal length in mm as a rational with two decimals.
    let focal_centi = (FOCAL_35MM as f64 / CROP_FACTOR * 100.0).round() as u32;
    let fields = vec![
        ascii(Tag::Make, "flythrough"),
        ascii(Tag::Model, "synth"),
        short(Tag::Orientation, 1),
        ascii(
            Tag::Software,
            concat!("flythrough-synth ", env!("CARGO_PKG_VERSION")),
        ),
        ascii(Tag::DateTime, &shot.datetime),
        Field {
            tag: Tag::ExifVersion,
            ifd_num: In::PRIMARY,
            value: Value::Undefined(b"0232".to_vec(), 0),
        },
        rational(Tag::ExposureTime, 1, shot.shutter_den),
        rational(Tag::FNumber, (F_NUMBER * 10.0).round() as u32, 10),
        short(Tag::PhotographicSensitivity, shot.iso as u16),
        ascii(Tag::DateTimeOriginal, &shot.datetime),
        rational(Tag::FocalLength, focal_centi, 100),
        short(Tag::FocalLengthIn35mmFilm, FOCAL_35MM as u16),
        long(Tag::PixelXDimension, width),
        long(Tag::PixelYDimension, height),
        // Manual exposure (1), so the varying exposure is a choice, not a metering artefact.
        short(Tag::ExposureProgram, 1),
        short(Tag::WhiteBalance, 1),
    ];
    let mut w = Writer::new();
    for f in &fields {
        w.push_field(f);
    }
    let mut buf = std::io::Cursor::new(Vec::new());
    w.write(&mut buf, false)?;
    Ok(buf.into_inner())
}
