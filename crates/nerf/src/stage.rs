//! The train stage under the pipeline's stage contract ([`flythrough_core::stage`]).

use crate::{TrainData, train_stage};
use flythrough_core::Stage;
use flythrough_core::config::TrainConfig;
use flythrough_core::run::StageError;
use flythrough_core::stage::{PipelineStage, StageContext};
use flythrough_core::summary::TrainSummary;

/// mip-NeRF 360 training on the redacted photos and the SfM poses.
pub struct TrainStage;

impl PipelineStage for TrainStage {
    const STAGE: Stage = Stage::Train;
    /// `[train]` (its `device` is a machine setting, not serialised).
    type Inputs = TrainConfig;
    type Summary = TrainSummary;

    fn run(inputs: &TrainConfig, ctx: &StageContext) -> Result<TrainSummary, StageError> {
        let up = &ctx.upstream;
        let images = up.redacted()?;
        let capture = up.capture()?;
        let manifest = capture.manifest()?;
        let blurry = if inputs.skip_blurry {
            capture.blurry()?
        } else {
            Vec::new()
        };
        let sfm = up.sfm()?;
        let model = sfm.model()?;
        let data = TrainData {
            images: &images,
            manifest: Some(&manifest),
            blurry: &blurry,
            model: &model,
            model_dir: &sfm.model_dir(),
        };
        Ok(train_stage(
            inputs,
            ctx.machine.train_device,
            ctx.hooks,
            &data,
            ctx.out,
            ctx.work,
        )?)
    }
}
