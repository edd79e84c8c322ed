//! The privacy boundary: downstream stages read photos only through [`RedactedImages`].
//!
//! Only the capture and privacy stages ever open an original photo. A `RedactedImages` handle can be
//! made only from a run folder whose privacy stage was committed by the stage runner: its
//! `RUN/privacy/stage.json` records a fingerprint of the redacted files (name and blake3 of every
//! file in `RUN/privacy/images/`, see [`ImageFingerprint`]), and [`RedactedImages::open`] checks that
//! the files on disk are exactly those (none changed, added or removed) before it hands out a
//! handle. A hand-written `{}` stage.json, a half-committed folder, or a photo copied in later is
//! refused with an error that says what differs. The handle reads only `RUN/privacy/images/` and has
//! no way to reach the original photo folder.
//!
//! Test and benchmark sets whose photos carry no personal data (the Middlebury temple, the synthetic
//! room) may be wrapped without a privacy stage by `RedactedImages::from_cleared_folder`, which exists
//! only in this crate's unit tests and with the `test-support` cargo feature (turned on by the other
//! crates' dev-dependencies, so never in a release build of the binary).

use crate::run::{RunDir, Stage, StageRecord};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Folder inside `RUN/privacy/` that holds the redacted photos.
pub const REDACTED_DIR: &str = "images";

#[derive(Debug, thiserror::Error)]
pub enum RedactedError {
    #[error(
        "{0}: the privacy stage has not finished for this run (no privacy/stage.json); run it first"
    )]
    NotRedacted(PathBuf),
    #[error(
        "{path}: not a privacy stage record written by the stage runner ({msg}); the redacted photos cannot be trusted: run `flythrough run CONFIG --force privacy`"
    )]
    BadRecord { path: PathBuf, msg: String },
    #[error(
        "{dir}: the redacted photos differ from those the privacy stage committed ({diff}); the redacted photos cannot be trusted: run `flythrough run CONFIG --force privacy`"
    )]
    Tampered { dir: PathBuf, diff: String },
    #[error("{path}: {msg}")]
    Read { path: PathBuf, msg: String },
    #[error("{0} is not one of the redacted photos")]
    Unknown(String),
}

impl RedactedError {
    /// What is wrong, without the advice to redo the stage (for the runner's re-run message).
    pub fn reason(&self) -> String {
        match self {
            RedactedError::NotRedacted(_) => "it has no stage.json".into(),
            RedactedError::BadRecord { msg, .. } => format!("stage.json: {msg}"),
            RedactedError::Tampered { diff, .. } => format!("the redacted photos differ ({diff})"),
            RedactedError::Read { path, msg } => format!("{}: {msg}", path.display()),
            RedactedError::Unknown(n) => format!("{n} is not one of the redacted photos"),
        }
    }
}

/// Names and blake3 hashes of every file of a folder: what the privacy stage committed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFingerprint {
    /// File name → blake3 of its bytes (hex).
    pub files: BTreeMap<String, String>,
}

impl ImageFingerprint {
    /// Fingerprint every entry of `dir`. Anything that is not a regular file (a folder, a symbolic
    /// link that could point at an original photo) or whose name is not UTF-8 is an error.
    pub fn of_folder(dir: &Path) -> Result<ImageFingerprint, RedactedError> {
        let read = |path: &Path, e: std::io::Error| RedactedError::Read {
            path: path.to_path_buf(),
            msg: e.to_string(),
        };
        let mut files = BTreeMap::new();
        for e in std::fs::read_dir(dir).map_err(|e| read(dir, e))? {
            let e = e.map_err(|e| read(dir, e))?;
            let path = e.path();
            let ft = e.file_type().map_err(|e| read(&path, e))?;
            if !ft.is_file() {
                return Err(RedactedError::Read {
                    path,
                    msg: "not a regular file; privacy/images holds only the redacted photos".into(),
                });
            }
            let name = e
                .file_name()
                .into_string()
                .map_err(|_| RedactedError::Read {
                    path: path.clone(),
                    msg: "file name is not UTF-8".into(),
                })?;
            let hash = crate::run::hash_file(&path).map_err(|e| read(&path, e))?;
            files.insert(name, hash);
        }
        Ok(ImageFingerprint { files })
    }

    /// What differs from `other` (the files on disk), for people: `changed: a.jpg; added: b.jpg`,
    /// at most a few names per kind. Empty when equal.
    pub fn diff(&self, on_disk: &ImageFingerprint) -> String {
        let names = |v: Vec<&String>| {
            let n = v.len();
            let mut s: Vec<String> = v.into_iter().take(5).cloned().collect();
            if n > 5 {
                s.push(format!("and {} more", n - 5));
            }
            s.join(", ")
        };
        let changed: Vec<&String> = self
            .files
            .iter()
            .filter(|(n, h)| on_disk.files.get(*n).is_some_and(|d| d != *h))
            .map(|(n, _)| n)
            .collect();
        let removed: Vec<&String> = self
            .files
            .keys()
            .filter(|n| !on_disk.files.contains_key(*n))
            .collect();
        let added: Vec<&String> = on_disk
            .files
            .keys()
            .filter(|n| !self.files.contains_key(*n))
            .collect();
        let mut parts = Vec::new();
        for (what, v) in [("changed", changed), ("added", added), ("removed", removed)] {
            if !v.is_empty() {
                parts.push(format!("{what}: {}", names(v)));
            }
        }
        parts.join("; ")
    }
}

/// Read-only access to the redacted (blurred) photos of a run.
#[derive(Debug, Clone)]
pub struct RedactedImages {
    dir: PathBuf,
    names: Vec<String>,
}

impl RedactedImages {
    /// Open `RUN/privacy/images` of a run whose privacy stage is committed, after checking that the
    /// files are exactly those the stage's `stage.json` fingerprinted.
    pub fn open(run: &RunDir) -> Result<Self, RedactedError> {
        let stage = run.stage_dir(Stage::Privacy);
        let rec_path = stage.join("stage.json");
        let text = match std::fs::read_to_string(&rec_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RedactedError::NotRedacted(run.root().to_path_buf()));
            }
            Err(e) => {
                return Err(RedactedError::Read {
                    path: rec_path,
                    msg: e.to_string(),
                });
            }
        };
        let bad = |msg: String| RedactedError::BadRecord {
            path: rec_path.clone(),
            msg,
        };
        let rec: StageRecord = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if rec.stage != Stage::Privacy {
            return Err(bad(format!("it is the record of stage {}", rec.stage)));
        }
        let key = crate::seal::SealKey::current().map_err(|e| bad(e.to_string()))?;
        rec.check_seal(key).map_err(bad)?;
        let Some(committed) = rec.redacted_images else {
            return Err(bad("it has no fingerprint of the redacted photos".into()));
        };
        let dir = stage.join(REDACTED_DIR);
        let on_disk = ImageFingerprint::of_folder(&dir)?;
        if on_disk != committed {
            return Err(RedactedError::Tampered {
                diff: committed.diff(&on_disk),
                dir,
            });
        }
        Ok(Self::with_names(dir, on_disk.files.into_keys().collect()))
    }

    /// Open a folder of photos that need no redaction (test and benchmark sets whose photos carry no
    /// personal data, e.g. the Middlebury temple). Only in tests and benchmarks (`test-support`).
    #[cfg(any(test, feature = "test-support"))]
    pub fn from_cleared_folder(dir: &Path) -> Result<Self, RedactedError> {
        let rd = std::fs::read_dir(dir).map_err(|e| RedactedError::Read {
            path: dir.to_path_buf(),
            msg: e.to_string(),
        })?;
        let names = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        Ok(Self::with_names(dir.to_path_buf(), names))
    }

    fn with_names(dir: PathBuf, names: Vec<String>) -> Self {
        let mut names: Vec<String> = names.into_iter().filter(|n| is_image_name(n)).collect();
        names.sort();
        RedactedImages { dir, names }
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
    use crate::run::{StageSummary, run_stage};

    /// Commit a privacy stage through the stage runner with two small photos.
    fn committed_run(dir: &Path) -> RunDir {
        let run = RunDir::new(dir.join("run"));
        run_stage(&run, Stage::Privacy, "in", "cfg", false, |out, _| {
            std::fs::create_dir_all(out.join(REDACTED_DIR))?;
            for (n, w) in [("a.png", 4), ("b.png", 5)] {
                image::RgbImage::new(w, 3).save(out.join(REDACTED_DIR).join(n))?;
            }
            Ok(StageSummary::default())
        })
        .unwrap();
        run
    }

    #[test]
    fn opens_what_the_privacy_stage_committed() {
        let dir = tempfile::tempdir().unwrap();
        let run = committed_run(dir.path());
        let rec = run.record(Stage::Privacy).unwrap();
        assert_eq!(rec.redacted_images.as_ref().unwrap().files.len(), 2);
        let r = RedactedImages::open(&run).unwrap();
        assert_eq!(r.names(), ["a.png", "b.png"]);
        assert_eq!(r.load_rgb("a.png").unwrap().dimensions(), (4, 3));
        assert!(r.path("../secret.jpg").is_err());
        assert!(r.dir().starts_with(run.root()));
    }

    #[test]
    fn refuses_a_run_without_a_committed_privacy_stage() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let images = run.stage_dir(Stage::Privacy).join(REDACTED_DIR);
        std::fs::create_dir_all(&images).unwrap();
        image::RgbImage::new(4, 3)
            .save(images.join("a.png"))
            .unwrap();
        let e = RedactedImages::open(&run).unwrap_err();
        assert!(matches!(e, RedactedError::NotRedacted(_)), "{e}");
        // A hand-written record is not a commit by the stage runner.
        std::fs::write(run.stage_dir(Stage::Privacy).join("stage.json"), "{}").unwrap();
        let e = RedactedImages::open(&run).unwrap_err();
        assert!(matches!(e, RedactedError::BadRecord { .. }), "{e}");
        assert!(e.to_string().contains("stage.json"), "{e}");
    }

    /// Issue 20, defect 1: a copied-in photo with its new hash written into `stage.json`, or any
    /// other edited field, is refused because the record's seal no longer verifies; and the runner
    /// makes the stage again instead of calling it up to date.
    #[test]
    fn a_forged_record_is_refused_and_redone() {
        let dir = tempfile::tempdir().unwrap();
        let rec_path = |run: &RunDir| run.stage_dir(Stage::Privacy).join("stage.json");
        let edit = |run: &RunDir, f: &dyn Fn(&mut serde_json::Value)| {
            let mut v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(rec_path(run)).unwrap()).unwrap();
            f(&mut v);
            std::fs::write(rec_path(run), serde_json::to_string_pretty(&v).unwrap()).unwrap();
        };
        // The photo swapped and its hash rewritten: the file list matches, the seal does not.
        let run = committed_run(&dir.path().join("swap"));
        let a = run
            .stage_dir(Stage::Privacy)
            .join(REDACTED_DIR)
            .join("a.png");
        image::RgbImage::from_pixel(4, 3, image::Rgb([200, 10, 10]))
            .save(&a)
            .unwrap();
        let h = blake3::hash(&std::fs::read(&a).unwrap())
            .to_hex()
            .to_string();
        edit(&run, &|v| {
            v["redacted_images"]["files"]["a.png"] = h.clone().into()
        });
        let e = RedactedImages::open(&run).unwrap_err();
        assert!(matches!(e, RedactedError::BadRecord { .. }), "{e}");
        assert!(e.to_string().contains("seal does not verify"), "{e}");
        // One character of the fingerprint, the summary, or the seal itself; or no seal at all.
        type Edit = fn(&mut serde_json::Value);
        let edits: [(&str, Edit); 4] = [
            ("seal does not verify", |v| {
                let f = v["fingerprint"].as_str().unwrap().to_string();
                let c = if f.starts_with('0') { "1" } else { "0" };
                v["fingerprint"] = format!("{c}{}", &f[1..]).into();
            }),
            ("seal does not verify", |v| v["summary"]["faces"] = 0.into()),
            ("seal does not verify", |v| {
                v["seal"] = "0".repeat(64).into();
            }),
            ("carries no seal", |v| {
                v.as_object_mut().unwrap().remove("seal");
            }),
        ];
        for (i, (want, f)) in edits.into_iter().enumerate() {
            let run = committed_run(&dir.path().join(i.to_string()));
            RedactedImages::open(&run).unwrap();
            edit(&run, &f);
            let e = RedactedImages::open(&run).unwrap_err().to_string();
            assert!(e.contains(want), "edit {i}: {e}");
        }
        // The runner does not call the forged stage up to date: it runs the stage body again.
        let mut ran = false;
        let out = run_stage(&run, Stage::Privacy, "in", "cfg", false, |out, _| {
            ran = true;
            std::fs::create_dir_all(out.join(REDACTED_DIR))?;
            image::RgbImage::new(4, 3).save(out.join(REDACTED_DIR).join("a.png"))?;
            Ok(StageSummary::default())
        })
        .unwrap();
        assert!(ran && matches!(out, crate::run::StageOutcome::Ran(_)));
        RedactedImages::open(&run).unwrap();
        // An untouched run stays up to date.
        let run = committed_run(&dir.path().join("untouched"));
        let again = run_stage(&run, Stage::Privacy, "in", "cfg", false, |_, _| {
            panic!("an untouched privacy stage is up to date")
        })
        .unwrap();
        assert!(matches!(again, crate::run::StageOutcome::UpToDate(_)));
    }

    #[cfg(unix)]
    #[test]
    fn refuses_changed_added_removed_or_linked_files() {
        let dir = tempfile::tempdir().unwrap();
        let images = |run: &RunDir| run.stage_dir(Stage::Privacy).join(REDACTED_DIR);
        type Tamper = fn(&Path);
        let cases: [(&str, Tamper); 4] = [
            ("changed: a.png", |d| {
                image::RgbImage::from_pixel(4, 3, image::Rgb([9, 9, 9]))
                    .save(d.join("a.png"))
                    .unwrap()
            }),
            ("added: c.jpg", |d| {
                std::fs::write(d.join("c.jpg"), b"x").unwrap()
            }),
            ("removed: b.png", |d| {
                std::fs::remove_file(d.join("b.png")).unwrap()
            }),
            ("not a regular file", |d| {
                std::os::unix::fs::symlink("/etc/hostname", d.join("link.jpg")).unwrap()
            }),
        ];
        for (i, (want, tamper)) in cases.into_iter().enumerate() {
            let run = committed_run(&dir.path().join(i.to_string()));
            tamper(&images(&run));
            let e = RedactedImages::open(&run).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
    }
}
