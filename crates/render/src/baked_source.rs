//! The baked model (`flythrough-bake`'s [`BakedModel`]) as a [`RaySource`]: the CPU ray march of
//! the sparse grid and the deferred colour head, with the latent `[render] appearance` chooses.

use crate::RenderError;
use crate::source::RaySource;
use flythrough_bake::BakedModel;
use flythrough_core::BakeOutput;
use flythrough_core::config::Appearance;

/// A loaded baked model with the render settings of this run.
pub struct BakedSource {
    model: BakedModel,
    latent: Vec<f32>,
    label: String,
}

impl BakedSource {
    /// Load the bake stage's committed model (its hash already checked by [`BakeOutput::open`]).
    pub fn load(bake: &BakeOutput, appearance: &Appearance) -> Result<BakedSource, RenderError> {
        let model = BakedModel::load(&bake.model()).map_err(RenderError::Model)?;
        Ok(Self::new(model, appearance))
    }

    /// A baked model rendering with `appearance`'s latent (a photo that is not a training photo
    /// gets the mean latent, with one warning).
    pub fn new(model: BakedModel, appearance: &Appearance) -> BakedSource {
        let latent = match appearance {
            Appearance::Mean => model.latent(None),
            Appearance::Zero => vec![0.0; model.head.glo_dim],
            Appearance::Photo(name) => {
                if !model.train_names.contains(name) {
                    tracing::warn!(
                        "render: [render] appearance = \"{name}\" is not a training photo; using the mean latent"
                    );
                }
                model.latent(Some(name))
            }
        };
        let label = format!("baked ({}^3 grid)", model.grid.res);
        BakedSource {
            model,
            latent,
            label,
        }
    }
}

impl RaySource for BakedSource {
    fn render_rays(
        &self,
        origins: &[[f32; 3]],
        dirs: &[[f32; 3]],
        exposure_ev: f64,
    ) -> Vec<[f32; 3]> {
        self.model
            .render_rays(origins, dirs, Some(exposure_ev), &self.latent)
            .rgb
    }

    fn name(&self) -> String {
        self.label.clone()
    }
}
