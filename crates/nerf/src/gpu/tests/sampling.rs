//! Proposal sampling and resampling (`sample_level`) against `stepfun.rs`.

use super::*;

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
        .run(&k, Grid::Threads(rays as u64));
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
