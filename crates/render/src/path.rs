//! The camera path: keyframe poses → a smooth, constant-speed flight.
//!
//! Naming used throughout this module:
//! - `u`: the spline parameter, cumulative **chord length** of the keyframe polygon (metres of
//!   straight lines between keyframe centres); keyframe `i` sits at `u[i]`.
//! - `s`: **arc length** along the smooth path, metres. `s(u)` is monotone; `u(s)` its inverse.
//! - `t`: time in seconds from the first frame. `s(t)` is the speed profile (eased ends).
//! - poses are world-to-camera ([`flythrough_core::Pose`], OpenCV axes); `q` is a rotation
//!   world-to-camera as a unit quaternion.
//!
//! Position: a natural cubic spline per coordinate through the keyframe centres, parameterised by
//! chord length (C2; Ahlberg, Nilson & Walsh 1967; chord-length parameterisation as in Lee 1989,
//! "Choosing nodes in parametric curve interpolation"). Orientation: SQUAD (Shoemake 1987,
//! "Animating rotation with quaternion curves") through the keyframe rotations, or the level
//! direction of travel. Timing: arc length by Gauss–Legendre quadrature, inverted with Newton's
//! method, and a speed profile with smoothstep ramps (continuous acceleration).

use flythrough_core::Pose;
use nalgebra::{Matrix3, Quaternion, UnitQuaternion, Vector3};
use serde::{Deserialize, Serialize};

/// A natural cubic spline `y(u)` through `(knots[i], y[i])` (second derivative 0 at both ends).
#[derive(Debug, Clone)]
pub struct CubicSpline {
    knots: Vec<f64>,
    y: Vec<f64>,
    /// Second derivatives at the knots.
    m: Vec<f64>,
}

impl CubicSpline {
    /// Natural cubic spline: solve the tridiagonal system for the knot second derivatives
    /// `h[i-1] m[i-1] + 2 (h[i-1] + h[i]) m[i] + h[i] m[i+1] = 6 (Δ[i] − Δ[i-1])`, `m[0] = m[n] = 0`
    /// (Thomas algorithm). `knots` must be strictly increasing, `knots.len() == y.len() >= 2`.
    pub fn natural(knots: &[f64], y: &[f64]) -> CubicSpline {
        let n = knots.len();
        let mut m = vec![0.0; n];
        if n > 2 {
            let h: Vec<f64> = knots.windows(2).map(|w| w[1] - w[0]).collect();
            let d: Vec<f64> = (0..n - 1).map(|i| (y[i + 1] - y[i]) / h[i]).collect();
            // Unknowns m[1..n-1]: sub a, diag b, super c, rhs r.
            let k = n - 2;
            let mut b = vec![0.0; k];
            let mut c = vec![0.0; k];
            let mut r = vec![0.0; k];
            for j in 0..k {
                let i = j + 1;
                b[j] = 2.0 * (h[i - 1] + h[i]);
                c[j] = h[i];
                r[j] = 6.0 * (d[i] - d[i - 1]);
            }
            // Forward sweep (sub-diagonal a[j] = h[j]).
            for j in 1..k {
                let w = h[j] / b[j - 1];
                b[j] -= w * c[j - 1];
                r[j] -= w * r[j - 1];
            }
            let mut x = vec![0.0; k];
            x[k - 1] = r[k - 1] / b[k - 1];
            for j in (0..k - 1).rev() {
                x[j] = (r[j] - c[j] * x[j + 1]) / b[j];
            }
            m[1..n - 1].copy_from_slice(&x);
        }
        CubicSpline {
            knots: knots.to_vec(),
            y: y.to_vec(),
            m,
        }
    }

    fn segment(&self, u: f64) -> usize {
        let n = self.knots.len();
        match self.knots.partition_point(|&k| k <= u) {
            0 => 0,
            i if i >= n => n - 2,
            i => i - 1,
        }
    }

    /// `(y, dy/du, d²y/du²)` at `u` (extrapolates the end cubics outside the knots).
    pub fn eval(&self, u: f64) -> (f64, f64, f64) {
        let i = self.segment(u);
        let (u0, u1) = (self.knots[i], self.knots[i + 1]);
        let h = u1 - u0;
        let (a, b) = ((u1 - u) / h, (u - u0) / h);
        let (m0, m1) = (self.m[i], self.m[i + 1]);
        let (y0, y1) = (self.y[i], self.y[i + 1]);
        let y = a * y0 + b * y1 + ((a * a * a - a) * m0 + (b * b * b - b) * m1) * h * h / 6.0;
        let dy =
            (y1 - y0) / h - (3.0 * a * a - 1.0) / 6.0 * h * m0 + (3.0 * b * b - 1.0) / 6.0 * h * m1;
        let ddy = a * m0 + b * m1;
        (y, dy, ddy)
    }
}

/// Monotone piecewise-cubic Hermite interpolation (Fritsch & Carlson 1980), used for exposure so
/// that it never overshoots the keyframes' values.
#[derive(Debug, Clone)]
pub struct Pchip {
    knots: Vec<f64>,
    y: Vec<f64>,
    d: Vec<f64>,
}

impl Pchip {
    pub fn new(knots: &[f64], y: &[f64]) -> Pchip {
        let n = knots.len();
        let h: Vec<f64> = knots.windows(2).map(|w| w[1] - w[0]).collect();
        let del: Vec<f64> = (0..n - 1).map(|i| (y[i + 1] - y[i]) / h[i]).collect();
        let mut d = vec![0.0; n];
        if n == 2 {
            d[0] = del[0];
            d[1] = del[0];
        } else {
            for i in 1..n - 1 {
                if del[i - 1] * del[i] > 0.0 {
                    // Weighted harmonic mean (Fritsch–Butland form used by SciPy's PCHIP).
                    let w1 = 2.0 * h[i] + h[i - 1];
                    let w2 = h[i] + 2.0 * h[i - 1];
                    d[i] = (w1 + w2) / (w1 / del[i - 1] + w2 / del[i]);
                }
            }
            // One-sided three-point ends, clipped to keep monotonicity.
            let end = |h0: f64, h1: f64, d0: f64, d1: f64| {
                let mut e = ((2.0 * h0 + h1) * d0 - h0 * d1) / (h0 + h1);
                if e * d0 <= 0.0 {
                    e = 0.0;
                } else if d0 * d1 <= 0.0 && e.abs() > 3.0 * d0.abs() {
                    e = 3.0 * d0;
                }
                e
            };
            d[0] = end(h[0], h[1], del[0], del[1]);
            d[n - 1] = end(h[n - 2], h[n - 3], del[n - 2], del[n - 3]);
        }
        Pchip {
            knots: knots.to_vec(),
            y: y.to_vec(),
            d,
        }
    }

    pub fn eval(&self, u: f64) -> f64 {
        let n = self.knots.len();
        if u <= self.knots[0] {
            return self.y[0];
        }
        if u >= self.knots[n - 1] {
            return self.y[n - 1];
        }
        let i = self
            .knots
            .partition_point(|&k| k <= u)
            .saturating_sub(1)
            .min(n - 2);
        let h = self.knots[i + 1] - self.knots[i];
        let t = (u - self.knots[i]) / h;
        let (t2, t3) = (t * t, t * t * t);
        let h00 = 2.0 * t3 - 3.0 * t2 + 1.0;
        let h10 = t3 - 2.0 * t2 + t;
        let h01 = -2.0 * t3 + 3.0 * t2;
        let h11 = t3 - t2;
        h00 * self.y[i] + h10 * h * self.d[i] + h01 * self.y[i + 1] + h11 * h * self.d[i + 1]
    }
}

/// 5-point Gauss–Legendre nodes and weights on [-1, 1].
const GL5: [(f64, f64); 5] = [
    (0.0, 0.568_888_888_888_888_9),
    (-0.538_469_310_105_683, 0.478_628_670_499_366_5),
    (0.538_469_310_105_683, 0.478_628_670_499_366_5),
    (-0.906_179_845_938_664, 0.236_926_885_056_189_1),
    (0.906_179_845_938_664, 0.236_926_885_056_189_1),
];

/// Pieces per keyframe segment in the arc-length table.
const ARC_PIECES: usize = 64;

/// Rotation math on raw quaternions (sign kept; SQUAD needs control points off the unit sphere's
/// shortest arcs).
fn qdot(a: &Quaternion<f64>, b: &Quaternion<f64>) -> f64 {
    a.coords.dot(&b.coords)
}

/// Spherical linear interpolation along the shorter arc (Shoemake 1985).
pub fn slerp(a: &Quaternion<f64>, b: &Quaternion<f64>, h: f64) -> Quaternion<f64> {
    let mut b = *b;
    let mut c = qdot(a, &b);
    if c < 0.0 {
        b = -b;
        c = -c;
    }
    if c > 1.0 - 1e-12 {
        let q = a * (1.0 - h) + b * h;
        return q / q.norm();
    }
    let th = c.min(1.0).acos();
    let s = th.sin();
    a * (((1.0 - h) * th).sin() / s) + b * ((h * th).sin() / s)
}

fn qlog_unit(q: &Quaternion<f64>) -> Vector3<f64> {
    let v = q.vector().into_owned();
    let n = v.norm();
    if n < 1e-15 {
        return Vector3::zeros();
    }
    v * (n.atan2(q.w) / n)
}

fn qexp_pure(v: &Vector3<f64>) -> Quaternion<f64> {
    let th = v.norm();
    if th < 1e-15 {
        return Quaternion::new(1.0, v.x, v.y, v.z);
    }
    let s = th.sin() / th;
    Quaternion::new(th.cos(), v.x * s, v.y * s, v.z * s)
}

/// SQUAD inner control point `s_i = q_i exp(−(log(q_i⁻¹ q_{i+1}) + log(q_i⁻¹ q_{i−1})) / 4)`
/// (Shoemake 1987).
fn squad_control(
    prev: &Quaternion<f64>,
    q: &Quaternion<f64>,
    next: &Quaternion<f64>,
) -> Quaternion<f64> {
    let inv = q.conjugate();
    let a = qlog_unit(&(inv * next));
    let b = qlog_unit(&(inv * prev));
    q * qexp_pure(&(-(a + b) / 4.0))
}

/// `squad(q_i, q_{i+1}, s_i, s_{i+1}, h) = slerp(slerp(q_i, q_{i+1}, h), slerp(s_i, s_{i+1}, h), 2h(1−h))`.
fn squad(
    q0: &Quaternion<f64>,
    q1: &Quaternion<f64>,
    s0: &Quaternion<f64>,
    s1: &Quaternion<f64>,
    h: f64,
) -> Quaternion<f64> {
    slerp(&slerp(q0, q1, h), &slerp(s0, s1, h), 2.0 * h * (1.0 - h))
}

/// Distance travelled after `t` seconds with cruise speed `v`, smoothstep ramps of `tau` seconds at
/// both ends, total length `len`. During the ramp the speed is `v (3x² − 2x³)`, `x = t/τ`, so the
/// distance is `v τ (x³ − x⁴/2)` and each ramp covers `v τ / 2`. Total time `len / v + τ`.
pub fn eased_distance(t: f64, len: f64, v: f64, tau: f64) -> f64 {
    let total = len / v + tau;
    let ramp = |t: f64| {
        if tau <= 0.0 {
            return v * t.max(0.0);
        }
        let x = (t / tau).clamp(0.0, 1.0);
        v * tau * (x * x * x - 0.5 * x * x * x * x) + v * (t - tau).max(0.0)
    };
    if t <= 0.0 {
        0.0
    } else if t >= total {
        len
    } else if t <= total / 2.0 {
        ramp(t).min(len)
    } else {
        (len - ramp(total - t)).max(0.0)
    }
}

/// Where the camera looks: `[render] heading`.
pub use flythrough_core::config::Heading;

/// Path settings (the `[render]` keys that shape the path).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathSettings {
    pub speed_m_per_s: f64,
    pub ease_s: f64,
    pub heading: Heading,
}

/// One keyframe: its photo name, pose and exposure.
#[derive(Debug, Clone, PartialEq)]
pub struct Keyframe {
    pub name: String,
    pub pose: Pose,
    pub ev: f64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PathError {
    #[error("the path needs at least 2 keyframes, got {0}; list them in [venue] keyframes")]
    TooFewKeyframes(usize),
    #[error(
        "all keyframes ({0}) are at the same place (within 1 mm): the path has no length; pick keyframes taken at different positions"
    )]
    NoLength(String),
    #[error("up vector {0:?} is not a unit direction")]
    BadUp([f64; 3]),
}

/// The smooth path through a venue's keyframes.
#[derive(Debug, Clone)]
pub struct CameraPath {
    keyframes: Vec<Keyframe>,
    /// Chord-length parameter of each keyframe.
    u: Vec<f64>,
    splines: [CubicSpline; 3],
    /// Arc-length table: `(u, s)` at piece boundaries.
    table: Vec<(f64, f64)>,
    length: f64,
    quats: Vec<Quaternion<f64>>,
    ctrl: Vec<Quaternion<f64>>,
    ev: Pchip,
    up: Vector3<f64>,
    settings: PathSettings,
    /// The ease duration actually used (shortened for very short paths).
    tau: f64,
}

/// A camera on the path at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathSample {
    pub time_s: f64,
    /// Arc length travelled, metres.
    pub s_m: f64,
    /// Camera centre, world.
    pub center: [f64; 3],
    /// World-to-camera rotation, COLMAP order `[w, x, y, z]`.
    pub qvec: [f64; 4],
    /// Unit horizontal forward direction (centre of the 360° frame), world.
    pub forward: [f64; 3],
    /// Exposure value used for this frame.
    pub exposure_ev: f64,
}

impl PathSample {
    pub fn pose(&self) -> Pose {
        let [w, x, y, z] = self.qvec;
        let rot = UnitQuaternion::from_quaternion(Quaternion::new(w, x, y, z));
        let c = Vector3::from(self.center);
        Pose::new(rot, -(rot * c))
    }
}

/// A horizontal unit vector close to `v` (its projection on the plane ⟂ `up`), if it has one.
fn horizontal(v: &Vector3<f64>, up: &Vector3<f64>) -> Option<Vector3<f64>> {
    let h = v - up * v.dot(up);
    let n = h.norm();
    (n > 1e-9 * v.norm().max(1e-300)).then(|| h / n)
}

/// World-to-camera rotation of a level camera looking along horizontal `f` (OpenCV axes: x right =
/// f × up, y down = −up, z forward = f).
pub fn level_rotation(f: &Vector3<f64>, up: &Vector3<f64>) -> UnitQuaternion<f64> {
    let x = f.cross(up).normalize();
    let y = -up;
    let r_c2w = Matrix3::from_columns(&[x, y, *f]);
    Pose::from_center_and_axes(Vector3::zeros(), &r_c2w).rotation
}

impl CameraPath {
    /// Build the path. Keyframes closer than 1 mm to the previous one are merged (the first is kept).
    pub fn new(
        keyframes: Vec<Keyframe>,
        up: Vector3<f64>,
        settings: PathSettings,
    ) -> Result<CameraPath, PathError> {
        if keyframes.len() < 2 {
            return Err(PathError::TooFewKeyframes(keyframes.len()));
        }
        let n_up = up.norm();
        if !n_up.is_finite() || n_up < 1e-9 {
            return Err(PathError::BadUp([up.x, up.y, up.z]));
        }
        let up = up / n_up;
        let names = keyframes
            .iter()
            .map(|k| k.name.clone())
            .collect::<Vec<_>>()
            .join(", ");
        let mut kept: Vec<Keyframe> = Vec::with_capacity(keyframes.len());
        for k in keyframes {
            match kept.last() {
                Some(prev) if (prev.pose.center() - k.pose.center()).norm() < 1e-3 => {
                    tracing::warn!(
                        "keyframe {} is within 1 mm of {}: merged",
                        k.name,
                        prev.name
                    );
                }
                _ => kept.push(k),
            }
        }
        if kept.len() < 2 {
            return Err(PathError::NoLength(names));
        }
        let centers: Vec<Vector3<f64>> = kept.iter().map(|k| k.pose.center()).collect();
        let mut u = vec![0.0];
        for w in centers.windows(2) {
            u.push(u.last().unwrap() + (w[1] - w[0]).norm());
        }
        let coord = |c: usize| centers.iter().map(|p| p[c]).collect::<Vec<_>>();
        let splines = [
            CubicSpline::natural(&u, &coord(0)),
            CubicSpline::natural(&u, &coord(1)),
            CubicSpline::natural(&u, &coord(2)),
        ];
        // Quaternions with consistent signs, then SQUAD control points (ends: s = q).
        let mut quats: Vec<Quaternion<f64>> = Vec::with_capacity(kept.len());
        for k in &kept {
            let mut q = *k.pose.rotation.quaternion();
            if let Some(p) = quats.last()
                && qdot(p, &q) < 0.0
            {
                q = -q;
            }
            quats.push(q);
        }
        let nq = quats.len();
        let ctrl: Vec<Quaternion<f64>> = (0..nq)
            .map(|i| {
                if i == 0 || i == nq - 1 {
                    quats[i]
                } else {
                    squad_control(&quats[i - 1], &quats[i], &quats[i + 1])
                }
            })
            .collect();
        let evs: Vec<f64> = kept.iter().map(|k| k.ev).collect();
        let ev = Pchip::new(&u, &evs);
        let mut path = CameraPath {
            keyframes: kept,
            u,
            splines,
            table: Vec::new(),
            length: 0.0,
            quats,
            ctrl,
            ev,
            up,
            settings,
            tau: settings.ease_s,
        };
        path.build_table();
        // A path shorter than one ramp's worth: ramps of length/speed each, no cruise.
        path.tau = settings.ease_s.min(path.length / settings.speed_m_per_s);
        Ok(path)
    }

    fn build_table(&mut self) {
        let mut table = vec![(0.0, 0.0)];
        let mut s = 0.0;
        for w in self.u.windows(2) {
            let h = (w[1] - w[0]) / ARC_PIECES as f64;
            for j in 0..ARC_PIECES {
                let a = w[0] + j as f64 * h;
                s += self.arc(a, a + h);
                table.push((a + h, s));
            }
        }
        self.length = s;
        self.table = table;
    }

    /// `∫_a^b |P'(u)| du` by 5-point Gauss–Legendre.
    fn arc(&self, a: f64, b: f64) -> f64 {
        let (m, r) = ((a + b) / 2.0, (b - a) / 2.0);
        GL5.iter()
            .map(|&(x, w)| w * self.derivative(m + r * x).norm())
            .sum::<f64>()
            * r
    }

    /// Position `P(u)`.
    pub fn position(&self, u: f64) -> Vector3<f64> {
        Vector3::new(
            self.splines[0].eval(u).0,
            self.splines[1].eval(u).0,
            self.splines[2].eval(u).0,
        )
    }

    /// `dP/du`.
    pub fn derivative(&self, u: f64) -> Vector3<f64> {
        Vector3::new(
            self.splines[0].eval(u).1,
            self.splines[1].eval(u).1,
            self.splines[2].eval(u).1,
        )
    }

    /// `d²P/du²`.
    pub fn second_derivative(&self, u: f64) -> Vector3<f64> {
        Vector3::new(
            self.splines[0].eval(u).2,
            self.splines[1].eval(u).2,
            self.splines[2].eval(u).2,
        )
    }

    /// Arc length `s(u)`.
    pub fn s_of_u(&self, u: f64) -> f64 {
        let u = u.clamp(0.0, self.u_end());
        let i = self
            .table
            .partition_point(|&(uu, _)| uu <= u)
            .saturating_sub(1)
            .min(self.table.len() - 2);
        let (ua, sa) = self.table[i];
        sa + self.arc(ua, u)
    }

    /// Inverse of [`Self::s_of_u`]: Newton's method inside the table piece, bisection as a guard.
    pub fn u_of_s(&self, s: f64) -> f64 {
        if s <= 0.0 {
            return 0.0;
        }
        if s >= self.length {
            return self.u_end();
        }
        let i = self
            .table
            .partition_point(|&(_, ss)| ss <= s)
            .saturating_sub(1)
            .min(self.table.len() - 2);
        let (ua, sa) = self.table[i];
        let (ub, sb) = self.table[i + 1];
        let (mut lo, mut hi) = (ua, ub);
        let mut u = ua + (ub - ua) * (s - sa) / (sb - sa).max(1e-300);
        for _ in 0..30 {
            let f = sa + self.arc(ua, u) - s;
            if f.abs() < 1e-12 {
                break;
            }
            if f > 0.0 {
                hi = u;
            } else {
                lo = u;
            }
            let d = self.derivative(u).norm();
            let mut next = if d > 1e-12 { u - f / d } else { f64::NAN };
            if !(next > lo && next < hi) {
                next = 0.5 * (lo + hi);
            }
            u = next;
        }
        u
    }

    fn u_end(&self) -> f64 {
        *self.u.last().unwrap()
    }

    /// Total arc length, metres.
    pub fn length(&self) -> f64 {
        self.length
    }

    /// The unit world up vector the path is levelled with.
    pub fn up(&self) -> Vector3<f64> {
        self.up
    }

    /// Duration of the flight: `length / speed + τ` (each smoothstep ramp costs τ/2).
    pub fn duration(&self) -> f64 {
        self.length / self.settings.speed_m_per_s + self.tau
    }

    /// Ease duration actually used.
    pub fn ease(&self) -> f64 {
        self.tau
    }

    pub fn keyframes(&self) -> &[Keyframe] {
        &self.keyframes
    }

    /// Chord-length parameter of each keyframe.
    pub fn keyframe_u(&self) -> &[f64] {
        &self.u
    }

    /// Distance travelled at time `t`.
    pub fn s_of_t(&self, t: f64) -> f64 {
        eased_distance(t, self.length, self.settings.speed_m_per_s, self.tau)
    }

    /// Time at which distance `s` is reached (bisection on the monotone `s(t)`).
    pub fn t_of_s(&self, s: f64) -> f64 {
        let (mut lo, mut hi) = (0.0, self.duration());
        for _ in 0..100 {
            let m = 0.5 * (lo + hi);
            if self.s_of_t(m) < s {
                lo = m;
            } else {
                hi = m;
            }
        }
        0.5 * (lo + hi)
    }

    fn segment_of(&self, u: f64) -> (usize, f64) {
        let n = self.u.len();
        let i = self
            .u
            .partition_point(|&k| k <= u)
            .saturating_sub(1)
            .min(n - 2);
        let h = ((u - self.u[i]) / (self.u[i + 1] - self.u[i])).clamp(0.0, 1.0);
        (i, h)
    }

    /// World-to-camera rotation at `u`.
    pub fn rotation(&self, u: f64) -> UnitQuaternion<f64> {
        match self.settings.heading {
            Heading::Keyframes => {
                let (i, h) = self.segment_of(u);
                let q = squad(
                    &self.quats[i],
                    &self.quats[i + 1],
                    &self.ctrl[i],
                    &self.ctrl[i + 1],
                    h,
                );
                UnitQuaternion::from_quaternion(q)
            }
            Heading::Travel => level_rotation(&self.forward(u), &self.up),
        }
    }

    /// Horizontal forward direction at `u`: the direction of travel (`Travel`) or the camera's
    /// viewing direction (`Keyframes`), projected on the horizontal plane. Falls back to the
    /// nearest keyframe camera's heading, then to any horizontal direction, for vertical motion.
    pub fn forward(&self, u: f64) -> Vector3<f64> {
        let v = match self.settings.heading {
            Heading::Travel => self.derivative(u),
            Heading::Keyframes => {
                let (i, h) = self.segment_of(u);
                let q = squad(
                    &self.quats[i],
                    &self.quats[i + 1],
                    &self.ctrl[i],
                    &self.ctrl[i + 1],
                    h,
                );
                UnitQuaternion::from_quaternion(q).inverse() * Vector3::z()
            }
        };
        if let Some(f) = horizontal(&v, &self.up) {
            return f;
        }
        let (i, h) = self.segment_of(u);
        let k = if h < 0.5 { i } else { i + 1 };
        if let Some(f) = horizontal(&self.keyframes[k].pose.forward(), &self.up) {
            return f;
        }
        let any = if self.up.x.abs() < 0.9 {
            Vector3::x()
        } else {
            Vector3::y()
        };
        horizontal(&any, &self.up).unwrap_or_else(Vector3::x)
    }

    /// Exposure at `u` (monotone cubic between the keyframes' EVs).
    pub fn exposure(&self, u: f64) -> f64 {
        self.ev.eval(u)
    }

    /// The camera at time `t`. `fixed_ev`: use this EV instead of the keyframe interpolation.
    pub fn sample(&self, t: f64, fixed_ev: Option<f64>) -> PathSample {
        let s = self.s_of_t(t);
        let u = self.u_of_s(s);
        let c = self.position(u);
        let q = self.rotation(u);
        let f = self.forward(u);
        let qc = q.quaternion();
        PathSample {
            time_s: t,
            s_m: s,
            center: [c.x, c.y, c.z],
            qvec: [qc.w, qc.i, qc.j, qc.k],
            forward: [f.x, f.y, f.z],
            exposure_ev: fixed_ev.unwrap_or_else(|| self.exposure(u)),
        }
    }

    /// Frame rate actually used: `fps`, lowered when `max_frames > 0` would be exceeded.
    pub fn frame_rate(&self, fps: f64, max_frames: u32) -> f64 {
        let t = self.duration();
        let needed = (t * fps).floor() + 1.0;
        if max_frames >= 2 && needed > max_frames as f64 {
            (max_frames as f64 - 1.0) / t
        } else {
            fps
        }
    }

    /// Frames at `t_k = k / fps`, `k = 0 .. floor(duration · fps)`: the video lasts
    /// `(floor(duration · fps) + 1) / fps`, within one frame of the flight's duration.
    pub fn frames(&self, fps: f64, fixed_ev: Option<f64>) -> Vec<PathSample> {
        let n = (self.duration() * fps + 1e-9).floor() as usize + 1;
        (0..n.max(2))
            .map(|k| self.sample((k as f64 / fps).min(self.duration()), fixed_ev))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kf(name: &str, c: [f64; 3], yaw_deg: f64, ev: f64) -> Keyframe {
        // z-up world; camera looks along yaw in the xy plane.
        let up = Vector3::z();
        let f = Vector3::new(yaw_deg.to_radians().cos(), yaw_deg.to_radians().sin(), 0.0);
        let q = level_rotation(&f, &up);
        let c = Vector3::from(c);
        Keyframe {
            name: name.into(),
            pose: Pose::new(q, -(q * c)),
            ev,
        }
    }

    /// An L-shaped walk with a height change and a U-turn: 5 keyframes.
    fn venue_keyframes() -> Vec<Keyframe> {
        vec![
            kf("a.jpg", [0.0, 0.0, 1.5], 0.0, 0.0),
            kf("b.jpg", [3.0, 0.2, 1.6], 20.0, 1.0),
            kf("c.jpg", [5.0, 2.5, 1.5], 90.0, 1.5),
            kf("d.jpg", [4.0, 5.0, 1.4], 170.0, -0.5),
            kf("e.jpg", [1.0, 4.0, 1.5], 200.0, 0.0),
        ]
    }

    fn settings(heading: Heading) -> PathSettings {
        PathSettings {
            speed_m_per_s: 1.0,
            ease_s: 1.0,
            heading,
        }
    }

    #[test]
    fn natural_spline_is_c2_and_interpolates() {
        let k = [0.0, 1.0, 2.5, 3.0, 5.0];
        let y = [0.0, 2.0, -1.0, 0.5, 3.0];
        let sp = CubicSpline::natural(&k, &y);
        for (ki, yi) in k.iter().zip(y) {
            assert!((sp.eval(*ki).0 - yi).abs() < 1e-12);
        }
        assert!(sp.eval(0.0).2.abs() < 1e-12 && sp.eval(5.0).2.abs() < 1e-12);
        for &ki in &k[1..4] {
            let e = 1e-7;
            let (a, b) = (sp.eval(ki - e), sp.eval(ki + e));
            assert!((a.1 - b.1).abs() < 1e-5, "first derivative jumps at {ki}");
            assert!((a.2 - b.2).abs() < 1e-5, "second derivative jumps at {ki}");
        }
    }

    #[test]
    fn passes_through_every_keyframe_within_1cm() {
        for heading in [Heading::Travel, Heading::Keyframes] {
            let path = CameraPath::new(venue_keyframes(), Vector3::z(), settings(heading)).unwrap();
            let frames = path.frames(30.0, None);
            for (k, u) in path.keyframes().iter().zip(path.keyframe_u()) {
                let t = path.t_of_s(path.s_of_u(*u));
                let p = Vector3::from(path.sample(t, None).center);
                let err = (p - k.pose.center()).norm();
                assert!(err < 0.01, "{}: {err} m from its keyframe", k.name);
                // And the rendered frames pass by it: nearest frame within half a frame step.
                let near = frames
                    .iter()
                    .map(|f| (Vector3::from(f.center) - k.pose.center()).norm())
                    .fold(f64::INFINITY, f64::min);
                assert!(
                    near < 0.5 / 30.0 + 0.01,
                    "{}: nearest frame {near} m",
                    k.name
                );
            }
        }
    }

    #[test]
    fn speed_is_constant_outside_the_ramps() {
        let path =
            CameraPath::new(venue_keyframes(), Vector3::z(), settings(Heading::Travel)).unwrap();
        let fps = 30.0;
        let frames = path.frames(fps, None);
        let tau = path.ease();
        let mut worst: f64 = 0.0;
        let mut checked = 0;
        for w in frames.windows(2) {
            if w[0].time_s >= tau && w[1].time_s <= path.duration() - tau {
                let d = (Vector3::from(w[1].center) - Vector3::from(w[0].center)).norm();
                let v = d / (w[1].time_s - w[0].time_s);
                worst = worst.max((v - 1.0).abs());
                checked += 1;
            }
        }
        println!(
            "speed: worst deviation {:.3} % over {checked} cruise frames",
            100.0 * worst
        );
        assert!(checked > 100, "{checked}");
        assert!(worst < 0.05, "speed deviates {worst:.4} from 1 m/s");
        // Sanity: the path is longer than the polygon's chords only a little, and the duration is
        // length / speed + ease.
        assert!(path.length() >= *path.keyframe_u().last().unwrap() - 1e-9);
        assert!((path.duration() - (path.length() + 1.0)).abs() < 1e-9);
        let n = frames.len() as f64;
        assert!((n / fps - path.duration()).abs() <= 1.0 / fps + 1e-9);
        // Starts and ends at rest: the first step is much shorter than a cruise step.
        let d0 = (Vector3::from(frames[1].center) - Vector3::from(frames[0].center)).norm();
        assert!(d0 < 0.2 / fps, "first step {d0}");
    }

    #[test]
    fn arc_length_inverse_round_trips() {
        let path =
            CameraPath::new(venue_keyframes(), Vector3::z(), settings(Heading::Travel)).unwrap();
        for k in 0..=50 {
            let s = path.length() * k as f64 / 50.0;
            let u = path.u_of_s(s);
            assert!((path.s_of_u(u) - s).abs() < 1e-9, "s={s}");
        }
    }

    #[test]
    fn no_orientation_flips() {
        for heading in [Heading::Travel, Heading::Keyframes] {
            let path = CameraPath::new(venue_keyframes(), Vector3::z(), settings(heading)).unwrap();
            let frames = path.frames(30.0, None);
            let mut worst: f64 = 0.0;
            for w in frames.windows(2) {
                worst = worst.max(w[0].pose().rotation_angle_to(&w[1].pose()));
            }
            println!(
                "{heading:?}: at most {:.2}° between frames",
                worst.to_degrees()
            );
            // 30 fps at 1 m/s through a 90° corner: well under 6° per frame; a flip would be ~180°.
            assert!(
                worst.to_degrees() < 6.0,
                "{heading:?}: {:.2}° between frames",
                worst.to_degrees()
            );
            // Travel heading is level: camera y is straight down.
            if heading == Heading::Travel {
                for f in &frames {
                    let up = f.pose().up();
                    assert!((up - Vector3::z()).norm() < 1e-9);
                }
            }
        }
    }

    #[test]
    fn keyframe_heading_reproduces_keyframe_orientations() {
        let path = CameraPath::new(
            venue_keyframes(),
            Vector3::z(),
            settings(Heading::Keyframes),
        )
        .unwrap();
        for (k, u) in path.keyframes().iter().zip(path.keyframe_u()) {
            let a = path.rotation(*u).angle_to(&k.pose.rotation);
            assert!(a < 1e-9, "{}: {a}", k.name);
        }
    }

    #[test]
    fn first_derivative_is_continuous() {
        let path =
            CameraPath::new(venue_keyframes(), Vector3::z(), settings(Heading::Travel)).unwrap();
        // Position as a function of time, differentiated numerically, across every keyframe and the
        // ease boundaries: left and right difference quotients agree.
        let pos = |t: f64| path.position(path.u_of_s(path.s_of_t(t)));
        let h = 1e-4;
        let mut ts: Vec<f64> = path
            .keyframe_u()
            .iter()
            .map(|u| path.t_of_s(path.s_of_u(*u)))
            .filter(|t| *t > 2.0 * h && *t < path.duration() - 2.0 * h)
            .collect();
        ts.extend([path.ease(), path.duration() - path.ease()]);
        ts.extend((1..40).map(|k| path.duration() * k as f64 / 40.0));
        for t in ts {
            let left = (pos(t) - pos(t - h)) / h;
            let right = (pos(t + h) - pos(t)) / h;
            // For a C1 curve the difference is O(h · |P''|); a kink would give O(1).
            assert!(
                (left - right).norm() < 1e-2,
                "velocity jumps at t={t}: {left:?} vs {right:?}"
            );
        }
        // And in u, both derivatives are continuous at the inner keyframes (C2).
        for &u in &path.keyframe_u()[1..path.keyframe_u().len() - 1] {
            let e = 1e-8;
            assert!((path.derivative(u - e) - path.derivative(u + e)).norm() < 1e-6);
            assert!((path.second_derivative(u - e) - path.second_derivative(u + e)).norm() < 1e-5);
        }
    }

    #[test]
    fn exposure_is_monotone_between_keyframes() {
        let path =
            CameraPath::new(venue_keyframes(), Vector3::z(), settings(Heading::Travel)).unwrap();
        let u = path.keyframe_u().to_vec();
        let evs: Vec<f64> = path.keyframes().iter().map(|k| k.ev).collect();
        for i in 0..u.len() - 1 {
            assert!((path.exposure(u[i]) - evs[i]).abs() < 1e-12);
            let (lo, hi) = (evs[i].min(evs[i + 1]), evs[i].max(evs[i + 1]));
            for j in 0..=20 {
                let e = path.exposure(u[i] + (u[i + 1] - u[i]) * j as f64 / 20.0);
                assert!(
                    e >= lo - 1e-12 && e <= hi + 1e-12,
                    "overshoot {e} not in [{lo}, {hi}]"
                );
            }
        }
    }

    #[test]
    fn clear_errors() {
        let one = vec![kf("a.jpg", [0.0; 3], 0.0, 0.0)];
        let e = CameraPath::new(one, Vector3::z(), settings(Heading::Travel)).unwrap_err();
        assert_eq!(e, PathError::TooFewKeyframes(1));
        assert!(e.to_string().contains("at least 2 keyframes"));
        let same = vec![
            kf("a.jpg", [1.0; 3], 0.0, 0.0),
            kf("b.jpg", [1.0; 3], 90.0, 0.0),
        ];
        let e = CameraPath::new(same, Vector3::z(), settings(Heading::Travel)).unwrap_err();
        assert!(e.to_string().contains("a.jpg, b.jpg"), "{e}");
    }

    #[test]
    fn short_path_shortens_the_ramps_and_max_frames_lowers_fps() {
        let two = vec![
            kf("a.jpg", [0.0; 3], 0.0, 0.0),
            kf("b.jpg", [0.3, 0.0, 0.0], 0.0, 0.0),
        ];
        let path = CameraPath::new(two, Vector3::z(), settings(Heading::Travel)).unwrap();
        assert!((path.length() - 0.3).abs() < 1e-9);
        assert!((path.ease() - 0.3).abs() < 1e-9);
        assert!((path.s_of_t(path.duration()) - 0.3).abs() < 1e-12);
        let fps = path.frame_rate(30.0, 5);
        assert_eq!(path.frames(fps, None).len(), 5);
        assert_eq!(path.frame_rate(30.0, 0), 30.0);
    }
}
