//! The privacy stage under the pipeline's stage contract ([`flythrough_core::stage`]).

use flythrough_core::Stage;
use flythrough_core::config::PrivacyConfig;
use flythrough_core::run::StageError;
use flythrough_core::stage::{PipelineStage, StageContext};
use flythrough_core::summary::PrivacySummary;

/// Find and blur faces in every original photo before any later stage sees one. The runner seals
/// `privacy/images/` in `stage.json` ([`Stage::sealed_folder`]).
pub struct PrivacyStage;

impl PipelineStage for PrivacyStage {
    const STAGE: Stage = Stage::Privacy;
    /// `[privacy]` (its memory budget is a machine setting, not serialised).
    type Inputs = PrivacyConfig;
    type Summary = PrivacySummary;

    fn run(inputs: &PrivacyConfig, ctx: &StageContext) -> Result<PrivacySummary, StageError> {
        let manifest = ctx.upstream.capture()?.manifest()?;
        Ok(crate::redact_photos(
            inputs,
            ctx.upstream.originals()?,
            ctx.machine.memory_budget_gb,
            &manifest,
            ctx.out,
        )?)
    }
}
