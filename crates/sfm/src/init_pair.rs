//! The initial image pair of an incremental reconstruction, searched the way COLMAP's
//! `IncrementalMapper::FindInitialImagePair` does it (Schönberger & Frahm 2016, §4.2 "Initialization"),
//! not among the globally best-matched pairs: in a dense walk those are all next-door neighbours
//! with almost no baseline.
//!
//! - Images are ordered by their number of correspondences (keypoints in a track), best first.
//! - For each image, its partners (verified pairs) are ordered by match count and their relative
//!   pose is estimated (five-point essential matrix in LO-MSAC, cheirality, two-view triangulation).
//! - A pair qualifies under a [`Criteria`]: enough triangulated inliers, median triangulation
//!   angle, at most `max_forward` forward motion (COLMAP `init_max_forward_motion`), and (except at
//!   the loosest level) a homography that explains less than `max_h_ratio` of the matches.
//! - The first image with a qualifying partner wins (its qualifying partner with the most inliers).
//!   When nothing qualifies the criteria are relaxed step by step over the geometries already
//!   estimated ([`criteria_ladder`]), then the search widens to the images not yet evaluated.
//!
//! Geometries are estimated lazily, in parallel per image, and cached: they depend only on the
//! verified matches and the initial intrinsics, so later searches (another initial pair after a
//! model failed to grow, a second model) reuse them.

use crate::ba::{self, Intrinsics};
use crate::geometry::essential::{eight_point_essential, five_point, pose_from_essential};
use crate::geometry::ransac::{RansacOptions, lo_msac};
use crate::geometry::triangulate::{triangulate_two_view_normalized, two_view_angle};
use crate::mapper::{MapperInput, VerifiedPair};
use nalgebra::{Matrix3, Vector2, Vector3};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};

/// Relative pose of a candidate pair with camera `i` at the origin.
#[derive(Clone, Debug)]
pub struct InitGeometry {
    /// Matches `(keypoint in i, keypoint in j)` that fit `E` and triangulate in front of both.
    pub inliers: Vec<(u32, u32)>,
    /// `x_j = R x_i + t`, `|t| = 1`.
    pub r: Matrix3<f64>,
    pub t: Vector3<f64>,
    pub median_angle_deg: f64,
}

/// What an initial pair must satisfy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Criteria {
    pub min_angle_deg: f64,
    pub min_points: usize,
    /// Homography inliers / verified matches must be below this (planar or rotation-only pairs);
    /// `None` drops the test.
    pub max_h_ratio: Option<f64>,
    /// `|t_z|` of the unit translation must be below this (COLMAP: 0.95).
    pub max_forward: f64,
}

/// Strict first, then relaxed: angle `start → 8 → 4 → 2`°, points `start → 50 → 30` for each angle,
/// and finally the same without the homography test (planar scenes: the five-point solver copes with
/// them, COLMAP decomposes H there).
pub fn criteria_ladder(min_angle_deg: f64, min_points: usize) -> Vec<Criteria> {
    let mut out = Vec::new();
    let mut angles = vec![min_angle_deg];
    angles.extend([8.0, 4.0, 2.0].into_iter().filter(|&a| a < min_angle_deg));
    let mut points = vec![min_points];
    points.extend([50, 30].into_iter().filter(|&p| p < min_points));
    for max_h_ratio in [Some(0.9), None] {
        for &a in &angles {
            for &p in &points {
                out.push(Criteria {
                    min_angle_deg: a,
                    min_points: p,
                    max_h_ratio,
                    max_forward: 0.95,
                });
            }
        }
    }
    out
}

/// Whether pair `pr` with geometry `g` qualifies under `c`.
pub fn qualifies(pr: &VerifiedPair, g: &InitGeometry, c: &Criteria) -> bool {
    g.median_angle_deg >= c.min_angle_deg
        && g.inliers.len() >= c.min_points
        && g.t.z.abs() < c.max_forward
        && c.max_h_ratio
            .is_none_or(|r| (pr.num_h_inliers as f64) < r * pr.matches.len() as f64)
}

/// Relative pose of a verified pair by the five-point solver in LO-MSAC on normalised coordinates
/// (threshold `max_error_px / f`), the cheirality test, and two-view triangulation of the inliers.
pub fn pair_geometry(
    keypoints: &[Vec<Vector2<f64>>],
    intr_i: &Intrinsics,
    intr_j: &Intrinsics,
    pr: &VerifiedPair,
    max_error_px: f64,
) -> Option<InitGeometry> {
    let x1: Vec<Vector2<f64>> = pr
        .matches
        .iter()
        .map(|&(a, _)| ba::pixel_to_normalized(intr_i, &keypoints[pr.i][a as usize]))
        .collect();
    let x2: Vec<Vector2<f64>> = pr
        .matches
        .iter()
        .map(|&(_, b)| ba::pixel_to_normalized(intr_j, &keypoints[pr.j][b as usize]))
        .collect();
    let thr = max_error_px / (0.5 * (intr_i[0] + intr_j[0]));
    let res = lo_msac(
        x1.len(),
        5,
        &RansacOptions {
            max_error: thr,
            seed: (pr.i * 1000 + pr.j) as u64,
            max_trials: 2000,
            ..Default::default()
        },
        |s| {
            let a: Vec<_> = s.iter().map(|&i| x1[i]).collect();
            let b: Vec<_> = s.iter().map(|&i| x2[i]).collect();
            five_point(&a, &b)
        },
        |e, i| crate::geometry::sampson_sq(e, &x1[i], &x2[i]),
        |_, idx| {
            let a: Vec<_> = idx.iter().map(|&i| x1[i]).collect();
            let b: Vec<_> = idx.iter().map(|&i| x2[i]).collect();
            eight_point_essential(&a, &b)
        },
    )?;
    let idx: Vec<usize> = (0..x1.len()).filter(|&i| res.inliers[i]).collect();
    let a: Vec<_> = idx.iter().map(|&i| x1[i]).collect();
    let b: Vec<_> = idx.iter().map(|&i| x2[i]).collect();
    let (r, t, front) = pose_from_essential(&res.model, &a, &b);
    let mut angles = Vec::new();
    let mut inliers = Vec::new();
    for (k, &i) in idx.iter().enumerate() {
        if !front[k] {
            continue;
        }
        if let Some(x) = triangulate_two_view_normalized(&r, &t, &a[k], &b[k]) {
            angles.push(two_view_angle(&r, &t, &x).to_degrees());
            inliers.push(pr.matches[i]);
        }
    }
    if angles.is_empty() {
        return None;
    }
    angles.sort_by(f64::total_cmp);
    Some(InitGeometry {
        inliers,
        r,
        t: t.normalize(),
        median_angle_deg: angles[angles.len() / 2],
    })
}

/// The search state: image order, partners per image, and the cache of estimated geometries.
pub struct InitSearch<'a> {
    input: &'a MapperInput,
    max_error_px: f64,
    ladder: Vec<Criteria>,
    /// Images, most correspondences first.
    order: Vec<usize>,
    /// Per image: indices into `input.pairs`, most matches first.
    partners: Vec<Vec<usize>>,
    cache: HashMap<usize, Option<InitGeometry>>,
    /// Geometries estimated before the relaxed levels are tried (then the rest, if needed).
    budget: usize,
    pub evaluated: usize,
}

/// The chosen pair: index into `input.pairs`, its geometry, and the criteria it met.
#[derive(Clone, Debug)]
pub struct InitChoice {
    pub pair: usize,
    pub geometry: InitGeometry,
    pub criteria: Criteria,
}

impl<'a> InitSearch<'a> {
    /// `correspondences[i]`: keypoints of image `i` that belong to a track.
    pub fn new(
        input: &'a MapperInput,
        correspondences: &[usize],
        max_error_px: f64,
        ladder: Vec<Criteria>,
        budget: usize,
    ) -> Self {
        let n = input.keypoints.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(correspondences[i]), i));
        let mut partners = vec![Vec::new(); n];
        for (k, p) in input.pairs.iter().enumerate() {
            partners[p.i].push(k);
            partners[p.j].push(k);
        }
        for ps in &mut partners {
            ps.sort_by_key(|&k| (std::cmp::Reverse(input.pairs[k].matches.len()), k));
        }
        InitSearch {
            input,
            max_error_px,
            ladder,
            order,
            partners,
            cache: HashMap::new(),
            budget,
            evaluated: 0,
        }
    }

    /// Candidate pairs of image `img`: both images usable, not tried, enough matches for the
    /// loosest criteria.
    fn candidates(&self, img: usize, usable: &[bool], tried: &HashSet<usize>) -> Vec<usize> {
        let min_points = self.ladder.iter().map(|c| c.min_points).min().unwrap_or(30);
        self.partners[img]
            .iter()
            .copied()
            .filter(|&k| {
                let p = &self.input.pairs[k];
                usable[p.i] && usable[p.j] && !tried.contains(&k) && p.matches.len() >= min_points
            })
            .collect()
    }

    /// Estimate the geometries of `pairs` not yet in the cache (in parallel).
    fn evaluate(&mut self, pairs: &[usize]) {
        let todo: Vec<usize> = pairs
            .iter()
            .copied()
            .filter(|k| !self.cache.contains_key(k))
            .collect();
        let input = self.input;
        let thr = self.max_error_px;
        let got: Vec<(usize, Option<InitGeometry>)> = todo
            .par_iter()
            .map(|&k| {
                let pr = &input.pairs[k];
                let g = pair_geometry(
                    &input.keypoints,
                    &input.intrinsics[input.image_camera[pr.i]],
                    &input.intrinsics[input.image_camera[pr.j]],
                    pr,
                    thr,
                );
                (k, g)
            })
            .collect();
        self.evaluated += got.len();
        self.cache.extend(got);
    }

    /// Among the evaluated candidates of `img`, the one meeting `c` with the most inliers.
    fn best_of(&self, cands: &[usize], c: &Criteria) -> Option<InitChoice> {
        cands
            .iter()
            .filter_map(|&k| Some((k, self.cache.get(&k)?.as_ref()?)))
            .filter(|(k, g)| qualifies(&self.input.pairs[*k], g, c))
            .max_by_key(|(k, g)| (g.inliers.len(), std::cmp::Reverse(*k)))
            .map(|(k, g)| InitChoice {
                pair: k,
                geometry: g.clone(),
                criteria: *c,
            })
    }

    /// The next initial pair among `usable` images, skipping `tried` pairs; `Err` describes the
    /// best pairs seen when none qualifies.
    pub fn find(&mut self, usable: &[bool], tried: &HashSet<usize>) -> Result<InitChoice, String> {
        let order: Vec<usize> = self.order.iter().copied().filter(|&i| usable[i]).collect();
        let strict = self.ladder[0];
        let mut next = 0;
        // 1. Strict criteria, image by image, within the evaluation budget.
        while next < order.len() && self.evaluated < self.budget {
            let cands = self.candidates(order[next], usable, tried);
            next += 1;
            self.evaluate(&cands);
            if let Some(c) = self.best_of(&cands, &strict) {
                return Ok(c);
            }
        }
        // 2. Relaxed criteria over what has been evaluated.
        let ladder = self.ladder.clone();
        for c in &ladder[1..] {
            for &img in &order[..next] {
                let cands = self.candidates(img, usable, tried);
                if let Some(ch) = self.best_of(&cands, c) {
                    return Ok(ch);
                }
            }
        }
        // 3. Widen: the images not evaluated yet (budget spent), every level per image.
        while next < order.len() {
            let cands = self.candidates(order[next], usable, tried);
            next += 1;
            self.evaluate(&cands);
            for c in &ladder {
                if let Some(ch) = self.best_of(&cands, c) {
                    return Ok(ch);
                }
            }
        }
        let mut seen: Vec<(usize, &InitGeometry)> = self
            .cache
            .iter()
            .filter(|(k, _)| {
                let p = &self.input.pairs[**k];
                usable[p.i] && usable[p.j] && !tried.contains(k)
            })
            .filter_map(|(k, g)| Some((*k, g.as_ref()?)))
            .collect();
        let loosest = ladder.last().copied().unwrap_or(strict);
        if seen.is_empty() {
            let n = order
                .iter()
                .map(|&i| self.candidates(i, usable, tried).len())
                .sum::<usize>()
                / 2;
            return Err(format!(
                "{} verified pairs, {n} with >= {} matches among the photos left, none with a usable relative pose",
                self.input.pairs.len(),
                loosest.min_points
            ));
        }
        seen.sort_by(|a, b| {
            b.1.median_angle_deg
                .min(20.0)
                .total_cmp(&a.1.median_angle_deg.min(20.0))
                .then(b.1.inliers.len().cmp(&a.1.inliers.len()))
        });
        let best = seen
            .iter()
            .take(3)
            .map(|(k, g)| {
                let p = &self.input.pairs[*k];
                format!(
                    "{}-{}: {} points, median angle {:.1}°",
                    p.i,
                    p.j,
                    g.inliers.len(),
                    g.median_angle_deg
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        Err(format!(
            "no pair with >= {} triangulated points at >= {}° median angle among {} evaluated pairs (best: {best})",
            loosest.min_points,
            loosest.min_angle_deg,
            seen.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_is_strict_first_and_ends_without_the_homography_test() {
        let l = criteria_ladder(16.0, 100);
        assert_eq!(l[0].min_angle_deg, 16.0);
        assert_eq!(l[0].min_points, 100);
        assert_eq!(l[0].max_h_ratio, Some(0.9));
        let last = l.last().unwrap();
        assert_eq!((last.min_angle_deg, last.min_points), (2.0, 30));
        assert_eq!(last.max_h_ratio, None);
        assert_eq!(l.len(), 2 * 4 * 3);
        // Relaxation never tightens within one homography setting.
        for w in l[..12].windows(2) {
            assert!(w[1].min_angle_deg <= w[0].min_angle_deg);
        }
    }
}
