//! The baked model (`flythrough-bake`'s [`BakedModel`]) as a [`RaySource`]: the ray march of the
//! sparse grid and the deferred colour head, with the latent `[render] appearance` chooses — on
//! the CPU, or on a GPU ([`BakedGpu`], `shaders/baked_march.wgsl`) when `[render] device` picks
//! one ([`BakedSource::on_device`]: `auto` a hardware adapter, `gpu` any adapter).

use crate::RenderError;
use crate::source::{RaySource, SourceDevice};
use flythrough_bake::BakedModel;
use flythrough_bake::gpu::BakedGpu;
use flythrough_core::BakeOutput;
use flythrough_core::config::{Appearance, Device};
use std::sync::atomic::{AtomicBool, Ordering};

/// A loaded baked model with the render settings of this run.
pub struct BakedSource {
    model: BakedModel,
    latent: Vec<f32>,
    label: String,
    /// The model on a GPU, when the device setting picked one.
    gpu: Option<BakedGpu>,
    /// A GPU render failed once (said once; later rays render on the CPU).
    gpu_failed: AtomicBool,
}

impl BakedSource {
    /// Load the bake stage's committed model (its hash already checked by [`BakeOutput::open`])
    /// to render on the CPU.
    pub fn load(bake: &BakeOutput, appearance: &Appearance) -> Result<BakedSource, RenderError> {
        let model = BakedModel::load(&bake.model()).map_err(RenderError::Model)?;
        Ok(Self::new(model, appearance))
    }

    /// [`BakedSource::load`] on `device` (`[render] device`, see [`BakedSource::on_device`]).
    pub fn load_on(
        bake: &BakeOutput,
        appearance: &Appearance,
        device: Device,
    ) -> Result<BakedSource, RenderError> {
        Self::load(bake, appearance)?.on_device(device)
    }

    /// A baked model rendering with `appearance`'s latent (a photo that is not a training photo
    /// gets the mean latent, with one warning), on the CPU.
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
            gpu: None,
            gpu_failed: AtomicBool::new(false),
        }
    }

    /// Render on the GPU `device` picks, as the NeRF does: `cpu` none; `auto` a hardware adapter,
    /// else the CPU (also when the model does not fit the adapter: a warning says why); `gpu` any
    /// adapter, software included, and an error when there is none or the model does not fit.
    pub fn on_device(mut self, device: Device) -> Result<BakedSource, RenderError> {
        self.gpu = None;
        let Some(gpu) = flythrough_nerf::gpu::open(device)
            .map_err(|e| RenderError::Model(format!("the baked model: {e}")))?
        else {
            return Ok(self);
        };
        match BakedGpu::new(gpu, &self.model) {
            Ok(g) => self.gpu = Some(g),
            Err(e) if device == Device::Auto => tracing::warn!(
                "render: the baked model does not run on the GPU ({e}); rendering it on the CPU"
            ),
            Err(e) => {
                return Err(RenderError::Model(format!(
                    "device = \"gpu\": the baked model: {e}"
                )));
            }
        }
        Ok(self)
    }
}

impl RaySource for BakedSource {
    fn render_rays(
        &self,
        origins: &[[f32; 3]],
        dirs: &[[f32; 3]],
        exposure_ev: f64,
    ) -> Vec<[f32; 3]> {
        let ev = Some(exposure_ev);
        if let Some(g) = self
            .gpu
            .as_ref()
            .filter(|_| !self.gpu_failed.load(Ordering::Relaxed))
        {
            match g.render_rays(origins, dirs, ev, &self.latent) {
                Ok(out) => return out.rgb,
                Err(e) => {
                    if !self.gpu_failed.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "render: the baked model failed on the GPU ({e}); rendering on the CPU"
                        );
                    }
                }
            }
        }
        self.model.render_rays(origins, dirs, ev, &self.latent).rgb
    }

    fn name(&self) -> String {
        self.label.clone()
    }

    fn device(&self) -> SourceDevice {
        let gpu = self
            .gpu
            .as_ref()
            .filter(|_| !self.gpu_failed.load(Ordering::Relaxed));
        flythrough_nerf::gpu::device_used(gpu.map(|g| g.gpu().as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flythrough_bake::grid::{BLOCK, CHANNELS, EMPTY, VERTS, rebuild};
    use flythrough_nerf::coord::SceneNorm;
    use flythrough_nerf::field::ColorHead;

    /// A 16^3 grid with one semi-transparent stored block at the centre, a small colour head with
    /// smooth pseudo-random weights, and a scene normalisation that is not the identity.
    fn model() -> BakedModel {
        let (res, at) = (16, [1usize, 1, 1]);
        let nb = res / BLOCK;
        let mut index = vec![EMPTY; nb * nb * nb];
        index[(at[2] * nb + at[1]) * nb + at[0]] = 0;
        let n = VERTS * VERTS * VERTS;
        let data: Vec<u8> = (0..n * CHANNELS)
            .map(|i| {
                let (v, c) = (i / CHANNELS, i % CHANNELS);
                let base = if c == 0 { 150.0 } else { 128.0 };
                (base + 60.0 * (v as f32 * 0.37 + c as f32).sin()) as u8
            })
            .collect();
        let mut lo = [-1.0f32; CHANNELS];
        let mut scale = [2.0 / 255.0; CHANNELS];
        (lo[0], scale[0]) = (-10.0, 25.0 / 255.0);
        let head = ColorHead {
            mlp_width: 8,
            glo_dim: 2,
            exposure: true,
            params: Vec::new(),
        };
        let params = (0..head.mlp().num_params())
            .map(|i| 0.4 * (i as f32 * 1.7).sin())
            .collect();
        BakedModel {
            grid: rebuild(res, index, data, lo, scale),
            head: ColorHead { params, ..head },
            glo: vec![0.2, -0.1, 0.3, 0.05],
            norm: SceneNorm {
                center: [1.0, 2.0, 0.5],
                scale: 0.5,
                near: 0.02,
            },
            ev_mean: 1.0,
            train_names: vec!["a".into(), "b".into()],
            background: [0.2, 0.3, 0.4],
        }
    }

    /// With `device = "gpu"` the source renders on the adapter (and says so), and its colours are
    /// the CPU's (world-frame rays, absolute exposure, the appearance's latent).
    #[test]
    fn the_gpu_source_renders_what_the_cpu_source_renders() {
        if flythrough_testkit::test_gpu().is_none() {
            return;
        }
        let cpu = BakedSource::new(model(), &Appearance::Mean);
        assert!(!cpu.device().on_gpu());
        let gpu = BakedSource::new(model(), &Appearance::Mean)
            .on_device(Device::Gpu)
            .expect("the baked model on the test adapter");
        assert!(gpu.device().on_gpu(), "{}", gpu.device().line());
        // Rays from world (2, 3, -1.1), norm (0.5, 0.5, -0.8), through the block (norm [0, 1]^3).
        let o = [2.0f32, 3.0, -1.1];
        let dirs: Vec<[f32; 3]> = (0..400)
            .map(|i| {
                [
                    ((i % 20) as f32 - 9.5) * 0.03,
                    ((i / 20) as f32 - 9.5) * 0.03,
                    1.0,
                ]
            })
            .collect();
        let origins = vec![o; dirs.len()];
        let a = cpu.render_rays(&origins, &dirs, 1.5);
        let b = gpu.render_rays(&origins, &dirs, 1.5);
        let lit = a.iter().filter(|c| c.iter().sum::<f32>() > 0.05).count();
        assert!(lit > 100, "the rays see the block ({lit} lit)");
        let worst = a
            .iter()
            .flatten()
            .zip(b.iter().flatten())
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-3, "largest colour difference {worst}");
    }
}
