//! Training data: photos with their cameras, poses and exposures, the train/held-out split, the scene
//! normalisation, and ray generation.
//!
//! Naming: `p` indexes `Dataset::photos` (sorted by name); pixel `(x, y)` has its centre at
//! `(x + 0.5, y + 0.5)` (COLMAP convention); rays come out in the norm frame with unit directions.
//!
//! Memory: each photo is kept once, as 8-bit RGB at the training resolution (`3 w h` bytes, see
//! [`Dataset::image_bytes`]); colours become f32 only per sampled ray. The training resolution is
//! chosen per photo by [`train_size`] (automatic: from the photo size and the training budget), and
//! rays go through the camera model's lens distortion ([`camera_ray`]), so photos are never warped.

use crate::NerfError;
use crate::coord::SceneNorm;
use crate::model::Rays;
use flythrough_core::{Camera, Manifest, Pose, Reconstruction, RedactedImages};
use image::RgbImage;
use nalgebra::{Vector2, Vector3};
use rand::Rng;
use rayon::prelude::*;
use std::path::Path;

/// One registered photo.
#[derive(Debug, Clone)]
pub struct Photo {
    pub name: String,
    /// Camera at the training resolution (scaled by `image_downscale`).
    pub cam: Camera,
    pub pose: Pose,
    pub img: RgbImage,
    /// Absolute exposure value (EV) from the manifest; 0 without one.
    pub ev: f64,
    /// GLO latent index for training photos.
    pub latent: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub photos: Vec<Photo>,
    pub norm: SceneNorm,
    pub train: Vec<usize>,
    pub holdout: Vec<usize>,
    pub ev_mean: f64,
    /// Photos left out of training by `skip_train` (e.g. `[train] skip_blurry`).
    pub skipped_train: Vec<String>,
    /// Cumulative pixel counts of the training photos (for uniform pixel sampling).
    cum: Vec<usize>,
}

/// Training pixels per trained ray of the automatic resolution rule ([`train_size`]).
pub const AUTO_PIXELS_PER_RAY: f64 = 1.0;
/// The automatic rule never picks a long side below this (unless the photo itself is smaller).
pub const AUTO_MIN_SIDE: u32 = 480;

/// How the training resolution is chosen (`[train] image_downscale`, `train_max_side`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SizeRule {
    /// Downscale by this integer factor (1 = full size).
    Factor(u32),
    /// [`train_size`]'s automatic rule for `rays` trained rays, the long side at most `max_side`.
    Auto { rays: f64, max_side: u32 },
}

/// Training size of a `w x h` photo, one of `photos` training photos.
///
/// `Factor(n)`: `(w / n, h / n)`. `Auto`: the photos should hold about as many pixels as the rays the
/// budget trains (`AUTO_PIXELS_PER_RAY x steps x batch_rays`, spread over the training photos): more
/// pixels than that are never seen, while their memory and evaluation time still grow with them. So
/// the scale is `sqrt(AUTO_PIXELS_PER_RAY rays / (photos w h))`, then raised so the long side is at
/// least `min(AUTO_MIN_SIDE, long side)` (a floor for detail), and capped at `max_side` (nerfstudio
/// caps its automatic downscale at 1600 px) and at 1 (never upscaled). Aspect ratio kept, rounded.
pub fn train_size(w: u32, h: u32, photos: usize, rule: SizeRule) -> (u32, u32) {
    match rule {
        SizeRule::Factor(n) => ((w / n.max(1)).max(1), (h / n.max(1)).max(1)),
        SizeRule::Auto { rays, max_side } => {
            let long = w.max(h) as f64;
            let budget =
                (AUTO_PIXELS_PER_RAY * rays / (photos.max(1) as f64 * w as f64 * h as f64)).sqrt();
            let floor = AUTO_MIN_SIDE.min(w.max(h)) as f64 / long;
            let s = budget.max(floor).min(max_side as f64 / long).min(1.0);
            let r = |v: u32| ((v as f64 * s).round() as u32).clamp(1, v);
            (r(w), r(h))
        }
    }
}

/// What [`Dataset::load`] loads and how.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub size: SizeRule,
    /// Every n-th photo by name is held out (0 = none).
    pub holdout_every: usize,
    /// Photos left out of training (e.g. flagged blurry); held-out photos among them stay held out.
    pub skip_train: Vec<String>,
}

impl LoadOptions {
    /// From `[train]`; `blurry` = capture QA's blurry list (used when `skip_blurry`).
    pub fn from_config(cfg: &flythrough_core::config::TrainConfig, blurry: &[String]) -> Self {
        let size = if cfg.image_downscale >= 1 {
            SizeRule::Factor(cfg.image_downscale)
        } else {
            SizeRule::Auto {
                rays: cfg.steps as f64 * cfg.batch_rays as f64,
                max_side: cfg.train_max_side,
            }
        };
        LoadOptions {
            size,
            holdout_every: cfg.holdout_every,
            skip_train: if cfg.skip_blurry {
                blurry.to_vec()
            } else {
                Vec::new()
            },
        }
    }
}

/// The held-out flags of `n` photos sorted by name: every `holdout_every`-th, index 0 included
/// (multinerf's `llffhold`); none when `holdout_every = 0` or there is a single photo.
pub fn split(n: usize, holdout_every: usize) -> Vec<bool> {
    (0..n)
        .map(|i| holdout_every > 0 && i % holdout_every == 0 && n > 1)
        .collect()
}

/// A camera scaled to an image `1/factor` the size (focal and principal point scale; distortion does
/// not, as it acts on normalised coordinates).
pub fn scale_camera(cam: &Camera, w: u32, h: u32) -> Camera {
    let sx = w as f64 / cam.width as f64;
    let sy = h as f64 / cam.height as f64;
    let mut c = cam.clone();
    let s = 0.5 * (sx + sy);
    match c.model {
        flythrough_core::CameraModel::Pinhole | flythrough_core::CameraModel::Opencv => {
            c.params[0] *= sx;
            c.params[1] *= sy;
            c.params[2] *= sx;
            c.params[3] *= sy;
        }
        _ => {
            c.params[0] *= s;
            c.params[1] *= sx;
            c.params[2] *= sy;
        }
    }
    c.width = w;
    c.height = h;
    c
}

impl Dataset {
    /// Load every photo that is both in the COLMAP model `sfm_dir/sparse` and among `images`.
    pub fn load(
        images: &RedactedImages,
        manifest: Option<&Manifest>,
        sfm_dir: &Path,
        opts: &LoadOptions,
    ) -> Result<Dataset, NerfError> {
        let sparse = sfm_dir.join("sparse");
        let recon = Reconstruction::read(&sparse)
            .map_err(|e| NerfError::Input(format!("{}: {e}", sparse.display())))?;
        Self::load_model(images, manifest, &recon, &sparse, opts)
    }

    /// [`Dataset::load`] from a model already read (`sparse` names it in errors).
    pub fn load_model(
        images: &RedactedImages,
        manifest: Option<&Manifest>,
        recon: &Reconstruction,
        sparse: &Path,
        opts: &LoadOptions,
    ) -> Result<Dataset, NerfError> {
        let mut regs: Vec<&flythrough_core::colmap::Image> = recon
            .images
            .values()
            .filter(|im| images.names().iter().any(|n| n == &im.name))
            .collect();
        regs.sort_by(|a, b| a.name.cmp(&b.name));
        if regs.is_empty() {
            return Err(NerfError::Input(format!(
                "{}: none of its {} images is among the {} redacted photos in {}",
                sparse.display(),
                recon.images.len(),
                images.names().len(),
                images.dir().display()
            )));
        }
        let held_all = split(regs.len(), opts.holdout_every);
        let n_train = (0..regs.len())
            .filter(|&i| !held_all[i] && !opts.skip_train.contains(&regs[i].name))
            .count();
        // Photos left out of training are not loaded at all.
        let mut held = Vec::new();
        let mut skipped = Vec::new();
        let regs: Vec<_> = regs
            .into_iter()
            .zip(&held_all)
            .filter_map(|(im, &h)| {
                if !h && opts.skip_train.contains(&im.name) {
                    skipped.push(im.name.clone());
                    None
                } else {
                    held.push(h);
                    Some(im)
                }
            })
            .collect();
        let pb = flythrough_core::progress::bar(regs.len() as u64, "train: loading photos");
        let photos: Vec<Photo> = regs
            .par_iter()
            .map(|im| {
                let cam = recon.cameras.get(&im.camera_id).ok_or_else(|| {
                    NerfError::Input(format!(
                        "{}: image {} names camera {} which is not in cameras.txt",
                        sparse.display(),
                        im.name,
                        im.camera_id
                    ))
                })?;
                let img = images
                    .load_rgb(&im.name)
                    .map_err(|e| NerfError::Input(e.to_string()))?;
                if img.width() != cam.width || img.height() != cam.height {
                    return Err(NerfError::Input(format!(
                        "{}: photo is {}x{} but its camera {} in {} is {}x{}",
                        im.name,
                        img.width(),
                        img.height(),
                        cam.id,
                        sparse.display(),
                        cam.width,
                        cam.height
                    )));
                }
                let (w, h) = train_size(img.width(), img.height(), n_train, opts.size);
                let (img, cam) = if (w, h) != img.dimensions() {
                    // `resize` widens the triangle filter by the scale factor: an area-weighted
                    // (anti-aliased) reduction at any factor.
                    let small =
                        image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
                    (small, scale_camera(cam, w, h))
                } else {
                    (img, cam.clone())
                };
                let ev = manifest
                    .and_then(|m| m.photo(&im.name))
                    .map(|p| p.exposure.ev)
                    .unwrap_or(0.0);
                pb.inc(1);
                Ok(Photo {
                    name: im.name.clone(),
                    cam,
                    pose: im.pose,
                    img,
                    ev,
                    latent: None,
                })
            })
            .collect::<Result<_, NerfError>>()?;
        pb.finish_and_clear();
        // Scene normalisation from camera centres and sparse points.
        let centers: Vec<[f64; 3]> = photos.iter().map(|p| p.pose.center().into()).collect();
        let pts: Vec<[f64; 3]> = recon.points.values().map(|p| p.xyz.into()).collect();
        let mut depths = Vec::new();
        for p in recon.points.values() {
            for (img_id, _) in p.track.iter().take(32) {
                if let Some(im) = recon.images.get(img_id) {
                    depths.push(im.pose.transform(&p.xyz).z);
                }
            }
        }
        let norm = SceneNorm::from_cameras(&centers, &pts, &depths);
        Ok(Self::assemble(photos, &held, norm, skipped))
    }

    /// Split and index photos already in memory (tests build datasets this way too).
    pub fn from_photos(photos: Vec<Photo>, norm: SceneNorm, holdout_every: usize) -> Dataset {
        Self::from_photos_skipping(photos, norm, holdout_every, &[])
    }

    /// [`Dataset::from_photos`], leaving the photos named in `skip_train` out of training. The split
    /// is made first, over all photos, so the held-out set does not depend on `skip_train`; skipped
    /// photos that are not held out are dropped.
    pub fn from_photos_skipping(
        mut photos: Vec<Photo>,
        norm: SceneNorm,
        holdout_every: usize,
        skip_train: &[String],
    ) -> Dataset {
        photos.sort_by(|a, b| a.name.cmp(&b.name));
        let held_all = split(photos.len(), holdout_every);
        let mut held = Vec::new();
        let mut skipped = Vec::new();
        let mut kept = Vec::new();
        for (ph, h) in photos.into_iter().zip(held_all) {
            if !h && skip_train.contains(&ph.name) {
                skipped.push(ph.name);
            } else {
                held.push(h);
                kept.push(ph);
            }
        }
        Self::assemble(kept, &held, norm, skipped)
    }

    /// Index photos (sorted by name) whose held-out flags are `held`.
    fn assemble(
        mut photos: Vec<Photo>,
        held: &[bool],
        norm: SceneNorm,
        skipped_train: Vec<String>,
    ) -> Dataset {
        let mut train = Vec::new();
        let mut holdout = Vec::new();
        for i in 0..photos.len() {
            if held[i] {
                holdout.push(i);
            } else {
                photos[i].latent = Some(train.len());
                train.push(i);
            }
        }
        let ev_mean = if train.is_empty() {
            0.0
        } else {
            train.iter().map(|&i| photos[i].ev).sum::<f64>() / train.len() as f64
        };
        let mut cum = vec![0usize];
        for &i in &train {
            let n = (photos[i].img.width() * photos[i].img.height()) as usize;
            cum.push(cum.last().unwrap() + n);
        }
        Dataset {
            photos,
            norm,
            train,
            holdout,
            ev_mean,
            skipped_train,
            cum,
        }
    }

    /// Size of the first training photo (of the first photo when none trains): the training resolution.
    pub fn train_size(&self) -> (u32, u32) {
        self.train
            .first()
            .or(self.holdout.first())
            .map(|&i| self.photos[i].img.dimensions())
            .unwrap_or((0, 0))
    }

    /// Bytes of photo pixels held in memory: `3 w h` per photo (8-bit RGB at the training size).
    pub fn image_bytes(&self) -> usize {
        self.photos.iter().map(|p| p.img.as_raw().len()).sum()
    }

    /// Total training pixels.
    pub fn train_pixels(&self) -> usize {
        *self.cum.last().unwrap_or(&0)
    }

    /// The ray through pixel centre `(x + 0.5, y + 0.5)` of photo `p`, in the norm frame.
    pub fn ray(&self, p: usize, x: f64, y: f64) -> ([f32; 3], [f32; 3], f32) {
        camera_ray(&self.norm, &self.photos[p].cam, &self.photos[p].pose, x, y)
    }

    /// A random batch of `n` training rays (uniform over all training pixels) with their colours and
    /// photo (latent) indices.
    pub fn sample_batch(
        &self,
        n: usize,
        rng: &mut impl Rng,
        glo: &[f32],
        glo_dim: usize,
    ) -> (Rays, Vec<[f32; 3]>, Vec<usize>) {
        let total = self.train_pixels();
        let picks: Vec<usize> = (0..n).map(|_| rng.random_range(0..total)).collect();
        self.pixels_batch(&picks, glo, glo_dim)
    }

    /// Cumulative pixel counts of the training photos: `[0, n_0, n_0 + n_1, ..]` (training photo
    /// `k` holds the global pixel indices `cum[k]..cum[k + 1]`, row-major).
    pub fn train_cum(&self) -> &[usize] {
        &self.cum
    }

    /// The rays, colours and photo (latent) indices of the global training pixels `picks`
    /// (indices into all training pixels, in [`Dataset::train_cum`]'s order).
    pub fn pixels_batch(
        &self,
        picks: &[usize],
        glo: &[f32],
        glo_dim: usize,
    ) -> (Rays, Vec<[f32; 3]>, Vec<usize>) {
        let n = picks.len();
        let items: Vec<([f32; 3], [f32; 3], f32, [f32; 3], usize, f32)> = picks
            .par_iter()
            .map(|&g| {
                let k = self.cum.partition_point(|&c| c <= g) - 1;
                let p = self.train[k];
                let ph = &self.photos[p];
                let local = g - self.cum[k];
                let (x, y) = (
                    (local % ph.img.width() as usize) as u32,
                    (local / ph.img.width() as usize) as u32,
                );
                let (o, d, r) = self.ray(p, x as f64 + 0.5, y as f64 + 0.5);
                let px = ph.img.get_pixel(x, y).0;
                (
                    o,
                    d,
                    r,
                    [
                        px[0] as f32 / 255.0,
                        px[1] as f32 / 255.0,
                        px[2] as f32 / 255.0,
                    ],
                    k,
                    (ph.ev - self.ev_mean) as f32,
                )
            })
            .collect();
        let mut rays = Rays::default();
        let mut target = Vec::with_capacity(n);
        let mut idx = Vec::with_capacity(n);
        for (o, d, r, c, k, ev) in items {
            rays.o.push(o);
            rays.d.push(d);
            rays.r.push(r);
            rays.ev.push(ev);
            rays.latent
                .extend_from_slice(&glo[k * glo_dim..(k + 1) * glo_dim]);
            target.push(c);
            idx.push(k);
        }
        (rays, target, idx)
    }
}

/// Rays through every pixel centre of `cam` at `pose` (row-major), in the model frame: origins,
/// unit directions and cone radii ([`camera_ray`] per pixel).
pub fn pixel_rays(
    norm: &SceneNorm,
    cam: &Camera,
    pose: &Pose,
) -> (Vec<[f32; 3]>, Vec<[f32; 3]>, Vec<f32>) {
    use rayon::prelude::*;
    let w = cam.width as usize;
    let items: Vec<([f32; 3], [f32; 3], f32)> = (0..w * cam.height as usize)
        .into_par_iter()
        .map(|i| camera_ray(norm, cam, pose, (i % w) as f64 + 0.5, (i / w) as f64 + 0.5))
        .collect();
    (
        items.iter().map(|x| x.0).collect(),
        items.iter().map(|x| x.1).collect(),
        items.iter().map(|x| x.2).collect(),
    )
}

/// Ray through pixel position `(x, y)` of a camera (world-to-camera `pose`), in the norm frame:
/// origin, unit direction and cone radius per unit distance.
///
/// The direction goes through the camera model's lens distortion (COLMAP's models, undistorted by
/// Newton's method in [`Camera::pixel_to_normalized`]), so photos are used as taken. The radius is
/// multinerf's `pixels_to_rays` rule on this ray's own neighbourhood: `0.5 (|d(x+1) - d(x)| +
/// |d(y+1) - d(y)|) 2/sqrt(12)` over unit directions, so it follows the distortion and shrinks off
/// axis; for a pinhole's centre pixel it is `2 / (sqrt(12) f)` ([`crate::coord::cone_radius`]).
pub fn camera_ray(
    norm: &SceneNorm,
    cam: &Camera,
    pose: &Pose,
    x: f64,
    y: f64,
) -> ([f32; 3], [f32; 3], f32) {
    let (dc, radius) = camera_dir_radius(cam, x, y);
    let d = pose.dir_to_world(&dc);
    let o = norm.point(pose.center().into());
    (
        [o[0] as f32, o[1] as f32, o[2] as f32],
        [d.x as f32, d.y as f32, d.z as f32],
        radius as f32,
    )
}

/// [`camera_ray`]'s camera-frame part: the unit direction through pixel position `(x, y)` (lens
/// distortion undone) and the cone radius per unit distance. Independent of the pose (a rotation
/// keeps the spacing of unit directions), so the GPU sampler tabulates it once per camera.
pub fn camera_dir_radius(cam: &Camera, x: f64, y: f64) -> (Vector3<f64>, f64) {
    let unit = |x: f64, y: f64| {
        let xn = cam.pixel_to_normalized(Vector2::new(x, y));
        Vector3::new(xn.x, xn.y, 1.0).normalize()
    };
    let dc = unit(x, y);
    let spacing = 0.5 * ((unit(x + 1.0, y) - dc).norm() + (unit(x, y + 1.0) - dc).norm());
    (dc, spacing * 2.0 / 12f64.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flythrough_core::CameraModel;
    use flythrough_core::colmap::Image;

    /// A folder of `n` PNG photos `w x h` (a gradient, so resizing is visible) with a COLMAP model of
    /// camera `cam` looking at the origin from a ring, in `dir/images` and `dir/sfm/sparse`.
    fn folder(dir: &Path, n: usize, cam: &Camera) -> RedactedImages {
        let img_dir = dir.join("images");
        std::fs::create_dir_all(&img_dir).unwrap();
        let mut recon = Reconstruction::default();
        recon.cameras.insert(cam.id, cam.clone());
        for i in 0..n {
            let name = format!("p{i:02}.png");
            RgbImage::from_fn(cam.width, cam.height, |x, y| {
                image::Rgb([(x % 256) as u8, (y % 256) as u8, (i * 20) as u8])
            })
            .save(img_dir.join(&name))
            .unwrap();
            let a = i as f64 / n as f64 * std::f64::consts::TAU;
            let eye = Vector3::new(2.0 * a.cos(), 0.3, 2.0 * a.sin());
            let pose = Pose::look_at(eye, Vector3::zeros(), Vector3::new(0.0, -1.0, 0.0));
            recon.images.insert(
                i as u32 + 1,
                Image {
                    id: i as u32 + 1,
                    camera_id: cam.id,
                    name,
                    pose,
                    points2d: vec![],
                },
            );
        }
        recon.write_text(&dir.join("sfm").join("sparse")).unwrap();
        flythrough_testkit::cleared_images(&img_dir).unwrap()
    }

    #[test]
    fn automatic_training_size_follows_budget_floor_and_cap() {
        let auto = |rays: f64, max_side| SizeRule::Auto { rays, max_side };
        // Default budget (1500 steps x 2048 rays) over 500 training photos of 24 MP: the floor.
        let (w, h) = train_size(6000, 4000, 500, auto(1500.0 * 2048.0, 1600));
        assert_eq!((w, h), (480, 320));
        // 500 such photos then need 230 MB of 8-bit pixels (f32 would be 4x, at full size 36 GB).
        assert!(500 * 3 * w as usize * h as usize <= 250_000_000);
        // A GPU budget (30k steps x 8192 rays) over 100 photos: the budget, 2.46 MP per photo.
        let (w, h) = train_size(6000, 4000, 100, auto(30000.0 * 8192.0, 4000));
        let px = (w * h) as f64;
        assert!((px / 2.4576e6 - 1.0).abs() < 0.01, "{w}x{h}");
        assert!((w as f64 / h as f64 - 1.5).abs() < 0.01);
        // ... capped at train_max_side.
        assert_eq!(
            train_size(6000, 4000, 100, auto(30000.0 * 8192.0, 1600)),
            (1600, 1067)
        );
        // Never upscaled: small photos stay as they are.
        assert_eq!(train_size(320, 240, 40, auto(3.0e6, 1600)), (320, 240));
        assert_eq!(train_size(64, 48, 2000, auto(1e3, 1600)), (64, 48));
        // Portrait phone frames: the floor applies to the long side.
        assert_eq!(train_size(1080, 1920, 58, auto(3.0e6, 1600)), (270, 480));
        // Explicit factor.
        assert_eq!(train_size(1558, 1039, 1, SizeRule::Factor(4)), (389, 259));
    }

    /// Pixels are held once, 8-bit, at the training size: exactly `3 w h` bytes per loaded photo.
    #[test]
    fn loader_keeps_8_bit_pixels_at_training_size() {
        let dir = tempfile::tempdir().unwrap();
        let cam = Camera::new(1, CameraModel::Pinhole, 200, 150, 180.0);
        let images = folder(dir.path(), 9, &cam);
        let opts = LoadOptions {
            size: SizeRule::Factor(2),
            holdout_every: 8,
            skip_train: vec![],
        };
        let ds = Dataset::load(&images, None, &dir.path().join("sfm"), &opts).unwrap();
        assert_eq!(ds.photos.len(), 9);
        assert_eq!(ds.image_bytes(), 9 * 3 * 100 * 75);
        assert_eq!(ds.train_size(), (100, 75));
        assert_eq!(ds.photos[0].cam.focal(), (90.0, 90.0));
        // The automatic rule with a budget of 7 x 40000 rays: sqrt(40000 / 30000) > 1, full size.
        let auto = LoadOptions {
            size: SizeRule::Auto {
                rays: 7.0 * 40000.0,
                max_side: 1600,
            },
            ..opts.clone()
        };
        let ds = Dataset::load(&images, None, &dir.path().join("sfm"), &auto).unwrap();
        assert_eq!(ds.image_bytes(), 9 * 3 * 200 * 150);
        // ... and with a cap of 100 px.
        let capped = LoadOptions {
            size: SizeRule::Auto {
                rays: 7.0 * 40000.0,
                max_side: 100,
            },
            ..opts
        };
        let ds = Dataset::load(&images, None, &dir.path().join("sfm"), &capped).unwrap();
        assert_eq!(ds.train_size(), (100, 75));
        assert_eq!(ds.image_bytes(), 9 * 3 * 100 * 75);
    }

    /// `skip_train` (capture's blurry photos) leaves training photos out without moving the split;
    /// a held-out photo in the list stays held out.
    #[test]
    fn skip_train_leaves_photos_out_of_training_only() {
        let dir = tempfile::tempdir().unwrap();
        let cam = Camera::new(1, CameraModel::Pinhole, 40, 30, 40.0);
        let images = folder(dir.path(), 10, &cam);
        let opts = LoadOptions {
            size: SizeRule::Factor(1),
            holdout_every: 4,
            skip_train: vec!["p03.png".into(), "p04.png".into(), "p09.png".into()],
        };
        let ds = Dataset::load(&images, None, &dir.path().join("sfm"), &opts).unwrap();
        let names =
            |v: &[usize]| -> Vec<&str> { v.iter().map(|&i| ds.photos[i].name.as_str()).collect() };
        assert_eq!(names(&ds.holdout), ["p00.png", "p04.png", "p08.png"]);
        assert_eq!(
            names(&ds.train),
            ["p01.png", "p02.png", "p05.png", "p06.png", "p07.png"]
        );
        assert_eq!(ds.skipped_train, ["p03.png", "p09.png"]);
        assert_eq!(ds.image_bytes(), 8 * 3 * 40 * 30);
        assert_eq!(ds.train_pixels(), 5 * 40 * 30);
        // Latent indices are dense over the training photos.
        let lat: Vec<usize> = ds
            .train
            .iter()
            .map(|&i| ds.photos[i].latent.unwrap())
            .collect();
        assert_eq!(lat, [0, 1, 2, 3, 4]);
        // The same split without skipping.
        let all = LoadOptions {
            skip_train: vec![],
            ..opts
        };
        let ds2 = Dataset::load(&images, None, &dir.path().join("sfm"), &all).unwrap();
        assert_eq!(ds2.holdout.len(), 3);
        assert_eq!(ds2.train.len(), 7);
    }

    /// Rays through a strongly distorted camera: a point along the ray of pixel (x, y) projects
    /// back to (x, y) through the camera model (the distortion is not ignored or approximated).
    #[test]
    fn rays_follow_the_camera_models_distortion() {
        let dir = tempfile::tempdir().unwrap();
        let mut cam = Camera::new(1, CameraModel::Opencv, 160, 120, 90.0);
        cam.params[4..8].copy_from_slice(&[-0.3, 0.09, 0.002, -0.001]);
        let images = folder(dir.path(), 3, &cam);
        let opts = LoadOptions {
            size: SizeRule::Factor(1),
            holdout_every: 0,
            skip_train: vec![],
        };
        let ds = Dataset::load(&images, None, &dir.path().join("sfm"), &opts).unwrap();
        let mut worst = 0.0f64;
        let mut worst_pinhole = 0.0f64;
        let pinhole = Camera::new(1, CameraModel::Pinhole, 160, 120, 90.0);
        for p in 0..3 {
            let ph = &ds.photos[p];
            for (x, y) in [(0.5, 0.5), (80.0, 60.0), (159.5, 119.5), (10.25, 100.75)] {
                let (o, d, _) = ds.ray(p, x, y);
                for t in [0.3f64, 1.7] {
                    let pn = [
                        o[0] as f64 + t * d[0] as f64,
                        o[1] as f64 + t * d[1] as f64,
                        o[2] as f64 + t * d[2] as f64,
                    ];
                    let pw = Vector3::new(
                        pn[0] / ds.norm.scale + ds.norm.center[0],
                        pn[1] / ds.norm.scale + ds.norm.center[1],
                        pn[2] / ds.norm.scale + ds.norm.center[2],
                    );
                    let pc = ph.pose.transform(&pw);
                    let back = ph.cam.project(&pc).unwrap();
                    worst = worst.max((back - Vector2::new(x, y)).norm());
                    let back = pinhole.project(&pc).unwrap();
                    worst_pinhole = worst_pinhole.max((back - Vector2::new(x, y)).norm());
                }
            }
        }
        assert!(worst < 2e-3, "round trip {worst} px");
        // The same rays through an undistorted camera miss by far (the check has teeth).
        assert!(worst_pinhole > 10.0, "{worst_pinhole}");
    }

    /// The cone radius: multinerf's `2 / (sqrt(12) f)` at a pinhole's centre, smaller off axis.
    #[test]
    fn cone_radius_from_neighbouring_rays() {
        let norm = SceneNorm {
            center: [0.0; 3],
            scale: 1.0,
            near: 0.1,
        };
        let cam = Camera::new(1, CameraModel::Pinhole, 640, 480, 500.0);
        let pose = Pose::look_at(Vector3::zeros(), Vector3::z(), -Vector3::y());
        let (_, _, r) = camera_ray(&norm, &cam, &pose, 319.5, 239.5);
        let r0 = crate::coord::cone_radius(500.0);
        assert!((r / r0 - 1.0).abs() < 1e-3, "{r} vs {r0}");
        let (_, _, rc) = camera_ray(&norm, &cam, &pose, 0.5, 0.5);
        assert!(rc < 0.9 * r && rc > 0.5 * r, "{rc} vs {r}");
    }
}
