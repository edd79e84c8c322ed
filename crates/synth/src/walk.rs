//! The capture: camera intrinsics, the walk (poses), per-photo exposure and lighting, keyframes
//! and calibration pairs.
//!
//! Exposure convention (the capture stage's): `ev = log2(t * iso / 100 / N²)` with `t` the
//! exposure time in seconds and `N` the f-number, i.e. *relative sensor exposure*: one more EV is
//! twice the light on the sensor, so a photo's linear radiance is scaled by `2^(ev - ev_ref)`.

use crate::rng::Rng;
use flythrough_core::{Camera, CameraModel, Pose};
use nalgebra::{Matrix3, Vector3};
use std::f64::consts::{PI, TAU};

/// Fixed aperture of every photo.
pub const F_NUMBER: f64 = 4.0;
/// Reference exposure: 1/60 s at ISO 400, f/4.
pub const REF_SHUTTER_DEN: u32 = 60;
pub const REF_ISO: u32 = 400;
/// 35 mm equivalent focal length written to EXIF; the pixel focal is exactly what the capture
/// stage's 35 mm rule gives back: `f_px = f35 / 43.27 * diagonal_px` (about 63° horizontal at 4:3).
pub const FOCAL_35MM: u32 = 28;
/// Crop factor of the pretend sensor (a 1/2.3" compact): focal in mm = 28 / 5.6 = 5.0 mm.
pub const CROP_FACTOR: f64 = 5.6;
/// Height above which the walk never goes (m), and the camera heights' centre.
pub const EYE_HEIGHT: f64 = 1.55;

/// `log2(t * iso / 100 / N²)`.
pub fn exposure_value(exposure_time_s: f64, iso: f64, f_number: f64) -> f64 {
    (exposure_time_s * iso / 100.0 / (f_number * f_number)).log2()
}

/// The reference EV of the capture (1/60 s, ISO 400, f/4).
pub fn ev_ref() -> f64 {
    exposure_value(1.0 / REF_SHUTTER_DEN as f64, REF_ISO as f64, F_NUMBER)
}

/// Focal length in mm written to EXIF.
pub fn focal_mm() -> f64 {
    FOCAL_35MM as f64 / CROP_FACTOR
}

/// The one camera of the capture: PINHOLE, principal point at the image centre.
pub fn camera(width: u32, height: u32) -> Camera {
    let diag = ((width as f64).powi(2) + (height as f64).powi(2)).sqrt();
    let f = FOCAL_35MM as f64 / 43.27 * diag;
    Camera::new(1, CameraModel::Pinhole, width, height, f)
}

/// One photo of the walk.
#[derive(Debug, Clone, PartialEq)]
pub struct Shot {
    /// 0-based position in the walk; the file is `IMG_{index+1:04}.JPG`.
    pub index: usize,
    pub name: String,
    pub pose: Pose,
    pub iso: u32,
    /// Exposure time is `1 / shutter_den` seconds.
    pub shutter_den: u32,
    pub ev: f64,
    /// Lighting id (0 normal, 1 changed).
    pub lighting: u32,
    /// EXIF `DateTimeOriginal`, `YYYY:MM:DD HH:MM:SS`.
    pub datetime: String,
}

impl Shot {
    pub fn exposure_time(&self) -> f64 {
        1.0 / self.shutter_den as f64
    }
    /// Linear radiance multiplier `2^(ev - ev_ref)`.
    pub fn exposure_scale(&self) -> f64 {
        (self.ev - ev_ref()).exp2()
    }
}

/// File name of the `i`-th photo (0-based).
pub fn photo_name(i: usize) -> String {
    format!("IMG_{:04}.JPG", i + 1)
}

/// A camera at `center` looking along yaw (from +x towards +y), pitch (up positive) and roll
/// (clockwise in the image positive), all in radians, with world +z up.
pub fn pose_from_angles(center: Vector3<f64>, yaw: f64, pitch: f64, roll: f64) -> Pose {
    let f = Vector3::new(
        pitch.cos() * yaw.cos(),
        pitch.cos() * yaw.sin(),
        pitch.sin(),
    );
    let x = f.cross(&Vector3::z()).normalize();
    let y = f.cross(&x);
    let (sr, cr) = roll.sin_cos();
    let (x2, y2) = (x * cr + y * sr, -x * sr + y * cr);
    Pose::from_center_and_axes(center, &Matrix3::from_columns(&[x2, y2, f]))
}

/// The walk: a smooth closed loop around the central table at eye height, looking along and
/// across the path. Consecutive photos are 0.18-0.30 m apart (40 photos) and turn by less than
/// 30°.
pub fn plan(seed: u64, images: usize, exposure_range_ev: f64, lighting_change: bool) -> Vec<Shot> {
    let mut rng = Rng::new(seed ^ 0x3a1c_0ffe_e000_0001);
    let (cx, cy) = (3.0 + rng.sym(0.08), 2.5 + rng.sym(0.08));
    let (a, b) = (1.75, 1.3);
    let th0 = rng.range(0.0, TAU);
    let ph = [(); 6].map(|_| rng.range(0.0, TAU));
    let deg = PI / 180.0;
    let n = images.max(1);
    let path = |s: f64| -> Vector3<f64> {
        let th = th0 + TAU * s;
        let wob = (3.0 * th + ph[0]).sin();
        Vector3::new(
            cx + (a + 0.08 * wob) * th.cos(),
            cy + (b + 0.06 * wob) * th.sin(),
            EYE_HEIGHT + 0.08 * (2.0 * th + ph[1]).sin(),
        )
    };
    let perm = rng.permutation(n);
    let lit_perm = rng.permutation(n);
    let n_changed = if lighting_change && n >= 4 {
        (n as f64 / 4.0).round() as usize
    } else {
        0
    };
    let isos = [200u32, 400, 800];
    let r = exposure_range_ev.max(0.0);
    (0..n)
        .map(|i| {
            let s = i as f64 / n as f64;
            let smooth = path(s);
            let ahead = path(s + 1e-4) - path(s - 1e-4);
            let heading = ahead.y.atan2(ahead.x);
            let center = smooth + Vector3::new(rng.sym(0.02), rng.sym(0.02), rng.sym(0.015));
            // Positive offsets turn inwards (the loop runs counter-clockwise): views swing from
            // the near walls to across the room.
            let yaw = heading
                + 10.0 * deg
                + 60.0 * deg * (TAU * s + ph[2]).sin()
                + 8.0 * deg * (3.0 * TAU * s + ph[3]).sin()
                + rng.sym(2.0 * deg);
            let pitch = -6.0 * deg + 5.0 * deg * (2.0 * TAU * s + ph[4]).sin() + rng.sym(1.5 * deg);
            let roll = rng.sym(1.5 * deg);
            let pose = pose_from_angles(center, yaw, pitch, roll);

            // Exposure: stratified offsets so the spread covers ±r, realised with a standard ISO
            // and a shutter of 1/den s; the EV is recomputed from what is written to EXIF.
            let (iso, den) = if r == 0.0 {
                (REF_ISO, REF_SHUTTER_DEN)
            } else {
                let delta = r * (2.0 * (perm[i] as f64 + rng.f64()) / n as f64 - 1.0);
                let iso = isos[rng.below(isos.len())];
                let t = (ev_ref() + delta).exp2() * 100.0 * F_NUMBER * F_NUMBER / iso as f64;
                let mut den = (1.0 / t).round().max(1.0) as u32;
                let ev_of = |den: u32| exposure_value(1.0 / den as f64, iso as f64, F_NUMBER);
                while ev_of(den) - ev_ref() > r {
                    den += 1;
                }
                while ev_ref() - ev_of(den) > r && den > 1 {
                    den -= 1;
                }
                (iso, den)
            };
            let ev = exposure_value(1.0 / den as f64, iso as f64, F_NUMBER);
            let lighting = if lit_perm[..n_changed].contains(&i) {
                1
            } else {
                0
            };
            let secs = 19 * 3600 + 7 * i as u64;
            let datetime = format!(
                "2026:03:{:02} {:02}:{:02}:{:02}",
                14 + secs / 86400,
                (secs / 3600) % 24,
                (secs / 60) % 60,
                secs % 60
            );
            Shot {
                index: i,
                name: photo_name(i),
                pose,
                iso,
                shutter_den: den,
                ev,
                lighting,
                datetime,
            }
        })
        .collect()
}

/// Keyframes: up to 6 photos evenly spaced along the walk, in walk order.
pub fn keyframes(n: usize) -> Vec<usize> {
    let k = n.min(6);
    let mut v: Vec<usize> = (0..k)
        .map(|j| {
            if k == 1 {
                0
            } else {
                (j as f64 * (n - 1) as f64 / (k - 1) as f64).round() as usize
            }
        })
        .collect();
    v.dedup();
    v
}

/// Two calibration pairs `(a, b, distance)` from different parts of the walk whose camera centres
/// are 1-3 m apart (closest to 2 m); fewer when the walk is too short.
pub fn calibration_pairs(shots: &[Shot]) -> Vec<(usize, usize, f64)> {
    let n = shots.len();
    let dist = |i: usize, j: usize| (shots[i].pose.center() - shots[j].pose.center()).norm();
    let mut pairs: Vec<(usize, usize, f64)> = Vec::new();
    for start in [n / 8, (5 * n) / 8] {
        let used = |i: usize, p: &[(usize, usize, f64)]| p.iter().any(|q| q.0 == i || q.1 == i);
        if start >= n || used(start, &pairs) {
            continue;
        }
        let best = (0..n)
            .filter(|&j| j != start && !used(j, &pairs))
            .map(|j| (j, dist(start, j)))
            .filter(|&(_, d)| (1.0..=3.0).contains(&d))
            .min_by(|x, y| (x.1 - 2.0).abs().total_cmp(&(y.1 - 2.0).abs()));
        if let Some((j, d)) = best {
            let (a, b) = if start < j { (start, j) } else { (j, start) };
            pairs.push((a, b, d));
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_matches_the_35mm_rule_and_fov() {
        let cam = camera(320, 240);
        let f = cam.mean_focal();
        assert!((f - 28.0 / 43.27 * 400.0).abs() < 1e-9);
        let hfov = 2.0 * (160.0 / f).atan() * 180.0 / PI;
        assert!((60.0..=70.0).contains(&hfov), "{hfov}");
    }

    #[test]
    fn walk_has_small_steps_and_turns_and_stays_in_the_room() {
        let shots = plan(3, 40, 1.0, true);
        assert_eq!(shots.len(), 40);
        for w in shots.windows(2) {
            let base = (w[0].pose.center() - w[1].pose.center()).norm();
            assert!((0.12..=0.5).contains(&base), "baseline {base}");
            let turn = w[0].pose.rotation_angle_to(&w[1].pose).to_degrees();
            assert!(turn < 30.0, "turn {turn}");
        }
        for s in &shots {
            let c = s.pose.center();
            assert!(c.x > 1.0 && c.x < 5.0 && c.y > 1.0 && c.y < 4.0, "{c:?}");
            // At least 0.3 m from every piece of furniture (point to bounding box).
            let scene = crate::scene::Scene::new(3);
            for o in &scene.objects {
                let (lo, hi) = o.shape.bounds();
                let d = (lo - c).sup(&(c - hi)).sup(&Vector3::zeros()).norm();
                assert!(d > 0.3, "{} is {d} m from {c:?}", o.name);
            }
            assert!((1.4..=1.7).contains(&c.z), "{c:?}");
            assert!(s.pose.forward().z.abs() < 0.3);
            assert!((s.ev - ev_ref()).abs() <= 1.0 + 1e-12);
        }
        let changed = shots.iter().filter(|s| s.lighting == 1).count();
        assert_eq!(changed, 10);
        let pairs = calibration_pairs(&shots);
        assert_eq!(pairs.len(), 2);
        for (a, b, d) in pairs {
            assert!(a < b && (1.0..=3.0).contains(&d));
        }
        assert_eq!(keyframes(40), vec![0, 8, 16, 23, 31, 39]);
    }

    #[test]
    fn zero_range_means_reference_exposure() {
        let shots = plan(1, 10, 0.0, false);
        assert!(shots.iter().all(|s| s.ev == ev_ref() && s.lighting == 0));
        assert!(shots.iter().all(|s| s.exposure_scale() == 1.0));
    }

    #[test]
    fn pose_angles_give_expected_axes() {
        let p = pose_from_angles(Vector3::new(1.0, 2.0, 1.5), PI / 2.0, 0.0, 0.0);
        assert!((p.forward() - Vector3::y()).norm() < 1e-12);
        assert!((p.up() - Vector3::z()).norm() < 1e-12);
        assert!((p.center() - Vector3::new(1.0, 2.0, 1.5)).norm() < 1e-12);
    }
}
