//! The render stage end to end on the synthetic venue with the analytic ray source: the MP4s as
//! ffprobe sees them (codec, size, frame count, duration, spherical side data), the in-process
//! encoder, resuming, and input errors.

mod common;

use common::{ffprobe, render, side_data, venue};
use flythrough_core::Stage;
use flythrough_render::mp4::spherical_info;
use flythrough_render::stage::{PathFile, render_frames};
use flythrough_render::{AnalyticRoom, RenderError};
use flythrough_testkit::testdata;
use std::sync::atomic::{AtomicUsize, Ordering};

fn path_file(out: &std::path::Path) -> PathFile {
    serde_json::from_str(&std::fs::read_to_string(out.join("path.json")).unwrap()).unwrap()
}

fn check_video(
    file: &std::path::Path,
    w: u32,
    h: u32,
    frames: usize,
    duration: f64,
    fps: f64,
    spherical: bool,
) {
    let bytes = std::fs::read(file).unwrap();
    if spherical {
        let info = spherical_info(&bytes).unwrap();
        assert!(
            info.v2_equirect && info.v2_mono && info.v1_equirect,
            "{info:?}"
        );
        assert_eq!((info.width as u32, info.height as u32), (w, h));
    }
    let Some(p) = ffprobe(file) else { return };
    let s = &p["streams"][0];
    assert_eq!(s["codec_name"], "h264", "{s}");
    assert_eq!(s["pix_fmt"], "yuv420p", "{s}");
    assert_eq!(
        (s["width"].as_u64().unwrap(), s["height"].as_u64().unwrap()),
        (w as u64, h as u64)
    );
    let read: usize = s["nb_read_frames"].as_str().unwrap().parse().unwrap();
    assert_eq!(read, frames, "decoded frame count");
    let d: f64 = s["duration"]
        .as_str()
        .or(p["format"]["duration"].as_str())
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (d - duration).abs() <= 1.0 / fps + 1e-6,
        "video lasts {d} s, the flight {duration} s"
    );
    let sd = side_data(&p);
    if spherical {
        assert_eq!(
            sd.get("Spherical Mapping").map(String::as_str),
            Some("equirectangular"),
            "{sd:?}"
        );
    } else {
        assert!(!sd.contains_key("Spherical Mapping"), "{sd:?}");
    }
}

#[test]
fn ffmpeg_video_is_h264_with_spherical_metadata_and_the_right_duration() {
    let Some(_) = testdata::tool("ffmpeg", "Debian: apt-get install ffmpeg") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // No easing: the flight lasts exactly length / speed.
    let (cfg, run) = venue(dir.path(), |c| {
        c.render.ease_s = 0.0;
        c.render.encoder = flythrough_core::config::Encoder::Ffmpeg;
        c.render.speed_m_per_s = 1.5;
    });
    let (out, summary) = render(&cfg, &run, &AnalyticRoom::demo());
    let pf = path_file(&out);
    assert!((pf.duration_s - pf.length_m / 1.5).abs() < 1e-9);
    assert_eq!(pf.frames.len(), pf.frame_count);
    assert_eq!(summary.frames, pf.frame_count);
    assert_eq!(summary.encoder, "ffmpeg/libx264");
    let n = pf.frame_count;
    check_video(
        &out.join("flythrough_360.mp4"),
        128,
        64,
        n,
        pf.length_m / 1.5,
        pf.fps,
        true,
    );
    check_video(
        &out.join("preview.mp4"),
        96,
        64,
        n,
        pf.length_m / 1.5,
        pf.fps,
        false,
    );
    // A faststart copy (moov before mdat): injection must shift every chunk offset.
    let fs = out.join("faststart.mp4");
    let ff = flythrough_render::encode::find_on_path("ffmpeg").unwrap();
    let st = std::process::Command::new(&ff)
        .args(["-v", "error", "-y", "-i"])
        .arg(out.join("flythrough_360.mp4"))
        .args(["-c", "copy", "-movflags", "+faststart"])
        .arg(&fs)
        .status()
        .unwrap();
    assert!(st.success());
    let bytes = std::fs::read(&fs).unwrap();
    let top = flythrough_render::mp4::spans(&bytes, 0, bytes.len() as u64).unwrap();
    let pos = |t: &[u8; 4]| top.iter().position(|s| &s.typ == t).unwrap();
    assert!(
        pos(b"moov") < pos(b"mdat"),
        "ffmpeg did not move moov first"
    );
    flythrough_render::mp4::inject_spherical(&fs, "flythrough").unwrap();
    check_video(&fs, 128, 64, n, pf.length_m / 1.5, pf.fps, true);
    let dec = std::process::Command::new(&ff)
        .args(["-v", "error", "-i"])
        .arg(&fs)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        dec.status.success() && dec.stderr.is_empty(),
        "decoding errors: {}",
        String::from_utf8_lossy(&dec.stderr)
    );
    std::fs::remove_file(&fs).unwrap();

    // Viewer, stills and the report built from them.
    assert!(out.join("viewer.html").is_file());
    let stills: Vec<flythrough_core::summary::Still> =
        serde_json::from_str(&std::fs::read_to_string(out.join("stills/stills.json")).unwrap())
            .unwrap();
    assert_eq!(stills.len(), 3);
    assert_eq!(stills[0].nearest_photo.as_deref(), Some("k1.jpg"));
    assert!(stills[0].distance_m.unwrap() < 1e-6);
    let key = |v: &[flythrough_core::summary::Still]| -> Vec<(String, usize, Option<String>)> {
        v.iter()
            .map(|s| (s.file.clone(), s.frame, s.nearest_photo.clone()))
            .collect()
    };
    assert_eq!(
        key(&summary.stills),
        key(&stills),
        "the summary carries the stills"
    );
    assert_eq!(summary.video_360, "flythrough_360.mp4");
    assert!(out.join(&summary.pano_still).is_file());
}

#[test]
fn openh264_fallback_writes_a_decodable_file_with_the_metadata() {
    let Some(()) = testdata::require(
        cfg!(feature = "openh264"),
        "the in-process H.264 encoder (cargo feature `openh264` of flythrough-render)",
        "build with the default features",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (cfg, run) = venue(dir.path(), |c| {
        c.render.encoder = flythrough_core::config::Encoder::Openh264;
        c.render.max_frames = 12;
        c.render.stills = 0;
        c.render.preview_source = flythrough_core::config::PreviewSource::Reproject;
    });
    let room = Counting(AnalyticRoom::demo(), AtomicUsize::new(0));
    let (out, summary) = render(&cfg, &run, &room);
    // Reprojected previews cost no rays: only the 360° frames were rendered.
    assert_eq!(room.1.load(Ordering::Relaxed), 12 * 128 * 64);
    assert_eq!(summary.encoder, "openh264+muxide");
    let pf = path_file(&out);
    assert_eq!(pf.frame_count, 12, "max_frames caps the frame count");
    assert!(pf.fps < 10.0);
    // With easing, the flight lasts length / speed + ease_s.
    assert!((pf.duration_s - (pf.length_m + 1.0)).abs() < 1e-9);
    check_video(
        &out.join("flythrough_360.mp4"),
        128,
        64,
        12,
        pf.duration_s,
        pf.fps,
        true,
    );
}

/// Counts rays, to see how many frames a run renders.
struct Counting(AnalyticRoom, AtomicUsize);
impl flythrough_render::RaySource for Counting {
    fn render_rays(&self, o: &[[f32; 3]], d: &[[f32; 3]], ev: f64) -> Vec<[f32; 3]> {
        self.1.fetch_add(o.len(), Ordering::Relaxed);
        self.0.render_rays(o, d, ev)
    }
}

/// The stage body with the trained NeRF (none here) into `run/render`.
fn run_nerf(
    cfg: &flythrough_render::RenderInputs,
    run: &flythrough_core::RunDir,
) -> Result<flythrough_render::RenderSummary, RenderError> {
    let out = run.stage_dir(Stage::Render);
    flythrough_render::run(
        cfg,
        &common::machine(cfg),
        run,
        &out,
        &run.work_dir(Stage::Render),
    )
}

/// The stage body with `room` as the ray source into `run/render`.
fn run_room(
    cfg: &flythrough_render::RenderInputs,
    run: &flythrough_core::RunDir,
    room: &dyn flythrough_render::RaySource,
) -> Result<flythrough_render::RenderSummary, RenderError> {
    let out = run.stage_dir(Stage::Render);
    let work = run.work_dir(Stage::Render);
    flythrough_render::run_with_source(cfg, &common::machine(cfg), run, &out, &work, room)
}

#[test]
fn an_interrupted_render_resumes_at_the_next_missing_frame() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, run) = venue(dir.path(), |c| {
        c.render.max_frames = 8;
        c.render.stills = 0;
    });
    let r = &cfg.render;
    let plan = flythrough_render::stage::build_path(&cfg, &run).unwrap();
    let (path, ev) = (plan.path, plan.fixed_ev);
    let frames = path.frames(path.frame_rate(r.fps, r.max_frames), ev);
    assert_eq!(frames.len(), 8);
    // "Interrupted" after 5 frames.
    let work = run.work_dir(Stage::Render);
    let room = Counting(AnalyticRoom::demo(), AtomicUsize::new(0));
    render_frames(r, &frames[..5], path.up(), &room, &work.join("frames")).unwrap();
    let per_frame = (128 * 64 + 96 * 64) as usize;
    assert_eq!(room.1.load(Ordering::Relaxed), 5 * per_frame);
    let room = Counting(AnalyticRoom::demo(), AtomicUsize::new(0));
    let (_, summary) = render(&cfg, &run, &room);
    assert_eq!(summary.frames_rendered_now, 3);
    assert_eq!(room.1.load(Ordering::Relaxed), 3 * per_frame);

    // Issue 20: a damaged frame left in the resumable folder (here cut in half) is rendered again
    // instead of failing every re-run with "unexpected end of file".
    let frames_dir = work.join("frames");
    render_frames(r, &frames[..5], path.up(), &room, &frames_dir).unwrap();
    let pano = frames_dir.join("pano_00002.png");
    let bytes = std::fs::read(&pano).unwrap();
    std::fs::write(&pano, &bytes[..bytes.len() / 2]).unwrap();
    let room = Counting(AnalyticRoom::demo(), AtomicUsize::new(0));
    let (_, summary) = render(&cfg, &run, &room);
    assert_eq!(summary.frames_rendered_now, 1, "only the damaged frame 2");
    assert_eq!(room.1.load(Ordering::Relaxed), per_frame);
}

#[test]
fn input_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, run) = venue(dir.path(), |c| {
        c.venue.keyframes = vec!["k1.jpg".into(), "blurry.jpg".into()]
    });
    let out = run.stage_dir(Stage::Render);
    std::fs::create_dir_all(&out).unwrap();
    let e = run_room(&cfg, &run, &AnalyticRoom::demo()).unwrap_err();
    assert!(
        matches!(e, RenderError::NotRegistered { ref name, .. } if name == "blurry.jpg"),
        "{e}"
    );
    assert!(
        e.to_string().contains("\"blurry.jpg\" was not registered"),
        "{e}"
    );
    // With unregistered_keyframes = "skip" the path goes on without it, but 2 must remain.
    let (cfg, run) = venue(dir.path(), |c| {
        c.venue.keyframes = vec!["k1.jpg".into(), "blurry.jpg".into(), "k3.jpg".into()];
        c.render.unregistered_keyframes = flythrough_core::config::UnregisteredKeyframes::Skip;
    });
    let (kfs, _, _) = flythrough_render::stage::keyframes(&cfg, &run).unwrap();
    assert_eq!(
        kfs.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
        ["k1.jpg", "k3.jpg"]
    );
    let (cfg, run) = venue(dir.path(), |c| {
        c.venue.keyframes = vec!["k1.jpg".into(), "blurry.jpg".into()];
        c.render.unregistered_keyframes = flythrough_core::config::UnregisteredKeyframes::Skip;
    });
    let e = flythrough_render::stage::keyframes(&cfg, &run).unwrap_err();
    assert!(e.to_string().contains("only 1 of the 2 keyframes"), "{e}");
    let (cfg, run) = venue(dir.path(), |c| c.venue.keyframes = vec!["k1.jpg".into()]);
    let e = run_room(&cfg, &run, &AnalyticRoom::demo()).unwrap_err();
    assert!(e.to_string().contains("at least 2"), "{e}");
    // The real entry point checks keyframes before it looks for the model...
    let e = run_nerf(&cfg, &run).unwrap_err();
    assert!(e.to_string().contains("at least 2"), "{e}");
    // ...and says when there is no trained model.
    let (cfg, run) = venue(dir.path(), |_| {});
    let e = run_nerf(&cfg, &run).unwrap_err();
    assert!(
        e.to_string().contains("train stage has not finished"),
        "{e}"
    );
}

/// A calibration distance typed in millimetres scales the venue 1000x: here the keyframes are moved
/// so the path is 3.6 km. The stage refuses before rendering a single ray, and says why: the key,
/// the length, the frame count and the likely cause. Raising the bound lets it through.
#[test]
fn a_path_kilometres_long_is_refused_before_rendering() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, run) = venue(dir.path(), |c| c.render.max_frames = 8);
    let path = flythrough_render::stage::build_path(&cfg, &run)
        .unwrap()
        .path;
    let k = 3600.0 / path.length();
    let sparse = run
        .stage_dir(Stage::Sfm)
        .join(flythrough_core::SfmOutput::SPARSE);
    let mut rec = flythrough_core::Reconstruction::read(&sparse).unwrap();
    for im in rec.images.values_mut() {
        im.pose = flythrough_core::Pose::new(im.pose.rotation, im.pose.translation * k);
    }
    rec.write_text(&sparse).unwrap();
    let path = flythrough_render::stage::build_path(&cfg, &run)
        .unwrap()
        .path;
    assert!((path.length() - 3600.0).abs() < 1.0, "{}", path.length());
    // At the test's 10 fps and 1 m/s: one frame per 0.1 s of the flight (ease ramps included).
    let n = (path.duration() * 10.0 + 1e-9).floor() as u64 + 1;
    assert!(n > 36_000);
    let out = run.stage_dir(Stage::Render);
    std::fs::create_dir_all(&out).unwrap();
    let room = Counting(AnalyticRoom::demo(), AtomicUsize::new(0));
    let e = run_room(&cfg, &run, &room).unwrap_err().to_string();
    assert!(
        e.contains("max_path_frames = 20000")
            && e.contains("3.6 km")
            && e.contains(&format!("{n} frames at 10 fps"))
            && e.contains("millimetres"),
        "{e}"
    );
    assert_eq!(room.1.load(Ordering::Relaxed), 0, "rays were rendered");
    assert!(!run.work_dir(Stage::Render).join("frames").exists());
    // The real entry point refuses before it looks for the model.
    let e = run_nerf(&cfg, &run).unwrap_err();
    assert!(e.to_string().contains("max_path_frames"), "{e}");
    // A bound above the path's 36,001 frames (or 0) lets it through; max_frames keeps it short.
    let mut cfg = cfg;
    cfg.render.max_path_frames = 40_000;
    cfg.render.stills = 0;
    let (_, s) = render(&cfg, &run, &AnalyticRoom::demo());
    assert_eq!(s.frames, 8, "{s:?}");
}
