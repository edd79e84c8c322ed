//! The stage runner wiring: which stages run in which order, what each one hashes as its inputs, and
//! the skip / force / until logic. Each stage is a library crate; this module only composes them.

use flythrough_core::config::{Config, LoadedConfig};
use flythrough_core::run::{
    self, RunDir, Stage, StageError, StageOutcome, StageSummary, hash_parts, run_stage,
};
use flythrough_core::{Manifest, RedactedImages};
use std::path::{Path, PathBuf};

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

/// The default run folder of a config: `runs/<venue name>` beside the config file.
pub fn default_run_dir(cfg: &LoadedConfig) -> PathBuf {
    cfg.dir.join("runs").join(&cfg.config.venue.name)
}

/// Test hook, compiled only with the `test-hooks` feature (which only this crate's tests turn on,
/// never a release build): `FLYTHROUGH_TEST_PAUSE_IN=<stage>` makes that stage sleep after writing
/// part of its output, so a test can kill the process mid-stage.
#[cfg(feature = "test-hooks")]
fn test_pause(stage: Stage, out: &Path) {
    if std::env::var("FLYTHROUGH_TEST_PAUSE_IN").ok().as_deref() == Some(stage.as_str()) {
        let _ = std::fs::write(out.join("partial.marker"), b"half-written");
        eprintln!("FLYTHROUGH_TEST_PAUSED {stage}");
        std::thread::sleep(std::time::Duration::from_secs(600));
    }
}

fn boxed<E: std::error::Error + Send + Sync + 'static>(e: E) -> StageError {
    Box::new(e)
}

/// Run the pipeline for one venue config.
pub fn run_venue(config_path: &Path, opts: &RunOptions) -> Result<RunReport, PipelineError> {
    let mut cfg = load_config(config_path)?;
    if let Some(d) = opts.device {
        cfg.config.train.device = d;
        cfg.config.render.device = d;
    }
    let run_dir = opts.out.clone().unwrap_or_else(|| default_run_dir(&cfg));
    let run = RunDir::new(&run_dir);
    // One process per run folder: two runs interleaving their commits could publish photos that were
    // never redacted under a privacy stage.json that says they were. Held until this function returns.
    let _lock = flythrough_core::RunLock::acquire(&run_dir)
        .map_err(|e| PipelineError::Stage(e.to_string()))?;
    run::recover_interrupted_commits(&run);
    let force_from = opts.force.map_or(usize::MAX, Stage::index);
    let until = opts.until.unwrap_or(Stage::Render);

    let mut report = RunReport {
        run_dir: run_dir.clone(),
        stages: Vec::new(),
    };
    let mut fingerprints: Vec<String> = Vec::new();
    for stage in Stage::ALL.into_iter().filter(|s| *s <= until) {
        let config_hash = hash_parts(&[cfg.config.section_json(stage).as_bytes()]);
        let upstream: Vec<&[u8]> = fingerprints.iter().map(|f| f.as_bytes()).collect();
        let input_hash = match stage {
            Stage::Capture => flythrough_capture::input_hash(&cfg.photos_dir)
                .map_err(|e| PipelineError::Stage(e.to_string()))?,
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
        let outcome = run_stage(
            &run,
            stage,
            &input_hash,
            &config_hash,
            force,
            |out, work| {
                let summary = run_one(stage, &cfg, &run, out, work)?;
                #[cfg(feature = "test-hooks")]
                test_pause(stage, out);
                Ok(summary)
            },
        )
        .map_err(|e| PipelineError::Stage(e.to_string()))?;
        match &outcome {
            StageOutcome::UpToDate(_) => {
                tracing::info!("{stage}: up to date, skipped (use --force {stage} to redo it)")
            }
            StageOutcome::Ran(r) => tracing::info!(
                "{stage}: done in {:.1} s {}",
                r.seconds,
                serde_json::to_string(&r.summary).unwrap_or_default()
            ),
        }
        fingerprints.push(outcome.record().fingerprint.clone());
        report.stages.push((stage, outcome));
    }
    // The run's report.html summarises whatever stages exist.
    match flythrough_render::write_report(&run) {
        Ok(p) => tracing::info!("report: {}", p.display()),
        Err(e) => tracing::warn!("report.html could not be written: {e}"),
    }
    Ok(report)
}

/// The committed capture manifest of a run.
fn manifest(run: &RunDir) -> Result<Manifest, StageError> {
    let p = run.stage_dir(Stage::Capture).join("manifest.json");
    Manifest::read(&p).map_err(|e| format!("{}: {e}", p.display()).into())
}

/// The photos capture's QA flagged blurry (`capture/qa.json`), for `[train] skip_blurry`.
fn blurry_photos(run: &RunDir) -> Result<Vec<String>, StageError> {
    let p = run.stage_dir(Stage::Capture).join("qa.json");
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    let qa: flythrough_capture::QaReport =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(qa.blurry)
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
        Stage::Capture => flythrough_capture::run(cfg, out).map_err(boxed),
        Stage::Privacy => flythrough_privacy::run(cfg, &manifest(run)?, out).map_err(boxed),
        Stage::Sfm => {
            let images = RedactedImages::open(run).map_err(boxed)?;
            flythrough_sfm::run(cfg, &images, Some(&manifest(run)?), out).map_err(boxed)
        }
        Stage::Train => {
            let images = RedactedImages::open(run).map_err(boxed)?;
            let blurry = if cfg.config.train.skip_blurry {
                blurry_photos(run)?
            } else {
                Vec::new()
            };
            flythrough_nerf::run_skipping(
                &cfg.config.train,
                &images,
                Some(&manifest(run)?),
                &blurry,
                &run.stage_dir(Stage::Sfm),
                out,
                work,
            )
            .map_err(boxed)
        }
        Stage::Render => flythrough_render::run(cfg, run, out, work).map_err(boxed),
    }
}
