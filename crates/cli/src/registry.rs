//! The registry: every stage of the pipeline, in order. This list and [`flythrough_core::stage`]
//! are the only places that know the stages one by one; the runner ([`crate::pipeline`]), the
//! report and the object-store sync iterate them. A new stage is one line here.

use flythrough_core::Stage;
use flythrough_core::stage::{AnyStage, Registered};

/// The stages in pipeline order (the same order as [`Stage::ALL`]; a test checks it).
pub static STAGES: [&dyn AnyStage; 6] = [
    &Registered::<flythrough_capture::CaptureStage>::NEW,
    &Registered::<flythrough_privacy::PrivacyStage>::NEW,
    &Registered::<flythrough_sfm::SfmStage>::NEW,
    &Registered::<flythrough_nerf::TrainStage>::NEW,
    &Registered::<flythrough_bake::BakeStage>::NEW,
    &Registered::<flythrough_render::RenderStage>::NEW,
];

/// The registered stage `stage`.
pub fn stage(stage: Stage) -> &'static dyn AnyStage {
    STAGES[stage.index()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_follows_the_stage_order() {
        let order: Vec<Stage> = STAGES.iter().map(|s| s.stage()).collect();
        assert_eq!(order, Stage::ALL);
    }

    /// A stage's inputs are its config hash: a setting it reads changes it, a machine setting does
    /// not; and the hashes of run folders made before the stage contract stay valid (the inputs
    /// serialise as the sections did).
    #[test]
    fn inputs_hash_what_stages_read_and_nothing_of_the_machine() {
        use flythrough_core::config::{BrokenPhotoPolicy, Device, LoadedConfig};
        use flythrough_core::stage::config_hash;
        let base = LoadedConfig {
            config: flythrough_core::Config::default(),
            path: "v.toml".into(),
            dir: ".".into(),
            photos_dir: "photos".into(),
        };
        let hashes = |c: &LoadedConfig| -> Vec<String> {
            STAGES
                .iter()
                .map(|s| config_hash(&s.inputs_json(c)))
                .collect()
        };
        let h0 = hashes(&base);
        // Machine settings: no stage re-runs.
        let mut m = base.clone();
        m.config.train.device = Device::Gpu;
        m.config.render.device = Device::Cpu;
        m.config.privacy.memory_budget_gb = 3.0;
        m.config.render.max_path_frames = 7;
        assert_eq!(hashes(&m), h0);
        // What each stage reads: exactly that stage (and only it) changes.
        type Edit = fn(&mut flythrough_core::Config);
        let edits: [(Stage, Edit); 7] = [
            (Stage::Capture, |c| c.capture.blur_threshold += 1.0),
            (Stage::Privacy, |c| c.privacy.min_face_px += 1.0),
            (Stage::Sfm, |c| {
                c.capture.on_broken_photo = BrokenPhotoPolicy::Fail
            }),
            (Stage::Train, |c| c.train.steps += 1),
            (Stage::Bake, |c| c.bake.resolution += 8),
            (Stage::Render, |c| c.render.fps += 1.0),
            (Stage::Render, |c| c.venue.name.push('x')),
        ];
        for (stage, edit) in edits {
            let mut e = base.clone();
            edit(&mut e.config);
            let h = hashes(&e);
            for s in Stage::ALL {
                // capture.on_broken_photo is read by capture and SfM; [train] by train and bake
                // (bake evaluates on the photos and under the protocol training used).
                let reads = s == stage
                    || (stage == Stage::Sfm && s == Stage::Capture)
                    || (stage == Stage::Train && s == Stage::Bake);
                assert_eq!(
                    h[s.index()] != h0[s.index()],
                    reads,
                    "{stage} edit, {s} hash"
                );
            }
        }
        // The hashes earlier versions computed from the sections (minus machine keys).
        let c = &base.config;
        let old = |v: serde_json::Value| config_hash(&v);
        assert_eq!(h0[0], old(serde_json::to_value(&c.capture).unwrap()));
        assert_eq!(h0[1], old(serde_json::to_value(&c.privacy).unwrap()));
        assert_eq!(
            h0[2],
            old(serde_json::to_value((&c.sfm, &c.calibration)).unwrap())
        );
        assert_eq!(h0[3], old(serde_json::to_value(&c.train).unwrap()));
    }
}
