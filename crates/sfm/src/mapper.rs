//! Incremental mapping (COLMAP `controllers/incremental_pipeline` + `sfm/incremental_mapper`
//! style, simplified to whole feature tracks as in OpenMVG): it orchestrates the solvers of
//! [`crate::geometry`] and the bundle adjuster of [`crate::ba`].
//!
//! Vocabulary: an *image* has keypoints (pixels, full resolution); a *track* is a set of
//! `(image, keypoint)` observations linked by verified matches (union-find over all pairs, at most
//! one keypoint per image); a track becomes a *point* once triangulated. Each observation of a point
//! is *active* (used in BA) or not (outlier or unregistered image).

use crate::ba::{self, BaData, BaOptions, Intrinsics, Obs};
use crate::geometry::pnp::estimate_absolute_pose;
use crate::geometry::ransac::{RansacOptions, lo_msac};
use crate::geometry::triangulate::triangulate_dlt;
use crate::init_pair::{InitChoice, InitSearch, criteria_ladder};
use nalgebra::{Matrix3, Vector2, Vector3};
use std::collections::{HashMap, HashSet};

/// A verified image pair: inlier matches `(keypoint in i, keypoint in j)`.
#[derive(Clone, Debug)]
pub struct VerifiedPair {
    pub i: usize,
    pub j: usize,
    pub matches: Vec<(u32, u32)>,
    pub num_h_inliers: usize,
}

#[derive(Clone, Debug)]
pub struct MapperOptions {
    /// Pixel thresholds below are multiplied by this (full-resolution pixels per feature pixel).
    pub pixel_scale: f64,
    /// Inlier threshold of the initial pair's essential matrix and of filtering (px).
    pub max_error_px: f64,
    /// PnP RANSAC threshold (px).
    pub abs_pose_max_error_px: f64,
    pub abs_pose_min_inliers: usize,
    pub init_min_tri_angle_deg: f64,
    pub init_min_points: usize,
    pub min_tri_angle_deg: f64,
    pub local_ba_images: usize,
    pub local_ba_iterations: usize,
    pub global_ba_iterations: usize,
    /// Global BA when the number of registered images grew by this factor.
    pub global_ba_ratio: f64,
    /// Refine `[f, k1, k2]` once this many images are registered.
    pub refine_intrinsics_after: usize,
    /// A model with fewer photos (or 80 % of all photos, if less) counts as failed to grow: another
    /// initial pair is tried (COLMAP `min_model_size`).
    pub min_model_size: usize,
    /// Initial pairs tried per model before the largest result is kept.
    pub init_trials: usize,
    /// Initial pairs tried in all (bounds the time spent on photos that do not connect).
    pub max_init_attempts: usize,
    /// Start further models on the photos no model holds (COLMAP `multiple_models`).
    pub multiple_models: bool,
    /// Pair geometries estimated at the strict initial-pair criteria before relaxing them.
    pub init_eval_budget: usize,
}

impl Default for MapperOptions {
    fn default() -> Self {
        MapperOptions {
            pixel_scale: 1.0,
            max_error_px: 4.0,
            abs_pose_max_error_px: 12.0,
            abs_pose_min_inliers: 30,
            init_min_tri_angle_deg: 16.0,
            init_min_points: 100,
            min_tri_angle_deg: 1.5,
            local_ba_images: 6,
            local_ba_iterations: 25,
            global_ba_iterations: 50,
            global_ba_ratio: 1.2,
            refine_intrinsics_after: 3,
            min_model_size: 10,
            init_trials: 3,
            max_init_attempts: 10,
            multiple_models: true,
            init_eval_budget: 400,
        }
    }
}

/// The mapper's input: keypoints per image, camera of each image, initial intrinsics.
#[derive(Clone, Debug)]
pub struct MapperInput {
    pub keypoints: Vec<Vec<Vector2<f64>>>,
    pub image_camera: Vec<usize>,
    pub intrinsics: Vec<Intrinsics>,
    pub pairs: Vec<VerifiedPair>,
}

/// One triangulated point.
#[derive(Clone, Debug)]
pub struct MapPoint {
    pub xyz: Vector3<f64>,
    /// Active observations `(image, keypoint)`.
    pub obs: Vec<(usize, usize)>,
    /// Mean reprojection error (px).
    pub error: f64,
}

/// The mapper's result.
#[derive(Clone, Debug)]
pub struct MapperOutput {
    pub intrinsics: Vec<Intrinsics>,
    pub poses: Vec<Option<(Matrix3<f64>, Vector3<f64>)>>,
    pub points: Vec<MapPoint>,
    /// Why each unregistered image failed.
    pub failures: HashMap<usize, String>,
    pub init_pair: (usize, usize),
    /// Photos of the other, smaller models (largest first), which were not kept.
    pub other_models: Vec<Vec<usize>>,
    pub timings: Vec<(String, f64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum MapperError {
    #[error("no valid initial pair: {0}")]
    NoInitialPair(String),
}

/// Union-find tracks from pairwise matches; conflicting observations (two keypoints of one image
/// in a track) keep the first one.
pub fn build_tracks(keypoint_counts: &[usize], pairs: &[VerifiedPair]) -> Vec<Vec<(usize, usize)>> {
    let mut offset = vec![0usize; keypoint_counts.len() + 1];
    for (i, n) in keypoint_counts.iter().enumerate() {
        offset[i + 1] = offset[i] + n;
    }
    let mut parent: Vec<u32> = (0..offset[keypoint_counts.len()] as u32).collect();
    fn find(p: &mut [u32], mut x: u32) -> u32 {
        while p[x as usize] != x {
            p[x as usize] = p[p[x as usize] as usize];
            x = p[x as usize];
        }
        x
    }
    for pr in pairs {
        for &(a, b) in &pr.matches {
            let ra = find(&mut parent, (offset[pr.i] + a as usize) as u32);
            let rb = find(&mut parent, (offset[pr.j] + b as usize) as u32);
            if ra != rb {
                parent[ra.max(rb) as usize] = ra.min(rb);
            }
        }
    }
    let mut groups: HashMap<u32, Vec<(usize, usize)>> = HashMap::new();
    for (img, w) in offset.windows(2).enumerate() {
        for node in w[0]..w[1] {
            let r = find(&mut parent, node as u32);
            groups.entry(r).or_default().push((img, node - w[0]));
        }
    }
    let mut tracks: Vec<Vec<(usize, usize)>> = groups
        .into_values()
        .filter_map(|mut t| {
            t.sort();
            t.dedup_by_key(|o| o.0);
            (t.len() >= 2).then_some(t)
        })
        .collect();
    tracks.sort();
    tracks
}

/// Whether the largest triangulation angle at `x` over all pairs of camera centres reaches
/// `min_angle` (radians): unit rays `u_k = (x − c_k)/|x − c_k|`, some pair with
/// `u_a·u_b <= cos(min_angle)`; stops at the first such pair (the filters only need the test, and
/// long tracks in dense walks made the all-pairs maximum with `acos` a hot spot).
fn max_angle_reaches(centers: &[Vector3<f64>], x: &Vector3<f64>, min_angle: f64) -> bool {
    let cos_min = min_angle.cos();
    let rays: Vec<Vector3<f64>> = centers
        .iter()
        .filter_map(|c| (x - c).try_normalize(1e-300))
        .collect();
    // The first ray against all others first: in a track the extreme views are usually far apart
    // in the list, so most calls stop within this row.
    for a in 0..rays.len() {
        for b in a + 1..rays.len() {
            if rays[a].dot(&rays[b]) <= cos_min {
                return true;
            }
        }
    }
    false
}

struct State<'a> {
    input: &'a MapperInput,
    opts: &'a MapperOptions,
    intr: Vec<Intrinsics>,
    poses: Vec<Option<(Matrix3<f64>, Vector3<f64>)>>,
    tracks: Vec<Vec<(usize, usize)>>,
    /// Per image, per keypoint: track index or `usize::MAX`.
    kp_track: Vec<Vec<usize>>,
    point: Vec<Option<Vector3<f64>>>,
    /// Per track, per observation: active in the point.
    active: Vec<Vec<bool>>,
    /// Reprojection threshold of [`State::filter`] (px).
    filter_px: f64,
    /// Seconds spent in bundle adjustment, filtering, triangulation and registration.
    clock: [f64; 4],
    /// Tracks whose points the last bundle adjustment refined.
    adjusted: Vec<usize>,
}

impl State<'_> {
    fn thr(&self, px: f64) -> f64 {
        px * self.opts.pixel_scale
    }
    fn normalized(&self, img: usize, kp: usize) -> Vector2<f64> {
        ba::pixel_to_normalized(
            &self.intr[self.input.image_camera[img]],
            &self.input.keypoints[img][kp],
        )
    }
    fn reproj_err(&self, img: usize, kp: usize, x: &Vector3<f64>) -> f64 {
        let (r, t) = self.poses[img].expect("registered");
        match ba::project(&self.intr[self.input.image_camera[img]], &r, &t, x) {
            Some(p) => (p - self.input.keypoints[img][kp]).norm(),
            None => f64::INFINITY,
        }
    }
    fn center(&self, img: usize) -> Vector3<f64> {
        let (r, t) = self.poses[img].expect("registered");
        -r.transpose() * t
    }
    fn num_registered(&self) -> usize {
        self.poses.iter().filter(|p| p.is_some()).count()
    }

    /// Triangulate track `tk` from its registered observations (multi-view DLT, then the
    /// reprojection, cheirality and triangulation-angle checks; a few two-view hypotheses when the
    /// all-view DLT is spoiled by an outlier). Returns whether a point was made.
    fn triangulate_track(&mut self, tk: usize) -> bool {
        let obs: Vec<(usize, usize, usize)> = self.tracks[tk]
            .iter()
            .enumerate()
            .filter(|(_, (img, _))| self.poses[*img].is_some())
            .map(|(q, &(img, kp))| (q, img, kp))
            .collect();
        if obs.len() < 2 {
            return false;
        }
        let thr = self.thr(self.opts.max_error_px);
        let min_angle = self.opts.min_tri_angle_deg.to_radians();
        let try_subset =
            |st: &Self, sub: &[(usize, usize, usize)]| -> Option<(Vector3<f64>, Vec<usize>)> {
                let views: Vec<_> = sub
                    .iter()
                    .map(|&(_, img, _)| st.poses[img].expect("registered"))
                    .collect();
                let xs: Vec<_> = sub
                    .iter()
                    .map(|&(_, img, kp)| st.normalized(img, kp))
                    .collect();
                let x = triangulate_dlt(&views, &xs)?;
                let inl: Vec<usize> = obs
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, img, kp))| st.reproj_err(*img, *kp, &x) < thr)
                    .map(|(k, _)| k)
                    .collect();
                Some((x, inl))
            };
        let mut best = try_subset(self, &obs);
        if best.as_ref().is_none_or(|b| b.1.len() < obs.len()) && obs.len() > 2 {
            let m = obs.len().min(6);
            for a in 0..m {
                for b in a + 1..m {
                    if let Some(c) = try_subset(self, &[obs[a], obs[b]])
                        && best.as_ref().is_none_or(|bb| c.1.len() > bb.1.len())
                    {
                        best = Some(c);
                    }
                }
            }
        }
        let Some((mut x, mut inl)) = best else {
            return false;
        };
        if inl.len() < 2 {
            return false;
        }
        if inl.len() < obs.len() {
            let sub: Vec<_> = inl.iter().map(|&k| obs[k]).collect();
            if let Some((x2, inl2)) = try_subset(self, &sub)
                && inl2.len() >= inl.len()
            {
                x = x2;
                inl = inl2;
            }
        }
        if inl.len() < 2 {
            return false;
        }
        let centers: Vec<_> = inl.iter().map(|&k| self.center(obs[k].1)).collect();
        if !max_angle_reaches(&centers, &x, min_angle) {
            return false;
        }
        let mut act = vec![false; self.tracks[tk].len()];
        for &k in &inl {
            act[obs[k].0] = true;
        }
        self.point[tk] = Some(x);
        self.active[tk] = act;
        true
    }

    /// Add the observations of image `img` to existing points when they reproject within the
    /// threshold, and triangulate tracks that now have two registered views.
    fn extend_and_triangulate(&mut self, img: usize) -> usize {
        let t = std::time::Instant::now();
        let r = self.extend_and_triangulate_untimed(img);
        self.clock[2] += t.elapsed().as_secs_f64();
        r
    }

    fn extend_and_triangulate_untimed(&mut self, img: usize) -> usize {
        let thr = self.thr(self.opts.max_error_px);
        let mut made = 0;
        for kp in 0..self.input.keypoints[img].len() {
            let tk = self.kp_track[img][kp];
            if tk == usize::MAX {
                continue;
            }
            if let Some(x) = self.point[tk] {
                let q = self.tracks[tk]
                    .iter()
                    .position(|o| o.0 == img)
                    .expect("in track");
                if !self.active[tk][q] && self.reproj_err(img, kp, &x) < thr {
                    self.active[tk][q] = true;
                }
            } else if self.triangulate_track(tk) {
                made += 1;
            }
        }
        made
    }

    /// Re-triangulate every track with two registered views and no point.
    fn retriangulate(&mut self) -> usize {
        let t = std::time::Instant::now();
        let r = self.retriangulate_untimed();
        self.clock[2] += t.elapsed().as_secs_f64();
        r
    }

    fn retriangulate_untimed(&mut self) -> usize {
        let mut made = 0;
        for tk in 0..self.tracks.len() {
            if self.point[tk].is_none() && self.triangulate_track(tk) {
                made += 1;
            }
        }
        made
    }

    /// Deactivate observations that reproject worse than the threshold and remove points with
    /// fewer than two active views or a maximum triangulation angle below the minimum
    /// (COLMAP `filter_max_reproj_error`, `filter_min_tri_angle`). Returns removed observations.
    fn filter(&mut self) -> usize {
        let t = std::time::Instant::now();
        let r = self.filter_untimed();
        self.clock[1] += t.elapsed().as_secs_f64();
        r
    }

    fn filter_untimed(&mut self) -> usize {
        (0..self.tracks.len()).map(|tk| self.filter_track(tk)).sum()
    }

    /// [`State::filter`] over the points of the last bundle adjustment only (after a local BA:
    /// only they moved, or were seen by a photo that moved; COLMAP `AdjustLocalBundle` filters
    /// the changed points the same way). Keeps the per-registration cost independent of the model
    /// size.
    fn filter_adjusted(&mut self) -> usize {
        let t = std::time::Instant::now();
        let tracks = std::mem::take(&mut self.adjusted);
        let r = tracks.iter().map(|&tk| self.filter_track(tk)).sum();
        self.adjusted = tracks;
        self.clock[1] += t.elapsed().as_secs_f64();
        r
    }

    /// The filter of one track; returns its removed observations.
    fn filter_track(&mut self, tk: usize) -> usize {
        let thr = self.thr(self.filter_px);
        let min_angle = self.opts.min_tri_angle_deg.to_radians();
        let Some(x) = self.point[tk] else { return 0 };
        let mut removed = 0;
        let mut n_active = 0;
        for q in 0..self.tracks[tk].len() {
            let (img, kp) = self.tracks[tk][q];
            if !self.active[tk][q] {
                continue;
            }
            if self.poses[img].is_none() || self.reproj_err(img, kp, &x) > thr {
                self.active[tk][q] = false;
                removed += 1;
            } else {
                n_active += 1;
            }
        }
        let centers: Vec<_> = (0..self.tracks[tk].len())
            .filter(|&q| self.active[tk][q])
            .map(|q| self.center(self.tracks[tk][q].0))
            .collect();
        if n_active < 2 || !max_angle_reaches(&centers, &x, min_angle) {
            self.point[tk] = None;
            self.active[tk].iter_mut().for_each(|a| *a = false);
            removed += n_active;
        }
        removed
    }

    /// Bundle adjustment over `variable` images (None = all registered, the first `fixed_first`
    /// fixed for the gauge). Points seen by a variable image are free; other registered images that
    /// see them are fixed.
    fn bundle(&mut self, variable: Option<&[usize]>, iterations: usize) -> ba::BaSummary {
        let t = std::time::Instant::now();
        let r = self.bundle_untimed(variable, iterations);
        self.clock[0] += t.elapsed().as_secs_f64();
        r
    }

    fn bundle_untimed(&mut self, variable: Option<&[usize]>, iterations: usize) -> ba::BaSummary {
        let n_img = self.poses.len();
        let var: Vec<bool> = match variable {
            Some(v) => {
                let mut m = vec![false; n_img];
                for &i in v {
                    m[i] = true;
                }
                m
            }
            None => self.poses.iter().map(|p| p.is_some()).collect(),
        };
        // Image index → BA index.
        let mut img_map = vec![usize::MAX; n_img];
        let mut data = BaData {
            intrinsics: self.intr.clone(),
            ..Default::default()
        };
        let mut fixed_images = Vec::new();
        let mut track_of_point = Vec::new();
        for tk in 0..self.tracks.len() {
            let Some(x) = self.point[tk] else { continue };
            let sees_var = self.tracks[tk]
                .iter()
                .zip(&self.active[tk])
                .any(|(o, &a)| a && var[o.0]);
            if !sees_var {
                continue;
            }
            let j = data.points.len();
            data.points.push(x);
            track_of_point.push(tk);
            for (q, &(img, kp)) in self.tracks[tk].iter().enumerate() {
                if !self.active[tk][q] {
                    continue;
                }
                if img_map[img] == usize::MAX {
                    img_map[img] = data.rotations.len();
                    let (r, t) = self.poses[img].expect("registered");
                    data.rotations.push(r);
                    data.translations.push(t);
                    data.image_camera.push(self.input.image_camera[img]);
                    fixed_images.push(!var[img]);
                }
                data.obs.push(Obs {
                    image: img_map[img],
                    point: j,
                    xy: self.input.keypoints[img][kp],
                });
            }
        }
        self.adjusted.clone_from(&track_of_point);
        if data.obs.is_empty() {
            return ba::BaSummary::default();
        }
        // Gauge: in a global BA fix the earliest registered image.
        if variable.is_none()
            && let Some(first) = self.gauge_image()
            && img_map[first] != usize::MAX
        {
            fixed_images[img_map[first]] = true;
        }
        let n_reg = self.num_registered();
        let refine = n_reg >= self.opts.refine_intrinsics_after;
        let mut refine_intr = vec![[false; 3]; self.intr.len()];
        if refine {
            for (bi, &cam) in data.image_camera.iter().enumerate() {
                if !fixed_images[bi] {
                    refine_intr[cam] = [true, true, n_reg >= 2 * self.opts.refine_intrinsics_after];
                }
            }
        }
        let summary = ba::bundle_adjust(
            &mut data,
            &BaOptions {
                max_iterations: iterations,
                loss_scale: self.opts.pixel_scale,
                fixed_images,
                fixed_points: vec![],
                refine_intrinsics: refine_intr,
                function_tolerance: 1e-6,
                distortion_prior: 1.0,
                solver: ba::SchurSolver::Auto,
            },
        );
        // Implausible intrinsics (COLMAP's bogus-camera check): undo the whole adjustment.
        let bogus = data
            .intrinsics
            .iter()
            .zip(&self.input.intrinsics)
            .any(|(k, k0)| {
                let ratio = k[0] / k0[0];
                !(0.1..=10.0).contains(&ratio)
                    || k[3].abs() > 1.0
                    || k[4].abs() > 1.0
                    || !k[0].is_finite()
            });
        if bogus {
            return summary;
        }
        for (img, &bi) in img_map.iter().enumerate() {
            if bi != usize::MAX {
                self.poses[img] = Some((data.rotations[bi], data.translations[bi]));
            }
        }
        for (j, &tk) in track_of_point.iter().enumerate() {
            self.point[tk] = Some(data.points[j]);
        }
        self.intr.clone_from(&data.intrinsics);
        summary
    }

    fn gauge_image(&self) -> Option<usize> {
        self.poses.iter().position(|p| p.is_some())
    }

    /// Images that share the most active points with `img`.
    fn neighbours(&self, img: usize, k: usize) -> Vec<usize> {
        let mut count: HashMap<usize, usize> = HashMap::new();
        for &tk in &self.kp_track[img] {
            if tk == usize::MAX || self.point[tk].is_none() {
                continue;
            }
            for (q, o) in self.tracks[tk].iter().enumerate() {
                if o.0 != img && self.active[tk][q] {
                    *count.entry(o.0).or_default() += 1;
                }
            }
        }
        let mut v: Vec<(usize, usize)> = count.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.into_iter().take(k).map(|(i, _)| i).collect()
    }

    /// Number of keypoints of `img` whose track has a point (the next-image ranking; counts without
    /// collecting, since it runs for every unregistered photo after every registration).
    fn num_correspondences(&self, img: usize) -> usize {
        self.kp_track[img]
            .iter()
            .filter(|&&tk| tk != usize::MAX && self.point[tk].is_some())
            .count()
    }

    /// 2D-3D correspondences of an unregistered image.
    fn correspondences(&self, img: usize) -> (Vec<Vector3<f64>>, Vec<usize>) {
        let mut xs = Vec::new();
        let mut kps = Vec::new();
        for (kp, &tk) in self.kp_track[img].iter().enumerate() {
            if tk != usize::MAX
                && let Some(x) = self.point[tk]
            {
                xs.push(x);
                kps.push(kp);
            }
        }
        (xs, kps)
    }

    /// Register `img` as a rotation about a registered photo `j` it shares many matches with (a
    /// photo taken by turning in place, which P3P cannot place when its points were seen only from
    /// that spot): the relative rotation from matched bearings `x_img ~ R x_j` (rotation-only
    /// Kabsch/Wahba on a 2-point sample in LO-MSAC), and `img`'s centre set to `j`'s. Accepted when
    /// the rotation explains at least 70 % of the verified matches and `min_inliers` of them.
    fn register_rotation(
        &mut self,
        img: usize,
        min_inliers: usize,
    ) -> Result<(usize, usize), String> {
        let mut best: Option<(usize, Matrix3<f64>, usize)> = None;
        for pr in &self.input.pairs {
            let (j, flip) = if pr.i == img {
                (pr.j, false)
            } else if pr.j == img {
                (pr.i, true)
            } else {
                continue;
            };
            if self.poses[j].is_none() || pr.matches.len() < min_inliers {
                continue;
            }
            let (xi, xj): (Vec<Vector2<f64>>, Vec<Vector2<f64>>) = pr
                .matches
                .iter()
                .map(|&(a, b)| {
                    let (ki, kj) = if flip {
                        (b as usize, a as usize)
                    } else {
                        (a as usize, b as usize)
                    };
                    (self.normalized(img, ki), self.normalized(j, kj))
                })
                .unzip();
            let bear = |x: &Vector2<f64>| Vector3::new(x.x, x.y, 1.0).normalize();
            let (bi, bj): (Vec<_>, Vec<_>) =
                (xi.iter().map(bear).collect(), xj.iter().map(bear).collect());
            let wahba = |idx: &[usize]| -> Option<Matrix3<f64>> {
                let h: Matrix3<f64> = idx.iter().map(|&k| bi[k] * bj[k].transpose()).sum();
                let svd = h.svd(true, true);
                let (u, vt) = (svd.u?, svd.v_t?);
                let d = (u * vt).determinant().signum();
                Some(u * Matrix3::from_diagonal(&Vector3::new(1.0, 1.0, d)) * vt)
            };
            let cam = self.input.image_camera[img];
            let thr = self.thr(self.opts.max_error_px) / self.intr[cam][0];
            let Some(res) = lo_msac(
                bi.len(),
                2,
                &RansacOptions {
                    max_error: thr,
                    seed: img as u64 * 31 + j as u64,
                    ..Default::default()
                },
                |smp| wahba(smp).into_iter().collect(),
                |r, k| {
                    let p = r * bj[k];
                    if p.z <= 1e-9 {
                        return f64::INFINITY;
                    }
                    (Vector2::new(p.x / p.z, p.y / p.z) - xi[k]).norm_squared()
                },
                |_, idx| wahba(idx),
            ) else {
                continue;
            };
            if res.num_inliers >= min_inliers
                && res.num_inliers as f64 >= 0.7 * bi.len() as f64
                && best.as_ref().is_none_or(|b| res.num_inliers > b.2)
            {
                best = Some((j, res.model, res.num_inliers));
            }
        }
        let (j, r_rel, n) =
            best.ok_or_else(|| "not a pure rotation of any registered photo either".to_string())?;
        let (rj, _) = self.poses[j].expect("registered");
        let c = self.center(j);
        let r = r_rel * rj;
        self.poses[img] = Some((r, -(r * c)));
        Ok((j, n))
    }

    /// How well a candidate pose of `img` agrees with its verified pairs to registered photos: for
    /// each such pair with at least 30 matches, the relative pose gives `E = [t]× R`; the pair
    /// agrees when most of its matches have a Sampson error under the inlier threshold. Returns the
    /// match counts of agreeing and disagreeing pairs. A pose from 2D-3D matches that went through
    /// a repeated structure (a mirrored wall) contradicts the sequential neighbours' geometry.
    fn two_view_agreement(
        &self,
        img: usize,
        pose: &(Matrix3<f64>, Vector3<f64>),
    ) -> (usize, usize) {
        let (mut agree, mut disagree) = (0, 0);
        for pr in &self.input.pairs {
            let (j, flip) = if pr.i == img {
                (pr.j, false)
            } else if pr.j == img {
                (pr.i, true)
            } else {
                continue;
            };
            let Some((rj, tj)) = self.poses[j] else {
                continue;
            };
            if pr.matches.len() < 30 {
                continue;
            }
            // Relative pose j → img: x_img = R x_j + t.
            let r = pose.0 * rj.transpose();
            let t = pose.1 - r * tj;
            if t.norm() < 1e-12 {
                continue;
            }
            let e = crate::geometry::skew(&t.normalize()) * r;
            let f = 0.5
                * (self.intr[self.input.image_camera[img]][0]
                    + self.intr[self.input.image_camera[j]][0]);
            let thr = self.thr(self.opts.max_error_px) / f;
            let ok = pr
                .matches
                .iter()
                .filter(|&&(a, b)| {
                    let (ki, kj) = if flip {
                        (b as usize, a as usize)
                    } else {
                        (a as usize, b as usize)
                    };
                    let (xi, xj) = (self.normalized(img, ki), self.normalized(j, kj));
                    crate::geometry::sampson_sq(&e, &xj, &xi) < thr * thr
                })
                .count();
            if 2 * ok >= pr.matches.len() {
                agree += pr.matches.len();
            } else {
                disagree += pr.matches.len();
            }
        }
        (agree, disagree)
    }

    /// Try to register `img` by P3P RANSAC; on success set its pose and return the inlier count.
    fn register(
        &mut self,
        img: usize,
        min_inliers: usize,
        min_ratio: f64,
    ) -> Result<usize, String> {
        let t = std::time::Instant::now();
        let r = self.register_untimed(img, min_inliers, min_ratio);
        self.clock[3] += t.elapsed().as_secs_f64();
        r
    }

    fn register_untimed(
        &mut self,
        img: usize,
        min_inliers: usize,
        min_ratio: f64,
    ) -> Result<usize, String> {
        let (xs, kps) = self.correspondences(img);
        if xs.len() < min_inliers {
            return Err(format!(
                "only {} 2D-3D correspondences (need {min_inliers})",
                xs.len()
            ));
        }
        let cam = self.input.image_camera[img];
        let obs: Vec<Vector2<f64>> = kps.iter().map(|&kp| self.normalized(img, kp)).collect();
        let thr = self.thr(self.opts.abs_pose_max_error_px) / self.intr[cam][0];
        let res = estimate_absolute_pose(&xs, &obs, thr, 1000 + img as u64)
            .ok_or_else(|| "P3P RANSAC found no pose".to_string())?;
        if res.num_inliers < min_inliers || (res.num_inliers as f64) < min_ratio * xs.len() as f64 {
            return Err(format!(
                "P3P RANSAC: {} inliers of {} correspondences (need {min_inliers} and {:.0} %)",
                res.num_inliers,
                xs.len(),
                min_ratio * 100.0
            ));
        }
        let (agree, disagree) = self.two_view_agreement(img, &res.model);
        if disagree > agree {
            return Err(format!(
                "P3P pose ({} inliers) contradicts the verified matches with registered photos \
                 ({disagree} matches disagree, {agree} agree): repeated structure?",
                res.num_inliers
            ));
        }
        self.poses[img] = Some(res.model);
        Ok(res.num_inliers)
    }
}

/// One model grown from an initial pair.
struct Model {
    intr: Vec<Intrinsics>,
    poses: Vec<Option<(Matrix3<f64>, Vector3<f64>)>>,
    points: Vec<MapPoint>,
    failures: HashMap<usize, String>,
    init_pair: (usize, usize),
    timings: Vec<(String, f64)>,
}

impl Model {
    fn registered(&self) -> usize {
        self.poses.iter().filter(|p| p.is_some()).count()
    }
}

impl State<'_> {
    /// Forget the current model (poses, points, refined intrinsics).
    fn reset(&mut self) {
        self.clock = [0.0; 4];
        self.intr = self.input.intrinsics.clone();
        self.poses.iter_mut().for_each(|p| *p = None);
        self.point.iter_mut().for_each(|p| *p = None);
        for a in &mut self.active {
            a.iter_mut().for_each(|x| *x = false);
        }
    }

    /// The current model's points with at least two active observations.
    fn map_points(&self) -> Vec<MapPoint> {
        let mut points = Vec::new();
        for tk in 0..self.tracks.len() {
            let Some(x) = self.point[tk] else { continue };
            let obs: Vec<(usize, usize)> = self.tracks[tk]
                .iter()
                .zip(&self.active[tk])
                .filter(|(_, a)| **a)
                .map(|(o, _)| *o)
                .collect();
            if obs.len() < 2 {
                continue;
            }
            let error = obs
                .iter()
                .map(|&(i, k)| self.reproj_err(i, k, &x))
                .sum::<f64>()
                / obs.len() as f64;
            points.push(MapPoint { xyz: x, obs, error });
        }
        points
    }

    /// Grow one model from an initial pair over the `usable` images: triangulate the pair, then
    /// register the image with the most 2D-3D correspondences, triangulate, bundle-adjust, repeat
    /// (two passes), and finish with global refinement.
    fn grow(
        &mut self,
        init: &InitChoice,
        usable: &[bool],
        progress: &mut impl FnMut(usize),
    ) -> Model {
        self.reset();
        let opts = self.opts;
        let n_img = self.poses.len();
        let pr = &self.input.pairs[init.pair];
        let debug = crate::debug_enabled();
        let t1 = std::time::Instant::now();
        self.poses[pr.i] = Some((Matrix3::identity(), Vector3::zeros()));
        self.poses[pr.j] = Some((init.geometry.r, init.geometry.t));
        let made = self.extend_and_triangulate(pr.j);
        let s = self.bundle(None, opts.global_ba_iterations);
        let removed = self.filter();
        if debug {
            tracing::debug!(target: crate::DEBUG_TARGET,
                "init pair {}-{}: {} matches, {} inliers, median angle {:.1}°, {} triangulated, BA rms {:.2} px ({} it), filtered {removed}, f {:.1}",
                pr.i,
                pr.j,
                pr.matches.len(),
                init.geometry.inliers.len(),
                init.geometry.median_angle_deg,
                made,
                s.rms_px,
                s.iterations,
                self.intr[0][0]
            );
        }
        progress(2);

        let mut failures: HashMap<usize, String> = HashMap::new();
        let mut tries = vec![0usize; n_img];
        let mut last_global = 2usize;
        for pass in 0..2 {
            // The second pass accepts a third of the inliers (at least 10) but needs half of the
            // correspondences to agree.
            let (min_inl, min_ratio) = if pass == 0 {
                (opts.abs_pose_min_inliers, 0.25)
            } else {
                ((opts.abs_pose_min_inliers / 3).max(10), 0.5)
            };
            loop {
                let mut cands: Vec<(usize, usize)> = (0..n_img)
                    .filter(|&i| usable[i] && self.poses[i].is_none() && tries[i] < 3 * (pass + 1))
                    .map(|i| (self.num_correspondences(i), i))
                    .filter(|c| c.0 > 0 || pass == 1)
                    .collect();
                cands.sort_by(|a, b| b.cmp(a));
                let mut registered = None;
                for &(_, img) in cands.iter().take(5) {
                    tries[img] += 1;
                    match self.register(img, min_inl, min_ratio) {
                        Ok(_) => {
                            registered = Some(img);
                            failures.remove(&img);
                            break;
                        }
                        Err(e) if pass == 1 => match self.register_rotation(img, min_inl) {
                            Ok((j, n)) => {
                                if debug {
                                    tracing::debug!(target: crate::DEBUG_TARGET,
                                        "registered {img} as a rotation about {j} ({n} inliers)"
                                    );
                                }
                                registered = Some(img);
                                failures.remove(&img);
                                break;
                            }
                            Err(e2) => {
                                failures.insert(img, format!("{e}; {e2}"));
                            }
                        },
                        Err(e) => {
                            failures.insert(img, e);
                        }
                    }
                }
                let Some(img) = registered else { break };
                let made = self.extend_and_triangulate(img);
                let n_reg = self.num_registered();
                if debug {
                    let pts = self.point.iter().filter(|p| p.is_some()).count();
                    tracing::debug!(target: crate::DEBUG_TARGET,
                        "registered {img} ({n_reg} total): {made} new points, {pts} points, f {:.1} k1 {:.3}",
                        self.intr[0][0], self.intr[0][3]
                    );
                }
                if n_reg as f64 >= opts.global_ba_ratio * last_global as f64 {
                    let s = self.bundle(None, opts.global_ba_iterations);
                    let rem = self.filter();
                    let re = self.retriangulate();
                    last_global = n_reg;
                    if debug {
                        tracing::debug!(target: crate::DEBUG_TARGET,
                            "  global BA rms {:.2} px ({} it), filtered {rem}, retriangulated {re}; {:?} solver, {} columns, {} stored, {:?}",
                            s.rms_px, s.iterations, s.solver, s.columns, s.nonzeros, s.seconds
                        );
                    }
                } else {
                    let mut var = self.neighbours(img, opts.local_ba_images - 1);
                    var.push(img);
                    let s = self.bundle(Some(&var), opts.local_ba_iterations);
                    let rem = self.filter_adjusted();
                    if debug {
                        tracing::debug!(target: crate::DEBUG_TARGET,
                            "  local BA rms {:.2} px ({} it), filtered {rem}",
                            s.rms_px, s.iterations
                        );
                    }
                }
                progress(n_reg);
                // A registered image may unlock retried ones.
                for tr in tries.iter_mut() {
                    *tr = (*tr).min(3 * pass);
                }
            }
        }
        let mut timings = vec![(
            "incremental mapping".to_string(),
            t1.elapsed().as_secs_f64(),
        )];
        for (k, name) in [
            "bundle adjustment",
            "filtering",
            "triangulation",
            "registration",
        ]
        .iter()
        .enumerate()
        {
            timings.push((format!("incremental mapping: {name}"), self.clock[k]));
        }
        let t2 = std::time::Instant::now();
        // Final global refinement.
        for _ in 0..2 {
            self.bundle(None, opts.global_ba_iterations);
            self.filter();
            self.retriangulate();
        }
        self.bundle(None, opts.global_ba_iterations);
        self.filter();
        timings.push((
            "final bundle adjustment".to_string(),
            t2.elapsed().as_secs_f64(),
        ));
        Model {
            intr: self.intr.clone(),
            poses: self.poses.clone(),
            points: self.map_points(),
            failures,
            init_pair: (pr.i, pr.j),
            timings,
        }
    }
}

/// Run incremental mapping (COLMAP `IncrementalPipeline`): find an initial pair
/// ([`crate::init_pair`]), grow a model from it; when the model stays smaller than
/// `min_model_size`, try other initial pairs (`init_trials` per model) and keep the largest; with
/// `multiple_models`, start further models on the photos no model holds. The largest model is the
/// result; the photos of the others are reported in [`MapperOutput::other_models`].
pub fn run_mapper(
    input: &MapperInput,
    opts: &MapperOptions,
    mut progress: impl FnMut(usize),
) -> Result<MapperOutput, MapperError> {
    let t0 = std::time::Instant::now();
    let n_img = input.keypoints.len();
    let counts: Vec<usize> = input.keypoints.iter().map(|k| k.len()).collect();
    let tracks = build_tracks(&counts, &input.pairs);
    let mut kp_track: Vec<Vec<usize>> = counts.iter().map(|&n| vec![usize::MAX; n]).collect();
    let mut correspondences = vec![0usize; n_img];
    for (tk, t) in tracks.iter().enumerate() {
        for &(img, kp) in t {
            kp_track[img][kp] = tk;
            correspondences[img] += 1;
        }
    }
    let active = tracks.iter().map(|t| vec![false; t.len()]).collect();
    let mut st = State {
        input,
        opts,
        intr: input.intrinsics.clone(),
        poses: vec![None; n_img],
        point: vec![None; tracks.len()],
        tracks,
        kp_track,
        active,
        filter_px: opts.max_error_px,
        clock: [0.0; 4],
        adjusted: Vec::new(),
    };
    let mut timings = vec![("tracks".to_string(), t0.elapsed().as_secs_f64())];
    let debug = crate::debug_enabled();

    let mut search = InitSearch::new(
        input,
        &correspondences,
        opts.max_error_px * opts.pixel_scale,
        criteria_ladder(opts.init_min_tri_angle_deg, opts.init_min_points),
        opts.init_eval_budget,
    );
    // COLMAP: min(0.8 n, min_model_size) photos make a model worth keeping.
    let min_model = opts
        .min_model_size
        .min((0.8 * n_img as f64) as usize)
        .max(2);
    let mut models: Vec<Model> = Vec::new();
    let mut in_model = vec![false; n_img];
    let mut tried: HashSet<usize> = HashSet::new();
    let mut best: Option<Model> = None;
    let (mut attempts, mut total_attempts) = (0usize, 0usize);
    let mut init_time = 0.0;
    let mut first_error = None;
    loop {
        let usable: Vec<bool> = in_model.iter().map(|&m| !m).collect();
        if usable.iter().filter(|&&u| u).count() < 2 {
            break;
        }
        let t = std::time::Instant::now();
        let found = search.find(&usable, &tried);
        init_time += t.elapsed().as_secs_f64();
        let init = match found {
            Ok(c) => c,
            Err(e) => {
                first_error.get_or_insert(e);
                break;
            }
        };
        tried.insert(init.pair);
        attempts += 1;
        total_attempts += 1;
        if debug {
            let p = &input.pairs[init.pair];
            tracing::debug!(target: crate::DEBUG_TARGET,
                "initial pair {}-{} (attempt {attempts}, {} geometries evaluated): {:?}",
                p.i, p.j, search.evaluated, init.criteria
            );
        }
        let m = st.grow(&init, &usable, &mut progress);
        let good = m.registered() >= min_model;
        if best
            .as_ref()
            .is_none_or(|b| m.registered() > b.registered())
        {
            best = Some(m);
        }
        let done_model =
            good || attempts >= opts.init_trials || total_attempts >= opts.max_init_attempts;
        if done_model {
            if let Some(m) = best.take() {
                // A later model smaller than `min_model` is dropped (its photos stay unregistered).
                if models.is_empty() || m.registered() >= min_model {
                    for (i, p) in m.poses.iter().enumerate() {
                        if p.is_some() {
                            in_model[i] = true;
                        }
                    }
                    models.push(m);
                }
            }
            attempts = 0;
            if !opts.multiple_models || total_attempts >= opts.max_init_attempts {
                break;
            }
        }
    }
    if let Some(m) = best.take()
        && (models.is_empty() || m.registered() >= min_model)
    {
        models.push(m);
    }
    timings.push(("initial pair search".to_string(), init_time));
    if models.is_empty() {
        return Err(MapperError::NoInitialPair(
            first_error.unwrap_or_else(|| "no verified pairs".into()),
        ));
    }
    models.sort_by_key(|m| std::cmp::Reverse(m.registered()));
    let mut main = models.remove(0);
    timings.append(&mut main.timings);
    let mut failures = std::mem::take(&mut main.failures);
    let other_models: Vec<Vec<usize>> = models
        .iter()
        .map(|m| (0..n_img).filter(|&i| m.poses[i].is_some()).collect())
        .collect();
    for imgs in &other_models {
        for &i in imgs {
            failures.insert(
                i,
                format!(
                    "registered in a separate model of {} photos that shares too few matches with the main model",
                    imgs.len()
                ),
            );
        }
    }
    for i in 0..n_img {
        if main.poses[i].is_none() && !failures.contains_key(&i) {
            failures.insert(i, "no 2D-3D correspondences with the model (no verified matches to registered photos)".into());
        }
    }
    Ok(MapperOutput {
        intrinsics: main.intr,
        poses: main.poses,
        points: main.points,
        failures,
        init_pair: main.init_pair,
        other_models,
        timings,
    })
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Rng;
    use crate::geometry::two_view::{TwoViewOptions, verify_pair};
    use flythrough_core::Pose;

    /// `n` cameras on an arc looking at a cloud of points, with 0.5 px noise and 20 % wrong
    /// matches; returns the input and the true poses.
    pub(crate) fn synthetic(n: usize, seed: u64) -> (MapperInput, Vec<Pose>) {
        let mut rng = Rng::new(seed);
        let k = [800.0, 320.0, 240.0, 0.0, 0.0];
        let poses: Vec<Pose> = (0..n)
            .map(|i| {
                let a = (i as f64 / n as f64 - 0.5) * 2.0;
                let c = nalgebra::Vector3::new(6.0 * a.sin(), 0.5 * rng.normal(), -6.0 * a.cos());
                Pose::look_at(c, nalgebra::Vector3::zeros(), -nalgebra::Vector3::y())
            })
            .collect();
        let pts: Vec<_> = (0..1500)
            .map(|_| nalgebra::Vector3::new(rng.normal(), rng.normal(), rng.normal()) * 1.5)
            .collect();
        let mut keypoints = vec![Vec::new(); n];
        let mut kp_of = vec![vec![usize::MAX; pts.len()]; n];
        for (i, p) in poses.iter().enumerate() {
            for (j, x) in pts.iter().enumerate() {
                if let Some(px) = ba::project(&k, &p.r(), &p.translation, x)
                    && px.x > 0.0
                    && px.x < 640.0
                    && px.y > 0.0
                    && px.y < 480.0
                    && rng.uniform() < 0.7
                {
                    kp_of[i][j] = keypoints[i].len();
                    keypoints[i].push(px + Vector2::new(rng.normal(), rng.normal()) * 0.5);
                }
            }
        }
        let mut pairs = Vec::new();
        for i in 0..n {
            for j in i + 1..n.min(i + 5) {
                let mut m: Vec<(u32, u32)> = (0..pts.len())
                    .filter(|&p| kp_of[i][p] != usize::MAX && kp_of[j][p] != usize::MAX)
                    .map(|p| (kp_of[i][p] as u32, kp_of[j][p] as u32))
                    .collect();
                let n_out = m.len() / 5;
                for mq in m.iter_mut().take(n_out) {
                    mq.1 = rng.below(keypoints[j].len()) as u32;
                }
                let x1: Vec<_> = m.iter().map(|&(a, _)| keypoints[i][a as usize]).collect();
                let x2: Vec<_> = m.iter().map(|&(_, b)| keypoints[j][b as usize]).collect();
                if let Some(g) = verify_pair(&x1, &x2, &TwoViewOptions::default()) {
                    pairs.push(VerifiedPair {
                        i,
                        j,
                        matches: g.inliers.iter().map(|&q| m[q]).collect(),
                        num_h_inliers: g.num_h_inliers,
                    });
                }
            }
        }
        let input = MapperInput {
            keypoints,
            image_camera: vec![0; n],
            intrinsics: vec![[880.0, 320.0, 240.0, 0.0, 0.0]],
            pairs,
        };
        (input, poses)
    }

    /// A photo taken by turning in place at photo 3 (10° about its y axis) that sees only points
    /// nobody else sees: P3P cannot place it, the rotation registration does, at photo 3's centre.
    #[test]
    fn turn_in_place_photo_is_registered_as_a_rotation() {
        let (mut input, truth) = synthetic(8, 23);
        let mut rng = Rng::new(24);
        let k = [800.0, 320.0, 240.0, 0.0, 0.0];
        let base = &truth[3];
        let rot =
            nalgebra::Rotation3::from_axis_angle(&nalgebra::Vector3::y_axis(), 10f64.to_radians())
                .into_inner();
        let r8 = rot * base.r();
        let t8 = -(r8 * base.center());
        let mut kp8 = Vec::new();
        let mut matches = Vec::new();
        for _ in 0..400 {
            // A point 3-6 m in front of photo 3, somewhere in its view.
            let d = nalgebra::Vector3::new(rng.uniform() - 0.5, rng.uniform() - 0.5, 1.0)
                * (3.0 + 3.0 * rng.uniform());
            let x = base.r().transpose() * (d - base.translation);
            let (Some(p3), Some(p8)) = (
                ba::project(&k, &base.r(), &base.translation, &x),
                ba::project(&k, &r8, &t8, &x),
            ) else {
                continue;
            };
            if p8.x < 0.0 || p8.x > 640.0 || p8.y < 0.0 || p8.y > 480.0 {
                continue;
            }
            matches.push((input.keypoints[3].len() as u32, kp8.len() as u32));
            input.keypoints[3].push(p3 + Vector2::new(rng.normal(), rng.normal()) * 0.3);
            kp8.push(p8 + Vector2::new(rng.normal(), rng.normal()) * 0.3);
        }
        input.keypoints.push(kp8);
        input.image_camera.push(0);
        input.pairs.push(VerifiedPair {
            i: 3,
            j: 8,
            matches,
            num_h_inliers: 0,
        });
        let out = run_mapper(&input, &MapperOptions::default(), |_| {}).unwrap();
        let (ra, ta) = out.poses[3].expect("photo 3 registered");
        let (rb, tb) = out.poses[8].expect("the turned photo is registered");
        let rel = rb * ra.transpose();
        let err = nalgebra::Rotation3::from_matrix(&(rel * rot.transpose()))
            .angle()
            .to_degrees();
        assert!(err < 0.1, "relative rotation error {err}°");
        let (ca, cb) = (-ra.transpose() * ta, -rb.transpose() * tb);
        assert!(
            (ca - cb).norm() < 1e-3,
            "centres differ by {}",
            (ca - cb).norm()
        );
    }

    #[test]
    fn max_angle_test_agrees_with_the_all_pairs_maximum() {
        use crate::geometry::triangulate::triangulation_angle;
        let mut rng = Rng::new(5);
        for _ in 0..300 {
            let n = 2 + rng.below(8);
            let centers: Vec<Vector3<f64>> = (0..n)
                .map(|_| Vector3::new(rng.normal(), rng.normal(), rng.normal()) * 0.3)
                .collect();
            let x = Vector3::new(rng.normal(), rng.normal(), 4.0 + rng.uniform());
            let mut max = 0.0f64;
            for a in 0..n {
                for b in a + 1..n {
                    max = max.max(triangulation_angle(&centers[a], &centers[b], &x));
                }
            }
            for min in [0.5f64, 2.0, 5.0, 10.0] {
                let m = min.to_radians();
                if (max - m).abs() > 1e-9 {
                    assert_eq!(max_angle_reaches(&centers, &x, m), max >= m, "{max} vs {m}");
                }
            }
        }
    }

    /// Two captures with no match between them (12 and 10 photos): the mapper builds both models,
    /// keeps the larger and reports the other's photos, each with the reason.
    #[test]
    fn disconnected_captures_give_two_models_and_the_larger_is_kept() {
        let (a, _) = synthetic(12, 31);
        let (b, _) = synthetic(10, 32);
        let off = a.keypoints.len();
        let mut input = a.clone();
        input.keypoints.extend(b.keypoints.iter().cloned());
        input.image_camera.extend(b.image_camera.iter().map(|_| 0));
        input.pairs.extend(b.pairs.iter().map(|p| VerifiedPair {
            i: p.i + off,
            j: p.j + off,
            ..p.clone()
        }));
        let out = run_mapper(&input, &MapperOptions::default(), |_| {}).unwrap();
        let reg: Vec<usize> = (0..22).filter(|&i| out.poses[i].is_some()).collect();
        assert_eq!(reg, (0..12).collect::<Vec<_>>(), "{:?}", out.failures);
        assert_eq!(out.other_models, vec![(12..22).collect::<Vec<_>>()]);
        for i in 12..22 {
            assert!(
                out.failures[&i].contains("separate model of 10 photos"),
                "{}",
                out.failures[&i]
            );
        }
        // Without multiple models the capture the first initial pair lies in is the result.
        let single = MapperOptions {
            multiple_models: false,
            ..Default::default()
        };
        let out = run_mapper(&input, &single, |_| {}).unwrap();
        assert!(out.other_models.is_empty());
        let n = out.poses.iter().filter(|p| p.is_some()).count();
        assert!(n == 12 || n == 10, "{n}");
    }

    #[test]
    fn tracks_merge_pairwise_matches() {
        let pairs = vec![
            VerifiedPair {
                i: 0,
                j: 1,
                matches: vec![(0, 1), (2, 2)],
                num_h_inliers: 0,
            },
            VerifiedPair {
                i: 1,
                j: 2,
                matches: vec![(1, 0)],
                num_h_inliers: 0,
            },
        ];
        let t = build_tracks(&[3, 3, 3], &pairs);
        assert_eq!(t, vec![vec![(0, 0), (1, 1), (2, 0)], vec![(0, 2), (1, 2)]]);
    }

    #[test]
    fn synthetic_scene_registers_all_with_accurate_poses() {
        let (input, truth) = synthetic(12, 21);
        let out = run_mapper(&input, &MapperOptions::default(), |_| {}).unwrap();
        let reg: Vec<usize> = (0..12).filter(|&i| out.poses[i].is_some()).collect();
        assert_eq!(reg.len(), 12, "{:?}", out.failures);
        // Relative rotations agree with the truth to 0.2°.
        let mut worst = 0.0f64;
        for a in 0..12 {
            for b in a + 1..12 {
                let (ra, _) = out.poses[a].unwrap();
                let (rb, _) = out.poses[b].unwrap();
                let est = rb * ra.transpose();
                let tru = truth[b].r() * truth[a].r().transpose();
                let ang = nalgebra::Rotation3::from_matrix(&(est * tru.transpose()))
                    .angle()
                    .to_degrees();
                worst = worst.max(ang);
            }
        }
        assert!(worst < 0.2, "worst relative rotation error {worst}°");
        assert!(
            (out.intrinsics[0][0] / 800.0 - 1.0).abs() < 0.01,
            "{:?}",
            out.intrinsics[0]
        );
        let mean_err = out.points.iter().map(|p| p.error).sum::<f64>() / out.points.len() as f64;
        assert!(mean_err < 0.8, "{mean_err}");
    }
}

#[cfg(test)]
mod scale_tests {
    /// The mapper on 120 synthetic photos: all must register (slow, so run with `--ignored`; it also
    /// prints the timings, which belong to benchmarks, not to assertions).
    #[test]
    #[ignore]
    fn timing_many_images() {
        let (input, _) = super::tests::synthetic(120, 5);
        let t = std::time::Instant::now();
        let out = super::run_mapper(&input, &super::MapperOptions::default(), |_| {}).unwrap();
        let reg = out.poses.iter().filter(|p| p.is_some()).count();
        println!(
            "120 images: {reg} registered, {} points, {:.1} s, {:?}",
            out.points.len(),
            t.elapsed().as_secs_f64(),
            out.timings
        );
        assert_eq!(reg, 120, "every synthetic photo registers");
    }
}
