//! The trained NeRF (`flythrough-nerf`'s [`NerfRenderer`]) as a [`RaySource`].
//!
//! Rays go in the SfM world frame (metric), as the render API expects; the exposure is the absolute
//! EV of the manifest; the appearance latent is `[render] appearance` (`mean`, `zero` or a training
//! photo's file name). The cone radius (mip-NeRF's `radii`, per unit distance) comes from the
//! camera's pixel footprint, `2/√12 ×` the pixel's angular size (multinerf `camera_utils`).

use crate::RenderError;
use crate::source::RaySource;
use flythrough_core::config::Appearance;
use flythrough_nerf::{LatentChoice, NerfRenderer, RenderOptions};
use std::path::Path;

/// A loaded NeRF with the render settings of this run.
pub struct NerfSource {
    renderer: NerfRenderer,
    latent: LatentChoice,
}

impl NerfSource {
    /// Load `train_dir/checkpoints/final.safetensors`.
    pub fn load(train_dir: &Path, appearance: &Appearance) -> Result<NerfSource, RenderError> {
        let renderer = NerfRenderer::load(train_dir)
            .map_err(|e| RenderError::Model(format!("{}: {e}", train_dir.display())))?;
        let latent = match appearance {
            Appearance::Mean => LatentChoice::Mean,
            Appearance::Zero => LatentChoice::Zero,
            Appearance::Photo(name) => LatentChoice::Photo(name.clone()),
        };
        Ok(NerfSource { renderer, latent })
    }
}

impl RaySource for NerfSource {
    fn render_rays(
        &self,
        origins: &[[f32; 3]],
        dirs: &[[f32; 3]],
        exposure_ev: f64,
    ) -> Vec<[f32; 3]> {
        self.render_cone_rays(origins, dirs, None, exposure_ev)
    }

    fn render_cone_rays(
        &self,
        origins: &[[f32; 3]],
        dirs: &[[f32; 3]],
        radius: Option<f32>,
        exposure_ev: f64,
    ) -> Vec<[f32; 3]> {
        let opts = RenderOptions {
            exposure_ev: Some(exposure_ev),
            latent: self.latent.clone(),
            radius_px: radius,
        };
        self.renderer.render_rays(origins, dirs, &opts).rgb
    }

    fn name(&self) -> String {
        "nerf".into()
    }
}
