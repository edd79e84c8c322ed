//! The baked model on a GPU (wgpu, through `flythrough-gpu`): the grid and the colour head uploaded
//! once, then one invocation of `shaders/baked_march.wgsl` per ray — the march of
//! [`Grid::march_visiting`](crate::grid::Grid::march_visiting) (same contraction, constant
//! contracted-space step, exact exits from empty cubes of blocks and empty voxels inside the unit
//! ball, block-distance skips outside, `RAW_EMPTY` skip, `T_MIN` termination) and the deferred colour head of
//! [`ColorHead::shade`](flythrough_nerf::field::ColorHead::shade) in the same kernel.
//!
//! On the device the grid is: the block index (`u32` per block), the block distances
//! (`empty_dist`, one byte per block, four to a word), the voxel masks (16 words per stored block) and the
//! blocks' bytes packed four to a `u32` (a vertex's 16 channels are 4 words); the dequantisation
//! (`lo`, `scale`) and the march constants travel in the uniform [`BakedParams`].

use crate::grid::{BLOCK, CHANNELS, Grid, RAW_EMPTY, STEP_VOXELS, T_MIN, VERTS};
use crate::model::{BakedModel, BakedOutput};
use bytemuck::{Pod, Zeroable};
use flythrough_gpu::{BindGroup, Gpu, GpuBuffer, Kernel};
use flythrough_nerf::coord::SceneNorm;
use flythrough_nerf::encoding::{DIR_DIM, EXPOSURE_DIM};
use flythrough_nerf::field::ColorHead;
use flythrough_nerf::model::GEO_DIM;
use std::sync::{Arc, Mutex};

// The kernel reads a vertex as 4 words and a block's voxel mask as 16: the layout it assumes.
const _: () = assert!(BLOCK == 8 && VERTS == 9 && CHANNELS == 16 && GEO_DIM == 15);
const _: () = assert!(DIR_DIM == 27 && EXPOSURE_DIM == 9);

macro_rules! wgsl {
    ($f:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shaders/", $f))
    };
}

/// `common.wgsl` + `baked_march.wgsl`, composed at build time (the head's widths are prepended
/// per model by [`kernel_source`]).
pub const BAKED_MARCH: &str = concat!(
    wgsl!("common.wgsl"),
    "\n// ---- baked_march.wgsl\n",
    wgsl!("baked_march.wgsl")
);

/// The kernel's entry point.
pub const ENTRY: &str = "baked_march";

/// Rays per dispatch at most (8 floats in, 8 out per ray: 8 MiB each).
const MAX_CHUNK: usize = 1 << 18;

/// The uniform parameter block of `baked_march.wgsl` (`BakedParams`, same layout).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct BakedParams {
    pub n: u32,
    pub res: u32,
    pub nb: u32,
    pub max_steps: u32,
    pub near: f32,
    pub voxel: f32,
    pub step_c: f32,
    pub block_c: f32,
    pub r_end: f32,
    pub t_min: f32,
    pub raw_empty: f32,
    pub glo_dim: u32,
    pub exposure: u32,
    pub w0: u32,
    pub b0: u32,
    pub w1: u32,
    pub b1: u32,
    pub w2: u32,
    pub b2: u32,
    pub _p0: u32,
    pub lo: [[f32; 4]; 4],
    pub scale: [[f32; 4]; 4],
    /// The background colour (`BakedModel::background`), w unused.
    pub bg: [f32; 4],
}

/// The kernel's text for a colour head: `HEAD_W` (hidden width) and `HEAD_IN` (input width)
/// prepended to [`BAKED_MARCH`].
pub fn kernel_source(head: &ColorHead) -> String {
    let cfg = head.mlp();
    format!(
        "const HEAD_W: u32 = {}u;\nconst HEAD_IN: u32 = {}u;\n{BAKED_MARCH}",
        head.mlp_width,
        cfg.input_dim()
    )
}

/// The march constants and the head's layout for `model`, with `n` rays.
pub fn params(model: &BakedModel, n: u32) -> Result<BakedParams, String> {
    let g = &model.grid;
    let offs = model.head.mlp().layer_offsets();
    let [l0, l1, l2] = offs.as_slice() else {
        return Err(format!(
            "colour head: {} layers, the GPU renderer runs 3",
            offs.len()
        ));
    };
    let bias = |l: &flythrough_nerf::kernels::mlp::LayerOffsets| {
        l.bias
            .map(|b| b as u32)
            .ok_or_else(|| "colour head without biases".to_string())
    };
    let quad = |v: &[f32; CHANNELS]| -> [[f32; 4]; 4] {
        std::array::from_fn(|k| [v[4 * k], v[4 * k + 1], v[4 * k + 2], v[4 * k + 3]])
    };
    Ok(BakedParams {
        n,
        res: g.res as u32,
        nb: g.blocks() as u32,
        max_steps: (64 * g.res) as u32,
        near: model.norm.near as f32,
        voxel: g.voxel(),
        step_c: STEP_VOXELS * g.voxel(),
        block_c: BLOCK as f32 * g.voxel(),
        r_end: 2.0 - 0.5 * g.voxel(),
        t_min: T_MIN,
        raw_empty: RAW_EMPTY,
        glo_dim: model.head.glo_dim as u32,
        exposure: model.head.exposure as u32,
        w0: l0.weight as u32,
        b0: bias(l0)?,
        w1: l1.weight as u32,
        b1: bias(l1)?,
        w2: l2.weight as u32,
        b2: bias(l2)?,
        _p0: 0,
        lo: quad(&g.lo),
        scale: quad(&g.scale),
        bg: [
            model.background[0],
            model.background[1],
            model.background[2],
            0.0,
        ],
    })
}

/// `empty_dist` four blocks to a word (block `b`: byte `b % 4` of word `b / 4`).
pub fn dist_words(g: &Grid) -> Vec<u32> {
    let mut w = vec![0u32; g.empty_dist.len().div_ceil(4)];
    for (b, &k) in g.empty_dist.iter().enumerate() {
        w[b / 4] |= (k as u32) << (8 * (b % 4));
    }
    w
}

/// The voxel masks as `u32` words: bit `k` of a block's 512 is bit `k % 32` of word `k / 32`.
pub fn mask_words(g: &Grid) -> Vec<u32> {
    g.voxel_mask
        .iter()
        .flat_map(|&m| [m as u32, (m >> 32) as u32])
        .collect()
}

/// The blocks' bytes four to a little-endian `u32` word (byte `i` in word `i / 4`, bits
/// `8 (i % 4)`).
pub fn block_words(g: &Grid) -> Vec<u32> {
    g.data
        .chunks(4)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u32, |w, (k, &b)| w | (b as u32) << (8 * k))
        })
        .collect()
}

/// What one render reuses: the per-chunk buffers and the kernel's bind group.
struct Scratch {
    params: GpuBuffer,
    latent: GpuBuffer,
    latent_now: Vec<f32>,
    rays: GpuBuffer,
    out: GpuBuffer,
    bind: BindGroup,
}

/// A baked model uploaded to a GPU, ready to render rays ([`BakedGpu::render_norm`]).
pub struct BakedGpu {
    gpu: Arc<Gpu>,
    kernel: Arc<Kernel>,
    base: BakedParams,
    glo_dim: usize,
    norm: SceneNorm,
    ev_mean: f64,
    chunk: usize,
    /// The grid's and head's buffers (kept alive for the bind group).
    _grid: [GpuBuffer; 5],
    scratch: Mutex<Scratch>,
}

impl std::fmt::Debug for BakedGpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BakedGpu")
            .field("adapter", self.gpu.adapter())
            .field("chunk", &self.chunk)
            .finish()
    }
}

impl BakedGpu {
    /// Upload `model` to `gpu` (once) and build the kernel for its colour head. `Err` names what
    /// does not fit the adapter.
    pub fn new(gpu: Arc<Gpu>, model: &BakedModel) -> Result<BakedGpu, String> {
        model.head.check()?;
        let base = params(model, 0)?;
        let g = &model.grid;
        let limit = gpu.limits().max_storage_binding_bytes;
        if g.data.len() as u64 > limit {
            return Err(format!(
                "the baked grid's {} MiB of blocks exceed this adapter's {} MiB per binding \
                 (bake at a lower [bake] resolution, or render on the CPU: [render] device = \"cpu\")",
                g.data.len() >> 20,
                limit >> 20
            ));
        }
        let e = |e: flythrough_gpu::GpuError| e.to_string();
        // What the kernel's indices rest on (checked here, so the unchecked module below is safe
        // for any model handed in): every stored block's slot has its bytes and voxel mask, and
        // there is a distance per block.
        let slots = g.slots();
        if g.index
            .iter()
            .any(|&s| s != crate::grid::EMPTY && s as usize >= slots)
            || g.voxel_mask.len() != 8 * slots
            || g.empty_dist.len() != g.index.len()
            || g.index.len() != g.blocks().pow(3)
        {
            return Err(
                "the baked grid is inconsistent (index, voxel masks or block distances \
                        do not match its stored blocks)"
                    .into(),
            );
        }
        // SAFETY: every index of baked_march.wgsl is in bounds for a grid checked above: the block
        // from clamped grid coordinates (`min(…, nb - 1)`, also for NaN), the voxel from
        // `min(…, BLOCK - 1)`, the slot from the checked index, vertex words within the slot's 729,
        // colour-head and latent offsets from `params` (the head checked by `ColorHead::check`),
        // rays and outputs below `n`; the march loop is bounded by `max_steps`, the head's loops by
        // its widths; integer divisions are by constants. The CPU-twin tests cover the kernel
        // (`gpu_and_cpu_renderers_agree`), and FLYTHROUGH_GPU_CHECKS=1 turns the checks back on.
        let kernel = unsafe {
            gpu.kernel_trusted("baked_march", &kernel_source(&model.head), ENTRY)
                .map_err(e)?
        };
        let grid = [
            gpu.upload("baked index", &g.index).map_err(e)?,
            gpu.upload("baked block distances", &dist_words(g))
                .map_err(e)?,
            gpu.upload("baked voxel mask", &mask_words(g)).map_err(e)?,
            gpu.upload("baked blocks", &block_words(g)).map_err(e)?,
            gpu.upload("colour head", &model.head.params).map_err(e)?,
        ];
        let chunk = (limit / 32).min(MAX_CHUNK as u64) as usize;
        let p = gpu.uniform("baked params", &base).map_err(e)?;
        let latent = gpu
            .storage_len("latent", model.head.glo_dim.max(1))
            .map_err(e)?;
        gpu.write(&latent, 0, &vec![0f32; model.head.glo_dim.max(1)]);
        let rays = gpu.storage_len("baked rays", 8 * chunk).map_err(e)?;
        let out = gpu.storage_len("baked out", 8 * chunk).map_err(e)?;
        let bind = gpu.bind(
            &kernel,
            &[
                (&p).into(),
                (&grid[0]).into(),
                (&grid[1]).into(),
                (&grid[2]).into(),
                (&grid[3]).into(),
                (&grid[4]).into(),
                (&latent).into(),
                (&rays).into(),
                (&out).into(),
            ],
        );
        Ok(BakedGpu {
            gpu,
            kernel,
            base,
            glo_dim: model.head.glo_dim,
            norm: model.norm,
            ev_mean: model.ev_mean,
            chunk,
            _grid: grid,
            scratch: Mutex::new(Scratch {
                params: p,
                latent,
                latent_now: vec![0.0; model.head.glo_dim],
                rays,
                out,
                bind,
            }),
        })
    }

    /// The device this model renders on.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// Render rays of the model's (norm) frame, as [`BakedModel::render_norm`]: unit directions,
    /// exposures relative to the training mean, one latent for all; depth in norm units. In
    /// chunks of at most 2^18 rays, one submit and read-back each.
    pub fn render_norm(
        &self,
        origins: &[[f32; 3]],
        dirs: &[[f32; 3]],
        ev: &[f32],
        latent: &[f32],
    ) -> Result<BakedOutput, String> {
        let n = origins.len();
        if dirs.len() != n || ev.len() != n {
            return Err(format!(
                "render_norm: {n} origins, {} directions, {} exposures",
                dirs.len(),
                ev.len()
            ));
        }
        if latent.len() < self.glo_dim {
            return Err(format!(
                "render_norm: a latent of {} values, the model's are {}",
                latent.len(),
                self.glo_dim
            ));
        }
        let gpu = &self.gpu;
        let mut s = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        let latent = &latent[..self.glo_dim];
        if s.latent_now != latent {
            gpu.write(&s.latent, 0, latent);
            s.latent_now = latent.to_vec();
        }
        let mut out = BakedOutput::default();
        let mut start = 0;
        while start < n {
            let end = (start + self.chunk).min(n);
            let m = end - start;
            let rays = pack_rays(&origins[start..end], &dirs[start..end], &ev[start..end]);
            gpu.write(&s.rays, 0, &rays);
            gpu.write(
                &s.params,
                0,
                std::slice::from_ref(&BakedParams {
                    n: m as u32,
                    ..self.base
                }),
            );
            let mut rec = gpu.recorder("baked march");
            rec.dispatch_threads(&self.kernel, &s.bind, m as u64);
            let rb = rec.read_back(&s.out, 0, 32 * m as u64);
            rec.submit();
            let v: Vec<[f32; 8]> = rb.wait_as(gpu).map_err(|e| e.to_string())?;
            for px in &v {
                out.rgb.push([px[0], px[1], px[2]]);
                out.depth.push(px[3]);
                out.opacity.push(px[4]);
                out.lookups += px[5] as u64;
            }
            start = end;
        }
        Ok(out)
    }
}

impl BakedGpu {
    /// Render rays given in the SfM world frame at the absolute exposure `ev` (`None`: the
    /// training mean), as [`BakedModel::render_rays`]; depth in world units.
    pub fn render_rays(
        &self,
        origins: &[[f32; 3]],
        dirs: &[[f32; 3]],
        ev: Option<f64>,
        latent: &[f32],
    ) -> Result<BakedOutput, String> {
        let (o, d, ev) = crate::model::world_to_norm(&self.norm, self.ev_mean, origins, dirs, ev);
        Ok(self
            .render_norm(&o, &d, &ev, latent)?
            .depth_to_world(&self.norm))
    }
}

/// Rays as the kernel reads them: `[o.xyz, d.xyz, 0 (radius, unused), ev]`.
fn pack_rays(origins: &[[f32; 3]], dirs: &[[f32; 3]], ev: &[f32]) -> Vec<[f32; 8]> {
    origins
        .iter()
        .zip(dirs)
        .zip(ev)
        .map(|((o, d), &e)| [o[0], o[1], o[2], d[0], d[1], d[2], 0.0, e])
        .collect()
}

#[cfg(test)]
mod tests;
