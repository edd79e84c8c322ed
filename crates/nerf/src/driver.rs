//! The one training driver: the step loop both back ends share. It owns the time budget, the
//! learning-rate schedule (multinerf `learning_rate_decay` with warm-up), the progress bar, the
//! per-step batches (on the host, unless the back end samples them on its device), the metrics cadence (`metrics.jsonl`), the checkpoint cadence (by time,
//! `checkpoint_seconds`, and by steps, `checkpoint_every`) and resume, the checkpoint writer
//! thread, and the stop hook; a [`Backend`] owns only what happens on its device: one optimisation
//! step, and handing back metrics and checkpoints when they have arrived (at once on the CPU, a few
//! steps later from a GPU).
//!
//! Checkpoints are written by a background thread, one at a time: the driver hands the writer a
//! [`CheckpointJob`] (on a GPU it copies the read-back straight from the staging buffers into the
//! model and Adam vectors on the writer thread) and goes on training. The training thread waits for
//! the writer only when the next checkpoint is due and the previous write has not finished, at the
//! end, and, when a stop hook is installed, before asking it (the hook then finds the checkpoint on
//! disk, as after a kill). A writer's error surfaces at the next wait, naming the file.
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
use flythrough_core::summary::StepCounters;
use flythrough_gpu::GpuCounters;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
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
    /// The step's batch, built on the host ([`crate::train::step_batch`]); `None` when the back
    /// end draws the same batch on its device ([`Backend::samples_on_device`]).
    pub batch: Option<StepBatch>,
    pub lr: f64,
    pub progress: f64,
    /// Read the metrics out after this step (and reset the running means).
    pub metrics_at: Option<MetricsAt>,
    /// Checkpoint the state after this step with this metadata (the back end fills in its Adam
    /// step).
    pub checkpoint: Option<CheckpointMeta>,
}

/// What a checkpoint job produces: the model, its Adam state and the metadata.
pub type CheckpointState = (Model, Vec<Adam>, CheckpointMeta);

/// A checkpoint on its way from a back end to the writer thread.
pub struct CheckpointJob {
    /// The step it checkpoints.
    pub step: usize,
    /// Produces the state to write; runs on the writer thread (a GPU back end copies its
    /// read-back there, straight from the staging buffers into the vectors written).
    pub make: Box<dyn FnOnce() -> Result<CheckpointState, NerfError> + Send>,
}

impl CheckpointJob {
    /// A job whose state is already on the host.
    pub fn ready(model: Model, adams: Vec<Adam>, meta: CheckpointMeta) -> CheckpointJob {
        CheckpointJob {
            step: meta.step,
            make: Box::new(move || Ok((model, adams, meta))),
        }
    }
}

/// A device that trains the model: the CPU kernels ([`crate::train::CpuBackend`]) or the wgpu one
/// ([`crate::gpu::train::GpuBackend`]).
pub trait Backend {
    /// The progress bar's label.
    const LABEL: &'static str;
    /// The GLO table batches copy each ray's latent from (a device that reads its own table may
    /// hand out zeros).
    fn batch_latents(&self) -> &[f32];
    /// Whether the back end draws each step's batch itself, on its device, from (`seed`, step)
    /// (the same draws as [`crate::train::step_batch`]): the driver then builds no host batch
    /// ([`StepPlan::batch`] is `None`).
    fn samples_on_device(&self) -> bool {
        false
    }
    /// Run one step.
    fn step(&mut self, plan: StepPlan) -> Result<(), NerfError>;
    /// The oldest metrics read-out that has arrived (`wait`: block for it).
    fn poll_metrics(&mut self, wait: bool)
    -> Result<Option<(MetricsAt, DeviceMetrics)>, NerfError>;
    /// Mean camera correction (translation, degrees) for the metrics line, with pose refinement.
    fn pose_stats(&self) -> Option<(f64, f64)> {
        None
    }
    /// The checkpoint the last [`StepPlan::checkpoint`] asked for, once it can be handed to the
    /// writer without blocking the training thread (`wait`: also one whose read-back is still in
    /// flight, waiting for it: draining, or the next checkpoint is due).
    fn take_checkpoint(&mut self, wait: bool) -> Result<Option<CheckpointJob>, NerfError>;
    /// Seconds the training thread has spent blocked on the device so far (in-flight steps,
    /// metrics read-backs).
    fn device_wait_s(&self) -> f64 {
        0.0
    }
    /// The device's running counters of work sent (a GPU's [`flythrough_gpu::Gpu::counters`]).
    fn counters(&self) -> Option<GpuCounters> {
        None
    }
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

/// Whether a periodic checkpoint is due after step `next` (steps done), `since_last_s` seconds after
/// the last one was asked for (or the call began): `checkpoint_seconds` have passed, or `next` is a
/// multiple of `checkpoint_every` (either 0 = off). Never at the last step: the end of training
/// writes its own.
pub fn checkpoint_due(cfg: &TrainConfig, next: usize, since_last_s: f64) -> bool {
    next < cfg.steps
        && ((cfg.checkpoint_every > 0 && next.is_multiple_of(cfg.checkpoint_every))
            || (cfg.checkpoint_seconds > 0.0 && since_last_s >= cfg.checkpoint_seconds))
}

/// The background checkpoint writer: at most one write at a time, atomic (temporary file +
/// rename, [`checkpoint::save`]).
struct Writer {
    path: PathBuf,
    running: Option<(usize, JoinHandle<Result<(), NerfError>>)>,
    /// Writes started.
    started: usize,
}

impl Writer {
    fn new(path: PathBuf) -> Writer {
        Writer {
            path,
            running: None,
            started: 0,
        }
    }

    /// Whether a write is still going on.
    fn busy(&self) -> bool {
        self.running.as_ref().is_some_and(|(_, h)| !h.is_finished())
    }

    /// Wait for the write in progress, if any: the step it wrote, or its error (naming the file).
    fn wait(&mut self) -> Result<Option<usize>, NerfError> {
        let Some((step, h)) = self.running.take() else {
            return Ok(None);
        };
        match h.join() {
            Ok(r) => r.map(|()| Some(step)),
            Err(_) => Err(NerfError::Checkpoint(
                self.path.clone(),
                "the checkpoint writer thread panicked".into(),
            )),
        }
    }

    /// Start writing `job` (after the write in progress, if any, has finished).
    fn start(&mut self, job: CheckpointJob) -> Result<(), NerfError> {
        self.wait()?;
        let path = self.path.clone();
        let CheckpointJob { step, make } = job;
        let h = std::thread::Builder::new()
            .name("checkpoint writer".into())
            .spawn(move || {
                let (model, adams, meta) = make().map_err(|e| match e {
                    e @ (NerfError::Checkpoint(..) | NerfError::Io(..)) => e,
                    e => NerfError::Checkpoint(path.clone(), format!("reading it back: {e}")),
                })?;
                checkpoint::save(&path, &model, Some(&adams), &meta)
            })
            .map_err(|e| NerfError::Io(self.path.clone(), format!("starting its writer: {e}")))?;
        self.running = Some((step, h));
        self.started += 1;
        Ok(())
    }
}

/// Train (or resume) on `ds` with the back end `make` builds from the starting model and Adam
/// state. Resume checkpoints go to `work/checkpoints/last.safetensors` when due
/// ([`checkpoint_due`]: every `checkpoint_seconds`, every `checkpoint_every` steps) and at the
/// end, written by a background thread; metrics to `work/metrics.jsonl`;
/// `hooks.stop_after_checkpoint` may end the call after a periodic checkpoint (once it is on disk)
/// with [`NerfError::Interrupted`] (as a kill would).
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
    let counters0 = be.counters();
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
    let mut writer = Writer::new(ckpt.clone());
    // A checkpoint the back end has handed over that waits for the writer to be free.
    let mut held: Option<CheckpointJob> = None;
    // Seconds the training thread spent on checkpoints (handing them over, waiting for the
    // writer or a read-back).
    let mut ckpt_wait_s = 0.0f64;
    // Start writing a periodic checkpoint; with a stop hook, wait until it is on disk and ask it.
    let start_periodic = |writer: &mut Writer, job: CheckpointJob| {
        let step = job.step;
        writer.start(job)?;
        if hooks.stop_after_checkpoint.is_some() {
            writer.wait()?;
            if hooks.stop_after_checkpoint(step) {
                return Err(NerfError::Interrupted(step));
            }
        }
        Ok(())
    };
    let mut last_ckpt = Instant::now();
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
        // Counter-based draws keyed by (seed, step): the run is repeatable, a resumed run draws
        // the same batches, and a back end that samples on its device draws the same ones there.
        let batch = (!be.samples_on_device()).then(|| {
            let (rays, target, idx, jitter) =
                step_batch(cfg, ds, step, be.batch_latents(), mcfg.glo_dim, nlev);
            StepBatch {
                rays,
                target,
                idx,
                jitter,
            }
        });
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
        let ckpt_due = checkpoint_due(cfg, next, last_ckpt.elapsed().as_secs_f64());
        if ckpt_due {
            // The previous checkpoint goes to the writer before the next is asked for (waiting
            // only if it has not arrived or the write before it has not finished).
            let t = Instant::now();
            if held.is_none() {
                held = be.take_checkpoint(true)?;
            }
            if let Some(job) = held.take() {
                start_periodic(&mut writer, job)?;
            }
            ckpt_wait_s += t.elapsed().as_secs_f64();
            last_ckpt = Instant::now();
        }
        let checkpoint = ckpt_due.then(|| {
            let mut m = meta.clone();
            m.step = next;
            m.elapsed_s = elapsed0 + t_call.elapsed().as_secs_f64();
            m
        });
        be.step(StepPlan {
            step,
            batch,
            lr,
            progress,
            metrics_at,
            checkpoint,
        })?;
        meta.step = next;
        pb.set_position(meta.step as u64);
        write_metrics(&mut be, false, &mut metrics)?;
        // A checkpoint that has arrived goes to the writer when it is free (never blocking).
        let t = Instant::now();
        if held.is_none() {
            held = be.take_checkpoint(false)?;
        }
        if held.is_some() && !writer.busy() {
            start_periodic(&mut writer, held.take().expect("checked"))?;
        }
        ckpt_wait_s += t.elapsed().as_secs_f64();
    }
    // Drain: the last metrics, any checkpoint still in flight, the write in progress.
    write_metrics(&mut be, true, &mut metrics)?;
    let t = Instant::now();
    if held.is_none() {
        held = be.take_checkpoint(true)?;
    }
    if let Some(job) = held.take() {
        // The final checkpoint below supersedes it; with a stop hook it is written and asked
        // about as any periodic one.
        if hooks.stop_after_checkpoint.is_some() {
            start_periodic(&mut writer, job)?;
        }
    }
    writer.wait()?;
    ckpt_wait_s += t.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let steps_this_call = meta.step - start_step;
    let per_step = 1.0 / steps_this_call.max(1) as f64;
    let host_wait_s = be.device_wait_s() + ckpt_wait_s;
    let gpu_per_step = match (counters0, be.counters()) {
        (Some(a), Some(b)) => {
            let d = b.since(&a);
            Some(StepCounters {
                dispatches_per_step: d.dispatches as f64 * per_step,
                passes_per_step: d.passes as f64 * per_step,
                upload_bytes_per_step: d.upload_bytes as f64 * per_step,
                readback_bytes_per_step: d.readback_bytes as f64 * per_step,
                submits_per_step: d.submits as f64 * per_step,
            })
        }
        _ => None,
    };
    let (model, adams) = be.finish()?;
    if !model.params.iter().flatten().all(|v| v.is_finite()) {
        return Err(NerfError::Diverged(meta.step));
    }
    meta.elapsed_s = elapsed0 + t_call.elapsed().as_secs_f64();
    meta.adam = Some((ADAM, adams.first().map(|a| a.step).unwrap_or(0)));
    checkpoint::save(&ckpt, &model, Some(&adams), &meta)?;
    let secs = t_call.elapsed().as_secs_f64().max(1e-9);
    let rays_done = steps_this_call as f64 * cfg.batch_rays as f64;
    if let Some(c) = &gpu_per_step {
        tracing::info!(
            "train: per step {:.1} dispatches, {:.1} passes, {:.0} bytes uploaded, {:.2} ms host wait ({:.2} ms on checkpoints, {} written in the background)",
            c.dispatches_per_step,
            c.passes_per_step,
            c.upload_bytes_per_step,
            1e3 * host_wait_s * per_step,
            1e3 * ckpt_wait_s * per_step,
            writer.started
        );
    }
    Ok(Trained {
        model,
        steps_this_call,
        meta,
        resumed_from,
        samples_per_s: rays_done * samples_per_ray as f64 / secs,
        rays_per_s: rays_done / secs,
        metrics,
        host_wait_ms_per_step: 1e3 * host_wait_s * per_step,
        checkpoint_wait_ms_per_step: 1e3 * ckpt_wait_s * per_step,
        checkpoints_written: writer.started,
        gpu_per_step,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cadence with the clock injected: by time, by steps, both, neither, never at the end.
    #[test]
    fn checkpoints_fall_due_by_time_or_by_steps() {
        let mut c = TrainConfig {
            steps: 1000,
            checkpoint_every: 0,
            checkpoint_seconds: 60.0,
            ..Default::default()
        };
        assert!(!checkpoint_due(&c, 10, 59.999));
        assert!(checkpoint_due(&c, 10, 60.0));
        assert!(checkpoint_due(&c, 11, 3600.0));
        // Never at the last step: the end writes its own.
        assert!(!checkpoint_due(&c, 1000, 3600.0));
        c.checkpoint_every = 250;
        assert!(checkpoint_due(&c, 250, 0.0));
        assert!(!checkpoint_due(&c, 251, 1.0));
        assert!(checkpoint_due(&c, 251, 61.0));
        c.checkpoint_seconds = 0.0;
        assert!(!checkpoint_due(&c, 251, 1e9));
        assert!(checkpoint_due(&c, 500, 0.0));
        c.checkpoint_every = 0;
        assert!((1..1000).all(|n| !checkpoint_due(&c, n, 1e9)));
        // The defaults: by time only, every 60 s.
        let d = TrainConfig::default();
        assert_eq!((d.checkpoint_every, d.checkpoint_seconds), (0, 60.0));
        assert!(!checkpoint_due(&d, 250, 1.0) && checkpoint_due(&d, 7, 60.0));
    }
}
