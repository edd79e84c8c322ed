//! Procedural materials: albedo (linear RGB, 0..1) as a function of surface coordinates.
//!
//! Every pattern is built from per-cell random values ([`crate::rng::cellf`]) so that no two
//! bricks, planks, tiles, books or leaves look alike (repeated identical patches would give SIFT
//! false matches), and every fine detail is band-limited by the footprint `fp` (metres per sample,
//! see [`crate::noise`]).

use crate::geometry::LocalHit;
use crate::noise::{coverage, fbm, fbm_aniso};
use crate::rng::cellf;

pub type Rgb = [f32; 3];

/// sRGB 8-bit to linear (IEC 61966-2-1 EOTF).
pub fn srgb(r: u8, g: u8, b: u8) -> Rgb {
    [r, g, b].map(|c| srgb_to_linear(c as f32 / 255.0))
}

/// IEC 61966-2-1 sRGB decoding of one channel in `[0, 1]`.
#[inline]
pub fn srgb_to_linear(c: f32) -> f32 {
    if c <= 0.04045 {
        c / 12.92
    } else {
        ((c + 0.055) / 1.055).powf(2.4)
    }
}

/// IEC 61966-2-1 sRGB encoding (the OETF) of one linear channel, clamped to `[0, 1]`.
#[inline]
pub fn linear_to_srgb(c: f32) -> f32 {
    let c = c.clamp(0.0, 1.0);
    if c <= 0.003_130_8 {
        12.92 * c
    } else {
        1.055 * c.powf(1.0 / 2.4) - 0.055
    }
}

#[inline]
pub fn lerp3(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

#[inline]
pub fn scale3(a: Rgb, s: f32) -> Rgb {
    [a[0] * s, a[1] * s, a[2] * s]
}

#[inline]
fn clamp3(a: Rgb) -> Rgb {
    a.map(|c| c.clamp(0.005, 0.95))
}

/// What a poster shows.
#[derive(Debug, Clone, PartialEq)]
pub enum PosterContent {
    /// Index into the scene's random paintings.
    Painting(usize),
    /// Index into the embedded face images; `mirrored` flips it left-right.
    Face { image: usize, mirrored: bool },
}

/// Surface materials of the room.
#[derive(Debug, Clone, PartialEq)]
pub enum Material {
    /// Floor boards of random length and colour.
    Planks { salt: u64 },
    /// Running-bond bricks with per-brick colour.
    Bricks { salt: u64 },
    /// Square glazed tiles with random colours and motifs below `top` (m), plaster above.
    Tiles { salt: u64, top: f64 },
    /// Painted wainscot boards below `wainscot` (m), terrazzo-speckled plaster above.
    Plaster { salt: u64, base: Rgb, wainscot: f64 },
    /// Wallpaper of randomly placed leaves and flowers.
    LeafPaper { salt: u64 },
    /// Suspended-ceiling tiles.
    CeilingTiles { salt: u64 },
    /// Wood with grain along `u`.
    Wood { salt: u64, tint: Rgb },
    /// A bookshelf: rows of random books on box face `front`, wood elsewhere.
    Books { salt: u64, front: u8 },
    /// Upholstery.
    Fabric { salt: u64, color: Rgb },
    /// Paint with blotches.
    Painted { salt: u64, color: Rgb },
    /// A framed poster of size `w` x `h` (m) with a frame `frame` (m) wide.
    Poster {
        content: PosterContent,
        w: f64,
        h: f64,
        frame: f64,
    },
    /// A rug with a border and random diamonds.
    Rug { salt: u64, w: f64, h: f64 },
    /// Leaves of a plant.
    Foliage { salt: u64 },
}

/// A random abstract painting: a gradient ground and a list of shapes, in content coordinates
/// `(x, y)` in `[0, 1]^2` (y down).
#[derive(Debug, Clone, PartialEq)]
pub struct Painting {
    pub ground: [Rgb; 2],
    pub shapes: Vec<PaintShape>,
    pub salt: u64,
}

/// One shape of a [`Painting`].
#[derive(Debug, Clone, PartialEq)]
pub struct PaintShape {
    /// 0 soft blob, 1 ellipse, 2 rectangle, 3 ring.
    pub kind: u8,
    pub cx: f64,
    pub cy: f64,
    pub rx: f64,
    pub ry: f64,
    pub angle: f64,
    pub color: Rgb,
    pub alpha: f32,
}

impl Painting {
    pub fn random(rng: &mut crate::rng::Rng) -> Painting {
        let col = |rng: &mut crate::rng::Rng| -> Rgb {
            srgb(
                (rng.f64() * 230.0 + 20.0) as u8,
                (rng.f64() * 230.0 + 20.0) as u8,
                (rng.f64() * 230.0 + 20.0) as u8,
            )
        };
        let ground = [col(rng), col(rng)];
        let n = 14 + rng.below(8);
        let shapes = (0..n)
            .map(|_| PaintShape {
                kind: rng.below(4) as u8,
                cx: rng.f64(),
                cy: rng.f64(),
                rx: rng.range(0.04, 0.22),
                ry: rng.range(0.04, 0.22),
                angle: rng.range(0.0, std::f64::consts::PI),
                color: col(rng),
                alpha: rng.range(0.6, 1.0) as f32,
            })
            .collect();
        Painting {
            ground,
            shapes,
            salt: rng.next_u64(),
        }
    }

    /// Colour at content coordinates `(x, y)`; `fp` is the footprint in content units.
    pub fn eval(&self, x: f64, y: f64, fp: f64) -> Rgb {
        let mut c = lerp3(self.ground[0], self.ground[1], ((x + y) * 0.5) as f32);
        for s in &self.shapes {
            let (dx, dy) = (x - s.cx, y - s.cy);
            let (sn, cs) = s.angle.sin_cos();
            let (a, b) = ((dx * cs + dy * sn) / s.rx, (-dx * sn + dy * cs) / s.ry);
            let rmin = s.rx.min(s.ry);
            let cov = match s.kind {
                0 => (-(a * a + b * b) * 1.5).exp() as f32,
                1 => coverage((1.0 - (a * a + b * b).sqrt()) * rmin, fp),
                2 => coverage((1.0 - a.abs().max(b.abs())) * rmin, fp),
                _ => {
                    let r = (a * a + b * b).sqrt();
                    coverage((0.18 - (r - 0.8).abs()) * rmin, fp)
                }
            };
            if cov > 0.0 {
                c = lerp3(c, s.color, cov * s.alpha);
            }
        }
        // Brush/canvas texture.
        let g = 1.0 + 0.12 * fbm(x, y, self.salt, 12.0, 4, 0.6, fp);
        clamp3(scale3(c, g))
    }
}

/// A face photo used as poster content, in linear RGB.
#[derive(Debug, Clone)]
pub struct FaceImage {
    pub name: &'static str,
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<Rgb>,
    /// Face region `(x0, y0, x1, y1)` as fractions of width/height (y down).
    pub face_region: [f64; 4],
}

impl FaceImage {
    /// Bilinear sample at content coordinates `(x, y)` in `[0, 1]^2` (pixel centres at `(i + 0.5) / w`).
    pub fn sample(&self, x: f64, y: f64) -> Rgb {
        let fx = (x * self.width as f64 - 0.5).clamp(0.0, (self.width - 1) as f64);
        let fy = (y * self.height as f64 - 0.5).clamp(0.0, (self.height - 1) as f64);
        let (x0, y0) = (fx.floor() as usize, fy.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(self.width - 1), (y0 + 1).min(self.height - 1));
        let (tx, ty) = ((fx - x0 as f64) as f32, (fy - y0 as f64) as f32);
        let p = |x: usize, y: usize| self.pixels[y * self.width + x];
        let top = lerp3(p(x0, y0), p(x1, y0), tx);
        let bot = lerp3(p(x0, y1), p(x1, y1), tx);
        lerp3(top, bot, ty)
    }
}

/// Context the materials need besides the hit: the scene's paintings and face images.
pub struct TextureSet<'a> {
    pub paintings: &'a [Painting],
    pub faces: &'a [FaceImage],
}

fn wood(u: f64, v: f64, salt: u64, tint: Rgb, fp: f64) -> Rgb {
    let grain = fbm_aniso(u, v, 2.0, 45.0, salt, 5, 0.6, fp);
    let blotch = fbm(u, v, salt ^ 0x77, 3.0, 4, 0.5, fp);
    let rings = ((v * 60.0 + 6.0 * fbm(u, v, salt ^ 0x99, 1.5, 2, 0.5, fp) as f64).sin() * 0.5
        + 0.5) as f32
        * crate::noise::band_weight(10.0, fp);
    clamp3(scale3(
        tint,
        1.0 + 0.22 * grain + 0.12 * blotch - 0.12 * rings,
    ))
}

impl TextureSet<'_> {
    /// Albedo of `mat` at a hit.
    pub fn albedo(&self, mat: &Material, h: &LocalHit, fp: f64) -> Rgb {
        let (u, v) = (h.u, h.v);
        match mat {
            Material::Planks { salt } => planks(u, v, *salt, fp),
            Material::Bricks { salt } => bricks(u, v, *salt, fp),
            Material::Tiles { salt, top } => {
                if v < *top {
                    tiles(u, v, *salt, fp)
                } else {
                    plaster(u, v, *salt, srgb(226, 218, 200), fp)
                }
            }
            Material::Plaster {
                salt,
                base,
                wainscot,
            } => {
                if v < *wainscot {
                    wainscot_boards(u, v, *salt, *wainscot, fp)
                } else {
                    plaster(u, v, *salt, *base, fp)
                }
            }
            Material::LeafPaper { salt } => leaf_paper(u, v, *salt, fp),
            Material::CeilingTiles { salt } => ceiling(u, v, *salt, fp),
            Material::Wood { salt, tint } => wood(u, v, *salt, *tint, fp),
            Material::Books { salt, front } => {
                if h.face == *front {
                    books(u, v, *salt, fp)
                } else {
                    wood(u, v, *salt, srgb(110, 75, 50), fp)
                }
            }
            Material::Fabric { salt, color } => {
                let weave = ((u * 900.0).sin() * (v * 900.0).sin()) as f32
                    * crate::noise::band_weight(150.0, fp);
                let b = fbm(u, v, *salt, 5.0, 5, 0.55, fp);
                clamp3(scale3(*color, 1.0 + 0.08 * weave + 0.2 * b))
            }
            Material::Painted { salt, color } => {
                let b = fbm(u, v, *salt, 3.0, 6, 0.55, fp);
                clamp3(scale3(*color, 1.0 + 0.25 * b))
            }
            Material::Poster {
                content,
                w,
                h: ph,
                frame,
            } => {
                let (a, b) = (u, v);
                let d_in = (a - frame)
                    .min(w - frame - a)
                    .min(b - frame)
                    .min(ph - frame - b);
                let frame_col = wood(a + b, a - b, 0xf7a3e, srgb(60, 40, 28), fp);
                let cov = coverage(d_in, fp);
                if cov <= 0.0 {
                    return frame_col;
                }
                let (cw, ch) = (w - 2.0 * frame, ph - 2.0 * frame);
                let x = ((a - frame) / cw).clamp(0.0, 1.0);
                let y = (1.0 - (b - frame) / ch).clamp(0.0, 1.0);
                let c = match content {
                    PosterContent::Painting(k) => self.paintings[*k].eval(x, y, fp / cw),
                    PosterContent::Face { image, mirrored } => {
                        let x = if *mirrored { 1.0 - x } else { x };
                        self.faces[*image].sample(x, y)
                    }
                };
                lerp3(frame_col, c, cov)
            }
            Material::Rug { salt, w, h: rh } => rug(u, v, *salt, *w, *rh, fp),
            Material::Foliage { salt } => {
                let n = fbm(u, v, *salt, 12.0, 5, 0.6, fp) * 0.5 + 0.5;
                let spots = fbm(u, v, salt ^ 0x5, 40.0, 3, 0.5, fp);
                clamp3(scale3(
                    lerp3(srgb(25, 60, 20), srgb(110, 160, 60), n.clamp(0.0, 1.0)),
                    1.0 + 0.3 * spots,
                ))
            }
        }
    }
}

fn planks(u: f64, v: f64, salt: u64, fp: f64) -> Rgb {
    const W: f64 = 0.16;
    let row = (v / W).floor();
    let fv = v - row * W;
    let r = row as i64;
    let len = 0.9 + 0.9 * cellf(r, 0, salt, 0) as f64;
    let off = cellf(r, 0, salt, 1) as f64 * len;
    let seg = ((u + off) / len).floor();
    let fu = u + off - seg * len;
    let s = seg as i64;
    let base = lerp3(srgb(105, 68, 40), srgb(175, 125, 80), cellf(r, s, salt, 2));
    let tint = [
        1.0 + 0.12 * (cellf(r, s, salt, 3) - 0.5),
        1.0,
        1.0 + 0.15 * (cellf(r, s, salt, 4) - 0.5),
    ];
    let c = wood(u, v, salt.wrapping_add((r * 131 + s) as u64), base, fp);
    let c = [c[0] * tint[0], c[1] * tint[1], c[2] * tint[2]];
    let edge = fv.min(W - fv).min(fu).min(len - fu);
    let gap = coverage(edge - 0.0025, fp);
    clamp3(scale3(c, 0.3 + 0.7 * gap))
}

fn bricks(u: f64, v: f64, salt: u64, fp: f64) -> Rgb {
    const BW: f64 = 0.215;
    const BH: f64 = 0.065;
    const M: f64 = 0.011;
    let row = (v / (BH + M)).floor();
    let r = row as i64;
    let shift = if r % 2 == 0 { 0.0 } else { 0.5 * (BW + M) } + 0.04 * cellf(r, 0, salt, 9) as f64;
    let col = ((u + shift) / (BW + M)).floor();
    let c = col as i64;
    let fu = u + shift - col * (BW + M);
    let fv = v - row * (BH + M);
    let d = fu.min(BW - fu).min(fv).min(BH - fv);
    let kind = cellf(r, c, salt, 0);
    let mut base = lerp3(srgb(125, 52, 38), srgb(185, 95, 62), cellf(r, c, salt, 1));
    if kind < 0.08 {
        base = srgb(70, 42, 35);
    } else if kind > 0.93 {
        base = srgb(200, 160, 125);
    }
    base = scale3(base, 0.8 + 0.4 * cellf(r, c, salt, 2));
    let speck = fbm(u, v, salt ^ 0x1, 25.0, 4, 0.55, fp);
    let brick = scale3(base, 1.0 + 0.28 * speck);
    let mortar = scale3(
        srgb(175, 170, 160),
        1.0 + 0.15 * fbm(u, v, salt ^ 0x2, 40.0, 3, 0.5, fp),
    );
    let dirt = 1.0 + 0.2 * fbm(u, v, salt ^ 0x3, 0.8, 4, 0.5, fp);
    clamp3(scale3(lerp3(mortar, brick, coverage(d, fp)), dirt))
}

fn tiles(u: f64, v: f64, salt: u64, fp: f64) -> Rgb {
    const S: f64 = 0.2;
    const G: f64 = 0.006;
    let (fi, fj) = ((u / S).floor(), (v / S).floor());
    let (i, j) = (fi as i64, fj as i64);
    let (fu, fv) = (u - fi * S, v - fj * S);
    let palette = [
        srgb(235, 228, 205),
        srgb(40, 125, 125),
        srgb(190, 90, 55),
        srgb(35, 50, 95),
        srgb(215, 170, 50),
        srgb(245, 245, 240),
        srgb(120, 150, 80),
    ];
    let k = (cellf(i, j, salt, 0) * palette.len() as f32) as usize % palette.len();
    // Per-tile tint (each channel ±15 %) and brightness, so equal-coloured tiles still differ.
    let tint = [
        0.85 + 0.3 * cellf(i, j, salt, 7),
        0.85 + 0.3 * cellf(i, j, salt, 8),
        0.85 + 0.3 * cellf(i, j, salt, 9),
    ];
    let b = 0.8 + 0.4 * cellf(i, j, salt, 1);
    let mut c = [
        palette[k][0] * tint[0] * b,
        palette[k][1] * tint[1] * b,
        palette[k][2] * tint[2] * b,
    ];
    // Motif in about half the tiles: a disc, a quarter disc or a diagonal half.
    let m = cellf(i, j, salt, 2);
    if m < 0.55 {
        let k2 = (cellf(i, j, salt, 3) * palette.len() as f32) as usize % palette.len();
        let mc = palette[(k2 + (k2 == k) as usize) % palette.len()];
        let cx = 0.05 + 0.1 * cellf(i, j, salt, 4) as f64;
        let cy = 0.05 + 0.1 * cellf(i, j, salt, 5) as f64;
        let d = if m < 0.2 {
            let r = 0.025 + 0.045 * cellf(i, j, salt, 6) as f64;
            r - ((fu - cx).powi(2) + (fv - cy).powi(2)).sqrt()
        } else if m < 0.4 {
            let r = 0.08 + 0.08 * cellf(i, j, salt, 6) as f64;
            r - (fu.powi(2) + fv.powi(2)).sqrt()
        } else {
            (fu - fv) * std::f64::consts::FRAC_1_SQRT_2 * if m < 0.48 { 1.0 } else { -1.0 }
        };
        c = lerp3(c, mc, coverage(d, fp));
    }
    let speck = fbm(u, v, salt ^ 0x4, 30.0, 3, 0.5, fp);
    let glaze = fbm(u, v, salt ^ 0x6, 6.0, 3, 0.5, fp);
    c = scale3(c, 1.0 + 0.12 * speck + 0.2 * glaze);
    let grout = scale3(
        srgb(190, 188, 180),
        1.0 + 0.2 * fbm(u, v, salt ^ 0x5, 8.0, 3, 0.5, fp),
    );
    let d = fu.min(S - fu).min(fv).min(S - fv) - G * 0.5;
    clamp3(lerp3(grout, c, coverage(d, fp)))
}

fn plaster(u: f64, v: f64, salt: u64, base: Rgb, fp: f64) -> Rgb {
    // Two-tone plaster: large stains blend towards a second colour, so every region differs.
    let stain = fbm(u, v, salt ^ 0x11, 1.2, 6, 0.6, fp);
    let tone = (fbm(u, v, salt ^ 0x12, 2.5, 4, 0.5, fp) * 0.8 + 0.5).clamp(0.0, 1.0);
    let second = [base[0] * 0.75, base[1] * 0.85, base[2] * 1.1];
    let mut c = scale3(lerp3(base, second, tone), 1.0 + 0.25 * stain);
    // Terrazzo-like chips: at most one per 7 cm cell, kept inside it, random elliptical shape,
    // size, angle and colour (a continuum, not a palette, so chips are not interchangeable).
    const CELL: f64 = 0.07;
    let (fi, fj) = ((u / CELL).floor(), (v / CELL).floor());
    let (i, j) = (fi as i64, fj as i64);
    if cellf(i, j, salt, 10) < 0.55 {
        let rx = 0.006 + 0.024 * cellf(i, j, salt, 11) as f64;
        let ry = rx * (0.35 + 0.65 * cellf(i, j, salt, 15) as f64);
        let cx = fi * CELL + rx + (CELL - 2.0 * rx) * cellf(i, j, salt, 12) as f64;
        let cy = fj * CELL + rx + (CELL - 2.0 * rx) * cellf(i, j, salt, 13) as f64;
        let (sn, cs) = (std::f64::consts::PI * cellf(i, j, salt, 16) as f64).sin_cos();
        let (dx, dy) = (u - cx, v - cy);
        let (a, b) = ((dx * cs + dy * sn) / rx, (-dx * sn + dy * cs) / ry);
        let d = (1.0 - (a * a + b * b).sqrt()) * ry;
        let chip = [
            0.02 + 0.8 * cellf(i, j, salt, 14).powi(2),
            0.02 + 0.7 * cellf(i, j, salt, 17).powi(2),
            0.02 + 0.7 * cellf(i, j, salt, 18).powi(2),
        ];
        c = lerp3(c, chip, coverage(d, fp));
    }
    clamp3(c)
}

fn wainscot_boards(u: f64, v: f64, salt: u64, top: f64, fp: f64) -> Rgb {
    const W: f64 = 0.11;
    let fi = (u / W).floor();
    let i = fi as i64;
    let fu = u - fi * W;
    let base = scale3(srgb(70, 105, 90), 0.85 + 0.3 * cellf(i, 0, salt, 20));
    let c = wood(u, v * 0.3, salt.wrapping_add(i as u64), base, fp);
    let groove = coverage(fu.min(W - fu) - 0.003, fp);
    // Rail along the top.
    let rail = coverage(top - 0.05 - v, fp);
    let c = scale3(c, 0.35 + 0.65 * groove.max(1.0 - rail));
    clamp3(lerp3(scale3(srgb(60, 90, 75), 1.1), c, rail))
}

fn leaf_paper(u: f64, v: f64, salt: u64, fp: f64) -> Rgb {
    let mut c = scale3(
        srgb(232, 222, 195),
        1.0 + 0.1 * fbm(u, v, salt ^ 0x21, 2.0, 5, 0.55, fp),
    );
    const CELL: f64 = 0.16;
    let (fi, fj) = ((u / CELL).floor(), (v / CELL).floor());
    let (i, j) = (fi as i64, fj as i64);
    let kind = cellf(i, j, salt, 30);
    let (rx, ry) = if kind < 0.8 {
        (
            0.03 + 0.035 * cellf(i, j, salt, 31) as f64,
            0.012 + 0.014 * cellf(i, j, salt, 32) as f64,
        )
    } else {
        let r = 0.015 + 0.02 * cellf(i, j, salt, 31) as f64;
        (r, r)
    };
    let cx = fi * CELL + rx + (CELL - 2.0 * rx) * cellf(i, j, salt, 33) as f64;
    let cy = fj * CELL + rx + (CELL - 2.0 * rx) * cellf(i, j, salt, 34) as f64;
    let ang = std::f64::consts::PI * cellf(i, j, salt, 35) as f64;
    let (sn, cs) = ang.sin_cos();
    let (dx, dy) = (u - cx, v - cy);
    let (a, b) = ((dx * cs + dy * sn) / rx, (-dx * sn + dy * cs) / ry);
    let d = (1.0 - (a * a + b * b).sqrt()) * ry;
    let col = if kind < 0.8 {
        lerp3(srgb(40, 95, 45), srgb(140, 170, 70), cellf(i, j, salt, 36))
    } else {
        lerp3(srgb(200, 60, 40), srgb(240, 160, 40), cellf(i, j, salt, 36))
    };
    // A vein along the leaf.
    let vein =
        1.0 - 0.4 * coverage(0.0015 - (-dx * sn + dy * cs).abs(), fp) * (kind < 0.8) as u8 as f32;
    let cov = coverage(d, fp);
    c = lerp3(c, scale3(col, vein), cov);
    clamp3(c)
}

fn ceiling(u: f64, v: f64, salt: u64, fp: f64) -> Rgb {
    const S: f64 = 0.6;
    let (fi, fj) = ((u / S).floor(), (v / S).floor());
    let (i, j) = (fi as i64, fj as i64);
    let (fu, fv) = (u - fi * S, v - fj * S);
    let base = scale3(srgb(225, 222, 215), 0.85 + 0.15 * cellf(i, j, salt, 40));
    let c = scale3(base, 1.0 + 0.15 * fbm(u, v, salt ^ 0x31, 6.0, 5, 0.6, fp));
    let d = fu.min(S - fu).min(fv).min(S - fv) - 0.008;
    clamp3(lerp3(srgb(90, 90, 95), c, coverage(d, fp)))
}

fn books(u: f64, v: f64, salt: u64, fp: f64) -> Rgb {
    const SHELF: f64 = 0.36;
    const BOARD: f64 = 0.025;
    let fs = (v / SHELF).floor();
    let s = fs as i64;
    let fv = v - fs * SHELF;
    let board = wood(u, v, salt, srgb(120, 85, 55), fp);
    if fv < BOARD {
        return board;
    }
    // Books of 2-5 cm: a 1 cm grid whose cells are grouped into books by a random walk.
    const CELL: f64 = 0.01;
    let ci = (u / CELL).floor() as i64;
    // Book boundaries where the cell hash says so (about every 3.5 cells).
    let is_boundary = |k: i64| cellf(k, s, salt, 50) < 0.28;
    let mut start = ci;
    while !is_boundary(start) && ci - start < 8 {
        start -= 1;
    }
    let mut end = ci + 1;
    while !is_boundary(end) && end - ci < 8 {
        end += 1;
    }
    let (x0, x1) = (start as f64 * CELL, end as f64 * CELL);
    let height = (0.55 + 0.4 * cellf(start, s, salt, 51) as f64) * (SHELF - BOARD);
    let inside = coverage((u - x0).min(x1 - u) - 0.001, fp);
    let above = fv - BOARD > height;
    let back = scale3(
        srgb(35, 28, 22),
        1.0 + 0.2 * fbm(u, v, salt, 5.0, 3, 0.5, fp),
    );
    if above {
        return back;
    }
    let pal = [
        srgb(150, 30, 30),
        srgb(30, 60, 120),
        srgb(30, 100, 55),
        srgb(210, 180, 60),
        srgb(230, 225, 210),
        srgb(90, 40, 90),
        srgb(20, 20, 25),
        srgb(200, 100, 40),
    ];
    let k = (cellf(start, s, salt, 52) * 8.0) as usize % 8;
    let mut c = scale3(pal[k], 0.8 + 0.4 * cellf(start, s, salt, 53));
    // A title band at a random height.
    let band = BOARD + height * (0.2 + 0.5 * cellf(start, s, salt, 54) as f64);
    let bh = 0.012 + 0.02 * cellf(start, s, salt, 55) as f64;
    let in_band = coverage(bh * 0.5 - (fv - band).abs(), fp);
    c = lerp3(c, srgb(235, 215, 150), in_band * 0.85);
    clamp3(lerp3(back, c, inside))
}

fn rug(u: f64, v: f64, salt: u64, w: f64, h: f64, fp: f64) -> Rgb {
    let border = 0.12;
    let d_edge = u.min(w - u).min(v).min(h - v);
    let wear = 1.0 + 0.15 * fbm(u, v, salt ^ 0x41, 3.0, 5, 0.6, fp);
    let pal = [
        srgb(140, 30, 35),
        srgb(30, 45, 90),
        srgb(215, 180, 120),
        srgb(40, 95, 90),
        srgb(180, 110, 40),
    ];
    if d_edge < border {
        // Zig-zag band.
        let z = ((u + v) * 25.0).sin() * 0.5 + 0.5;
        let c = lerp3(
            pal[2],
            pal[0],
            coverage(z - 0.5, fp * 25.0) * crate::noise::band_weight(4.0, fp),
        );
        let line = coverage(0.006 - (d_edge - border * 0.5).abs(), fp);
        return clamp3(scale3(lerp3(c, pal[1], line), wear));
    }
    // Field: diamonds with random colours (rotated grid).
    let s = 0.16;
    let (a, b) = ((u + v) / s, (u - v) / s);
    let (fa, fb) = (a.floor(), b.floor());
    let (ia, ib) = (fa as i64, fb as i64);
    let k = (cellf(ia, ib, salt, 60) * 5.0) as usize % 5;
    let c = pal[k];
    let d = (a - fa).min(fa + 1.0 - a).min(b - fb).min(fb + 1.0 - b)
        * s
        * std::f64::consts::FRAC_1_SQRT_2;
    let inner = coverage(d - 0.01, fp);
    let dot = coverage(
        0.015 - ((a - fa - 0.5).powi(2) + (b - fb - 0.5).powi(2)).sqrt() * s * 0.7,
        fp,
    );
    let c = lerp3(pal[2], c, inner);
    let c = lerp3(c, pal[(k + 2) % 5], dot);
    clamp3(scale3(c, wear))
}
