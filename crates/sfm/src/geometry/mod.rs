//! Minimal and non-minimal geometric solvers (COLMAP `estimators/` style): each a small pure function
//! with a clear input/output contract, tested on synthetic data. The pipeline that orchestrates them
//! lives in [`crate::mapper`].
//!
//! Naming conventions used in every solver:
//! - `x1`, `x2`: corresponding points in image 1 and 2. "Normalised" points are undistorted image
//!   points in the camera's `z = 1` plane (`K⁻¹ [u v 1]ᵀ`); "pixel" points are raw pixels.
//! - `E`, `F`, `H`: essential, fundamental and homography matrices with `x2ᵀ E x1 = 0` and
//!   `x2 ~ H x1`.
//! - Poses are world-to-camera `(R, t)`: `x_cam = R X + t` (COLMAP). A relative pose maps camera 1's
//!   frame to camera 2's: `x2 = R x1 + t`.

pub mod essential;
pub mod fundamental;
pub mod homography;
pub mod pnp;
pub mod poly;
pub mod ransac;
pub mod triangulate;
pub mod two_view;

use nalgebra::{Matrix3, Vector2, Vector3};

/// Skew-symmetric cross-product matrix `[v]×` with `[v]× w = v × w`.
pub fn skew(v: &Vector3<f64>) -> Matrix3<f64> {
    Matrix3::new(0.0, -v.z, v.y, v.z, 0.0, -v.x, -v.y, v.x, 0.0)
}

/// Hartley's isotropic normalisation (Hartley 1997, "In defense of the eight-point algorithm", §5):
/// the similarity `T` that moves the centroid to the origin and makes the mean distance `√2`.
/// Returns `T` and the normalised points.
pub fn hartley_normalize(pts: &[Vector2<f64>]) -> (Matrix3<f64>, Vec<Vector2<f64>>) {
    let n = pts.len().max(1) as f64;
    let c = pts.iter().fold(Vector2::zeros(), |a, p| a + p) / n;
    let d = pts.iter().map(|p| (p - c).norm()).sum::<f64>() / n;
    let s = if d > 1e-12 {
        std::f64::consts::SQRT_2 / d
    } else {
        1.0
    };
    let t = Matrix3::new(s, 0.0, -s * c.x, 0.0, s, -s * c.y, 0.0, 0.0, 1.0);
    let out = pts.iter().map(|p| (p - c) * s).collect();
    (t, out)
}

/// Squared Sampson distance of a correspondence to the epipolar constraint `x2ᵀ F x1 = 0`
/// (Hartley & Zisserman, Eq. 11.9): a first-order approximation of the squared reprojection error,
/// in the units of the points.
pub fn sampson_sq(f: &Matrix3<f64>, x1: &Vector2<f64>, x2: &Vector2<f64>) -> f64 {
    let p1 = Vector3::new(x1.x, x1.y, 1.0);
    let p2 = Vector3::new(x2.x, x2.y, 1.0);
    let fx1 = f * p1;
    let ftx2 = f.transpose() * p2;
    let num = p2.dot(&fx1);
    let den = fx1.x * fx1.x + fx1.y * fx1.y + ftx2.x * ftx2.x + ftx2.y * ftx2.y;
    if den <= 1e-300 {
        return f64::INFINITY;
    }
    num * num / den
}

/// A small deterministic PRNG (SplitMix64) so that every run of the pipeline gives the same result.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * n as f64) as usize % n.max(1)
    }
    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    /// `k` distinct indices from `0..n` (`k <= n`).
    pub fn sample(&mut self, n: usize, k: usize, out: &mut Vec<usize>) {
        out.clear();
        while out.len() < k {
            let i = self.below(n);
            if !out.contains(&i) {
                out.push(i);
            }
        }
    }
}

/// Angle in radians between two vectors.
pub fn angle_between(a: &Vector3<f64>, b: &Vector3<f64>) -> f64 {
    let c = a.dot(b) / (a.norm() * b.norm()).max(1e-300);
    c.clamp(-1.0, 1.0).acos()
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::Rng;
    use nalgebra::{Matrix3, Rotation3, Vector3};

    /// A random rotation with angle up to `max_angle` radians.
    pub fn random_rotation(rng: &mut Rng, max_angle: f64) -> Matrix3<f64> {
        let axis = Vector3::new(rng.normal(), rng.normal(), rng.normal()).normalize();
        Rotation3::from_axis_angle(
            &nalgebra::Unit::new_normalize(axis),
            max_angle * rng.uniform(),
        )
        .into_inner()
    }

    /// Random points in a box in front of the origin camera.
    pub fn random_points(rng: &mut Rng, n: usize) -> Vec<Vector3<f64>> {
        (0..n)
            .map(|_| {
                Vector3::new(
                    rng.uniform() * 4.0 - 2.0,
                    rng.uniform() * 4.0 - 2.0,
                    rng.uniform() * 4.0 + 4.0,
                )
            })
            .collect()
    }
}
