//! The baked model's renderers, timed for the device check (`scripts/bench-gpu.sh`): seconds per
//! 360° frame from a synthetic baked model the size of the demo venue's (a 256^3 grid with a room's
//! walls, floor, ceiling and furniture-sized blobs stored, about 6 % of the blocks, 12 lookups a ray at the horizon; a colour head
//! of width 64 with a 4-d latent and exposure conditioning), on the GPU (`BakedGpu`,
//! `shaders/baked_march.wgsl`) or on the CPU (`BakedModel::render_rays`, a band of rows through the
//! middle of the frame, extrapolated). One JSON line on stdout, as `bench_gpu`'s modes print.
//!
//! `bench_baked_gpu WIDTH FRAMES gpu|cpu [tiny]` (`tiny`: a 64^3 grid, for lavapipe)

use flythrough_bake::BakedModel;
use flythrough_bake::grid::{CHANNELS, from_field};
use flythrough_nerf::coord::SceneNorm;
use flythrough_nerf::field::ColorHead;
use std::time::Instant;

fn die(msg: &str) -> ! {
    eprintln!("bench_baked_gpu: {msg}");
    std::process::exit(2)
}

/// A room in the contracted space: walls at |x|, |y| = 0.8, floor and ceiling at z = -0.4 / 0.5,
/// a few blobs inside, soft surfaces; features vary smoothly.
fn model(res: usize) -> BakedModel {
    let mut lo = [-1.0f32; CHANNELS];
    let mut scale = [2.0 / 255.0; CHANNELS];
    lo[0] = -10.0;
    scale[0] = 25.0 / 255.0;
    let blobs = [
        [0.3f32, -0.2, -0.2, 0.15],
        [-0.4, 0.35, -0.1, 0.2],
        [0.1, 0.5, 0.2, 0.1],
    ];
    let field = |p: [f32; 3]| {
        let mut v = [0f32; CHANNELS];
        // Distance to the surface of the box [-0.8, 0.8]^2 x [-0.4, 0.5].
        let q = [
            p[0].abs() - 0.8,
            p[1].abs() - 0.8,
            (p[2] - 0.05).abs() - 0.45,
        ];
        let outside = q.iter().map(|v| v.max(0.0).powi(2)).sum::<f32>().sqrt();
        let inside = q[0].max(q[1]).max(q[2]).min(0.0);
        let wall = (outside + inside).abs();
        let mut dist = wall;
        for b in blobs {
            let r = ((p[0] - b[0]).powi(2) + (p[1] - b[1]).powi(2) + (p[2] - b[2]).powi(2)).sqrt();
            dist = dist.min((r - b[3]).abs());
        }
        v[0] = 6.0 - 170.0 * dist;
        for (c, f) in v.iter_mut().enumerate().skip(1) {
            *f = 0.8 * (c as f32 * 0.9 + 3.0 * p[0] - 2.0 * p[1] + p[2] * (c % 4) as f32).sin();
        }
        v
    };
    let grid = from_field(res, lo, scale, |_, v| v.iter().any(|x| x[0] > -9.0), field);
    let head = ColorHead {
        mlp_width: 64,
        glo_dim: 4,
        exposure: true,
        params: Vec::new(),
    };
    let params = head.mlp().init_params(7);
    BakedModel {
        grid,
        head: ColorHead { params, ..head },
        glo: (0..8).map(|i| 0.1 * i as f32 - 0.3).collect(),
        norm: SceneNorm {
            center: [0.0; 3],
            scale: 1.0,
            near: 0.01,
        },
        ev_mean: 0.0,
        train_names: vec!["a.jpg".into(), "b.jpg".into()],
        background: [0.4, 0.4, 0.45],
    }
}

/// The rays of rows `y0..y1` of a `w x h` 360° frame from `o` (z up).
fn rays(o: [f32; 3], w: usize, h: usize, y0: usize, y1: usize) -> (Vec<[f32; 3]>, Vec<[f32; 3]>) {
    let mut d = Vec::with_capacity(w * (y1 - y0));
    for y in y0..y1 {
        let lat = std::f32::consts::PI * (0.5 - (y as f32 + 0.5) / h as f32);
        for x in 0..w {
            let lon = std::f32::consts::TAU * (x as f32 + 0.5) / w as f32;
            d.push([lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]);
        }
    }
    (vec![o; d.len()], d)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let w: usize = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| die("usage: bench_baked_gpu WIDTH FRAMES gpu|cpu [tiny]"));
    let frames: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let dev = args.get(3).map(String::as_str).unwrap_or("gpu");
    let tiny = args.get(4).is_some_and(|a| a == "tiny");
    let h = w / 2;
    let t0 = Instant::now();
    let m = model(if tiny { 64 } else { 256 });
    let build_s = t0.elapsed().as_secs_f64();
    let latent = m.latent(None);
    let origin = |k: usize| {
        let a = k as f32 * 0.4;
        [0.1 * a.cos(), 0.1 * a.sin(), 0.05]
    };
    let mut out = serde_json::json!({
        "mode": "render_baked", "width": w, "height": h, "device": dev,
        "grid_res": m.grid.res, "stored_blocks": m.grid.slots(),
        "occupied_fraction": m.grid.occupied_fraction(), "model_build_s": build_s,
    });
    if dev == "gpu" {
        flythrough_gpu::quiet_vulkan_layers();
        let g = flythrough_nerf::gpu::open(flythrough_core::config::Device::Gpu)
            .unwrap_or_else(|e| die(&e.to_string()))
            .unwrap_or_else(|| die("no GPU adapter"));
        let r = flythrough_bake::gpu::BakedGpu::new(g.clone(), &m).unwrap_or_else(|e| die(&e));
        let (o, d) = rays(origin(0), w, h, 0, h);
        let _ = r
            .render_rays(&o, &d, Some(0.0), &latent)
            .unwrap_or_else(|e| die(&e));
        let t = Instant::now();
        let mut lookups = 0.0;
        for k in 0..frames {
            let (o, d) = rays(origin(k + 1), w, h, 0, h);
            let px = r
                .render_rays(&o, &d, Some(0.0), &latent)
                .unwrap_or_else(|e| die(&e));
            lookups = px.lookups as f64 / px.rgb.len() as f64;
        }
        out["adapter"] = g.adapter().to_string().into();
        out["seconds_per_frame"] = (t.elapsed().as_secs_f64() / frames as f64).into();
        out["lookups_per_ray"] = lookups.into();
    } else {
        // A band of rows through the middle (the horizon: the costliest rays), extrapolated.
        let rows = (h / 16).max(1);
        let (o, d) = rays(origin(1), w, h, (h - rows) / 2, (h + rows) / 2);
        let t = Instant::now();
        let px = m.render_rays(&o, &d, Some(0.0), &latent);
        let s = t.elapsed().as_secs_f64();
        out["rows_rendered"] = rows.into();
        out["seconds_per_frame"] = (s * h as f64 / rows as f64).into();
        out["extrapolated"] = true.into();
        out["lookups_per_ray"] = (px.lookups as f64 / px.rgb.len() as f64).into();
        out["threads"] = rayon::current_num_threads().into();
    }
    println!("{out}");
}
