//! Seconds per 360° frame on the CPU.
//!
//! `bench_render [--run RUN_DIR] [--width 1024] [--frames 3] [--tile 64]`
//! With `--run` (a run folder whose train stage finished) the trained NeRF renders from the
//! registered cameras' positions; without it, the analytic room (a lower bound: it only measures
//! the camera, tiling and threading overhead).

use flythrough_render::frames::render_frame;
use flythrough_render::{AnalyticRoom, Equirect, RaySource};
use nalgebra::Vector3;
use std::time::Instant;

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
    let (source, cams): (
        Box<dyn RaySource>,
        Vec<(Vector3<f64>, Vector3<f64>, Vector3<f64>)>,
    ) = match get("--run") {
        Some(run) => {
            let run = flythrough_core::RunDir::new(run);
            let rec = flythrough_core::Reconstruction::read(&run.stage_dir("sfm").join("sparse"))
                .expect("read sfm/sparse");
            let up = flythrough_render::stage::world_up(&run, &rec);
            let src = flythrough_render::stage::nerf_source(&run, "mean").expect("load the NeRF");
            let cams = rec
                .images
                .values()
                .take(frames)
                .map(|im| (im.pose.center(), im.pose.forward(), up))
                .collect();
            (src, cams)
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
            (Box::new(AnalyticRoom::demo()), cams)
        }
    };
    let threads = rayon::current_num_threads();
    let t0 = Instant::now();
    for (c, f, up) in &cams {
        let cam = Equirect::new(width, height, *c, *f, *up);
        let img = render_frame(source.as_ref(), &cam, 0.0, tile, &|| {});
        std::hint::black_box(img);
    }
    let spf = t0.elapsed().as_secs_f64() / cams.len().max(1) as f64;
    println!("| source | frame | threads | frames | s / 360° frame | Mrays / s |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} | {width}x{height} | {threads} | {} | {spf:.3} | {:.3} |",
        source.name(),
        cams.len(),
        (width * height) as f64 / spf / 1e6
    );
}
