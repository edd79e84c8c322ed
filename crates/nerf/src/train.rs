//! The training loop: random ray batches, Adam with warm-up and log-linear decay, gradient clipping,
//! checkpoints in the work folder (resumed on the next call), metrics, evaluation and outputs.

use crate::NerfError;
use crate::checkpoint::{self, CheckpointMeta};
use crate::composite::psnr;
use crate::data::Dataset;
use crate::driver::{Backend, CheckpointJob, DeviceMetrics, MetricsAt, StepBatch, StepPlan};
use crate::inference::render_photo_rays;
use crate::kernels::{Adam, AdamConfig, clip_scale, global_grad_norm};
use crate::metrics;
use crate::model::{LossWeights, Losses, Model, ModelConfig, RayGrads, Rays, SampleMode};
use flythrough_core::config::TrainConfig;
use flythrough_core::stage::Hooks;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// Adam hyper-parameters of every buffer (Instant-NGP / nerfacto: beta2 0.99, eps 1e-15).
pub const ADAM: AdamConfig = AdamConfig {
    beta1: 0.9,
    beta2: 0.99,
    eps: 1e-15,
};

/// multinerf `math.learning_rate_decay`: log-linear from `lr_init` to `lr_final` over progress
/// `p in [0,1]`, times the warm-up factor `0.01 + 0.99 sin(pi/2 clip(step / warmup, 0, 1))`.
pub fn learning_rate(cfg: &TrainConfig, step: usize, progress: f64) -> f64 {
    let p = progress.clamp(0.0, 1.0);
    let lr = (cfg.lr_init.ln() * (1.0 - p) + cfg.lr_final.ln() * p).exp();
    let delay = if cfg.lr_warmup_steps > 0 {
        0.01 + 0.99
            * (std::f64::consts::FRAC_PI_2
                * (step as f64 / cfg.lr_warmup_steps as f64).clamp(0.0, 1.0))
            .sin()
    } else {
        1.0
    };
    lr * delay
}

/// The camera corrections' rate: [`learning_rate`]'s schedule from `pose_lr`, decaying by the same
/// factor as the model's (`lr_final / lr_init`).
pub fn pose_learning_rate(cfg: &TrainConfig, step: usize, progress: f64) -> f64 {
    learning_rate(cfg, step, progress) * cfg.pose_lr / cfg.lr_init
}

/// Apply each ray's camera correction (`cam_opt` row `idx[i]`: `tau`, `omega`, norm frame):
/// `o' = o + tau`, `d' = Exp(omega) d` (rotation about the camera centre; nerfacto's SO3xR3).
pub fn apply_camera_corrections(cam_opt: &[f32], idx: &[usize], rays: &mut Rays) {
    let rots: Vec<[[f32; 3]; 3]> = cam_opt
        .chunks_exact(6)
        .map(|c| crate::coord::exp_so3([c[3], c[4], c[5]]))
        .collect();
    for (i, &k) in idx.iter().enumerate() {
        let c = &cam_opt[6 * k..6 * k + 6];
        let (o, d) = (&mut rays.o[i], &mut rays.d[i]);
        for a in 0..3 {
            o[a] += c[a];
        }
        let r = &rots[k];
        *d = std::array::from_fn(|a| r[a][0] * d[0] + r[a][1] * d[1] + r[a][2] * d[2]);
    }
}

/// Add the rays' gradients to their cameras' correction gradients: `dL/dtau = sum dL/do`, and for
/// the rotation the left-perturbation gradient `dL/domega = sum d' x dL/dd'` (exact at
/// `omega = 0`; the corrections stay small).
pub fn camera_correction_grads(rays: &Rays, idx: &[usize], dr: &RayGrads, g: &mut [f32]) {
    for (i, &k) in idx.iter().enumerate() {
        let (go, gd, d) = (dr.o[i], dr.d[i], rays.d[i]);
        let c = &mut g[6 * k..6 * k + 6];
        for a in 0..3 {
            c[a] += go[a];
        }
        c[3] += d[1] * gd[2] - d[2] * gd[1];
        c[4] += d[2] * gd[0] - d[0] * gd[2];
        c[5] += d[0] * gd[1] - d[1] * gd[0];
    }
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct MetricLine {
    pub step: usize,
    pub elapsed_s: f64,
    pub lr: f64,
    pub loss: f64,
    pub data: f64,
    pub distortion: f64,
    pub interlevel: f64,
    pub psnr: f64,
    pub grad_norm: f64,
    pub samples_per_s: f64,
    pub rays_per_s: f64,
    /// With pose refinement: mean camera correction, translation (norm units) and rotation (deg).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pose_t: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pose_r_deg: Option<f64>,
}

/// Remove the corrections' common part (their mean translation and rotation vector): a shift or
/// turn shared by every camera is a gauge freedom that moves the whole scene (the held-out and
/// render cameras, which get no correction, would then be off by it).
pub fn remove_common_correction(cam_opt: &mut [f32]) {
    let n = (cam_opt.len() / 6).max(1) as f32;
    let mut mean = [0f32; 6];
    for c in cam_opt.chunks_exact(6) {
        for k in 0..6 {
            mean[k] += c[k] / n;
        }
    }
    for c in cam_opt.chunks_exact_mut(6) {
        for k in 0..6 {
            c[k] -= mean[k];
        }
    }
}

/// The camera correction a photo without its own (held out) gets: the linear interpolation, by
/// position in name (capture) order, of the corrections of the nearest training photos before and
/// after it (the one neighbour at either end). Pose errors of a walk drift smoothly along it.
pub fn interpolated_correction(ds: &Dataset, cam_opt: &[f32], p: usize) -> [f32; 6] {
    let before = (0..p)
        .rev()
        .find_map(|i| ds.photos[i].latent.map(|k| (i, k)));
    let after = (p + 1..ds.photos.len()).find_map(|i| ds.photos[i].latent.map(|k| (i, k)));
    let row = |k: usize| -> [f32; 6] { std::array::from_fn(|j| cam_opt[6 * k + j]) };
    match (before, after) {
        (Some((i, a)), Some((j, b))) => {
            let w = (p - i) as f32 / (j - i) as f32;
            let (ra, rb) = (row(a), row(b));
            std::array::from_fn(|q| (1.0 - w) * ra[q] + w * rb[q])
        }
        (Some((_, a)), None) => row(a),
        (None, Some((_, b))) => row(b),
        (None, None) => [0.0; 6],
    }
}

/// The world-to-camera pose whose rays are a camera correction (`tau`, `omega`; norm frame of
/// scale `scale`) applied to `pose`'s: centre `C + tau / scale`, camera-to-world rotation
/// `Exp(omega) R_c2w`.
pub fn corrected_pose(
    pose: &flythrough_core::Pose,
    c: &[f32; 6],
    scale: f64,
) -> flythrough_core::Pose {
    let e = crate::coord::exp_so3([c[3], c[4], c[5]]);
    let e = nalgebra::Matrix3::from_fn(|i, j| e[i][j] as f64);
    let r_c2w = e * pose.r().transpose();
    let centre =
        pose.center() + nalgebra::Vector3::new(c[0] as f64, c[1] as f64, c[2] as f64) / scale;
    flythrough_core::Pose::from_center_and_axes(centre, &r_c2w)
}

/// Mean translation (norm units) and rotation (degrees) of the camera corrections `cam_opt`.
pub fn mean_correction(cam_opt: &[f32]) -> (f64, f64) {
    let n = (cam_opt.len() / 6).max(1) as f64;
    let (mut t, mut r) = (0.0, 0.0);
    for c in cam_opt.chunks_exact(6) {
        t += (c[0] as f64).hypot(c[1] as f64).hypot(c[2] as f64);
        r += (c[3] as f64)
            .hypot(c[4] as f64)
            .hypot(c[5] as f64)
            .to_degrees();
    }
    (t / n, r / n)
}

/// What training produced.
pub struct Trained {
    pub model: Model,
    pub meta: CheckpointMeta,
    pub steps_this_call: usize,
    pub resumed_from: Option<usize>,
    pub samples_per_s: f64,
    pub rays_per_s: f64,
    pub metrics: Vec<MetricLine>,
    /// Milliseconds per step the training thread spent blocked: on the device (in-flight steps,
    /// read-backs) and on checkpoints ([`Trained::checkpoint_wait_ms_per_step`]).
    pub host_wait_ms_per_step: f64,
    /// Milliseconds per step the training thread spent on checkpoints: taking the state (the CPU
    /// back end copies its model), handing it to the writer thread, waiting for the writer or a
    /// read-back.
    pub checkpoint_wait_ms_per_step: f64,
    /// Periodic checkpoints written in the background this call (the final one not counted).
    pub checkpoints_written: usize,
    /// Work sent to the GPU per step (dispatches, passes, uploaded and read-back bytes, submits);
    /// `None` on the CPU.
    pub gpu_per_step: Option<flythrough_core::summary::StepCounters>,
}

pub(crate) fn ckpt_path(work: &Path) -> std::path::PathBuf {
    work.join("checkpoints").join("last.safetensors")
}

/// Where a training call starts (shared by the CPU and GPU loops): the work checkpoint's model,
/// Adam state and step when it matches this model layout and these training photos (resume),
/// else a fresh model (and a fresh `metrics.jsonl`).
pub struct Start {
    pub model: Model,
    pub adams: Vec<Adam>,
    pub meta: CheckpointMeta,
    pub resumed_from: Option<usize>,
    /// `work/checkpoints/last.safetensors`.
    pub ckpt: std::path::PathBuf,
    /// `work/metrics.jsonl`, opened for appending.
    pub metrics_file: std::fs::File,
}

/// The start of a training call on `ds` in `work` (see [`Start`]).
pub fn start(cfg: &TrainConfig, ds: &Dataset, work: &Path) -> Result<Start, NerfError> {
    let mcfg = ModelConfig::from_train(cfg, ds.train.len());
    let train_names: Vec<String> = ds
        .train
        .iter()
        .map(|&i| ds.photos[i].name.clone())
        .collect();
    let train_ev: Vec<f64> = ds.train.iter().map(|&i| ds.photos[i].ev).collect();
    let mut meta = CheckpointMeta {
        format_version: checkpoint::FORMAT_VERSION,
        model: mcfg.clone(),
        norm: ds.norm,
        step: 0,
        elapsed_s: 0.0,
        train_names: train_names.clone(),
        train_ev,
        ev_mean: ds.ev_mean,
        config: cfg.clone(),
        adam: None,
        mean_radius: Some(
            ds.train
                .iter()
                .map(|&i| crate::coord::cone_radius(ds.photos[i].cam.mean_focal()))
                .sum::<f32>()
                / ds.train.len().max(1) as f32,
        ),
    };
    let ck = ckpt_path(work);
    let metrics_path = work.join("metrics.jsonl");
    let mut resumed_from = None;
    let (model, adams) = match ck.is_file().then(|| checkpoint::load(&ck)) {
        Some(Ok((m, Some(a), old))) if old.model == mcfg && old.train_names == train_names => {
            tracing::info!("train: resuming from step {} ({})", old.step, ck.display());
            resumed_from = Some(old.step);
            meta.step = old.step;
            meta.elapsed_s = old.elapsed_s;
            truncate_metrics(&metrics_path, old.step)?;
            (m, a)
        }
        other => {
            if let Some(Err(e)) = other {
                tracing::warn!("train: ignoring checkpoint {}: {e}", ck.display());
            }
            let _ = std::fs::remove_file(&metrics_path);
            let m = Model::new(mcfg.clone(), ds.norm.near as f32, cfg.seed);
            let a = m.params.iter().map(|p| Adam::new(p.len(), ADAM)).collect();
            (m, a)
        }
    };
    std::fs::create_dir_all(work).map_err(|e| NerfError::Io(work.to_path_buf(), e.to_string()))?;
    let metrics_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .map_err(|e| NerfError::Io(metrics_path.clone(), e.to_string()))?;
    Ok(Start {
        model,
        adams,
        meta,
        resumed_from,
        ckpt: ck,
        metrics_file,
    })
}

/// Drop the lines of `metrics.jsonl` after `step` (a run killed after its last checkpoint wrote
/// metrics of steps the resumed run does again), so every step appears once.
fn truncate_metrics(path: &Path, step: usize) -> Result<(), NerfError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<MetricLine>(l).is_ok_and(|m| m.step <= step))
        .map(|l| format!("{l}\n"))
        .collect();
    if kept.len() != text.len() {
        flythrough_core::run::write_atomic(path, kept.as_bytes())
            .map_err(|e| NerfError::Io(path.to_path_buf(), e.to_string()))?;
    }
    Ok(())
}

/// The batch of training step `step`: `batch_rays` pixels uniform over all training photos and one
/// jitter per ray and level, from the counter-based draws of [`crate::rng`] keyed by (`seed`,
/// `step`): runs and resumed runs repeat, and the GPU's `sample_batch` kernel draws the same
/// pixels and jitter (ray `i` picks global pixel `below(draw(key, i, STREAM_PICK), total)`, its
/// level-`l` jitter is `unit(draw(key, i, STREAM_JITTER + l))`).
pub fn step_batch(
    cfg: &TrainConfig,
    ds: &Dataset,
    step: usize,
    glo: &[f32],
    glo_dim: usize,
    levels: usize,
) -> (crate::model::Rays, Vec<[f32; 3]>, Vec<usize>, Vec<Vec<f32>>) {
    use crate::rng::{STREAM_JITTER, draw, step_key, unit};
    let key = step_key(cfg.seed, step as u64);
    let picks = step_picks(cfg.seed, step, ds.train_pixels(), cfg.batch_rays);
    let (rays, target, idx) = ds.pixels_batch(&picks, glo, glo_dim);
    let jitter: Vec<Vec<f32>> = (0..levels as u32)
        .map(|l| {
            (0..rays.len() as u32)
                .map(|i| unit(draw(key, i, STREAM_JITTER + l)))
                .collect()
        })
        .collect();
    (rays, target, idx, jitter)
}

/// The global training pixels step `step` picks: `n` draws uniform over `0..total`
/// ([`crate::rng::below`]; `total` below 2^32, checked).
pub fn step_picks(seed: u64, step: usize, total: usize, n: usize) -> Vec<usize> {
    use crate::rng::{STREAM_PICK, below, draw, step_key};
    let total = u32::try_from(total).expect("fewer than 2^32 training pixels");
    let key = step_key(seed, step as u64);
    (0..n as u32)
        .map(|i| below(draw(key, i, STREAM_PICK), total) as usize)
        .collect()
}

/// Train (or resume) a model on `ds` on the CPU (see [`crate::driver::drive`] for the files).
pub fn train(cfg: &TrainConfig, ds: &Dataset, work: &Path) -> Result<Trained, NerfError> {
    train_with(cfg, ds, work, &Hooks::default())
}

/// [`train`] with the caller's hooks (a stop after a checkpoint).
pub fn train_with(
    cfg: &TrainConfig,
    ds: &Dataset,
    work: &Path,
    hooks: &Hooks,
) -> Result<Trained, NerfError> {
    crate::driver::drive(cfg, ds, work, hooks, |model, adams| {
        Ok(CpuBackend::new(cfg, model, adams))
    })
}

/// The CPU back end of the training driver: the fast direct-call forward and backward
/// ([`Model::forward_into`], [`Model::backward_with_rays`]), GLO latent and camera-correction
/// gradients, gradient clipping and the fused Adam update. Metrics and checkpoints are ready as
/// soon as the step returns.
pub struct CpuBackend<'a> {
    cfg: &'a TrainConfig,
    model: Model,
    adams: Vec<Adam>,
    grads: Vec<Vec<f32>>,
    fwd: crate::model::Forward,
    lw: LossWeights,
    /// Losses summed since the last metrics line, and how many steps.
    acc: (Losses, usize),
    metrics: Option<(MetricsAt, DeviceMetrics)>,
    checkpoint: Option<CheckpointMeta>,
}

impl<'a> CpuBackend<'a> {
    pub fn new(cfg: &'a TrainConfig, model: Model, adams: Vec<Adam>) -> Self {
        let grads = model.zeros_like();
        CpuBackend {
            cfg,
            model,
            adams,
            grads,
            fwd: crate::model::Forward::default(),
            lw: LossWeights {
                distortion: cfg.distortion_weight as f32,
                interlevel: cfg.interlevel_weight as f32,
            },
            acc: (Losses::default(), 0),
            metrics: None,
            checkpoint: None,
        }
    }
}

impl Backend for CpuBackend<'_> {
    const LABEL: &'static str = "train: steps";

    fn batch_latents(&self) -> &[f32] {
        &self.model.params[self.model.idx_glo()]
    }

    fn step(&mut self, plan: StepPlan) -> Result<(), NerfError> {
        let cfg = self.cfg;
        let StepBatch {
            mut rays,
            target,
            idx,
            jitter,
        } = plan.batch.expect("the CPU back end is handed its batches");
        let model = &mut self.model;
        let grads = &mut self.grads;
        let gd = model.cfg.glo_dim;
        let gidx = model.idx_glo();
        let cam_idx = model.idx_cam_opt();
        if let Some(ci) = cam_idx {
            apply_camera_corrections(&model.params[ci], &idx, &mut rays);
        }
        let mode = SampleMode {
            jitter: Some(&jitter),
            train_frac: plan.progress as f32,
        };
        model.forward_into(&rays, &mode, true, &mut self.fwd);
        let mut d_lat = vec![0.0f32; rays.len() * gd];
        let mut d_rays = RayGrads::default();
        let losses = model.backward_with_rays(
            &rays,
            &self.fwd,
            &target,
            &self.lw,
            grads,
            Some(&mut d_lat),
            cam_idx.map(|_| &mut d_rays),
        );
        if let Some(ci) = cam_idx {
            camera_correction_grads(&rays, &idx, &d_rays, &mut grads[ci]);
        }
        if !losses.data.is_finite() {
            return Err(NerfError::Diverged(plan.step));
        }
        for (i, &k) in idx.iter().enumerate() {
            for j in 0..gd {
                grads[gidx][k * gd + j] += d_lat[i * gd + j];
            }
        }
        // Gradients start at zero (`zeros_like`) and the fused Adam pass zeroes them again.
        let (scale, clipped_from) = if cfg.grad_max_norm > 0.0 {
            let bufs: Vec<&[f32]> = grads.iter().map(|g| g.as_slice()).collect();
            let norm = global_grad_norm(&bufs);
            (clip_scale(norm, cfg.grad_max_norm), Some(norm))
        } else {
            (1.0, None)
        };
        let mut sq = 0.0f64;
        let pose_lr = pose_learning_rate(cfg, plan.step, plan.progress);
        for (b, ((p, g), a)) in model
            .params
            .iter_mut()
            .zip(grads.iter_mut())
            .zip(self.adams.iter_mut())
            .enumerate()
        {
            if !p.is_empty() {
                let rate = if Some(b) == cam_idx { pose_lr } else { plan.lr };
                sq += a.update_and_zero(p, g, rate as f32, scale);
            }
        }
        if let Some(ci) = cam_idx {
            remove_common_correction(&mut model.params[ci]);
        }
        let grad_norm = clipped_from.unwrap_or(sq.sqrt());
        self.acc.0.data += losses.data;
        self.acc.0.distortion += losses.distortion;
        self.acc.0.interlevel += losses.interlevel;
        self.acc.0.mse += losses.mse;
        self.acc.1 += 1;
        if let Some(at) = plan.metrics_at {
            let k = self.acc.1.max(1) as f64;
            self.metrics = Some((
                at,
                DeviceMetrics {
                    data: self.acc.0.data / k,
                    distortion: self.acc.0.distortion / k,
                    interlevel: self.acc.0.interlevel / k,
                    mse: self.acc.0.mse / k,
                    steps: k,
                    grad_norm,
                },
            ));
            self.acc = (Losses::default(), 0);
        }
        if let Some(mut meta) = plan.checkpoint {
            meta.adam = Some((ADAM, self.adams.first().map_or(0, |a| a.step)));
            self.checkpoint = Some(meta);
        }
        Ok(())
    }

    fn poll_metrics(&mut self, _: bool) -> Result<Option<(MetricsAt, DeviceMetrics)>, NerfError> {
        Ok(self.metrics.take())
    }

    fn pose_stats(&self) -> Option<(f64, f64)> {
        self.model
            .idx_cam_opt()
            .map(|ci| mean_correction(&self.model.params[ci]))
    }

    fn take_checkpoint(&mut self, _: bool) -> Result<Option<CheckpointJob>, NerfError> {
        // A snapshot: the writer thread writes it while the next steps change the model.
        Ok(self
            .checkpoint
            .take()
            .map(|meta| CheckpointJob::ready(self.model.clone(), self.adams.clone(), meta)))
    }

    fn finish(self) -> Result<(Model, Vec<Adam>), NerfError> {
        Ok((self.model, self.adams))
    }
}

/// Evaluation of one held-out photo.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PhotoEval {
    pub name: String,
    /// Size it was scored at.
    pub width: usize,
    pub height: usize,
    pub psnr: f64,
    pub ssim: f64,
    /// PSNR of the whole photo (left half included, so with GLO it is optimistic).
    pub psnr_full: f64,
    pub mean_intensity_rendered: f64,
    pub mean_intensity_photo: f64,
}

/// `eval.json`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct EvalReport {
    pub protocol: String,
    /// What was evaluated: how many of the held-out photos, at what size, and why.
    pub selection: EvalSelection,
    pub photos: Vec<PhotoEval>,
    pub mean_psnr: f64,
    pub mean_ssim: f64,
    pub render_rays_per_s: f64,
    /// Wall time of the whole evaluation (latent fitting, rendering, metrics, PNGs), and of its
    /// latent fitting and rendering parts.
    pub seconds: f64,
    pub fit_seconds: f64,
    pub render_seconds: f64,
    /// Photos left out of training by `skip_blurry`.
    pub skipped_train: Vec<String>,
}

/// Which held-out photos are scored and at what size.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct EvalSelection {
    /// `"auto"` (pixel budget) or `"downscale n"` (`[train] eval_downscale`).
    pub rule: String,
    pub held_out: usize,
    pub evaluated: usize,
    /// Scale relative to the training resolution (1 = training size).
    pub scale: f64,
    /// Training resolution of the (first) evaluated photo and the size it was scored at.
    pub train_size: [u32; 2],
    pub eval_size: [u32; 2],
    /// Pixels rendered in all (the automatic rule keeps this under `pixel_budget`).
    pub pixels: usize,
    /// Automatic rule: `EVAL_PIXELS_PER_TRAINED_RAY x` rays trained (0 otherwise).
    pub pixel_budget: usize,
}

/// Evaluation options (`[train] eval_downscale`, `eval_max_photos`, `glo_eval_steps`).
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// 0 = automatic (pixel budget), n = training resolution / n.
    pub downscale: u32,
    /// At most this many held-out photos, evenly spread (0 = all).
    pub max_photos: usize,
    pub glo_steps: usize,
    /// Rays trained in all (steps x batch), for the automatic pixel budget.
    pub trained_rays: usize,
}

/// Automatic evaluation budget: pixels rendered per ray trained. Rendering a ray costs about 0.4 of
/// a training ray (forward only: 51-59k vs 22-24k rays/s on the 2-core VM), so a quarter of the
/// trained rays takes about a tenth of the training time, leaving room for the latent fitting and
/// SSIM within the fifth the evaluation may take.
pub const EVAL_PIXELS_PER_TRAINED_RAY: f64 = 0.25;

/// `k` of the `n` held-out photos, evenly spread (`floor((i + 0.5) n / k)`), all when `k = 0 or k >= n`.
pub fn spread(n: usize, k: usize) -> Vec<usize> {
    if k == 0 || k >= n {
        return (0..n).collect();
    }
    (0..k).map(|i| ((2 * i + 1) * n) / (2 * k)).collect()
}

/// Evaluation scale (relative to the training size) for `photos` photos of `pixels` pixels each:
/// 1 / `downscale`, or with `downscale = 0` the largest scale <= 1 whose pixels fit `budget`.
pub fn eval_scale(downscale: u32, photos: usize, pixels: usize, budget: f64) -> f64 {
    if downscale >= 1 {
        return 1.0 / downscale as f64;
    }
    let total = (photos * pixels).max(1) as f64;
    (budget / total).sqrt().min(1.0)
}

/// Evaluate the held-out photos. With GLO (glo_dim > 0) this is the NeRF-W protocol: the photo's
/// latent is optimised on rays of its left half (network fixed), and PSNR/SSIM are scored on the right
/// half; without GLO the whole photo is scored. The photo's own exposure value is always used.
/// The photos and their size follow `opts` ([`spread`], [`eval_scale`]). Writes `<name>.png` renders
/// into `render_dir` when given.
pub fn evaluate(
    model: &Model,
    meta: &CheckpointMeta,
    ds: &Dataset,
    opts: &EvalOptions,
    render_dir: Option<&Path>,
) -> EvalReport {
    evaluate_with(
        model,
        meta,
        ds,
        opts,
        render_dir,
        &mut |cam, pose, ev, latent| render_photo_rays(model, &ds.norm, cam, pose, ev, latent),
    )
}

/// [`evaluate`] with the held-out photos rendered by `render(camera, pose, relative EV, latent)`
/// (`[h * w * 3]` linear colours): the GPU back end renders them on the device.
pub fn evaluate_with(
    model: &Model,
    meta: &CheckpointMeta,
    ds: &Dataset,
    opts: &EvalOptions,
    render_dir: Option<&Path>,
    render: &mut dyn FnMut(
        &flythrough_core::Camera,
        &flythrough_core::Pose,
        f32,
        &[f32],
    ) -> Vec<f32>,
) -> EvalReport {
    let t_eval = Instant::now();
    let gd = model.cfg.glo_dim;
    let glo_steps = opts.glo_steps;
    let chosen: Vec<usize> = spread(ds.holdout.len(), opts.max_photos)
        .into_iter()
        .map(|i| ds.holdout[i])
        .collect();
    let budget = if opts.downscale == 0 {
        EVAL_PIXELS_PER_TRAINED_RAY * opts.trained_rays as f64
    } else {
        0.0
    };
    let (tw, th) = chosen
        .first()
        .map(|&p| ds.photos[p].img.dimensions())
        .unwrap_or((0, 0));
    let mean_px = chosen
        .iter()
        .map(|&p| (ds.photos[p].img.width() * ds.photos[p].img.height()) as usize)
        .sum::<usize>()
        / chosen.len().max(1);
    let scale = eval_scale(opts.downscale, chosen.len(), mean_px, budget);
    let mut photos = Vec::new();
    let mut render_time = 0.0;
    let mut fit_time = 0.0;
    let mut rays_rendered = 0usize;
    for &p in &chosen {
        let ph = &ds.photos[p];
        // With pose refinement, the held-out photo gets its neighbours' correction.
        let pose = match model.idx_cam_opt() {
            Some(ci) => corrected_pose(
                &ph.pose,
                &interpolated_correction(ds, &model.params[ci], p),
                ds.norm.scale,
            ),
            None => ph.pose,
        };
        let (w, h) = (
            ((ph.img.width() as f64 * scale).floor() as usize).max(1),
            ((ph.img.height() as f64 * scale).floor() as usize).max(1),
        );
        let cam = crate::data::scale_camera(&ph.cam, w as u32, h as u32);
        let gt_img = if (w as u32, h as u32) != ph.img.dimensions() {
            image::imageops::resize(
                &ph.img,
                w as u32,
                h as u32,
                image::imageops::FilterType::Triangle,
            )
        } else {
            ph.img.clone()
        };
        let gt: Vec<f32> = gt_img.as_raw().iter().map(|&v| v as f32 / 255.0).collect();
        drop(gt_img);
        let ev = (ph.ev - meta.ev_mean) as f32;
        let mean = model.mean_latent();
        let t_fit = Instant::now();
        let latent = if gd > 0 && glo_steps > 0 {
            // Left-half rays, a fixed random subset.
            let mut rng = ChaCha8Rng::seed_from_u64(p as u64);
            let n = 4096.min(w / 2 * h);
            let mut rays = crate::model::Rays::default();
            let mut target = Vec::new();
            for _ in 0..n {
                let (x, y) = (rng.random_range(0..(w / 2).max(1)), rng.random_range(0..h));
                let (o, d, r) =
                    crate::data::camera_ray(&ds.norm, &cam, &pose, x as f64 + 0.5, y as f64 + 0.5);
                rays.o.push(o);
                rays.d.push(d);
                rays.r.push(r);
                rays.ev.push(ev);
                rays.latent.extend_from_slice(&mean);
                let i = (y * w + x) * 3;
                target.push([gt[i], gt[i + 1], gt[i + 2]]);
            }
            model.optimize_latent(&rays, &target, &mean, glo_steps, 0.02)
        } else {
            mean.clone()
        };
        fit_time += t_fit.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let img = render(&cam, &pose, ev, &latent);
        render_time += t0.elapsed().as_secs_f64();
        rays_rendered += w * h;
        let x0 = if gd > 0 && glo_steps > 0 { w / 2 } else { 0 };
        let psnr_v = psnr(metrics::mse_cols(&img, &gt, w, h, x0, w));
        let ssim_v = metrics::ssim_cols(&img, &gt, w, h, x0, w);
        let full = psnr(metrics::mse_cols(&img, &gt, w, h, 0, w));
        if let Some(dir) = render_dir {
            let _ = std::fs::create_dir_all(dir);
            let _ = metrics::to_image(&img, w, h).save(dir.join(format!(
                "{}.png",
                ph.name.rsplit_once('.').map(|p| p.0).unwrap_or(&ph.name)
            )));
        }
        let mi = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len().max(1) as f64;
        photos.push(PhotoEval {
            name: ph.name.clone(),
            width: w,
            height: h,
            psnr: psnr_v,
            ssim: ssim_v,
            psnr_full: full,
            mean_intensity_rendered: mi(&img),
            mean_intensity_photo: mi(&gt),
        });
    }
    let n = photos.len().max(1) as f64;
    let selection = EvalSelection {
        rule: if opts.downscale == 0 {
            "auto".into()
        } else {
            format!("downscale {}", opts.downscale)
        },
        held_out: ds.holdout.len(),
        evaluated: chosen.len(),
        scale,
        train_size: [tw, th],
        eval_size: photos
            .first()
            .map(|p| [p.width as u32, p.height as u32])
            .unwrap_or([0, 0]),
        pixels: rays_rendered,
        pixel_budget: budget as usize,
    };
    EvalReport {
        protocol: if gd > 0 && glo_steps > 0 {
            format!(
                "NeRF-W: per held-out photo, its GLO latent is optimised ({glo_steps} Adam steps, network fixed) on 4096 rays of the left half, then PSNR/SSIM are computed on the right half; psnr_full scores the whole photo with that latent (optimistic: the left half was used to fit it). Exposure: the photo's own EV."
            )
        } else {
            "whole held-out photo, mean training latent (GLO disabled or glo_eval_steps = 0), the photo's own EV".to_string()
        },
        selection,
        mean_psnr: photos.iter().map(|p| p.psnr).sum::<f64>() / n,
        mean_ssim: photos.iter().map(|p| p.ssim).sum::<f64>() / n,
        render_rays_per_s: rays_rendered as f64 / render_time.max(1e-9),
        photos,
        seconds: t_eval.elapsed().as_secs_f64(),
        fit_seconds: fit_time,
        render_seconds: render_time,
        skipped_train: ds.skipped_train.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Camera corrections: applied as o + tau, Exp(omega) d; their gradient from the rays' gradients
    /// equals central differences of a loss linear in the corrected rays, at omega = 0.
    #[test]
    fn camera_correction_gradient_matches_finite_differences() {
        let mut rays = Rays::default();
        let idx = vec![0usize, 1, 1, 0, 1];
        let a: Vec<[f32; 3]> = (0..5).map(|i| [0.3 * i as f32, -0.2, 0.5]).collect();
        let b: Vec<[f32; 3]> = (0..5).map(|i| [0.1, 0.4 - 0.1 * i as f32, -0.3]).collect();
        for i in 0..5 {
            let v = [0.2 + i as f32, -0.5, 1.0];
            let l = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
            rays.o.push([0.1 * i as f32, 0.0, -0.2]);
            rays.d.push([v[0] / l, v[1] / l, v[2] / l]);
        }
        let loss = |c: &[f32]| -> f64 {
            let mut q = rays.clone();
            apply_camera_corrections(c, &idx, &mut q);
            (0..5)
                .map(|i| {
                    (0..3)
                        .map(|k| a[i][k] * q.o[i][k] + b[i][k] * q.d[i][k])
                        .sum::<f32>() as f64
                })
                .sum()
        };
        let dr = RayGrads {
            o: a.clone(),
            d: b.clone(),
        };
        let mut g = vec![0.0f32; 12];
        camera_correction_grads(&rays, &idx, &dr, &mut g);
        for j in 0..12 {
            let h = 1e-3f32;
            let (mut cp, mut cm) = (vec![0.0f32; 12], vec![0.0f32; 12]);
            cp[j] = h;
            cm[j] = -h;
            let fd = (loss(&cp) - loss(&cm)) / (2.0 * h as f64);
            assert!((fd - g[j] as f64).abs() < 1e-3, "{j}: {} vs {fd}", g[j]);
        }
        // A quarter turn about z rotates x to y; tau shifts the origin.
        let mut q = Rays::default();
        q.o.push([1.0, 2.0, 3.0]);
        q.d.push([1.0, 0.0, 0.0]);
        apply_camera_corrections(
            &[0.5, 0.0, 0.0, 0.0, 0.0, std::f32::consts::FRAC_PI_2],
            &[0],
            &mut q,
        );
        assert_eq!(q.o[0], [1.5, 2.0, 3.0]);
        assert!((q.d[0][1] - 1.0).abs() < 1e-6 && q.d[0][0].abs() < 1e-6);
    }

    /// A corrected pose's rays are the corrected rays of the original pose.
    #[test]
    fn corrected_pose_reproduces_corrected_rays() {
        use flythrough_core::{Camera, CameraModel, Pose};
        use nalgebra::Vector3;
        let norm = crate::coord::SceneNorm {
            center: [1.0, -2.0, 0.5],
            scale: 0.4,
            near: 0.1,
        };
        let cam = Camera::new(1, CameraModel::Pinhole, 64, 48, 50.0);
        let pose = Pose::look_at(
            Vector3::new(2.0, 1.0, -1.0),
            Vector3::new(0.0, 0.5, 3.0),
            -Vector3::y(),
        );
        let c = [0.02f32, -0.01, 0.03, 0.01, -0.02, 0.015];
        let fixed = corrected_pose(&pose, &c, norm.scale);
        for (x, y) in [(3.5, 7.5), (60.0, 40.0)] {
            let (o, d, _) = crate::data::camera_ray(&norm, &cam, &pose, x, y);
            let mut rays = Rays {
                o: vec![o],
                d: vec![d],
                ..Default::default()
            };
            apply_camera_corrections(&c, &[0], &mut rays);
            let (o2, d2, _) = crate::data::camera_ray(&norm, &cam, &fixed, x, y);
            for a in 0..3 {
                assert!(
                    (rays.o[0][a] - o2[a]).abs() < 1e-5,
                    "{:?} {o2:?}",
                    rays.o[0]
                );
                assert!(
                    (rays.d[0][a] - d2[a]).abs() < 1e-5,
                    "{:?} {d2:?}",
                    rays.d[0]
                );
            }
        }
    }

    #[test]
    fn evaluation_selection_is_spread_and_within_budget() {
        assert_eq!(spread(5, 0), [0, 1, 2, 3, 4]);
        assert_eq!(spread(5, 8), [0, 1, 2, 3, 4]);
        assert_eq!(spread(32, 8), [2, 6, 10, 14, 18, 22, 26, 30]);
        assert_eq!(spread(10, 3), [1, 5, 8]);
        // The demo: 5 held-out 320x240 photos, 1500 x 2048 rays trained: full training size.
        assert_eq!(eval_scale(0, 5, 320 * 240, 0.25 * 1500.0 * 2048.0), 1.0);
        // The capture: 4 photos of 1558x1039 after 466 steps: 0.192, 4 x 299x199 pixels.
        let s = eval_scale(0, 4, 1558 * 1039, 0.25 * 466.0 * 2048.0);
        assert!((s - 0.19196).abs() < 1e-4, "{s}");
        assert!(4.0 * 1558.0 * 1039.0 * s * s <= 0.25 * 466.0 * 2048.0 * 1.0001);
        // An explicit factor wins.
        assert_eq!(eval_scale(2, 4, 1558 * 1039, 1.0), 0.5);
        assert_eq!(eval_scale(1, 4, 1558 * 1039, 1.0), 1.0);
    }

    /// A run killed after writing metrics past its last checkpoint resumes at the checkpoint's step:
    /// the lines after it go, so every step appears once (before, step 40 and 50 stood twice).
    #[test]
    fn resume_cuts_metrics_back_to_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        let line = |step: usize| {
            let m = MetricLine {
                step,
                elapsed_s: 0.0,
                lr: 0.0,
                loss: step as f64,
                data: 0.0,
                distortion: 0.0,
                interlevel: 0.0,
                psnr: 0.0,
                grad_norm: 0.0,
                samples_per_s: 0.0,
                rays_per_s: 0.0,
                pose_t: None,
                pose_r_deg: None,
            };
            serde_json::to_string(&m).unwrap() + "\n"
        };
        let text: String = [10, 20, 30, 40, 50].map(line).concat();
        std::fs::write(&p, &text).unwrap();
        truncate_metrics(&p, 30).unwrap();
        let steps: Vec<usize> = std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<MetricLine>(l).unwrap().step)
            .collect();
        assert_eq!(steps, [10, 20, 30]);
        // Nothing past the checkpoint: the file is left as it is; no file: nothing to do.
        truncate_metrics(&p, 30).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            [10, 20, 30].map(line).concat()
        );
        truncate_metrics(&dir.path().join("none.jsonl"), 5).unwrap();
    }
}
