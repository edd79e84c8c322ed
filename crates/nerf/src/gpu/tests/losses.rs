//! The losses and their gradients (`nerf_loss`, `interlevel`) against `composite.rs` and
//! `stepfun.rs`.

use super::*;

#[test]
fn losses_and_their_gradients_match_cpu() {
    let Some(g) = test_gpu() else { return };
    let k = ks(&g, g.atomic_mode());
    let mut r = rng(7);
    let (rays, n, m) = (96usize, 16usize, 24usize);
    let (s, w) = nerf_loss_case(&g, &k, &mut r, rays, n);
    let c_l = interlevel_case(&g, &k, &mut r, &s, &w, rays, n, m);
    assert!(
        c_l.iter().any(|&l| l > 0.0),
        "the case must have a non-zero interlevel loss"
    );
}

/// The workgroup-per-ray loss kernels on sample counts that exercise their chunking (64
/// invocations, ceil(n / 64) samples each): fewer samples than invocations, exactly 64, a partial
/// last chunk and several full chunks per invocation, for the NeRF level and (interlevel) the
/// proposal level, and more rays than workgroups in one grid dimension.
#[test]
fn losses_chunked_sample_counts() {
    let Some(g) = test_gpu() else { return };
    let k = ks(&g, g.atomic_mode());
    let mut r = rng(17);
    let mut nonzero = false;
    for (n, ms) in [
        // (One NeRF bin with several proposal bins is left out: its gradient is exactly 0, the
        // whole proposal histogram's mass, and both sides would compare rounding noise.)
        (1usize, &[1usize][..]),
        (64, &[1, 64, 97]),
        (97, &[64, 192]),
        (192, &[97, 192]),
    ] {
        let (s, w) = nerf_loss_case(&g, &k, &mut r, 37, n);
        // Both histograms sum to 1 (last bins opaque): with one NeRF bin, whose outer measure is
        // the whole proposal histogram, the loss would be f32 rounding noise. Heavier NeRF weights
        // (held fixed by the loss, any non-negative values) make it a real one.
        let w: Vec<f32> = w.iter().map(|x| 1.25 * x).collect();
        for &m in ms {
            let c_l = interlevel_case(&g, &k, &mut r, &s, &w, 37, n, m);
            nonzero |= c_l.iter().any(|&l| l > 0.0);
        }
    }
    assert!(nonzero, "some case must have a non-zero interlevel loss");
    let max = g.limits().max_workgroups_per_dim as usize;
    if max < 1 << 20 {
        let rays = max + 5;
        assert!(ray_groups(&g, rays)[1] > 1);
        let (s, w) = nerf_loss_case(&g, &k, &mut r, rays, 2);
        interlevel_case(&g, &k, &mut r, &s, &w, rays, 2, 3);
    }
}

/// `nerf_loss` on `rays` random rays of `n` samples against the per-ray closure of
/// `Model::backward`; returns the NeRF histograms (s, w).
fn nerf_loss_case(
    g: &Arc<Gpu>,
    k: &Kernels,
    r: &mut ChaCha8Rng,
    rays: usize,
    n: usize,
) -> (Vec<f32>, Vec<f32>) {
    eprintln!("nerf_loss: {rays} rays x {n} samples");
    let (s, _) = histograms(r, rays, n);
    let t: Vec<f32> = s.iter().map(|&x| coord::s_to_t(x, 0.1)).collect();
    let sigma = rand_vec(r, rays * n, 0.0, 20.0);
    let mut w = vec![0.0; rays * n];
    for i in 0..rays {
        composite::weights(
            &sigma[i * n..(i + 1) * n],
            &t[i * (n + 1)..(i + 1) * (n + 1)],
            &mut w[i * n..(i + 1) * n],
        );
    }
    let logits = rand_vec(r, rays * n * 3, -3.0, 3.0);
    let target = rand_vec(r, rays * 3, 0.0, 1.0);
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
        up(g, &w),
        up(g, &s),
        up(g, &t),
        up(g, &sigma),
        up(g, &logits),
        up(g, &target),
    ];
    let (gwb, glb, drb, rlb) = (
        out(g, rays * n),
        out(g, rays * n * 3),
        out(g, rays * n * stride),
        out(g, rays * 4),
    );
    launch::NerfLoss {
        p: &u,
        w: &bufs[0],
        s: &bufs[1],
        t: &bufs[2],
        sigma: &bufs[3],
        logits: &bufs[4],
        tgt: &bufs[5],
        gw: &gwb,
        g_logits: &glb,
        d_raw: &drb,
        ray_loss: &rlb,
    }
    .run(k, Grid::Groups(ray_groups(g, rays)));
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
    let mut r_dr = vec![0.0; rays * n];
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
        let gs64 = weights_backward_f64(
            &sigma[i * n..(i + 1) * n],
            &t[i * (n + 1)..(i + 1) * (n + 1)],
            wi,
            &gw,
        );
        for j in 0..n {
            c_dr[i * n + j] = gs[j] * sigma[i * n + j];
            r_dr[i * n + j] = (gs64[j] * sigma[i * n + j] as f64) as f32;
        }
        c_loss[i * 3..i * 3 + 3].copy_from_slice(&[data, dist, se]);
    }
    assert_close("d logits", &read(g, &glb, rays * n * 3), &c_gl, 1e-4);
    let gdr = read(g, &drb, rays * n * stride);
    let got: Vec<f32> = (0..rays * n).map(|q| gdr[q * stride]).collect();
    assert_close_twin("d raw (sigma)", &got, &c_dr, &r_dr, 1e-4);
    let grl = read(g, &rlb, rays * 4);
    let got: Vec<f32> = (0..rays)
        .flat_map(|i| grl[4 * i..4 * i + 3].to_vec())
        .collect();
    assert_close("per-ray losses", &got, &c_loss, 1e-5);
    (s, w)
}

/// `interlevel` of a random proposal histogram (`m` bins) against the NeRF one `(s, w)` (`n`
/// bins) on `rays` rays, against `stepfun::interlevel_loss` and `composite::weights_backward`;
/// returns the CPU losses.
#[allow(clippy::too_many_arguments)]
fn interlevel_case(
    g: &Arc<Gpu>,
    k: &Kernels,
    r: &mut ChaCha8Rng,
    s: &[f32],
    w: &[f32],
    rays: usize,
    n: usize,
    m: usize,
) -> Vec<f32> {
    eprintln!("interlevel: {rays} rays x {n} / {m} samples");
    let (se_, _) = histograms(r, rays, m);
    let te: Vec<f32> = se_.iter().map(|&x| coord::s_to_t(x, 0.1)).collect();
    let sige = rand_vec(r, rays * m, 0.0, 10.0);
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
        up(g, s),
        up(g, w),
        up(g, &se_),
        up(g, &we),
        up(g, &sige),
        up(g, &te),
    ];
    let (geb, drb, lb) = (out(g, rays * m), out(g, rays * m), out(g, rays + 3));
    launch::Interlevel {
        p: &u,
        s_nerf: &b[0],
        w_nerf: &b[1],
        s_env: &b[2],
        w_env: &b[3],
        sigma: &b[4],
        t_env: &b[5],
        g_env: &geb,
        d_raw: &drb,
        ray_loss: &lb,
    }
    .run(k, Grid::Groups(ray_groups(g, rays)));
    let (mut c_dr, mut c_l) = (vec![0.0; rays * m], vec![0.0; rays]);
    let mut r_dr = vec![0.0; rays * m];
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
        let gs64 = weights_backward_f64(
            &sige[i * m..(i + 1) * m],
            &te[i * (m + 1)..(i + 1) * (m + 1)],
            &we[i * m..(i + 1) * m],
            &ge,
        );
        for j in 0..m {
            c_dr[i * m + j] = gs[j] * sige[i * m + j];
            r_dr[i * m + j] = (gs64[j] * sige[i * m + j] as f64) as f32;
        }
    }
    assert_close_twin(
        "interlevel d raw",
        &read(g, &drb, rays * m),
        &c_dr,
        &r_dr,
        1e-4,
    );
    assert_close("interlevel loss", &read(g, &lb, rays + 3)[3..], &c_l, 1e-5);
    c_l
}

/// `composite::weights_backward` in f64 with the optical depth summed forwards (no subtraction
/// from the total): the reference the CPU twin only approximates where the total optical depth is
/// large (its `acc_total - sum_{j>k} tau_j` carries ulp(acc_total) into every T_{k+1}).
fn weights_backward_f64(sigma: &[f32], t: &[f32], w: &[f32], g_w: &[f32]) -> Vec<f64> {
    let n = sigma.len();
    let mut acc = vec![0.0f64; n];
    let mut a = 0.0f64;
    for k in 0..n.saturating_sub(1) {
        a += sigma[k].max(0.0) as f64 * (t[k + 1] - t[k]) as f64;
        acc[k] = a;
    }
    let mut g = vec![0.0f64; n];
    let mut suffix = 0.0f64;
    for k in (0..n).rev() {
        if k + 1 < n && sigma[k] > 0.0 {
            let gt = g_w[k] as f64 * (-acc[k]).exp() - suffix;
            g[k] = gt * (t[k + 1] - t[k]) as f64;
        }
        suffix += g_w[k] as f64 * w[k] as f64;
    }
    g
}
