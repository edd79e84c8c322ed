//! The GPU back end of the NeRF stage: the WGSL kernels of `shaders/` run through the host module
//! `flythrough-gpu` (the only crate that calls wgpu). It does not go through candle: the candle
//! graph and the CPU kernels stay the reference every GPU kernel is checked against.
//!
//! - [`shaders`]: build-time composition of the WGSL files.
//! - [`kernels`]: each kernel's parameter block, and the compiled pipelines of a device.
//! - [`model`]: the model's parameters on the device (same buffers and layouts as [`crate::model::Model`]).
//! - [`batch`]: a batch of rays on the device and its forward/backward as lists of dispatches.
//! - [`render`]: rendering rays and whole frames (camera or 360°) in chunks.
//! - [`train`]: the training loop with one submit per step and asynchronous read-backs.

pub mod batch;
pub mod kernels;
pub mod model;
pub mod render;
pub mod shaders;
pub mod train;

pub use model::GpuModel;
pub use render::{FrameCamera, FrameTicket, GpuRenderer};

use crate::NerfError;
use flythrough_core::config::Device;
use flythrough_gpu::{AdapterDesc, Gpu, Selection};
use std::sync::Arc;

/// Where a stage ran, as `stage.json` and the log report it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeviceReport {
    /// `"cpu"` or `"gpu"`.
    pub device: &'static str,
    /// The GPU adapter (name, backend, driver, kind), when on a GPU.
    pub adapter: Option<AdapterDesc>,
}

impl DeviceReport {
    pub fn cpu() -> DeviceReport {
        DeviceReport {
            device: "cpu",
            adapter: None,
        }
    }
    pub fn gpu(g: &Gpu) -> DeviceReport {
        DeviceReport {
            device: "gpu",
            adapter: Some(g.adapter().clone()),
        }
    }
    /// One line for the log: `cpu` or `gpu: NVIDIA H200 (vulkan, NVIDIA 550.54)`.
    pub fn line(&self) -> String {
        match &self.adapter {
            Some(a) => format!("gpu: {a}"),
            None => "cpu".into(),
        }
    }
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
