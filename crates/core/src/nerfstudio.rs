//! nerfstudio / instant-ngp `transforms.json` (camera-to-world, OpenGL camera axes).
//!
//! We write the world frame unchanged (no axis permutation), and say so with an identity
//! `applied_transform`, so that a pose read back is exactly the pose written.

use crate::camera::{Camera, CameraModel};
use crate::colmap::Reconstruction;
use crate::pose::Pose;
use nalgebra::Matrix4;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Frame {
    pub file_path: String,
    /// 4x4 camera-to-world, rows.
    pub transform_matrix: [[f64; 4]; 4],
    pub fl_x: f64,
    pub fl_y: f64,
    pub cx: f64,
    pub cy: f64,
    pub w: u32,
    pub h: u32,
    #[serde(default)]
    pub k1: f64,
    #[serde(default)]
    pub k2: f64,
    #[serde(default)]
    pub p1: f64,
    #[serde(default)]
    pub p2: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Transforms {
    pub camera_model: String,
    /// 3x4 transform applied to the original world (identity here), as nerfstudio records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_transform: Option<[[f64; 4]; 3]>,
    pub frames: Vec<Frame>,
}

impl Frame {
    pub fn pose(&self) -> Pose {
        let mut m = Matrix4::zeros();
        for r in 0..4 {
            for c in 0..4 {
                m[(r, c)] = self.transform_matrix[r][c];
            }
        }
        Pose::from_gl_c2w(&m)
    }

    pub fn camera(&self, id: u32) -> Camera {
        Camera {
            id,
            model: CameraModel::Opencv,
            width: self.w,
            height: self.h,
            params: vec![
                self.fl_x, self.fl_y, self.cx, self.cy, self.k1, self.k2, self.p1, self.p2,
            ],
        }
    }
}

impl Transforms {
    /// Frames for every registered image; `image_prefix` is prepended to each name (e.g. `../privacy/images/`).
    pub fn from_reconstruction(rec: &Reconstruction, image_prefix: &str) -> Self {
        let mut frames = Vec::new();
        for im in rec.images.values() {
            let Some(cam) = rec.cameras.get(&im.camera_id) else {
                continue;
            };
            let m = im.pose.to_gl_c2w();
            let mut tm = [[0.0; 4]; 4];
            for (r, row) in tm.iter_mut().enumerate() {
                for (c, v) in row.iter_mut().enumerate() {
                    *v = m[(r, c)];
                }
            }
            let (fl_x, fl_y) = cam.focal();
            let (cx, cy) = cam.principal_point();
            let [k1, k2, p1, p2] = cam.distortion();
            frames.push(Frame {
                file_path: format!("{image_prefix}{}", im.name),
                transform_matrix: tm,
                fl_x,
                fl_y,
                cx,
                cy,
                w: cam.width,
                h: cam.height,
                k1,
                k2,
                p1,
                p2,
            });
        }
        Transforms {
            camera_model: "OPENCV".into(),
            applied_transform: Some([
                [1.0, 0.0, 0.0, 0.0],
                [0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, 0.0],
            ]),
            frames,
        }
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(
            path,
            serde_json::to_string_pretty(self).map_err(std::io::Error::other)?,
        )
    }

    pub fn read(path: &Path) -> std::io::Result<Self> {
        let s = std::fs::read_to_string(path)?;
        Self::from_json(&s, path)
    }

    /// Parse the JSON of a `transforms.json` (`path` names it in errors). Untrusted text: an error,
    /// never a panic (serde_json bounds nesting; nothing is allocated from a value in the file).
    pub fn from_json(s: &str, path: &Path) -> std::io::Result<Self> {
        serde_json::from_str(s)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::colmap::Image;
    use nalgebra::Vector3;

    #[test]
    fn round_trip_pose_and_intrinsics() {
        let mut rec = Reconstruction::default();
        rec.cameras
            .insert(1, Camera::new(1, CameraModel::Radial, 64, 48, 50.0));
        let pose = Pose::look_at(Vector3::new(1.0, 2.0, 3.0), Vector3::zeros(), Vector3::z());
        rec.images.insert(
            1,
            Image {
                id: 1,
                camera_id: 1,
                name: "a.jpg".into(),
                pose,
                points2d: vec![],
            },
        );
        let t = Transforms::from_reconstruction(&rec, "images/");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("transforms.json");
        t.write(&p).unwrap();
        let back = Transforms::read(&p).unwrap();
        assert_eq!(back.frames[0].file_path, "images/a.jpg");
        let bp = back.frames[0].pose();
        assert!((bp.center() - pose.center()).norm() < 1e-12);
        assert!(bp.rotation_angle_to(&pose) < 1e-9);
        assert_eq!(back.frames[0].fl_x, 50.0);
    }
}

/// Fuzz property of the reader (issue 20): arbitrary text and damaged valid files give `Ok` or
/// `Err`, and the frames of whatever parses give a pose and a camera, never a panic.
/// [`flythrough_testkit::fuzz::CASES`] (256) cases.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::colmap::Image;
    use flythrough_testkit::fuzz::{self as fz, proptest::prelude::*};
    use nalgebra::Vector3;

    fn seed() -> String {
        let mut rec = Reconstruction::default();
        rec.cameras
            .insert(1, Camera::new(1, CameraModel::Opencv, 64, 48, 50.0));
        for id in 1..=2 {
            rec.images.insert(
                id,
                Image {
                    id,
                    camera_id: 1,
                    name: format!("{id}.jpg"),
                    pose: Pose::look_at(
                        Vector3::new(1.0, 2.0, id as f64),
                        Vector3::zeros(),
                        Vector3::z(),
                    ),
                    points2d: vec![],
                },
            );
        }
        serde_json::to_string_pretty(&Transforms::from_reconstruction(&rec, "images/")).unwrap()
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let deep = "[".repeat(100_000);
        assert!(Transforms::from_json(&deep, Path::new("transforms.json")).is_err());
        assert!(Transforms::from_json(&seed(), Path::new("transforms.json")).is_ok());
    }

    proptest! {
        #![proptest_config(fz::config())]

        #[test]
        fn transforms_json_never_panics(text in fz::text_or_mutated(vec![seed()], 512)) {
            if let Ok(t) = Transforms::from_json(&text, Path::new("transforms.json")) {
                for (i, f) in t.frames.iter().enumerate() {
                    let _ = f.pose();
                    let _ = f.camera(i as u32);
                }
            }
        }
    }
}
