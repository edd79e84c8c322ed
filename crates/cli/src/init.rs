//! `flythrough init PHOTO_DIR`: a ready `venue.toml` beside the photos, so a new user runs two
//! commands: `flythrough init photos/` and `flythrough run photos/venue.toml`.
//!
//! The config names the venue after the folder, reads the photos from the folder itself
//! (`photos = "."`), picks keyframes evenly along the capture order (EXIF `DateTimeOriginal`, then
//! the file name), lists every key of every section with its documentation (as
//! `flythrough config --defaults`), and explains calibration pairs in a commented-out example.
//! The run folder then defaults to `PHOTO_DIR/runs/<name>`: capture reads only the files of the photo
//! folder, not its sub-folders, so the run's outputs are never taken for photos.

use crate::pipeline::PipelineError;
use flythrough_core::config::{Config, UnregisteredKeyframes, Venue};
use flythrough_core::run::Stage;
use std::path::{Path, PathBuf};

/// File name of the config `init` writes.
pub const CONFIG_FILE: &str = "venue.toml";

/// Keyframes for `n` photos: about one per 10 photos, at least 2 (3 when there are enough photos),
/// at most 8.
pub fn keyframe_count(n: usize) -> usize {
    (n / 10).clamp(3, 8).min(n)
}

/// `k` indices spread evenly over `0..n`, first and last included.
pub fn even_indices(n: usize, k: usize) -> Vec<usize> {
    match (n, k) {
        (0, _) | (_, 0) => vec![],
        (_, 1) => vec![0],
        _ => {
            let mut v: Vec<usize> = (0..k)
                .map(|i| ((n - 1) as f64 * i as f64 / (k - 1) as f64).round() as usize)
                .collect();
            v.dedup();
            v
        }
    }
}

/// The photos of `dir` in capture order: by EXIF `DateTimeOriginal` (else `DateTime`), photos
/// without one after those with, then by file name.
pub fn capture_order(dir: &Path) -> Result<Vec<String>, PipelineError> {
    let (paths, _) =
        flythrough_capture::list_photos(dir).map_err(|e| PipelineError::Config(e.to_string()))?;
    let mut photos: Vec<(Option<String>, String)> = paths
        .iter()
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let time = flythrough_capture::exif::read_exif(p).fields.datetime;
            Some((time, name))
        })
        .collect();
    photos.sort_by(|a, b| (a.0.is_none(), &a.0, &a.1).cmp(&(b.0.is_none(), &b.0, &b.1)));
    Ok(photos.into_iter().map(|(_, n)| n).collect())
}

/// Folder names that say nothing about the venue: the parent folder's name is used instead
/// (`fox/images` → `fox`).
const GENERIC_FOLDERS: &[&str] = &[
    "images", "image", "photos", "photo", "pictures", "img", "jpg", "dcim",
];

/// A venue name from the photo folder's name (or its parent's, when the folder is called `images`,
/// `photos`, …): letters, digits, `-` and `_` kept, anything else as `-`.
fn venue_name(dir: &Path) -> String {
    let canon = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let name_of = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut base = name_of(&canon);
    if GENERIC_FOLDERS.contains(&base.to_lowercase().as_str())
        && let Some(parent) = canon.parent().map(name_of).filter(|p| !p.is_empty())
    {
        base = parent;
    }
    let name: String = base
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-').to_string();
    if name.is_empty() {
        "venue".into()
    } else {
        name
    }
}

/// Write `PHOTO_DIR/venue.toml` (refused when it exists, unless `force`); returns its path.
pub fn init_venue(photo_dir: &Path, force: bool) -> Result<PathBuf, PipelineError> {
    if !photo_dir.is_dir() {
        return Err(PipelineError::Config(format!(
            "{}: not a folder of photos",
            photo_dir.display()
        )));
    }
    let path = photo_dir.join(CONFIG_FILE);
    if path.exists() && !force {
        return Err(PipelineError::Config(format!(
            "{}: already exists; edit it, or pass --force to replace it",
            path.display()
        )));
    }
    let order = capture_order(photo_dir)?;
    if order.len() < 2 {
        return Err(PipelineError::Config(format!(
            "{}: {} photo(s) (JPEG, PNG, TIFF); a fly-through needs many overlapping photos",
            photo_dir.display(),
            order.len()
        )));
    }
    let keyframes: Vec<String> = even_indices(order.len(), keyframe_count(order.len()))
        .into_iter()
        .map(|i| order[i].clone())
        .collect();
    let mut config = Config {
        venue: Venue {
            name: venue_name(photo_dir),
            photos: ".".into(),
            keyframes,
        },
        ..Default::default()
    };
    // Chosen before SfM has run: a keyframe it cannot place is left out of the path, not fatal.
    config.render.unregistered_keyframes = UnregisteredKeyframes::Skip;
    let header = format!(
        "# flythrough venue config written by `flythrough init` for {n} photos. Paths are relative to\n\
         # this file; every key is listed with its default and what it does; unknown keys are errors.\n\
         # Run it with: flythrough run {cfg}\n\
         # The keyframes are {k} photos spread evenly along the capture order (EXIF time, then file\n\
         # name): the fly-through passes them in this order. Replace them with the spots the video\n\
         # should pass, in order.\n",
        n = order.len(),
        cfg = path.display(),
        k = config.venue.keyframes.len(),
    );
    let text = config.documented(&header);
    // What is written must be what a run accepts.
    let parsed = Config::parse(&text, &path).map_err(|e| PipelineError::Config(e.to_string()))?;
    debug_assert_eq!(parsed.venue, config.venue);
    let loaded = flythrough_core::config::LoadedConfig {
        config: parsed,
        path: path.clone(),
        dir: photo_dir.to_path_buf(),
        photos_dir: photo_dir.to_path_buf(),
    };
    flythrough_core::config::preflight(&loaded, None, Stage::Render)
        .map_err(|e| PipelineError::Config(e.to_string()))?;
    flythrough_core::run::write_atomic(&path, text.as_bytes()).map_err(|e| {
        PipelineError::Config(format!("{}: cannot write the config: {e}", path.display()))
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn venue_names_come_from_the_folder_or_its_parent() {
        let dir = tempfile::tempdir().unwrap();
        for (sub, want) in [
            ("fox/images", "fox"),
            ("Corner Café", "Corner-Café"),
            ("x/Photos", "x"),
        ] {
            let p = dir.path().join(sub);
            std::fs::create_dir_all(&p).unwrap();
            assert_eq!(venue_name(&p), want);
        }
    }

    #[test]
    fn keyframes_are_spread_evenly() {
        assert_eq!(even_indices(10, 3), vec![0, 5, 9]);
        assert_eq!(even_indices(2, 3), vec![0, 1]);
        assert_eq!(even_indices(100, 8).len(), 8);
        assert_eq!(*even_indices(100, 8).last().unwrap(), 99);
        assert_eq!(keyframe_count(2), 2);
        assert_eq!(keyframe_count(40), 4);
        assert_eq!(keyframe_count(1000), 8);
    }
}
