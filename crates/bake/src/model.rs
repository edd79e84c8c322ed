//! The baked model: the grid, the NeRF's colour head and GLO latents, and the scene normalisation;
//! one `safetensors` file (`bake/baked.safetensors`) whose header metadata `flythrough_bake` is
//! [`BakedHeader`] as JSON. Every size in the header is checked against the tensors before use.

use crate::grid::{BLOCK, CHANNELS, EMPTY, Grid, PACKET, VERTS};
use flythrough_nerf::checkpoint::CheckpointMeta;
use flythrough_nerf::coord::SceneNorm;
use flythrough_nerf::field::ColorHead;
use flythrough_nerf::model::Model;
use rayon::prelude::*;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Version of the baked file layout.
pub const FORMAT_VERSION: u32 = 1;
/// The header key in the safetensors metadata.
const META_KEY: &str = "flythrough_bake";
/// Rays per shading batch.
const CHUNK: usize = 4096;

/// What the file says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BakedHeader {
    pub format_version: u32,
    pub res: usize,
    pub block: usize,
    pub channels: usize,
    pub slots: usize,
    pub norm: SceneNorm,
    pub ev_mean: f64,
    pub train_names: Vec<String>,
    pub mlp_width: usize,
    pub glo_dim: usize,
    pub exposure: bool,
    /// Colour of the light a ray still carries at the far edge of the grid (files without it:
    /// black).
    #[serde(default)]
    pub background: [f32; 3],
}

/// A baked model ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct BakedModel {
    pub grid: Grid,
    pub head: ColorHead,
    /// `[num_latents * glo_dim]`, in `train_names` order.
    pub glo: Vec<f32>,
    pub norm: SceneNorm,
    pub ev_mean: f64,
    pub train_names: Vec<String>,
    /// What a ray sees through the transmittance left at the grid's far edge (`(1 - O) · bg`; the
    /// NeRF's last interval is opaque, so its pixels always sum to one weight): initialised to the
    /// training photos' mean colour and fine-tuned. Space no photo saw, culled from the grid,
    /// shows this colour instead of black.
    pub background: [f32; 3],
}

/// Per-ray outputs (as the NeRF's render API): colour, depth (world units), opacity.
#[derive(Debug, Clone, Default)]
pub struct BakedOutput {
    pub rgb: Vec<[f32; 3]>,
    pub depth: Vec<f32>,
    pub opacity: Vec<f32>,
    /// Grid lookups made over all rays.
    pub lookups: u64,
}

/// Rays of the SfM world frame (any direction length) in a model's (norm) frame, with the absolute
/// exposure `ev` (`None`: the training mean) made relative to the training mean `ev_mean`: what
/// the CPU and GPU renderers' `render_norm` take.
pub(crate) fn world_to_norm(
    norm: &SceneNorm,
    ev_mean: f64,
    origins: &[[f32; 3]],
    dirs: &[[f32; 3]],
    ev: Option<f64>,
) -> (Vec<[f32; 3]>, Vec<[f32; 3]>, Vec<f32>) {
    let (o, d) = norm.rays(origins, dirs);
    let rel = ev.map(|e| e - ev_mean).unwrap_or(0.0) as f32;
    let n = o.len();
    (o, d, vec![rel; n])
}

impl BakedOutput {
    /// Depths of the norm frame in world units.
    pub(crate) fn depth_to_world(mut self, norm: &SceneNorm) -> BakedOutput {
        let inv = (1.0 / norm.scale) as f32;
        self.depth.iter_mut().for_each(|x| *x *= inv);
        self
    }
}

impl BakedModel {
    /// The grid baked from `model` with the checkpoint's metadata.
    pub fn new(grid: Grid, model: &Model, meta: &CheckpointMeta) -> BakedModel {
        BakedModel {
            grid,
            head: model.color_head(),
            glo: model.params[model.idx_glo()].clone(),
            norm: meta.norm,
            ev_mean: meta.ev_mean,
            train_names: meta.train_names.clone(),
            background: [0.0; 3],
        }
    }

    /// The mean GLO latent (novel views), or a training photo's.
    pub fn latent(&self, photo: Option<&str>) -> Vec<f32> {
        let d = self.head.glo_dim;
        let n = self.glo.len() / d.max(1);
        if let Some(i) = photo.and_then(|p| self.train_names.iter().position(|x| x == p)) {
            return self.glo[i * d..(i + 1) * d].to_vec();
        }
        (0..d)
            .map(|j| (0..n).map(|i| self.glo[i * d + j]).sum::<f32>() / n.max(1) as f32)
            .collect()
    }

    /// Render rays of the model's (norm) frame: unit directions, exposures relative to the
    /// training mean, one latent for all.
    pub fn render_norm(
        &self,
        origins: &[[f32; 3]],
        dirs: &[[f32; 3]],
        ev: &[f32],
        latent: &[f32],
    ) -> BakedOutput {
        let near = self.norm.near as f32;
        // One exposure for all rays (a frame): the latent and exposure folded into the head.
        let folded = (!ev.is_empty() && ev.iter().all(|&e| e == ev[0]))
            .then(|| self.head.folded(latent, ev[0]));
        let parts: Vec<BakedOutput> = (0..origins.len())
            .into_par_iter()
            .step_by(CHUNK)
            .map(|s| {
                let e = (s + CHUNK).min(origins.len());
                // Neighbouring rays in packets (the same bits as one at a time; on the demo
                // venue with the rest of the packet work 0.37 -> 0.17 s per 1024x512 frame on 2
                // cores, two interleaved rays before).
                let mut marched = Vec::with_capacity(e - s);
                let mut i = s;
                while i + PACKET <= e {
                    let r: [_; PACKET] = std::array::from_fn(|k| (origins[i + k], dirs[i + k]));
                    marched.extend(self.grid.march_packet(r, near));
                    i += PACKET;
                }
                // The rest, fewer than a packet, one at a time (the same bits).
                for k in i..e {
                    marched.push(self.grid.march(origins[k], dirs[k], near));
                }
                let geo: Vec<f32> = marched.iter().flat_map(|m| m.shading_features()).collect();
                let shaded = match folded.as_ref() {
                    Some(h) => h.shade(&geo, &dirs[s..e]),
                    None => self.head.shade(&geo, &dirs[s..e], latent, &ev[s..e]),
                };
                let mut out = BakedOutput::default();
                for (m, c) in marched.iter().zip(shaded) {
                    let (o, bg) = (m.opacity, &self.background);
                    out.rgb.push([
                        c[0] * o + (1.0 - o) * bg[0],
                        c[1] * o + (1.0 - o) * bg[1],
                        c[2] * o + (1.0 - o) * bg[2],
                    ]);
                    out.depth.push(if m.opacity > 1e-6 {
                        m.depth / m.opacity
                    } else {
                        0.0
                    });
                    out.opacity.push(m.opacity);
                    out.lookups += m.lookups as u64;
                }
                out
            })
            .collect();
        let mut out = BakedOutput::default();
        for p in parts {
            out.rgb.extend(p.rgb);
            out.depth.extend(p.depth);
            out.opacity.extend(p.opacity);
            out.lookups += p.lookups;
        }
        out
    }

    /// Render rays given in the SfM world frame (any direction length) at the absolute exposure
    /// `ev` (`None`: the training mean); depth in world units.
    pub fn render_rays(
        &self,
        origins: &[[f32; 3]],
        dirs: &[[f32; 3]],
        ev: Option<f64>,
        latent: &[f32],
    ) -> BakedOutput {
        let (o, d, ev) = world_to_norm(&self.norm, self.ev_mean, origins, dirs, ev);
        self.render_norm(&o, &d, &ev, latent)
            .depth_to_world(&self.norm)
    }

    fn header(&self) -> BakedHeader {
        BakedHeader {
            format_version: FORMAT_VERSION,
            res: self.grid.res,
            block: BLOCK,
            channels: CHANNELS,
            slots: self.grid.slots(),
            norm: self.norm,
            ev_mean: self.ev_mean,
            train_names: self.train_names.clone(),
            mlp_width: self.head.mlp_width,
            glo_dim: self.head.glo_dim,
            exposure: self.head.exposure,
            background: self.background,
        }
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let index: Vec<u8> = self
            .grid
            .index
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let quant: Vec<f32> = self
            .grid
            .lo
            .iter()
            .chain(&self.grid.scale)
            .copied()
            .collect();
        let (quant, head, glo) = (f32s(&quant), f32s(&self.head.params), f32s(&self.glo));
        let nb = self.grid.blocks();
        let e = |e: safetensors::SafeTensorError| e.to_string();
        let views = vec![
            (
                "index",
                TensorView::new(Dtype::U32, vec![nb, nb, nb], &index).map_err(e)?,
            ),
            (
                "blocks",
                TensorView::new(
                    Dtype::U8,
                    vec![self.grid.slots(), VERTS, VERTS, VERTS, CHANNELS],
                    &self.grid.data,
                )
                .map_err(e)?,
            ),
            (
                "quant",
                TensorView::new(Dtype::F32, vec![2, CHANNELS], &quant).map_err(e)?,
            ),
            (
                "color_head",
                TensorView::new(Dtype::F32, vec![self.head.params.len()], &head).map_err(e)?,
            ),
            (
                "glo",
                TensorView::new(Dtype::F32, vec![self.glo.len()], &glo).map_err(e)?,
            ),
        ];
        let md = HashMap::from([(
            META_KEY.to_string(),
            serde_json::to_string(&self.header()).map_err(|e| e.to_string())?,
        )]);
        safetensors::tensor::serialize(views, Some(md)).map_err(e)
    }

    /// Read a baked file, checking every size against its header (`Err` names what is wrong).
    pub fn from_bytes(bytes: &[u8]) -> Result<BakedModel, String> {
        let (_, md) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
        let h: BakedHeader = md
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .ok_or("no flythrough_bake header: not a baked model")
            .and_then(|s| serde_json::from_str(s).map_err(|_| "a damaged flythrough_bake header"))
            .map_err(|e| e.to_string())?;
        if h.format_version != FORMAT_VERSION || h.block != BLOCK || h.channels != CHANNELS {
            return Err(format!(
                "format {} with blocks of {} and {} channels; this flythrough reads format {FORMAT_VERSION}, {BLOCK}, {CHANNELS}: bake again (--force bake)",
                h.format_version, h.block, h.channels
            ));
        }
        if h.res == 0 || !h.res.is_multiple_of(BLOCK) || h.res > 4096 {
            return Err(format!(
                "resolution {} is not a multiple of {BLOCK} in 8..=4096",
                h.res
            ));
        }
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
        let get = |name: &str, dtype: Dtype, len: usize| -> Result<Vec<u8>, String> {
            let t = st.tensor(name).map_err(|e| format!("{name}: {e}"))?;
            if t.dtype() != dtype || t.data().len() != len {
                return Err(format!(
                    "{name}: {:?} of {} bytes, expected {dtype:?} of {len}",
                    t.dtype(),
                    t.data().len()
                ));
            }
            Ok(t.data().to_vec())
        };
        let f32s = |b: Vec<u8>| -> Vec<f32> {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        let nb = h.res / BLOCK;
        let blocks = nb * nb * nb;
        let index: Vec<u32> = get("index", Dtype::U32, blocks * 4)?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if index.iter().any(|&s| s != EMPTY && s as usize >= h.slots) {
            return Err(format!(
                "index: a block points past the {} stored blocks",
                h.slots
            ));
        }
        let per = VERTS * VERTS * VERTS * CHANNELS;
        let data = get(
            "blocks",
            Dtype::U8,
            h.slots.checked_mul(per).ok_or("slots overflow")?,
        )?;
        let quant = f32s(get("quant", Dtype::F32, 2 * CHANNELS * 4)?);
        let mut lo = [0f32; CHANNELS];
        let mut scale = [0f32; CHANNELS];
        lo.copy_from_slice(&quant[..CHANNELS]);
        scale.copy_from_slice(&quant[CHANNELS..]);
        if quant.iter().any(|v| !v.is_finite()) {
            return Err("quant: a value is not finite".into());
        }
        let head_len = st.tensor("color_head").map(|t| t.data().len()).unwrap_or(0);
        let head = ColorHead {
            mlp_width: h.mlp_width,
            glo_dim: h.glo_dim,
            exposure: h.exposure,
            params: f32s(get("color_head", Dtype::F32, head_len)?),
        };
        head.check()?;
        let glo = f32s(get("glo", Dtype::F32, h.glo_dim * h.train_names.len() * 4)?);
        if h.background.iter().any(|v| !(0.0..=1.0).contains(v)) {
            return Err(format!(
                "background {:?} is not a colour in [0, 1]",
                h.background
            ));
        }
        let grid = crate::grid::rebuild(h.res, index, data, lo, scale);
        Ok(BakedModel {
            grid,
            head,
            glo,
            norm: h.norm,
            ev_mean: h.ev_mean,
            train_names: h.train_names,
            background: h.background,
        })
    }

    /// Write the file atomically.
    pub fn save(&self, path: &Path) -> Result<u64, String> {
        let b = self.to_bytes()?;
        flythrough_core::run::write_atomic(path, &b).map_err(|e| e.to_string())?;
        Ok(b.len() as u64)
    }

    /// Read a file (`Err` names it).
    pub fn load(path: &Path) -> Result<BakedModel, String> {
        let b = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_bytes(&b).map_err(|e| format!("{}: {e}", path.display()))
    }
}
