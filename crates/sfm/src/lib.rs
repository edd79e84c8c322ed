//! Structure from motion: camera poses, intrinsics and metric scale from the redacted photos.

pub mod ba;
pub mod eval;
pub mod features;
pub mod geometry;
pub mod init_pair;
pub mod mapper;
pub mod matching;
pub mod pairs;
pub mod stage;

pub use eval::{PoseEval, eval_pose_dirs, eval_poses};
pub use stage::{Report, SfmError, SfmInputs, run};
