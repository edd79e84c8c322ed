//! A batch of rays on the device: every per-ray and per-sample buffer for a fixed capacity, and the
//! forward (and, for training, backward) pass as a list of dispatches whose bind groups are built
//! once. Recording a pass is then a loop over that list into one [`Recorder`].
//!
//! Forward (model.rs `Model::forward_into`, kernel by kernel): for each level k (proposals, then
//! NeRF): `sample_level` -> `hash_fwd` (one dispatch per binding-sized range of levels) ->
//! `mlp_fwd` -> `weights`; then `ray_features` -> colour `mlp_fwd`. Inference ends with
//! `composite`; training with `nerf_loss` and the backward (model.rs `Model::backward`): colour MLP
//! (`mlp_bwd_data`, `mlp_bwd_weights`, `reduce_partials`), `glo_grad`, density MLP, `hash_bwd`, then
//! per proposal level `interlevel`, its MLP and grid; `loss_reduce` adds the step's losses to the
//! running metrics.

use super::kernels::*;
use super::model::{GpuModel, gpu_err};
use crate::NerfError;
use crate::model::{GEO_DIM, LossWeights};
use crate::stepfun;
use flythrough_gpu::{BindGroup, Gpu, GpuBuffer, Kernel, Recorder};
use std::sync::Arc;

/// How a dispatch is sized.
#[derive(Clone, Copy, Debug)]
pub enum Grid {
    /// 1-D over this many invocations.
    Threads(u64),
    /// Explicit workgroup counts.
    Groups([u32; 3]),
}

/// One recorded kernel launch.
pub struct Dispatch {
    pub kernel: Arc<Kernel>,
    pub bg: BindGroup,
    pub grid: Grid,
}

impl Dispatch {
    pub fn record(&self, rec: &mut Recorder) {
        match self.grid {
            Grid::Threads(n) => rec.dispatch_threads(&self.kernel, &self.bg, n),
            Grid::Groups(g) => rec.dispatch(&self.kernel, &self.bg, g),
        }
    }
}

/// Workgroups of the MLP kernels over `n` rows: one per tile, on a 2-D grid when needed.
pub fn mlp_groups(gpu: &Gpu, n: usize, tile: u32) -> [u32; 3] {
    let tiles = (n as u64).div_ceil(tile as u64).max(1);
    gpu.grid(tiles, 1)
}

/// Inference or training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Infer,
    Train,
}

/// Per-level buffers.
pub struct LevelBufs {
    pub n: usize,
    pub s: GpuBuffer,
    pub t: GpuBuffer,
    pub pos: GpuBuffer,
    pub fsig: GpuBuffer,
    pub enc: GpuBuffer,
    pub raw: GpuBuffer,
    pub sigma: GpuBuffer,
    pub w: GpuBuffer,
    /// Uniform of `sample_level` (rewritten when the annealing power changes).
    pub u_sample: GpuBuffer,
    pub sample: SampleParams,
    // training
    pub cache: Option<GpuBuffer>,
    pub d_raw: Option<GpuBuffer>,
    pub d_enc: Option<GpuBuffer>,
    pub dy: Option<GpuBuffer>,
}

/// Training-only buffers of a batch.
pub struct TrainBufs {
    pub jitter: GpuBuffer,
    pub target: GpuBuffer,
    pub ray_loss: GpuBuffer,
    pub il_loss: GpuBuffer,
    pub metrics: GpuBuffer,
    pub grads: Vec<GpuBuffer>,
    pub bwd: Vec<Dispatch>,
}

/// A batch of `cap` rays on the device.
pub struct Batch {
    pub cap: usize,
    pub mode: Mode,
    pub rays: GpuBuffer,
    pub latent_idx: GpuBuffer,
    /// The latent table the colour head reads: the model's GLO table when training, a one-row
    /// table ([`Batch::set_latent`]) when rendering.
    pub latent: GpuBuffer,
    pub levels: Vec<LevelBufs>,
    pub feat: GpuBuffer,
    pub logits: GpuBuffer,
    /// `[cap * 5]` rgb, depth, opacity (inference).
    pub out: GpuBuffer,
    pub fwd: Vec<Dispatch>,
    pub train: Option<TrainBufs>,
    /// Uniform of `composite` (pixel offset of the chunk) and its dispatch, built by
    /// [`Batch::composite_into`].
    pub u_comp: GpuBuffer,
}

fn storage(gpu: &Gpu, label: &str, len: usize) -> Result<GpuBuffer, NerfError> {
    if 4 * len as u64 > gpu.limits().max_storage_binding_bytes {
        return Err(NerfError::Gpu(format!(
            "{label} needs {} MiB, more than this GPU binds at once ({} MiB): lower [train] \
             batch_rays (or the samples per ray)",
            (4 * len as u64) >> 20,
            gpu.limits().max_storage_binding_bytes >> 20
        )));
    }
    gpu.storage_len(label, len).map_err(gpu_err)
}

fn uniform<T: bytemuck::Pod>(gpu: &Gpu, label: &str, v: &T) -> Result<GpuBuffer, NerfError> {
    gpu.uniform(label, v).map_err(gpu_err)
}

impl Batch {
    /// Allocate every buffer for `cap` rays and build the forward (and backward) dispatch lists.
    /// Inference rays carry no jitter; `near` is the model's near plane.
    pub fn new(m: &GpuModel, cap: usize, mode: Mode, lw: LossWeights) -> Result<Batch, NerfError> {
        let gpu = m.gpu().clone();
        let g = &*gpu;
        let k = &m.k;
        let cfg = &m.cfg;
        let train = mode == Mode::Train;
        let nprop = m.nprop();
        let nlev = nprop + 1;
        let cap = cap.max(1);
        let dummy = |label: &str| storage(g, label, 4);
        let rays = storage(g, "rays", cap * 8)?;
        let latent_idx = storage(g, "latent idx", cap)?;
        let gd = cfg.glo_dim;
        let latent = if train {
            m.params[m.idx_glo()].clone()
        } else {
            storage(g, "latent", gd.max(1))?
        };
        let jitter = if train {
            storage(g, "jitter", cap * nlev)?
        } else {
            dummy("no jitter")?
        };
        let mut fwd = Vec::new();
        let mut levels: Vec<LevelBufs> = Vec::new();
        let mut prod = 1usize;
        let k_sample = k.get(KernelId::SampleLevel).map_err(gpu_err)?;
        let k_hash = k.get(KernelId::HashFwd).map_err(gpu_err)?;
        let k_mlp = k.get(KernelId::MlpFwd).map_err(gpu_err)?;
        let k_weights = k.get(KernelId::Weights).map_err(gpu_err)?;
        for lk in 0..nlev {
            let n = if lk < nprop {
                cfg.prop_samples[lk]
            } else {
                cfg.nerf_samples
            };
            let pn = levels.last().map(|l| l.n).unwrap_or(0);
            let ns = cap * n;
            let grid = &m.grids[lk];
            let lf = grid.cfg.output_dim();
            let mcfg = if lk < nprop {
                cfg.prop_mlp(lk)
            } else {
                cfg.density_mlp()
            };
            let raw_w = mcfg.output_dim();
            let name = |s: &str| format!("level {lk} {s}");
            let s = storage(g, &name("s"), cap * (n + 1))?;
            let t = storage(g, &name("t"), cap * (n + 1))?;
            let pos = storage(g, &name("pos"), ns * 3)?;
            let fsig = storage(g, &name("fsig"), ns)?;
            let enc = storage(g, &name("enc"), ns * lf)?;
            let raw = storage(g, &name("raw"), ns * raw_w)?;
            let sigma = storage(g, &name("sigma"), ns)?;
            let w = storage(g, &name("w"), ns)?;
            let scratch = storage(g, &name("scratch"), cap * (6 * pn + 3))?;
            let sample = SampleParams {
                n_rays: cap as u32,
                n: n as u32,
                pn: pn as u32,
                jitter: train as u32,
                near: m.near,
                dil: stepfun::dilation(prod),
                anneal: 1.0,
                level: lk as u32,
                nlev: nlev as u32,
                _p: [0; 3],
            };
            prod *= n;
            let u_sample = uniform(g, &name("sample params"), &sample)?;
            let (ps, pw) = match levels.last() {
                Some(l) => (l.s.clone(), l.w.clone()),
                None => (dummy("no prev s")?, dummy("no prev w")?),
            };
            fwd.push(Dispatch {
                bg: g.bind(
                    &k_sample,
                    &[
                        (&u_sample).into(),
                        (&rays).into(),
                        (&jitter).into(),
                        (&ps).into(),
                        (&pw).into(),
                        (&scratch).into(),
                        (&s).into(),
                        (&t).into(),
                        (&pos).into(),
                        (&fsig).into(),
                    ],
                ),
                kernel: k_sample.clone(),
                grid: Grid::Threads(cap as u64),
            });
            let table = &m.params[grid.param];
            for &(l0, lc) in &grid.splits {
                let hp = HashParams {
                    n: ns as u32,
                    levels: lc,
                    level0: l0,
                    feats: grid.cfg.features_per_level as u32,
                    log2_t: grid.cfg.log2_table_size,
                    out_stride: lf as u32,
                    _p: [0; 2],
                };
                let u = uniform(g, &name("hash params"), &hp)?;
                let range = table.range(l0 as u64 * grid.level_bytes, lc as u64 * grid.level_bytes);
                fwd.push(Dispatch {
                    bg: g.bind(
                        &k_hash,
                        &[
                            (&u).into(),
                            (&grid.info).into(),
                            (&pos).into(),
                            (&fsig).into(),
                            range,
                            (&enc).into(),
                        ],
                    ),
                    kernel: k_hash.clone(),
                    grid: Grid::Threads(ns as u64 * lc as u64),
                });
            }
            let cache = if train && mcfg.hidden_width() > 0 {
                Some(storage(g, &name("mlp cache"), ns * mcfg.hidden_width())?)
            } else {
                None
            };
            let mp = MlpParams::new(&mcfg, ns, MlpIo::dense(&mcfg), train);
            let u_mlp = uniform(g, &name("mlp params"), &mp)?;
            let no_g = dummy("no group input")?;
            let cache_b = match &cache {
                Some(c) => c.clone(),
                None => dummy("no cache")?,
            };
            let mparam = &m.params[grid.param + 1];
            fwd.push(Dispatch {
                bg: g.bind(
                    &k_mlp,
                    &[
                        (&u_mlp).into(),
                        mparam.into(),
                        (&enc).into(),
                        (&no_g).into(),
                        (&raw).into(),
                        (&cache_b).into(),
                    ],
                ),
                kernel: k_mlp.clone(),
                grid: Grid::Groups(mlp_groups(g, ns, k.shape.tile)),
            });
            let wp = WeightsParams {
                n_rays: cap as u32,
                n: n as u32,
                raw_stride: raw_w as u32,
                _p: 0,
            };
            let u_w = uniform(g, &name("weights params"), &wp)?;
            fwd.push(Dispatch {
                bg: g.bind(
                    &k_weights,
                    &[
                        (&u_w).into(),
                        (&raw).into(),
                        (&t).into(),
                        (&sigma).into(),
                        (&w).into(),
                    ],
                ),
                kernel: k_weights.clone(),
                grid: Grid::Threads(cap as u64),
            });
            let (d_raw, d_enc, dy) = if train {
                (
                    Some(storage(g, &name("d raw"), ns * raw_w)?),
                    Some(storage(g, &name("d enc"), ns * lf)?),
                    Some(storage(g, &name("mlp dy"), ns * mp.dyw as usize)?),
                )
            } else {
                (None, None, None)
            };
            levels.push(LevelBufs {
                n,
                s,
                t,
                pos,
                fsig,
                enc,
                raw,
                sigma,
                w,
                u_sample,
                sample,
                cache,
                d_raw,
                d_enc,
                dy,
            });
        }
        // Colour head.
        let nl = levels.last().expect("NeRF level");
        let nn = nl.n;
        let ns = cap * nn;
        let rw = cfg.color_in() - GEO_DIM;
        let feat = storage(g, "ray features", cap * rw)?;
        let fp = FeatParams {
            n_rays: cap as u32,
            width: rw as u32,
            gd: gd as u32,
            exposure: cfg.exposure as u32,
        };
        let u_feat = uniform(g, "feature params", &fp)?;
        let k_feat = k.get(KernelId::RayFeatures).map_err(gpu_err)?;
        fwd.push(Dispatch {
            bg: g.bind(
                &k_feat,
                &[
                    (&u_feat).into(),
                    (&rays).into(),
                    (&latent_idx).into(),
                    (&latent).into(),
                    (&feat).into(),
                ],
            ),
            kernel: k_feat,
            grid: Grid::Threads(cap as u64),
        });
        let ccfg = cfg.color_mlp();
        let cio = MlpIo {
            a_stride: (1 + GEO_DIM) as u32,
            a_off: 1,
            d_local: GEO_DIM as u32,
            g_stride: rw as u32,
            g_rows: nn as u32,
            out_stride: 3,
            out_off: 0,
        };
        let cp = MlpParams::new(&ccfg, ns, cio, train);
        let u_cmlp = uniform(g, "colour mlp params", &cp)?;
        let logits = storage(g, "colour logits", ns * 3)?;
        let ccache = if train {
            storage(g, "colour cache", ns * ccfg.hidden_width())?
        } else {
            dummy("no colour cache")?
        };
        let cparam = &m.params[m.idx_grid() + 2];
        fwd.push(Dispatch {
            bg: g.bind(
                &k_mlp,
                &[
                    (&u_cmlp).into(),
                    cparam.into(),
                    (&nl.raw).into(),
                    (&feat).into(),
                    (&logits).into(),
                    (&ccache).into(),
                ],
            ),
            kernel: k_mlp.clone(),
            grid: Grid::Groups(mlp_groups(g, ns, k.shape.tile)),
        });
        let out = storage(g, "render out", cap * 5)?;
        let u_comp = uniform(
            g,
            "composite params",
            &CompParams {
                n_rays: cap as u32,
                n: nn as u32,
                ..Default::default()
            },
        )?;
        let train_bufs = if train {
            Some(Self::backward(
                m,
                cap,
                lw,
                &latent_idx,
                &jitter,
                &levels,
                &feat,
                &logits,
                &ccache,
                cp,
            )?)
        } else {
            None
        };
        Ok(Batch {
            cap,
            mode,
            rays,
            latent_idx,
            latent,
            levels,
            feat,
            logits,
            out,
            fwd,
            train: train_bufs,
            u_comp,
        })
    }

    /// The backward dispatches and training buffers (see the module doc for the order).
    #[allow(clippy::too_many_arguments)]
    fn backward(
        m: &GpuModel,
        cap: usize,
        lw: LossWeights,
        latent_idx: &GpuBuffer,
        jitter: &GpuBuffer,
        levels: &[LevelBufs],
        feat: &GpuBuffer,
        logits: &GpuBuffer,
        ccache: &GpuBuffer,
        cp: MlpParams,
    ) -> Result<TrainBufs, NerfError> {
        let gpu = m.gpu().clone();
        let g = &*gpu;
        let k = &m.k;
        let cfg = &m.cfg;
        let nprop = m.nprop();
        let nl = &levels[nprop];
        let nn = nl.n;
        let ns = cap * nn;
        let gd = cfg.glo_dim;
        let dummy = |label: &str| storage(g, label, 4);
        let target = storage(g, "target", cap * 3)?;
        let ray_loss = storage(g, "ray loss", cap * 4)?;
        let il_loss = storage(g, "interlevel loss", cap * nprop.max(1))?;
        let metrics = storage(g, "metrics", 8)?;
        let grads = m
            .params
            .iter()
            .zip(&m.names)
            .map(|(p, n)| storage(g, &format!("grad {n}"), p.len().max(1)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut bwd = Vec::new();
        let k_bd = k.get(KernelId::MlpBwdData).map_err(gpu_err)?;
        let k_bw = k.get(KernelId::MlpBwdWeights).map_err(gpu_err)?;
        let k_red = k.get(KernelId::ReducePartials).map_err(gpu_err)?;
        let k_hb = k.get(KernelId::HashBwd).map_err(gpu_err)?;
        // Partial sums of the MLP weight gradients: the largest G * P of the batch's MLPs.
        let mut mlps = vec![(cfg.color_mlp(), ns), (cfg.density_mlp(), ns)];
        for (lk, l) in levels.iter().enumerate().take(nprop) {
            mlps.push((cfg.prop_mlp(lk), cap * l.n));
        }
        let part_len = mlps
            .iter()
            .map(|(c, n)| row_groups(*n) as usize * c.num_params())
            .max()
            .unwrap_or(1);
        let partial = storage(g, "mlp partials", part_len)?;
        // The NeRF level's losses.
        let gw = storage(g, "loss d w", ns)?;
        let g_logits = storage(g, "d logits", ns * 3)?;
        let d_raw_n = nl.d_raw.clone().expect("train buffers");
        let lp = LossParams {
            n_rays: cap as u32,
            n: nn as u32,
            raw_stride: (1 + GEO_DIM) as u32,
            _p0: 0,
            inv_r: 1.0 / cap as f32,
            dist_scale: lw.distortion / cap as f32,
            _p1: [0.0; 2],
        };
        let u_loss = uniform(g, "loss params", &lp)?;
        let k_loss = k.get(KernelId::NerfLoss).map_err(gpu_err)?;
        bwd.push(Dispatch {
            bg: g.bind(
                &k_loss,
                &[
                    (&u_loss).into(),
                    (&nl.w).into(),
                    (&nl.s).into(),
                    (&nl.t).into(),
                    (&nl.sigma).into(),
                    logits.into(),
                    (&target).into(),
                    (&gw).into(),
                    (&g_logits).into(),
                    (&d_raw_n).into(),
                    (&ray_loss).into(),
                ],
            ),
            kernel: k_loss,
            grid: Grid::Threads(cap as u64),
        });
        let kb = MlpBwdKernels {
            data: k_bd,
            weights: k_bw,
            reduce: k_red,
            partial: partial.clone(),
            tile: k.shape.tile,
            wg: k.shape.wg,
        };
        // Colour head: d logits -> d geometry features (columns 1.. of d_raw) and the latents'
        // columns of the group input.
        let gidx = m.idx_grid();
        let cdy = storage(g, "colour dy", ns * cp.dyw as usize)?;
        let dxg = storage(g, "d latent rows", ns * gd.max(1))?;
        let cpb = cp.with_dx(
            (1 + GEO_DIM) as u32,
            1,
            (gd > 0).then_some((
                crate::encoding::DIR_DIM as u32,
                (crate::encoding::DIR_DIM + gd) as u32,
            )),
        );
        kb.push(
            g,
            &mut bwd,
            cpb,
            [
                &m.params[gidx + 2],
                &nl.raw,
                feat,
                ccache,
                &g_logits,
                &cdy,
                &d_raw_n,
                &dxg,
                &grads[gidx + 2],
            ],
        )?;
        if gd > 0 {
            let k_glo = k.get(KernelId::GloGrad).map_err(gpu_err)?;
            let u = uniform(
                g,
                "glo params",
                &GloParams {
                    n_rays: cap as u32,
                    n: nn as u32,
                    gd: gd as u32,
                    _p: 0,
                },
            )?;
            bwd.push(Dispatch {
                bg: g.bind(
                    &k_glo,
                    &[
                        (&u).into(),
                        latent_idx.into(),
                        (&dxg).into(),
                        (&grads[m.idx_glo()]).into(),
                    ],
                ),
                kernel: k_glo,
                grid: Grid::Threads(cap as u64),
            });
        }
        // Density MLP and the NeRF grid; then the proposal levels.
        for lk in (0..=nprop).rev() {
            let l = &levels[lk];
            let grid = &m.grids[lk];
            let mcfg = if lk < nprop {
                cfg.prop_mlp(lk)
            } else {
                cfg.density_mlp()
            };
            let n_rows = cap * l.n;
            let d_raw = l.d_raw.clone().expect("train buffers");
            if lk < nprop {
                let g_env = storage(g, "interlevel d w", n_rows)?;
                let ip = IlParams {
                    n_rays: cap as u32,
                    n: nn as u32,
                    m: l.n as u32,
                    loss_off: (lk * cap) as u32,
                    scale: lw.interlevel / (cap * nn) as f32,
                    _p1: [0.0; 3],
                };
                let u = uniform(g, "interlevel params", &ip)?;
                let k_il = k.get(KernelId::Interlevel).map_err(gpu_err)?;
                bwd.push(Dispatch {
                    bg: g.bind(
                        &k_il,
                        &[
                            (&u).into(),
                            (&nl.s).into(),
                            (&nl.w).into(),
                            (&l.s).into(),
                            (&l.w).into(),
                            (&l.sigma).into(),
                            (&l.t).into(),
                            (&g_env).into(),
                            (&d_raw).into(),
                            (&il_loss).into(),
                        ],
                    ),
                    kernel: k_il,
                    grid: Grid::Threads(cap as u64),
                });
            }
            let lf = grid.cfg.output_dim();
            let mp = MlpParams::new(&mcfg, n_rows, MlpIo::dense(&mcfg), true)
                .with_dx(lf as u32, 0, None);
            let d_enc = l.d_enc.clone().expect("train buffers");
            let cache = match &l.cache {
                Some(c) => c.clone(),
                None => dummy("no cache")?,
            };
            let no_g = dummy("no group")?;
            let no_dxg = dummy("no dxg")?;
            kb.push(
                g,
                &mut bwd,
                mp,
                [
                    &m.params[grid.param + 1],
                    &l.enc,
                    &no_g,
                    &cache,
                    &d_raw,
                    l.dy.as_ref().expect("train buffers"),
                    &d_enc,
                    &no_dxg,
                    &grads[grid.param + 1],
                ],
            )?;
            for &(l0, lc) in &grid.splits {
                let hp = HashParams {
                    n: n_rows as u32,
                    levels: lc,
                    level0: l0,
                    feats: grid.cfg.features_per_level as u32,
                    log2_t: grid.cfg.log2_table_size,
                    out_stride: lf as u32,
                    _p: [0; 2],
                };
                let u = uniform(g, "hash bwd params", &hp)?;
                let range = grads[grid.param]
                    .range(l0 as u64 * grid.level_bytes, lc as u64 * grid.level_bytes);
                bwd.push(Dispatch {
                    bg: g.bind(
                        &k_hb,
                        &[
                            (&u).into(),
                            (&grid.info).into(),
                            (&l.pos).into(),
                            (&l.fsig).into(),
                            (&d_enc).into(),
                            range,
                        ],
                    ),
                    kernel: k_hb.clone(),
                    grid: Grid::Threads(n_rows as u64 * lc as u64),
                });
            }
        }
        // The step's losses into the running metrics.
        let rp = RedParams {
            n_rays: cap as u32,
            nprop: nprop as u32,
            _p0: [0; 2],
            inv_3r: 1.0 / (3 * cap) as f32,
            inv_r: 1.0 / cap as f32,
            inv_rn: 1.0 / (cap * nn) as f32,
            _p1: 0.0,
        };
        let u = uniform(g, "loss reduce params", &rp)?;
        let k_lr = k.get(KernelId::LossReduce).map_err(gpu_err)?;
        bwd.push(Dispatch {
            bg: g.bind(
                &k_lr,
                &[
                    (&u).into(),
                    (&ray_loss).into(),
                    (&il_loss).into(),
                    (&metrics).into(),
                ],
            ),
            kernel: k_lr,
            grid: Grid::Groups([1, 1, 1]),
        });
        Ok(TrainBufs {
            jitter: jitter.clone(),
            target,
            ray_loss,
            il_loss,
            metrics,
            grads,
            bwd,
        })
    }

    /// Rewrite the annealing power of the resampled levels (`stepfun::anneal_power` of the training
    /// progress; 1 at render time).
    pub fn set_anneal(&mut self, gpu: &Gpu, anneal: f32) {
        for l in self.levels.iter_mut().skip(1) {
            if l.sample.anneal != anneal {
                l.sample.anneal = anneal;
                gpu.write(&l.u_sample, 0, std::slice::from_ref(&l.sample));
            }
        }
    }

    /// Upload `n <= cap` rays (norm frame, unit directions): `[o, d, radius, ev]` each; the rest of
    /// the capacity keeps a harmless ray along +z.
    pub fn set_rays(&self, gpu: &Gpu, rays: &[[f32; 8]]) {
        let mut v: Vec<[f32; 8]> = rays.to_vec();
        v.resize(self.cap, [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1e-3, 0.0]);
        gpu.write(&self.rays, 0, &v);
    }

    /// The one latent every ray uses (inference).
    pub fn set_latent(&self, gpu: &Gpu, latent: &[f32]) {
        gpu.write(&self.latent, 0, latent);
        gpu.write(&self.latent_idx, 0, &vec![0u32; self.cap]);
    }

    /// Record the forward pass.
    pub fn record_forward(&self, rec: &mut Recorder) {
        for d in &self.fwd {
            d.record(rec);
        }
    }

    /// Record the backward pass (training batches).
    pub fn record_backward(&self, rec: &mut Recorder) {
        if let Some(t) = &self.train {
            for d in &t.bwd {
                d.record(rec);
            }
        }
    }

    /// The `composite` dispatch writing `out` and, when packing, the pixels of `px` (its
    /// parameters, [`Batch::u_comp`], are set per chunk with [`Batch::set_composite`]).
    pub fn composite(&self, m: &GpuModel, px: &GpuBuffer) -> Result<Dispatch, NerfError> {
        let g = m.gpu();
        let k = m.k.get(KernelId::Composite).map_err(gpu_err)?;
        let nl = self.levels.last().expect("NeRF level");
        Ok(Dispatch {
            bg: g.bind(
                &k,
                &[
                    (&self.u_comp).into(),
                    (&nl.w).into(),
                    (&nl.t).into(),
                    (&self.logits).into(),
                    (&self.out).into(),
                    px.into(),
                ],
            ),
            kernel: k,
            grid: Grid::Threads(self.cap as u64),
        })
    }

    /// Parameters of the next `composite`: pixel offset of the chunk, whether to pack into the
    /// frame, and the frame's pixel count.
    pub fn set_composite(&self, gpu: &Gpu, pix0: u32, pack: bool, npix: u32) {
        let nl = self.levels.last().expect("NeRF level");
        let p = CompParams {
            n_rays: self.cap as u32,
            n: nl.n as u32,
            pix0,
            pack: pack as u32,
            npix,
            _p: [0; 3],
        };
        gpu.write(&self.u_comp, 0, std::slice::from_ref(&p));
    }
}

/// The three kernels of an MLP backward and the shared partial-sum buffer.
struct MlpBwdKernels {
    data: Arc<Kernel>,
    weights: Arc<Kernel>,
    reduce: Arc<Kernel>,
    partial: GpuBuffer,
    tile: u32,
    wg: u32,
}

impl MlpBwdKernels {
    /// Append an MLP's backward: `mlp_bwd_data` (dY of every layer, d_x), `mlp_bwd_weights`
    /// (per-row-group partial sums), `reduce_partials` (fixed order, added to `grad`). `b` =
    /// params, per-row input, group input, hidden cache, d_out, dy, dx, dxg, grad.
    fn push(
        &self,
        g: &Gpu,
        out: &mut Vec<Dispatch>,
        p: MlpParams,
        b: [&GpuBuffer; 9],
    ) -> Result<(), NerfError> {
        let [params, a, gin, cache, d_out, dy, dx, dxg, grad] = b;
        let u = uniform(g, "mlp bwd params", &p)?;
        out.push(Dispatch {
            bg: g.bind(
                &self.data,
                &[
                    (&u).into(),
                    params.into(),
                    cache.into(),
                    d_out.into(),
                    dy.into(),
                    dx.into(),
                    dxg.into(),
                ],
            ),
            kernel: self.data.clone(),
            grid: Grid::Groups(mlp_groups(g, p.n as usize, self.tile)),
        });
        out.push(Dispatch {
            bg: g.bind(
                &self.weights,
                &[
                    (&u).into(),
                    a.into(),
                    gin.into(),
                    cache.into(),
                    dy.into(),
                    (&self.partial).into(),
                ],
            ),
            kernel: self.weights.clone(),
            grid: Grid::Groups([p.nparams.div_ceil(4 * self.wg), p.groups, 1]),
        });
        let ur = uniform(
            g,
            "reduce params",
            &ReduceParams {
                nparams: p.nparams,
                groups: p.groups,
                _p: [0; 2],
            },
        )?;
        out.push(Dispatch {
            bg: g.bind(
                &self.reduce,
                &[(&ur).into(), (&self.partial).into(), grad.into()],
            ),
            kernel: self.reduce.clone(),
            grid: Grid::Threads(p.nparams as u64),
        });
        Ok(())
    }
}
