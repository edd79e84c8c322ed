//! The work one training step must do, counted from the model's shapes: the floor a back end is
//! measured against ("two numbers first": the operations over the unit's rate and the bytes over
//! the memory's bandwidth give the time no version beats; measured time over it is the gap).
//!
//! Counted: the MLPs' multiply-adds (forward, the backward through the activations, the weight
//! gradients; 2 FLOPs each; the colour head's per-ray inputs once per ray, as the CPU kernels
//! split its first layer), the hash grids' trilinear corner reads (forward) and gradient adds
//! (backward), and the optimiser's bytes (Adam reads parameter, gradient and both moments and
//! writes them back, the gradient as zero: 32 bytes per parameter and step, most of them the hash
//! tables'; the gradient norm's read of every gradient, 4 more, only where it clips,
//! `grad_max_norm` > 0, off by default, or on a step whose metrics are read). Not counted, being small beside them at
//! the defaults: biases, ReLUs, the per-ray sampling, compositing and losses. The HashGrid
//! backbone only (the GPU back end's).

use crate::kernels::{HashGridConfig, MlpConfig};
use crate::model::{GEO_DIM, ModelConfig};

/// One training step's work over `rays` rays (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepCost {
    /// Samples along all rays, every level (proposal and NeRF).
    pub samples: f64,
    /// FLOPs of the MLP products: forward, backward data, weight gradients.
    pub mlp_flops: f64,
    /// Of which the forward.
    pub mlp_fwd_flops: f64,
    /// Hash-grid corner reads of the forward (each reads `features_per_level` floats).
    pub hash_corner_reads: f64,
    /// Floats the hash-grid backward adds into the gradient (8 corners x features per level).
    pub hash_grad_adds: f64,
    /// Parameters (all buffers).
    pub params: f64,
    /// Bytes Adam moves: 32 per parameter.
    pub optimizer_bytes: f64,
}

/// Bytes per parameter and step of Adam (read p, g, m, v; write p, m, v and g = 0), all f32. The
/// global gradient norm (read g) is left out: it runs only to clip or for a step's metrics.
pub const OPTIMIZER_BYTES_PER_PARAM: f64 = 32.0;

/// How an MLP's input rows are made: the first `d_local` inputs vary per row, the rest are shared
/// by runs of `group_rows` rows (the colour head: 15 geometry features per sample, the direction,
/// latent and exposure encodings per ray; kernels/mlp.rs `MlpInput`); `dx_local` of the per-row
/// and `dx_group` of the shared inputs want a gradient.
#[derive(Debug, Clone, Copy)]
struct RowShape {
    d_local: usize,
    group_rows: usize,
    dx_local: usize,
    dx_group: usize,
}

impl RowShape {
    /// Every input per row, all of them wanting a gradient.
    fn dense(cfg: &MlpConfig) -> RowShape {
        RowShape {
            d_local: cfg.sizes[0],
            group_rows: 1,
            dx_local: cfg.sizes[0],
            dx_group: 0,
        }
    }
}

/// Multiply-adds per row through `cfg` with inputs shaped as `r`: (forward, backward data); the
/// weight gradients take as many as the forward (one product per weight and row). The first layer
/// is split (nerfacto / Instant-NGP's grouped input): its shared inputs are multiplied once per
/// group, in the forward (`x_g W_0[d_local..]`), the weight gradients (`x_g^T` times the group's
/// summed dY) and their input gradients (the summed dY times `W_0[d_local..]^T`), so they count
/// `1 / group_rows` per row.
fn mlp_macs(cfg: &MlpConfig, r: RowShape) -> (f64, f64) {
    let s = &cfg.sizes;
    let all: usize = s.windows(2).map(|w| w[0] * w[1]).sum();
    let rest = (all - s[0] * s[1]) as f64;
    let gr = r.group_rows.max(1) as f64;
    let d_group = (s[0] - r.d_local) as f64;
    let first = (r.d_local as f64 + d_group / gr) * s[1] as f64;
    let data = rest + (r.dx_local as f64 + r.dx_group as f64 / gr) * s[1] as f64;
    (rest + first, data)
}

impl StepCost {
    /// The work of one training step of `cfg` over `rays` rays: per MLP and row, forward
    /// `2 sum_k d_k d_{k+1}` FLOPs, the same for the weight gradients, and for the backward data
    /// pass the same less the first layer's `d_x` columns nobody needs (the colour head's
    /// direction and exposure inputs; its geometry features and latents get gradients), the colour
    /// head's per-ray inputs counted once per ray ([`mlp_macs`]). The hash grids: 8 corners per
    /// level and sample (trilinear).
    pub fn training(cfg: &ModelConfig, rays: usize) -> StepCost {
        let r = rays as f64;
        let mut c = StepCost {
            samples: 0.0,
            mlp_flops: 0.0,
            mlp_fwd_flops: 0.0,
            hash_corner_reads: 0.0,
            hash_grad_adds: 0.0,
            params: 0.0,
            optimizer_bytes: 0.0,
        };
        let params: usize = cfg
            .param_shapes()
            .map(|v| v.iter().map(|(_, n)| n).sum())
            .unwrap_or(0);
        c.params = params as f64;
        c.optimizer_bytes = OPTIMIZER_BYTES_PER_PARAM * c.params;
        // An MLP over `rows` rows, and the grid whose samples those rows are (none for the
        // colour head: it reads the density MLP's samples).
        let mut add =
            |rows: f64, mlp: &MlpConfig, shape: RowShape, grid: Option<&HashGridConfig>| {
                let (fwd, data) = mlp_macs(mlp, shape);
                c.mlp_fwd_flops += 2.0 * rows * fwd;
                c.mlp_flops += 2.0 * rows * (2.0 * fwd + data);
                if let Some(g) = grid {
                    c.samples += rows;
                    c.hash_corner_reads += rows * 8.0 * g.levels as f64;
                    c.hash_grad_adds += rows * 8.0 * (g.levels * g.features_per_level) as f64;
                }
            };
        for (k, &n) in cfg.prop_samples.iter().enumerate() {
            let m = cfg.prop_mlp(k);
            add(
                r * n as f64,
                &m,
                RowShape::dense(&m),
                Some(&cfg.prop_grids[k]),
            );
        }
        let rows = r * cfg.nerf_samples as f64;
        let d = cfg.density_mlp();
        add(rows, &d, RowShape::dense(&d), Some(&cfg.nerf_grid));
        let colour = RowShape {
            d_local: GEO_DIM,
            group_rows: cfg.nerf_samples,
            dx_local: GEO_DIM,
            dx_group: cfg.glo_dim,
        };
        add(rows, &cfg.color_mlp(), colour, None);
        c
    }

    /// The work of rendering `rays` rays of `cfg` (a frame: width x height rays): the forward
    /// of [`StepCost::training`] alone — every sample of every level through its MLP (`mlp_flops`
    /// = `mlp_fwd_flops`) and 8 corners per level from its grid — with no backward and no
    /// optimiser.
    pub fn rendering(cfg: &ModelConfig, rays: usize) -> StepCost {
        let t = StepCost::training(cfg, rays);
        StepCost {
            mlp_flops: t.mlp_fwd_flops,
            hash_grad_adds: 0.0,
            optimizer_bytes: 0.0,
            ..t
        }
    }

    /// FLOPs of the MLP products per sample (all levels' samples counted).
    pub fn mlp_flops_per_sample(&self) -> f64 {
        self.mlp_flops / self.samples.max(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults, counted by hand: proposal MLPs [10, 16, 1] on 2 x 64 samples, density
    /// [32, 64, 16] and colour [83, 64, 64, 3] (15 inputs per sample, 27 + 32 + 9 per ray: the
    /// direction, latent and exposure encodings; 15 + 32 with gradients) on 32 samples per ray;
    /// grids of 5 levels (proposals) and 16 (NeRF), 2 features.
    #[test]
    fn default_step_cost_counted_by_hand() {
        let cfg = ModelConfig::from_train(&flythrough_core::config::TrainConfig::default(), 8);
        let c = StepCost::training(&cfg, 1);
        assert_eq!(c.samples, 160.0);
        let prop = 10.0 * 16.0 + 16.0;
        let dens = 32.0 * 64.0 + 64.0 * 16.0;
        let rest = 64.0 * 64.0 + 64.0 * 3.0;
        // Per sample: 15 x 64 of the first layer, the 68 x 64 per-ray part over 32 samples.
        let col = rest + 15.0 * 64.0 + 68.0 * 64.0 / 32.0;
        let col_data = rest + 15.0 * 64.0 + 32.0 * 64.0 / 32.0;
        assert_eq!((col, col_data), (5384.0, 5312.0));
        let fwd = 2.0 * (128.0 * prop + 32.0 * (dens + col));
        assert_eq!(c.mlp_fwd_flops, fwd);
        let total = 2.0 * (128.0 * 3.0 * prop + 32.0 * (3.0 * dens + 2.0 * col + col_data));
        assert_eq!(c.mlp_flops, total);
        // 1.75 MFLOP per ray (2.42 with the colour head's first layer per sample), 11.0 kFLOP
        // per sample on average.
        assert_eq!(c.mlp_flops, 1_754_112.0);
        assert!((c.mlp_flops_per_sample() - 10_963.2).abs() < 0.01);
        assert_eq!(c.hash_corner_reads, 128.0 * 8.0 * 5.0 + 32.0 * 8.0 * 16.0);
        assert_eq!(c.hash_grad_adds, 2.0 * c.hash_corner_reads);
        // The parameters: the hash tables dominate (16 NeRF levels of 2^19 entries x 2 features,
        // 10 proposal levels of at most 2^17); the optimiser then moves 0.6 GB per step, batch or
        // no batch.
        let nerf_tables = 16.0 * (1u64 << 20) as f64;
        assert!(
            c.params > nerf_tables + 10.0 * (1u64 << 18) as f64 && c.params < 1.2 * nerf_tables,
            "{}",
            c.params
        );
        assert_eq!(c.optimizer_bytes, 32.0 * c.params);
        // Linear in the batch.
        let c2 = StepCost::training(&cfg, 2048);
        assert_eq!(c2.mlp_flops, 2048.0 * c.mlp_flops);
        assert_eq!(c2.optimizer_bytes, c.optimizer_bytes);
    }

    /// Rendering is the forward alone: 586 kFLOP per ray at the defaults (128 x 176 proposal and
    /// 32 x (3,072 + 5,384) NeRF multiply-adds), so a 3840 x 1920 360° frame is 4.3 TFLOP, 65 ms
    /// at an H100's 67 TFLOP/s FP32, and 68 G corner reads.
    #[test]
    fn rendering_cost_is_the_forward_alone() {
        let cfg = ModelConfig::from_train(&flythrough_core::config::TrainConfig::default(), 8);
        let r = StepCost::rendering(&cfg, 1);
        let t = StepCost::training(&cfg, 1);
        assert_eq!(r.mlp_flops, t.mlp_fwd_flops);
        assert_eq!(r.mlp_fwd_flops, t.mlp_fwd_flops);
        assert_eq!(
            r.mlp_flops,
            2.0 * (128.0 * 176.0 + 32.0 * (3072.0 + 5384.0))
        );
        assert_eq!(
            (r.samples, r.hash_corner_reads),
            (t.samples, t.hash_corner_reads)
        );
        assert_eq!((r.hash_grad_adds, r.optimizer_bytes), (0.0, 0.0));
        let frame = StepCost::rendering(&cfg, 3840 * 1920);
        assert!(
            (frame.mlp_flops / 1e12 - 4.322).abs() < 1e-3,
            "{}",
            frame.mlp_flops
        );
        assert!((frame.hash_corner_reads / 1e9 - 67.95).abs() < 0.01);
    }
}
