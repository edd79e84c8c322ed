//! Capture stage: ingest the venue's photo folder (opened read-only, never modified), read EXIF,
//! derive each photo's exposure value and focal prior, and run quality checks.
//!
//! Writes `capture/manifest.json` ([`flythrough_core::Manifest`]) and `capture/qa.json` ([`QaReport`]).

pub mod exif;
pub mod qa;
pub mod stage;

pub use stage::CaptureStage;

use flythrough_core::CaptureOutput;
use flythrough_core::config::{BrokenPhotoPolicy, CaptureConfig};
use flythrough_core::manifest::{
    Exposure, ExposureSource, FocalPrior, FocalRule, Manifest, PhotoRecord, exposure_value,
};
use flythrough_core::memory::{self, ByteBudget};
use flythrough_core::run::{hash_files, write_json};
use flythrough_core::summary::{CaptureSummary, FileIssue};
use image::GrayImage;
use indicatif::ParallelProgressIterator;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: {msg}")]
    Io { path: PathBuf, msg: String },
    #[error(
        "{path}: cannot use this photo: {reason} (set [capture] on_broken_photo = \"skip\" to leave it out)"
    )]
    BrokenPhoto { path: PathBuf, reason: String },
    #[error("{0}: no usable photos (JPEG, PNG or TIFF) in this folder")]
    NoPhotos(PathBuf),
}

/// A photo that could not be decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokenPhoto {
    pub file: String,
    pub reason: String,
}

/// Quality measures of one photo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhotoQa {
    pub file: String,
    pub laplacian_variance: f64,
    pub overexposed_fraction: f64,
    pub underexposed_fraction: f64,
    pub dhash: String,
}

/// `capture/qa.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QaReport {
    pub photos_found: usize,
    pub photos_usable: usize,
    /// Photos that could not be decoded, with the decoder's reason.
    pub broken: Vec<BrokenPhoto>,
    /// Files in the folder that are not read as photos (other extensions), with why.
    pub ignored_files: Vec<BrokenPhoto>,
    /// Photos without any EXIF block.
    pub missing_exif: Vec<String>,
    /// Present but unusable EXIF values, per photo.
    pub exif_warnings: Vec<BrokenPhoto>,
    pub camera_bodies: Vec<String>,
    pub mixed_camera_bodies: bool,
    pub focal_lengths_mm: Vec<f64>,
    pub mixed_focal_lengths: bool,
    pub apertures: Vec<f64>,
    pub aperture_changes: bool,
    pub white_balance_modes: Vec<u16>,
    pub white_balance_changes: bool,
    pub blur_threshold: f64,
    pub blurry: Vec<String>,
    pub overexposed: Vec<String>,
    pub underexposed: Vec<String>,
    /// Pairs of near-identical photos with the Hamming distance of their difference hashes.
    pub near_duplicates: Vec<(String, String, u32)>,
    pub min_photos: usize,
    pub too_few_photos: bool,
    pub per_photo: Vec<PhotoQa>,
    /// One line per problem found, for people.
    pub warnings: Vec<String>,
}

/// Why a file whose name holds a control character is left out (and warned about: unlike a file of
/// another kind, it was most likely meant as a photo).
pub const CONTROL_CHARACTER_NAME: &str = "the file name holds a control character (a line break or \
     tab), which a COLMAP text model cannot hold: rename the file";

/// Why a link out of the photo folder is left out (the start of the reason; the target follows).
pub const LINK_OUT_OF_FOLDER: &str = "a link to a file outside the photo folder";
/// Why a link to nothing is left out.
pub const BROKEN_LINK: &str = "a broken link";

/// Whether an ignored file is warned about (it was most likely meant as a photo), not only listed.
fn warn_ignored(reason: &str) -> bool {
    reason == CONTROL_CHARACTER_NAME
        || reason.starts_with(LINK_OUT_OF_FOLDER)
        || reason.starts_with(BROKEN_LINK)
}

/// The photo files of a folder (sorted by name) and the files that are ignored.
pub fn list_photos(dir: &Path) -> Result<(Vec<PathBuf>, Vec<BrokenPhoto>), CaptureError> {
    let rd = std::fs::read_dir(dir).map_err(|e| CaptureError::Io {
        path: dir.to_path_buf(),
        msg: format!("cannot list the photo folder: {e}"),
    })?;
    let mut photos = Vec::new();
    let mut ignored = Vec::new();
    let folder = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        // A link is read only when it stays inside the photo folder, as for a keyframe named in the
        // config: a link out of it (another venue's photo, a file of the system) is left out, named.
        if e.file_type().is_ok_and(|t| t.is_symlink()) {
            let reason = match std::fs::canonicalize(&p) {
                Err(err) => Some(format!("{BROKEN_LINK} ({err})")),
                Ok(t) if !t.starts_with(&folder) => Some(format!(
                    "{LINK_OUT_OF_FOLDER} ({}): copy the photo into the folder instead",
                    t.display()
                )),
                Ok(_) => None,
            };
            if let Some(reason) = reason {
                ignored.push(BrokenPhoto {
                    file: name.escape_debug().to_string(),
                    reason,
                });
                continue;
            }
        }
        if !p.is_file() {
            continue;
        }
        if name.chars().any(char::is_control) {
            // A line break in a name splits a line of COLMAP's text model (sfm/sparse/images.txt),
            // so the later stages could not read the photo back: left out here, named.
            ignored.push(BrokenPhoto {
                file: name.escape_debug().to_string(),
                reason: CONTROL_CHARACTER_NAME.into(),
            });
            continue;
        }
        if flythrough_core::images::is_image_name(&name) {
            photos.push(p);
        } else {
            let lower = name.to_ascii_lowercase();
            let reason = if lower.ends_with(".heic") || lower.ends_with(".heif") {
                "HEIC/HEIF photos are not decoded: convert them to JPEG (e.g. `heif-convert`)"
                    .to_string()
            } else {
                "not a JPEG, PNG or TIFF photo".to_string()
            };
            ignored.push(BrokenPhoto { file: name, reason });
        }
    }
    photos.sort();
    ignored.sort_by(|a, b| a.file.cmp(&b.file));
    Ok((photos, ignored))
}

/// The capture stage's input hash: names and contents of the photo files.
pub fn input_hash(photos_dir: &Path) -> Result<String, CaptureError> {
    let (photos, _) = list_photos(photos_dir)?;
    hash_files(&photos).map_err(|e| CaptureError::Io {
        path: photos_dir.to_path_buf(),
        msg: e.to_string(),
    })
}

/// What is learned from one photo before the capture-wide steps.
struct Scanned {
    file: String,
    width: u32,
    height: u32,
    exif: exif::ExifRead,
    qa: PhotoQa,
    hash: u64,
}

/// Estimated peak bytes of scanning one photo: the file's bytes, the decoder's output (`decoded`,
/// from the header), the grey copy (1 B/px), the QA thumbnail's resampling buffers (f32, the
/// thumbnail's width by the photo's height, twice) and 16 MiB of slack.
pub fn photo_memory_estimate(
    w: u32,
    h: u32,
    file_bytes: u64,
    decoded: u64,
    cfg: &CaptureConfig,
) -> u64 {
    let px = w as u64 * h as u64;
    let thumb = cfg.qa_max_side.min(w.max(h)) as u64 * w.max(h) as u64 * 4 * 2;
    file_bytes + decoded.max(3 * px) + px + thumb + (16 << 20)
}

/// Decode one photo and measure it. `Err(reason)` when it cannot be used. The photo's estimated
/// memory ([`photo_memory_estimate`]) is taken from `budget` while it is decoded; a photo that alone
/// exceeds the budget is refused, naming its size and `[privacy] memory_budget_gb`.
fn scan_photo(path: &Path, cfg: &CaptureConfig, budget: &ByteBudget) -> Result<Scanned, String> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file_bytes = std::fs::metadata(path)
        .map_err(|e| format!("cannot read: {e}"))?
        .len();
    // The header gives the size without decoding a pixel.
    let header = image::ImageReader::open(path)
        .ok()
        .and_then(|r| r.with_guessed_format().ok())
        .and_then(|r| r.into_decoder().ok())
        .map(|d| {
            use image::ImageDecoder;
            (d.dimensions(), d.total_bytes())
        });
    let ((hw, hh), decoded) = header.unwrap_or(((0, 0), 0));
    let need = photo_memory_estimate(hw, hh, file_bytes, decoded, cfg);
    let _held = budget
        .acquire(need)
        .map_err(|_| memory::too_large_message(&file_name, hw, hh, need, budget.capacity()))?;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    // Decoders fill a cut-off JPEG with grey instead of failing: walk its segments to the end marker.
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        flythrough_core::jpeg::check_complete(&bytes)?;
    }
    let img = memory::decode_with_limit(&bytes, &file_name, need, budget.capacity())?;
    drop(bytes);
    let exif = exif::read_exif(path);
    let (w, h) = (img.width(), img.height());
    let (width, height) = match exif.fields.orientation {
        Some(5..=8) => (h, w),
        _ => (w, h),
    };
    let side = w.max(h);
    let grey: GrayImage = if side > cfg.qa_max_side {
        let s = cfg.qa_max_side as f64 / side as f64;
        image::imageops::resize(
            &img.to_luma8(),
            ((w as f64 * s).round() as u32).max(1),
            ((h as f64 * s).round() as u32).max(1),
            image::imageops::FilterType::Triangle,
        )
    } else {
        img.to_luma8()
    };
    let (over, under) = qa::clipped_fractions(&grey);
    let hash = qa::dhash(&grey);
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let qa = PhotoQa {
        file: file.clone(),
        laplacian_variance: qa::laplacian_variance(&grey),
        overexposed_fraction: over,
        underexposed_fraction: under,
        dhash: format!("{hash:016x}"),
    };
    Ok(Scanned {
        file,
        width,
        height,
        exif,
        qa,
        hash,
    })
}

/// Focal prior in pixels (COLMAP 4's order, `Bitmap::ExifFocalLength`):
/// 1. `f35 / 43.27 × sqrt(w² + h²)` (CIPA: 43.27 mm is the diagonal of a 36×24 mm frame);
/// 2. `focal_mm × FocalPlaneXResolution` in px/mm, rescaled by `raw_width / PixelXDimension` when the
///    photo was resized after capture;
/// 3. `1.2 × max(w, h)`.
///
/// `raw_width` is the stored (un-rotated) width, which the focal-plane resolution refers to.
pub fn focal_prior(
    f: &flythrough_core::manifest::ExifFields,
    width: u32,
    height: u32,
    raw_width: u32,
) -> FocalPrior {
    let (w, h) = (width as f64, height as f64);
    if let Some(f35) = f.focal_35mm {
        return FocalPrior {
            px: f35 / 43.27 * (w * w + h * h).sqrt(),
            rule: FocalRule::Equivalent35mm,
        };
    }
    if let (Some(fmm), Some(ppm)) = (f.focal_mm, f.focal_plane_px_per_mm) {
        let rescale = f
            .pixel_x_dimension
            .map(|px| raw_width as f64 / px as f64)
            .unwrap_or(1.0);
        let px = fmm * ppm * rescale;
        if px.is_finite() && px > 0.1 * w.max(h) && px < 10.0 * w.max(h) {
            return FocalPrior {
                px,
                rule: FocalRule::FocalPlaneResolution,
            };
        }
    }
    FocalPrior {
        px: 1.2 * w.max(h),
        rule: FocalRule::DefaultFactor,
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

/// Exposure values for all photos: `log2(t × ISO/100 / N²)`; a missing field is replaced by the
/// capture's median of that field; when no photo has it, by a neutral constant (t = 1/60 s, ISO 100,
/// f/4), which does not change differences between photos.
pub fn exposures(fields: &[&flythrough_core::manifest::ExifFields]) -> Vec<Exposure> {
    let med_t = median(fields.iter().filter_map(|f| f.exposure_time_s).collect());
    let med_iso = median(fields.iter().filter_map(|f| f.iso).collect());
    let med_n = median(fields.iter().filter_map(|f| f.f_number).collect());
    fields
        .iter()
        .map(|f| {
            let present = [
                f.exposure_time_s.is_some(),
                f.iso.is_some(),
                f.f_number.is_some(),
            ];
            let t = f.exposure_time_s.or(med_t).unwrap_or(1.0 / 60.0);
            let iso = f.iso.or(med_iso).unwrap_or(100.0);
            let n = f.f_number.or(med_n).unwrap_or(4.0);
            let source = if present.iter().all(|&p| p) {
                ExposureSource::Exif
            } else if med_t.is_some() || med_iso.is_some() || med_n.is_some() {
                ExposureSource::PartlyImputed
            } else {
                ExposureSource::Default
            };
            Exposure {
                ev: exposure_value(t, iso, n),
                source,
            }
        })
        .collect()
}

fn camera_key(f: &flythrough_core::manifest::ExifFields, w: u32, h: u32) -> String {
    format!(
        "{}|{}|{}|{}|{}x{}",
        f.make.as_deref().unwrap_or("?"),
        f.model.as_deref().unwrap_or("?"),
        f.lens_model.as_deref().unwrap_or("?"),
        f.focal_mm
            .map(|v| format!("{v:.2}"))
            .unwrap_or_else(|| "?".into()),
        w,
        h
    )
}

fn distinct_f64(v: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    for x in v {
        let r = (x * 100.0).round() / 100.0;
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out.sort_by(|a, b| a.total_cmp(b));
    out
}

/// Scan a photo folder: the manifest of usable photos and the QA report. With
/// `on_broken_photo = fail`, the first undecodable photo is an error that names it.
pub fn scan(photos_dir: &Path, cfg: &CaptureConfig) -> Result<(Manifest, QaReport), CaptureError> {
    scan_within(photos_dir, cfg, memory::resolve_budget(0.0).0)
}

/// [`scan`] with the photos being decoded holding at most `budget_bytes` between them (estimated).
pub fn scan_within(
    photos_dir: &Path,
    cfg: &CaptureConfig,
    budget_bytes: u64,
) -> Result<(Manifest, QaReport), CaptureError> {
    let (paths, ignored) = list_photos(photos_dir)?;
    let budget = ByteBudget::new(budget_bytes);
    let pb = flythrough_core::progress::bar(paths.len() as u64, "capture: reading photos");
    let results: Vec<(PathBuf, Result<Scanned, String>)> = paths
        .par_iter()
        .progress_with(pb.clone())
        .map(|p| (p.clone(), scan_photo(p, cfg, &budget)))
        .collect();
    pb.finish_and_clear();

    let mut qa = QaReport {
        photos_found: paths.len(),
        warnings: ignored
            .iter()
            .filter(|f| warn_ignored(&f.reason))
            .map(|f| format!("{}: left out, {}", f.file, f.reason))
            .collect(),
        ignored_files: ignored,
        blur_threshold: cfg.blur_threshold,
        min_photos: cfg.min_photos,
        ..Default::default()
    };
    let mut ok = Vec::new();
    for (path, r) in results {
        match r {
            Ok(s) => ok.push(s),
            Err(reason) => {
                if cfg.on_broken_photo == BrokenPhotoPolicy::Fail {
                    return Err(CaptureError::BrokenPhoto { path, reason });
                }
                let file = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                tracing::warn!("{}: skipped: {reason}", path.display());
                qa.warnings.push(format!("{file}: skipped, {reason}"));
                qa.broken.push(BrokenPhoto { file, reason });
            }
        }
    }
    if ok.is_empty() {
        return Err(CaptureError::NoPhotos(photos_dir.to_path_buf()));
    }
    let fields: Vec<_> = ok.iter().map(|s| &s.exif.fields).collect();
    let exps = exposures(&fields);
    let mut manifest = Manifest::default();
    for (i, (s, exposure)) in ok.iter().zip(exps).enumerate() {
        let raw_width = match s.exif.fields.orientation {
            Some(5..=8) => s.height,
            _ => s.width,
        };
        manifest.photos.push(PhotoRecord {
            id: i as u32 + 1,
            file: s.file.clone(),
            width: s.width,
            height: s.height,
            exif: s.exif.fields.clone(),
            exposure,
            focal_prior: focal_prior(&s.exif.fields, s.width, s.height, raw_width),
            camera_key: camera_key(&s.exif.fields, s.width, s.height),
        });
        if !s.exif.present {
            qa.missing_exif.push(s.file.clone());
        }
        for w in &s.exif.warnings {
            qa.exif_warnings.push(BrokenPhoto {
                file: s.file.clone(),
                reason: w.clone(),
            });
            tracing::warn!("{}: {w}", s.file);
        }
        if s.qa.laplacian_variance < cfg.blur_threshold {
            qa.blurry.push(s.file.clone());
        }
        if s.qa.overexposed_fraction > cfg.overexposed_fraction {
            qa.overexposed.push(s.file.clone());
        }
        if s.qa.underexposed_fraction > cfg.underexposed_fraction {
            qa.underexposed.push(s.file.clone());
        }
        qa.per_photo.push(s.qa.clone());
    }
    qa.photos_usable = manifest.photos.len();
    for i in 0..ok.len() {
        for j in i + 1..ok.len() {
            let d = (ok[i].hash ^ ok[j].hash).count_ones();
            if d <= cfg.duplicate_distance {
                qa.near_duplicates
                    .push((ok[i].file.clone(), ok[j].file.clone(), d));
            }
        }
    }
    let mut bodies: Vec<String> = Vec::new();
    for f in &fields {
        if f.make.is_some() || f.model.is_some() {
            let b = format!(
                "{} {}",
                f.make.as_deref().unwrap_or(""),
                f.model.as_deref().unwrap_or("")
            )
            .trim()
            .to_string();
            if !bodies.contains(&b) {
                bodies.push(b);
            }
        }
    }
    bodies.sort();
    qa.mixed_camera_bodies = bodies.len() > 1;
    qa.camera_bodies = bodies;
    qa.focal_lengths_mm = distinct_f64(fields.iter().filter_map(|f| f.focal_mm));
    qa.mixed_focal_lengths = qa.focal_lengths_mm.len() > 1;
    qa.apertures = distinct_f64(fields.iter().filter_map(|f| f.f_number));
    qa.aperture_changes = qa.apertures.len() > 1;
    let mut wb: Vec<u16> = fields.iter().filter_map(|f| f.white_balance).collect();
    wb.sort();
    wb.dedup();
    qa.white_balance_changes = wb.len() > 1;
    qa.white_balance_modes = wb;
    qa.too_few_photos = qa.photos_usable < cfg.min_photos;

    let list = |v: &[String]| {
        if v.len() <= 5 {
            v.join(", ")
        } else {
            format!("{}, … ({} in all)", v[..5].join(", "), v.len())
        }
    };
    if !qa.missing_exif.is_empty() {
        qa.warnings.push(format!(
            "no EXIF in {} photo(s): {}; exposure and focal fall back to defaults",
            qa.missing_exif.len(),
            list(&qa.missing_exif)
        ));
    }
    if qa.mixed_camera_bodies {
        qa.warnings.push(format!(
            "mixed camera bodies: {}; each gets its own intrinsics",
            qa.camera_bodies.join(", ")
        ));
    }
    if qa.mixed_focal_lengths {
        qa.warnings.push(format!(
            "mixed focal lengths (mm): {:?}; zoom changes split the intrinsics",
            qa.focal_lengths_mm
        ));
    }
    if qa.aperture_changes {
        qa.warnings.push(format!("aperture changes within the capture: {:?}; the model assumes a fixed aperture (depth of field)", qa.apertures));
    }
    if qa.white_balance_changes {
        qa.warnings.push("white balance mode changes within the capture; the model assumes it fixed (GLO latents absorb some of it)".into());
    }
    if !qa.blurry.is_empty() {
        qa.warnings.push(format!(
            "{} blurry photo(s) (variance of Laplacian < {}): {}",
            qa.blurry.len(),
            cfg.blur_threshold,
            list(&qa.blurry)
        ));
    }
    if !qa.overexposed.is_empty() {
        qa.warnings.push(format!(
            "{} overexposed photo(s): {}",
            qa.overexposed.len(),
            list(&qa.overexposed)
        ));
    }
    if !qa.underexposed.is_empty() {
        qa.warnings.push(format!(
            "{} underexposed photo(s): {}",
            qa.underexposed.len(),
            list(&qa.underexposed)
        ));
    }
    if !qa.near_duplicates.is_empty() {
        qa.warnings.push(format!(
            "{} near-duplicate pair(s), e.g. {} / {}",
            qa.near_duplicates.len(),
            qa.near_duplicates[0].0,
            qa.near_duplicates[0].1
        ));
    }
    if qa.too_few_photos {
        qa.warnings.push(format!(
            "only {} usable photo(s); a reconstruction needs at least {} overlapping views",
            qa.photos_usable, cfg.min_photos
        ));
    }
    Ok((manifest, qa))
}

/// The capture stage: scan the photo folder `photos` and write `out/manifest.json` and
/// `out/qa.json`, holding photos in flight to `memory_budget_gb` (`[privacy] memory_budget_gb`,
/// 0: automatic).
pub fn run(
    photos: &Path,
    cfg: &CaptureConfig,
    memory_budget_gb: f64,
    out: &Path,
) -> Result<CaptureSummary, CaptureError> {
    let (budget, _) = memory::resolve_budget(memory_budget_gb);
    let (manifest, qa) = scan_within(photos, cfg, budget)?;
    let io = |p: &Path| {
        let path = p.to_path_buf();
        move |e: std::io::Error| CaptureError::Io {
            path,
            msg: e.to_string(),
        }
    };
    let mp = out.join(CaptureOutput::MANIFEST);
    write_json(&mp, &manifest).map_err(io(&mp))?;
    let qp = out.join(CaptureOutput::QA);
    write_json(&qp, &qa).map_err(io(&qp))?;
    for w in &qa.warnings {
        tracing::warn!("capture: {w}");
    }
    Ok(summary(&qa))
}

/// The stage's summary (for `stage.json` and the report) from its QA report.
pub fn summary(qa: &QaReport) -> CaptureSummary {
    let issues = |v: &[BrokenPhoto]| {
        v.iter()
            .map(|b| FileIssue {
                file: b.file.clone(),
                reason: b.reason.clone(),
            })
            .collect()
    };
    CaptureSummary {
        photos_found: qa.photos_found,
        photos_usable: qa.photos_usable,
        broken: issues(&qa.broken),
        ignored_files: issues(&qa.ignored_files),
        missing_exif: qa.missing_exif.len(),
        camera_bodies: qa.camera_bodies.clone(),
        blurry: qa.blurry.clone(),
        overexposed: qa.overexposed.clone(),
        underexposed: qa.underexposed.clone(),
        near_duplicates: qa.near_duplicates.len(),
        warnings: qa.warnings.clone(),
    }
}
