//! The SfM stage driver: photos → features → pairs → matches → verified pairs → incremental
//! mapping → metric, gravity-aligned model → `sparse/`, `transforms.json`, `report.json`.

use crate::ba::Intrinsics;
use crate::features::{self, Features, SiftOptions};
use crate::geometry::two_view::{self, TwoViewOptions};
use crate::mapper::{self, MapperError, MapperInput, MapperOptions, VerifiedPair};
use crate::matching::{self, MatchOptions};
use crate::pairs::{self, PairOptions};
use flythrough_core::colmap::{ColmapError, Image, Point3D};
use flythrough_core::config::{BrokenPhotoPolicy, Calibration, SfmConfig, UpAxis};
use flythrough_core::images::RedactedError;
use flythrough_core::manifest::FocalRule;
use flythrough_core::run::StageError;
use flythrough_core::stage::{FromConfig, InputEnv, PipelineStage, StageContext};
use flythrough_core::summary::SfmSummary;
use flythrough_core::{
    Camera, CameraModel, LoadedConfig, Manifest, Pose, Reconstruction, RedactedImages, SfmOutput,
    Sim3, Stage,
};
use nalgebra::{UnitQuaternion, Vector2, Vector3};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum SfmError {
    #[error("structure from motion needs at least 2 photos; {dir} has {found}")]
    TooFewPhotos { dir: PathBuf, found: usize },
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

fn secs(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}

/// Photos → a sparse model in the reconstruction's own frame (arbitrary scale and orientation).
pub fn reconstruct(
    images: &RedactedImages,
    priors: &[PhotoPrior],
    opts: &SfmOptions,
) -> Result<Reconstructed, SfmError> {
    let all_names = images.names().to_vec();
    if all_names.len() < 2 {
        return Err(SfmError::TooFewPhotos {
            dir: images.dir().to_path_buf(),
            found: all_names.len(),
        });
    }
    let mut timings = BTreeMap::new();
    // 1. Features (+ a thumbnail per photo for point colours).
    let t = Instant::now();
    let pb = flythrough_core::progress::bar(all_names.len() as u64, "sfm: features");
    let extracted: Vec<Result<(Features, image::RgbImage), SfmError>> = all_names
        .par_iter()
        .map(|name| {
            let rgb = images.load_rgb(name)?;
            let gray = image::DynamicImage::ImageRgb8(rgb.clone()).to_luma8();
            let f = features::extract(&gray, &opts.sift);
            let thumb = image::imageops::thumbnail(
                &rgb,
                (rgb.width() / 8).max(1),
                (rgb.height() / 8).max(1),
            );
            pb.inc(1);
            if f.keypoints.len() < MIN_FEATURES {
                return Err(SfmError::NoFeatures(name.clone(), f.keypoints.len()));
            }
            Ok((f, thumb))
        })
        .collect();
    pb.finish_and_clear();
    // Featureless or unreadable photos: left out with a warning, or the first one is the error.
    let mut names = Vec::new();
    let mut photo_index = Vec::new();
    let mut feats = Vec::new();
    let mut thumbs = Vec::new();
    let mut unregistered = Vec::new();
    let mut left_out = Vec::new();
    for (k, (name, r)) in all_names.iter().zip(extracted).enumerate() {
        match r {
            Ok((f, th)) => {
                names.push(name.clone());
                photo_index.push(k);
                feats.push(f);
                thumbs.push(th);
            }
            Err(e) if opts.on_broken_photo == BrokenPhotoPolicy::Fail => return Err(e),
            Err(e) => {
                let reason = match &e {
                    SfmError::NoFeatures(_, nf) => format!(
                        "left out of SfM: only {nf} SIFT features (blank, badly exposed or tiny photo)"
                    ),
                    other => format!("left out of SfM: cannot be read: {other}"),
                };
                tracing::warn!("sfm: {name}: {reason}");
                left_out.push(name.clone());
                unregistered.push(Unregistered {
                    name: name.clone(),
                    reason,
                });
            }
        }
    }
    let n = names.len();
    if n < 2 {
        return Err(SfmError::TooFewPhotos {
            dir: images.dir().to_path_buf(),
            found: n,
        });
    }
    timings.insert("features".into(), secs(t));
    let pixel_scale = feats
        .iter()
        .map(|f| {
            let m = f.width.max(f.height) as f64;
            m / m.min(opts.sift.max_image_size as f64)
        })
        .fold(1.0, f64::max);

    // 2. Pairs and matches.
    let t = Instant::now();
    let pair_list = pairs::select_pairs(&feats, &opts.pairs);
    timings.insert("pair selection".into(), secs(t));
    let t = Instant::now();
    let matches = matching::match_pairs(&feats, &pair_list, &opts.matching, opts.matcher);
    timings.insert("matching".into(), secs(t));

    // 3. Geometric verification: F and H for every pair, E too where both photos have an EXIF focal
    // (camera grouping first: photos with equal keys share intrinsics).
    let t = Instant::now();
    let mut keys: Vec<String> = Vec::new();
    let mut image_camera = Vec::with_capacity(n);
    for (p, f) in priors.iter().zip(&feats) {
        let key = if p.camera_key.is_empty() {
            format!("{}x{}", f.width, f.height)
        } else {
            p.camera_key.clone()
        };
        let c = keys.iter().position(|k| *k == key).unwrap_or_else(|| {
            keys.push(key.clone());
            keys.len() - 1
        });
        image_camera.push(c);
    }
    // Per photo: (focal prior, principal point) when its camera has an EXIF focal.
    let exif_focal: Vec<Option<(f64, f64, f64)>> = (0..n)
        .map(|i| {
            let c = image_camera[i];
            let mut e: Vec<f64> = (0..n)
                .filter(|&k| image_camera[k] == c)
                .filter_map(|k| priors[k].focal_px)
                .collect();
            e.sort_by(f64::total_cmp);
            let f = *e.get(e.len() / 2)?;
            Some((f, feats[i].width as f64 / 2.0, feats[i].height as f64 / 2.0))
        })
        .collect();
    let kps: Vec<Vec<Vector2<f64>>> = feats
        .iter()
        .map(|f| {
            f.keypoints
                .iter()
                .map(|k| Vector2::new(k.x as f64, k.y as f64))
                .collect()
        })
        .collect();
    let tv = TwoViewOptions {
        max_error_px: opts.two_view.max_error_px * pixel_scale,
        ..opts.two_view.clone()
    };
    let pb = flythrough_core::progress::bar(matches.len() as u64, "sfm: verification");
    let verified: Vec<(VerifiedPair, nalgebra::Matrix3<f64>)> = matches
        .par_iter()
        .filter_map(|pm| {
            pb.inc(1);
            let x1: Vec<_> = pm
                .matches
                .iter()
                .map(|&(a, _)| kps[pm.i][a as usize])
                .collect();
            let x2: Vec<_> = pm
                .matches
                .iter()
                .map(|&(_, b)| kps[pm.j][b as usize])
                .collect();
            let norm = |p: &Vector2<f64>, (f, cx, cy): (f64, f64, f64)| {
                Vector2::new((p.x - cx) / f, (p.y - cy) / f)
            };
            let cal = match (exif_focal[pm.i], exif_focal[pm.j]) {
                (Some(a), Some(b)) => Some((
                    x1.iter().map(|p| norm(p, a)).collect::<Vec<_>>(),
                    x2.iter().map(|p| norm(p, b)).collect::<Vec<_>>(),
                    0.5 * (a.0 + b.0),
                )),
                _ => None,
            };
            let g = two_view::verify_pair_calibrated(
                &x1,
                &x2,
                cal.as_ref().map(|(n1, n2, focal)| two_view::Calibration {
                    n1,
                    n2,
                    focal: *focal,
                }),
                &TwoViewOptions {
                    seed: (pm.i * 7919 + pm.j) as u64,
                    ..tv.clone()
                },
            )?;
            Some((
                VerifiedPair {
                    i: pm.i,
                    j: pm.j,
                    matches: g.inliers.iter().map(|&q| pm.matches[q]).collect(),
                    num_h_inliers: g.num_h_inliers,
                },
                g.f,
            ))
        })
        .collect();
    pb.finish_and_clear();
    timings.insert("verification".into(), secs(t));
    if crate::debug_enabled() {
        let nk: Vec<usize> = feats.iter().map(|f| f.keypoints.len()).collect();
        tracing::debug!(target: crate::DEBUG_TARGET, "features per photo: {nk:?}");
        let by_pair: std::collections::HashMap<(usize, usize), &VerifiedPair> =
            verified.iter().map(|(p, _)| ((p.i, p.j), p)).collect();
        for pm in &matches {
            let v = by_pair.get(&(pm.i, pm.j));
            tracing::debug!(target: crate::DEBUG_TARGET,
                "pair {}-{}: {} matches, {:?} verified, {:?} H",
                pm.i,
                pm.j,
                pm.matches.len(),
                v.map(|v| v.matches.len()),
                v.map(|v| v.num_h_inliers)
            );
        }
    }

    // 4. Cameras: group photos, priors or self-calibration.
    let t = Instant::now();
    let mut intrinsics: Vec<Intrinsics> = Vec::new();
    let mut cam_reports = Vec::new();
    for (c, key) in keys.iter().enumerate() {
        let members: Vec<usize> = (0..n).filter(|&i| image_camera[i] == c).collect();
        let f0 = &feats[members[0]];
        let (w, h) = (f0.width as f64, f0.height as f64);
        let exif: Vec<f64> = members.iter().filter_map(|&i| priors[i].focal_px).collect();
        let (focal, source) = if !exif.is_empty() {
            let mut e = exif.clone();
            e.sort_by(f64::total_cmp);
            (e[e.len() / 2], "exif")
        } else {
            let fs: Vec<_> = verified
                .iter()
                .filter(|(p, _)| image_camera[p.i] == c && image_camera[p.j] == c)
                .map(|(_, f)| (*f, (w / 2.0, h / 2.0), (w / 2.0, h / 2.0)))
                .collect();
            let sc = two_view::self_calibrate_focal(&fs, 0.3 * w.max(h), 6.0 * w.max(h));
            if crate::debug_enabled() {
                tracing::debug!(target: crate::DEBUG_TARGET, "self-calibrated focal {sc:?} from {} pairs", fs.len());
                for k in 0..30 {
                    let f = 0.3 * w.max(h) * 20f64.powf(k as f64 / 29.0);
                    let mut v: Vec<f64> = fs
                        .iter()
                        .map(|(fm, a, b)| two_view::essential_defect(fm, f, *a, *b))
                        .collect();
                    v.sort_by(f64::total_cmp);
                    tracing::debug!(target: crate::DEBUG_TARGET, "  f {f:.0}: median defect {:.4}", v[v.len() / 2]);
                }
            }
            // Trust it only when the minimum is sharp: narrow fields of view (weak perspective) leave
            // the focal unobservable from F, and then COLMAP's 1.2 x max side is the safer start.
            let defect = |f: f64| {
                let mut v: Vec<f64> = fs
                    .iter()
                    .map(|(fm, a, b)| two_view::essential_defect(fm, f, *a, *b))
                    .collect();
                v.sort_by(f64::total_cmp);
                v.get(v.len() / 2).copied().unwrap_or(1.0)
            };
            let sc = sc.filter(|&f| {
                fs.len() >= 3 && defect(f) < 0.5 * defect(0.5 * f).min(defect(2.0 * f))
            });
            match sc {
                Some(f) => (f, "self-calibrated"),
                None => (1.2 * w.max(h), "default 1.2 x max side"),
            }
        };
        intrinsics.push([focal, w / 2.0, h / 2.0, 0.0, 0.0]);
        cam_reports.push(CameraReport {
            id: c as u32 + 1,
            key: key.clone(),
            model: CameraModel::Radial.name().into(),
            width: f0.width,
            height: f0.height,
            focal_px: focal,
            k1: 0.0,
            k2: 0.0,
            focal_prior_px: focal,
            focal_prior_source: source.into(),
            images: members.len(),
        });
    }
    timings.insert("camera priors".into(), secs(t));

    // 5. Incremental mapping.
    let t = Instant::now();
    let input = MapperInput {
        keypoints: kps,
        image_camera: image_camera.clone(),
        intrinsics,
        pairs: verified.iter().map(|(p, _)| p.clone()).collect(),
    };
    // COLMAP's 12 px P3P threshold is meant for photos of 1-3 thousand pixels; at a few hundred
    // pixels it admits wrong (mirrored) registrations, so it shrinks with the feature resolution.
    let feature_side = feats
        .iter()
        .map(|f| f.width.max(f.height) as f64 / pixel_scale)
        .fold(0.0, f64::max);
    let mopts = MapperOptions {
        pixel_scale,
        abs_pose_max_error_px: (opts.mapper.abs_pose_max_error_px * feature_side / 1600.0)
            .clamp(opts.mapper.max_error_px, opts.mapper.abs_pose_max_error_px),
        ..opts.mapper.clone()
    };
    let pb = flythrough_core::progress::bar(n as u64, "sfm: mapping");
    let out = mapper::run_mapper(&input, &mopts, |k| pb.set_position(k as u64))?;
    pb.finish_and_clear();
    for (k, v) in &out.timings {
        timings.insert(format!("mapping: {k}"), (v * 1000.0).round() / 1000.0);
    }
    timings.insert("mapping".into(), secs(t));

    // 6. To a COLMAP model.
    let mut rec = Reconstruction::default();
    for (c, k) in out.intrinsics.iter().enumerate() {
        let cr = &mut cam_reports[c];
        cr.focal_px = k[0];
        cr.k1 = k[3];
        cr.k2 = k[4];
        rec.cameras.insert(
            c as u32 + 1,
            Camera {
                id: c as u32 + 1,
                model: CameraModel::Radial,
                width: cr.width,
                height: cr.height,
                params: vec![k[0], k[1], k[2], k[3], k[4]],
            },
        );
    }
    // Image ids follow the photo order of the folder (left-out photos keep their numbers free).
    let image_id = |i: usize| photo_index[i] as u32 + 1;
    for (i, name) in names.iter().enumerate() {
        match out.poses[i] {
            Some((r, t)) => {
                rec.images.insert(
                    image_id(i),
                    Image {
                        id: image_id(i),
                        camera_id: image_camera[i] as u32 + 1,
                        name: name.clone(),
                        pose: Pose::from_rt(&r, t),
                        points2d: input.keypoints[i].iter().map(|p| (*p, None)).collect(),
                    },
                );
            }
            None => unregistered.push(Unregistered {
                name: name.clone(),
                reason: out
                    .failures
                    .get(&i)
                    .cloned()
                    .unwrap_or_else(|| "not registered".into()),
            }),
        }
    }
    for (pid, p) in out.points.iter().enumerate() {
        let id = pid as u64 + 1;
        let (i0, k0) = p.obs[0];
        let th = &thumbs[i0];
        let kp = input.keypoints[i0][k0];
        let sx = th.width() as f64 / feats[i0].width as f64;
        let sy = th.height() as f64 / feats[i0].height as f64;
        let px = ((kp.x * sx) as u32).min(th.width() - 1);
        let py = ((kp.y * sy) as u32).min(th.height() - 1);
        let rgb = th.get_pixel(px, py).0;
        for &(img, kp) in &p.obs {
            if let Some(im) = rec.images.get_mut(&image_id(img)) {
                im.points2d[kp].1 = Some(id);
            }
        }
        rec.points.insert(
            id,
            Point3D {
                id,
                xyz: p.xyz,
                rgb,
                error: p.error,
                track: p
                    .obs
                    .iter()
                    .map(|&(i, k)| (image_id(i), k as u32))
                    .collect(),
            },
        );
    }
    let other_models: Vec<Vec<String>> = out
        .other_models
        .iter()
        .map(|m| m.iter().map(|&i| names[i].clone()).collect())
        .collect();
    for m in &other_models {
        tracing::warn!(
            "sfm: the model broke into pieces; a separate model of {} photos was not kept: {}",
            m.len(),
            m.join(", ")
        );
    }
    Ok(Reconstructed {
        rec,
        unregistered,
        left_out,
        other_models,
        pixel_scale,
        matched_pairs: matches.len(),
        verified_pairs: verified.len(),
        verified_retrieval_pairs: (n > opts.pairs.exhaustive_max_images).then(|| {
            verified
                .iter()
                .filter(|(p, _)| p.j - p.i > opts.pairs.sequential_overlap)
                .count()
        }),
        init_pair: Some([
            names[out.init_pair.0].clone(),
            names[out.init_pair.1].clone(),
        ]),
        timings,
        cameras: cam_reports,
    })
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
    res.timings.insert("total".into(), secs(t_all));
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
