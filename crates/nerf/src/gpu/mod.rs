//! The GPU back end of the NeRF stage: the WGSL kernels of `shaders/` run through the host module
//! `flythrough-gpu` (the only crate that calls wgpu). It does not go through candle: the candle
//! graph and the CPU kernels stay the reference every GPU kernel is checked against.
//!
//! - [`shaders`]: build-time composition of the WGSL files.
//! - [`kernels`]: each kernel's parameter block, and the compiled pipelines of a device.
//! - [`model`]: the model's parameters on the device (same buffers and layouts as [`crate::model::Model`]).
//! - [`batch`]: a batch of rays on the device and its forward/backward as lists of dispatches.
//! - [`sampler`]: training batches drawn on the device from the photos uploaded once.
//! - [`inference`]: rendering rays and whole frames (camera or 360°) in chunks.
//! - [`train`]: the training loop with one submit per step and asynchronous read-backs.

pub mod batch;
pub mod inference;
pub mod kernels;
pub mod model;
pub mod sampler;
pub mod shaders;
pub mod train;

pub use inference::{FrameCamera, FrameTicket, GpuRenderer};
pub use model::GpuModel;

use crate::NerfError;
use flythrough_core::config::Device;
use flythrough_core::summary::{AdapterInfo, DeviceUsed};
use flythrough_gpu::{Gpu, Selection};
use std::sync::Arc;

/// Where the NeRF runs, for the log and the stage summaries: the CPU, or `g`'s adapter.
pub fn device_used(g: Option<&Gpu>) -> DeviceUsed {
    match g {
        None => DeviceUsed::cpu(),
        Some(g) => {
            let a = g.adapter();
            DeviceUsed::gpu(AdapterInfo {
                name: a.name.clone(),
                backend: a.backend.clone(),
                driver: a.driver.clone(),
                kind: serde_json::to_value(a.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                software: a.software,
                atomics: serde_json::to_value(g.atomic_mode())
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                subgroups: g.caps().subgroups,
                shader_f16: g.caps().shader_f16,
                subgroup_min_size: g.limits().subgroup_min_size,
                subgroup_max_size: g.limits().subgroup_max_size,
                mlp_activations: training_act(g).name().into(),
                hash_scatter: hash_scatter(g).into(),
                mlp_weights: mlp_weights().into(),
                mlp_register_tile: format!("{}x4", mlp_rows()),
                runtime_checks: g.runtime_checks(),
            })
        }
    }
}

/// Environment variable that keeps GPU training's MLP activations in f32 on a device with shader
/// f16 (`0`; any other value, or unset, lets it use f16).
pub const F16_ENV: &str = "FLYTHROUGH_GPU_F16";

/// How GPU training on `g` stores the MLPs' hidden activations: f16 where the device has shader
/// f16, unless [`F16_ENV`] is `0`.
pub fn training_act(g: &Gpu) -> shaders::Act {
    act_for(g.caps().shader_f16, std::env::var(F16_ENV).ok().as_deref())
}

/// [`training_act`]'s rule for a device with (`has_f16`) or without shader f16 and the value of
/// [`F16_ENV`].
pub fn act_for(has_f16: bool, env: Option<&str>) -> shaders::Act {
    if feature_on(has_f16, env) {
        shaders::Act::F16
    } else {
        shaders::Act::F32
    }
}

/// Environment variable for the subgroup pre-reduction of the hash-grid gradient scatter: `0`
/// turns it off, `1` turns it on wherever the device has subgroups (software rasterisers
/// included); unset, it is on for hardware adapters with subgroups.
pub const SUBGROUPS_ENV: &str = "FLYTHROUGH_GPU_SUBGROUPS";

/// Whether the kernels of `g` use subgroups ([`subgroups_rule`] with [`SUBGROUPS_ENV`]).
pub fn use_subgroups(g: &Gpu) -> bool {
    subgroups_rule(
        g.caps().subgroups,
        g.adapter().software,
        std::env::var(SUBGROUPS_ENV).ok().as_deref(),
    )
}

/// The subgroup scatter is used where the device has subgroups (`has`), by default not on a
/// software rasteriser: lavapipe runs the peel rounds' subgroup operations in divergent control
/// flow slowly (hash_bwd 33 ms against 9 ms plain on its tiny benchmark step); `env` (the value of
/// [`SUBGROUPS_ENV`], if set) `0` turns it off, `1` on.
pub fn subgroups_rule(has: bool, software: bool, env: Option<&str>) -> bool {
    match env.map(str::trim) {
        Some("0") => false,
        Some("1") => has,
        _ => has && !software,
    }
}

/// How the hash-grid gradient scatter of `g` runs: `subgroup` or `plain` (`stage.json`'s
/// `hash_scatter`).
pub fn hash_scatter(g: &Gpu) -> &'static str {
    if use_subgroups(g) {
        "subgroup"
    } else {
        "plain"
    }
}

/// Environment variable that stages the MLP kernels' weights in workgroup memory (`workgroup`;
/// unset or `global`: read from global memory, the default until a GPU has measured both).
pub const MLP_WEIGHTS_ENV: &str = "FLYTHROUGH_GPU_MLP_WEIGHTS";

/// Weight rows the MLP kernels stage in workgroup memory at a time ([`shaders::MlpShape::stage`]):
/// [`shaders::STAGE_ROWS`] when [`MLP_WEIGHTS_ENV`] is `workgroup`, else 0.
pub fn mlp_stage() -> u32 {
    match std::env::var(MLP_WEIGHTS_ENV)
        .ok()
        .as_deref()
        .map(str::trim)
    {
        Some("workgroup") => shaders::STAGE_ROWS,
        _ => 0,
    }
}

/// Environment variable that sets the rows of the MLP kernels' register tiles (`8`; unset or `4`:
/// 4 rows x 4 columns, the default until a GPU has measured both).
pub const MLP_ROWS_ENV: &str = "FLYTHROUGH_GPU_MLP_ROWS";

/// Rows per invocation of the MLP kernels' register tiles ([`shaders::MlpShape::with_rows`]): 8
/// when [`MLP_ROWS_ENV`] is `8`, else 4.
pub fn mlp_rows() -> u32 {
    match std::env::var(MLP_ROWS_ENV).ok().as_deref().map(str::trim) {
        Some("8") => 8,
        _ => 4,
    }
}

/// Where the MLP kernels read their weights ([`mlp_stage`]): `workgroup` or `global` memory
/// (`stage.json`'s `mlp_weights`).
pub fn mlp_weights() -> &'static str {
    if mlp_stage() > 0 {
        "workgroup"
    } else {
        "global"
    }
}

/// An optional device feature is used where the device has it (`has`) unless its switch (`env`,
/// the variable's value if set) is `0`.
pub fn feature_on(has: bool, env: Option<&str>) -> bool {
    has && env.map(str::trim) != Some("0")
}

/// The GPU for a `device` setting: `None` means the CPU. `auto` takes a hardware adapter and
/// falls back to the CPU (with a warning when an adapter exists but fails); `gpu` takes any
/// adapter and fails with a message naming what to install when there is none.
pub fn open(device: Device) -> Result<Option<Arc<Gpu>>, NerfError> {
    match device {
        Device::Cpu => Ok(None),
        Device::Auto => match Gpu::shared(Selection::Hardware) {
            Ok(g) => Ok(g),
            Err(e) => {
                tracing::warn!("device = \"auto\": {e}; running on the CPU");
                Ok(None)
            }
        },
        Device::Gpu => Gpu::shared(Selection::Any)
            .map_err(|e| NerfError::Gpu(format!("device = \"gpu\": {e}"))),
    }
}

#[cfg(test)]
mod tests;
