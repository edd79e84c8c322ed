//! Test scenes: an analytic "room" rendered by ray casting (exact cameras, optional exposure
//! changes written into a manifest), and the Middlebury temple with its ground-truth cameras.
#![allow(dead_code)]

use flythrough_core::colmap::{Image, Point3D};
use flythrough_core::manifest::{Exposure, ExposureSource, FocalPrior, FocalRule, PhotoRecord};
use flythrough_core::{Camera, CameraModel, Manifest, Pose, Reconstruction, RedactedImages};
use nalgebra::{Matrix3, Vector2, Vector3};
use std::collections::BTreeMap;
use std::path::Path;

/// Base albedo of the analytic room at a surface point, in [0.04, 0.4] (so +1.5 EV stays below 1).
fn room_color(p: Vector3<f64>, id: u32) -> [f64; 3] {
    let c = |v: f64| ((v * 2.0).floor() as i64).rem_euclid(2) as f64;
    let chk = c(p.x) + c(p.y) + c(p.z);
    let chk = (chk as i64 % 2) as f64;
    let s = |f: f64, v: f64| 0.5 + 0.5 * (f * v).sin();
    match id {
        0 => [0.1 + 0.25 * chk, 0.12 + 0.1 * s(3.0, p.y), 0.3 - 0.2 * chk], // walls
        1 => [0.35 * s(4.0, p.x + p.z), 0.2, 0.05 + 0.3 * chk],             // floor/ceiling
        2 => [0.38, 0.1 + 0.28 * s(9.0, p.y), 0.08],                        // sphere: stripes
        _ => [0.05 + 0.3 * s(6.0, p.x), 0.3 * chk + 0.05, 0.35],            // box
    }
}

/// Cast one ray into the room: box walls at |x|,|z| = 3, floor/ceiling at |y| = 1.5, a sphere and a box.
fn cast(o: Vector3<f64>, d: Vector3<f64>) -> [f64; 3] {
    let mut best = (f64::INFINITY, 0u32);
    // walls (inside of the box)
    for (axis, lim, id) in [(0usize, 3.0, 0u32), (2, 3.0, 0), (1, 1.5, 1)] {
        for sgn in [-1.0, 1.0] {
            if d[axis].abs() > 1e-12 {
                let t = (sgn * lim - o[axis]) / d[axis];
                if t > 1e-6 && t < best.0 {
                    best = (t, id);
                }
            }
        }
    }
    // sphere at (0.6, 0.3, 0.2) r 0.5
    let c = Vector3::new(0.6, 0.3, 0.2);
    let oc = o - c;
    let b = oc.dot(&d);
    let disc = b * b - (oc.dot(&oc) - 0.25);
    if disc > 0.0 {
        let t = -b - disc.sqrt();
        if t > 1e-6 && t < best.0 {
            best = (t, 2);
        }
    }
    // axis-aligned box [-1,-0.3] x [0.2,1.5] x [-0.9,-0.1]
    let (lo, hi) = (Vector3::new(-1.0, 0.2, -0.9), Vector3::new(-0.3, 1.5, -0.1));
    let (mut t0, mut t1) = (0.0f64, f64::INFINITY);
    for a in 0..3 {
        let inv = 1.0 / d[a];
        let (mut ta, mut tb) = ((lo[a] - o[a]) * inv, (hi[a] - o[a]) * inv);
        if ta > tb {
            std::mem::swap(&mut ta, &mut tb);
        }
        t0 = t0.max(ta);
        t1 = t1.min(tb);
    }
    if t0 <= t1 && t0 > 1e-6 && t0 < best.0 {
        best = (t0, 3);
    }
    room_color(o + d * best.0, best.1)
}

/// A synthetic capture written to `dir`: `images/*.png`, `sfm/sparse/*.txt` (exact cameras), and a
/// manifest with each photo's EV (uniform in `[-ev_range, ev_range]`, pixels scaled by `2^ev`).
pub struct Scene {
    pub images: RedactedImages,
    pub manifest: Manifest,
    pub sfm_dir: std::path::PathBuf,
}

pub fn analytic_room(dir: &Path, w: u32, h: u32, n: usize, ev_range: f64) -> Scene {
    let img_dir = dir.join("images");
    std::fs::create_dir_all(&img_dir).unwrap();
    let f = 0.7 * w as f64;
    let cam = Camera::new(1, CameraModel::Pinhole, w, h, f);
    let mut recon = Reconstruction::default();
    recon.cameras.insert(1, cam.clone());
    let mut manifest = Manifest::default();
    for i in 0..n {
        let a = i as f64 / n as f64 * std::f64::consts::TAU;
        let eye = Vector3::new(
            1.6 * a.cos(),
            -0.3 + 0.4 * ((i % 3) as f64 - 1.0),
            1.6 * a.sin(),
        );
        let target = Vector3::new(0.4 * (a * 3.0).sin(), 0.2, 0.4 * (a * 2.0).cos());
        let pose = Pose::look_at(eye, target, Vector3::new(0.0, -1.0, 0.0));
        // deterministic EV sequence
        let ev = if ev_range > 0.0 {
            ev_range * (((i * 7) % n) as f64 / (n - 1).max(1) as f64 * 2.0 - 1.0)
        } else {
            0.0
        };
        let gain = 2f64.powf(ev);
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let mut acc = [0.0; 3];
            for (sx, sy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                let xn = cam.pixel_to_normalized(Vector2::new(x as f64 + sx, y as f64 + sy));
                let d = pose
                    .dir_to_world(&Vector3::new(xn.x, xn.y, 1.0))
                    .normalize();
                let c = cast(pose.center(), d);
                for k in 0..3 {
                    acc[k] += c[k] / 4.0;
                }
            }
            image::Rgb(acc.map(|v| ((v * gain).clamp(0.0, 1.0) * 255.0).round() as u8))
        });
        let name = format!("room_{i:03}.png");
        img.save(img_dir.join(&name)).unwrap();
        recon.images.insert(
            i as u32 + 1,
            Image {
                id: i as u32 + 1,
                camera_id: 1,
                name: name.clone(),
                pose,
                points2d: vec![],
            },
        );
        manifest.photos.push(PhotoRecord {
            id: i as u32 + 1,
            file: name,
            width: w,
            height: h,
            exif: Default::default(),
            exposure: Exposure {
                ev,
                source: ExposureSource::Exif,
            },
            focal_prior: FocalPrior {
                px: f,
                rule: FocalRule::DefaultFactor,
            },
            camera_key: "synthetic".into(),
        });
    }
    // A few "sparse points" on the walls and objects for the scene normalisation.
    let mut pid = 1u64;
    for &(x, y, z) in &[
        (3.0, 0.0, 0.0),
        (-3.0, 0.5, 1.0),
        (0.0, 1.5, 2.0),
        (1.0, -1.5, -2.0),
        (0.0, 0.0, 3.0),
        (0.6, 0.3, 0.7),
        (-0.5, 0.5, -0.5),
    ] {
        recon.points.insert(
            pid,
            Point3D {
                id: pid,
                xyz: Vector3::new(x, y, z),
                rgb: [0; 3],
                error: 0.0,
                track: vec![(1, 0)],
            },
        );
        pid += 1;
    }
    let sfm_dir = dir.join("sfm");
    recon.write_text(&sfm_dir.join("sparse")).unwrap();
    Scene {
        images: flythrough_testkit::cleared_images(&img_dir).unwrap(),
        manifest,
        sfm_dir,
    }
}

/// The Middlebury temple (`temple_ring19`) with its ground-truth cameras written as a COLMAP model
/// into `dir/sfm/sparse`; `None` when the shared data is absent.
pub fn temple(dir: &Path) -> Option<Scene> {
    let root = flythrough_testkit::testdata::shared_data("temple_ring19")?;
    let text = std::fs::read_to_string(root.join("templeR_par.txt")).unwrap();
    let mut recon = Reconstruction::default();
    let mut cam_id = 0u32;
    let mut cams: BTreeMap<String, u32> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let v: Vec<&str> = line.split_whitespace().collect();
        if v.len() != 22 || !root.join(v[0]).is_file() {
            continue;
        }
        let n: Vec<f64> = v[1..].iter().map(|s| s.parse().unwrap()).collect();
        let (w, h) = image::image_dimensions(root.join(v[0])).unwrap();
        let key = format!("{} {} {} {}", n[0], n[4], n[2], n[5]);
        let id = *cams.entry(key).or_insert_with(|| {
            cam_id += 1;
            recon.cameras.insert(
                cam_id,
                Camera {
                    id: cam_id,
                    model: CameraModel::Pinhole,
                    width: w,
                    height: h,
                    params: vec![n[0], n[4], n[2], n[5]],
                },
            );
            cam_id
        });
        let r = Matrix3::new(n[9], n[10], n[11], n[12], n[13], n[14], n[15], n[16], n[17]);
        let t = Vector3::new(n[18], n[19], n[20]);
        let iid = recon.images.len() as u32 + 1;
        recon.images.insert(
            iid,
            Image {
                id: iid,
                camera_id: id,
                name: v[0].to_string(),
                pose: Pose::from_rt(&r, t),
                points2d: vec![],
            },
        );
    }
    // The README's tight bounding box of the temple, as 8 "sparse points" seen by every camera (what
    // SfM would give: the scene normalisation takes its near plane from point depths).
    let (lo, hi) = (
        [-0.023121, -0.038009, -0.091940],
        [0.078626, 0.121636, -0.017395],
    );
    let track: Vec<(u32, u32)> = recon.images.keys().map(|&k| (k, 0)).collect();
    for c in 0..8u64 {
        let p = Vector3::new(
            if c & 1 == 0 { lo[0] } else { hi[0] },
            if c & 2 == 0 { lo[1] } else { hi[1] },
            if c & 4 == 0 { lo[2] } else { hi[2] },
        );
        recon.points.insert(
            c + 1,
            Point3D {
                id: c + 1,
                xyz: p,
                rgb: [0; 3],
                error: 0.0,
                track: track.clone(),
            },
        );
    }
    let sfm_dir = dir.join("sfm");
    recon.write_text(&sfm_dir.join("sparse")).unwrap();
    Some(Scene {
        images: flythrough_testkit::cleared_images(&root).unwrap(),
        manifest: Manifest::default(),
        sfm_dir,
    })
}

/// A small, fast `[train]` config for tests.
pub fn tiny_config() -> flythrough_core::config::TrainConfig {
    flythrough_core::config::TrainConfig {
        steps: 300,
        max_seconds: 0.0,
        batch_rays: 1024,
        prop_samples: vec![32, 32],
        nerf_samples: 32,
        hash_levels: 12,
        hash_table_log2: 16,
        hash_max_res: 512,
        lr_warmup_steps: 20,
        checkpoint_every: 100,
        glo_eval_steps: 32,
        ..Default::default()
    }
}

/// The train stage body on a scene, on `[train] device`, with the caller's hooks.
pub fn run_with_hooks(
    cfg: &flythrough_core::config::TrainConfig,
    scene: &Scene,
    out: &Path,
    work: &Path,
    hooks: &flythrough_core::stage::Hooks,
) -> Result<flythrough_core::summary::TrainSummary, flythrough_nerf::NerfError> {
    let model_dir = scene.sfm_dir.join(flythrough_core::SfmOutput::SPARSE);
    let model = Reconstruction::read(&model_dir).unwrap();
    let data = flythrough_nerf::TrainData {
        images: &scene.images,
        manifest: Some(&scene.manifest),
        blurry: &[],
        model: &model,
        model_dir: &model_dir,
    };
    flythrough_nerf::train_stage(cfg, cfg.device, hooks, &data, out, work)
}

/// The GPU tests' small, fast config: 128 rays x (12 + 12 + 12) samples, 16-wide MLPs (about 0.1 s
/// a step on lavapipe), 30 steps, metrics every step.
pub fn small_gpu_cfg() -> flythrough_core::config::TrainConfig {
    flythrough_core::config::TrainConfig {
        steps: 30,
        max_seconds: 0.0,
        batch_rays: 128,
        prop_samples: vec![12, 12],
        nerf_samples: 12,
        hash_levels: 8,
        hash_table_log2: 12,
        hash_max_res: 128,
        mlp_width: 16,
        glo_dim: 4,
        lr_init: 1e-2,
        lr_final: 1e-3,
        lr_warmup_steps: 5,
        metrics_every: 1,
        image_downscale: 1,
        ..Default::default()
    }
}

/// The analytic room at 48x36, 12 photos, loaded as training data for `c`.
pub fn small_room_dataset(
    dir: &Path,
    c: &flythrough_core::config::TrainConfig,
) -> flythrough_nerf::data::Dataset {
    use flythrough_nerf::data::{Dataset, LoadOptions};
    let scene = analytic_room(dir, 48, 36, 12, 1.0);
    Dataset::load(
        &scene.images,
        Some(&scene.manifest),
        &scene.sfm_dir,
        &LoadOptions::from_config(c, &[]),
    )
    .unwrap()
}
