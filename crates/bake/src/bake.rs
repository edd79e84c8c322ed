//! Baking: the trained field sampled at the grid's vertices, blocks kept where the field is not
//! empty, values quantised to 8 bits.
//!
//! A block is kept when any of its vertices would stop more than [`MIN_ALPHA`] of a ray in one
//! march step there (`1 - exp(-σ Δt)` with the step of [`crate::grid::STEP_VOXELS`] voxels carried
//! back through the contraction by its isotropic scale), as SNeRG and MERF cull by alpha. The
//! geometry features are quantised over their 0.1 and 99.9 percentiles among the kept vertices
//! (MERF quantises with a fixed sigmoid range; percentiles spend the 256 levels where the trained
//! values are); the density over [`crate::grid::RAW_DENSITY_RANGE`].

use crate::grid::{
    BLOCK, CHANNELS, EMPTY, Grid, RAW_DENSITY_RANGE, STEP_VOXELS, VERTS, block_vertices,
};
use flythrough_nerf::model::{GEO_DIM, Model};
use rayon::prelude::*;

/// Alpha over one march step below which a vertex counts as empty.
pub const MIN_ALPHA: f32 = 0.002;
/// Blocks evaluated per batch (bounds the scratch memory: 512 × 729 × 16 floats = 24 MB).
const BATCH_BLOCKS: usize = 512;

/// The baked field before quantisation of its features: kept blocks' vertex values in f32.
struct Kept {
    index: Vec<u32>,
    values: Vec<f32>,
}

/// The uncontracted point of a contracted one (inverse of mip-NeRF 360 Eq. 10), for the step length.
fn uncontract(y: [f32; 3]) -> [f32; 3] {
    let r = (y[0] * y[0] + y[1] * y[1] + y[2] * y[2]).sqrt();
    if r <= 1.0 {
        return y;
    }
    let r = r.min(2.0 - 1e-6);
    let m = 1.0 / (2.0 - r);
    [y[0] * m / r, y[1] * m / r, y[2] * m / r]
}

/// Sample `model` on a grid of `res` voxels per side (a multiple of [`BLOCK`]) and keep the blocks
/// that are not empty; `progress(done, total)` is called per batch.
pub fn bake(
    model: &Model,
    res: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Grid, String> {
    bake_blocks(model, res, None, progress)
}

/// [`bake`] sampling only the blocks `candidates` marks (all when `None`).
pub fn bake_blocks(
    model: &Model,
    res: usize,
    candidates: Option<&[bool]>,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Grid, String> {
    if res < BLOCK || !res.is_multiple_of(BLOCK) {
        return Err(format!(
            "resolution {res} must be a positive multiple of {BLOCK}"
        ));
    }
    let nb = res / BLOCK;
    let total = nb * nb * nb;
    let ids: Vec<usize> = match candidates {
        Some(c) if c.len() == total => (0..total).filter(|&i| c[i]).collect(),
        Some(c) => {
            return Err(format!("{} candidate flags for {total} blocks", c.len()));
        }
        None => (0..total).collect(),
    };
    let voxel = 4.0 / res as f32;
    let per_block = VERTS * VERTS * VERTS;
    let mut kept = Kept {
        index: vec![EMPTY; total],
        values: Vec::new(),
    };
    let mut positions = Vec::with_capacity(BATCH_BLOCKS * per_block);
    for (n, batch) in ids.chunks(BATCH_BLOCKS).enumerate() {
        positions.clear();
        for &id in batch {
            block_vertices(
                res,
                [id % nb, (id / nb) % nb, id / (nb * nb)],
                &mut positions,
            );
        }
        // The footprint of a vertex: a voxel (its box's standard deviation is 0.29 voxel; the
        // hash grid blurs its finer levels a little more, which suits a trilinear lookup).
        let (raw, geo) = model.density_features(&positions, 0.5 * voxel)?;
        let keep: Vec<bool> = (0..batch.len())
            .into_par_iter()
            .map(|k| {
                (0..per_block).any(|v| {
                    let i = k * per_block + v;
                    let x = uncontract(positions[i]);
                    let scale = flythrough_nerf::coord::contract_scale(x).max(1e-12);
                    let dt = STEP_VOXELS * voxel / scale;
                    let sigma = raw[i].min(15.0).exp();
                    1.0 - (-sigma * dt).exp() > MIN_ALPHA
                })
            })
            .collect();
        for (k, &keep) in keep.iter().enumerate() {
            if !keep {
                continue;
            }
            kept.index[batch[k]] = (kept.values.len() / (per_block * CHANNELS)) as u32;
            for v in 0..per_block {
                let i = k * per_block + v;
                kept.values.push(raw[i]);
                kept.values
                    .extend_from_slice(&geo[i * GEO_DIM..(i + 1) * GEO_DIM]);
            }
        }
        progress((n * BATCH_BLOCKS + batch.len()).min(ids.len()), ids.len());
    }
    Ok(quantise(res, kept))
}

/// Bytes per stored block at the peak of baking and fine-tuning: the sampled values in f32 while
/// they are quantised, then the 8-bit codes plus the fine-tuning state (f32 master value, gradient
/// and two Adam moments per channel, a step stamp per vertex).
pub const BYTES_PER_BLOCK: u64 =
    (VERTS * VERTS * VERTS) as u64 * ((CHANNELS as u64) * (1 + 4 * 4) + 8);

/// The peak memory of a bake that samples `blocks` blocks (an upper bound: every one kept).
pub fn peak_bytes(blocks: usize) -> u64 {
    blocks as u64 * BYTES_PER_BLOCK
}

/// Coarse-to-fine baking: the field is sampled first on a grid a quarter as fine (1/64 of the
/// samples), culled by visibility against `rays` at a quarter of `min_weight`, and the fine grid
/// samples only the blocks inside what survived (and their neighbours), then is culled itself. At
/// 512^3 on the demo venue this samples about 5 % of the vertices a dense bake would.
///
/// `budget` (bytes) bounds the fine grid: when the blocks to sample would need more at the peak of
/// baking and fine-tuning ([`peak_bytes`]), it stops with an error before allocating them.
#[allow(clippy::too_many_arguments)]
pub fn bake_coarse_to_fine(
    model: &Model,
    res: usize,
    rays: &[([f32; 3], [f32; 3])],
    near: f32,
    min_weight: f32,
    budget: u64,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Grid, String> {
    let coarse_res = res / 4;
    if coarse_res < 2 * BLOCK || !coarse_res.is_multiple_of(BLOCK) {
        let nb = res / BLOCK;
        if peak_bytes(nb * nb * nb) > budget {
            return Err(format!(
                "the {res}^3 grid needs more than [bake] memory_budget_gb = {:.1}",
                budget as f64 / 1e9
            ));
        }
        let g = bake(model, res, progress)?;
        return Ok(g.cull_unseen(rays, near, min_weight));
    }
    let coarse = bake(model, coarse_res, &|_, _| {})?.cull_unseen(rays, near, 0.25 * min_weight);
    let (nbf, nbc) = (res / BLOCK, coarse_res / BLOCK);
    // Fine block (x, y, z) lies in coarse block (x, y, z) / 4: sampled when that block is stored
    // (its vertices include the faces it shares with its neighbours).
    let candidates: Vec<bool> = (0..nbf * nbf * nbf)
        .map(|id| {
            let (x, y, z) = (id % nbf, (id / nbf) % nbf, id / (nbf * nbf));
            coarse.index[((z / 4) * nbc + y / 4) * nbc + x / 4] != EMPTY
        })
        .collect();
    let sampled = candidates.iter().filter(|&&c| c).count();
    tracing::info!(
        "bake: {sampled} of {} fine blocks inside the coarse grid's occupied space",
        candidates.len()
    );
    let need = peak_bytes(sampled);
    if need > budget {
        return Err(format!(
            "the {res}^3 grid would sample {sampled} blocks of the space the photos saw, about {:.1} GB \
             at the peak of baking and fine-tuning, over [bake] memory_budget_gb = {:.1}; lower \
             [bake] resolution (each halving needs about 1/8 of it) or raise memory_budget_gb",
            need as f64 / 1e9,
            budget as f64 / 1e9
        ));
    }
    let fine = bake_blocks(model, res, Some(&candidates), progress)?;
    Ok(fine.cull_unseen(rays, near, min_weight))
}

/// The `q`-quantile of `v` (sorted copy; `v` non-empty).
fn quantile(v: &mut [f32], q: f64) -> f32 {
    let k = ((v.len() - 1) as f64 * q).round() as usize;
    let (_, x, _) = v.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
    *x
}

fn quantise(res: usize, kept: Kept) -> Grid {
    let n = kept.values.len() / CHANNELS;
    let mut lo = [0f32; CHANNELS];
    let mut scale = [1f32; CHANNELS];
    lo[0] = RAW_DENSITY_RANGE.0;
    scale[0] = (RAW_DENSITY_RANGE.1 - RAW_DENSITY_RANGE.0) / 255.0;
    if n > 0 {
        for c in 1..CHANNELS {
            let mut col: Vec<f32> = (0..n).map(|i| kept.values[i * CHANNELS + c]).collect();
            let a = quantile(&mut col, 0.001);
            let b = quantile(&mut col, 0.999);
            lo[c] = a;
            scale[c] = ((b - a) / 255.0).max(1e-6);
        }
    }
    let data: Vec<u8> = kept
        .values
        .par_chunks(CHANNELS)
        .flat_map_iter(|v| {
            (0..CHANNELS).map(move |c| ((v[c] - lo[c]) / scale[c]).round().clamp(0.0, 255.0) as u8)
        })
        .collect();
    crate::grid::rebuild(res, kept.index, data, lo, scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncontract_inverts_the_contraction() {
        for x in [[0.3f32, -0.2, 0.1], [2.0, 0.5, -1.0], [-30.0, 4.0, 9.0]] {
            let y = flythrough_nerf::coord::contract(x);
            let back = uncontract(y);
            for a in 0..3 {
                assert!(
                    (back[a] - x[a]).abs() < 1e-3 * x[a].abs().max(1.0),
                    "{x:?} -> {back:?}"
                );
            }
        }
    }
}
