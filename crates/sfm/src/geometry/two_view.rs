//! Two-view geometric verification (COLMAP `TwoViewGeometry` style, simplified): the fundamental
//! matrix in LO-MSAC decides the inlier matches, a homography in LO-MSAC measures how planar or
//! rotation-only the pair is, and focal lengths can be self-calibrated from the set of verified
//! fundamental matrices.

use super::ransac::{RansacOptions, lo_msac};
use super::{essential, fundamental, homography, sampson_sq};
use nalgebra::{Matrix3, Vector2};

#[derive(Clone, Debug)]
pub struct TwoViewOptions {
    /// Epipolar (Sampson) and homography transfer threshold in pixels.
    pub max_error_px: f64,
    pub min_inliers: usize,
    pub min_inlier_ratio: f64,
    pub seed: u64,
}

impl Default for TwoViewOptions {
    fn default() -> Self {
        TwoViewOptions {
            max_error_px: 4.0,
            min_inliers: 15,
            min_inlier_ratio: 0.25,
            seed: 7,
        }
    }
}

/// Which model explains a pair (COLMAP `TwoViewGeometry::ConfigurationType`, simplified).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TwoViewConfig {
    /// The essential matrix (known focal lengths) explains ≥ 95 % of the F inliers.
    Calibrated,
    /// Only the fundamental matrix explains the matches (or no focal prior was given).
    Uncalibrated,
}

/// The verified geometry of one pair.
#[derive(Clone, Debug)]
pub struct TwoViewGeometry {
    pub config: TwoViewConfig,
    /// Fundamental matrix in pixels, `x2ᵀ F x1 = 0`.
    pub f: Matrix3<f64>,
    /// Indices (into the input matches) of the epipolar inliers.
    pub inliers: Vec<usize>,
    /// Number of matches a homography explains (planar scene or pure rotation when close to
    /// `inliers.len()`).
    pub num_h_inliers: usize,
}

/// Normalised coordinates of the matches and the mean focal length (px), for pairs whose cameras
/// have a focal prior.
pub struct Calibration<'a> {
    pub n1: &'a [Vector2<f64>],
    pub n2: &'a [Vector2<f64>],
    pub focal: f64,
}

/// Verify one pair from matched pixel coordinates. `None` when fewer than `min_inliers` matches
/// (or less than `min_inlier_ratio` of them) fit one fundamental matrix.
pub fn verify_pair(
    x1: &[Vector2<f64>],
    x2: &[Vector2<f64>],
    opts: &TwoViewOptions,
) -> Option<TwoViewGeometry> {
    verify_pair_calibrated(x1, x2, None, opts)
}

/// [`verify_pair`], plus the essential matrix by the five-point solver in LO-MSAC when focal
/// priors are known: if E explains at least 95 % of the F inliers the pair is
/// [`TwoViewConfig::Calibrated`] and E's inliers are kept (COLMAP's rule), otherwise F's.
pub fn verify_pair_calibrated(
    x1: &[Vector2<f64>],
    x2: &[Vector2<f64>],
    calib: Option<Calibration>,
    opts: &TwoViewOptions,
) -> Option<TwoViewGeometry> {
    let n = x1.len();
    if n < opts.min_inliers.max(8) {
        return None;
    }
    let ropts = RansacOptions {
        max_error: opts.max_error_px,
        seed: opts.seed,
        max_trials: 2000,
        ..Default::default()
    };
    let gather = |idx: &[usize]| -> (Vec<Vector2<f64>>, Vec<Vector2<f64>>) {
        (
            idx.iter().map(|&i| x1[i]).collect(),
            idx.iter().map(|&i| x2[i]).collect(),
        )
    };
    let fres = lo_msac(
        n,
        7,
        &ropts,
        |s| {
            let (a, b) = gather(s);
            fundamental::seven_point(&a, &b)
        },
        |f, i| sampson_sq(f, &x1[i], &x2[i]),
        |_, idx| {
            let (a, b) = gather(idx);
            fundamental::eight_point(&a, &b)
        },
    )?;
    if fres.num_inliers < opts.min_inliers
        || (fres.num_inliers as f64) < opts.min_inlier_ratio * n as f64
    {
        return None;
    }
    let hres = lo_msac(
        n,
        4,
        &RansacOptions {
            max_trials: 1000,
            ..ropts
        },
        |s| {
            let (a, b) = gather(s);
            homography::dlt(&a, &b).into_iter().collect()
        },
        |h, i| homography::transfer_sq(h, &x1[i], &x2[i]),
        |_, idx| {
            let (a, b) = gather(idx);
            homography::dlt(&a, &b)
        },
    );
    let mut inliers: Vec<usize> = (0..n).filter(|&i| fres.inliers[i]).collect();
    let mut config = TwoViewConfig::Uncalibrated;
    if let Some(c) = calib {
        let eres = lo_msac(
            n,
            5,
            &RansacOptions {
                max_error: opts.max_error_px / c.focal,
                max_trials: 1000,
                ..ropts
            },
            |s| {
                let a: Vec<_> = s.iter().map(|&i| c.n1[i]).collect();
                let b: Vec<_> = s.iter().map(|&i| c.n2[i]).collect();
                essential::five_point(&a, &b)
            },
            |e, i| sampson_sq(e, &c.n1[i], &c.n2[i]),
            |_, idx| {
                let a: Vec<_> = idx.iter().map(|&i| c.n1[i]).collect();
                let b: Vec<_> = idx.iter().map(|&i| c.n2[i]).collect();
                essential::eight_point_essential(&a, &b)
            },
        );
        if let Some(e) = eres
            && e.num_inliers as f64 >= 0.95 * fres.num_inliers as f64
        {
            config = TwoViewConfig::Calibrated;
            inliers = (0..n).filter(|&i| e.inliers[i]).collect();
        }
    }
    Some(TwoViewGeometry {
        config,
        f: fres.model,
        inliers,
        num_h_inliers: hres.map_or(0, |h| h.num_inliers),
    })
}

/// How far `E = K₂ᵀ F K₁` is from an essential matrix for focal `f` (both cameras), principal points
/// `c1`, `c2`: `(σ₁ − σ₂) / (σ₁ + σ₂)` of its two largest singular values (Mendonça & Cipolla 1999's
/// self-calibration criterion). 0 for the true focal with noise-free data.
pub fn essential_defect(f: &Matrix3<f64>, focal: f64, c1: (f64, f64), c2: (f64, f64)) -> f64 {
    let k = |c: (f64, f64)| Matrix3::new(focal, 0.0, c.0, 0.0, focal, c.1, 0.0, 0.0, 1.0);
    let e = k(c2).transpose() * f * k(c1);
    let mut s: Vec<f64> = e.singular_values().iter().copied().collect();
    s.sort_by(|a, b| b.total_cmp(a));
    if s[0] + s[1] <= 0.0 {
        return 1.0;
    }
    (s[0] - s[1]) / (s[0] + s[1])
}

/// A fundamental matrix with the principal points of its two images.
pub type FundamentalWithCentres = (Matrix3<f64>, (f64, f64), (f64, f64));

/// Self-calibrate one shared focal length from many fundamental matrices: the `f` in
/// `[lo, hi]` (log-spaced grid, then golden-section refinement) that minimises the median
/// [`essential_defect`]. Each entry is `(F, c1, c2)`.
pub fn self_calibrate_focal(fs: &[FundamentalWithCentres], lo: f64, hi: f64) -> Option<f64> {
    if fs.is_empty() {
        return None;
    }
    let cost = |focal: f64| -> f64 {
        let mut v: Vec<f64> = fs
            .iter()
            .map(|(f, a, b)| essential_defect(f, focal, *a, *b))
            .collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let steps = 120;
    let grid: Vec<f64> = (0..=steps)
        .map(|i| lo * (hi / lo).powf(i as f64 / steps as f64))
        .collect();
    let costs: Vec<f64> = grid.iter().map(|&f| cost(f)).collect();
    let k = (0..grid.len()).min_by(|&a, &b| costs[a].total_cmp(&costs[b]))?;
    let (mut a, mut b) = (
        grid[k.saturating_sub(1)].ln(),
        grid[(k + 1).min(steps)].ln(),
    );
    let g = 0.5 * (5f64.sqrt() - 1.0);
    for _ in 0..40 {
        let (c, d) = (b - g * (b - a), a + g * (b - a));
        if cost(c.exp()) < cost(d.exp()) {
            b = d;
        } else {
            a = c;
        }
    }
    Some((0.5 * (a + b)).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{Rng, testutil::*};
    use nalgebra::Vector3;

    #[test]
    fn verification_separates_outliers_and_self_calibrates_focal() {
        let mut rng = Rng::new(10);
        let k = Matrix3::new(900.0, 0.0, 320.0, 0.0, 900.0, 240.0, 0.0, 0.0, 1.0);
        let mut fs = Vec::new();
        let mut wrong_focal_rejected = 0;
        for pair in 0..6 {
            let r = random_rotation(&mut rng, 0.3);
            let t = Vector3::new(1.0, 0.3 * rng.normal(), 0.2 * rng.normal());
            let pts = random_points(&mut rng, 300);
            let mut proj = |p: Vector3<f64>| {
                let q = k * p;
                Vector2::new(
                    q.x / q.z + 0.5 * rng.normal(),
                    q.y / q.z + 0.5 * rng.normal(),
                )
            };
            let x1: Vec<_> = pts.iter().map(|p| proj(*p)).collect();
            let mut x2: Vec<_> = pts.iter().map(|p| proj(r * p + t)).collect();
            for p in x2.iter_mut().take(90) {
                *p = Vector2::new(rng.uniform() * 640.0, rng.uniform() * 480.0);
            }
            let g = verify_pair(&x1, &x2, &TwoViewOptions::default()).unwrap();
            assert_eq!(g.config, TwoViewConfig::Uncalibrated);
            // With the true focal, E explains the matches as well as F does.
            let norm =
                |p: &Vector2<f64>| Vector2::new((p.x - 320.0) / 900.0, (p.y - 240.0) / 900.0);
            let (n1, n2): (Vec<_>, Vec<_>) =
                (x1.iter().map(norm).collect(), x2.iter().map(norm).collect());
            let cal = Calibration {
                n1: &n1,
                n2: &n2,
                focal: 900.0,
            };
            let ge =
                verify_pair_calibrated(&x1, &x2, Some(cal), &TwoViewOptions::default()).unwrap();
            assert_eq!(ge.config, TwoViewConfig::Calibrated, "pair {pair}");
            assert!(ge.inliers.iter().filter(|&&i| i >= 90).count() >= 200);
            // A wrong focal (a third) usually makes E fail the 95 % rule.
            let norm2 =
                |p: &Vector2<f64>| Vector2::new((p.x - 320.0) / 300.0, (p.y - 240.0) / 300.0);
            let (m1, m2): (Vec<_>, Vec<_>) = (
                x1.iter().map(norm2).collect(),
                x2.iter().map(norm2).collect(),
            );
            let bad = Calibration {
                n1: &m1,
                n2: &m2,
                focal: 300.0,
            };
            let gb =
                verify_pair_calibrated(&x1, &x2, Some(bad), &TwoViewOptions::default()).unwrap();
            wrong_focal_rejected += usize::from(gb.config == TwoViewConfig::Uncalibrated);
            let true_inl = g.inliers.iter().filter(|&&i| i >= 90).count();
            assert!(true_inl >= 200, "pair {pair}: {true_inl}");
            assert!(g.inliers.len() <= 215, "pair {pair}: {}", g.inliers.len());
            assert!(g.num_h_inliers < g.inliers.len() / 2);
            fs.push((g.f, (320.0, 240.0), (320.0, 240.0)));
        }
        assert!(wrong_focal_rejected >= 4, "{wrong_focal_rejected} of 6");
        let f = self_calibrate_focal(&fs, 200.0, 4000.0).unwrap();
        assert!((f / 900.0 - 1.0).abs() < 0.05, "{f}");
    }
}
