//! Structure from motion: camera poses, intrinsics and metric scale from the redacted photos.

pub mod ba;
pub mod controller;
pub mod eval;
pub mod features;
pub mod geometry;
pub mod init_pair;
pub mod mapper;
pub mod matching;
pub mod pairs;
pub mod stage;

pub use eval::{PoseEval, eval_pose_dirs, eval_poses};

/// The `tracing` target of the reconstruction's diagnostics (features per photo, matches per pair,
/// the self-calibration curve, the initial-pair search): `FLYTHROUGH_LOG=flythrough_sfm::debug=debug`.
pub const DEBUG_TARGET: &str = "flythrough_sfm::debug";

/// Whether the diagnostics of [`DEBUG_TARGET`] are wanted (they cost a pass over the matches).
pub(crate) fn debug_enabled() -> bool {
    tracing::enabled!(target: DEBUG_TARGET, tracing::Level::DEBUG)
}
pub use stage::{Report, SfmError, SfmInputs, SfmStage, run};
