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

use nalgebra::{Matrix2x3, Matrix3, Rotation3, SMatrix, Vector2, Vector3};
use rayon::prelude::*;
mod schur;

pub use schur::cholesky_solve;
use schur::{BlockSym, Layout, Linearized, NONE, ObsIndex, SparseChol, camera_block, point_blocks};

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
    /// Factorisation of the reduced camera system.
    pub solver: SchurSolver,
}

#[derive(Clone, Debug, Default)]
pub struct BaSummary {
    pub initial_cost: f64,
    pub final_cost: f64,
    pub iterations: usize,
    /// RMS reprojection error (px) after the last iteration.
    pub rms_px: f64,
    /// The factorisation used ([`SchurSolver::Dense`] or [`SchurSolver::Sparse`]).
    pub solver: SchurSolver,
    /// Camera columns of the reduced system, and its stored values (upper block triangle).
    pub columns: usize,
    pub nonzeros: usize,
    pub seconds: BaSeconds,
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

/// How the reduced camera system is factorised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SchurSolver {
    /// Dense for small or dense systems (up to [`DENSE_MAX_COLUMNS`] camera columns, or at least
    /// [`DENSE_MIN_FILL`] of the upper triangle stored), sparse otherwise.
    #[default]
    Auto,
    /// Blocked dense Cholesky ([`cholesky_solve`]): `O(n³)` time and `O(n²)` memory in the number
    /// `n` of camera columns; the fastest for a few hundred columns.
    Dense,
    /// Sparse Cholesky (`faer`: AMD fill-reducing ordering, supernodal or simplicial numeric
    /// factorisation) of the block-sparse system: time and memory follow the camera covisibility
    /// graph (banded plus loop closures for a walk), not `n²`.
    Sparse,
}

/// Camera columns (6 per free image) up to which [`SchurSolver::Auto`] factorises densely (local
/// BA; both take well under a millisecond there, and the dense path has no ordering to compute).
pub const DENSE_MAX_COLUMNS: usize = 150;

/// Fraction of the upper triangle stored from which [`SchurSolver::Auto`] factorises densely.
/// Measured (2 cores): where every photo sees every point (a fully dense system) the blocked dense
/// Cholesky is 10-20 % faster than `faer`'s sparse one at 360-3000 columns; at half fill (the
/// 240-photo synthetic dense walk's last global BA, 1275 columns) the sparse one is several times
/// faster (AMD keeps the fill-in low), and on the banded walk of [`synthetic_walk`] (14 % stored at
/// 240 photos) 6x at 240 photos and 47x at 1000.
pub const DENSE_MIN_FILL: f64 = 0.9;

/// Seconds spent per phase of [`bundle_adjust`], summed over its iterations.
#[derive(Clone, Copy, Debug, Default)]
pub struct BaSeconds {
    /// Jacobians, the point blocks `C`, `W` and the camera block `A`.
    pub linearize: f64,
    /// The reduced camera system `S = A − W C⁻¹ Wᵀ` (every damping attempt).
    pub schur: f64,
    /// Factorisation and solution of `S` (every damping attempt).
    pub solve: f64,
    /// Point back-substitution and the cost of each trial step.
    pub step: f64,
}

/// Run Levenberg-Marquardt bundle adjustment in place.
pub fn bundle_adjust(data: &mut BaData, opts: &BaOptions) -> BaSummary {
    let n_img = data.rotations.len();
    let n_cam = data.intrinsics.len();
    let layout = Layout::new(n_img, n_cam, opts);
    let nc = layout.nc;
    let sigma = opts.loss_scale;
    let w_prior = opts.distortion_prior * data.obs.len() as f64;
    let prior_cost = |d: &BaData| -> f64 {
        let mut c = 0.0;
        for (cam, mask) in layout.intr_mask.iter().enumerate() {
            for (q, &refined) in mask.iter().enumerate().skip(1) {
                if refined {
                    c += 0.5 * w_prior * d.intrinsics[cam][2 + q].powi(2);
                }
            }
        }
        c
    };
    let total_cost = |d: &BaData, obs: &[Obs]| -> (f64, f64) {
        let (c, s) = obs
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
    let (mut cost, _) = total_cost(data, &data.obs);
    let clock = std::time::Instant::now;
    let t = clock();
    let idx = ObsIndex::new(data, &layout);
    let mut s = BlockSym::pattern(data, &layout, &idx);
    let mut a = s.camera_pattern(&layout);
    let fill = s.nonzeros() as f64 / (nc * (nc + 1) / 2).max(1) as f64;
    let solver = match opts.solver {
        SchurSolver::Auto if nc <= DENSE_MAX_COLUMNS || fill >= DENSE_MIN_FILL => {
            SchurSolver::Dense
        }
        SchurSolver::Auto => SchurSolver::Sparse,
        s => s,
    };
    let mut summary = BaSummary {
        initial_cost: cost,
        solver,
        columns: nc,
        nonzeros: s.nonzeros(),
        ..Default::default()
    };
    let mut w = vec![SMatrix::<f64, 9, 3>::zeros(); data.obs.len()];
    let mut sparse: Option<SparseChol> = None;
    summary.seconds.linearize += t.elapsed().as_secs_f64();
    let mut lambda = 1e-4;
    let mut iter = 0;
    while iter < opts.max_iterations {
        iter += 1;
        let t = clock();
        let gc = camera_block(data, &layout, &idx, sigma, w_prior, &mut a);
        let pts = point_blocks(data, &layout, &idx, sigma, &mut w);
        summary.seconds.linearize += t.elapsed().as_secs_f64();
        // Try steps with increasing damping until the cost decreases.
        let mut accepted = false;
        let mut converged = false;
        for _attempt in 0..8 {
            let lin = Linearized {
                data,
                layout: &layout,
                idx: &idx,
                w: &w,
                pts: &pts,
                a: &a,
                gc: &gc,
            };
            let Some((dc, dx)) = lin.damped_step(
                lambda,
                &opts.fixed_points,
                solver,
                &mut sparse,
                &mut s,
                &mut summary.seconds,
            ) else {
                lambda *= 10.0;
                continue;
            };
            let t = clock();
            // Apply the step to a copy of the variables.
            let mut trial = BaData {
                intrinsics: data.intrinsics.clone(),
                image_camera: data.image_camera.clone(),
                rotations: data.rotations.clone(),
                translations: data.translations.clone(),
                points: data.points.clone(),
                obs: Vec::new(),
            };
            for (i, &blk) in layout.pose_blk.iter().enumerate() {
                if blk == NONE {
                    continue;
                }
                let col = layout.off[blk];
                let w = Vector3::new(dc[col], dc[col + 1], dc[col + 2]);
                let rot = Rotation3::new(w).into_inner();
                trial.rotations[i] = rot * data.rotations[i];
                trial.translations[i] =
                    data.translations[i] + Vector3::new(dc[col + 3], dc[col + 4], dc[col + 5]);
            }
            for (c, &blk) in layout.intr_blk.iter().enumerate() {
                if blk == NONE {
                    continue;
                }
                for (q, slot) in [0usize, 3, 4].into_iter().enumerate() {
                    if layout.intr_mask[c][q] {
                        trial.intrinsics[c][slot] += dc[layout.off[blk] + q];
                    }
                }
            }
            for (x, d) in trial.points.iter_mut().zip(&dx) {
                *x += d;
            }
            let (new_cost, _) = total_cost(&trial, &data.obs);
            summary.seconds.step += t.elapsed().as_secs_f64();
            if new_cost < cost {
                let rel = (cost - new_cost) / cost.max(1e-300);
                trial.obs = std::mem::take(&mut data.obs);
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
    let (_, sq) = total_cost(data, &data.obs);
    summary.final_cost = cost;
    summary.iterations = iter;
    summary.rms_px = (sq / data.obs.len().max(1) as f64).sqrt();
    summary
}

/// A synthetic bundle adjustment problem shaped like a long walk, for tests and the scaling
/// benchmark (`examples/ba_scaling.rs`): `n` cameras 0.1 m apart on a closed loop (radius
/// `0.1 n / 2π`), each looking outwards (yaw jitter ±5°) at a wall 1-2 m away (one `RADIAL`
/// camera, f = 500 px, 640x480, k1 = −0.02), with 100 new wall points in front of each camera. A
/// point is observed (0.5 px noise; 2 % of observations are 20 px outliers) by each camera it
/// projects into with probability 0.7, so tracks run over about 8 neighbouring cameras and the loop
/// closes (the first and last cameras share points). Returns the truth and a start with poses off
/// by ~0.2° and ~1 cm (except the first two, which can fix the gauge), points by ~2 cm and the
/// focal by +2 %, distortion zero.
pub fn synthetic_walk(n: usize, seed: u64) -> (BaData, BaData) {
    use crate::geometry::Rng;
    let mut rng = Rng::new(seed);
    let k = [500.0, 320.0, 240.0, -0.02, 0.001];
    let radius = 0.1 * n as f64 / std::f64::consts::TAU;
    let mut truth = BaData {
        intrinsics: vec![k],
        image_camera: vec![0; n],
        ..Default::default()
    };
    let forward_of = |th: f64| Vector3::new(th.cos(), th.sin(), 0.0);
    for i in 0..n {
        let th = std::f64::consts::TAU * i as f64 / n as f64;
        let c = forward_of(th) * radius;
        let f = forward_of(th + (rng.uniform() - 0.5) * 10f64.to_radians());
        let down = Vector3::new(0.0, 0.0, -1.0);
        let right = down.cross(&f);
        let r = Matrix3::from_rows(&[right.transpose(), down.transpose(), f.transpose()]);
        truth.rotations.push(r);
        truth.translations.push(-(r * c));
    }
    // Wall points in front of each camera.
    for i in 0..n {
        let th = std::f64::consts::TAU * i as f64 / n as f64;
        for _ in 0..100 {
            let depth = 1.0 + rng.uniform();
            let lateral = (rng.uniform() - 0.5) * 1.2 * depth;
            let phi = th + lateral / (radius + depth);
            let z = (rng.uniform() - 0.5) * 0.9 * depth;
            truth
                .points
                .push(forward_of(phi) * (radius + depth) + Vector3::new(0.0, 0.0, z));
        }
    }
    // Observations by the cameras near each point's origin (the wall curves away elsewhere).
    // Distinct cameras: 2 span + 1 <= n.
    let span = (n.saturating_sub(1) / 2).min(40) as isize;
    for j in 0..truth.points.len() {
        let home = (j / 100) as isize;
        let x = truth.points[j];
        for di in -span..=span {
            let i = (home + di).rem_euclid(n as isize) as usize;
            let Some(p) = project(&k, &truth.rotations[i], &truth.translations[i], &x) else {
                continue;
            };
            let pc = truth.rotations[i] * x + truth.translations[i];
            if pc.z < 0.3 || p.x < 0.0 || p.y < 0.0 || p.x > 640.0 || p.y > 480.0 {
                continue;
            }
            if rng.uniform() > 0.7 {
                continue;
            }
            let noise = if rng.uniform() < 0.02 { 20.0 } else { 0.5 };
            truth.obs.push(Obs {
                image: i,
                point: j,
                xy: p + Vector2::new(rng.normal(), rng.normal()) * noise,
            });
        }
    }
    let mut start = truth.clone();
    start.intrinsics[0] = [510.0, 320.0, 240.0, 0.0, 0.0];
    for i in 2..n {
        let w = Vector3::new(rng.normal(), rng.normal(), rng.normal()) * 0.2f64.to_radians()
            / 3f64.sqrt();
        start.rotations[i] = Rotation3::new(w).into_inner() * start.rotations[i];
        start.translations[i] += Vector3::new(rng.normal(), rng.normal(), rng.normal()) * 0.01;
    }
    for x in start.points.iter_mut() {
        *x += Vector3::new(rng.normal(), rng.normal(), rng.normal()) * 0.02;
    }
    (truth, start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{DMatrix, DVector};

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

    /// The Levenberg-Marquardt step of the Schur path (block-sparse assembly, then `solver`).
    fn schur_step(
        data: &BaData,
        opts: &BaOptions,
        lambda: f64,
        solver: SchurSolver,
    ) -> (DVector<f64>, Vec<Vector3<f64>>, Layout) {
        let layout = Layout::new(data.rotations.len(), data.intrinsics.len(), opts);
        let idx = ObsIndex::new(data, &layout);
        let mut s = BlockSym::pattern(data, &layout, &idx);
        let mut a = s.camera_pattern(&layout);
        let w_prior = opts.distortion_prior * data.obs.len() as f64;
        let gc = camera_block(data, &layout, &idx, opts.loss_scale, w_prior, &mut a);
        let mut w = vec![SMatrix::<f64, 9, 3>::zeros(); data.obs.len()];
        let pts = point_blocks(data, &layout, &idx, opts.loss_scale, &mut w);
        let lin = Linearized {
            data,
            layout: &layout,
            idx: &idx,
            w: &w,
            pts: &pts,
            a: &a,
            gc: &gc,
        };
        let (dc, dx) = lin
            .damped_step(
                lambda,
                &opts.fixed_points,
                solver,
                &mut None,
                &mut s,
                &mut BaSeconds::default(),
            )
            .expect("positive definite");
        (dc, dx, layout)
    }

    /// A small problem with every case of the layout: two cameras (one refining f, k1, k2, the
    /// other only f), two fixed images, a fixed point, 20 px outliers under the soft-L1 loss, the
    /// distortion prior, points seen by 2-9 photos.
    fn mixed_problem() -> (BaData, BaOptions) {
        let (_, full) = synthetic_walk(16, 3);
        let mut d = BaData {
            obs: Vec::new(),
            points: Vec::new(),
            ..full.clone()
        };
        d.intrinsics.push([480.0, 320.0, 240.0, 0.01, 0.0]);
        for c in d.image_camera.iter_mut().skip(8) {
            *c = 1;
        }
        for j in 0..full.points.len() {
            let obs: Vec<Obs> = full.obs.iter().filter(|o| o.point == j).copied().collect();
            if obs.len() < 2 || j % 4 != 0 {
                continue;
            }
            let jj = d.points.len();
            d.points.push(full.points[j]);
            d.obs
                .extend(obs.into_iter().map(|o| Obs { point: jj, ..o }));
        }
        let mut fixed_images = vec![false; 16];
        fixed_images[0] = true;
        fixed_images[9] = true;
        let mut fixed_points = vec![false; d.points.len()];
        fixed_points[5] = true;
        let opts = BaOptions {
            max_iterations: 30,
            loss_scale: 1.0,
            fixed_images,
            fixed_points,
            refine_intrinsics: vec![[true, true, true], [true, false, false]],
            function_tolerance: 1e-12,
            distortion_prior: 0.01,
            solver: SchurSolver::Auto,
        };
        (d, opts)
    }

    /// The Schur path (block-sparse reduced camera system, dense and sparse Cholesky, point
    /// back-substitution) gives the step of the full damped normal equations `(H + λ diag H) δ =
    /// −g`, assembled densely over every camera and point column, to 1e-9.
    #[test]
    #[allow(clippy::needless_range_loop)]
    fn schur_step_equals_the_full_normal_equations() {
        let (d, opts) = mixed_problem();
        let lambda = 1e-3;
        // Full columns: free poses, refined intrinsics, free points.
        let mut pose_col = [NONE; 16];
        let mut n = 0;
        for i in 0..16 {
            if !opts.fixed_images[i] {
                pose_col[i] = n;
                n += 6;
            }
        }
        let mut intr_col = [[NONE; 3]; 2];
        for c in 0..2 {
            for q in 0..3 {
                if opts.refine_intrinsics[c][q] {
                    intr_col[c][q] = n;
                    n += 1;
                }
            }
        }
        let mut pt_col = vec![NONE; d.points.len()];
        for j in 0..d.points.len() {
            if !opts.fixed_points[j] {
                pt_col[j] = n;
                n += 3;
            }
        }
        let mut h = DMatrix::<f64>::zeros(n, n);
        let mut g = DVector::<f64>::zeros(n);
        for o in &d.obs {
            let cam = d.image_camera[o.image];
            let (res, jpose, jintr, jpt) = residual_and_jacobians(
                &d.intrinsics[cam],
                &d.rotations[o.image],
                &d.translations[o.image],
                &d.points[o.point],
                &o.xy,
            )
            .unwrap();
            let (wt, _) = robust(res.norm_squared(), opts.loss_scale);
            let mut entries: Vec<(usize, Vector2<f64>)> = Vec::new();
            if pose_col[o.image] != NONE {
                for q in 0..6 {
                    entries.push((pose_col[o.image] + q, jpose.column(q).into_owned()));
                }
            }
            for q in 0..3 {
                if intr_col[cam][q] != NONE {
                    entries.push((intr_col[cam][q], jintr.column(q).into_owned()));
                }
            }
            if pt_col[o.point] != NONE {
                for q in 0..3 {
                    entries.push((pt_col[o.point] + q, jpt.column(q).into_owned()));
                }
            }
            for &(c1, j1) in &entries {
                g[c1] += wt * j1.dot(&res);
                for &(c2, j2) in &entries {
                    h[(c1, c2)] += wt * j1.dot(&j2);
                }
            }
        }
        let w_prior = opts.distortion_prior * d.obs.len() as f64;
        for q in 1..3 {
            h[(intr_col[0][q], intr_col[0][q])] += w_prior;
            g[intr_col[0][q]] += w_prior * d.intrinsics[0][2 + q];
        }
        for q in 0..n {
            h[(q, q)] += lambda * (h[(q, q)] + 1e-9);
        }
        let want = h.cholesky().unwrap().solve(&-&g);
        for solver in [SchurSolver::Dense, SchurSolver::Sparse] {
            let (dc, dx, layout) = schur_step(&d, &opts, lambda, solver);
            let mut got = DVector::<f64>::zeros(n);
            for i in 0..16 {
                if pose_col[i] != NONE {
                    let off = layout.off[layout.pose_blk[i]];
                    got.rows_mut(pose_col[i], 6).copy_from(&dc.rows(off, 6));
                }
            }
            for c in 0..2 {
                for q in 0..3 {
                    let off = layout.off[layout.intr_blk[c]] + q;
                    if intr_col[c][q] != NONE {
                        got[intr_col[c][q]] = dc[off];
                    } else {
                        assert_eq!(dc[off], 0.0, "a pinned intrinsic moved");
                    }
                }
            }
            for (j, &c) in pt_col.iter().enumerate() {
                if c != NONE {
                    got.rows_mut(c, 3).copy_from(&dx[j]);
                } else {
                    assert_eq!(dx[j], Vector3::zeros(), "the fixed point moved");
                }
            }
            let err = (&got - &want).norm() / want.norm();
            assert!(err < 1e-9, "{solver:?}: relative difference {err}");
        }
    }

    /// Whole adjustments with the dense and the sparse factorisation reach the same solution (the
    /// same LM path: equal steps to rounding), and it is the truth to within the noise.
    #[test]
    fn dense_and_sparse_adjustments_agree() {
        let (truth, start) = synthetic_walk(40, 9);
        let run = |solver| {
            let mut d = start.clone();
            // Two fixed photos fix the gauge, scale included (one would leave the scale to the
            // damping, where rounding differences drift).
            let mut fixed = vec![false; 40];
            fixed[0] = true;
            fixed[1] = true;
            let s = bundle_adjust(
                &mut d,
                &BaOptions {
                    max_iterations: 30,
                    loss_scale: 1.0,
                    fixed_images: fixed,
                    fixed_points: vec![],
                    refine_intrinsics: vec![[true, true, true]],
                    function_tolerance: 1e-10,
                    distortion_prior: 0.0,
                    solver,
                },
            );
            (d, s)
        };
        let (dd, sd) = run(SchurSolver::Dense);
        let (ds, ss) = run(SchurSolver::Sparse);
        assert_eq!(sd.solver, SchurSolver::Dense);
        assert_eq!(ss.solver, SchurSolver::Sparse);
        assert_eq!(sd.iterations, ss.iterations);
        let mut worst = 0.0f64;
        for i in 0..40 {
            let cd = -dd.rotations[i].transpose() * dd.translations[i];
            let cs = -ds.rotations[i].transpose() * ds.translations[i];
            worst = worst.max((cd - cs).norm());
        }
        println!(
            "dense vs sparse: {} iterations, centres within {worst:e} m, focal {:.3}, rms {:.3} px",
            sd.iterations, dd.intrinsics[0][0], sd.rms_px
        );
        assert!(worst < 1e-7, "camera centres differ by {worst} m");
        assert!((sd.final_cost / ss.final_cost - 1.0).abs() < 1e-9);
        // Converged near the truth: the 0.5 px noise limits it.
        let f = dd.intrinsics[0][0];
        assert!((f / 500.0 - 1.0).abs() < 0.005, "focal {f}");
        let c_err = (0..40)
            .map(|i| {
                let c = -dd.rotations[i].transpose() * dd.translations[i];
                let t = -truth.rotations[i].transpose() * truth.translations[i];
                (c - t).norm()
            })
            .fold(0.0, f64::max);
        println!("largest centre error {c_err:.4} m");
        assert!(c_err < 0.01, "centre error {c_err} m");
    }

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
                solver: SchurSolver::Auto,
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
