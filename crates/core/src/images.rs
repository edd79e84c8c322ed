//! The privacy boundary: downstream stages read photos only through [`RedactedImages`].
//!
//! Only the capture and privacy stages ever open an original photo. A `RedactedImages` handle can be
//! made only from a run folder whose privacy stage finished (`RUN/privacy/stage.json` exists), and it
//! reads only `RUN/privacy/images/`. It has no way to reach the original photo folder.

use crate::run::{RunDir, Stage};
use image::RgbImage;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RedactedError {
    #[error(
        "{0}: the privacy stage has not finished for this run (no privacy/stage.json); run it first"
    )]
    NotRedacted(PathBuf),
    #[error("{path}: {msg}")]
    Read { path: PathBuf, msg: String },
    #[error("{0} is not one of the redacted photos")]
    Unknown(String),
}

/// Read-only access to the redacted (blurred) photos of a run.
#[derive(Debug, Clone)]
pub struct RedactedImages {
    dir: PathBuf,
    names: Vec<String>,
}

impl RedactedImages {
    /// Open `RUN/privacy/images` of a run whose privacy stage is committed.
    pub fn open(run: &RunDir) -> Result<Self, RedactedError> {
        let stage = run.stage_dir(Stage::Privacy);
        if !stage.join("stage.json").is_file() {
            return Err(RedactedError::NotRedacted(run.root().to_path_buf()));
        }
        Self::from_folder(&stage.join("images"))
    }

    /// Open a folder of photos that need no redaction (test and benchmark sets whose photos carry no
    /// personal data, e.g. the Middlebury temple). Never call this on a user's photo folder.
    pub fn from_cleared_folder(dir: &Path) -> Result<Self, RedactedError> {
        Self::from_folder(dir)
    }

    fn from_folder(dir: &Path) -> Result<Self, RedactedError> {
        let rd = std::fs::read_dir(dir).map_err(|e| RedactedError::Read {
            path: dir.to_path_buf(),
            msg: e.to_string(),
        })?;
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| is_image_name(n))
            .collect();
        names.sort();
        Ok(RedactedImages {
            dir: dir.to_path_buf(),
            names,
        })
    }

    /// Photo file names, sorted.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The folder the redacted photos are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of one redacted photo.
    pub fn path(&self, name: &str) -> Result<PathBuf, RedactedError> {
        if self.names.iter().any(|n| n == name) {
            Ok(self.dir.join(name))
        } else {
            Err(RedactedError::Unknown(name.to_string()))
        }
    }

    /// Decode one redacted photo as RGB8 (orientation is already applied by the privacy stage).
    pub fn load_rgb(&self, name: &str) -> Result<RgbImage, RedactedError> {
        let p = self.path(name)?;
        let img = image::open(&p).map_err(|e| RedactedError::Read {
            path: p.clone(),
            msg: e.to_string(),
        })?;
        Ok(img.to_rgb8())
    }
}

/// File extensions the pipeline reads as photos.
pub fn is_image_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".jpg", ".jpeg", ".png", ".tif", ".tiff"]
        .iter()
        .any(|e| lower.ends_with(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_run_without_privacy_stage() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        std::fs::create_dir_all(run.stage_dir(Stage::Privacy).join("images")).unwrap();
        let e = RedactedImages::open(&run).unwrap_err();
        assert!(matches!(e, RedactedError::NotRedacted(_)));
        std::fs::write(run.stage_dir(Stage::Privacy).join("stage.json"), "{}").unwrap();
        image::RgbImage::new(4, 3)
            .save(run.stage_dir(Stage::Privacy).join("images/a.png"))
            .unwrap();
        let r = RedactedImages::open(&run).unwrap();
        assert_eq!(r.names(), ["a.png"]);
        assert_eq!(r.load_rgb("a.png").unwrap().dimensions(), (4, 3));
        assert!(r.path("../secret.jpg").is_err());
    }
}
