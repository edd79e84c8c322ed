//! Compositing weights, compositing and ray features (`weights`, `composite`, `ray_features`)
//! against `composite.rs` and `encoding.rs`.

use super::*;

#[test]
fn weights_composite_and_ray_features_match_cpu() {
    let Some(g) = test_gpu() else { return };
    let k = ks(&g, g.atomic_mode());
    let mut r = rng(6);
    let rays = 120usize;
    weights_and_composite(&g, &k, &mut r, rays, 20);
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
    launch::RayFeatures {
        p: &u,
        rays: &rb,
        latent_idx: &ib,
        glo: &tb2,
        feat: &fb,
    }
    .run(&k, Grid::Threads(rays as u64));
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

/// The workgroup-per-ray kernels on sample counts that exercise their chunking (64 invocations,
/// ceil(n / 64) samples each): fewer samples than invocations, exactly 64, a partial last chunk
/// and several full chunks per invocation.
#[test]
fn weights_and_composite_chunked_sample_counts() {
    let Some(g) = test_gpu() else { return };
    let k = ks(&g, g.atomic_mode());
    let mut r = rng(16);
    for n in [1usize, 2, 63, 64, 65, 97, 192, 256] {
        weights_and_composite(&g, &k, &mut r, 37, n);
    }
    // More rays than workgroups in one dimension: the 2-D grid and its flat workgroup index.
    let max = g.limits().max_workgroups_per_dim as usize;
    if max < 1 << 20 {
        let rays = max + 5;
        assert!(ray_groups(&g, rays)[1] > 1);
        weights_and_composite(&g, &k, &mut r, rays, 3);
    }
}

/// `weights` then `composite` on `rays` random rays of `n` samples, against the CPU twins.
fn weights_and_composite(g: &Gpu, k: &Kernels, r: &mut ChaCha8Rng, rays: usize, n: usize) {
    let stride = 16usize;
    eprintln!("{rays} rays x {n} samples");
    let raw = rand_vec(r, rays * n * stride, -4.0, 4.0);
    let (s, _) = histograms(r, rays, n);
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
    let (rb, tb, sb, wb) = (up(g, &raw), up(g, &t), out(g, rays * n), out(g, rays * n));
    launch::Weights {
        p: &u,
        raw: &rb,
        t: &tb,
        sigma: &sb,
        w: &wb,
    }
    .run(k, Grid::Groups(ray_groups(g, rays)));
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
    assert_close("sigma", &read(g, &sb, rays * n), &csig, 1e-5);
    let gw = read(g, &wb, rays * n);
    assert_close("weights", &gw, &cw, 1e-5);
    // Composite (floats and packed pixels, pixel offset 5 of a (rays + 10)-pixel buffer whose
    // frame ends 3 pixels before the last ray).
    let logits = rand_vec(r, rays * n * 3, -5.0, 5.0);
    let cp = CompParams {
        n_rays: rays as u32,
        n: n as u32,
        pix0: 5,
        pack: 1,
        npix: 5 + rays as u32 - 3,
        _p: [0; 3],
    };
    let u = g.uniform("p", &cp).unwrap();
    let (lb, ob) = (up(g, &logits), out(g, rays * 5));
    let px = up(g, &vec![0xAAAA_AAAAu32; rays + 10]);
    launch::Composite {
        p: &u,
        w: &wb,
        t: &tb,
        logits: &lb,
        out: &ob,
        px: &px,
    }
    .run(k, Grid::Groups(ray_groups(g, rays)));
    let gout = read(g, &ob, rays * 5);
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
}
