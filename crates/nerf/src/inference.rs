//! The render API used by the render stage: load a trained model from a `train/` folder and render
//! rays given in the SfM world frame.

use crate::NerfError;
use crate::checkpoint::{self, CheckpointMeta};
use crate::coord::SceneNorm;
use crate::data::pixel_rays;
use crate::gpu::{FrameCamera, FrameTicket, GpuRenderer};
use crate::model::{Model, Rays, SampleMode};
use flythrough_core::config::Device;
use flythrough_core::summary::DeviceUsed;
use flythrough_core::{Camera, Pose};
use image::RgbImage;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

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

/// A trained model ready to render, on the CPU or (after [`NerfRenderer::on_device`]) a GPU.
#[derive(Debug, Clone)]
pub struct NerfRenderer {
    pub model: Model,
    pub meta: CheckpointMeta,
    mean_radius: f32,
    gpu: Option<GpuHandle>,
}

/// The GPU renderer behind a lock (the render API takes `&self`; GPU calls are serialised).
#[derive(Clone)]
struct GpuHandle(Arc<Mutex<GpuRenderer>>);

impl std::fmt::Debug for GpuHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GpuRenderer")
    }
}

impl GpuHandle {
    fn lock(&self) -> MutexGuard<'_, GpuRenderer> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Rays per chunk when rendering.
const CHUNK: usize = 4096;

impl NerfRenderer {
    /// Load the checkpoint of a train stage's output folder (`TrainOutput::CHECKPOINT` in it).
    pub fn load(train_dir: &Path) -> Result<Self, NerfError> {
        Self::from_checkpoint(&train_dir.join(flythrough_core::TrainOutput::CHECKPOINT))
    }

    /// Load any checkpoint file.
    pub fn from_checkpoint(path: &Path) -> Result<Self, NerfError> {
        let (model, _, meta) = checkpoint::load(path)?;
        let mean_radius = meta.mean_radius.unwrap_or(1e-3);
        Ok(NerfRenderer {
            model,
            meta,
            mean_radius,
            gpu: None,
        })
    }

    /// Render on `device` from now on (`[render] device`): uploads the model when it resolves to a
    /// GPU; `auto` without a hardware GPU stays on the CPU.
    pub fn on_device(mut self, device: Device) -> Result<Self, NerfError> {
        // The GPU back end runs the hash-grid backbone; `auto` keeps an IPE model on the CPU.
        if device == Device::Auto && self.model.cfg.backbone == crate::model::Backbone::IpeMlp {
            self.gpu = None;
            return Ok(self);
        }
        self.gpu = match crate::gpu::open(device)? {
            Some(g) => {
                let chunk = crate::gpu::inference::default_chunk(&self.model, &g);
                let r = GpuRenderer::new(g, &self.model, chunk)?;
                Some(GpuHandle(Arc::new(Mutex::new(r))))
            }
            None => None,
        };
        Ok(self)
    }

    /// Where this renderer runs.
    pub fn device(&self) -> DeviceUsed {
        match &self.gpu {
            Some(h) => crate::gpu::device_used(Some(h.lock().gpu())),
            None => DeviceUsed::cpu(),
        }
    }

    /// Start rendering a whole frame on the GPU (`None` on the CPU: render rays instead). The
    /// camera is in the model's frame ([`FrameCamera::photo`], [`FrameCamera::equirect`] take
    /// world-frame inputs and [`NerfRenderer::norm`]).
    pub fn start_frame(
        &self,
        cam: &FrameCamera,
        opts: &RenderOptions,
    ) -> Option<Result<FrameTicket, NerfError>> {
        let h = self.gpu.as_ref()?;
        let ev = self.relative_ev(opts);
        let latent = self.latent(&opts.latent);
        Some(h.lock().start_frame(cam, ev, &latent))
    }

    fn relative_ev(&self, opts: &RenderOptions) -> f32 {
        opts.exposure_ev
            .map(|e| e - self.meta.ev_mean)
            .unwrap_or(0.0) as f32
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
        let (o, d) = norm.rays(origins, dirs);
        let rays = Rays {
            o,
            d,
            r: vec![r; origins.len()],
            latent: Vec::new(),
            ev: vec![ev; origins.len()],
        };
        let mut out = match &self.gpu {
            Some(h) => {
                let packed: Vec<[f32; 8]> = (0..rays.len())
                    .map(|i| {
                        let (o, d) = (rays.o[i], rays.d[i]);
                        [o[0], o[1], o[2], d[0], d[1], d[2], rays.r[i], rays.ev[i]]
                    })
                    .collect();
                match h.lock().render_rays(&packed, &latent) {
                    Ok(v) => RenderOutput {
                        rgb: v.iter().map(|x| [x[0], x[1], x[2]]).collect(),
                        depth: v.iter().map(|x| x[3]).collect(),
                        opacity: v.iter().map(|x| x[4]).collect(),
                    },
                    Err(e) => {
                        tracing::error!(
                            "render: GPU failed ({e}); rendering these rays on the CPU"
                        );
                        render_norm(&self.model, &rays, &latent)
                    }
                }
            }
            None => render_norm(&self.model, &rays, &latent),
        };
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
        if let Some(h) = &self.gpu {
            let fc = FrameCamera::photo(&self.meta.norm, cam, pose);
            match h.lock().render_frame(&fc, ev, &latent) {
                Ok(img) => return img,
                Err(e) => tracing::error!("render: GPU failed ({e}); rendering on the CPU"),
            }
        }
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
    let (o, d, r) = pixel_rays(norm, cam, pose);
    let rays = Rays {
        ev: vec![ev; o.len()],
        o,
        d,
        r,
        latent: Vec::new(),
    };
    let out = render_norm(model, &rays, latent);
    out.rgb.iter().flat_map(|c| c.iter().copied()).collect()
}
