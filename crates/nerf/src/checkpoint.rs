//! Checkpoints: one `safetensors` file holding every parameter buffer (`<name>`, 1-D f32, layouts in
//! the kernels' module docs) and, in resume checkpoints only, the Adam moments (`adam.m.<name>`,
//! `adam.v.<name>`); the safetensors header's `__metadata__` has one key, `flythrough`, whose value is
//! the JSON of [`CheckpointMeta`] (model config, scene normalisation, step, photos, exposures, config).
//! A sidecar `<file>.json` repeats that JSON for people and tools that do not read safetensors.
//!
//! Two kinds, one format and one loader ([`load`]):
//! - **weights** (`train/checkpoints/final.safetensors`, what rendering reads): parameters only,
//!   `meta.adam = None`; a third of the size.
//! - **resume** (`RUN/.work/train/checkpoints/last.safetensors`, written every `checkpoint_every`
//!   steps): parameters + Adam moments, `meta.adam = Some((hyper-parameters, step))`. The batch RNG
//!   needs no state: each step's generator is seeded from `(seed, step)`. Deleted with the work
//!   folder when the stage commits.

use crate::NerfError;
use crate::coord::SceneNorm;
use crate::kernels::{Adam, AdamConfig};
use crate::model::{Model, ModelConfig};
use flythrough_core::config::TrainConfig;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Format version written into every checkpoint.
pub const FORMAT_VERSION: u32 = 1;

/// What a checkpoint says about itself (the `flythrough` metadata JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format_version: u32,
    pub model: ModelConfig,
    pub norm: SceneNorm,
    /// Optimizer steps done.
    pub step: usize,
    /// Training wall time so far (seconds), summed over resumed runs.
    pub elapsed_s: f64,
    /// Training photo names, in GLO latent order.
    pub train_names: Vec<String>,
    /// Exposure value per training photo (EV, absolute).
    pub train_ev: Vec<f64>,
    /// Mean EV of the training photos: the model sees `ev - ev_mean`.
    pub ev_mean: f64,
    /// The `[train]` section used.
    pub config: TrainConfig,
    /// Adam hyper-parameters and step (when moments are stored).
    pub adam: Option<(AdamConfig, u64)>,
    /// Mean cone radius per unit distance of the training cameras (default for rendering).
    #[serde(default)]
    pub mean_radius: Option<f32>,
}

fn bytes_of(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn floats_of(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Write a checkpoint atomically (temporary file + rename) with its JSON sidecar.
pub fn save(
    path: &Path,
    model: &Model,
    adam: Option<&[Adam]>,
    meta: &CheckpointMeta,
) -> Result<(), NerfError> {
    let io = |e: std::io::Error| NerfError::Io(path.to_path_buf(), e.to_string());
    let mut bufs: Vec<(String, Vec<u8>, usize)> = Vec::new();
    for (name, p) in model.names.iter().zip(&model.params) {
        bufs.push((name.clone(), bytes_of(p), p.len()));
    }
    if let Some(adam) = adam {
        for (name, a) in model.names.iter().zip(adam) {
            bufs.push((format!("adam.m.{name}"), bytes_of(&a.m), a.m.len()));
            bufs.push((format!("adam.v.{name}"), bytes_of(&a.v), a.v.len()));
        }
    }
    let views: Vec<(String, TensorView)> = bufs
        .iter()
        .map(|(n, b, len)| {
            Ok((
                n.clone(),
                TensorView::new(Dtype::F32, vec![*len], b)
                    .map_err(|e| NerfError::Checkpoint(path.to_path_buf(), e.to_string()))?,
            ))
        })
        .collect::<Result<_, NerfError>>()?;
    let json = serde_json::to_string(meta)
        .map_err(|e| NerfError::Checkpoint(path.to_path_buf(), e.to_string()))?;
    let mut info = HashMap::new();
    info.insert("flythrough".to_string(), json.clone());
    let bytes = safetensors::tensor::serialize(views, Some(info))
        .map_err(|e| NerfError::Checkpoint(path.to_path_buf(), e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    flythrough_core::run::write_atomic(path, &bytes).map_err(io)?;
    let pretty = serde_json::to_string_pretty(meta).unwrap_or(json);
    flythrough_core::run::write_atomic(&path.with_extension("json"), pretty.as_bytes())
        .map_err(io)?;
    Ok(())
}

/// Read a checkpoint: the model, the Adam states when stored, and the metadata.
pub fn load(path: &Path) -> Result<(Model, Option<Vec<Adam>>, CheckpointMeta), NerfError> {
    let err = |m: String| NerfError::Checkpoint(path.to_path_buf(), m);
    let bytes =
        std::fs::read(path).map_err(|e| NerfError::Io(path.to_path_buf(), e.to_string()))?;
    let (_, md) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| err(e.to_string()))?;
    let json = md
        .metadata()
        .as_ref()
        .and_then(|m| m.get("flythrough"))
        .ok_or_else(|| {
            err(
                "no `flythrough` metadata in the safetensors header: not a flythrough checkpoint"
                    .into(),
            )
        })?;
    let meta: CheckpointMeta =
        serde_json::from_str(json).map_err(|e| err(format!("bad metadata: {e}")))?;
    if meta.format_version != FORMAT_VERSION {
        return Err(err(format!(
            "format version {} (this program reads {FORMAT_VERSION})",
            meta.format_version
        )));
    }
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(e.to_string()))?;
    let mut model = Model::new(meta.model.clone(), meta.norm.near as f32, 0);
    for (name, p) in model.names.iter().zip(model.params.iter_mut()) {
        let v = st
            .tensor(name)
            .map_err(|e| err(format!("tensor {name}: {e}")))?;
        if v.dtype() != Dtype::F32 || v.data().len() != p.len() * 4 {
            return Err(err(format!(
                "tensor {name}: expected {} f32 values",
                p.len()
            )));
        }
        *p = floats_of(v.data());
    }
    let adam = match meta.adam {
        Some((cfg, step)) => {
            let mut out = Vec::new();
            for (name, p) in model.names.iter().zip(&model.params) {
                let m = st
                    .tensor(&format!("adam.m.{name}"))
                    .map_err(|e| err(format!("adam.m.{name}: {e}")))?;
                let v = st
                    .tensor(&format!("adam.v.{name}"))
                    .map_err(|e| err(format!("adam.v.{name}: {e}")))?;
                let mut a = Adam::new(p.len(), cfg);
                a.m = floats_of(m.data());
                a.v = floats_of(v.data());
                if a.m.len() != p.len() || a.v.len() != p.len() {
                    return Err(err(format!("adam state of {name} has the wrong length")));
                }
                a.step = step;
                out.push(a);
            }
            Some(out)
        }
        None => None,
    };
    Ok((model, adam, meta))
}
