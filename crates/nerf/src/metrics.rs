//! Image quality metrics and the loss plot.
//!
//! Images here are `[h * w * 3]` f32 in `[0, 1]`, row-major.

use image::{Rgb, RgbImage};

/// Mean squared error over a column range `[x0, x1)` of two images.
pub fn mse_cols(a: &[f32], b: &[f32], w: usize, h: usize, x0: usize, x1: usize) -> f64 {
    let mut s = 0.0f64;
    for y in 0..h {
        for x in x0..x1 {
            for k in 0..3 {
                let i = (y * w + x) * 3 + k;
                let d = (a[i] - b[i]) as f64;
                s += d * d;
            }
        }
    }
    s / ((x1 - x0) * h * 3).max(1) as f64
}

/// SSIM (Wang et al. 2004) with an 11x11 Gaussian window (sigma 1.5), `C1 = (0.01)^2`,
/// `C2 = (0.03)^2`, averaged over channels and over the valid windows inside columns `[x0, x1)`.
pub fn ssim_cols(a: &[f32], b: &[f32], w: usize, h: usize, x0: usize, x1: usize) -> f64 {
    const R: usize = 5;
    let g: Vec<f64> = (0..=2 * R)
        .map(|i| (-((i as f64 - R as f64).powi(2)) / (2.0 * 1.5 * 1.5)).exp())
        .collect();
    let gs: f64 = g.iter().sum();
    let g: Vec<f64> = g.iter().map(|v| v / gs).collect();
    let cw = x1 - x0;
    if cw <= 2 * R || h <= 2 * R {
        return f64::NAN;
    }
    let (c1, c2) = (1e-4, 9e-4);
    let mut total = 0.0;
    let mut count = 0usize;
    for k in 0..3 {
        // planes of x, y, x², y², xy, blurred separably (valid region only)
        let plane = |f: &dyn Fn(f64, f64) -> f64| -> Vec<f64> {
            let mut p = vec![0.0; cw * h];
            for y in 0..h {
                for x in 0..cw {
                    let i = (y * w + x0 + x) * 3 + k;
                    p[y * cw + x] = f(a[i] as f64, b[i] as f64);
                }
            }
            // horizontal
            let ow = cw - 2 * R;
            let mut hp = vec![0.0; ow * h];
            for y in 0..h {
                for x in 0..ow {
                    hp[y * ow + x] = (0..=2 * R).map(|j| g[j] * p[y * cw + x + j]).sum();
                }
            }
            let oh = h - 2 * R;
            let mut vp = vec![0.0; ow * oh];
            for y in 0..oh {
                for x in 0..ow {
                    vp[y * ow + x] = (0..=2 * R).map(|j| g[j] * hp[(y + j) * ow + x]).sum();
                }
            }
            vp
        };
        let mx = plane(&|x, _| x);
        let my = plane(&|_, y| y);
        let mxx = plane(&|x, _| x * x);
        let myy = plane(&|_, y| y * y);
        let mxy = plane(&|x, y| x * y);
        for i in 0..mx.len() {
            let (ux, uy) = (mx[i], my[i]);
            let vx = mxx[i] - ux * ux;
            let vy = myy[i] - uy * uy;
            let cxy = mxy[i] - ux * uy;
            total += ((2.0 * ux * uy + c1) * (2.0 * cxy + c2))
                / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
            count += 1;
        }
    }
    total / count as f64
}

/// Convert `[0,1]` floats to an 8-bit image.
pub fn to_image(v: &[f32], w: usize, h: usize) -> RgbImage {
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let i = (y as usize * w + x as usize) * 3;
        let q = |f: f32| (f.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
        Rgb([q(v[i]), q(v[i + 1]), q(v[i + 2])])
    })
}

/// A small hand-drawn plot: two panels side by side, training loss (log10 scale, blue) and PSNR
/// (dB, red) against step, each with a frame and min/max tick marks. Points are `(step, value)`.
pub fn plot(loss: &[(f64, f64)], psnr: &[(f64, f64)]) -> RgbImage {
    let (pw, ph, m) = (320u32, 220u32, 20u32);
    let mut img = RgbImage::from_pixel(2 * pw, ph, Rgb([255, 255, 255]));
    let loss_log: Vec<(f64, f64)> = loss
        .iter()
        .filter(|p| p.1 > 0.0)
        .map(|&(s, v)| (s, v.log10()))
        .collect();
    for (panel, (pts, color)) in [
        (&loss_log, Rgb([30, 60, 200])),
        (&psnr.to_vec(), Rgb([200, 40, 40])),
    ]
    .into_iter()
    .enumerate()
    {
        let ox = panel as u32 * pw;
        // frame
        for x in ox + m..ox + pw - m {
            img.put_pixel(x, m, Rgb([0, 0, 0]));
            img.put_pixel(x, ph - m, Rgb([0, 0, 0]));
        }
        for y in m..=ph - m {
            img.put_pixel(ox + m, y, Rgb([0, 0, 0]));
            img.put_pixel(ox + pw - m - 1, y, Rgb([0, 0, 0]));
        }
        if pts.len() < 2 {
            continue;
        }
        let (smin, smax) = (pts[0].0, pts[pts.len() - 1].0.max(pts[0].0 + 1.0));
        let vmin = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let vmax = pts
            .iter()
            .map(|p| p.1)
            .fold(f64::NEG_INFINITY, f64::max)
            .max(vmin + 1e-9);
        let to_px = |p: &(f64, f64)| {
            let x = ox as f64 + m as f64 + (p.0 - smin) / (smax - smin) * (pw - 2 * m - 1) as f64;
            let y = (ph - m) as f64 - (p.1 - vmin) / (vmax - vmin) * (ph - 2 * m) as f64;
            (x, y)
        };
        for win in pts.windows(2) {
            let (a, b) = (to_px(&win[0]), to_px(&win[1]));
            let steps = ((b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil() as usize).max(1);
            for i in 0..=steps {
                let f = i as f64 / steps as f64;
                let (x, y) = (a.0 + f * (b.0 - a.0), a.1 + f * (b.1 - a.1));
                let (x, y) = (x.round() as i64, y.round() as i64);
                if x >= 0 && y >= 0 && (x as u32) < 2 * pw && (y as u32) < ph {
                    img.put_pixel(x as u32, y as u32, color);
                }
            }
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssim_and_mse_hand_values() {
        let (w, h) = (16, 16);
        let a: Vec<f32> = (0..w * h * 3)
            .map(|i| ((i * 37) % 101) as f32 / 100.0)
            .collect();
        assert!((ssim_cols(&a, &a, w, h, 0, w) - 1.0).abs() < 1e-9);
        assert_eq!(mse_cols(&a, &a, w, h, 0, w), 0.0);
        let b: Vec<f32> = a.iter().map(|v| v + 0.1).collect();
        assert!((mse_cols(&a, &b, w, h, 0, w) - 0.01).abs() < 1e-6);
        // A constant offset only changes luminance: SSIM below 1 but high.
        let s = ssim_cols(&a, &b, w, h, 0, w);
        assert!(s < 1.0 && s > 0.8, "{s}");
    }
}
