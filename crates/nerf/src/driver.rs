//! The one training driver: the step loop both back ends share. It owns the time budget, the
//! learning-rate schedule (multinerf `learning_rate_decay` with warm-up), the progress bar, the
//! per-step batches, the metrics cadence (`metrics.jsonl`), the checkpoint cadence and resume, and
//! the stop hook; a [`Backend`] owns only what happens on its device: one optimisation step, and
//! handing back metrics and checkpoints when they have arrived (at once on the CPU, a few steps
//! later from a GPU).
//!
//! Naming: `step` is the number of steps done before the one being planned (`next = step + 1` after
//! it); `progress` in `[0, 1]` is the larger of `step / steps` and `elapsed / max_seconds`.

use crate::NerfError;
use crate::checkpoint::{self, CheckpointMeta};
use crate::composite::psnr;
use crate::data::Dataset;
use crate::kernels::Adam;
use crate::model::{Model, Rays};
use crate::train::{ADAM, MetricLine, Start, Trained, learning_rate, start, step_batch};
use flythrough_core::config::TrainConfig;
use flythrough_core::stage::Hooks;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// What the host knew when it asked for a step's metrics.
#[derive(Debug, Clone, Copy)]
pub struct MetricsAt {
    pub step: usize,
    pub elapsed_s: f64,
    pub lr: f64,
    pub rays_done: f64,
    pub secs: f64,
}

/// A back end's running metrics: mean data, distortion and interlevel losses and MSE over `steps`
/// steps, and the last step's gradient norm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceMetrics {
    pub data: f64,
    pub distortion: f64,
    pub interlevel: f64,
    pub mse: f64,
    pub steps: f64,
    pub grad_norm: f64,
}

/// One step's batch: rays (with their GLO latents copied from [`Backend::batch_latents`]), target
/// colours, the training photo of each ray, and one jitter per ray and sampling level.
pub struct StepBatch {
    pub rays: Rays,
    pub target: Vec<[f32; 3]>,
    pub idx: Vec<usize>,
    pub jitter: Vec<Vec<f32>>,
}

/// One planned optimisation step.
pub struct StepPlan {
    /// Steps done before this one.
    pub step: usize,
    pub batch: StepBatch,
    pub lr: f64,
    pub progress: f64,
    /// Read the metrics out after this step (and reset the running means).
    pub metrics_at: Option<MetricsAt>,
    /// Checkpoint the state after this step with this metadata (the back end fills in its Adam
    /// step).
    pub checkpoint: Option<CheckpointMeta>,
}

/// Writes one checkpoint.
pub type SaveFn<'a> = dyn FnMut(&Model, &[Adam], &CheckpointMeta) -> Result<(), NerfError> + 'a;

/// A device that trains the model: the CPU kernels ([`crate::train::CpuBackend`]) or the wgpu one
/// ([`crate::gpu::train::GpuBackend`]).
pub trait Backend {
    /// The progress bar's label.
    const LABEL: &'static str;
    /// The GLO table batches copy each ray's latent from (a device that reads its own table may
    /// hand out zeros).
    fn batch_latents(&self) -> &[f32];
    /// Run one step.
    fn step(&mut self, plan: StepPlan) -> Result<(), NerfError>;
    /// The oldest metrics read-out that has arrived (`wait`: block for it).
    fn poll_metrics(&mut self, wait: bool)
    -> Result<Option<(MetricsAt, DeviceMetrics)>, NerfError>;
    /// Mean camera correction (translation, degrees) for the metrics line, with pose refinement.
    fn pose_stats(&self) -> Option<(f64, f64)> {
        None
    }
    /// Hand the checkpoint that has arrived, if any (`wait`: also one still in flight), to `save`.
    fn write_checkpoint(&mut self, wait: bool, save: &mut SaveFn) -> Result<(), NerfError>;
    /// The model and Adam state once every step has run.
    fn finish(self) -> Result<(Model, Vec<Adam>), NerfError>;
}

/// The metrics line of the steps since the last one.
pub fn metric_line(
    cfg: &TrainConfig,
    at: MetricsAt,
    m: DeviceMetrics,
    samples_per_ray: usize,
    pose: Option<(f64, f64)>,
) -> MetricLine {
    let lw = (cfg.distortion_weight, cfg.interlevel_weight);
    MetricLine {
        step: at.step,
        elapsed_s: at.elapsed_s,
        lr: at.lr,
        loss: m.data + lw.0 * m.distortion + lw.1 * m.interlevel,
        data: m.data,
        distortion: m.distortion,
        interlevel: m.interlevel,
        psnr: psnr(m.mse),
        grad_norm: m.grad_norm,
        samples_per_s: at.rays_done * samples_per_ray as f64 / at.secs.max(1e-9),
        rays_per_s: at.rays_done / at.secs.max(1e-9),
        pose_t: pose.map(|p| p.0),
        pose_r_deg: pose.map(|p| p.1),
    }
}

/// Train (or resume) on `ds` with the back end `make` builds from the starting model and Adam
/// state. Checkpoints go to `work/checkpoints/last.safetensors` every `checkpoint_every` steps and
/// at the end, metrics to `work/metrics.jsonl`; `hooks.stop_after_checkpoint` may end the call
/// after a periodic checkpoint with [`NerfError::Interrupted`] (as a kill would).
pub fn drive<B: Backend>(
    cfg: &TrainConfig,
    ds: &Dataset,
    work: &Path,
    hooks: &Hooks,
    make: impl FnOnce(Model, Vec<Adam>) -> Result<B, NerfError>,
) -> Result<Trained, NerfError> {
    let Start {
        model,
        adams,
        mut meta,
        resumed_from,
        ckpt,
        metrics_file: mut mfile,
    } = start(cfg, ds, work)?;
    let mcfg = model.cfg.clone();
    let mut be = make(model, adams)?;
    let nlev = mcfg.prop_samples.len() + 1;
    let samples_per_ray: usize = mcfg.prop_samples.iter().sum::<usize>() + mcfg.nerf_samples;
    let pb = flythrough_core::progress::bar(cfg.steps as u64, B::LABEL);
    pb.set_position(meta.step as u64);
    let t_call = Instant::now();
    let elapsed0 = meta.elapsed_s;
    let start_step = meta.step;
    let mut metrics = Vec::new();
    let mut write_metrics = |be: &mut B, wait: bool, metrics: &mut Vec<MetricLine>| {
        while let Some((at, m)) = be.poll_metrics(wait)? {
            if !m.data.is_finite() {
                return Err(NerfError::Diverged(at.step));
            }
            let l = metric_line(cfg, at, m, samples_per_ray, be.pose_stats());
            pb.set_message(format!("train: loss {:.4} psnr {:.2}", l.loss, l.psnr));
            let _ = writeln!(mfile, "{}", serde_json::to_string(&l).unwrap_or_default());
            metrics.push(l);
        }
        Ok(())
    };
    // A periodic checkpoint; the stop hook may end the call right after it.
    let mut save_periodic = |model: &Model, adams: &[Adam], meta: &CheckpointMeta| {
        checkpoint::save(&ckpt, model, Some(adams), meta)?;
        if hooks.stop_after_checkpoint(meta.step) {
            return Err(NerfError::Interrupted(meta.step));
        }
        Ok(())
    };
    while meta.step < cfg.steps {
        let elapsed = elapsed0 + t_call.elapsed().as_secs_f64();
        if cfg.max_seconds > 0.0 && elapsed >= cfg.max_seconds {
            break;
        }
        let step = meta.step;
        let mut progress = step as f64 / cfg.steps as f64;
        if cfg.max_seconds > 0.0 {
            progress = progress.max(elapsed / cfg.max_seconds);
        }
        let lr = learning_rate(cfg, step, progress);
        // Per-step RNG: the run is repeatable and a resumed run draws the same batches.
        let (rays, target, idx, jitter) =
            step_batch(cfg, ds, step, be.batch_latents(), mcfg.glo_dim, nlev);
        let next = step + 1;
        let metrics_at = (next.is_multiple_of(cfg.metrics_every) || next == cfg.steps).then(|| {
            let secs = t_call.elapsed().as_secs_f64();
            MetricsAt {
                step: next,
                elapsed_s: elapsed0 + secs,
                lr,
                rays_done: (next - start_step) as f64 * cfg.batch_rays as f64,
                secs,
            }
        });
        let ckpt_due = next.is_multiple_of(cfg.checkpoint_every) && next < cfg.steps;
        if ckpt_due {
            // A checkpoint still on its way is written before the next one is asked for.
            be.write_checkpoint(true, &mut save_periodic)?;
        }
        let checkpoint = ckpt_due.then(|| {
            let mut m = meta.clone();
            m.step = next;
            m.elapsed_s = elapsed0 + t_call.elapsed().as_secs_f64();
            m
        });
        be.step(StepPlan {
            step,
            batch: StepBatch {
                rays,
                target,
                idx,
                jitter,
            },
            lr,
            progress,
            metrics_at,
            checkpoint,
        })?;
        meta.step = next;
        pb.set_position(meta.step as u64);
        write_metrics(&mut be, false, &mut metrics)?;
        be.write_checkpoint(false, &mut save_periodic)?;
    }
    // Drain: the last metrics and any checkpoint still in flight, then the final state.
    write_metrics(&mut be, true, &mut metrics)?;
    be.write_checkpoint(true, &mut save_periodic)?;
    pb.finish_and_clear();
    let (model, adams) = be.finish()?;
    if !model.params.iter().flatten().all(|v| v.is_finite()) {
        return Err(NerfError::Diverged(meta.step));
    }
    meta.elapsed_s = elapsed0 + t_call.elapsed().as_secs_f64();
    meta.adam = Some((ADAM, adams.first().map(|a| a.step).unwrap_or(0)));
    checkpoint::save(&ckpt, &model, Some(&adams), &meta)?;
    let secs = t_call.elapsed().as_secs_f64().max(1e-9);
    let rays_done = (meta.step - start_step) as f64 * cfg.batch_rays as f64;
    Ok(Trained {
        model,
        steps_this_call: meta.step - start_step,
        meta,
        resumed_from,
        samples_per_s: rays_done * samples_per_ray as f64 / secs,
        rays_per_s: rays_done / secs,
        metrics,
    })
}
