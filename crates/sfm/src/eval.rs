//! Pose evaluation against ground truth (`flythrough eval-poses --est DIR --gt DIR`), after COLMAP's
//! `benchmark/reconstruction/evaluation/utils.py`.
//!
//! - Relative error of a ground-truth image pair `(a, b)`: with relative poses
//!   `R_ab = R_b R_aᵀ`, `t_ab = t_b − R_ab t_a`, the error is
//!   `max(∠(R_ab,est R_ab,gtᵀ), ∠(t_ab,est, t_ab,gt))` in degrees (the translation-direction term is 0
//!   when the ground-truth centres coincide). A pair with an unregistered image is a failure (∞).
//! - AUC at threshold `τ`: the area under the recall-vs-error curve from 0 to `τ`, divided by `τ`
//!   (1 = every pair exact).
//! - Centre error: after the Umeyama similarity that best maps estimated onto ground-truth centres,
//!   `|S(c_est) − c_gt|` as a percentage of the ground-truth *spread*, the RMS distance of the
//!   ground-truth centres from their centroid.

use flythrough_core::colmap::Image;
use flythrough_core::{Camera, CameraModel, Pose, Reconstruction, Sim3};
use nalgebra::{Matrix3, Rotation3, Vector3};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Thresholds (degrees) of the pair AUCs.
pub const AUC_THRESHOLDS_DEG: [f64; 4] = [1.0, 2.0, 5.0, 10.0];

#[derive(Clone, Debug, Serialize)]
pub struct PoseEval {
    pub gt_images: usize,
    pub registered: usize,
    pub registered_fraction: f64,
    pub pairs: usize,
    /// `AUC@1°`, `AUC@2°`, `AUC@5°`, `AUC@10°`, each in `[0, 1]`.
    pub auc: BTreeMap<String, f64>,
    pub median_pair_error_deg: f64,
    pub median_center_error_pct: f64,
    pub max_center_error_pct: f64,
    /// The median centre error in ground-truth units (metres for metric ground truth).
    pub median_center_error: f64,
    /// RMS distance of the ground-truth centres from their centroid (ground-truth units).
    pub gt_spread: f64,
    /// Scale of the similarity est → gt (1 when the estimate is metric and the truth is too).
    pub sim3_scale: f64,
    pub median_focal_error_pct: f64,
}

/// Area under the recall-vs-error curve up to `t`, normalised by `t` (trapezoid rule over the
/// sorted errors, recall `(i+1)/N`), as in COLMAP's and SuperGlue's `compute_auc`.
pub fn auc(errors: &[f64], t: f64) -> f64 {
    if errors.is_empty() {
        return 0.0;
    }
    let mut e: Vec<f64> = errors.to_vec();
    e.sort_by(f64::total_cmp);
    let n = e.len() as f64;
    let mut area = 0.0;
    let (mut prev_e, mut prev_r) = (0.0, 0.0);
    for (i, &err) in e.iter().enumerate() {
        if err > t {
            break;
        }
        let r = (i + 1) as f64 / n;
        area += (err - prev_e) * prev_r;
        prev_e = err;
        prev_r = r;
    }
    area += (t - prev_e) * prev_r;
    area / t
}

fn rot_angle_deg(r: &Matrix3<f64>) -> f64 {
    Rotation3::from_matrix_unchecked(*r).angle().to_degrees()
}

/// `max(rotation error, translation-direction error)` of one pair, degrees.
pub fn pair_error_deg(est: (&Pose, &Pose), gt: (&Pose, &Pose)) -> f64 {
    let rel = |a: &Pose, b: &Pose| {
        let r = b.r() * a.r().transpose();
        (r, b.translation - r * a.translation)
    };
    let (re, te) = rel(est.0, est.1);
    let (rg, tg) = rel(gt.0, gt.1);
    let dr = rot_angle_deg(&(re * rg.transpose()));
    let dt = if tg.norm() < 1e-9 * (1.0 + gt.0.translation.norm()) {
        0.0
    } else if te.norm() < 1e-300 {
        180.0
    } else {
        crate::geometry::angle_between(&te, &tg).to_degrees()
    };
    dr.max(dt)
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Compare an estimated model with ground truth; images are matched by name.
pub fn eval_poses(est: &Reconstruction, gt: &Reconstruction) -> PoseEval {
    let gt_imgs: Vec<&Image> = gt.images.values().collect();
    let est_of: Vec<Option<&Image>> = gt_imgs.iter().map(|g| est.image_by_name(&g.name)).collect();
    let registered = est_of.iter().filter(|e| e.is_some()).count();
    let mut errors = Vec::new();
    for a in 0..gt_imgs.len() {
        for b in a + 1..gt_imgs.len() {
            errors.push(match (est_of[a], est_of[b]) {
                (Some(ea), Some(eb)) => {
                    pair_error_deg((&ea.pose, &eb.pose), (&gt_imgs[a].pose, &gt_imgs[b].pose))
                }
                _ => f64::INFINITY,
            });
        }
    }
    let auc_map: BTreeMap<String, f64> = AUC_THRESHOLDS_DEG
        .iter()
        .map(|&t| (format!("{t}"), auc(&errors, t)))
        .collect();
    let mut e2 = errors.clone();
    let median_pair = median(&mut e2);
    // Centres.
    let (mut src, mut dst) = (Vec::new(), Vec::new());
    for (g, e) in gt_imgs.iter().zip(&est_of) {
        if let Some(e) = e {
            src.push(e.pose.center());
            dst.push(g.pose.center());
        }
    }
    let all_gt: Vec<Vector3<f64>> = gt_imgs.iter().map(|g| g.pose.center()).collect();
    let centroid = all_gt.iter().sum::<Vector3<f64>>() / all_gt.len().max(1) as f64;
    let spread = (all_gt
        .iter()
        .map(|c| (c - centroid).norm_squared())
        .sum::<f64>()
        / all_gt.len().max(1) as f64)
        .sqrt();
    let (mut med_c, mut max_c, mut scale) = (f64::NAN, f64::NAN, f64::NAN);
    if let Some(s) = Sim3::umeyama(&src, &dst) {
        let mut errs: Vec<f64> = src
            .iter()
            .zip(&dst)
            .map(|(a, b)| (s.apply(a) - b).norm() / spread * 100.0)
            .collect();
        max_c = errs.iter().copied().fold(0.0, f64::max);
        med_c = median(&mut errs);
        scale = s.scale;
    }
    // Focal.
    let mut ferr: Vec<f64> = gt_imgs
        .iter()
        .zip(&est_of)
        .filter_map(|(g, e)| {
            let e = (*e)?;
            let cg = gt.cameras.get(&g.camera_id)?;
            let ce = est.cameras.get(&e.camera_id)?;
            // Compare at the ground truth's resolution.
            let s = cg.width as f64 / ce.width.max(1) as f64;
            Some((ce.mean_focal() * s / cg.mean_focal() - 1.0).abs() * 100.0)
        })
        .collect();
    PoseEval {
        gt_images: gt_imgs.len(),
        registered,
        registered_fraction: registered as f64 / gt_imgs.len().max(1) as f64,
        pairs: errors.len(),
        auc: auc_map,
        median_pair_error_deg: median_pair,
        median_center_error_pct: med_c,
        max_center_error_pct: max_c,
        median_center_error: med_c * spread / 100.0,
        gt_spread: spread,
        sim3_scale: scale,
        median_focal_error_pct: median(&mut ferr),
    }
}

/// Read both models (COLMAP text or binary folders) and evaluate: what `flythrough eval-poses` runs.
pub fn eval_pose_dirs(
    est: &Path,
    gt: &Path,
) -> Result<PoseEval, flythrough_core::colmap::ColmapError> {
    Ok(eval_poses(
        &Reconstruction::read(est)?,
        &Reconstruction::read(gt)?,
    ))
}

/// Parse a Middlebury multi-view `*_par.txt` file (first line: count; then per image
/// `name k11..k33 r11..r33 t1 t2 t3`, `x ~ K [R | t] X`) into a model with one `PINHOLE` camera per
/// image of the given size.
pub fn parse_middlebury_par(text: &str, width: u32, height: u32) -> Result<Reconstruction, String> {
    let mut rec = Reconstruction::default();
    for (ln, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() != 22 {
            return Err(format!(
                "line {}: expected 22 fields, found {}",
                ln + 1,
                f.len()
            ));
        }
        let v: Vec<f64> = f[1..]
            .iter()
            .map(|s| {
                s.parse::<f64>()
                    .map_err(|e| format!("line {}: {s:?}: {e}", ln + 1))
            })
            .collect::<Result<_, _>>()?;
        let id = rec.images.len() as u32 + 1;
        let r = Matrix3::from_row_slice(&v[9..18]);
        let pose = Pose::from_rt(&r, Vector3::new(v[18], v[19], v[20]));
        rec.cameras.insert(
            id,
            Camera {
                id,
                model: CameraModel::Pinhole,
                width,
                height,
                params: vec![v[0], v[4], v[2], v[5]],
            },
        );
        rec.images.insert(
            id,
            Image {
                id,
                camera_id: id,
                name: f[0].to_string(),
                pose,
                points2d: vec![],
            },
        );
    }
    Ok(rec)
}

/// A ground-truth model from an instant-ngp / nerfstudio `transforms.json` (camera-to-world
/// `transform_matrix` per frame with OpenGL camera axes, `fl_x`, `fl_y`, `cx`, `cy`, `w`, `h` at the
/// top level): OpenCV world-to-camera poses `R = (R_gl · diag(1, −1, −1))ᵀ`, `t = −R C`, one
/// `PINHOLE` camera, image names the file names of `file_path`. The world frame (instant-ngp
/// re-centres and rescales it) does not matter to [`eval_poses`], which aligns by a similarity.
pub fn parse_nerf_transforms(text: &str) -> Result<Reconstruction, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let num = |o: &serde_json::Value, k: &str| {
        o.get(k)
            .and_then(|x| x.as_f64())
            .ok_or_else(|| format!("missing number {k:?}"))
    };
    let (fx, fy, cx, cy) = (
        num(&v, "fl_x")?,
        num(&v, "fl_y")?,
        num(&v, "cx")?,
        num(&v, "cy")?,
    );
    let (w, h) = (num(&v, "w")? as u32, num(&v, "h")? as u32);
    let mut rec = Reconstruction::default();
    rec.cameras.insert(
        1,
        Camera {
            id: 1,
            model: CameraModel::Pinhole,
            width: w,
            height: h,
            params: vec![fx, fy, cx, cy],
        },
    );
    let frames = v
        .get("frames")
        .and_then(|f| f.as_array())
        .ok_or("missing \"frames\"")?;
    for (k, f) in frames.iter().enumerate() {
        let name = f
            .get("file_path")
            .and_then(|p| p.as_str())
            .and_then(|p| p.rsplit('/').next())
            .ok_or_else(|| format!("frame {k}: missing file_path"))?;
        let m: Vec<f64> = f
            .get("transform_matrix")
            .and_then(|m| m.as_array())
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| r.as_array())
                    .flatten()
                    .filter_map(|x| x.as_f64())
                    .collect()
            })
            .unwrap_or_default();
        if m.len() != 16 {
            return Err(format!("frame {k}: transform_matrix is not 4x4"));
        }
        let r_gl = Matrix3::new(m[0], m[1], m[2], m[4], m[5], m[6], m[8], m[9], m[10]);
        let c = Vector3::new(m[3], m[7], m[11]);
        let r_c2w = r_gl * Matrix3::from_diagonal(&Vector3::new(1.0, -1.0, -1.0));
        let id = k as u32 + 1;
        rec.images.insert(
            id,
            Image {
                id,
                camera_id: 1,
                name: name.to_string(),
                pose: Pose::from_center_and_axes(c, &r_c2w),
                points2d: vec![],
            },
        );
    }
    Ok(rec)
}

/// A ground-truth model from Microsoft 7-Scenes poses: for every image `NAME.color.jpg` in `names`,
/// `poses/NAME.pose.txt` holds the 4x4 camera-to-world matrix in metres with OpenCV camera axes;
/// one `PINHOLE` camera `(f, f, cx, cy)` of size `w x h`.
pub fn parse_7scenes(
    poses_dir: &Path,
    names: &[String],
    camera: (f64, f64, f64, u32, u32),
) -> Result<Reconstruction, String> {
    let (f, cx, cy, w, h) = camera;
    let mut rec = Reconstruction::default();
    rec.cameras.insert(
        1,
        Camera {
            id: 1,
            model: CameraModel::Pinhole,
            width: w,
            height: h,
            params: vec![f, f, cx, cy],
        },
    );
    for (k, name) in names.iter().enumerate() {
        let stem = name.strip_suffix(".color.jpg").unwrap_or(name);
        let path = poses_dir.join(format!("{stem}.pose.txt"));
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let m: Vec<f64> = text
            .split_whitespace()
            .map(|x| x.parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if m.len() != 16 {
            return Err(format!("{}: not a 4x4 matrix", path.display()));
        }
        let r_c2w = Matrix3::new(m[0], m[1], m[2], m[4], m[5], m[6], m[8], m[9], m[10]);
        let c = Vector3::new(m[3], m[7], m[11]);
        let id = k as u32 + 1;
        rec.images.insert(
            id,
            Image {
                id,
                camera_id: 1,
                name: name.clone(),
                pose: Pose::from_center_and_axes(c, &r_c2w),
                points2d: vec![],
            },
        );
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flythrough_core::Sim3;
    use nalgebra::UnitQuaternion;

    fn ring(n: usize) -> Reconstruction {
        let mut rec = Reconstruction::default();
        rec.cameras.insert(
            1,
            Camera::new(1, CameraModel::SimplePinhole, 640, 480, 500.0),
        );
        for i in 0..n {
            let a = i as f64 * 0.4;
            let pose = Pose::look_at(
                Vector3::new(5.0 * a.cos(), 5.0 * a.sin(), 1.0),
                Vector3::zeros(),
                Vector3::z(),
            );
            rec.images.insert(
                i as u32 + 1,
                Image {
                    id: i as u32 + 1,
                    camera_id: 1,
                    name: format!("{i}.png"),
                    pose,
                    points2d: vec![],
                },
            );
        }
        rec
    }

    #[test]
    fn perfect_estimate_up_to_similarity_scores_one() {
        let gt = ring(8);
        let s = Sim3 {
            scale: 3.0,
            rotation: UnitQuaternion::from_euler_angles(0.3, 0.1, -1.0),
            translation: Vector3::new(1.0, 2.0, 3.0),
        };
        let mut est = gt.clone();
        for im in est.images.values_mut() {
            im.pose = s.apply_pose(&im.pose);
        }
        let e = eval_poses(&est, &gt);
        assert_eq!(e.registered, 8);
        for v in e.auc.values() {
            assert!((v - 1.0).abs() < 1e-5, "{:?}", e.auc);
        }
        assert!(e.median_center_error_pct < 1e-9 && e.max_center_error_pct < 1e-9);
        assert!((e.sim3_scale - 1.0 / 3.0).abs() < 1e-9);
        assert!(e.median_focal_error_pct.abs() < 1e-12);
    }

    #[test]
    fn known_perturbation_and_missing_image() {
        let gt = ring(4);
        let mut est = gt.clone();
        // Rotate camera 1 by 3° about its optical axis: pairs with it have error 3° (the
        // translation direction in its frame turns by the same 3°), the others 0.
        let im = est.images.get_mut(&1).unwrap();
        let q = UnitQuaternion::from_axis_angle(&Vector3::z_axis(), 3f64.to_radians());
        let c = im.pose.center();
        im.pose.rotation = q * im.pose.rotation;
        im.pose.translation = -(im.pose.rotation * c);
        let e = eval_poses(&est, &gt);
        // 6 pairs: 3 with error 3°, 3 exact. AUC@5 = (area under recall) / 5:
        // recall 0.5 from 0 to 3, then 1 from 3 to 5 → (0.5·3 + 1·2) / 5 = 0.7.
        assert!((e.auc["5"] - 0.7).abs() < 1e-6, "{:?}", e.auc);
        assert!((e.auc["2"] - 0.5).abs() < 1e-5, "{:?}", e.auc);
        // Remove an image: its 3 pairs fail.
        est.images.remove(&4);
        let e = eval_poses(&est, &gt);
        assert_eq!(e.registered, 3);
        assert!(e.auc["10"] < 0.5 + 1e-9);
        assert_eq!(auc(&[f64::INFINITY], 5.0), 0.0);
    }

    /// An instant-ngp camera looking along world +x (OpenGL: camera −z = +x, camera +y = world +z)
    /// becomes an OpenCV pose whose forward axis is +x and whose image "up" is +z.
    #[test]
    fn nerf_transforms_are_converted_to_opencv_poses() {
        let text = r#"{"fl_x": 100, "fl_y": 100, "cx": 50, "cy": 40, "w": 100, "h": 80,
            "frames": [{"file_path": "images/a.jpg", "transform_matrix":
            [[0, 0, -1, 1], [-1, 0, 0, 2], [0, 1, 0, 3], [0, 0, 0, 1]]}]}"#;
        let rec = parse_nerf_transforms(text).unwrap();
        let im = rec.image_by_name("a.jpg").unwrap();
        assert!((im.pose.center() - Vector3::new(1.0, 2.0, 3.0)).norm() < 1e-12);
        assert!((im.pose.forward() - Vector3::x()).norm() < 1e-12);
        assert!((im.pose.up() - Vector3::z()).norm() < 1e-12);
        assert!(parse_nerf_transforms("{}").is_err());
    }
}
