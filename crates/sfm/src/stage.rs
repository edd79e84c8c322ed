//! The SfM stage driver: photos → features → pairs → matches → verified pairs → incremental
//! mapping → metric, gravity-aligned model → `sparse/`, `transforms.json`, `report.json`.

pub use crate::controller::{PhaseTimings, reconstruct};
use crate::features::SiftOptions;
use crate::geometry::two_view::TwoViewOptions;
use crate::mapper::{MapperError, MapperOptions};
use crate::matching::{self, MatchOptions};
use crate::pairs::PairOptions;
use flythrough_core::colmap::ColmapError;
use flythrough_core::config::{BrokenPhotoPolicy, Calibration, SfmConfig, UpAxis};
use flythrough_core::images::RedactedError;
use flythrough_core::manifest::FocalRule;
use flythrough_core::run::StageError;
use flythrough_core::stage::{FromConfig, InputEnv, PipelineStage, StageContext};
use flythrough_core::summary::SfmSummary;
use flythrough_core::{
    LoadedConfig, Manifest, Reconstruction, RedactedImages, SfmOutput, Sim3, Stage,
};
use nalgebra::{UnitQuaternion, Vector3};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn too_few_message(dir: &Path, found: usize, featureless: usize) -> String {
    if featureless == 0 {
        format!(
            "structure from motion needs at least 2 photos; {} has {found}",
            dir.display()
        )
    } else {
        format!(
            "structure from motion needs at least 2 photos with features; {} has {}, of which {featureless} \
             have too few SIFT features to use (blank, black, badly exposed or tiny: see the warnings above)",
            dir.display(),
            found + featureless
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SfmError {
    /// `found` photos can be used; `featureless` more were left out for want of features.
    #[error("{}", too_few_message(dir, *found, *featureless))]
    TooFewPhotos {
        dir: PathBuf,
        found: usize,
        featureless: usize,
    },
    #[error(
        "{0}: only {1} SIFT features (blank, badly exposed or tiny photo?); fix or remove it, or set [capture] on_broken_photo = \"skip\" to leave it out"
    )]
    NoFeatures(String, usize),
    #[error(transparent)]
    Read(#[from] RedactedError),
    #[error(
        "{0}; check that the photos overlap (each spot seen from 2+ places, 60 % overlap between neighbours)"
    )]
    Mapper(#[from] MapperError),
    #[error("[sfm] import = {}: {source}", path.display())]
    Import { path: PathBuf, source: ColmapError },
    #[error(transparent)]
    Colmap(#[from] ColmapError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Everything the stage can be told, derived from `[sfm]`.
#[derive(Clone, Debug)]
pub struct SfmOptions {
    pub sift: SiftOptions,
    pub pairs: PairOptions,
    pub matching: MatchOptions,
    pub matcher: matching::Matcher,
    pub two_view: TwoViewOptions,
    pub mapper: MapperOptions,
    /// World axis the cameras' mean up direction is rotated onto.
    pub up_axis: UpAxis,
    /// A photo with fewer than [`MIN_FEATURES`] features (blank, black, tiny) or that cannot be
    /// read: left out with a warning (`Skip`) or an error (`Fail`); `[capture] on_broken_photo`.
    pub on_broken_photo: BrokenPhotoPolicy,
}

/// Photos with fewer SIFT features than this are featureless for SfM (a 5-point or P3P estimate
/// needs far more; COLMAP's verification needs 15 inliers).
pub const MIN_FEATURES: usize = 16;

impl SfmOptions {
    pub fn from_config(c: &SfmConfig) -> Self {
        SfmOptions {
            sift: SiftOptions {
                max_image_size: c.max_image_size,
                max_features: c.max_features,
                features_per_megapixel: c.features_per_megapixel,
                min_features: c.min_features,
                ..Default::default()
            },
            pairs: PairOptions {
                exhaustive_max_images: c.exhaustive_max_images,
                sequential_overlap: c.sequential_overlap,
                retrieval_k: c.retrieval_k,
                ..Default::default()
            },
            matching: MatchOptions::default(),
            matcher: matching::Matcher::default(),
            two_view: TwoViewOptions {
                max_error_px: c.max_error_px,
                ..Default::default()
            },
            mapper: MapperOptions {
                max_error_px: c.max_error_px,
                init_min_tri_angle_deg: c.init_min_tri_angle_deg,
                abs_pose_min_inliers: c.abs_pose_min_inliers,
                local_ba_images: c.local_ba_images,
                ..Default::default()
            },
            up_axis: c.up_axis,
            on_broken_photo: BrokenPhotoPolicy::Skip,
        }
    }
}

/// What is known about one photo before SfM.
#[derive(Clone, Debug)]
pub struct PhotoPrior {
    /// Focal length prior in pixels, `None` when there is no usable EXIF (self-calibrated then).
    pub focal_px: Option<f64>,
    /// Photos with equal keys share intrinsics.
    pub camera_key: String,
}

/// `sfm/report.json` and its parts: shared with its readers through `flythrough_core::artifacts`.
pub use flythrough_core::artifacts::{
    CalibrationResult, CameraReport, ScaleReport, SfmReport as Report, Unregistered,
};

/// A reconstruction plus what the report needs from the reconstruction step.
pub struct Reconstructed {
    pub rec: Reconstruction,
    pub unregistered: Vec<Unregistered>,
    pub left_out: Vec<String>,
    pub other_models: Vec<Vec<String>>,
    pub pixel_scale: f64,
    pub matched_pairs: usize,
    pub verified_pairs: usize,
    pub verified_retrieval_pairs: Option<usize>,
    pub init_pair: Option<[String; 2]>,
    pub timings: BTreeMap<String, f64>,
    pub cameras: Vec<CameraReport>,
}

/// Priors from the capture manifest (or none): focal from EXIF, camera grouping by `camera_key`;
/// without a manifest photos are grouped by pixel size and their focal is self-calibrated.
pub fn priors_for(names: &[String], manifest: Option<&Manifest>) -> Vec<PhotoPrior> {
    names
        .iter()
        .map(|n| match manifest.and_then(|m| m.photo(n)) {
            Some(p) => PhotoPrior {
                focal_px: (p.focal_prior.rule != FocalRule::DefaultFactor)
                    .then_some(p.focal_prior.px),
                camera_key: p.camera_key.clone(),
            },
            None => PhotoPrior {
                focal_px: None,
                camera_key: String::new(),
            },
        })
        .collect()
}

/// Metric scale from calibration pairs: per pair `distance_m / |C_a − C_b|`, the median over
/// pairs, and the spread `(max − min) / median`. Unit scale and a warning without usable pairs.
pub fn metric_scale(
    rec: &Reconstruction,
    calibration: &[flythrough_core::config::Calibration],
) -> ScaleReport {
    let mut pairs = Vec::new();
    let mut scales = Vec::new();
    for c in calibration {
        let d = match (rec.image_by_name(&c.a), rec.image_by_name(&c.b)) {
            (Some(a), Some(b)) => Some((a.pose.center() - b.pose.center()).norm()),
            _ => None,
        };
        let s = d.filter(|d| *d > 1e-12).map(|d| c.distance_m / d);
        if let Some(s) = s {
            scales.push(s);
        }
        pairs.push(CalibrationResult {
            a: c.a.clone(),
            b: c.b.clone(),
            distance_m: c.distance_m,
            reconstructed: d,
            scale: s,
        });
    }
    if scales.is_empty() {
        let warning = if calibration.is_empty() {
            "no [[calibration]] pairs in the config: the model has an arbitrary unit scale"
                .to_string()
        } else {
            "no calibration pair has both photos registered: the model has an arbitrary unit scale"
                .to_string()
        };
        tracing::warn!("sfm: {warning}");
        return ScaleReport {
            value: 1.0,
            spread: 0.0,
            pairs,
            warning: Some(warning),
        };
    }
    scales.sort_by(f64::total_cmp);
    let med = if scales.len() % 2 == 1 {
        scales[scales.len() / 2]
    } else {
        0.5 * (scales[scales.len() / 2 - 1] + scales[scales.len() / 2])
    };
    let spread = (scales[scales.len() - 1] - scales[0]) / med;
    ScaleReport {
        value: med,
        spread,
        pairs,
        warning: None,
    }
}

/// The similarity that scales the model by `scale`, rotates the cameras' mean up vector (image
/// `−y`) onto `up`, and moves the centroid of the camera centres to the origin.
pub fn gravity_frame(rec: &Reconstruction, scale: f64, up: Vector3<f64>) -> Sim3 {
    let ups: Vector3<f64> = rec.images.values().map(|im| im.pose.up()).sum();
    let q = if ups.norm() < 1e-9 {
        UnitQuaternion::identity()
    } else {
        UnitQuaternion::rotation_between(&ups.normalize(), &up).unwrap_or_else(|| {
            UnitQuaternion::from_axis_angle(&Vector3::x_axis(), std::f64::consts::PI)
        })
    };
    let n = rec.images.len().max(1) as f64;
    let centroid: Vector3<f64> = rec
        .images
        .values()
        .map(|im| im.pose.center())
        .sum::<Vector3<f64>>()
        / n;
    Sim3 {
        scale,
        rotation: q,
        translation: -(q * centroid) * scale,
    }
}

/// Apply a similarity to every pose and point.
pub fn transform_model(rec: &mut Reconstruction, s: &Sim3) {
    for im in rec.images.values_mut() {
        im.pose = s.apply_pose(&im.pose);
    }
    for p in rec.points.values_mut() {
        p.xyz = s.apply(&p.xyz);
    }
}

/// Reprojection statistics `(mean, rms, mean track length)` of a model.
pub fn reprojection_stats(rec: &Reconstruction) -> (f64, f64, f64) {
    let (mut sum, mut sq, mut n, mut tracks) = (0.0, 0.0, 0usize, 0usize);
    for p in rec.points.values() {
        tracks += p.track.len();
        for &(img, k) in &p.track {
            let (Some(im), true) = (rec.images.get(&img), true) else {
                continue;
            };
            let Some(cam) = rec.cameras.get(&im.camera_id) else {
                continue;
            };
            let Some(obs) = im.points2d.get(k as usize) else {
                continue;
            };
            let Some(px) = cam.project(&im.pose.transform(&p.xyz)) else {
                continue;
            };
            let e = (px - obs.0).norm();
            sum += e;
            sq += e * e;
            n += 1;
        }
    }
    let nf = n.max(1) as f64;
    (
        sum / nf,
        (sq / nf).sqrt(),
        tracks as f64 / rec.points.len().max(1) as f64,
    )
}

/// What the SfM stage is given from the venue config: its own section, the calibration pairs, the
/// imported model's folder and the broken-photo policy — never the original photo folder (photos
/// come only through [`RedactedImages`]).
///
/// Serialised (its config hash) as `[sfm, calibration]`, with `on_broken_photo` as a third element
/// when it is not the default: the form earlier versions hashed, so their run folders stay up to
/// date. The resolved `import` folder is not serialised: its files are in the input hash.
#[derive(Debug, Clone, Default)]
pub struct SfmInputs {
    pub sfm: SfmConfig,
    pub calibration: Vec<Calibration>,
    /// `[sfm] import`, resolved against the config file's folder.
    pub import: Option<PathBuf>,
    /// `[capture] on_broken_photo`.
    pub on_broken_photo: BrokenPhotoPolicy,
}

impl Serialize for SfmInputs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let default_policy = self.on_broken_photo == BrokenPhotoPolicy::default();
        let mut seq = s.serialize_seq(Some(if default_policy { 2 } else { 3 }))?;
        seq.serialize_element(&self.sfm)?;
        seq.serialize_element(&self.calibration)?;
        if !default_policy {
            seq.serialize_element(&self.on_broken_photo)?;
        }
        seq.end()
    }
}

/// The SfM stage under the pipeline's stage contract ([`flythrough_core::stage`]).
pub struct SfmStage;

/// The files of an `[sfm] import` folder that are read (and hashed).
const IMPORT_FILES: [&str; 6] = [
    "cameras.bin",
    "images.bin",
    "points3D.bin",
    "cameras.txt",
    "images.txt",
    "points3D.txt",
];

impl PipelineStage for SfmStage {
    const STAGE: Stage = Stage::Sfm;
    type Inputs = SfmInputs;
    type Summary = SfmSummary;

    /// The upstream fingerprints and, with `[sfm] import`, the imported model's files.
    fn input_hash(
        inputs: &SfmInputs,
        upstream: &[String],
        _: &InputEnv,
    ) -> Result<String, StageError> {
        let import_hash = match &inputs.import {
            Some(dir) => {
                let files: Vec<PathBuf> = IMPORT_FILES
                    .iter()
                    .map(|f| dir.join(f))
                    .filter(|p| p.exists())
                    .collect();
                flythrough_core::run::hash_files(&files)
                    .map_err(|e| format!("[sfm] import = {}: {e}", dir.display()))?
            }
            None => String::new(),
        };
        let mut parts: Vec<&[u8]> = upstream.iter().map(|f| f.as_bytes()).collect();
        parts.push(import_hash.as_bytes());
        Ok(flythrough_core::run::hash_parts(&parts))
    }

    fn run(inputs: &SfmInputs, ctx: &StageContext) -> Result<SfmSummary, StageError> {
        let images = ctx.upstream.redacted()?;
        let manifest = ctx.upstream.capture()?.manifest()?;
        Ok(run(inputs, &images, Some(&manifest), ctx.out)?)
    }
}

impl FromConfig for SfmInputs {
    /// The SfM stage's part of a loaded config.
    fn from_config(cfg: &LoadedConfig) -> SfmInputs {
        SfmInputs {
            sfm: cfg.config.sfm.clone(),
            calibration: cfg.config.calibration.clone(),
            import: cfg.config.sfm.import.as_ref().map(|rel| cfg.dir.join(rel)),
            on_broken_photo: cfg.config.capture.on_broken_photo,
        }
    }
}

/// The stage: reconstruct (or import), scale, align up, write `sparse/`, `transforms.json` and
/// `report.json` into `out`.
pub fn run(
    inputs: &SfmInputs,
    images: &RedactedImages,
    manifest: Option<&Manifest>,
    out: &Path,
) -> Result<SfmSummary, SfmError> {
    let t_all = Instant::now();
    let sc = &inputs.sfm;
    let opts = SfmOptions {
        on_broken_photo: inputs.on_broken_photo,
        ..SfmOptions::from_config(sc)
    };
    let mut res = match &inputs.import {
        Some(path) => {
            let rec = Reconstruction::read(path).map_err(|source| SfmError::Import {
                path: path.clone(),
                source,
            })?;
            let unregistered = images
                .names()
                .iter()
                .filter(|n| rec.image_by_name(n).is_none())
                .map(|n| Unregistered {
                    name: n.clone(),
                    reason: "not in the imported model".into(),
                })
                .collect();
            let cameras = rec
                .cameras
                .values()
                .map(|c| {
                    let d = c.distortion();
                    CameraReport {
                        id: c.id,
                        key: String::new(),
                        model: c.model.name().into(),
                        width: c.width,
                        height: c.height,
                        focal_px: c.mean_focal(),
                        k1: d[0],
                        k2: d[1],
                        focal_prior_px: c.mean_focal(),
                        focal_prior_source: "imported".into(),
                        images: rec
                            .images
                            .values()
                            .filter(|im| im.camera_id == c.id)
                            .count(),
                    }
                })
                .collect();
            Reconstructed {
                rec,
                unregistered,
                left_out: Vec::new(),
                other_models: Vec::new(),
                pixel_scale: 1.0,
                matched_pairs: 0,
                verified_pairs: 0,
                verified_retrieval_pairs: None,
                init_pair: None,
                timings: BTreeMap::new(),
                cameras,
            }
        }
        None => {
            let priors = priors_for(images.names(), manifest);
            reconstruct(images, &priors, &opts)?
        }
    };
    let scale = metric_scale(&res.rec, &inputs.calibration);
    let up = match opts.up_axis {
        UpAxis::MinusY => -Vector3::y(),
        UpAxis::PlusZ => Vector3::z(),
    };
    let s = gravity_frame(&res.rec, scale.value, up);
    transform_model(&mut res.rec, &s);
    let (mean, rms, track) = reprojection_stats(&res.rec);
    let sparse = out.join(SfmOutput::SPARSE);
    res.rec.write_text(&sparse)?;
    let tf = flythrough_core::nerfstudio::Transforms::from_reconstruction(
        &res.rec,
        SfmOutput::TRANSFORMS_IMAGE_PREFIX,
    );
    let io = |path: PathBuf| move |source: std::io::Error| SfmError::Io { path, source };
    let tf_path = out.join(SfmOutput::TRANSFORMS);
    flythrough_core::run::write_json(&tf_path, &tf).map_err(io(tf_path.clone()))?;
    res.timings.insert(
        "total".into(),
        (t_all.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    );
    let total = images.names().len().max(res.rec.images.len());
    let report = Report {
        registered: res.rec.images.len(),
        total,
        unregistered: res.unregistered,
        left_out: res.left_out,
        other_models: res.other_models,
        points: res.rec.points.len(),
        mean_track_length: track,
        mean_reproj_px: mean,
        rms_reproj_px: rms,
        mean_reproj_px_feature_scale: mean / res.pixel_scale,
        pixel_scale: res.pixel_scale,
        matched_pairs: res.matched_pairs,
        verified_pairs: res.verified_pairs,
        verified_retrieval_pairs: res.verified_retrieval_pairs,
        init_pair: res.init_pair,
        timings_s: res.timings,
        scale: scale.clone(),
        up: [up.x, up.y, up.z],
        cameras: res.cameras,
        imported: sc.import.clone(),
    };
    let rp = out.join(SfmOutput::REPORT);
    flythrough_core::run::write_json(&rp, &report).map_err(io(rp.clone()))?;
    if !report.unregistered.is_empty() {
        let list: Vec<String> = report
            .unregistered
            .iter()
            .map(|u| format!("{} ({})", u.name, u.reason))
            .collect();
        tracing::warn!(
            "sfm: {} photos not registered: {}",
            list.len(),
            list.join("; ")
        );
    }
    tracing::info!(
        "sfm: {}/{} photos registered, {} points, mean reprojection error {:.2} px, scale {:.4}",
        report.registered,
        report.total,
        report.points,
        mean,
        scale.value
    );
    Ok(summary(&report))
}

/// The stage's summary (for `stage.json` and the report) from its `report.json`.
pub fn summary(r: &Report) -> SfmSummary {
    r.summary()
}
