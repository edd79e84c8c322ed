//! The losses and their gradients (`nerf_loss`, `interlevel`) against `composite.rs` and
//! `stepfun.rs`.

use super::*;

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
    .run(&k, Grid::Threads(rays as u64));
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
    .run(&k, Grid::Threads(rays as u64));
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
