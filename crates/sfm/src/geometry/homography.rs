//! Homography by the normalised direct linear transform.

use super::hartley_normalize;
use nalgebra::{DMatrix, Matrix3, Vector2, Vector3};

/// Normalised DLT (H&Z Algorithm 4.2): `x2 ~ H x1` from `n >= 4` correspondences.
pub fn dlt(x1: &[Vector2<f64>], x2: &[Vector2<f64>]) -> Option<Matrix3<f64>> {
    let n = x1.len();
    if n < 4 || x2.len() != n {
        return None;
    }
    let (t1, n1) = hartley_normalize(x1);
    let (t2, n2) = hartley_normalize(x2);
    let mut a = DMatrix::<f64>::zeros((2 * n).max(9), 9);
    for i in 0..n {
        let (p, q) = (n1[i], n2[i]);
        let row0 = [-p.x, -p.y, -1.0, 0.0, 0.0, 0.0, q.x * p.x, q.x * p.y, q.x];
        let row1 = [0.0, 0.0, 0.0, -p.x, -p.y, -1.0, q.y * p.x, q.y * p.y, q.y];
        for k in 0..9 {
            a[(2 * i, k)] = row0[k];
            a[(2 * i + 1, k)] = row1[k];
        }
    }
    let svd = a.svd(false, true);
    let vt = svd.v_t?;
    let k = (0..svd.singular_values.len())
        .min_by(|&i, &j| svd.singular_values[i].total_cmp(&svd.singular_values[j]))?;
    let h = Matrix3::from_fn(|i, j| vt[(k, 3 * i + j)]);
    let h = t2.try_inverse()? * h * t1;
    let s = h[(2, 2)];
    if s.abs() < 1e-300 || !h.iter().all(|v| v.is_finite()) {
        return None;
    }
    Some(h / s)
}

/// Squared one-sided transfer error `|x2 − H x1|²` (COLMAP `HomographyMatrixEstimator::Residuals`).
pub fn transfer_sq(h: &Matrix3<f64>, x1: &Vector2<f64>, x2: &Vector2<f64>) -> f64 {
    let p = h * Vector3::new(x1.x, x1.y, 1.0);
    if p.z.abs() < 1e-300 {
        return f64::INFINITY;
    }
    (Vector2::new(p.x / p.z, p.y / p.z) - x2).norm_squared()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Rng;

    #[test]
    fn dlt_recovers_homography() {
        let h = Matrix3::new(1.1, 0.05, 30.0, -0.02, 0.95, -12.0, 1e-4, -2e-4, 1.0);
        let mut rng = Rng::new(5);
        let x1: Vec<_> = (0..30)
            .map(|_| Vector2::new(rng.uniform() * 640.0, rng.uniform() * 480.0))
            .collect();
        let x2: Vec<_> = x1
            .iter()
            .map(|p| {
                let q = h * Vector3::new(p.x, p.y, 1.0);
                Vector2::new(q.x / q.z, q.y / q.z)
            })
            .collect();
        let est = dlt(&x1[..4], &x2[..4]).unwrap();
        assert!((est - h).norm() < 1e-6, "{est}");
        let max = x1
            .iter()
            .zip(&x2)
            .map(|(a, b)| transfer_sq(&est, a, b))
            .fold(0.0, f64::max);
        assert!(max < 1e-12);
    }
}
