//! Multiresolution hash-grid encoding (Instant-NGP, Müller et al. 2022) with Zip-NeRF feature
//! down-weighting for anti-aliasing (Barron et al. 2023).
//!
//! # Conventions (shared with the WGSL port)
//! - `L` = levels, `F` = features per level, `T = 2^log2_table_size` entries per level, `N` = samples.
//! - **Params** `[L * T * F]` f32, level-major, then entry, then feature:
//!   `params[(l * T + entry) * F + f]`. Every level owns a full `T * F` block, even dense levels that
//!   use fewer entries (the rest stay unused and receive zero gradient).
//! - **Positions** `[N * 3]` f32, row-major `(x, y, z)` per sample, in `[0, 1]^3`; values outside are
//!   clamped to the cube.
//! - **Sigma** (optional) `[N]` f32: the sample's footprint radius in the same `[0, 1]` units
//!   (standard deviation of the Gaussian that stands for the conical frustum). `sigma <= 0` means a
//!   point sample (every level weight 1).
//! - **Output** `[N * L * F]` f32, sample-major: `out[n * (L*F) + l * F + f]`, i.e. directly the
//!   input rows of the first MLP layer.
//!
//! # Level resolutions (Instant-NGP Eq. 2-3)
//! `b = exp((ln N_max - ln N_min) / (L - 1))`, `N_l = floor(N_min * b^l)` evaluated in f64 (with a
//! 1e-9 relative tolerance so that `N_{L-1} = N_max` exactly). Level `l` scales a position by `N_l`,
//! so its grid has `N_l + 1` vertices per axis (vertex coordinates `0..=N_l`).
//!
//! # Indexing
//! Cell origin `i = min(floor(x * N_l), N_l - 1)` per axis, local coordinate `t = x * N_l - i` in
//! `[0, 1]`. A vertex `(vx, vy, vz)` maps to an entry of the level's table:
//! - **dense** when `(N_l + 1)^3 <= T`: `vx + vy * (N_l+1) + vz * (N_l+1)^2`;
//! - **hashed** otherwise (Instant-NGP Eq. 4): `(vx * 1 ^ vy * 2654435761 ^ vz * 805459861) mod T`,
//!   with wrapping u32 multiplication (`T` is a power of two, so `mod T` is `& (T - 1)`).
//!
//! # Interpolation and anti-aliasing
//! Trilinear interpolation over the cell's 8 corners, corner `c = dx | dy << 1 | dz << 2` with weight
//! `prod_axis (d ? t : 1 - t)`. Each level's features are then multiplied by the Zip-NeRF
//! down-weighting factor (Zip-NeRF Sec. 2, "scale-aware" features):
//! `w_l = erf(1 / sqrt(8 * sigma^2 * N_l^2))`, so levels whose cells are much finer than the footprint
//! fade to 0 and coarse levels keep weight ~1. (Zip-NeRF averages this over 6 multisamples of the
//! frustum; here the caller passes one `sigma` per sample and may average several samples itself.)
//!
//! # Backward
//! [`hash_encode_backward`] computes `d params`. The scatter-add runs **in parallel over levels**:
//! each rayon task owns whole levels of the gradient table, so there are no write conflicts and no
//! atomics (measured fastest in `shared/research/cpu-throughput.md`).
//! [`hash_encode_backward_positions`] computes `d positions` (for camera-pose refinement, where rays
//! and so sample positions depend on learned parameters): per sample and level,
//! `d out_f / d x_a = w_l N_l sum_c (d_a ? 1 : -1) prod_{b != a} (d_b ? t_b : 1 - t_b) table[c][f]`
//! (the derivative of the trilinear weights; 0 on an axis where the position is clamped). The level
//! weight `w_l` is held constant (no gradient through sigma), as for the parameters.

use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::KernelError;

/// Hash-prime for the y axis (Instant-NGP; x uses 1).
pub const PRIME_Y: u32 = 2_654_435_761;
/// Hash-prime for the z axis (Instant-NGP).
pub const PRIME_Z: u32 = 805_459_861;

/// Configuration of one hash-grid encoding. Defaults are nerfacto's / Instant-NGP's main field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashGridConfig {
    /// Number of resolution levels `L` (1..=32).
    pub levels: usize,
    /// Features per level `F` (1, 2, 4 or 8).
    pub features_per_level: usize,
    /// `log2` of the per-level table size `T` (4..=26).
    pub log2_table_size: u32,
    /// Coarsest resolution `N_min` (>= 1).
    pub base_resolution: u32,
    /// Finest resolution `N_max` (>= `base_resolution`).
    pub max_resolution: u32,
}

impl Default for HashGridConfig {
    fn default() -> Self {
        Self {
            levels: 16,
            features_per_level: 2,
            log2_table_size: 19,
            base_resolution: 16,
            max_resolution: 2048,
        }
    }
}

/// Per-level constants: everything a kernel (CPU or WGSL) needs besides the params.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LevelInfo {
    /// Grid resolution `N_l` (cells per axis).
    pub resolution: u32,
    /// Whether the level is dense-indexed (`(N_l + 1)^3 <= T`).
    pub dense: bool,
}

impl HashGridConfig {
    /// Checks the ranges documented on the fields.
    pub fn validate(&self) -> Result<(), KernelError> {
        let bad = |what: String| Err(KernelError::Config(format!("hash grid: {what}")));
        if !(1..=32).contains(&self.levels) {
            return bad(format!("levels = {} must be in 1..=32", self.levels));
        }
        if ![1, 2, 4, 8].contains(&self.features_per_level) {
            return bad(format!(
                "features_per_level = {} must be 1, 2, 4 or 8",
                self.features_per_level
            ));
        }
        if !(4..=26).contains(&self.log2_table_size) {
            return bad(format!(
                "log2_table_size = {} must be in 4..=26",
                self.log2_table_size
            ));
        }
        if self.base_resolution < 1
            || self.max_resolution < self.base_resolution
            || self.max_resolution > 1 << 20
        {
            return bad(format!(
                "resolutions {}..{} must satisfy 1 <= base <= max <= 2^20",
                self.base_resolution, self.max_resolution
            ));
        }
        Ok(())
    }

    /// Entries per level `T`.
    pub fn table_size(&self) -> usize {
        1usize << self.log2_table_size
    }

    /// Total parameter count `L * T * F`.
    pub fn num_params(&self) -> usize {
        self.levels * self.table_size() * self.features_per_level
    }

    /// Output width per sample `L * F`.
    pub fn output_dim(&self) -> usize {
        self.levels * self.features_per_level
    }

    /// Per-level growth factor `b = exp((ln N_max - ln N_min) / (L - 1))` (Instant-NGP Eq. 3); 1 for
    /// a single level.
    pub fn growth_factor(&self) -> f64 {
        if self.levels <= 1 {
            return 1.0;
        }
        (((self.max_resolution as f64).ln() - (self.base_resolution as f64).ln())
            / (self.levels - 1) as f64)
            .exp()
    }

    /// Resolution `N_l = floor(N_min * b^l)` (Instant-NGP Eq. 2), in f64 with a 1e-9 relative
    /// tolerance so that the last level is exactly `N_max`.
    pub fn level_resolution(&self, level: usize) -> u32 {
        let v = self.base_resolution as f64 * self.growth_factor().powi(level as i32);
        (v * (1.0 + 1e-9)).floor().max(1.0) as u32
    }

    /// Constants of every level (resolution and dense flag), in level order.
    pub fn level_infos(&self) -> Vec<LevelInfo> {
        (0..self.levels)
            .map(|l| {
                let resolution = self.level_resolution(l);
                let verts = (resolution as u64 + 1).pow(3);
                LevelInfo {
                    resolution,
                    dense: verts <= self.table_size() as u64,
                }
            })
            .collect()
    }

    /// Instant-NGP initialisation: every parameter uniform in `[-1e-4, 1e-4]`, ChaCha8 seeded.
    pub fn init_params(&self, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..self.num_params())
            .map(|_| rng.random_range(-1e-4f32..1e-4))
            .collect()
    }
}

/// Abramowitz & Stegun 7.1.26 approximation of `erf(x)` (|error| < 1.5e-7), evaluated in f32.
#[inline]
pub fn erf(x: f32) -> f32 {
    let s = x.signum();
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    s * (1.0 - poly * (-x * x).exp())
}

/// Zip-NeRF feature down-weighting `w = erf(1 / sqrt(8 * sigma^2 * N_l^2))` for a sample of
/// footprint radius `sigma` on a level of resolution `N_l`; 1 for `sigma <= 0` (point sample).
#[inline]
pub fn level_weight(sigma: f32, resolution: f32) -> f32 {
    if sigma > 0.0 {
        let x = 1.0 / (std::f32::consts::SQRT_2 * 2.0 * sigma * resolution);
        // erf(x) > 1 - 2e-8 for x >= 4: skip the exp for levels coarser than the footprint.
        if x >= 4.0 { 1.0 } else { erf(x) }
    } else {
        1.0
    }
}

/// The 8 corner entries and trilinear weights of one sample on one level.
#[inline(always)]
fn corners(info: LevelInfo, mask: u32, p: &[f32]) -> ([u32; 8], [f32; 8]) {
    let res = info.resolution;
    let s = res as f32;
    let mut i = [0u32; 3];
    let mut t = [0f32; 3];
    for a in 0..3 {
        let x = p[a].clamp(0.0, 1.0) * s;
        // `x as u32` truncates (x >= 0), i.e. floor.
        let c = (x as u32).min(res - 1);
        i[a] = c;
        t[a] = x - c as f32;
    }
    let mut idx = [0u32; 8];
    let mut w = [0f32; 8];
    if info.dense {
        let stride = res + 1;
        let base = i[0] + i[1] * stride + i[2] * stride * stride;
        for c in 0..8u32 {
            let (dx, dy, dz) = (c & 1, (c >> 1) & 1, (c >> 2) & 1);
            idx[c as usize] = base + dx + dy * stride + dz * stride * stride;
        }
    } else {
        let hx = [i[0], i[0] + 1];
        let hy = [i[1].wrapping_mul(PRIME_Y), (i[1] + 1).wrapping_mul(PRIME_Y)];
        let hz = [i[2].wrapping_mul(PRIME_Z), (i[2] + 1).wrapping_mul(PRIME_Z)];
        for c in 0..8usize {
            idx[c] = (hx[c & 1] ^ hy[(c >> 1) & 1] ^ hz[(c >> 2) & 1]) & mask;
        }
    }
    let wx = [1.0 - t[0], t[0]];
    let wy = [1.0 - t[1], t[1]];
    let wz = [1.0 - t[2], t[2]];
    for c in 0..8usize {
        w[c] = wx[c & 1] * wy[(c >> 1) & 1] * wz[(c >> 2) & 1];
    }
    (idx, w)
}

fn check_lengths(
    cfg: &HashGridConfig,
    params_len: usize,
    positions: &[f32],
    sigma: Option<&[f32]>,
) -> usize {
    assert_eq!(
        params_len,
        cfg.num_params(),
        "hash grid: params length != levels * table_size * features"
    );
    assert_eq!(
        positions.len() % 3,
        0,
        "hash grid: positions length must be a multiple of 3"
    );
    let n = positions.len() / 3;
    if let Some(s) = sigma {
        assert_eq!(
            s.len(),
            n,
            "hash grid: sigma length must equal the number of samples"
        );
    }
    n
}

/// Encodes `N` positions; writes `out` (`N * L * F`, sample-major, overwritten).
///
/// Parallel over levels: each rayon task gathers one whole level (keeping that level's table hot in
/// cache) and writes its `F` columns of every output row directly (23% faster than gathering into a
/// level-major scratch buffer and transposing, measured at 2^18 samples).
///
/// Panics if a slice length does not match `cfg` (caller bug, not user data).
pub fn hash_encode_forward(
    cfg: &HashGridConfig,
    params: &[f32],
    positions: &[f32],
    sigma: Option<&[f32]>,
    out: &mut [f32],
) {
    let n = check_lengths(cfg, params.len(), positions, sigma);
    let (nl, nf) = (cfg.levels, cfg.features_per_level);
    assert_eq!(
        out.len(),
        n * nl * nf,
        "hash grid: out length must be N * levels * features"
    );
    if n == 0 {
        return;
    }
    let infos = cfg.level_infos();
    let t = cfg.table_size();
    let mask = (t - 1) as u32;
    let per = samples_per_level_task(n, nl);
    let splits = n.div_ceil(per);
    let out_ptr = SyncPtr(out.as_mut_ptr());
    let out_ptr = &out_ptr;
    (0..nl * splits).into_par_iter().for_each(|task| {
        let (l, part) = (task / splits, task % splits);
        let (n0, n1) = (part * per, ((part + 1) * per).min(n));
        if n0 >= n1 {
            return;
        }
        let table = &params[l * t * nf..(l + 1) * t * nf];
        let pos = &positions[3 * n0..3 * n1];
        let sig = sigma.map(|s| &s[n0..n1]);
        // SAFETY: a task writes only columns `l*F .. (l+1)*F` of rows `n0..n1` of `out` (indices
        // < N*L*F = out.len()); tasks differ in `l` or in their row range, so their writes are
        // disjoint; `out` is exclusively borrowed for the whole parallel loop and nothing reads it.
        let col = |i: usize| unsafe { out_ptr.0.add((n0 + i) * nl * nf + l * nf) };
        match nf {
            1 => level_forward::<1>(infos[l], mask, table, pos, sig, col),
            2 => level_forward::<2>(infos[l], mask, table, pos, sig, col),
            4 => level_forward::<4>(infos[l], mask, table, pos, sig, col),
            _ => level_forward::<8>(infos[l], mask, table, pos, sig, col),
        }
    });
}

/// Samples per task of the level-parallel kernels (`n` >= 1 samples, `nl` levels). Grids with few
/// levels (proposal grids: 5) would leave threads idle with one task per level, so their samples
/// are split into a few ranges; the default 16-level grid keeps one task per level.
fn samples_per_level_task(n: usize, nl: usize) -> usize {
    let splits = (4 * rayon::current_num_threads())
        .div_ceil(nl)
        .clamp(1, n.div_ceil(4096).max(1));
    n.div_ceil(splits)
}

/// A raw pointer that rayon tasks may share; each task writes a disjoint set of elements.
struct SyncPtr(*mut f32);
// SAFETY: only used for disjoint writes (see the call site), never for aliasing reads.
unsafe impl Sync for SyncPtr {}

/// Samples per block in the level kernels: pass 1 computes a block's corner entries and weights
/// and prefetches the table lines, pass 2 gathers / scatters. Splitting the passes lets the CPU keep
/// many cache misses in flight (the tables of the fine levels are 4 MB each, bigger than L2).
const BLOCK: usize = 64;

/// Hints the CPU to load the cache line holding `s[i]` (no-op off x86-64 or out of range).
#[inline(always)]
fn prefetch(s: &[f32], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(r) = s.get(i) {
        // SAFETY: `_mm_prefetch` only hints the cache and never faults; SSE is part of the x86-64
        // baseline, and the pointer comes from a valid reference.
        #[allow(unused_unsafe)]
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                (r as *const f32).cast::<i8>(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (s, i);
}

#[inline(always)]
fn level_forward<const F: usize>(
    info: LevelInfo,
    mask: u32,
    table: &[f32],
    positions: &[f32],
    sigma: Option<&[f32]>,
    col: impl Fn(usize) -> *mut f32,
) {
    let res = info.resolution as f32;
    let mut idx = [[0u32; 8]; BLOCK];
    let mut wts = [[0f32; 8]; BLOCK];
    for (b, pb) in positions.chunks(3 * BLOCK).enumerate() {
        let m = pb.len() / 3;
        for j in 0..m {
            let (i, w) = corners(info, mask, &pb[3 * j..3 * j + 3]);
            for &e in &i {
                prefetch(table, e as usize * F);
            }
            idx[j] = i;
            wts[j] = w;
        }
        for j in 0..m {
            let mut acc = [0f32; F];
            for c in 0..8 {
                let e = &table[idx[j][c] as usize * F..idx[j][c] as usize * F + F];
                for f in 0..F {
                    acc[f] += wts[j][c] * e[f];
                }
            }
            let lw = match sigma {
                Some(s) => level_weight(s[b * BLOCK + j], res),
                None => 1.0,
            };
            let dst = col(b * BLOCK + j);
            for (f, a) in acc.iter().enumerate() {
                // SAFETY: `col(n)` points at the `F` output slots of sample `n`, level `l`, which
                // only this task writes (see `hash_encode_forward`).
                unsafe { *dst.add(f) = a * lw };
            }
        }
    }
}

/// Accumulates `d_params += d(out)/d(params)^T d_out` (scatter-add; `d_params` is **not** zeroed).
///
/// `d_out` is `N * L * F`, sample-major like the forward output. Parallel over levels: each task owns
/// one level's block of `d_params`, so no atomics are needed. No gradient w.r.t. positions or sigma.
pub fn hash_encode_backward(
    cfg: &HashGridConfig,
    positions: &[f32],
    sigma: Option<&[f32]>,
    d_out: &[f32],
    d_params: &mut [f32],
) {
    let n = check_lengths(cfg, d_params.len(), positions, sigma);
    let (nl, nf) = (cfg.levels, cfg.features_per_level);
    assert_eq!(
        d_out.len(),
        n * nl * nf,
        "hash grid: d_out length must be N * levels * features"
    );
    if n == 0 {
        return;
    }
    let infos = cfg.level_infos();
    let t = cfg.table_size();
    let mask = (t - 1) as u32;
    // Each level reads its `F` columns of the sample-major `d_out` rows (a constant stride, which
    // the hardware prefetcher follows) and owns its block of `d_params`.
    d_params
        .par_chunks_mut(t * nf)
        .enumerate()
        .for_each(|(l, dtab)| match nf {
            1 => level_backward::<1>(infos[l], mask, dtab, positions, sigma, d_out, l, nl),
            2 => level_backward::<2>(infos[l], mask, dtab, positions, sigma, d_out, l, nl),
            4 => level_backward::<4>(infos[l], mask, dtab, positions, sigma, d_out, l, nl),
            _ => level_backward::<8>(infos[l], mask, dtab, positions, sigma, d_out, l, nl),
        });
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn level_backward<const F: usize>(
    info: LevelInfo,
    mask: u32,
    dtab: &mut [f32],
    positions: &[f32],
    sigma: Option<&[f32]>,
    d_out: &[f32],
    level: usize,
    levels: usize,
) {
    let res = info.resolution as f32;
    let mut idx = [[0u32; 8]; BLOCK];
    let mut wts = [[0f32; 8]; BLOCK];
    let mut gws = [[0f32; F]; BLOCK];
    for (b, pb) in positions.chunks(3 * BLOCK).enumerate() {
        let mut m = 0;
        for j in 0..pb.len() / 3 {
            let lw = match sigma {
                Some(s) => level_weight(s[b * BLOCK + j], res),
                None => 1.0,
            };
            let mut gw = [0f32; F];
            let mut any = false;
            for f in 0..F {
                gw[f] = d_out[(b * BLOCK + j) * levels * F + level * F + f] * lw;
                any |= gw[f] != 0.0;
            }
            if !any {
                continue;
            }
            let (i, w) = corners(info, mask, &pb[3 * j..3 * j + 3]);
            for &e in &i {
                prefetch(dtab, e as usize * F);
            }
            idx[m] = i;
            wts[m] = w;
            gws[m] = gw;
            m += 1;
        }
        for j in 0..m {
            for c in 0..8 {
                let e = &mut dtab[idx[j][c] as usize * F..idx[j][c] as usize * F + F];
                for f in 0..F {
                    e[f] += wts[j][c] * gws[j][f];
                }
            }
        }
    }
}

/// `d_pos = (d out / d positions)^T d_out` (`[N * 3]`, overwritten): the gradient of
/// `<d_out, encode(positions)>` with respect to the positions, the level weights held constant.
///
/// Parallel over levels (and ranges of samples) like [`hash_encode_forward`], blocked with the
/// table lines prefetched before the gathers; the per-level results are summed in level order.
/// (A per-sample loop over the levels made pose refinement cost as much as the rest of the
/// training step: 2x slower steps on fox.) Used only for the samples whose rays carry a learned
/// camera correction.
pub fn hash_encode_backward_positions(
    cfg: &HashGridConfig,
    params: &[f32],
    positions: &[f32],
    sigma: Option<&[f32]>,
    d_out: &[f32],
    d_pos: &mut [f32],
) {
    let n = check_lengths(cfg, params.len(), positions, sigma);
    let (nl, nf) = (cfg.levels, cfg.features_per_level);
    assert_eq!(d_out.len(), n * nl * nf, "hash grid: d_out length");
    assert_eq!(d_pos.len(), n * 3, "hash grid: d_pos length must be 3 N");
    let infos = cfg.level_infos();
    let t = cfg.table_size();
    let mask = (t - 1) as u32;
    if n == 0 {
        return;
    }
    // Level-major like the forward pass: a task gathers from one level's table only, so that
    // table stays hot in cache (a loop over the levels per sample touches all 16 tables, 64 MB at
    // the defaults, and was 3x slower). Each level writes its own scratch slice; the levels are
    // then summed in order, so the result does not depend on the thread count.
    let mut scratch = vec![0f32; nl * n * 3];
    let per = samples_per_level_task(n, nl);
    scratch
        .par_chunks_mut(n * 3)
        .enumerate()
        .for_each(|(l, lvl)| {
            let table = &params[l * t * nf..(l + 1) * t * nf];
            lvl.par_chunks_mut(3 * per)
                .enumerate()
                .for_each(|(part, dp)| {
                    let n0 = part * per;
                    let n1 = n0 + dp.len() / 3;
                    let pos = &positions[3 * n0..3 * n1];
                    let sig = sigma.map(|sg| &sg[n0..n1]);
                    let dout = &d_out[n0 * nl * nf..n1 * nl * nf];
                    let info = infos[l];
                    match nf {
                        1 => level_positions::<1>(info, mask, table, pos, sig, dout, l, nl, dp),
                        2 => level_positions::<2>(info, mask, table, pos, sig, dout, l, nl, dp),
                        4 => level_positions::<4>(info, mask, table, pos, sig, dout, l, nl, dp),
                        _ => level_positions::<8>(info, mask, table, pos, sig, dout, l, nl, dp),
                    }
                });
        });
    d_pos
        .par_chunks_mut(3 * 4096)
        .enumerate()
        .for_each(|(k, dp)| {
            dp.fill(0.0);
            let o = k * 3 * 4096;
            for l in 0..nl {
                let src = &scratch[l * n * 3 + o..l * n * 3 + o + dp.len()];
                for (d, v) in dp.iter_mut().zip(src) {
                    *d += v;
                }
            }
        });
}

/// One level's part of [`hash_encode_backward_positions`] for a range of samples, written into
/// `dp` (zero where a sample has no gradient on this level).
/// With `D_c = <d_out, T_c>` per corner `c = (i, j, k)` and the trilinear weights `wx`, `wy`,
/// `wz`: `d/dx = res · lw · Σ_{j,k} wy_j wz_k (D_1jk − D_0jk)` (likewise for y and z), zero on
/// an axis where the position was clamped to the cube.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn level_positions<const F: usize>(
    info: LevelInfo,
    mask: u32,
    table: &[f32],
    positions: &[f32],
    sigma: Option<&[f32]>,
    d_out: &[f32],
    l: usize,
    nl: usize,
    dp: &mut [f32],
) {
    let res = info.resolution as f32;
    let count = positions.len() / 3;
    let mut idx = [[0u32; 8]; BLOCK];
    let mut live = [false; BLOCK];
    for b0 in (0..count).step_by(BLOCK) {
        let m = BLOCK.min(count - b0);
        // Pass 1: corners and prefetch (samples without gradient on this level are skipped).
        for j in 0..m {
            let s = b0 + j;
            let go: &[f32; F] = d_out[(s * nl + l) * F..(s * nl + l + 1) * F]
                .try_into()
                .unwrap();
            live[j] = go.iter().any(|&v| v != 0.0);
            if live[j] {
                let (i, _) = corners(info, mask, &positions[3 * s..3 * s + 3]);
                for &e in &i {
                    prefetch(table, e as usize * F);
                }
                idx[j] = i;
            }
        }
        // Pass 2: gather the corner dots and differentiate the interpolation.
        for j in 0..m {
            if !live[j] {
                continue;
            }
            let s = b0 + j;
            let p = &positions[3 * s..3 * s + 3];
            let go: &[f32; F] = d_out[(s * nl + l) * F..(s * nl + l + 1) * F]
                .try_into()
                .unwrap();
            let mut dot = [0f32; 8];
            for (c, d) in dot.iter_mut().enumerate() {
                let e = idx[j][c] as usize * F;
                let row: &[f32; F] = table[e..e + F].try_into().unwrap();
                for f in 0..F {
                    *d += go[f] * row[f];
                }
            }
            let lw = match sigma {
                Some(sg) => level_weight(sg[s], res),
                None => 1.0,
            };
            let mut w = [[0f32; 2]; 3];
            let mut scale = [0f32; 3];
            for a in 0..3 {
                let x = p[a].clamp(0.0, 1.0) * res;
                let t = x - (x as u32).min(info.resolution - 1) as f32;
                w[a] = [1.0 - t, t];
                let inside = if p[a] > 0.0 && p[a] < 1.0 { 1.0 } else { 0.0 };
                scale[a] = lw * res * inside;
            }
            // Corner c = x + 2y + 4z.
            let (mut gx, mut gy, mut gz) = (0f32, 0f32, 0f32);
            for u in 0..2 {
                for v in 0..2 {
                    gx += w[1][u] * w[2][v] * (dot[1 + 2 * u + 4 * v] - dot[2 * u + 4 * v]);
                    gy += w[0][u] * w[2][v] * (dot[u + 2 + 4 * v] - dot[u + 4 * v]);
                    gz += w[0][u] * w[1][v] * (dot[u + 2 * v + 4] - dot[u + 2 * v]);
                }
            }
            dp[3 * s] = gx * scale[0];
            dp[3 * s + 1] = gy * scale[1];
            dp[3 * s + 2] = gz * scale[2];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward f64 reference written from the paper, independent of the kernel's helpers.
    fn reference(
        cfg: &HashGridConfig,
        params: &[f32],
        pos: &[f32],
        sigma: Option<&[f32]>,
    ) -> Vec<f64> {
        let t = cfg.table_size() as u64;
        let f = cfg.features_per_level;
        let n = pos.len() / 3;
        let mut out = vec![0f64; n * cfg.output_dim()];
        let b = ((cfg.max_resolution as f64 / cfg.base_resolution as f64).ln()
            / (cfg.levels.max(2) - 1) as f64)
            .exp();
        for s in 0..n {
            for l in 0..cfg.levels {
                let res = if cfg.levels == 1 {
                    cfg.base_resolution as u64
                } else {
                    (cfg.base_resolution as f64 * b.powi(l as i32) + 1e-6).floor() as u64
                };
                let dense = (res + 1).pow(3) <= t;
                let mut acc = vec![0f64; f];
                for corner in 0..8u64 {
                    let mut w = 1f64;
                    let mut v = [0u64; 3];
                    for a in 0..3 {
                        let x = pos[s * 3 + a].clamp(0.0, 1.0) as f64 * res as f64;
                        let i = (x.floor() as u64).min(res - 1);
                        let tt = x - i as f64;
                        let d = (corner >> a) & 1;
                        v[a] = i + d;
                        w *= if d == 1 { tt } else { 1.0 - tt };
                    }
                    let e = if dense {
                        v[0] + v[1] * (res + 1) + v[2] * (res + 1) * (res + 1)
                    } else {
                        (v[0] ^ (v[1] * 2654435761) ^ (v[2] * 805459861)) % t
                    };
                    for k in 0..f {
                        acc[k] += w * params[((l as u64 * t + e) as usize) * f + k] as f64;
                    }
                }
                let lw = match sigma {
                    Some(sg) if sg[s] > 0.0 => {
                        libm_erf(1.0 / (8.0 * (sg[s] as f64).powi(2) * (res as f64).powi(2)).sqrt())
                    }
                    _ => 1.0,
                };
                for k in 0..f {
                    out[s * cfg.output_dim() + l * f + k] = acc[k] * lw;
                }
            }
        }
        out
    }

    /// erf by its Maclaurin series / continued fraction in f64 (independent of the f32 approximation).
    fn libm_erf(x: f64) -> f64 {
        if x > 6.0 {
            return 1.0;
        }
        if x < 2.5 {
            let mut sum = 0.0;
            let mut term = x;
            let mut k = 0;
            while term.abs() > 1e-17 || k < 3 {
                sum += term / (2 * k + 1) as f64;
                k += 1;
                term *= -x * x / k as f64;
            }
            2.0 / std::f64::consts::PI.sqrt() * sum
        } else {
            // erfc continued fraction (Lentz not needed for x >= 2.5: 60 terms backward).
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (x + f);
            }
            1.0 - (-x * x).exp() / (std::f64::consts::PI.sqrt() * (x + f))
        }
    }

    fn small_cfg() -> HashGridConfig {
        // Levels 0-1 dense, 2-3 hashed at T = 2^10.
        HashGridConfig {
            levels: 4,
            features_per_level: 2,
            log2_table_size: 10,
            base_resolution: 4,
            max_resolution: 40,
        }
    }

    fn points(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut p: Vec<f32> = (0..n * 3).map(|_| rng.random_range(0.0f32..1.0)).collect();
        // Edge cases: the cube's corners and faces, and outside values that must clamp.
        p[..6].copy_from_slice(&[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        p[6..9].copy_from_slice(&[-0.5, 1.5, 0.5]);
        p
    }

    #[test]
    fn resolutions_follow_eq3_and_default_dense_levels() {
        let cfg = HashGridConfig::default();
        let infos = cfg.level_infos();
        assert_eq!(infos[0].resolution, 16);
        assert_eq!(infos[15].resolution, 2048);
        assert_eq!(infos[1].resolution, 22);
        let dense: Vec<bool> = infos.iter().map(|i| i.dense).collect();
        assert_eq!(
            dense.iter().filter(|d| **d).count(),
            5,
            "levels 0-4 are dense at T = 2^19"
        );
        assert!(dense[4] && !dense[5]);
    }

    #[test]
    fn erf_matches_reference() {
        for i in 0..400 {
            let x = i as f32 * 0.01;
            assert!((erf(x) as f64 - libm_erf(x as f64)).abs() < 3e-7, "x = {x}");
            assert!((erf(-x) + erf(x)).abs() < 1e-7);
        }
    }

    #[test]
    fn forward_matches_reference() {
        let cfg = small_cfg();
        cfg.validate().unwrap();
        assert!(cfg.level_infos()[1].dense && !cfg.level_infos()[3].dense);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let params: Vec<f32> = (0..cfg.num_params())
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let pos = points(300, 4);
        let sigma: Vec<f32> = (0..300)
            .map(|i| {
                if i % 3 == 0 {
                    0.0
                } else {
                    rng.random_range(0.0f32..0.1)
                }
            })
            .collect();
        for sg in [None, Some(&sigma[..])] {
            let mut out = vec![0f32; 300 * cfg.output_dim()];
            hash_encode_forward(&cfg, &params, &pos, sg, &mut out);
            let r = reference(&cfg, &params, &pos, sg);
            let max_err = out
                .iter()
                .zip(&r)
                .map(|(a, b)| (*a as f64 - b).abs())
                .fold(0.0, f64::max);
            assert!(max_err < 2e-5, "max abs error {max_err}");
        }
    }

    #[test]
    fn forward_split_into_sample_ranges_matches_reference() {
        // Few levels and many samples: the forward splits each level into sample ranges.
        let cfg = HashGridConfig {
            levels: 3,
            features_per_level: 4,
            log2_table_size: 9,
            base_resolution: 3,
            max_resolution: 30,
        };
        let n = 20_000;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
        let params: Vec<f32> = (0..cfg.num_params())
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let pos = points(n, 22);
        let sigma: Vec<f32> = (0..n).map(|_| rng.random_range(0.0f32..0.2)).collect();
        let mut out = vec![0f32; n * cfg.output_dim()];
        hash_encode_forward(&cfg, &params, &pos, Some(&sigma), &mut out);
        let r = reference(&cfg, &params, &pos, Some(&sigma));
        let max_err = out
            .iter()
            .zip(&r)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(max_err < 2e-5, "max abs error {max_err}");
    }

    #[test]
    fn level_weights_behave() {
        // sigma -> 0 gives 1; a footprint much larger than a cell suppresses the level.
        assert_eq!(level_weight(0.0, 2048.0), 1.0);
        assert!((level_weight(1e-7, 2048.0) - 1.0).abs() < 1e-6);
        let sigma = 1.0 / 64.0;
        let coarse = level_weight(sigma, 16.0);
        let fine = level_weight(sigma, 2048.0);
        assert!(coarse > 0.95, "coarse level keeps its features: {coarse}");
        assert!(fine < 0.02, "fine level fades: {fine}");
        // Monotone in resolution.
        let cfg = HashGridConfig::default();
        let ws: Vec<f32> = cfg
            .level_infos()
            .iter()
            .map(|i| level_weight(sigma, i.resolution as f32))
            .collect();
        assert!(ws.windows(2).all(|w| w[1] < w[0]));
        // erf(1/sqrt(8)) at sigma * N = 1 (one cell): about 0.383.
        assert!((level_weight(0.5, 2.0) - 0.3829249).abs() < 1e-5);
    }

    #[test]
    fn backward_is_the_adjoint_of_forward() {
        // <d_out, J p> == <J^T d_out, p> for the linear map p -> out, with hashed collisions.
        let cfg = small_cfg();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let n = 500;
        let pos = points(n, 6);
        let sigma: Vec<f32> = (0..n).map(|_| rng.random_range(0.0f32..0.05)).collect();
        let p: Vec<f32> = (0..cfg.num_params())
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let g: Vec<f32> = (0..n * cfg.output_dim())
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let mut out = vec![0f32; n * cfg.output_dim()];
        hash_encode_forward(&cfg, &p, &pos, Some(&sigma), &mut out);
        let mut dp = vec![0f32; cfg.num_params()];
        hash_encode_backward(&cfg, &pos, Some(&sigma), &g, &mut dp);
        let lhs: f64 = out.iter().zip(&g).map(|(a, b)| *a as f64 * *b as f64).sum();
        let rhs: f64 = dp.iter().zip(&p).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!(
            (lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
        // Accumulates rather than overwrites.
        hash_encode_backward(&cfg, &pos, Some(&sigma), &g, &mut dp);
        let rhs2: f64 = dp.iter().zip(&p).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!((rhs2 - 2.0 * rhs).abs() < 1e-4 * rhs.abs().max(1.0));
    }

    /// The position gradient equals central differences of `<d_out, reference(p)>` (the f64
    /// reference encoder), on dense and hashed levels, with footprints, away from cell faces (where
    /// the encoding is only piecewise differentiable); 0 on a clamped axis.
    #[test]
    fn position_gradient_matches_finite_differences() {
        let cfg = small_cfg();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let n = 300;
        let mut pos: Vec<f32> = (0..n * 3)
            .map(|_| rng.random_range(0.02f32..0.98))
            .collect();
        pos[0] = -0.2; // clamped x of sample 0
        let sigma: Vec<f32> = (0..n).map(|_| rng.random_range(0.0f32..0.03)).collect();
        let p: Vec<f32> = (0..cfg.num_params())
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let g: Vec<f32> = (0..n * cfg.output_dim())
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let mut dpos = vec![f32::NAN; n * 3];
        hash_encode_backward_positions(&cfg, &p, &pos, Some(&sigma), &g, &mut dpos);
        assert_eq!(dpos[0], 0.0);
        let infos = cfg.level_infos();
        let h = 1e-4f32;
        let mut checked = 0;
        for s in 1..n {
            // Skip samples within h of a cell face on any level.
            let near_face = infos.iter().any(|i| {
                (0..3).any(|a| {
                    let x = pos[3 * s + a] as f64 * i.resolution as f64;
                    (x - x.round()).abs() < 2.0 * h as f64 * i.resolution as f64
                })
            });
            if near_face {
                continue;
            }
            let ps = &pos[3 * s..3 * s + 3];
            let gs = &g[s * cfg.output_dim()..(s + 1) * cfg.output_dim()];
            let f = |q: &[f32]| -> f64 {
                let o = reference(&cfg, &p, q, Some(&sigma[s..s + 1]));
                o.iter().zip(gs).map(|(a, b)| a * *b as f64).sum()
            };
            for a in 0..3 {
                let (mut qp, mut qm) = (ps.to_vec(), ps.to_vec());
                qp[a] += h;
                qm[a] -= h;
                let fd = (f(&qp) - f(&qm)) / (qp[a] as f64 - qm[a] as f64);
                let an = dpos[3 * s + a] as f64;
                assert!(
                    (fd - an).abs() < 2e-3 * fd.abs().max(1.0),
                    "sample {s} axis {a}: {an} vs {fd}"
                );
            }
            checked += 1;
        }
        assert!(checked > 50, "{checked}");
    }

    /// The blocked, level-major kernel over several tasks and a partial block equals the kernel
    /// run one sample at a time (which has no blocks), with some samples' gradients zero on some
    /// levels (skipped) and some positions outside the unit cube.
    #[test]
    fn position_gradient_blocking_matches_per_sample() {
        let cfg = small_cfg();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let n = 2 * 2048 + 77;
        let pos: Vec<f32> = (0..n * 3)
            .map(|_| rng.random_range(-0.05f32..1.05))
            .collect();
        let sigma: Vec<f32> = (0..n).map(|_| rng.random_range(0.0f32..0.03)).collect();
        let p: Vec<f32> = (0..cfg.num_params())
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let mut g: Vec<f32> = (0..n * cfg.output_dim())
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let nf = cfg.features_per_level;
        for (k, row) in g.chunks_exact_mut(nf).enumerate() {
            if k % 5 == 2 {
                row.fill(0.0);
            }
        }
        let mut all = vec![f32::NAN; n * 3];
        hash_encode_backward_positions(&cfg, &p, &pos, Some(&sigma), &g, &mut all);
        let od = cfg.output_dim();
        let mut nonzero = 0;
        for s in 0..n {
            let mut one = [f32::NAN; 3];
            hash_encode_backward_positions(
                &cfg,
                &p,
                &pos[3 * s..3 * s + 3],
                Some(&sigma[s..s + 1]),
                &g[s * od..(s + 1) * od],
                &mut one,
            );
            for a in 0..3 {
                assert_eq!(all[3 * s + a], one[a], "sample {s} axis {a}");
                nonzero += (one[a] != 0.0) as usize;
            }
        }
        assert!(nonzero > n, "{nonzero}");
    }

    #[test]
    fn validate_rejects_bad_configs() {
        let ok = HashGridConfig::default();
        assert!(ok.validate().is_ok());
        assert!(
            HashGridConfig {
                features_per_level: 3,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            HashGridConfig {
                levels: 0,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            HashGridConfig {
                max_resolution: 8,
                ..ok.clone()
            }
            .validate()
            .is_err()
        );
    }
}
