//! The candle side of the CPU back end: custom ops with hand-written backward passes, and the
//! model's loss as a candle graph. Training runs the direct-call path ([`crate::model`]); this graph
//! is the reference its gradients are checked against.
//!
//! - [`kernel_ops`]: ops over the hot kernels (hash-grid encoding, fused MLP).
//! - [`ops`]: ops for per-ray volume rendering with the distortion loss, and the interlevel loss.
//! - [`graph`]: the hash-grid model's loss wired from them.

pub mod graph;
pub mod kernel_ops;
pub mod ops;
