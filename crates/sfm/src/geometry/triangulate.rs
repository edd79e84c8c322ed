//! Triangulation: the linear multi-view DLT and the checks applied to its result.

use super::angle_between;
use nalgebra::{Matrix3, Matrix4, Vector2, Vector3};

/// Linear triangulation (H&Z §12.2, "DLT method"): for each view with world-to-camera `(R, t)` and
/// normalised observation `(x, y)`, the rows `x P₃ − P₁` and `y P₃ − P₂`; the point is the right
/// null vector of the stacked system, found from the 4x4 normal matrix. Needs two or more views;
/// `None` when the point lies at infinity.
pub fn triangulate_dlt(
    views: &[(Matrix3<f64>, Vector3<f64>)],
    x: &[Vector2<f64>],
) -> Option<Vector3<f64>> {
    if views.len() < 2 || views.len() != x.len() {
        return None;
    }
    let mut ata = Matrix4::<f64>::zeros();
    for ((r, t), p) in views.iter().zip(x) {
        let row = |k: usize| nalgebra::RowVector4::new(r[(k, 0)], r[(k, 1)], r[(k, 2)], t[k]);
        let (p1, p2, p3) = (row(0), row(1), row(2));
        for a in [p3 * p.x - p1, p3 * p.y - p2] {
            let an = a / a.norm().max(1e-300);
            ata += an.transpose() * an;
        }
    }
    let eig = ata.symmetric_eigen();
    let k = (0..4).min_by(|&i, &j| eig.eigenvalues[i].total_cmp(&eig.eigenvalues[j]))?;
    let v = eig.eigenvectors.column(k);
    if v[3].abs() < 1e-12 {
        return None;
    }
    let xw = Vector3::new(v[0], v[1], v[2]) / v[3];
    xw.iter().all(|c| c.is_finite()).then_some(xw)
}

/// Two-view triangulation with camera 1 at the origin (`[I | 0]`) and camera 2 at `(R, t)`.
pub fn triangulate_two_view_normalized(
    r: &Matrix3<f64>,
    t: &Vector3<f64>,
    x1: &Vector2<f64>,
    x2: &Vector2<f64>,
) -> Option<Vector3<f64>> {
    triangulate_dlt(
        &[(Matrix3::identity(), Vector3::zeros()), (*r, *t)],
        &[*x1, *x2],
    )
}

/// Triangulation angle at `x` between the rays from camera centres `c1` and `c2`, radians.
pub fn triangulation_angle(c1: &Vector3<f64>, c2: &Vector3<f64>, x: &Vector3<f64>) -> f64 {
    angle_between(&(x - c1), &(x - c2))
}

/// Triangulation angle of `x` seen by camera 1 at the origin and camera 2 at `(R, t)`.
pub fn two_view_angle(r: &Matrix3<f64>, t: &Vector3<f64>, x: &Vector3<f64>) -> f64 {
    triangulation_angle(&Vector3::zeros(), &(-r.transpose() * t), x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{Rng, testutil::*};

    #[test]
    fn multiview_dlt_is_exact_without_noise_and_close_with_noise() {
        let mut rng = Rng::new(6);
        let views: Vec<_> = (0..4)
            .map(|i| {
                let r = random_rotation(&mut rng, 0.2);
                (r, Vector3::new(i as f64 * 0.5 - 1.0, 0.1 * i as f64, 0.0))
            })
            .collect();
        let x = Vector3::new(0.3, -0.2, 5.0);
        let obs: Vec<_> = views
            .iter()
            .map(|(r, t)| {
                let p = r * x + t;
                Vector2::new(p.x / p.z, p.y / p.z)
            })
            .collect();
        let est = triangulate_dlt(&views, &obs).unwrap();
        assert!((est - x).norm() < 1e-9);
        let noisy: Vec<_> = obs
            .iter()
            .map(|p| p + Vector2::new(rng.normal(), rng.normal()) * 1e-3)
            .collect();
        let est = triangulate_dlt(&views, &noisy).unwrap();
        assert!((est - x).norm() < 0.05, "{}", (est - x).norm());
        let a = triangulation_angle(
            &Vector3::zeros(),
            &Vector3::new(1.0, 0.0, 0.0),
            &Vector3::new(0.5, 0.0, 0.5),
        );
        assert!((a.to_degrees() - 90.0).abs() < 1e-9);
    }
}
