//! The test kit: what the workspace's tests, examples and benchmarks share. It is only ever a
//! dev-dependency, so none of it is in a release build of the binary (a test checks that the
//! binary holds none of its strings).
//!
//! - [`testdata`]: the shared real-photo data and tools on the PATH; under `CI=true` a missing one
//!   fails the test, elsewhere the test skips visibly.
//! - [`s3`]: a moto S3 server on localhost.
//! - [`test_gpu`]: the GPU adapter for kernel tests (lavapipe in CI), buffers poisoned with NaN.
//! - [`synth_venue`]: a small synthetic venue and its config.
//! - [`cleared_images`]: a folder of photos that need no redaction (the Middlebury temple, the
//!   synthetic room) as [`RedactedImages`], without a privacy stage.

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
/// `dir`; returns its config, `dir/venue.toml`.
pub fn synth_venue(dir: &Path, images: usize, width: u32, height: u32) -> std::path::PathBuf {
    let opts = flythrough_synth::SynthOptions {
        images,
        width,
        height,
        ..Default::default()
    };
    flythrough_synth::generate(&opts, dir).expect("generate the synthetic venue");
    dir.join("venue.toml")
}

/// A folder of photos without personal data as redacted photos, without a privacy stage.
pub fn cleared_images(dir: &Path) -> Result<RedactedImages, RedactedError> {
    RedactedImages::from_cleared_folder(dir)
}
