//! The training loop: random ray batches, Adam with warm-up and log-linear decay, gradient clipping,
//! checkpoints in the work folder (resumed on the next call), metrics, evaluation and outputs.

use crate::NerfError;
use crate::checkpoint::{self, CheckpointMeta};
use crate::data::Dataset;
use crate::kernels::{Adam, AdamConfig, clip_scale, global_grad_norm};
use crate::metrics;
use crate::model::{LossWeights, Losses, Model, ModelConfig, SampleMode};
use crate::render::psnr;
use crate::renderer::render_photo_rays;
use flythrough_core::config::TrainConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::io::Write;
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

#[cfg(feature = "test-hooks")]
thread_local! {
    /// Test hook (feature `test-hooks`, tests only) that simulates a kill: when non-zero, training on
    /// this thread stops with [`NerfError::Interrupted`] right after writing the first checkpoint at
    /// or after this step.
    pub static INTERRUPT_AFTER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
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
}

fn ckpt_path(work: &Path) -> std::path::PathBuf {
    work.join("checkpoints").join("last.safetensors")
}

/// Train (or resume) a model on `ds`. Checkpoints go to `work/checkpoints/last.safetensors` every
/// `checkpoint_every` steps and at the end; metrics to `work/metrics.jsonl`.
pub fn train(cfg: &TrainConfig, ds: &Dataset, work: &Path) -> Result<Trained, NerfError> {
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
    let (mut model, mut adams) = match ck.is_file().then(|| checkpoint::load(&ck)) {
        Some(Ok((m, Some(a), old))) if old.model == mcfg && old.train_names == train_names => {
            tracing::info!("train: resuming from step {} ({})", old.step, ck.display());
            resumed_from = Some(old.step);
            meta.step = old.step;
            meta.elapsed_s = old.elapsed_s;
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
    let mut mfile = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .map_err(|e| NerfError::Io(metrics_path.clone(), e.to_string()))?;
    let lw = LossWeights {
        distortion: cfg.distortion_weight as f32,
        interlevel: cfg.interlevel_weight as f32,
    };
    let gd = mcfg.glo_dim;
    let gidx = model.idx_glo();
    let samples_per_ray: usize = mcfg.prop_samples.iter().sum::<usize>() + mcfg.nerf_samples;
    let pb = flythrough_core::progress::bar(cfg.steps as u64, "train: steps");
    pb.set_position(meta.step as u64);
    let t_call = Instant::now();
    let elapsed0 = meta.elapsed_s;
    let start_step = meta.step;
    let mut acc = (Losses::default(), 0usize);
    let mut metrics = Vec::new();
    let mut grads = model.zeros_like();
    let mut fwd = crate::model::Forward::default();
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
        let mut rng =
            ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step as u64);
        let (rays, target, idx) =
            ds.sample_batch(cfg.batch_rays, &mut rng, &model.params[gidx], gd);
        let nlev = mcfg.prop_samples.len() + 1;
        let jitter: Vec<Vec<f32>> = (0..nlev)
            .map(|_| (0..rays.len()).map(|_| rng.random::<f32>()).collect())
            .collect();
        let mode = SampleMode {
            jitter: Some(&jitter),
            train_frac: progress as f32,
        };
        model.forward_into(&rays, &mode, true, &mut fwd);
        let mut d_lat = vec![0.0f32; rays.len() * gd];
        let losses = model.backward(&rays, &fwd, &target, &lw, &mut grads, Some(&mut d_lat));
        if !losses.data.is_finite() {
            return Err(NerfError::Diverged(step));
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
        for ((p, g), a) in model
            .params
            .iter_mut()
            .zip(grads.iter_mut())
            .zip(adams.iter_mut())
        {
            if !p.is_empty() {
                sq += a.update_and_zero(p, g, lr as f32, scale);
            }
        }
        let grad_norm = clipped_from.unwrap_or(sq.sqrt());
        meta.step += 1;
        acc.0.data += losses.data;
        acc.0.distortion += losses.distortion;
        acc.0.interlevel += losses.interlevel;
        acc.0.mse += losses.mse;
        acc.1 += 1;
        pb.set_position(meta.step as u64);
        if meta.step.is_multiple_of(cfg.metrics_every) || meta.step == cfg.steps {
            let k = acc.1.max(1) as f64;
            let el = elapsed0 + t_call.elapsed().as_secs_f64();
            let secs = t_call.elapsed().as_secs_f64().max(1e-9);
            let rays_done = (meta.step - start_step) as f64 * cfg.batch_rays as f64;
            let l = MetricLine {
                step: meta.step,
                elapsed_s: el,
                lr,
                loss: (acc.0.data
                    + lw.distortion as f64 * acc.0.distortion
                    + lw.interlevel as f64 * acc.0.interlevel)
                    / k,
                data: acc.0.data / k,
                distortion: acc.0.distortion / k,
                interlevel: acc.0.interlevel / k,
                psnr: psnr(acc.0.mse / k),
                grad_norm,
                samples_per_s: rays_done * samples_per_ray as f64 / secs,
                rays_per_s: rays_done / secs,
            };
            pb.set_message(format!("train: loss {:.4} psnr {:.2}", l.loss, l.psnr));
            let _ = writeln!(mfile, "{}", serde_json::to_string(&l).unwrap_or_default());
            metrics.push(l);
            acc = (Losses::default(), 0);
        }
        if meta.step.is_multiple_of(cfg.checkpoint_every) && meta.step < cfg.steps {
            meta.elapsed_s = elapsed0 + t_call.elapsed().as_secs_f64();
            meta.adam = Some((ADAM, adams[0].step));
            checkpoint::save(&ck, &model, Some(&adams), &meta)?;
            #[cfg(feature = "test-hooks")]
            if (1..=meta.step).contains(&INTERRUPT_AFTER.with(|c| c.get())) {
                return Err(NerfError::Interrupted(meta.step));
            }
        }
    }
    pb.finish_and_clear();
    meta.elapsed_s = elapsed0 + t_call.elapsed().as_secs_f64();
    meta.adam = Some((ADAM, adams.first().map(|a| a.step).unwrap_or(0)));
    checkpoint::save(&ck, &model, Some(&adams), &meta)?;
    let secs = t_call.elapsed().as_secs_f64().max(1e-9);
    let rays_done = (meta.step - start_step) as f64 * cfg.batch_rays as f64;
    let steps_this_call = meta.step - start_step;
    Ok(Trained {
        model,
        meta,
        steps_this_call,
        resumed_from,
        samples_per_s: rays_done * samples_per_ray as f64 / secs,
        rays_per_s: rays_done / secs,
        metrics,
    })
}

/// Evaluation of one held-out photo.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PhotoEval {
    pub name: String,
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
    pub photos: Vec<PhotoEval>,
    pub mean_psnr: f64,
    pub mean_ssim: f64,
    pub render_rays_per_s: f64,
}

/// Evaluate the held-out photos. With GLO (glo_dim > 0) this is the NeRF-W protocol: the photo's
/// latent is optimised on rays of its left half (network fixed), and PSNR/SSIM are scored on the right
/// half; without GLO the whole photo is scored. The photo's own exposure value is always used.
/// Writes `<name>.png` renders into `render_dir` when given.
pub fn evaluate(
    model: &Model,
    meta: &CheckpointMeta,
    ds: &Dataset,
    eval_downscale: u32,
    glo_steps: usize,
    render_dir: Option<&Path>,
) -> EvalReport {
    let gd = model.cfg.glo_dim;
    let mut photos = Vec::new();
    let mut render_time = 0.0;
    let mut rays_rendered = 0usize;
    for &p in &ds.holdout {
        let ph = &ds.photos[p];
        let (w, h) = (
            (ph.img.width() / eval_downscale).max(1) as usize,
            (ph.img.height() / eval_downscale).max(1) as usize,
        );
        let cam = crate::data::scale_camera(&ph.cam, w as u32, h as u32);
        let gt_img = if eval_downscale > 1 {
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
        let ev = (ph.ev - meta.ev_mean) as f32;
        let mean = model.mean_latent();
        let latent = if gd > 0 && glo_steps > 0 {
            // Left-half rays, a fixed random subset.
            let mut rng = ChaCha8Rng::seed_from_u64(p as u64);
            let n = 4096.min(w / 2 * h);
            let mut rays = crate::model::Rays::default();
            let mut target = Vec::new();
            for _ in 0..n {
                let (x, y) = (rng.random_range(0..(w / 2).max(1)), rng.random_range(0..h));
                let (o, d, r) = crate::data::camera_ray(
                    &ds.norm,
                    &cam,
                    &ph.pose,
                    x as f64 + 0.5,
                    y as f64 + 0.5,
                );
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
        let t0 = Instant::now();
        let img = render_photo_rays(model, &ds.norm, &cam, &ph.pose, ev, &latent);
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
            psnr: psnr_v,
            ssim: ssim_v,
            psnr_full: full,
            mean_intensity_rendered: mi(&img),
            mean_intensity_photo: mi(&gt),
        });
    }
    let n = photos.len().max(1) as f64;
    EvalReport {
        protocol: if gd > 0 && glo_steps > 0 {
            format!(
                "NeRF-W: per held-out photo, its GLO latent is optimised ({glo_steps} Adam steps, network fixed) on 4096 rays of the left half, then PSNR/SSIM are computed on the right half; psnr_full scores the whole photo with that latent (optimistic: the left half was used to fit it). Exposure: the photo's own EV."
            )
        } else {
            "whole held-out photo, mean training latent (GLO disabled or glo_eval_steps = 0), the photo's own EV".to_string()
        },
        mean_psnr: photos.iter().map(|p| p.psnr).sum::<f64>() / n,
        mean_ssim: photos.iter().map(|p| p.ssim).sum::<f64>() / n,
        render_rays_per_s: rays_rendered as f64 / render_time.max(1e-9),
        photos,
    }
}
