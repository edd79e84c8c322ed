//! The privacy invariant: only capture and privacy open an original photo. After the privacy stage,
//! the original photo folder is moved away (and the config's photo path points at nothing), and sfm,
//! train and render must still run: they can only have read `privacy/images` through `RedactedImages`.

use flythrough_core::config::Config;
use flythrough_core::run::{RunDir, Stage, run_stage};
use flythrough_core::{Manifest, RedactedImages};
use std::path::PathBuf;
use std::process::Command;

#[test]
fn later_stages_never_open_the_original_photos() {
    let dir = tempfile::tempdir().unwrap();
    let venue = dir.path().join("venue");
    let opts = flythrough_synth::SynthOptions {
        images: 24,
        width: 160,
        height: 120,
        ..Default::default()
    };
    flythrough_synth::generate(&opts, &venue).unwrap();
    let cfg_path = venue.join("venue.toml");
    let run_dir = dir.path().join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_flythrough"))
        .args([
            "run",
            cfg_path.to_str().unwrap(),
            "--out",
            run_dir.to_str().unwrap(),
            "--until",
            "privacy",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cfg = Config::load(&cfg_path).unwrap();

    // Move the originals out of reach; nothing downstream may need them.
    let hidden = dir.path().join("originals-moved-away");
    std::fs::rename(venue.join("photos"), &hidden).unwrap();
    cfg.photos_dir = PathBuf::from("/nonexistent/original/photos");
    cfg.config.train.steps = 30;
    cfg.config.train.max_seconds = 20.0;
    cfg.config.train.batch_rays = 512;
    cfg.config.render.width = 64;
    cfg.config.render.height = 32;
    cfg.config.render.preview_width = 64;
    cfg.config.render.preview_height = 48;
    cfg.config.render.max_frames = 4;

    let run = RunDir::new(&run_dir);
    let manifest = Manifest::read(&run.stage_dir(Stage::Capture).join("manifest.json")).unwrap();
    let images = RedactedImages::open(&run).unwrap();
    assert_eq!(images.names().len(), 24);
    assert!(
        images.dir().starts_with(&run_dir),
        "redacted images come from the run folder"
    );

    run_stage(&run, Stage::Sfm, "t", "t", true, |o, _| {
        Ok(flythrough_sfm::run(&cfg, &images, Some(&manifest), o)?)
    })
    .unwrap();
    // Fly between the first and last photos SfM registered.
    let rec =
        flythrough_core::Reconstruction::read(&run.stage_dir(Stage::Sfm).join("sparse")).unwrap();
    let mut names: Vec<_> = rec.images.values().map(|i| i.name.clone()).collect();
    names.sort();
    assert!(
        names.len() >= 12,
        "sfm registered only {} photos",
        names.len()
    );
    cfg.config.venue.keyframes = vec![
        names[0].clone(),
        names[names.len() / 2].clone(),
        names[names.len() - 1].clone(),
    ];

    run_stage(&run, Stage::Train, "t", "t", true, |o, w| {
        Ok(flythrough_nerf::run(
            &cfg.config.train,
            &images,
            Some(&manifest),
            &run.stage_dir(Stage::Sfm),
            o,
            w,
        )?)
    })
    .unwrap();
    run_stage(&run, Stage::Render, "t", "t", true, |o, w| {
        Ok(flythrough_render::run(&cfg, &run, o, w)?)
    })
    .unwrap();
    assert!(
        run.stage_dir(Stage::Render)
            .join("flythrough_360.mp4")
            .is_file()
    );
    let report = flythrough_render::write_report(&run).unwrap();
    assert!(report.is_file());
    // The originals were not recreated or touched.
    assert!(!venue.join("photos").exists());
    assert_eq!(std::fs::read_dir(&hidden).unwrap().count(), 24);
}
