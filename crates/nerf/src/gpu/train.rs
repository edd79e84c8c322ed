//! Training on the GPU: the same loop as [`crate::train::train`] (same batches, learning-rate
//! schedule, checkpoints and metrics files), with the step on the device.
//!
//! One step = one command encoder and one submit: the step's batch (rays, latent indices, jitter,
//! targets) drawn on the device by `sample_batch` from (`seed`, step) out of the training photos
//! uploaded once ([`super::sampler`]; the same draws as the CPU's `step_batch`), or, when the
//! photos do not fit the device or for the tests' and benchmarks' own batches, uploaded with
//! queue writes; then forward, backward, the global gradient norm (partial sums and a
//! fixed-order final sum, which also yields the clip factor; only where it clips or on a step
//! whose metrics are read, else Adam keeps the factor 1) and fused Adam on every buffer. Nothing
//! is read back per step: the losses accumulate on the device and are copied out every
//! `metrics_every` steps, parameters and Adam moments when a checkpoint is due (the driver's
//! `checkpoint_seconds` / `checkpoint_every`), both mapped asynchronously and collected while later
//! steps run: a checkpoint's staging buffers go to the driver's writer thread, which copies them
//! straight into the model and Adam vectors it writes (the training thread copies nothing). The
//! host keeps at most two steps in flight; the time it spends blocked is [`GpuTrainer::wait_s`].

use super::batch::{Batch, Mode};
use super::kernels::{AdamLen, AdamStep, Dispatch, Grid, NormParams, SqParams, launch};
use super::model::{GpuModel, gpu_err};
use super::sampler::{DeviceData, DeviceSampler};
use crate::NerfError;
use crate::checkpoint::CheckpointMeta;
use crate::data::Dataset;
use crate::driver::{Backend, CheckpointJob, StepBatch, StepPlan};
use crate::kernels::{Adam, AdamConfig};
use crate::model::{LossWeights, Model, Rays};
use crate::stepfun;
use crate::train::{ADAM, Trained};
use flythrough_core::config::TrainConfig;
use flythrough_core::stage::Hooks;
use flythrough_gpu::{Gpu, GpuBuffer, GpuCounters, Profiler, Readback, Recorder, Submission};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Steps the host may run ahead of the device.
const IN_FLIGHT: usize = 2;

pub use crate::driver::{DeviceMetrics, MetricsAt};

/// A checkpoint being copied off the device.
pub struct PendingCheckpoint {
    params: Vec<Readback>,
    m: Vec<Readback>,
    v: Vec<Readback>,
    /// The submission that copies them.
    sub: Option<Submission>,
    pub meta: CheckpointMeta,
}

/// A model, its Adam state and a training batch on the device.
pub struct GpuTrainer {
    pub model: GpuModel,
    pub batch: Batch,
    m1: Vec<GpuBuffer>,
    m2: Vec<GpuBuffer>,
    /// The global gradient norm (`sq_norm` per chunk, `sq_norm_final`): every step when it clips
    /// the gradients, else only on the steps whose metrics are read (their `grad_norm`).
    norm: Vec<Dispatch>,
    /// Whether the norm clips the gradients (`[train] grad_max_norm` > 0).
    clip: bool,
    /// Adam over every parameter chunk (reads the clip factor the norm left: 1 when not clipping).
    adam: Vec<Dispatch>,
    u_step: GpuBuffer,
    adam_cfg: AdamConfig,
    /// Adam steps taken (`t` of the last update).
    pub adam_step: u64,
    in_flight: VecDeque<Submission>,
    metrics: VecDeque<(Readback, MetricsAt)>,
    ckpt: Option<PendingCheckpoint>,
    /// Times every kernel of the following steps when set (blocking per step: benchmarks only).
    pub profiler: Option<Profiler>,
    /// Seconds the host has spent blocked on the device (in-flight steps, read-backs, draining).
    pub wait_s: f64,
    /// Floats of each parameter buffer on the host (device buffers may be padded).
    host_lens: Vec<usize>,
    /// The batches' sampler on the device, once [`GpuTrainer::sample_on_device`] has uploaded
    /// the training photos.
    pub sampler: Option<DeviceSampler>,
}

/// A batch built on the host: rays, target colours, photo (latent) indices, jitter per level.
pub type HostBatch<'a> = (&'a Rays, &'a [[f32; 3]], &'a [usize], &'a [Vec<f32>]);

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
        let mut m = GpuModel::new(gpu.clone(), model).map_err(fit)?;
        m.k = m.k.with_act(super::training_act(&gpu)).map_err(gpu_err)?;
        tracing::info!(
            "gpu: MLP activations kept for the backward in {} ({}=0 keeps f32), hash-grid \
             gradients {}",
            m.k.act.name(),
            super::F16_ENV,
            if m.k.subgroups {
                "pre-reduced in subgroups"
            } else {
                "scattered per lane"
            }
        );
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
        let mut norm = Vec::new();
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
            norm.push(
                launch::SqNorm {
                    p: &u,
                    x: train.grads[i].range(4 * off as u64, 4 * len as u64),
                    partial: &partial,
                }
                .dispatch(&m.k, Grid::Groups(g.grid(len.div_ceil(2048) as u64, 1)))
                .map_err(gpu_err)?,
            );
        }
        // [norm, clip factor]: the factor 1 until a norm is computed (a step without one keeps
        // the last: 1 when not clipping).
        let normbuf = g.storage_len("norm", 2).map_err(gpu_err)?;
        g.write(&normbuf, 0, &[0.0f32, 1.0]);
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
        norm.push(
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
        let mut adam = Vec::new();
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
            adam.push(
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
            norm,
            clip: cfg.grad_max_norm > 0.0,
            adam,
            u_step,
            adam_cfg: ADAM,
            adam_step: adams.first().map(|a| a.step).unwrap_or(0),
            in_flight: VecDeque::new(),
            metrics: VecDeque::new(),
            ckpt: None,
            profiler: None,
            wait_s: 0.0,
            host_lens: model.params.iter().map(|p| p.len()).collect(),
            sampler: None,
        })
    }

    /// Upload the training photos of `ds` once ([`DeviceData`]) so that [`GpuTrainer::step_sampled`]
    /// draws each step's batch on the device from (`seed`, step). An error (naming what to
    /// lower) when they do not fit one binding or the device's memory.
    pub fn sample_on_device(&mut self, ds: &Dataset, seed: u64) -> Result<(), NerfError> {
        let g = self.model.gpu().clone();
        let data = DeviceData::upload(&g, ds)?;
        let t = self.batch.train.as_ref().expect("training batch");
        let nlev = self.batch.levels.len();
        self.sampler = Some(data.sampler(
            &self.model.k,
            seed,
            self.batch.cap,
            nlev,
            &self.batch.rays,
            &self.batch.latent_idx,
            &t.jitter,
            &t.target,
        )?);
        Ok(())
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
        self.step_with(
            Some((rays, target, idx, jitter)),
            0,
            lr,
            train_frac,
            false,
            |_, _| {},
        );
    }

    /// [`GpuTrainer::step`] on the batch of step `step` drawn on the device (after
    /// [`GpuTrainer::sample_on_device`]).
    pub fn step_sampled(&mut self, step: usize, lr: f64, train_frac: f32) {
        self.step_with(None, step, lr, train_frac, false, |_, _| {});
    }

    /// One step on `batch`, or (`None`) on step `step`'s batch drawn on the device; the gradient
    /// norm is computed when it clips or `want_norm` (a step whose metrics are read).
    fn step_with(
        &mut self,
        batch: Option<HostBatch<'_>>,
        step: usize,
        lr: f64,
        train_frac: f32,
        want_norm: bool,
        extra: impl FnOnce(&mut Recorder, &GpuTrainer),
    ) {
        let g = self.model.gpu().clone();
        match batch {
            Some((rays, target, idx, jitter)) => self.upload(rays, idx, jitter, target),
            None => self
                .sampler
                .as_mut()
                .expect("sample_on_device before step_sampled")
                .set_step(&g, step),
        }
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
        if batch.is_none() {
            let s = self.sampler.as_ref().expect("checked");
            s.dispatch.record(&mut rec);
        }
        self.batch.record_forward(&mut rec);
        self.batch.record_backward(&mut rec);
        if self.clip || want_norm {
            for d in &self.norm {
                d.record(&mut rec);
            }
        }
        for d in &self.adam {
            d.record(&mut rec);
        }
        extra(&mut rec, self);
        let sub = rec.submit();
        if let Some(p) = prof.as_mut() {
            p.collect(&g);
        }
        self.profiler = prof;
        self.in_flight.push_back(sub);
        if self.in_flight.len() > IN_FLIGHT {
            let t = Instant::now();
            while self.in_flight.len() > IN_FLIGHT {
                if let Some(s) = self.in_flight.pop_front() {
                    g.wait_for(&s);
                }
            }
            self.wait_s += t.elapsed().as_secs_f64();
        }
    }

    /// [`GpuTrainer::step`] (on `batch`, or on step `step`'s batch drawn on the device) that also
    /// copies the running metrics out (and resets them) once the step has run; collect them with
    /// [`GpuTrainer::poll_metrics`].
    #[allow(clippy::too_many_arguments)]
    pub fn step_and_read(
        &mut self,
        batch: Option<HostBatch<'_>>,
        step: usize,
        lr: f64,
        train_frac: f32,
        metrics_at: Option<MetricsAt>,
        checkpoint: Option<CheckpointMeta>,
    ) {
        let mut rb = None;
        let mut ck = None;
        self.step_with(
            batch,
            step,
            lr,
            train_frac,
            metrics_at.is_some(),
            |rec, me| {
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
                    let lens = &me.host_lens;
                    ck = Some(PendingCheckpoint {
                        params: read(rec, &me.model.params, lens),
                        m: read(rec, &me.m1, lens),
                        v: read(rec, &me.m2, lens),
                        sub: None,
                        meta,
                    });
                }
            },
        );
        if let (Some(rb), Some(at)) = (rb, metrics_at) {
            self.metrics.push_back((rb, at));
        }
        if let Some(mut ck) = ck {
            ck.sub = self.in_flight.back().cloned();
            self.ckpt = Some(ck);
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
        let t = Instant::now();
        let mut v = [0.0f32; 8];
        rb.wait_into(&g, &mut v).map_err(gpu_err)?;
        self.wait_s += t.elapsed().as_secs_f64();
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

    /// The pending checkpoint as a job for the writer thread once every buffer has arrived
    /// (`wait`: block for them): the job copies the staging buffers straight into the model and
    /// Adam vectors (at the Adam step of the request) on the thread that runs it.
    pub fn take_checkpoint(&mut self, wait: bool) -> Result<Option<CheckpointJob>, NerfError> {
        let g = self.model.gpu().clone();
        let Some(ck) = &self.ckpt else {
            return Ok(None);
        };
        let all_ready = |ck: &PendingCheckpoint| {
            ck.params
                .iter()
                .chain(&ck.m)
                .chain(&ck.v)
                .all(|r| r.ready(&g))
        };
        if !all_ready(ck) {
            if !wait {
                return Ok(None);
            }
            let t = Instant::now();
            match &ck.sub {
                Some(sub) => {
                    while !all_ready(ck) {
                        g.wait_for(sub);
                    }
                }
                None => g.wait_idle(),
            }
            self.wait_s += t.elapsed().as_secs_f64();
        }
        let ck = self.ckpt.take().expect("checked");
        let step = ck.meta.adam.map(|a| a.1).unwrap_or(self.adam_step);
        let (cfg, near, names) = (
            self.model.cfg.clone(),
            self.model.near,
            self.model.names.clone(),
        );
        let lens = self.host_lens.clone();
        let adam_cfg = self.adam_cfg;
        let meta = ck.meta;
        let (rp, rm, rv) = (ck.params, ck.m, ck.v);
        Ok(Some(CheckpointJob {
            step: meta.step,
            make: Box::new(move || {
                // One copy per buffer: mapped staging memory -> the vector written.
                let take = |r: Readback, n: usize| -> Result<Vec<f32>, NerfError> {
                    let mut v = vec![0.0f32; n];
                    r.wait_into(&g, &mut v).map_err(gpu_err)?;
                    Ok(v)
                };
                let mut params = Vec::with_capacity(lens.len());
                let mut adams = Vec::with_capacity(lens.len());
                for (((p, m), v), &n) in rp.into_iter().zip(rm).zip(rv).zip(&lens) {
                    params.push(take(p, n)?);
                    let mut a = Adam::new(0, adam_cfg);
                    a.m = take(m, n)?;
                    a.v = take(v, n)?;
                    a.step = step;
                    adams.push(a);
                }
                let model = Model {
                    cfg,
                    names,
                    params,
                    near,
                };
                Ok((model, adams, meta))
            }),
        }))
    }

    /// Block until every submitted step has run.
    pub fn finish(&mut self) {
        if !self.in_flight.is_empty() {
            let t = Instant::now();
            self.model.gpu().wait_idle();
            self.wait_s += t.elapsed().as_secs_f64();
        }
        self.in_flight.clear();
    }

    /// The model and Adam state now (blocking read-back, one submit, each buffer copied once
    /// from its staging buffer).
    pub fn download(&mut self) -> Result<(Model, Vec<Adam>), NerfError> {
        self.finish();
        let g = self.model.gpu().clone();
        let mut rec = g.recorder("download");
        let read =
            |rec: &mut Recorder, b: &GpuBuffer, n: usize| rec.read_back(b, 0, 4 * n.max(1) as u64);
        let rbs: Vec<_> = (0..self.model.params.len())
            .map(|i| {
                let n = self.host_lens[i];
                (
                    read(&mut rec, &self.model.params[i], n),
                    read(&mut rec, &self.m1[i], n),
                    read(&mut rec, &self.m2[i], n),
                )
            })
            .collect();
        rec.submit();
        let mut model = Model {
            cfg: self.model.cfg.clone(),
            names: self.model.names.clone(),
            params: Vec::new(),
            near: self.model.near,
        };
        let mut adams = Vec::new();
        for ((rp, rm, rv), &n) in rbs.into_iter().zip(&self.host_lens) {
            let take = |r: Readback| -> Result<Vec<f32>, NerfError> {
                let mut v = vec![0.0f32; n];
                r.wait_into(&g, &mut v).map_err(gpu_err)?;
                Ok(v)
            };
            model.params.push(take(rp)?);
            let mut a = Adam::new(0, self.adam_cfg);
            a.m = take(rm)?;
            a.v = take(rv)?;
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
        let mut tr = GpuTrainer::new(gpu, &model, &adams, cfg)?;
        // The training photos go to the device once and every batch is drawn there; when they do
        // not fit, each step's batch is built on the host and uploaded (the same draws).
        if let Err(e) = tr.sample_on_device(ds, cfg.seed) {
            tracing::warn!("train: batches are built on the CPU and uploaded every step: {e}");
        }
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

    fn samples_on_device(&self) -> bool {
        self.tr.sampler.is_some()
    }

    fn step(&mut self, plan: StepPlan) -> Result<(), NerfError> {
        let checkpoint = plan.checkpoint.map(|mut m| {
            m.adam = Some((ADAM, self.tr.adam_step + 1));
            m
        });
        let batch = plan.batch.as_ref().map(
            |StepBatch {
                 rays,
                 target,
                 idx,
                 jitter,
             }| (rays, target.as_slice(), idx.as_slice(), jitter.as_slice()),
        );
        self.tr.step_and_read(
            batch,
            plan.step,
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

    fn take_checkpoint(&mut self, wait: bool) -> Result<Option<CheckpointJob>, NerfError> {
        self.tr.take_checkpoint(wait)
    }

    fn device_wait_s(&self) -> f64 {
        self.tr.wait_s
    }

    fn counters(&self) -> Option<GpuCounters> {
        Some(self.tr.gpu().counters())
    }

    fn finish(mut self) -> Result<(Model, Vec<Adam>), NerfError> {
        self.tr.download()
    }
}
