//! Training data: photos with their cameras, poses and exposures, the train/held-out split, the scene
//! normalisation, and ray generation.
//!
//! Naming: `p` indexes `Dataset::photos` (sorted by name); pixel `(x, y)` has its centre at
//! `(x + 0.5, y + 0.5)` (COLMAP convention); rays come out in the norm frame with unit directions.

use crate::NerfError;
use crate::coord::{self, SceneNorm};
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
    /// Cumulative pixel counts of the training photos (for uniform pixel sampling).
    cum: Vec<usize>,
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
        downscale: u32,
        holdout_every: usize,
    ) -> Result<Dataset, NerfError> {
        let sparse = sfm_dir.join("sparse");
        let recon = Reconstruction::read(&sparse)
            .map_err(|e| NerfError::Input(format!("{}: {e}", sparse.display())))?;
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
                let (img, cam) = if downscale > 1 {
                    let (w, h) = (
                        (img.width() / downscale).max(1),
                        (img.height() / downscale).max(1),
                    );
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
        Ok(Self::from_photos(photos, norm, holdout_every))
    }

    /// Split and index photos already in memory (tests build datasets this way too).
    pub fn from_photos(mut photos: Vec<Photo>, norm: SceneNorm, holdout_every: usize) -> Dataset {
        photos.sort_by(|a, b| a.name.cmp(&b.name));
        let mut train = Vec::new();
        let mut holdout = Vec::new();
        for i in 0..photos.len() {
            if holdout_every > 0 && i % holdout_every == 0 && photos.len() > 1 {
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
            cum,
        }
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

/// Ray through pixel position `(x, y)` of a camera (world-to-camera `pose`), in the norm frame:
/// origin, unit direction and cone radius per unit distance.
pub fn camera_ray(
    norm: &SceneNorm,
    cam: &Camera,
    pose: &Pose,
    x: f64,
    y: f64,
) -> ([f32; 3], [f32; 3], f32) {
    let xn = cam.pixel_to_normalized(Vector2::new(x, y));
    let d = pose
        .dir_to_world(&Vector3::new(xn.x, xn.y, 1.0))
        .normalize();
    let o = norm.point(pose.center().into());
    (
        [o[0] as f32, o[1] as f32, o[2] as f32],
        [d.x as f32, d.y as f32, d.z as f32],
        coord::cone_radius(cam.mean_focal()),
    )
}
