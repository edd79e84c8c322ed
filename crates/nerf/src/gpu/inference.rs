//! Rendering on the GPU: rays given by the host, or whole frames whose rays are generated on the
//! device (a COLMAP camera with its distortion, or a levelled equirectangular 360° camera), in
//! chunks of the batch's capacity. Frames are packed to 8-bit RGBA on the device and read back
//! once; two frame buffers alternate so the host can encode one frame while the next renders.

use super::batch::{Batch, Mode};
use super::kernels::{CamParams, Dispatch, EquiParams, Grid, launch};
use super::model::{GpuModel, gpu_err};
use crate::NerfError;
use crate::coord::SceneNorm;
use crate::model::{LossWeights, Model};
use flythrough_core::{Camera, Pose};
use flythrough_gpu::{Gpu, GpuBuffer, Profiler, Readback};
use image::RgbImage;
use std::sync::Arc;

/// A camera whose rays the device generates. Positions and axes are in the model's (norm) frame.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameCamera {
    /// A COLMAP camera (any supported model, with its distortion) at a pose.
    Photo {
        cam: Camera,
        /// Camera-to-world rotation (rows).
        rot_c2w: [[f64; 3]; 3],
        origin: [f64; 3],
    },
    /// Equirectangular, levelled: `right`, `forward`, `up` orthonormal.
    Equirect {
        width: u32,
        height: u32,
        origin: [f64; 3],
        right: [f64; 3],
        forward: [f64; 3],
        up: [f64; 3],
    },
}

impl FrameCamera {
    /// A photo's camera: `pose` is world-to-camera in the SfM frame.
    pub fn photo(norm: &SceneNorm, cam: &Camera, pose: &Pose) -> FrameCamera {
        let r = pose.rotation.inverse().to_rotation_matrix();
        let m = r.matrix();
        let c = pose.center();
        FrameCamera::Photo {
            cam: cam.clone(),
            rot_c2w: [
                [m[(0, 0)], m[(0, 1)], m[(0, 2)]],
                [m[(1, 0)], m[(1, 1)], m[(1, 2)]],
                [m[(2, 0)], m[(2, 1)], m[(2, 2)]],
            ],
            origin: norm.point([c.x, c.y, c.z]),
        }
    }

    /// A 360° camera at world point `center` with world axes.
    pub fn equirect(
        norm: &SceneNorm,
        width: u32,
        height: u32,
        center: [f64; 3],
        right: [f64; 3],
        forward: [f64; 3],
        up: [f64; 3],
    ) -> FrameCamera {
        FrameCamera::Equirect {
            width,
            height,
            origin: norm.point(center),
            right,
            forward,
            up,
        }
    }

    pub fn size(&self) -> (u32, u32) {
        match self {
            FrameCamera::Photo { cam, .. } => (cam.width, cam.height),
            FrameCamera::Equirect { width, height, .. } => (*width, *height),
        }
    }
}

fn v4(v: [f64; 3]) -> [f32; 4] {
    [v[0] as f32, v[1] as f32, v[2] as f32, 0.0]
}

/// A frame in flight: [`FrameTicket::wait`] returns it.
pub struct FrameTicket {
    rb: Readback,
    width: u32,
    height: u32,
    gpu: Arc<Gpu>,
}

impl FrameTicket {
    /// Whether the frame is there (never blocks).
    pub fn ready(&self) -> bool {
        self.rb.ready(&self.gpu)
    }

    /// The frame (blocks until the device has rendered it).
    pub fn wait(self) -> Result<RgbImage, NerfError> {
        let px: Vec<u32> = self.rb.wait_as(&self.gpu).map_err(gpu_err)?;
        let n = (self.width * self.height) as usize;
        let mut rgb = Vec::with_capacity(3 * n);
        for &p in &px[..n] {
            rgb.extend_from_slice(&[p as u8, (p >> 8) as u8, (p >> 16) as u8]);
        }
        RgbImage::from_raw(self.width, self.height, rgb)
            .ok_or_else(|| NerfError::Gpu("frame buffer of the wrong size".into()))
    }
}

/// Rays per chunk by default: bounded by the binding limit of the largest per-sample buffer.
pub fn default_chunk(model: &Model, gpu: &Gpu) -> usize {
    let cfg = &model.cfg;
    let mut per_ray = cfg.nerf_samples * (cfg.nerf_grid.output_dim().max(16)).max(4);
    for (k, &n) in cfg.prop_samples.iter().enumerate() {
        per_ray = per_ray.max(n * cfg.prop_grids[k].output_dim());
    }
    let max = gpu.limits().max_storage_binding_bytes / (4 * per_ray.max(1) as u64);
    (max as usize).clamp(256, 1 << 16) / 256 * 256
}

/// A batch of one capacity with its composite dispatches.
struct Slot {
    batch: Batch,
    /// `composite` writing floats only.
    plain: Dispatch,
    /// `composite` packing into frame buffer 0 / 1, with the id of the buffer it was built for.
    framed: [Option<(u64, Dispatch)>; 2],
    latent: Vec<f32>,
}

/// A model on the GPU, ready to render. Work runs in chunks of at most `max_chunk` rays; a
/// smaller job gets a batch of its own size (powers of two from 256 up), built on first use.
pub struct GpuRenderer {
    pub model: GpuModel,
    max_chunk: usize,
    slots: Vec<Slot>,
    px: [GpuBuffer; 2],
    next: usize,
    /// Per-kernel GPU times of the frames [`GpuRenderer::start_frame`] renders while set (for
    /// benchmarks: each chunk then waits for its timestamps).
    pub profiler: Option<Profiler>,
}

impl GpuRenderer {
    /// Upload `model`; chunks of at most `chunk` rays (see [`default_chunk`]).
    pub fn new(gpu: Arc<Gpu>, model: &Model, chunk: usize) -> Result<GpuRenderer, NerfError> {
        let m = GpuModel::new(gpu.clone(), model)?;
        let px = [
            gpu.storage_len("frame 0", 4).map_err(gpu_err)?,
            gpu.storage_len("frame 1", 4).map_err(gpu_err)?,
        ];
        Ok(GpuRenderer {
            model: m,
            max_chunk: chunk.max(1),
            slots: Vec::new(),
            px,
            next: 0,
            profiler: None,
        })
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        self.model.gpu()
    }

    /// Most rays per chunk.
    pub fn chunk(&self) -> usize {
        self.max_chunk
    }

    /// The slot for jobs of `n` rays (chunks of its capacity), with `latent` loaded.
    fn slot(&mut self, n: usize, latent: &[f32]) -> Result<usize, NerfError> {
        let cap = if n >= self.max_chunk {
            self.max_chunk
        } else {
            n.next_power_of_two().max(256).min(self.max_chunk)
        };
        let i = match self.slots.iter().position(|s| s.batch.cap == cap) {
            Some(i) => i,
            None => {
                let lw = LossWeights {
                    distortion: 0.0,
                    interlevel: 0.0,
                };
                let batch = Batch::new(&self.model, cap, Mode::Infer, lw)?;
                let plain = batch.composite(&self.model, &self.px[0])?;
                self.slots.push(Slot {
                    batch,
                    plain,
                    framed: [None, None],
                    latent: Vec::new(),
                });
                self.slots.len() - 1
            }
        };
        let s = &mut self.slots[i];
        if s.latent != latent {
            s.batch.set_latent(self.model.gpu(), latent);
            s.latent = latent.to_vec();
        }
        Ok(i)
    }

    /// Render rays in the norm frame (`[o, d (unit), radius, ev relative to the training mean]`)
    /// with one GLO latent; returns `[r, g, b, depth, opacity]` per ray (depth in norm units).
    pub fn render_rays(
        &mut self,
        rays: &[[f32; 8]],
        latent: &[f32],
    ) -> Result<Vec<[f32; 5]>, NerfError> {
        let si = self.slot(rays.len(), latent)?;
        let gpu = self.model.gpu().clone();
        let s = &self.slots[si];
        let mut out = Vec::with_capacity(rays.len());
        for chunk in rays.chunks(s.batch.cap) {
            s.batch.set_rays(&gpu, chunk);
            s.batch.set_composite(&gpu, 0, false, 0);
            let mut rec = gpu.recorder("render rays");
            s.batch.record_forward(&mut rec);
            s.plain.record(&mut rec);
            let rb = rec.read_back(&s.batch.out, 0, (chunk.len() * 5 * 4) as u64);
            rec.submit();
            let v: Vec<[f32; 5]> = rb.wait_as(&gpu).map_err(gpu_err)?;
            out.extend_from_slice(&v);
        }
        Ok(out)
    }

    /// Start rendering a whole frame at exposure `ev` (relative to the training mean) with one GLO
    /// latent. Two frames can be in flight: start frame k + 1, then wait for frame k.
    pub fn start_frame(
        &mut self,
        cam: &FrameCamera,
        ev: f32,
        latent: &[f32],
    ) -> Result<FrameTicket, NerfError> {
        let gpu = self.model.gpu().clone();
        let (w, h) = cam.size();
        let npix = w as usize * h as usize;
        let si = self.slot(npix, latent)?;
        let fb = self.next;
        self.next ^= 1;
        if self.px[fb].len() < npix {
            self.px[fb] = gpu.storage_len("frame", npix).map_err(gpu_err)?;
        }
        let px_id = self.px[fb].id();
        if self.slots[si].framed[fb].as_ref().map(|f| f.0) != Some(px_id) {
            let d = self.slots[si].batch.composite(&self.model, &self.px[fb])?;
            self.slots[si].framed[fb] = Some((px_id, d));
        }
        let (raygen, u, template, (o_pix, o_n)) = self.raygen(si, cam, ev)?;
        let mut prof = self.profiler.take();
        let s = &self.slots[si];
        let composite = &s.framed[fb].as_ref().expect("built above").1;
        let cap = s.batch.cap;
        let chunks = npix.div_ceil(cap);
        let mut ticket = None;
        for c in 0..chunks {
            let pix0 = (c * cap) as u32;
            let mut p = template.clone();
            p[o_pix..o_pix + 4].copy_from_slice(&pix0.to_le_bytes());
            p[o_n..o_n + 4].copy_from_slice(&(cap as u32).to_le_bytes());
            gpu.write(&u, 0, &p);
            s.batch.set_composite(&gpu, pix0, true, npix as u32);
            let mut rec = gpu.recorder("render frame");
            if let Some(p) = prof.as_mut() {
                rec.profile(p);
            }
            raygen.record(&mut rec);
            s.batch.record_forward(&mut rec);
            composite.record(&mut rec);
            if c + 1 == chunks {
                ticket = Some(rec.read_back(&self.px[fb], 0, 4 * npix as u64));
            }
            rec.submit();
            if let Some(p) = prof.as_mut() {
                p.collect(&gpu);
            }
        }
        self.profiler = prof;
        Ok(FrameTicket {
            rb: ticket.expect("at least one chunk"),
            width: w,
            height: h,
            gpu,
        })
    }

    /// The ray-generation dispatch of `cam` (writing the batch's rays), its uniform, the uniform's
    /// bytes and the byte offsets of its `pix0` and `n` fields (set per chunk).
    fn raygen(
        &self,
        si: usize,
        cam: &FrameCamera,
        ev: f32,
    ) -> Result<(Dispatch, GpuBuffer, Vec<u8>, (usize, usize)), NerfError> {
        let gpu = self.model.gpu();
        let (w, h) = cam.size();
        let (equirect, bytes, offs) = match cam {
            FrameCamera::Photo {
                cam,
                rot_c2w,
                origin,
            } => {
                let (fx, fy) = cam.focal();
                let (cx, cy) = cam.principal_point();
                let dist = cam.distortion();
                let p = CamParams {
                    fx: fx as f32,
                    fy: fy as f32,
                    cx: cx as f32,
                    cy: cy as f32,
                    k1: dist[0] as f32,
                    k2: dist[1] as f32,
                    p1: dist[2] as f32,
                    p2: dist[3] as f32,
                    width: w,
                    pix0: 0,
                    n: 0,
                    distorted: dist.iter().any(|&v| v != 0.0) as u32,
                    _r: 0.0,
                    ev,
                    _p: [0.0; 2],
                    origin: v4(*origin),
                    rt0: v4(rot_c2w[0]),
                    rt1: v4(rot_c2w[1]),
                    rt2: v4(rot_c2w[2]),
                };
                // pix0 and n are bytes 36 and 40 of CamParams.
                (false, bytemuck::bytes_of(&p).to_vec(), (36, 40))
            }
            FrameCamera::Equirect {
                origin,
                right,
                forward,
                up,
                ..
            } => {
                let p = EquiParams {
                    width: w,
                    height: h,
                    pix0: 0,
                    n: 0,
                    ev,
                    _p: [0.0; 3],
                    origin: v4(*origin),
                    right: v4(*right),
                    forward: v4(*forward),
                    up: v4(*up),
                };
                // pix0 and n are bytes 8 and 12 of EquiParams.
                (true, bytemuck::bytes_of(&p).to_vec(), (8, 12))
            }
        };
        let u = gpu.uniform("raygen params", &[0u8; 128]).map_err(gpu_err)?;
        let batch = &self.slots[si].batch;
        let (k, rays, grid) = (&self.model.k, &batch.rays, Grid::Threads(batch.cap as u64));
        let d = if equirect {
            launch::RaygenEquirect { p: &u, rays }.dispatch(k, grid)
        } else {
            launch::RaygenCamera { p: &u, rays }.dispatch(k, grid)
        }
        .map_err(gpu_err)?;
        Ok((d, u, bytes, offs))
    }

    /// The rays the device generates for `cam` (`[o, d, radius, ev]` per pixel, row-major), read
    /// back (for tests and diagnostics).
    pub fn frame_rays(&mut self, cam: &FrameCamera, ev: f32) -> Result<Vec<[f32; 8]>, NerfError> {
        let gpu = self.model.gpu().clone();
        let (w, h) = cam.size();
        let npix = w as usize * h as usize;
        let si = self.slot(npix, &[])?;
        let (raygen, u, template, (o_pix, o_n)) = self.raygen(si, cam, ev)?;
        let s = &self.slots[si];
        let cap = s.batch.cap;
        let mut out = Vec::with_capacity(npix);
        for c in 0..npix.div_ceil(cap) {
            let mut p = template.clone();
            p[o_pix..o_pix + 4].copy_from_slice(&((c * cap) as u32).to_le_bytes());
            p[o_n..o_n + 4].copy_from_slice(&(cap as u32).to_le_bytes());
            gpu.write(&u, 0, &p);
            let mut rec = gpu.recorder("frame rays");
            raygen.record(&mut rec);
            let rb = rec.read_back(&s.batch.rays, 0, (cap * 32) as u64);
            rec.submit();
            let v: Vec<[f32; 8]> = rb.wait_as(&gpu).map_err(gpu_err)?;
            out.extend_from_slice(&v[..cap.min(npix - c * cap)]);
        }
        Ok(out)
    }

    /// A whole frame's linear colours `[h * w * 3]` (not quantised; blocking): evaluation scores
    /// these as the CPU's `render_photo_rays`.
    pub fn render_frame_f32(
        &mut self,
        cam: &FrameCamera,
        ev: f32,
        latent: &[f32],
    ) -> Result<Vec<f32>, NerfError> {
        let gpu = self.model.gpu().clone();
        let (w, h) = cam.size();
        let npix = w as usize * h as usize;
        let si = self.slot(npix, latent)?;
        let (raygen, u, template, (o_pix, o_n)) = self.raygen(si, cam, ev)?;
        let s = &self.slots[si];
        let cap = s.batch.cap;
        let mut out = Vec::with_capacity(3 * npix);
        for c in 0..npix.div_ceil(cap) {
            let mut p = template.clone();
            p[o_pix..o_pix + 4].copy_from_slice(&((c * cap) as u32).to_le_bytes());
            p[o_n..o_n + 4].copy_from_slice(&(cap as u32).to_le_bytes());
            gpu.write(&u, 0, &p);
            s.batch.set_composite(&gpu, 0, false, 0);
            let mut rec = gpu.recorder("frame floats");
            raygen.record(&mut rec);
            s.batch.record_forward(&mut rec);
            s.plain.record(&mut rec);
            let rb = rec.read_back(&s.batch.out, 0, (cap * 20) as u64);
            rec.submit();
            let v: Vec<[f32; 5]> = rb.wait_as(&gpu).map_err(gpu_err)?;
            for px in &v[..cap.min(npix - c * cap)] {
                out.extend_from_slice(&px[..3]);
            }
        }
        Ok(out)
    }

    /// Render a whole frame (blocking).
    pub fn render_frame(
        &mut self,
        cam: &FrameCamera,
        ev: f32,
        latent: &[f32],
    ) -> Result<RgbImage, NerfError> {
        self.start_frame(cam, ev, latent)?.wait()
    }
}
