//! Fundamental matrix: the seven-point minimal solver and the normalised eight-point algorithm.

use super::hartley_normalize;
use super::poly;
use nalgebra::{DMatrix, Matrix3, Vector2};

fn epipolar_rows(x1: &[Vector2<f64>], x2: &[Vector2<f64>]) -> DMatrix<f64> {
    let n = x1.len().max(9);
    let mut a = DMatrix::<f64>::zeros(n, 9);
    for (i, (p, q)) in x1.iter().zip(x2).enumerate() {
        let (p, q) = ([p.x, p.y, 1.0], [q.x, q.y, 1.0]);
        for r in 0..3 {
            for c in 0..3 {
                a[(i, 3 * r + c)] = q[r] * p[c];
            }
        }
    }
    a
}

/// The right singular vectors of `a` for its `k` smallest singular values, as 3x3 matrices.
fn null_vectors(a: &DMatrix<f64>, k: usize) -> Option<Vec<Matrix3<f64>>> {
    let svd = a.clone().svd(false, true);
    let vt = svd.v_t?;
    let mut order: Vec<usize> = (0..svd.singular_values.len()).collect();
    order.sort_by(|&i, &j| svd.singular_values[i].total_cmp(&svd.singular_values[j]));
    Some(
        order[..k]
            .iter()
            .map(|&r| Matrix3::from_fn(|i, j| vt[(r, 3 * i + j)]))
            .collect(),
    )
}

fn enforce_rank2(f: &Matrix3<f64>) -> Matrix3<f64> {
    let mut svd = f.svd(true, true);
    let k = (0..3)
        .min_by(|&i, &j| svd.singular_values[i].total_cmp(&svd.singular_values[j]))
        .unwrap_or(2);
    svd.singular_values[k] = 0.0;
    svd.recompose().unwrap_or(*f)
}

/// Hartley's normalised eight-point algorithm (Hartley 1997; H&Z Algorithm 11.1): least squares
/// over `n >= 8` correspondences, rank 2 enforced by SVD, then de-normalised `F = T2ᵀ F̂ T1`.
pub fn eight_point(x1: &[Vector2<f64>], x2: &[Vector2<f64>]) -> Option<Matrix3<f64>> {
    if x1.len() < 8 || x1.len() != x2.len() {
        return None;
    }
    let (t1, n1) = hartley_normalize(x1);
    let (t2, n2) = hartley_normalize(x2);
    let f = null_vectors(&epipolar_rows(&n1, &n2), 1)?[0];
    let f = t2.transpose() * enforce_rank2(&f) * t1;
    let n = f.norm();
    (n > 0.0 && n.is_finite()).then(|| f / n)
}

/// The seven-point algorithm (H&Z §11.1.2): `F = α F1 + (1 − α) F2` over the 2-D null space, with
/// `det F = 0` a cubic in `α`. Returns 1 or 3 solutions.
pub fn seven_point(x1: &[Vector2<f64>], x2: &[Vector2<f64>]) -> Vec<Matrix3<f64>> {
    if x1.len() < 7 {
        return vec![];
    }
    let (t1, n1) = hartley_normalize(&x1[..7]);
    let (t2, n2) = hartley_normalize(&x2[..7]);
    let Some(ns) = null_vectors(&epipolar_rows(&n1, &n2), 2) else {
        return vec![];
    };
    let (f1, f2) = (ns[0], ns[1]);
    // det(α F1 + (1−α) F2) is a cubic in α: interpolate it from four samples.
    let xs = [-1.0, 0.0, 1.0, 2.0];
    let ys: Vec<f64> = xs
        .iter()
        .map(|&a| (f1 * a + f2 * (1.0 - a)).determinant())
        .collect();
    let v = nalgebra::Matrix4::from_fn(|i, j| xs[i].powi(j as i32));
    let Some(c) = v.lu().solve(&nalgebra::Vector4::from_column_slice(&ys)) else {
        return vec![];
    };
    poly::real_roots(c.as_slice())
        .into_iter()
        .filter_map(|a| {
            let f = t2.transpose() * (f1 * a + f2 * (1.0 - a)) * t1;
            let n = f.norm();
            (n > 0.0 && n.is_finite()).then(|| f / n)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{Rng, sampson_sq};
    use super::*;
    use nalgebra::Vector3;

    fn pixel_scene(rng: &mut Rng, n: usize) -> (Vec<Vector2<f64>>, Vec<Vector2<f64>>) {
        let r = random_rotation(rng, 0.3);
        let t = Vector3::new(1.0, 0.3, 0.1);
        let k = Matrix3::new(800.0, 0.0, 320.0, 0.0, 800.0, 240.0, 0.0, 0.0, 1.0);
        let pts = random_points(rng, n);
        let proj = |p: Vector3<f64>| {
            let q = k * p;
            Vector2::new(q.x / q.z, q.y / q.z)
        };
        (
            pts.iter().map(|p| proj(*p)).collect(),
            pts.iter().map(|p| proj(r * p + t)).collect(),
        )
    }

    #[test]
    fn seven_and_eight_point_fit_exact_data() {
        let mut rng = Rng::new(3);
        let (x1, x2) = pixel_scene(&mut rng, 40);
        let f8 = eight_point(&x1, &x2).unwrap();
        let max8 = x1
            .iter()
            .zip(&x2)
            .map(|(a, b)| sampson_sq(&f8, a, b))
            .fold(0.0, f64::max);
        assert!(max8 < 1e-12, "{max8}");
        let sols = seven_point(&x1[..7], &x2[..7]);
        assert!(!sols.is_empty());
        let best = sols
            .iter()
            .map(|f| {
                x1.iter()
                    .zip(&x2)
                    .map(|(a, b)| sampson_sq(f, a, b))
                    .fold(0.0, f64::max)
            })
            .fold(f64::INFINITY, f64::min);
        assert!(best < 1e-8, "{best}");
    }

    #[test]
    fn eight_point_with_noise_is_subpixel() {
        let mut rng = Rng::new(4);
        let (x1, mut x2) = pixel_scene(&mut rng, 200);
        for p in x2.iter_mut() {
            p.x += 0.5 * rng.normal();
            p.y += 0.5 * rng.normal();
        }
        let f = eight_point(&x1, &x2).unwrap();
        let rms = (x1
            .iter()
            .zip(&x2)
            .map(|(a, b)| sampson_sq(&f, a, b))
            .sum::<f64>()
            / 200.0)
            .sqrt();
        assert!(rms < 0.6, "{rms}");
    }
}
