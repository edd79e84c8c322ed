//! What the SfM tests share: the stage's inputs for a config, the report, and the stage on a
//! freshly generated synthetic venue.
#![allow(dead_code)]

use flythrough_core::LoadedConfig;
use flythrough_core::config::Config;
use flythrough_core::stage::FromConfig;
use flythrough_core::summary::SfmSummary;
use flythrough_sfm::SfmInputs;
use std::path::{Path, PathBuf};

/// The SfM stage's inputs for a default config edited by `edit`, with `dir` as its folder.
pub fn config_for(dir: &Path, edit: impl FnOnce(&mut Config)) -> SfmInputs {
    let mut config = Config::default();
    edit(&mut config);
    SfmInputs::from_config(&LoadedConfig {
        config,
        path: dir.join("venue.toml"),
        dir: dir.to_path_buf(),
        photos_dir: dir.to_path_buf(),
    })
}

/// `out/report.json` as JSON.
pub fn report(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

/// A synthetic venue of `images` photos of `width`x`height` generated in `dir` and reconstructed into `dir/sfm`: the venue, the stage's summary
/// and the output folder.
pub fn synth_venue_sfm(
    dir: &Path,
    images: usize,
    width: u32,
    height: u32,
) -> (flythrough_synth::SynthSummary, SfmSummary, PathBuf) {
    let s = flythrough_testkit::synth_venue(dir, images, width, height);
    let cfg = SfmInputs::from_config(&Config::load(&s.config_path).unwrap());
    let images = flythrough_testkit::cleared_images(&s.photos_dir).unwrap();
    let out = dir.join("sfm");
    std::fs::create_dir_all(&out).unwrap();
    let summary = flythrough_sfm::run(&cfg, &images, None, &out).unwrap();
    (s, summary, out)
}
