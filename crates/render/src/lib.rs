//! The render stage: the keyframe path, 360° (equirectangular) and perspective frames, H.264 video
//! with Spherical Video V1/V2 metadata, and the viewer page.
//!
//! Entry points (called by the CLI):
//! - [`run`]: the stage body (`RUN/render/`): `path.json`, `flythrough_360.mp4`, `preview.mp4`,
//!   `viewer.html`, `stills/`.
//! - [`serve_viewer`]: `flythrough view RUN_DIR`, a localhost HTTP server for `RUN/render/`.
//!
//! Module map: [`path`] (spline, timing), [`cameras`] (equirectangular, perspective), [`source`]
//! (the [`RaySource`] trait and an analytic scene), [`frames`] (tiled parallel rendering),
//! [`encode`] (ffmpeg / openh264), [`mp4`] (box parser/writer, spherical metadata), [`viewer`],
//! [`serve`], [`stage`] (the orchestration). `RUN/report.html` is assembled by the run
//! (`flythrough-report`), not by this stage.

#[cfg(feature = "nerf")]
pub mod baked_source;
pub mod cameras;
pub mod encode;
pub mod frames;
pub mod mp4;
#[cfg(feature = "nerf")]
pub mod nerf_source;
pub mod path;
pub mod serve;
pub mod source;
pub mod stage;
pub mod viewer;

pub use cameras::{Equirect, Perspective, RayCamera};
/// The stage's summary, as stored in `render/stage.json`.
pub use flythrough_core::summary::RenderSummary;
pub use path::{CameraPath, Heading, Keyframe, PathSample, PathSettings};
pub use serve::serve_viewer;
pub use source::{AnalyticRoom, RaySource};
pub use stage::{RenderInputs, RenderStage, run, run_with_source};

use std::path::PathBuf;

/// Everything that can go wrong in the render stage.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{0}")]
    Config(String),
    #[error(
        "keyframe {name:?} was not registered by SfM (not in {model}); pick a photo that SfM registered (see sfm/report.json) or check the name in [venue] keyframes"
    )]
    NotRegistered { name: String, model: PathBuf },
    #[error(transparent)]
    Path(#[from] path::PathError),
    #[error("{path}: {msg}")]
    Input { path: PathBuf, msg: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("video: {0}")]
    Encode(#[from] encode::EncodeError),
    #[error("360° metadata: {0}")]
    Mp4(#[from] mp4::Mp4Error),
    #[error("model: {0}")]
    Model(String),
    #[error("viewer server: {0}")]
    Serve(String),
}

/// `map_err` helper: an I/O error at a path.
pub(crate) fn io_at(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> RenderError + '_ {
    move |source| RenderError::Io {
        path: path.to_path_buf(),
        source,
    }
}
