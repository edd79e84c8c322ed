//! The stage contract: what every stage of the pipeline declares, and the one place that knows the
//! stages by name.
//!
//! Start reading here. A stage is one type implementing [`PipelineStage`] in its own crate
//! (`crates/<stage>/src/stage.rs`):
//! - [`PipelineStage::Inputs`]: exactly what the stage reads from the venue config. Its canonical JSON
//!   *is* the stage's config hash, so a setting the stage reads cannot be left out of the hash, and
//!   renaming a field cannot silently change what re-runs.
//! - [`Machine`]: where and how fast a stage computes, never what (the GPU or CPU, memory budgets,
//!   guards against runaway work). Never hashed: a run moved to a GPU machine keeps its stages.
//! - [`Upstream`]: the committed outputs of the earlier stages this stage declares it reads
//!   ([`Stage::reads`]), through typed handles that own their file names ([`crate::artifacts`],
//!   [`crate::RedactedImages`]); the original photo folder only for the stages that read originals
//!   ([`Stage::reads_originals`]: capture and privacy).
//! - [`PipelineStage::Summary`]: the typed summary stored in `stage.json` ([`crate::summary`]).
//!
//! The ordered list of the stage types is the registry in the CLI crate (`crates/cli/src/registry.rs`):
//! the runner, the report and the object-store sync iterate [`Stage::ALL`] and that list instead of
//! matching on stage names. Adding a stage: a variant of [`Stage`] (and its facts in this module), its
//! summary in [`crate::summary`], its crate, one registry line.

use crate::artifacts::{ArtifactError, BakeOutput, CaptureOutput, SfmOutput, TrainOutput};
use crate::config::{Device, LoadedConfig};
use crate::images::{RedactedError, RedactedImages};
use crate::run::{RunDir, StageError, StageRecord, StageSummary, hash_parts};
use crate::summary::Summary;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;

/// A stage of the pipeline. Its lower-case name is its folder in the run folder and its spelling on
/// the command line (`--until sfm`) and in `stage.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Capture,
    Privacy,
    Sfm,
    Train,
    Bake,
    Render,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 6] = [
        Stage::Capture,
        Stage::Privacy,
        Stage::Sfm,
        Stage::Train,
        Stage::Bake,
        Stage::Render,
    ];

    /// The stage's name (its folder in the run folder).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Capture => "capture",
            Stage::Privacy => "privacy",
            Stage::Sfm => "sfm",
            Stage::Train => "train",
            Stage::Bake => "bake",
            Stage::Render => "render",
        }
    }

    /// Position in the pipeline (capture = 0).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The config table the stage is configured by, as written in messages (`[sfm]`).
    pub fn table(self) -> String {
        format!("[{}]", self.as_str())
    }

    /// The earlier stages whose committed outputs this stage reads (what the object-store sync
    /// downloads before it runs, and what [`Upstream`] hands out).
    pub fn reads(self) -> &'static [Stage] {
        match self {
            Stage::Capture => &[],
            Stage::Privacy => &[Stage::Capture],
            Stage::Sfm => &[Stage::Capture, Stage::Privacy],
            Stage::Train => &[Stage::Capture, Stage::Privacy, Stage::Sfm],
            Stage::Bake => &[Stage::Capture, Stage::Privacy, Stage::Sfm, Stage::Train],
            Stage::Render => &[
                Stage::Capture,
                Stage::Privacy,
                Stage::Sfm,
                Stage::Train,
                Stage::Bake,
            ],
        }
    }

    /// Whether the stage reads the original photos. Only capture and privacy do: every later stage
    /// sees photos only through [`RedactedImages`]. Without the originals these two cannot be redone.
    pub fn reads_originals(self) -> bool {
        matches!(self, Stage::Capture | Stage::Privacy)
    }

    /// The folder of the stage's output that the runner seals in `stage.json` (names and blake3 of
    /// every file, checked by [`RedactedImages::open`]): privacy's redacted photos.
    pub fn sealed_folder(self) -> Option<&'static str> {
        match self {
            Stage::Privacy => Some(crate::images::REDACTED_DIR),
            _ => None,
        }
    }

    /// One line about a finished stage, from its typed summary (or what is wrong with it).
    pub fn headline(rec: &StageRecord) -> String {
        use crate::summary::*;
        fn line<T: Summary>(rec: &StageRecord) -> String {
            rec.summary::<T>()
                .map(|s| s.headline())
                .unwrap_or_else(|e| e)
        }
        match rec.stage {
            Stage::Capture => line::<CaptureSummary>(rec),
            Stage::Privacy => line::<PrivacySummary>(rec),
            Stage::Sfm => line::<SfmSummary>(rec),
            Stage::Train => line::<TrainSummary>(rec),
            Stage::Bake => line::<BakeSummary>(rec),
            Stage::Render => line::<RenderSummary>(rec),
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown stage name; the message lists the stages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown stage {name:?}; the stages are {}", Stage::ALL.map(Stage::as_str).join(", "), name = .0)]
pub struct UnknownStage(pub String);

impl std::str::FromStr for Stage {
    type Err = UnknownStage;
    fn from_str(s: &str) -> Result<Stage, UnknownStage> {
        Stage::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStage(s.to_string()))
    }
}

/// Settings that change where or how fast a stage computes, never what it writes: not part of any
/// stage's hash. They are written in the venue config beside the stage they concern (`[train]
/// device`, `[privacy] memory_budget_gb`, …) and read by the stages only from here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// `[train] device` (or `flythrough run --device`).
    pub train_device: Device,
    /// `[render] device` (or `flythrough run --device`).
    pub render_device: Device,
    /// `[privacy] memory_budget_gb`: photos in flight in capture and privacy (0: automatic).
    pub memory_budget_gb: f64,
    /// `[render] max_path_frames`: a guard that refuses a path of more frames (0: no limit).
    pub max_path_frames: u32,
}

impl Default for Machine {
    fn default() -> Self {
        Machine::of(&crate::Config::default())
    }
}

impl Machine {
    /// The machine settings of a config.
    pub fn of(c: &crate::Config) -> Machine {
        Machine {
            train_device: c.train.device,
            render_device: c.render.device,
            memory_budget_gb: c.privacy.memory_budget_gb,
            max_path_frames: c.render.max_path_frames,
        }
    }

    /// `--device`: both NeRF stages on `d`.
    pub fn with_device(mut self, d: Option<Device>) -> Machine {
        if let Some(d) = d {
            self.train_device = d;
            self.render_device = d;
        }
        self
    }
}

/// Called with a stage and its uncommitted output folder.
pub type CommitHook = Arc<dyn Fn(Stage, &Path) + Send + Sync>;
/// Called with the step just checkpointed; `true` stops the stage.
pub type StopHook = Arc<dyn Fn(usize) -> bool + Send + Sync>;

/// Callbacks a caller injects into a run (COLMAP's controllers take a "check if stopped" function
/// the same way); nothing inside a stage reads an environment variable or a global for them.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Called after a stage's body returned successfully, before its output is committed, with the
    /// uncommitted output folder (tests pause or kill the process here).
    pub before_commit: Option<CommitHook>,
    /// Asked by long stages after each resumable checkpoint (training: with the step just
    /// checkpointed); `true` stops the stage there as if the process had been killed.
    pub stop_after_checkpoint: Option<StopHook>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("before_commit", &self.before_commit.is_some())
            .field(
                "stop_after_checkpoint",
                &self.stop_after_checkpoint.is_some(),
            )
            .finish()
    }
}

impl Hooks {
    /// Whether the stage should stop after the checkpoint of `step`.
    pub fn stop_after_checkpoint(&self, step: usize) -> bool {
        self.stop_after_checkpoint.as_ref().is_some_and(|f| f(step))
    }
}

/// A stage asked for something it does not declare (a bug in the stage, not in the user's data).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("stage {stage} reads {wanted}, which it does not declare in Stage::reads")]
    Undeclared { stage: Stage, wanted: Stage },
    #[error("stage {0} does not read the original photos; only capture and privacy do")]
    NoOriginals(Stage),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Redacted(#[from] RedactedError),
}

/// What a running stage may read: the committed outputs of the stages it declares
/// ([`Stage::reads`]), each through its typed handle, and the original photos only for capture and
/// privacy.
#[derive(Debug, Clone, Copy)]
pub struct Upstream<'a> {
    run: &'a RunDir,
    stage: Stage,
    originals: Option<&'a Path>,
}

impl<'a> Upstream<'a> {
    /// The committed stages of `run` as seen by `stage`; `originals` is the photo folder, handed
    /// out only when the stage reads originals.
    pub fn new(run: &'a RunDir, stage: Stage, originals: Option<&'a Path>) -> Upstream<'a> {
        Upstream {
            run,
            stage,
            originals: originals.filter(|_| stage.reads_originals()),
        }
    }

    fn declared(&self, wanted: Stage) -> Result<(), UpstreamError> {
        if self.stage.reads().contains(&wanted) {
            Ok(())
        } else {
            Err(UpstreamError::Undeclared {
                stage: self.stage,
                wanted,
            })
        }
    }

    /// The run folder (for messages and for stages that keep run-level files).
    pub fn run(&self) -> &'a RunDir {
        self.run
    }

    /// The original photo folder (capture and privacy only).
    pub fn originals(&self) -> Result<&'a Path, UpstreamError> {
        self.originals.ok_or(UpstreamError::NoOriginals(self.stage))
    }

    /// Capture's committed output: the manifest and QA.
    pub fn capture(&self) -> Result<CaptureOutput, UpstreamError> {
        self.declared(Stage::Capture)?;
        Ok(CaptureOutput::open(self.run)?)
    }

    /// Privacy's redacted photos, checked against its seal.
    pub fn redacted(&self) -> Result<RedactedImages, UpstreamError> {
        self.declared(Stage::Privacy)?;
        Ok(RedactedImages::open(self.run)?)
    }

    /// SfM's committed model and report.
    pub fn sfm(&self) -> Result<SfmOutput, UpstreamError> {
        self.declared(Stage::Sfm)?;
        Ok(SfmOutput::open(self.run)?)
    }

    /// Training's committed checkpoint.
    pub fn train(&self) -> Result<TrainOutput, UpstreamError> {
        self.declared(Stage::Train)?;
        Ok(TrainOutput::open(self.run)?)
    }

    /// The bake stage's committed output, checked against its recorded hash.
    pub fn bake(&self) -> Result<BakeOutput, UpstreamError> {
        self.declared(Stage::Bake)?;
        Ok(BakeOutput::open(self.run)?)
    }
}

/// Everything a stage's `run` is handed besides its inputs.
#[derive(Debug, Clone, Copy)]
pub struct StageContext<'a> {
    pub machine: &'a Machine,
    pub upstream: Upstream<'a>,
    /// A fresh folder for the stage's output, committed as `RUN/<stage>/` when `run` succeeds.
    pub out: &'a Path,
    /// Resumable state (`RUN/.work/<stage>/`), kept across interruptions with the same inputs.
    pub work: &'a Path,
    pub hooks: &'a Hooks,
}

/// What a stage's input hash may depend on besides the upstream fingerprints.
#[derive(Debug, Clone, Default)]
pub struct InputEnv<'a> {
    /// The original photo folder (for capture).
    pub originals: Option<&'a Path>,
    /// The photos' fingerprint when they live in object storage (from their listing).
    pub remote_photos_fingerprint: Option<String>,
}

/// A stage's inputs, taken from a loaded config.
pub trait FromConfig {
    fn from_config(cfg: &LoadedConfig) -> Self;
}

impl FromConfig for crate::config::CaptureConfig {
    fn from_config(cfg: &LoadedConfig) -> Self {
        cfg.config.capture.clone()
    }
}

impl FromConfig for crate::config::PrivacyConfig {
    fn from_config(cfg: &LoadedConfig) -> Self {
        cfg.config.privacy.clone()
    }
}

impl FromConfig for crate::config::TrainConfig {
    fn from_config(cfg: &LoadedConfig) -> Self {
        cfg.config.train.clone()
    }
}

/// One stage of the pipeline: what it reads, what it returns, and how it runs.
pub trait PipelineStage {
    const STAGE: Stage;
    /// Exactly what the stage reads from the venue config; its canonical JSON is the config hash.
    /// Values that are only handles to things hashed elsewhere (a resolved path whose files are in
    /// the input hash, the config file's name for messages) are `#[serde(skip)]`.
    type Inputs: Serialize + FromConfig;
    type Summary: Summary;

    /// The hash of what the stage reads besides its config: by default the fingerprints of the
    /// upstream stages (in pipeline order).
    fn input_hash(
        inputs: &Self::Inputs,
        upstream: &[String],
        env: &InputEnv,
    ) -> Result<String, StageError> {
        let _ = (inputs, env);
        let parts: Vec<&[u8]> = upstream.iter().map(|f| f.as_bytes()).collect();
        Ok(hash_parts(&parts))
    }

    /// Run the stage: write its outputs into `ctx.out`, return its summary.
    fn run(inputs: &Self::Inputs, ctx: &StageContext) -> Result<Self::Summary, StageError>;
}

/// A stage with its types erased, for the registry.
pub trait AnyStage: Sync {
    fn stage(&self) -> Stage;
    /// The stage's inputs as canonical JSON (what its config hash is made of, and what
    /// `stage.json` records so a re-run can say which setting changed).
    fn inputs_json(&self, cfg: &LoadedConfig) -> serde_json::Value;
    fn input_hash(
        &self,
        cfg: &LoadedConfig,
        upstream: &[String],
        env: &InputEnv,
    ) -> Result<String, StageError>;
    fn run(&self, cfg: &LoadedConfig, ctx: &StageContext) -> Result<StageSummary, StageError>;
}

/// A [`PipelineStage`] as an [`AnyStage`]: `&Registered::<CaptureStage>::NEW`.
pub struct Registered<S>(PhantomData<fn() -> S>);

impl<S> Registered<S> {
    pub const NEW: Registered<S> = Registered(PhantomData);
}

impl<S: PipelineStage> AnyStage for Registered<S> {
    fn stage(&self) -> Stage {
        S::STAGE
    }
    fn inputs_json(&self, cfg: &LoadedConfig) -> serde_json::Value {
        serde_json::to_value(S::Inputs::from_config(cfg)).unwrap_or_default()
    }
    fn input_hash(
        &self,
        cfg: &LoadedConfig,
        upstream: &[String],
        env: &InputEnv,
    ) -> Result<String, StageError> {
        S::input_hash(&S::Inputs::from_config(cfg), upstream, env)
    }
    fn run(&self, cfg: &LoadedConfig, ctx: &StageContext) -> Result<StageSummary, StageError> {
        // A stage returns its own summary: checked when the registry is compiled.
        const {
            assert!(
                S::STAGE as usize == <S::Summary as Summary>::STAGE as usize,
                "a stage's Summary belongs to another stage"
            )
        };
        Ok(StageSummary::of(&S::run(
            &S::Inputs::from_config(cfg),
            ctx,
        )?))
    }
}

/// The config hash of a stage's inputs JSON.
pub fn config_hash(inputs: &serde_json::Value) -> String {
    hash_parts(&[inputs.to_string().as_bytes()])
}

/// What differs between two inputs JSON values, for people: `steps: 1500 -> 3000; lr_init: …`, at
/// most `max` keys (then `and N more`).
pub fn describe_changes(
    old: &serde_json::Value,
    new: &serde_json::Value,
    max: usize,
) -> Vec<String> {
    fn walk(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        use serde_json::Value::{Array, Object};
        let key = |k: &str| {
            if path.is_empty() {
                k.to_string()
            } else {
                format!("{path}.{k}")
            }
        };
        match (a, b) {
            (Object(x), Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    match (x.get(k), y.get(k)) {
                        (Some(va), Some(vb)) => walk(&key(k), va, vb, out),
                        (None, Some(vb)) => out.push(format!("{} added ({vb})", key(k))),
                        (Some(_), None) => out.push(format!("{} no longer read", key(k))),
                        (None, None) => {}
                    }
                }
            }
            (Array(x), Array(y)) if x.len() == y.len() => {
                for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                    walk(&key(&format!("#{}", i + 1)), va, vb, out);
                }
            }
            _ if a != b => {
                let shown = |v: &serde_json::Value| {
                    let s = v.to_string();
                    if s.len() > 60 {
                        format!("{}…", &s[..s.floor_char_boundary(57)])
                    } else {
                        s
                    }
                };
                let p = if path.is_empty() { "value" } else { path };
                out.push(format!("{p}: {} -> {}", shown(a), shown(b)));
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    if out.len() > max {
        let n = out.len() - max;
        out.truncate(max);
        out.push(format!("and {n} more"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names_parse_and_print() {
        for st in Stage::ALL {
            assert_eq!(st.to_string().parse::<Stage>().unwrap(), st);
            assert_eq!(Stage::ALL[st.index()], st);
            // A stage reads only earlier stages.
            assert!(st.reads().iter().all(|r| *r < st), "{st}");
        }
        let e = "trian".parse::<Stage>().unwrap_err().to_string();
        assert!(e.contains("trian") && e.contains("capture, privacy, sfm, train, bake, render"));
        assert!(Stage::Capture < Stage::Render);
        assert_eq!(serde_json::to_string(&Stage::Sfm).unwrap(), "\"sfm\"");
        assert_eq!(
            Stage::ALL
                .into_iter()
                .filter(|s| s.reads_originals())
                .collect::<Vec<_>>(),
            [Stage::Capture, Stage::Privacy]
        );
    }

    /// A stage gets only what it declares: SfM cannot open the checkpoint, render cannot see the
    /// original photos.
    #[test]
    fn upstream_hands_out_only_what_a_stage_declares() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let photos = dir.path().join("photos");
        let up = Upstream::new(&run, Stage::Sfm, Some(&photos));
        assert!(matches!(
            up.train(),
            Err(UpstreamError::Undeclared {
                stage: Stage::Sfm,
                wanted: Stage::Train
            })
        ));
        assert!(matches!(
            up.originals(),
            Err(UpstreamError::NoOriginals(Stage::Sfm))
        ));
        // Declared, but not committed: the error names the run folder.
        let e = up.capture().unwrap_err().to_string();
        assert!(e.contains("capture") && e.contains("run it first"), "{e}");
        let cap = Upstream::new(&run, Stage::Capture, Some(&photos));
        assert_eq!(cap.originals().unwrap(), photos);
        assert!(cap.capture().is_err(), "capture reads no earlier stage");
    }

    #[test]
    fn changes_are_named_by_key() {
        let a = serde_json::json!({"steps": 1500, "lr": 0.01, "sub": {"x": [1, 2]}});
        let b = serde_json::json!({"steps": 3000, "lr": 0.01, "sub": {"x": [1, 3]}, "new": true});
        let c = describe_changes(&a, &b, 8);
        assert_eq!(
            c,
            [
                "new added (true)",
                "steps: 1500 -> 3000",
                "sub.x.#2: 2 -> 3"
            ]
        );
        assert_eq!(describe_changes(&a, &b, 1).len(), 2);
        assert!(describe_changes(&a, &a, 8).is_empty());
    }

    #[test]
    fn machine_follows_the_config_and_device_override() {
        let mut c = crate::Config::default();
        c.privacy.memory_budget_gb = 2.5;
        c.train.device = Device::Cpu;
        let m = Machine::of(&c);
        assert_eq!(m.memory_budget_gb, 2.5);
        assert_eq!(m.train_device, Device::Cpu);
        let g = m.with_device(Some(Device::Gpu));
        assert_eq!(
            (g.train_device, g.render_device),
            (Device::Gpu, Device::Gpu)
        );
    }
}
