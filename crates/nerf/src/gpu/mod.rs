//! The GPU back end of the NeRF stage: the WGSL kernels of `shaders/` run through the host module
//! `flythrough-gpu` (the only crate that calls wgpu). It does not go through candle: the candle
//! graph and the CPU kernels stay the reference every GPU kernel is checked against.
//!
//! - [`shaders`]: build-time composition of the WGSL files.
//! - [`kernels`]: each kernel's parameter block, and the compiled pipelines of a device.
//! - [`model`]: the model's parameters on the device (same buffers and layouts as [`crate::model::Model`]).
//! - [`batch`]: a batch of rays on the device and its forward/backward as lists of dispatches.
//! - [`render`]: rendering rays and whole frames (camera or 360°) in chunks.

pub mod batch;
pub mod kernels;
pub mod model;
pub mod render;
pub mod shaders;

pub use model::GpuModel;
pub use render::{FrameCamera, FrameTicket, GpuRenderer};

#[cfg(test)]
mod tests;
