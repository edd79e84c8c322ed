//! Absolute pose: a P3P minimal solver, Gauss-Newton refinement of the reprojection error, and
//! the LO-MSAC wrapper used to register photos.

use super::poly;
use super::ransac::{RansacOptions, RansacResult, lo_msac};
use nalgebra::{Matrix3, Matrix6, Rotation3, Vector2, Vector3, Vector6};

/// Rigid alignment `Q ≈ R P + t` of corresponding point sets (Kabsch 1976 / Horn 1987, by SVD of
/// the cross-covariance).
pub fn kabsch(p: &[Vector3<f64>], q: &[Vector3<f64>]) -> Option<(Matrix3<f64>, Vector3<f64>)> {
    let n = p.len() as f64;
    let cp = p.iter().sum::<Vector3<f64>>() / n;
    let cq = q.iter().sum::<Vector3<f64>>() / n;
    let mut h = Matrix3::zeros();
    for (a, b) in p.iter().zip(q) {
        h += (b - cq) * (a - cp).transpose();
    }
    let svd = h.svd(true, true);
    let (u, vt) = (svd.u?, svd.v_t?);
    let d = (u * vt).determinant().signum();
    let r = u * Matrix3::from_diagonal(&Vector3::new(1.0, 1.0, d)) * vt;
    Some((r, cq - r * cp))
}

/// P3P from three bearing vectors `f` (camera frame, any length) and world points `x`.
/// Grunert's distance equations (Haralick et al. 1994, §2) `dᵢ² + dⱼ² − 2 dᵢ dⱼ cos θᵢⱼ = Dᵢⱼ²` with
/// `d₁ = u d₀`, `d₂ = v d₀`: subtracting two of them gives `u = N(v) / D(v)`, and substituting into
/// the third gives a quartic in `v`. Each positive root gives the three depths; the pose then
/// follows by rigid alignment ([`kabsch`]). Returns up to four poses `(R, t)`.
pub fn p3p(f: &[Vector3<f64>; 3], x: &[Vector3<f64>; 3]) -> Vec<(Matrix3<f64>, Vector3<f64>)> {
    let f = f.map(|v| v.normalize());
    let (c01, c02, c12) = (f[0].dot(&f[1]), f[0].dot(&f[2]), f[1].dot(&f[2]));
    let d01 = (x[0] - x[1]).norm_squared();
    let d02 = (x[0] - x[2]).norm_squared();
    let d12 = (x[1] - x[2]).norm_squared();
    if d02 < 1e-300 {
        return vec![];
    }
    let (k1, k2) = (d01 / d02, d12 / d02);
    let q = [1.0, -2.0 * c02, 1.0]; // q(v) = 1 + v² − 2 v c02
    let n = poly::add(&[-1.0, 0.0, 1.0], &q.map(|c| c * (k1 - k2))); // N(v)
    let d = [-2.0 * c01, 2.0 * c12]; // D(v)
    let one_minus_k1q = poly::sub(&[1.0], &q.map(|c| c * k1));
    let quartic = poly::add(
        &poly::sub(
            &poly::mul(&n, &n),
            &poly::mul(&poly::mul(&n, &d), &[2.0 * c01]),
        ),
        &poly::mul(&one_minus_k1q, &poly::mul(&d, &d)),
    );
    let mut out = Vec::new();
    for v in poly::real_roots(&quartic) {
        let qv = poly::eval(&q, v);
        let dv = poly::eval(&d, v);
        if v <= 0.0 || qv <= 0.0 || dv.abs() < 1e-12 {
            continue;
        }
        let u = poly::eval(&n, v) / dv;
        if u <= 0.0 {
            continue;
        }
        let d0 = (d02 / qv).sqrt();
        let pc = [f[0] * d0, f[1] * (u * d0), f[2] * (v * d0)];
        if let Some(rt) = kabsch(x, &pc) {
            out.push(rt);
        }
    }
    out
}

/// Squared reprojection error in normalised coordinates (`None`-safe: behind the camera = ∞).
pub fn reproj_sq(r: &Matrix3<f64>, t: &Vector3<f64>, x: &Vector3<f64>, obs: &Vector2<f64>) -> f64 {
    let p = r * x + t;
    if p.z <= 1e-9 {
        return f64::INFINITY;
    }
    (Vector2::new(p.x / p.z, p.y / p.z) - obs).norm_squared()
}

/// Levenberg-Marquardt refinement of a pose on normalised reprojection errors with a Cauchy loss of
/// scale `loss_scale` (iteratively re-weighted least squares). Rotation updates are left-multiplied,
/// `R ← exp([δω]×) R` (Rodrigues).
pub fn refine_pose(
    r: &Matrix3<f64>,
    t: &Vector3<f64>,
    x: &[Vector3<f64>],
    obs: &[Vector2<f64>],
    loss_scale: f64,
    iters: usize,
) -> (Matrix3<f64>, Vector3<f64>) {
    let (mut r, mut t) = (*r, *t);
    let s2 = loss_scale * loss_scale;
    let cost = |r: &Matrix3<f64>, t: &Vector3<f64>| -> f64 {
        x.iter()
            .zip(obs)
            .map(|(p, o)| (1.0 + reproj_sq(r, t, p, o).min(1e6) / s2).ln())
            .sum()
    };
    let mut c0 = cost(&r, &t);
    let mut lambda = 1e-3;
    for _ in 0..iters {
        let mut h = Matrix6::<f64>::zeros();
        let mut g = Vector6::<f64>::zeros();
        for (p, o) in x.iter().zip(obs) {
            let rp = r * p;
            let pc = rp + t;
            if pc.z <= 1e-9 {
                continue;
            }
            let iz = 1.0 / pc.z;
            let res = Vector2::new(pc.x * iz - o.x, pc.y * iz - o.y);
            let w = 1.0 / (1.0 + res.norm_squared() / s2);
            let dproj =
                nalgebra::Matrix2x3::new(iz, 0.0, -pc.x * iz * iz, 0.0, iz, -pc.y * iz * iz);
            let mut jp = nalgebra::Matrix3x6::zeros();
            jp.fixed_view_mut::<3, 3>(0, 0)
                .copy_from(&(-super::skew(&rp)));
            jp.fixed_view_mut::<3, 3>(0, 3)
                .copy_from(&Matrix3::identity());
            let j = dproj * jp;
            h += j.transpose() * j * w;
            g += j.transpose() * res * w;
        }
        let mut improved = false;
        for _ in 0..5 {
            let mut ha = h;
            for k in 0..6 {
                ha[(k, k)] += lambda * (1.0 + h[(k, k)]);
            }
            let Some(delta) = ha.cholesky().map(|c| c.solve(&(-g))) else {
                lambda *= 10.0;
                continue;
            };
            let rot = Rotation3::new(Vector3::new(delta[0], delta[1], delta[2])).into_inner();
            // x_c = exp([δω]×) R X + t + δt: to first order δx_c = δω × (R X) + δt.
            let (rn, tn) = (rot * r, t + Vector3::new(delta[3], delta[4], delta[5]));
            let c1 = cost(&rn, &tn);
            if c1 < c0 {
                (r, t, c0) = (rn, tn, c1);
                lambda = (lambda * 0.1).max(1e-9);
                improved = true;
                break;
            }
            lambda *= 10.0;
        }
        if !improved {
            break;
        }
    }
    (r, t)
}

/// Register a camera from 2D-3D correspondences (normalised observations): P3P in LO-MSAC with
/// [`refine_pose`] as the local optimisation. `max_error` is in normalised units.
pub fn estimate_absolute_pose(
    x: &[Vector3<f64>],
    obs: &[Vector2<f64>],
    max_error: f64,
    seed: u64,
) -> Option<RansacResult<(Matrix3<f64>, Vector3<f64>)>> {
    let bearings: Vec<Vector3<f64>> = obs.iter().map(|o| Vector3::new(o.x, o.y, 1.0)).collect();
    let opts = RansacOptions {
        max_error,
        min_trials: 100,
        max_trials: 10000,
        seed,
        ..Default::default()
    };
    let mut res = lo_msac(
        x.len(),
        3,
        &opts,
        |s| {
            p3p(
                &[bearings[s[0]], bearings[s[1]], bearings[s[2]]],
                &[x[s[0]], x[s[1]], x[s[2]]],
            )
        },
        |m, i| reproj_sq(&m.0, &m.1, &x[i], &obs[i]),
        |m, idx| {
            if idx.len() < 6 {
                return None;
            }
            let xs: Vec<_> = idx.iter().map(|&i| x[i]).collect();
            let os: Vec<_> = idx.iter().map(|&i| obs[i]).collect();
            Some(refine_pose(&m.0, &m.1, &xs, &os, max_error, 10))
        },
    )?;
    // Final refinement on all inliers.
    let idx: Vec<usize> = (0..x.len()).filter(|&i| res.inliers[i]).collect();
    if idx.len() >= 6 {
        let xs: Vec<_> = idx.iter().map(|&i| x[i]).collect();
        let os: Vec<_> = idx.iter().map(|&i| obs[i]).collect();
        res.model = refine_pose(&res.model.0, &res.model.1, &xs, &os, max_error, 20);
        let thr2 = max_error * max_error;
        res.inliers = (0..x.len())
            .map(|i| reproj_sq(&res.model.0, &res.model.1, &x[i], &obs[i]) < thr2)
            .collect();
        res.num_inliers = res.inliers.iter().filter(|&&b| b).count();
    }
    Some(res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{Rng, testutil::*};

    #[test]
    fn p3p_recovers_pose_exactly() {
        let mut rng = Rng::new(8);
        for trial in 0..50 {
            let r = random_rotation(&mut rng, 3.0);
            let t = Vector3::new(rng.normal(), rng.normal(), rng.normal());
            let pc = random_points(&mut rng, 3);
            // World points that project to the given camera points.
            let xw: Vec<Vector3<f64>> = pc.iter().map(|p| r.transpose() * (p - t)).collect();
            let sols = p3p(&[pc[0], pc[1], pc[2]], &[xw[0], xw[1], xw[2]]);
            let best = sols
                .iter()
                .map(|(re, te)| (re - r).norm() + (te - t).norm())
                .fold(f64::INFINITY, f64::min);
            assert!(best < 1e-6, "trial {trial}: {best} ({} sols)", sols.len());
        }
    }

    #[test]
    fn absolute_pose_ransac_with_outliers_and_noise() {
        let mut rng = Rng::new(9);
        let r = random_rotation(&mut rng, 1.0);
        let t = Vector3::new(0.3, -0.2, 0.5);
        let pc = random_points(&mut rng, 200);
        let xw: Vec<Vector3<f64>> = pc.iter().map(|p| r.transpose() * (p - t)).collect();
        let f = 1000.0;
        let obs: Vec<Vector2<f64>> = pc
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if i % 3 == 0 {
                    Vector2::new(rng.uniform() - 0.5, rng.uniform() - 0.5)
                } else {
                    Vector2::new(
                        p.x / p.z + rng.normal() * 0.5 / f,
                        p.y / p.z + rng.normal() * 0.5 / f,
                    )
                }
            })
            .collect();
        let res = estimate_absolute_pose(&xw, &obs, 4.0 / f, 1).unwrap();
        assert!(
            res.num_inliers >= 130 && res.num_inliers <= 136,
            "{}",
            res.num_inliers
        );
        let ang = Rotation3::from_matrix(&(res.model.0 * r.transpose()))
            .angle()
            .to_degrees();
        assert!(ang < 0.05, "{ang}");
        assert!((res.model.1 - t).norm() < 0.01);
    }
}
