//! Hot CPU kernels with hand-written backward passes, and candle custom ops over them.
//!
//! Two ways in:
//! - **Plain functions** on flat `&[f32]` buffers (the fast training path, no graph overhead):
//!   [`hash_encode_forward`] / [`hash_encode_backward`], [`mlp_forward`] / [`mlp_forward_into`] /
//!   [`mlp_forward_inference`] / [`mlp_backward`], [`Adam`], [`clip_grad_norm`].
//! - **candle ops** ([`crate::candle::kernel_ops::hash_encode`], [`crate::candle::kernel_ops::mlp`])
//!   for building the model as a candle graph;
//!   their gradients are checked against plain candle ops and finite differences in the tests.
//!
//! # Naming and layout conventions (every kernel; the WGSL port keeps them)
//! - `N` samples, always the slowest-varying index: every per-sample array is **row-major,
//!   sample-major** (`[N * width]`), f32.
//! - Parameters are **one flat f32 buffer per module** (grid, each MLP), layouts documented in
//!   [`hashgrid`] and [`mlp`]. Gradients have the same layout as their parameters.
//! - Backward functions **accumulate** into `d_params` (`+=`; the caller zeroes once per step) and
//!   **overwrite** input gradients such as `d_x`.
//! - Positions fed to the grid are in `[0, 1]^3` (the caller maps contracted coordinates there);
//!   `sigma` is a footprint radius in those units.
//! - Slice-length mismatches are caller bugs and panic with a message; configs are checked with
//!   `validate()`, which returns [`KernelError`].
//!
//! Measured throughput and the commands that reproduce it: `crates/nerf/KERNELS.md`.

pub mod adam;
pub mod gemm;
pub mod hashgrid;
pub mod mlp;

pub use adam::{Adam, AdamConfig, clip_grad_norm, clip_scale, global_grad_norm, grad_sq_norm};
pub use hashgrid::{
    HashGridConfig, LevelInfo, hash_encode_backward, hash_encode_backward_positions,
    hash_encode_forward, level_weight,
};
pub use mlp::{
    MlpCache, MlpConfig, MlpInput, mlp_backward, mlp_backward_grouped, mlp_forward,
    mlp_forward_grouped_inference, mlp_forward_grouped_into, mlp_forward_inference,
    mlp_forward_into,
};

/// A kernel configuration that is out of range.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The message names the config and the allowed range.
    #[error("invalid kernel config: {0}")]
    Config(String),
}
