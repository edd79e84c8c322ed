//! Bundle adjustment: Levenberg-Marquardt on the reprojection error with the Schur complement on
//! the camera block (Triggs et al. 2000, "Bundle adjustment — a modern synthesis", §6.1; the
//! "reduced camera system" `S = A − W C⁻¹ Wᵀ` with 3x3 point blocks `C` inverted per point), a
//! soft-L1 robust loss `ρ(s) = 2(√(1+s) − 1)` on `s = |r|²/σ²` applied by iteratively re-weighted
//! least squares (Triggs §4.3), and intrinsics `(f, k1, k2)` shared by all images of a camera
//! (COLMAP `RADIAL`; the principal point stays fixed, as in COLMAP).
//!
//! Conventions: image poses are world-to-camera `(R, t)`; the rotation update is left-multiplied,
//! `R ← exp([δω]×) R`, `t ← t + δt`; the projection of a camera point `p` is
//! `u = f·d·p.x/p.z + cx`, `v = f·d·p.y/p.z + cy` with `d = 1 + k1 r² + k2 r⁴`, `r² = (p.x² + p.y²)/p.z²`.
//! The reduced system is solved densely by a blocked Cholesky factorisation whose trailing updates are
//! `dgemm` calls ([`cholesky_solve`]): a few hundred images in well under a second per iteration.

use nalgebra::{DMatrix, DVector, Matrix2x3, Matrix3, Rotation3, SMatrix, Vector2, Vector3};
use rayon::prelude::*;

/// Intrinsics of one camera: `[f, cx, cy, k1, k2]`.
pub type Intrinsics = [f64; 5];

/// One observation: image `image` sees point `point` at pixel `xy`.
#[derive(Clone, Copy, Debug)]
pub struct Obs {
    pub image: usize,
    pub point: usize,
    pub xy: Vector2<f64>,
}

/// The variables of a bundle adjustment problem.
#[derive(Clone, Debug, Default)]
pub struct BaData {
    pub intrinsics: Vec<Intrinsics>,
    /// Camera index of each image.
    pub image_camera: Vec<usize>,
    pub rotations: Vec<Matrix3<f64>>,
    pub translations: Vec<Vector3<f64>>,
    pub points: Vec<Vector3<f64>>,
    pub obs: Vec<Obs>,
}

#[derive(Clone, Debug)]
pub struct BaOptions {
    pub max_iterations: usize,
    /// Soft-L1 loss scale σ in pixels (0 = plain least squares).
    pub loss_scale: f64,
    /// Images whose pose is held fixed (gauge and local BA).
    pub fixed_images: Vec<bool>,
    /// Points held fixed (local BA boundary); empty = all free.
    pub fixed_points: Vec<bool>,
    /// Per camera: refine `[f, k1, k2]`.
    pub refine_intrinsics: Vec<[bool; 3]>,
    /// Stop when the relative cost decrease of an accepted step is below this.
    pub function_tolerance: f64,
    /// Weight `w` of the zero-mean prior `½ w (k1² + k2²)` on the refined distortion terms, per
    /// observation (px² per unit²). Keeps `k2` from wandering when the field of view is narrow.
    pub distortion_prior: f64,
}

#[derive(Clone, Debug, Default)]
pub struct BaSummary {
    pub initial_cost: f64,
    pub final_cost: f64,
    pub iterations: usize,
    /// RMS reprojection error (px) after the last iteration.
    pub rms_px: f64,
}

/// Reprojection of world point `x` by pose `(r, t)` and intrinsics `k`; `None` behind the camera.
pub fn project(
    k: &Intrinsics,
    r: &Matrix3<f64>,
    t: &Vector3<f64>,
    x: &Vector3<f64>,
) -> Option<Vector2<f64>> {
    let p = r * x + t;
    if p.z <= 1e-12 {
        return None;
    }
    let (xn, yn) = (p.x / p.z, p.y / p.z);
    let r2 = xn * xn + yn * yn;
    let d = 1.0 + k[3] * r2 + k[4] * r2 * r2;
    Some(Vector2::new(k[0] * d * xn + k[1], k[0] * d * yn + k[2]))
}

/// Remove radial distortion `d = 1 + k1 r² + k2 r⁴` from a pixel: normalised undistorted
/// coordinates, by fixed-point iteration `x ← x_d / d(|x|²)`.
pub fn pixel_to_normalized(k: &Intrinsics, px: &Vector2<f64>) -> Vector2<f64> {
    let xd = Vector2::new((px.x - k[1]) / k[0], (px.y - k[2]) / k[0]);
    let mut x = xd;
    for _ in 0..20 {
        let r2 = x.norm_squared();
        let d = 1.0 + k[3] * r2 + k[4] * r2 * r2;
        if d.abs() < 1e-6 {
            break;
        }
        x = xd / d;
    }
    x
}

/// Residual and Jacobians of one observation: `(r, J_pose (2x6: δω, δt), J_intr (2x3: f, k1, k2),
/// J_point (2x3))`, or `None` when the point is behind the camera.
#[allow(clippy::type_complexity)]
pub fn residual_and_jacobians(
    k: &Intrinsics,
    r: &Matrix3<f64>,
    t: &Vector3<f64>,
    x: &Vector3<f64>,
    obs: &Vector2<f64>,
) -> Option<(
    Vector2<f64>,
    SMatrix<f64, 2, 6>,
    SMatrix<f64, 2, 3>,
    SMatrix<f64, 2, 3>,
)> {
    let rx = r * x;
    let p = rx + t;
    if p.z <= 1e-12 {
        return None;
    }
    let iz = 1.0 / p.z;
    let (xn, yn) = (p.x * iz, p.y * iz);
    let r2 = xn * xn + yn * yn;
    let (f, k1, k2) = (k[0], k[3], k[4]);
    let d = 1.0 + k1 * r2 + k2 * r2 * r2;
    let res = Vector2::new(f * d * xn + k[1] - obs.x, f * d * yn + k[2] - obs.y);
    let dd = k1 + 2.0 * k2 * r2; // ∂d/∂r²
    let dd_dx = 2.0 * xn * dd;
    let dd_dy = 2.0 * yn * dd;
    let dn = nalgebra::Matrix2::new(
        f * (d + xn * dd_dx),
        f * xn * dd_dy,
        f * yn * dd_dx,
        f * (d + yn * dd_dy),
    );
    let dproj = Matrix2x3::new(iz, 0.0, -xn * iz, 0.0, iz, -yn * iz);
    let jp = dn * dproj;
    let mut jpose = SMatrix::<f64, 2, 6>::zeros();
    jpose
        .fixed_view_mut::<2, 3>(0, 0)
        .copy_from(&(jp * -crate::geometry::skew(&rx)));
    jpose.fixed_view_mut::<2, 3>(0, 3).copy_from(&jp);
    let jintr = SMatrix::<f64, 2, 3>::new(
        d * xn,
        f * xn * r2,
        f * xn * r2 * r2,
        d * yn,
        f * yn * r2,
        f * yn * r2 * r2,
    );
    let jpt = jp * r;
    Some((res, jpose, jintr, jpt))
}

/// IRLS weight and cost of the soft-L1 loss for squared residual `s2` (px²) at scale `sigma`.
fn robust(s2: f64, sigma: f64) -> (f64, f64) {
    if sigma <= 0.0 {
        return (1.0, 0.5 * s2);
    }
    let s = s2 / (sigma * sigma);
    let root = (1.0 + s).sqrt();
    (1.0 / root, sigma * sigma * (root - 1.0))
}

/// Per point: the 3x3 block, its gradient, and each observation's camera-block coupling.
struct PointBlock {
    c: Matrix3<f64>,
    g: Vector3<f64>,
    /// `(column indices (usize::MAX = fixed), W = Jcᵀ Jp (9x3))` per observation.
    w: Vec<([usize; 9], SMatrix<f64, 9, 3>)>,
}

/// Run Levenberg-Marquardt bundle adjustment in place.
pub fn bundle_adjust(data: &mut BaData, opts: &BaOptions) -> BaSummary {
    let n_img = data.rotations.len();
    let n_cam = data.intrinsics.len();
    // Camera-block column layout: 6 per free image, then the refined intrinsics.
    let mut pose_col = vec![usize::MAX; n_img];
    let mut nc = 0;
    for (i, col) in pose_col.iter_mut().enumerate() {
        let used = !opts.fixed_images.get(i).copied().unwrap_or(false);
        if used {
            *col = nc;
            nc += 6;
        }
    }
    let mut intr_col = vec![[usize::MAX; 3]; n_cam];
    for (c, cols) in intr_col.iter_mut().enumerate() {
        let flags = opts.refine_intrinsics.get(c).copied().unwrap_or([false; 3]);
        for k in 0..3 {
            if flags[k] {
                cols[k] = nc;
                nc += 1;
            }
        }
    }
    let point_fixed = |j: usize| opts.fixed_points.get(j).copied().unwrap_or(false);
    // Observations grouped by point.
    let n_pts = data.points.len();
    let mut by_point: Vec<Vec<usize>> = vec![Vec::new(); n_pts];
    for (k, o) in data.obs.iter().enumerate() {
        by_point[o.point].push(k);
    }
    let sigma = opts.loss_scale;
    let w_prior = opts.distortion_prior * data.obs.len() as f64;
    let prior_cost = |d: &BaData| -> f64 {
        let mut c = 0.0;
        for (cam, cols) in intr_col.iter().enumerate() {
            for (q, &col) in cols.iter().enumerate().skip(1) {
                if col != usize::MAX {
                    c += 0.5 * w_prior * d.intrinsics[cam][2 + q].powi(2);
                }
            }
        }
        c
    };
    let total_cost = |d: &BaData| -> (f64, f64) {
        let (c, s) = d
            .obs
            .par_iter()
            .map(|o| {
                let c = d.image_camera[o.image];
                match project(
                    &d.intrinsics[c],
                    &d.rotations[o.image],
                    &d.translations[o.image],
                    &d.points[o.point],
                ) {
                    Some(p) => {
                        let s2 = (p - o.xy).norm_squared();
                        (robust(s2, sigma).1, s2)
                    }
                    None => (robust(1e4, sigma).1, 1e4),
                }
            })
            .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        (c + prior_cost(d), s)
    };
    let (mut cost, _) = total_cost(data);
    let mut summary = BaSummary {
        initial_cost: cost,
        ..Default::default()
    };
    let mut lambda = 1e-4;
    let mut iter = 0;
    while iter < opts.max_iterations {
        iter += 1;
        // Linearise, in parallel over chunks of points: per point its 3x3 block C, gradient g_p and
        // couplings W; per chunk its share of the camera block A and gradient g_c.
        let n_chunks = rayon::current_num_threads().max(1) * 2;
        let chunk = by_point.len().div_ceil(n_chunks).max(1);
        let lin: Vec<(Vec<PointBlock>, DMatrix<f64>, DVector<f64>)> = by_point
            .par_chunks(chunk)
            .enumerate()
            .map(|(ci, pts)| {
                let mut a = DMatrix::<f64>::zeros(nc, nc);
                let mut gc = DVector::<f64>::zeros(nc);
                let mut out = Vec::with_capacity(pts.len());
                for (jj, obs_idx) in pts.iter().enumerate() {
                    let j = ci * chunk + jj;
                    let mut blk = PointBlock {
                        c: Matrix3::zeros(),
                        g: Vector3::zeros(),
                        w: Vec::with_capacity(obs_idx.len()),
                    };
                    for &k in obs_idx {
                        let o = &data.obs[k];
                        let cam = data.image_camera[o.image];
                        let Some((res, jpose, jintr, jpt)) = residual_and_jacobians(
                            &data.intrinsics[cam],
                            &data.rotations[o.image],
                            &data.translations[o.image],
                            &data.points[j],
                            &o.xy,
                        ) else {
                            continue;
                        };
                        let (wt, _) = robust(res.norm_squared(), sigma);
                        let mut jc = SMatrix::<f64, 2, 9>::zeros();
                        jc.fixed_view_mut::<2, 6>(0, 0).copy_from(&jpose);
                        jc.fixed_view_mut::<2, 3>(0, 6).copy_from(&jintr);
                        let mut cols = [usize::MAX; 9];
                        if pose_col[o.image] != usize::MAX {
                            for (q, c) in cols.iter_mut().take(6).enumerate() {
                                *c = pose_col[o.image] + q;
                            }
                        }
                        cols[6..9].copy_from_slice(&intr_col[cam]);
                        blk.c += jpt.transpose() * jpt * wt;
                        blk.g += jpt.transpose() * res * wt;
                        let jtj = jc.transpose() * jc * wt;
                        let jtr = jc.transpose() * res * wt;
                        for p in 0..9 {
                            if cols[p] == usize::MAX {
                                continue;
                            }
                            gc[cols[p]] += jtr[p];
                            for q in 0..9 {
                                if cols[q] != usize::MAX {
                                    a[(cols[p], cols[q])] += jtj[(p, q)];
                                }
                            }
                        }
                        // The camera-point coupling Wᵀ = Jcᵀ Jp.
                        blk.w.push((cols, jc.transpose() * jpt * wt));
                    }
                    out.push(blk);
                }
                (out, a, gc)
            })
            .collect();
        let mut a = DMatrix::<f64>::zeros(nc, nc);
        let mut gc = DVector::<f64>::zeros(nc);
        let mut blocks: Vec<PointBlock> = Vec::with_capacity(n_pts);
        for (b, ca, cg) in lin {
            a += ca;
            gc += cg;
            blocks.extend(b);
        }
        // The distortion prior.
        for (cam, cols) in intr_col.iter().enumerate() {
            for (q, &col) in cols.iter().enumerate().skip(1) {
                if col != usize::MAX {
                    a[(col, col)] += w_prior;
                    gc[col] += w_prior * data.intrinsics[cam][2 + q];
                }
            }
        }
        // Try steps with increasing damping until the cost decreases.
        let mut accepted = false;
        let mut converged = false;
        for _attempt in 0..8 {
            let cinvs: Vec<Option<Matrix3<f64>>> = blocks
                .iter()
                .enumerate()
                .map(|(j, blk)| {
                    if point_fixed(j) || blk.w.is_empty() {
                        return None;
                    }
                    let mut c = blk.c;
                    for q in 0..3 {
                        c[(q, q)] += lambda * (blk.c[(q, q)] + 1e-9);
                    }
                    c.try_inverse()
                })
                .collect();
            // Reduced camera system S = A − Σ W C⁻¹ Wᵀ, b = −g_c + Σ W C⁻¹ g_p, in parallel chunks
            // (each observation pair once into X; the sum is X + Xᵀ).
            let (wcw, wcg) = blocks
                .par_chunks(chunk)
                .zip(cinvs.par_chunks(chunk))
                .map(|(blks, cis)| {
                    let mut s = DMatrix::<f64>::zeros(nc, nc);
                    let mut b = DVector::<f64>::zeros(nc);
                    for (blk, cinv) in blks.iter().zip(cis) {
                        let Some(cinv) = cinv else { continue };
                        let wc: Vec<SMatrix<f64, 9, 3>> =
                            blk.w.iter().map(|(_, w)| w * cinv).collect();
                        for (k1, (cols1, _)) in blk.w.iter().enumerate() {
                            let wcg = wc[k1] * blk.g;
                            for p in 0..9 {
                                if cols1[p] != usize::MAX {
                                    b[cols1[p]] += wcg[p];
                                }
                            }
                            // Each observation pair once; the pair's mirror image comes from
                            // the final `X + Xᵀ` (the observation's own block is halved for it).
                            for (cols2, w2) in &blk.w[k1..] {
                                let mut m = wc[k1] * w2.transpose();
                                if std::ptr::eq(cols1, cols2) {
                                    m *= 0.5;
                                }
                                for p in 0..9 {
                                    if cols1[p] == usize::MAX {
                                        continue;
                                    }
                                    for q in 0..9 {
                                        if cols2[q] != usize::MAX {
                                            s[(cols1[p], cols2[q])] += m[(p, q)];
                                        }
                                    }
                                }
                            }
                        }
                    }
                    (s, b)
                })
                .reduce(
                    || (DMatrix::zeros(nc, nc), DVector::zeros(nc)),
                    |x, y| (x.0 + y.0, x.1 + y.1),
                );
            let mut s = &a - (&wcw + wcw.transpose());
            for q in 0..nc {
                s[(q, q)] += lambda * (a[(q, q)] + 1e-9);
            }
            let b = wcg - &gc;
            let dc = if nc == 0 {
                Some(DVector::zeros(0))
            } else {
                cholesky_solve(s.clone(), &b)
            };
            let Some(dc) = dc else {
                lambda *= 10.0;
                continue;
            };
            // Back-substitute the points and apply the step to a copy.
            let mut trial = data.clone();
            for (i, col) in pose_col.iter().enumerate() {
                if *col == usize::MAX {
                    continue;
                }
                let w = Vector3::new(dc[*col], dc[col + 1], dc[col + 2]);
                let rot = Rotation3::new(w).into_inner();
                trial.rotations[i] = rot * data.rotations[i];
                trial.translations[i] =
                    data.translations[i] + Vector3::new(dc[col + 3], dc[col + 4], dc[col + 5]);
            }
            for (c, cols) in intr_col.iter().enumerate() {
                for (q, &col) in cols.iter().enumerate() {
                    if col != usize::MAX {
                        trial.intrinsics[c][[0, 3, 4][q]] += dc[col];
                    }
                }
            }
            trial.points.par_iter_mut().enumerate().for_each(|(j, x)| {
                let Some(cinv) = cinvs[j] else { return };
                let blk = &blocks[j];
                let mut rhs = -blk.g;
                for (cols, w) in &blk.w {
                    for p in 0..9 {
                        if cols[p] != usize::MAX {
                            rhs -= w.row(p).transpose() * dc[cols[p]];
                        }
                    }
                }
                *x += cinv * rhs;
            });
            let (new_cost, _) = total_cost(&trial);
            if new_cost < cost {
                let rel = (cost - new_cost) / cost.max(1e-300);
                *data = trial;
                cost = new_cost;
                lambda = (lambda * 0.2).max(1e-10);
                accepted = true;
                converged = rel < opts.function_tolerance;
                break;
            }
            lambda *= 10.0;
        }
        if !accepted || converged {
            break;
        }
    }
    let (_, sq) = total_cost(data);
    summary.final_cost = cost;
    summary.iterations = iter;
    summary.rms_px = (sq / data.obs.len().max(1) as f64).sqrt();
    summary
}

/// Columns per block of [`cholesky_solve`].
const CHOL_BLOCK: usize = 96;

/// Solve `S x = b` for a symmetric positive definite `S` by a right-looking blocked Cholesky
/// factorisation `S = L Lᵀ` (Golub & Van Loan, *Matrix Computations*, 4th ed., Alg. 4.2.4 with
/// blocks): per block column, the unblocked factor of the diagonal block, a triangular solve of the
/// panel below it, and the trailing update `S₂₂ ← S₂₂ − L₂₁ L₂₁ᵀ` as one `dgemm`
/// (`matrixmultiply`), which carries almost all of the `n³/3` flops. Then forward and back
/// substitution. `None` when a pivot is not positive (not positive definite), like nalgebra's
/// `cholesky`.
pub fn cholesky_solve(mut s: DMatrix<f64>, b: &DVector<f64>) -> Option<DVector<f64>> {
    let n = s.nrows();
    assert_eq!(s.ncols(), n);
    assert_eq!(b.len(), n);
    let mut k = 0;
    while k < n {
        let kb = CHOL_BLOCK.min(n - k);
        // Unblocked Cholesky of the diagonal block (lower triangle, column by column).
        for j in k..k + kb {
            let mut d = s[(j, j)];
            for p in k..j {
                d -= s[(j, p)] * s[(j, p)];
            }
            if d <= 0.0 || !d.is_finite() {
                return None;
            }
            let d = d.sqrt();
            s[(j, j)] = d;
            for i in j + 1..k + kb {
                let mut v = s[(i, j)];
                for p in k..j {
                    v -= s[(i, p)] * s[(j, p)];
                }
                s[(i, j)] = v / d;
            }
        }
        let rest = n - k - kb;
        if rest > 0 {
            // Panel: rows below the block, L₂₁ = S₂₁ L₁₁⁻ᵀ (per row, forward substitution).
            for j in k..k + kb {
                let d = s[(j, j)];
                for p in k..j {
                    let l = s[(j, p)];
                    for i in k + kb..n {
                        let v = s[(i, p)];
                        s[(i, j)] -= v * l;
                    }
                }
                for i in k + kb..n {
                    s[(i, j)] /= d;
                }
            }
            // Trailing update S₂₂ −= L₂₁ L₂₁ᵀ. Column-major storage: (i, j) at i + j n.
            let ptr = s.as_mut_ptr();
            // SAFETY: L₂₁ occupies columns k..k+kb and S₂₂ columns k+kb..n of the same n x n
            // buffer, so the operands do not overlap; the strides describe in-bounds views.
            unsafe {
                let l21 = ptr.add(k + kb + k * n);
                let s22 = ptr.add(k + kb + (k + kb) * n);
                matrixmultiply::dgemm(
                    rest, kb, rest, -1.0, l21, 1, n as isize, l21, n as isize, 1, 1.0, s22, 1,
                    n as isize,
                );
            }
        }
        k += kb;
    }
    // L y = b, then Lᵀ x = y.
    let mut x = b.clone();
    for j in 0..n {
        let v = x[j] / s[(j, j)];
        x[j] = v;
        for i in j + 1..n {
            x[i] -= s[(i, j)] * v;
        }
    }
    for j in (0..n).rev() {
        let mut v = x[j];
        for i in j + 1..n {
            v -= s[(i, j)] * x[i];
        }
        x[j] = v / s[(j, j)];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocked factorisation solves like nalgebra's Cholesky on sizes around and across the
    /// block size, and refuses an indefinite matrix.
    #[test]
    fn blocked_cholesky_matches_nalgebra() {
        for n in [1usize, 5, 95, 96, 97, 250] {
            let a = DMatrix::<f64>::from_fn(n, n, |i, j| {
                (((i * 31 + j * 17) % 23) as f64 - 11.0) / 7.0
            });
            let s = &a * a.transpose() + DMatrix::<f64>::identity(n, n) * 0.5;
            let b = DVector::<f64>::from_fn(n, |i, _| 1.0 + (i as f64 * 0.37).sin());
            let want = s.clone().cholesky().unwrap().solve(&b);
            let got = cholesky_solve(s.clone(), &b).unwrap();
            let err = (&got - &want).norm() / want.norm();
            assert!(err < 1e-9, "n {n}: relative error {err}");
        }
        let mut bad = DMatrix::<f64>::identity(200, 200);
        bad[(150, 150)] = -1.0;
        assert!(cholesky_solve(bad, &DVector::zeros(200)).is_none());
    }
    use crate::geometry::{Rng, testutil::random_rotation};

    /// Finite differences of the analytic Jacobians.
    #[test]
    fn jacobians_match_finite_differences() {
        let k = [800.0, 320.0, 240.0, -0.1, 0.05];
        let mut rng = Rng::new(11);
        let r = random_rotation(&mut rng, 0.5);
        let t = Vector3::new(0.1, -0.2, 0.3);
        let x = Vector3::new(0.5, -0.4, 5.0);
        let o = Vector2::new(300.0, 200.0);
        let (r0, jpose, jintr, jpt) = residual_and_jacobians(&k, &r, &t, &x, &o).unwrap();
        let h = 1e-6;
        for q in 0..6 {
            let mut d = nalgebra::Vector6::zeros();
            d[q] = h;
            let rr = Rotation3::new(Vector3::new(d[0], d[1], d[2])).into_inner() * r;
            let tt = t + Vector3::new(d[3], d[4], d[5]);
            let r1 = residual_and_jacobians(&k, &rr, &tt, &x, &o).unwrap().0;
            let fd = (r1 - r0) / h;
            assert!(
                (fd - jpose.column(q)).norm() < 1e-3 * (1.0 + fd.norm()),
                "pose {q}: {fd} vs {}",
                jpose.column(q)
            );
        }
        for (q, slot) in [0usize, 3, 4].iter().enumerate() {
            let mut kk = k;
            kk[*slot] += h;
            let fd = (residual_and_jacobians(&kk, &r, &t, &x, &o).unwrap().0 - r0) / h;
            assert!(
                (fd - jintr.column(q)).norm() < 1e-3 * (1.0 + fd.norm()),
                "intr {q}"
            );
        }
        for q in 0..3 {
            let mut xx = x;
            xx[q] += h;
            let fd = (residual_and_jacobians(&k, &r, &t, &xx, &o).unwrap().0 - r0) / h;
            assert!(
                (fd - jpt.column(q)).norm() < 1e-3 * (1.0 + fd.norm()),
                "point {q}"
            );
        }
        // Undistortion inverts the distortion.
        let px = project(&k, &r, &t, &x).unwrap();
        let n = pixel_to_normalized(&k, &px);
        let p = r * x + t;
        assert!((n - Vector2::new(p.x / p.z, p.y / p.z)).norm() < 1e-10);
    }

    /// A ring of cameras around random points: perturbed poses, points and intrinsics converge back
    /// to sub-pixel error (0.5 px noise) and the focal to within 0.5 %.
    #[test]
    fn converges_from_perturbed_start() {
        let mut rng = Rng::new(12);
        let truth_k = [1000.0, 320.0, 240.0, -0.05, 0.01];
        let n_img = 8;
        let mut data = BaData {
            intrinsics: vec![truth_k],
            image_camera: vec![0; n_img],
            ..Default::default()
        };
        for i in 0..n_img {
            let a = i as f64 * 0.15;
            let c = Vector3::new(6.0 * a.sin(), 0.3 * rng.normal(), -6.0 * a.cos());
            let pose = flythrough_core::Pose::look_at(c, Vector3::zeros(), -Vector3::y());
            data.rotations.push(pose.r());
            data.translations.push(pose.translation);
        }
        for j in 0..300 {
            let x = Vector3::new(rng.normal(), rng.normal(), rng.normal());
            data.points.push(x);
            for i in 0..n_img {
                if let Some(p) = project(&truth_k, &data.rotations[i], &data.translations[i], &x) {
                    let noise = Vector2::new(rng.normal(), rng.normal()) * 0.5;
                    data.obs.push(Obs {
                        image: i,
                        point: j,
                        xy: p + noise,
                    });
                }
            }
        }
        let mut pert = data.clone();
        pert.intrinsics[0] = [1080.0, 320.0, 240.0, 0.0, 0.0];
        for i in 2..n_img {
            pert.rotations[i] = random_rotation(&mut rng, 0.02) * pert.rotations[i];
            pert.translations[i] += Vector3::new(rng.normal(), rng.normal(), rng.normal()) * 0.05;
        }
        for x in pert.points.iter_mut() {
            *x += Vector3::new(rng.normal(), rng.normal(), rng.normal()) * 0.05;
        }
        let mut fixed = vec![false; n_img];
        fixed[0] = true;
        fixed[1] = true;
        let s = bundle_adjust(
            &mut pert,
            &BaOptions {
                max_iterations: 50,
                loss_scale: 1.0,
                fixed_images: fixed,
                fixed_points: vec![],
                refine_intrinsics: vec![[true, true, true]],
                function_tolerance: 1e-9,
                distortion_prior: 0.0,
            },
        );
        assert!(s.initial_cost > 100.0 * s.final_cost, "{s:?}");
        assert!(s.rms_px < 0.75, "{s:?}");
        assert!(
            (pert.intrinsics[0][0] / 1000.0 - 1.0).abs() < 0.005,
            "{:?}",
            pert.intrinsics[0]
        );
    }
}
