//! Proposal sampling and resampling (`sample_level`) against `stepfun.rs`.

use super::*;

#[test]
fn sampling_and_resampling_match_cpu() {
    let Some(g) = test_gpu() else { return };
    let k = ks(&g, g.atomic_mode());
    let mut r = rng(5);
    sample_level_case(&g, &k, &mut r, 150, 24, 16);
}

/// `sample_level` (one workgroup of 64 per ray) at output and previous-level sample counts around
/// and past the 64 chunks (n >= 2: stepfun::sample_intervals needs two centres), and past the
/// 65 535 workgroups of one grid dimension.
#[test]
fn sample_level_chunked_sample_counts() {
    let Some(g) = test_gpu() else { return };
    let k = ks(&g, g.atomic_mode());
    let mut r = rng(17);
    for (n, pn) in [
        (2usize, 1usize),
        (64, 1),
        (97, 64),
        (192, 97),
        (64, 192),
        (2, 97),
        (192, 192),
        (65, 63),
    ] {
        sample_level_case(&g, &k, &mut r, 23, n, pn);
    }
    // More rays than workgroups in one dimension: the 2-D grid and its flat workgroup index.
    let max = g.limits().max_workgroups_per_dim as usize;
    if max < 1 << 20 {
        let rays = max + 5;
        assert!(ray_groups(&g, rays)[1] > 1);
        sample_level_case(&g, &k, &mut r, rays, 3, 2);
    }
}

/// `sample_level` at levels 0..2 (with and without jitter, annealed or not) on `rays` random rays
/// of `n` output samples resampling a previous level of `pn` bins, against the CPU twins.
fn sample_level_case(g: &Gpu, k: &Kernels, r: &mut ChaCha8Rng, rays: usize, n: usize, pn: usize) {
    eprintln!("{rays} rays x {n} samples from {pn}");
    let near = 0.05f32;
    let rv = random_rays(r, rays);
    let (ps, pw) = histograms(r, rays, pn);
    let jit = rand_vec(r, rays * 3, 0.0, 1.0);
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
        let (rb, jb, psb, pwb) = (up(g, &rv), up(g, &jit), up(g, &ps), up(g, &pw));
        let sc = out(g, rays * (6 * p.pn as usize + 3));
        let (sb, tb, posb, fb) = (
            out(g, rays * (n + 1)),
            out(g, rays * (n + 1)),
            out(g, rays * n * 3),
            out(g, rays * n),
        );
        launch::SampleLevel {
            p: &u,
            rays: &rb,
            jit: &jb,
            prev_s: &psb,
            prev_w: &pwb,
            sc: &sc,
            s_out: &sb,
            t_out: &tb,
            pos: &posb,
            fsig: &fb,
        }
        .run(k, Grid::Groups(ray_groups(g, rays)));
        // CPU twin: model.rs resample + sample_points.
        let mut cs = vec![0.0f32; rays * (n + 1)];
        let mut rs = vec![0.0f32; rays * (n + 1)];
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
                rs[i * (n + 1)..(i + 1) * (n + 1)]
                    .copy_from_slice(&sample_intervals_f64(&td, &wd, n, u0));
            } else {
                stepfun::sample_intervals(&[0.0, 1.0], &[1.0], n, u0, (0.0, 1.0), o);
                rs[i * (n + 1)..(i + 1) * (n + 1)].copy_from_slice(o);
            }
        }
        // s against the CPU's sampling; t, positions and footprints against the CPU's formulas
        // applied to the GPU's own s and t (near s = 1, t = 1/(s/far + (1-s)/near) amplifies
        // one-ulp differences of s by 1/(1-s), so each stage is checked on identical inputs).
        let what = format!("level {level} jitter {jitter} anneal {anneal}");
        let gs = read(g, &sb, cs.len());
        assert_close_twin(&format!("{what}: s"), &gs, &cs, &rs, 1e-5);
        let ct: Vec<f32> = gs.iter().map(|&s| coord::s_to_t(s, near)).collect();
        let gt = read(g, &tb, ct.len());
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
            &read(g, &posb, cpos.len()),
            &cpos,
            1e-5,
        );
        let gf = read(g, &fb, cf.len());
        for (i, (a, b)) in gf.iter().zip(&cf).enumerate() {
            assert!(
                ((a - b) / b.abs().max(1e-12)).abs() < 1e-5,
                "{what}: footprint[{i}] {a} vs {b}"
            );
        }
    }
}

/// `stepfun::sample_intervals` on (t, w) in f64 after the stratified u (domain [0, 1]): the
/// reference for the inverse CDF, whose f32 sums the kernel (chunks, a scan) and the twin (serial)
/// round differently.
fn sample_intervals_f64(t: &[f32], w: &[f32], m: usize, u0: Option<f32>) -> Vec<f32> {
    let n = w.len();
    let wv = |i: usize| {
        if t[i + 1] > t[i] {
            w[i].max(0.0) as f64
        } else {
            0.0
        }
    };
    let total: f64 = (0..n).map(wv).sum();
    let u = |i: usize| stepfun::stratified_u(i, m, u0);
    let mut c = Vec::with_capacity(m);
    let (mut i, mut cw0) = (0usize, 0.0f64);
    for k in 0..m {
        let uk = u(k) as f64;
        loop {
            let wi = wv(i) / total;
            let cw1 = (cw0 + wi).min(1.0);
            if uk < cw1 || i + 1 == n {
                let f = if wi > 0.0 {
                    ((uk - cw0) / wi).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                c.push(t[i] as f64 + f * (t[i + 1] - t[i]) as f64);
                break;
            }
            cw0 = cw1;
            i += 1;
        }
    }
    let mut out = vec![0.0f64; m + 1];
    for k in 1..m {
        out[k] = 0.5 * (c[k - 1] + c[k]);
    }
    out[0] = (2.0 * c[0] - out[1]).max(0.0);
    out[m] = (2.0 * c[m - 1] - out[m - 1]).min(1.0);
    for k in 1..=m {
        if out[k] < out[k - 1] {
            out[k] = out[k - 1];
        }
    }
    out.iter().map(|&x| x as f32).collect()
}
