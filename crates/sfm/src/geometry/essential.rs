//! Essential matrix: Nistér's five-point solver, a linear eight-point estimate for local
//! optimisation, and the decomposition into a relative pose with the cheirality test.

use super::poly::{self, MONOMIALS, Poly3};
use super::triangulate::{triangulate_two_view_normalized, two_view_angle};
use nalgebra::{DMatrix, Matrix3, SMatrix, Vector2, Vector3};

/// Nistér's five-point solver (Nistér 2004, "An efficient solution to the five-point relative pose
/// problem", §3; constraint ordering of Stewénius, Engels & Nistér 2006):
/// `E = x X + y Y + z Z + W` over the null space of the five epipolar constraints, the cubic
/// constraints `det E = 0` and `2 E Eᵀ E − tr(E Eᵀ) E = 0` (Eq. 3-4) eliminated by Gauss-Jordan
/// into the 3x3 matrix `B(z)` of Eq. 11-13 whose determinant is a degree-10 polynomial in `z`.
/// Inputs are normalised points; returns up to 10 essential matrices (Frobenius norm 1).
#[allow(clippy::needless_range_loop)]
pub fn five_point(x1: &[Vector2<f64>], x2: &[Vector2<f64>]) -> Vec<Matrix3<f64>> {
    assert!(x1.len() >= 5 && x2.len() >= 5);
    // Epipolar constraints x2ᵀ E x1 = 0, E row-major: coefficient of E[r][c] is x2[r] x1[c].
    let mut a = SMatrix::<f64, 9, 9>::zeros();
    for i in 0..5 {
        let p1 = [x1[i].x, x1[i].y, 1.0];
        let p2 = [x2[i].x, x2[i].y, 1.0];
        for r in 0..3 {
            for c in 0..3 {
                a[(i, 3 * r + c)] = p2[r] * p1[c];
            }
        }
    }
    let svd = a.svd(false, true);
    let Some(vt) = svd.v_t else { return vec![] };
    let mut order: Vec<usize> = (0..9).collect();
    order.sort_by(|&i, &j| svd.singular_values[i].total_cmp(&svd.singular_values[j]));
    // The four smallest singular vectors span the null space.
    let basis: Vec<[f64; 9]> = order[..4]
        .iter()
        .map(|&k| std::array::from_fn(|m| vt[(k, m)]))
        .collect();
    let (bx, by, bz, bw) = (&basis[0], &basis[1], &basis[2], &basis[3]);
    let e: [[Poly3; 3]; 3] = std::array::from_fn(|r| {
        std::array::from_fn(|c| {
            let m = 3 * r + c;
            Poly3::linear(bx[m], by[m], bz[m], bw[m])
        })
    });
    // det E by cofactor expansion.
    let det = e[0][0]
        .mul(
            &e[1][1]
                .mul(&e[2][2])
                .add(&e[1][2].mul(&e[2][1]).scale(-1.0)),
        )
        .add(
            &e[0][1].mul(
                &e[1][2]
                    .mul(&e[2][0])
                    .add(&e[1][0].mul(&e[2][2]).scale(-1.0)),
            ),
        )
        .add(
            &e[0][2].mul(
                &e[1][0]
                    .mul(&e[2][1])
                    .add(&e[1][1].mul(&e[2][0]).scale(-1.0)),
            ),
        );
    // E Eᵀ (degree 2), its trace, then 2 E Eᵀ E − tr(E Eᵀ) E.
    let eet: [[Poly3; 3]; 3] = std::array::from_fn(|r| {
        std::array::from_fn(|c| {
            (0..3).fold(Poly3::default(), |acc, k| acc.add(&e[r][k].mul(&e[c][k])))
        })
    });
    let tr = eet[0][0].add(&eet[1][1]).add(&eet[2][2]);
    let mut m = DMatrix::<f64>::zeros(10, 20);
    m.row_mut(0).copy_from_slice(&det.0);
    for r in 0..3 {
        for c in 0..3 {
            let mut p = (0..3).fold(Poly3::default(), |acc, k| acc.add(&eet[r][k].mul(&e[k][c])));
            p = p.scale(2.0).add(&tr.mul(&e[r][c]).scale(-1.0));
            m.row_mut(1 + 3 * r + c).copy_from_slice(&p.0);
        }
    }
    // Gauss-Jordan elimination with partial pivoting on the first 10 columns.
    for col in 0..10 {
        let piv = (col..10)
            .max_by(|&i, &j| m[(i, col)].abs().total_cmp(&m[(j, col)].abs()))
            .unwrap_or(col);
        if m[(piv, col)].abs() < 1e-14 {
            return vec![];
        }
        m.swap_rows(col, piv);
        let p = m[(col, col)];
        for k in 0..20 {
            m[(col, k)] /= p;
        }
        for r in 0..10 {
            if r != col {
                let f = m[(r, col)];
                if f != 0.0 {
                    for k in 0..20 {
                        m[(r, k)] -= f * m[(col, k)];
                    }
                }
            }
        }
    }
    debug_assert_eq!(MONOMIALS[10], (1, 0, 2));
    // Row r: leading + x px(z) + y py(z) + p1(z) = 0 (Nistér Eq. 11).
    let px = |r: usize| vec![m[(r, 12)], m[(r, 11)], m[(r, 10)]];
    let py = |r: usize| vec![m[(r, 15)], m[(r, 14)], m[(r, 13)]];
    let p1 = |r: usize| vec![m[(r, 19)], m[(r, 18)], m[(r, 17)], m[(r, 16)]];
    let zshift = |p: Vec<f64>| poly::mul(&p, &[0.0, 1.0]);
    // k = e − z f, l = g − z h, m = i − z j (rows 4..9).
    let bmat: Vec<[Vec<f64>; 3]> = [(4, 5), (6, 7), (8, 9)]
        .iter()
        .map(|&(a, b)| {
            [
                poly::sub(&px(a), &zshift(px(b))),
                poly::sub(&py(a), &zshift(py(b))),
                poly::sub(&p1(a), &zshift(p1(b))),
            ]
        })
        .collect();
    let cof = |r1: usize, r2: usize, c1: usize, c2: usize| {
        poly::sub(
            &poly::mul(&bmat[r1][c1], &bmat[r2][c2]),
            &poly::mul(&bmat[r1][c2], &bmat[r2][c1]),
        )
    };
    let detb = poly::add(
        &poly::add(
            &poly::mul(&bmat[0][0], &cof(1, 2, 1, 2)),
            &poly::mul(&bmat[0][1], &cof(1, 2, 2, 0)),
        ),
        &poly::mul(&bmat[0][2], &cof(1, 2, 0, 1)),
    );
    let mut out = Vec::new();
    for z in poly::real_roots(&detb) {
        let b = Matrix3::from_fn(|r, c| poly::eval(&bmat[r][c], z));
        let cands = [
            b.row(0).transpose().cross(&b.row(1).transpose()),
            b.row(0).transpose().cross(&b.row(2).transpose()),
            b.row(1).transpose().cross(&b.row(2).transpose()),
        ];
        let v = cands
            .iter()
            .max_by(|a, b| a.norm().total_cmp(&b.norm()))
            .copied()
            .unwrap_or_default();
        if v.z.abs() < 1e-14 {
            continue;
        }
        let (x, y) = (v.x / v.z, v.y / v.z);
        let em = Matrix3::from_fn(|r, c| {
            let k = 3 * r + c;
            x * bx[k] + y * by[k] + z * bz[k] + bw[k]
        });
        let n = em.norm();
        if n > 0.0 && n.is_finite() {
            out.push(em / n);
        }
    }
    out
}

/// Linear eight-point estimate of `E` from `n >= 8` normalised correspondences (Longuet-Higgins
/// 1981), projected onto the essential manifold (singular values `(1, 1, 0)`, H&Z Result 9.19).
pub fn eight_point_essential(x1: &[Vector2<f64>], x2: &[Vector2<f64>]) -> Option<Matrix3<f64>> {
    let f = super::fundamental::eight_point(x1, x2)?;
    Some(project_to_essential(&f))
}

/// Closest essential matrix in Frobenius norm: `U diag(1,1,0) Vᵀ`.
pub fn project_to_essential(e: &Matrix3<f64>) -> Matrix3<f64> {
    let svd = e.svd(true, true);
    let (u, vt) = (svd.u.unwrap_or_default(), svd.v_t.unwrap_or_default());
    let mut order = [0usize, 1, 2];
    order.sort_by(|&i, &j| svd.singular_values[j].total_cmp(&svd.singular_values[i]));
    let mut d = Matrix3::zeros();
    d[(order[0], order[0])] = 1.0;
    d[(order[1], order[1])] = 1.0;
    u * d * vt
}

/// The four `(R, t)` candidates of an essential matrix (H&Z Result 9.19): `R = U W Vᵀ` or
/// `U Wᵀ Vᵀ`, `t = ±u₃` (unit length).
pub fn decompose_essential(e: &Matrix3<f64>) -> [(Matrix3<f64>, Vector3<f64>); 4] {
    let svd = e.svd(true, true);
    let mut u = svd.u.unwrap_or_default();
    let mut vt = svd.v_t.unwrap_or_default();
    // Order singular values descending so that the null direction is the third column.
    let mut order = [0usize, 1, 2];
    order.sort_by(|&i, &j| svd.singular_values[j].total_cmp(&svd.singular_values[i]));
    let u2 = Matrix3::from_columns(&[u.column(order[0]), u.column(order[1]), u.column(order[2])]);
    let vt2 = Matrix3::from_rows(&[vt.row(order[0]), vt.row(order[1]), vt.row(order[2])]);
    u = u2;
    vt = vt2;
    if u.determinant() < 0.0 {
        u = -u;
    }
    if vt.determinant() < 0.0 {
        vt = -vt;
    }
    let w = Matrix3::new(0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0);
    let r1 = u * w * vt;
    let r2 = u * w.transpose() * vt;
    let t: Vector3<f64> = u.column(2).into();
    [(r1, t), (r1, -t), (r2, t), (r2, -t)]
}

/// Relative pose from `E` by the cheirality test: the candidate of [`decompose_essential`] that puts
/// the most triangulated correspondences in front of both cameras. Returns `(R, t, in_front)`.
#[allow(clippy::type_complexity)]
pub fn pose_from_essential(
    e: &Matrix3<f64>,
    x1: &[Vector2<f64>],
    x2: &[Vector2<f64>],
) -> (Matrix3<f64>, Vector3<f64>, Vec<bool>) {
    let mut best: Option<(usize, Matrix3<f64>, Vector3<f64>, Vec<bool>)> = None;
    for (r, t) in decompose_essential(e) {
        let front: Vec<bool> = x1
            .iter()
            .zip(x2)
            .map(|(a, b)| {
                triangulate_two_view_normalized(&r, &t, a, b).is_some_and(|x| {
                    x.z > 1e-9 && (r * x + t).z > 1e-9 && two_view_angle(&r, &t, &x) > 0.0
                })
            })
            .collect();
        let n = front.iter().filter(|&&f| f).count();
        if best.as_ref().is_none_or(|b| n > b.0) {
            best = Some((n, r, t, front));
        }
    }
    let (_, r, t, f) = best.expect("four candidates");
    (r, t, f)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{Rng, skew};
    use super::*;

    #[allow(clippy::type_complexity)]
    fn scene(
        rng: &mut Rng,
        n: usize,
    ) -> (
        Matrix3<f64>,
        Vector3<f64>,
        Vec<Vector2<f64>>,
        Vec<Vector2<f64>>,
    ) {
        let r = random_rotation(rng, 0.3);
        let t = Vector3::new(1.0, 0.2 * rng.normal(), 0.2 * rng.normal()).normalize();
        let pts = random_points(rng, n);
        let x1 = pts
            .iter()
            .map(|p| Vector2::new(p.x / p.z, p.y / p.z))
            .collect();
        let x2 = pts
            .iter()
            .map(|p| {
                let q = r * p + t;
                Vector2::new(q.x / q.z, q.y / q.z)
            })
            .collect();
        (r, t, x1, x2)
    }

    #[test]
    fn five_point_recovers_true_essential() {
        let mut rng = Rng::new(1);
        for trial in 0..20 {
            let (r, t, x1, x2) = scene(&mut rng, 5);
            let truth = skew(&t) * r;
            let truth = truth / truth.norm();
            let sols = five_point(&x1, &x2);
            assert!(!sols.is_empty(), "trial {trial}");
            let best = sols
                .iter()
                .map(|e| (e - truth).norm().min((e + truth).norm()))
                .fold(f64::INFINITY, f64::min);
            assert!(best < 1e-6, "trial {trial}: best {best}");
            // Every solution satisfies the five constraints.
            for e in &sols {
                for (a, b) in x1.iter().zip(&x2) {
                    let v = Vector3::new(b.x, b.y, 1.0).dot(&(e * Vector3::new(a.x, a.y, 1.0)));
                    assert!(v.abs() < 1e-8);
                }
            }
        }
    }

    #[test]
    fn decomposition_and_cheirality_recover_pose() {
        let mut rng = Rng::new(2);
        let (r, t, x1, x2) = scene(&mut rng, 50);
        let e = eight_point_essential(&x1, &x2).unwrap();
        let (re, te, front) = pose_from_essential(&e, &x1, &x2);
        assert!(front.iter().all(|&f| f));
        assert!((re - r).norm() < 1e-8);
        assert!((te - t).norm() < 1e-8);
    }
}
