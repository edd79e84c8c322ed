//! SIFT features (Lowe 2004, "Distinctive Image Features from Scale-Invariant Keypoints") with
//! RootSIFT descriptors (Arandjelović & Zisserman 2012, "Three things everyone should know to
//! improve object retrieval"), quantised to `u8` the way COLMAP stores them.
//!
//! Naming conventions used throughout this module:
//! - *full* coordinates: pixels of the full-resolution input image, COLMAP convention: the
//!   upper-left pixel's **corner** is (0, 0) and its **centre** is (0.5, 0.5). [`Keypoint`]s are
//!   always in full coordinates.
//! - *work* image: the input downscaled so that its longer side is at most
//!   [`SiftOptions::max_image_size`]; `sx`, `sy` are full pixels per work pixel.
//! - octave `o` (`o = -1` is the 2x upsampled first octave): an image whose pixel *index*
//!   `(i, j)` sits at work index coordinates `(i, j) * 2^o` (index coordinates put pixel centres on
//!   integers, as in VLFeat; work index `u` is full coordinate `(u + 0.5) * sx`).
//! - level `s` in an octave: Gaussian scale `sigma(s) = SIGMA0 * 2^(s / S)` in octave pixels, with
//!   `S = 3` levels per octave and `SIGMA0 = 1.6`; an octave stores `S + 3` Gaussian levels
//!   (`s = 0 ..= S + 2`); the `S + 2` difference-of-Gaussian (DoG) levels `D_s = G_{s+1} - G_s`
//!   are formed on the fly, extrema are searched in DoG levels `1 ..= S`.
//! - octaves `0, 1, ...` are built first from the work image; octave `-1` only when they leave
//!   room under [`SiftOptions::max_features`] (its scales are all smaller, and the largest
//!   scales are kept).
//! - `scale` of a keypoint: its Gaussian sigma in full pixels; `orientation`: the dominant
//!   gradient direction in radians in `[0, 2π)`, measured from +x towards +y (y down).

use rayon::prelude::*;
use std::f32::consts::PI;

/// One detected feature.
#[derive(Clone, Copy, Debug)]
pub struct Keypoint {
    /// Full-resolution pixel coordinates, upper-left pixel centre at (0.5, 0.5).
    pub x: f32,
    pub y: f32,
    /// Gaussian sigma of the detection in full-resolution pixels.
    pub scale: f32,
    /// Dominant gradient orientation in radians, `[0, 2π)`, from +x towards +y (y down).
    pub orientation: f32,
}

/// Keypoints and their RootSIFT descriptors (quantised to u8 like COLMAP: `min(255, round(512 v))`
/// of the unit-L2-norm RootSIFT vector `v`), `descriptors[k]` belongs to `keypoints[k]`.
/// Sorted by decreasing `scale`.
#[derive(Clone, Debug, Default)]
pub struct Features {
    /// Size of the full-resolution input image.
    pub width: u32,
    pub height: u32,
    pub keypoints: Vec<Keypoint>,
    pub descriptors: Vec<[u8; 128]>,
}

/// SIFT options (defaults follow COLMAP's `SiftExtractionOptions`, except `max_image_size`).
#[derive(Clone, Debug)]
pub struct SiftOptions {
    /// The image is downscaled so that its longer side is at most this many pixels (0: never).
    pub max_image_size: u32,
    /// Keep at most this many features: the ones with the largest scale (as COLMAP does).
    pub max_features: usize,
    /// Target features per megapixel of the work image (after `max_image_size`), clamped to
    /// `[min_features, max_features]` ([`feature_target`]); 0: always `max_features`.
    pub features_per_megapixel: f64,
    /// The floor of the per-megapixel target (small photos still get this many when they have them).
    pub min_features: usize,
    /// Minimum |DoG| response at the refined extremum (image intensities in [0, 1]).
    pub peak_threshold: f32,
    /// Maximum ratio of principal curvatures `r` (Lowe 2004, §4.1: reject `tr²/det >= (r+1)²/r`).
    pub edge_threshold: f32,
    /// Add a 2x upsampled first octave (COLMAP `first_octave = -1`) when the other octaves give
    /// fewer candidates than the feature target.
    pub upsample_first_octave: bool,
    /// At most this many orientations per keypoint (COLMAP `max_num_orientations = 2`).
    pub max_orientations: usize,
}

impl Default for SiftOptions {
    fn default() -> Self {
        Self {
            max_image_size: 1600,
            max_features: 8192,
            features_per_megapixel: 0.0,
            min_features: 0,
            peak_threshold: 0.02 / 3.0,
            edge_threshold: 10.0,
            upsample_first_octave: true,
            max_orientations: 2,
        }
    }
}

/// Levels per octave.
const S: usize = 3;
/// Gaussian sigma of level 0 of every octave, in octave pixels.
const SIGMA0: f32 = 1.6;
/// Blur assumed in the input image (Lowe 2004, §3.3).
const SIGMA_IN: f32 = 0.5;
/// Pixels left out at the border of every DoG level when searching extrema.
const BORDER: usize = 5;
/// Descriptor: spatial bins per side, orientation bins, bin width in keypoint sigmas.
const DESC_D: usize = 4;
const DESC_N: usize = 8;
const DESC_BIN_SIGMAS: f32 = 3.0;
/// Orientation histogram: bins, window sigma in keypoint sigmas, peak ratio for extra orientations.
const ORI_BINS: usize = 36;
const ORI_SIGMA_FACTOR: f32 = 1.5;
const ORI_PEAK_RATIO: f32 = 0.8;

/// A single-channel f32 image, row-major.
#[derive(Clone, Debug)]
pub(crate) struct Plane {
    pub w: usize,
    pub h: usize,
    pub data: Vec<f32>,
}

impl Plane {
    fn new(w: usize, h: usize) -> Self {
        Self {
            w,
            h,
            data: vec![0.0; w * h],
        }
    }
}

/// How many features to keep from a work image of `w x h` pixels: `features_per_megapixel` times
/// its megapixels, at least `min_features`, at most `max_features` (the cap wins); `max_features`
/// when the density is 0. Photos of every size get the same feature density up to the cap, so a
/// small or letterboxed photo is not pushed into the upsampled octave's small, less repeatable
/// scales to reach a count sized for a larger one.
pub fn feature_target(w: usize, h: usize, opts: &SiftOptions) -> usize {
    if opts.features_per_megapixel <= 0.0 {
        return opts.max_features;
    }
    let t = (opts.features_per_megapixel * (w * h) as f64 / 1e6).round() as usize;
    t.max(opts.min_features).min(opts.max_features)
}

/// Extracts SIFT keypoints with RootSIFT descriptors from a grey image.
///
/// The image is downscaled to [`SiftOptions::max_image_size`] first; keypoints come back in
/// full-resolution coordinates, at most [`feature_target`] of them. An image too small for one
/// octave gives no features.
pub fn extract(img: &image::GrayImage, opts: &SiftOptions) -> Features {
    let (width, height) = img.dimensions();
    let mut out = Features {
        width,
        height,
        ..Default::default()
    };
    if width < 16 || height < 16 || opts.max_features == 0 {
        return out;
    }
    let full = Plane {
        w: width as usize,
        h: height as usize,
        data: img
            .as_raw()
            .par_iter()
            .map(|&v| v as f32 * (1.0 / 255.0))
            .collect(),
    };
    let max_side = width.max(height);
    let plane = if opts.max_image_size > 0 && max_side > opts.max_image_size {
        let f = opts.max_image_size as f64 / max_side as f64;
        let nw = ((width as f64 * f).round() as usize).max(1);
        let nh = ((height as f64 * f).round() as usize).max(1);
        resize_tent(&full, nw, nh)
    } else {
        full
    };
    if plane.w < 16 || plane.h < 16 {
        return out;
    }
    let sx = width as f32 / plane.w as f32;
    let sy = height as f32 / plane.h as f32;
    let opts = SiftOptions {
        max_features: feature_target(plane.w, plane.h, opts),
        ..opts.clone()
    };
    let (kps, descs) = extract_plane(&plane, &opts);
    let smean = 0.5 * (sx + sy);
    out.keypoints = kps
        .iter()
        .map(|k| Keypoint {
            x: (k.x + 0.5) * sx,
            y: (k.y + 0.5) * sy,
            scale: k.scale * smean,
            orientation: k.orientation,
        })
        .collect();
    out.descriptors = descs;
    out
}

/// A keypoint candidate inside one octave, after sub-pixel refinement.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    octave: usize,
    /// Refined position in octave index coordinates and fractional level.
    x: f32,
    y: f32,
    s: f32,
    /// Sigma in octave pixels.
    sigma: f32,
}

/// One octave of the scale space after detection: the Gaussian levels `1 ..= S` that
/// orientations and descriptors read.
struct Octave {
    /// `o` in the module doc: work index coordinate = octave index coordinate * 2^o.
    exponent: i32,
    /// `described[s - 1]` is Gaussian level `s`.
    described: Vec<Plane>,
}

impl Octave {
    fn keep_described(exponent: i32, gauss: Vec<Plane>) -> Self {
        Self {
            exponent,
            described: gauss.into_iter().skip(1).take(S).collect(),
        }
    }
    /// The Gaussian level nearest to fractional level `s` (clamped to `1 ..= S`).
    fn level(&self, s: f32) -> &Plane {
        &self.described[(s.round() as usize).clamp(1, S) - 1]
    }
}

/// SIFT on a work-resolution plane; keypoints in work *index* coordinates (centre of the first
/// pixel at 0) with `scale` in work pixels.
fn extract_plane(img: &Plane, opts: &SiftOptions) -> (Vec<Keypoint>, Vec<[u8; 128]>) {
    let min_side = img.w.min(img.h) as f32;
    let n_oct = ((min_side.log2().floor() as i32) - 3).max(1) as usize;
    let k = 2f32.powf(1.0 / S as f32);
    let incr: Vec<f32> = (1..S + 3)
        .map(|s| {
            let prev = SIGMA0 * k.powi(s as i32 - 1);
            let cur = SIGMA0 * k.powi(s as i32);
            (cur * cur - prev * prev).sqrt()
        })
        .collect();
    // Gaussian levels 0 ..= S+2 of one octave from its base (level 0).
    let mut scratch = Vec::new();
    let mut levels = |base: Plane| {
        let mut gauss = Vec::with_capacity(S + 3);
        gauss.push(base);
        for sig in &incr {
            let next = blur_with(gauss.last().expect("level"), *sig, &mut scratch);
            gauss.push(next);
        }
        gauss
    };
    // Octaves 0, 1, ... from the input, assumed blurred by SIGMA_IN (Lowe 2004 §3.3); each next
    // base decimates level S (sigma 2 SIGMA0).
    let mut octaves: Vec<Octave> = Vec::with_capacity(n_oct + 1);
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut base = blur(img, (SIGMA0 * SIGMA0 - SIGMA_IN * SIGMA_IN).sqrt());
    for o in 0..n_oct {
        if base.w < 2 * BORDER + 3 || base.h < 2 * BORDER + 3 {
            break;
        }
        let gauss = levels(base);
        candidates.extend(detect_octave(&gauss, octaves.len(), opts));
        base = downsample2(&gauss[S]);
        octaves.push(Octave::keep_described(o as i32, gauss));
    }
    // The upsampled octave -1 (input blur doubled to 2 SIGMA_IN) holds only scales below all
    // of the above, so it is built only when they leave room under `max_features`.
    if opts.upsample_first_octave && candidates.len() < opts.max_features {
        let up = upsample2(img);
        let base = blur(&up, (SIGMA0 * SIGMA0 - 4.0 * SIGMA_IN * SIGMA_IN).sqrt());
        drop(up);
        let gauss = levels(base);
        candidates.extend(detect_octave(&gauss, octaves.len(), opts));
        octaves.push(Octave::keep_described(-1, gauss));
    }

    // Keep the largest scales (COLMAP keeps the top-most octaves), orientations may add up to
    // `max_orientations - 1` more per keypoint, truncated again below.
    candidates.sort_by(|a, b| b.sigma_work(&octaves).total_cmp(&a.sigma_work(&octaves)));
    candidates.truncate(opts.max_features);

    let mut feats: Vec<(Keypoint, [u8; 128])> = candidates
        .par_iter()
        .flat_map_iter(|c| {
            let oct = &octaves[c.octave];
            let g = oct.level(c.s);
            let oris = orientations(g, c.x, c.y, c.sigma, opts.max_orientations.max(1));
            let pow = 2f32.powi(oct.exponent);
            oris.into_iter().map(move |theta| {
                let d = descriptor(g, c.x, c.y, c.sigma, theta);
                (
                    Keypoint {
                        x: c.x * pow,
                        y: c.y * pow,
                        scale: c.sigma * pow,
                        orientation: theta,
                    },
                    d,
                )
            })
        })
        .collect();
    feats.sort_by(|a, b| b.0.scale.total_cmp(&a.0.scale));
    feats.truncate(opts.max_features);
    feats.into_iter().unzip()
}

impl Candidate {
    fn sigma_work(&self, octaves: &[Octave]) -> f32 {
        self.sigma * 2f32.powi(octaves[self.octave].exponent)
    }
}

/// 1D Gaussian kernel with radius `ceil(4 sigma)`, normalised to sum 1.
fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let r = (4.0 * sigma).ceil().max(1.0) as usize;
    let mut k: Vec<f32> = (0..=2 * r)
        .map(|i| (-((i as f32 - r as f32).powi(2)) / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    k
}

/// Separable Gaussian blur, borders replicated; rows of each pass in parallel. The kernel is
/// symmetric, so taps `r - i` and `r + i` share one multiply.
pub(crate) fn blur(src: &Plane, sigma: f32) -> Plane {
    blur_with(src, sigma, &mut Vec::new())
}

/// [`blur`] with a caller-kept scratch buffer for the intermediate pass (reusing it avoids
/// page-faulting a fresh image-sized allocation per blur).
fn blur_with(src: &Plane, sigma: f32, scratch: &mut Vec<f32>) -> Plane {
    let k = gaussian_kernel(sigma);
    let r = k.len() / 2;
    let (w, h) = (src.w, src.h);
    if scratch.len() < w * h {
        scratch.resize(w * h, 0.0);
    }
    let tmp = &mut scratch[..w * h];
    tmp.par_chunks_mut(w).enumerate().for_each_init(
        || vec![0f32; w + 2 * r],
        |pad, (y, out)| {
            let row = &src.data[y * w..(y + 1) * w];
            pad[..r].fill(row[0]);
            pad[r..r + w].copy_from_slice(row);
            pad[r + w..].fill(row[w - 1]);
            for (o, &v) in out.iter_mut().zip(&pad[r..r + w]) {
                *o = k[r] * v;
            }
            for i in 1..=r {
                let (lo, hi) = (&pad[r - i..r - i + w], &pad[r + i..r + i + w]);
                let kw = k[r + i];
                for ((o, &a), &b) in out.iter_mut().zip(lo).zip(hi) {
                    *o += kw * (a + b);
                }
            }
        },
    );
    let mut dst = Plane::new(w, h);
    let row = |yy: isize| {
        let yy = yy.clamp(0, h as isize - 1) as usize;
        &tmp[yy * w..(yy + 1) * w]
    };
    dst.data.par_chunks_mut(w).enumerate().for_each(|(y, out)| {
        for (o, &v) in out.iter_mut().zip(row(y as isize)) {
            *o = k[r] * v;
        }
        for i in 1..=r {
            let (lo, hi) = (row(y as isize - i as isize), row((y + i) as isize));
            let kw = k[r + i];
            for ((o, &a), &b) in out.iter_mut().zip(lo).zip(hi) {
                *o += kw * (a + b);
            }
        }
    });
    dst
}

/// Resampling weights along one axis of `src_n` -> `dst_n` samples: output `i` is centred on
/// source index `(i + 0.5) r - 0.5` (`r = src_n / dst_n`, pixel centres aligned, as the `image`
/// crate does) with a tent filter of half-width `max(r, 1)` (its `Triangle` filter), normalised.
/// Returns the first source index and the weights of each output sample.
fn tent_weights(src_n: usize, dst_n: usize) -> Vec<(usize, Vec<f32>)> {
    let ratio = src_n as f32 / dst_n as f32;
    let support = ratio.max(1.0);
    (0..dst_n)
        .map(|i| {
            let c = (i as f32 + 0.5) * ratio - 0.5;
            let lo = ((c - support).floor() as isize + 1).clamp(0, src_n as isize - 1) as usize;
            let hi =
                ((c + support).ceil() as isize - 1).clamp(lo as isize, src_n as isize - 1) as usize;
            let mut w: Vec<f32> = (lo..=hi)
                .map(|j| (1.0 - (j as f32 - c).abs() / support).max(0.0))
                .collect();
            let sum: f32 = w.iter().sum();
            if sum > 0.0 {
                w.iter_mut().for_each(|v| *v /= sum);
            } else {
                w.iter_mut().for_each(|v| *v = 1.0 / (hi - lo + 1) as f32);
            }
            (lo, w)
        })
        .collect()
}

/// Separable tent-filter resampling of a plane to `dw x dh` (f32 throughout, rows in parallel).
fn resize_tent(src: &Plane, dw: usize, dh: usize) -> Plane {
    let wx = tent_weights(src.w, dw);
    let wy = tent_weights(src.h, dh);
    let mut tmp = Plane::new(dw, src.h);
    tmp.data
        .par_chunks_mut(dw)
        .enumerate()
        .for_each(|(y, out)| {
            let row = &src.data[y * src.w..(y + 1) * src.w];
            for (o, (lo, w)) in out.iter_mut().zip(&wx) {
                *o = w
                    .iter()
                    .zip(&row[*lo..*lo + w.len()])
                    .map(|(a, b)| a * b)
                    .sum();
            }
        });
    let mut dst = Plane::new(dw, dh);
    dst.data
        .par_chunks_mut(dw)
        .zip(&wy)
        .for_each(|(out, (lo, w))| {
            for (k, &wk) in w.iter().enumerate() {
                let row = &tmp.data[(lo + k) * dw..(lo + k + 1) * dw];
                for (o, &v) in out.iter_mut().zip(row) {
                    *o += wk * v;
                }
            }
        });
    dst
}

/// 2x upsampling by linear interpolation in index coordinates: `dst[2i] = src[i]`,
/// `dst[2i+1] = (src[i] + src[i+1]) / 2` (VLFeat `copy_and_upsample`).
fn upsample2(src: &Plane) -> Plane {
    let (w, h) = (src.w, src.h);
    let (dw, dh) = (2 * w, 2 * h);
    let mut dst = Plane::new(dw, dh);
    dst.data
        .par_chunks_mut(dw)
        .enumerate()
        .for_each(|(y, out)| {
            let y0 = (y / 2).min(h - 1);
            let y1 = if y % 2 == 1 { (y0 + 1).min(h - 1) } else { y0 };
            let r0 = &src.data[y0 * w..(y0 + 1) * w];
            let r1 = &src.data[y1 * w..(y1 + 1) * w];
            for x in 0..w {
                let x1 = (x + 1).min(w - 1);
                let a = 0.5 * (r0[x] + r1[x]);
                let b = 0.5 * (r0[x1] + r1[x1]);
                out[2 * x] = a;
                out[2 * x + 1] = 0.5 * (a + b);
            }
        });
    dst
}

/// Decimation by 2: `dst[i] = src[2i]` (exact in index coordinates).
fn downsample2(src: &Plane) -> Plane {
    let (w, h) = (src.w.div_ceil(2), src.h.div_ceil(2));
    let mut dst = Plane::new(w, h);
    dst.data.par_chunks_mut(w).enumerate().for_each(|(y, out)| {
        let row = &src.data[2 * y * src.w..(2 * y + 1) * src.w];
        for (x, o) in out.iter_mut().enumerate() {
            *o = row[2 * x];
        }
    });
    dst
}

/// The difference-of-Gaussian levels of one octave, read from its Gaussian levels:
/// `D_s(x, y) = G_{s+1}(x, y) - G_s(x, y)` (Lowe 2004 eq. 1), never stored whole.
struct Dog<'a>(&'a [Plane]);

impl Dog<'_> {
    #[inline]
    fn at(&self, s: usize, x: usize, y: usize) -> f32 {
        let i = y * self.0[0].w + x;
        self.0[s + 1].data[i] - self.0[s].data[i]
    }
}

/// Rows per parallel task of the extremum search.
const DETECT_ROWS: usize = 16;

/// Scale-space extrema of the DoG levels `1..=S` of one octave, refined to sub-pixel/sub-level
/// accuracy (Lowe 2004 §4, Brown & Lowe 2002 quadratic fit) and filtered by contrast and edge
/// response (Lowe 2004 §4.1). Each task builds the DoG rows it needs in a small buffer.
fn detect_octave(gauss: &[Plane], octave: usize, opts: &SiftOptions) -> Vec<Candidate> {
    let (w, h) = (gauss[0].w, gauss[0].h);
    if w <= 2 * BORDER || h <= 2 * BORDER {
        return Vec::new();
    }
    let pre = 0.8 * opts.peak_threshold;
    let starts: Vec<usize> = (BORDER..h - BORDER).step_by(DETECT_ROWS).collect();
    starts
        .into_par_iter()
        .flat_map_iter(|y0| {
            let y1 = (y0 + DETECT_ROWS).min(h - BORDER);
            // DoG rows y0 - 1 ..= y1 of every level.
            let rows = y1 - y0 + 2;
            let mut buf = vec![0f32; (S + 2) * rows * w];
            for (l, lev) in buf.chunks_exact_mut(rows * w).enumerate() {
                let (g0, g1) = (&gauss[l].data, &gauss[l + 1].data);
                let span = (y0 - 1) * w..(y1 + 1) * w;
                for ((d, a), b) in lev.iter_mut().zip(&g1[span.clone()]).zip(&g0[span]) {
                    *d = a - b;
                }
            }
            let lev = |l: usize| &buf[l * rows * w..(l + 1) * rows * w];
            let dog = Dog(gauss);
            let mut found = Vec::new();
            for y in y0..y1 {
                let row = (y - y0 + 1) * w;
                for s in 1..=S {
                    let (d0, d1, d2) = (lev(s - 1), lev(s), lev(s + 1));
                    for x in BORDER..w - BORDER {
                        let i = row + x;
                        let v = d1[i];
                        if v.abs() > pre
                            && is_extremum(v, i, w, d0, d1, d2)
                            && let Some(c) = refine(&dog, octave, x, y, s, opts)
                        {
                            found.push(c);
                        }
                    }
                }
            }
            found.into_iter()
        })
        .collect()
}

/// `v = d1[i]` is strictly above (below) its 8 neighbours in its level and at least as high
/// (low) as the 9 neighbours in each adjacent level.
#[inline]
fn is_extremum(v: f32, i: usize, w: usize, d0: &[f32], d1: &[f32], d2: &[f32]) -> bool {
    let same = [
        i - w - 1,
        i - w,
        i - w + 1,
        i - 1,
        i + 1,
        i + w - 1,
        i + w,
        i + w + 1,
    ];
    if v > 0.0 {
        same.iter().all(|&j| d1[j] < v)
            && (i - w - 1..=i - w + 1)
                .chain(i - 1..=i + 1)
                .chain(i + w - 1..=i + w + 1)
                .all(|j| d0[j] <= v && d2[j] <= v)
    } else {
        same.iter().all(|&j| d1[j] > v)
            && (i - w - 1..=i - w + 1)
                .chain(i - 1..=i + 1)
                .chain(i + w - 1..=i + w + 1)
                .all(|j| d0[j] >= v && d2[j] >= v)
    }
}

/// Sub-pixel refinement by Newton steps on the 3D quadratic Taylor expansion of the DoG
/// (Lowe 2004 eq. 2-3), then contrast `|D(x̂)| >= peak_threshold` and edge
/// `tr(H)²/det(H) < (r+1)²/r` tests (Lowe 2004 eq. 4-5).
fn refine(
    dog: &Dog<'_>,
    octave: usize,
    x0: usize,
    y0: usize,
    s0: usize,
    opts: &SiftOptions,
) -> Option<Candidate> {
    let (w, h) = (dog.0[0].w, dog.0[0].h);
    let (mut x, mut y, mut s) = (x0, y0, s0);
    for _ in 0..5 {
        let a = |x: usize, y: usize| dog.at(s - 1, x, y);
        let b = |x: usize, y: usize| dog.at(s, x, y);
        let c = |x: usize, y: usize| dog.at(s + 1, x, y);
        let v = b(x, y);
        let dx = 0.5 * (b(x + 1, y) - b(x - 1, y));
        let dy = 0.5 * (b(x, y + 1) - b(x, y - 1));
        let ds = 0.5 * (c(x, y) - a(x, y));
        let dxx = b(x + 1, y) + b(x - 1, y) - 2.0 * v;
        let dyy = b(x, y + 1) + b(x, y - 1) - 2.0 * v;
        let dss = c(x, y) + a(x, y) - 2.0 * v;
        let dxy = 0.25 * (b(x + 1, y + 1) - b(x - 1, y + 1) - b(x + 1, y - 1) + b(x - 1, y - 1));
        let dxs = 0.25 * (c(x + 1, y) - c(x - 1, y) - a(x + 1, y) + a(x - 1, y));
        let dys = 0.25 * (c(x, y + 1) - c(x, y - 1) - a(x, y + 1) + a(x, y - 1));
        let hm = [[dxx, dxy, dxs], [dxy, dyy, dys], [dxs, dys, dss]];
        let off = solve3(&hm, &[-dx, -dy, -ds])?;
        if off.iter().all(|o| o.abs() < 0.6) {
            let contrast = v + 0.5 * (dx * off[0] + dy * off[1] + ds * off[2]);
            if contrast.abs() < opts.peak_threshold {
                return None;
            }
            let tr = dxx + dyy;
            let det = dxx * dyy - dxy * dxy;
            let r = opts.edge_threshold;
            if det <= 0.0 || tr * tr * r >= (r + 1.0) * (r + 1.0) * det {
                return None;
            }
            let sf = s as f32 + off[2];
            return Some(Candidate {
                octave,
                x: x as f32 + off[0],
                y: y as f32 + off[1],
                s: sf,
                sigma: SIGMA0 * 2f32.powf(sf / S as f32),
            });
        }
        if off.iter().any(|o| !o.is_finite() || o.abs() > 3.0) {
            return None;
        }
        let step = |p: usize, o: f32| (p as f32 + o.round()) as isize;
        let (nx, ny, ns) = (step(x, off[0]), step(y, off[1]), step(s, off[2]));
        if ns < 1 || ns > S as isize || nx < BORDER as isize || ny < BORDER as isize {
            return None;
        }
        if nx >= (w - BORDER) as isize || ny >= (h - BORDER) as isize {
            return None;
        }
        (x, y, s) = (nx as usize, ny as usize, ns as usize);
    }
    None
}

/// Solves the 3x3 system `H x = b` by Cramer's rule; `None` when singular.
fn solve3(m: &[[f32; 3]; 3], b: &[f32; 3]) -> Option<[f32; 3]> {
    let det3 = |m: &[[f32; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det3(m);
    if d.abs() < 1e-12 {
        return None;
    }
    let mut x = [0f32; 3];
    for (c, xc) in x.iter_mut().enumerate() {
        let mut mc = *m;
        for r in 0..3 {
            mc[r][c] = b[r];
        }
        *xc = det3(&mc) / d;
    }
    Some(x)
}

/// Fast `atan2` in `[0, 2π)` (polynomial approximation, max error about 0.012°).
#[inline]
pub(crate) fn fast_atan2(y: f32, x: f32) -> f32 {
    let ax = x.abs();
    let ay = y.abs();
    let a = ax.min(ay) / (ax.max(ay) + f32::MIN_POSITIVE);
    let s = a * a;
    // Minimax polynomial for atan on [0, 1]; the octant corrections are selects, not branches.
    let r = ((-0.046_496_473 * s + 0.159_314_22) * s - 0.327_622_77) * s * a + a;
    let r = if ay > ax { 0.5 * PI - r } else { r };
    let r = if x < 0.0 { PI - r } else { r };
    let r = if y < 0.0 { 2.0 * PI - r } else { r };
    if r >= 2.0 * PI { 0.0 } else { r }
}

/// Dominant orientations (Lowe 2004 §5): a 36-bin histogram of gradient directions weighted by
/// magnitude and a Gaussian window of `1.5 sigma`, smoothed, peaks within 80 % of the highest,
/// refined by a parabola through the peak bin and its neighbours; the strongest `max_n`.
fn orientations(g: &Plane, x: f32, y: f32, sigma: f32, max_n: usize) -> Vec<f32> {
    let ws = ORI_SIGMA_FACTOR * sigma;
    let rad = (3.0 * ws).round() as isize;
    let (xi, yi) = (x.round() as isize, y.round() as isize);
    let mut hist = [0f32; ORI_BINS];
    let inv2 = -1.0 / (2.0 * ws * ws);
    // Separable Gaussian weight exp(inv2 (dx² + dy²)) = e[|dx|] e[|dy|].
    let e: Vec<f32> = (0..=rad).map(|d| ((d * d) as f32 * inv2).exp()).collect();
    let mut wmag = vec![0f32; (2 * rad + 1) as usize];
    let mut bins = vec![0u32; (2 * rad + 1) as usize];
    for dy in -rad..=rad {
        let yy = yi + dy;
        if yy < 1 || yy >= g.h as isize - 1 {
            continue;
        }
        // Samples inside the disc of radius `rad` and one pixel inside the image.
        let half = (((rad * rad) as f32 + 0.5 - (dy * dy) as f32)
            .max(0.0)
            .sqrt()) as isize;
        let dx0 = (-half).max(1 - xi);
        let dx1 = half.min(g.w as isize - 2 - xi);
        if dx1 < dx0 {
            continue;
        }
        let n = (dx1 - dx0 + 1) as usize;
        let (x0, yy) = ((xi + dx0) as usize, yy as usize);
        let mid = &g.data[yy * g.w..(yy + 1) * g.w];
        let (left, right) = (&mid[x0 - 1..x0 - 1 + n], &mid[x0 + 1..x0 + 1 + n]);
        let up = &g.data[(yy - 1) * g.w + x0..(yy - 1) * g.w + x0 + n];
        let down = &g.data[(yy + 1) * g.w + x0..(yy + 1) * g.w + x0 + n];
        let ey = e[dy.unsigned_abs()];
        // Branch-free pass (vectorises), then the scatter into the histogram.
        let (wm, bn) = (&mut wmag[..n], &mut bins[..n]);
        for k in 0..n {
            let gx = right[k] - left[k];
            let gy = down[k] - up[k];
            let ang = fast_atan2(gy, gx);
            bn[k] = ((ang * (ORI_BINS as f32 / (2.0 * PI))) as u32).min(ORI_BINS as u32 - 1);
            wm[k] = (gx * gx + gy * gy).sqrt() * ey;
        }
        for k in 0..n {
            let dx = dx0 + k as isize;
            hist[bn[k] as usize] += wm[k] * e[dx.unsigned_abs()];
        }
    }
    // Smooth with [1 4 6 4 1]/16 (circular), as OpenCV does.
    let mut sm = [0f32; ORI_BINS];
    for (i, v) in sm.iter_mut().enumerate() {
        let at = |d: isize| hist[((i as isize + d).rem_euclid(ORI_BINS as isize)) as usize];
        *v = (at(-2) + at(2)) * (1.0 / 16.0)
            + (at(-1) + at(1)) * (4.0 / 16.0)
            + at(0) * (6.0 / 16.0);
    }
    let max = sm.iter().cloned().fold(0.0, f32::max);
    if max <= 0.0 {
        return vec![0.0];
    }
    let mut peaks: Vec<(f32, f32)> = Vec::new();
    for i in 0..ORI_BINS {
        let l = sm[(i + ORI_BINS - 1) % ORI_BINS];
        let r = sm[(i + 1) % ORI_BINS];
        let c = sm[i];
        if c > l && c > r && c >= ORI_PEAK_RATIO * max {
            let off = 0.5 * (l - r) / (l - 2.0 * c + r);
            let bin = (i as f32 + 0.5 + off).rem_euclid(ORI_BINS as f32);
            peaks.push((c, bin * (2.0 * PI / ORI_BINS as f32)));
        }
    }
    peaks.sort_by(|a, b| b.0.total_cmp(&a.0));
    peaks.truncate(max_n);
    peaks
        .into_iter()
        .map(|p| if p.1 >= 2.0 * PI { 0.0 } else { p.1 })
        .collect()
}

/// SIFT descriptor (Lowe 2004 §6): a 4x4 grid of 8-bin gradient orientation histograms over a
/// patch rotated to `theta`, bins `3 sigma` wide, samples Gaussian-weighted (sigma = half the
/// window) and spread by trilinear interpolation; normalised, clamped at 0.2, renormalised.
/// Then RootSIFT (L1-normalise, square root; Arandjelović & Zisserman 2012 §3) and COLMAP's
/// quantisation `min(255, round(512 v))`.
fn descriptor(g: &Plane, x: f32, y: f32, sigma: f32, theta: f32) -> [u8; 128] {
    const D: usize = DESC_D;
    const N: usize = DESC_N;
    let bin_w = DESC_BIN_SIGMAS * sigma;
    let rad = (bin_w * std::f32::consts::SQRT_2 * (D as f32 + 1.0) * 0.5).round() as isize;
    let (ct, st) = (theta.cos() / bin_w, theta.sin() / bin_w);
    let (xi, yi) = (x.round() as isize, y.round() as isize);
    let (fx, fy) = (x - xi as f32, y - yi as f32);
    // Histogram with one guard bin on each side in space.
    let mut hist = [0f32; (D + 2) * (D + 2) * N];
    // Gaussian window, sigma = D/2 bins: exp(win (c² + r²)) = exp(win' ox²) exp(win' oy²).
    let win = -1.0 / (2.0 * (0.5 * D as f32).powi(2) * bin_w * bin_w);
    let half = 0.5 * D as f32 - 0.5;
    let x_lo = (-rad).max(1 - xi);
    let x_hi = rad.min(g.w as isize - 2 - xi);
    if x_lo > x_hi {
        return rootsift_quantize(&mut [0f32; 128]);
    }
    let wx: Vec<f32> = (x_lo..=x_hi)
        .map(|dx| (win * (dx as f32 - fx).powi(2)).exp())
        .collect();
    // Open interval of ox where `a ox + b` lies in (lo, hi).
    let span = |a: f32, b: f32, lo: f32, hi: f32| -> (f32, f32) {
        if a.abs() < 1e-9 {
            if b > lo && b < hi {
                (f32::MIN, f32::MAX)
            } else {
                (1.0, -1.0)
            }
        } else {
            let (p, q) = ((lo - b) / a, (hi - b) / a);
            (p.min(q), p.max(q))
        }
    };
    let (lo, hi) = (-1.0 - half, D as f32 - half);
    let width = (x_hi - x_lo + 1) as usize;
    let (mut cbv, mut rbv, mut obv, mut magv) = (
        vec![0f32; width],
        vec![0f32; width],
        vec![0f32; width],
        vec![0f32; width],
    );
    for dy in -rad..=rad {
        let yy = yi + dy;
        if yy < 1 || yy >= g.h as isize - 1 {
            continue;
        }
        let oy = dy as f32 - fy;
        let wy = (win * oy * oy).exp();
        // c = ox ct + oy st and r = -ox st + oy ct must both lie in (lo, hi).
        let (c_lo, c_hi) = span(ct, oy * st, lo, hi);
        let (r_lo, r_hi) = span(-st, oy * ct, lo, hi);
        let (ox_lo, ox_hi) = (c_lo.max(r_lo), c_hi.min(r_hi));
        if ox_lo >= ox_hi {
            continue;
        }
        let dx0 = ((ox_lo + fx).floor() as isize).max(x_lo);
        let dx1 = ((ox_hi + fx).ceil() as isize).min(x_hi);
        if dx1 < dx0 {
            continue;
        }
        let yy = yy as usize;
        let (up, mid, down) = (
            &g.data[(yy - 1) * g.w..yy * g.w],
            &g.data[yy * g.w..(yy + 1) * g.w],
            &g.data[(yy + 1) * g.w..(yy + 2) * g.w],
        );
        // Pass 1, branch-free so that it vectorises: bin coordinates and weighted magnitude of
        // every sample of this row.
        let n = (dx1 - dx0 + 1) as usize;
        let x0 = (xi + dx0) as usize;
        let (cbv, rbv, obv, magv) = (&mut cbv[..n], &mut rbv[..n], &mut obv[..n], &mut magv[..n]);
        let wxr = &wx[(dx0 - x_lo) as usize..(dx0 - x_lo) as usize + n];
        let (left, right) = (&mid[x0 - 1..x0 - 1 + n], &mid[x0 + 1..x0 + 1 + n]);
        let (upr, downr) = (&up[x0..x0 + n], &down[x0..x0 + n]);
        for k in 0..n {
            let ox = (dx0 + k as isize) as f32 - fx;
            cbv[k] = ox * ct + oy * st + half;
            rbv[k] = -ox * st + oy * ct + half;
            let gx = right[k] - left[k];
            let gy = downr[k] - upr[k];
            magv[k] = (gx * gx + gy * gy).sqrt() * wy * wxr[k];
            let ob = (fast_atan2(gy, gx) - theta) * (N as f32 / (2.0 * PI));
            obv[k] = if ob < 0.0 { ob + N as f32 } else { ob };
        }
        // Pass 2: trilinear interpolation into the histogram (cb, rb > -1 and ob >= 0:
        // truncation is floor).
        for k in 0..n {
            let (cb, rb, ob, mag) = (cbv[k], rbv[k], obv[k], magv[k]);
            if cb <= -1.0 || cb >= D as f32 || rb <= -1.0 || rb >= D as f32 {
                continue;
            }
            let (r0, c0) = (((rb + 1.0) as usize).min(D), ((cb + 1.0) as usize).min(D));
            let o0 = (ob as usize).min(N - 1);
            let (dr, dc, d_o) = (rb + 1.0 - r0 as f32, cb + 1.0 - c0 as f32, ob - o0 as f32);
            let o1 = (o0 + 1) % N;
            for (ri, wr) in [(r0, 1.0 - dr), (r0 + 1, dr)] {
                for (ci, wc) in [(c0, 1.0 - dc), (c0 + 1, dc)] {
                    let base = (ri * (D + 2) + ci) * N;
                    let v = mag * wr * wc;
                    hist[base + o0] += v * (1.0 - d_o);
                    hist[base + o1] += v * d_o;
                }
            }
        }
    }
    let mut desc = [0f32; 128];
    for r in 0..D {
        for c in 0..D {
            let src = ((r + 1) * (D + 2) + (c + 1)) * N;
            desc[(r * D + c) * N..(r * D + c + 1) * N].copy_from_slice(&hist[src..src + N]);
        }
    }
    rootsift_quantize(&mut desc)
}

/// Lowe's normalisation (L2, clamp at 0.2, L2), then RootSIFT (L1-normalise, sqrt: the result
/// has unit L2 norm) and COLMAP's `u8` quantisation `min(255, round(512 v))`.
pub(crate) fn rootsift_quantize(desc: &mut [f32; 128]) -> [u8; 128] {
    let n2 = desc.iter().map(|v| v * v).sum::<f32>().sqrt();
    if n2 > 0.0 {
        let inv = 1.0 / n2;
        desc.iter_mut().for_each(|v| *v = (*v * inv).min(0.2));
    }
    let l1: f32 = desc.iter().sum();
    let mut out = [0u8; 128];
    if l1 > 0.0 {
        let inv = 1.0 / l1;
        for (o, v) in out.iter_mut().zip(desc.iter()) {
            *o = ((v * inv).sqrt() * 512.0).round().min(255.0) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-megapixel target: density x work megapixels, floor, cap (the cap wins), off at 0.
    #[test]
    fn feature_target_scales_with_the_work_image() {
        let o = SiftOptions {
            features_per_megapixel: 5000.0,
            min_features: 4096,
            max_features: 8192,
            ..Default::default()
        };
        assert_eq!(feature_target(1600, 1200, &o), 8192);
        assert_eq!(feature_target(1600, 900, &o), 7200);
        assert_eq!(feature_target(640, 480, &o), 4096);
        let cap = SiftOptions {
            max_features: 300,
            ..o.clone()
        };
        assert_eq!(feature_target(640, 480, &cap), 300);
        let off = SiftOptions {
            features_per_megapixel: 0.0,
            ..o
        };
        assert_eq!(feature_target(640, 480, &off), 8192);
    }

    #[test]
    fn fast_atan2_matches_std() {
        let mut worst = 0f32;
        for i in 0..3600 {
            let a = i as f32 * 0.1f32.to_radians();
            for r in [0.01f32, 1.0, 37.0] {
                let (y, x) = (r * a.sin(), r * a.cos());
                let want = y.atan2(x).rem_euclid(2.0 * PI);
                let got = fast_atan2(y, x);
                let mut d = (got - want).abs();
                d = d.min(2.0 * PI - d);
                worst = worst.max(d);
            }
        }
        assert!(worst < 3e-4, "worst atan2 error {worst} rad");
    }

    #[test]
    fn blur_preserves_mean_and_matches_sigma() {
        // A single bright pixel becomes a Gaussian with the requested variance.
        let mut p = Plane::new(41, 41);
        p.data[20 * 41 + 20] = 1.0;
        let b = blur(&p, 2.0);
        let sum: f32 = b.data.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "sum {sum}");
        let var: f32 = (0..41)
            .map(|x| b.data.iter().skip(x).step_by(41).sum::<f32>() * (x as f32 - 20.0).powi(2))
            .sum();
        assert!((var - 4.0).abs() < 0.05, "variance {var}");
    }

    #[test]
    fn degenerate_images_give_no_features_and_no_panic() {
        let flat = image::GrayImage::from_pixel(200, 150, image::Luma([77]));
        assert!(extract(&flat, &SiftOptions::default()).keypoints.is_empty());
        let tiny = image::GrayImage::from_pixel(5, 400, image::Luma([7]));
        assert!(extract(&tiny, &SiftOptions::default()).keypoints.is_empty());
        // A thin textured strip that the downscaling makes thinner than one octave.
        let strip = image::GrayImage::from_fn(3000, 20, |x, y| {
            image::Luma([((x * 7 + y * 13) % 251) as u8])
        });
        let f = extract(
            &strip,
            &SiftOptions {
                max_image_size: 600,
                ..Default::default()
            },
        );
        assert!(f.keypoints.is_empty() && f.descriptors.is_empty());
        let none = extract(
            &strip,
            &SiftOptions {
                max_features: 0,
                ..Default::default()
            },
        );
        assert!(none.keypoints.is_empty());
        // Texture right up to the border: every keypoint inside the image, finite, described.
        let noise = image::GrayImage::from_fn(64, 48, |x, y| {
            image::Luma([((x * x * 31 + y * 17 + x * y) % 255) as u8])
        });
        let f = extract(&noise, &SiftOptions::default());
        assert_eq!(f.keypoints.len(), f.descriptors.len());
        assert!(f.keypoints.iter().all(|k| k.x >= 0.0
            && k.y >= 0.0
            && k.x <= 64.0
            && k.y <= 48.0
            && k.scale.is_finite()));
    }

    #[test]
    fn tent_resize_keeps_pixel_centres_aligned() {
        // A horizontal ramp v = x (index coordinates) resampled 2832 -> 1600 reads, at output
        // index i, the source position (i + 0.5) r - 0.5 (linear data: any symmetric filter
        // returns the centroid of its discrete weights), away from the borders.
        let (w, h, dw, dh) = (2832usize, 40usize, 1600usize, 23usize);
        let src = Plane {
            w,
            h,
            data: (0..w * h).map(|i| (i % w) as f32).collect(),
        };
        let dst = resize_tent(&src, dw, dh);
        let r = w as f32 / dw as f32;
        let worst = (5..dw - 5)
            .map(|i| (dst.data[10 * dw + i] - ((i as f32 + 0.5) * r - 0.5)).abs())
            .fold(0f32, f32::max);
        // The discrete tent's centroid is off the centre by < 0.1 source px (0.05 output px).
        assert!(worst < 0.1, "worst ramp error {worst}");
        let flat = resize_tent(
            &Plane {
                w,
                h,
                data: vec![0.25; w * h],
            },
            dw,
            dh,
        );
        assert!(flat.data.iter().all(|v| (v - 0.25).abs() < 1e-5));
    }

    #[test]
    fn rootsift_has_unit_norm() {
        let mut d = [0f32; 128];
        for (i, v) in d.iter_mut().enumerate() {
            *v = ((i * 37) % 11) as f32;
        }
        let q = rootsift_quantize(&mut d);
        let n: f32 = q
            .iter()
            .map(|&v| (v as f32 / 512.0).powi(2))
            .sum::<f32>()
            .sqrt();
        assert!((n - 1.0).abs() < 0.01, "norm {n}");
    }

    #[test]
    fn blob_is_detected_at_its_centre_and_scale() {
        // A Gaussian blob of sigma b has its DoG extremum at scale about b (Lindeberg).
        let (w, h) = (96, 96);
        let (cx, cy, b) = (40.3f32, 51.7f32, 4.0f32);
        let data: Vec<u8> = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f32, (i / w) as f32);
                let r2 = (x - cx).powi(2) + (y - cy).powi(2);
                (40.0 + 180.0 * (-r2 / (2.0 * b * b)).exp()) as u8
            })
            .collect();
        let img = image::GrayImage::from_raw(w as u32, h as u32, data).expect("image");
        let f = extract(&img, &SiftOptions::default());
        // Index coordinates (cx, cy) are full coordinates (cx + 0.5, cy + 0.5).
        let best = f
            .keypoints
            .iter()
            .min_by(|a, b| {
                let da = (a.x - cx - 0.5).hypot(a.y - cy - 0.5);
                let db = (b.x - cx - 0.5).hypot(b.y - cy - 0.5);
                da.total_cmp(&db)
            })
            .expect("a keypoint");
        let d = (best.x - cx - 0.5).hypot(best.y - cy - 0.5);
        assert!(d < 0.3, "blob found {d} px away: {best:?}");
        let ratio = best.scale / b;
        assert!(
            ratio > 0.7 && ratio < 1.4,
            "scale {} for blob sigma {b}",
            best.scale
        );
    }
}
