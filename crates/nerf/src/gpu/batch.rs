//! A batch of rays on the device: every per-ray and per-sample buffer for a fixed capacity, and the
//! forward (and, for training, backward) pass as a list of dispatches whose bind groups are built
//! once. Recording a pass is then a loop over that list into one [`Recorder`].
//!
//! Forward (model.rs `Model::forward_into`, kernel by kernel): for each level k (proposals, then
//! NeRF): `sample_level` -> `hash_fwd` (one dispatch per binding-sized range of levels) ->
//! `mlp_fwd` -> `weights`; then `ray_features` -> colour `mlp_fwd` twice (the first layer's
//! per-ray part over the rays, then the samples from it). Inference ends with
//! `composite`; training with `nerf_loss` and the backward (model.rs `Model::backward`): colour MLP
//! (`mlp_bwd_data`, `mlp_bwd_weights`, `reduce_partials`), `glo_grad`, density MLP, `hash_bwd`, then
//! per proposal level `interlevel`, its MLP and grid; `loss_reduce` adds the step's losses to the
//! running metrics.

use super::kernels::*;
use super::model::{GpuModel, gpu_err};
use crate::NerfError;
use crate::model::{GEO_DIM, LossWeights};
use crate::stepfun;
use flythrough_gpu::{Gpu, GpuBuffer, Recorder};

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
    /// The MLP's transposed weights (written by the forward for the backward; a dummy when not
    /// training).
    pub wt: GpuBuffer,
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
            fwd.push(
                launch::SampleLevel {
                    p: &u_sample,
                    rays: &rays,
                    jit: &jitter,
                    prev_s: &ps,
                    prev_w: &pw,
                    sc: &scratch,
                    s_out: &s,
                    t_out: &t,
                    pos: &pos,
                    fsig: &fsig,
                }
                .dispatch(k, Grid::Groups(ray_groups(g, cap)))
                .map_err(gpu_err)?,
            );
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
                fwd.push(
                    launch::HashFwd {
                        p: &u,
                        level_info: &grid.info,
                        pos: &pos,
                        fsig: &fsig,
                        table: table
                            .range(l0 as u64 * grid.level_bytes, lc as u64 * grid.level_bytes),
                        out: &enc,
                    }
                    .dispatch(k, Grid::Threads(ns as u64 * lc as u64))
                    .map_err(gpu_err)?,
                );
            }
            let mp = MlpParams::new(&mcfg, ns, MlpIo::dense(&mcfg), train);
            let cache = if train && mp.hw > 0 {
                Some(storage(
                    g,
                    &name("mlp cache"),
                    k.act.words(ns * mp.hw as usize),
                )?)
            } else {
                None
            };
            let u_mlp = uniform(g, &name("mlp params"), &mp)?;
            let no_g = dummy("no group input")?;
            let cache_b = match &cache {
                Some(c) => c.clone(),
                None => dummy("no cache")?,
            };
            let wt = if train {
                storage(g, &name("mlp wt"), transposed_weights_len(&mcfg))?
            } else {
                dummy("no wt")?
            };
            let mparam = &m.params[grid.param + 1];
            fwd.push(
                launch::MlpFwd {
                    p: &u_mlp,
                    params: mparam,
                    a: &enc,
                    g: &no_g,
                    out: &raw,
                    cache: &cache_b,
                    wt: &wt,
                    gpre: &no_g,
                }
                .dispatch(k, Grid::Groups(mlp_groups(g, ns, k.shape.tile)))
                .map_err(gpu_err)?,
            );
            let wp = WeightsParams {
                n_rays: cap as u32,
                n: n as u32,
                raw_stride: raw_w as u32,
                _p: 0,
            };
            let u_w = uniform(g, &name("weights params"), &wp)?;
            fwd.push(
                launch::Weights {
                    p: &u_w,
                    raw: &raw,
                    t: &t,
                    sigma: &sigma,
                    w: &w,
                }
                .dispatch(k, Grid::Groups(ray_groups(g, cap)))
                .map_err(gpu_err)?,
            );
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
                wt,
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
        fwd.push(
            launch::RayFeatures {
                p: &u_feat,
                rays: &rays,
                latent_idx: &latent_idx,
                glo: &latent,
                feat: &feat,
            }
            .dispatch(k, Grid::Threads(cap as u64))
            .map_err(gpu_err)?,
        );
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
        // The first layer's per-ray part (direction, latent and exposure encodings: 68 of its 83
        // inputs at the defaults) once per ray, then the per-sample forward from it.
        let pre = cp.group_pre(cap);
        let u_pre = uniform(g, "colour pre params", &pre)?;
        let gpre = storage(g, "colour first layer per ray", cap * ccfg.sizes[1])?;
        let cparam = &m.params[m.idx_grid() + 2];
        fwd.push(
            launch::MlpFwd {
                p: &u_pre,
                params: cparam,
                a: &feat,
                g: &feat,
                out: &gpre,
                cache: &dummy("no pre cache")?,
                wt: &dummy("no pre wt")?,
                gpre: &dummy("no pre gpre")?,
            }
            .dispatch(k, Grid::Groups(mlp_groups(g, cap, k.shape.tile)))
            .map_err(gpu_err)?,
        );
        let u_cmlp = uniform(g, "colour mlp params", &cp.with_group_pre())?;
        let logits = storage(g, "colour logits", ns * 3)?;
        let (ccache, cwt) = if train {
            (
                storage(g, "colour cache", k.act.words(ns * cp.hw as usize))?,
                storage(g, "colour wt", transposed_weights_len(&ccfg))?,
            )
        } else {
            (dummy("no colour cache")?, dummy("no colour wt")?)
        };
        fwd.push(
            launch::MlpFwd {
                p: &u_cmlp,
                params: cparam,
                a: &nl.raw,
                g: &feat,
                out: &logits,
                cache: &ccache,
                wt: &cwt,
                gpre: &gpre,
            }
            .dispatch(k, Grid::Groups(mlp_groups(g, ns, k.shape.tile)))
            .map_err(gpu_err)?,
        );
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
                &cwt,
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
        cwt: &GpuBuffer,
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
        // Partial sums of the MLP weight gradients: the largest G * P of the batch's MLPs.
        let mut mlps = vec![(cfg.color_mlp(), ns), (cfg.density_mlp(), ns)];
        for (lk, l) in levels.iter().enumerate().take(nprop) {
            mlps.push((cfg.prop_mlp(lk), cap * l.n));
        }
        let part_len = mlps
            .iter()
            .map(|(c, n)| row_groups(*n, c.num_params()) as usize * c.num_params())
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
        bwd.push(
            launch::NerfLoss {
                p: &u_loss,
                w: &nl.w,
                s: &nl.s,
                t: &nl.t,
                sigma: &nl.sigma,
                logits,
                tgt: &target,
                gw: &gw,
                g_logits: &g_logits,
                d_raw: &d_raw_n,
                ray_loss: &ray_loss,
            }
            .dispatch(k, Grid::Groups(ray_groups(g, cap)))
            .map_err(gpu_err)?,
        );
        let kb = MlpBwd {
            k,
            partial: &partial,
        };
        // Colour head: d logits -> d geometry features (columns 1.. of d_raw) and the latents'
        // columns of the group input.
        let gidx = m.idx_grid();
        let cdy = storage(g, "colour dy", ns * cp.dyw as usize)?;
        // The latents' gradient is glo_grad's, from dY_0 summed per ray: no per-sample columns.
        let dxg = dummy("no colour dxg")?;
        let cpb = cp.with_dx((1 + GEO_DIM) as u32, 1, None);
        kb.push(
            &mut bwd,
            cpb,
            MlpBwdBufs {
                wt: cwt,
                a: &nl.raw,
                g: feat,
                cache: ccache,
                d_out: &g_logits,
                dy: &cdy,
                dx: &d_raw_n,
                dxg: &dxg,
                grad: &grads[gidx + 2],
            },
        )?;
        if gd > 0 {
            let ccfg = cfg.color_mlp();
            let d1 = ccfg.sizes[1];
            let u = uniform(
                g,
                "glo params",
                &GloParams {
                    n_rays: cap as u32,
                    n: nn as u32,
                    gd: gd as u32,
                    dyw: cp.dyw,
                    d1: d1 as u32,
                    w_lat: (ccfg.layer_offsets()[0].weight
                        + (GEO_DIM + crate::encoding::DIR_DIM) * d1)
                        as u32,
                    _p: [0; 2],
                },
            )?;
            bwd.push(
                launch::GloGrad {
                    p: &u,
                    latent_idx,
                    dy: &cdy,
                    params: &m.params[gidx + 2],
                    grad: &grads[m.idx_glo()],
                }
                .dispatch(k, Grid::Groups(ray_groups(g, cap)))
                .map_err(gpu_err)?,
            );
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
                bwd.push(
                    launch::Interlevel {
                        p: &u,
                        s_nerf: &nl.s,
                        w_nerf: &nl.w,
                        s_env: &l.s,
                        w_env: &l.w,
                        sigma: &l.sigma,
                        t_env: &l.t,
                        g_env: &g_env,
                        d_raw: &d_raw,
                        ray_loss: &il_loss,
                    }
                    .dispatch(k, Grid::Groups(ray_groups(g, cap)))
                    .map_err(gpu_err)?,
                );
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
                &mut bwd,
                mp,
                MlpBwdBufs {
                    wt: &l.wt,
                    a: &l.enc,
                    g: &no_g,
                    cache: &cache,
                    d_out: &d_raw,
                    dy: l.dy.as_ref().expect("train buffers"),
                    dx: &d_enc,
                    dxg: &no_dxg,
                    grad: &grads[grid.param + 1],
                },
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
                bwd.push(
                    launch::HashBwd {
                        p: &u,
                        level_info: &grid.info,
                        pos: &l.pos,
                        fsig: &l.fsig,
                        d_out: &d_enc,
                        grad: grads[grid.param]
                            .range(l0 as u64 * grid.level_bytes, lc as u64 * grid.level_bytes),
                    }
                    .dispatch(k, Grid::Threads(n_rows as u64 * lc as u64))
                    .map_err(gpu_err)?,
                );
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
        bwd.push(
            launch::LossReduce {
                p: &u,
                ray_loss: &ray_loss,
                il_loss: &il_loss,
                metrics: &metrics,
            }
            .dispatch(k, Grid::Groups([1, 1, 1]))
            .map_err(gpu_err)?,
        );
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
        let nl = self.levels.last().expect("NeRF level");
        launch::Composite {
            p: &self.u_comp,
            w: &nl.w,
            t: &nl.t,
            logits: &self.logits,
            out: &self.out,
            px,
        }
        .dispatch(&m.k, Grid::Groups(ray_groups(&m.k.gpu, self.cap)))
        .map_err(gpu_err)
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

/// The MLP backward's kernels and the partial-sum buffer its MLPs share.
struct MlpBwd<'a> {
    k: &'a Kernels,
    partial: &'a GpuBuffer,
}

/// The buffers of one MLP's backward.
struct MlpBwdBufs<'a> {
    /// The transposed weights the forward wrote.
    wt: &'a GpuBuffer,
    /// Per-row and group input of the forward.
    a: &'a GpuBuffer,
    g: &'a GpuBuffer,
    /// Hidden activations of the forward.
    cache: &'a GpuBuffer,
    d_out: &'a GpuBuffer,
    dy: &'a GpuBuffer,
    /// Gradients of the per-row and group input.
    dx: &'a GpuBuffer,
    dxg: &'a GpuBuffer,
    grad: &'a GpuBuffer,
}

impl MlpBwd<'_> {
    /// Append an MLP's backward: `mlp_bwd_data` (dY of every layer, d_x), `mlp_bwd_weights`
    /// (per-row-group partial sums), `reduce_partials` (fixed order, added to `grad`).
    fn push(&self, out: &mut Vec<Dispatch>, p: MlpParams, b: MlpBwdBufs) -> Result<(), NerfError> {
        let k = self.k;
        let g = &*k.gpu;
        let u = uniform(g, "mlp bwd params", &p)?;
        out.push(
            launch::MlpBwdData {
                p: &u,
                wt: b.wt,
                cache: b.cache,
                d_out: b.d_out,
                dy: b.dy,
                dx: b.dx,
                dxg: b.dxg,
            }
            .dispatch(k, Grid::Groups(mlp_groups(g, p.n as usize, k.shape.tile)))
            .map_err(gpu_err)?,
        );
        out.push(
            launch::MlpBwdWeights {
                p: &u,
                a: b.a,
                g: b.g,
                cache: b.cache,
                dy: b.dy,
                partial: self.partial,
            }
            .dispatch(k, bwd_weights_grid(&p, k.shape.wg))
            .map_err(gpu_err)?,
        );
        let ur = uniform(
            g,
            "reduce params",
            &ReduceParams {
                nparams: p.nparams,
                groups: p.groups,
                _p: [0; 2],
            },
        )?;
        out.push(
            launch::ReducePartials {
                p: &ur,
                partial: self.partial,
                grad: b.grad,
            }
            .dispatch(k, reduce_grid(p.nparams))
            .map_err(gpu_err)?,
        );
        Ok(())
    }
}
