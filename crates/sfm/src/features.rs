//! SIFT features with RootSIFT descriptors.
//!
//! Conventions: keypoint coordinates are in pixels of the FULL-resolution input image, COLMAP
//! convention (the upper-left pixel's centre is (0.5, 0.5)). `scale` is the Gaussian sigma of the
//! detection in full-resolution pixels, `orientation` the dominant gradient angle in radians
//! (image axes: x right, y down).

/// One detected feature.
#[derive(Clone, Copy, Debug)]
pub struct Keypoint {
    pub x: f32,
    pub y: f32,
    pub scale: f32,
    pub orientation: f32,
}

/// Keypoints and their RootSIFT descriptors (quantised to u8 like COLMAP).
#[derive(Clone, Debug, Default)]
pub struct Features {
    pub width: u32,
    pub height: u32,
    pub keypoints: Vec<Keypoint>,
    pub descriptors: Vec<[u8; 128]>,
}

/// SIFT options (defaults follow COLMAP's `SiftExtractionOptions`).
#[derive(Clone, Debug)]
pub struct SiftOptions {
    pub max_image_size: u32,
    pub max_features: usize,
    pub peak_threshold: f32,
    pub edge_threshold: f32,
    pub upsample_first_octave: bool,
}

impl Default for SiftOptions {
    fn default() -> Self {
        Self {
            max_image_size: 1600,
            max_features: 8192,
            peak_threshold: 0.02 / 3.0,
            edge_threshold: 10.0,
            upsample_first_octave: true,
        }
    }
}

/// Extracts SIFT keypoints and RootSIFT descriptors (work in progress: currently returns none).
pub fn extract(img: &image::GrayImage, _opts: &SiftOptions) -> Features {
    Features {
        width: img.width(),
        height: img.height(),
        ..Default::default()
    }
}
