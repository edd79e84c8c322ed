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
        assert_close(&format!("hash bwd {mode:?}"), &gpu, &cpu, 1e-4);
    }
}
