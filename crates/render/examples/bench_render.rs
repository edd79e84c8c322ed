//! Seconds per 360° frame on the CPU.
//!
//! `bench_render [--run RUN_DIR [--baked-only]] [--width 1024] [--frames 3] [--tile 64]`
//! With `--run` (a run folder whose train stage finished) the trained NeRF renders from the
//! registered cameras' positions, and beside it, at the same frames, the baked model when the bake
//! stage has run (with the bake's size and held-out PSNR against the NeRF's); with `--untrained-nerf`, a freshly initialised NeRF of the default
//! `[train]` architecture (same network and samples per ray as a trained one, random weights);
//! otherwise the analytic room (a lower bound: camera, tiling and threading overhead only).

use flythrough_render::frames::render_frame;
use flythrough_render::{AnalyticRoom, Equirect, RaySource};
use nalgebra::Vector3;
use std::time::Instant;

/// Camera centre, forward and up of each benchmark frame.
type Cams = Vec<(Vector3<f64>, Vector3<f64>, Vector3<f64>)>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let width: u32 = get("--width").and_then(|s| s.parse().ok()).unwrap_or(1024);
    let frames: usize = get("--frames").and_then(|s| s.parse().ok()).unwrap_or(3);
    let tile: u32 = get("--tile").and_then(|s| s.parse().ok()).unwrap_or(64);
    let height = width / 2;
    let mut bake_row = None;
    let (sources, cams): (Vec<Box<dyn RaySource>>, Cams) = match get("--run") {
        Some(run) => {
            let run = flythrough_core::RunDir::new(run);
            let sfm = flythrough_core::SfmOutput::open(&run).expect("a committed sfm stage");
            let rec = sfm.model().expect("read sfm/sparse");
            let up = flythrough_render::stage::world_up(&sfm, &rec);
            let src = flythrough_render::stage::nerf_source(
                &run,
                &flythrough_core::config::Appearance::Mean,
                flythrough_core::config::Device::Auto,
            )
            .expect("load the NeRF");
            let cams = rec
                .images
                .values()
                .take(frames)
                .map(|im| (im.pose.center(), im.pose.forward(), up))
                .collect();
            // `--baked-only`: the baked model alone (profiling it without the NeRF's minutes).
            let mut sources = if args.iter().any(|a| a == "--baked-only") {
                Vec::new()
            } else {
                vec![src]
            };
            // The baked model beside it, at the same frames, when the bake stage has run.
            if let Ok(bake) = flythrough_core::BakeOutput::open(&run) {
                let s: flythrough_core::summary::BakeSummary =
                    bake.record().summary().expect("bake summary");
                bake_row = Some(format!(
                    "| bake | {}^3, {:.1} % stored, {:.1} MB, {:.1} s | held-out PSNR baked {:.2} dB, NeRF {:.2} dB |",
                    s.resolution,
                    100.0 * s.occupied_fraction,
                    s.bytes as f64 / 1e6,
                    s.bake_seconds,
                    s.psnr_holdout_baked,
                    s.psnr_holdout_nerf
                ));
                sources.push(baked(&bake));
            }
            (sources, cams)
        }
        None if args.iter().any(|a| a == "--untrained-nerf") => {
            let cams = (0..frames)
                .map(|k| {
                    (
                        Vector3::new(0.1 * k as f64, 0.0, 0.0),
                        Vector3::x(),
                        Vector3::z(),
                    )
                })
                .collect();
            (vec![untrained_nerf()], cams)
        }
        None => {
            let cams = (0..frames)
                .map(|k| {
                    (
                        Vector3::new(0.5 + k as f64, 1.0, 1.5),
                        Vector3::new(1.0, 0.3 * k as f64, 0.0),
                        Vector3::z(),
                    )
                })
                .collect();
            (vec![Box::new(AnalyticRoom::demo())], cams)
        }
    };
    let threads = rayon::current_num_threads();
    println!("| source | frame | threads | frames | s / 360° frame | Mrays / s |");
    println!("|---|---|---|---|---|---|");
    for source in &sources {
        let t0 = Instant::now();
        for (c, f, up) in &cams {
            let cam = Equirect::new(width, height, *c, *f, *up);
            let img = render_frame(source.as_ref(), &cam, 0.0, tile, &|| {});
            std::hint::black_box(img);
        }
        let spf = t0.elapsed().as_secs_f64() / cams.len().max(1) as f64;
        println!(
            "| {} | {width}x{height} | {threads} | {} | {spf:.3} | {:.3} |",
            source.name(),
            cams.len(),
            (width * height) as f64 / spf / 1e6
        );
    }
    if let Some(row) = bake_row {
        println!("{row}");
    }
}

#[cfg(feature = "nerf")]
fn baked(bake: &flythrough_core::BakeOutput) -> Box<dyn RaySource> {
    Box::new(
        flythrough_render::baked_source::BakedSource::load(
            bake,
            &flythrough_core::config::Appearance::Mean,
        )
        .expect("load the baked model"),
    )
}

#[cfg(not(feature = "nerf"))]
fn baked(_: &flythrough_core::BakeOutput) -> Box<dyn RaySource> {
    panic!("this build has no baked-model renderer (feature `nerf`)")
}

#[cfg(feature = "nerf")]
fn untrained_nerf() -> Box<dyn RaySource> {
    use flythrough_nerf::checkpoint::{self, CheckpointMeta, FORMAT_VERSION};
    use flythrough_nerf::coord::SceneNorm;
    use flythrough_nerf::model::{Model, ModelConfig};
    let train = flythrough_core::config::TrainConfig::default();
    let norm = SceneNorm {
        center: [0.0; 3],
        scale: 0.25,
        near: 0.05,
    };
    let model = Model::new(ModelConfig::from_train(&train, 4), norm.near as f32, 0);
    let meta = CheckpointMeta {
        format_version: FORMAT_VERSION,
        model: model.cfg.clone(),
        norm,
        step: 0,
        elapsed_s: 0.0,
        train_names: (0..4).map(|i| format!("{i}.jpg")).collect(),
        train_ev: vec![0.0; 4],
        ev_mean: 0.0,
        config: train,
        adam: None,
        mean_radius: None,
    };
    let dir = std::env::temp_dir().join(format!("bench-render-nerf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ck = dir.join("bench.safetensors");
    checkpoint::save(&ck, &model, None, &meta).expect("save checkpoint");
    let src = flythrough_render::nerf_source::NerfSource::from_checkpoint(
        &ck,
        &flythrough_core::config::Appearance::Mean,
        flythrough_core::config::Device::Cpu,
    )
    .expect("load");
    let _ = std::fs::remove_dir_all(&dir);
    Box::new(src)
}

#[cfg(not(feature = "nerf"))]
fn untrained_nerf() -> Box<dyn RaySource> {
    panic!("built without the `nerf` feature")
}
