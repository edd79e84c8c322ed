//! The stage runner: the registry's stages ([`crate::registry`]) in order, each hashed from its
//! inputs and the fingerprints of the stages before it, with the skip / force / until logic, the
//! run-folder lock, and the object-store sync around each stage. It knows no stage by name.

use crate::registry::STAGES;
use flythrough_core::config::{Config, LoadedConfig, Originals, preflight_in};
use flythrough_core::run::{self, RunDir, Stage, StageKey, StageOutcome, StageRecord, hash_parts};
use flythrough_core::stage::{
    AnyStage, Hooks, InputEnv, Machine, StageContext, Upstream, config_hash,
};
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
    /// Callbacks injected into the stages (tests stop or pause a stage through them).
    pub hooks: Hooks,
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

/// Run the pipeline for one venue config.
pub fn run_venue(config_path: &Path, opts: &RunOptions) -> Result<RunReport, PipelineError> {
    let cfg = load_config(config_path)?;
    run_loaded(&cfg, opts)
}

/// Run the pipeline for a loaded config.
pub fn run_loaded(cfg: &LoadedConfig, opts: &RunOptions) -> Result<RunReport, PipelineError> {
    let machine = Machine::of(&cfg.config).with_device(opts.device);
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
    let photos = matches!(originals, Originals::Present).then_some(cfg.photos_dir.as_path());

    let mut report = RunReport {
        run_dir: run_dir.clone(),
        stages: Vec::new(),
    };
    let runner = StageRunner {
        cfg,
        opts,
        run: &run,
        machine: &machine,
        originals: &originals,
        photos,
        remote_photos_fingerprint: sync.and_then(|s| s.photos_fingerprint()),
        force_from,
    };
    let mut fingerprints: Vec<String> = Vec::new();
    for def in STAGES.iter().filter(|s| s.stage() <= until) {
        let stage = def.stage();
        let outcome = match runner.run_one(*def, &fingerprints) {
            Ok(o) => o,
            Err(e) => {
                // The report of the stages before it and the failure: capture's QA and the privacy
                // results are often what explains it. A usage error (exit 2) is no stage failure.
                if let PipelineError::Stage(msg) = &e {
                    write_failure_report(&run, sync, stage, msg);
                }
                return Err(e);
            }
        };
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

/// `report.html` of a run that stopped because `stage` failed with `error`: the failure and the
/// stages before it, brought from and uploaded to the object store like a finished run's report.
/// Nothing here may replace the stage's error (what the CLI prints, and its exit code): a report or
/// object-store failure is a warning.
fn write_failure_report(
    run: &RunDir,
    sync: Option<&dyn flythrough_store::StageSync>,
    stage: Stage,
    error: &str,
) {
    if let Some(Err(e)) = sync.map(|s| s.before_report()) {
        tracing::warn!("report.html of the failed run: {e}");
    }
    match flythrough_report::write_report_with_failure(run, Some((stage, error))) {
        Ok(p) => tracing::info!("report: {}", p.display()),
        Err(e) => {
            tracing::warn!("report.html could not be written: {e}");
            return;
        }
    }
    if let Some(Err(e)) = sync.map(|s| s.after_report()) {
        tracing::warn!("report.html of the failed run not uploaded: {e}");
    }
}

/// What every stage of one run shares.
struct StageRunner<'a> {
    cfg: &'a LoadedConfig,
    opts: &'a RunOptions,
    run: &'a RunDir,
    machine: &'a Machine,
    originals: &'a Originals,
    /// The original photo folder, when the originals are there.
    photos: Option<&'a Path>,
    remote_photos_fingerprint: Option<String>,
    /// Index of the first stage `--force` redoes (`usize::MAX`: none).
    force_from: usize,
}

impl StageRunner<'_> {
    /// Run (or skip, or keep) one stage, given the fingerprints of the stages before it.
    fn run_one(
        &self,
        def: &dyn AnyStage,
        fingerprints: &[String],
    ) -> Result<StageOutcome, PipelineError> {
        let (cfg, opts, run) = (self.cfg, self.opts, self.run);
        let sync = opts.sync.as_deref();
        let synced = |r: Result<(), String>| r.map_err(PipelineError::Stage);
        let stage = def.stage();
        let inputs = def.inputs_json(cfg);
        let config_hash = config_hash(&inputs);
        let force = stage.index() >= self.force_from;
        if let Originals::Gone(why) = self.originals
            && stage.reads_originals()
        {
            // Without the originals, capture and privacy cannot be redone: their committed output is
            // what every later stage continues from. Nothing reads (or hashes) the photo folder.
            let upstream: Vec<&[u8]> = fingerprints.iter().map(|f| f.as_bytes()).collect();
            let rec = keep_committed(run, stage, &config_hash, &hash_parts(&upstream), force, why)?;
            return Ok(StageOutcome::UpToDate(rec));
        }
        let env = InputEnv {
            originals: self.photos,
            remote_photos_fingerprint: self.remote_photos_fingerprint.clone(),
        };
        let input_hash = def
            .input_hash(cfg, fingerprints, &env)
            .map_err(|e| PipelineError::Stage(format!("{stage}: {e}")))?;
        if let Some(s) = sync {
            synced(s.before_stage(stage))?;
        }
        let key = StageKey {
            input_hash: &input_hash,
            config_hash: &config_hash,
            inputs: Some(&inputs),
        };
        let outcome = run::run_stage_with(run, stage, &key, force, |out, work| {
            if let Some(s) = sync {
                s.stage_inputs(stage)?;
            }
            let ctx = StageContext {
                machine: self.machine,
                upstream: Upstream::new(run, stage, self.photos),
                out,
                work,
                hooks: &opts.hooks,
            };
            let summary = def.run(cfg, &ctx)?;
            if let Some(f) = &opts.hooks.before_commit {
                f(stage, out);
            }
            Ok(summary)
        });
        if let Some(s) = sync {
            synced(s.after_stage(stage, outcome.is_ok()))?;
        }
        let outcome = outcome.map_err(|e| PipelineError::Stage(e.to_string()))?;
        match &outcome {
            StageOutcome::UpToDate(_) => {
                tracing::info!("{stage}: up to date, skipped (use --force {stage} to redo it)")
            }
            StageOutcome::Ran(r) => {
                tracing::info!(
                    "{stage}: done in {:.1} s: {}",
                    r.seconds,
                    Stage::headline(r)
                )
            }
        }
        Ok(outcome)
    }
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
        run.stage_dir(Stage::Privacy)
            .join(flythrough_core::images::REDACTED_DIR)
            .display()
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
    let section = stage.table();
    if rec.config_hash != config_hash {
        return Err(PipelineError::Stage(format!(
            "{stage}: the {section} settings changed since it ran, but {cannot}; put the {section} settings back or restore the original photos"
        )));
    }
    if !stage.reads().is_empty() && rec.input_hash != upstream_hash {
        return Err(PipelineError::Stage(format!(
            "{stage}: the committed {stage} output was not made from the committed earlier stages, and {cannot}; restore the original photos"
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
