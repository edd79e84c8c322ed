//! Training on the GPU: the same loop as [`crate::train::train`] (same batches, learning-rate
//! schedule, checkpoints and metrics files), with the step on the device.
//!
//! One step = one command encoder and one submit: upload the batch (rays, latent indices, jitter,
//! targets) with queue writes, then forward, backward, the global gradient norm (partial sums and a
//! fixed-order final sum, which also yields the clip factor) and fused Adam on every buffer. Nothing
//! is read back per step: the losses accumulate on the device and are copied out every
//! `metrics_every` steps, parameters and Adam moments every `checkpoint_every` steps, both mapped
//! asynchronously and collected while later steps run. The host keeps at most two steps in flight.

use super::batch::{Batch, Mode};
use super::kernels::{AdamLen, AdamStep, Dispatch, Grid, NormParams, SqParams, launch};
use super::model::{GpuModel, gpu_err};
use crate::NerfError;
use crate::checkpoint::CheckpointMeta;
use crate::data::Dataset;
use crate::driver::{Backend, SaveFn, StepBatch, StepPlan};
use crate::kernels::{Adam, AdamConfig};
use crate::model::{LossWeights, Model, Rays};
use crate::stepfun;
use crate::train::{ADAM, Trained};
use flythrough_core::config::TrainConfig;
use flythrough_core::stage::Hooks;
use flythrough_gpu::{Gpu, GpuBuffer, Profiler, Readback, Recorder, Submission};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

/// Steps the host may run ahead of the device.
const IN_FLIGHT: usize = 2;

pub use crate::driver::{DeviceMetrics, MetricsAt};

/// A checkpoint being copied off the device.
pub struct PendingCheckpoint {
    params: Vec<Readback>,
    m: Vec<Readback>,
    v: Vec<Readback>,
    pub meta: CheckpointMeta,
}

/// A model, its Adam state and a training batch on the device.
pub struct GpuTrainer {
    pub model: GpuModel,
    pub batch: Batch,
    m1: Vec<GpuBuffer>,
    m2: Vec<GpuBuffer>,
    opt: Vec<Dispatch>,
    u_step: GpuBuffer,
    adam_cfg: AdamConfig,
    /// Adam steps taken (`t` of the last update).
    pub adam_step: u64,
    in_flight: VecDeque<Submission>,
    metrics: VecDeque<(Readback, MetricsAt)>,
    ckpt: Option<PendingCheckpoint>,
    /// Times every kernel of the following steps when set (blocking per step: benchmarks only).
    pub profiler: Option<Profiler>,
}

/// Element ranges `(offset, len)` of a buffer of `len` floats, each within the binding limit and
/// starting at an aligned offset.
fn chunks(len: usize, gpu: &Gpu) -> Vec<(usize, usize)> {
    let l = gpu.limits();
    let align = (l.storage_offset_align as usize / 4).max(1);
    let max = ((l.max_storage_binding_bytes / 4) as usize / align * align).max(align);
    (0..len.div_ceil(max))
        .map(|i| (i * max, max.min(len - i * max)))
        .collect()
}

impl GpuTrainer {
    /// Upload `model` and its Adam state and build the training batch. Errors name the config key to
    /// lower when the grids, Adam state or batch do not fit the adapter.
    pub fn new(
        gpu: Arc<Gpu>,
        model: &Model,
        adams: &[Adam],
        cfg: &TrainConfig,
    ) -> Result<GpuTrainer, NerfError> {
        let fit = |e: NerfError| match e {
            NerfError::Gpu(m) if m.contains("memory") && !m.contains("lower [train]") => {
                NerfError::Gpu(format!(
                    "{m}: the hash grids (x4 with gradients and Adam moments) and the batch do not \
                     fit this GPU ({}): lower [train] hash_table_log2, hash_levels or batch_rays",
                    gpu.adapter()
                ))
            }
            other => other,
        };
        let m = GpuModel::new(gpu.clone(), model).map_err(fit)?;
        let lw = LossWeights {
            distortion: cfg.distortion_weight as f32,
            interlevel: cfg.interlevel_weight as f32,
        };
        let batch = Batch::new(&m, cfg.batch_rays, Mode::Train, lw).map_err(fit)?;
        let g = &*gpu;
        let mut m1 = Vec::new();
        let mut m2 = Vec::new();
        for (i, p) in m.params.iter().enumerate() {
            let (a, b) = match adams.get(i) {
                Some(a) if a.m.len() == p.len() => {
                    (g.upload("adam m", &a.m), g.upload("adam v", &a.v))
                }
                _ => {
                    let z = vec![0.0f32; p.len()];
                    (g.upload("adam m", &z), g.upload("adam v", &z))
                }
            };
            m1.push(a.map_err(gpu_err).map_err(fit)?);
            m2.push(b.map_err(gpu_err).map_err(fit)?);
        }
        let train = batch.train.as_ref().expect("training batch");
        // Gradients and the running metrics start at zero; Adam zeroes the gradients after every
        // step, a metrics read-back the metrics.
        let mut rec = g.recorder("zero gradients");
        for gb in &train.grads {
            rec.clear(gb);
        }
        rec.clear(&train.metrics);
        rec.submit();
        // Global norm: partial sums per chunk, then one fixed-order sum (and the clip factor).
        let mut opt = Vec::new();
        let mut parts = 0usize;
        let mut sq_jobs = Vec::new();
        for (i, p) in m.params.iter().enumerate() {
            for (off, len) in chunks(p.len(), g) {
                sq_jobs.push((i, off, len, parts));
                parts += len.div_ceil(2048);
            }
        }
        let partial = g
            .storage_len("norm partials", parts.max(1))
            .map_err(gpu_err)?;
        for &(i, off, len, part_off) in &sq_jobs {
            let u = g
                .uniform(
                    "sq params",
                    &SqParams {
                        len: len as u32,
                        part_off: part_off as u32,
                        _p: [0; 2],
                    },
                )
                .map_err(gpu_err)?;
            opt.push(
                launch::SqNorm {
                    p: &u,
                    x: train.grads[i].range(4 * off as u64, 4 * len as u64),
                    partial: &partial,
                }
                .dispatch(&m.k, Grid::Groups(g.grid(len.div_ceil(2048) as u64, 1)))
                .map_err(gpu_err)?,
            );
        }
        let normbuf = g.storage_len("norm", 2).map_err(gpu_err)?;
        let u = g
            .uniform(
                "norm params",
                &NormParams {
                    n_parts: parts as u32,
                    clip: (cfg.grad_max_norm > 0.0) as u32,
                    _p0: [0; 2],
                    max_norm: cfg.grad_max_norm as f32,
                    _p1: [0.0; 3],
                },
            )
            .map_err(gpu_err)?;
        opt.push(
            launch::SqNormFinal {
                p: &u,
                partial: &partial,
                norm_out: &normbuf,
                metrics: &train.metrics,
            }
            .dispatch(&m.k, Grid::Groups([1, 1, 1]))
            .map_err(gpu_err)?,
        );
        let u_step = g
            .uniform("adam step", &AdamStep::default())
            .map_err(gpu_err)?;
        for &(i, off, len, _) in &sq_jobs {
            let ul = g
                .uniform(
                    "adam len",
                    &AdamLen {
                        len: len as u32,
                        _p: [0; 3],
                    },
                )
                .map_err(gpu_err)?;
            let (o, n) = (4 * off as u64, 4 * len as u64);
            opt.push(
                launch::Adam {
                    pl: &ul,
                    ps: &u_step,
                    norm: &normbuf,
                    param: m.params[i].range(o, n),
                    grad: train.grads[i].range(o, n),
                    m1: m1[i].range(o, n),
                    m2: m2[i].range(o, n),
                }
                .dispatch(&m.k, Grid::Threads(len as u64))
                .map_err(gpu_err)?,
            );
        }
        Ok(GpuTrainer {
            model: m,
            batch,
            m1,
            m2,
            opt,
            u_step,
            adam_cfg: ADAM,
            adam_step: adams.first().map(|a| a.step).unwrap_or(0),
            in_flight: VecDeque::new(),
            metrics: VecDeque::new(),
            ckpt: None,
            profiler: None,
        })
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        self.model.gpu()
    }

    /// Upload one batch: rays (norm frame), per-ray photo (latent) indices, per level and ray jitter,
    /// target colours.
    fn upload(&mut self, rays: &Rays, idx: &[usize], jitter: &[Vec<f32>], target: &[[f32; 3]]) {
        let g = self.model.gpu().clone();
        let cap = self.batch.cap;
        assert_eq!(
            rays.len(),
            cap,
            "a training batch has exactly batch_rays rays"
        );
        let packed: Vec<[f32; 8]> = (0..cap)
            .map(|i| {
                let (o, d) = (rays.o[i], rays.d[i]);
                [o[0], o[1], o[2], d[0], d[1], d[2], rays.r[i], rays.ev[i]]
            })
            .collect();
        self.batch.set_rays(&g, &packed);
        let li: Vec<u32> = idx.iter().map(|&k| k as u32).collect();
        g.write(&self.batch.latent_idx, 0, &li);
        let nlev = jitter.len();
        let mut jit = vec![0.0f32; cap * nlev];
        for (l, jl) in jitter.iter().enumerate() {
            for (r, &j) in jl.iter().enumerate() {
                jit[r * nlev + l] = j;
            }
        }
        let t = self.batch.train.as_ref().expect("training batch");
        g.write(&t.jitter, 0, &jit);
        g.write(&t.target, 0, target);
    }

    /// Record and submit one training step at learning rate `lr` and training progress
    /// `train_frac` (proposal annealing). `extra` records more work after the step (read-backs).
    pub fn step(
        &mut self,
        rays: &Rays,
        target: &[[f32; 3]],
        idx: &[usize],
        jitter: &[Vec<f32>],
        lr: f64,
        train_frac: f32,
    ) {
        self.step_with(rays, target, idx, jitter, lr, train_frac, |_, _| {});
    }

    #[allow(clippy::too_many_arguments)]
    fn step_with(
        &mut self,
        rays: &Rays,
        target: &[[f32; 3]],
        idx: &[usize],
        jitter: &[Vec<f32>],
        lr: f64,
        train_frac: f32,
        extra: impl FnOnce(&mut Recorder, &GpuTrainer),
    ) {
        self.upload(rays, idx, jitter, target);
        let g = self.model.gpu().clone();
        self.batch
            .set_anneal(&g, stepfun::anneal_power(train_frac, 10.0));
        self.adam_step += 1;
        let t = self.adam_step as i32;
        let c = self.adam_cfg;
        let bc1 = 1.0 - (c.beta1 as f64).powi(t);
        let bc2 = 1.0 - (c.beta2 as f64).powi(t);
        let st = AdamStep {
            b1: c.beta1,
            b2: c.beta2,
            eps: c.eps,
            step_size: (lr / bc1) as f32,
            inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
            _p: [0.0; 3],
        };
        g.write(&self.u_step, 0, std::slice::from_ref(&st));
        let mut prof = self.profiler.take();
        let mut rec = g.recorder("train step");
        if let Some(p) = prof.as_mut() {
            rec.profile(p);
        }
        self.batch.record_forward(&mut rec);
        self.batch.record_backward(&mut rec);
        for d in &self.opt {
            d.record(&mut rec);
        }
        extra(&mut rec, self);
        let sub = rec.submit();
        if let Some(p) = prof.as_mut() {
            p.collect(&g);
        }
        self.profiler = prof;
        self.in_flight.push_back(sub);
        while self.in_flight.len() > IN_FLIGHT {
            if let Some(s) = self.in_flight.pop_front() {
                g.wait_for(&s);
            }
        }
    }

    /// [`GpuTrainer::step`] that also copies the running metrics out (and resets them) once the
    /// step has run; collect them with [`GpuTrainer::poll_metrics`].
    #[allow(clippy::too_many_arguments)]
    pub fn step_and_read(
        &mut self,
        rays: &Rays,
        target: &[[f32; 3]],
        idx: &[usize],
        jitter: &[Vec<f32>],
        lr: f64,
        train_frac: f32,
        metrics_at: Option<MetricsAt>,
        checkpoint: Option<CheckpointMeta>,
    ) {
        let mut rb = None;
        let mut ck = None;
        self.step_with(rays, target, idx, jitter, lr, train_frac, |rec, me| {
            let t = me.batch.train.as_ref().expect("training batch");
            if metrics_at.is_some() {
                rb = Some(rec.read_back(&t.metrics, 0, 32));
                rec.clear(&t.metrics);
            }
            if let Some(meta) = checkpoint {
                let read = |rec: &mut Recorder, v: &[GpuBuffer], lens: &[usize]| {
                    v.iter()
                        .zip(lens)
                        .map(|(b, &n)| rec.read_back(b, 0, 4 * n.max(1) as u64))
                        .collect::<Vec<_>>()
                };
                let lens: Vec<usize> = me.model.params.iter().map(|p| p.len()).collect();
                ck = Some(PendingCheckpoint {
                    params: read(rec, &me.model.params, &lens),
                    m: read(rec, &me.m1, &lens),
                    v: read(rec, &me.m2, &lens),
                    meta,
                });
            }
        });
        if let (Some(rb), Some(at)) = (rb, metrics_at) {
            self.metrics.push_back((rb, at));
        }
        if ck.is_some() {
            self.ckpt = ck;
        }
    }

    /// The oldest metrics read-back once it has arrived (`wait`: block for it).
    pub fn poll_metrics(
        &mut self,
        wait: bool,
    ) -> Result<Option<(MetricsAt, DeviceMetrics)>, NerfError> {
        let g = self.model.gpu().clone();
        let ready = match self.metrics.front() {
            Some((rb, _)) => wait || rb.ready(&g),
            None => false,
        };
        if !ready {
            return Ok(None);
        }
        let (rb, at) = self.metrics.pop_front().expect("checked");
        let v: Vec<f32> = rb.wait_as(&g).map_err(gpu_err)?;
        let k = (v[4] as f64).max(1.0);
        Ok(Some((
            at,
            DeviceMetrics {
                data: v[0] as f64 / k,
                distortion: v[1] as f64 / k,
                interlevel: v[2] as f64 / k,
                mse: v[3] as f64 / k,
                steps: v[4] as f64,
                grad_norm: v[5] as f64,
            },
        )))
    }

    /// The pending checkpoint once every buffer has arrived (`wait`: block for it): the model, its
    /// Adam state (at [`GpuTrainer::adam_step`] of the request) and the metadata given.
    pub fn poll_checkpoint(
        &mut self,
        wait: bool,
    ) -> Result<Option<(Model, Vec<Adam>, CheckpointMeta)>, NerfError> {
        let g = self.model.gpu().clone();
        let Some(ck) = &self.ckpt else {
            return Ok(None);
        };
        let ready = wait
            || ck
                .params
                .iter()
                .chain(&ck.m)
                .chain(&ck.v)
                .all(|r| r.ready(&g));
        if !ready {
            return Ok(None);
        }
        let ck = self.ckpt.take().expect("checked");
        let step = ck.meta.adam.map(|a| a.1).unwrap_or(self.adam_step);
        let mut model = Model::new(self.model.cfg.clone(), self.model.near, 0);
        let mut adams = Vec::new();
        for (((p, rp), rm), rv) in model.params.iter_mut().zip(ck.params).zip(ck.m).zip(ck.v) {
            let n = p.len();
            let take = |r: Readback| -> Result<Vec<f32>, NerfError> {
                let v: Vec<f32> = r.wait_as(&g).map_err(gpu_err)?;
                Ok(v[..n].to_vec())
            };
            *p = take(rp)?;
            let mut a = Adam::new(n, self.adam_cfg);
            a.m = take(rm)?;
            a.v = take(rv)?;
            a.step = step;
            adams.push(a);
        }
        Ok(Some((model, adams, ck.meta)))
    }

    /// Block until every submitted step has run.
    pub fn finish(&mut self) {
        self.model.gpu().wait_idle();
        self.in_flight.clear();
    }

    /// The model and Adam state now (blocking read-back).
    pub fn download(&mut self) -> Result<(Model, Vec<Adam>), NerfError> {
        self.finish();
        let g = self.model.gpu().clone();
        let mut model = Model::new(self.model.cfg.clone(), self.model.near, 0);
        let mut adams = Vec::new();
        for (i, p) in model.params.iter_mut().enumerate() {
            let n = p.len();
            let r = |b: &GpuBuffer| -> Result<Vec<f32>, NerfError> {
                let v: Vec<f32> = g.read(b).map_err(gpu_err)?;
                Ok(v[..n].to_vec())
            };
            *p = r(&self.model.params[i])?;
            let mut a = Adam::new(n, self.adam_cfg);
            a.m = r(&self.m1[i])?;
            a.v = r(&self.m2[i])?;
            a.step = self.adam_step;
            adams.push(a);
        }
        Ok((model, adams))
    }

    /// The gradient buffers after the last step's backward (tests: call before the optimiser has
    /// zeroed them, i.e. with [`GpuTrainer::gradients_of`]).
    pub fn gradients_of(
        &mut self,
        rays: &Rays,
        target: &[[f32; 3]],
        idx: &[usize],
        jitter: &[Vec<f32>],
        train_frac: f32,
    ) -> Result<Vec<Vec<f32>>, NerfError> {
        self.upload(rays, idx, jitter, target);
        let g = self.model.gpu().clone();
        self.batch
            .set_anneal(&g, stepfun::anneal_power(train_frac, 10.0));
        let mut rec = g.recorder("gradients");
        self.batch.record_forward(&mut rec);
        self.batch.record_backward(&mut rec);
        let t = self.batch.train.as_ref().expect("training batch");
        let rbs: Vec<Readback> = t
            .grads
            .iter()
            .zip(&self.model.params)
            .map(|(gb, p)| rec.read_back(gb, 0, 4 * p.len().max(1) as u64))
            .collect();
        for gb in &t.grads {
            rec.clear(gb);
        }
        rec.clear(&t.metrics);
        rec.submit();
        rbs.into_iter()
            .zip(&self.model.params)
            .map(|(rb, p)| {
                let v: Vec<f32> = rb.wait_as(&g).map_err(gpu_err)?;
                Ok(v[..p.len()].to_vec())
            })
            .collect()
    }
}

/// Train (or resume) on the GPU: the training driver ([`crate::driver::drive`]) with each step on
/// the device. Checkpoints are the same files (back-end neutral), so a run can resume on either
/// back end.
pub fn train(
    cfg: &TrainConfig,
    ds: &Dataset,
    work: &Path,
    gpu: Arc<Gpu>,
) -> Result<Trained, NerfError> {
    train_with(cfg, ds, work, gpu, &Hooks::default())
}

/// [`train`] with the caller's hooks (a stop after a checkpoint).
pub fn train_with(
    cfg: &TrainConfig,
    ds: &Dataset,
    work: &Path,
    gpu: Arc<Gpu>,
    hooks: &Hooks,
) -> Result<Trained, NerfError> {
    crate::driver::drive(cfg, ds, work, hooks, |model, adams| {
        let tr = GpuTrainer::new(gpu, &model, &adams, cfg)?;
        // Batches copy each ray's latent from a host table; the device reads its own.
        let host_glo = vec![0.0f32; model.cfg.num_latents * model.cfg.glo_dim];
        Ok(GpuBackend { tr, host_glo })
    })
}

/// The GPU back end of the training driver: steps are queued ([`IN_FLIGHT`] ahead of the device),
/// metrics and checkpoints are copied out asynchronously and handed back when they have arrived.
pub struct GpuBackend {
    tr: GpuTrainer,
    host_glo: Vec<f32>,
}

impl Backend for GpuBackend {
    const LABEL: &'static str = "train (GPU): steps";

    fn batch_latents(&self) -> &[f32] {
        &self.host_glo
    }

    fn step(&mut self, plan: StepPlan) -> Result<(), NerfError> {
        let StepBatch {
            rays,
            target,
            idx,
            jitter,
        } = plan.batch;
        let checkpoint = plan.checkpoint.map(|mut m| {
            m.adam = Some((ADAM, self.tr.adam_step + 1));
            m
        });
        self.tr.step_and_read(
            &rays,
            &target,
            &idx,
            &jitter,
            plan.lr,
            plan.progress as f32,
            plan.metrics_at,
            checkpoint,
        );
        Ok(())
    }

    fn poll_metrics(
        &mut self,
        wait: bool,
    ) -> Result<Option<(MetricsAt, DeviceMetrics)>, NerfError> {
        // Draining: let every queued step run once (later calls find nothing in flight).
        if wait && !self.tr.in_flight.is_empty() {
            self.tr.finish();
        }
        self.tr.poll_metrics(wait)
    }

    fn write_checkpoint(&mut self, wait: bool, save: &mut SaveFn) -> Result<(), NerfError> {
        match self.tr.poll_checkpoint(wait)? {
            Some((m, a, meta)) => save(&m, &a, &meta),
            None => Ok(()),
        }
    }

    fn finish(mut self) -> Result<(Model, Vec<Adam>), NerfError> {
        self.tr.download()
    }
}
