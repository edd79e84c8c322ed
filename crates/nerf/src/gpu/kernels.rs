//! Host side of each WGSL kernel: its parameter block (`#[repr(C)]`, the WGSL struct's layout), the
//! compiled pipelines of a device, and its launcher ([`launch`]): the kernel's bindings by name, in
//! the WGSL's binding order, turned into a [`Dispatch`]. The back end ([`super::batch`],
//! [`super::inference`], [`super::train`]) builds its bind groups once through the launchers, and the
//! kernel tests run each kernel through the same launchers; every `*Params` here mirrors the struct
//! of the same name in `shaders/`.

pub use super::shaders::KernelId;
use super::shaders::{self, Act, Extras, MlpShape};
use crate::kernels::MlpConfig;
use bytemuck::{Pod, Zeroable};
use flythrough_gpu::{AtomicMode, BindGroup, Gpu, GpuError, Kernel, Recorder};
use std::sync::Arc;

/// `NONE` of `shaders/common.wgsl`: an absent offset.
pub const NONE: u32 = u32::MAX;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct HashParams {
    pub n: u32,
    pub levels: u32,
    pub level0: u32,
    pub feats: u32,
    pub log2_t: u32,
    pub out_stride: u32,
    pub _p: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct MlpParams {
    pub n: u32,
    pub layers: u32,
    pub a_stride: u32,
    pub a_off: u32,
    pub d_local: u32,
    pub g_stride: u32,
    pub g_rows: u32,
    pub out_stride: u32,
    pub out_off: u32,
    /// Row stride of `cache`: the hidden layers' widths, each padded to a multiple of 4.
    pub hw: u32,
    pub train: u32,
    /// Row stride of `dy`: every layer's output width, each padded to a multiple of 4.
    pub dyw: u32,
    pub dx_stride: u32,
    pub dx_off: u32,
    pub dxg_c0: u32,
    pub dxg_c1: u32,
    pub want_dx: u32,
    pub nparams: u32,
    pub rpg: u32,
    pub groups: u32,
    /// Forward only: layer 0 reads its `d_local` per-row inputs and starts from `gpre`, the group
    /// inputs' part of the layer already computed once per group, bias included
    /// ([`MlpParams::group_pre`]).
    pub pre: u32,
    pub _q: [u32; 3],
    pub sizes: [[u32; 4]; 3],
    pub woff: [[u32; 4]; 3],
    pub boff: [[u32; 4]; 3],
    pub hoff: [[u32; 4]; 3],
    pub dyoff: [[u32; 4]; 3],
}

/// Most layers an MLP kernel takes (`sizes` holds 12 entries).
pub const MAX_LAYERS: usize = 11;

/// Where an MLP's input rows come from and where its output goes (the addressing of
/// `shaders/mlp_common.wgsl`).
#[derive(Clone, Copy, Debug)]
pub struct MlpIo {
    /// Per-row inputs: `a[r * a_stride + a_off + i]`, `i < d_local`.
    pub a_stride: u32,
    pub a_off: u32,
    pub d_local: u32,
    /// Group inputs: `g[(r / g_rows) * g_stride + i - d_local]`.
    pub g_stride: u32,
    pub g_rows: u32,
    /// Output (forward) / output gradient (backward): `out[r * out_stride + out_off + j]`.
    pub out_stride: u32,
    pub out_off: u32,
}

impl MlpIo {
    /// A dense `N x d_0` input and a dense `N x d_K` output.
    pub fn dense(cfg: &MlpConfig) -> MlpIo {
        MlpIo {
            a_stride: cfg.input_dim() as u32,
            a_off: 0,
            d_local: cfg.input_dim() as u32,
            g_stride: 0,
            g_rows: 1,
            out_stride: cfg.output_dim() as u32,
            out_off: 0,
        }
    }
}

fn put(a: &mut [[u32; 4]; 3], k: usize, v: u32) {
    a[k / 4][k % 4] = v;
}

/// Floats of an MLP's transposed weights as `mlp_fwd` writes them for `mlp_bwd_data`
/// (`mlp_common.wgsl` wto): per layer, `d_out` rows of `d_in` rounded up to a multiple of 4.
pub fn transposed_weights_len(cfg: &MlpConfig) -> usize {
    cfg.sizes
        .windows(2)
        .map(|w| w[0].next_multiple_of(4) * w[1])
        .sum()
}

/// Rows per row group of the weight-gradient partial sums (`mlp_bwd_weights`), while the groups
/// stay within [`MAX_ROW_GROUPS`].
pub const ROWS_PER_GROUP: usize = 128;

/// Most row groups.
pub const MAX_ROW_GROUPS: usize = 4096;

/// Floats the partial sums (`groups x parameters`) may take before the groups are capped: 64 MiB.
pub const PARTIAL_BUDGET: usize = 1 << 24;

/// Row-groups of the weight-gradient partial sums for `n` rows of an MLP with `nparams`
/// parameters: one per [`ROWS_PER_GROUP`] rows (512 for a batch of 64 k rows, so each invocation
/// walks at most 128 rows), at most [`MAX_ROW_GROUPS`] and at most what fits [`PARTIAL_BUDGET`]
/// (never fewer than 64 for that: a 512-wide colour MLP keeps the 64 groups it always had). Fixed
/// for a batch size and model, so the reduction order is fixed too.
pub fn row_groups(n: usize, nparams: usize) -> u32 {
    let cap = (PARTIAL_BUDGET / nparams.max(1)).clamp(64, MAX_ROW_GROUPS);
    n.div_ceil(ROWS_PER_GROUP).clamp(1, cap) as u32
}

/// The grid of `mlp_bwd_weights` for `p`: one parameter tile per invocation along x (workgroups
/// of `wg`; [`MlpParams::weight_tiles`]), one row group per y.
pub fn bwd_weights_grid(p: &MlpParams, wg: u32) -> Grid {
    Grid::Groups([p.weight_tiles().div_ceil(wg), p.groups, 1])
}

/// The grid of `reduce_partials` over `nparams` parameters: a 256-invocation workgroup per 32.
pub fn reduce_grid(nparams: u32) -> Grid {
    Grid::Threads(nparams.div_ceil(32) as u64 * 256)
}

impl MlpParams {
    /// The parameter block of `cfg` over `n` rows with addressing `io`.
    pub fn new(cfg: &MlpConfig, n: usize, io: MlpIo, train: bool) -> MlpParams {
        assert!(
            cfg.num_layers() <= MAX_LAYERS,
            "MLP with more than {MAX_LAYERS} layers"
        );
        let mut p = MlpParams {
            n: n as u32,
            layers: cfg.num_layers() as u32,
            a_stride: io.a_stride,
            a_off: io.a_off,
            d_local: io.d_local,
            g_stride: io.g_stride,
            g_rows: io.g_rows.max(1),
            out_stride: io.out_stride,
            out_off: io.out_off,
            train: train as u32,
            nparams: cfg.num_params() as u32,
            ..Default::default()
        };
        for (k, &d) in cfg.sizes.iter().enumerate() {
            put(&mut p.sizes, k, d as u32);
        }
        let mut hoff = 0u32;
        let mut dyoff = 0u32;
        let offs = cfg.layer_offsets();
        for (k, lo) in offs.iter().enumerate() {
            put(&mut p.woff, k, lo.weight as u32);
            put(&mut p.boff, k, lo.bias.map(|b| b as u32).unwrap_or(NONE));
            // Column offsets padded to multiples of 4: a row's 4 columns are one 16-byte load.
            put(&mut p.dyoff, k, dyoff);
            dyoff += (lo.fan_out as u32).next_multiple_of(4);
            if k + 1 < offs.len() {
                put(&mut p.hoff, k, hoff);
                hoff += (lo.fan_out as u32).next_multiple_of(4);
            }
        }
        p.hw = hoff;
        p.dyw = dyoff;
        p.groups = row_groups(n, cfg.num_params());
        p.rpg = (n as u32).div_ceil(p.groups).max(1);
        p
    }

    /// Parameter tiles of `mlp_bwd_weights`: per layer, ceil(d_in / 4) x ceil(d_out / 4) weight
    /// blocks of 4 x 4 and ceil(d_out / 4) bias blocks of 4 (when it has a bias).
    pub fn weight_tiles(&self) -> u32 {
        let at = |a: &[[u32; 4]; 3], k: usize| a[k / 4][k % 4];
        (0..self.layers as usize)
            .map(|k| {
                let ncb = at(&self.sizes, k + 1).div_ceil(4);
                let bias = if at(&self.boff, k) != NONE { ncb } else { 0 };
                at(&self.sizes, k).div_ceil(4) * ncb + bias
            })
            .sum()
    }

    /// The first layer's group part alone, as a one-layer MLP over the groups (nerfacto /
    /// Instant-NGP's split of a grouped input, kernels/mlp.rs `MlpInput`): `groups` rows of the
    /// `d_0 - d_local` group inputs (`g` bound as the per-row input, dense), through rows
    /// `d_local..` of `W_0` (contiguous: W is row-major by input) plus `b_0`, no activation, into
    /// `d_1`-wide rows. The forward of `self` with [`MlpParams::with_group_pre`] then starts layer
    /// 0 from these rows: `(d_0 - d_local) x d_1` multiply-adds once per group instead of per row.
    pub fn group_pre(&self, groups: usize) -> MlpParams {
        let at = |a: &[[u32; 4]; 3], k: usize| a[k / 4][k % 4];
        let (d0, d1, dl) = (at(&self.sizes, 0), at(&self.sizes, 1), self.d_local);
        let dg = d0 - dl;
        let mut p = MlpParams {
            n: groups as u32,
            layers: 1,
            a_stride: self.g_stride,
            a_off: 0,
            d_local: dg,
            g_rows: 1,
            out_stride: d1,
            ..Default::default()
        };
        put(&mut p.sizes, 0, dg);
        put(&mut p.sizes, 1, d1);
        put(&mut p.woff, 0, at(&self.woff, 0) + dl * d1);
        put(&mut p.boff, 0, at(&self.boff, 0));
        p.nparams = dg * d1;
        p.groups = 1;
        p.rpg = p.n;
        p
    }

    /// The forward starting layer 0 from [`MlpParams::group_pre`]'s rows (`gpre`).
    pub fn with_group_pre(mut self) -> Self {
        self.pre = 1;
        self
    }

    /// The backward's input-gradient addressing: per-row part at `dx[r * stride + off + i]`, and
    /// columns `[c0, c1)` of the group part per row.
    pub fn with_dx(mut self, stride: u32, off: u32, group_cols: Option<(u32, u32)>) -> Self {
        self.want_dx = 1;
        self.dx_stride = stride;
        self.dx_off = off;
        let (c0, c1) = group_cols.unwrap_or((0, 0));
        self.dxg_c0 = c0;
        self.dxg_c1 = c1;
        self
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ReduceParams {
    pub nparams: u32,
    pub groups: u32,
    pub _p: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct SampleParams {
    pub n_rays: u32,
    pub n: u32,
    pub pn: u32,
    pub jitter: u32,
    pub near: f32,
    pub dil: f32,
    pub anneal: f32,
    pub level: u32,
    pub nlev: u32,
    pub _p: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct WeightsParams {
    pub n_rays: u32,
    pub n: u32,
    pub raw_stride: u32,
    pub _p: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct FeatParams {
    pub n_rays: u32,
    pub width: u32,
    pub gd: u32,
    pub exposure: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct CompParams {
    pub n_rays: u32,
    pub n: u32,
    pub pix0: u32,
    pub pack: u32,
    pub npix: u32,
    pub _p: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct LossParams {
    pub n_rays: u32,
    pub n: u32,
    pub raw_stride: u32,
    pub _p0: u32,
    pub inv_r: f32,
    pub dist_scale: f32,
    pub _p1: [f32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct IlParams {
    pub n_rays: u32,
    pub n: u32,
    pub m: u32,
    pub loss_off: u32,
    pub scale: f32,
    pub _p1: [f32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct GloParams {
    pub n_rays: u32,
    pub n: u32,
    /// Latent columns (at most [`MAX_GLO_DIM`]).
    pub gd: u32,
    /// Row length of the colour head's `dy` (its layer 0 at columns `0..d1`).
    pub dyw: u32,
    /// The colour head's first layer width.
    pub d1: u32,
    /// Offset of the first latent row of W_0 in the colour head's parameters.
    pub w_lat: u32,
    pub _p: [u32; 2],
}

/// Most latent columns `glo_grad` takes (four per invocation of its 64).
pub const MAX_GLO_DIM: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct RedParams {
    pub n_rays: u32,
    pub nprop: u32,
    pub _p0: [u32; 2],
    pub inv_3r: f32,
    pub inv_r: f32,
    pub inv_rn: f32,
    pub _p1: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct SqParams {
    pub len: u32,
    pub part_off: u32,
    pub _p: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct NormParams {
    pub n_parts: u32,
    pub clip: u32,
    pub _p0: [u32; 2],
    pub max_norm: f32,
    pub _p1: [f32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct AdamLen {
    pub len: u32,
    pub _p: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct AdamStep {
    pub b1: f32,
    pub b2: f32,
    pub eps: f32,
    pub step_size: f32,
    pub inv_sqrt_bc2: f32,
    pub _p: [f32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct CamParams {
    pub fx: f32,
    pub fy: f32,
    pub cx: f32,
    pub cy: f32,
    pub k1: f32,
    pub k2: f32,
    pub p1: f32,
    pub p2: f32,
    pub width: u32,
    pub pix0: u32,
    pub n: u32,
    pub distorted: u32,
    /// Unused (the radius comes from the neighbouring pixels' rays).
    pub _r: f32,
    pub ev: f32,
    pub _p: [f32; 2],
    pub origin: [f32; 4],
    pub rt0: [f32; 4],
    pub rt1: [f32; 4],
    pub rt2: [f32; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct EquiParams {
    pub width: u32,
    pub height: u32,
    pub pix0: u32,
    pub n: u32,
    pub ev: f32,
    pub _p: [f32; 3],
    pub origin: [f32; 4],
    pub right: [f32; 4],
    pub forward: [f32; 4],
    pub up: [f32; 4],
}

/// `sample_batch`: a training step's batch drawn on the device (see [`super::sampler`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct SampleBatchParams {
    pub n_rays: u32,
    pub nlev: u32,
    pub n_photos: u32,
    pub total: u32,
    pub seed_lo: u32,
    pub seed_hi: u32,
    pub step: u32,
    pub _p: u32,
}

/// How a dispatch is sized.
#[derive(Clone, Copy, Debug)]
pub enum Grid {
    /// 1-D over this many invocations.
    Threads(u64),
    /// Explicit workgroup counts.
    Groups([u32; 3]),
}

/// One kernel launch: a pipeline, its bind group (built once) and its grid.
pub struct Dispatch {
    pub kernel: Arc<Kernel>,
    pub bg: BindGroup,
    pub grid: Grid,
}

impl Dispatch {
    pub fn record(&self, rec: &mut Recorder) {
        match self.grid {
            Grid::Threads(n) => rec.dispatch_threads(&self.kernel, &self.bg, n),
            Grid::Groups(g) => rec.dispatch(&self.kernel, &self.bg, g),
        }
    }
}

/// Workgroups of the MLP kernels over `n` rows: one per tile, on a 2-D grid when needed.
pub fn mlp_groups(gpu: &Gpu, n: usize, tile: u32) -> [u32; 3] {
    let tiles = (n as u64).div_ceil(tile as u64).max(1);
    gpu.grid(tiles, 1)
}

/// Workgroups of the per-ray workgroup kernels (`sample_level`, `weights`, `composite`,
/// `nerf_loss`, `interlevel`, `glo_grad`: one workgroup of 64 per ray): one per ray, on a 2-D grid
/// past the device's per-dimension limit.
pub fn ray_groups(gpu: &Gpu, rays: usize) -> [u32; 3] {
    gpu.grid(rays as u64, 1)
}

/// The kernels of one device, composed for its scatter mode and an MLP tile shape (compiled on
/// first use, cached by the device).
#[derive(Clone)]
pub struct Kernels {
    pub gpu: Arc<Gpu>,
    pub atomic: AtomicMode,
    pub shape: MlpShape,
    /// How the MLP kernels store the activations kept for the backward (f32 unless a trainer
    /// chose f16 on a device that has it: [`Kernels::with_act`]).
    pub act: Act,
    /// Whether the hash-grid scatter pre-reduces in subgroups (hardware adapters with subgroups,
    /// unless `FLYTHROUGH_GPU_SUBGROUPS` says otherwise: [`super::use_subgroups`]).
    pub subgroups: bool,
    /// Kernels fill their workgroup memory with NaN before use (the crate's own tests, or
    /// [`POISON_ENV`] set to `1`): see [`Extras::poison_workgroup`].
    pub poison_workgroup: bool,
}

/// Environment variable that makes every kernel fill its workgroup memory with NaN first (`1`),
/// for checking that no kernel reads a slot nothing wrote. The crate's unit tests always do.
pub const POISON_ENV: &str = "FLYTHROUGH_GPU_POISON_WORKGROUP";

impl Kernels {
    /// The kernels of `gpu`: f32 activations, the subgroup scatter where [`super::use_subgroups`]
    /// says so.
    pub fn new(gpu: Arc<Gpu>, atomic: AtomicMode, shape: MlpShape) -> Kernels {
        let subgroups = super::use_subgroups(&gpu);
        Kernels {
            gpu,
            atomic,
            shape,
            act: Act::F32,
            subgroups,
            poison_workgroup: cfg!(test) || std::env::var(POISON_ENV).is_ok_and(|v| v == "1"),
        }
    }

    /// The same kernels with activations stored as `act` (an error when the device lacks f16).
    pub fn with_act(mut self, act: Act) -> Result<Kernels, GpuError> {
        if act == Act::F16 && !self.gpu.caps().shader_f16 {
            return Err(GpuError::Shader {
                name: "mlp".into(),
                msg: format!("{} has no shader f16 (SHADER_F16)", self.gpu.adapter()),
            });
        }
        self.act = act;
        Ok(self)
    }

    /// The composition options in use.
    pub fn extras(&self) -> Extras {
        Extras {
            act: self.act,
            subgroups: self.subgroups,
            poison_workgroup: self.poison_workgroup,
        }
    }

    /// The pipeline of kernel `id`, built without naga's run-time checks unless
    /// `FLYTHROUGH_GPU_CHECKS` is set ([`Gpu::runtime_checks`]).
    pub fn get(&self, id: KernelId) -> Result<Arc<Kernel>, GpuError> {
        let src = id.source();
        let text = shaders::compose(src, self.atomic, self.shape, self.extras());
        // SAFETY (the contract of `kernel_trusted`: no out-of-bounds index, no integer division
        // by zero, no unbounded loop), for every kernel of `shaders/` composed here:
        // - Every kernel returns early past its own count (`n`, `n_rays`, `len`, `nparams`,
        //   `n * levels`: a field of its uniform block) and indexes its buffers with offsets the
        //   host sized them for: the buffers of `batch.rs`, `inference.rs` and `train.rs` are
        //   allocated from the same counts the parameter blocks are built from (`MlpParams::new`,
        //   the launchers), and every kernel's CPU-twin test (`gpu::tests`, `tests/gpu.rs`) runs
        //   it through the same launchers on poisoned buffers (a read of anything not written
        //   shows as NaN) and compares it with the CPU kernel, on every shape the back end uses.
        // - Data-dependent indices are clamped in the shader: hash-grid cells by `min(.., res -
        //   1)` (NaN positions included) and masked by the table size or bounded by the dense
        //   level's size; feature loops by `min(feats, 8)` (the local arrays); the GLO latent
        //   row by the binding's `arrayLength` (ray_features, glo_grad); sample_level's binary
        //   searches by the previous level's fencepost counts (pn + 1, pn), its merge ranks by
        //   `min(.., 3 pn)` and its inverse-CDF chunk index by `min(.., 63)`, interlevel's binary
        //   searches by theirs (a proposal fencepost index < m + 1, a NeRF bin < n); the MLP
        //   kernels' workgroup-memory rows by `TILE` (a power of two, a multiple of `RB`) and
        //   columns by `MAXIN` / `MAXW`, which `MlpShape` is fitted to (the widest layer of
        //   the model), and their 4-wide register-tile blocks' weight, dY and activation reads by
        //   the layer's edge (`min(4, d - i0)` lanes; `mlp_bwd_weights` finds its layer by a walk
        //   over the `layers` tile counts and returns past the last); their 16-byte views read
        //   whole blocks only (`i + 4 <= din`, `ni == 4`) at offsets the host padded or checked to
        //   be multiples of 4, and the transposed weights `wt` (`transposed_weights_len`) are
        //   written below `wto(layers)` and read within `din4(k)` of a row; the per-ray workgroup
        //   kernels (sample_level, weights, composite, nerf_loss, interlevel, glo_grad) by the
        //   local invocation index (< 64, the size of their arrays), in the scans by `lid - off`
        //   under `lid >= off` and `lid + off` under `lid + off < 64`, and interlevel's chunk
        //   index by `min(k / c, 63)`.
        // - Every loop is bounded by a uniform count, a constant (the Newton iterations of
        //   raygen_camera), by a binary search's halving interval or, in the inverse-CDF walk,
        //   by the end of the chunk of bins it starts in; integer divisions are
        //   by uniform counts the launchers never set to zero for a non-empty launch (a launch of
        //   zero threads is skipped by the recorder).
        // `FLYTHROUGH_GPU_CHECKS=1` puts the checks back to rule a kernel bug in or out.
        unsafe { self.gpu.kernel_trusted(src.name, &text, src.name) }
    }
}

/// One launcher per kernel: a struct whose fields are the kernel's bindings, named and ordered as
/// the `@binding`s of its WGSL file (a test checks the names and order against `shaders/`).
/// `dispatch` looks the kernel up, builds its bind group and returns the [`Dispatch`] (the tests'
/// `run` submits it alone):
///
/// ```ignore
/// launch::Weights { p: &u, raw: &raw, t: &t, sigma: &sigma, w: &w }
///     .dispatch(k, Grid::Groups(ray_groups(&k.gpu, rays)))?
/// ```
///
/// A field is a whole buffer (`&GpuBuffer`) or, where callers bind part of one (a hash grid's level
/// range, a chunk of a parameter), a [`Bind`] (`buf.range(..)`, or `(&buf).into()` for all of it).
pub mod launch {
    use super::{Dispatch, Grid, KernelId, Kernels};
    use flythrough_gpu::{Bind, GpuBuffer, GpuError};

    // `+ views { v = f }` after a launcher's fields: binding `v` (after the fields) is field `f`'s
    // buffer again, seen by the kernel under another type (the MLP kernels' vec4 views), so a
    // caller cannot bind a different buffer there.
    macro_rules! launchers {
        ($($(#[$doc:meta])* $name:ident { $($f:ident: $t:ty),* $(,)? }
           $(+ views { $($v:ident = $src:ident),* $(,)? })?)*) => {
            $(
                $(#[$doc])*
                #[derive(Clone, Copy, Debug)]
                pub struct $name<'a> {
                    $(pub $f: $t,)*
                }

                impl $name<'_> {
                    /// The kernel this launches.
                    pub const ID: KernelId = KernelId::$name;
                    /// Its bindings' names, in binding order.
                    pub const BINDINGS: &'static [&'static str] =
                        &[$(stringify!($f)),* $($(, stringify!($v))*)?];

                    /// Bind the buffers (in binding order) and size the launch with `grid`.
                    pub fn dispatch(self, k: &Kernels, grid: Grid) -> Result<Dispatch, GpuError> {
                        let kernel = k.get(Self::ID)?;
                        let bg = k.gpu.bind(
                            &kernel,
                            &[$(Bind::from(self.$f)),* $($(, Bind::from(self.$src))*)?],
                        );
                        Ok(Dispatch { kernel, bg, grid })
                    }

                    /// Launch alone, in a submit of its own (the kernel tests).
                    #[cfg(test)]
                    pub fn run(self, k: &Kernels, grid: Grid) {
                        let d = self.dispatch(k, grid).unwrap();
                        let mut rec = k.gpu.recorder(Self::ID.name());
                        d.record(&mut rec);
                        rec.submit();
                    }
                }
            )*

            /// The binding names of kernel `id`'s launcher (a kernel without one does not compile).
            pub fn bindings(id: KernelId) -> &'static [&'static str] {
                match id {
                    $(KernelId::$name => $name::BINDINGS,)*
                }
            }
        };
    }

    launchers! {
        /// `raygen_camera`: a COLMAP camera's rays (with its distortion) into `rays`.
        RaygenCamera { p: &'a GpuBuffer, rays: &'a GpuBuffer }
        /// `raygen_equirect`: a levelled 360° camera's rays into `rays`.
        RaygenEquirect { p: &'a GpuBuffer, rays: &'a GpuBuffer }
        /// `sample_level`: (re)sampling of one level's intervals, positions and footprints.
        SampleLevel {
            p: &'a GpuBuffer,
            rays: &'a GpuBuffer,
            jit: &'a GpuBuffer,
            prev_s: &'a GpuBuffer,
            prev_w: &'a GpuBuffer,
            sc: &'a GpuBuffer,
            s_out: &'a GpuBuffer,
            t_out: &'a GpuBuffer,
            pos: &'a GpuBuffer,
            fsig: &'a GpuBuffer,
        }
        /// `hash_fwd`: the hash-grid encoding of a range of levels (`table` bound by level range).
        HashFwd {
            p: &'a GpuBuffer,
            level_info: &'a GpuBuffer,
            pos: &'a GpuBuffer,
            fsig: &'a GpuBuffer,
            table: Bind<'a>,
            out: &'a GpuBuffer,
        }
        /// `hash_bwd`: the encoding's gradient scattered into `grad` (bound by level range).
        HashBwd {
            p: &'a GpuBuffer,
            level_info: &'a GpuBuffer,
            pos: &'a GpuBuffer,
            fsig: &'a GpuBuffer,
            d_out: &'a GpuBuffer,
            grad: Bind<'a>,
        }
        /// `mlp_fwd`: the fused MLP forward (per-row input `a`, group input `g`).
        MlpFwd {
            p: &'a GpuBuffer,
            params: &'a GpuBuffer,
            a: &'a GpuBuffer,
            g: &'a GpuBuffer,
            out: &'a GpuBuffer,
            cache: &'a GpuBuffer,
            wt: &'a GpuBuffer,
            gpre: &'a GpuBuffer,
        } + views { params4 = params }
        /// `mlp_bwd_data`: every layer's dY and the input gradients (weights from the forward's
        /// transposed copy `wt`).
        MlpBwdData {
            p: &'a GpuBuffer,
            wt: &'a GpuBuffer,
            cache: &'a GpuBuffer,
            d_out: &'a GpuBuffer,
            dy: &'a GpuBuffer,
            dx: &'a GpuBuffer,
            dxg: &'a GpuBuffer,
        }
        /// `mlp_bwd_weights`: per-row-group partial sums of the weight gradients.
        MlpBwdWeights {
            p: &'a GpuBuffer,
            a: &'a GpuBuffer,
            g: &'a GpuBuffer,
            cache: &'a GpuBuffer,
            dy: &'a GpuBuffer,
            partial: &'a GpuBuffer,
        } + views { a4 = a, cache4 = cache, dy4v = dy }
        /// `reduce_partials`: the partial sums, in a fixed order, added to `grad`.
        ReducePartials { p: &'a GpuBuffer, partial: &'a GpuBuffer, grad: &'a GpuBuffer }
        /// `weights`: densities and compositing weights.
        Weights {
            p: &'a GpuBuffer,
            raw: &'a GpuBuffer,
            t: &'a GpuBuffer,
            sigma: &'a GpuBuffer,
            w: &'a GpuBuffer,
        }
        /// `ray_features`: the colour head's per-ray inputs (direction, latent, exposure).
        RayFeatures {
            p: &'a GpuBuffer,
            rays: &'a GpuBuffer,
            latent_idx: &'a GpuBuffer,
            glo: &'a GpuBuffer,
            feat: &'a GpuBuffer,
        }
        /// `composite`: colour, depth and opacity per ray, optionally packed into frame pixels.
        Composite {
            p: &'a GpuBuffer,
            w: &'a GpuBuffer,
            t: &'a GpuBuffer,
            logits: &'a GpuBuffer,
            out: &'a GpuBuffer,
            px: &'a GpuBuffer,
        }
        /// `nerf_loss`: the NeRF level's losses and their gradients.
        NerfLoss {
            p: &'a GpuBuffer,
            w: &'a GpuBuffer,
            s: &'a GpuBuffer,
            t: &'a GpuBuffer,
            sigma: &'a GpuBuffer,
            logits: &'a GpuBuffer,
            tgt: &'a GpuBuffer,
            gw: &'a GpuBuffer,
            g_logits: &'a GpuBuffer,
            d_raw: &'a GpuBuffer,
            ray_loss: &'a GpuBuffer,
        }
        /// `interlevel`: a proposal level's interlevel loss and its gradient.
        Interlevel {
            p: &'a GpuBuffer,
            s_nerf: &'a GpuBuffer,
            w_nerf: &'a GpuBuffer,
            s_env: &'a GpuBuffer,
            w_env: &'a GpuBuffer,
            sigma: &'a GpuBuffer,
            t_env: &'a GpuBuffer,
            g_env: &'a GpuBuffer,
            d_raw: &'a GpuBuffer,
            ray_loss: &'a GpuBuffer,
        }
        /// `glo_grad`: the latents' gradients scattered by photo.
        GloGrad {
            p: &'a GpuBuffer,
            latent_idx: &'a GpuBuffer,
            dy: &'a GpuBuffer,
            params: &'a GpuBuffer,
            grad: &'a GpuBuffer,
        }
        /// `loss_reduce`: the step's losses added to the running metrics.
        LossReduce {
            p: &'a GpuBuffer,
            ray_loss: &'a GpuBuffer,
            il_loss: &'a GpuBuffer,
            metrics: &'a GpuBuffer,
        }
        /// `sq_norm`: partial sums of squares of `x` (a chunk of a gradient).
        SqNorm { p: &'a GpuBuffer, x: Bind<'a>, partial: &'a GpuBuffer }
        /// `sq_norm_final`: the global norm and clip factor, in a fixed order.
        SqNormFinal {
            p: &'a GpuBuffer,
            partial: &'a GpuBuffer,
            norm_out: &'a GpuBuffer,
            metrics: &'a GpuBuffer,
        }
        /// `sample_batch`: a training step's rays, latent indices, jitter and target colours drawn
        /// on the device from (seed, step).
        SampleBatch {
            p: &'a GpuBuffer,
            cum: &'a GpuBuffer,
            photos: &'a GpuBuffer,
            table: &'a GpuBuffer,
            pixels: &'a GpuBuffer,
            rays: &'a GpuBuffer,
            latent_idx: &'a GpuBuffer,
            jitter: &'a GpuBuffer,
            target_rgb: &'a GpuBuffer,
        }
        /// `adam`: the fused Adam step on a chunk of a parameter (gradients zeroed).
        Adam {
            pl: &'a GpuBuffer,
            ps: &'a GpuBuffer,
            norm: &'a GpuBuffer,
            param: Bind<'a>,
            grad: Bind<'a>,
            m1: Bind<'a>,
            m2: Bind<'a>,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel's launcher names its bindings as the kernel's WGSL declares them, in binding
    /// order (`launch::bindings` matches on every `KernelId`, so a kernel without a launcher does
    /// not compile).
    #[test]
    fn launchers_bind_in_the_wgsl_order() {
        for src in shaders::KERNELS {
            let wgsl: Vec<(u32, &str)> = src
                .text
                .lines()
                .filter_map(|l| {
                    let rest = l.trim().strip_prefix("@group(0) @binding(")?;
                    let (i, rest) = rest.split_once(')')?;
                    let decl = rest.split_once('>')?.1;
                    let name = decl.split_once(':')?.0.trim();
                    Some((i.parse().unwrap(), name))
                })
                .collect();
            let order: Vec<u32> = (0..wgsl.len() as u32).collect();
            assert_eq!(
                wgsl.iter().map(|b| b.0).collect::<Vec<_>>(),
                order,
                "{}: bindings 0..n in order",
                src.name
            );
            let names: Vec<&str> = wgsl.iter().map(|b| b.1).collect();
            assert_eq!(
                launch::bindings(src.id),
                names.as_slice(),
                "{}: launcher fields vs WGSL bindings",
                src.name
            );
        }
    }

    /// A `#[repr(C)]` mirror's name, size and the offsets of its named (non-padding) fields.
    macro_rules! mirror {
        ($t:ident { $($f:ident),* $(,)? }) => {
            (
                stringify!($t),
                std::mem::size_of::<$t>(),
                vec![$((stringify!($f), std::mem::offset_of!($t, $f))),*],
            )
        };
    }

    /// Every parameter block is declared once in WGSL (`shaders/params.wgsl`) and mirrored here:
    /// each mirror has the WGSL struct's size and each of its named members at naga's offset, and
    /// every WGSL struct has a mirror.
    #[test]
    fn parameter_mirrors_match_the_wgsl_layouts() {
        let wgsl = flythrough_gpu::wgsl_struct_layouts(shaders::PARAMS).unwrap();
        let mirrors = [
            mirror!(AdamLen { len }),
            mirror!(AdamStep {
                b1,
                b2,
                eps,
                step_size,
                inv_sqrt_bc2
            }),
            mirror!(CompParams {
                n_rays,
                n,
                pix0,
                pack,
                npix
            }),
            mirror!(GloParams {
                n_rays,
                n,
                gd,
                dyw,
                d1,
                w_lat
            }),
            mirror!(HashParams {
                n,
                levels,
                level0,
                feats,
                log2_t,
                out_stride
            }),
            mirror!(IlParams {
                n_rays,
                n,
                m,
                loss_off,
                scale
            }),
            mirror!(RedParams {
                n_rays,
                nprop,
                inv_3r,
                inv_r,
                inv_rn
            }),
            mirror!(MlpParams {
                n,
                layers,
                a_stride,
                a_off,
                d_local,
                g_stride,
                g_rows,
                out_stride,
                out_off,
                hw,
                train,
                dyw,
                dx_stride,
                dx_off,
                dxg_c0,
                dxg_c1,
                want_dx,
                nparams,
                rpg,
                groups,
                pre,
                sizes,
                woff,
                boff,
                hoff,
                dyoff
            }),
            mirror!(LossParams {
                n_rays,
                n,
                raw_stride,
                inv_r,
                dist_scale
            }),
            mirror!(FeatParams {
                n_rays,
                width,
                gd,
                exposure
            }),
            mirror!(CamParams {
                fx,
                fy,
                cx,
                cy,
                k1,
                k2,
                p1,
                p2,
                width,
                pix0,
                n,
                distorted,
                ev,
                origin,
                rt0,
                rt1,
                rt2
            }),
            mirror!(EquiParams {
                width,
                height,
                pix0,
                n,
                ev,
                origin,
                right,
                forward,
                up
            }),
            mirror!(ReduceParams { nparams, groups }),
            mirror!(SampleParams {
                n_rays,
                n,
                pn,
                jitter,
                near,
                dil,
                anneal,
                level,
                nlev
            }),
            mirror!(SqParams { len, part_off }),
            mirror!(SampleBatchParams {
                n_rays,
                nlev,
                n_photos,
                total,
                seed_lo,
                seed_hi,
                step
            }),
            mirror!(NormParams {
                n_parts,
                clip,
                max_norm
            }),
            mirror!(WeightsParams {
                n_rays,
                n,
                raw_stride
            }),
        ];
        assert_eq!(
            mirrors.len(),
            wgsl.len(),
            "a WGSL parameter struct has no mirror"
        );
        for (name, size, fields) in mirrors {
            let w = wgsl
                .iter()
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("{name}: not in shaders/params.wgsl"));
            assert_eq!(size, w.size as usize, "{name}: size");
            let named: Vec<(&str, usize)> = w
                .members
                .iter()
                .filter(|(m, _)| !m.starts_with('_'))
                .map(|(m, o)| (m.as_str(), *o as usize))
                .collect();
            assert_eq!(fields, named, "{name}: named members and offsets");
        }
    }

    #[test]
    fn parameter_blocks_have_the_wgsl_sizes() {
        // Sizes of the WGSL structs (16-byte multiples; arrays of vec4 at 16-byte stride).
        assert_eq!(std::mem::size_of::<MlpParams>(), 96 + 5 * 48);
        assert_eq!(std::mem::size_of::<CamParams>(), 128);
        assert_eq!(std::mem::size_of::<EquiParams>(), 96);
        assert_eq!(std::mem::size_of::<SampleParams>(), 48);
        assert_eq!(std::mem::size_of::<CompParams>(), 32);
        assert_eq!(std::mem::size_of::<SampleBatchParams>(), 32);
    }

    #[test]
    fn mlp_params_offsets_follow_the_layout() {
        let cfg = MlpConfig::new(&[83, 64, 64, 3], true);
        let p = MlpParams::new(&cfg, 1000, MlpIo::dense(&cfg), true);
        let offs = cfg.layer_offsets();
        assert_eq!(p.layers, 3);
        assert_eq!(p.sizes[0], [83, 64, 64, 3]);
        assert_eq!(p.woff[0][1], offs[1].weight as u32);
        assert_eq!(p.boff[0][2], offs[2].bias.unwrap() as u32);
        assert_eq!((p.hw, p.dyw), (128, 132));
        assert_eq!(p.hoff[0][..2], [0, 64]);
        assert_eq!(p.dyoff[0][..3], [0, 64, 128]);
        assert_eq!(p.nparams as usize, cfg.num_params());
        assert!(p.groups * p.rpg >= 1000);
        // Row groups: ~128 rows each, 512 for a 64 k-row batch, capped.
        let colour = MlpConfig::new(&[83, 64, 64, 3], true).num_params();
        assert_eq!(row_groups(1, colour), 1);
        assert_eq!(row_groups(65_536, colour), 512);
        assert_eq!(row_groups(131_072, colour), 1024);
        // Capped by the partial sums' memory, and by the most groups.
        assert_eq!(
            row_groups(100_000_000, colour) as usize,
            PARTIAL_BUDGET / colour
        );
        assert_eq!(row_groups(100_000_000, 100), MAX_ROW_GROUPS as u32);
        let wide = MlpConfig::new(&[83, 512, 512, 3], true).num_params();
        assert_eq!(row_groups(1 << 20, wide), 64);
    }
}
