//! SeetaFace frontal detector (Wu et al., "Funnel-structured cascade for multi-view face detection
//! with alignment awareness", Neurocomputing 2017) through the pure-Rust `rustface` port. Frontal
//! faces only; the comparison in the privacy benchmark (the stage itself uses CenterFace).

use flythrough_privacy::centerface::Detection;
use flythrough_privacy::geometry::BoxF;
use image::{GrayImage, RgbImage};

/// The model file, committed under `data/models/` (BSD-2-Clause, shipped in the `rustface` 0.1.7 crate).
pub const MODEL_BYTES: &[u8] = include_bytes!("../../../../data/models/seeta_fd_frontal_v1.0.bin");

/// SeetaFace settings: the cascade's own score scale (not 0..1), smallest face in pixels of the
/// scanned image, and the long side the photo is downscaled to before scanning.
#[derive(Debug, Clone, PartialEq)]
pub struct SeetaParams {
    pub score_threshold: f64,
    pub min_face: u32,
    pub max_side: u32,
}

impl Default for SeetaParams {
    fn default() -> Self {
        SeetaParams {
            score_threshold: 2.0,
            min_face: 20,
            max_side: 2048,
        }
    }
}

/// Detect frontal faces. Boxes are in pixels of `img`.
pub fn detect(img: &RgbImage, p: &SeetaParams) -> Result<Vec<Detection>, String> {
    let model =
        rustface::read_model(std::io::Cursor::new(MODEL_BYTES)).map_err(|e| e.to_string())?;
    let mut det = rustface::create_detector_with_model(model);
    det.set_min_face_size(p.min_face.max(20));
    det.set_score_thresh(p.score_threshold.max(1e-3));
    det.set_pyramid_scale_factor(0.8);
    det.set_slide_window_step(4, 4);
    let (w, h) = img.dimensions();
    let long = w.max(h);
    let s = if long > p.max_side {
        p.max_side as f32 / long as f32
    } else {
        1.0
    };
    let gray: GrayImage = if s < 1.0 {
        let small = image::imageops::thumbnail(
            img,
            ((w as f32 * s).round() as u32).max(1),
            ((h as f32 * s).round() as u32).max(1),
        );
        image::DynamicImage::ImageRgb8(small).to_luma8()
    } else {
        image::DynamicImage::ImageRgb8(img.clone()).to_luma8()
    };
    if gray.width() < 20 || gray.height() < 20 {
        return Ok(vec![]);
    }
    let (gw, gh) = gray.dimensions();
    let data = rustface::ImageData::new(gray.as_raw(), gw, gh);
    let (sx, sy) = (w as f32 / gw as f32, h as f32 / gh as f32);
    Ok(det
        .detect(&data)
        .into_iter()
        .map(|f| {
            let b = f.bbox();
            Detection {
                bbox: BoxF::new(
                    b.x() as f32,
                    b.y() as f32,
                    b.width() as f32,
                    b.height() as f32,
                )
                .scaled(sx, sy),
                score: f.score() as f32,
            }
        })
        .collect())
}
