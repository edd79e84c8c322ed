//! The hash-grid model's loss as a **candle graph**: the kernels' custom ops (hash encoding, fused
//! MLP) and this crate's ([`crate::candle::ops`]: volume rendering + distortion, interlevel loss) wired by
//! plain candle ops (activations, concatenation, Charbonnier, means), differentiated by candle's
//! autograd. It is the reference the fast direct-call path ([`crate::model::Model::backward`]) is
//! tested against: same samples, same loss, same gradients.
//!
//! Training uses the direct path: it skips candle's tensor copies around every op and the
//! `GradStore` pass over the 64 MB grid gradient (measured in `crates/nerf/README.md`).

use super::kernel_ops::{hash_encode, mlp};
use super::ops::{InterlevelOp, VolumeRenderOp};
use crate::model::{Backbone, Forward, GEO_DIM, LossWeights, Model, RGB_PADDING, Rays};
use candle_core::{Device, Result, Tensor, Var, bail};

/// Total loss and the gradient of every parameter buffer (same order as `Model::params`; the GLO
/// buffer's slot holds the per-ray latent gradients `[R * glo_dim]` instead).
pub fn loss_and_grads(
    model: &Model,
    rays: &Rays,
    fwd: &Forward,
    target: &[[f32; 3]],
    lw: &LossWeights,
) -> Result<(f32, Vec<Vec<f32>>)> {
    if model.cfg.backbone != Backbone::HashGrid {
        bail!("the candle reference graph covers the hash-grid backbone");
    }
    let dev = Device::Cpu;
    let r = rays.len();
    let nprop = model.cfg.prop_samples.len();
    let vars: Vec<Var> = model
        .params
        .iter()
        .map(|p| Var::from_vec(p.clone(), p.len(), &dev))
        .collect::<Result<_>>()?;
    let gidx = model.idx_grid();
    let gd = model.cfg.glo_dim;
    let latent = Var::from_vec(rays.latent.clone(), (r, gd.max(1)), &dev)?;
    // --- NeRF level.
    let nl = &fwd.levels[nprop];
    let n = nl.n;
    let ns = r * n;
    let pos = Tensor::from_vec(nl.pos.clone(), (ns, 3), &dev)?;
    let fsig = Tensor::from_vec(nl.fsig.clone(), ns, &dev)?;
    let enc = hash_encode(
        vars[gidx].as_tensor(),
        &pos,
        Some(&fsig),
        &model.cfg.nerf_grid,
    )?;
    let raw = mlp(vars[gidx + 1].as_tensor(), &enc, &model.cfg.density_mlp())?;
    let sigma = raw.narrow(1, 0, 1)?.minimum(15.0)?.exp()?.reshape((r, n))?;
    let geo = raw.narrow(1, 1, GEO_DIM)?;
    // Colour-head side inputs: the fast path's per-ray rows `[dir | latent | exposure]`, broadcast
    // to every sample, with the latent columns replaced by the graph's latent variable so that its
    // gradient is checked too.
    let rw = model.cfg.color_in() - GEO_DIM;
    let per_sample = |t: Tensor| -> Result<Tensor> {
        let w = t.dim(1)?;
        t.unsqueeze(1)?.broadcast_as((r, n, w))?.reshape((ns, w))
    };
    let ray_fast = Tensor::from_vec(fwd.color.ray.clone(), (r, rw), &dev)?;
    let dir = per_sample(ray_fast.narrow(1, 0, crate::encoding::DIR_DIM)?)?;
    let mut parts = vec![geo, dir];
    if gd > 0 {
        parts.push(per_sample(latent.as_tensor().clone())?);
    }
    let rest = rw - crate::encoding::DIR_DIM - gd;
    if rest > 0 {
        parts.push(per_sample(ray_fast.narrow(1, rw - rest, rest)?)?);
    }
    let x = Tensor::cat(&parts, 1)?;
    let logits = mlp(vars[gidx + 2].as_tensor(), &x, &model.cfg.color_mlp())?;
    let sig = (logits.neg()?.exp()? + 1.0)?.recip()?;
    let rgb =
        ((sig * (1.0 + 2.0 * RGB_PADDING as f64))? - RGB_PADDING as f64)?.reshape((r, n, 3))?;
    let vr = sigma.apply_op2(
        &rgb,
        VolumeRenderOp {
            n,
            t: nl.t.clone(),
            s: nl.s.clone(),
        },
    )?;
    let tgt = Tensor::from_vec(
        target.iter().flatten().copied().collect::<Vec<f32>>(),
        (r, 3),
        &dev,
    )?;
    let diff = (vr.narrow(1, 0, 3)? - tgt)?;
    let data = (diff.sqr()? + 1e-6)?.sqrt()?.mean_all()?;
    let dist = vr.narrow(1, 5, 1)?.mean_all()?;
    let mut total = (data + (dist * lw.distortion as f64)?)?;
    // --- Proposal levels: interlevel loss against the NeRF histogram (held fixed).
    for k in 0..nprop {
        let pl = &fwd.levels[k];
        let m = pl.n;
        let pos = Tensor::from_vec(pl.pos.clone(), (r * m, 3), &dev)?;
        let fsig = Tensor::from_vec(pl.fsig.clone(), r * m, &dev)?;
        let enc = hash_encode(
            vars[2 * k].as_tensor(),
            &pos,
            Some(&fsig),
            &model.cfg.prop_grids[k],
        )?;
        let raw = mlp(vars[2 * k + 1].as_tensor(), &enc, &model.cfg.prop_mlp(k))?;
        let sigma = raw.minimum(15.0)?.exp()?.reshape((r, m))?;
        let op = InterlevelOp {
            m,
            t: pl.t.clone(),
            s: pl.s.clone(),
            n,
            s_nerf: nl.s.clone(),
            w_nerf: nl.w.clone(),
        };
        let li = (sigma.apply_op1(op)?.sum_all()? * (lw.interlevel as f64 / (r * n) as f64))?;
        total = (total + li)?;
    }
    let grads = total.backward()?;
    let mut out = Vec::new();
    for (i, v) in vars.iter().enumerate() {
        let g = if i == model.idx_glo() {
            grads.get(latent.as_tensor())
        } else {
            grads.get(v.as_tensor())
        };
        out.push(match g {
            Some(g) => g.flatten_all()?.to_vec1::<f32>()?,
            None => vec![
                0.0;
                if i == model.idx_glo() {
                    r * gd
                } else {
                    model.params[i].len()
                }
            ],
        });
    }
    Ok((total.to_scalar::<f32>()?, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ModelConfig, SampleMode};
    use rand::{Rng, SeedableRng};

    /// The fast path's loss and every gradient equal the candle graph's (autograd over the custom ops).
    #[test]
    fn fast_path_matches_candle_graph() {
        let tc = flythrough_core::config::TrainConfig {
            prop_samples: vec![8, 8],
            nerf_samples: 8,
            hash_levels: 4,
            hash_table_log2: 12,
            hash_max_res: 64,
            mlp_width: 16,
            glo_dim: 4,
            ..Default::default()
        };
        let mut model = Model::new(ModelConfig::from_train(&tc, 3), 0.2, 7);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        // Non-trivial grid values so that the density varies.
        for p in model.params.iter_mut() {
            for v in p.iter_mut() {
                *v += rng.random_range(-0.3..0.3);
            }
        }
        let r = 16;
        let mut rays = Rays::default();
        let mut target = Vec::new();
        for i in 0..r {
            let a = i as f32 * 0.4;
            rays.o.push([0.3 * a.cos(), 0.1, 0.3 * a.sin()]);
            let d = [-(a.cos()), 0.05 * i as f32 - 0.3, -(a.sin())];
            let l = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
            rays.d.push([d[0] / l, d[1] / l, d[2] / l]);
            rays.r.push(0.003);
            rays.ev.push(0.3 * (i % 3) as f32 - 0.3);
            rays.latent
                .extend((0..4).map(|_| rng.random_range(-0.5..0.5f32)));
            target.push([
                rng.random_range(0.0..1.0),
                rng.random_range(0.0..1.0),
                rng.random_range(0.0..1.0),
            ]);
        }
        let jitter: Vec<Vec<f32>> = (0..3)
            .map(|_| (0..r).map(|_| rng.random::<f32>()).collect())
            .collect();
        // train_frac 0: uniform resampling, so the NeRF histogram differs from the proposals and the
        // interlevel loss is active.
        let mode = SampleMode {
            jitter: Some(&jitter),
            train_frac: 0.0,
        };
        let fwd = model.forward(&rays, &mode, true);
        let lw = LossWeights {
            distortion: 0.01,
            interlevel: 1.0,
        };
        let mut grads = model.zeros_like();
        let mut d_lat = vec![0.0f32; r * 4];
        let losses = model.backward(&rays, &fwd, &target, &lw, &mut grads, Some(&mut d_lat));
        let gi = model.idx_glo();
        grads[gi] = d_lat;
        let (total, ref_grads) = loss_and_grads(&model, &rays, &fwd, &target, &lw).unwrap();
        let fast_total = losses.total(&lw) as f32;
        assert!(
            (total - fast_total).abs() < 1e-5 * total.abs().max(1.0),
            "loss {total} vs {fast_total}"
        );
        for (i, (a, b)) in grads.iter().zip(&ref_grads).enumerate() {
            let num: f64 = a
                .iter()
                .zip(b)
                .map(|(x, y)| ((x - y) as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum::<f64>().sqrt();
            assert!(
                den > 0.0,
                "buffer {} has no gradient in the reference",
                model.names[i]
            );
            assert!(
                num / den < 1e-3,
                "{}: relative error {:.2e}",
                model.names[i],
                num / den
            );
        }
    }
}
