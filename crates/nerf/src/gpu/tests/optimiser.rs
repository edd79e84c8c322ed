//! GLO latent gradient scatter, loss reduction, gradient norm and Adam (`glo_grad`, `loss_reduce`,
//! `sq_norm`, `sq_norm_final`, `adam`) against the CPU optimiser.

use super::*;

#[test]
fn glo_scatter_loss_reduce_norm_and_adam_match_cpu() {
    let Some(g) = test_gpu() else { return };
    let mut r = rng(8);
    // GLO gradient: the colour head's dY_0 summed per ray times W_0's latent rows, scattered by
    // photo, both paths.
    let (rays, n) = (70usize, 6usize);
    glo_grad_case(&g, &mut r, rays, n, 4, 5, 1e-5);
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
    launch::LossReduce {
        p: &u,
        ray_loss: &rlb,
        il_loss: &ilb,
        metrics: &mb,
    }
    .run(&k, Grid::Groups([1, 1, 1]));
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
        launch::SqNorm {
            p: &u,
            x: (&vb).into(),
            partial: &partial,
        }
        .run(&k, Grid::Groups([v.len().div_ceil(2048) as u32, 1, 1]));
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
        launch::SqNormFinal {
            p: &u,
            partial: &partial,
            norm_out: &nb,
            metrics: &mb,
        }
        .run(&k, Grid::Groups([1, 1, 1]));
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
        launch::Adam {
            pl: &ul,
            ps: &us,
            norm: &nb,
            param: (&pb).into(),
            grad: (&gb).into(),
            m1: (&mb).into(),
            m2: (&vb).into(),
        }
        .run(&k, Grid::Threads(len as u64));
        assert!(
            read(&g, &gb, len).iter().all(|&x| x == 0.0),
            "gradients zeroed"
        );
    }
    assert_close("adam params", &read(&g, &pb, len), &cp, 1e-5);
    assert_close("adam m", &read(&g, &mb, len), &adam.m, 1e-5);
    assert_close("adam v", &read(&g, &vb, len), &adam.v, 1e-5);
}

/// `glo_grad` (one workgroup of 64 per ray) at sample counts around and past the 64 chunks, and
/// past the 65 535 workgroups of one grid dimension, on both atomic paths.
#[test]
fn glo_grad_chunked_sample_counts() {
    let Some(g) = test_gpu() else { return };
    let mut r = rng(18);
    let max = g.limits().max_workgroups_per_dim as usize;
    let mut cases = vec![(37usize, 1usize), (37, 64), (37, 97), (37, 192), (37, 65)];
    if max < 1 << 20 {
        assert!(ray_groups(&g, max + 5)[1] > 1);
        cases.push((max + 5, 2));
    }
    for (rays, n) in cases {
        eprintln!("{rays} rays x {n} samples");
        // Many rays per photo (up to ~9400 at the large count): the scatter's atomic order and
        // the f32 accumulation over thousands of ray sums, against an f64 sum of the rays.
        let tol = if rays > 1000 { 1e-4 } else { 1e-5 };
        glo_grad_case(&g, &mut r, rays, n, 6, 7, tol);
    }
    // More latent columns than invocations (three per invocation for some), the most it takes.
    eprintln!("37 rays x 5 samples, 130 and 256 latent columns");
    glo_grad_case(&g, &mut r, 37, 5, 130, 3, 1e-5);
    glo_grad_case(&g, &mut r, 37, 5, MAX_GLO_DIM, 3, 1e-5);
}

/// `glo_grad` on `rays` random rays of `n` samples and `gd` latent columns scattered into `photos`
/// rows, on both atomic paths, against the CPU in f64 (per ray: dY_0 summed over the samples, times
/// W_0's latent rows), within `tol`. A 70-wide first layer (a second chunk of 6 outputs), `dy` rows
/// wider than it, the latent rows at an unaligned offset.
fn glo_grad_case(
    g: &Arc<Gpu>,
    r: &mut ChaCha8Rng,
    rays: usize,
    n: usize,
    gd: usize,
    photos: usize,
    tol: f64,
) {
    let (d1, dyw, w_lat) = (70usize, 76usize, 13usize);
    let dy = rand_vec(r, rays * n * dyw, -1.0, 1.0);
    let params = rand_vec(r, w_lat + gd * d1 + 5, -1.0, 1.0);
    let idx: Vec<u32> = (0..rays)
        .map(|_| r.random_range(0..photos as u32))
        .collect();
    let g0 = rand_vec(r, photos * gd, -0.1, 0.1);
    let mut cpu: Vec<f64> = g0.iter().map(|&x| x as f64).collect();
    for i in 0..rays {
        let sums: Vec<f64> = (0..d1)
            .map(|j| (0..n).map(|q| dy[(i * n + q) * dyw + j] as f64).sum())
            .collect();
        for c in 0..gd {
            let s: f64 = (0..d1)
                .map(|j| sums[j] * params[w_lat + c * d1 + j] as f64)
                .sum();
            cpu[idx[i] as usize * gd + c] += s;
        }
    }
    let cpu: Vec<f32> = cpu.iter().map(|&x| x as f32).collect();
    let mut modes = vec![AtomicMode::CasU32];
    if g.caps().float_atomics {
        modes.push(AtomicMode::NativeF32);
    }
    for mode in modes {
        let k = ks(g, mode);
        let p = GloParams {
            n_rays: rays as u32,
            n: n as u32,
            gd: gd as u32,
            dyw: dyw as u32,
            d1: d1 as u32,
            w_lat: w_lat as u32,
            _p: [0; 2],
        };
        let u = g.uniform("p", &p).unwrap();
        let (ib, db, pb, gb) = (up(g, &idx), up(g, &dy), up(g, &params), up(g, &g0));
        launch::GloGrad {
            p: &u,
            latent_idx: &ib,
            dy: &db,
            params: &pb,
            grad: &gb,
        }
        .run(&k, Grid::Groups(ray_groups(g, rays)));
        assert_close(
            &format!("glo grad {mode:?} {rays}x{n}"),
            &read(g, &gb, photos * gd),
            &cpu,
            tol,
        );
    }
}
