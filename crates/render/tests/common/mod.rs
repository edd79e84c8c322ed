//! A synthetic venue for the render stage's tests: keyframe cameras in [`AnalyticRoom::demo`]
//! written as a COLMAP model (metres, z up), a `sfm/report.json` with the up vector, redacted
//! photos rendered from the room, and a config.
#![allow(dead_code)]

use flythrough_core::Stage;
use flythrough_core::config::Config;
use flythrough_core::stage::FromConfig;
use flythrough_core::{
    Camera, CameraModel, LoadedConfig, Machine, Pose, Reconstruction, RunDir, SfmOutput, SfmReport,
};
use flythrough_render::path::level_rotation;
use flythrough_render::{AnalyticRoom, Perspective, RaySource, RenderInputs};
use nalgebra::Vector3;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Keyframe photos: name, centre, yaw in degrees (z-up world).
pub const KEYFRAMES: &[(&str, [f64; 3], f64)] = &[
    ("k1.jpg", [0.3, 0.2, 1.5], 10.0),
    ("k2.jpg", [2.6, 0.9, 1.6], 30.0),
    ("k3.jpg", [4.4, 2.6, 1.5], 80.0),
];

fn pose(c: [f64; 3], yaw: f64) -> Pose {
    let f = Vector3::new(yaw.to_radians().cos(), yaw.to_radians().sin(), 0.0);
    let q = level_rotation(&f, &Vector3::z());
    let c = Vector3::from(c);
    Pose::new(q, -(q * c))
}

/// Build `root/run` (sfm, privacy) and a config; `edit` adjusts `[render]`.
pub fn venue(root: &Path, edit: impl FnOnce(&mut Config)) -> (RenderInputs, RunDir) {
    let run = RunDir::new(root.join("run"));
    let mut rec = Reconstruction::default();
    rec.cameras
        .insert(1, Camera::new(1, CameraModel::Pinhole, 96, 64, 60.0));
    let mut all: Vec<(String, Pose)> = KEYFRAMES
        .iter()
        .map(|(n, c, y)| (n.to_string(), pose(*c, *y)))
        .collect();
    all.push(("other.jpg".into(), pose([5.5, 4.0, 1.4], 200.0)));
    for (i, (name, p)) in all.iter().enumerate() {
        rec.images.insert(
            i as u32 + 1,
            flythrough_core::colmap::Image {
                id: i as u32 + 1,
                camera_id: 1,
                name: name.clone(),
                pose: *p,
                points2d: vec![],
            },
        );
    }
    // The SfM stage's output, committed by the stage runner (render opens it only then).
    flythrough_core::run::run_stage(&run, Stage::Sfm, "test", "test", true, |out, _| {
        rec.write_text(&out.join(SfmOutput::SPARSE))?;
        let report = SfmReport {
            up: [0.0, 0.0, 1.0],
            ..Default::default()
        };
        flythrough_core::run::write_json(&out.join(SfmOutput::REPORT), &report)?;
        Ok(flythrough_core::StageSummary::of(&report.summary()))
    })
    .unwrap();
    // Redacted photos: the room seen from each camera, committed by the stage runner (which seals
    // them for `RedactedImages::open`).
    flythrough_core::run::run_stage(&run, Stage::Privacy, "test", "test", true, |out, _| {
        let images = out.join(flythrough_core::images::REDACTED_DIR);
        std::fs::create_dir_all(&images)?;
        let room = AnalyticRoom::demo();
        for (name, p) in &all {
            let cam = Perspective::new(96, 64, 77.0, p.center(), p.rotation);
            let img = flythrough_render::frames::render_frame(&room, &cam, 0.0, 32, &|| {});
            img.save(images.join(name))?;
        }
        Ok(flythrough_core::StageSummary::default())
    })
    .unwrap();

    let mut config = Config::default();
    config.venue.name = "synthetic-room".into();
    config.venue.photos = "photos".into();
    config.venue.keyframes = KEYFRAMES.iter().map(|k| k.0.to_string()).collect();
    config.render.width = 128;
    config.render.height = 64;
    config.render.preview_width = 96;
    config.render.preview_height = 64;
    config.render.fps = 10.0;
    config.render.stills = 3;
    edit(&mut config);
    config.check_values().unwrap();
    let cfg = RenderInputs::from_config(&LoadedConfig {
        config,
        path: root.join("venue.toml"),
        dir: root.to_path_buf(),
        photos_dir: root.join("photos"),
    });
    (cfg, run)
}

/// Run the stage body with `source` into `run/render` (out) and `run/.work/render` (work).
pub fn render(
    cfg: &RenderInputs,
    run: &RunDir,
    source: &dyn RaySource,
) -> (PathBuf, flythrough_core::summary::RenderSummary) {
    let out = run.stage_dir(Stage::Render);
    let work = run.work_dir(Stage::Render);
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let s =
        flythrough_render::run_with_source(cfg, &machine(cfg), run, &out, &work, source).unwrap();
    (out, s)
}

/// `ffprobe -show_streams` of the first video stream as JSON, or `None` if ffprobe is not installed
/// (a skip on a user's machine, a failure under CI).
pub fn ffprobe(file: &Path) -> Option<serde_json::Value> {
    let bin = flythrough_testkit::testdata::tool("ffprobe", "Debian: apt-get install ffmpeg")?;
    let out = std::process::Command::new(bin)
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
        ])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// Side data entries of the first stream, as `(type, projection)` pairs.
pub fn side_data(probe: &serde_json::Value) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    if let Some(list) = probe["streams"][0]["side_data_list"].as_array() {
        for sd in list {
            let t = sd["side_data_type"].as_str().unwrap_or("").to_string();
            let p = sd["projection"]
                .as_str()
                .or(sd["type"].as_str())
                .unwrap_or("")
                .to_string();
            m.insert(t, p);
        }
    }
    m
}

/// The machine settings a test's config asks for (`[render] device`, `max_path_frames`).
pub fn machine(cfg: &RenderInputs) -> Machine {
    Machine {
        render_device: cfg.render.device,
        max_path_frames: cfg.render.max_path_frames,
        ..Machine::default()
    }
}
