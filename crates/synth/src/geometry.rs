//! Analytic ray-primitive intersection in world coordinates (metres, +z up).
//!
//! Naming: a ray is `o + t d` with `d` of unit length, so `t` is a distance in metres. Every
//! primitive returns the nearest `t > T_MIN`, the outward normal (not yet flipped towards the ray),
//! surface coordinates `(u, v)` in metres (for textures) and which face was hit (for boxes).

use nalgebra::Vector3;

pub type V3 = Vector3<f64>;

/// Smallest accepted hit distance (avoids self-hits of rays that start on a surface).
pub const T_MIN: f64 = 1e-6;

/// A local hit on one primitive.
#[derive(Debug, Clone, Copy)]
pub struct LocalHit {
    pub t: f64,
    pub normal: V3,
    pub u: f64,
    pub v: f64,
    /// Box: `2 axis + (1 if the max side)`; cylinder: 0 side, 1 bottom, 2 top; others 0.
    pub face: u8,
}

/// The primitives of the synthetic room.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// A rectangle `o + a eu + b ev`, `0 <= a <= su`, `0 <= b <= sv`, normal `n`; `(u, v) = (a, b)`.
    Quad {
        o: V3,
        eu: V3,
        ev: V3,
        su: f64,
        sv: f64,
        n: V3,
    },
    /// An axis-aligned box.
    Box { min: V3, max: V3 },
    /// A vertical cylinder with caps; `u` is arc length around it, `v` height.
    Cylinder {
        cx: f64,
        cy: f64,
        r: f64,
        z0: f64,
        z1: f64,
    },
    /// A sphere; `u` is longitude x radius, `v` latitude x radius.
    Sphere { c: V3, r: f64 },
}

impl Shape {
    /// A quad whose front faces along `n` with `u` running to the viewer's right (`z x n`) and `v`
    /// up (+z), lower-left corner at `o` (as seen from the front). `n` must be horizontal.
    pub fn wall_quad(o: V3, n: V3, su: f64, sv: f64) -> Shape {
        let ev = V3::z();
        let eu = ev.cross(&n).normalize();
        Shape::Quad {
            o,
            eu,
            ev,
            su,
            sv,
            n,
        }
    }

    /// Nearest intersection with `t > T_MIN` and `t < t_max`.
    pub fn intersect(&self, o: &V3, d: &V3, t_max: f64) -> Option<LocalHit> {
        match self {
            Shape::Quad {
                o: q,
                eu,
                ev,
                su,
                sv,
                n,
            } => {
                let denom = d.dot(n);
                if denom.abs() < 1e-12 {
                    return None;
                }
                let t = (q - o).dot(n) / denom;
                if t <= T_MIN || t >= t_max {
                    return None;
                }
                let rel = o + d * t - q;
                let (a, b) = (rel.dot(eu), rel.dot(ev));
                if a < 0.0 || b < 0.0 || a > *su || b > *sv {
                    return None;
                }
                Some(LocalHit {
                    t,
                    normal: *n,
                    u: a,
                    v: b,
                    face: 0,
                })
            }
            Shape::Box { min, max } => {
                let mut t0 = f64::NEG_INFINITY;
                let mut t1 = f64::INFINITY;
                let mut axis0 = 0usize;
                let mut side0 = false;
                let mut axis1 = 0usize;
                let mut side1 = false;
                for k in 0..3 {
                    if d[k].abs() < 1e-15 {
                        if o[k] < min[k] || o[k] > max[k] {
                            return None;
                        }
                        continue;
                    }
                    let inv = 1.0 / d[k];
                    let (mut ta, mut tb) = ((min[k] - o[k]) * inv, (max[k] - o[k]) * inv);
                    // Which side is entered first.
                    let mut enter_max = false;
                    if ta > tb {
                        std::mem::swap(&mut ta, &mut tb);
                        enter_max = true;
                    }
                    if ta > t0 {
                        t0 = ta;
                        axis0 = k;
                        side0 = enter_max;
                    }
                    if tb < t1 {
                        t1 = tb;
                        axis1 = k;
                        side1 = !enter_max;
                    }
                }
                if t0 > t1 {
                    return None;
                }
                let (t, axis, side) = if t0 > T_MIN {
                    (t0, axis0, side0)
                } else if t1 > T_MIN {
                    (t1, axis1, side1)
                } else {
                    return None;
                };
                if t >= t_max {
                    return None;
                }
                let p = o + d * t;
                let mut normal = V3::zeros();
                normal[axis] = if side { 1.0 } else { -1.0 };
                let (u, v) = match axis {
                    0 => (p.y, p.z),
                    1 => (p.x, p.z),
                    _ => (p.x, p.y),
                };
                Some(LocalHit {
                    t,
                    normal,
                    u,
                    v,
                    face: (2 * axis + side as usize) as u8,
                })
            }
            Shape::Cylinder { cx, cy, r, z0, z1 } => {
                let mut best: Option<LocalHit> = None;
                let (ox, oy) = (o.x - cx, o.y - cy);
                let a = d.x * d.x + d.y * d.y;
                if a > 1e-15 {
                    let b = ox * d.x + oy * d.y;
                    let c = ox * ox + oy * oy - r * r;
                    let disc = b * b - a * c;
                    if disc >= 0.0 {
                        let s = disc.sqrt();
                        for t in [(-b - s) / a, (-b + s) / a] {
                            if t > T_MIN && t < t_max {
                                let z = o.z + d.z * t;
                                if z >= *z0 && z <= *z1 {
                                    let (px, py) = (ox + d.x * t, oy + d.y * t);
                                    best = Some(LocalHit {
                                        t,
                                        normal: V3::new(px / r, py / r, 0.0),
                                        u: py.atan2(px) * r,
                                        v: z,
                                        face: 0,
                                    });
                                    break;
                                }
                            }
                        }
                    }
                }
                if d.z.abs() > 1e-15 {
                    for (zc, nz, face) in [(*z0, -1.0, 1u8), (*z1, 1.0, 2u8)] {
                        let t = (zc - o.z) / d.z;
                        let limit = best.map_or(t_max, |h| h.t);
                        if t > T_MIN && t < limit {
                            let (px, py) = (ox + d.x * t, oy + d.y * t);
                            if px * px + py * py <= r * r {
                                best = Some(LocalHit {
                                    t,
                                    normal: V3::new(0.0, 0.0, nz),
                                    u: px,
                                    v: py,
                                    face,
                                });
                            }
                        }
                    }
                }
                best
            }
            Shape::Sphere { c, r } => {
                let oc = o - c;
                let b = oc.dot(d);
                let cc = oc.norm_squared() - r * r;
                let disc = b * b - cc;
                if disc < 0.0 {
                    return None;
                }
                let s = disc.sqrt();
                let t = if -b - s > T_MIN { -b - s } else { -b + s };
                if t <= T_MIN || t >= t_max {
                    return None;
                }
                let n = (oc + d * t) / *r;
                Some(LocalHit {
                    t,
                    normal: n,
                    u: n.y.atan2(n.x) * r,
                    v: n.z.clamp(-1.0, 1.0).asin() * r,
                    face: 0,
                })
            }
        }
    }

    /// Axis-aligned bounds `(min, max)`.
    pub fn bounds(&self) -> (V3, V3) {
        match self {
            Shape::Quad {
                o, eu, ev, su, sv, ..
            } => {
                let pts = [*o, o + eu * *su, o + ev * *sv, o + eu * *su + ev * *sv];
                let mut lo = pts[0];
                let mut hi = pts[0];
                for p in &pts[1..] {
                    lo = lo.inf(p);
                    hi = hi.sup(p);
                }
                (lo, hi)
            }
            Shape::Box { min, max } => (*min, *max),
            Shape::Cylinder { cx, cy, r, z0, z1 } => {
                (V3::new(cx - r, cy - r, *z0), V3::new(cx + r, cy + r, *z1))
            }
            Shape::Sphere { c, r } => (c - V3::repeat(*r), c + V3::repeat(*r)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_on_surface(s: &Shape, o: V3, d: V3, expect_t: f64) {
        let d = d.normalize();
        let h = s.intersect(&o, &d, f64::INFINITY).expect("hit");
        assert!(
            (h.t - expect_t).abs() < 1e-9,
            "{s:?}: t {} vs {expect_t}",
            h.t
        );
        assert!((h.normal.norm() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn primitives_hit_where_expected() {
        let o = V3::new(0.0, 0.0, 1.0);
        let b = Shape::Box {
            min: V3::new(2.0, -1.0, 0.0),
            max: V3::new(3.0, 1.0, 2.0),
        };
        check_on_surface(&b, o, V3::x(), 2.0);
        let h = b.intersect(&o, &V3::x(), 10.0).unwrap();
        assert_eq!(h.normal, -V3::x());
        assert!(b.intersect(&o, &V3::x(), 1.5).is_none());
        let c = Shape::Cylinder {
            cx: 3.0,
            cy: 0.0,
            r: 0.5,
            z0: 0.0,
            z1: 2.0,
        };
        check_on_surface(&c, o, V3::x(), 2.5);
        // From above onto the top cap.
        let h = c
            .intersect(&V3::new(3.1, 0.0, 5.0), &-V3::z(), 10.0)
            .unwrap();
        assert!((h.t - 3.0).abs() < 1e-12 && h.face == 2);
        let s = Shape::Sphere {
            c: V3::new(0.0, 4.0, 1.0),
            r: 1.0,
        };
        check_on_surface(&s, o, V3::y(), 3.0);
        // Facing -x, the viewer's left is +y: the lower-left corner is at y = +1.
        let q = Shape::wall_quad(V3::new(5.0, 1.0, 0.0), -V3::x(), 2.0, 2.0);
        check_on_surface(&q, o, V3::x(), 5.0);
        // u runs to the viewer's right: looking along +x with z up, right is -y.
        let h = q.intersect(&o, &V3::x(), 10.0).unwrap();
        assert!((h.u - 1.0).abs() < 1e-12 && (h.v - 1.0).abs() < 1e-12);
        let h2 = q
            .intersect(&o, &V3::new(1.0, -0.1, 0.0).normalize(), 10.0)
            .unwrap();
        assert!(h2.u > h.u);
    }
}
