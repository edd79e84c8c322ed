//! The stage runner wiring: which stages run in which order, what each one hashes as its inputs, and
//! the skip / force / until logic. Each stage is a library crate; this module only composes them.

use flythrough_core::config::{Config, LoadedConfig, Originals, preflight_in};
use flythrough_core::run::{
    self, RunDir, Stage, StageError, StageOutcome, StageRecord, StageSummary, hash_parts, run_stage,
};
use flythrough_core::{Manifest, RedactedImages};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a pipeline run stopped: a bad config/usage (exit 2) or a failed stage (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Stage(String),
}

impl PipelineError {
    pub fn exit_code(&self) -> i32 {
        match self {
            PipelineError::Config(_) => 2,
            PipelineError::Stage(_) => 1,
        }
    }
}

/// Options of `flythrough run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Run folder; default `runs/<venue name>` beside the config.
    pub out: Option<PathBuf>,
    /// Stop after this stage.
    pub until: Option<Stage>,
    /// Redo this stage and every later one.
    pub force: Option<Stage>,
    /// Keeps a remote run folder (or remote photos) in step with the local one (`crate::remote`).
    pub sync: Option<Arc<dyn flythrough_store::StageSync>>,
    /// `--device`: overrides `[train] device` and `[render] device` (not part of any stage's hash).
    pub device: Option<flythrough_core::config::Device>,
}

/// What happened to each stage.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_dir: PathBuf,
    pub stages: Vec<(Stage, StageOutcome)>,
}

/// Load and validate a config, mapping errors to exit code 2.
pub fn load_config(path: &Path) -> Result<LoadedConfig, PipelineError> {
    Config::load(path).map_err(|e| PipelineError::Config(e.to_string()))
}

/// Every check that can be made before a stage starts, for a run into `run` that goes as far as
/// `until`: [`preflight`] (photo names, folders, keyframes) and whether the configured video encoder
/// exists. `flythrough config --check` and `flythrough run` both call this. Errors are exit code 2.
pub fn check_before_stages(
    cfg: &LoadedConfig,
    run: &RunDir,
    until: Stage,
) -> Result<Originals, PipelineError> {
    check_before_stages_in(cfg, run, until, None)
}

/// [`check_before_stages`] with the run's object-store sync, if any: remote photos are checked
/// against their listing (the local photo folder is only a download cache).
pub fn check_before_stages_in(
    cfg: &LoadedConfig,
    run: &RunDir,
    until: Stage,
    sync: Option<&dyn flythrough_store::StageSync>,
) -> Result<Originals, PipelineError> {
    let listing = sync.and_then(|s| s.photo_listing());
    let remote = listing.as_ref().map(|(n, u)| (n.as_slice(), u.as_str()));
    let originals = preflight_in(cfg, Some(run), until, remote)
        .map_err(|e| PipelineError::Config(e.to_string()))?;
    if until >= Stage::Render {
        let enc = cfg.config.render.encoder;
        flythrough_render::encode::choose(enc).map_err(|e| {
            PipelineError::Config(format!(
                "{}: [render] encoder = \"{enc}\": {e}",
                cfg.path.display()
            ))
        })?;
    }
    Ok(originals)
}

/// `flythrough config --check FILE [--out RUN]`: load the config and make every check
/// [`check_before_stages`] makes for a whole run into `RUN` (default: the config's run folder).
pub fn check_config(
    path: &Path,
    out: Option<&Path>,
) -> Result<(LoadedConfig, Originals), PipelineError> {
    let cfg = load_config(path)?;
    let run = RunDir::new(out.map_or_else(|| default_run_dir(&cfg), Path::to_path_buf));
    let originals = check_before_stages(&cfg, &run, Stage::Render)?;
    Ok((cfg, originals))
}

/// The default run folder of a config: `runs/<venue name>` beside the config file.
pub fn default_run_dir(cfg: &LoadedConfig) -> PathBuf {
    cfg.dir.join("runs").join(&cfg.config.venue.name)
}

/// Test hook, compiled only with the `test-hooks` feature (which only this crate's tests turn on,
/// never a release build). `FLYTHROUGH_TEST_PAUSE_IN=<stage>` makes that stage write a marker into
/// its unfinished output and sleep, so a test can kill the process mid-stage;
/// `FLYTHROUGH_TEST_PAUSE_IN=<stage>:<seconds>` makes it sleep that long (lock held) and go on.
/// Both print `FLYTHROUGH_TEST_PAUSED <stage>` on stderr first.
#[cfg(feature = "test-hooks")]
fn test_pause(stage: Stage, out: &Path) {
    let Ok(v) = std::env::var("FLYTHROUGH_TEST_PAUSE_IN") else {
        return;
    };
    let (name, secs) = match v.split_once(':') {
        Some((n, s)) => (n, s.parse::<u64>().ok()),
        None => (v.as_str(), None),
    };
    if name != stage.as_str() {
        return;
    }
    if secs.is_none() {
        let _ = std::fs::write(out.join("partial.marker"), b"half-written");
    }
    eprintln!("FLYTHROUGH_TEST_PAUSED {stage}");
    std::thread::sleep(std::time::Duration::from_secs(secs.unwrap_or(600)));
}

/// Run the pipeline for one venue config.
pub fn run_venue(config_path: &Path, opts: &RunOptions) -> Result<RunReport, PipelineError> {
    let cfg = load_config(config_path)?;
    run_loaded(&cfg, opts)
}

/// Run the pipeline for a loaded config.
pub fn run_loaded(cfg: &LoadedConfig, opts: &RunOptions) -> Result<RunReport, PipelineError> {
    let with_device;
    let cfg = match opts.device {
        Some(d) => {
            let mut c = cfg.clone();
            c.config.train.device = d;
            c.config.render.device = d;
            with_device = c;
            &with_device
        }
        None => cfg,
    };
    let sync = opts.sync.as_deref();
    let synced = |r: Result<(), String>| r.map_err(PipelineError::Stage);
    let run_dir = opts.out.clone().unwrap_or_else(|| default_run_dir(cfg));
    let run = RunDir::new(&run_dir);
    let force_from = opts.force.map_or(usize::MAX, Stage::index);
    let until = opts.until.unwrap_or(Stage::Render);
    // One process per run folder: two runs interleaving their commits could publish photos that were
    // never redacted under a privacy stage.json that says they were. Held until this function returns.
    let _lock = flythrough_core::RunLock::acquire(&run_dir)
        .map_err(|e| PipelineError::Stage(e.to_string()))?;
    run::recover_interrupted_commits(&run);
    // Leftovers of a killed or failed process (never resumable state or committed stages).
    match run::clean_stale(&run) {
        Ok(c) if !c.paths.is_empty() => tracing::info!(
            "removed {} stale temporary item(s) of an earlier interrupted run ({:.1} MB)",
            c.paths.len(),
            c.bytes as f64 / 1e6
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(
            "{}: could not clean stale temporary files: {e}",
            run_dir.display()
        ),
    }
    let originals = check_before_stages_in(cfg, &run, until, sync)?;

    let mut report = RunReport {
        run_dir: run_dir.clone(),
        stages: Vec::new(),
    };
    let mut fingerprints: Vec<String> = Vec::new();
    for stage in Stage::ALL.into_iter().filter(|s| *s <= until) {
        let config_hash = hash_parts(&[cfg.config.section_json(stage).as_bytes()]);
        let upstream: Vec<&[u8]> = fingerprints.iter().map(|f| f.as_bytes()).collect();
        if let Originals::Gone(why) = &originals
            && stage <= Stage::Privacy
        {
            // Without the originals, capture and privacy cannot be redone: their committed output is
            // what every later stage continues from. Nothing reads (or hashes) the photo folder.
            let force = stage.index() >= force_from;
            let rec = keep_committed(
                &run,
                stage,
                &config_hash,
                &hash_parts(&upstream),
                force,
                why,
            )?;
            fingerprints.push(rec.fingerprint.clone());
            report.stages.push((stage, StageOutcome::UpToDate(rec)));
            continue;
        }
        let input_hash = match stage {
            Stage::Capture => match sync.and_then(|s| s.photos_fingerprint()) {
                Some(h) => h,
                None => flythrough_capture::input_hash(&cfg.photos_dir)
                    .map_err(|e| PipelineError::Stage(e.to_string()))?,
            },
            Stage::Sfm => {
                // An imported model is an input too.
                let mut parts = upstream.clone();
                let import_hash = match &cfg.config.sfm.import {
                    Some(dir) => {
                        let d = cfg.dir.join(dir);
                        let files: Vec<PathBuf> = [
                            "cameras.bin",
                            "images.bin",
                            "points3D.bin",
                            "cameras.txt",
                            "images.txt",
                            "points3D.txt",
                        ]
                        .iter()
                        .map(|f| d.join(f))
                        .filter(|p| p.exists())
                        .collect();
                        run::hash_files(&files).map_err(|e| {
                            PipelineError::Config(format!("[sfm] import = {dir:?}: {e}"))
                        })?
                    }
                    None => String::new(),
                };
                parts.push(import_hash.as_bytes());
                hash_parts(&parts)
            }
            _ => hash_parts(&upstream),
        };
        let force = stage.index() >= force_from;
        if let Some(s) = sync {
            synced(s.before_stage(stage))?;
        }
        let outcome = run_stage(
            &run,
            stage,
            &input_hash,
            &config_hash,
            force,
            |out, work| {
                if let Some(s) = sync {
                    s.stage_inputs(stage)?;
                }
                let summary = run_one(stage, cfg, &run, out, work)?;
                #[cfg(feature = "test-hooks")]
                test_pause(stage, out);
                Ok(summary)
            },
        );
        if let Some(s) = sync {
            synced(s.after_stage(stage, outcome.is_ok()))?;
        }
        let outcome = outcome.map_err(|e| PipelineError::Stage(e.to_string()))?;
        match &outcome {
            StageOutcome::UpToDate(_) => {
                tracing::info!("{stage}: up to date, skipped (use --force {stage} to redo it)")
            }
            StageOutcome::Ran(r) => {
                tracing::info!("{stage}: done in {:.1} s: {}", r.seconds, headline(r))
            }
        }
        fingerprints.push(outcome.record().fingerprint.clone());
        report.stages.push((stage, outcome));
    }
    // The run's report.html: the stages that finished, from their typed summaries.
    if let Some(s) = sync {
        synced(s.before_report())?;
    }
    match flythrough_report::write_report(&run) {
        Ok(p) => tracing::info!("report: {}", p.display()),
        Err(e) => tracing::warn!("report.html could not be written: {e}"),
    }
    if let Some(s) = sync {
        synced(s.after_report())?;
    }
    Ok(report)
}

/// Capture or privacy of a run whose original photos are gone: the committed output is kept as it
/// is, if it was made with the current settings; anything else is an error saying why the stage
/// cannot be redone.
fn keep_committed(
    run: &RunDir,
    stage: Stage,
    config_hash: &str,
    upstream_hash: &str,
    force: bool,
    why: &str,
) -> Result<StageRecord, PipelineError> {
    let cannot = format!(
        "{stage} cannot be redone: {why} (only the redacted copies in {} are kept)",
        run.stage_dir(Stage::Privacy).join("images").display()
    );
    if force {
        return Err(PipelineError::Config(format!(
            "--force {stage}: {cannot}; restore the original photos to redo it, or force a later stage (--force sfm)"
        )));
    }
    let Some(rec) = run.record(stage) else {
        return Err(PipelineError::Stage(format!(
            "{stage}: {cannot}, and the run folder {} has no committed {stage}",
            run.root().display()
        )));
    };
    let section = match stage {
        Stage::Capture => "[capture]",
        _ => "[privacy]",
    };
    if rec.config_hash != config_hash {
        return Err(PipelineError::Stage(format!(
            "{stage}: the {section} settings changed since it ran, but {cannot}; put the {section} settings back or restore the original photos"
        )));
    }
    if stage == Stage::Privacy && rec.input_hash != upstream_hash {
        return Err(PipelineError::Stage(format!(
            "privacy: the committed privacy output was not made from the committed capture, and {cannot}; restore the original photos"
        )));
    }
    if rec.program_version != run::PROGRAM_VERSION {
        tracing::warn!(
            "{stage}: committed by flythrough {}, kept as it is with {}: {cannot}",
            rec.program_version,
            run::PROGRAM_VERSION
        );
    }
    tracing::info!("{stage}: kept as committed; {cannot}");
    Ok(rec)
}

/// One line about a finished stage, from its typed summary.
fn headline(r: &StageRecord) -> String {
    use flythrough_core::summary::*;
    match r.stage {
        Stage::Capture => r.summary::<CaptureSummary>().map(|s| s.headline()),
        Stage::Privacy => r.summary::<PrivacySummary>().map(|s| s.headline()),
        Stage::Sfm => r.summary::<SfmSummary>().map(|s| s.headline()),
        Stage::Train => r.summary::<TrainSummary>().map(|s| s.headline()),
        Stage::Render => r.summary::<RenderSummary>().map(|s| s.headline()),
    }
    .unwrap_or_else(|e| e)
}

/// The committed capture manifest of a run.
fn manifest(run: &RunDir) -> Result<Manifest, StageError> {
    let p = run.stage_dir(Stage::Capture).join("manifest.json");
    Manifest::read(&p).map_err(|e| format!("{}: {e}", p.display()).into())
}

/// The photos capture's QA flagged blurry (`capture/qa.json`), for `[train] skip_blurry`.
fn blurry_photos(run: &RunDir) -> Result<Vec<String>, StageError> {
    let rec = run
        .record(Stage::Capture)
        .ok_or("capture has not finished for this run")?;
    Ok(rec
        .summary::<flythrough_core::summary::CaptureSummary>()?
        .blurry)
}

/// Run one stage's body.
fn run_one(
    stage: Stage,
    cfg: &LoadedConfig,
    run: &RunDir,
    out: &Path,
    work: &Path,
) -> Result<StageSummary, StageError> {
    match stage {
        Stage::Capture => Ok(StageSummary::of(&flythrough_capture::run(cfg, out)?)),
        Stage::Privacy => Ok(StageSummary::of(&flythrough_privacy::run(
            cfg,
            &manifest(run)?,
            out,
        )?)),
        Stage::Sfm => {
            let images = RedactedImages::open(run)?;
            let inputs = flythrough_sfm::SfmInputs::from_config(cfg);
            Ok(StageSummary::of(&flythrough_sfm::run(
                &inputs,
                &images,
                Some(&manifest(run)?),
                out,
            )?))
        }
        Stage::Train => {
            let images = RedactedImages::open(run)?;
            let blurry = if cfg.config.train.skip_blurry {
                blurry_photos(run)?
            } else {
                Vec::new()
            };
            Ok(StageSummary::of(&flythrough_nerf::run_skipping(
                &cfg.config.train,
                &images,
                Some(&manifest(run)?),
                &blurry,
                &run.stage_dir(Stage::Sfm),
                out,
                work,
            )?))
        }
        Stage::Render => {
            let inputs = flythrough_render::RenderInputs::from_config(cfg);
            Ok(StageSummary::of(&flythrough_render::run(
                &inputs, run, out, work,
            )?))
        }
    }
}
