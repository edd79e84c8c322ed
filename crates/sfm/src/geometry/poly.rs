//! Polynomial helpers for the minimal solvers. Univariate polynomials are coefficient vectors with
//! the constant term first: `p[k]` multiplies `x^k`.

use nalgebra::DMatrix;

/// `p · q`.
pub fn mul(p: &[f64], q: &[f64]) -> Vec<f64> {
    if p.is_empty() || q.is_empty() {
        return vec![];
    }
    let mut out = vec![0.0; p.len() + q.len() - 1];
    for (i, a) in p.iter().enumerate() {
        for (j, b) in q.iter().enumerate() {
            out[i + j] += a * b;
        }
    }
    out
}

/// `p + q`.
pub fn add(p: &[f64], q: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; p.len().max(q.len())];
    for (i, a) in p.iter().enumerate() {
        out[i] += a;
    }
    for (i, b) in q.iter().enumerate() {
        out[i] += b;
    }
    out
}

/// `p - q`.
pub fn sub(p: &[f64], q: &[f64]) -> Vec<f64> {
    let neg: Vec<f64> = q.iter().map(|v| -v).collect();
    add(p, &neg)
}

/// `p(x)` by Horner's rule.
pub fn eval(p: &[f64], x: f64) -> f64 {
    p.iter().rev().fold(0.0, |acc, c| acc * x + c)
}

/// Derivative `p'`.
pub fn deriv(p: &[f64]) -> Vec<f64> {
    p.iter()
        .enumerate()
        .skip(1)
        .map(|(k, c)| c * k as f64)
        .collect()
}

/// Real roots of `p`: eigenvalues of the companion matrix (Edelman & Murakami 1995) with a small
/// imaginary part, each polished by two Newton steps.
pub fn real_roots(p: &[f64]) -> Vec<f64> {
    let mut p: Vec<f64> = p.to_vec();
    let scale = p.iter().fold(0.0f64, |m, c| m.max(c.abs()));
    if scale == 0.0 {
        return vec![];
    }
    while p.len() > 1 && p.last().is_some_and(|c| c.abs() <= 1e-14 * scale) {
        p.pop();
    }
    let n = p.len() - 1;
    if n == 0 {
        return vec![];
    }
    if n == 1 {
        return vec![-p[0] / p[1]];
    }
    let lead = p[n];
    let mut c = DMatrix::<f64>::zeros(n, n);
    for i in 1..n {
        c[(i, i - 1)] = 1.0;
    }
    for i in 0..n {
        c[(i, n - 1)] = -p[i] / lead;
    }
    let dp = deriv(&p);
    c.complex_eigenvalues()
        .iter()
        .filter(|z| z.im.abs() <= 1e-6 * (1.0 + z.re.abs()))
        .map(|z| {
            let mut x = z.re;
            for _ in 0..2 {
                let d = eval(&dp, x);
                if d.abs() > 1e-300 {
                    x -= eval(&p, x) / d;
                }
            }
            x
        })
        .filter(|x| x.is_finite())
        .collect()
}

/// Monomials `x^a y^b z^c` with `a + b + c <= 3`, the 20 unknowns of the five-point problem.
/// Ordered as in Nistér (2004) / Stewénius et al. (2006) so that Gauss-Jordan elimination of the
/// 10x20 constraint matrix leaves the polynomials Nistér's hidden-variable step needs:
/// `x³ y³ x²y xy² x²z x² y²z y² xyz xy | xz² xz x yz² yz y z³ z² z 1`.
pub const MONOMIALS: [(u8, u8, u8); 20] = [
    (3, 0, 0),
    (0, 3, 0),
    (2, 1, 0),
    (1, 2, 0),
    (2, 0, 1),
    (2, 0, 0),
    (0, 2, 1),
    (0, 2, 0),
    (1, 1, 1),
    (1, 1, 0),
    (1, 0, 2),
    (1, 0, 1),
    (1, 0, 0),
    (0, 1, 2),
    (0, 1, 1),
    (0, 1, 0),
    (0, 0, 3),
    (0, 0, 2),
    (0, 0, 1),
    (0, 0, 0),
];

/// A polynomial in `x, y, z` of degree at most 3, coefficients indexed like [`MONOMIALS`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Poly3(pub [f64; 20]);

fn monomial_index(a: u8, b: u8, c: u8) -> usize {
    MONOMIALS
        .iter()
        .position(|&m| m == (a, b, c))
        .expect("degree <= 3")
}

impl Poly3 {
    /// `cx x + cy y + cz z + c1`.
    pub fn linear(cx: f64, cy: f64, cz: f64, c1: f64) -> Self {
        let mut p = Poly3::default();
        p.0[12] = cx;
        p.0[15] = cy;
        p.0[18] = cz;
        p.0[19] = c1;
        p
    }
    pub fn add(&self, o: &Poly3) -> Poly3 {
        let mut r = *self;
        for (a, b) in r.0.iter_mut().zip(o.0.iter()) {
            *a += b;
        }
        r
    }
    pub fn scale(&self, s: f64) -> Poly3 {
        let mut r = *self;
        for a in r.0.iter_mut() {
            *a *= s;
        }
        r
    }
    /// Product; the total degree must stay <= 3.
    pub fn mul(&self, o: &Poly3) -> Poly3 {
        let mut r = Poly3::default();
        for (i, a) in self.0.iter().enumerate() {
            if *a == 0.0 {
                continue;
            }
            for (j, b) in o.0.iter().enumerate() {
                if *b == 0.0 {
                    continue;
                }
                let (m1, m2) = (MONOMIALS[i], MONOMIALS[j]);
                r.0[monomial_index(m1.0 + m2.0, m1.1 + m2.1, m1.2 + m2.2)] += a * b;
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_of_known_quartic() {
        // (x-1)(x+2)(x-3)(x^2+1) has real roots 1, -2, 3.
        let p = mul(
            &mul(&mul(&[-1.0, 1.0], &[2.0, 1.0]), &[-3.0, 1.0]),
            &[1.0, 0.0, 1.0],
        );
        let mut r = real_roots(&p);
        r.sort_by(f64::total_cmp);
        assert_eq!(r.len(), 3);
        for (a, b) in r.iter().zip([-2.0, 1.0, 3.0]) {
            assert!((a - b).abs() < 1e-10, "{a} vs {b}");
        }
    }

    #[test]
    fn poly3_product() {
        // (x + 2)(y - z) evaluated at (1, 2, 3) = 3 * -1.
        let p = Poly3::linear(1.0, 0.0, 0.0, 2.0).mul(&Poly3::linear(0.0, 1.0, -1.0, 0.0));
        let v: f64 =
            p.0.iter()
                .zip(MONOMIALS.iter())
                .map(|(c, &(a, b, d))| {
                    c * 1f64.powi(a as i32) * 2f64.powi(b as i32) * 3f64.powi(d as i32)
                })
                .sum();
        assert!((v + 3.0).abs() < 1e-12);
    }
}
