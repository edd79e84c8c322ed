//! The run folder and the resumable stage runner.
//!
//! Layout: `RUN/<stage>/` holds a finished stage's outputs and its `stage.json`. A stage writes into
//! `RUN/.tmp-<stage>/` and is renamed into place only when it succeeded, so an interrupted or failed
//! stage leaves the previous good output untouched. Stages that must survive a kill mid-way
//! (training checkpoints, rendered frames) keep resumable state in `RUN/.work/<stage>/`, which is
//! deleted once the stage is committed.

use crate::images::ImageFingerprint;
use crate::summary::Summary;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use crate::stage::{Stage, UnknownStage};

/// Program version recorded in every `stage.json`.
pub const PROGRAM_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A run folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RunDir { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `RUN/<stage>`: a finished stage's outputs.
    pub fn stage_dir(&self, stage: Stage) -> PathBuf {
        self.root.join(stage.as_str())
    }
    /// `RUN/.work/<stage>`: resumable scratch state of a stage in progress.
    pub fn work_dir(&self, stage: Stage) -> PathBuf {
        self.root.join(".work").join(stage.as_str())
    }
    fn tmp_dir(&self, stage: Stage) -> PathBuf {
        self.root.join(format!(".tmp-{stage}"))
    }
    /// The committed record of a stage, if it finished.
    pub fn record(&self, stage: Stage) -> Option<StageRecord> {
        let s = std::fs::read_to_string(self.stage_dir(stage).join("stage.json")).ok()?;
        serde_json::from_str(&s).ok()
    }
}

/// `stage.json`: what a finished stage was computed from, and what it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    pub stage: Stage,
    pub program_version: String,
    /// Hash of the stage's inputs (photo contents for capture; upstream fingerprints otherwise).
    pub input_hash: String,
    /// Hash of the stage's config section.
    pub config_hash: String,
    /// Hash of the three above: what downstream stages hash as their input.
    pub fingerprint: String,
    /// Unix seconds.
    pub started: f64,
    pub finished: f64,
    pub seconds: f64,
    /// Counts and figures the stage reports (photos, faces, points, PSNR, ...).
    pub summary: BTreeMap<String, serde_json::Value>,
    /// Privacy stage only: names and blake3 of the files of `privacy/images/` as committed, computed
    /// by the runner itself just before the commit. [`crate::RedactedImages::open`] refuses a folder
    /// that does not match it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacted_images: Option<ImageFingerprint>,
    /// The stage's inputs as hashed into `config_hash` (its `Inputs`, see [`crate::stage`]), so a
    /// re-run can say which setting changed. Not part of any hash; absent in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<serde_json::Value>,
    /// Sealed stages (privacy) only: the keyed MAC of every other field of this record
    /// ([`crate::seal`]), with a key kept outside the run folder. A record whose seal does not verify
    /// was not written by a stage runner holding this user's key and is not trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

/// What a stage body returns: its typed summary ([`crate::summary`]), stored as the `summary` of
/// `stage.json`. Read it back with [`StageRecord::summary`].
#[derive(Debug, Clone, Default)]
pub struct StageSummary {
    stage: Option<Stage>,
    headline: String,
    values: BTreeMap<String, serde_json::Value>,
}

impl StageSummary {
    /// A stage's typed summary.
    pub fn of<T: Summary>(summary: &T) -> StageSummary {
        let values = match serde_json::to_value(summary) {
            Ok(serde_json::Value::Object(m)) => m.into_iter().collect(),
            _ => BTreeMap::new(),
        };
        StageSummary {
            stage: Some(T::STAGE),
            headline: summary.headline(),
            values,
        }
    }

    /// One line for the log.
    pub fn headline(&self) -> &str {
        &self.headline
    }
}

impl StageRecord {
    /// Seal the record (every field but `seal`) with `key`.
    pub fn seal_with(&mut self, key: &crate::seal::SealKey) {
        self.seal = None;
        self.seal = Some(crate::seal::seal(key, self));
    }

    /// Check the record's seal under `key`; the error says why it is not trusted.
    pub fn check_seal(&self, key: &crate::seal::SealKey) -> Result<(), String> {
        let Some(mac) = &self.seal else {
            return Err("it carries no seal (written by hand, or by a flythrough before 0.1 sealed the privacy stage)".into());
        };
        let unsealed = StageRecord {
            seal: None,
            ..self.clone()
        };
        if crate::seal::verify(key, &unsealed, mac) {
            Ok(())
        } else {
            Err(format!(
                "its seal does not verify: it was edited after the stage runner wrote it, or sealed with another key \
                 (another user's, or another {})",
                crate::seal::SEAL_KEY_ENV
            ))
        }
    }

    /// The stage's typed summary, as the stage wrote it.
    pub fn summary<T: Summary>(&self) -> Result<T, String> {
        if self.stage != T::STAGE {
            return Err(format!(
                "the record of stage {} holds no {} summary",
                self.stage,
                T::STAGE
            ));
        }
        let map: serde_json::Map<String, serde_json::Value> =
            self.summary.clone().into_iter().collect();
        serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| {
            format!(
                "the {} summary of stage.json does not match this program ({e}); redo the stage with --force {}",
                self.stage, self.stage
            )
        })
    }
}

/// A boxed error from a stage body.
pub type StageError = Box<dyn std::error::Error + Send + Sync>;

/// What happened to a stage.
#[derive(Debug, Clone, PartialEq)]
pub enum StageOutcome {
    /// Its `stage.json` matched: nothing was done.
    UpToDate(StageRecord),
    /// It ran and was committed.
    Ran(StageRecord),
}

impl StageOutcome {
    pub fn record(&self) -> &StageRecord {
        match self {
            StageOutcome::UpToDate(r) | StageOutcome::Ran(r) => r,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("stage {stage}: {source}")]
    Stage { stage: Stage, source: StageError },
    #[error("{path}: {}", describe_io(source))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "stage {stage}: no space left on the device while writing ({source}); the previous good output \
         of {stage} is untouched and the partial output was removed: free some space (or choose another \
         --out) and run again"
    )]
    NoSpace { stage: Stage, source: StageError },
}

/// Whether an error is a full disk (ENOSPC, or a quota), judged by the I/O error in its chain or,
/// for stage errors that carry only a message, by the OS's text for it.
pub fn is_no_space(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && is_no_space_io(io)
        {
            return true;
        }
        let text = err.to_string();
        if text.contains("No space left on device") || text.contains("os error 28") {
            return true;
        }
        cur = err.source();
    }
    false
}

fn is_no_space_io(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || e.raw_os_error() == Some(28)
}

/// An I/O error for messages: a full disk says so in plain words.
fn describe_io(e: &std::io::Error) -> String {
    if is_no_space_io(e) {
        format!("no space left on the device ({e})")
    } else {
        e.to_string()
    }
}

/// blake3 of some parts, as hex.
pub fn hash_parts(parts: &[&[u8]]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().to_hex().to_string()
}

/// blake3 of a file's bytes, as hex (read in chunks, never whole).
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path)?)?;
    Ok(h.finalize().to_hex().to_string())
}

/// Hash the contents and names of the given files (in the given order).
pub fn hash_files(paths: &[PathBuf]) -> std::io::Result<String> {
    let mut h = blake3::Hasher::new();
    for p in paths {
        h.update(
            p.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        let mut f = std::fs::File::open(p)?;
        h.update_reader(&mut f)?;
    }
    Ok(h.finalize().to_hex().to_string())
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What a stage is computed from: the hashes the runner compares with `stage.json`, and the inputs
/// JSON recorded beside them.
#[derive(Debug, Clone, Default)]
pub struct StageKey<'a> {
    pub input_hash: &'a str,
    pub config_hash: &'a str,
    /// The stage's inputs (what `config_hash` hashes), recorded in `stage.json`.
    pub inputs: Option<&'a serde_json::Value>,
}

/// Run one stage unless its `stage.json` already matches `input_hash` and `config_hash` (and `force`
/// is false). `body(out, work)` writes the stage's outputs into `out` (a fresh temporary folder) and may
/// keep resumable state in `work` (kept across interruptions when the inputs are unchanged). On success
/// `out` is committed atomically as `RUN/<stage>` with its `stage.json`; on failure nothing committed
/// changes.
pub fn run_stage<F>(
    run: &RunDir,
    stage: Stage,
    input_hash: &str,
    config_hash: &str,
    force: bool,
    body: F,
) -> Result<StageOutcome, RunError>
where
    F: FnOnce(&Path, &Path) -> Result<StageSummary, StageError>,
{
    let key = StageKey {
        input_hash,
        config_hash,
        inputs: None,
    };
    run_stage_with(run, stage, &key, force, body)
}

/// Why a committed stage does not match `key` (for the log), `None` when it does.
pub fn rerun_reason(rec: &StageRecord, key: &StageKey) -> Option<String> {
    if rec.program_version != PROGRAM_VERSION {
        return Some(format!(
            "committed by flythrough {}, this is {PROGRAM_VERSION}",
            rec.program_version
        ));
    }
    if rec.input_hash != key.input_hash {
        return Some(
            "what it reads changed (an earlier stage was redone, or the photos or an imported model changed)"
                .into(),
        );
    }
    if rec.config_hash != key.config_hash {
        let table = rec.stage.table();
        return Some(match (&rec.inputs, key.inputs) {
            (Some(old), Some(new)) => {
                let changes = crate::stage::describe_changes(old, new, 6);
                if changes.is_empty() {
                    format!("its settings hash changed ({table})")
                } else {
                    format!("settings changed: {}", changes.join("; "))
                }
            }
            _ => format!(
                "its settings changed, or this version reads more of the config for it than the one \
                 that ran it ({table}; that record does not list its settings)"
            ),
        });
    }
    None
}

/// [`run_stage`] with the stage's inputs recorded in `stage.json`; a committed stage that does not
/// match is re-run with a log line saying why.
pub fn run_stage_with<F>(
    run: &RunDir,
    stage: Stage,
    key: &StageKey,
    force: bool,
    body: F,
) -> Result<StageOutcome, RunError>
where
    F: FnOnce(&Path, &Path) -> Result<StageSummary, StageError>,
{
    let StageKey {
        input_hash,
        config_hash,
        ..
    } = *key;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RunError::Io { path, source }
    };
    if let Some(rec) = run.record(stage) {
        // A sealed folder is trusted only while its seal verifies and it holds what was sealed;
        // otherwise it is made again from the originals.
        let broken_seal = match stage.sealed_folder() {
            Some(_) => crate::images::RedactedImages::open(run)
                .err()
                .map(|e| format!("its output is not trusted: {}", e.reason())),
            None => None,
        };
        match broken_seal.or_else(|| rerun_reason(&rec, key)) {
            None if !force => return Ok(StageOutcome::UpToDate(rec)),
            Some(why) if !force => tracing::info!("{stage}: re-running: {why}"),
            _ => {}
        }
    }
    std::fs::create_dir_all(run.root()).map_err(io(run.root()))?;
    let tmp = run.tmp_dir(stage);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    // Resumable scratch is only valid for the same inputs and config.
    let work = run.work_dir(stage);
    let work_key = hash_parts(&[
        input_hash.as_bytes(),
        config_hash.as_bytes(),
        PROGRAM_VERSION.as_bytes(),
    ]);
    let key_file = work.join("inputs.key");
    let same_inputs = std::fs::read_to_string(&key_file)
        .map(|k| k.trim() == work_key)
        .unwrap_or(false);
    if (!same_inputs || force) && work.exists() {
        std::fs::remove_dir_all(&work).map_err(io(&work))?;
    }
    std::fs::create_dir_all(&work).map_err(io(&work))?;
    std::fs::write(&key_file, &work_key).map_err(io(&key_file))?;

    let started = now();
    let t0 = Instant::now();
    let summary = match body(&tmp, &work) {
        Ok(s) => s,
        Err(source) => {
            // The partial output is of no use (the next attempt starts from a fresh folder) and on a
            // full disk it is what holds the space: remove it now. `work` (resumable) stays.
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(if is_no_space(source.as_ref()) {
                RunError::NoSpace { stage, source }
            } else {
                RunError::Stage { stage, source }
            });
        }
    };
    if let Some(other) = summary.stage.filter(|s| *s != stage) {
        return Err(RunError::Stage {
            stage,
            source: format!("the stage body returned the summary of stage {other}").into(),
        });
    }
    let seconds = t0.elapsed().as_secs_f64();
    // The privacy boundary: seal what the privacy stage is about to commit.
    let redacted_images = if let Some(sealed) = stage.sealed_folder() {
        let dir = tmp.join(sealed);
        Some(
            ImageFingerprint::of_folder(&dir).map_err(|e| RunError::Stage {
                stage,
                source: Box::new(e),
            })?,
        )
    } else {
        None
    };
    let fingerprint = hash_parts(&[
        stage.as_str().as_bytes(),
        input_hash.as_bytes(),
        config_hash.as_bytes(),
        PROGRAM_VERSION.as_bytes(),
    ]);
    let mut rec = StageRecord {
        stage,
        program_version: PROGRAM_VERSION.to_string(),
        input_hash: input_hash.to_string(),
        config_hash: config_hash.to_string(),
        fingerprint,
        started,
        finished: now(),
        seconds,
        summary: summary.values,
        redacted_images,
        inputs: key.inputs.cloned(),
        seal: None,
    };
    if stage.sealed_folder().is_some() {
        let seal_key = crate::seal::SealKey::current().map_err(|e| RunError::Stage {
            stage,
            source: Box::new(e),
        })?;
        rec.seal_with(seal_key);
    }
    let rec_path = tmp.join("stage.json");
    write_atomic(
        &rec_path,
        serde_json::to_string_pretty(&rec)
            .unwrap_or_default()
            .as_bytes(),
    )
    .map_err(io(&rec_path))?;
    // Swap into place: old -> .old, tmp -> stage, remove .old.
    let dst = run.stage_dir(stage);
    let old = run.root().join(format!(".old-{stage}"));
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    if dst.exists() {
        std::fs::rename(&dst, &old).map_err(io(&dst))?;
    }
    std::fs::rename(&tmp, &dst).map_err(io(&tmp))?;
    if old.exists() {
        let _ = std::fs::remove_dir_all(&old);
    }
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir(run.root().join(".work"));
    Ok(StageOutcome::Ran(rec))
}

/// If a previous run died between the two renames of a commit, `RUN/.old-<stage>` is the last good
/// output: put it back.
pub fn recover_interrupted_commits(run: &RunDir) {
    for stage in Stage::ALL {
        let old = run.root().join(format!(".old-{stage}"));
        let dst = run.stage_dir(stage);
        if old.exists() && !dst.exists() {
            let _ = std::fs::rename(&old, &dst);
        }
    }
}

/// Suffix of a file being written by [`write_atomic`].
pub const PARTIAL_SUFFIX: &str = ".partial";

/// Write a file atomically: to `path.partial`, then rename. On failure (a full disk) the partial file
/// is removed and `path` is left as it was. The error is the OS's, unchanged: every caller names
/// `path` in its own error (`{path}: {error}`), so the message names the file once.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(PARTIAL_SUFFIX);
    let tmp = PathBuf::from(tmp);
    let r = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    r.inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// What [`clean_stale`] removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cleaned {
    pub paths: Vec<PathBuf>,
    pub bytes: u64,
}

fn tree_bytes(p: &Path) -> u64 {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| tree_bytes(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// Remove what a killed or failed process left in a run folder: `RUN/.tmp-*` folders (a stage's
/// uncommitted output), `*.partial` files (an interrupted [`write_atomic`]; in the run folder itself
/// and anywhere under `RUN/.work/`, where they are never read), and `RUN/.old-<stage>` folders whose
/// stage folder exists (a commit killed after its second rename; call
/// [`recover_interrupted_commits`] first). Never touches committed stage folders or the resumable
/// state in `RUN/.work/`. Symbolic links are removed as links, never followed. Call with the run
/// lock held ([`crate::RunLock`]): another process's temporary folders are not stale.
pub fn clean_stale(run: &RunDir) -> std::io::Result<Cleaned> {
    let mut out = Cleaned::default();
    let root = run.root();
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    let remove = |p: PathBuf, out: &mut Cleaned| -> std::io::Result<()> {
        let m = std::fs::symlink_metadata(&p)?;
        out.bytes += tree_bytes(&p);
        if m.is_dir() {
            std::fs::remove_dir_all(&p)?;
        } else {
            std::fs::remove_file(&p)?;
        }
        out.paths.push(p);
        Ok(())
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if (is_dir && name.starts_with(".tmp-")) || (!is_dir && name.ends_with(PARTIAL_SUFFIX)) {
            remove(p, &mut out)?;
        } else if is_dir
            && let Some(stage) = name.strip_prefix(".old-")
            && let Ok(stage) = stage.parse::<Stage>()
            && run.stage_dir(stage).join("stage.json").is_file()
        {
            remove(p, &mut out)?;
        }
    }
    // Partial files inside the resumable state (a checkpoint or frame cut by a kill).
    let mut stack = vec![root.join(".work")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(e.path());
            } else if e.file_name().to_string_lossy().ends_with(PARTIAL_SUFFIX) {
                remove(e.path(), &mut out)?;
            }
        }
    }
    Ok(out)
}

/// Serialise as pretty JSON and write atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let s = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    write_atomic(path, s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_body(n: u32) -> impl FnOnce(&Path, &Path) -> Result<StageSummary, StageError> {
        move |out, _work| {
            std::fs::write(out.join("out.txt"), n.to_string())?;
            Ok(StageSummary::default())
        }
    }

    #[test]
    fn skips_when_up_to_date_and_reruns_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let a = run_stage(&run, Stage::Capture, "in1", "cfg1", false, ok_body(1)).unwrap();
        assert!(matches!(a, StageOutcome::Ran(_)));
        let b = run_stage(&run, Stage::Capture, "in1", "cfg1", false, |_, _| {
            panic!("must not run")
        })
        .unwrap();
        assert!(matches!(b, StageOutcome::UpToDate(_)));
        let c = run_stage(&run, Stage::Capture, "in1", "cfg2", false, ok_body(2)).unwrap();
        assert!(matches!(c, StageOutcome::Ran(_)));
        assert_eq!(
            std::fs::read_to_string(run.stage_dir(Stage::Capture).join("out.txt")).unwrap(),
            "2"
        );
        assert_ne!(a.record().fingerprint, c.record().fingerprint);
        let d = run_stage(&run, Stage::Capture, "in1", "cfg2", true, ok_body(3)).unwrap();
        assert!(matches!(d, StageOutcome::Ran(_)));
    }

    #[test]
    fn failure_leaves_previous_output() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        run_stage(&run, Stage::Sfm, "i", "c", false, ok_body(7)).unwrap();
        let e = run_stage(&run, Stage::Sfm, "i2", "c", false, |out, _| {
            std::fs::write(out.join("out.txt"), "half")?;
            Err("boom".into())
        });
        assert!(e.unwrap_err().to_string().contains("boom"));
        assert_eq!(
            std::fs::read_to_string(run.stage_dir(Stage::Sfm).join("out.txt")).unwrap(),
            "7"
        );
        assert_eq!(run.record(Stage::Sfm).unwrap().input_hash, "i");
    }

    /// Stale temporary folders and partial files go; committed stages, resumable state and a
    /// `.old-` folder that is still the only copy of a stage stay.
    #[test]
    fn stale_leftovers_are_cleaned_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        run_stage(&run, Stage::Capture, "i", "c", false, ok_body(1)).unwrap();
        let r = dir.path();
        for d in [
            ".tmp-privacy/images",
            ".old-capture",
            ".old-sfm",
            ".work/train/checkpoints",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        let files = [
            (".tmp-privacy/images/a.jpg", 1000),
            ("report.html.partial", 10),
            ("report.html", 20),
            (".old-capture/out.txt", 5),
            (".old-sfm/out.txt", 5),
            (".work/train/checkpoints/last.safetensors", 300),
            (".work/train/checkpoints/last.safetensors.partial", 100),
            ("capture/notes.partial", 7),
        ];
        for (f, n) in files {
            std::fs::write(r.join(f), vec![0u8; n]).unwrap();
        }
        let c = clean_stale(&run).unwrap();
        let mut removed: Vec<String> = c
            .paths
            .iter()
            .map(|p| p.strip_prefix(r).unwrap().display().to_string())
            .collect();
        removed.sort();
        assert_eq!(
            removed,
            [
                ".old-capture",
                ".tmp-privacy",
                ".work/train/checkpoints/last.safetensors.partial",
                "report.html.partial"
            ]
        );
        assert_eq!(c.bytes, 1000 + 10 + 5 + 100);
        for kept in [
            "report.html",
            ".old-sfm/out.txt",
            ".work/train/checkpoints/last.safetensors",
            "capture/out.txt",
            "capture/stage.json",
            "capture/notes.partial",
        ] {
            assert!(r.join(kept).exists(), "{kept} was removed");
        }
        assert_eq!(clean_stale(&run).unwrap(), Cleaned::default());
        assert_eq!(
            clean_stale(&RunDir::new(r.join("none"))).unwrap(),
            Cleaned::default()
        );
    }

    /// A full disk while a stage writes: the error says "no space left" and names the file, the
    /// partial output is removed, and the previous good output is intact. The write error is real:
    /// `/dev/full` answers every write with ENOSPC.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_disk_is_named_and_leaves_the_previous_output() {
        if !Path::new("/dev/full").exists() {
            eprintln!("skipped: no /dev/full");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        run_stage(&run, Stage::Sfm, "i", "c", false, ok_body(7)).unwrap();
        let e = run_stage(&run, Stage::Sfm, "i2", "c", false, |out, _| {
            let target = out.join("report.json");
            // The next write_atomic lands on /dev/full.
            std::os::unix::fs::symlink("/dev/full", out.join("report.json.partial"))?;
            // As a stage does: its error names the file.
            write_json(&target, &vec![0u8; 100_000])
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", target.display())))?;
            Ok(StageSummary::default())
        })
        .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, RunError::NoSpace { .. }), "{msg}");
        assert!(
            msg.contains("no space left")
                && msg.contains("report.json")
                && msg.contains("stage sfm"),
            "{msg}"
        );
        // Issue 20: the file once, the plain words once (the OS's own words follow them once).
        assert_eq!(msg.matches("report.json").count(), 1, "{msg}");
        assert_eq!(msg.matches("no space left").count(), 1, "{msg}");
        assert_eq!(
            std::fs::read_to_string(run.stage_dir(Stage::Sfm).join("out.txt")).unwrap(),
            "7"
        );
        assert_eq!(run.record(Stage::Sfm).unwrap().input_hash, "i");
        assert!(!dir.path().join(".tmp-sfm").exists(), "partial output left");

        // write_atomic alone: the old file stays, the partial file is gone, the OS's error is
        // returned as it is (the caller names the file); as a run error it names the file once.
        let p = dir.path().join("x.json");
        std::fs::write(&p, "old").unwrap();
        std::os::unix::fs::symlink("/dev/full", dir.path().join("x.json.partial")).unwrap();
        let e = write_atomic(&p, &[1u8; 65536]).unwrap_err();
        assert!(is_no_space_io(&e), "{e}");
        assert_eq!(e.raw_os_error(), Some(28), "{e}");
        let msg = RunError::Io {
            path: p.clone(),
            source: e,
        }
        .to_string();
        assert_eq!(msg.matches("x.json").count(), 1, "{msg}");
        assert_eq!(msg.matches("no space left").count(), 1, "{msg}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old");
        assert!(std::fs::symlink_metadata(dir.path().join("x.json.partial")).is_err());
    }

    #[test]
    fn work_dir_survives_a_failure_with_the_same_inputs_only() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let _ = run_stage(&run, Stage::Train, "i", "c", false, |_, work| {
            std::fs::write(work.join("ckpt"), "step 100")?;
            Err("killed".into())
        });
        run_stage(&run, Stage::Train, "i", "c", false, |out, work| {
            let ck = std::fs::read_to_string(work.join("ckpt"))?;
            std::fs::write(out.join("resumed_from"), ck)?;
            Ok(StageSummary::default())
        })
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(run.stage_dir(Stage::Train).join("resumed_from")).unwrap(),
            "step 100"
        );
        assert!(
            !run.work_dir(Stage::Train).exists(),
            "scratch is removed after commit"
        );
        let _ = run_stage(&run, Stage::Train, "i", "c", true, |_, work| {
            std::fs::write(work.join("ckpt"), "x")?;
            Err("killed".into())
        });
        run_stage(&run, Stage::Train, "other", "c", false, |_, work| {
            assert!(
                !work.join("ckpt").exists(),
                "stale scratch from other inputs must be dropped"
            );
            Ok(StageSummary::default())
        })
        .unwrap();
    }
}
