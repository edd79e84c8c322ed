//! Irreversible redaction of a region: pixelation (mean over square cells, which throws away every
//! detail finer than a cell) followed by a smoothing box blur (three passes approximate a Gaussian,
//! Wells 1986) so no block edges are left for a detector or a viewer to latch on to. Faces are
//! redacted inside the ellipse inscribed in their padded box; config regions as full rectangles.
//!
//! Naming: `region` is the padded box in photo pixels; `cell` is the pixelation cell side in pixels.

use crate::geometry::BoxF;
use image::RgbImage;

/// Shape of the redacted area inside a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Ellipse,
    Rectangle,
}

/// Largest smoothing grid (pixels) of one region: 1 megapixel, 12 MB of f32 RGB.
pub const MAX_REDACT_PX: usize = 1 << 20;

/// Cell side for a face of `face_side` pixels so that `cells_across` cells span the face (at least 2 px).
pub fn cell_for(face_side: f32, cells_across: f32) -> u32 {
    ((face_side / cells_across).ceil() as u32).max(2)
}

/// Pixelate the area around `region` of `img` (the region grown by `context` times its size on every
/// side, so the result mixes the face with its surroundings and keeps no head-shaped contrast) with
/// square cells of side `cell`, smooth it with three box blurs of radius `smooth` (a Gaussian of sigma
/// about `smooth`), and write it back inside `shape` of `region`. Parts outside the image are ignored.
pub fn redact(
    img: &mut RgbImage,
    region: &BoxF,
    context: f32,
    cell: u32,
    smooth: u32,
    shape: Shape,
) {
    let ctx = region.padded(context.max(0.0));
    let (iw, ih) = (img.width() as i64, img.height() as i64);
    let x0 = (ctx.x.floor() as i64).clamp(0, iw);
    let y0 = (ctx.y.floor() as i64).clamp(0, ih);
    let x1 = ((ctx.x + ctx.w).ceil() as i64).clamp(0, iw);
    let y1 = ((ctx.y + ctx.h).ceil() as i64).clamp(0, ih);
    if x1 <= x0 || y1 <= y0 {
        return;
    }
    let (rw, rh) = ((x1 - x0) as usize, (y1 - y0) as usize);
    // Memory bound: a region above MAX_REDACT_PX (a face filling a 48 MP photo would need 0.6 GB of
    // f32) is smoothed on a grid `f` times coarser. Its cells are then hundreds of pixels wide, so
    // the coarser grid loses nothing; below the bound `f = 1` and every pixel is computed.
    let f = ((rw * rh) as f64 / MAX_REDACT_PX as f64)
        .sqrt()
        .ceil()
        .max(1.0) as usize;
    let (bw, bh) = (rw.div_ceil(f), rh.div_ceil(f));
    let cell = cell.max(1) as i64;
    // Pixelate: cells are anchored at the unclipped region corner so clipping does not change them.
    let ax = ctx.x.floor() as i64;
    let ay = ctx.y.floor() as i64;
    let cx0 = (x0 - ax).div_euclid(cell);
    let cx1 = (x1 - 1 - ax).div_euclid(cell);
    let cy0 = (y0 - ay).div_euclid(cell);
    let cy1 = (y1 - 1 - ay).div_euclid(cell);
    let ncx = (cx1 - cx0 + 1) as usize;
    let mut means = vec![[0f32; 3]; ncx * (cy1 - cy0 + 1) as usize];
    for cy in cy0..=cy1 {
        let py0 = (ay + cy * cell).max(y0);
        let py1 = (ay + (cy + 1) * cell).min(y1);
        for cx in cx0..=cx1 {
            let px0 = (ax + cx * cell).max(x0);
            let px1 = (ax + (cx + 1) * cell).min(x1);
            let mut sum = [0f64; 3];
            for y in py0..py1 {
                for x in px0..px1 {
                    let p = img.get_pixel(x as u32, y as u32).0;
                    for c in 0..3 {
                        sum[c] += p[c] as f64;
                    }
                }
            }
            let n = ((py1 - py0) * (px1 - px0)).max(1) as f64;
            means[(cy - cy0) as usize * ncx + (cx - cx0) as usize] = [
                (sum[0] / n) as f32,
                (sum[1] / n) as f32,
                (sum[2] / n) as f32,
            ];
        }
    }
    // Grid point (i, j) stands for pixel (x0 + i f + f/2, y0 + j f + f/2) (the pixel itself when f = 1).
    let mut buf = vec![[0f32; 3]; bw * bh];
    for j in 0..bh {
        let y = (y0 + (j * f + f / 2) as i64).min(y1 - 1);
        let cy = (y - ay).div_euclid(cell) - cy0;
        for i in 0..bw {
            let x = (x0 + (i * f + f / 2) as i64).min(x1 - 1);
            let cx = (x - ax).div_euclid(cell) - cx0;
            buf[j * bw + i] = means[cy as usize * ncx + cx as usize];
        }
    }
    let r = (smooth.max(1) as usize).div_ceil(f).max(1);
    for _ in 0..3 {
        box_blur_rows(&mut buf, bw, bh, r);
        box_blur_cols(&mut buf, bw, bh, r);
    }
    // Bilinear read of the grid at pixel (x, y) (exactly the grid value when f = 1).
    let half = (f / 2) as f32;
    let sample = |x: i64, y: i64| -> [f32; 3] {
        if f == 1 {
            return buf[(y - y0) as usize * bw + (x - x0) as usize];
        }
        let gx = (((x - x0) as f32 - half) / f as f32).clamp(0.0, (bw - 1) as f32);
        let gy = (((y - y0) as f32 - half) / f as f32).clamp(0.0, (bh - 1) as f32);
        let (i0, j0) = (gx.floor() as usize, gy.floor() as usize);
        let (i1, j1) = ((i0 + 1).min(bw - 1), (j0 + 1).min(bh - 1));
        let (tx, ty) = (gx - i0 as f32, gy - j0 as f32);
        let mut v = [0f32; 3];
        for c in 0..3 {
            let top = buf[j0 * bw + i0][c] * (1.0 - tx) + buf[j0 * bw + i1][c] * tx;
            let bot = buf[j1 * bw + i0][c] * (1.0 - tx) + buf[j1 * bw + i1][c] * tx;
            v[c] = top * (1.0 - ty) + bot * ty;
        }
        v
    };
    // Write back inside the shape (ellipse inscribed in the unclipped region).
    let (ecx, ecy) = (region.cx(), region.cy());
    let (ea, eb) = ((region.w / 2.0).max(0.5), (region.h / 2.0).max(0.5));
    let wx0 = (region.x.floor() as i64).clamp(x0, x1);
    let wy0 = (region.y.floor() as i64).clamp(y0, y1);
    let wx1 = ((region.x + region.w).ceil() as i64).clamp(x0, x1);
    let wy1 = ((region.y + region.h).ceil() as i64).clamp(y0, y1);
    for y in wy0..wy1 {
        for x in wx0..wx1 {
            if shape == Shape::Ellipse {
                let dx = (x as f32 + 0.5 - ecx) / ea;
                let dy = (y as f32 + 0.5 - ecy) / eb;
                if dx * dx + dy * dy > 1.0 {
                    continue;
                }
            }
            let v = sample(x, y);
            img.put_pixel(
                x as u32,
                y as u32,
                image::Rgb([
                    v[0].round().clamp(0.0, 255.0) as u8,
                    v[1].round().clamp(0.0, 255.0) as u8,
                    v[2].round().clamp(0.0, 255.0) as u8,
                ]),
            );
        }
    }
}

/// Running-sum box blur of radius `r` along rows (edges clamped).
fn box_blur_rows(buf: &mut [[f32; 3]], w: usize, h: usize, r: usize) {
    let mut line = vec![[0f32; 3]; w];
    for y in 0..h {
        let row = &mut buf[y * w..(y + 1) * w];
        line.copy_from_slice(row);
        blur_line(&line, row, r);
    }
}

fn box_blur_cols(buf: &mut [[f32; 3]], w: usize, h: usize, r: usize) {
    let mut line = vec![[0f32; 3]; h];
    let mut out = vec![[0f32; 3]; h];
    for x in 0..w {
        for y in 0..h {
            line[y] = buf[y * w + x];
        }
        blur_line(&line, &mut out, r);
        for y in 0..h {
            buf[y * w + x] = out[y];
        }
    }
}

/// `out[i] = mean(src[clamp(i-r)..=clamp(i+r)])` with edge replication, via a running sum.
fn blur_line(src: &[[f32; 3]], out: &mut [[f32; 3]], r: usize) {
    let n = src.len();
    if n == 0 {
        return;
    }
    let at = |i: i64| src[i.clamp(0, n as i64 - 1) as usize];
    let mut sum = [0f32; 3];
    for i in -(r as i64)..=(r as i64) {
        let p = at(i);
        for c in 0..3 {
            sum[c] += p[c];
        }
    }
    let k = (2 * r + 1) as f32;
    for (i, o) in out.iter_mut().enumerate() {
        for c in 0..3 {
            o[c] = sum[c] / k;
        }
        let add = at(i as i64 + r as i64 + 1);
        let sub = at(i as i64 - r as i64);
        for c in 0..3 {
            sum[c] += add[c] - sub[c];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checker(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = if (x + y) % 2 == 0 { 255 } else { 0 };
            image::Rgb([v, v, v])
        })
    }

    #[test]
    fn removes_fine_detail_inside_and_leaves_outside_alone() {
        let mut img = checker(100, 100);
        let orig = img.clone();
        let region = BoxF::new(20.0, 20.0, 40.0, 40.0);
        redact(&mut img, &region, 0.25, 8, 4, Shape::Ellipse);
        // Inside: the checkerboard (max contrast between neighbours) is gone.
        for y in 30..50 {
            for x in 30..50 {
                let a = img.get_pixel(x, y).0[0] as i32;
                let b = img.get_pixel(x + 1, y).0[0] as i32;
                assert!((a - b).abs() <= 8, "detail left at {x},{y}: {a} vs {b}");
            }
        }
        // Outside the ellipse (region corner) and outside the region: untouched.
        assert_eq!(img.get_pixel(21, 21), orig.get_pixel(21, 21));
        assert_eq!(img.get_pixel(5, 5), orig.get_pixel(5, 5));
        assert_eq!(img.get_pixel(70, 40), orig.get_pixel(70, 40));
    }

    #[test]
    fn rectangle_clipped_at_the_border_is_fine() {
        let mut img = checker(30, 20);
        redact(
            &mut img,
            &BoxF::new(-10.0, -10.0, 25.0, 25.0),
            0.0,
            4,
            2,
            Shape::Rectangle,
        );
        let a = img.get_pixel(0, 0).0[0] as i32;
        let b = img.get_pixel(1, 0).0[0] as i32;
        assert!((a - b).abs() <= 16);
        assert_eq!(img.get_pixel(20, 19), checker(30, 20).get_pixel(20, 19));
        redact(
            &mut img,
            &BoxF::new(50.0, 50.0, 5.0, 5.0),
            0.0,
            4,
            2,
            Shape::Rectangle,
        ); // outside: no-op
    }

    /// A region far above MAX_REDACT_PX (a face filling a 3000x2400 photo) is smoothed on a coarser
    /// grid: the detail is gone all the same and the result is smooth (no grid blocks).
    #[test]
    fn a_huge_region_is_redacted_on_a_coarse_grid() {
        let mut img = checker(3000, 2400);
        let region = BoxF::new(0.0, 0.0, 3000.0, 2400.0);
        redact(&mut img, &region, 0.5, 700, 700, Shape::Rectangle);
        let mut max_step = 0;
        for y in (0..2400).step_by(7) {
            for x in 0..2999 {
                let a = img.get_pixel(x, y).0[0] as i32;
                let b = img.get_pixel(x + 1, y).0[0] as i32;
                max_step = max_step.max((a - b).abs());
            }
        }
        assert!(max_step <= 2, "neighbouring pixels differ by {max_step}");
        let mean: f64 = img.pixels().map(|p| p.0[0] as f64).sum::<f64>() / (3000.0 * 2400.0);
        assert!((mean - 127.5).abs() < 3.0, "mean {mean}");
    }

    #[test]
    fn box_blur_keeps_the_mean_of_a_constant() {
        let src = vec![[10.0, 20.0, 30.0]; 7];
        let mut out = vec![[0.0; 3]; 7];
        blur_line(&src, &mut out, 2);
        assert!(
            out.iter()
                .all(|p| (p[0] - 10.0).abs() < 1e-4 && (p[2] - 30.0).abs() < 1e-4)
        );
    }
}
