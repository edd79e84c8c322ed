//! Shared types of the flythrough pipeline.
//!
//! Conventions used across every crate:
//! - Cameras and poses follow COLMAP: world-to-camera poses, OpenCV camera axes (x right, y down,
//!   z forward), pixel centres at +0.5, f64 for geometry ([`camera`], [`pose`]).
//! - Photo ids are the 1-based ids of `capture/manifest.json` ([`manifest`]); file names are the key
//!   that crosses stages.
//! - A stage reads only committed outputs of earlier stages in the run folder ([`run`]); downstream
//!   stages read photos only through [`images::RedactedImages`].

pub mod alloc;
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
pub mod summary;
pub mod testdata;

pub use camera::{Camera, CameraModel};
pub use colmap::Reconstruction;
pub use config::{Config, LoadedConfig};
pub use images::RedactedImages;
pub use lock::RunLock;
pub use manifest::{Manifest, PhotoRecord};
pub use pose::{Pose, Sim3};
pub use run::{RunDir, Stage, StageSummary};
