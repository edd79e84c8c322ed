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
        serde_json::from_str(&s)
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
