//! The `flythrough` command line: argument parsing lives in `main.rs`; this library holds the stage
//! wiring so tests can drive it. Start with [`registry`] (the stages, in order) and [`pipeline`]
//! (the runner that iterates them).

pub mod batch;
pub mod init;
pub mod pipeline;
pub mod registry;
pub mod remote;
