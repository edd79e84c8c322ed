//! The trained field queried at points, for baking it into a real-time representation (SNeRG,
//! Hedman et al. 2021; MERF, Reiser et al. 2023): density and geometry features at points of the
//! contracted space, and the colour head applied once per pixel to composited features
//! ("deferred shading", SNeRG §4.2 / MERF §3.3).
//!
//! The colour head is this model's own (`GEO_DIM` geometry features + view direction encoding +
//! GLO latent + exposure encoding → RGB): a pixel's features are the alpha-composited geometry
//! features of its samples, normalised by the opacity, and its colour is `opacity × head(features)`,
//! which equals the NeRF's `Σ w_i head(f_i)` where one surface dominates the ray.

use crate::encoding::{self, DIR_DIM, EXPOSURE_DIM};
use crate::kernels::{
    MlpConfig, MlpInput, hash_encode_forward, mlp_forward_grouped_inference, mlp_forward_inference,
};
use crate::model::{Backbone, GEO_DIM, Model, color_act};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Points per chunk of a field query (bounds the scratch memory).
const CHUNK: usize = 1 << 16;

impl Model {
    /// Pre-activation density (`trunc_exp` of it is σ, per norm-frame unit) and the `GEO_DIM`
    /// geometry features at points `y` of the contracted space `[-2, 2]^3`, with an isotropic
    /// footprint `sigma_c` (contracted units; the hash grid down-weights finer levels, Zip-NeRF).
    /// The hash-grid backbone only (`Err` for the IPE backbone).
    pub fn density_features(
        &self,
        y: &[[f32; 3]],
        sigma_c: f32,
    ) -> Result<(Vec<f32>, Vec<f32>), String> {
        if self.cfg.backbone != Backbone::HashGrid {
            return Err(
                "baking needs the hash-grid backbone ([train] backbone = \"hash-grid\")".into(),
            );
        }
        let g = self.idx_grid();
        let gcfg = &self.cfg.nerf_grid;
        let mcfg = self.cfg.density_mlp();
        let lf = gcfg.output_dim();
        let mut raw_density = vec![0.0f32; y.len()];
        let mut geo = vec![0.0f32; y.len() * GEO_DIM];
        let fsig = sigma_c * 0.25;
        raw_density
            .par_chunks_mut(CHUNK)
            .zip(geo.par_chunks_mut(CHUNK * GEO_DIM))
            .zip(y.par_chunks(CHUNK))
            .for_each(|((dens, geo), pts)| {
                let n = pts.len();
                let pos: Vec<f32> = pts.iter().flat_map(|p| crate::coord::to_grid(*p)).collect();
                let sig = vec![fsig; n];
                let mut enc = vec![0.0f32; n * lf];
                hash_encode_forward(gcfg, &self.params[g], &pos, Some(&sig), &mut enc);
                let mut raw = vec![0.0f32; n * (1 + GEO_DIM)];
                mlp_forward_inference(&mcfg, &self.params[g + 1], &enc, &mut raw);
                for (i, r) in raw.chunks_exact(1 + GEO_DIM).enumerate() {
                    dens[i] = r[0];
                    geo[i * GEO_DIM..(i + 1) * GEO_DIM].copy_from_slice(&r[1..]);
                }
            });
        Ok((raw_density, geo))
    }

    /// The colour head alone, with what it needs to run without the rest of the model.
    pub fn color_head(&self) -> ColorHead {
        ColorHead {
            mlp_width: self.cfg.mlp_width,
            glo_dim: self.cfg.glo_dim,
            exposure: self.cfg.exposure,
            params: self.params[self.idx_grid() + 2].clone(),
        }
    }
}

/// The model's colour head: `[geo features | dir enc | latent | exposure enc] → RGB`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColorHead {
    pub mlp_width: usize,
    pub glo_dim: usize,
    pub exposure: bool,
    pub params: Vec<f32>,
}

impl ColorHead {
    /// Width of the per-pixel input besides the geometry features.
    pub fn ray_width(&self) -> usize {
        DIR_DIM + self.glo_dim + if self.exposure { EXPOSURE_DIM } else { 0 }
    }

    /// The head's layer widths (as [`crate::model::ModelConfig::color_mlp`]).
    pub fn mlp(&self) -> MlpConfig {
        let w = self.mlp_width;
        MlpConfig::new(&[GEO_DIM + self.ray_width(), w, w, 3], true)
    }

    /// Check the parameter count against the widths (a file's header is not trusted).
    pub fn check(&self) -> Result<(), String> {
        let want = self.mlp().num_params();
        if self.params.len() != want || self.mlp_width == 0 || self.mlp_width > 1024 {
            return Err(format!(
                "colour head: {} parameters for width {} (expected {want})",
                self.params.len(),
                self.mlp_width
            ));
        }
        if self.params.iter().any(|p| !p.is_finite()) {
            return Err("colour head: a parameter is not finite".into());
        }
        Ok(())
    }

    /// The per-pixel inputs besides the geometry features, `[dir enc | latent | exposure enc]` per
    /// ray (unit directions of the norm frame, exposures relative to the training mean);
    /// `latents` is one latent for all rays or one per ray.
    pub fn ray_inputs(&self, dirs: &[[f32; 3]], latents: &[f32], ev: &[f32]) -> Vec<f32> {
        let n = dirs.len();
        let rw = self.ray_width();
        let gd = self.glo_dim;
        let per_ray = latents.len() == n * gd && n > 1;
        let mut ray = vec![0.0f32; n * rw];
        ray.par_chunks_mut(rw).enumerate().for_each(|(i, row)| {
            encoding::dir_encoding(dirs[i], &mut row[..DIR_DIM]);
            let l = if per_ray {
                &latents[i * gd..(i + 1) * gd]
            } else {
                &latents[..gd]
            };
            row[DIR_DIM..DIR_DIM + gd].copy_from_slice(l);
            if self.exposure {
                encoding::exposure_encoding(ev[i], &mut row[DIR_DIM + gd..]);
            }
        });
        ray
    }

    /// Colours of `n` pixels from their (opacity-normalised) geometry features `geo` (`[n *
    /// GEO_DIM]`), unit view directions (norm frame), one latent for all and exposures relative to
    /// the training mean: the padded sigmoid of the head's logits (multinerf `rgb_padding`).
    pub fn shade(
        &self,
        geo: &[f32],
        dirs: &[[f32; 3]],
        latent: &[f32],
        ev: &[f32],
    ) -> Vec<[f32; 3]> {
        let n = dirs.len();
        assert_eq!(geo.len(), n * GEO_DIM, "shade: geo must be n x GEO_DIM");
        let ray = self.ray_inputs(dirs, &latent[..self.glo_dim], ev);
        let input = MlpInput {
            rows: geo,
            d_local: GEO_DIM,
            groups: &ray,
            group_rows: 1,
        };
        colours(&self.mlp(), &self.params, &input)
    }
}

impl ColorHead {
    /// The head with the inputs that are constant over a frame — the latent and the exposure —
    /// folded into its first layer's bias: `x W_0 + b_0 = [g | d] W_0[..42] + ([l | e] W_0[42..] +
    /// b_0)`, so a pixel costs `(GEO_DIM + DIR_DIM) × width` multiply-adds in the first layer
    /// instead of the full input width (the same function, up to rounding).
    pub fn folded(&self, latent: &[f32], ev: f32) -> FoldedHead {
        let cfg = self.mlp();
        let offs = cfg.layer_offsets();
        let first = &offs[0];
        let keep = GEO_DIM + DIR_DIM;
        let mut constant = vec![0f32; first.fan_in - keep];
        let gd = self.glo_dim;
        constant[..gd].copy_from_slice(&latent[..gd]);
        if self.exposure {
            encoding::exposure_encoding(ev, &mut constant[gd..]);
        }
        let w = &self.params[first.weight..first.weight + first.fan_in * first.fan_out];
        let mut bias: Vec<f32> = match first.bias {
            Some(b) => self.params[b..b + first.fan_out].to_vec(),
            None => vec![0.0; first.fan_out],
        };
        for (i, &c) in constant.iter().enumerate() {
            let row = &w[(keep + i) * first.fan_out..(keep + i + 1) * first.fan_out];
            for (b, &wij) in bias.iter_mut().zip(row) {
                *b += c * wij;
            }
        }
        let mut params = w[..keep * first.fan_out].to_vec();
        params.extend_from_slice(&bias);
        let rest = first
            .bias
            .map_or(first.weight + first.fan_in * first.fan_out, |b| {
                b + first.fan_out
            });
        params.extend_from_slice(&self.params[rest..]);
        let mut sizes = cfg.sizes.clone();
        sizes[0] = keep;
        FoldedHead {
            mlp: MlpConfig::new(&sizes, true),
            params,
        }
    }
}

/// The head's colours for its input rows: the padded sigmoid of the logits (multinerf
/// `rgb_padding`).
fn colours(mlp: &MlpConfig, params: &[f32], input: &MlpInput) -> Vec<[f32; 3]> {
    let mut logits = vec![0.0f32; input.rows.len() / GEO_DIM * 3];
    mlp_forward_grouped_inference(mlp, params, input, &mut logits);
    logits
        .chunks_exact(3)
        .map(|l| [color_act(l[0]).0, color_act(l[1]).0, color_act(l[2]).0])
        .collect()
}

/// A [`ColorHead`] with one frame's latent and exposure folded in ([`ColorHead::folded`]).
#[derive(Debug, Clone)]
pub struct FoldedHead {
    mlp: MlpConfig,
    params: Vec<f32>,
}

impl FoldedHead {
    /// Colours of `n` pixels from their opacity-normalised features and unit view directions (as
    /// [`ColorHead::shade`] with the folded latent and exposure).
    pub fn shade(&self, geo: &[f32], dirs: &[[f32; 3]]) -> Vec<[f32; 3]> {
        let n = dirs.len();
        assert_eq!(geo.len(), n * GEO_DIM, "shade: geo must be n x GEO_DIM");
        let mut enc = vec![0f32; n * DIR_DIM];
        // Sequential: the baked renderer calls this per chunk of rays, already in parallel.
        for (row, d) in enc.chunks_mut(DIR_DIM).zip(dirs) {
            encoding::dir_encoding_doubling(*d, row);
        }
        let input = MlpInput {
            rows: geo,
            d_local: GEO_DIM,
            groups: &enc,
            group_rows: 1,
        };
        colours(&self.mlp, &self.params, &input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Rays, SampleMode};

    /// Deferred shading of one sample equals the NeRF's colour of that sample: a ray whose weight
    /// all sits at one point gets `head(features at that point)` both ways. Checked through the
    /// pieces: the density query matches the model's own forward at the same points.
    #[test]
    fn density_query_matches_the_forward_pass() {
        let cfg = flythrough_core::config::TrainConfig::default();
        let m = Model::new(crate::model::ModelConfig::from_train(&cfg, 3), 0.05, 7);
        let rays = Rays {
            o: vec![[0.1, -0.2, 0.05]; 2],
            d: vec![[0.0, 0.0, 1.0], [0.6, 0.0, 0.8]],
            r: vec![1e-3; 2],
            latent: vec![0.0; 2 * m.cfg.glo_dim],
            ev: vec![0.0; 2],
        };
        let mode = SampleMode {
            jitter: None,
            train_frac: 1.0,
        };
        let f = m.forward(&rays, &mode, false);
        let lvl = f.levels.last().unwrap();
        // The level's positions are in grid units: back to contracted space.
        let y: Vec<[f32; 3]> = lvl
            .pos
            .chunks_exact(3)
            .map(|p| [p[0] * 4.0 - 2.0, p[1] * 4.0 - 2.0, p[2] * 4.0 - 2.0])
            .collect();
        // One footprint for every point in the query: compare at the level's first footprint, on
        // the points that have it.
        let s0 = lvl.fsig[0];
        let (dens, _) = m.density_features(&y, s0 * 4.0).unwrap();
        let mut compared = 0;
        for (i, (&s, &d)) in lvl.fsig.iter().zip(&dens).enumerate() {
            if (s - s0).abs() < 1e-9 {
                let (a, b) = (d.min(15.0).exp(), lvl.sigma[i]);
                assert!((a - b).abs() <= 1e-4 * b.max(1.0), "{i}: {a} vs {b}");
                compared += 1;
            }
        }
        assert!(compared >= 1);
        let head = m.color_head();
        head.check().unwrap();
        let c = head.shade(
            &[0.0; 2 * GEO_DIM],
            &rays.d,
            &vec![0.0; m.cfg.glo_dim],
            &[0.0, 0.0],
        );
        assert!(c.iter().flatten().all(|v| (0.0..=1.0).contains(v)));
        // The folded head is the same function.
        let geo: Vec<f32> = (0..2 * GEO_DIM).map(|i| (i as f32 * 0.37).sin()).collect();
        let latent: Vec<f32> = (0..m.cfg.glo_dim).map(|i| (i as f32 * 0.9).cos()).collect();
        let full = head.shade(&geo, &rays.d, &latent, &[0.4, 0.4]);
        let folded = head.folded(&latent, 0.4).shade(&geo, &rays.d);
        for (a, b) in full.iter().flatten().zip(folded.iter().flatten()) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}
