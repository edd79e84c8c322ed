//! NeRF training and rendering: mip-NeRF 360 (contraction, proposal sampling, distortion and
//! interlevel losses) with an anti-aliased hash-grid backbone (Zip-NeRF style) or mip-NeRF 360's IPE
//! MLP, NeRF-W GLO appearance latents and Block-NeRF exposure conditioning, on the CPU.
//!
//! Layout (multinerf style: small pure functions, the model file only wires them):
//! - [`coord`]: scene normalisation, contraction, disparity sampling, cone footprints.
//! - [`stepfun`]: histograms along rays: resampling, dilation, annealing, interlevel and distortion losses.
//! - [`composite`]: alpha compositing and its backward, Charbonnier loss (the WGSL twin is
//!   `composite.wgsl`).
//! - [`encoding`]: direction, exposure and integrated positional encodings.
//! - [`kernels`]: hash grid, fused MLP, Adam (plain functions on flat buffers).
//! - [`model`]: parameters and the forward/backward pass over ray batches (the fast direct-call path).
//! - [`cost`]: the work of a training step counted from the model's shapes (the floor benchmarks
//!   measure against).
//! - [`candle`]: the same loss as a candle graph with custom ops over the kernels, the reference the
//!   tests check the fast path against.
//! - [`driver`]: the one training loop (budget, schedule, metrics, checkpoints) over a back end:
//!   [`train::CpuBackend`] or [`gpu::train::GpuBackend`]; [`gpu`]: the wgpu back end.
//! - [`data`], [`checkpoint`], [`metrics`], [`inference`] (the render API), [`stage`]: the stage
//!   around it.
//!
//! The stage is [`TrainStage`] (body: [`train_stage`]); the render stage uses [`NerfRenderer`].

// Index loops over several parallel per-sample arrays read more clearly than zipped iterators here;
// one-ray tuples stay inline rather than getting one-use type names.
#![allow(clippy::needless_range_loop, clippy::type_complexity)]

pub mod candle;
pub mod checkpoint;
pub mod composite;
pub mod coord;
pub mod cost;
pub mod data;
pub mod driver;
pub mod encoding;
pub mod field;
pub mod gpu;
pub mod inference;
pub mod kernels;
pub mod metrics;
pub mod model;
pub mod rng;
pub mod stage;
pub mod stepfun;
pub mod train;

pub use stage::TrainStage;

pub use inference::{LatentChoice, NerfRenderer, RenderOptions, RenderOutput};

use flythrough_core::config::{Device, TrainConfig};
use flythrough_core::stage::Hooks;
use flythrough_core::summary::{HoldoutScore, TrainSummary};
use flythrough_core::{Manifest, Reconstruction, RedactedImages, SfmOutput, TrainOutput};
use std::path::{Path, PathBuf};

/// Errors of the NeRF stage: each names the file or input and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum NerfError {
    #[error("train: {0}")]
    Input(String),
    #[error("{0}: {1}")]
    Io(PathBuf, String),
    #[error("{0}: not a valid flythrough checkpoint: {1}")]
    Checkpoint(PathBuf, String),
    #[error("train: interrupted after the checkpoint of step {0}")]
    Interrupted(usize),
    #[error(
        "train: the loss became NaN/inf at step {0}; lower [train] lr_init or set grad_max_norm"
    )]
    Diverged(usize),
    #[error("GPU: {0}")]
    Gpu(String),
}

/// The train stage: read poses from `sfm_dir/sparse`, photos from `images`, exposures from
/// `manifest`; train (resuming from `work` when a checkpoint is there); write into `out`:
/// `checkpoints/final.safetensors` (+ `.json`; weights only, no optimizer state), `metrics.jsonl`, `eval.json`, `loss.png`,
/// `model.json`, `holdout/*.png`.
pub fn run(
    cfg: &TrainConfig,
    images: &RedactedImages,
    manifest: Option<&Manifest>,
    sfm_dir: &Path,
    out: &Path,
    work: &Path,
) -> Result<TrainSummary, NerfError> {
    run_skipping(cfg, images, manifest, &[], sfm_dir, out, work)
}

/// [`run`] with capture QA's list of blurry photos, which `[train] skip_blurry` leaves out of
/// training (the pipeline passes `capture/qa.json`'s `blurry`).
pub fn run_skipping(
    cfg: &TrainConfig,
    images: &RedactedImages,
    manifest: Option<&Manifest>,
    blurry: &[String],
    sfm_dir: &Path,
    out: &Path,
    work: &Path,
) -> Result<TrainSummary, NerfError> {
    let model_dir = sfm_dir.join(SfmOutput::SPARSE);
    let model = Reconstruction::read(&model_dir)
        .map_err(|e| NerfError::Input(format!("{}: {e}", model_dir.display())))?;
    let data = TrainData {
        images,
        manifest,
        blurry,
        model: &model,
        model_dir: &model_dir,
    };
    train_stage(cfg, cfg.device, &Hooks::default(), &data, out, work)
}

/// What the train stage reads besides `[train]`: the redacted photos, the capture manifest
/// (exposures), capture QA's blurry photos (for `[train] skip_blurry`) and the SfM model.
#[derive(Debug, Clone, Copy)]
pub struct TrainData<'a> {
    pub images: &'a RedactedImages,
    pub manifest: Option<&'a Manifest>,
    pub blurry: &'a [String],
    pub model: &'a Reconstruction,
    /// The model's folder, named in messages.
    pub model_dir: &'a Path,
}

/// The train stage body on `device` (the machine's `[train] device`): train (resuming from `work`
/// when a checkpoint is there; `hooks` may stop it after a checkpoint), evaluate, and write the
/// files of [`TrainOutput`] into `out`.
pub fn train_stage(
    cfg: &TrainConfig,
    device: Device,
    hooks: &Hooks,
    data: &TrainData,
    out: &Path,
    work: &Path,
) -> Result<TrainSummary, NerfError> {
    // Training frees and reallocates the same scratch buffers every step: keep them mapped.
    flythrough_core::alloc::retain_freed_memory();
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| NerfError::Io(p, e.to_string())
    };
    let mut ds = data::Dataset::load_model(
        data.images,
        data.manifest,
        data.model,
        data.model_dir,
        &data::LoadOptions::from_config(cfg, data.blurry),
    )?;
    if cfg.near > 0.0 {
        ds.norm.near = cfg.near;
    }
    if ds.train.is_empty() {
        return Err(NerfError::Input(
            "no training photos (every photo is held out)".into(),
        ));
    }
    let (tw, th) = ds.train_size();
    tracing::info!(
        "train: {} photos ({} train, {} held out, {} skipped), {tw}x{th} ({:.0} MB of 8-bit pixels), scene scale {:.4}, near {:.4}",
        ds.photos.len(),
        ds.train.len(),
        ds.holdout.len(),
        ds.skipped_train.len(),
        ds.image_bytes() as f64 / 1e6,
        ds.norm.scale,
        ds.norm.near
    );
    // The GPU back end runs the hash-grid backbone without camera pose refinement; `auto` keeps
    // the IPE backbone and pose refinement on the CPU, `gpu` refuses them.
    let cpu_only = cfg.backbone == flythrough_core::config::Backbone::IpeMlp || cfg.pose_lr > 0.0;
    if cfg.pose_lr > 0.0 && device == Device::Gpu {
        return Err(NerfError::Input(
            "[train] pose_lr > 0 (camera pose refinement) runs on the CPU back end only: set [train] device = \"cpu\" or \"auto\", or pose_lr = 0".into(),
        ));
    }
    let gpu = if cpu_only && device == Device::Auto {
        None
    } else {
        gpu::open(device)?
    };
    let used = gpu::device_used(gpu.as_deref());
    tracing::info!("train: on {}", used.line());
    let t0 = std::time::Instant::now();
    let trained = match &gpu {
        Some(g) => gpu::train::train_with(cfg, &ds, work, g.clone(), hooks)?,
        None => train::train_with(cfg, &ds, work, hooks)?,
    };
    let train_seconds = t0.elapsed().as_secs_f64();
    if let Some(dir) = out.join(TrainOutput::CHECKPOINT).parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    // The final checkpoint is what rendering needs: the weights and the metadata. The resume state
    // (Adam moments and step; the batch RNG is derived from the seed and the step) stays in
    // `work/checkpoints/last.safetensors`, which the runner deletes when the stage commits.
    let mut final_meta = trained.meta.clone();
    final_meta.adam = None;
    checkpoint::save(
        &out.join(TrainOutput::CHECKPOINT),
        &trained.model,
        None,
        &final_meta,
    )?;
    let mp = work.join("metrics.jsonl");
    std::fs::copy(&mp, out.join(TrainOutput::METRICS)).map_err(io(&mp))?;
    // The plot reads the whole metrics file (earlier calls of a resumed run included).
    let all: Vec<train::MetricLine> = std::fs::read_to_string(&mp)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let loss: Vec<(f64, f64)> = all.iter().map(|m| (m.step as f64, m.loss)).collect();
    let psnr: Vec<(f64, f64)> = all.iter().map(|m| (m.step as f64, m.psnr)).collect();
    metrics::plot(&loss, &psnr)
        .save(out.join("loss.png"))
        .map_err(|e| NerfError::Io(out.join("loss.png"), e.to_string()))?;
    let eval_opts = train::EvalOptions {
        downscale: cfg.eval_downscale,
        max_photos: cfg.eval_max_photos,
        glo_steps: cfg.glo_eval_steps,
        trained_rays: trained.meta.step * cfg.batch_rays,
    };
    let holdout_dir = out.join("holdout");
    let report = match &gpu {
        // Held-out photos render on the device too (the latent fitting stays on the CPU).
        Some(g) => {
            let chunk = gpu::inference::default_chunk(&trained.model, g);
            let mut r = gpu::GpuRenderer::new(g.clone(), &trained.model, chunk)?;
            let norm = ds.norm;
            train::evaluate_with(
                &trained.model,
                &trained.meta,
                &ds,
                &eval_opts,
                Some(&holdout_dir),
                &mut |cam, pose, ev, latent| {
                    let fc = gpu::FrameCamera::photo(&norm, cam, pose);
                    r.render_frame_f32(&fc, ev, latent).unwrap_or_else(|e| {
                        tracing::error!("train: GPU evaluation render failed ({e}); using the CPU");
                        inference::render_photo_rays(&trained.model, &norm, cam, pose, ev, latent)
                    })
                },
            )
        }
        None => train::evaluate(
            &trained.model,
            &trained.meta,
            &ds,
            &eval_opts,
            Some(&holdout_dir),
        ),
    };
    tracing::info!(
        "train: evaluated {} of {} held-out photos at {}x{} in {:.1} s: {:.2} dB",
        report.selection.evaluated,
        report.selection.held_out,
        report.selection.eval_size[0],
        report.selection.eval_size[1],
        report.seconds,
        report.mean_psnr
    );
    flythrough_core::run::write_json(&out.join(TrainOutput::EVAL), &report)
        .map_err(io(&out.join(TrainOutput::EVAL)))?;
    let model_json = serde_json::json!({
        "checkpoint": TrainOutput::CHECKPOINT,
        "format_version": checkpoint::FORMAT_VERSION,
        "step": trained.meta.step,
        "train_seconds_total": trained.meta.elapsed_s,
        "model": trained.meta.model,
        "norm": trained.meta.norm,
        "ev_mean": trained.meta.ev_mean,
        "train_photos": trained.meta.train_names,
        "resumed_from": trained.resumed_from,
    });
    flythrough_core::run::write_json(&out.join(TrainOutput::MODEL_JSON), &model_json)
        .map_err(io(&out.join(TrainOutput::MODEL_JSON)))?;
    Ok(TrainSummary {
        steps: trained.meta.step,
        steps_this_run: trained.steps_this_call,
        resumed_from: trained.resumed_from,
        train_seconds,
        photos_train: ds.train.len(),
        photos_holdout: ds.holdout.len(),
        eval_protocol: report.protocol.clone(),
        psnr_holdout: report.mean_psnr,
        ssim_holdout: report.mean_ssim,
        holdout: report
            .photos
            .iter()
            .map(|p| HoldoutScore {
                name: p.name.clone(),
                psnr: p.psnr,
                ssim: p.ssim,
            })
            .collect(),
        samples_per_s: trained.samples_per_s,
        rays_per_s: trained.rays_per_s,
        render_rays_per_s: report.render_rays_per_s,
        host_wait_ms_per_step: trained.host_wait_ms_per_step,
        checkpoint_wait_ms_per_step: trained.checkpoint_wait_ms_per_step,
        checkpoints_written: trained.checkpoints_written,
        gpu_per_step: trained.gpu_per_step,
        loss_plot: "loss.png".into(),
        eval_seconds: report.seconds,
        photos_evaluated: report.selection.evaluated,
        photos_skipped: ds.skipped_train.clone(),
        train_width: tw,
        train_height: th,
        image_bytes: ds.image_bytes(),
        device: used,
    })
}
