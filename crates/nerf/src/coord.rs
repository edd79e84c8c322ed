//! Coordinates: the normalised scene frame, mip-NeRF 360's contraction, ray distances in normalised
//! disparity, and cone footprints.
//!
//! Naming (used across the crate):
//! - World: the SfM frame (`sfm/sparse`, metric). Norm: `x_norm = (x_world - center) * scale`, the frame
//!   the model lives in; cameras sit inside the unit ball.
//! - Contracted: `contract(x_norm)`, inside the ball of radius 2. Grid: `(contracted + 2) / 4` in `[0,1]^3`,
//!   the input of the hash grid.
//! - `o`, `d`: ray origin and *unit* direction in the norm frame; `t`: distance along the ray (norm units).
//! - `s`: normalised disparity in `[0, 1]` (mip-NeRF 360 Eq. 11); `t(s)` is its inverse.
//! - `r`: cone radius per unit distance (mip-NeRF's pixel footprint), so the footprint at `t` is `r * t`.

use serde::{Deserialize, Serialize};

/// Far plane of the s-parametrisation (multinerf `360.gin`: `far = 1e6`).
pub const FAR: f64 = 1e6;

/// The similarity that maps the SfM world frame into the model's frame: `x_norm = (x - center) * scale`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SceneNorm {
    pub center: [f64; 3],
    pub scale: f64,
    /// Near plane in norm units.
    pub near: f64,
}

impl SceneNorm {
    /// Rays of the SfM world frame (directions of any length) in the norm frame: origins mapped by
    /// [`SceneNorm::point`], directions normalised (the scale does not change them).
    pub fn rays(&self, origins: &[[f32; 3]], dirs: &[[f32; 3]]) -> (Vec<[f32; 3]>, Vec<[f32; 3]>) {
        let o = origins
            .iter()
            .map(|o| {
                let p = self.point([o[0] as f64, o[1] as f64, o[2] as f64]);
                [p[0] as f32, p[1] as f32, p[2] as f32]
            })
            .collect();
        let d = dirs
            .iter()
            .map(|d| {
                let n = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt().max(1e-20);
                [d[0] / n, d[1] / n, d[2] / n]
            })
            .collect();
        (o, d)
    }

    /// World point to the norm frame.
    pub fn point(&self, p: [f64; 3]) -> [f64; 3] {
        [
            (p[0] - self.center[0]) * self.scale,
            (p[1] - self.center[1]) * self.scale,
            (p[2] - self.center[2]) * self.scale,
        ]
    }

    /// Scene normalisation from camera centres and sparse points (world frame) and, per point, its
    /// depth in the cameras that see it.
    ///
    /// Centre: the mean camera centre. Scale: the unit ball holds every camera (with a 10 % margin) and
    /// the nearer 80 % of the sparse points (so an indoor room's walls sit just inside it, and what is
    /// farther goes to the contracted shell). Near: half the 1st percentile of point depths, clamped to
    /// `[0.01, 1]` norm units; 0.2 without points (multinerf's `near` on its own normalisation).
    pub fn from_cameras(centers: &[[f64; 3]], points: &[[f64; 3]], depths: &[f64]) -> SceneNorm {
        let n = centers.len().max(1) as f64;
        let mut c = [0.0; 3];
        for p in centers {
            for k in 0..3 {
                c[k] += p[k] / n;
            }
        }
        let dist = |p: &[f64; 3]| {
            ((p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2) + (p[2] - c[2]).powi(2)).sqrt()
        };
        let cam_r = centers.iter().map(dist).fold(0.0, f64::max) * 1.1;
        let mut pd: Vec<f64> = points.iter().map(dist).filter(|d| d.is_finite()).collect();
        pd.sort_by(|a, b| a.total_cmp(b));
        let pts_r = if pd.is_empty() {
            0.0
        } else {
            pd[(pd.len() * 8 / 10).min(pd.len() - 1)]
        };
        let mut radius = cam_r.max(pts_r);
        if radius.is_nan() || radius <= 1e-9 {
            radius = 1.0;
        }
        let scale = 1.0 / radius;
        let mut ds: Vec<f64> = depths
            .iter()
            .copied()
            .filter(|d| *d > 0.0 && d.is_finite())
            .collect();
        ds.sort_by(|a, b| a.total_cmp(b));
        let near = if ds.is_empty() {
            0.2
        } else {
            (0.5 * ds[ds.len() / 100] * scale).clamp(0.01, 1.0)
        };
        SceneNorm {
            center: c,
            scale,
            near,
        }
    }
}

/// mip-NeRF 360 Eq. 10: `contract(x) = x` if `|x| <= 1`, else `(2 - 1/|x|) x/|x|`.
#[inline]
pub fn contract(x: [f32; 3]) -> [f32; 3] {
    let m2 = x[0] * x[0] + x[1] * x[1] + x[2] * x[2];
    if m2 <= 1.0 {
        return x;
    }
    let m = m2.sqrt();
    let f = (2.0 - 1.0 / m) / m;
    [x[0] * f, x[1] * f, x[2] * f]
}

/// Isotropic scale of the contraction at `x`: `det(J)^(1/3)` of its Jacobian (1 inside the unit ball;
/// outside, radial derivative `1/|x|^2` and tangential `(2 - 1/|x|)/|x|`, so
/// `det J = (2|x| - 1)^2 / |x|^6`). Zip-NeRF uses this to carry a footprint through the contraction.
#[inline]
pub fn contract_scale(x: [f32; 3]) -> f32 {
    let m2 = x[0] * x[0] + x[1] * x[1] + x[2] * x[2];
    if m2 <= 1.0 {
        return 1.0;
    }
    let m = m2.sqrt();
    let det = (2.0 * m - 1.0).powi(2) / (m2 * m2 * m2);
    det.cbrt()
}

/// `J^T v` for the Jacobian `J` of [`contract`] at `x` (`J` is symmetric): inside the unit ball
/// `v`; outside, with `m = |x|` and `u = x / m`,
/// `J = (2 - 1/m)/m (I - u u^T) + u u^T / m^2`.
pub fn contract_vjp(x: [f32; 3], v: [f32; 3]) -> [f32; 3] {
    let m2 = x[0] * x[0] + x[1] * x[1] + x[2] * x[2];
    if m2 <= 1.0 {
        return v;
    }
    let m = m2.sqrt();
    let u = [x[0] / m, x[1] / m, x[2] / m];
    let uv = u[0] * v[0] + u[1] * v[1] + u[2] * v[2];
    let tang = (2.0 - 1.0 / m) / m;
    let rad = 1.0 / m2;
    [
        tang * (v[0] - uv * u[0]) + rad * uv * u[0],
        tang * (v[1] - uv * u[1]) + rad * uv * u[1],
        tang * (v[2] - uv * u[2]) + rad * uv * u[2],
    ]
}

/// Rotation matrix `Exp(omega)` of a rotation vector (Rodrigues), row-major.
pub fn exp_so3(w: [f32; 3]) -> [[f32; 3]; 3] {
    let th2 = w[0] * w[0] + w[1] * w[1] + w[2] * w[2];
    // sin(t)/t and (1 - cos t)/t^2, by their series near 0.
    let (a, b) = if th2 < 1e-8 {
        (1.0 - th2 / 6.0, 0.5 - th2 / 24.0)
    } else {
        let th = th2.sqrt();
        (th.sin() / th, (1.0 - th.cos()) / th2)
    };
    let k = [[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]];
    let mut r = [[0f32; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            let kk: f32 = (0..3).map(|l| k[i][l] * k[l][j]).sum();
            r[i][j] = if i == j { 1.0 } else { 0.0 } + a * k[i][j] + b * kk;
        }
    }
    r
}

/// Contracted point to hash-grid coordinates in `[0,1]^3`.
pub fn to_grid(y: [f32; 3]) -> [f32; 3] {
    [
        (y[0] + 2.0) * 0.25,
        (y[1] + 2.0) * 0.25,
        (y[2] + 2.0) * 0.25,
    ]
}

/// Normalised disparity to distance, mip-NeRF 360 Eq. 11 with `g(t) = 1/t`:
/// `t(s) = 1 / (s/far + (1-s)/near)`.
pub fn s_to_t(s: f32, near: f32) -> f32 {
    let g = s * (1.0 / FAR as f32) + (1.0 - s) / near;
    1.0 / g
}

/// Inverse of [`s_to_t`]: `s = (1/t - 1/near) / (1/far - 1/near)`.
pub fn t_to_s(t: f32, near: f32) -> f32 {
    let gn = 1.0 / near;
    let gf = 1.0 / FAR as f32;
    (1.0 / t - gn) / (gf - gn)
}

/// Cone radius per unit distance for a pinhole camera with focal `f` px (multinerf
/// `pixels_to_rays`: `0.5 (|dx| + |dy|) * 2/sqrt(12)`, with neighbour direction spacing `1/f`).
pub fn cone_radius(focal_px: f64) -> f32 {
    (2.0 / (12f64.sqrt() * focal_px)) as f32
}

/// Footprint (standard deviation) of a sample in hash-grid units: the cone's radius at `t`, carried
/// through the contraction by [`contract_scale`], divided by the grid's extent (4).
pub fn grid_sigma(r: f32, t: f32, x: [f32; 3]) -> f32 {
    r * t * contract_scale(x) * 0.25
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contraction_matches_hand_values() {
        assert_eq!(contract([0.5, -0.2, 0.1]), [0.5, -0.2, 0.1]);
        // |x| = 2: (2 - 1/2) * x/|x| = 1.5 * (1,0,0)
        let y = contract([2.0, 0.0, 0.0]);
        assert!((y[0] - 1.5).abs() < 1e-6 && y[1] == 0.0);
        // |x| = 5 along (3,4,0)/5: 1.8 * (0.6, 0.8, 0)
        let y = contract([3.0, 4.0, 0.0]);
        assert!((y[0] - 1.08).abs() < 1e-6 && (y[1] - 1.44).abs() < 1e-6);
        // never leaves the radius-2 ball
        let y = contract([1e6, 0.0, 0.0]);
        assert!(y[0] < 2.0 && y[0] > 1.999);
        // Jacobian determinant against finite differences at |x| = 3
        let x = [3.0f32, 0.0, 0.0];
        let h = 1e-3;
        let dr = (contract([3.0 + h, 0.0, 0.0])[0] - contract([3.0 - h, 0.0, 0.0])[0]) / (2.0 * h);
        let dt = (contract([3.0, h, 0.0])[1] - contract([3.0, -h, 0.0])[1]) / (2.0 * h);
        let det = dr * dt * dt;
        assert!(
            (contract_scale(x) - det.cbrt()).abs() < 1e-3,
            "{} {}",
            contract_scale(x),
            det.cbrt()
        );
    }

    #[test]
    fn contraction_vjp_and_rotation() {
        // J^T v against central differences of <v, contract(x)>, inside and outside the ball.
        for x in [[0.3f32, -0.2, 0.5], [1.5, -2.0, 0.7], [0.0, 4.0, -1.0]] {
            let v = [0.3f32, -0.7, 0.45];
            let g = contract_vjp(x, v);
            let f = |y: [f32; 3]| {
                let c = contract(y);
                (c[0] * v[0] + c[1] * v[1] + c[2] * v[2]) as f64
            };
            for a in 0..3 {
                let h = 1e-3;
                let (mut xp, mut xm) = (x, x);
                xp[a] += h;
                xm[a] -= h;
                let fd = (f(xp) - f(xm)) / (2.0 * h as f64);
                assert!(
                    (fd - g[a] as f64).abs() < 1e-3,
                    "{x:?} {a}: {} vs {fd}",
                    g[a]
                );
            }
        }
        // Exp: a quarter turn about z maps x to y; orthonormal for a generic vector.
        let r = exp_so3([0.0, 0.0, std::f32::consts::FRAC_PI_2]);
        assert!((r[1][0] - 1.0).abs() < 1e-6 && r[0][0].abs() < 1e-6);
        let r = exp_so3([0.1, -0.2, 0.05]);
        for i in 0..3 {
            for j in 0..3 {
                let d: f32 = (0..3).map(|k| r[i][k] * r[j][k]).sum();
                assert!((d - if i == j { 1.0 } else { 0.0 }).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn disparity_roundtrip() {
        let near = 0.1;
        assert!((s_to_t(0.0, near) - near).abs() < 1e-7);
        // s = 0.5 -> t ≈ 2 near (far >> near)
        assert!((s_to_t(0.5, near) - 0.2).abs() < 1e-5);
        for &s in &[0.1f32, 0.3, 0.9] {
            assert!((t_to_s(s_to_t(s, near), near) - s).abs() < 1e-5);
        }
    }

    #[test]
    fn normalisation_puts_cameras_in_unit_ball() {
        let cams = [[10.0, 0.0, 0.0], [12.0, 0.0, 0.0], [11.0, 1.0, 0.0]];
        let n = SceneNorm::from_cameras(&cams, &[], &[2.0, 3.0]);
        for c in cams {
            let p = n.point(c);
            let r = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
            assert!(r < 0.95, "{r}");
        }
        assert!((n.center[0] - 11.0).abs() < 1e-12);
        assert!(n.near > 0.0 && n.near <= 1.0);
    }
}
