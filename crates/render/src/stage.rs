//! The render stage's orchestration: inputs → path → frames (resumable) → videos → viewer.

use crate::cameras::{Equirect, Perspective};
use crate::encode::{self, EncodeError, VideoSpec};
use crate::frames::{render_frame, tiles};
use crate::path::{CameraPath, Heading, Keyframe, PathSample, PathSettings};
use crate::source::{FrameCam, PendingFrame, RaySource};
use crate::{RenderError, io_at, mp4, viewer};
use flythrough_core::config::{
    Appearance, Device, ExposureMode, PreviewSource, RenderConfig, UnregisteredKeyframes,
};
use flythrough_core::run::StageError;
use flythrough_core::stage::{FromConfig, Machine, PipelineStage, StageContext};
use flythrough_core::summary::RenderSummary;
use flythrough_core::{
    CaptureOutput, LoadedConfig, Reconstruction, RunDir, SfmOutput, Stage, TrainOutput,
};
use nalgebra::Vector3;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// File names inside `RUN/render/`.
pub const VIDEO_360: &str = "flythrough_360.mp4";
pub const VIDEO_PREVIEW: &str = "preview.mp4";
pub const VIEWER: &str = "viewer.html";
pub const PATH_JSON: &str = "path.json";
pub const STILLS_DIR: &str = "stills";
pub const STILLS_JSON: &str = "stills/stills.json";
/// The 360° frame from the middle of the path, inside [`STILLS_DIR`].
pub const PANO_STILL: &str = "pano.png";

/// `render/path.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PathFile {
    pub fps: f64,
    pub speed_m_per_s: f64,
    pub ease_s: f64,
    pub heading: Heading,
    pub length_m: f64,
    pub duration_s: f64,
    pub frame_count: usize,
    /// World up vector the 360° frames are levelled with.
    pub up: [f64; 3],
    pub width: u32,
    pub height: u32,
    /// `[render] appearance` the frames were rendered with (`mean`, `zero` or a photo name): the
    /// viewer's walk mode shades with the same latent. Absent in older files (read as `mean`).
    #[serde(default)]
    pub appearance: String,
    pub keyframes: Vec<PathKeyframe>,
    pub frames: Vec<PathSample>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PathKeyframe {
    pub name: String,
    pub center: [f64; 3],
    pub s_m: f64,
    pub time_s: f64,
    pub exposure_ev: f64,
}

/// `render/stills/stills.json`: rendered perspective stills and their nearest registered photo.
pub use flythrough_core::summary::Still;

/// Metres of camera distance that count as much as one radian of viewing-direction difference
/// when matching a still to a photo.
pub const METRES_PER_RADIAN: f64 = 1.0;

/// The registered photo that best matches a path frame's preview view: smallest
/// `distance + METRES_PER_RADIAN × angle between viewing directions`. Returns
/// `(name, distance_m, angle_deg)`.
pub fn nearest_photo(rec: &Reconstruction, f: &PathSample) -> Option<(String, f64, f64)> {
    let pose = f.pose();
    let (c, fwd) = (pose.center(), pose.forward());
    rec.images
        .values()
        .map(|im| {
            let d = (im.pose.center() - c).norm();
            let a = im.pose.forward().angle(&fwd);
            (im.name.clone(), d, a)
        })
        .min_by(|x, y| (x.1 + METRES_PER_RADIAN * x.2).total_cmp(&(y.1 + METRES_PER_RADIAN * y.2)))
        .map(|(n, d, a)| (n, d, a.to_degrees()))
}

/// What the render stage is given from the venue config: its own section, the keyframe names and the
/// venue's name — never the original photo folder (real photos are read only through
/// [`flythrough_core::RedactedImages`]). Serialised, it is the stage's config hash (the config
/// file's name, used only in messages, is not).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RenderInputs {
    pub render: RenderConfig,
    /// `[venue] keyframes`: the path, in order.
    pub keyframes: Vec<String>,
    /// `[venue] name` (the viewer's title).
    pub venue_name: String,
    /// The config file, named in error messages.
    #[serde(skip)]
    pub config_file: PathBuf,
}

/// The render stage under the pipeline's stage contract ([`flythrough_core::stage`]).
pub struct RenderStage;

impl PipelineStage for RenderStage {
    const STAGE: Stage = Stage::Render;
    type Inputs = RenderInputs;
    type Summary = RenderSummary;

    fn run(inputs: &RenderInputs, ctx: &StageContext) -> Result<RenderSummary, StageError> {
        Ok(run(
            inputs,
            ctx.machine,
            ctx.upstream.run(),
            ctx.out,
            ctx.work,
        )?)
    }
}

impl FromConfig for RenderInputs {
    /// The render stage's part of a loaded config.
    fn from_config(cfg: &LoadedConfig) -> RenderInputs {
        RenderInputs {
            render: cfg.config.render.clone(),
            keyframes: cfg.config.venue.keyframes.clone(),
            venue_name: cfg.config.venue.name.clone(),
            config_file: cfg.path.clone(),
        }
    }
}

/// The stage body with the trained NeRF of `RUN/train` as the ray source, on the machine's
/// `[render] device`.
pub fn run(
    cfg: &RenderInputs,
    machine: &Machine,
    run: &RunDir,
    out: &Path,
    work: &Path,
) -> Result<RenderSummary, RenderError> {
    // Plan the path and check its size (cheap) before loading the model (seconds).
    let plan = plan(cfg, machine, run)?;
    let source = ray_source(run, &cfg.render, machine.render_device)?;
    render_plan(cfg, plan, out, work, source.as_ref())
}

/// The most held-out PSNR (dB) the baked model may lose to its NeRF for `[render] source = "auto"`
/// to render from it (the bake issue's bound).
pub const AUTO_BAKED_MAX_LOSS_DB: f64 = 1.5;

/// The ray source `[render] source` asks for: the baked model (`auto` when the bake stage has
/// committed one, whose file must match its recorded hash) or the NeRF.
pub fn ray_source(
    run: &RunDir,
    r: &RenderConfig,
    device: Device,
) -> Result<Box<dyn RaySource>, RenderError> {
    use flythrough_core::artifacts::ArtifactError;
    use flythrough_core::config::RenderSource;
    let bake = match (r.source, flythrough_core::BakeOutput::open(run)) {
        (RenderSource::Nerf, _) => None,
        (RenderSource::Auto, Err(ArtifactError::NotCommitted { .. })) => None,
        (_, Err(e)) => return Err(RenderError::Model(e.to_string())),
        (RenderSource::Auto, Ok(b)) => {
            // The quality gate of `auto`: the baked model only when it is close to its NeRF.
            let s: flythrough_core::summary::BakeSummary = b
                .record()
                .summary()
                .map_err(|e| RenderError::Model(format!("{}: {e}", b.dir().display())))?;
            let loss = s.psnr_holdout_nerf - s.psnr_holdout_baked;
            if loss > AUTO_BAKED_MAX_LOSS_DB {
                tracing::info!(
                    "render: from the NeRF: the baked model is {loss:.2} dB below it on the held-out \
                     photos (auto uses it within {AUTO_BAKED_MAX_LOSS_DB} dB); [render] source = \"baked\" \
                     renders from it anyway"
                );
                None
            } else {
                Some(b)
            }
        }
        (RenderSource::Baked, Ok(b)) => Some(b),
    };
    // Where the NeRF renders on a GPU, `auto` keeps the NeRF (its highest quality, at GPU speed);
    // `source = "baked"` renders the baked model on that GPU too.
    if r.source == RenderSource::Auto && bake.is_some() && device != Device::Cpu {
        let nerf = nerf_source(run, &r.appearance, device)?;
        if nerf.device().on_gpu() {
            tracing::info!(
                "render: from the NeRF on the GPU (auto: the highest quality where a GPU renders it; \
                 [render] source = \"baked\" renders the baked model instead)"
            );
            return Ok(nerf);
        }
    }
    match bake {
        #[cfg(feature = "nerf")]
        Some(b) => {
            let src = crate::baked_source::BakedSource::load_on(&b, &r.appearance, device)?;
            tracing::info!("render: {} on {}", src.name(), src.device().line());
            Ok(Box::new(src))
        }
        #[cfg(not(feature = "nerf"))]
        Some(b) => Err(RenderError::Model(format!(
            "{}: this build has no baked-model renderer (cargo feature `nerf` of flythrough-render is off)",
            b.dir().display()
        ))),
        None => nerf_source(run, &r.appearance, device),
    }
}

/// The trained model of `RUN/train` as a ray source on `device` (`[render] device`).
pub fn nerf_source(
    run: &RunDir,
    appearance: &Appearance,
    device: Device,
) -> Result<Box<dyn RaySource>, RenderError> {
    let train = TrainOutput::open(run).map_err(|e| RenderError::Model(e.to_string()))?;
    #[cfg(feature = "nerf")]
    {
        let src = crate::nerf_source::NerfSource::load(&train, appearance, device)?;
        tracing::info!("render: NeRF on {}", src.device().line());
        Ok(Box::new(src))
    }
    #[cfg(not(feature = "nerf"))]
    {
        let _ = (appearance, device);
        Err(RenderError::Model(format!(
            "{}: this build has no NeRF renderer (cargo feature `nerf` of flythrough-render is off)",
            train.dir().display()
        )))
    }
}

/// World up: `sfm/report.json`'s `up` when it is usable, else the mean image-up of the registered
/// cameras (photos are mostly taken upright).
pub fn world_up(sfm: &SfmOutput, rec: &Reconstruction) -> Vector3<f64> {
    match sfm.report().map(|r| r.up_unit()) {
        Ok(Some(u)) => return u,
        Ok(None) => {
            tracing::warn!("render: sfm/report.json has no usable up; using the cameras' mean up")
        }
        Err(e) => tracing::warn!("render: {e}; using the cameras' mean up"),
    }
    let sum: Vector3<f64> = rec.images.values().map(|im| im.pose.up()).sum();
    if sum.norm() > 1e-9 {
        sum.normalize()
    } else {
        Vector3::z()
    }
}

/// Keyframes from the config, posed by the reconstruction, with the manifest's exposures.
pub fn keyframes(
    cfg: &RenderInputs,
    run: &RunDir,
) -> Result<(Vec<Keyframe>, Reconstruction, SfmOutput), RenderError> {
    let names = &cfg.keyframes;
    if names.len() < 2 {
        return Err(RenderError::Config(format!(
            "{}: [venue] keyframes lists {} photo(s); the fly-through needs at least 2",
            cfg.config_file.display(),
            names.len()
        )));
    }
    let sfm = SfmOutput::open(run).map_err(|e| RenderError::Model(e.to_string()))?;
    let model = sfm.model_dir();
    let rec = sfm.model().map_err(|e| RenderError::Model(e.to_string()))?;
    let manifest = match CaptureOutput::open(run).and_then(|c| c.manifest()) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!("render: {e}; keyframe exposures taken as EV 0");
            None
        }
    };
    let mut out = Vec::new();
    for name in names {
        let Some(im) = rec.image_by_name(name) else {
            if cfg.render.unregistered_keyframes == UnregisteredKeyframes::Skip {
                tracing::warn!(
                    "render: keyframe {name} was not registered by SfM; left out of the path"
                );
                continue;
            }
            return Err(RenderError::NotRegistered {
                name: name.clone(),
                model: model.clone(),
            });
        };
        let ev = manifest
            .as_ref()
            .and_then(|m| m.photo(name))
            .map(|p| p.exposure.ev)
            .unwrap_or(0.0);
        out.push(Keyframe {
            name: name.clone(),
            pose: im.pose,
            ev,
        });
    }
    if out.len() < 2 {
        return Err(RenderError::Config(format!(
            "{}: only {} of the {} keyframes were registered by SfM; the fly-through needs at least 2",
            cfg.config_file.display(),
            out.len(),
            names.len()
        )));
    }
    Ok((out, rec, sfm))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Frames the path needs at the configured rate (`floor(duration · fps) + 1`, before `max_frames`
/// lowers the rate); an error naming `[render] max_path_frames`, the
/// length and the likely cause when they exceed it (a calibration distance in millimetres makes a
/// 5 m walk a 5 km flight of 150,000 frames, days of rendering).
pub fn check_path_size(
    length_m: f64,
    duration_s: f64,
    r: &RenderConfig,
    max_path_frames: u32,
) -> Result<u64, RenderError> {
    let frames = (duration_s * r.fps + 1e-9).floor().max(0.0) as u64 + 1;
    if max_path_frames > 0 && frames > max_path_frames as u64 {
        let len = if length_m >= 1000.0 {
            format!("{:.1} km", length_m / 1000.0)
        } else {
            format!("{length_m:.1} m")
        };
        return Err(RenderError::Config(format!(
            "render: the path through the keyframes is {len} long, {frames} frames at {} fps and {} m/s, \
             above [render] max_path_frames = {}. A path far longer than the venue usually means a \
             [[calibration]] distance_m given in millimetres or centimetres instead of metres (SfM's \
             scale comes from it: see sfm/report.json); fix it and re-run sfm, or raise max_path_frames \
             (0 = no limit) if the path really is this long",
            r.fps, r.speed_m_per_s, max_path_frames
        )));
    }
    Ok(frames)
}

/// Build the path from the config and the run folder's committed SfM (and capture) output.
pub fn build_path(cfg: &RenderInputs, run: &RunDir) -> Result<PathPlan, RenderError> {
    let r = &cfg.render;
    let (kfs, rec, sfm) = keyframes(cfg, run)?;
    let up = world_up(&sfm, &rec);
    let fixed_ev = match r.exposure {
        ExposureMode::Fixed => Some(
            r.exposure_ev
                .unwrap_or_else(|| median(kfs.iter().map(|k| k.ev).collect())),
        ),
        ExposureMode::Interpolate => None,
    };
    let heading = r.heading;
    let path = CameraPath::new(
        kfs,
        up,
        PathSettings {
            speed_m_per_s: r.speed_m_per_s,
            ease_s: r.ease_s,
            heading,
        },
    )?;
    Ok(PathPlan {
        path,
        rec,
        fixed_ev,
    })
}

fn pano_name(k: usize) -> String {
    format!("pano_{k:05}.png")
}
fn preview_name(k: usize) -> String {
    format!("preview_{k:05}.png")
}

fn pano_camera(r: &RenderConfig, f: &PathSample, up: Vector3<f64>) -> Equirect {
    Equirect::new(
        r.width,
        r.height,
        Vector3::from(f.center),
        Vector3::from(f.forward),
        up,
    )
}

fn preview_camera(r: &RenderConfig, f: &PathSample) -> Perspective {
    let pose = f.pose();
    Perspective::new(
        r.preview_width,
        r.preview_height,
        r.preview_fov_deg,
        pose.center(),
        pose.rotation,
    )
}

/// Write a PNG atomically (`.partial` then rename) so a killed render never leaves a half frame.
fn save_png(img: &image::RgbImage, path: &Path) -> Result<(), RenderError> {
    let mut buf = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut buf), image::ImageFormat::Png)
        .map_err(|e| RenderError::Input {
            path: path.to_path_buf(),
            msg: format!("PNG encoding: {e}"),
        })?;
    flythrough_core::run::write_atomic(path, &buf).map_err(io_at(path))
}

fn load_png(path: &Path) -> Result<image::RgbImage, EncodeError> {
    image::open(path)
        .map(|i| i.to_rgb8())
        .map_err(|e| EncodeError::Msg(format!("{}: {e}", path.display())))
}

/// Whether `path` is a whole PNG of `w × h` (a frame a kill, a full disk or a bad sector left
/// damaged is not).
fn frame_is_whole(path: &Path, w: u32, h: u32) -> bool {
    image::open(path).is_ok_and(|i| (i.width(), i.height()) == (w, h))
}

/// The path frames still to render: those whose 360° frame or preview is missing, or is on disk but
/// does not decode to its size (deleted, with a warning naming it, and rendered again).
fn frames_to_render(r: &RenderConfig, n: usize, frames_dir: &Path) -> Vec<usize> {
    use rayon::prelude::*;
    let whole = |k: usize| {
        let files = [
            (pano_name(k), r.width, r.height),
            (preview_name(k), r.preview_width, r.preview_height),
        ];
        let mut ok = true;
        for (name, w, h) in files {
            let p = frames_dir.join(name);
            if !p.is_file() {
                ok = false;
            } else if !frame_is_whole(&p, w, h) {
                tracing::warn!(
                    "render: {} is damaged (it does not decode to {w}x{h}); rendering it again",
                    p.display()
                );
                let _ = std::fs::remove_file(&p);
                ok = false;
            }
        }
        ok
    };
    (0..n).into_par_iter().filter(|&k| !whole(k)).collect()
}

/// `r` with the 360° frame size resolved for the device `source` renders on (automatic size:
/// [`RenderConfig::frame_size`]).
pub fn resolved(r: &RenderConfig, source: &dyn RaySource) -> RenderConfig {
    let (width, height) = r.frame_size(source.device().on_gpu());
    RenderConfig {
        width,
        height,
        ..r.clone()
    }
}

/// Render every missing frame into `frames_dir`; returns (frames rendered now, seconds spent).
/// Sources that render whole frames on a device (the GPU) keep one path frame in flight while
/// the previous one is written, so PNG encoding overlaps rendering.
pub fn render_frames(
    r: &RenderConfig,
    frames: &[PathSample],
    up: Vector3<f64>,
    source: &dyn RaySource,
    frames_dir: &Path,
) -> Result<(usize, f64), RenderError> {
    let r = &resolved(r, source);
    std::fs::create_dir_all(frames_dir).map_err(io_at(frames_dir))?;
    let todo = frames_to_render(r, frames.len(), frames_dir);
    if todo.len() < frames.len() {
        tracing::info!(
            "render: resuming, {} of {} frames already rendered",
            frames.len() - todo.len(),
            frames.len()
        );
    }
    let reproject = r.preview_source == PreviewSource::Reproject;
    if let Some(first) = todo.first()
        && let Some(started) = source.start_frame(
            FrameCam::Equirect(&pano_camera(r, &frames[*first], up)),
            frames[*first].exposure_ev,
        )
    {
        return render_frames_on_device(r, frames, up, source, frames_dir, &todo, started);
    }
    let per_frame = tiles(r.width, r.height, r.tile_px).len()
        + if reproject {
            0
        } else {
            tiles(r.preview_width, r.preview_height, r.tile_px).len()
        };
    let pb = flythrough_core::progress::bar(
        (todo.len() * per_frame) as u64,
        "render: 360° + preview frames",
    );
    let done = AtomicU64::new(0);
    let tick = || {
        done.fetch_add(1, Ordering::Relaxed);
        pb.inc(1);
    };
    let t0 = Instant::now();
    let mut pano_seconds = 0.0;
    for &k in &todo {
        let f = &frames[k];
        let t = Instant::now();
        let pcam = pano_camera(r, f, up);
        let pano = render_frame(source, &pcam, f.exposure_ev, r.tile_px, &tick);
        pano_seconds += t.elapsed().as_secs_f64();
        let prev = if reproject {
            crate::frames::reproject(&pano, &pcam, &preview_camera(r, f))
        } else {
            render_frame(
                source,
                &preview_camera(r, f),
                f.exposure_ev,
                r.tile_px,
                &tick,
            )
        };
        save_png(&prev, &frames_dir.join(preview_name(k)))?;
        // The 360° frame last: its presence marks the frame done.
        save_png(&pano, &frames_dir.join(pano_name(k)))?;
    }
    pb.finish_and_clear();
    tracing::info!(
        "render: {} frames in {:.1} s ({:.3} s per 360° frame)",
        todo.len(),
        t0.elapsed().as_secs_f64(),
        pano_seconds / todo.len().max(1) as f64
    );
    Ok((todo.len(), pano_seconds))
}

/// A path frame in flight on the device: its 360° frame and, unless reprojected, its preview.
struct InFlight {
    k: usize,
    pano: Box<dyn PendingFrame>,
    preview: Option<Box<dyn PendingFrame>>,
    started: Instant,
}

/// [`render_frames`] for sources that render whole frames on a device: frame k + 1 is started
/// before frame k is read back and written, so the device renders while the host encodes PNGs.
fn render_frames_on_device(
    r: &RenderConfig,
    frames: &[PathSample],
    up: Vector3<f64>,
    source: &dyn RaySource,
    frames_dir: &Path,
    todo: &[usize],
    first_pano: Result<Box<dyn PendingFrame>, String>,
) -> Result<(usize, f64), RenderError> {
    let reproject = r.preview_source == PreviewSource::Reproject;
    let err = |e: String| RenderError::Model(format!("GPU frame rendering: {e}"));
    let start = |k: usize, pano: Option<Result<Box<dyn PendingFrame>, String>>| {
        let f = &frames[k];
        let started = Instant::now();
        let pano = match pano {
            Some(p) => p,
            None => source
                .start_frame(FrameCam::Equirect(&pano_camera(r, f, up)), f.exposure_ev)
                .unwrap_or_else(|| Err("the source stopped rendering whole frames".into())),
        }
        .map_err(err)?;
        let preview = if reproject {
            None
        } else {
            Some(
                source
                    .start_frame(FrameCam::Perspective(&preview_camera(r, f)), f.exposure_ev)
                    .unwrap_or_else(|| Err("no preview frame".into()))
                    .map_err(err)?,
            )
        };
        Ok::<_, RenderError>(InFlight {
            k,
            pano,
            preview,
            started,
        })
    };
    let pb =
        flythrough_core::progress::bar(todo.len() as u64, "render: 360° + preview frames (GPU)");
    let t0 = Instant::now();
    let mut pano_seconds = 0.0;
    let mut pending = Some(start(todo[0], Some(first_pano))?);
    for i in 0..todo.len() {
        let cur = pending.take().expect("a frame in flight");
        // Start the next frame before reading this one back.
        if let Some(&next) = todo.get(i + 1) {
            pending = Some(start(next, None)?);
        }
        let f = &frames[cur.k];
        let pano = cur.pano.wait().map_err(err)?;
        let prev = match cur.preview {
            Some(p) => p.wait().map_err(err)?,
            None => crate::frames::reproject(&pano, &pano_camera(r, f, up), &preview_camera(r, f)),
        };
        pano_seconds += cur.started.elapsed().as_secs_f64();
        save_png(&prev, &frames_dir.join(preview_name(cur.k)))?;
        // The 360° frame last: its presence marks the frame done.
        save_png(&pano, &frames_dir.join(pano_name(cur.k)))?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    let wall = t0.elapsed().as_secs_f64();
    tracing::info!(
        "render: {} frames of {}x{} on the GPU in {wall:.1} s ({:.3} s per path frame, rendering and writing overlapped)",
        todo.len(),
        r.width,
        r.height,
        wall / todo.len().max(1) as f64
    );
    // Frames overlap, so the per-frame figure is the wall time per frame.
    let _ = pano_seconds;
    Ok((todo.len(), wall))
}

/// Encode the frame PNGs named by `name(k)` into `out`.
fn encode_pngs(
    encoder: &encode::Encoder,
    spec: VideoSpec,
    dir: &Path,
    n: usize,
    name: fn(usize) -> String,
    out: &Path,
) -> Result<u64, RenderError> {
    let frames = (0..n).map(|k| load_png(&dir.join(name(k))));
    Ok(encode::encode(encoder, spec, frames, out)?)
}

/// Indices of `count` stills spread along the path (always including the first and last frame).
fn still_indices(n: usize, count: usize) -> Vec<usize> {
    match count {
        0 => vec![],
        1 => vec![n / 2],
        c => {
            let mut v: Vec<usize> = (0..c)
                .map(|i| ((n - 1) as f64 * i as f64 / (c - 1) as f64).round() as usize)
                .collect();
            v.dedup();
            v
        }
    }
}

/// The path of a render, built once ([`build_path`]; [`plan`] also checks its size).
pub struct PathPlan {
    pub path: CameraPath,
    pub rec: Reconstruction,
    pub fixed_ev: Option<f64>,
}

/// [`build_path`], checked against the machine's `max_path_frames`.
pub fn plan(cfg: &RenderInputs, machine: &Machine, run: &RunDir) -> Result<PathPlan, RenderError> {
    let plan = build_path(cfg, run)?;
    let (path, r) = (&plan.path, &cfg.render);
    let needed = check_path_size(path.length(), path.duration(), r, machine.max_path_frames)?;
    tracing::info!(
        "render: path {:.1} m at {} m/s = {:.1} s, {needed} frames at {} fps",
        path.length(),
        r.speed_m_per_s,
        path.duration(),
        r.fps
    );
    Ok(plan)
}

/// The stage body with any ray source (tests and benchmarks use [`crate::AnalyticRoom`]).
pub fn run_with_source(
    cfg: &RenderInputs,
    machine: &Machine,
    run: &RunDir,
    out: &Path,
    work: &Path,
    source: &dyn RaySource,
) -> Result<RenderSummary, RenderError> {
    let plan = plan(cfg, machine, run)?;
    render_plan(cfg, plan, out, work, source)
}

/// Render a planned path: frames (resumable in `work`), videos, stills, viewer.
pub fn render_plan(
    cfg: &RenderInputs,
    plan: PathPlan,
    out: &Path,
    work: &Path,
    source: &dyn RaySource,
) -> Result<RenderSummary, RenderError> {
    let r = &resolved(&cfg.render, source);
    let device = source.device();
    let PathPlan {
        path,
        rec,
        fixed_ev,
    } = plan;
    let fps = path.frame_rate(r.fps, r.max_frames);
    if fps < r.fps {
        tracing::info!(
            "render: max_frames = {} lowers the frame rate to {fps:.3} fps",
            r.max_frames
        );
    }
    let frames = path.frames(fps, fixed_ev);
    if !device.on_gpu() && source.name() == "nerf" {
        let reprojected = r.preview_source == PreviewSource::Reproject;
        let threads = rayon::current_num_threads();
        let secs = r.nerf_cpu_seconds((r.width, r.height), frames.len() as u64, threads);
        tracing::info!(
            "render: {} frames of {}x{} + a {}x{} preview{}: about {} on {threads} CPU threads \
             (estimate for the NeRF; the progress bar refines it), {:.1} GB at the peak",
            frames.len(),
            r.width,
            r.height,
            r.preview_width,
            r.preview_height,
            if reprojected { " (reprojected)" } else { "" },
            flythrough_core::progress::human_duration(secs),
            r.peak_bytes((r.width, r.height)) as f64 / (1u64 << 30) as f64
        );
    }
    let up = path.up();
    let pf = PathFile {
        fps,
        speed_m_per_s: r.speed_m_per_s,
        ease_s: path.ease(),
        heading: r.heading,
        length_m: path.length(),
        duration_s: path.duration(),
        frame_count: frames.len(),
        up: [up.x, up.y, up.z],
        width: r.width,
        height: r.height,
        appearance: r.appearance.to_string(),
        keyframes: path
            .keyframes()
            .iter()
            .zip(path.keyframe_u())
            .map(|(k, &u)| {
                let s = path.s_of_u(u);
                let c = k.pose.center();
                PathKeyframe {
                    name: k.name.clone(),
                    center: [c.x, c.y, c.z],
                    s_m: s,
                    time_s: path.t_of_s(s),
                    exposure_ev: fixed_ev.unwrap_or(k.ev),
                }
            })
            .collect(),
        frames: frames.clone(),
    };
    let pj = out.join(PATH_JSON);
    flythrough_core::run::write_json(&pj, &pf).map_err(io_at(&pj))?;

    // Frames (resumable).
    let frames_dir = work.join("frames");
    let (rendered, pano_seconds) = render_frames(r, &frames, up, source, &frames_dir)?;

    // Videos.
    let encoder = encode::choose(r.encoder)?;
    let t_enc = Instant::now();
    let v360 = out.join(VIDEO_360);
    let spec = VideoSpec {
        width: r.width,
        height: r.height,
        fps,
        crf: r.crf,
    };
    encode_pngs(&encoder, spec, &frames_dir, frames.len(), pano_name, &v360)?;
    mp4::inject_spherical(&v360, "flythrough")?;
    let vprev = out.join(VIDEO_PREVIEW);
    let pspec = VideoSpec {
        width: r.preview_width,
        height: r.preview_height,
        ..spec
    };
    encode_pngs(
        &encoder,
        pspec,
        &frames_dir,
        frames.len(),
        preview_name,
        &vprev,
    )?;
    let encode_seconds = t_enc.elapsed().as_secs_f64();

    // Stills for the report: perspective frames + the nearest registered photo.
    let sdir = out.join(STILLS_DIR);
    std::fs::create_dir_all(&sdir).map_err(io_at(&sdir))?;
    let mut stills = Vec::new();
    for (i, k) in still_indices(frames.len(), r.stills as usize)
        .into_iter()
        .enumerate()
    {
        let file = format!("still_{i:02}.png");
        let src = frames_dir.join(preview_name(k));
        std::fs::copy(&src, sdir.join(&file)).map_err(io_at(&src))?;
        let nearest = nearest_photo(&rec, &frames[k]);
        stills.push(Still {
            file,
            frame: k,
            time_s: frames[k].time_s,
            nearest_photo: nearest.as_ref().map(|n| n.0.clone()),
            distance_m: nearest.as_ref().map(|n| n.1),
            angle_deg: nearest.map(|n| n.2),
        });
    }
    let mid = frames.len() / 2;
    let pano_still = frames_dir.join(pano_name(mid));
    std::fs::copy(&pano_still, sdir.join(PANO_STILL)).map_err(io_at(&pano_still))?;
    let sj = out.join(STILLS_JSON);
    flythrough_core::run::write_json(&sj, &stills).map_err(io_at(&sj))?;

    // Viewer.
    let vsize = std::fs::metadata(&v360).map_err(io_at(&v360))?.len();
    let embed = (vsize as f64) <= r.viewer_embed_max_mb * 1024.0 * 1024.0;
    let video_bytes = if embed {
        Some(std::fs::read(&v360).map_err(io_at(&v360))?)
    } else {
        None
    };
    let html = viewer::viewer_html(&viewer::ViewerInfo {
        video_file: VIDEO_360.into(),
        embedded: video_bytes.as_deref(),
        title: cfg.venue_name.clone(),
        duration_s: frames.len() as f64 / fps,
        fps,
        length_m: path.length(),
        speed_m_per_s: r.speed_m_per_s,
    });
    let vp = out.join(VIEWER);
    std::fs::write(&vp, html).map_err(io_at(&vp))?;

    let spf = if rendered > 0 {
        pano_seconds / rendered as f64
    } else {
        0.0
    };
    Ok(RenderSummary {
        frames: frames.len(),
        frames_rendered_now: rendered,
        seconds_per_frame: spf,
        path_length_m: path.length(),
        duration_s: frames.len() as f64 / fps,
        fps,
        width: r.width,
        height: r.height,
        keyframes: path.keyframes().iter().map(|k| k.name.clone()).collect(),
        encoder: encoder.name().to_string(),
        encode_seconds,
        source: source.name(),
        appearance: r.appearance.to_string(),
        viewer_embeds_video: embed,
        video_360: VIDEO_360.into(),
        video_preview: VIDEO_PREVIEW.into(),
        viewer: VIEWER.into(),
        pano_still: format!("{STILLS_DIR}/{PANO_STILL}"),
        stills_dir: STILLS_DIR.into(),
        stills,
        device,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stills_spread_over_the_path() {
        assert_eq!(still_indices(100, 0), Vec::<usize>::new());
        assert_eq!(still_indices(100, 1), vec![50]);
        assert_eq!(still_indices(100, 3), vec![0, 50, 99]);
        assert_eq!(still_indices(2, 6), vec![0, 1]);
    }
}
