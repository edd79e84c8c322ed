//! GPU back-end benchmark used by `scripts/bench-gpu.sh` (one mode per invocation, one JSON line
//! of results on stdout, progress on stderr):
//!
//! - `step <batch_rays> <steps> [tiny]`: training steps of the default `[train]` model (or a tiny
//!   one) on one batch of random rays, GPU (with per-kernel times from timestamp queries) and CPU
//!   side by side: samples/s, rays/s, ms per step, ms per kernel, and per GPU step the dispatches,
//!   compute passes, uploaded bytes and host wait. A micro-benchmark: no fresh batches, no
//!   metrics or checkpoints. `BENCH_NO_CPU=1` leaves the CPU out (a second GPU run with other
//!   kernel variants: `FLYTHROUGH_GPU_F16=0`, `FLYTHROUGH_GPU_SUBGROUPS=0`,
//!   `FLYTHROUGH_GPU_MLP_WEIGHTS=workgroup`, `FLYTHROUGH_GPU_MLP_ROWS=8`, or another batch:
//!   two batches with the same kernels give the fixed and per-ray cost of a step). Also the
//!   step's counted work (`flythrough_nerf::cost`) and the rate each kernel group reached on it.
//! - `train <batch_rays> <seconds> <out dir> [tiny]`: real training on the GPU through the training
//!   driver for a time budget: fresh batches every step (drawn on the device from the photos
//!   uploaded once; only uniforms are written per step), the
//!   metrics read back, checkpoints by time (`checkpoint_seconds` a quarter of the budget, at least
//!   1 s; `BENCH_CKPT_SECONDS` overrides) written by the background writer, on the synthetic venue
//!   at 160x120 (the data set's size hardly matters to the step). After a 2-step warm-up (kernels
//!   compile on first use). Reports samples/s, rays/s, ms per step, checkpoints written, and per
//!   step `dispatches_per_step`, `passes_per_step`, `upload_bytes_per_step`,
//!   `readback_bytes_per_step`, `host_wait_ms_per_step` (the training thread blocked: on the device
//!   and on checkpoints) and `checkpoint_wait_ms_per_step`.
//! - `venue <scene> <seconds> <device> <out dir> [width height photos]`: trains `synth` (the
//!   synthetic venue, ground-truth cameras) or a `../shared/data` capture (`fox`,
//!   `redkitchen_every10`, with their reference poses) on `cpu` or `gpu` for a time budget with the default
//!   config, then evaluates the held-out photos (the stage's own evaluation).
//!   `BENCH_TRAIN_TOML` adds `[train]` keys. Reports the stage summary and the time at which the
//!   training batches' PSNR (metrics.jsonl) first reaches 30 dB.
//!   The JSON line's mode is `venue`.
//! - `render <width> <frames> <device> [tiny]`: seconds per 360° frame of a random model at
//!   `width x width/2` (the CPU renders a band of rows and extrapolates).
//! - `smoke`: every adapter wgpu sees, then the hardware adapter the `auto` device would take;
//!   exits 3 at once when there is none (a device check stops there instead of measuring the CPU).
//! - `table [files]`: the markdown tables of the JSON lines the other modes printed.
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
    let cost = flythrough_nerf::cost::StepCost::training(&m.cfg, n);
    let mut out = serde_json::json!({"mode": "step", "batch_rays": n, "samples_per_ray": spr,
        "cost": {"mlp_gflop": cost.mlp_flops / 1e9, "mlp_fwd_gflop": cost.mlp_fwd_flops / 1e9,
                 "hash_corner_reads_m": cost.hash_corner_reads / 1e6,
                 "hash_grad_adds_m": cost.hash_grad_adds / 1e6,
                 "params_m": cost.params / 1e6, "optimizer_mb": cost.optimizer_bytes / 1e6}});
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
            // Three more untimed steps: first-use costs past compilation (allocation, caches).
            for _ in 0..3 {
                tr.step(&b.0, &b.1, &b.2, &b.3, 1e-3, 0.5);
            }
            tr.finish();
            let (c0, w0) = (g.counters(), tr.wait_s);
            let t0 = Instant::now();
            for _ in 0..steps {
                tr.step(&b.0, &b.1, &b.2, &b.3, 1e-3, 0.5);
            }
            tr.finish();
            let secs = t0.elapsed().as_secs_f64() / steps as f64;
            let d = g.counters().since(&c0);
            let per = |x: u64| x as f64 / steps as f64;
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
            // Rates against the step's counted work (src/cost.rs): the MLP kernels' FLOP/s and
            // the hash kernels' corner reads and gradient adds per second.
            let kms = |names: &[&str]| -> f64 {
                names
                    .iter()
                    .filter_map(|k| kernels.get(*k)?["ms_per_step"].as_f64())
                    .sum()
            };
            let rate = |work: f64, ms: f64| (ms > 0.0).then(|| work / (ms * 1e-3));
            let rates = serde_json::json!({
                "mlp_tflops": rate(cost.mlp_flops / 1e12, kms(&["mlp_fwd", "mlp_bwd_data", "mlp_bwd_weights", "reduce_partials"])),
                "mlp_fwd_tflops": rate(cost.mlp_fwd_flops / 1e12, kms(&["mlp_fwd"])),
                "hash_corner_reads_g_s": rate(cost.hash_corner_reads / 1e9, kms(&["hash_fwd"])),
                "hash_grad_adds_g_s": rate(cost.hash_grad_adds / 1e9, kms(&["hash_bwd"])),
                "optimizer_gb_s": rate(cost.optimizer_bytes / 1e9, kms(&["sq_norm", "sq_norm_final", "adam"])),
            });
            out["gpu"] = serde_json::json!({
                "adapter": g.adapter().to_string(),
                "features": format!(
                    "{} activations, {}, {} hash scatter{}, {} atomics",
                    gpu::training_act(&g).name(),
                    mlp_variant(),
                    gpu::hash_scatter(&g),
                    if gpu::hash_scatter(&g) == "subgroup" {
                        format!(" ({}-lane subgroups)", g.limits().subgroup_max_size)
                    } else {
                        String::new()
                    },
                    serde_json::to_value(g.atomic_mode()).unwrap_or_default().as_str().unwrap_or("?"),
                ),
                "setup_s": setup,
                "ms_per_step": 1e3 * secs,
                "rays_per_s": n as f64 / secs,
                "samples_per_s": (n * spr) as f64 / secs,
                "dispatches_per_step": per(d.dispatches),
                "passes_per_step": per(d.passes),
                "upload_bytes_per_step": per(d.upload_bytes),
                "host_wait_ms_per_step": 1e3 * (tr.wait_s - w0) / steps as f64,
                "kernels": kernels,
                "rates": rates,
            });
        }
        Ok(None) => {}
        Err(e) => out["gpu_error"] = e.to_string().into(),
    }
    // CPU: the same step with the CPU kernels (forward, backward, Adam); not with BENCH_NO_CPU=1
    // (a second GPU run with other kernel variants).
    if std::env::var("BENCH_NO_CPU").is_ok_and(|v| v == "1") {
        println!("{out}");
        return;
    }
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
    let cost = flythrough_nerf::cost::StepCost::rendering(&m.cfg, (w * h) as usize);
    let mut out = serde_json::json!({"mode": "render", "width": w, "height": h, "device": dev,
        "cost": {"mlp_gflop": cost.mlp_flops / 1e9,
                 "hash_corner_reads_m": cost.hash_corner_reads / 1e6,
                 "samples_m": cost.samples / 1e6}});
    if dev == "gpu" {
        let g = gpu::open(Device::Gpu)
            .unwrap_or_else(|e| die(&e.to_string()))
            .expect("gpu");
        let mut r = GpuRenderer::new(g.clone(), &m, gpu::inference::default_chunk(&m, &g))
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
        out["mlp_variant"] = mlp_variant().into();
        out["chunk_rays"] = r.chunk().into();
        out["seconds_per_frame"] = s.into();
        // Per-kernel times of one more frame (each chunk waits for its timestamps), and the rates
        // they reach on the frame's counted work (src/cost.rs).
        r.profiler = flythrough_gpu::Profiler::new(&g, 256);
        if r.profiler.is_some() {
            let _ = r.render_frame(&cam(frames + 1), 0.0, &latent).unwrap();
            let mut kernels = serde_json::Map::new();
            for (name, ms, count) in r.profiler.as_ref().unwrap().totals() {
                kernels.insert(
                    name,
                    serde_json::json!({"ms_per_frame": ms, "dispatches_per_frame": count}),
                );
            }
            let kms = |k: &str| kernels.get(k).and_then(|v| v["ms_per_frame"].as_f64());
            let rate =
                |work: f64, ms: Option<f64>| ms.filter(|&t| t > 0.0).map(|t| work / (t * 1e-3));
            out["rates"] = serde_json::json!({
                "mlp_fwd_tflops": rate(cost.mlp_flops / 1e12, kms("mlp_fwd")),
                "hash_corner_reads_g_s": rate(cost.hash_corner_reads / 1e9, kms("hash_fwd")),
            });
            out["kernels"] = kernels.into();
        }
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
        let o = flythrough_nerf::inference::render_norm(&m, &rays, &latent);
        let s = t0.elapsed().as_secs_f64();
        assert_eq!(o.rgb.len(), rays.len());
        out["rows_rendered"] = rows.into();
        out["seconds_per_frame"] = (s * h as f64 / rows as f64).into();
        out["extrapolated"] = true.into();
    }
    println!("{out}");
}

/// A scene to train on: photos, their exposures and a COLMAP model (`sfm_dir/sparse`).
struct Scene {
    images: flythrough_core::RedactedImages,
    manifest: flythrough_core::Manifest,
    sfm_dir: std::path::PathBuf,
}

/// The synthetic venue with its ground-truth model and EXIF exposures (as `bench_train`).
fn synth_scene(dir: &std::path::Path, w: u32, h: u32, n: usize) -> Scene {
    let t = flythrough_testkit::synth_training_scene(dir, w, h, n);
    Scene {
        images: t.images,
        manifest: t.manifest,
        sfm_dir: t.sfm_dir,
    }
}

/// A real capture of `../shared/data` (or `$FLYTHROUGH_SHARED_DATA`) with its reference poses:
/// `fox` (instant-ngp transforms.json, COLMAP's estimate) or `redkitchen_every10` (7-Scenes
/// KinectFusion poses, metric).
fn real_scene(name: &str, dir: &std::path::Path) -> Scene {
    let Some(set) = flythrough_testkit::testdata::shared_data(name) else {
        die(&format!(
            "shared data {name} not found (set FLYTHROUGH_SHARED_DATA)"
        ))
    };
    let images = flythrough_testkit::cleared_images(&set.join("images"))
        .unwrap_or_else(|e| die(&e.to_string()));
    let rec = match name {
        "fox" => flythrough_sfm::eval::parse_nerf_transforms(
            &std::fs::read_to_string(set.join("transforms.json")).unwrap(),
        ),
        _ => flythrough_sfm::eval::parse_7scenes(
            &set.join("poses"),
            images.names(),
            (585.0, 320.0, 240.0, 640, 480),
        ),
    }
    .unwrap_or_else(|e| die(&e));
    let sparse = dir.join("sfm").join("sparse");
    rec.write_text(&sparse)
        .unwrap_or_else(|e| die(&e.to_string()));
    Scene {
        images,
        manifest: flythrough_core::Manifest::default(),
        sfm_dir: dir.join("sfm"),
    }
}

fn venue_mode(args: &[String]) {
    if args.len() < 4 {
        die(
            "usage: bench_gpu venue <synth|fox|redkitchen_every10> <seconds> <cpu|gpu> <out dir> [width height photos]",
        );
    }
    let seconds: f64 = args[1].parse().unwrap_or_else(|_| die("seconds"));
    let device: Device = args[2].parse().unwrap_or_else(|e: String| die(&e));
    let dir = std::path::PathBuf::from(&args[3]);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let scene = match args[0].as_str() {
        "synth" => synth_scene(&dir, num(4, 640) as u32, num(5, 480) as u32, num(6, 40)),
        name => real_scene(name, &dir),
    };
    let mut cfg = TrainConfig::default();
    if let Ok(extra) = std::env::var("BENCH_TRAIN_TOML") {
        // Extra `[train]` keys, e.g. BENCH_TRAIN_TOML='batch_rays = 4096'.
        let text = format!("[venue]\nname = \"b\"\nphotos = \".\"\n[train]\n{extra}\n");
        cfg = flythrough_core::Config::parse(&text, std::path::Path::new("BENCH_TRAIN_TOML"))
            .unwrap_or_else(|e| die(&e.to_string()))
            .train;
    }
    cfg.device = device;
    cfg.max_seconds = seconds;
    cfg.steps = 1_000_000;
    let t0 = Instant::now();
    let (o, w) = (dir.join("out"), dir.join("work"));
    let (images, manifest) = (&scene.images, Some(&scene.manifest));
    let s = flythrough_nerf::run(&cfg, images, manifest, &scene.sfm_dir, &o, &w)
        .unwrap_or_else(|e| die(&e.to_string()));
    // Time to 30 dB of the training batches (metrics.jsonl: mean batch PSNR per metrics_every steps).
    let t30 = std::fs::read_to_string(dir.join("out").join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["psnr"].as_f64().unwrap_or(0.0) >= 30.0)
        .and_then(|v| v["elapsed_s"].as_f64());
    let mut out = serde_json::json!({"mode": "venue", "scene": args[0], "budget_s": seconds, "wall_s": t0.elapsed().as_secs_f64(), "batch_psnr_30db_at_s": t30});
    if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(&s) {
        for (k, v) in m {
            out[k.as_str()] = v;
        }
    }
    println!("{out}");
}

/// Real GPU training through the driver for a time budget (see the file's doc).
fn train_mode(args: &[String]) {
    if args.len() < 3 {
        die("usage: bench_gpu train <batch_rays> <seconds> <out dir> [tiny]");
    }
    let n: usize = args[0].parse().unwrap_or_else(|_| die("batch_rays"));
    let seconds: f64 = args[1].parse().unwrap_or_else(|_| die("seconds"));
    let dir = std::path::PathBuf::from(&args[2]);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = TrainConfig::default();
    if args.get(3).map(|s| s == "tiny").unwrap_or(false) {
        tiny(&mut cfg);
    }
    cfg.batch_rays = n;
    cfg.steps = 1_000_000;
    cfg.max_seconds = seconds;
    cfg.checkpoint_every = 0;
    cfg.checkpoint_seconds = std::env::var("BENCH_CKPT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or((seconds / 4.0).max(1.0));
    let g = gpu::open(Device::Gpu)
        .unwrap_or_else(|e| die(&e.to_string()))
        .unwrap_or_else(|| die("no GPU adapter"));
    let scene = synth_scene(&dir, 160, 120, 12);
    let ds = flythrough_nerf::data::Dataset::load(
        &scene.images,
        Some(&scene.manifest),
        &scene.sfm_dir,
        &flythrough_nerf::data::LoadOptions::from_config(&cfg, &[]),
    )
    .unwrap_or_else(|e| die(&e.to_string()));
    // Warm-up: the kernels compile on first use (cached on the device for the measured run).
    let t0 = Instant::now();
    let mut warm = cfg.clone();
    (warm.steps, warm.max_seconds) = (2, 0.0);
    flythrough_nerf::gpu::train::train(&warm, &ds, &dir.join("warm-up"), g.clone())
        .unwrap_or_else(|e| die(&e.to_string()));
    let setup = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let t = flythrough_nerf::gpu::train::train(&cfg, &ds, &dir.join("work"), g.clone())
        .unwrap_or_else(|e| die(&e.to_string()));
    let wall = t0.elapsed().as_secs_f64();
    let spr = cfg.prop_samples.iter().sum::<usize>() + cfg.nerf_samples;
    let c = t.gpu_per_step.unwrap_or_default();
    let out = serde_json::json!({
        "mode": "train",
        "adapter": g.adapter().to_string(),
        "batch_rays": n,
        "samples_per_ray": spr,
        "budget_s": seconds,
        "setup_s": setup,
        "wall_s": wall,
        "steps": t.steps_this_call,
        "ms_per_step": 1e3 * wall / t.steps_this_call.max(1) as f64,
        "samples_per_s": t.samples_per_s,
        "rays_per_s": t.rays_per_s,
        "checkpoint_seconds": cfg.checkpoint_seconds,
        "checkpoints": t.checkpoints_written,
        "dispatches_per_step": c.dispatches_per_step,
        "passes_per_step": c.passes_per_step,
        "upload_bytes_per_step": c.upload_bytes_per_step,
        "readback_bytes_per_step": c.readback_bytes_per_step,
        "submits_per_step": c.submits_per_step,
        "host_wait_ms_per_step": t.host_wait_ms_per_step,
        "checkpoint_wait_ms_per_step": t.checkpoint_wait_ms_per_step,
    });
    println!("{out}");
}

/// The MLP kernels' variant of this process, as the table names it ([`MLP_DEFAULT`] unless
/// `FLYTHROUGH_GPU_MLP_WEIGHTS` or `FLYTHROUGH_GPU_MLP_ROWS` say otherwise).
fn mlp_variant() -> String {
    format!(
        "MLP weights from {} memory, {}x4 MLP register tiles",
        gpu::mlp_weights(),
        gpu::mlp_rows()
    )
}

/// [`mlp_variant`] without either variable.
const MLP_DEFAULT: &str = "MLP weights from global memory, 4x4 MLP register tiles";

/// Markdown tables from the JSON lines of the other modes (files given, or stdin).
fn table_mode(args: &[String]) {
    let mut text = String::new();
    if args.is_empty() {
        use std::io::Read;
        std::io::stdin().read_to_string(&mut text).unwrap();
    }
    for a in args {
        text.push_str(&std::fs::read_to_string(a).unwrap_or_default());
        text.push('\n');
    }
    let rows: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let f = |v: &serde_json::Value, scale: f64, digits: usize| {
        v.as_f64()
            .map(|x| format!("{:.*}", digits, x / scale))
            .unwrap_or_else(|| "-".into())
    };
    let adapter = rows
        .iter()
        .find_map(|r| {
            r["gpu"]["adapter"]
                .as_str()
                .or(r["adapter"].as_str())
                .map(String::from)
        })
        .unwrap_or_else(|| "(none)".into());
    println!("GPU adapter: {adapter}");
    if let Some(f) = rows.iter().find_map(|r| r["gpu"]["features"].as_str()) {
        println!("GPU training kernels: {f}");
    }
    println!();
    println!("| measure | GPU | CPU | GPU/CPU |\n|---|---:|---:|---:|");
    for r in rows.iter().filter(|r| r["mode"] == "step") {
        let (g, c) = (&r["gpu"], &r["cpu"]);
        let ratio = |k: &str| match (g[k].as_f64(), c[k].as_f64()) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.1}x", a / b),
            _ => "-".into(),
        };
        let tag = match g["features"].as_str() {
            Some(f) => format!(
                "{} rays x {} samples, {f}",
                r["batch_rays"], r["samples_per_ray"]
            ),
            None => format!(
                "{} rays x {} samples",
                r["batch_rays"], r["samples_per_ray"]
            ),
        };
        println!(
            "| training samples/s, M ({tag}) | {} | {} | {} |",
            f(&g["samples_per_s"], 1e6, 2),
            f(&c["samples_per_s"], 1e6, 2),
            ratio("samples_per_s")
        );
        println!(
            "| training rays/s, k ({tag}) | {} | {} | {} |",
            f(&g["rays_per_s"], 1e3, 1),
            f(&c["rays_per_s"], 1e3, 1),
            ratio("rays_per_s")
        );
        println!(
            "| ms per training step ({tag}) | {} | {} (CPU threads: {}) | |",
            f(&g["ms_per_step"], 1.0, 2),
            f(&c["ms_per_step"], 1.0, 1),
            c["threads"]
        );
    }
    for r in rows.iter().filter(|r| r["mode"] == "train") {
        let tag = format!(
            "{} rays x {} samples, fresh batches, checkpoints every {} s: {} written, {} steps",
            r["batch_rays"],
            r["samples_per_ray"],
            r["checkpoint_seconds"],
            r["checkpoints"],
            r["steps"]
        );
        println!(
            "| training samples/s, M, train mode ({tag}) | {} | | |",
            f(&r["samples_per_s"], 1e6, 2)
        );
        println!(
            "| training rays/s, k, train mode | {} | | |",
            f(&r["rays_per_s"], 1e3, 1)
        );
    }
    for r in rows.iter().filter(|r| r["mode"] == "render") {
        let w = format!("{}x{}", r["width"], r["height"]);
        let v = f(&r["seconds_per_frame"], 1.0, 3)
            + if r["extrapolated"] == true {
                " (band, extrapolated)"
            } else {
                ""
            };
        if r["device"] == "gpu" {
            let w = match r["mlp_variant"].as_str() {
                Some(m) if m != MLP_DEFAULT => format!("{w} ({m})"),
                _ => w,
            };
            println!("| s per {w} 360° frame | {v} | | |");
        } else {
            println!("| s per {w} 360° frame | | {v} | |");
        }
    }
    for r in rows.iter().filter(|r| r["mode"] == "validation") {
        let v = if r["layer_loaded"] != true {
            "the layer did not load".to_string()
        } else {
            format!(
                "{} errors, {} warnings{}",
                r["errors"],
                r["warnings"],
                if r["runs_ok"] == true {
                    ""
                } else {
                    " (a run failed)"
                }
            )
        };
        println!(
            "| Vulkan validation layer (core + synchronization): a tiny training step and frame | {v} | | |"
        );
    }
    for r in rows.iter().filter(|r| r["mode"] == "render_baked") {
        let w = format!("{}x{}", r["width"], r["height"]);
        let v = f(&r["seconds_per_frame"], 1.0, 3)
            + if r["extrapolated"] == true {
                " (band, extrapolated)"
            } else {
                ""
            };
        let label = format!(
            "s per {w} 360° frame, baked model ({}^3, {} blocks)",
            r["grid_res"], r["stored_blocks"]
        );
        if r["device"] == "gpu" {
            println!("| {label} | {v} | | |");
        } else {
            println!("| {label} | | {v} | |");
        }
    }
    for r in rows.iter().filter(|r| r["mode"] == "venue") {
        let dev = r["device"].as_str().unwrap_or("?");
        let v = format!(
            "{} dB ({} steps, {}k rays/s{})",
            f(&r["psnr_holdout"], 1.0, 2),
            r["steps"],
            f(&r["rays_per_s"], 1e3, 1),
            match r["batch_psnr_30db_at_s"].as_f64() {
                Some(t) => format!(", batch PSNR 30 dB at {t:.0} s"),
                None => String::new(),
            }
        );
        let label = format!(
            "held-out PSNR, {} {}x{}, {} s",
            r["scene"].as_str().unwrap_or("?"),
            r["train_width"],
            r["train_height"],
            r["budget_s"]
        );
        if dev == "gpu" {
            println!("| {label} | {v} | | |");
        } else {
            println!("| {label} | | {v} | |");
        }
    }
    // Per GPU step: what the host sends and how long it is blocked.
    let per_step: Vec<(String, &serde_json::Value)> = rows
        .iter()
        .filter_map(|r| match r["mode"].as_str() {
            Some("step") => Some((
                format!(
                    "step, {} rays (one batch, no read-backs; {})",
                    r["batch_rays"],
                    r["gpu"]["features"].as_str().unwrap_or("")
                ),
                &r["gpu"],
            )),
            Some("train") => Some(("train (fresh batches, metrics, checkpoints)".into(), r)),
            _ => None,
        })
        .filter(|(_, v)| v["dispatches_per_step"].is_number())
        .collect();
    if !per_step.is_empty() {
        println!(
            "\nPer GPU training step:\n\n| mode | dispatches | compute passes | upload bytes | host wait, ms | ms per step |\n|---|---:|---:|---:|---:|---:|"
        );
        for (mode, v) in per_step {
            println!(
                "| {mode} | {} | {} | {} | {} | {} |",
                f(&v["dispatches_per_step"], 1.0, 1),
                f(&v["passes_per_step"], 1.0, 1),
                f(&v["upload_bytes_per_step"], 1.0, 0),
                f(&v["host_wait_ms_per_step"], 1.0, 2),
                f(&v["ms_per_step"], 1.0, 2)
            );
        }
    }
    // Two batch sizes with the same kernels: ms per step = fixed + per ray x rays.
    let steps: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["mode"] == "step" && r["gpu"]["ms_per_step"].is_number())
        .collect();
    for (i, a) in steps.iter().enumerate() {
        for b in &steps[i + 1..] {
            // The smaller batch first.
            let (a, b) = if a["batch_rays"].as_f64() > b["batch_rays"].as_f64() {
                (*b, *a)
            } else {
                (*a, *b)
            };
            let (na, nb) = (
                a["batch_rays"].as_f64().unwrap_or(0.0),
                b["batch_rays"].as_f64().unwrap_or(0.0),
            );
            if a["gpu"]["features"] != b["gpu"]["features"] || na == nb || na * nb == 0.0 {
                continue;
            }
            let (ta, tb) = (
                a["gpu"]["ms_per_step"].as_f64().unwrap_or(0.0),
                b["gpu"]["ms_per_step"].as_f64().unwrap_or(0.0),
            );
            let (fixed, per_ray) = step_line(na, ta, nb, tb);
            let spr = a["samples_per_ray"].as_f64().unwrap_or(0.0);
            println!(
                "\nGPU step time against the batch ({na} and {nb} rays, same kernels): {fixed:.3} ms per \
                 step fixed + {:.3} us per ray ({:.2} M samples/s at most, however large the batch); \
                 the {nb}-ray step costs {:.2}x the {na}-ray one (README: at 4x the rays, above about \
                 1.6x the smaller batch trains better in the same time).",
                1e3 * per_ray,
                spr / (per_ray * 1e-3) / 1e6,
                tb / ta
            );
        }
    }
    // Per kernel: the first step run, and beside it each run of the same batch with other kernel
    // variants (features), a column each.
    let step_rows: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["mode"] == "step" && r["gpu"]["kernels"].is_object())
        .collect();
    if let Some(first) = step_rows.first() {
        let kernels = |r: &serde_json::Value| kernel_times(&r["gpu"]["kernels"], "step");
        let mut ks = kernels(first);
        let mut seen = vec![first["gpu"]["features"].clone()];
        let mut others = Vec::new();
        for r in &step_rows[1..] {
            let f = r["gpu"]["features"].clone();
            if r["batch_rays"] == first["batch_rays"] && !seen.contains(&f) {
                seen.push(f.clone());
                others.push((kernels(r), f));
            }
        }
        let total: f64 = ks.iter().map(|k| k.1).sum();
        let feats = first["gpu"]["features"].as_str().unwrap_or("");
        let mut head = format!("| kernel | ms per step ({feats}) | share | dispatches |");
        let mut rule = "|---|---:|---:|---:|".to_string();
        // A variant's column names only what differs from the first run's features.
        let first_parts: Vec<&str> = feats.split(", ").collect();
        for (_, f) in &others {
            let diff: Vec<&str> = f
                .as_str()
                .unwrap_or("")
                .split(", ")
                .filter(|p| !first_parts.contains(p))
                .collect();
            head += &format!(" ms per step ({}) |", diff.join(", "));
            rule += "---:|";
        }
        println!(
            "\nPer-kernel GPU time of one training step (timestamp queries):\n\n{head}\n{rule}"
        );
        ks.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (k, ms, n) in ks {
            let share = 100.0 * ms / total.max(1e-12);
            let mut line = format!("| {k} | {ms:.3} | {share:.1} % | {n} |");
            for (o, _) in &others {
                let ms2 = o
                    .iter()
                    .find(|x| x.0 == k)
                    .map(|x| format!("{:.3}", x.1))
                    .unwrap_or_else(|| "-".into());
                line += &format!(" {ms2} |");
            }
            println!("{line}");
        }
    }
    // A GPU frame's kernels and its counted work.
    for r in rows
        .iter()
        .filter(|r| r["mode"] == "render" && r["kernels"].is_object())
    {
        let mut ks = kernel_times(&r["kernels"], "frame");
        ks.sort_by(|a, b| b.1.total_cmp(&a.1));
        let total: f64 = ks.iter().map(|k| k.1).sum();
        let variant = match r["mlp_variant"].as_str() {
            Some(m) if m != MLP_DEFAULT => format!(", {m}"),
            _ => String::new(),
        };
        println!(
            "\nPer-kernel GPU time of one {}x{} 360° frame (chunks of up to {} rays{variant}; kernels alone: \
             {:.1} ms):\n\n| kernel | ms per frame | share | dispatches |\n|---|---:|---:|---:|",
            r["width"], r["height"], r["chunk_rays"], total
        );
        for (k, ms, n) in ks {
            println!(
                "| {k} | {ms:.2} | {:.1} % | {n} |",
                100.0 * ms / total.max(1e-12)
            );
        }
        let (c, q) = (&r["cost"], &r["rates"]);
        println!(
            "\nWork of the frame: {} M samples, MLP products {} GFLOP -> {} GFLOP/s in mlp_fwd; hash \
             grids {} M corner reads -> {} G/s in hash_fwd.",
            f(&c["samples_m"], 1.0, 1),
            f(&c["mlp_gflop"], 1.0, 1),
            f(&q["mlp_fwd_tflops"], 1e-3, 1),
            f(&c["hash_corner_reads_m"], 1.0, 0),
            f(&q["hash_corner_reads_g_s"], 1.0, 2),
        );
    }
    // The counted work of a step (crates/nerf/src/cost.rs) over the kernels' measured times.
    for r in step_rows {
        let (c, q) = (&r["cost"], &r["gpu"]["rates"]);
        if !c.is_object() || !q.is_object() {
            continue;
        }
        println!(
            "\nWork of one step ({} rays; {}): MLP products {} GFLOP -> {} GFLOP/s in the MLP \
             kernels (forward alone {}); hash grids {} M corner reads -> {} G/s in hash_fwd, {} M \
             gradient adds -> {} G/s in hash_bwd; optimiser {} MB ({} M parameters) -> {} GB/s in \
             sq_norm and adam.",
            r["batch_rays"],
            r["gpu"]["features"].as_str().unwrap_or(""),
            f(&c["mlp_gflop"], 1.0, 3),
            f(&q["mlp_tflops"], 1e-3, 1),
            f(&q["mlp_fwd_tflops"], 1e-3, 1),
            f(&c["hash_corner_reads_m"], 1.0, 1),
            f(&q["hash_corner_reads_g_s"], 1.0, 2),
            f(&c["hash_grad_adds_m"], 1.0, 1),
            f(&q["hash_grad_adds_g_s"], 1.0, 2),
            f(&c["optimizer_mb"], 1.0, 0),
            f(&c["params_m"], 1.0, 2),
            f(&q["optimizer_gb_s"], 1.0, 1),
        );
    }
}

/// `(kernel, ms, dispatches)` of a `kernels` object of the JSON lines, per `unit` (`step` or
/// `frame`: the `ms_per_<unit>` and `dispatches_per_<unit>` fields).
fn kernel_times(kernels: &serde_json::Value, unit: &str) -> Vec<(String, f64, f64)> {
    let (ms, n) = (format!("ms_per_{unit}"), format!("dispatches_per_{unit}"));
    kernels
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let ms = v[&ms].as_f64().unwrap_or(0.0);
            (k, ms, v[&n].as_f64().unwrap_or(0.0))
        })
        .collect()
}

/// The line `ms = fixed + per_ray x rays` through two step timings: (fixed ms, ms per ray). The
/// fixed part (Adam over every parameter, launches, barriers) is what a larger batch amortises.
fn step_line(rays_a: f64, ms_a: f64, rays_b: f64, ms_b: f64) -> (f64, f64) {
    let per_ray = (ms_b - ms_a) / (rays_b - rays_a);
    (ms_a - per_ray * rays_a, per_ray)
}

/// The adapters, and the hardware one a device check measures (exit 3 when there is none).
fn smoke_mode() {
    use flythrough_gpu::{Gpu, Selection};
    let all = flythrough_gpu::list_adapters();
    for a in &all {
        eprintln!(
            "bench_gpu: adapter {} ({}, {}, software: {})",
            a.name, a.backend, a.driver, a.software
        );
    }
    match Gpu::shared(Selection::Hardware) {
        Ok(Some(g)) => println!(
            "{}",
            serde_json::json!({"mode": "smoke", "adapter": g.adapter().to_string(),
                "adapters": all.len()})
        ),
        Ok(None) => {
            eprintln!(
                "bench_gpu: no hardware GPU adapter among {} seen (is the Vulkan loader installed \
                 and VK_DRIVER_FILES pointing at the driver's ICD file?)",
                all.len()
            );
            std::process::exit(3)
        }
        Err(e) => {
            eprintln!("bench_gpu: {e}");
            std::process::exit(3)
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(|s| s.as_str()) {
        Some("step") => step_mode(&args[1..]),
        Some("render") => render_mode(&args[1..]),
        Some("train") => train_mode(&args[1..]),
        Some("venue") => venue_mode(&args[1..]),
        Some("table") => table_mode(&args[1..]),
        Some("smoke") => smoke_mode(),
        _ => die("usage: bench_gpu smoke|step|train|venue|render|table ... (see the file's doc)"),
    }
}
