//! Shared types of the flythrough pipeline.
//!
//! Conventions used across every crate:
//! - Cameras and poses follow COLMAP: world-to-camera poses, OpenCV camera axes (x right, y down,
//!   z forward), pixel centres at +0.5, f64 for geometry ([`camera`], [`pose`]).
//! - Photo ids are the 1-based ids of `capture/manifest.json` ([`manifest`]); file names are the key
//!   that crosses stages.
//! - The stage contract is [`stage`] (start reading there): one trait every stage implements, its
//!   inputs hashed, its machine settings apart. A stage reads only committed outputs of the earlier
//!   stages it declares, through typed handles ([`artifacts`]); downstream stages read photos only
//!   through [`images::RedactedImages`]. The runner's mechanics (atomic commit, resume) are [`run`].

pub mod alloc;
pub mod artifacts;
pub mod camera;
pub mod colmap;
pub mod config;
pub mod html;
pub mod images;
pub mod jpeg;
pub mod lock;
pub mod manifest;
pub mod memory;
pub mod nerfstudio;
pub mod pose;
pub mod progress;
pub mod run;
pub mod seal;
pub mod stage;
pub mod summary;

pub use artifacts::{BakeOutput, CaptureOutput, SfmOutput, SfmReport, TrainOutput};
pub use camera::{Camera, CameraModel};
pub use colmap::Reconstruction;
pub use config::{Config, LoadedConfig};
pub use images::RedactedImages;
pub use lock::RunLock;
pub use manifest::{Manifest, PhotoRecord};
pub use pose::{Pose, Sim3};
pub use run::{RunDir, StageSummary};
pub use stage::{Machine, PipelineStage, Stage, StageContext, Upstream};
