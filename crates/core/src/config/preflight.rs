//! Checks of a loaded config against the file system, made before any stage runs (by
//! `flythrough config --check` and at the start of `flythrough run`, through the same function):
//! every photo name the config mentions is a plain file name of a photo inside the photo folder,
//! the run folder and the photo folder do not contain each other, an imported SfM model is there and
//! reads (every file parsed, counts bounded by the file sizes, at least one image, cameras for all),
//! and the render stage's inputs (at least 2 keyframes) are complete before hours of training.
//!
//! When the original photos are gone (the folder deleted or emptied, e.g. by a data-retention
//! policy that keeps only the redacted copies) the names are checked against the committed capture
//! manifest of the run folder instead, and the run continues from the committed privacy output.

use super::{Appearance, ConfigError, LoadedConfig};
use crate::images::is_image_name;
use crate::manifest::Manifest;
use crate::run::{RunDir, Stage};
use std::path::{Path, PathBuf};

/// Whether the original photos are there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Originals {
    /// The photo folder exists and holds photos.
    Present,
    /// The photo folder is missing or holds no photo; the text says which.
    Gone(String),
}

/// The state of a config's photo folder: [`Originals::Gone`] when it does not exist or holds no
/// photo file (JPEG, PNG, TIFF).
pub fn originals(photos_dir: &Path) -> Originals {
    match std::fs::read_dir(photos_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Originals::Gone(format!(
            "the photo folder {} does not exist",
            photos_dir.display()
        )),
        Err(e) => Originals::Gone(format!(
            "the photo folder {} cannot be read: {e}",
            photos_dir.display()
        )),
        Ok(rd) => {
            let any = rd.flatten().any(|e| {
                e.path().is_file()
                    && e.file_name()
                        .to_str()
                        .is_some_and(|n| !n.starts_with('.') && is_image_name(n))
            });
            if any {
                Originals::Present
            } else {
                Originals::Gone(format!(
                    "the photo folder {} holds no photo",
                    photos_dir.display()
                ))
            }
        }
    }
}

/// Is `name` a plain file name (no folder part, not `.` or `..`, not absolute)? `Err` says why not.
pub fn plain_file_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("is empty".into());
    }
    if name.contains(['/', '\\']) || Path::new(name).is_absolute() {
        return Err(
            "must be a file name inside the photo folder, without a folder part or path separator"
                .into(),
        );
    }
    if name == "." || name == ".." {
        return Err("must be a photo's file name".into());
    }
    if name.contains('\0') {
        return Err("contains a NUL character".into());
    }
    Ok(())
}

/// Where the names are looked up.
enum Names<'a> {
    /// The original photo folder (canonical path).
    Folder(PathBuf),
    /// The committed capture manifest (the originals are gone).
    Manifest(&'a Manifest, PathBuf),
    /// The listing of a remote photo folder (object storage): names and its URL.
    Listing(&'a [String], &'a str),
}

impl Names<'_> {
    /// `Err(what is wrong)` unless `name` is a photo of the folder (a regular file, or a link whose
    /// target is inside the folder) or of the manifest.
    fn check(&self, name: &str) -> Result<(), String> {
        plain_file_name(name)?;
        match self {
            Names::Folder(dir) => {
                let p = dir.join(name);
                let meta = std::fs::symlink_metadata(&p)
                    .map_err(|_| format!("is not in the photo folder {}", dir.display()))?;
                if meta.file_type().is_symlink() {
                    let target =
                        std::fs::canonicalize(&p).map_err(|e| format!("is a broken link: {e}"))?;
                    if !target.starts_with(dir) {
                        return Err(format!(
                            "is a link to {}, outside the photo folder {}",
                            target.display(),
                            dir.display()
                        ));
                    }
                }
                if !p.is_file() {
                    return Err(format!(
                        "is not a file of the photo folder {}",
                        dir.display()
                    ));
                }
                if !is_image_name(name) {
                    return Err("is not a JPEG, PNG or TIFF photo".into());
                }
                Ok(())
            }
            Names::Listing(names, url) => {
                if names.iter().any(|n| n == name) {
                    Ok(())
                } else {
                    Err(format!("is not in the photo folder {url}"))
                }
            }
            Names::Manifest(m, path) => {
                if m.photo(name).is_some() {
                    Ok(())
                } else {
                    Err(format!(
                        "is not one of the photos of the committed capture ({})",
                        path.display()
                    ))
                }
            }
        }
    }
}

/// Every check of `cfg` that can be made before a stage runs, for a run into `run` (when known)
/// that goes as far as `until`. Returns whether the original photos are there; when they are gone,
/// the run folder must hold a committed capture (its manifest is what names are checked against).
pub fn preflight(
    cfg: &LoadedConfig,
    run: Option<&RunDir>,
    until: Stage,
) -> Result<Originals, ConfigError> {
    preflight_in(cfg, run, until, None)
}

/// [`preflight`] for a venue whose photos are in object storage: `remote` is the listing of photo
/// names and the folder's URL (the local photo folder is a download cache, filled when capture runs).
pub fn preflight_in(
    cfg: &LoadedConfig,
    run: Option<&RunDir>,
    until: Stage,
    remote: Option<(&[String], &str)>,
) -> Result<Originals, ConfigError> {
    let err = |msg: String| ConfigError {
        path: cfg.path.clone(),
        msg,
    };
    let c = &cfg.config;
    let originals = match remote {
        Some(_) => Originals::Present,
        None => originals(&cfg.photos_dir),
    };
    let manifest;
    let names = match (&originals, remote) {
        (Originals::Present, Some((listing, url))) => {
            if listing.len() < 2 {
                return Err(err(format!(
                    "[venue] photos = {url:?} holds {} photo; a reconstruction needs at least 2 (many more, overlapping)",
                    listing.len()
                )));
            }
            Names::Listing(listing, url)
        }
        (Originals::Present, None) => {
            let dir = std::fs::canonicalize(&cfg.photos_dir).map_err(|e| {
                err(format!(
                    "[venue] photos = {:?}: {}: {e}",
                    c.venue.photos,
                    cfg.photos_dir.display()
                ))
            })?;
            let photos = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.flatten()
                        .filter(|e| e.path().is_file())
                        .filter(|e| e.file_name().to_str().is_some_and(is_image_name))
                        .count()
                })
                .unwrap_or(0);
            if photos < 2 {
                return Err(err(format!(
                    "[venue] photos = {:?}: {} holds {photos} photo; a reconstruction needs at least 2 (many more, overlapping)",
                    c.venue.photos,
                    dir.display()
                )));
            }
            Names::Folder(dir)
        }
        (Originals::Gone(why), _) => {
            let committed = run
                .and_then(|r| crate::CaptureOutput::open(r).ok())
                .map(|c| c.manifest_path())
                .filter(|p| p.is_file());
            let Some(mpath) = committed else {
                return Err(err(format!(
                    "[venue] photos = {:?}: {why}, and there is no committed capture in the run folder to continue from",
                    c.venue.photos
                )));
            };
            manifest =
                Manifest::read(&mpath).map_err(|e| err(format!("{}: {e}", mpath.display())))?;
            Names::Manifest(&manifest, mpath)
        }
    };
    if let Some(run) = run {
        check_folders(cfg, run).map_err(err)?;
    }
    // Photo names: keyframes, calibration pairs, privacy overrides, the appearance photo.
    for (i, k) in c.venue.keyframes.iter().enumerate() {
        names
            .check(k)
            .map_err(|e| err(format!("[venue] keyframes #{} = {k:?}: {e}", i + 1)))?;
    }
    for (i, cal) in c.calibration.iter().enumerate() {
        for (key, name) in [("a", &cal.a), ("b", &cal.b)] {
            names
                .check(name)
                .map_err(|e| err(format!("[[calibration]] #{} {key} = {name:?}: {e}", i + 1)))?;
        }
    }
    for (i, r) in c.privacy.extra_regions.iter().enumerate() {
        names.check(&r.photo).map_err(|e| {
            err(format!(
                "[[privacy.extra_regions]] #{} photo = {:?}: {e}",
                i + 1,
                r.photo
            ))
        })?;
    }
    for (i, r) in c.privacy.keep.iter().enumerate() {
        names.check(&r.photo).map_err(|e| {
            err(format!(
                "[[privacy.keep]] #{} photo = {:?}: {e}",
                i + 1,
                r.photo
            ))
        })?;
    }
    if let Some(rel) = &c.sfm.import
        && until >= Stage::Sfm
    {
        let dir = cfg.dir.join(rel);
        let has = |stem: &str| {
            dir.join(format!("{stem}.txt")).is_file() || dir.join(format!("{stem}.bin")).is_file()
        };
        if !["cameras", "images", "points3D"].iter().all(|s| has(s)) {
            return Err(err(format!(
                "[sfm] import = {rel:?}: {} is not a COLMAP model folder (cameras, images and points3D, .txt or .bin)",
                dir.display()
            )));
        }
        // Read the model, as the sfm stage will: a damaged or crafted file is found here, naming it.
        let rec = crate::Reconstruction::read(&dir)
            .map_err(|e| err(format!("[sfm] import = {rel:?}: {e}")))?;
        rec.check_usable()
            .map_err(|m| err(format!("[sfm] import = {rel:?}: {}: {m}", dir.display())))?;
    }
    if until >= Stage::Render {
        let n = c.venue.keyframes.len();
        if n < 2 {
            return Err(err(format!(
                "[venue] keyframes lists {n} photo(s); the fly-through path needs at least 2 (where it starts and where it ends)"
            )));
        }
        if let Some(available) = crate::memory::mem_available() {
            c.render.check_memory(available).map_err(err)?;
        }
        if let Appearance::Photo(name) = &c.render.appearance {
            names.check(name).map_err(|e| {
                err(format!(
                    "[render] appearance = {name:?}: {e} (use \"mean\", \"zero\" or a training photo's file name)"
                ))
            })?;
        }
    }
    Ok(originals)
}

/// The run folder must not be the photo folder, nor contain it (the runner renames and deletes
/// folders inside the run folder).
fn check_folders(cfg: &LoadedConfig, run: &RunDir) -> Result<(), String> {
    let canon = |p: &Path| std::fs::canonicalize(p).ok();
    let (Some(photos), Some(root)) = (canon(&cfg.photos_dir), canon(run.root())) else {
        return Ok(());
    };
    if photos == root {
        return Err(format!(
            "the run folder {} is the photo folder; choose another --out (the default is runs/<venue name> beside the config)",
            run.root().display()
        ));
    }
    if photos.starts_with(&root) {
        return Err(format!(
            "the photo folder {} is inside the run folder {}; choose another --out",
            cfg.photos_dir.display(),
            run.root().display()
        ));
    }
    Ok(())
}
