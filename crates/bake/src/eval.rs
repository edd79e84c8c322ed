//! Held-out evaluation of a baked model under the NeRF's own protocol (`train::evaluate_with`: the
//! same held-out photos, size, latent fitting on the left half and metrics on the right half), so
//! `psnr_holdout_baked` and the train stage's `psnr_holdout` compare like for like.

use crate::BakedModel;
use flythrough_nerf::checkpoint::CheckpointMeta;
use flythrough_nerf::data::{Dataset, camera_ray, pixel_rays};
use flythrough_nerf::model::Model;
use flythrough_nerf::train::{EvalOptions, EvalReport, evaluate_with};
use rayon::prelude::*;
use std::path::Path;

/// Evaluate `baked` on the held-out photos of `ds` (the latents are fitted with `model`, as the
/// train stage does; the pixels are the baked model's). PNGs of the renders go to `render_dir`.
pub fn evaluate_baked(
    baked: &BakedModel,
    model: &Model,
    meta: &CheckpointMeta,
    ds: &Dataset,
    opts: &EvalOptions,
    render_dir: Option<&Path>,
) -> EvalReport {
    let norm = ds.norm;
    evaluate_with(
        model,
        meta,
        ds,
        opts,
        render_dir,
        &mut |cam, pose, ev, latent| {
            let (o, d, _) = pixel_rays(&norm, cam, pose);
            let out = baked.render_norm(&o, &d, &vec![ev; o.len()], latent);
            out.rgb.iter().flat_map(|c| c.iter().copied()).collect()
        },
    )
}

/// Rays (model frame) through about `budget` pixels of the training photos, spread evenly over
/// every photo (a pixel grid of one stride per photo): what the visibility culling marches.
pub fn training_rays(ds: &Dataset, budget: usize) -> Vec<([f32; 3], [f32; 3])> {
    let px: usize = ds
        .train
        .iter()
        .map(|&i| (ds.photos[i].cam.width * ds.photos[i].cam.height) as usize)
        .sum();
    let stride = ((px as f64 / budget.max(1) as f64).sqrt().floor() as usize).max(1);
    ds.train
        .par_iter()
        .flat_map_iter(|&i| {
            let p = &ds.photos[i];
            let (w, h) = (p.cam.width as usize, p.cam.height as usize);
            let norm = ds.norm;
            (0..h).step_by(stride).flat_map(move |y| {
                (0..w).step_by(stride).map(move |x| {
                    let (o, d, _) =
                        camera_ray(&norm, &p.cam, &p.pose, x as f64 + 0.5, y as f64 + 0.5);
                    (o, d)
                })
            })
        })
        .collect()
}

/// The mean colour of the training photos (the baked model's background before fine-tuning).
pub fn mean_colour(ds: &Dataset) -> [f32; 3] {
    let mut sum = [0f64; 3];
    let mut n = 0u64;
    for &i in &ds.train {
        for px in ds.photos[i].img.pixels() {
            for (s, &v) in sum.iter_mut().zip(&px.0) {
                *s += v as f64;
            }
            n += 1;
        }
    }
    sum.map(|s| (s / (255.0 * n.max(1) as f64)) as f32)
}
