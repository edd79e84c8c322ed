//! Run only the render stage (with the trained NeRF) of an existing run folder into another folder,
//! leaving the run folder untouched, then write a report there.
//!
//! `render_run VENUE.toml RUN_DIR OUT_DIR` — `OUT_DIR/render/` gets the stage's outputs; the other
//! stages of `RUN_DIR` are linked into `OUT_DIR` (read-only use) so `OUT_DIR/report.html` shows them.

use flythrough_core::Stage;
use flythrough_core::stage::FromConfig;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: render_run VENUE.toml RUN_DIR OUT_DIR");
        std::process::exit(2);
    }
    let cfg = flythrough_core::Config::load(std::path::Path::new(&args[1])).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let src = std::path::PathBuf::from(&args[2]);
    let dst = std::path::PathBuf::from(&args[3]);
    std::fs::create_dir_all(&dst).expect("create OUT_DIR");
    for st in ["capture", "privacy", "sfm", "train"] {
        let link = dst.join(st);
        if !link.exists() {
            #[cfg(unix)]
            std::os::unix::fs::symlink(
                std::fs::canonicalize(src.join(st)).expect("stage folder"),
                &link,
            )
            .expect("link");
        }
    }
    let run = flythrough_core::RunDir::new(&dst);
    let inputs = flythrough_render::RenderInputs::from_config(&cfg);
    let rec =
        flythrough_core::run::run_stage(&run, Stage::Render, "example", "example", true, |o, w| {
            Ok(flythrough_core::StageSummary::of(&flythrough_render::run(
                &inputs,
                &flythrough_core::Machine::of(&cfg.config),
                &run,
                o,
                w,
            )?))
        });
    match rec {
        Ok(r) => println!(
            "{}",
            serde_json::to_string_pretty(&r.record().summary).unwrap()
        ),
        Err(e) => {
            eprintln!("render: {e}");
            std::process::exit(1)
        }
    }
    let report = flythrough_report::write_report(&run).expect("report");
    eprintln!("report: {}", report.display());
}
