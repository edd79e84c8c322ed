//! Training batches drawn on the device: the training photos, their poses and per-camera ray
//! tables are uploaded once per training call ([`DeviceData`]), and each step the `sample_batch`
//! kernel (`shaders/sample_batch.wgsl`) fills the batch buffers the step reads (rays, latent
//! indices, jitter, target colours) from (`seed`, step) alone: the only per-step upload is its
//! 32-byte uniform. The draws are [`crate::rng`]'s, so the kernel picks the same pixels and jitter
//! as [`crate::train::step_batch`] on the CPU (the twin test checks the whole batch).
//!
//! What is uploaded, and how big it is (each a single storage binding, checked against the
//! adapter's `max_storage_binding_bytes` before anything is allocated; [`DataSize`]):
//! - **pixels**: the training photos' 8-bit RGB bytes as the CPU holds them (`3 w h` bytes per
//!   photo, back to back in training order, packed 4 to a u32): [`crate::data::Dataset::image_bytes`]
//!   of the training photos. Too large: lower `[train] train_max_side` (or raise
//!   `image_downscale`).
//! - **camera tables**: per distinct camera (same model, size and parameters; photos of one camera
//!   share it) and per pixel, the camera-frame unit direction and cone radius of
//!   [`crate::data::camera_dir_radius`] (the math of `camera_ray`, lens distortion included, in f64,
//!   stored as f32): `16 w h` bytes per camera, e.g. 27 MB for one 1600x1067 camera, but 16 bytes
//!   per training pixel when every photo has a camera of its own (e.g. a zoom lens). Too large:
//!   lower `train_max_side`.
//! - **photos**: 80 bytes per training photo (camera-to-world rotation, origin in the model frame,
//!   EV offset, width and table offset); **cum**: the cumulative pixel counts (4 bytes a photo).
//!
//! Pose refinement (`[train] pose_lr`) never reaches the GPU back end (it runs on the CPU only,
//! `lib.rs` refuses `device = "gpu"` with it), so no correction is applied to these rays.

use super::kernels::{Dispatch, Grid, Kernels, SampleBatchParams, launch};
use super::model::gpu_err;
use crate::NerfError;
use crate::data::{Dataset, camera_dir_radius};
use flythrough_core::Camera;
use flythrough_gpu::{Gpu, GpuBuffer};
use rayon::prelude::*;

/// Bytes of each buffer [`DeviceData`] uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataSize {
    pub pixels: u64,
    pub tables: u64,
    pub photos: u64,
    pub cum: u64,
    /// Distinct cameras (one table each).
    pub cameras: usize,
}

impl DataSize {
    pub fn total(&self) -> u64 {
        self.pixels + self.tables + self.photos + self.cum
    }

    /// An error naming what to lower when a buffer is larger than one binding of `limit` bytes.
    pub fn check(&self, limit: u64) -> Result<(), NerfError> {
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        let over = |what: &str, b: u64, lower: &str| {
            Err(NerfError::Gpu(format!(
                "the training photos' {what} take {:.1} MiB, more than this GPU binds at once \
                 ({:.1} MiB): {lower}",
                mib(b),
                mib(limit)
            )))
        };
        if self.pixels > limit || self.pixels >= 1 << 32 {
            return over(
                "8-bit pixels",
                self.pixels,
                "lower [train] train_max_side (or raise image_downscale) or train on fewer photos",
            );
        }
        if self.tables > limit {
            return over(
                &format!(
                    "ray tables ({} distinct cameras, 16 bytes per pixel)",
                    self.cameras
                ),
                self.tables,
                "lower [train] train_max_side (or raise image_downscale)",
            );
        }
        if self.photos.max(self.cum) > limit {
            return over("poses", self.photos.max(self.cum), "train on fewer photos");
        }
        Ok(())
    }
}

/// The host side of [`DeviceData`]: every buffer as it is uploaded.
pub struct HostData {
    pub cum: Vec<u32>,
    pub photos: Vec<[f32; 4]>,
    pub table: Vec<[f32; 4]>,
    pub pixels: Vec<u32>,
}

/// Whether two cameras give the same rays (the id does not matter).
fn same_camera(a: &Camera, b: &Camera) -> bool {
    a.model == b.model && a.width == b.width && a.height == b.height && a.params == b.params
}

/// The distinct cameras of the training photos and each training photo's camera.
fn cameras(ds: &Dataset) -> (Vec<&Camera>, Vec<usize>) {
    let mut cams: Vec<&Camera> = Vec::new();
    let mut of = Vec::with_capacity(ds.train.len());
    for &p in &ds.train {
        let c = &ds.photos[p].cam;
        let i = match cams.iter().position(|d| same_camera(d, c)) {
            Some(i) => i,
            None => {
                cams.push(c);
                cams.len() - 1
            }
        };
        of.push(i);
    }
    (cams, of)
}

impl HostData {
    /// The sizes [`HostData::build`] would produce, without building anything.
    pub fn size(ds: &Dataset) -> DataSize {
        let (cams, _) = cameras(ds);
        let px = ds.train_pixels() as u64;
        DataSize {
            pixels: (3 * px).div_ceil(4) * 4,
            tables: cams
                .iter()
                .map(|c| 16 * c.width as u64 * c.height as u64)
                .sum(),
            photos: 80 * ds.train.len() as u64,
            cum: 4 * (ds.train.len() as u64 + 1),
            cameras: cams.len(),
        }
    }

    /// Build every buffer: the camera tables with [`camera_dir_radius`] at each pixel centre (in
    /// parallel), the photos' rotations and origins as `camera_ray` computes them (f64, then f32).
    pub fn build(ds: &Dataset) -> HostData {
        let (cams, cam_of) = cameras(ds);
        let mut table = Vec::new();
        let mut table_off = Vec::with_capacity(cams.len());
        for cam in &cams {
            table_off.push(table.len() as u32);
            let w = cam.width as usize;
            let rows: Vec<[f32; 4]> = (0..w * cam.height as usize)
                .into_par_iter()
                .map(|i| {
                    let (d, r) = camera_dir_radius(cam, (i % w) as f64 + 0.5, (i / w) as f64 + 0.5);
                    [d.x as f32, d.y as f32, d.z as f32, r as f32]
                })
                .collect();
            table.extend(rows);
        }
        let mut photos = Vec::with_capacity(5 * ds.train.len());
        let mut bytes = Vec::with_capacity(3 * ds.train_pixels() + 4);
        for (k, &p) in ds.train.iter().enumerate() {
            let ph = &ds.photos[p];
            let m = ph.pose.rotation.inverse().to_rotation_matrix();
            let m = m.matrix();
            for a in 0..3 {
                photos.push([m[(a, 0)] as f32, m[(a, 1)] as f32, m[(a, 2)] as f32, 0.0]);
            }
            let o = ds.norm.point(ph.pose.center().into());
            photos.push([
                o[0] as f32,
                o[1] as f32,
                o[2] as f32,
                (ph.ev - ds.ev_mean) as f32,
            ]);
            let cam = cams[cam_of[k]];
            assert_eq!(
                ph.img.dimensions(),
                (cam.width, cam.height),
                "{}: photo and camera sizes",
                ph.name
            );
            photos.push([
                f32::from_bits(ph.img.width()),
                f32::from_bits(table_off[cam_of[k]]),
                0.0,
                0.0,
            ]);
            bytes.extend_from_slice(ph.img.as_raw());
        }
        bytes.resize(bytes.len().div_ceil(4).max(1) * 4, 0);
        let pixels = bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let cum = ds.train_cum().iter().map(|&c| c as u32).collect();
        if table.is_empty() {
            table.push([0.0; 4]);
        }
        if photos.is_empty() {
            photos.push([0.0; 4]);
        }
        HostData {
            cum,
            photos,
            table,
            pixels,
        }
    }
}

/// The training photos on the device (uploaded once per training call; see the module docs for
/// the buffers and their sizes).
pub struct DeviceData {
    pub cum: GpuBuffer,
    pub photos: GpuBuffer,
    pub table: GpuBuffer,
    pub pixels: GpuBuffer,
    pub n_photos: u32,
    pub total: u32,
    pub size: DataSize,
}

impl DeviceData {
    /// Check the sizes against `gpu`'s binding limit (an error naming what to lower), then build
    /// and upload every buffer.
    pub fn upload(gpu: &Gpu, ds: &Dataset) -> Result<DeviceData, NerfError> {
        let size = HostData::size(ds);
        size.check(gpu.limits().max_storage_binding_bytes)?;
        let total = u32::try_from(ds.train_pixels())
            .map_err(|_| NerfError::Gpu("2^32 training pixels or more".into()))?;
        let h = HostData::build(ds);
        let up = |label: &str, b: Result<GpuBuffer, flythrough_gpu::GpuError>| {
            b.map_err(gpu_err).map_err(|e| {
                NerfError::Gpu(format!(
                    "uploading the training photos' {label} ({:.1} MiB in all): {e}; lower [train] \
                     train_max_side",
                    size.total() as f64 / (1u64 << 20) as f64
                ))
            })
        };
        Ok(DeviceData {
            cum: up("pixel counts", gpu.upload("train cum", &h.cum))?,
            photos: up("poses", gpu.upload("train photos", &h.photos))?,
            table: up("ray tables", gpu.upload("train ray tables", &h.table))?,
            pixels: up("pixels", gpu.upload("train pixels", &h.pixels))?,
            n_photos: ds.train.len() as u32,
            total,
            size,
        })
    }

    /// The `sample_batch` launch writing `n_rays` rays into the given buffers, with its uniform
    /// (rewrite it per step with [`DeviceSampler::set_step`]).
    #[allow(clippy::too_many_arguments)]
    pub fn sampler(
        self,
        k: &Kernels,
        seed: u64,
        n_rays: usize,
        nlev: usize,
        rays: &GpuBuffer,
        latent_idx: &GpuBuffer,
        jitter: &GpuBuffer,
        target: &GpuBuffer,
    ) -> Result<DeviceSampler, NerfError> {
        let params = SampleBatchParams {
            n_rays: n_rays as u32,
            nlev: nlev as u32,
            n_photos: self.n_photos,
            total: self.total,
            seed_lo: seed as u32,
            seed_hi: (seed >> 32) as u32,
            step: 0,
            _p: 0,
        };
        let u = k.gpu.uniform("sample batch", &params).map_err(gpu_err)?;
        let dispatch = launch::SampleBatch {
            p: &u,
            cum: &self.cum,
            photos: &self.photos,
            table: &self.table,
            pixels: &self.pixels,
            rays,
            latent_idx,
            jitter,
            target_rgb: target,
        }
        .dispatch(k, Grid::Threads(n_rays as u64))
        .map_err(gpu_err)?;
        Ok(DeviceSampler {
            data: self,
            params,
            u,
            dispatch,
        })
    }
}

/// The `sample_batch` launch of a training batch: set the step, then record it before the
/// forward pass.
pub struct DeviceSampler {
    pub data: DeviceData,
    params: SampleBatchParams,
    u: GpuBuffer,
    pub dispatch: Dispatch,
}

impl DeviceSampler {
    /// Draw step `step`'s batch (its uniform: 32 bytes, the only per-step upload of the batch).
    pub fn set_step(&mut self, gpu: &Gpu, step: usize) {
        self.params.step = step as u32;
        gpu.write(&self.u, 0, std::slice::from_ref(&self.params));
    }
}
