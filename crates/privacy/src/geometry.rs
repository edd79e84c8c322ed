//! Boxes in pixels of the upright photo: `x, y` is the top-left corner, `w, h` the size, all `f32`
//! (sub-pixel, as detectors return them). [`iou`] and [`nms`] are the usual intersection-over-union
//! and greedy non-maximum suppression (Neubeck & Van Gool 2006).

use serde::{Deserialize, Serialize};

/// An axis-aligned box `[x, y, w, h]` in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoxF {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl BoxF {
    pub fn new(x: f32, y: f32, w: f32, h: f32) -> Self {
        BoxF { x, y, w, h }
    }
    /// From an integer `[x, y, w, h]` (config overrides, test boxes).
    pub fn from_rect(r: [u32; 4]) -> Self {
        BoxF::new(r[0] as f32, r[1] as f32, r[2] as f32, r[3] as f32)
    }
    pub fn area(&self) -> f32 {
        self.w.max(0.0) * self.h.max(0.0)
    }
    pub fn cx(&self) -> f32 {
        self.x + 0.5 * self.w
    }
    pub fn cy(&self) -> f32 {
        self.y + 0.5 * self.h
    }
    /// The box grown by `pad` times its size on every side (`pad = 0.25`: 1.5x as wide and tall).
    pub fn padded(&self, pad: f32) -> BoxF {
        BoxF::new(
            self.x - pad * self.w,
            self.y - pad * self.h,
            self.w * (1.0 + 2.0 * pad),
            self.h * (1.0 + 2.0 * pad),
        )
    }
    /// Scale all coordinates by `s` (map between pyramid levels).
    pub fn scaled(&self, sx: f32, sy: f32) -> BoxF {
        BoxF::new(self.x * sx, self.y * sy, self.w * sx, self.h * sy)
    }
    /// Whether the point lies inside the box.
    pub fn contains(&self, x: f32, y: f32) -> bool {
        x >= self.x && x <= self.x + self.w && y >= self.y && y <= self.y + self.h
    }
    /// `[x, y, w, h]` rounded to 0.1 px, for JSON.
    pub fn to_array(&self) -> [f32; 4] {
        let r = |v: f32| (v * 10.0).round() / 10.0;
        [r(self.x), r(self.y), r(self.w), r(self.h)]
    }
}

/// Intersection over union of two boxes (0 when either is empty).
pub fn iou(a: &BoxF, b: &BoxF) -> f32 {
    let x0 = a.x.max(b.x);
    let y0 = a.y.max(b.y);
    let x1 = (a.x + a.w).min(b.x + b.w);
    let y1 = (a.y + a.h).min(b.y + b.h);
    let inter = (x1 - x0).max(0.0) * (y1 - y0).max(0.0);
    let union = a.area() + b.area() - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Greedy non-maximum suppression: sort by score (descending), keep a box unless it overlaps an
/// already kept one with IoU >= `thresh`, or lies mostly (>= 70 % of its area) inside a kept one of
/// higher score (a face part found again at a finer pyramid level). Returns the kept items.
pub fn nms<T: Clone>(items: &[T], bx: impl Fn(&T) -> (BoxF, f32), thresh: f32) -> Vec<T> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&i, &j| bx(&items[j]).1.total_cmp(&bx(&items[i]).1));
    let mut kept: Vec<usize> = Vec::new();
    'next: for i in order {
        let (bi, _) = bx(&items[i]);
        for &k in &kept {
            let (bk, _) = bx(&items[k]);
            if iou(&bi, &bk) >= thresh || inside_fraction(&bi, &bk) >= 0.7 {
                continue 'next;
            }
        }
        kept.push(i);
    }
    kept.into_iter().map(|i| items[i].clone()).collect()
}

/// Fraction of `a`'s area that lies inside `b`.
pub fn inside_fraction(a: &BoxF, b: &BoxF) -> f32 {
    let x0 = a.x.max(b.x);
    let y0 = a.y.max(b.y);
    let x1 = (a.x + a.w).min(b.x + b.w);
    let y1 = (a.y + a.h).min(b.y + b.h);
    let inter = (x1 - x0).max(0.0) * (y1 - y0).max(0.0);
    if a.area() <= 0.0 {
        0.0
    } else {
        inter / a.area()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_known_boxes() {
        let a = BoxF::new(0.0, 0.0, 10.0, 10.0);
        assert_eq!(iou(&a, &a), 1.0);
        let b = BoxF::new(5.0, 0.0, 10.0, 10.0);
        assert!((iou(&a, &b) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(iou(&a, &BoxF::new(20.0, 20.0, 5.0, 5.0)), 0.0);
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let items = vec![
            (BoxF::new(0.0, 0.0, 10.0, 10.0), 0.6),
            (BoxF::new(1.0, 1.0, 10.0, 10.0), 0.9),
            (BoxF::new(50.0, 50.0, 10.0, 10.0), 0.7),
            (BoxF::new(52.0, 52.0, 3.0, 3.0), 0.5), // inside the previous one, lower score
            (BoxF::new(80.0, 80.0, 3.0, 3.0), 0.4),
        ];
        let kept = nms(&items, |t| *t, 0.3);
        let scores: Vec<f32> = kept.iter().map(|t| t.1).collect();
        assert_eq!(scores, vec![0.9, 0.7, 0.4]);
    }
}
