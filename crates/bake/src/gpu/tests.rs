//! The GPU renderer of the baked model against the CPU's ([`BakedModel::render_norm`]) on a
//! synthetic grid (lavapipe in CI), and the kernel's validation without an adapter.

use super::*;
use crate::grid::from_field;
use flythrough_nerf::coord::SceneNorm;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// Pre-activation density of the synthetic scene at contracted `p`: a dense shell 0.08 thick of radius
/// 0.7 inside the unit ball with a window towards +x, a semi-transparent blob inside it, and a thin
/// half shell (z > 0) in the far field at contracted radius 1.6; empty (-10) elsewhere.
fn density(p: [f32; 3]) -> f32 {
    let r = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
    let mut raw = 3.0 - 150.0 * ((r - 0.7).abs() - 0.04).max(0.0);
    if p[0] > 0.2 && p[1].abs() < 0.35 && p[2].abs() < 0.35 {
        raw = -10.0;
    }
    let blob = [p[0] + 0.2, p[1] - 0.15, p[2]];
    let rb = (blob[0] * blob[0] + blob[1] * blob[1] + blob[2] * blob[2]).sqrt();
    raw = raw.max(0.5 - 60.0 * (rb - 0.15).max(0.0));
    if p[2] > 0.0 {
        raw = raw.max(1.0 - 100.0 * ((r - 1.6).abs() - 0.03).max(0.0));
    }
    raw.max(-10.0)
}

/// A baked model of [`density`] at `res^3` with smooth features, near plane 0.05, and a random
/// colour head of `width` units, `glo_dim` latent values and the exposure input or not.
fn synthetic(res: usize, width: usize, glo_dim: usize, exposure: bool) -> BakedModel {
    let mut lo = [-1.0f32; CHANNELS];
    let mut scale = [2.0 / 255.0; CHANNELS];
    lo[0] = -10.0;
    scale[0] = 25.0 / 255.0;
    // Blocks with a vertex denser than the march's skip threshold are stored.
    let keep = |_: [usize; 3], v: &[[f32; CHANNELS]]| v.iter().any(|v| v[0] > RAW_EMPTY);
    let grid = from_field(res, lo, scale, keep, |p| {
        let mut v = [0f32; CHANNELS];
        v[0] = density(p);
        for (c, f) in v.iter_mut().enumerate().skip(1) {
            *f = 0.8
                * (c as f32 * 0.7 + 2.0 * p[0] - p[1] + 3.0 * p[2]).sin()
                * (1.5 * p[1] + c as f32).cos();
        }
        v
    });
    let head = ColorHead {
        mlp_width: width,
        glo_dim,
        exposure,
        params: Vec::new(),
    };
    let cfg = head.mlp();
    let mut params = cfg.init_params(5);
    // Small random biases too (the initialisation leaves them at zero).
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for l in cfg.layer_offsets() {
        let b = l.bias.expect("the head has biases");
        for x in &mut params[b..b + l.fan_out] {
            *x = rng.random_range(-0.3..0.3);
        }
    }
    let glo = (0..2 * glo_dim)
        .map(|_| rng.random_range(-0.5..0.5))
        .collect();
    BakedModel {
        grid,
        head: ColorHead { params, ..head },
        glo,
        norm: SceneNorm {
            center: [0.0; 3],
            scale: 1.0,
            near: 0.05,
        },
        ev_mean: 0.0,
        train_names: vec!["a".into(), "b".into()],
        background: [0.25, 0.6, 0.4],
    }
}

fn normalise(d: [f32; 3]) -> [f32; 3] {
    let l = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
    [d[0] / l, d[1] / l, d[2] / l]
}

/// A 360° frame (`w x h`, pixel centres) from `o`, x right, y forward, z up.
fn equirect(o: [f32; 3], w: usize, h: usize) -> (Vec<[f32; 3]>, Vec<[f32; 3]>) {
    let mut dirs = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let lon = 2.0 * std::f32::consts::PI * ((x as f32 + 0.5) / w as f32 - 0.5);
            let lat = std::f32::consts::PI * (0.5 - (y as f32 + 0.5) / h as f32);
            dirs.push([lat.cos() * lon.sin(), lat.cos() * lon.cos(), lat.sin()]);
        }
    }
    (vec![o; w * h], dirs)
}

/// A pinhole frame (`w x h`, focal `f` pixels) from `o` looking along +z (x right, y down).
fn pinhole(o: [f32; 3], w: usize, h: usize, f: f32) -> (Vec<[f32; 3]>, Vec<[f32; 3]>) {
    let mut dirs = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let u = (x as f32 + 0.5 - w as f32 / 2.0) / f;
            let v = (y as f32 + 0.5 - h as f32 / 2.0) / f;
            dirs.push(normalise([u, v, 1.0]));
        }
    }
    (vec![o; w * h], dirs)
}

/// PSNR (dB) of `a` against `b`, values in [0, 1] (capped at 200 dB for identical inputs).
fn psnr(a: &[f32], b: &[f32]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        / a.len().max(1) as f64;
    if mse <= 1e-20 {
        200.0
    } else {
        -10.0 * mse.log10()
    }
}

#[test]
fn the_kernel_validates_for_several_heads() {
    for (w, gd, exposure) in [(8, 0, false), (64, 32, true), (512, 4, true)] {
        let head = ColorHead {
            mlp_width: w,
            glo_dim: gd,
            exposure,
            params: Vec::new(),
        };
        let src = kernel_source(&head);
        let entries = flythrough_gpu::validate_wgsl(&src, false)
            .unwrap_or_else(|e| panic!("width {w}, latent {gd}: {e}"));
        assert_eq!(entries, [ENTRY]);
    }
}

#[test]
fn the_parameter_block_mirrors_the_wgsl_struct() {
    let layouts =
        flythrough_gpu::wgsl_struct_layouts(&kernel_source(&synthetic(16, 8, 0, false).head))
            .expect("the kernel parses");
    let l = layouts
        .iter()
        .find(|l| l.name == "BakedParams")
        .expect("BakedParams in the kernel");
    assert_eq!(l.size as usize, std::mem::size_of::<BakedParams>());
    let offset = |name: &str| {
        l.members
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, o)| *o as usize)
            .unwrap_or_else(|| panic!("no member {name}"))
    };
    assert_eq!(offset("n"), std::mem::offset_of!(BakedParams, n));
    assert_eq!(
        offset("raw_empty"),
        std::mem::offset_of!(BakedParams, raw_empty)
    );
    assert_eq!(offset("b2"), std::mem::offset_of!(BakedParams, b2));
    assert_eq!(offset("lo"), std::mem::offset_of!(BakedParams, lo));
    assert_eq!(offset("scale"), std::mem::offset_of!(BakedParams, scale));
}

#[test]
fn packing_keeps_bytes_and_bits_in_place() {
    let m = synthetic(32, 8, 0, false);
    let g = &m.grid;
    let words = block_words(g);
    for i in [0, 1, 5, 4095, g.data.len() - 1] {
        assert_eq!((words[i / 4] >> (8 * (i % 4))) as u8, g.data[i], "byte {i}");
    }
    let masks = mask_words(g);
    for bit in [0usize, 31, 32, 63, 64, 300, 511] {
        let want = g.voxel_mask[bit / 64] >> (bit % 64) & 1;
        assert_eq!(
            (masks[bit / 32] >> (bit % 32) & 1) as u64,
            want,
            "bit {bit}"
        );
    }
    let dist = dist_words(g);
    for (b, &k) in g.empty_dist.iter().enumerate() {
        assert_eq!((dist[b / 4] >> (8 * (b % 4))) & 255, k as u32, "block {b}");
    }
}

/// The GPU renders the frame the CPU renders: colours and opacity at >= 40 dB PSNR, depth close
/// where the ray is mostly opaque, and the same grid lookups up to a few rays' worth (a sample
/// can fall on the other side of a voxel face by an f32 rounding).
#[test]
fn gpu_and_cpu_renderers_agree() {
    let Some(gpu) = flythrough_testkit::test_gpu() else {
        return;
    };
    for (width, glo_dim, exposure) in [(32, 4, true), (8, 0, false)] {
        let m = synthetic(64, width, glo_dim, exposure);
        eprintln!(
            "synthetic grid {}^3: {} blocks stored ({:.1} %)",
            m.grid.res,
            m.grid.slots(),
            100.0 * m.grid.occupied_fraction()
        );
        let baked = BakedGpu::new(gpu.clone(), &m).expect("upload the baked model");
        let latent = m.latent(Some("b"));
        // A 360° frame from inside the inner shell and a pinhole frame from the far field.
        let (mut empty, mut partial) = (0, 0);
        for (what, (o, d)) in [
            (
                "360° 256x128 inside",
                equirect([0.05, -0.1, 0.02], 256, 128),
            ),
            ("360° 256x128 outside", equirect([1.2, 0.3, -0.4], 256, 128)),
            ("pinhole 96x64", pinhole([0.1, 0.05, -1.5], 96, 64, 50.0)),
        ] {
            let ev: Vec<f32> = (0..o.len()).map(|i| (i % 7) as f32 * 0.3 - 0.9).collect();
            let t = Instant::now();
            let cpu = m.render_norm(&o, &d, &ev, &latent);
            let t_cpu = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let got = baked.render_norm(&o, &d, &ev, &latent).expect("GPU render");
            let t_gpu = t.elapsed().as_secs_f64();
            let flat = |v: &[[f32; 3]]| v.iter().flatten().copied().collect::<Vec<f32>>();
            let p_rgb = psnr(&flat(&got.rgb), &flat(&cpu.rgb));
            let p_op = psnr(&got.opacity, &cpu.opacity);
            let mean_op = cpu.opacity.iter().sum::<f32>() / cpu.opacity.len() as f32;
            let depth_off = cpu
                .depth
                .iter()
                .zip(&got.depth)
                .zip(&cpu.opacity)
                .filter(|&(_, &op)| op > 0.5)
                .filter(|((a, b), _)| (*a - *b).abs() > 1e-3 * a.abs().max(1.0))
                .count();
            eprintln!(
                "width {width}, {what}: rgb {p_rgb:.1} dB, opacity {p_op:.1} dB (mean opacity \
                 {mean_op:.2}), {depth_off} depths off, lookups {} GPU vs {} CPU; CPU {:.1} ms, \
                 GPU {:.1} ms ({})",
                got.lookups,
                cpu.lookups,
                1e3 * t_cpu,
                1e3 * t_gpu,
                gpu.adapter().name
            );
            assert_eq!(got.rgb.len(), o.len());
            assert!(
                mean_op > 0.2,
                "{what}: the frame sees the scene ({mean_op})"
            );
            empty += cpu.opacity.iter().filter(|&&a| a < 0.01).count();
            partial += cpu
                .opacity
                .iter()
                .filter(|&&a| (0.05..0.95).contains(&a))
                .count();
            assert!(cpu.lookups > 1000, "{what}: the march looks the grid up");
            assert!(p_rgb >= 40.0, "{what}: rgb {p_rgb:.1} dB < 40 dB");
            assert!(p_op >= 40.0, "{what}: opacity {p_op:.1} dB < 40 dB");
            assert!(
                depth_off * 100 <= o.len(),
                "{what}: {depth_off} depths differ"
            );
            let dl = (got.lookups as f64 - cpu.lookups as f64).abs() / cpu.lookups as f64;
            assert!(dl < 0.01, "{what}: lookups differ by {:.2} %", 100.0 * dl);
        }
        eprintln!("{empty} empty and {partial} semi-transparent pixels");
        assert!(
            empty > 500 && partial > 500,
            "rays that miss and rays that pass through"
        );
    }
}
