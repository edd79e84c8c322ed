//! GPU back-end benchmark used by `scripts/bench-gpu.sh` (one mode per invocation, one JSON line
//! of results on stdout, progress on stderr):
//!
//! - `step <batch_rays> <steps> [tiny]`: training steps of the default `[train]` model (or a tiny
//!   one) on random rays, GPU (with per-kernel times from timestamp queries) and CPU side by side:
//!   samples/s, rays/s, ms per step, ms per kernel.
//! - `train <scene> <seconds> <device> <out dir> [width height photos]`: trains `synth` (the
//!   synthetic venue, ground-truth cameras) or a `../shared/data` capture (`fox`,
//!   `redkitchen_every10`: a COLMAP folder) on `cpu` or `gpu` for a time budget with the default
//!   config, then evaluates the held-out photos; every `probe` seconds (env `PROBE_S`, synth only)
//!   the held-out PSNR is measured to find the time to 30 dB.
//! - `render <width> <frames> <device> [tiny]`: seconds per 360° frame of a random model at
//!   `width x width/2`.
//!
//! `cargo run --release -p flythrough-nerf --example bench_gpu -- step 2048 20`
#![allow(clippy::field_reassign_with_default, clippy::type_complexity)]

use flythrough_core::config::{Device, TrainConfig};
use flythrough_nerf::gpu::{self, FrameCamera, GpuRenderer};
use flythrough_nerf::kernels::Adam;
use flythrough_nerf::model::{LossWeights, Model, ModelConfig, Rays, SampleMode};
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn die(msg: &str) -> ! {
    eprintln!("bench_gpu: {msg}");
    std::process::exit(2)
}

fn tiny(c: &mut TrainConfig) {
    c.prop_samples = vec![16, 16];
    c.nerf_samples = 16;
    c.hash_levels = 8;
    c.hash_table_log2 = 14;
    c.hash_max_res = 256;
    c.mlp_width = 32;
}

/// A model at the config's sizes with grids away from zero (so densities vary).
fn model(c: &TrainConfig) -> Model {
    let mut m = Model::new(ModelConfig::from_train(c, 8), 0.05, 1);
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    for (n, p) in m.names.clone().iter().zip(m.params.iter_mut()) {
        if n.ends_with("grid") {
            p.iter_mut().for_each(|v| *v = r.random_range(-0.3..0.3));
        }
    }
    m
}

fn batch(
    n: usize,
    nlev: usize,
    gd: usize,
    seed: u64,
) -> (Rays, Vec<[f32; 3]>, Vec<usize>, Vec<Vec<f32>>) {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut rays = Rays::default();
    let mut idx = Vec::new();
    let mut target = Vec::new();
    for _ in 0..n {
        let d: [f32; 3] = [
            r.random_range(-1.0..1.0),
            r.random_range(-1.0..1.0),
            r.random_range(-1.0..1.0),
        ];
        let l = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt().max(1e-6);
        rays.o.push([
            r.random_range(-0.3..0.3),
            r.random_range(-0.3..0.3),
            r.random_range(-0.3..0.3),
        ]);
        rays.d.push([d[0] / l, d[1] / l, d[2] / l]);
        rays.r.push(1e-3);
        rays.ev.push(0.0);
        rays.latent.extend(std::iter::repeat_n(0.0, gd));
        idx.push(r.random_range(0..8));
        target.push([r.random(), r.random(), r.random()]);
    }
    let jitter = (0..nlev)
        .map(|_| (0..n).map(|_| r.random()).collect())
        .collect();
    (rays, target, idx, jitter)
}

fn step_mode(args: &[String]) {
    let n: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(2048);
    let steps: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let mut c = TrainConfig::default();
    c.batch_rays = n;
    if args.get(2).map(|s| s == "tiny").unwrap_or(false) {
        tiny(&mut c);
    }
    let m = model(&c);
    let spr = c.prop_samples.iter().sum::<usize>() + c.nerf_samples;
    let nlev = c.prop_samples.len() + 1;
    let gd = m.cfg.glo_dim;
    let b = batch(n, nlev, gd, 1);
    let mut out = serde_json::json!({"mode": "step", "batch_rays": n, "samples_per_ray": spr});
    // GPU
    match gpu::open(Device::Gpu) {
        Ok(Some(g)) => {
            let adams: Vec<Adam> = m
                .params
                .iter()
                .map(|p| Adam::new(p.len(), flythrough_nerf::train::ADAM))
                .collect();
            let t0 = Instant::now();
            let mut tr = gpu::train::GpuTrainer::new(g.clone(), &m, &adams, &c)
                .unwrap_or_else(|e| die(&e.to_string()));
            // Warm-up (pipelines compile on first use).
            tr.step(&b.0, &b.1, &b.2, &b.3, 1e-3, 0.5);
            tr.finish();
            let setup = t0.elapsed().as_secs_f64();
            let t0 = Instant::now();
            for _ in 0..steps {
                tr.step(&b.0, &b.1, &b.2, &b.3, 1e-3, 0.5);
            }
            tr.finish();
            let secs = t0.elapsed().as_secs_f64() / steps as f64;
            // Per-kernel times: a few profiled steps (each waits for its timestamps).
            let mut kernels = serde_json::Map::new();
            tr.profiler = flythrough_gpu::Profiler::new(&g, 512);
            if tr.profiler.is_some() {
                let k = steps.clamp(1, 5);
                for _ in 0..k {
                    tr.step(&b.0, &b.1, &b.2, &b.3, 1e-3, 0.5);
                }
                for (name, ms, count) in tr.profiler.as_ref().unwrap().totals() {
                    kernels.insert(name, serde_json::json!({"ms_per_step": ms / k as f64, "dispatches_per_step": count as f64 / k as f64}));
                }
            }
            out["gpu"] = serde_json::json!({
                "adapter": g.adapter().to_string(),
                "setup_s": setup,
                "ms_per_step": 1e3 * secs,
                "rays_per_s": n as f64 / secs,
                "samples_per_s": (n * spr) as f64 / secs,
                "kernels": kernels,
            });
        }
        Ok(None) => {}
        Err(e) => out["gpu_error"] = e.to_string().into(),
    }
    // CPU: the same step with the CPU kernels (forward, backward, Adam).
    let mut mc = m.clone();
    let mut adams: Vec<Adam> = mc
        .params
        .iter()
        .map(|p| Adam::new(p.len(), flythrough_nerf::train::ADAM))
        .collect();
    let mut grads = mc.zeros_like();
    let mut fwd = flythrough_nerf::model::Forward::default();
    let lw = LossWeights {
        distortion: 0.01,
        interlevel: 1.0,
    };
    let cpu_steps = steps.clamp(1, 5);
    let t0 = Instant::now();
    for _ in 0..cpu_steps {
        let mode = SampleMode {
            jitter: Some(&b.3),
            train_frac: 0.5,
        };
        mc.forward_into(&b.0, &mode, true, &mut fwd);
        mc.backward(&b.0, &fwd, &b.1, &lw, &mut grads, None);
        for ((p, g), a) in mc
            .params
            .iter_mut()
            .zip(grads.iter_mut())
            .zip(adams.iter_mut())
        {
            if !p.is_empty() {
                a.update_and_zero(p, g, 1e-3, 1.0);
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64() / cpu_steps as f64;
    out["cpu"] = serde_json::json!({
        "threads": rayon::current_num_threads(),
        "ms_per_step": 1e3 * secs,
        "rays_per_s": n as f64 / secs,
        "samples_per_s": (n * spr) as f64 / secs,
    });
    println!("{out}");
}

fn render_mode(args: &[String]) {
    let w: u32 = args.first().and_then(|s| s.parse().ok()).unwrap_or(2048);
    let frames: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let dev = args.get(2).map(|s| s.as_str()).unwrap_or("gpu");
    let mut c = TrainConfig::default();
    if args.get(3).map(|s| s == "tiny").unwrap_or(false) {
        tiny(&mut c);
    }
    let m = model(&c);
    let h = w / 2;
    let norm = flythrough_nerf::coord::SceneNorm {
        center: [0.0; 3],
        scale: 1.0,
        near: 0.05,
    };
    let cam = |k: usize| {
        let a = k as f64 * 0.3;
        FrameCamera::equirect(
            &norm,
            w,
            h,
            [0.1 * a.cos(), 0.0, 0.1 * a.sin()],
            [1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0],
            [0.0, -1.0, 0.0],
        )
    };
    let latent = m.mean_latent();
    let mut out = serde_json::json!({"mode": "render", "width": w, "height": h, "device": dev});
    if dev == "gpu" {
        let g = gpu::open(Device::Gpu)
            .unwrap_or_else(|e| die(&e.to_string()))
            .expect("gpu");
        let mut r = GpuRenderer::new(g.clone(), &m, gpu::render::default_chunk(&m, &g))
            .unwrap_or_else(|e| die(&e.to_string()));
        let _ = r.render_frame(&cam(0), 0.0, &latent).unwrap();
        let t0 = Instant::now();
        // Frames in flight two at a time, as the render stage does.
        let mut pending = None;
        for k in 0..frames {
            let t = r.start_frame(&cam(k + 1), 0.0, &latent).unwrap();
            if let Some(p) = pending.replace(t) {
                let _img: image::RgbImage = flythrough_nerf::gpu::FrameTicket::wait(p).unwrap();
            }
        }
        if let Some(p) = pending {
            let _ = p.wait().unwrap();
        }
        let s = t0.elapsed().as_secs_f64() / frames as f64;
        out["adapter"] = g.adapter().to_string().into();
        out["chunk_rays"] = r.chunk().into();
        out["seconds_per_frame"] = s.into();
    } else {
        // CPU: a band of rows through the middle of the frame, extrapolated to the whole frame.
        let rows = (h / 16).max(1);
        let mut rays = Rays::default();
        for y in (h - rows) / 2..(h + rows) / 2 {
            let lat = std::f64::consts::PI * (0.5 - (y as f64 + 0.5) / h as f64);
            for x in 0..w {
                let lon = 2.0 * std::f64::consts::PI * ((x as f64 + 0.5) / w as f64 - 0.5);
                rays.o.push([0.0; 3]);
                rays.d.push([
                    (lat.cos() * lon.sin()) as f32,
                    -(lat.sin()) as f32,
                    (lat.cos() * lon.cos()) as f32,
                ]);
                rays.r.push(1e-3);
                rays.ev.push(0.0);
            }
        }
        let t0 = Instant::now();
        let o = flythrough_nerf::renderer::render_norm(&m, &rays, &latent);
        let s = t0.elapsed().as_secs_f64();
        assert_eq!(o.rgb.len(), rays.len());
        out["rows_rendered"] = rows.into();
        out["seconds_per_frame"] = (s * h as f64 / rows as f64).into();
        out["extrapolated"] = true.into();
    }
    println!("{out}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(|s| s.as_str()) {
        Some("step") => step_mode(&args[1..]),
        Some("render") => render_mode(&args[1..]),
        _ => die("usage: bench_gpu step|render|train ... (see the file's doc)"),
    }
}
