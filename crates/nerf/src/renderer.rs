//! The render API used by the render stage: load a trained model from a `train/` folder and render
//! rays given in the SfM world frame.

use crate::NerfError;
use crate::checkpoint::{self, CheckpointMeta};
use crate::coord::SceneNorm;
use crate::data::camera_ray;
use crate::model::{Model, Rays, SampleMode};
use flythrough_core::{Camera, Pose};
use image::RgbImage;
use rayon::prelude::*;
use std::path::Path;

/// Which appearance (GLO) latent to render with.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum LatentChoice {
    /// The mean of the training photos' latents (default; nerfacto's choice for novel views).
    #[default]
    Mean,
    /// The latent of one training photo, by file name.
    Photo(String),
    /// All zeros (multinerf's choice at test time).
    Zero,
}

/// Render settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RenderOptions {
    /// Exposure value (EV, absolute, as in the manifest). `None` = the mean of the training photos.
    pub exposure_ev: Option<f64>,
    pub latent: LatentChoice,
    /// Cone radius per unit distance (radians per pixel-ish, multinerf's `radii`) for anti-aliasing;
    /// `None` = the training photos' mean. For a pinhole of focal f px: `2 / (sqrt(12) f)`.
    pub radius_px: Option<f32>,
}

/// Per-ray outputs. `depth` is the expected distance along the (unit) world direction, in world units.
#[derive(Debug, Clone, Default)]
pub struct RenderOutput {
    pub rgb: Vec<[f32; 3]>,
    pub depth: Vec<f32>,
    pub opacity: Vec<f32>,
}

/// A trained model ready to render.
#[derive(Debug, Clone)]
pub struct NerfRenderer {
    pub model: Model,
    pub meta: CheckpointMeta,
    mean_radius: f32,
}

/// Rays per chunk when rendering.
const CHUNK: usize = 4096;

impl NerfRenderer {
    /// Load `train_dir/checkpoints/final.safetensors` (the layout `run` writes).
    pub fn load(train_dir: &Path) -> Result<Self, NerfError> {
        let p = train_dir.join("checkpoints").join("final.safetensors");
        Self::from_checkpoint(&p)
    }

    /// Load any checkpoint file.
    pub fn from_checkpoint(path: &Path) -> Result<Self, NerfError> {
        let (model, _, meta) = checkpoint::load(path)?;
        let mean_radius = meta.mean_radius.unwrap_or(1e-3);
        Ok(NerfRenderer {
            model,
            meta,
            mean_radius,
        })
    }

    /// Scene normalisation (world -> model frame).
    pub fn norm(&self) -> SceneNorm {
        self.meta.norm
    }

    fn latent(&self, c: &LatentChoice) -> Vec<f32> {
        let d = self.model.cfg.glo_dim;
        match c {
            LatentChoice::Mean => self.model.mean_latent(),
            LatentChoice::Zero => vec![0.0; d],
            LatentChoice::Photo(name) => match self.meta.train_names.iter().position(|n| n == name)
            {
                Some(i) => self.model.latent(i),
                None => {
                    tracing::warn!("render: {name} is not a training photo; using the mean latent");
                    self.model.mean_latent()
                }
            },
        }
    }

    /// Render rays given in the SfM world frame (any direction length; normalised here).
    pub fn render_rays(
        &self,
        origins: &[[f32; 3]],
        dirs: &[[f32; 3]],
        opts: &RenderOptions,
    ) -> RenderOutput {
        let norm = self.meta.norm;
        let ev = opts
            .exposure_ev
            .map(|e| e - self.meta.ev_mean)
            .unwrap_or(0.0) as f32;
        let latent = self.latent(&opts.latent);
        let r = opts.radius_px.unwrap_or(self.mean_radius);
        let rays = Rays {
            o: origins
                .iter()
                .map(|o| {
                    let p = norm.point([o[0] as f64, o[1] as f64, o[2] as f64]);
                    [p[0] as f32, p[1] as f32, p[2] as f32]
                })
                .collect(),
            d: dirs
                .iter()
                .map(|d| {
                    let n = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt().max(1e-20);
                    [d[0] / n, d[1] / n, d[2] / n]
                })
                .collect(),
            r: vec![r; origins.len()],
            latent: Vec::new(),
            ev: vec![ev; origins.len()],
        };
        let mut out = render_norm(&self.model, &rays, &latent);
        let inv = (1.0 / norm.scale) as f32;
        out.depth.iter_mut().for_each(|d| *d *= inv);
        out
    }

    /// Render a whole photo from a camera and a world-to-camera pose (pixel centres).
    pub fn render_camera(&self, cam: &Camera, pose: &Pose, opts: &RenderOptions) -> RgbImage {
        let ev = opts
            .exposure_ev
            .map(|e| e - self.meta.ev_mean)
            .unwrap_or(0.0) as f32;
        let latent = self.latent(&opts.latent);
        let img = render_photo_rays(&self.model, &self.meta.norm, cam, pose, ev, &latent);
        crate::metrics::to_image(&img, cam.width as usize, cam.height as usize)
    }
}

/// Render norm-frame rays in chunks (deterministic sample placement); `latent` is used for every ray.
pub fn render_norm(model: &Model, rays: &Rays, latent: &[f32]) -> RenderOutput {
    let mut out = RenderOutput::default();
    let mode = SampleMode {
        jitter: None,
        train_frac: 1.0,
    };
    let gd = model.cfg.glo_dim;
    for start in (0..rays.len()).step_by(CHUNK) {
        let end = (start + CHUNK).min(rays.len());
        let mut chunk = Rays {
            o: rays.o[start..end].to_vec(),
            d: rays.d[start..end].to_vec(),
            r: rays.r[start..end].to_vec(),
            latent: Vec::with_capacity((end - start) * gd),
            ev: rays.ev[start..end].to_vec(),
        };
        for _ in start..end {
            chunk.latent.extend_from_slice(&latent[..gd]);
        }
        let f = model.forward(&chunk, &mode, false);
        out.rgb.extend(f.rgb);
        out.depth.extend(f.depth);
        out.opacity.extend(f.acc);
    }
    out
}

/// Render a photo's pixel centres; returns `[h * w * 3]` floats.
pub fn render_photo_rays(
    model: &Model,
    norm: &SceneNorm,
    cam: &Camera,
    pose: &Pose,
    ev: f32,
    latent: &[f32],
) -> Vec<f32> {
    let (w, h) = (cam.width as usize, cam.height as usize);
    let items: Vec<([f32; 3], [f32; 3], f32)> = (0..w * h)
        .into_par_iter()
        .map(|i| camera_ray(norm, cam, pose, (i % w) as f64 + 0.5, (i / w) as f64 + 0.5))
        .collect();
    let rays = Rays {
        o: items.iter().map(|x| x.0).collect(),
        d: items.iter().map(|x| x.1).collect(),
        r: items.iter().map(|x| x.2).collect(),
        latent: Vec::new(),
        ev: vec![ev; w * h],
    };
    let out = render_norm(model, &rays, latent);
    out.rgb.iter().flat_map(|c| c.iter().copied()).collect()
}
