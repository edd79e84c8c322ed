//! The reconstruction controller (COLMAP's `controllers/` style): one function per phase —
//! features, pairs, matching, verification, camera priors, mapping, model — composed by
//! [`reconstruct`], which times each phase into a [`PhaseTimings`]. The minimal solvers and the
//! mapper they call live in [`crate::geometry`] and [`crate::mapper`].

use crate::ba::Intrinsics;
use crate::features::{self, Features};
use crate::geometry::two_view::{self, TwoViewOptions};
use crate::mapper::{self, MapperInput, MapperOptions, MapperOutput, VerifiedPair};
use crate::matching::{self, PairMatches};
use crate::pairs;
use crate::stage::{
    CameraReport, MIN_FEATURES, PhotoPrior, Reconstructed, SfmError, SfmOptions, Unregistered,
};
use flythrough_core::colmap::{Image, Point3D};
use flythrough_core::config::BrokenPhotoPolicy;
use flythrough_core::{Camera, CameraModel, Pose, Reconstruction, RedactedImages};
use nalgebra::{Matrix3, Vector2};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::time::Instant;

/// Wall time of each phase of a reconstruction, seconds (rounded to milliseconds); `report.json`'s
/// `timings_s` ([`PhaseTimings::into_map`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhaseTimings {
    pub features: f64,
    pub pair_selection: f64,
    pub matching: f64,
    pub verification: f64,
    pub camera_priors: f64,
    pub mapping: f64,
    /// The mapper's own phases (initial pair, registration, bundle adjustment, …).
    pub mapping_parts: Vec<(String, f64)>,
}

impl PhaseTimings {
    /// As `report.json` names them: `features`, `pair selection`, …, `mapping: <part>`.
    pub fn into_map(self) -> BTreeMap<String, f64> {
        let mut m: BTreeMap<String, f64> = [
            ("features", self.features),
            ("pair selection", self.pair_selection),
            ("matching", self.matching),
            ("verification", self.verification),
            ("camera priors", self.camera_priors),
            ("mapping", self.mapping),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in self.mapping_parts {
            m.insert(format!("mapping: {k}"), round_ms(v));
        }
        m
    }
}

fn round_ms(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

/// Run `f` and the seconds it took.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let v = f();
    (v, round_ms(t.elapsed().as_secs_f64()))
}

/// The photos that have features, and those left out.
struct Extracted {
    /// Names of the photos kept, in folder order.
    names: Vec<String>,
    /// Each kept photo's index in the folder (image ids follow it).
    photo_index: Vec<usize>,
    feats: Vec<Features>,
    /// A thumbnail per photo (point colours).
    thumbs: Vec<image::RgbImage>,
    unregistered: Vec<Unregistered>,
    left_out: Vec<String>,
}

/// Phase 1: SIFT features and a thumbnail per photo. Featureless or unreadable photos are left
/// out with a warning, or the first one is the error (`on_broken_photo = "fail"`).
fn extract_features(images: &RedactedImages, opts: &SfmOptions) -> Result<Extracted, SfmError> {
    let all_names = images.names().to_vec();
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
    let mut x = Extracted {
        names: Vec::new(),
        photo_index: Vec::new(),
        feats: Vec::new(),
        thumbs: Vec::new(),
        unregistered: Vec::new(),
        left_out: Vec::new(),
    };
    for (k, (name, r)) in all_names.iter().zip(extracted).enumerate() {
        match r {
            Ok((f, th)) => {
                x.names.push(name.clone());
                x.photo_index.push(k);
                x.feats.push(f);
                x.thumbs.push(th);
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
                x.left_out.push(name.clone());
                x.unregistered.push(Unregistered {
                    name: name.clone(),
                    reason,
                });
            }
        }
    }
    Ok(x)
}

/// Full-resolution pixels per feature-extraction pixel (the largest over the photos).
fn pixel_scale(feats: &[Features], max_image_size: u32) -> f64 {
    feats
        .iter()
        .map(|f| {
            let m = f.width.max(f.height) as f64;
            m / m.min(max_image_size as f64)
        })
        .fold(1.0, f64::max)
}

/// Camera grouping: photos with equal keys (the manifest's camera key, else the pixel size)
/// share intrinsics. Returns the keys and each photo's camera.
fn group_cameras(priors: &[PhotoPrior], feats: &[Features]) -> (Vec<String>, Vec<usize>) {
    let mut keys: Vec<String> = Vec::new();
    let mut image_camera = Vec::with_capacity(feats.len());
    for (p, f) in priors.iter().zip(feats) {
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
    (keys, image_camera)
}

/// Per photo: (focal prior, principal point) when its camera has an EXIF focal (the median over
/// the camera's photos).
fn exif_focals(
    priors: &[PhotoPrior],
    feats: &[Features],
    image_camera: &[usize],
) -> Vec<Option<(f64, f64, f64)>> {
    let n = feats.len();
    (0..n)
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
        .collect()
}

/// Keypoints as f64 pixel positions.
fn keypoints(feats: &[Features]) -> Vec<Vec<Vector2<f64>>> {
    feats
        .iter()
        .map(|f| {
            f.keypoints
                .iter()
                .map(|k| Vector2::new(k.x as f64, k.y as f64))
                .collect()
        })
        .collect()
}

/// Phase 4: geometric verification of every matched pair: F and H, and E too where both photos
/// have an EXIF focal (LO-MSAC, [`two_view::verify_pair_calibrated`]). Returns each verified pair
/// with its fundamental matrix.
fn verify_pairs(
    matches: &[PairMatches],
    kps: &[Vec<Vector2<f64>>],
    exif_focal: &[Option<(f64, f64, f64)>],
    tv: &TwoViewOptions,
) -> Vec<(VerifiedPair, Matrix3<f64>)> {
    let pb = flythrough_core::progress::bar(matches.len() as u64, "sfm: verification");
    let verified = matches
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
    verified
}

/// Diagnostics of matching and verification (`tracing` target [`crate::DEBUG_TARGET`]).
fn log_matches(
    feats: &[Features],
    matches: &[PairMatches],
    verified: &[(VerifiedPair, Matrix3<f64>)],
) {
    if !crate::debug_enabled() {
        return;
    }
    let nk: Vec<usize> = feats.iter().map(|f| f.keypoints.len()).collect();
    tracing::debug!(target: crate::DEBUG_TARGET, "features per photo: {nk:?}");
    let by_pair: std::collections::HashMap<(usize, usize), &VerifiedPair> =
        verified.iter().map(|(p, _)| ((p.i, p.j), p)).collect();
    for pm in matches {
        let v = by_pair.get(&(pm.i, pm.j));
        tracing::debug!(
            target: crate::DEBUG_TARGET,
            "pair {}-{}: {} matches, {:?} verified, {:?} H",
            pm.i,
            pm.j,
            pm.matches.len(),
            v.map(|v| v.matches.len()),
            v.map(|v| v.num_h_inliers)
        );
    }
}

/// A verified pair's fundamental matrix with the two photos' principal points.
type PairGeometry = (Matrix3<f64>, (f64, f64), (f64, f64));

/// A camera's focal without an EXIF prior: self-calibrated from the fundamental matrices of its
/// photos' verified pairs (the median essential-matrix defect, Kruppa-style), trusted only when
/// its minimum is sharp (narrow fields of view leave the focal unobservable from F), else COLMAP's
/// 1.2 x max side.
fn self_calibrated_focal(fs: &[PairGeometry], w: f64, h: f64) -> (f64, &'static str) {
    let sc = two_view::self_calibrate_focal(fs, 0.3 * w.max(h), 6.0 * w.max(h));
    let defect = |f: f64| {
        let mut v: Vec<f64> = fs
            .iter()
            .map(|(fm, a, b)| two_view::essential_defect(fm, f, *a, *b))
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(1.0)
    };
    if crate::debug_enabled() {
        tracing::debug!(target: crate::DEBUG_TARGET, "self-calibrated focal {sc:?} from {} pairs", fs.len());
        for k in 0..30 {
            let f = 0.3 * w.max(h) * 20f64.powf(k as f64 / 29.0);
            tracing::debug!(target: crate::DEBUG_TARGET, "  f {f:.0}: median defect {:.4}", defect(f));
        }
    }
    let sc =
        sc.filter(|&f| fs.len() >= 3 && defect(f) < 0.5 * defect(0.5 * f).min(defect(2.0 * f)));
    match sc {
        Some(f) => (f, "self-calibrated"),
        None => (1.2 * w.max(h), "default 1.2 x max side"),
    }
}

/// Phase 5: each camera's starting intrinsics (the EXIF focal's median, else self-calibrated) and
/// its report row.
fn camera_priors(
    keys: &[String],
    image_camera: &[usize],
    feats: &[Features],
    priors: &[PhotoPrior],
    verified: &[(VerifiedPair, Matrix3<f64>)],
) -> (Vec<Intrinsics>, Vec<CameraReport>) {
    let n = feats.len();
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
            self_calibrated_focal(&fs, w, h)
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
    (intrinsics, cam_reports)
}

/// The mapper's options for these photos: COLMAP's 12 px P3P threshold is meant for photos of 1-3
/// thousand pixels; at a few hundred pixels it admits wrong (mirrored) registrations, so it shrinks
/// with the feature resolution.
fn mapper_options(opts: &SfmOptions, feats: &[Features], pixel_scale: f64) -> MapperOptions {
    let feature_side = feats
        .iter()
        .map(|f| f.width.max(f.height) as f64 / pixel_scale)
        .fold(0.0, f64::max);
    MapperOptions {
        pixel_scale,
        abs_pose_max_error_px: (opts.mapper.abs_pose_max_error_px * feature_side / 1600.0)
            .clamp(opts.mapper.max_error_px, opts.mapper.abs_pose_max_error_px),
        ..opts.mapper.clone()
    }
}

/// Phase 7: the mapper's output as a COLMAP model (the refined intrinsics into the camera
/// reports, image ids following the folder order, point colours from the thumbnails); photos that
/// did not register are added to `x.unregistered`. Returns the model and the photos of the other
/// models.
fn to_model(
    x: &mut Extracted,
    input: &MapperInput,
    image_camera: &[usize],
    out: &MapperOutput,
    cam_reports: &mut [CameraReport],
) -> (Reconstruction, Vec<Vec<String>>) {
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
    let photo_index = &x.photo_index;
    let image_id = |i: usize| photo_index[i] as u32 + 1;
    for (i, name) in x.names.iter().enumerate() {
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
            None => x.unregistered.push(Unregistered {
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
        let th = &x.thumbs[i0];
        let kp = input.keypoints[i0][k0];
        let sx = th.width() as f64 / x.feats[i0].width as f64;
        let sy = th.height() as f64 / x.feats[i0].height as f64;
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
        .map(|m| m.iter().map(|&i| x.names[i].clone()).collect())
        .collect();
    for m in &other_models {
        tracing::warn!(
            "sfm: the model broke into pieces; a separate model of {} photos was not kept: {}",
            m.len(),
            m.join(", ")
        );
    }
    (rec, other_models)
}

/// Photos → a sparse model in the reconstruction's own frame (arbitrary scale and orientation):
/// features → pairs → matches → verification → camera priors → incremental mapping → model.
pub fn reconstruct(
    images: &RedactedImages,
    priors: &[PhotoPrior],
    opts: &SfmOptions,
) -> Result<Reconstructed, SfmError> {
    let too_few = |found: usize, featureless: usize| SfmError::TooFewPhotos {
        dir: images.dir().to_path_buf(),
        found,
        featureless,
    };
    if images.names().len() < 2 {
        return Err(too_few(images.names().len(), 0));
    }
    let mut t = PhaseTimings::default();
    let (x, secs) = timed(|| extract_features(images, opts));
    let mut x = x?;
    t.features = secs;
    let n = x.names.len();
    if n < 2 {
        return Err(too_few(n, x.left_out.len()));
    }
    let pixel_scale = pixel_scale(&x.feats, opts.sift.max_image_size);
    let (pair_list, secs) = timed(|| pairs::select_pairs(&x.feats, &opts.pairs));
    t.pair_selection = secs;
    let (matches, secs) =
        timed(|| matching::match_pairs(&x.feats, &pair_list, &opts.matching, opts.matcher));
    t.matching = secs;
    let ((keys, image_camera, kps, verified), secs) = timed(|| {
        let (keys, image_camera) = group_cameras(priors, &x.feats);
        let exif_focal = exif_focals(priors, &x.feats, &image_camera);
        let kps = keypoints(&x.feats);
        let tv = TwoViewOptions {
            max_error_px: opts.two_view.max_error_px * pixel_scale,
            ..opts.two_view.clone()
        };
        let verified = verify_pairs(&matches, &kps, &exif_focal, &tv);
        (keys, image_camera, kps, verified)
    });
    t.verification = secs;
    log_matches(&x.feats, &matches, &verified);
    let ((intrinsics, mut cam_reports), secs) =
        timed(|| camera_priors(&keys, &image_camera, &x.feats, priors, &verified));
    t.camera_priors = secs;
    let input = MapperInput {
        keypoints: kps,
        image_camera: image_camera.clone(),
        intrinsics,
        pairs: verified.iter().map(|(p, _)| p.clone()).collect(),
    };
    let mopts = mapper_options(opts, &x.feats, pixel_scale);
    let (out, secs) = timed(|| {
        let pb = flythrough_core::progress::bar(n as u64, "sfm: mapping");
        let out = mapper::run_mapper(&input, &mopts, |k| pb.set_position(k as u64));
        pb.finish_and_clear();
        out
    });
    let out = out?;
    t.mapping = secs;
    t.mapping_parts = out.timings.clone();
    let (rec, other_models) = to_model(&mut x, &input, &image_camera, &out, &mut cam_reports);
    Ok(Reconstructed {
        rec,
        unregistered: x.unregistered,
        left_out: x.left_out,
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
            x.names[out.init_pair.0].clone(),
            x.names[out.init_pair.1].clone(),
        ]),
        timings: t.into_map(),
        cameras: cam_reports,
    })
}
