//! The bake stage under the pipeline's stage contract ([`flythrough_core::stage`]): load train's
//! checkpoint, bake it ([`crate::bake`]), cull what the training photos never saw, write
//! `bake/baked.safetensors`, and evaluate the baked model on the held-out photos under the train
//! stage's protocol beside the NeRF's figures.

use crate::finetune::{self, FinetuneOptions};
use crate::{BakedModel, bake, eval};
use flythrough_core::config::{BakeConfig, LoadedConfig, TrainConfig};
use flythrough_core::run::StageError;
use flythrough_core::stage::{FromConfig, PipelineStage, StageContext};
use flythrough_core::summary::{BakeSummary, TrainSummary};
use flythrough_core::{BakeOutput, Stage};
use flythrough_nerf::data::{Dataset, LoadOptions};
use flythrough_nerf::train::EvalOptions;
use serde::Serialize;
use std::time::Instant;

/// What the bake stage reads from the config: `[bake]`, and `[train]` for the photos and the
/// held-out protocol it evaluates with (the same as training's).
#[derive(Debug, Clone, Serialize)]
pub struct BakeInputs {
    pub bake: BakeConfig,
    pub train: TrainConfig,
}

impl FromConfig for BakeInputs {
    fn from_config(cfg: &LoadedConfig) -> BakeInputs {
        BakeInputs {
            bake: cfg.config.bake.clone(),
            train: cfg.config.train.clone(),
        }
    }
}

/// The representation, as the summary names it.
pub const REPRESENTATION: &str =
    "sparse 8-bit voxel grid in the contracted space (8^3 blocks) + deferred colour head";

/// The NeRF baked into a grid that renders in real time.
pub struct BakeStage;

impl PipelineStage for BakeStage {
    const STAGE: Stage = Stage::Bake;
    type Inputs = BakeInputs;
    type Summary = BakeSummary;

    fn run(inputs: &BakeInputs, ctx: &StageContext) -> Result<BakeSummary, StageError> {
        let up = &ctx.upstream;
        let train = up.train()?;
        let train_summary: TrainSummary = train
            .record()
            .summary()
            .map_err(|e| format!("{}: {e}", train.dir().display()))?;
        let images = up.redacted()?;
        let capture = up.capture()?;
        let manifest = capture.manifest()?;
        let blurry = if inputs.train.skip_blurry {
            capture.blurry()?
        } else {
            Vec::new()
        };
        let sfm = up.sfm()?;
        let rec = sfm.model()?;
        let ckpt = train.checkpoint();
        let (model, _, meta) = flythrough_nerf::checkpoint::load(&ckpt)?;
        // The dataset as training saw it (sizes, held-out split, normalisation).
        let mut ds = Dataset::load_model(
            &images,
            Some(&manifest),
            &rec,
            &sfm.model_dir(),
            &LoadOptions::from_config(&inputs.train, &blurry),
        )?;
        ds.norm = meta.norm;
        let cfg = &inputs.bake;
        let t0 = Instant::now();
        let pb = flythrough_core::progress::bar(1, "bake: sampling the NeRF");
        let rays = eval::training_rays(&ds, cfg.cull_rays);
        let grid = bake::bake_coarse_to_fine(
            &model,
            cfg.resolution,
            &rays,
            meta.norm.near as f32,
            cfg.min_weight as f32,
            (cfg.memory_budget_gb * 1e9) as u64,
            &|done, total| {
                pb.set_length(total as u64);
                pb.set_position(done as u64)
            },
        )?;
        pb.finish_and_clear();
        tracing::info!(
            "bake: {}^3 grid, {:.1} % of the blocks stored (seen by {} training rays)",
            cfg.resolution,
            100.0 * grid.occupied_fraction(),
            rays.len()
        );
        let mut baked = BakedModel::new(grid, &model, &meta);
        baked.background = eval::mean_colour(&ds);
        let opts = FinetuneOptions {
            steps: cfg.finetune_steps,
            batch_rays: cfg.finetune_batch_rays,
            lr_features: cfg.finetune_lr_features as f32,
            lr_density: cfg.finetune_lr_density as f32,
            lr_head: cfg.finetune_lr_head as f32,
            distortion: cfg.finetune_distortion as f32,
            seed: inputs.train.seed,
        };
        let pb = flythrough_core::progress::bar(opts.steps as u64, "bake: fine-tuning");
        let tuned = finetune::finetune(&mut baked, &ds, &opts, &|done, _| {
            pb.set_position(done as u64)
        });
        pb.finish_and_clear();
        if opts.steps > 0 {
            tracing::info!(
                "bake: fine-tuned {} steps in {:.1} s: training-batch PSNR {:.2} -> {:.2} dB",
                tuned.steps,
                tuned.seconds,
                tuned.psnr_train_start,
                tuned.psnr_train_end
            );
        }
        let path = ctx.out.join(BakeOutput::MODEL);
        let bytes = baked.to_bytes()?;
        flythrough_core::run::write_atomic(&path, &bytes)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let bake_seconds = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let opts = EvalOptions {
            downscale: inputs.train.eval_downscale,
            max_photos: inputs.train.eval_max_photos,
            glo_steps: inputs.train.glo_eval_steps,
            trained_rays: meta.step * inputs.train.batch_rays,
        };
        let report = eval::evaluate_baked(
            &baked,
            &model,
            &meta,
            &ds,
            &opts,
            Some(&ctx.out.join("holdout")),
        );
        tracing::info!(
            "bake: held-out PSNR {:.2} dB baked, {:.2} dB NeRF ({} photos)",
            report.mean_psnr,
            train_summary.psnr_holdout,
            report.photos.len()
        );
        Ok(BakeSummary {
            representation: if tuned.steps > 0 {
                format!("{REPRESENTATION}, fine-tuned with the 8-bit quantisation in the loop")
            } else {
                REPRESENTATION.into()
            },
            resolution: cfg.resolution,
            block: crate::grid::BLOCK,
            occupied_fraction: baked.grid.occupied_fraction(),
            bytes: bytes.len() as u64,
            model_blake3: blake3_hex(&bytes),
            bake_seconds,
            finetune_steps: tuned.steps,
            finetune_seconds: tuned.seconds,
            finetune_psnr_train_start: tuned.psnr_train_start,
            finetune_psnr_train_end: tuned.psnr_train_end,
            eval_protocol: report.protocol.clone(),
            psnr_holdout_baked: report.mean_psnr,
            ssim_holdout_baked: report.mean_ssim,
            psnr_holdout_nerf: train_summary.psnr_holdout,
            ssim_holdout_nerf: train_summary.ssim_holdout,
            eval_seconds: t1.elapsed().as_secs_f64(),
        })
    }
}

fn blake3_hex(b: &[u8]) -> String {
    blake3::hash(b).to_hex().to_string()
}
