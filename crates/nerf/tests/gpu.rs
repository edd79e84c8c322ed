//! The GPU back end end to end on whatever adapter there is (Mesa lavapipe in CI; `CI=true`
//! without an adapter fails, elsewhere these skip with one line). Tiny scenes and step counts:
//! lavapipe runs about 1 GFLOP/s.
//!
//! - a frame rendered on the GPU from a CPU-trained checkpoint matches the CPU render (>= 40 dB),
//!   for a photo camera and for a 360° camera;
//! - 30 GPU training steps follow the CPU run's loss curve within 2 % at every step (same batches);
//! - checkpoints are back-end neutral: a GPU run killed after a checkpoint resumes there, a GPU run
//!   resumes on the CPU and the other way round, and a GPU-trained model renders the same on both
//!   back ends;
//! - a batch that cannot fit the adapter's bindings is refused with the config key to lower;
//! - checkpoints fall due by time and by steps through the one driver on both back ends, and a
//!   background write that fails is an error naming the file.
#![allow(clippy::field_reassign_with_default, clippy::explicit_counter_loop)]
mod common;

use flythrough_core::config::{Device, TrainConfig};
use flythrough_nerf::data::Dataset;
use flythrough_nerf::gpu::FrameCamera;
use flythrough_nerf::{NerfRenderer, RenderOptions, train};
use image::RgbImage;

fn psnr_u8(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let mse = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| ((x as f64 - y as f64) / 255.0).powi(2))
        .sum::<f64>()
        / a.as_raw().len() as f64;
    -10.0 * mse.max(1e-12).log10()
}

/// common::small_gpu_cfg with a checkpoint every 10 steps.
fn cfg() -> TrainConfig {
    TrainConfig {
        checkpoint_every: 10,
        ..common::small_gpu_cfg()
    }
}

fn dataset(dir: &std::path::Path, c: &TrainConfig) -> Dataset {
    common::small_room_dataset(dir, c)
}

fn losses(work: &std::path::Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(work.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap())
        })
        .collect()
}

#[test]
fn gpu_frames_of_a_cpu_trained_checkpoint_match_the_cpu() {
    let Some(_) = flythrough_testkit::test_gpu() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg();
    c.steps = 100;
    c.batch_rays = 256;
    let ds = dataset(dir.path(), &c);
    let work = dir.path().join("work");
    train::train(&c, &ds, &work).unwrap();
    let ck = work.join("checkpoints").join("last.safetensors");
    let cpu = NerfRenderer::from_checkpoint(&ck).unwrap();
    let gpu = NerfRenderer::from_checkpoint(&ck)
        .unwrap()
        .on_device(Device::Gpu)
        .unwrap();
    assert_eq!(gpu.device().device, "gpu");
    assert!(gpu.device().adapter.is_some());
    let ph = &ds.photos[ds.holdout[0]];
    let opts = RenderOptions {
        exposure_ev: Some(ph.ev + 0.5),
        ..Default::default()
    };
    let a = cpu.render_camera(&ph.cam, &ph.pose, &opts);
    let b = gpu.render_camera(&ph.cam, &ph.pose, &opts);
    let p = psnr_u8(&a, &b);
    // The render must show the room, not a flat colour (else the comparison tests little).
    let mean = a.as_raw().iter().map(|&v| v as f64).sum::<f64>() / a.as_raw().len() as f64;
    let var = a
        .as_raw()
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / a.as_raw().len() as f64;
    println!(
        "photo frame: GPU vs CPU {p:.1} dB (render std {:.1} levels)",
        var.sqrt()
    );
    assert!(var.sqrt() > 5.0);
    assert!(p >= 40.0, "GPU vs CPU render {p:.2} dB < 40");
    // A 360° frame: the GPU generates the rays; the CPU renders the same rays row by row (the cone
    // radius depends on the row's latitude).
    let (w, h) = (64u32, 32u32);
    let c0 = ph.pose.center();
    let norm = cpu.norm();
    let up = nalgebra::Vector3::new(0.0, -1.0, 0.0);
    let f = nalgebra::Vector3::new(0.3, 0.0, 1.0).normalize();
    let right = f.cross(&up);
    let fc = FrameCamera::equirect(&norm, w, h, c0.into(), right.into(), f.into(), up.into());
    let g_img = match gpu.start_frame(&fc, &opts) {
        Some(t) => t.unwrap().wait().unwrap(),
        None => panic!("a GPU renderer renders whole frames"),
    };
    let mut c_img = RgbImage::new(w, h);
    for y in 0..h {
        let lat = std::f64::consts::PI * (0.5 - (y as f64 + 0.5) / h as f64);
        let mut o = Vec::new();
        let mut d = Vec::new();
        for x in 0..w {
            let lon = 2.0 * std::f64::consts::PI * ((x as f64 + 0.5) / w as f64 - 0.5);
            let dir =
                right * (lat.cos() * lon.sin()) + f * (lat.cos() * lon.cos()) + up * lat.sin();
            o.push([c0.x as f32, c0.y as f32, c0.z as f32]);
            d.push([dir.x as f32, dir.y as f32, dir.z as f32]);
        }
        let radius =
            0.5773502691896258 * std::f64::consts::PI / h as f64 * lat.cos().max(1e-3).sqrt();
        let out = cpu.render_rays(
            &o,
            &d,
            &RenderOptions {
                radius_px: Some(radius as f32),
                ..opts.clone()
            },
        );
        for (x, c) in out.rgb.iter().enumerate() {
            let q = |v: f32| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
            c_img.put_pixel(x as u32, y, image::Rgb([q(c[0]), q(c[1]), q(c[2])]));
        }
    }
    let p = psnr_u8(&c_img, &g_img);
    println!("360° frame: GPU vs CPU {p:.1} dB");
    assert!(p >= 40.0, "GPU vs CPU 360° frame {p:.2} dB < 40");
}

#[test]
fn thirty_gpu_steps_follow_the_cpu_loss_curve() {
    let Some(g) = flythrough_testkit::test_gpu() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let c = cfg();
    let ds = dataset(dir.path(), &c);
    let (wc, wg) = (dir.path().join("cpu"), dir.path().join("gpu"));
    let t0 = std::time::Instant::now();
    train::train(&c, &ds, &wc).unwrap();
    let t_cpu = t0.elapsed().as_secs_f64();
    // The MLP kernels' weights and register tiles where FLYTHROUGH_GPU_MLP_WEIGHTS and
    // FLYTHROUGH_GPU_MLP_ROWS ask (scripts/test.sh reruns this file with `workgroup` and `8`): the
    // staged rows fit beside this model's tile on lavapipe's 32 KB.
    let mcfg = flythrough_nerf::model::ModelConfig::from_train(&c, ds.train.len());
    let shape = flythrough_nerf::gpu::model::mlp_shape(&mcfg, &g).unwrap();
    assert_eq!(shape.stage, flythrough_nerf::gpu::mlp_stage(), "{shape:?}");
    assert_eq!(shape.rb, flythrough_nerf::gpu::mlp_rows(), "{shape:?}");
    let t0 = std::time::Instant::now();
    let trained = flythrough_nerf::gpu::train::train(&c, &ds, &wg, g).unwrap();
    let t_gpu = t0.elapsed().as_secs_f64();
    assert_eq!(trained.meta.step, 30);
    let (a, b) = (losses(&wc), losses(&wg));
    assert_eq!(a.len(), 30);
    assert_eq!(
        b.iter().map(|x| x.0).collect::<Vec<_>>(),
        (1..=30).collect::<Vec<_>>()
    );
    let mut worst = 0f64;
    for ((s, la), (_, lb)) in a.iter().zip(&b) {
        let rel = (la - lb).abs() / la.abs();
        worst = worst.max(rel);
        assert!(rel < 0.02, "step {s}: CPU loss {la:.5} vs GPU {lb:.5}");
    }
    println!(
        "30 steps: loss {:.4} -> {:.4} (CPU) / {:.4} (GPU), worst step difference {:.2} %, CPU {t_cpu:.1} s, GPU {t_gpu:.1} s",
        a[0].1,
        a[29].1,
        b[29].1,
        100.0 * worst
    );
    assert!(a[29].1 < 0.8 * a[0].1, "the loss should fall over 30 steps");
}

#[test]
fn checkpoints_resume_across_back_ends_and_render_on_both() {
    let Some(g) = flythrough_testkit::test_gpu() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg();
    c.metrics_every = 5;
    let ds = dataset(dir.path(), &c);
    // GPU 0 -> 20, killed after its step-10 checkpoint (the checkpoint arrives asynchronously)
    // and resumed there on the GPU; then CPU 20 -> 30.
    let w1 = dir.path().join("a");
    c.steps = 20;
    let kill = flythrough_core::stage::Hooks {
        stop_after_checkpoint: Some(std::sync::Arc::new(|step| step >= 10)),
        ..Default::default()
    };
    let e = flythrough_nerf::gpu::train::train_with(&c, &ds, &w1, g.clone(), &kill).err();
    assert!(
        matches!(e, Some(flythrough_nerf::NerfError::Interrupted(10))),
        "{e:?}"
    );
    let t = flythrough_nerf::gpu::train::train(&c, &ds, &w1, g.clone()).unwrap();
    assert_eq!((t.resumed_from, t.meta.step), (Some(10), 20));
    c.steps = 30;
    let t = train::train(&c, &ds, &w1).unwrap();
    assert_eq!((t.resumed_from, t.meta.step), (Some(20), 30));
    // CPU 0 -> 20, then GPU 20 -> 30: the Adam state travels too (step count 30 at the end).
    let w2 = dir.path().join("b");
    c.steps = 20;
    train::train(&c, &ds, &w2).unwrap();
    c.steps = 30;
    let t = flythrough_nerf::gpu::train::train(&c, &ds, &w2, g).unwrap();
    assert_eq!((t.resumed_from, t.meta.step), (Some(20), 30));
    assert_eq!(t.meta.adam.map(|a| a.1), Some(30));
    let steps: Vec<u64> = losses(&w2).iter().map(|x| x.0).collect();
    assert_eq!(steps, vec![5, 10, 15, 20, 25, 30]);
    // The GPU-trained checkpoint renders the same on the CPU and the GPU.
    let ck = w2.join("checkpoints").join("last.safetensors");
    let cpu = NerfRenderer::from_checkpoint(&ck).unwrap();
    let gpu = NerfRenderer::from_checkpoint(&ck)
        .unwrap()
        .on_device(Device::Gpu)
        .unwrap();
    let ph = &ds.photos[ds.train[1]];
    let opts = RenderOptions::default();
    let p = psnr_u8(
        &cpu.render_camera(&ph.cam, &ph.pose, &opts),
        &gpu.render_camera(&ph.cam, &ph.pose, &opts),
    );
    println!("GPU-trained checkpoint: CPU vs GPU render {p:.1} dB");
    assert!(p >= 40.0, "{p:.2} dB");
}

#[test]
fn a_batch_too_large_for_the_adapter_names_the_key_to_lower() {
    let Some(g) = flythrough_testkit::test_gpu() else {
        return;
    };
    let mut c = cfg();
    c.batch_rays = 1 << 20;
    let model = flythrough_nerf::model::Model::new(
        flythrough_nerf::model::ModelConfig::from_train(&c, 3),
        0.1,
        0,
    );
    // Level 0's fenceposts alone: batch_rays x 13 floats.
    let need = 4 * (c.batch_rays as u64) * 13;
    if need <= g.limits().max_storage_binding_bytes {
        println!(
            "this adapter binds {} bytes: nothing to refuse",
            g.limits().max_storage_binding_bytes
        );
        return;
    }
    let adams: Vec<_> = model
        .params
        .iter()
        .map(|p| flythrough_nerf::kernels::Adam::new(p.len(), train::ADAM))
        .collect();
    let e = flythrough_nerf::gpu::train::GpuTrainer::new(g, &model, &adams, &c)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("batch_rays") && e.contains("MiB"), "{e}");
}

/// The steps the stop hook was asked about (it never stops the run).
fn recording_hook() -> (
    flythrough_core::stage::Hooks,
    std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let hooks = flythrough_core::stage::Hooks {
        stop_after_checkpoint: Some(std::sync::Arc::new(move |step| {
            s.lock().unwrap().push(step);
            false
        })),
        ..Default::default()
    };
    (hooks, seen)
}

/// The checkpoint cadence through the driver on both back ends (the CPU always, the GPU when
/// there is one), with no clock to race: `checkpoint_seconds` so small that every step is due,
/// 0 (by steps only, or none), and `checkpoint_every`. The stop hook is asked after each periodic
/// checkpoint once it is on disk; the end always writes one.
#[test]
fn checkpoints_fall_due_by_time_and_by_steps_on_both_back_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg();
    c.steps = 6;
    let ds = dataset(dir.path(), &c);
    let gpu = flythrough_testkit::test_gpu();
    let cases: [(f64, usize, Vec<usize>); 3] = [
        // Every step is due by time (1 ns), never the last: the end writes its own.
        (1e-9, 0, vec![1, 2, 3, 4, 5]),
        (0.0, 2, vec![2, 4]),
        (0.0, 0, vec![]),
    ];
    for (k, (secs, every, want)) in cases.into_iter().enumerate() {
        c.checkpoint_seconds = secs;
        c.checkpoint_every = every;
        for dev in ["cpu", "gpu"] {
            let work = dir.path().join(format!("{dev}{k}"));
            let (hooks, seen) = recording_hook();
            let t = match (dev, &gpu) {
                ("cpu", _) => train::train_with(&c, &ds, &work, &hooks).unwrap(),
                (_, Some(g)) => {
                    flythrough_nerf::gpu::train::train_with(&c, &ds, &work, g.clone(), &hooks)
                        .unwrap()
                }
                _ => continue,
            };
            let seen = seen.lock().unwrap().clone();
            println!("{dev}: checkpoint_seconds {secs}, checkpoint_every {every}: {seen:?}");
            assert_eq!(seen, want, "{dev}");
            assert_eq!(t.checkpoints_written, want.len(), "{dev}");
            let (_, adam, meta) =
                flythrough_nerf::checkpoint::load(&work.join("checkpoints/last.safetensors"))
                    .unwrap();
            assert_eq!((meta.step, adam.is_some()), (6, true), "{dev}");
        }
    }
}

/// A writer that cannot write surfaces as an error naming the file at the driver's next wait.
#[test]
fn a_failed_background_write_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg();
    c.steps = 4;
    c.checkpoint_every = 2;
    let ds = dataset(dir.path(), &c);
    let work = dir.path().join("work");
    // A directory where the checkpoint goes: the rename onto it fails.
    std::fs::create_dir_all(work.join("checkpoints/last.safetensors/x")).unwrap();
    let e = train::train(&c, &ds, &work).err().expect("an error");
    println!("{e}");
    assert!(e.to_string().contains("last.safetensors"), "{e}");
}
