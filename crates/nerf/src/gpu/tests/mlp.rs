//! The fused MLP kernels (`mlp_fwd`, `mlp_bwd_data`, `mlp_bwd_weights`, `reduce_partials`) against
//! `kernels/mlp.rs`.

use super::*;

/// The MLP cases the kernels are checked on.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Case {
    /// Density-head-like: dense 16-byte-aligned input, a 1-wide head (the scalar paths).
    Dense,
    /// Colour-head-like: 15 per-row features read from a 16-wide buffer at column 1 (unaligned)
    /// and 20 group features shared by runs of 8 rows; 16-byte-aligned hidden layers.
    Grouped,
    /// Odd widths: hidden layers of 5 and 7 (cache and dY columns padded), the last layer's
    /// weights at an unaligned offset with a 4-wide output (the scalar paths of the vec4 kernels).
    Odd,
}

const CASES: [Case; 3] = [Case::Dense, Case::Grouped, Case::Odd];

/// An MLP, its inputs and their addressing.
struct MlpCase {
    cfg: MlpConfig,
    a: Vec<f32>,
    g: Vec<f32>,
    io: MlpIo,
    n: usize,
}

fn mlp_case(r: &mut ChaCha8Rng, case: Case) -> MlpCase {
    if case == Case::Odd {
        let n = 8 * 37 + 5;
        let cfg = MlpConfig::new(&[6, 5, 7, 4], true);
        assert_ne!(
            cfg.layer_offsets()[2].weight % 4,
            0,
            "the last layer unaligned"
        );
        return MlpCase {
            a: rand_vec(r, n * 6, -1.0, 1.0),
            g: vec![0.0],
            io: MlpIo::dense(&cfg),
            cfg,
            n,
        };
    }
    if case == Case::Grouped {
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
        // A partial last tile, a partial block of rows in it, and 21 row groups of the weight
        // gradients (more than the 8 lanes of reduce_partials, the last group partial).
        let n = 8 * 37 * 9 + 3;
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
fn mlp_forward_matches_cpu_dense_grouped_and_odd() {
    let Some(g) = test_gpu() else { return };
    for shape in [SHAPE, SHAPE_STAGED, SHAPE_ROWS8] {
        mlp_forward_case(&g, shape);
    }
}

/// [`mlp_forward_matches_cpu_dense_grouped_and_odd`] with the kernels of one shape (weights read
/// from global memory or staged in workgroup memory).
fn mlp_forward_case(g: &Arc<Gpu>, shape: MlpShape) {
    let k = Kernels::new(g.clone(), g.atomic_mode(), shape);
    let g = &**g;
    let mut r = rng(3);
    for case in CASES {
        let c = mlp_case(&mut r, case);
        let params = c.cfg.init_params(5);
        let rows = c.rows();
        let mut cpu = vec![0.0; c.n * c.cfg.output_dim()];
        let mut cache = MlpCache::default();
        mlp_forward_grouped_into(&c.cfg, &params, &c.input(&rows), &mut cpu, &mut cache);
        let p = MlpParams::new(&c.cfg, c.n, c.io, true);
        let (u, pb, ab, gb) = (
            g.uniform("p", &p).unwrap(),
            up(g, &params),
            up(g, &c.a),
            up(g, &c.g),
        );
        let ob = out(g, c.n * c.cfg.output_dim());
        let cb = out(g, c.n * p.hw as usize);
        let wtb = out(g, transposed_weights_len(&c.cfg));
        launch::MlpFwd {
            p: &u,
            params: &pb,
            a: &ab,
            g: &gb,
            out: &ob,
            cache: &cb,
            wt: &wtb,
            gpre: &up(g, &[0.0]),
        }
        .run(&k, Grid::Groups(mlp_groups(g, c.n, SHAPE.tile)));
        let gpu = read(g, &ob, cpu.len());
        assert_close(
            &format!("mlp fwd {case:?}, stage {}", shape.stage),
            &gpu,
            &cpu,
            1e-5,
        );
        if case == Case::Grouped {
            // The first layer split as the colour head runs it: the group part once per group
            // (a one-layer pass over the groups), then the rows from it.
            let groups = c.n / c.io.g_rows as usize;
            let pre = p.group_pre(groups);
            let preb = out(g, groups * c.cfg.sizes[1]);
            launch::MlpFwd {
                p: &g.uniform("pre", &pre).unwrap(),
                params: &pb,
                a: &gb,
                g: &gb,
                out: &preb,
                cache: &out(g, 4),
                wt: &out(g, 4),
                gpre: &up(g, &[0.0]),
            }
            .run(&k, Grid::Groups(mlp_groups(g, groups, SHAPE.tile)));
            // Against the CPU in f64: row g of the pass is b_0 + x_g W_0[d_local..].
            let lo = &c.cfg.layer_offsets()[0];
            let (dl, dg, w1) = (c.io.d_local as usize, pre.d_local as usize, c.cfg.sizes[1]);
            let got = read(g, &preb, groups * w1);
            let want: Vec<f32> = (0..groups * w1)
                .map(|q| {
                    let (gi, j) = (q / w1, q % w1);
                    let mut s = params[lo.bias.unwrap() + j] as f64;
                    for i in 0..dg {
                        s += c.g[gi * dg + i] as f64 * params[lo.weight + (dl + i) * w1 + j] as f64;
                    }
                    s as f32
                })
                .collect();
            assert_close("mlp group pre-pass", &got, &want, 1e-5);
            let ob2 = out(g, c.n * c.cfg.output_dim());
            launch::MlpFwd {
                p: &g.uniform("p split", &p.with_group_pre()).unwrap(),
                params: &pb,
                a: &ab,
                g: &gb,
                out: &ob2,
                cache: &out(g, c.n * p.hw as usize),
                wt: &out(g, transposed_weights_len(&c.cfg)),
                gpre: &preb,
            }
            .run(&k, Grid::Groups(mlp_groups(g, c.n, SHAPE.tile)));
            let split = read(g, &ob2, cpu.len());
            assert_close("mlp fwd, first layer split", &split, &cpu, 1e-5);
        }
        // The transposed weights for the backward: every layer's W^T, rows padded with zeros to a
        // multiple of 4, exactly.
        let want_wt = transposed(&c.cfg, &params);
        assert_eq!(read(g, &wtb, want_wt.len()), want_wt, "wt {case:?}");
        // The hidden cache: CPU keeps it per 256-row chunk, layer after layer; compare row by row
        // against a recomputation from the GPU's own layout (hidden of row r at [r * hw ..]).
        let hw = p.hw as usize;
        let gcache = read(g, &cb, c.n * hw);
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

/// Every layer's W^T with rows padded with zeros to a multiple of 4 (`mlp_fwd`'s `wt`).
fn transposed(cfg: &MlpConfig, params: &[f32]) -> Vec<f32> {
    let mut wt = Vec::new();
    for (lo, w) in cfg.layer_offsets().iter().zip(cfg.sizes.windows(2)) {
        let (din, dout) = (w[0], w[1]);
        for j in 0..dout {
            for i in 0..din.next_multiple_of(4) {
                wt.push(if i < din {
                    params[lo.weight + i * dout + j]
                } else {
                    0.0
                });
            }
        }
    }
    wt
}

/// A batch of 3 rows is one workgroup: it copies all the transposed weights (1992 floats of the
/// colour-like MLP), 64 invocations walking the grid-stride loop.
#[test]
fn mlp_forward_writes_transposed_weights_from_a_small_grid() {
    let Some(g) = test_gpu() else { return };
    let k = ks(&g, g.atomic_mode());
    let cfg = MlpConfig::new(&[35, 32, 24, 3], true);
    let params = cfg.init_params(11);
    let n = 3;
    let p = MlpParams::new(&cfg, n, MlpIo::dense(&cfg), true);
    let grid = mlp_groups(&g, n, SHAPE.tile);
    assert_eq!(grid.iter().product::<u32>(), 1);
    let want = transposed(&cfg, &params);
    assert!(want.len() > 16 * SHAPE.wg as usize, "{}", want.len());
    let pb = up(&g, &params);
    let wtb = out(&g, transposed_weights_len(&cfg));
    launch::MlpFwd {
        p: &g.uniform("p", &p).unwrap(),
        params: &pb,
        a: &up(&g, &rand_vec(&mut rng(12), n * 35, -1.0, 1.0)),
        g: &up(&g, &[0.0]),
        out: &out(&g, n * 3),
        cache: &out(&g, n * p.hw as usize),
        wt: &wtb,
        gpre: &up(&g, &[0.0]),
    }
    .run(&k, Grid::Groups(grid));
    assert_eq!(read(&g, &wtb, want.len()), want);
}

#[test]
fn mlp_backward_matches_cpu_and_is_deterministic() {
    let Some(g) = test_gpu() else { return };
    for shape in [SHAPE, SHAPE_STAGED, SHAPE_ROWS8] {
        mlp_backward_case(&g, shape);
    }
}

/// [`mlp_backward_matches_cpu_and_is_deterministic`] with the kernels of one shape (weights read
/// from global memory or staged in workgroup memory).
fn mlp_backward_case(g: &Arc<Gpu>, shape: MlpShape) {
    let k = Kernels::new(g.clone(), g.atomic_mode(), shape);
    let mut r = rng(4);
    for case in CASES {
        let c = mlp_case(&mut r, case);
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
        let gw = (c1 - c0).max(1) as usize;
        let run = GpuMlpRun {
            c: &c,
            params: &params,
            d_out: &d_out,
            g0: &g0,
            p,
        };
        let grads = |_seed: u64| run.backward(g, &k).dp;
        let gpu_dp = grads(0);
        assert_close(&format!("mlp d_params {case:?}"), &gpu_dp, &cpu_dp, 1e-4);
        assert_eq!(
            gpu_dp,
            grads(1),
            "MLP weight gradients must be bitwise repeatable"
        );
        let res = run.backward(g, &k);
        // d_x of the per-row inputs, written at stride dl + 2, offset 1 (the rest untouched).
        let gdx = res.dx;
        let got: Vec<f32> = (0..c.n)
            .flat_map(|r| gdx[r * (dl + 2) + 1..r * (dl + 2) + 1 + dl].to_vec())
            .collect();
        assert_close(&format!("mlp d_x {case:?}"), &got, &cpu_dx, 1e-5);
        assert!((0..c.n).all(|r| gdx[r * (dl + 2)] == 7.0 && gdx[r * (dl + 2) + dl + 1] == 7.0));
        if ds > 0 {
            // Per-row group gradients, summed over each group = the CPU's d_groups.
            let gdg = res.dxg;
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

/// The MLP kernels' variants change where the weights are read and how rows are shared out, not
/// the arithmetic: weights staged in workgroup memory (`FLYTHROUGH_GPU_MLP_WEIGHTS=workgroup`: the
/// same products in the same order, chunk boundaries on 4-input blocks) and register tiles of 8
/// rows (`FLYTHROUGH_GPU_MLP_ROWS=8`: each row's sums as before, more rows per invocation), alone
/// and together. So outputs, cached activations and every gradient equal the default's bit for
/// bit, on the three cases (layers of 3 to 35 inputs: one, two and three chunks of 16, partial
/// ones, the unaligned layers that stay on the global path, partial row blocks).
#[test]
fn mlp_kernel_variants_equal_the_default_bit_for_bit() {
    let Some(g) = test_gpu() else { return };
    let kg = Kernels::new(g.clone(), g.atomic_mode(), SHAPE);
    assert!(SHAPE_STAGED.workgroup_bytes() > SHAPE.workgroup_bytes());
    assert!(SHAPE_ROWS8_STAGED.workgroup_bytes() <= g.limits().max_workgroup_storage_bytes);
    let mut r = rng(11);
    for case in CASES {
        let c = mlp_case(&mut r, case);
        let params = c.cfg.init_params(9);
        let d_out = rand_vec(&mut r, c.n * c.cfg.output_dim(), -1.0, 1.0);
        let g0 = rand_vec(&mut r, params.len(), -0.1, 0.1);
        let dl = c.io.d_local as usize;
        let ds = c.cfg.input_dim() - dl;
        let run = GpuMlpRun {
            c: &c,
            params: &params,
            d_out: &d_out,
            g0: &g0,
            p: MlpParams::new(&c.cfg, c.n, c.io, true).with_dx(
                dl as u32 + 2,
                1,
                (ds > 0).then_some((1, 13)),
            ),
        };
        let a = run.backward(&g, &kg);
        assert!(a.y.iter().all(|v| v.is_finite()), "{case:?}");
        for shape in [SHAPE_STAGED, SHAPE_ROWS8, SHAPE_ROWS8_STAGED] {
            let b = run.backward(&g, &Kernels::new(g.clone(), g.atomic_mode(), shape));
            let v = format!("{case:?}, {} rows, stage {}", shape.rb, shape.stage);
            same_bits(&format!("forward outputs {v}"), &a.y, &b.y);
            assert_eq!(a.cache, b.cache, "cached activations {v}");
            same_bits(&format!("d_x {v}"), &a.dx, &b.dx);
            if ds > 0 {
                same_bits(&format!("group d_x {v}"), &a.dxg, &b.dxg);
            }
            same_bits(&format!("d_params {v}"), &a.dp, &b.dp);
        }
    }
}

/// `a` and `b` hold the same bits, or the first difference is named.
fn same_bits(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}");
    if let Some(i) = (0..a.len()).find(|&i| a[i].to_bits() != b[i].to_bits()) {
        let n = (0..a.len())
            .filter(|&i| a[i].to_bits() != b[i].to_bits())
            .count();
        panic!(
            "{what}: {n} of {} differ, first [{i}] {} vs {}",
            a.len(),
            a[i],
            b[i]
        );
    }
}

/// One MLP case run forward (training: the cache written) and backward on the GPU.
struct GpuMlpRun<'a> {
    c: &'a MlpCase,
    params: &'a [f32],
    d_out: &'a [f32],
    /// The gradient the kernels add to.
    g0: &'a [f32],
    p: MlpParams,
}

/// What [`GpuMlpRun::backward`] reads back.
struct GpuMlpGrads {
    /// Parameter gradients (g0 + the batch's).
    dp: Vec<f32>,
    /// Per-row input gradients at stride d_local + 2, offset 1 (7.0 elsewhere).
    dx: Vec<f32>,
    /// Per-row gradients of the group-input columns [dxg_c0, dxg_c1).
    dxg: Vec<f32>,
    /// The cache buffer's 32-bit words (f32 activations, or two f16 per word).
    cache: Vec<u32>,
    /// The forward's outputs.
    y: Vec<f32>,
}

impl GpuMlpRun<'_> {
    fn backward(&self, g: &Arc<Gpu>, k: &Kernels) -> GpuMlpGrads {
        let (c, p) = (self.c, self.p);
        let dl = c.io.d_local as usize;
        let (u, pb, ab, gb) = (
            g.uniform("p", &p).unwrap(),
            up(g, self.params),
            up(g, &c.a),
            up(g, &c.g),
        );
        let yb = out(g, c.n * c.cfg.output_dim());
        let cache_words = k.act.words(c.n * p.hw as usize);
        let cb = out(g, cache_words);
        let wtb = out(g, transposed_weights_len(&c.cfg));
        launch::MlpFwd {
            p: &u,
            params: &pb,
            a: &ab,
            g: &gb,
            out: &yb,
            cache: &cb,
            wt: &wtb,
            gpre: &up(g, &[0.0]),
        }
        .run(k, Grid::Groups(mlp_groups(g, c.n, k.shape.tile)));
        let db = up(g, self.d_out);
        let dy = out(g, c.n * p.dyw as usize);
        let dx = up(g, &vec![7.0f32; c.n * (dl + 2)]);
        let gw = (p.dxg_c1 - p.dxg_c0).max(1) as usize;
        let dxg = out(g, c.n * gw);
        let partial = out(g, p.groups as usize * self.params.len());
        let grad = up(g, self.g0);
        launch::MlpBwdData {
            p: &u,
            wt: &wtb,
            cache: &cb,
            d_out: &db,
            dy: &dy,
            dx: &dx,
            dxg: &dxg,
        }
        .run(k, Grid::Groups(mlp_groups(g, c.n, k.shape.tile)));
        launch::MlpBwdWeights {
            p: &u,
            a: &ab,
            g: &gb,
            cache: &cb,
            dy: &dy,
            partial: &partial,
        }
        .run(k, bwd_weights_grid(&p, k.shape.wg));
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
        launch::ReducePartials {
            p: &ur,
            partial: &partial,
            grad: &grad,
        }
        .run(k, reduce_grid(p.nparams));
        let cache: Vec<u32> = g.read(&cb).unwrap();
        GpuMlpGrads {
            dp: read(g, &grad, self.params.len()),
            dx: read(g, &dx, c.n * (dl + 2)),
            dxg: read(g, &dxg, c.n * gw),
            cache: cache[..cache_words].to_vec(),
            y: read(g, &yb, c.n * c.cfg.output_dim()),
        }
    }
}

/// The cache elements the forward writes (row r, hidden layer k, unit j at `r hw + hoff(k) + j`),
/// without the padding columns.
fn cache_slots(cfg: &MlpConfig, p: &MlpParams, n: usize) -> Vec<usize> {
    let hidden = &cfg.sizes[1..cfg.sizes.len() - 1];
    (0..n)
        .flat_map(|r| {
            hidden.iter().enumerate().flat_map(move |(k, &w)| {
                let off = r * p.hw as usize + p.hoff[k / 4][k % 4] as usize;
                off..off + w
            })
        })
        .collect()
}

/// An IEEE half's bits as f32 (exact: every half is an f32).
fn half_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let man = (h & 0x3ff) as f32;
    match exp {
        0 => sign * man * 2f32.powi(-24),
        31 => {
            if man == 0.0 {
                sign * f32::INFINITY
            } else {
                f32::NAN
            }
        }
        e => sign * (1.0 + man / 1024.0) * 2f32.powi(e - 15),
    }
}

/// The f16 activation path (`Act::F16`, devices with shader f16: lavapipe has it, and CI requires
/// it) against the f32 path on the same inputs. The stated tolerances:
/// - every stored activation is the f32 path's rounded to half: within 2^-11 relative (half's
///   rounding), never above the largest half, zero where f32 is zero;
/// - input gradients (through the ReLU masks only: an activation's sign survives rounding, bar
///   values under 2^-25) within 1e-5 of the f32 path, as the twin test holds f32 to the CPU;
/// - parameter gradients (dW_k = h_{k-1}^T dY_k: every product carries one rounded h) within 2e-3
///   of the f32 path, relative to the largest gradient; measured about 3e-4;
/// - activations past half's range (weights x 1e5) stored as 65504, never infinity (without the
///   clamp lavapipe stores inf), and the gradients finite.
#[test]
fn mlp_f16_activations_stay_within_tolerance_of_f32() {
    let Some(g) = test_gpu() else { return };
    if !g.caps().shader_f16 {
        assert!(
            !flythrough_testkit::testdata::under_ci(),
            "{} has no shader f16: the f16 MLP path is not tested (CI's lavapipe has it)",
            g.adapter()
        );
        eprintln!("adapter without shader f16: the f16 MLP path is not tested here");
        return;
    }
    let k32 = ks(&g, g.atomic_mode());
    let k16 = k32.clone().with_act(Act::F16).unwrap();
    let mut r = rng(9);
    for case in CASES {
        let c = mlp_case(&mut r, case);
        let params = c.cfg.init_params(8);
        let d_out = rand_vec(&mut r, c.n * c.cfg.output_dim(), -1.0, 1.0);
        let g0 = vec![0.0f32; params.len()];
        let dl = c.io.d_local as usize;
        let ds = c.cfg.input_dim() - dl;
        let p = MlpParams::new(&c.cfg, c.n, c.io, true).with_dx(
            dl as u32 + 2,
            1,
            (ds > 0).then_some((2, 9)),
        );
        let run = GpuMlpRun {
            c: &c,
            params: &params,
            d_out: &d_out,
            g0: &g0,
            p,
        };
        let a = run.backward(&g, &k32);
        let b = run.backward(&g, &k16);
        let hw = p.hw as usize;
        assert_eq!(b.cache.len(), hw * c.n / 2 + (hw * c.n) % 2);
        let mut worst = 0f64;
        for i in cache_slots(&c.cfg, &p, c.n) {
            let full = f32::from_bits(a.cache[i]);
            let half = half_to_f32((b.cache[i / 2] >> (16 * (i % 2))) as u16);
            assert!(
                full >= 0.0 && half >= 0.0,
                "activation {i}: {full} / {half}"
            );
            if full == 0.0 {
                assert_eq!(half, 0.0, "activation {i}");
            } else if full > 1e-4 {
                worst = worst.max(((half - full) / full).abs() as f64);
            }
        }
        eprintln!("f16 activations ({case:?}): worst relative rounding {worst:.2e}");
        assert!(worst <= 2f64.powi(-11) * 1.0001, "{worst:.3e}");
        assert_close(&format!("f16 d_x {case:?}"), &b.dx, &a.dx, 1e-5);
        if ds > 0 {
            assert_close(&format!("f16 d_groups {case:?}"), &b.dxg, &a.dxg, 1e-5);
        }
        assert_close(&format!("f16 d_params {case:?}"), &b.dp, &a.dp, 2e-3);
        assert_ne!(
            a.dp, b.dp,
            "the f16 path ran (its gradients differ from f32's)"
        );
    }
    // Activations beyond half's range are stored as its largest finite value, never infinity, and
    // the gradients stay finite.
    let c = mlp_case(&mut r, Case::Dense);
    let params: Vec<f32> = c.cfg.init_params(8).iter().map(|w| w * 1e5).collect();
    let d_out = rand_vec(&mut r, c.n * c.cfg.output_dim(), -1.0, 1.0);
    let g0 = vec![0.0f32; params.len()];
    let run = GpuMlpRun {
        c: &c,
        params: &params,
        d_out: &d_out,
        g0: &g0,
        p: MlpParams::new(&c.cfg, c.n, c.io, true).with_dx(c.io.d_local + 2, 1, None),
    };
    let (a, b) = (run.backward(&g, &k32), run.backward(&g, &k16));
    let mut clamped = 0;
    for i in cache_slots(&c.cfg, &run.p, c.n) {
        let full = f32::from_bits(a.cache[i]);
        let half = half_to_f32((b.cache[i / 2] >> (16 * (i % 2))) as u16);
        assert!(
            half.is_finite() && half <= 65504.0,
            "activation {i}: {half}"
        );
        if full > 65504.0 {
            assert_eq!(half, 65504.0, "activation {i} ({full})");
            clamped += 1;
        }
    }
    assert!(
        clamped > 100,
        "the case reaches past half's range ({clamped} clamped)"
    );
    assert!(b.dp.iter().all(|v| v.is_finite()), "finite gradients");
}
