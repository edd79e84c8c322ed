//! Checkpoints: one `safetensors` file holding every parameter buffer (`<name>`, 1-D f32, layouts in
//! the kernels' module docs) and, in resume checkpoints only, the Adam moments (`adam.m.<name>`,
//! `adam.v.<name>`); the safetensors header's `__metadata__` has one key, `flythrough`, whose value is
//! the JSON of [`CheckpointMeta`] (model config, scene normalisation, step, photos, exposures, config).
//! A sidecar `<file>.json` repeats that JSON for people and tools that do not read safetensors.
//!
//! Two kinds, one format and one loader ([`load`]):
//! - **weights** (`train/checkpoints/final.safetensors`, what rendering reads): parameters only,
//!   `meta.adam = None`; a third of the size.
//! - **resume** (`RUN/.work/train/checkpoints/last.safetensors`, written by the driver's background
//!   thread every `checkpoint_seconds`, every `checkpoint_every` steps when set, and at the end):
//!   parameters + Adam moments, `meta.adam = Some((hyper-parameters, step))`. The batch RNG
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

/// The little-endian bytes of `v`: the floats themselves on a little-endian host (no copy).
fn bytes_of(v: &[f32]) -> std::borrow::Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        std::borrow::Cow::Borrowed(bytemuck::cast_slice(v))
    } else {
        std::borrow::Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
}

fn floats_of(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Write a checkpoint atomically (temporary file + rename) with its JSON sidecar. The tensors are
/// streamed to the file from the model's and Adam's own vectors (no copy of the data in memory).
pub fn save(
    path: &Path,
    model: &Model,
    adam: Option<&[Adam]>,
    meta: &CheckpointMeta,
) -> Result<(), NerfError> {
    let io = |e: std::io::Error| NerfError::Io(path.to_path_buf(), e.to_string());
    let mut bufs: Vec<(String, std::borrow::Cow<'_, [u8]>, usize)> = Vec::new();
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
                TensorView::new(Dtype::F32, vec![*len], b.as_ref())
                    .map_err(|e| NerfError::Checkpoint(path.to_path_buf(), e.to_string()))?,
            ))
        })
        .collect::<Result<_, NerfError>>()?;
    let json = serde_json::to_string(meta)
        .map_err(|e| NerfError::Checkpoint(path.to_path_buf(), e.to_string()))?;
    let mut info = HashMap::new();
    info.insert("flythrough".to_string(), json.clone());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(flythrough_core::run::PARTIAL_SUFFIX);
    let tmp = std::path::PathBuf::from(tmp);
    let written = safetensors::tensor::serialize_to_file(views, Some(info), &tmp)
        .map_err(|e| NerfError::Checkpoint(path.to_path_buf(), e.to_string()))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(io));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    let pretty = serde_json::to_string_pretty(meta).unwrap_or(json);
    flythrough_core::run::write_atomic(&path.with_extension("json"), pretty.as_bytes())
        .map_err(io)?;
    Ok(())
}

/// Read a checkpoint: the model, the Adam states when stored, and the metadata.
pub fn load(path: &Path) -> Result<(Model, Option<Vec<Adam>>, CheckpointMeta), NerfError> {
    let bytes =
        std::fs::read(path).map_err(|e| NerfError::Io(path.to_path_buf(), e.to_string()))?;
    load_bytes(path, &bytes)
}

/// [`load`] from the file's bytes (`path` names it in errors). The file is untrusted: the metadata's
/// model config is range-checked and every buffer's length is checked against it before anything
/// is allocated from it, so a damaged or crafted checkpoint is an error naming the file, never a
/// panic or a huge allocation.
pub fn load_bytes(
    path: &Path,
    bytes: &[u8],
) -> Result<(Model, Option<Vec<Adam>>, CheckpointMeta), NerfError> {
    let err = |m: String| NerfError::Checkpoint(path.to_path_buf(), m);
    let (_, md) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| err(e.to_string()))?;
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
    let shapes = meta
        .model
        .param_shapes()
        .map_err(|m| err(format!("bad model config in the metadata: {m}")))?;
    let n = meta.model.num_latents;
    if meta.train_names.len() != n || meta.train_ev.len() != n {
        return Err(err(format!(
            "bad metadata: {} training photo names and {} exposure values for {n} latents",
            meta.train_names.len(),
            meta.train_ev.len()
        )));
    }
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| err(e.to_string()))?;
    // A buffer of `len` f32 values, checked before it is copied.
    let floats = |name: &str, len: usize| -> Result<Vec<f32>, NerfError> {
        let v = st
            .tensor(name)
            .map_err(|e| err(format!("tensor {name}: {e}")))?;
        if v.dtype() != Dtype::F32 || v.data().len() != len * 4 {
            return Err(err(format!(
                "tensor {name}: expected {len} f32 values (from the metadata's model config), found {} bytes of {:?}",
                v.data().len(),
                v.dtype()
            )));
        }
        Ok(floats_of(v.data()))
    };
    let mut names = Vec::with_capacity(shapes.len());
    let mut params = Vec::with_capacity(shapes.len());
    for (name, len) in &shapes {
        params.push(floats(name, *len)?);
        names.push(name.clone());
    }
    let model = Model {
        cfg: meta.model.clone(),
        names,
        params,
        near: meta.norm.near as f32,
    };
    let adam = match meta.adam {
        Some((cfg, step)) => {
            let mut out = Vec::new();
            for (name, p) in model.names.iter().zip(&model.params) {
                let mut a = Adam::new(0, cfg);
                a.m = floats(&format!("adam.m.{name}"), p.len())?;
                a.v = floats(&format!("adam.v.{name}"), p.len())?;
                a.step = step;
                out.push(a);
            }
            Some(out)
        }
        None => None,
    };
    Ok((model, adam, meta))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kernels::AdamConfig;

    /// A small valid checkpoint (4-level hash grids of 2^8 entries, 2 photos), with Adam moments.
    pub(crate) fn small_checkpoint(path: &Path) {
        let train = TrainConfig {
            hash_levels: 4,
            hash_table_log2: 8,
            hash_max_res: 64,
            mlp_width: 16,
            glo_dim: 4,
            ..TrainConfig::default()
        };
        let model = Model::new(ModelConfig::from_train(&train, 2), 0.05, 0);
        let adams: Vec<Adam> = model
            .params
            .iter()
            .map(|p| Adam::new(p.len(), AdamConfig::default()))
            .collect();
        let meta = CheckpointMeta {
            format_version: FORMAT_VERSION,
            model: model.cfg.clone(),
            norm: SceneNorm {
                center: [0.0; 3],
                scale: 0.25,
                near: 0.05,
            },
            step: 3,
            elapsed_s: 1.0,
            train_names: vec!["a.jpg".into(), "b.jpg".into()],
            train_ev: vec![0.0, 1.0],
            ev_mean: 0.5,
            config: train,
            adam: Some((AdamConfig::default(), 3)),
            mean_radius: None,
        };
        save(path, &model, Some(&adams), &meta).unwrap();
    }

    /// The checkpoint at `path` rewritten with its metadata JSON changed by `f` (tensors kept).
    pub(crate) fn with_meta(bytes: &[u8], f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
        let (_, md) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
        let mut meta: serde_json::Value =
            serde_json::from_str(&md.metadata().as_ref().unwrap()["flythrough"]).unwrap();
        f(&mut meta);
        let mut info = HashMap::new();
        info.insert("flythrough".to_string(), meta.to_string());
        safetensors::tensor::serialize(st.tensors(), Some(info)).unwrap()
    }

    fn load_err(bytes: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("crafted.safetensors");
        std::fs::write(&p, bytes).unwrap();
        match load(&p) {
            Ok(_) => panic!("the crafted checkpoint loaded"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_valid_checkpoint_loads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ck.safetensors");
        small_checkpoint(&p);
        let (model, adam, meta) = load(&p).unwrap();
        assert_eq!(meta.step, 3);
        assert_eq!(adam.unwrap().len(), model.params.len());
    }

    /// Before the checks the model was built from the metadata first: fewer proposal grids than
    /// proposal levels panicked (index out of bounds), a 2^40-entry hash table aborted on its
    /// allocation.
    #[test]
    fn metadata_that_disagrees_with_the_tensors_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ck.safetensors");
        small_checkpoint(&p);
        let bytes = std::fs::read(&p).unwrap();
        let e = load_err(&with_meta(&bytes, |m| {
            m["model"]["prop_grids"] = serde_json::json!([]);
        }));
        assert!(
            e.contains("crafted.safetensors") && e.contains("prop_grids"),
            "{e}"
        );
        let e = load_err(&with_meta(&bytes, |m| {
            m["model"]["glo_dim"] = serde_json::json!(1u64 << 40);
        }));
        assert!(
            e.contains("crafted.safetensors") && e.contains("glo"),
            "{e}"
        );
    }
}

/// Fuzz properties of the checkpoint loader (issue 20): arbitrary bytes, a damaged valid checkpoint
/// (bits flipped, cut short, the safetensors header length or any 8 bytes overwritten with huge
/// values) and valid files whose metadata has one number replaced with an edge value load to `Ok`
/// or `Err`, never a panic or a huge allocation. [`flythrough_testkit::fuzz::CASES`] (256) cases
/// per property.
#[cfg(test)]
mod fuzz {
    use super::tests::{small_checkpoint, with_meta};
    use super::*;
    use flythrough_testkit::fuzz::{self as fz, proptest::prelude::*};
    use std::sync::OnceLock;

    fn seed() -> &'static [u8] {
        static SEED: OnceLock<Vec<u8>> = OnceLock::new();
        SEED.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("ck.safetensors");
            small_checkpoint(&p);
            std::fs::read(&p).unwrap()
        })
    }

    /// JSON pointers of every number in `v`.
    fn numbers(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Number(_) => out.push(at),
            serde_json::Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    numbers(x, format!("{at}/{i}"), out);
                }
            }
            serde_json::Value::Object(o) => {
                for (k, x) in o {
                    numbers(x, format!("{at}/{k}"), out);
                }
            }
            _ => {}
        }
    }

    fn edge_number() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            fz::huge_u64().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            Just(serde_json::json!(-1)),
            Just(serde_json::json!(1e300)),
            Just(serde_json::json!(0.5)),
        ]
    }

    fn load_ok(bytes: &[u8]) -> bool {
        load_bytes(Path::new("fuzz.safetensors"), bytes).is_ok()
    }

    #[test]
    fn the_seed_loads() {
        assert!(load_ok(seed()));
    }

    proptest! {
        #![proptest_config(fz::config())]

        #[test]
        fn damaged_checkpoints_never_panic(bytes in fz::bytes_or_mutated(vec![seed().to_vec()], 1024)) {
            load_ok(&bytes);
        }

        #[test]
        fn checkpoint_metadata_never_panics(pick in any::<usize>(), value in edge_number()) {
            let bytes = with_meta(seed(), |m| {
                let mut ptrs = Vec::new();
                numbers(m, String::new(), &mut ptrs);
                let ptr = &ptrs[pick % ptrs.len()];
                *m.pointer_mut(ptr).unwrap() = value;
            });
            load_ok(&bytes);
        }
    }
}
