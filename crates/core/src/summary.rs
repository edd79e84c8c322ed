//! What each stage reports: one typed summary per stage, returned by the stage's `run`, stored as the
//! `summary` of its `stage.json` by the stage runner, and read back as the same struct by
//! `report.html` (and anyone else) with [`crate::run::StageRecord::summary`]. No one picks JSON
//! fields by name: adding a figure means adding a field here, where writer and readers share it.
//!
//! Also here: `privacy/redactions.json` ([`Redactions`]), the per-face record the report's detection
//! section reads, and `render/stills/stills.json` ([`Still`]).

use crate::run::Stage;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A stage's summary type.
pub trait Summary: Serialize + DeserializeOwned {
    /// The stage whose `stage.json` holds it.
    const STAGE: Stage;
    /// One line for the log and the report's stage table.
    fn headline(&self) -> String;
}

/// Where a stage computed: the CPU, or a GPU adapter. One type for the log, `stage.json` and the
/// report (the GPU back end fills it from its adapter).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceUsed {
    /// `"cpu"` or `"gpu"`.
    #[serde(default)]
    pub device: String,
    /// The GPU adapter, when on a GPU.
    #[serde(default)]
    pub adapter: Option<AdapterInfo>,
}

/// A GPU adapter as the pipeline records it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdapterInfo {
    /// e.g. `NVIDIA H200`, `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    /// `vulkan`, `metal`, `dx12`, `gl`.
    pub backend: String,
    /// Driver name and version.
    pub driver: String,
    /// `discrete`, `integrated`, `virtual`, `cpu` or `other`.
    pub kind: String,
    /// A CPU rasteriser.
    #[serde(default)]
    pub software: bool,
    /// How gradient scatters add floats on it: `native-f32` atomics or a `cas-u32` loop.
    #[serde(default)]
    pub atomics: String,
    /// Whether the device has subgroup operations (then the hash-grid gradient scatter
    /// pre-reduces in subgroups) and `f16` in shaders.
    #[serde(default)]
    pub subgroups: bool,
    #[serde(default)]
    pub shader_f16: bool,
    /// The device's subgroup sizes in lanes, smallest and largest (NVIDIA 32; 0 without
    /// subgroups).
    #[serde(default)]
    pub subgroup_min_size: u32,
    #[serde(default)]
    pub subgroup_max_size: u32,
    /// How GPU training stores the MLPs' hidden activations for the backward: `f16` where the
    /// device has shader f16 (unless `FLYTHROUGH_GPU_F16=0`), else `f32`.
    #[serde(default)]
    pub mlp_activations: String,
    /// How the hash-grid gradient scatter runs: `subgroup` (pre-reduced in subgroups at the
    /// coarse levels; hardware adapters with subgroups, unless `FLYTHROUGH_GPU_SUBGROUPS=0`) or
    /// `plain`.
    #[serde(default)]
    pub hash_scatter: String,
    /// Where the MLP kernels read their weights: `global` memory, or staged in `workgroup` memory
    /// (`FLYTHROUGH_GPU_MLP_WEIGHTS=workgroup`; as asked: a model too wide for the staged rows to
    /// fit beside a one-row tile reads them from global memory).
    #[serde(default)]
    pub mlp_weights: String,
    /// The MLP kernels' register tile per invocation, rows x columns: `4x4`, or `8x4` with
    /// `FLYTHROUGH_GPU_MLP_ROWS=8`.
    #[serde(default)]
    pub mlp_register_tile: String,
    /// Whether kernels keep naga's run-time checks (`FLYTHROUGH_GPU_CHECKS=1`).
    #[serde(default)]
    pub runtime_checks: bool,
}

impl DeviceUsed {
    pub fn cpu() -> DeviceUsed {
        DeviceUsed {
            device: "cpu".into(),
            adapter: None,
        }
    }

    pub fn gpu(adapter: AdapterInfo) -> DeviceUsed {
        DeviceUsed {
            device: "gpu".into(),
            adapter: Some(adapter),
        }
    }

    pub fn on_gpu(&self) -> bool {
        self.device == "gpu"
    }

    /// One line for the log: `cpu` or `gpu: NVIDIA H200 (vulkan, NVIDIA 550.54)`.
    pub fn line(&self) -> String {
        match &self.adapter {
            Some(a) => format!("gpu: {} ({}, {})", a.name, a.backend, a.driver),
            None => self.device.clone(),
        }
    }
}

/// A file and what is wrong with it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileIssue {
    pub file: String,
    pub reason: String,
}

/// `capture`: photos found and the quality checks of `capture/qa.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CaptureSummary {
    pub photos_found: usize,
    pub photos_usable: usize,
    /// Photos that could not be decoded (left out or, with `on_broken_photo = "fail"`, fatal).
    pub broken: Vec<FileIssue>,
    /// Files of the photo folder that are not read as photos.
    pub ignored_files: Vec<FileIssue>,
    pub missing_exif: usize,
    pub camera_bodies: Vec<String>,
    pub blurry: Vec<String>,
    pub overexposed: Vec<String>,
    pub underexposed: Vec<String>,
    pub near_duplicates: usize,
    /// One line per problem found, for people.
    pub warnings: Vec<String>,
}

impl Summary for CaptureSummary {
    const STAGE: Stage = Stage::Capture;
    fn headline(&self) -> String {
        format!(
            "{} of {} photos usable, {} broken, {} warnings",
            self.photos_usable,
            self.photos_found,
            self.broken.len(),
            self.warnings.len()
        )
    }
}

/// `privacy`: what was scanned and blurred (details per photo and face in [`Redactions`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrivacySummary {
    pub photos_in: usize,
    /// Photos written to `privacy/images` (every one scanned and redacted).
    pub photos_out: usize,
    pub photos_with_faces: usize,
    pub faces: usize,
    pub faces_blurred: usize,
    /// Faces left unblurred by a `[[privacy.keep]]` override.
    pub faces_kept: usize,
    pub extra_regions: usize,
    /// Photos that could not be scanned: never written to `privacy/images`.
    pub unscannable: Vec<FileIssue>,
    pub detector: String,
    pub score_threshold: f32,
    /// The memory budget photos in flight were held to (`[privacy] memory_budget_gb`, resolved).
    #[serde(default)]
    pub memory_budget_bytes: u64,
    /// Largest estimated bytes of the photos in flight at once.
    #[serde(default)]
    pub peak_estimated_bytes_in_flight: u64,
    /// Most photos in flight at once.
    #[serde(default)]
    pub peak_photos_in_flight: usize,
}

impl Summary for PrivacySummary {
    const STAGE: Stage = Stage::Privacy;
    fn headline(&self) -> String {
        format!(
            "{} of {} photos redacted, {} faces found, {} blurred, {} unscannable",
            self.photos_out,
            self.photos_in,
            self.faces,
            self.faces_blurred,
            self.unscannable.len()
        )
    }
}

/// `sfm`: registration, accuracy and scale (the full record is `sfm/report.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SfmSummary {
    pub registered: usize,
    pub total: usize,
    /// Photos that did not register, with why.
    pub unregistered: Vec<FileIssue>,
    /// Photos left out before matching (featureless, tiny or unreadable); also in `unregistered`.
    pub left_out: Vec<String>,
    /// Photos of the smaller models that were not kept (the model broke into pieces), largest
    /// first; also in `unregistered`.
    pub other_models: Vec<Vec<String>>,
    pub points: usize,
    pub mean_track_length: f64,
    /// Mean and RMS reprojection error, pixels of the full-resolution photos.
    pub mean_reproj_px: f64,
    pub rms_reproj_px: f64,
    /// Metres per model unit (1 without calibration pairs).
    pub scale: f64,
    /// `(max − min) / median` of the calibration pairs' scales.
    pub scale_spread: f64,
    pub calibration_pairs: usize,
    pub scale_warning: Option<String>,
    pub cameras: usize,
    pub init_pair: Option<[String; 2]>,
    /// The `[sfm] import` folder when a model was imported instead of reconstructed.
    pub imported: Option<String>,
    pub seconds: f64,
}

impl Summary for SfmSummary {
    const STAGE: Stage = Stage::Sfm;
    fn headline(&self) -> String {
        format!(
            "{} of {} photos registered, {} points, {:.2} px mean reprojection error, scale {:.4} m/unit",
            self.registered, self.total, self.points, self.mean_reproj_px, self.scale
        )
    }
}

/// One held-out photo's scores.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HoldoutScore {
    pub name: String,
    pub psnr: f64,
    pub ssim: f64,
}

/// Work the host sent a GPU per training step (means over a training call, from
/// `flythrough_gpu::Gpu::counters`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StepCounters {
    /// Compute dispatches recorded.
    pub dispatches_per_step: f64,
    /// Compute passes begun.
    pub passes_per_step: f64,
    /// Bytes written with queue writes (batch, uniforms).
    pub upload_bytes_per_step: f64,
    /// Bytes copied out for read-back (metrics, checkpoints).
    pub readback_bytes_per_step: f64,
    /// Command buffers submitted.
    pub submits_per_step: f64,
}

/// `train`: steps, speed and held-out quality (the full record is `train/eval.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    pub steps: usize,
    pub steps_this_run: usize,
    /// Step of the checkpoint this run resumed from (`None`: from scratch).
    pub resumed_from: Option<usize>,
    pub train_seconds: f64,
    pub photos_train: usize,
    pub photos_holdout: usize,
    /// Training photos left out (`[train] skip_blurry`: capture QA flagged them blurry).
    pub photos_skipped: Vec<String>,
    /// Training resolution, pixels.
    pub train_width: u32,
    pub train_height: u32,
    /// Bytes of photo pixels held in memory for training.
    pub image_bytes: usize,
    /// Held-out evaluation protocol (e.g. NeRF-W half-image latent optimisation).
    pub eval_protocol: String,
    pub psnr_holdout: f64,
    pub ssim_holdout: f64,
    /// Held-out photos scored (evaluation is bounded: at most a few, spread over the capture).
    pub photos_evaluated: usize,
    pub eval_seconds: f64,
    pub holdout: Vec<HoldoutScore>,
    pub samples_per_s: f64,
    pub rays_per_s: f64,
    pub render_rays_per_s: f64,
    /// Milliseconds per step the training thread was blocked (on the device and on checkpoints).
    #[serde(default)]
    pub host_wait_ms_per_step: f64,
    /// Milliseconds per step the training thread spent on checkpoints (written in the
    /// background: only handing over, and waiting when one was due before the last had finished).
    #[serde(default)]
    pub checkpoint_wait_ms_per_step: f64,
    /// Periodic checkpoints written this run (the final one not counted).
    #[serde(default)]
    pub checkpoints_written: usize,
    /// Work sent to the GPU per step (GPU runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_per_step: Option<StepCounters>,
    /// The loss and PSNR curve, a PNG inside `RUN/train/`.
    pub loss_plot: String,
    /// Where the stage ran (`device`, and `adapter` on a GPU).
    #[serde(flatten)]
    pub device: DeviceUsed,
}

impl Summary for TrainSummary {
    const STAGE: Stage = Stage::Train;
    fn headline(&self) -> String {
        format!(
            "{} steps ({} this run), held-out PSNR {:.2} dB, SSIM {:.3}, {:.0} rays/s",
            self.steps, self.steps_this_run, self.psnr_holdout, self.ssim_holdout, self.rays_per_s
        )
    }
}

/// `bake/stage.json`: the baked model and how close it is to its NeRF.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BakeSummary {
    /// What the model is (`"sparse 8-bit voxel grid + deferred colour head"`).
    pub representation: String,
    /// Voxels per side of the contracted space `[-2, 2]^3`, and per block.
    pub resolution: usize,
    pub block: usize,
    /// Fraction of the blocks stored (after culling empty and unseen space).
    pub occupied_fraction: f64,
    /// Size of `baked.safetensors` and its blake3 (checked by render and view).
    pub bytes: u64,
    pub model_blake3: String,
    pub bake_seconds: f64,
    /// Fine-tuning on the training photos (0 steps: none): its seconds and the PSNR on its
    /// training batches at the start and the end.
    #[serde(default)]
    pub finetune_steps: usize,
    #[serde(default)]
    pub finetune_seconds: f64,
    #[serde(default)]
    pub finetune_psnr_train_start: f64,
    #[serde(default)]
    pub finetune_psnr_train_end: f64,
    /// Held-out PSNR/SSIM of the baked model and of the NeRF under the same protocol (train's).
    pub eval_protocol: String,
    pub psnr_holdout_baked: f64,
    pub ssim_holdout_baked: f64,
    pub psnr_holdout_nerf: f64,
    pub ssim_holdout_nerf: f64,
    /// Seconds of the baked model's held-out evaluation.
    pub eval_seconds: f64,
}

impl Summary for BakeSummary {
    const STAGE: Stage = Stage::Bake;
    fn headline(&self) -> String {
        format!(
            "{}^3 grid, {:.1} % stored, {:.1} MB; held-out PSNR {:.2} dB baked vs {:.2} dB NeRF",
            self.resolution,
            100.0 * self.occupied_fraction,
            self.bytes as f64 / 1e6,
            self.psnr_holdout_baked,
            self.psnr_holdout_nerf
        )
    }
}

/// A rendered still and its nearest registered photo (`render/stills/stills.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Still {
    pub file: String,
    pub frame: usize,
    pub time_s: f64,
    /// The registered photo whose camera centre is nearest (file name in `privacy/images`).
    pub nearest_photo: Option<String>,
    pub distance_m: Option<f64>,
    /// Angle between the still's and the photo's viewing directions, degrees.
    #[serde(default)]
    pub angle_deg: Option<f64>,
}

/// `render`: the path, the videos and the stills.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RenderSummary {
    pub frames: usize,
    pub frames_rendered_now: usize,
    pub seconds_per_frame: f64,
    pub path_length_m: f64,
    pub duration_s: f64,
    pub fps: f64,
    pub width: u32,
    pub height: u32,
    pub keyframes: Vec<String>,
    pub encoder: String,
    pub encode_seconds: f64,
    /// The ray source (the trained NeRF, or an analytic scene in tests).
    pub source: String,
    /// `[render] appearance` as written (`mean`, `zero` or a photo name; `path.json` carries it
    /// too, for the viewer's walk mode). Empty in run folders from before it was recorded.
    #[serde(default)]
    pub appearance: String,
    pub viewer_embeds_video: bool,
    /// Output files, relative to `RUN/render/`.
    pub video_360: String,
    pub video_preview: String,
    pub viewer: String,
    /// A 360° frame from the middle of the path (PNG).
    pub pano_still: String,
    /// Folder of the stills' files.
    pub stills_dir: String,
    pub stills: Vec<Still>,
    /// Where the stage ran (`device`, and `adapter` on a GPU).
    #[serde(flatten)]
    pub device: DeviceUsed,
}

impl Summary for RenderSummary {
    const STAGE: Stage = Stage::Render;
    fn headline(&self) -> String {
        format!(
            "{} frames of {}x{} at {:.2} fps, {:.1} m in {:.1} s, {} encoder",
            self.frames,
            self.width,
            self.height,
            self.fps,
            self.path_length_m,
            self.duration_s,
            self.encoder
        )
    }
}

/// `privacy/redactions.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Redactions {
    pub detector: DetectorInfo,
    pub blur: BlurInfo,
    pub photos: Vec<PhotoRedaction>,
}

/// Which detector produced the boxes, and with which settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorInfo {
    pub name: String,
    /// Model and runtime versions.
    pub version: String,
    pub model_file: String,
    /// blake3 of the model bytes.
    pub model_blake3: String,
    pub origin: String,
    pub threshold: f32,
    /// Smallest face (px) the image pyramid is sized for.
    pub min_face_px: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlurInfo {
    pub method: String,
    /// Each face box is grown by this fraction of its size on every side before blurring.
    pub padding: f32,
    pub cells_across_face: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhotoStatus {
    /// Scanned; every face found (and every extra region) is blurred in `privacy/images`.
    Redacted,
    /// Could not be decoded or scanned: not written to `privacy/images`.
    Unscannable,
}

/// One face found in a photo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Face {
    /// `[x, y, w, h]` in pixels of the upright photo.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub score: f32,
    pub detector: String,
    /// False when a `[[privacy.keep]]` override left it unblurred.
    pub blurred: bool,
    /// Index into `[[privacy.keep]]` of the override that kept it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kept_by: Option<usize>,
}

/// What happened to one photo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhotoRedaction {
    pub file: String,
    pub status: PhotoStatus,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    pub faces: Vec<Face>,
    /// `[[privacy.extra_regions]]` rectangles blurred in this photo.
    pub extra_regions: Vec<[u32; 4]>,
    /// Seconds spent decoding, scanning and blurring.
    pub seconds: f64,
}

impl Redactions {
    /// Its file name in `RUN/privacy/`.
    pub const FILE: &'static str = "redactions.json";

    /// `RUN/privacy/redactions.json`.
    pub fn read(path: &std::path::Path) -> std::io::Result<Redactions> {
        let s = std::fs::read_to_string(path)?;
        serde_json::from_str(&s)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))
    }
}
