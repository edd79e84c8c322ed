//! `[render]` — owned by the render stage (`crates/render`, see its README for the path and video).
use super::{Device, KeyDoc, ensure};
use serde::{Deserialize, Serialize};

/// `[render] heading`: where the camera looks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Heading {
    /// Level, along the horizontal direction of travel.
    #[default]
    Travel,
    /// Interpolated between the keyframe photos' orientations (SQUAD).
    Keyframes,
}

/// `[render] exposure`: how the rendering exposure (EV) varies along the path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExposureMode {
    /// Follows the keyframe photos' EVs smoothly.
    #[default]
    Interpolate,
    /// One EV (`exposure_ev`, or the keyframes' median).
    Fixed,
}

/// `[render] encoder`: the H.264 encoder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoder {
    /// ffmpeg when on the PATH, else in-process openh264.
    #[default]
    Auto,
    Ffmpeg,
    Openh264,
}

/// `[render] preview_source`: how the perspective preview frames are made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreviewSource {
    /// Rays through the model (sharpest).
    #[default]
    Render,
    /// Resampled from the 360° frame.
    Reproject,
}

/// `[render] source`: what the frames are rendered from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RenderSource {
    /// The baked model when the bake stage has run, else the NeRF.
    #[default]
    Auto,
    /// The baked model (`RUN/bake`): real time, on any machine.
    Baked,
    /// The NeRF itself: the highest quality, seconds per frame on a GPU, minutes on a CPU.
    Nerf,
}

/// `[render] unregistered_keyframes`: a keyframe photo that SfM did not register.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnregisteredKeyframes {
    /// Stop with an error naming it.
    #[default]
    Fail,
    /// Leave it out of the path with a warning (at least 2 keyframes must remain).
    Skip,
}

/// `[render] appearance`: the appearance (GLO) latent the venue is rendered with. Written as a
/// string: `"mean"`, `"zero"`, or a training photo's file name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Appearance {
    /// The mean of the training photos' latents.
    #[default]
    Mean,
    /// The zero latent.
    Zero,
    /// The latent of one training photo (its file name).
    Photo(String),
}

impl Appearance {
    /// The string the config spells it with.
    pub fn as_str(&self) -> &str {
        match self {
            Appearance::Mean => "mean",
            Appearance::Zero => "zero",
            Appearance::Photo(name) => name,
        }
    }
}

impl Serialize for Appearance {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Appearance {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "mean" => Ok(Appearance::Mean),
            "zero" => Ok(Appearance::Zero),
            name if !name.trim().is_empty() => Ok(Appearance::Photo(name.to_string())),
            _ => Err(serde::de::Error::custom(
                "expected `mean`, `zero` or a training photo's file name",
            )),
        }
    }
}

/// The largest side of a video frame: 8192 (an 8192 x 4096 equirectangular frame is 8K 360° video,
/// within H.264 level 6.2's 139,264 macroblocks; one such frame is 100 MB of RGB in memory).
pub const MAX_VIDEO_SIDE: u32 = 8192;

/// `[render]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RenderConfig {
    /// A machine setting ([`crate::Machine`]): read by the stages only from there, never serialised
    /// with the section, so it is in no stage's hash and is printed by [`super::Config::documented`]
    /// as a machine key.
    #[serde(skip_serializing)]
    pub device: Device,
    pub speed_m_per_s: f64,
    pub fps: f64,
    pub width: u32,
    pub height: u32,
    pub crf: u32,
    pub ease_s: f64,
    pub heading: Heading,
    pub exposure: ExposureMode,
    pub exposure_ev: Option<f64>,
    pub preview_width: u32,
    pub preview_height: u32,
    pub preview_fov_deg: f64,
    pub max_frames: u32,
    /// A machine setting ([`crate::Machine`]): read by the stages only from there, never serialised
    /// with the section, so it is in no stage's hash and is printed by [`super::Config::documented`]
    /// as a machine key.
    #[serde(skip_serializing)]
    pub max_path_frames: u32,
    pub tile_px: u32,
    pub encoder: Encoder,
    pub viewer_embed_max_mb: f64,
    pub stills: u32,
    pub appearance: Appearance,
    pub preview_source: PreviewSource,
    pub source: RenderSource,
    pub unregistered_keyframes: UnregisteredKeyframes,
}

/// The automatic 360° frame size on the CPU (seconds per frame on a laptop).
pub const AUTO_SIZE_CPU: (u32, u32) = (1024, 512);
/// The automatic 360° frame size on a GPU: what 360° players and video sites expect.
pub const AUTO_SIZE_GPU: (u32, u32) = (3840, 1920);

/// Bytes per pixel a frame holds at its peak while it is rendered on the CPU: the tiles' colours
/// (3 × f32), the 8-bit frame, its PNG encoding (≤ 3 B/px for these images) and the rays of the
/// tiles in flight, rounded up.
pub const FRAME_BYTES_PER_PIXEL: u64 = 24;
/// What one frame costs beyond its pixels: the renderer's working set (the NeRF's weights and
/// per-thread sample buffers), rounded up from the measured peak of a 256x128 render (0.4 GB).
pub const RENDER_BASE_BYTES: u64 = 512 << 20;
/// Seconds of one CPU core per pixel for the NeRF at its default 160 samples (measured: 18.2 s for a
/// 1024x512 frame and its 640x360 preview on 2 cores, 24 µs per pixel per frame).
pub const NERF_CPU_CORE_SECONDS_PER_PIXEL: f64 = 48e-6;

impl RenderConfig {
    /// Pixels of one path frame rendered through the model: the 360° frame of `size` and, unless
    /// it is reprojected from the 360° frame, its preview.
    pub fn pixels_per_frame(&self, size: (u32, u32)) -> u64 {
        let preview = match self.preview_source {
            PreviewSource::Render => self.preview_width as u64 * self.preview_height as u64,
            PreviewSource::Reproject => 0,
        };
        size.0 as u64 * size.1 as u64 + preview
    }

    /// Peak memory of rendering frames of `size` on the CPU (one frame at a time), in bytes.
    pub fn peak_bytes(&self, size: (u32, u32)) -> u64 {
        let preview = self.preview_width as u64 * self.preview_height as u64;
        RENDER_BASE_BYTES + FRAME_BYTES_PER_PIXEL * (size.0 as u64 * size.1 as u64 + preview)
    }

    /// Estimated wall seconds for `frames` frames of `size` with the NeRF on `threads` CPU threads.
    pub fn nerf_cpu_seconds(&self, size: (u32, u32), frames: u64, threads: usize) -> f64 {
        frames as f64 * self.pixels_per_frame(size) as f64 * NERF_CPU_CORE_SECONDS_PER_PIXEL
            / threads.max(1) as f64
    }

    /// The pre-run memory check: `Err` naming the keys to lower when rendering a frame of the CPU
    /// size needs more than `available` bytes.
    pub fn check_memory(&self, available: u64) -> Result<(), String> {
        let size = self.frame_size(false);
        let need = self.peak_bytes(size);
        if need <= available {
            return Ok(());
        }
        let gb = |b: u64| b as f64 / (1u64 << 30) as f64;
        Err(format!(
            "[render] width x height = {}x{} with a {}x{} preview needs about {:.1} GB while a frame is rendered, \
             and this machine has {:.1} GB available: lower [render] width and height (or preview_width and preview_height)",
            size.0,
            size.1,
            self.preview_width,
            self.preview_height,
            gb(need),
            gb(available)
        ))
    }

    /// The 360° frame size: `width x height`, or when both are 0 the automatic size for the
    /// device the frames are rendered on.
    pub fn frame_size(&self, on_gpu: bool) -> (u32, u32) {
        match (self.width, self.height, on_gpu) {
            (0, 0, false) => AUTO_SIZE_CPU,
            (0, 0, true) => AUTO_SIZE_GPU,
            (w, h, _) => (w, h),
        }
    }
}

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig {
            device: Device::Auto,
            speed_m_per_s: 1.0,
            fps: 30.0,
            width: 0,
            height: 0,
            crf: 18,
            ease_s: 1.0,
            heading: Heading::Travel,
            exposure: ExposureMode::Interpolate,
            exposure_ev: None,
            preview_width: 640,
            preview_height: 360,
            preview_fov_deg: 90.0,
            max_frames: 0,
            max_path_frames: 20_000,
            tile_px: 64,
            encoder: Encoder::Auto,
            viewer_embed_max_mb: 16.0,
            stills: 6,
            appearance: Appearance::Mean,
            preview_source: PreviewSource::Render,
            source: RenderSource::Auto,
            unregistered_keyframes: UnregisteredKeyframes::Fail,
        }
    }
}

pub(super) const DOCS: &[KeyDoc] = &[
    (
        "speed_m_per_s",
        "Camera speed along the path, metres per second (uses SfM's metric scale).",
    ),
    ("fps", "Frames per second of the videos."),
    ("device", super::device::DOC),
    (
        "width",
        "Width of the 360° (equirectangular) frames; must be 2 x height. 0 (with height = 0) = automatic:\n1024 x 512 when rendering on the CPU, 3840 x 1920 on a GPU.",
    ),
    (
        "height",
        "Height of the 360° frames (even; 0 = automatic, see width).",
    ),
    (
        "crf",
        "H.264 constant rate factor (0 = lossless .. 51 = worst; 18 is visually lossless).",
    ),
    (
        "ease_s",
        "Seconds of smooth acceleration at the start and deceleration at the end (0 = none).\nEach ramp adds ease_s / 2 to the video's length (path length / speed).",
    ),
    (
        "heading",
        "Where the camera looks: \"travel\" (level, along the direction of travel) or\n\"keyframes\" (orientation interpolated between the keyframe photos).",
    ),
    (
        "exposure",
        "\"interpolate\": exposure follows the keyframe photos' EVs smoothly; \"fixed\": one EV.",
    ),
    (
        "exposure_ev",
        "EV for exposure = \"fixed\" (unset: the median of the keyframes' EVs).",
    ),
    (
        "preview_width",
        "Width of the perspective preview video (even).",
    ),
    (
        "preview_height",
        "Height of the perspective preview video (even).",
    ),
    (
        "preview_fov_deg",
        "Horizontal field of view of the preview camera, degrees.",
    ),
    (
        "max_frames",
        "Upper bound on frames per video (0 = none). When the path needs more, the frame rate is\nlowered so the whole path still plays at the configured speed (for quick demos).",
    ),
    (
        "max_path_frames",
        "Refuse to render when the path needs more frames than this at fps and speed_m_per_s (before\nmax_frames lowers the rate); 0 = no limit. 20000 frames = 11 min at 30 fps, 667 m at 1 m/s.\nA path far longer than the venue usually means a [[calibration]] distance_m in millimetres.",
    ),
    (
        "tile_px",
        "Frames are rendered in square tiles of this many pixels a side (rays per batch = tile_px²).",
    ),
    (
        "encoder",
        "\"auto\" (ffmpeg when on PATH, else in-process openh264), \"ffmpeg\" or \"openh264\".",
    ),
    (
        "viewer_embed_max_mb",
        "viewer.html embeds the 360° video (so it works opened as a file) when the video is at\nmost this many MiB; larger videos are loaded from the file next to it (use `flythrough view`).",
    ),
    (
        "stills",
        "Number of rendered stills, each beside its nearest real photo, in report.html.",
    ),
    (
        "preview_source",
        "How preview frames are made: \"render\" (rays through the model, sharpest) or \"reproject\"\n(resampled from the 360° frame: no extra model time, softer when the 360° frame is small).",
    ),
    (
        "source",
        "What the frames are rendered from: \"auto\" (the baked model when the bake stage ran, else the\nNeRF), \"baked\" (real time on any machine) or \"nerf\" (the NeRF itself: highest quality, for a GPU).",
    ),
    (
        "unregistered_keyframes",
        "A keyframe photo that SfM did not register: \"fail\" (stop with an error naming it) or\n\"skip\" (leave it out of the path with a warning; at least 2 keyframes must remain).",
    ),
    (
        "appearance",
        "Appearance (GLO) latent of the NeRF: \"mean\" of the training photos, \"zero\", or a\ntraining photo's file name to render the venue as it looked in that photo.",
    ),
];

impl RenderConfig {
    pub(super) fn check(&self) -> Result<(), String> {
        ensure(
            self.speed_m_per_s.is_finite() && self.speed_m_per_s > 0.0,
            "speed_m_per_s",
            self.speed_m_per_s,
            "must be > 0",
        )?;
        ensure(
            self.fps > 0.0 && self.fps <= 240.0,
            "fps",
            self.fps,
            "must be in (0, 240]",
        )?;
        ensure(
            (self.width == 0 && self.height == 0)
                || (self.width == 2 * self.height
                    && self.height >= 8
                    && self.height.is_multiple_of(2)),
            "width",
            self.width,
            "must be 2 x height, height even and >= 8 (equirectangular 2:1, yuv420p), or both 0 (automatic)",
        )?;
        ensure(
            self.width <= MAX_VIDEO_SIDE && self.height <= MAX_VIDEO_SIDE / 2,
            "width",
            (self.width, self.height),
            &format!(
                "at most {MAX_VIDEO_SIDE} x {} (8K equirectangular, the largest H.264 frame players decode)",
                MAX_VIDEO_SIDE / 2
            ),
        )?;
        ensure(self.crf <= 51, "crf", self.crf, "must be in 0..=51")?;
        ensure(
            self.ease_s.is_finite() && (0.0..=60.0).contains(&self.ease_s),
            "ease_s",
            self.ease_s,
            "must be in [0, 60] seconds",
        )?;
        if let Some(ev) = self.exposure_ev {
            ensure(
                ev.is_finite() && ev.abs() <= 30.0,
                "exposure_ev",
                ev,
                "must be in [-30, 30]",
            )?;
        }
        ensure(
            self.preview_width >= 8
                && self.preview_height >= 8
                && self.preview_width.is_multiple_of(2)
                && self.preview_height.is_multiple_of(2),
            "preview_width",
            (self.preview_width, self.preview_height),
            "preview_width and preview_height must be even and >= 8",
        )?;
        ensure(
            self.preview_width <= MAX_VIDEO_SIDE && self.preview_height <= MAX_VIDEO_SIDE,
            "preview_width",
            (self.preview_width, self.preview_height),
            &format!("preview_width and preview_height must be at most {MAX_VIDEO_SIDE}"),
        )?;
        ensure(
            self.preview_fov_deg > 10.0 && self.preview_fov_deg < 170.0,
            "preview_fov_deg",
            self.preview_fov_deg,
            "must be in (10, 170) degrees",
        )?;
        ensure(
            self.max_frames == 0 || self.max_frames >= 2,
            "max_frames",
            self.max_frames,
            "must be 0 (no limit) or >= 2",
        )?;
        ensure(
            (4..=1024).contains(&self.tile_px),
            "tile_px",
            self.tile_px,
            "must be in 4..=1024",
        )?;
        ensure(
            self.viewer_embed_max_mb.is_finite() && self.viewer_embed_max_mb >= 0.0,
            "viewer_embed_max_mb",
            self.viewer_embed_max_mb,
            "must be >= 0",
        )?;
        ensure(
            self.stills <= 64,
            "stills",
            self.stills,
            "must be in 0..=64",
        )
    }
}
