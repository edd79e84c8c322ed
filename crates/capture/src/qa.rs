//! Per-photo quality measures, computed on a grey thumbnail (longest side `qa_max_side`).

use image::GrayImage;

/// Variance of the 4-neighbour Laplacian of a grey image (Pech-Pacheco et al. 2000, "Diatom
/// autofocusing in brightfield microscopy"): low values mean few edges, i.e. a blurry photo.
pub fn laplacian_variance(g: &GrayImage) -> f64 {
    let (w, h) = g.dimensions();
    if w < 3 || h < 3 {
        return 0.0;
    }
    let px = |x: u32, y: u32| g.get_pixel(x, y)[0] as f64;
    let (mut sum, mut sum2, mut n) = (0.0, 0.0, 0.0);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let l = px(x - 1, y) + px(x + 1, y) + px(x, y - 1) + px(x, y + 1) - 4.0 * px(x, y);
            sum += l;
            sum2 += l * l;
            n += 1.0;
        }
    }
    let mean = sum / n;
    sum2 / n - mean * mean
}

/// Fractions of pixels that are clipped white (>= 250) and black (<= 5).
pub fn clipped_fractions(g: &GrayImage) -> (f64, f64) {
    let n = (g.width() as f64 * g.height() as f64).max(1.0);
    let over = g.pixels().filter(|p| p[0] >= 250).count() as f64;
    let under = g.pixels().filter(|p| p[0] <= 5).count() as f64;
    (over / n, under / n)
}

/// 64-bit difference hash (Krawetz, "Kind of like that", 2013): the grey image shrunk to 9x8, one bit
/// per horizontal neighbour comparison. Near-identical photos differ in few bits.
pub fn dhash(g: &GrayImage) -> u64 {
    let small = image::imageops::resize(g, 9, 8, image::imageops::FilterType::Triangle);
    let mut h = 0u64;
    for y in 0..8 {
        for x in 0..8 {
            h <<= 1;
            if small.get_pixel(x, y)[0] < small.get_pixel(x + 1, y)[0] {
                h |= 1;
            }
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checker(w: u32, h: u32, cell: u32) -> GrayImage {
        GrayImage::from_fn(w, h, |x, y| {
            image::Luma([if ((x / cell) + (y / cell)).is_multiple_of(2) {
                30
            } else {
                220
            }])
        })
    }

    #[test]
    fn blur_lowers_laplacian_variance() {
        let sharp = checker(128, 96, 4);
        let blurred = image::imageops::blur(&sharp, 3.0);
        let (a, b) = (laplacian_variance(&sharp), laplacian_variance(&blurred));
        assert!(a > 1000.0, "{a}");
        assert!(b < a / 20.0, "{a} {b}");
        let flat = GrayImage::from_pixel(32, 32, image::Luma([128]));
        assert_eq!(laplacian_variance(&flat), 0.0);
    }

    #[test]
    fn clipping_fractions() {
        let mut g = GrayImage::from_pixel(10, 10, image::Luma([128]));
        for x in 0..10 {
            g.put_pixel(x, 0, image::Luma([255]));
            g.put_pixel(x, 1, image::Luma([0]));
            g.put_pixel(x, 2, image::Luma([0]));
        }
        assert_eq!(clipped_fractions(&g), (0.1, 0.2));
    }

    #[test]
    fn dhash_matches_near_duplicates_only() {
        let a = checker(160, 120, 10);
        let mut b = a.clone();
        b.put_pixel(5, 5, image::Luma([0]));
        let c = checker(160, 120, 23);
        assert!((dhash(&a) ^ dhash(&b)).count_ones() <= 2);
        assert!((dhash(&a) ^ dhash(&c)).count_ones() > 8);
    }
}
