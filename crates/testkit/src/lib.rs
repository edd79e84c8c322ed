//! The test kit: what the workspace's tests, examples and benchmarks share. It is only ever a
//! dev-dependency, so none of it is in a release build of the binary (a test checks that the
//! binary holds none of its strings).
//!
//! - [`testdata`]: the shared real-photo data and tools on the PATH; under `CI=true` a missing one
//!   fails the test, elsewhere the test skips visibly.
//! - [`s3`]: a moto S3 server on localhost.
//! - [`fuzz`]: arbitrary and damaged inputs for the fuzz properties of the readers of untrusted files.
//! - [`test_gpu`]: the GPU adapter for kernel tests (lavapipe in CI), buffers poisoned with NaN.
//! - [`synth_venue`]: a small synthetic venue and its config.
//! - [`cleared_images`]: a folder of photos that need no redaction (the Middlebury temple, the
//!   synthetic room) as [`RedactedImages`], without a privacy stage.

pub mod fuzz;
pub mod s3;
pub mod testdata;

use flythrough_core::RedactedImages;
use flythrough_core::images::RedactedError;
use flythrough_gpu::{Gpu, Selection};
use std::path::Path;
use std::sync::Arc;

/// The device for tests: any adapter (lavapipe in CI). Under `CI=true` a missing adapter fails
/// the test, naming what to install; elsewhere the test skips, visibly ([`testdata::skip`]: a line,
/// and one in the skip log `scripts/test.sh` counts). New buffers are poisoned with NaN so no
/// kernel can rely on zeroed memory.
#[track_caller]
pub fn test_gpu() -> Option<Arc<Gpu>> {
    match Gpu::shared(Selection::Any) {
        Ok(Some(g)) => {
            g.set_poison(true);
            Some(g)
        }
        Ok(None) => unreachable!("Selection::Any never returns Ok(None)"),
        Err(e) => {
            testdata::skip(
                &format!("a GPU adapter for the wgpu tests ({e})"),
                "scripts/setup.sh installs mesa-vulkan-drivers (lavapipe)",
            );
            None
        }
    }
}

/// A small synthetic venue (`flythrough synth` with `images` photos of `width`x`height`) written to
/// `dir`: where its config, photos and ground truth are.
pub fn synth_venue(
    dir: &Path,
    images: usize,
    width: u32,
    height: u32,
) -> flythrough_synth::SynthSummary {
    let opts = flythrough_synth::SynthOptions {
        images,
        width,
        height,
        ..Default::default()
    };
    flythrough_synth::generate(&opts, dir).expect("generate the synthetic venue")
}

/// A scene to train on: photos without personal data, their manifest (exposures) and a COLMAP
/// model in `sfm_dir/sparse`.
pub struct TrainingScene {
    pub images: RedactedImages,
    pub manifest: flythrough_core::Manifest,
    pub sfm_dir: std::path::PathBuf,
}

/// The synthetic venue (`images` photos of `width`x`height`, generated in `dir/venue`) as a
/// training scene: its ground-truth model as `dir/sfm/sparse` and a manifest of its EXIF exposures.
pub fn synth_training_scene(dir: &Path, width: u32, height: u32, images: usize) -> TrainingScene {
    use flythrough_core::manifest::{Exposure, ExposureSource, FocalPrior, FocalRule, PhotoRecord};
    let venue = synth_venue(&dir.join("venue"), images, width, height);
    let gt = &venue.ground_truth_dir;
    let sparse = dir.join("sfm").join("sparse");
    std::fs::create_dir_all(&sparse).expect("create sfm/sparse");
    for f in ["cameras.txt", "images.txt", "points3D.txt"] {
        std::fs::copy(gt.join(f), sparse.join(f)).expect("copy the ground-truth model");
    }
    let info: flythrough_synth::SceneInfo = serde_json::from_str(
        &std::fs::read_to_string(gt.join("scene.json")).expect("read scene.json"),
    )
    .expect("parse scene.json");
    let mut manifest = flythrough_core::Manifest::default();
    for (i, p) in info.photos.iter().enumerate() {
        manifest.photos.push(PhotoRecord {
            id: i as u32 + 1,
            file: p.name.clone(),
            width,
            height,
            exif: Default::default(),
            exposure: Exposure {
                ev: p.ev,
                source: ExposureSource::Exif,
            },
            focal_prior: FocalPrior {
                px: info.camera.fx,
                rule: FocalRule::DefaultFactor,
            },
            camera_key: "synth".into(),
        });
    }
    TrainingScene {
        images: cleared_images(&venue.photos_dir).expect("the synthetic photos"),
        manifest,
        sfm_dir: dir.join("sfm"),
    }
}

/// One face per photo of `../shared/data` (relative paths): hand-checked face boxes `[x, y, w, h]` (hairline to chin, cheek to cheek), drawn over the photos
/// and checked by eye.
pub const SINGLE_FACES: &[(&str, [u32; 4])] = &[
    (
        "faces/scikit_image_0.26.0/astronaut.png",
        [180, 65, 92, 110],
    ),
    ("faces/scikit_image_0.26.0/camera.png", [193, 112, 70, 86]), // profile
    ("faces/pillow_13.0.0/hopper.jpg", [40, 28, 46, 50]),
    ("faces/max_facial_recognizer/Bryan.png", [36, 26, 36, 50]),
    (
        "faces/max_facial_recognizer/Luciano.png",
        [130, 50, 140, 175],
    ),
    (
        "faces/max_facial_recognizer/Chris.jpeg",
        [128, 105, 250, 330],
    ),
    (
        "faces/max_facial_recognizer/Paul.jpeg",
        [105, 140, 265, 375],
    ),
    (
        "faces/max_facial_recognizer/Paul2.jpeg",
        [105, 160, 315, 440],
    ),
];

/// A folder of photos without personal data as redacted photos, without a privacy stage.
pub fn cleared_images(dir: &Path) -> Result<RedactedImages, RedactedError> {
    RedactedImages::from_cleared_folder(dir)
}
