//! The `flythrough` command line: argument parsing lives in `main.rs`; this library holds the stage
//! wiring so tests can drive it.

pub mod batch;
pub mod init;
pub mod pipeline;
pub mod remote;
