//! Every GPU kernel against its CPU twin on fresh random inputs (on lavapipe in CI).
//!
//! Tolerances (all relative to the largest magnitude of the reference buffer, so a near-zero
//! element cannot blow them up):
//! - forward kernels **1e-5**: the same f32 operations in the same order, except the driver's
//!   `exp`/`log2` (Vulkan allows a few ULP) and the MLP sums, which run in another order than the
//!   CPU's GEMM (f32 rounding ~ 1e-7 per add over at most a few hundred terms);
//! - gradients **1e-4**: scatters add in a run-dependent order (atomics) and the MLP weight
//!   gradients sum thousands of products per parameter in another order than the CPU (~sqrt(n)
//!   growth of the f32 rounding), with cancellation between positive and negative terms.
//!
//! Every buffer a kernel writes starts as a NaN sentinel (`test_gpu` poisons new buffers), so an
//! element a kernel forgets to write fails the comparison.

use super::batch::Grid;
use super::kernels::*;
use super::shaders::{KernelId, MlpShape};
use crate::composite;
use crate::coord;
use crate::encoding;
use crate::kernels::{
    Adam, AdamConfig, HashGridConfig, MlpCache, MlpConfig, MlpInput, clip_scale, grad_sq_norm,
    hash_encode_backward, hash_encode_forward, mlp_backward_grouped, mlp_forward_grouped_into,
};
use crate::stepfun;
use flythrough_gpu::{AtomicMode, Bind, Gpu, GpuBuffer};
use flythrough_testkit::test_gpu;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

const SHAPE: MlpShape = MlpShape {
    tile: 8,
    max_in: 96,
    max_w: 64,
    wg: 64,
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

fn run(g: &Gpu, k: &Kernels, id: KernelId, binds: &[Bind], grid: Grid) {
    let kern = k.get(id).unwrap();
    let bg = g.bind(&kern, binds);
    let mut rec = g.recorder(id.name());
    match grid {
        Grid::Threads(n) => rec.dispatch_threads(&kern, &bg, n),
        Grid::Groups(gr) => rec.dispatch(&kern, &bg, gr),
    }
    rec.submit();
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
        let u = g
            .uniform(
                "p",
                &HashParams {
                    n: n as u32,
                    levels: lc,
                    level0: l0,
                    feats: cfg.features_per_level as u32,
                    log2_t: cfg.log2_table_size,
                    out_stride: lf as u32,
                    _p: [0; 2],
                },
            )
            .unwrap();
        run(
            g,
            k,
            KernelId::HashFwd,
            &[
                (&u).into(),
                (&info).into(),
                (&pb).into(),
                (&sb).into(),
                tb.range(l0 as u64 * lb, lc as u64 * lb),
                (&o).into(),
            ],
            Grid::Threads((n * lc as usize) as u64),
        );
    }
    read(g, &o, n * lf)
}

#[test]
fn hash_encode_forward_matches_cpu_dense_hashed_clamped_and_split() {
    let Some(g) = test_gpu() else { return };
    let k = ks(&g, g.atomic_mode());
    let cfg = grid_cfg();
    let infos = cfg.level_infos();
    assert!(infos[0].dense && !infos[5].dense, "{infos:?}");
    let mut r = rng(1);
    let params = rand_vec(&mut r, cfg.num_params(), -1.0, 1.0);
    let (pos, sig) = samples(&mut r, 3000);
    let mut cpu = vec![0.0; 3000 * cfg.output_dim()];
    hash_encode_forward(&cfg, &params, &pos, Some(&sig), &mut cpu);
    // All levels in one binding, and split across three bindings (as for grids larger than the
    // adapter's binding limit).
    for splits in [vec![(0, 6)], vec![(0, 2), (2, 1), (3, 3)]] {
        let gpu = hash_fwd_gpu(&g, &k, &cfg, &params, &pos, &sig, &splits);
        assert_close(&format!("hash fwd {splits:?}"), &gpu, &cpu, 1e-5);
    }
}

#[test]
fn hash_encode_backward_matches_cpu_native_and_cas() {
    let Some(g) = test_gpu() else { return };
    let cfg = grid_cfg();
    let mut r = rng(2);
    let n = 2000;
    let (pos, sig) = samples(&mut r, n);
    let d_out = rand_vec(&mut r, n * cfg.output_dim(), -1.0, 1.0);
    // Accumulates into existing gradients.
    let g0 = rand_vec(&mut r, cfg.num_params(), -0.1, 0.1);
    let mut cpu = g0.clone();
    hash_encode_backward(&cfg, &pos, Some(&sig), &d_out, &mut cpu);
    let mut modes = vec![AtomicMode::CasU32];
    if g.caps().float_atomics {
        modes.push(AtomicMode::NativeF32);
    } else {
        eprintln!("adapter without SHADER_FLOAT32_ATOMIC: native path not tested here");
    }
    for mode in modes {
        let k = ks(&g, mode);
        let (info, pb, sb, db) = (
            up(&g, &level_info(&cfg)),
            up(&g, &pos),
            up(&g, &sig),
            up(&g, &d_out),
        );
        let grad = up(&g, &g0);
        let lb = (cfg.table_size() * 2 * 4) as u64;
        for (l0, lc) in [(0u32, 4u32), (4, 2)] {
            let u = g
                .uniform(
                    "p",
                    &HashParams {
                        n: n as u32,
                        levels: lc,
                        level0: l0,
                        feats: 2,
                        log2_t: cfg.log2_table_size,
                        out_stride: cfg.output_dim() as u32,
                        _p: [0; 2],
                    },
                )
                .unwrap();
            run(
                &g,
                &k,
                KernelId::HashBwd,
                &[
                    (&u).into(),
                    (&info).into(),
                    (&pb).into(),
                    (&sb).into(),
                    (&db).into(),
                    grad.range(l0 as u64 * lb, lc as u64 * lb),
                ],
                Grid::Threads((n * lc as usize) as u64),
            );
        }
        let gpu = read(&g, &grad, cfg.num_params());
        assert_close(&format!("hash bwd {mode:?}"), &gpu, &cpu, 1e-4);
    }
}

/// Colour-head-like MLP input: 15 per-row features read from a 16-wide buffer at column 1, and 68
/// group features shared by runs of `group` rows.
struct MlpCase {
    cfg: MlpConfig,
    a: Vec<f32>,
    g: Vec<f32>,
    io: MlpIo,
    n: usize,
}

fn mlp_case(r: &mut ChaCha8Rng, grouped: bool) -> MlpCase {
    if grouped {
        let n = 8 * 37; // 37 groups of 8 rows
        let (dl, dg, group) = (15, 20, 8);
        let cfg = MlpConfig::new(&[dl + dg, 32, 24, 3], true);
        MlpCase {
            a: rand_vec(r, n * 16, -1.0, 1.0),
            g: rand_vec(r, n / group * dg, -1.0, 1.0),
            io: MlpIo {
                a_stride: 16,
                a_off: 1,
                d_local: dl as u32,
                g_stride: dg as u32,
                g_rows: group as u32,
                out_stride: 3,
                out_off: 0,
            },
            cfg,
            n,
        }
    } else {
        let n = 8 * 37 + 3; // a partial last tile, and a partial block of rows in it
        let cfg = MlpConfig::new(&[12, 16, 1], true);
        MlpCase {
            a: rand_vec(r, n * 12, -1.0, 1.0),
            g: vec![0.0],
            io: MlpIo::dense(&cfg),
            cfg,
            n,
        }
    }
}

impl MlpCase {
    /// The CPU twin's input: per-row columns 1..=15 of `a`, or `a` itself.
    fn rows(&self) -> Vec<f32> {
        let dl = self.io.d_local as usize;
        let st = self.io.a_stride as usize;
        let off = self.io.a_off as usize;
        (0..self.n)
            .flat_map(|r| self.a[r * st + off..r * st + off + dl].to_vec())
            .collect()
    }
    fn input<'a>(&'a self, rows: &'a [f32]) -> MlpInput<'a> {
        if self.io.d_local as usize == self.cfg.input_dim() {
            MlpInput::dense(rows, &self.cfg)
        } else {
            MlpInput {
                rows,
                d_local: self.io.d_local as usize,
                groups: &self.g,
                group_rows: self.io.g_rows as usize,
            }
        }
    }
}

#[test]
fn mlp_forward_matches_cpu_dense_and_grouped() {
    let Some(g) = test_gpu() else { return };
    let k = ks(&g, g.atomic_mode());
    let mut r = rng(3);
    for grouped in [false, true] {
        let c = mlp_case(&mut r, grouped);
        let params = c.cfg.init_params(5);
        let rows = c.rows();
        let mut cpu = vec![0.0; c.n * c.cfg.output_dim()];
        let mut cache = MlpCache::default();
        mlp_forward_grouped_into(&c.cfg, &params, &c.input(&rows), &mut cpu, &mut cache);
        let p = MlpParams::new(&c.cfg, c.n, c.io, true);
        let (u, pb, ab, gb) = (
            g.uniform("p", &p).unwrap(),
            up(&g, &params),
            up(&g, &c.a),
            up(&g, &c.g),
        );
        let ob = out(&g, c.n * c.cfg.output_dim());
        let cb = out(&g, c.n * c.cfg.hidden_width());
        run(
            &g,
            &k,
            KernelId::MlpFwd,
            &[
                (&u).into(),
                (&pb).into(),
                (&ab).into(),
                (&gb).into(),
                (&ob).into(),
                (&cb).into(),
            ],
            Grid::Groups(super::batch::mlp_groups(&g, c.n, SHAPE.tile)),
        );
        let gpu = read(&g, &ob, cpu.len());
        assert_close(&format!("mlp fwd grouped={grouped}"), &gpu, &cpu, 1e-5);
        // The hidden cache: CPU keeps it per 256-row chunk, layer after layer; compare row by row
        // against a recomputation from the GPU's own layout (hidden of row r at [r * hw ..]).
        let hw = c.cfg.hidden_width();
        let gcache = read(&g, &cb, c.n * hw);
        let w1 = c.cfg.sizes[1];
        for row in [0usize, 1, c.n - 1] {
            // first hidden layer, recomputed on the CPU in f64
            let x: Vec<f64> = (0..c.cfg.input_dim())
                .map(|i| {
                    if i < c.io.d_local as usize {
                        rows[row * c.io.d_local as usize + i] as f64
                    } else {
                        c.g[row / c.io.g_rows as usize * c.io.g_stride as usize + i
                            - c.io.d_local as usize] as f64
                    }
                })
                .collect();
            let lo = &c.cfg.layer_offsets()[0];
            for j in 0..w1 {
                let mut s = params[lo.bias.unwrap() + j] as f64;
                for (i, xi) in x.iter().enumerate() {
                    s += xi * params[lo.weight + i * w1 + j] as f64;
                }
                let want = s.max(0.0);
                assert!(
                    (gcache[row * hw + j] as f64 - want).abs() < 1e-5,
                    "cache row {row} unit {j}"
                );
            }
        }
    }
}

#[test]
fn mlp_backward_matches_cpu_and_is_deterministic() {
    let Some(g) = test_gpu() else { return };
    let k = ks(&g, g.atomic_mode());
    let mut r = rng(4);
    for grouped in [false, true] {
        let c = mlp_case(&mut r, grouped);
        let params = c.cfg.init_params(6);
        let rows = c.rows();
        let dout_w = c.cfg.output_dim();
        let d_out = rand_vec(&mut r, c.n * dout_w, -1.0, 1.0);
        let mut cache = MlpCache::default();
        let mut y = vec![0.0; c.n * dout_w];
        mlp_forward_grouped_into(&c.cfg, &params, &c.input(&rows), &mut y, &mut cache);
        let g0 = rand_vec(&mut r, params.len(), -0.1, 0.1);
        let mut cpu_dp = g0.clone();
        let dl = c.io.d_local as usize;
        let ds = c.cfg.input_dim() - dl;
        let mut cpu_dx = vec![0.0; c.n * dl];
        let mut cpu_dg = vec![0.0; if ds > 0 { c.g.len() } else { 0 }];
        mlp_backward_grouped(
            &c.cfg,
            &params,
            &c.input(&rows),
            &cache,
            &d_out,
            &mut cpu_dp,
            Some(&mut cpu_dx),
            (ds > 0).then_some(&mut cpu_dg[..]),
        );
        // GPU: forward (for the cache), then the three backward kernels.
        let (c0, c1) = if ds > 0 { (3u32, 11u32) } else { (0, 0) }; // a column range of the group part
        let p = MlpParams::new(&c.cfg, c.n, c.io, true).with_dx(
            dl as u32 + 2,
            1,
            (ds > 0).then_some((c0, c1)),
        );
        let (u, pb, ab, gb) = (
            g.uniform("p", &p).unwrap(),
            up(&g, &params),
            up(&g, &c.a),
            up(&g, &c.g),
        );
        let yb = out(&g, c.n * dout_w);
        let cb = out(&g, c.n * c.cfg.hidden_width());
        run(
            &g,
            &k,
            KernelId::MlpFwd,
            &[
                (&u).into(),
                (&pb).into(),
                (&ab).into(),
                (&gb).into(),
                (&yb).into(),
                (&cb).into(),
            ],
            Grid::Groups(super::batch::mlp_groups(&g, c.n, SHAPE.tile)),
        );
        let db = up(&g, &d_out);
        let dy = out(&g, c.n * p.dyw as usize);
        let dx = up(&g, &vec![7.0f32; c.n * (dl + 2)]);
        let gw = (c1 - c0).max(1) as usize;
        let dxg = out(&g, c.n * gw);
        let partial = out(&g, p.groups as usize * params.len());
        let grads = |seed: u64| {
            let grad = up(&g, &g0);
            run(
                &g,
                &k,
                KernelId::MlpBwdData,
                &[
                    (&u).into(),
                    (&pb).into(),
                    (&cb).into(),
                    (&db).into(),
                    (&dy).into(),
                    (&dx).into(),
                    (&dxg).into(),
                ],
                Grid::Groups(super::batch::mlp_groups(&g, c.n, SHAPE.tile)),
            );
            run(
                &g,
                &k,
                KernelId::MlpBwdWeights,
                &[
                    (&u).into(),
                    (&ab).into(),
                    (&gb).into(),
                    (&cb).into(),
                    (&dy).into(),
                    (&partial).into(),
                ],
                Grid::Groups([p.nparams.div_ceil(4 * SHAPE.wg), p.groups, 1]),
            );
            let ur = g
                .uniform(
                    "r",
                    &ReduceParams {
                        nparams: p.nparams,
                        groups: p.groups,
                        _p: [0; 2],
                    },
                )
                .unwrap();
            run(
                &g,
                &k,
                KernelId::ReducePartials,
                &[(&ur).into(), (&partial).into(), (&grad).into()],
                Grid::Threads(p.nparams as u64),
            );
            let _ = seed;
            read(&g, &grad, params.len())
        };
        let gpu_dp = grads(0);
        assert_close(
            &format!("mlp d_params grouped={grouped}"),
            &gpu_dp,
            &cpu_dp,
            1e-4,
        );
        assert_eq!(
            gpu_dp,
            grads(1),
            "MLP weight gradients must be bitwise repeatable"
        );
        // d_x of the per-row inputs, written at stride dl + 2, offset 1 (the rest untouched).
        let gdx = read(&g, &dx, c.n * (dl + 2));
        let got: Vec<f32> = (0..c.n)
            .flat_map(|r| gdx[r * (dl + 2) + 1..r * (dl + 2) + 1 + dl].to_vec())
            .collect();
        assert_close(&format!("mlp d_x grouped={grouped}"), &got, &cpu_dx, 1e-5);
        assert!((0..c.n).all(|r| gdx[r * (dl + 2)] == 7.0 && gdx[r * (dl + 2) + dl + 1] == 7.0));
        if ds > 0 {
            // Per-row group gradients, summed over each group = the CPU's d_groups.
            let gdg = read(&g, &dxg, c.n * gw);
            let grp = c.io.g_rows as usize;
            let mut sum = vec![0.0f32; c.n / grp * gw];
            let mut want = vec![0.0f32; c.n / grp * gw];
            for row in 0..c.n {
                for j in 0..gw {
                    sum[row / grp * gw + j] += gdg[row * gw + j];
                }
            }
            for gi in 0..c.n / grp {
                for j in 0..gw {
                    want[gi * gw + j] = cpu_dg[gi * ds + c0 as usize + j];
                }
            }
            assert_close("mlp d_groups", &sum, &want, 1e-5);
        }
    }
}

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

#[test]
fn sampling_and_resampling_match_cpu() {
    let Some(g) = test_gpu() else { return };
    let k = ks(&g, g.atomic_mode());
    let mut r = rng(5);
    let rays = 150;
    let near = 0.05f32;
    let rv = random_rays(&mut r, rays);
    let (n, pn) = (24usize, 16usize);
    let (ps, pw) = histograms(&mut r, rays, pn);
    let jit = rand_vec(&mut r, rays * 3, 0.0, 1.0);
    for (level, jitter, anneal) in [
        (0u32, true, 1.0f32),
        (0, false, 1.0),
        (1, true, 0.37),
        (2, false, 1.0),
    ] {
        let prev = level > 0;
        let p = SampleParams {
            n_rays: rays as u32,
            n: n as u32,
            pn: if prev { pn as u32 } else { 0 },
            jitter: jitter as u32,
            near,
            dil: stepfun::dilation(64),
            anneal,
            level,
            nlev: 3,
            _p: [0; 3],
        };
        let u = g.uniform("p", &p).unwrap();
        let (rb, jb, psb, pwb) = (up(&g, &rv), up(&g, &jit), up(&g, &ps), up(&g, &pw));
        let sc = out(&g, rays * (6 * p.pn as usize + 3));
        let (sb, tb, posb, fb) = (
            out(&g, rays * (n + 1)),
            out(&g, rays * (n + 1)),
            out(&g, rays * n * 3),
            out(&g, rays * n),
        );
        run(
            &g,
            &k,
            KernelId::SampleLevel,
            &[
                (&u).into(),
                (&rb).into(),
                (&jb).into(),
                (&psb).into(),
                (&pwb).into(),
                (&sc).into(),
                (&sb).into(),
                (&tb).into(),
                (&posb).into(),
                (&fb).into(),
            ],
            Grid::Threads(rays as u64),
        );
        // CPU twin: model.rs resample + sample_points.
        let mut cs = vec![0.0f32; rays * (n + 1)];
        let (mut td, mut wd) = (Vec::new(), Vec::new());
        for i in 0..rays {
            let u0 = jitter.then(|| jit[i * 3 + level as usize]);
            let o = &mut cs[i * (n + 1)..(i + 1) * (n + 1)];
            if prev {
                stepfun::max_dilate_weights_into(
                    &ps[i * (pn + 1)..(i + 1) * (pn + 1)],
                    &pw[i * pn..(i + 1) * pn],
                    p.dil,
                    (0.0, 1.0),
                    &mut td,
                    &mut wd,
                );
                if anneal != 1.0 {
                    wd.iter_mut().for_each(|w| *w = w.max(1e-12).powf(anneal));
                } else {
                    wd.iter_mut().for_each(|w| *w = w.max(1e-12));
                }
                stepfun::sample_intervals(&td, &wd, n, u0, (0.0, 1.0), o);
            } else {
                stepfun::sample_intervals(&[0.0, 1.0], &[1.0], n, u0, (0.0, 1.0), o);
            }
        }
        // s against the CPU's sampling; t, positions and footprints against the CPU's formulas
        // applied to the GPU's own s and t (near s = 1, t = 1/(s/far + (1-s)/near) amplifies
        // one-ulp differences of s by 1/(1-s), so each stage is checked on identical inputs).
        let what = format!("level {level} jitter {jitter} anneal {anneal}");
        let gs = read(&g, &sb, cs.len());
        assert_close(&format!("{what}: s"), &gs, &cs, 1e-5);
        let ct: Vec<f32> = gs.iter().map(|&s| coord::s_to_t(s, near)).collect();
        let gt = read(&g, &tb, ct.len());
        for (i, (a, b)) in gt.iter().zip(&ct).enumerate() {
            assert!(((a - b) / b).abs() < 1e-5, "{what}: t[{i}] {a} vs {b}");
        }
        let mut cpos = Vec::new();
        let mut cf = Vec::new();
        for i in 0..rays {
            let rr = rv[i];
            for j in 0..n {
                let tm = 0.5 * (gt[i * (n + 1) + j] + gt[i * (n + 1) + j + 1]);
                let x = [rr[0] + rr[3] * tm, rr[1] + rr[4] * tm, rr[2] + rr[5] * tm];
                cpos.extend(coord::to_grid(coord::contract(x)));
                cf.push(coord::grid_sigma(rr[6], tm, x));
            }
        }
        assert_close(
            &format!("{what}: positions"),
            &read(&g, &posb, cpos.len()),
            &cpos,
            1e-5,
        );
        let gf = read(&g, &fb, cf.len());
        for (i, (a, b)) in gf.iter().zip(&cf).enumerate() {
            assert!(
                ((a - b) / b.abs().max(1e-12)).abs() < 1e-5,
                "{what}: footprint[{i}] {a} vs {b}"
            );
        }
    }
}

#[test]
fn weights_composite_and_ray_features_match_cpu() {
    let Some(g) = test_gpu() else { return };
    let k = ks(&g, g.atomic_mode());
    let mut r = rng(6);
    let (rays, n, stride) = (120usize, 20usize, 16usize);
    let raw = rand_vec(&mut r, rays * n * stride, -4.0, 4.0);
    let (s, _) = histograms(&mut r, rays, n);
    let t: Vec<f32> = s.iter().map(|&x| coord::s_to_t(x, 0.1)).collect();
    let u = g
        .uniform(
            "p",
            &WeightsParams {
                n_rays: rays as u32,
                n: n as u32,
                raw_stride: stride as u32,
                _p: 0,
            },
        )
        .unwrap();
    let (rb, tb, sb, wb) = (
        up(&g, &raw),
        up(&g, &t),
        out(&g, rays * n),
        out(&g, rays * n),
    );
    run(
        &g,
        &k,
        KernelId::Weights,
        &[
            (&u).into(),
            (&rb).into(),
            (&tb).into(),
            (&sb).into(),
            (&wb).into(),
        ],
        Grid::Threads(rays as u64),
    );
    let mut csig = vec![0.0; rays * n];
    let mut cw = vec![0.0; rays * n];
    for i in 0..rays {
        for j in 0..n {
            csig[i * n + j] = raw[(i * n + j) * stride].min(15.0).exp();
        }
        composite::weights(
            &csig[i * n..(i + 1) * n],
            &t[i * (n + 1)..(i + 1) * (n + 1)],
            &mut cw[i * n..(i + 1) * n],
        );
    }
    assert_close("sigma", &read(&g, &sb, rays * n), &csig, 1e-5);
    let gw = read(&g, &wb, rays * n);
    assert_close("weights", &gw, &cw, 1e-5);
    // Composite (floats and packed pixels, pixel offset 5 of a 130-pixel frame).
    let logits = rand_vec(&mut r, rays * n * 3, -5.0, 5.0);
    let cp = CompParams {
        n_rays: rays as u32,
        n: n as u32,
        pix0: 5,
        pack: 1,
        npix: 5 + rays as u32 - 3,
        _p: [0; 3],
    };
    let u = g.uniform("p", &cp).unwrap();
    let (lb, ob) = (up(&g, &logits), out(&g, rays * 5));
    let px = up(&g, &vec![0xAAAA_AAAAu32; 130]);
    run(
        &g,
        &k,
        KernelId::Composite,
        &[
            (&u).into(),
            (&wb).into(),
            (&tb).into(),
            (&lb).into(),
            (&ob).into(),
            (&px).into(),
        ],
        Grid::Threads(rays as u64),
    );
    let gout = read(&g, &ob, rays * 5);
    let gpx: Vec<u32> = g.read(&px).unwrap();
    let act = |x: f32| {
        let s = 1.0 / (1.0 + (-x).exp());
        s * (1.0 + 2.0 * crate::model::RGB_PADDING) - crate::model::RGB_PADDING
    };
    let mut cout = Vec::new();
    for i in 0..rays {
        let rgb: Vec<f32> = logits[i * n * 3..(i + 1) * n * 3]
            .iter()
            .map(|&x| act(x))
            .collect();
        let (c, d, a) = composite::composite(
            &gw[i * n..(i + 1) * n],
            &rgb,
            &t[i * (n + 1)..(i + 1) * (n + 1)],
        );
        cout.extend([c[0], c[1], c[2], d, a]);
        let to8 = |v: f32| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u32;
        let want = to8(c[0]) | to8(c[1]) << 8 | to8(c[2]) << 16 | 255 << 24;
        let got = gpx[5 + i];
        if 5 + i < cp.npix as usize {
            for sh in [0, 8, 16] {
                assert!(
                    ((got >> sh) & 255).abs_diff((want >> sh) & 255) <= 1,
                    "pixel {i}"
                );
            }
        } else {
            assert_eq!(got, 0xAAAA_AAAA, "pixel {i} past the frame was written");
        }
    }
    assert_eq!(gpx[..5], [0xAAAA_AAAA; 5]);
    assert_close("composite", &gout, &cout, 1e-5);
    // Ray features: direction and exposure encodings and the latent row of each ray.
    let rv = random_rays(&mut r, rays);
    let gd = 5usize;
    let table = rand_vec(&mut r, 4 * gd, -1.0, 1.0);
    let idx: Vec<u32> = (0..rays as u32).map(|i| (i * 7) % 4).collect();
    let width = encoding::DIR_DIM + gd + encoding::EXPOSURE_DIM;
    let u = g
        .uniform(
            "p",
            &FeatParams {
                n_rays: rays as u32,
                width: width as u32,
                gd: gd as u32,
                exposure: 1,
            },
        )
        .unwrap();
    let (rb, ib, tb2, fb) = (
        up(&g, &rv),
        up(&g, &idx),
        up(&g, &table),
        out(&g, rays * width),
    );
    run(
        &g,
        &k,
        KernelId::RayFeatures,
        &[
            (&u).into(),
            (&rb).into(),
            (&ib).into(),
            (&tb2).into(),
            (&fb).into(),
        ],
        Grid::Threads(rays as u64),
    );
    let mut cf = vec![0.0; rays * width];
    for i in 0..rays {
        let row = &mut cf[i * width..(i + 1) * width];
        encoding::dir_encoding(
            [rv[i][3], rv[i][4], rv[i][5]],
            &mut row[..encoding::DIR_DIM],
        );
        let li = idx[i] as usize;
        row[encoding::DIR_DIM..encoding::DIR_DIM + gd]
            .copy_from_slice(&table[li * gd..(li + 1) * gd]);
        encoding::exposure_encoding(rv[i][7], &mut row[encoding::DIR_DIM + gd..]);
    }
    assert_close("ray features", &read(&g, &fb, rays * width), &cf, 1e-5);
}

#[test]
fn losses_and_their_gradients_match_cpu() {
    let Some(g) = test_gpu() else { return };
    let k = ks(&g, g.atomic_mode());
    let mut r = rng(7);
    let (rays, n, m) = (96usize, 16usize, 24usize);
    let (s, _) = histograms(&mut r, rays, n);
    let t: Vec<f32> = s.iter().map(|&x| coord::s_to_t(x, 0.1)).collect();
    let sigma = rand_vec(&mut r, rays * n, 0.0, 20.0);
    let mut w = vec![0.0; rays * n];
    for i in 0..rays {
        composite::weights(
            &sigma[i * n..(i + 1) * n],
            &t[i * (n + 1)..(i + 1) * (n + 1)],
            &mut w[i * n..(i + 1) * n],
        );
    }
    let logits = rand_vec(&mut r, rays * n * 3, -3.0, 3.0);
    let target = rand_vec(&mut r, rays * 3, 0.0, 1.0);
    let (dw, stride) = (0.01f32, 16usize);
    let lp = LossParams {
        n_rays: rays as u32,
        n: n as u32,
        raw_stride: stride as u32,
        _p0: 0,
        inv_r: 1.0 / rays as f32,
        dist_scale: dw / rays as f32,
        _p1: [0.0; 2],
    };
    let u = g.uniform("p", &lp).unwrap();
    let bufs = [
        up(&g, &w),
        up(&g, &s),
        up(&g, &t),
        up(&g, &sigma),
        up(&g, &logits),
        up(&g, &target),
    ];
    let (gwb, glb, drb, rlb) = (
        out(&g, rays * n),
        out(&g, rays * n * 3),
        out(&g, rays * n * stride),
        out(&g, rays * 4),
    );
    run(
        &g,
        &k,
        KernelId::NerfLoss,
        &[
            (&u).into(),
            (&bufs[0]).into(),
            (&bufs[1]).into(),
            (&bufs[2]).into(),
            (&bufs[3]).into(),
            (&bufs[4]).into(),
            (&bufs[5]).into(),
            (&gwb).into(),
            (&glb).into(),
            (&drb).into(),
            (&rlb).into(),
        ],
        Grid::Threads(rays as u64),
    );
    // CPU twin: the per-ray closure of Model::backward.
    let act = |x: f32| {
        let e = 1.0 / (1.0 + (-x).exp());
        let p = crate::model::RGB_PADDING;
        (e * (1.0 + 2.0 * p) - p, (1.0 + 2.0 * p) * e * (1.0 - e))
    };
    let inv_r = 1.0 / rays as f32;
    let (mut c_gl, mut c_dr, mut c_loss) = (
        vec![0.0; rays * n * 3],
        vec![0.0; rays * n],
        vec![0.0; rays * 3],
    );
    for i in 0..rays {
        let wi = &w[i * n..(i + 1) * n];
        let rgb: Vec<(f32, f32)> = logits[i * n * 3..(i + 1) * n * 3]
            .iter()
            .map(|&x| act(x))
            .collect();
        let rgbv: Vec<f32> = rgb.iter().map(|x| x.0).collect();
        let (c, _, _) = composite::composite(wi, &rgbv, &t[i * (n + 1)..(i + 1) * (n + 1)]);
        let mut gc = [0.0f32; 3];
        let (mut data, mut se) = (0.0f32, 0.0f32);
        for kk in 0..3 {
            let rr = c[kk] - target[i * 3 + kk];
            let (v, dv) = composite::charbonnier(rr);
            data += v;
            se += rr * rr;
            gc[kk] = dv * inv_r / 3.0;
        }
        let mut gw = vec![0.0f32; n];
        let dist =
            stepfun::distortion_loss(&s[i * (n + 1)..(i + 1) * (n + 1)], wi, dw * inv_r, &mut gw);
        for j in 0..n {
            gw[j] += gc[0] * rgb[3 * j].0 + gc[1] * rgb[3 * j + 1].0 + gc[2] * rgb[3 * j + 2].0;
            for kk in 0..3 {
                c_gl[(i * n + j) * 3 + kk] = gc[kk] * wi[j] * rgb[3 * j + kk].1;
            }
        }
        let mut gs = vec![0.0; n];
        composite::weights_backward(
            &sigma[i * n..(i + 1) * n],
            &t[i * (n + 1)..(i + 1) * (n + 1)],
            wi,
            &gw,
            &mut gs,
        );
        for j in 0..n {
            c_dr[i * n + j] = gs[j] * sigma[i * n + j];
        }
        c_loss[i * 3..i * 3 + 3].copy_from_slice(&[data, dist, se]);
    }
    assert_close("d logits", &read(&g, &glb, rays * n * 3), &c_gl, 1e-4);
    let gdr = read(&g, &drb, rays * n * stride);
    let got: Vec<f32> = (0..rays * n).map(|q| gdr[q * stride]).collect();
    assert_close("d raw (sigma)", &got, &c_dr, 1e-4);
    let grl = read(&g, &rlb, rays * 4);
    let got: Vec<f32> = (0..rays)
        .flat_map(|i| grl[4 * i..4 * i + 3].to_vec())
        .collect();
    assert_close("per-ray losses", &got, &c_loss, 1e-5);
    // Interlevel loss of a proposal histogram (m bins) against the NeRF one.
    let (se_, _) = histograms(&mut r, rays, m);
    let te: Vec<f32> = se_.iter().map(|&x| coord::s_to_t(x, 0.1)).collect();
    let sige = rand_vec(&mut r, rays * m, 0.0, 10.0);
    let mut we = vec![0.0; rays * m];
    for i in 0..rays {
        composite::weights(
            &sige[i * m..(i + 1) * m],
            &te[i * (m + 1)..(i + 1) * (m + 1)],
            &mut we[i * m..(i + 1) * m],
        );
    }
    let scale = 1.0 / (rays * n) as f32;
    let u = g
        .uniform(
            "p",
            &IlParams {
                n_rays: rays as u32,
                n: n as u32,
                m: m as u32,
                loss_off: 3,
                scale,
                _p1: [0.0; 3],
            },
        )
        .unwrap();
    let b = [
        up(&g, &s),
        up(&g, &w),
        up(&g, &se_),
        up(&g, &we),
        up(&g, &sige),
        up(&g, &te),
    ];
    let (geb, drb, lb) = (out(&g, rays * m), out(&g, rays * m), out(&g, rays + 3));
    run(
        &g,
        &k,
        KernelId::Interlevel,
        &[
            (&u).into(),
            (&b[0]).into(),
            (&b[1]).into(),
            (&b[2]).into(),
            (&b[3]).into(),
            (&b[4]).into(),
            (&b[5]).into(),
            (&geb).into(),
            (&drb).into(),
            (&lb).into(),
        ],
        Grid::Threads(rays as u64),
    );
    let (mut c_dr, mut c_l) = (vec![0.0; rays * m], vec![0.0; rays]);
    for i in 0..rays {
        let mut ge = vec![0.0; m];
        c_l[i] = stepfun::interlevel_loss(
            &s[i * (n + 1)..(i + 1) * (n + 1)],
            &w[i * n..(i + 1) * n],
            &se_[i * (m + 1)..(i + 1) * (m + 1)],
            &we[i * m..(i + 1) * m],
            scale,
            &mut ge,
        );
        let mut gs = vec![0.0; m];
        composite::weights_backward(
            &sige[i * m..(i + 1) * m],
            &te[i * (m + 1)..(i + 1) * (m + 1)],
            &we[i * m..(i + 1) * m],
            &ge,
            &mut gs,
        );
        for j in 0..m {
            c_dr[i * m + j] = gs[j] * sige[i * m + j];
        }
    }
    assert!(
        c_l.iter().any(|&l| l > 0.0),
        "the case must have a non-zero interlevel loss"
    );
    assert_close("interlevel d raw", &read(&g, &drb, rays * m), &c_dr, 1e-4);
    assert_close("interlevel loss", &read(&g, &lb, rays + 3)[3..], &c_l, 1e-5);
}

#[test]
fn glo_scatter_loss_reduce_norm_and_adam_match_cpu() {
    let Some(g) = test_gpu() else { return };
    let mut r = rng(8);
    // GLO gradient: per-row latent-column gradients summed per ray, scattered by photo, both paths.
    let (rays, n, gd, photos) = (70usize, 6usize, 4usize, 5usize);
    let dxg = rand_vec(&mut r, rays * n * gd, -1.0, 1.0);
    let idx: Vec<u32> = (0..rays)
        .map(|_| r.random_range(0..photos as u32))
        .collect();
    let g0 = rand_vec(&mut r, photos * gd, -0.1, 0.1);
    let mut cpu = g0.clone();
    for i in 0..rays {
        for j in 0..gd {
            let s: f32 = (0..n).map(|q| dxg[(i * n + q) * gd + j]).sum();
            cpu[idx[i] as usize * gd + j] += s;
        }
    }
    let mut modes = vec![AtomicMode::CasU32];
    if g.caps().float_atomics {
        modes.push(AtomicMode::NativeF32);
    }
    for mode in modes {
        let k = ks(&g, mode);
        let u = g
            .uniform(
                "p",
                &GloParams {
                    n_rays: rays as u32,
                    n: n as u32,
                    gd: gd as u32,
                    _p: 0,
                },
            )
            .unwrap();
        let (ib, db, gb) = (up(&g, &idx), up(&g, &dxg), up(&g, &g0));
        run(
            &g,
            &k,
            KernelId::GloGrad,
            &[(&u).into(), (&ib).into(), (&db).into(), (&gb).into()],
            Grid::Threads(rays as u64),
        );
        assert_close(
            &format!("glo grad {mode:?}"),
            &read(&g, &gb, photos * gd),
            &cpu,
            1e-5,
        );
    }
    let k = ks(&g, g.atomic_mode());
    // Loss reduction into the running metrics.
    let nprop = 2usize;
    let rl = rand_vec(&mut r, rays * 4, 0.0, 1.0);
    let il = rand_vec(&mut r, rays * nprop, 0.0, 1.0);
    let m0 = [0.5f32, 0.25, 0.125, 1.0, 3.0, 9.0, 0.0, 0.0];
    let u = g
        .uniform(
            "p",
            &RedParams {
                n_rays: rays as u32,
                nprop: 2,
                _p0: [0; 2],
                inv_3r: 1.0 / (3 * rays) as f32,
                inv_r: 1.0 / rays as f32,
                inv_rn: 1.0 / (rays * n) as f32,
                _p1: 0.0,
            },
        )
        .unwrap();
    let (rlb, ilb, mb) = (up(&g, &rl), up(&g, &il), up(&g, &m0));
    run(
        &g,
        &k,
        KernelId::LossReduce,
        &[(&u).into(), (&rlb).into(), (&ilb).into(), (&mb).into()],
        Grid::Groups([1, 1, 1]),
    );
    let sum = |f: &dyn Fn(usize) -> f32| (0..rays).map(f).map(|x| x as f64).sum::<f64>();
    let want = [
        m0[0] as f64 + sum(&|i| rl[4 * i]) / (3 * rays) as f64,
        m0[1] as f64 + sum(&|i| rl[4 * i + 1]) / rays as f64,
        m0[2] as f64 + il.iter().map(|&x| x as f64).sum::<f64>() / (rays * n) as f64,
        m0[3] as f64 + sum(&|i| rl[4 * i + 2]) / (3 * rays) as f64,
        4.0,
    ];
    let got = read(&g, &mb, 5);
    for (a, b) in got.iter().zip(&want) {
        assert!(
            (*a as f64 - b).abs() < 1e-5 * b.abs().max(1.0),
            "metrics {got:?} vs {want:?}"
        );
    }
    // Global norm over two buffers (partials then a fixed-order sum) and the clip factor.
    let (a, b) = (
        rand_vec(&mut r, 5000, -1.0, 1.0),
        rand_vec(&mut r, 3000, -2.0, 2.0),
    );
    let parts_a = 5000usize.div_ceil(2048);
    let parts_b = 3000usize.div_ceil(2048);
    let partial = out(&g, parts_a + parts_b);
    for (v, off) in [(&a, 0usize), (&b, parts_a)] {
        let u = g
            .uniform(
                "p",
                &SqParams {
                    len: v.len() as u32,
                    part_off: off as u32,
                    _p: [0; 2],
                },
            )
            .unwrap();
        let vb = up(&g, v);
        run(
            &g,
            &k,
            KernelId::SqNorm,
            &[(&u).into(), (&vb).into(), (&partial).into()],
            Grid::Groups([v.len().div_ceil(2048) as u32, 1, 1]),
        );
    }
    let norm = (grad_sq_norm(&a) + grad_sq_norm(&b)).sqrt();
    for (clip, max_norm) in [(1u32, norm / 3.0), (0, 1.0)] {
        let u = g
            .uniform(
                "p",
                &NormParams {
                    n_parts: (parts_a + parts_b) as u32,
                    clip,
                    _p0: [0; 2],
                    max_norm: max_norm as f32,
                    _p1: [0.0; 3],
                },
            )
            .unwrap();
        let (nb, mb) = (out(&g, 2), up(&g, &m0));
        run(
            &g,
            &k,
            KernelId::SqNormFinal,
            &[(&u).into(), (&partial).into(), (&nb).into(), (&mb).into()],
            Grid::Groups([1, 1, 1]),
        );
        let got = read(&g, &nb, 2);
        let want_scale = if clip == 1 {
            clip_scale(norm, max_norm)
        } else {
            1.0
        };
        assert!(
            ((got[0] as f64 - norm) / norm).abs() < 1e-5,
            "norm {} vs {norm}",
            got[0]
        );
        assert!(
            (got[1] - want_scale).abs() < 1e-5,
            "scale {} vs {want_scale}",
            got[1]
        );
        assert_eq!(read(&g, &mb, 6)[5], got[0]);
    }
    // Fused Adam with a clip factor, two steps; gradients end zeroed.
    let len = 3000usize;
    let (p0, grads) = (
        rand_vec(&mut r, len, -1.0, 1.0),
        rand_vec(&mut r, len, -1.0, 1.0),
    );
    let cfg = AdamConfig {
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-15,
    };
    let mut adam = Adam::new(len, cfg);
    let mut cp = p0.clone();
    let (pb, mb, vb) = (
        up(&g, &p0),
        up(&g, &vec![0.0f32; len]),
        up(&g, &vec![0.0f32; len]),
    );
    let nb = up(&g, &[1.23f32, 0.7]);
    let ul = g
        .uniform(
            "l",
            &AdamLen {
                len: len as u32,
                _p: [0; 3],
            },
        )
        .unwrap();
    for step in 1..=2u64 {
        let mut cg = grads.clone();
        adam.update_and_zero(&mut cp, &mut cg, 0.01, 0.7);
        let bc1 = 1.0 - (cfg.beta1 as f64).powi(step as i32);
        let bc2 = 1.0 - (cfg.beta2 as f64).powi(step as i32);
        let st = AdamStep {
            b1: cfg.beta1,
            b2: cfg.beta2,
            eps: cfg.eps,
            step_size: (0.01 / bc1) as f32,
            inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
            _p: [0.0; 3],
        };
        let us = g.uniform("s", &st).unwrap();
        let gb = up(&g, &grads);
        run(
            &g,
            &k,
            KernelId::Adam,
            &[
                (&ul).into(),
                (&us).into(),
                (&nb).into(),
                (&pb).into(),
                (&gb).into(),
                (&mb).into(),
                (&vb).into(),
            ],
            Grid::Threads(len as u64),
        );
        assert!(
            read(&g, &gb, len).iter().all(|&x| x == 0.0),
            "gradients zeroed"
        );
    }
    assert_close("adam params", &read(&g, &pb, len), &cp, 1e-5);
    assert_close("adam m", &read(&g, &mb, len), &adam.m, 1e-5);
    assert_close("adam v", &read(&g, &vb, len), &adam.v, 1e-5);
}

#[test]
fn ray_generation_matches_cpu_with_distortion_and_equirect() {
    use flythrough_core::{Camera, CameraModel, Pose};
    use nalgebra::{UnitQuaternion, Vector3};
    let Some(g) = test_gpu() else { return };
    let mut r = rng(9);
    let model = crate::model::Model::new(
        crate::model::ModelConfig::from_train(
            &flythrough_core::config::TrainConfig {
                prop_samples: vec![8],
                nerf_samples: 8,
                hash_levels: 2,
                hash_table_log2: 10,
                hash_max_res: 32,
                mlp_width: 8,
                glo_dim: 2,
                ..Default::default()
            },
            1,
        ),
        0.1,
        0,
    );
    let mut rend = super::GpuRenderer::new(g.clone(), &model, 256).unwrap();
    let norm = coord::SceneNorm {
        center: [0.3, -1.0, 2.0],
        scale: 0.4,
        near: 0.1,
    };
    let mut cam = Camera::new(1, CameraModel::Opencv, 37, 23, 30.0);
    cam.params[4..8].copy_from_slice(&[-0.12, 0.03, 0.002, -0.001]);
    let pose = Pose {
        rotation: UnitQuaternion::from_euler_angles(0.3, -0.2, 1.1),
        translation: Vector3::new(0.4, -0.7, 2.0),
    };
    let fc = super::FrameCamera::photo(&norm, &cam, &pose);
    let rays = rend.frame_rays(&fc, 0.5).unwrap();
    for i in 0..(37 * 23) {
        let (o, d, rad) = crate::data::camera_ray(
            &norm,
            &cam,
            &pose,
            (i % 37) as f64 + 0.5,
            (i / 37) as f64 + 0.5,
        );
        let gr = rays[i];
        for a in 0..3 {
            assert!(
                (gr[a] - o[a]).abs() < 1e-5 * o[a].abs().max(1.0),
                "origin {i}"
            );
            assert!(
                (gr[3 + a] - d[a]).abs() < 1e-5,
                "pixel {i}: direction {:?} vs {d:?}",
                &gr[3..6]
            );
        }
        assert!((gr[6] - rad).abs() < 1e-5 * rad && gr[7] == 0.5);
    }
    // Equirectangular: the render stage's camera, in f64 here.
    let (w, h) = (48u32, 24u32);
    let up = Vector3::new(0.1, 0.2, 1.0).normalize();
    let f0 = Vector3::new(1.0, 0.3, 0.0);
    let f = (f0 - up * f0.dot(&up)).normalize();
    let right = f.cross(&up);
    let c = [r.random_range(-1.0..1.0), 0.5, 1.0];
    let fc = super::FrameCamera::equirect(&norm, w, h, c, right.into(), f.into(), up.into());
    let rays = rend.frame_rays(&fc, -1.0).unwrap();
    let o = norm.point(c);
    for i in 0..(w * h) as usize {
        let (x, y) = ((i % w as usize) as f64 + 0.5, (i / w as usize) as f64 + 0.5);
        let lon = 2.0 * std::f64::consts::PI * (x / w as f64 - 0.5);
        let lat = std::f64::consts::PI * (0.5 - y / h as f64);
        let d = (right * (lat.cos() * lon.sin()) + f * (lat.cos() * lon.cos()) + up * lat.sin())
            .normalize();
        let rad = 0.5773502691896258 * std::f64::consts::PI / h as f64 * lat.cos().max(1e-3).sqrt();
        let gr = rays[i];
        for a in 0..3 {
            assert!((gr[a] as f64 - o[a]).abs() < 1e-5, "origin");
            assert!(
                (gr[3 + a] as f64 - d[a]).abs() < 1e-5,
                "pixel {i}: {:?} vs {d:?}",
                &gr[3..6]
            );
        }
        assert!(((gr[6] as f64 - rad) / rad).abs() < 1e-5 && gr[7] == -1.0);
    }
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

#[test]
fn whole_forward_matches_cpu_model() {
    let Some(g) = test_gpu() else { return };
    let model = random_model(11, 3, 4);
    let mut r = rng(12);
    let rv = random_rays(&mut r, 300);
    let latent = model.latent(2);
    // Chunks of 128: the last one partial.
    let mut rend = super::GpuRenderer::new(g.clone(), &model, 128).unwrap();
    let got = rend.render_rays(&rv, &latent).unwrap();
    let rays = crate::model::Rays {
        o: rv.iter().map(|x| [x[0], x[1], x[2]]).collect(),
        d: rv.iter().map(|x| [x[3], x[4], x[5]]).collect(),
        r: rv.iter().map(|x| x[6]).collect(),
        latent: rv.iter().flat_map(|_| latent.clone()).collect(),
        ev: rv.iter().map(|x| x[7]).collect(),
    };
    let mode = crate::model::SampleMode {
        jitter: None,
        train_frac: 1.0,
    };
    let f = model.forward(&rays, &mode, false);
    let cpu: Vec<f32> = (0..rv.len())
        .flat_map(|i| [f.rgb[i][0], f.rgb[i][1], f.rgb[i][2], f.depth[i], f.acc[i]])
        .collect();
    let gpu: Vec<f32> = got.iter().flat_map(|x| x.iter().copied()).collect();
    let rgb = |v: &[f32]| {
        v.chunks(5)
            .flat_map(|c| c[..3].to_vec())
            .collect::<Vec<f32>>()
    };
    let spread = rgb(&cpu)
        .iter()
        .fold((1f32, 0f32), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    assert!(spread.1 - spread.0 > 0.2, "colours should vary: {spread:?}");
    // Colours through three levels of resampling, two grids and three MLPs: 1e-4 of the range.
    assert_close("rendered colour", &rgb(&gpu), &rgb(&cpu), 1e-4);
    let depth = |v: &[f32]| v.chunks(5).map(|c| c[3]).collect::<Vec<f32>>();
    for (i, (a, b)) in depth(&gpu).iter().zip(&depth(&cpu)).enumerate() {
        assert!(((a - b) / b).abs() < 1e-3, "depth {i}: {a} vs {b}");
    }
}

/// One whole training step (forward, losses, backward; the GLO latents included) on the GPU
/// against the CPU step on the same rays, jitter and targets: every gradient buffer within 1e-3
/// relative L2 (the kernels agree to ~1e-5 each; through three levels of resampling, two grids and
/// three MLPs the step's gradients agree to ~1e-4).
#[test]
fn one_training_step_matches_cpu_gradients() {
    let Some(g) = test_gpu() else { return };
    let latents = 5;
    // Grids uniform in +-0.5. With +-1 (far rougher than a trained field: densities e^(+-15) a
    // cell apart) the forward is ill-conditioned: sample positions that differ by float rounding
    // (1e-5 in s) land on other densities and the NeRF grid's gradient moves by 1e-2 relative
    // L2; at +-0.5 every buffer agrees to about 1e-4 (measured 2e-5 .. 1.1e-4).
    let model = random_model_amp(21, 4, latents, 0.5);
    let mut r = rng(22);
    let n = 192;
    let rv = random_rays(&mut r, n);
    let idx: Vec<usize> = (0..n).map(|_| r.random_range(0..latents)).collect();
    let gd = model.cfg.glo_dim;
    let rays = crate::model::Rays {
        o: rv.iter().map(|x| [x[0], x[1], x[2]]).collect(),
        d: rv.iter().map(|x| [x[3], x[4], x[5]]).collect(),
        r: rv.iter().map(|x| x[6]).collect(),
        latent: idx.iter().flat_map(|&k| model.latent(k)).collect(),
        ev: rv.iter().map(|x| x[7]).collect(),
    };
    let target: Vec<[f32; 3]> = (0..n)
        .map(|_| [r.random(), r.random(), r.random()])
        .collect();
    let nlev = model.cfg.prop_samples.len() + 1;
    let jitter: Vec<Vec<f32>> = (0..nlev).map(|_| rand_vec(&mut r, n, 0.0, 1.0)).collect();
    let train_frac = 0.3f32;
    let tc = flythrough_core::config::TrainConfig {
        batch_rays: n,
        distortion_weight: 0.01,
        interlevel_weight: 1.0,
        ..Default::default()
    };
    // CPU step (as train::train does it).
    let mode = crate::model::SampleMode {
        jitter: Some(&jitter),
        train_frac,
    };
    let fwd = model.forward(&rays, &mode, true);
    let lw = crate::model::LossWeights {
        distortion: 0.01,
        interlevel: 1.0,
    };
    let mut cpu = model.zeros_like();
    let mut d_lat = vec![0.0f32; n * gd];
    let losses = model.backward(&rays, &fwd, &target, &lw, &mut cpu, Some(&mut d_lat));
    let gi = model.idx_glo();
    for (i, &k) in idx.iter().enumerate() {
        for j in 0..gd {
            cpu[gi][k * gd + j] += d_lat[i * gd + j];
        }
    }
    assert!(losses.data > 0.0 && losses.interlevel > 0.0 && losses.distortion > 0.0);
    let adams: Vec<Adam> = model
        .params
        .iter()
        .map(|p| Adam::new(p.len(), crate::train::ADAM))
        .collect();
    let mut tr = super::train::GpuTrainer::new(g.clone(), &model, &adams, &tc).unwrap();
    let gpu = tr
        .gradients_of(&rays, &target, &idx, &jitter, train_frac)
        .unwrap();
    for ((name, a), b) in model.names.iter().zip(&gpu).zip(&cpu) {
        let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
        let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
        let rel = (num / den.max(1e-30)).sqrt();
        eprintln!(
            "step gradient {name}: relative L2 {rel:.2e} (norm {:.3e})",
            den.sqrt()
        );
        assert!(
            den > 0.0,
            "{name}: the CPU gradient is zero; the case tests nothing"
        );
        assert!(rel < 1e-3, "{name}: relative L2 {rel:.3e}");
    }
    // The same batch again gives the same MLP gradients bit for bit (fixed-order reductions).
    let again = tr
        .gradients_of(&rays, &target, &idx, &jitter, train_frac)
        .unwrap();
    for (k, name) in model.names.iter().enumerate() {
        if name.ends_with("mlp") {
            assert_eq!(gpu[k], again[k], "{name} not repeatable");
        }
    }
}
