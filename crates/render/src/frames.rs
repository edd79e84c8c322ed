//! Rendering one frame: tiles of rays through a [`RaySource`], in parallel with rayon.

use crate::cameras::{Equirect, RayCamera};
use crate::source::RaySource;
use image::RgbImage;
use rayon::prelude::*;

/// A tile: `(x0, y0, w, h)` in pixels.
pub type Tile = (u32, u32, u32, u32);

/// Tiles `(x0, y0, w, h)` covering a `width × height` frame, row-major.
pub fn tiles(width: u32, height: u32, tile: u32) -> Vec<Tile> {
    let mut out = Vec::new();
    for y0 in (0..height).step_by(tile as usize) {
        for x0 in (0..width).step_by(tile as usize) {
            out.push((x0, y0, tile.min(width - x0), tile.min(height - y0)));
        }
    }
    out
}

/// Display value in `[0, 1]` → 8 bits (round to nearest; NaN → 0).
fn to_u8(v: f32) -> u8 {
    if v.is_nan() {
        0
    } else {
        (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
    }
}

/// Render `camera`'s frame through `source` at `exposure_ev`: one ray per pixel centre, tiles of
/// `tile × tile` pixels rendered in parallel; `on_tile` is called after each tile (progress).
pub fn render_frame(
    source: &dyn RaySource,
    camera: &dyn RayCamera,
    exposure_ev: f64,
    tile: u32,
    on_tile: &(dyn Fn() + Sync),
) -> RgbImage {
    let (w, h) = camera.size();
    let ts = tiles(w, h, tile);
    let rendered: Vec<(Tile, Vec<[f32; 3]>)> = ts
        .par_iter()
        .map(|&(x0, y0, tw, th)| {
            let n = (tw * th) as usize;
            let mut origins = Vec::with_capacity(n);
            let mut dirs = Vec::with_capacity(n);
            camera.tile_rays((x0, y0, tw, th), &mut origins, &mut dirs);
            let radius = camera.pixel_radius(y0 as f64 + th as f64 / 2.0) as f32;
            let rgb = source.render_cone_rays(&origins, &dirs, Some(radius), exposure_ev);
            on_tile();
            ((x0, y0, tw, th), rgb)
        })
        .collect();
    let mut img = RgbImage::new(w, h);
    for ((x0, y0, tw, th), rgb) in rendered {
        for (k, c) in rgb.iter().enumerate().take((tw * th) as usize) {
            let (x, y) = (x0 + k as u32 % tw, y0 + k as u32 / tw);
            img.put_pixel(x, y, image::Rgb([to_u8(c[0]), to_u8(c[1]), to_u8(c[2])]));
        }
    }
    img
}

/// Resample a 360° frame into another camera at the same centre: each output pixel's ray direction
/// is looked up in the equirectangular image (bilinear; longitude wraps, latitude clamps).
pub fn reproject(pano: &RgbImage, pano_cam: &Equirect, camera: &dyn RayCamera) -> RgbImage {
    let (w, h) = camera.size();
    let (pw, ph) = (pano.width() as i64, pano.height() as i64);
    let mut out = RgbImage::new(w, h);
    let rows: Vec<Vec<[u8; 3]>> = (0..h)
        .into_par_iter()
        .map(|y| {
            (0..w)
                .map(|x| {
                    let (_, d) = camera.ray(x as f64 + 0.5, y as f64 + 0.5);
                    let (px, py) = pano_cam.direction_to_pixel(&d);
                    // Continuous pixel → sample index space (centres at integers).
                    let (fx, fy) = (px - 0.5, py - 0.5);
                    let (x0, y0) = (fx.floor(), fy.floor());
                    let (ax, ay) = ((fx - x0) as f32, (fy - y0) as f32);
                    let (x0, y0) = (x0 as i64, y0 as i64);
                    let at = |xi: i64, yi: i64| {
                        let p =
                            pano.get_pixel(xi.rem_euclid(pw) as u32, yi.clamp(0, ph - 1) as u32);
                        [p[0] as f32, p[1] as f32, p[2] as f32]
                    };
                    let (a, b, c, e) = (
                        at(x0, y0),
                        at(x0 + 1, y0),
                        at(x0, y0 + 1),
                        at(x0 + 1, y0 + 1),
                    );
                    let mut o = [0u8; 3];
                    for k in 0..3 {
                        let top = a[k] * (1.0 - ax) + b[k] * ax;
                        let bot = c[k] * (1.0 - ax) + e[k] * ax;
                        o[k] = (top * (1.0 - ay) + bot * ay + 0.5).clamp(0.0, 255.0) as u8;
                    }
                    o
                })
                .collect()
        })
        .collect();
    for (y, row) in rows.into_iter().enumerate() {
        for (x, p) in row.into_iter().enumerate() {
            out.put_pixel(x as u32, y as u32, image::Rgb(p));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::Vector3;

    /// A source whose colour encodes the ray direction, to check tiling puts every pixel in place.
    struct DirColour;
    impl RaySource for DirColour {
        fn render_rays(&self, _o: &[[f32; 3]], d: &[[f32; 3]], _ev: f64) -> Vec<[f32; 3]> {
            d.iter().map(|d| d.map(|v| 0.5 + 0.5 * v)).collect()
        }
    }

    #[test]
    fn tiles_cover_the_frame_once_and_pixels_land_in_place() {
        let ts = tiles(100, 50, 32);
        let area: u32 = ts.iter().map(|t| t.2 * t.3).sum();
        assert_eq!(area, 100 * 50);
        let cam = Equirect::new(100, 50, Vector3::zeros(), Vector3::x(), Vector3::z());
        let img = render_frame(&DirColour, &cam, 0.0, 32, &|| {});
        for (x, y) in [(0, 0), (99, 49), (50, 25), (33, 17), (64, 40)] {
            let (_, d) = cam.ray(x as f64 + 0.5, y as f64 + 0.5);
            let p = img.get_pixel(x, y);
            for k in 0..3 {
                let want = to_u8(0.5 + 0.5 * d[k] as f32);
                assert!((p[k] as i32 - want as i32).abs() <= 1, "({x},{y})");
            }
        }
    }

    #[test]
    fn reprojected_preview_matches_a_rendered_one() {
        let up = Vector3::z();
        let f = Vector3::new(1.0, 0.4, 0.0).normalize();
        let pano_cam = Equirect::new(512, 256, Vector3::zeros(), f, up);
        let pano = render_frame(&DirColour, &pano_cam, 0.0, 64, &|| {});
        let q = crate::path::level_rotation(&f, &up);
        let cam = crate::cameras::Perspective::new(96, 64, 90.0, Vector3::zeros(), q);
        let direct = render_frame(&DirColour, &cam, 0.0, 64, &|| {});
        let re = reproject(&pano, &pano_cam, &cam);
        let mae: f64 = direct
            .iter()
            .zip(re.iter())
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / direct.len() as f64;
        assert!(mae < 1.0, "mean abs difference {mae} levels");
    }
}
