//! Render the synthetic room venue (analytic ray source) into a run folder, for looking at the
//! output and for `scripts/bench-render.sh`.
//!
//! `cargo run --release -p flythrough-render --example render_demo -- OUT_DIR [WIDTH] [MAX_FRAMES]`
//! prints the stage summary (seconds per 360° frame included) as JSON.

#[path = "../tests/common/mod.rs"]
mod common;
use flythrough_core::Stage;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = std::path::PathBuf::from(
        args.get(1)
            .map(String::as_str)
            .unwrap_or("target/render-demo"),
    );
    let width: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let max_frames: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);
    std::fs::create_dir_all(&out).expect("create the output folder");
    let (cfg, run) = common::venue(&out, |c| {
        c.render.width = width;
        c.render.height = width / 2;
        c.render.preview_width = 640;
        c.render.preview_height = 360;
        c.render.fps = 30.0;
        c.render.max_frames = max_frames;
        c.render.stills = 3;
    });
    let _ = std::fs::remove_dir_all(run.stage_dir(Stage::Render));
    let _ = std::fs::remove_dir_all(run.work_dir(Stage::Render));
    // Committed through the stage runner, so the report shows it.
    let rec = flythrough_core::run::run_stage(&run, Stage::Render, "demo", "demo", true, |o, w| {
        let room = flythrough_render::AnalyticRoom::demo();
        let s =
            flythrough_render::run_with_source(&cfg, &common::machine(&cfg), &run, o, w, &room)?;
        Ok(flythrough_core::StageSummary::of(&s))
    })
    .expect("render");
    let report = flythrough_report::write_report(&run).expect("report");
    println!(
        "{}",
        serde_json::to_string_pretty(&rec.record().summary).unwrap()
    );
    eprintln!(
        "run folder: {} (report: {})",
        run.root().display(),
        report.display()
    );
}
