//! Every GPU kernel against its CPU twin on fresh random inputs (on lavapipe in CI).
//!
//! Tolerances (all relative to the largest magnitude of the reference buffer, so a near-zero
//! element cannot blow them up):
//! - forward kernels **1e-5**: the same f32 operations in the same order, except the driver's
//!   `exp`/`log2` (Vulkan allows a few ULP), the MLP sums, which run in another order than the
//!   CPU's GEMM, and the per-ray sums of `weights` / `composite` / `nerf_loss` / `interlevel` /
//!   `sample_level` / `glo_grad` (64 chunks, then a scan or tree in workgroup memory) (f32
//!   rounding ~ 1e-7 per add over at most a few hundred terms). `sample_level`'s fenceposts are
//!   held to it against an f64 inverse CDF, and against the CPU twin within it plus the twin's own
//!   error against that reference: a CDF's rounding moves a sample by that error over the local
//!   density, so in the wide, nearly empty bins of a dilated histogram the twin's serial CDF is
//!   off by up to ~3e-5 at 192 samples from 192 (the kernel ~3e-6);
//! - gradients **1e-4**: scatters add in a run-dependent order (atomics) and the MLP weight
//!   gradients sum thousands of products per parameter in another order than the CPU (~sqrt(n)
//!   growth of the f32 rounding), with cancellation between positive and negative terms. The
//!   density gradients of `nerf_loss` / `interlevel` (`composite.rs weights_backward`) are held to
//!   it against an f64 reference, and against the CPU twin within it plus the twin's own error
//!   against that reference: the twin takes each T_{k+1} from the ray's total optical depth by
//!   subtraction, which on long rays of large optical depth drifts by ulp(total) (up to ~1e-2 at
//!   192 samples), where the kernels sum it forwards.
//!
//! Every buffer a kernel writes starts as a NaN sentinel (`test_gpu` poisons new buffers), so an
//! element a kernel forgets to write fails the comparison.
//!
//! One file per kernel family: [`hash`] (encoding), [`mlp`] (fused MLP), [`sampling`]
//! (proposal resampling), [`compositing`] (weights, compositing, ray features), [`losses`],
//! [`optimiser`] (GLO scatter, loss reduction, gradient norm, Adam), [`raygen`] (camera and 360°
//! rays), [`sampler`] (training batches drawn on the device, and their distribution), [`model`]
//! (the whole forward pass and training step). This file holds what they share.
//! Kernels run through the back end's own launchers ([`launch`]), so a test binds each kernel as
//! the back end does.

use super::kernels::*;
use super::shaders::{Act, MlpShape};
use crate::composite;
use crate::coord;
use crate::encoding;
use crate::kernels::{
    Adam, AdamConfig, HashGridConfig, MlpCache, MlpConfig, MlpInput, clip_scale, grad_sq_norm,
    hash_encode_backward, hash_encode_forward, mlp_backward_grouped, mlp_forward_grouped_into,
};
use crate::stepfun;
use flythrough_gpu::{AtomicMode, Gpu, GpuBuffer};
use flythrough_testkit::test_gpu;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

const SHAPE: MlpShape = MlpShape {
    tile: 8,
    max_in: 96,
    max_w: 64,
    wg: 64,
    rb: 4,
    stage: 0,
};

/// [`SHAPE`] with the weights staged in workgroup memory 16 rows at a time (more than one chunk of
/// the test MLPs' 20- to 35-wide layers, and a partial one).
const SHAPE_STAGED: MlpShape = MlpShape {
    stage: super::shaders::STAGE_ROWS,
    ..SHAPE
};

/// [`SHAPE`] with register tiles of 8 rows (`FLYTHROUGH_GPU_MLP_ROWS=8`): a whole 8-row tile per
/// invocation, 32 invocations.
const SHAPE_ROWS8: MlpShape = MlpShape {
    rb: 8,
    wg: 32,
    ..SHAPE
};

/// Both variants at once.
const SHAPE_ROWS8_STAGED: MlpShape = MlpShape {
    stage: super::shaders::STAGE_ROWS,
    ..SHAPE_ROWS8
};

fn ks(g: &Arc<Gpu>, atomic: AtomicMode) -> Kernels {
    Kernels::new(g.clone(), atomic, SHAPE)
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn rand_vec(r: &mut ChaCha8Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| r.random_range(lo..hi)).collect()
}

fn up<T: bytemuck::Pod>(g: &Gpu, v: &[T]) -> GpuBuffer {
    g.upload("test input", v).unwrap()
}

fn out(g: &Gpu, len: usize) -> GpuBuffer {
    g.storage_len("test output", len.max(1)).unwrap()
}

fn read(g: &Gpu, b: &GpuBuffer, len: usize) -> Vec<f32> {
    let v: Vec<f32> = g.read(b).unwrap();
    v[..len].to_vec()
}

/// max |a - b| / max |b| (and every element finite).
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b
        .iter()
        .fold(0f64, |m, &x| m.max((x as f64).abs()))
        .max(1e-30);
    let mut worst = 0f64;
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        assert!(x.is_finite(), "element {i} is {x} (reference {y})");
        worst = worst.max((x as f64 - y as f64).abs());
    }
    worst / scale
}

fn assert_close(what: &str, gpu: &[f32], cpu: &[f32], tol: f64) {
    let e = rel_err(gpu, cpu);
    eprintln!("{what}: relative error {e:.2e} (tolerance {tol:.0e})");
    assert!(e <= tol, "{what}: relative error {e:.3e} > {tol:.0e}");
}

/// `gpu` within `tol` of the f64 reference `reference`, and of the CPU twin `cpu` within `tol`
/// plus the twin's own error against that reference. Used where the chunked kernels and the twin
/// round a long sum differently and the twin is not the more accurate one: `weights_backward`
/// (the kernels sum the optical depth forwards, the twin by subtraction from the ray's total; on
/// long rays of large optical depth the twin drifts, by up to ~1e-4 at 97 samples) and the
/// inverse CDF of `sample_level` (a CDF's rounding moves a sample by that error over the local
/// density, large in the wide, nearly empty bins of a dilated histogram).
fn assert_close_twin(what: &str, gpu: &[f32], cpu: &[f32], reference: &[f32], tol: f64) {
    assert_close(&format!("{what} (f64 reference)"), gpu, reference, tol);
    let twin = rel_err(cpu, reference);
    assert_close(&format!("{what} (CPU twin)"), gpu, cpu, tol + twin);
}

/// A grid with dense, hashed levels (T = 2^10: levels up to N = 9 are dense).
fn grid_cfg() -> HashGridConfig {
    HashGridConfig {
        levels: 6,
        features_per_level: 2,
        log2_table_size: 10,
        base_resolution: 4,
        max_resolution: 64,
    }
}

fn level_info(cfg: &HashGridConfig) -> Vec<u32> {
    cfg.level_infos()
        .iter()
        .map(|i| i.resolution | if i.dense { 1 << 31 } else { 0 })
        .collect()
}

/// Positions partly outside [0,1]^3 (clamped) and footprints, some zero (point samples).
fn samples(r: &mut ChaCha8Rng, n: usize) -> (Vec<f32>, Vec<f32>) {
    let pos = rand_vec(r, 3 * n, -0.1, 1.1);
    let sig = (0..n)
        .map(|i| {
            if i % 5 == 0 {
                0.0
            } else {
                r.random_range(0.0..0.05)
            }
        })
        .collect();
    (pos, sig)
}

/// The hash kernels' parameter block for `n` samples and the `lc` levels from `l0`.
fn hash_params(cfg: &HashGridConfig, n: usize, l0: u32, lc: u32) -> HashParams {
    HashParams {
        n: n as u32,
        levels: lc,
        level0: l0,
        feats: cfg.features_per_level as u32,
        log2_t: cfg.log2_table_size,
        out_stride: cfg.output_dim() as u32,
        _p: [0; 2],
    }
}

/// Forward over the levels in `splits` (one dispatch per range, the table bound by range).
fn hash_fwd_gpu(
    g: &Gpu,
    k: &Kernels,
    cfg: &HashGridConfig,
    params: &[f32],
    pos: &[f32],
    sig: &[f32],
    splits: &[(u32, u32)],
) -> Vec<f32> {
    let n = sig.len();
    let lf = cfg.output_dim();
    let (info, pb, sb, tb) = (
        up(g, &level_info(cfg)),
        up(g, pos),
        up(g, sig),
        up(g, params),
    );
    let o = out(g, n * lf);
    let lb = (cfg.table_size() * cfg.features_per_level * 4) as u64;
    for &(l0, lc) in splits {
        let u = g.uniform("p", &hash_params(cfg, n, l0, lc)).unwrap();
        launch::HashFwd {
            p: &u,
            level_info: &info,
            pos: &pb,
            fsig: &sb,
            table: tb.range(l0 as u64 * lb, lc as u64 * lb),
            out: &o,
        }
        .run(k, Grid::Threads((n * lc as usize) as u64));
    }
    read(g, &o, n * lf)
}

mod compositing;
mod hash;
mod losses;
mod mlp;
mod model;
mod optimiser;
mod raygen;
mod sampler;
mod sampling;

/// Random sorted fenceposts in [0,1] per ray and positive weights.
fn histograms(r: &mut ChaCha8Rng, rays: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut s = Vec::new();
    let mut w = Vec::new();
    for _ in 0..rays {
        let mut v = rand_vec(r, n - 1, 0.0, 1.0);
        v.push(0.0);
        v.push(1.0);
        v.sort_by(|a, b| a.total_cmp(b));
        s.extend(v);
        let mut ww = rand_vec(r, n, 0.0, 1.0);
        let z: f32 = ww.iter().sum();
        ww.iter_mut().for_each(|x| *x /= z);
        w.extend(ww);
    }
    (s, w)
}

fn random_rays(r: &mut ChaCha8Rng, n: usize) -> Vec<[f32; 8]> {
    (0..n)
        .map(|_| {
            let d = [
                r.random_range(-1.0..1.0f32),
                r.random_range(-1.0..1.0),
                r.random_range(-1.0..1.0),
            ];
            let l = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
            [
                r.random_range(-0.5..0.5),
                r.random_range(-0.5..0.5),
                r.random_range(-0.5..0.5),
                d[0] / l,
                d[1] / l,
                d[2] / l,
                r.random_range(1e-4..5e-3),
                r.random_range(-2.0..2.0),
            ]
        })
        .collect()
}

/// A small model with grids far from their near-zero initialisation, so densities and colours vary
/// along rays.
pub(crate) fn random_model(seed: u64, glo_dim: usize, latents: usize) -> crate::model::Model {
    random_model_amp(seed, glo_dim, latents, 1.0)
}

/// [`random_model`] with grid and latent values uniform in `[-amp, amp]`.
pub(crate) fn random_model_amp(
    seed: u64,
    glo_dim: usize,
    latents: usize,
    amp: f32,
) -> crate::model::Model {
    let tc = flythrough_core::config::TrainConfig {
        prop_samples: vec![16, 12],
        nerf_samples: 12,
        hash_levels: 6,
        hash_table_log2: 12,
        hash_max_res: 128,
        mlp_width: 32,
        glo_dim,
        ..Default::default()
    };
    let mut m = crate::model::Model::new(
        crate::model::ModelConfig::from_train(&tc, latents),
        0.05,
        seed,
    );
    let mut r = rng(seed + 100);
    for (name, p) in m.names.clone().iter().zip(m.params.iter_mut()) {
        if name.ends_with("grid") || name == "glo" {
            p.iter_mut().for_each(|v| *v = r.random_range(-amp..amp));
        }
    }
    m
}

/// GPU training stores activations in f16 exactly where the device has shader f16 and
/// `FLYTHROUGH_GPU_F16` is not `0`; the subgroup scatter on hardware adapters with subgroups
/// (`FLYTHROUGH_GPU_SUBGROUPS`: `0` off, `1` on software adapters too).
#[test]
fn f16_activations_where_offered_unless_turned_off() {
    use crate::gpu::act_for;
    assert_eq!(act_for(true, None), Act::F16);
    assert_eq!(act_for(true, Some("1")), Act::F16);
    assert_eq!(act_for(true, Some("0")), Act::F32);
    assert_eq!(act_for(true, Some(" 0 ")), Act::F32);
    assert_eq!(act_for(false, None), Act::F32);
    assert_eq!(act_for(false, Some("1")), Act::F32);
    use crate::gpu::{feature_on, subgroups_rule};
    assert!(feature_on(true, None) && feature_on(true, Some("yes")));
    assert!(!feature_on(true, Some("0")) && !feature_on(false, None));
    // Subgroups: hardware by default, software only when asked, never without them.
    assert!(subgroups_rule(true, false, None));
    assert!(!subgroups_rule(true, true, None));
    assert!(subgroups_rule(true, true, Some("1")));
    assert!(!subgroups_rule(true, false, Some("0")));
    assert!(!subgroups_rule(false, false, Some("1")));
    assert_eq!(Act::F16.words(5), 3);
    assert_eq!(Act::F32.words(5), 5);
}

/// `glo_grad` takes at most 256 latent columns: a larger `glo_dim` is refused before any kernel
/// runs, naming the key.
#[test]
fn gpu_model_refuses_more_latent_columns_than_glo_grad_takes() {
    let Some(g) = test_gpu() else { return };
    let m = random_model_amp(1, crate::gpu::kernels::MAX_GLO_DIM + 1, 2, 0.1);
    let e = crate::gpu::model::GpuModel::new(g.clone(), &m)
        .err()
        .expect("refused");
    assert!(e.to_string().contains("glo_dim = 257"), "{e}");
    let m = random_model_amp(1, crate::gpu::kernels::MAX_GLO_DIM, 2, 0.1);
    assert!(crate::gpu::model::GpuModel::new(g, &m).is_ok());
}
