//! The trained NeRF (`flythrough-nerf`'s [`NerfRenderer`]) as a [`RaySource`].
//!
//! Rays go in the SfM world frame (metric), as the render API expects; the exposure is the absolute
//! EV of the manifest; the appearance latent is `[render] appearance` (`mean`, `zero` or a training
//! photo's file name). The cone radius (mip-NeRF's `radii`, per unit distance) comes from the
//! camera's pixel footprint, `2/√12 ×` the pixel's angular size (multinerf `camera_utils`).

use crate::RenderError;
use crate::cameras::RayCamera;
use crate::source::{FrameCam, PendingFrame, RaySource, SourceDevice};
use flythrough_core::config::{Appearance, Device};
use flythrough_core::{Camera, CameraModel, Pose, TrainOutput};
use flythrough_nerf::gpu::{FrameCamera, FrameTicket};
use flythrough_nerf::{LatentChoice, NerfRenderer, RenderOptions};
use image::RgbImage;
use std::path::Path;

/// A loaded NeRF with the render settings of this run.
pub struct NerfSource {
    renderer: NerfRenderer,
    latent: LatentChoice,
}

impl NerfSource {
    /// Load training's committed checkpoint to render on `device` (`[render] device`).
    pub fn load(
        train: &TrainOutput,
        appearance: &Appearance,
        device: Device,
    ) -> Result<NerfSource, RenderError> {
        Self::from_checkpoint(&train.checkpoint(), appearance, device)
    }

    /// Load any checkpoint file to render on `device`.
    pub fn from_checkpoint(
        checkpoint: &Path,
        appearance: &Appearance,
        device: Device,
    ) -> Result<NerfSource, RenderError> {
        let renderer = NerfRenderer::from_checkpoint(checkpoint)
            .and_then(|r| r.on_device(device))
            .map_err(|e| RenderError::Model(format!("{}: {e}", checkpoint.display())))?;
        let (latent, warning) = latent_choice(appearance, &renderer.meta.train_names);
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        Ok(NerfSource { renderer, latent })
    }
}

/// The latent `[render] appearance` asks for, resolved once for the whole render against the photos
/// the model was trained on, with the warning to print (once) when the named photo is not one of
/// them: the mean latent is used then. Passed on unresolved, the renderer would warn at every frame.
fn latent_choice(
    appearance: &Appearance,
    train_names: &[String],
) -> (LatentChoice, Option<String>) {
    match appearance {
        Appearance::Mean => (LatentChoice::Mean, None),
        Appearance::Zero => (LatentChoice::Zero, None),
        Appearance::Photo(name) if train_names.contains(name) => {
            (LatentChoice::Photo(name.clone()), None)
        }
        Appearance::Photo(name) => (
            LatentChoice::Mean,
            Some(format!(
                "render: [render] appearance = \"{name}\" is not a training photo; using the mean latent"
            )),
        ),
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

    fn start_frame(
        &self,
        cam: FrameCam,
        exposure_ev: f64,
    ) -> Option<Result<Box<dyn PendingFrame>, String>> {
        let norm = self.renderer.norm();
        let fc = match cam {
            FrameCam::Equirect(e) => FrameCamera::equirect(
                &norm,
                e.width,
                e.height,
                e.center.into(),
                e.right.into(),
                e.forward.into(),
                e.up.into(),
            ),
            FrameCam::Perspective(p) => {
                let (w, h) = p.size();
                let cam = Camera {
                    id: 0,
                    model: CameraModel::Pinhole,
                    width: w,
                    height: h,
                    params: vec![p.focal, p.focal, w as f64 / 2.0, h as f64 / 2.0],
                };
                let pose = Pose {
                    rotation: p.rotation,
                    translation: -(p.rotation * p.center),
                };
                FrameCamera::photo(&norm, &cam, &pose)
            }
        };
        let opts = RenderOptions {
            exposure_ev: Some(exposure_ev),
            latent: self.latent.clone(),
            radius_px: None,
        };
        let t = self.renderer.start_frame(&fc, &opts)?;
        Some(
            t.map(|t| Box::new(Ticket(t)) as Box<dyn PendingFrame>)
                .map_err(|e| e.to_string()),
        )
    }

    fn device(&self) -> SourceDevice {
        self.renderer.device()
    }
}

/// A NeRF frame rendering on the GPU.
struct Ticket(FrameTicket);

impl PendingFrame for Ticket {
    fn wait(self: Box<Self>) -> Result<RgbImage, String> {
        self.0.wait().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 20: a photo that is not a training photo is warned about once, when the source is
    /// made; what the renderer gets is the mean latent, so nothing warns again at each frame.
    #[test]
    fn an_appearance_that_is_not_a_training_photo_warns_once_and_renders_the_mean() {
        let names = vec!["a.jpg".to_string(), "b.jpg".to_string()];
        let (latent, warning) = latent_choice(&Appearance::Photo("held_out.jpg".into()), &names);
        assert_eq!(latent, LatentChoice::Mean);
        let w = warning.expect("a warning");
        assert_eq!(w.matches("held_out.jpg").count(), 1, "{w}");
        assert!(w.contains("not a training photo"), "{w}");
        let (latent, warning) = latent_choice(&Appearance::Photo("b.jpg".into()), &names);
        assert_eq!(latent, LatentChoice::Photo("b.jpg".into()));
        assert!(warning.is_none());
        for a in [Appearance::Mean, Appearance::Zero] {
            assert!(latent_choice(&a, &names).1.is_none());
        }
    }
}
