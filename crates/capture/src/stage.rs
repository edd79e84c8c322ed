//! The capture stage under the pipeline's stage contract ([`flythrough_core::stage`]).

use crate::run;
use flythrough_core::Stage;
use flythrough_core::config::CaptureConfig;
use flythrough_core::run::StageError;
use flythrough_core::stage::{InputEnv, PipelineStage, StageContext};
use flythrough_core::summary::CaptureSummary;

/// Ingest the photo folder: EXIF, exposure, focal priors, quality checks.
pub struct CaptureStage;

impl PipelineStage for CaptureStage {
    const STAGE: Stage = Stage::Capture;
    /// `[capture]`, all of it. The photos' contents are the input hash.
    type Inputs = CaptureConfig;
    type Summary = CaptureSummary;

    /// The photo folder's fingerprint (names and contents), or the remote listing's.
    fn input_hash(_: &CaptureConfig, _: &[String], env: &InputEnv) -> Result<String, StageError> {
        if let Some(h) = &env.remote_photos_fingerprint {
            return Ok(h.clone());
        }
        let photos = env
            .originals
            .ok_or("capture: the run has no photo folder to fingerprint")?;
        Ok(crate::input_hash(photos)?)
    }

    fn run(inputs: &CaptureConfig, ctx: &StageContext) -> Result<CaptureSummary, StageError> {
        Ok(run(
            ctx.upstream.originals()?,
            inputs,
            ctx.machine.memory_budget_gb,
            ctx.out,
        )?)
    }
}
