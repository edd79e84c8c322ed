//! Typed handles to the committed outputs of the stages. Each handle owns its stage's file names as
//! constants and opens only a stage the runner committed (its `stage.json` is there), so no crate
//! spells another stage's file names or picks fields out of its JSON by name.
//!
//! Privacy's output has its own handle with a seal check: [`crate::RedactedImages`].
//!
//! | stage | handle | files |
//! |---|---|---|
//! | capture | [`CaptureOutput`] | `manifest.json` ([`Manifest`]), `qa.json` |
//! | sfm | [`SfmOutput`] | `sparse/` (COLMAP text), `report.json` ([`SfmReport`]), `transforms.json` |
//! | train | [`TrainOutput`] | `checkpoints/final.safetensors`, `eval.json`, `metrics.jsonl`, `model.json`, `loss.png` |

use crate::colmap::Reconstruction;
use crate::manifest::Manifest;
use crate::run::{RunDir, StageRecord};
use crate::stage::Stage;
use crate::summary::{FileIssue, SfmSummary, Summary};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A committed stage output that is missing or unreadable.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error(
        "{}: the {stage} stage has not finished for this run (no {stage}/stage.json); run it first",
        run.display()
    )]
    NotCommitted { stage: Stage, run: PathBuf },
    #[error("{}: {msg}", path.display())]
    Read { path: PathBuf, msg: String },
}

/// The folder and record of a committed stage.
#[derive(Debug, Clone)]
struct Committed {
    dir: PathBuf,
    record: StageRecord,
}

impl Committed {
    fn open(run: &RunDir, stage: Stage) -> Result<Committed, ArtifactError> {
        let record = run
            .record(stage)
            .filter(|r| r.stage == stage)
            .ok_or_else(|| ArtifactError::NotCommitted {
                stage,
                run: run.root().to_path_buf(),
            })?;
        Ok(Committed {
            dir: run.stage_dir(stage),
            record,
        })
    }

    fn summary<T: Summary>(&self) -> Result<T, ArtifactError> {
        self.record
            .summary::<T>()
            .map_err(|msg| ArtifactError::Read {
                path: self.dir.join("stage.json"),
                msg,
            })
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, ArtifactError> {
        let path = self.dir.join(name);
        let text = std::fs::read_to_string(&path).map_err(|e| ArtifactError::Read {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| ArtifactError::Read {
            path,
            msg: format!("{e}; redo the stage that wrote it with --force"),
        })
    }
}

/// `RUN/capture/`: the manifest (per photo: size, EXIF, exposure, focal prior) and the QA report.
#[derive(Debug, Clone)]
pub struct CaptureOutput(Committed);

impl CaptureOutput {
    pub const MANIFEST: &'static str = "manifest.json";
    pub const QA: &'static str = "qa.json";

    /// Capture's committed output of `run`.
    pub fn open(run: &RunDir) -> Result<CaptureOutput, ArtifactError> {
        Committed::open(run, Stage::Capture).map(CaptureOutput)
    }

    /// `RUN/capture/manifest.json`, for messages and for readers that only need its path.
    pub fn manifest_path(&self) -> PathBuf {
        self.0.dir.join(Self::MANIFEST)
    }

    /// The manifest.
    pub fn manifest(&self) -> Result<Manifest, ArtifactError> {
        let path = self.manifest_path();
        Manifest::read(&path).map_err(|e| ArtifactError::Read {
            path,
            msg: e.to_string(),
        })
    }

    /// The photos capture's QA flagged blurry (its typed summary).
    pub fn blurry(&self) -> Result<Vec<String>, ArtifactError> {
        Ok(self.0.summary::<crate::summary::CaptureSummary>()?.blurry)
    }

    pub fn record(&self) -> &StageRecord {
        &self.0.record
    }
}

/// `RUN/sfm/`: the model, its report and the nerfstudio export.
#[derive(Debug, Clone)]
pub struct SfmOutput(Committed);

impl SfmOutput {
    /// The COLMAP text model's folder.
    pub const SPARSE: &'static str = "sparse";
    pub const REPORT: &'static str = "report.json";
    pub const TRANSFORMS: &'static str = "transforms.json";
    /// How `transforms.json` names the photos: relative to `RUN/sfm/`.
    pub const TRANSFORMS_IMAGE_PREFIX: &'static str = "../privacy/images/";

    /// SfM's committed output of `run`.
    pub fn open(run: &RunDir) -> Result<SfmOutput, ArtifactError> {
        Committed::open(run, Stage::Sfm).map(SfmOutput)
    }

    /// `RUN/sfm/sparse`.
    pub fn model_dir(&self) -> PathBuf {
        self.0.dir.join(Self::SPARSE)
    }

    /// The reconstruction (metric, gravity-aligned).
    pub fn model(&self) -> Result<Reconstruction, ArtifactError> {
        let dir = self.model_dir();
        Reconstruction::read(&dir).map_err(|e| ArtifactError::Read {
            path: dir,
            msg: format!("cannot read the SfM model: {e}"),
        })
    }

    /// `RUN/sfm/report.json`.
    pub fn report(&self) -> Result<SfmReport, ArtifactError> {
        self.0.read_json(Self::REPORT)
    }

    pub fn record(&self) -> &StageRecord {
        &self.0.record
    }
}

/// `RUN/train/`: the trained model and its evaluation.
#[derive(Debug, Clone)]
pub struct TrainOutput(Committed);

impl TrainOutput {
    /// Weights and metadata (no optimizer state): what rendering reads.
    pub const CHECKPOINT: &'static str = "checkpoints/final.safetensors";
    pub const EVAL: &'static str = "eval.json";
    pub const METRICS: &'static str = "metrics.jsonl";
    pub const MODEL_JSON: &'static str = "model.json";

    /// Training's committed output of `run`.
    pub fn open(run: &RunDir) -> Result<TrainOutput, ArtifactError> {
        Committed::open(run, Stage::Train).map(TrainOutput)
    }

    /// The folder (`RUN/train`), for messages.
    pub fn dir(&self) -> &Path {
        &self.0.dir
    }

    /// `RUN/train/checkpoints/final.safetensors`.
    pub fn checkpoint(&self) -> PathBuf {
        self.0.dir.join(Self::CHECKPOINT)
    }

    /// A file of the stage named by its summary (the loss plot).
    pub fn file(&self, rel: &str) -> PathBuf {
        self.0.dir.join(rel)
    }

    pub fn record(&self) -> &StageRecord {
        &self.0.record
    }
}

/// The bake stage's committed output (`RUN/bake`): the baked model, whose blake3 the stage's summary
/// records and [`BakeOutput::open`] checks (a replaced or damaged file is refused by render and view).
#[derive(Debug, Clone)]
pub struct BakeOutput(Committed);

impl BakeOutput {
    /// The baked model (grid, colour head, latents).
    pub const MODEL: &'static str = "baked.safetensors";

    /// Bake's committed output of `run`, its model file checked against the hash in `stage.json`.
    pub fn open(run: &RunDir) -> Result<BakeOutput, ArtifactError> {
        let c = Committed::open(run, Stage::Bake)?;
        let want = c.summary::<crate::summary::BakeSummary>()?.model_blake3;
        let out = BakeOutput(c);
        let path = out.model();
        let got = crate::run::hash_file(&path).map_err(|e| ArtifactError::Read {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        if got != want {
            return Err(ArtifactError::Read {
                path,
                msg:
                    "does not match the hash its stage.json records (changed after the bake stage \
                      wrote it); redo it with `flythrough run CONFIG --force bake`"
                        .into(),
            });
        }
        Ok(out)
    }

    /// The folder (`RUN/bake`), for messages.
    pub fn dir(&self) -> &Path {
        &self.0.dir
    }

    /// `RUN/bake/baked.safetensors`.
    pub fn model(&self) -> PathBuf {
        self.0.dir.join(Self::MODEL)
    }

    pub fn record(&self) -> &StageRecord {
        &self.0.record
    }
}

/// A photo that is not in the model, and why.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Unregistered {
    pub name: String,
    pub reason: String,
}

/// One calibration pair's scale.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CalibrationResult {
    pub a: String,
    pub b: String,
    pub distance_m: f64,
    /// Distance of the reconstructed centres before scaling (model units); `None` if unregistered.
    pub reconstructed: Option<f64>,
    pub scale: Option<f64>,
}

/// The metric scale and how well the calibration pairs agree.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScaleReport {
    /// Metres per model unit (1 without calibration pairs).
    pub value: f64,
    /// `(max − min) / median` of the per-pair scales (0 with one pair).
    pub spread: f64,
    pub pairs: Vec<CalibrationResult>,
    pub warning: Option<String>,
}

/// One camera (shared intrinsics) of the model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CameraReport {
    pub id: u32,
    pub key: String,
    pub model: String,
    pub width: u32,
    pub height: u32,
    pub focal_px: f64,
    pub k1: f64,
    pub k2: f64,
    pub focal_prior_px: f64,
    /// `exif`, or `self-calibrated` from the fundamental matrices.
    pub focal_prior_source: String,
    pub images: usize,
}

/// `sfm/report.json`: written by the SfM stage, read back by render (the world's up) and anyone else.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SfmReport {
    pub registered: usize,
    pub total: usize,
    /// Every photo not in the model, with the reason (left out as featureless or unreadable, in a
    /// separate smaller model, or not registered).
    pub unregistered: Vec<Unregistered>,
    /// Photos left out before matching (featureless, tiny or unreadable), a subset of `unregistered`.
    pub left_out: Vec<String>,
    /// The photos of smaller models that were not kept (the model broke into pieces), largest
    /// first; each is also in `unregistered`.
    pub other_models: Vec<Vec<String>>,
    pub points: usize,
    pub mean_track_length: f64,
    /// Mean and RMS reprojection error over all point observations, in pixels of the full-resolution
    /// photos (the model's resolution).
    pub mean_reproj_px: f64,
    pub rms_reproj_px: f64,
    /// The same mean in pixels of the feature-extraction resolution (`mean_reproj_px / pixel_scale`).
    pub mean_reproj_px_feature_scale: f64,
    /// Full-resolution pixels per feature-extraction pixel.
    pub pixel_scale: f64,
    pub matched_pairs: usize,
    pub verified_pairs: usize,
    /// With sequential pair selection: the verified pairs of photos more than `sequential_overlap`
    /// apart in capture order, which only retrieval proposed (loop closures and revisits); null
    /// when every pair was matched.
    pub verified_retrieval_pairs: Option<usize>,
    pub init_pair: Option<[String; 2]>,
    pub timings_s: BTreeMap<String, f64>,
    pub scale: ScaleReport,
    /// The world's up axis (cameras' mean up is rotated onto it); the origin is the centroid of
    /// the camera centres; units are metres when `scale.warning` is null.
    pub up: [f64; 3],
    pub cameras: Vec<CameraReport>,
    /// The imported model's folder when `[sfm] import` was used.
    pub imported: Option<String>,
}

impl SfmReport {
    /// The world's up as a unit vector, `None` when the report's is not usable.
    pub fn up_unit(&self) -> Option<nalgebra::Vector3<f64>> {
        let u = nalgebra::Vector3::from(self.up);
        (u.norm() > 1e-9 && u.iter().all(|x| x.is_finite())).then(|| u.normalize())
    }

    /// The stage's summary (for `stage.json` and the report).
    pub fn summary(&self) -> SfmSummary {
        SfmSummary {
            registered: self.registered,
            total: self.total,
            unregistered: self
                .unregistered
                .iter()
                .map(|u| FileIssue {
                    file: u.name.clone(),
                    reason: u.reason.clone(),
                })
                .collect(),
            left_out: self.left_out.clone(),
            other_models: self.other_models.clone(),
            points: self.points,
            mean_track_length: self.mean_track_length,
            mean_reproj_px: self.mean_reproj_px,
            rms_reproj_px: self.rms_reproj_px,
            scale: self.scale.value,
            scale_spread: self.scale.spread,
            calibration_pairs: self.scale.pairs.len(),
            scale_warning: self.scale.warning.clone(),
            cameras: self.cameras.len(),
            init_pair: self.init_pair.clone(),
            imported: self.imported.clone(),
            seconds: self.timings_s.get("total").copied().unwrap_or(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{StageSummary, run_stage};

    /// A handle opens only a committed stage, and reads what the stage wrote under its own names.
    #[test]
    fn handles_open_committed_stages_only() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let e = SfmOutput::open(&run).unwrap_err().to_string();
        assert!(e.contains("sfm stage has not finished"), "{e}");
        // Files without a stage.json (a half-copied folder) are not a committed stage.
        std::fs::create_dir_all(run.stage_dir(Stage::Sfm)).unwrap();
        std::fs::write(run.stage_dir(Stage::Sfm).join(SfmOutput::REPORT), "{}").unwrap();
        assert!(SfmOutput::open(&run).is_err());
        let report = SfmReport {
            registered: 3,
            up: [0.0, 0.0, 2.0],
            ..Default::default()
        };
        run_stage(&run, Stage::Sfm, "i", "c", false, |out, _| {
            crate::run::write_json(&out.join(SfmOutput::REPORT), &report)?;
            Ok(StageSummary::of(&report.summary()))
        })
        .unwrap();
        let sfm = SfmOutput::open(&run).unwrap();
        let back = sfm.report().unwrap();
        assert_eq!(back, report);
        assert_eq!(back.up_unit().unwrap(), nalgebra::Vector3::z());
        assert!(sfm.model().unwrap_err().to_string().contains("sparse"));
        // A report this program cannot read is named, with what to do.
        std::fs::write(
            run.stage_dir(Stage::Sfm).join(SfmOutput::REPORT),
            "{\"up\": 1}",
        )
        .unwrap();
        let e = sfm.report().unwrap_err().to_string();
        assert!(e.contains("report.json") && e.contains("--force"), "{e}");
    }
}
