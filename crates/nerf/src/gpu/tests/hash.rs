//! The hash-grid encoding kernels (`hash_fwd`, `hash_bwd`) against `kernels/hashgrid.rs`.

use super::*;

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

/// Samples along short ray segments: runs of 32 consecutive samples (a subgroup's lanes) a step
/// apart, so at the coarse levels most lanes of a subgroup share a cell and its 8 entries.
fn ray_samples(r: &mut ChaCha8Rng, n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut pos = Vec::with_capacity(3 * n);
    let mut o = [0f32; 3];
    let mut d = [0f32; 3];
    for i in 0..n {
        if i % 32 == 0 {
            o = [0, 1, 2].map(|_| r.random_range(0.05..0.95f32));
            d = [0, 1, 2].map(|_| r.random_range(-0.004..0.004f32));
        }
        let t = (i % 32) as f32;
        pos.extend((0..3).map(|a| o[a] + t * d[a]));
    }
    let sig = (0..n).map(|i| 0.002 * (i % 7) as f32).collect();
    (pos, sig)
}

/// The scatter with each atomic variant, with and (where the adapter has subgroups: lavapipe
/// does, and CI requires it) without the subgroup pre-reduction, on scattered samples (every
/// lane its own entry at the fine levels: the rounds retire one lane each) and on ray-like runs
/// (a subgroup's lanes mostly on one entry at the coarse levels: the sums do the work).
#[test]
fn hash_encode_backward_matches_cpu_native_cas_and_subgroups() {
    let Some(g) = test_gpu() else { return };
    let cfg = grid_cfg();
    let mut r = rng(2);
    let n = 2000;
    let mut modes = vec![AtomicMode::CasU32];
    if g.caps().float_atomics {
        modes.push(AtomicMode::NativeF32);
    } else {
        eprintln!("adapter without SHADER_FLOAT32_ATOMIC: native path not tested here");
    }
    let mut subgroups = vec![false];
    if g.caps().subgroups {
        subgroups.push(true);
    } else {
        assert!(
            !flythrough_testkit::testdata::under_ci(),
            "{} has no subgroups: the subgroup scatter is not tested (CI's lavapipe has them)",
            g.adapter()
        );
        eprintln!("adapter without subgroups: the subgroup scatter is not tested here");
    }
    // scripts/test.sh runs this test again at lavapipe's other vector widths (subgroups of 4 and
    // 16 lanes; hardware has 32 or 64): check that the width asked for is the one running.
    let (sg_min, sg_max) = (g.limits().subgroup_min_size, g.limits().subgroup_max_size);
    eprintln!("subgroup size {sg_min}-{sg_max} lanes");
    let width = std::env::var("LP_NATIVE_VECTOR_WIDTH").unwrap_or_default();
    if !width.is_empty() && g.adapter().software && g.caps().subgroups {
        let lanes = width
            .parse::<u32>()
            .expect("LP_NATIVE_VECTOR_WIDTH is a number of bits")
            / 32;
        assert_eq!(
            (sg_min, sg_max),
            (lanes, lanes),
            "LP_NATIVE_VECTOR_WIDTH={width} asks lavapipe for {lanes}-lane subgroups"
        );
    }
    for rays in [false, true] {
        let (pos, sig) = if rays {
            ray_samples(&mut r, n)
        } else {
            samples(&mut r, n)
        };
        let d_out = rand_vec(&mut r, n * cfg.output_dim(), -1.0, 1.0);
        // Accumulates into existing gradients.
        let g0 = rand_vec(&mut r, cfg.num_params(), -0.1, 0.1);
        let mut cpu = g0.clone();
        hash_encode_backward(&cfg, &pos, Some(&sig), &d_out, &mut cpu);
        for &mode in &modes {
            for &sg in &subgroups {
                let mut k = ks(&g, mode);
                k.subgroups = sg;
                let text = crate::gpu::shaders::compose(
                    KernelId::HashBwd.source(),
                    k.atomic,
                    k.shape,
                    k.extras(),
                );
                assert_eq!(text.contains("subgroupAdd"), sg, "the scatter composed");
                let (info, pb, sb, db) = (
                    up(&g, &level_info(&cfg)),
                    up(&g, &pos),
                    up(&g, &sig),
                    up(&g, &d_out),
                );
                let grad = up(&g, &g0);
                let lb = (cfg.table_size() * 2 * 4) as u64;
                for (l0, lc) in [(0u32, 4u32), (4, 2)] {
                    let u = g.uniform("p", &hash_params(&cfg, n, l0, lc)).unwrap();
                    launch::HashBwd {
                        p: &u,
                        level_info: &info,
                        pos: &pb,
                        fsig: &sb,
                        d_out: &db,
                        grad: grad.range(l0 as u64 * lb, lc as u64 * lb),
                    }
                    .run(&k, Grid::Threads((n * lc as usize) as u64));
                }
                let gpu = read(&g, &grad, cfg.num_params());
                assert_close(
                    &format!("hash bwd {mode:?} subgroups={sg} rays={rays}"),
                    &gpu,
                    &cpu,
                    1e-4,
                );
            }
        }
    }
}
