//! Rigid poses in COLMAP's convention.
//!
//! Naming used in this module and everywhere a pose is used:
//! - `Pose` is **world-to-camera**: `p_cam = R p_world + t` (COLMAP `images.txt`, OpenCV axes:
//!   x right, y down, z forward). `R` is stored as a unit quaternion (Hamilton, scalar first on disk).
//! - `c2w` is the inverse, camera-to-world; its columns are the camera's axes and its centre in the world.
//! - The camera centre is `C = -Rᵀ t`.
//! - `gl_c2w` is a 4x4 camera-to-world matrix in OpenGL/nerfstudio axes (x right, y up, z backward).

use nalgebra::{Isometry3, Matrix3, Matrix4, Rotation3, Translation3, UnitQuaternion, Vector3};
use serde::{Deserialize, Serialize};

/// A world-to-camera rigid transform.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pose {
    pub rotation: UnitQuaternion<f64>,
    pub translation: Vector3<f64>,
}

impl Default for Pose {
    fn default() -> Self {
        Self::identity()
    }
}

impl Pose {
    pub fn identity() -> Self {
        Pose {
            rotation: UnitQuaternion::identity(),
            translation: Vector3::zeros(),
        }
    }

    pub fn new(rotation: UnitQuaternion<f64>, translation: Vector3<f64>) -> Self {
        Pose {
            rotation,
            translation,
        }
    }

    /// From a rotation matrix (world-to-camera) and translation.
    pub fn from_rt(r: &Matrix3<f64>, t: Vector3<f64>) -> Self {
        let rot = Rotation3::from_matrix_unchecked(*r);
        Pose {
            rotation: UnitQuaternion::from_rotation_matrix(&rot),
            translation: t,
        }
    }

    /// A camera at `center` whose axes (x right, y down, z forward) are the columns of `r_c2w`.
    pub fn from_center_and_axes(center: Vector3<f64>, r_c2w: &Matrix3<f64>) -> Self {
        let r = r_c2w.transpose();
        Pose::from_rt(&r, -(r * center))
    }

    /// A camera at `eye` looking at `target`, with image "up" as close as possible to `up` (world).
    pub fn look_at(eye: Vector3<f64>, target: Vector3<f64>, up: Vector3<f64>) -> Self {
        let z = (target - eye).normalize();
        // OpenCV image y points down, i.e. against `up`: y = -up (projected), x = y × z = z × up.
        let x = z.cross(&up).normalize();
        let y = z.cross(&x);
        Pose::from_center_and_axes(eye, &Matrix3::from_columns(&[x, y, z]))
    }

    /// Rotation matrix `R` (world-to-camera).
    pub fn r(&self) -> Matrix3<f64> {
        self.rotation.to_rotation_matrix().into_inner()
    }

    /// Camera centre in world coordinates, `C = -Rᵀ t`.
    pub fn center(&self) -> Vector3<f64> {
        -(self.rotation.inverse() * self.translation)
    }

    /// World point to camera coordinates.
    pub fn transform(&self, p_world: &Vector3<f64>) -> Vector3<f64> {
        self.rotation * p_world + self.translation
    }

    /// Camera direction (in camera coordinates) to world.
    pub fn dir_to_world(&self, d_cam: &Vector3<f64>) -> Vector3<f64> {
        self.rotation.inverse() * d_cam
    }

    /// The inverse transform (camera-to-world), as a `Pose` whose "world" is the camera.
    pub fn inverse(&self) -> Pose {
        let inv = self.rotation.inverse();
        Pose {
            rotation: inv,
            translation: -(inv * self.translation),
        }
    }

    /// Composition `self ∘ other` (apply `other` first).
    pub fn compose(&self, other: &Pose) -> Pose {
        Pose {
            rotation: self.rotation * other.rotation,
            translation: self.rotation * other.translation + self.translation,
        }
    }

    pub fn to_isometry(&self) -> Isometry3<f64> {
        Isometry3::from_parts(Translation3::from(self.translation), self.rotation)
    }

    /// Viewing direction (camera +z) in world coordinates.
    pub fn forward(&self) -> Vector3<f64> {
        self.dir_to_world(&Vector3::z())
    }

    /// Image "up" (camera −y) in world coordinates.
    pub fn up(&self) -> Vector3<f64> {
        self.dir_to_world(&-Vector3::y())
    }

    /// 4x4 camera-to-world matrix in OpenGL axes (nerfstudio `transform_matrix`), without any world permutation.
    pub fn to_gl_c2w(&self) -> Matrix4<f64> {
        let r_c2w = self.r().transpose();
        let c = self.center();
        let mut m = Matrix4::identity();
        // OpenCV -> OpenGL camera axes: flip y and z.
        m.fixed_view_mut::<3, 1>(0, 0).copy_from(&r_c2w.column(0));
        m.fixed_view_mut::<3, 1>(0, 1)
            .copy_from(&(-r_c2w.column(1)));
        m.fixed_view_mut::<3, 1>(0, 2)
            .copy_from(&(-r_c2w.column(2)));
        m.fixed_view_mut::<3, 1>(0, 3).copy_from(&c);
        m
    }

    /// Inverse of [`Pose::to_gl_c2w`].
    pub fn from_gl_c2w(m: &Matrix4<f64>) -> Pose {
        let x = m.fixed_view::<3, 1>(0, 0).into_owned();
        let y = -m.fixed_view::<3, 1>(0, 1).into_owned();
        let z = -m.fixed_view::<3, 1>(0, 2).into_owned();
        let c = m.fixed_view::<3, 1>(0, 3).into_owned();
        Pose::from_center_and_axes(c, &Matrix3::from_columns(&[x, y, z]))
    }

    /// Angle in radians of the relative rotation between two poses.
    pub fn rotation_angle_to(&self, other: &Pose) -> f64 {
        self.rotation.angle_to(&other.rotation)
    }
}

/// A similarity transform `x' = s R x + t` between two world frames.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sim3 {
    pub scale: f64,
    pub rotation: UnitQuaternion<f64>,
    pub translation: Vector3<f64>,
}

impl Sim3 {
    pub fn identity() -> Self {
        Sim3 {
            scale: 1.0,
            rotation: UnitQuaternion::identity(),
            translation: Vector3::zeros(),
        }
    }

    pub fn apply(&self, p: &Vector3<f64>) -> Vector3<f64> {
        self.scale * (self.rotation * p) + self.translation
    }

    /// Transform a world-to-camera pose into the new world frame (the camera itself is unchanged,
    /// its centre moves with the points).
    pub fn apply_pose(&self, pose: &Pose) -> Pose {
        let rotation = pose.rotation * self.rotation.inverse();
        let center = self.apply(&pose.center());
        Pose {
            rotation,
            translation: -(rotation * center),
        }
    }

    /// Umeyama's least-squares similarity (Umeyama 1991, Eq. 40-42) mapping `src[i]` onto `dst[i]`.
    /// Returns `None` with fewer than 3 points or a degenerate (collinear) configuration.
    pub fn umeyama(src: &[Vector3<f64>], dst: &[Vector3<f64>]) -> Option<Sim3> {
        let n = src.len();
        if n < 3 || dst.len() != n {
            return None;
        }
        let nf = n as f64;
        let mu_s = src.iter().sum::<Vector3<f64>>() / nf;
        let mu_d = dst.iter().sum::<Vector3<f64>>() / nf;
        let mut cov = Matrix3::zeros();
        let mut var_s = 0.0;
        for (s, d) in src.iter().zip(dst) {
            let (a, b) = (s - mu_s, d - mu_d);
            cov += b * a.transpose();
            var_s += a.norm_squared();
        }
        cov /= nf;
        var_s /= nf;
        if var_s < 1e-18 {
            return None;
        }
        let svd = cov.svd(true, true);
        let (u, vt) = (svd.u?, svd.v_t?);
        let mut sgn = Matrix3::identity();
        if (u.determinant() * vt.determinant()) < 0.0 {
            sgn[(2, 2)] = -1.0;
        }
        let r = u * sgn * vt;
        let d = svd.singular_values;
        let trace = d[0] * sgn[(0, 0)] + d[1] * sgn[(1, 1)] + d[2] * sgn[(2, 2)];
        let scale = trace / var_s;
        let rot = UnitQuaternion::from_rotation_matrix(&Rotation3::from_matrix_unchecked(r));
        let translation = mu_d - scale * (rot * mu_s);
        Some(Sim3 {
            scale,
            rotation: rot,
            translation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn center_and_look_at() {
        let eye = Vector3::new(1.0, 2.0, 3.0);
        let p = Pose::look_at(
            eye,
            Vector3::new(1.0, 2.0, 10.0),
            Vector3::new(0.0, -1.0, 0.0),
        );
        assert!((p.center() - eye).norm() < 1e-12);
        assert!((p.forward() - Vector3::z()).norm() < 1e-12);
        // Target straight ahead projects to the optical axis.
        let q = p.transform(&Vector3::new(1.0, 2.0, 10.0));
        assert!(q.x.abs() < 1e-12 && q.y.abs() < 1e-12 && q.z > 0.0);
        assert!((p.up() - Vector3::new(0.0, -1.0, 0.0)).norm() < 1e-12);
    }

    #[test]
    fn gl_round_trip() {
        let p = Pose::look_at(Vector3::new(0.3, -1.0, 2.0), Vector3::zeros(), Vector3::z());
        let back = Pose::from_gl_c2w(&p.to_gl_c2w());
        assert!((back.center() - p.center()).norm() < 1e-12);
        assert!(back.rotation_angle_to(&p) < 1e-9);
        // OpenGL camera looks along -z.
        let m = p.to_gl_c2w();
        let fwd = -m.fixed_view::<3, 1>(0, 2).into_owned();
        assert!((fwd - p.forward()).norm() < 1e-12);
    }

    #[test]
    fn umeyama_recovers_similarity() {
        let truth = Sim3 {
            scale: 2.5,
            rotation: UnitQuaternion::from_euler_angles(0.1, -0.4, 1.2),
            translation: Vector3::new(1.0, -2.0, 0.5),
        };
        let src: Vec<_> = (0..10)
            .map(|i| Vector3::new(i as f64, (i * i) as f64 * 0.1, (i as f64).sin()))
            .collect();
        let dst: Vec<_> = src.iter().map(|p| truth.apply(p)).collect();
        let est = Sim3::umeyama(&src, &dst).unwrap();
        assert!((est.scale - 2.5).abs() < 1e-9);
        assert!(est.rotation.angle_to(&truth.rotation) < 1e-9);
        assert!((est.translation - truth.translation).norm() < 1e-9);
        // Poses move with it.
        let pose = Pose::look_at(Vector3::new(1.0, 1.0, 1.0), Vector3::zeros(), Vector3::z());
        let moved = est.apply_pose(&pose);
        assert!((moved.center() - truth.apply(&pose.center())).norm() < 1e-9);
    }
}
