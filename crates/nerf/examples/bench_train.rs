//! Training benchmark used by `scripts/bench-train.sh`: trains on one scene for a time budget and
//! prints one table row (PSNR vs wall time, samples/s, rays/s train and render).
//!
//! `cargo run --release -p flythrough-nerf --example bench_train -- <room|temple|synth|fox|redkitchen> <seconds> <out dir> [downscale] [width height photos]`
//!
//! `downscale` 0 = the automatic training resolution. `seconds` 0 = no time budget (then `steps`
//! ends training: `BENCH_TRAIN_TOML='steps = 1500'`, load-independent).
//!
//! `fox` and `redkitchen` are the real captures of `../shared/data` with their reference poses, from
//! the COLMAP model `examples/known_poses.rs` writes into `$KNOWN_POSES/<scene>` (default
//! `/tmp/known_poses/<scene>`; run it first).
//!
//! `synth` is the project's synthetic venue (`flythrough_synth::generate`, default options but the
//! given size), trained on its ground-truth cameras and EXIF exposures (the photos are synthetic, so
//! they are read as a cleared folder without the privacy stage).
#![allow(
    clippy::needless_range_loop,
    clippy::field_reassign_with_default,
    clippy::explicit_counter_loop
)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!(
            "usage: bench_train <room|temple|synth> <seconds> <out dir> [downscale] [width height photos]"
        );
        std::process::exit(2);
    }
    let seconds: f64 = args[2].parse().expect("seconds");
    let dir = PathBuf::from(&args[3]);
    let downscale: u32 = args
        .get(4)
        .map(|s| s.parse().expect("downscale"))
        .unwrap_or(1);
    let (w, h, n) = if args.len() >= 8 {
        (
            args[5].parse().unwrap(),
            args[6].parse().unwrap(),
            args[7].parse().unwrap(),
        )
    } else {
        (320, 240, 40)
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let scene = match args[1].as_str() {
        "room" => common::analytic_room(&dir, w, h, n, 1.0),
        "temple" => common::temple(&dir).expect("shared data temple_ring19"),
        "synth" => synth_venue(&dir, w, h, n),
        "fox" | "redkitchen" => known_poses(&args[1]),
        other => panic!("unknown scene {other}"),
    };
    // Extra `[train]` keys, e.g. BENCH_TRAIN_TOML='batch_rays = 4096'.
    let extra = std::env::var("BENCH_TRAIN_TOML").unwrap_or_default();
    let text = format!("[venue]\nname = \"b\"\nphotos = \".\"\n[train]\n{extra}\n");
    let mut cfg = flythrough_core::Config::parse(&text, std::path::Path::new("BENCH_TRAIN_TOML"))
        .expect("config")
        .train;
    cfg.max_seconds = seconds;
    if seconds > 0.0 && !extra.contains("steps") {
        // A time budget: the steps must not end training first.
        cfg.steps = 100_000;
    }
    if !extra.contains("image_downscale") {
        cfg.image_downscale = downscale;
    }
    let t0 = std::time::Instant::now();
    let s = flythrough_nerf::run(
        &cfg,
        &scene.images,
        Some(&scene.manifest),
        &scene.sfm_dir,
        &dir.join("out"),
        &dir.join("work"),
    )
    .expect("train");
    println!(
        "| {} | {}x{} | {} | {:.0} s | {:.2} dB | {:.3} | {:.0}k | {:.1}k | {:.1}k | {:.0} s |",
        args[1],
        s.train_width,
        s.train_height,
        s.steps,
        s.train_seconds,
        s.psnr_holdout,
        s.ssim_holdout,
        s.samples_per_s / 1e3,
        s.rays_per_s / 1e3,
        s.render_rays_per_s / 1e3,
        t0.elapsed().as_secs_f64()
    );
}

/// A real capture with its reference poses: the model `known_poses` wrote, photos read in place.
fn known_poses(scene: &str) -> common::Scene {
    let base = std::env::var("KNOWN_POSES").unwrap_or_else(|_| "/tmp/known_poses".into());
    let model = PathBuf::from(base).join(scene);
    assert!(
        model.join("images.txt").is_file(),
        "{}: no model; run `cargo run --release -p flythrough-nerf --example known_poses -- {scene} {}` first",
        model.display(),
        model.display()
    );
    let data = flythrough_testkit::testdata::shared_data(if scene == "fox" {
        "fox"
    } else {
        "redkitchen_every10"
    })
    .expect("shared data");
    // `sfm_dir/sparse` is the model: a folder holding a link to it.
    let sfm_dir = std::env::temp_dir().join(format!("bench_train_{scene}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&sfm_dir);
    std::fs::create_dir_all(&sfm_dir).unwrap();
    std::os::unix::fs::symlink(&model, sfm_dir.join("sparse")).unwrap();
    common::Scene {
        images: flythrough_testkit::cleared_images(&data.join("images")).unwrap(),
        manifest: flythrough_core::Manifest::default(),
        sfm_dir,
    }
}

/// The synthetic venue with its ground-truth model as `sfm/sparse` and a manifest of its exposures.
fn synth_venue(dir: &std::path::Path, w: u32, h: u32, n: usize) -> common::Scene {
    let t = flythrough_testkit::synth_training_scene(dir, w, h, n);
    common::Scene {
        images: t.images,
        manifest: t.manifest,
        sfm_dir: t.sfm_dir,
    }
}
