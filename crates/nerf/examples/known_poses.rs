//! A COLMAP text model of a real capture from its reference poses, for training with known poses
//! (`[sfm] import = "..."`, or `bench_train`'s `fox` / `redkitchen` scenes) independently of our SfM:
//!
//! `cargo run --release -p flythrough-nerf --example known_poses -- <fox|redkitchen> OUT_DIR [--refine]`
//!
//! - `fox` (`../shared/data/fox`): `transforms.json`, instant-ngp convention (camera-to-world, OpenGL
//!   camera axes, a similarity of COLMAP's frame), OPENCV intrinsics shared by all 67 frames.
//! - `redkitchen` (`../shared/data/redkitchen_every10`): `poses/*.pose.txt` camera-to-world in metres
//!   (OpenCV axes), PINHOLE c (320, 240) from `camera-intrinsics.txt` but **f 525**, not its 585:
//!   585 is the Kinect's depth camera; the colour frames triangulate best at f ~ 510-525 (two-view
//!   points within 2 px of both photos: 67k at f 510-525, 60k at 555, 50k at 585) and 525 is the
//!   Kinect colour camera's usual calibration (e.g. TUM RGB-D's default). Held-out PSNR after 600
//!   steps: 20.8 dB with f 585, 22.9 dB with f 525. `KP_FOCAL=...` overrides it.
//!
//! Sparse points (the train stage takes its scene bounds and near plane from them, as it would from
//! SfM): SIFT (`flythrough_sfm::features`, 1024-px work images, 4096 features) matched between each
//! photo and its next 3 (ratio test + mutual check), each match triangulated from the two known poses
//! (DLT) and kept when it lies in front of both cameras, reprojects within 2 px in both and has a
//! triangulation angle of at least 1 degree. Prints the number of points and their mean reprojection
//! error (a check of the pose conventions: wrong axes give no points).
//!
//! `--refine`: the reference poses, a RADIAL camera (f, k1, k2; principal point fixed) and the points
//! of the matches merged into tracks are bundle-adjusted (`flythrough_sfm::ba`, soft-L1), starting
//! from the reference: what SfM seeded with the reference would give, self-consistent. redkitchen
//! needs it: its `camera-intrinsics.txt` (f 585) is the Kinect's depth camera, while the colour
//! frames triangulate best at f ~ 520 (two-view points within 2 px: 67k at f 510-525, 50k at 585),
//! and the poses are KinectFusion's depth-camera track (the colour camera was not calibrated to it).
#![allow(clippy::needless_range_loop, clippy::type_complexity)]

use flythrough_core::colmap::{Image, Point3D};
use flythrough_core::{Camera, CameraModel, Pose, Reconstruction};
use flythrough_sfm::ba::{BaData, BaOptions, Obs, bundle_adjust};
use flythrough_sfm::features::{Features, SiftOptions, extract};
use flythrough_sfm::geometry::triangulate::triangulate_dlt;
use flythrough_sfm::matching::{MatchOptions, match_pair};
use nalgebra::{Matrix3, Matrix4, Vector2, Vector3};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Photos (file name, path), one shared camera, and each photo's world-to-camera pose.
struct Capture {
    photos: Vec<(String, PathBuf)>,
    cam: Camera,
    poses: Vec<Pose>,
}

fn fox(root: &Path) -> Capture {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("transforms.json")).unwrap())
            .unwrap();
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    let cam = Camera {
        id: 1,
        model: CameraModel::Opencv,
        width: f("w") as u32,
        height: f("h") as u32,
        params: vec![
            f("fl_x"),
            f("fl_y"),
            f("cx"),
            f("cy"),
            f("k1"),
            f("k2"),
            f("p1"),
            f("p2"),
        ],
    };
    let mut frames: Vec<(String, Pose)> = v["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|fr| {
            let rel = fr["file_path"].as_str().unwrap();
            let m = &fr["transform_matrix"];
            let mut c2w = Matrix4::zeros();
            for r in 0..4 {
                for c in 0..4 {
                    c2w[(r, c)] = m[r][c].as_f64().unwrap();
                }
            }
            (rel.to_string(), Pose::from_gl_c2w(&c2w))
        })
        .collect();
    frames.sort_by(|a, b| a.0.cmp(&b.0));
    Capture {
        photos: frames
            .iter()
            .map(|(rel, _)| {
                let p = root.join(rel);
                (p.file_name().unwrap().to_str().unwrap().to_string(), p)
            })
            .collect(),
        cam,
        poses: frames.into_iter().map(|(_, p)| p).collect(),
    }
}

fn redkitchen(root: &Path) -> Capture {
    let k: Vec<f64> = std::fs::read_to_string(root.join("camera-intrinsics.txt"))
        .unwrap()
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    // The file's focal (585) is the depth camera's; see the module doc.
    let _depth_focal = (k[0], k[4]);
    let cam = Camera {
        id: 1,
        model: CameraModel::Pinhole,
        width: 640,
        height: 480,
        params: vec![525.0, 525.0, k[2], k[5]],
    };
    let mut names: Vec<String> = std::fs::read_dir(root.join("images"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".color.jpg"))
        .collect();
    names.sort();
    let poses = names
        .iter()
        .map(|n| {
            let stem = n.trim_end_matches(".color.jpg");
            let t: Vec<f64> =
                std::fs::read_to_string(root.join("poses").join(format!("{stem}.pose.txt")))
                    .unwrap()
                    .split_whitespace()
                    .map(|s| s.parse().unwrap())
                    .collect();
            let r = Matrix3::new(t[0], t[1], t[2], t[4], t[5], t[6], t[8], t[9], t[10]);
            Pose::from_center_and_axes(Vector3::new(t[3], t[7], t[11]), &r)
        })
        .collect();
    Capture {
        photos: names
            .iter()
            .map(|n| (n.clone(), root.join("images").join(n)))
            .collect(),
        cam,
        poses,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: known_poses <fox|redkitchen> OUT_DIR [--refine]");
        std::process::exit(2);
    }
    let cap = match args[1].as_str() {
        "fox" => fox(&flythrough_testkit::testdata::shared_data("fox").expect("fox")),
        "redkitchen" => redkitchen(
            &flythrough_testkit::testdata::shared_data("redkitchen_every10").expect("redkitchen"),
        ),
        other => panic!("unknown capture {other}"),
    };
    let mut cap = cap;
    if let Ok(f) = std::env::var("KP_FOCAL") {
        let f: f64 = f.parse().unwrap();
        cap.cam.params[0] = f;
        cap.cam.params[1] = f;
    }
    let out = PathBuf::from(&args[2]);
    let rec = if args.get(3).map(String::as_str) == Some("--refine") {
        refined_model(&cap)
    } else {
        model_with_points(&cap)
    };
    rec.write_text(&out).unwrap();
    println!(
        "{}: {} photos, {} points -> {}",
        args[1],
        rec.images.len(),
        rec.points.len(),
        out.display()
    );
}

/// SIFT features of every photo and the pairs (each photo with its next 3).
fn features(cap: &Capture) -> (Vec<Features>, Vec<(usize, usize)>) {
    let sift = SiftOptions {
        max_image_size: 1024,
        max_features: 4096,
        ..Default::default()
    };
    let feats: Vec<_> = cap
        .photos
        .par_iter()
        .map(|(_, p)| extract(&image::open(p).unwrap().to_luma8(), &sift))
        .collect();
    let mut pairs = Vec::new();
    for i in 0..feats.len() {
        for j in i + 1..(i + 4).min(feats.len()) {
            pairs.push((i, j));
        }
    }
    (feats, pairs)
}

/// Union-find root with path halving.
fn root(parent: &mut [usize], mut a: usize) -> usize {
    while parent[a] != a {
        parent[a] = parent[parent[a]];
        a = parent[a];
    }
    a
}

/// The reference poses and a RADIAL camera bundle-adjusted with the tracks of the matches (see the
/// module doc), observations beyond 2 px dropped after a first pass.
fn refined_model(cap: &Capture) -> Reconstruction {
    let (feats, pairs) = features(cap);
    let offset: Vec<usize> = feats
        .iter()
        .scan(0, |acc, f| {
            let o = *acc;
            *acc += f.keypoints.len();
            Some(o)
        })
        .collect();
    let total = offset.last().unwrap() + feats.last().unwrap().keypoints.len();
    let matches: Vec<Vec<(u32, u32)>> = pairs
        .par_iter()
        .map(|&(i, j)| match_pair(&feats[i], &feats[j], &MatchOptions::default()))
        .collect();
    let mut parent: Vec<usize> = (0..total).collect();
    for (&(i, j), m) in pairs.iter().zip(&matches) {
        for &(a, b) in m {
            let (ra, rb) = (
                root(&mut parent, offset[i] + a as usize),
                root(&mut parent, offset[j] + b as usize),
            );
            parent[ra] = rb;
        }
    }
    let mut groups: std::collections::HashMap<usize, Vec<(usize, usize)>> = Default::default();
    for (img, o) in offset.iter().enumerate() {
        for kp in 0..feats[img].keypoints.len() {
            let r = root(&mut parent, o + kp);
            if r != o + kp || groups.contains_key(&r) {
                groups.entry(r).or_default().push((img, kp));
            }
        }
    }
    let cam = &cap.cam;
    let (f0, (cx, cy)) = (cam.mean_focal(), cam.principal_point());
    let mut data = BaData {
        intrinsics: vec![[f0, cx, cy, 0.0, 0.0]],
        image_camera: vec![0; cap.poses.len()],
        rotations: cap.poses.iter().map(|p| p.r()).collect(),
        translations: cap.poses.iter().map(|p| p.translation).collect(),
        ..Default::default()
    };
    for track in groups.values() {
        let mut seen = std::collections::HashSet::new();
        if track.len() < 2 || !track.iter().all(|(img, _)| seen.insert(*img)) {
            continue;
        }
        let px = |img: usize, kp: usize| {
            let k = &feats[img].keypoints[kp];
            Vector2::new(k.x as f64, k.y as f64)
        };
        let views: Vec<_> = track
            .iter()
            .map(|&(img, _)| (cap.poses[img].r(), cap.poses[img].translation))
            .collect();
        let xs: Vec<_> = track
            .iter()
            .map(|&(img, kp)| cam.pixel_to_normalized(px(img, kp)))
            .collect();
        let Some(xw) = triangulate_dlt(&views, &xs) else {
            continue;
        };
        let ok = track.iter().all(|&(img, kp)| {
            cam.project(&cap.poses[img].transform(&xw))
                .is_some_and(|p| (p - px(img, kp)).norm() < 8.0)
        });
        let (a, b) = (track[0].0, track[track.len() - 1].0);
        let angle = (xw - cap.poses[a].center())
            .angle(&(xw - cap.poses[b].center()))
            .to_degrees();
        if !ok || angle < 1.0 {
            continue;
        }
        let j = data.points.len();
        data.points.push(xw);
        for &(img, kp) in track {
            data.obs.push(Obs {
                image: img,
                point: j,
                xy: px(img, kp),
            });
        }
    }
    let opts = |n_img: usize| BaOptions {
        max_iterations: 50,
        loss_scale: 1.0,
        fixed_images: (0..n_img).map(|i| i == 0).collect(),
        fixed_points: vec![],
        refine_intrinsics: vec![[true, true, true]],
        function_tolerance: 1e-7,
        distortion_prior: 1.0,
        solver: Default::default(),
    };
    let s1 = bundle_adjust(&mut data, &opts(cap.poses.len()));
    eprintln!(
        "BA 1: {} points, {} observations, rms {:.3} px, intrinsics {:?}",
        data.points.len(),
        data.obs.len(),
        s1.rms_px,
        data.intrinsics[0]
    );
    // Drop observations beyond 2 px, then points seen fewer than twice, and adjust again.
    let k = data.intrinsics[0];
    let err = |d: &BaData, o: &Obs| {
        let p = d.rotations[o.image] * d.points[o.point] + d.translations[o.image];
        let (x, y) = (p.x / p.z, p.y / p.z);
        let r2 = x * x + y * y;
        let dd = 1.0 + k[3] * r2 + k[4] * r2 * r2;
        if p.z <= 0.0 {
            f64::INFINITY
        } else {
            (Vector2::new(k[0] * dd * x + k[1], k[0] * dd * y + k[2]) - o.xy).norm()
        }
    };
    let kept: Vec<Obs> = data
        .obs
        .iter()
        .filter(|o| err(&data, o) < 2.0)
        .copied()
        .collect();
    let mut count = vec![0usize; data.points.len()];
    kept.iter().for_each(|o| count[o.point] += 1);
    data.obs = kept.into_iter().filter(|o| count[o.point] >= 2).collect();
    let s2 = bundle_adjust(&mut data, &opts(cap.poses.len()));
    let k = data.intrinsics[0];
    eprintln!(
        "BA 2: {} observations, rms {:.3} px, f {:.2}, k1 {:.4}, k2 {:.4}",
        data.obs.len(),
        s2.rms_px,
        k[0],
        k[3],
        k[4]
    );
    let mut rec = Reconstruction::default();
    let cam = Camera {
        id: 1,
        model: CameraModel::Radial,
        width: cam.width,
        height: cam.height,
        params: vec![k[0], k[1], k[2], k[3], k[4]],
    };
    rec.cameras.insert(1, cam);
    let mut images: Vec<Image> = cap
        .photos
        .iter()
        .enumerate()
        .map(|(i, (name, _))| Image {
            id: i as u32 + 1,
            camera_id: 1,
            name: name.clone(),
            pose: Pose::from_rt(&data.rotations[i], data.translations[i]),
            points2d: Vec::new(),
        })
        .collect();
    let mut tracks: Vec<Vec<(u32, u32)>> = vec![Vec::new(); data.points.len()];
    for o in &data.obs {
        let id = o.point as u64 + 1;
        tracks[o.point].push((o.image as u32 + 1, images[o.image].points2d.len() as u32));
        images[o.image].points2d.push((o.xy, Some(id)));
    }
    for (j, track) in tracks.into_iter().enumerate() {
        if track.len() >= 2 {
            let id = j as u64 + 1;
            rec.points.insert(
                id,
                Point3D {
                    id,
                    xyz: data.points[j],
                    rgb: [128; 3],
                    error: 0.0,
                    track,
                },
            );
        }
    }
    for im in images {
        rec.images.insert(im.id, im);
    }
    rec
}

/// The model of `cap` with points triangulated from SIFT matches between neighbouring photos.
fn model_with_points(cap: &Capture) -> Reconstruction {
    let (feats, pairs) = features(cap);
    let cam = &cap.cam;
    let found: Vec<Vec<(usize, usize, u32, u32, Vector3<f64>, f64)>> = pairs
        .par_iter()
        .map(|&(i, j)| {
            let m = match_pair(&feats[i], &feats[j], &MatchOptions::default());
            let (pi, pj) = (&cap.poses[i], &cap.poses[j]);
            m.into_iter()
                .filter_map(|(a, b)| {
                    let ka = &feats[i].keypoints[a as usize];
                    let kb = &feats[j].keypoints[b as usize];
                    let (xa, xb) = (
                        Vector2::new(ka.x as f64, ka.y as f64),
                        Vector2::new(kb.x as f64, kb.y as f64),
                    );
                    let views = [(pi.r(), pi.translation), (pj.r(), pj.translation)];
                    let xw = triangulate_dlt(
                        &views,
                        &[cam.pixel_to_normalized(xa), cam.pixel_to_normalized(xb)],
                    )?;
                    let err_a = (cam.project(&pi.transform(&xw))? - xa).norm();
                    let err_b = (cam.project(&pj.transform(&xw))? - xb).norm();
                    let angle = (xw - pi.center()).angle(&(xw - pj.center())).to_degrees();
                    (err_a < 2.0 && err_b < 2.0 && angle >= 1.0).then_some((
                        i,
                        j,
                        a,
                        b,
                        xw,
                        0.5 * (err_a + err_b),
                    ))
                })
                .collect()
        })
        .collect();
    let mut rec = Reconstruction::default();
    rec.cameras.insert(cam.id, cam.clone());
    let mut images: Vec<Image> = cap
        .photos
        .iter()
        .zip(&cap.poses)
        .enumerate()
        .map(|(k, ((name, _), pose))| Image {
            id: k as u32 + 1,
            camera_id: cam.id,
            name: name.clone(),
            pose: *pose,
            points2d: Vec::new(),
        })
        .collect();
    let mut id = 0u64;
    let mut err_sum = 0.0;
    for (i, j, a, b, xw, err) in found.into_iter().flatten() {
        id += 1;
        let mut track = Vec::new();
        for (img, kp) in [(i, a), (j, b)] {
            let k = &feats[img].keypoints[kp as usize];
            track.push((img as u32 + 1, images[img].points2d.len() as u32));
            images[img]
                .points2d
                .push((Vector2::new(k.x as f64, k.y as f64), Some(id)));
        }
        err_sum += err;
        rec.points.insert(
            id,
            Point3D {
                id,
                xyz: xw,
                rgb: [128; 3],
                error: err,
                track,
            },
        );
    }
    eprintln!(
        "{} matched pairs, {} points, mean reprojection error {:.3} px",
        pairs.len(),
        id,
        err_sum / id.max(1) as f64
    );
    for im in images {
        rec.images.insert(im.id, im);
    }
    rec
}
