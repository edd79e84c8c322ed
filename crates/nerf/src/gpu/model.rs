//! The model's parameters on the device: one buffer per [`crate::model::Model`] buffer, in the same
//! order and layouts (so checkpoints are back-end neutral), plus each hash grid's level table and
//! how its levels are split across bindings.

use super::kernels::Kernels;
use super::shaders::MlpShape;
use crate::NerfError;
use crate::kernels::HashGridConfig;
use crate::model::{Backbone, GEO_DIM, Model, ModelConfig};
use flythrough_gpu::{Gpu, GpuBuffer, GpuError};
use std::sync::Arc;

/// Errors of the GPU path as the stage reports them.
pub fn gpu_err(e: GpuError) -> NerfError {
    NerfError::Gpu(e.to_string())
}

/// One hash grid on the device.
#[derive(Debug, Clone)]
pub struct GridOnDevice {
    pub cfg: HashGridConfig,
    /// Index of its parameter buffer in [`GpuModel::params`].
    pub param: usize,
    /// `level_infos()` as u32: resolution, dense flag in the top bit.
    pub info: GpuBuffer,
    /// Level ranges `(first, count)` bound together (each within the binding size limit).
    pub splits: Vec<(u32, u32)>,
    /// Bytes of one level's table.
    pub level_bytes: u64,
}

/// The split of a grid's levels into binding-sized ranges, or an error naming the key to lower.
pub fn split_levels(
    cfg: &HashGridConfig,
    max_binding: u64,
    align: u64,
    key: &str,
) -> Result<(Vec<(u32, u32)>, u64), String> {
    let level_bytes = (cfg.table_size() * cfg.features_per_level * 4) as u64;
    let per = max_binding / level_bytes;
    if per == 0 {
        return Err(format!(
            "one level of the hash grid holds {} MiB but this GPU binds at most {} MiB per buffer: \
             lower [train] {key}",
            level_bytes >> 20,
            max_binding >> 20
        ));
    }
    if (per as usize) < cfg.levels && !level_bytes.is_multiple_of(align) {
        return Err(format!(
            "the hash grid must be split across bindings but a level ({level_bytes} bytes) is not a \
             multiple of the adapter's offset alignment {align}: lower [train] {key}"
        ));
    }
    let mut splits = Vec::new();
    let mut l = 0u32;
    while (l as usize) < cfg.levels {
        let c = (per as u32).min(cfg.levels as u32 - l);
        splits.push((l, c));
        l += c;
    }
    Ok((splits, level_bytes))
}

/// The MLP tile shape of a model on a device: every MLP's widest input and layer, fitted to the
/// workgroup memory.
pub fn mlp_shape(cfg: &ModelConfig, gpu: &Gpu) -> Result<MlpShape, String> {
    let mut mlps = vec![cfg.density_mlp(), cfg.color_mlp()];
    for k in 0..cfg.prop_samples.len() {
        mlps.push(cfg.prop_mlp(k));
    }
    let max_in = mlps.iter().map(|m| m.sizes[0]).max().unwrap_or(1) as u32;
    let max_w = mlps
        .iter()
        .flat_map(|m| m.sizes[1..].iter().copied())
        .max()
        .unwrap_or(1) as u32;
    let l = gpu.limits();
    MlpShape::fit(
        max_in,
        max_w,
        l.max_workgroup_storage_bytes,
        l.max_invocations_per_workgroup,
        super::mlp_stage(),
    )
    .map(|s| s.with_rows(super::mlp_rows()))
    .ok_or_else(|| {
        format!(
            "the MLPs (widest input {max_in}, widest layer {max_w}) do not fit this GPU's {} bytes \
             of workgroup memory even one row at a time: lower [train] mlp_width or glo_dim",
            l.max_workgroup_storage_bytes
        )
    })
}

/// The model's parameters on one device.
pub struct GpuModel {
    pub k: Kernels,
    pub cfg: ModelConfig,
    pub near: f32,
    pub names: Vec<String>,
    pub params: Vec<GpuBuffer>,
    /// Proposal grids, then the NeRF grid.
    pub grids: Vec<GridOnDevice>,
}

impl GpuModel {
    /// Upload `model` to `gpu`.
    pub fn new(gpu: Arc<Gpu>, model: &Model) -> Result<GpuModel, NerfError> {
        let cfg = &model.cfg;
        if cfg.backbone != Backbone::HashGrid {
            return Err(NerfError::Gpu(
                "the GPU back end runs backbone = \"hash-grid\" only (set [train] device = \"cpu\" \
                 for \"ipe-mlp\")"
                    .into(),
            ));
        }
        if cfg.color_in() - GEO_DIM == 0 {
            return Err(NerfError::Gpu("colour head without per-ray inputs".into()));
        }
        if cfg.glo_dim > super::kernels::MAX_GLO_DIM {
            return Err(NerfError::Gpu(format!(
                "[train] glo_dim = {} is more than the GPU back end's {} latent columns",
                cfg.glo_dim,
                super::kernels::MAX_GLO_DIM
            )));
        }
        let shape = mlp_shape(cfg, &gpu).map_err(NerfError::Gpu)?;
        let k = Kernels::new(gpu.clone(), gpu.atomic_mode(), shape);
        let params = model
            .names
            .iter()
            .zip(&model.params)
            .map(|(n, p)| gpu.upload(n, p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(gpu_err)?;
        let nprop = cfg.prop_samples.len();
        let l = gpu.limits();
        let mut grids = Vec::new();
        for g in 0..=nprop {
            let (gcfg, param, key) = if g < nprop {
                (cfg.prop_grids[g].clone(), 2 * g, "hash_table_log2")
            } else {
                (cfg.nerf_grid.clone(), model.idx_grid(), "hash_table_log2")
            };
            let (splits, level_bytes) = split_levels(
                &gcfg,
                l.max_storage_binding_bytes,
                l.storage_offset_align as u64,
                key,
            )
            .map_err(NerfError::Gpu)?;
            let info: Vec<u32> = gcfg
                .level_infos()
                .iter()
                .map(|i| i.resolution | if i.dense { 1 << 31 } else { 0 })
                .collect();
            grids.push(GridOnDevice {
                info: gpu.upload("level info", &info).map_err(gpu_err)?,
                cfg: gcfg,
                param,
                splits,
                level_bytes,
            });
        }
        Ok(GpuModel {
            k,
            cfg: cfg.clone(),
            near: model.near,
            names: model.names.clone(),
            params,
            grids,
        })
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.k.gpu
    }

    pub fn nprop(&self) -> usize {
        self.cfg.prop_samples.len()
    }

    /// Index of the NeRF grid buffer (as [`Model::idx_grid`]).
    pub fn idx_grid(&self) -> usize {
        2 * self.nprop()
    }

    /// Index of the GLO table (as [`Model::idx_glo`]).
    pub fn idx_glo(&self) -> usize {
        2 * self.nprop() + 3
    }

    /// Overwrite the device parameters with `model`'s (same layout).
    pub fn set_params(&self, model: &Model) {
        for (b, p) in self.params.iter().zip(&model.params) {
            self.gpu().write(b, 0, p);
        }
    }

    /// Read every parameter buffer back (blocking) into a CPU [`Model`].
    pub fn to_model(&self) -> Result<Model, NerfError> {
        let mut m = Model::new(self.cfg.clone(), self.near, 0);
        for (dst, b) in m.params.iter_mut().zip(&self.params) {
            let v: Vec<f32> = self.gpu().read(b).map_err(gpu_err)?;
            let n = dst.len();
            dst.copy_from_slice(&v[..n]);
        }
        Ok(m)
    }
}
