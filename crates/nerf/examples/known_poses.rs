//! A COLMAP text model of a real capture from its reference poses, for training with known poses
//! (`[sfm] import = "..."`, or `bench_train`'s `fox` / `redkitchen` scenes) independently of our SfM:
//!
//! `cargo run --release -p flythrough-nerf --example known_poses -- <fox|redkitchen> OUT_DIR`
//!
//! - `fox` (`../shared/data/fox`): `transforms.json`, instant-ngp convention (camera-to-world, OpenGL
//!   camera axes, a similarity of COLMAP's frame), OPENCV intrinsics shared by all 67 frames.
//! - `redkitchen` (`../shared/data/redkitchen_every10`): `poses/*.pose.txt` camera-to-world in metres
//!   (OpenCV axes), PINHOLE f 585, c (320, 240) from `camera-intrinsics.txt`.
//!
//! Sparse points (the train stage takes its scene bounds and near plane from them, as it would from
//! SfM): SIFT (`flythrough_sfm::features`, 1024-px work images, 4096 features) matched between each
//! photo and its next 3 (ratio test + mutual check), each match triangulated from the two known poses
//! (DLT) and kept when it lies in front of both cameras, reprojects within 2 px in both and has a
//! triangulation angle of at least 1 degree. Prints the number of points and their mean reprojection
//! error (a check of the pose conventions: wrong axes give no points).
#![allow(clippy::needless_range_loop, clippy::type_complexity)]

use flythrough_core::colmap::{Image, Point3D};
use flythrough_core::{Camera, CameraModel, Pose, Reconstruction};
use flythrough_sfm::features::{SiftOptions, extract};
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
    let cam = Camera {
        id: 1,
        model: CameraModel::Pinhole,
        width: 640,
        height: 480,
        params: vec![k[0], k[4], k[2], k[5]],
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
    if args.len() != 3 {
        eprintln!("usage: known_poses <fox|redkitchen> OUT_DIR");
        std::process::exit(2);
    }
    let cap = match args[1].as_str() {
        "fox" => fox(&flythrough_core::testdata::shared_data("fox").expect("fox")),
        "redkitchen" => redkitchen(
            &flythrough_core::testdata::shared_data("redkitchen_every10").expect("redkitchen"),
        ),
        other => panic!("unknown capture {other}"),
    };
    let out = PathBuf::from(&args[2]);
    let rec = model_with_points(&cap);
    rec.write_text(&out).unwrap();
    println!(
        "{}: {} photos, {} points -> {}",
        args[1],
        rec.images.len(),
        rec.points.len(),
        out.display()
    );
}

/// The model of `cap` with points triangulated from SIFT matches between neighbouring photos.
fn model_with_points(cap: &Capture) -> Reconstruction {
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
