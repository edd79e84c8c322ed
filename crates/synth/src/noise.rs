//! Band-limited procedural noise on surface coordinates (metres).
//!
//! Naming: `(u, v)` are surface coordinates in metres; `fp` is the pixel footprint in metres at the
//! hit (the width one sample covers), used to fade out octaves finer than the sampling rate — the
//! same idea as mip-mapping a texture (Williams 1983), done analytically per octave so that
//! textures do not alias at a distance (aliasing would make the same surface look different from
//! different cameras and confuse feature matching).

use crate::rng::{hash2f_mixed, mix64};

#[inline]
fn quintic(t: f32) -> f32 {
    t * t * t * (t * (t * 6.0 - 15.0) + 10.0)
}

/// `floor` as an integer without a libm call (baseline x86-64 has no rounding instruction);
/// exact for `|x| < 2^53`.
#[inline]
pub fn ifloor(x: f64) -> i64 {
    let i = x as i64;
    i - ((i as f64) > x) as i64
}

/// Value noise (Perlin 2002's quintic fade on lattice values) in `[0, 1]`, lattice spacing 1.
pub fn value2(u: f64, v: f64, salt: u64) -> f32 {
    let (iu, iv) = (ifloor(u), ifloor(v));
    let (fu, fv) = (iu as f64, iv as f64);
    let (tu, tv) = (quintic((u - fu) as f32), quintic((v - fv) as f32));
    let m = mix64(salt);
    let a = hash2f_mixed(iu, iv, m);
    let b = hash2f_mixed(iu + 1, iv, m);
    let c = hash2f_mixed(iu, iv + 1, m);
    let d = hash2f_mixed(iu + 1, iv + 1, m);
    let ab = a + (b - a) * tu;
    let cd = c + (d - c) * tu;
    ab + (cd - ab) * tv
}

/// Weight of an octave of frequency `f` (cycles per metre) at footprint `fp`: 1 well below the
/// Nyquist limit (`f fp < 0.25`), 0 above it (`f fp > 0.5`), linear between.
#[inline]
pub fn band_weight(f: f64, fp: f64) -> f32 {
    (((0.5 - f * fp) / 0.25).clamp(0.0, 1.0)) as f32
}

/// Fractal sum of `octaves` value-noise octaves starting at `freq` cycles per metre, each octave
/// twice the frequency and `gain` times the amplitude of the previous one. Returns a zero-mean
/// value in about `[-1, 1]`; octaves finer than the footprint fade to their mean (0).
pub fn fbm(u: f64, v: f64, salt: u64, freq: f64, octaves: u32, gain: f32, fp: f64) -> f32 {
    let mut sum = 0.0;
    let mut norm = 0.0;
    let mut amp = 1.0;
    let mut f = freq;
    for k in 0..octaves {
        let w = band_weight(f, fp);
        if w > 0.0 {
            sum += amp * w * (value2(u * f, v * f, salt.wrapping_add(k as u64 * 7919)) * 2.0 - 1.0);
        }
        norm += amp;
        amp *= gain;
        f *= 2.0;
    }
    sum / norm * 1.6
}

/// Anisotropic fBm: frequencies scaled by `(su, sv)` (e.g. wood grain: low along the fibre, high across).
#[allow(clippy::too_many_arguments)]
pub fn fbm_aniso(
    u: f64,
    v: f64,
    su: f64,
    sv: f64,
    salt: u64,
    octaves: u32,
    gain: f32,
    fp: f64,
) -> f32 {
    let mut sum = 0.0;
    let mut norm = 0.0;
    let mut amp = 1.0;
    let mut m = 1.0;
    let fmax = su.max(sv);
    for k in 0..octaves {
        let w = band_weight(fmax * m, fp);
        if w > 0.0 {
            sum += amp
                * w
                * (value2(u * su * m, v * sv * m, salt.wrapping_add(k as u64 * 7919)) * 2.0 - 1.0);
        }
        norm += amp;
        amp *= gain;
        m *= 2.0;
    }
    sum / norm * 1.6
}

/// Coverage in `[0, 1]` of a hard edge at signed distance `d` (positive inside) for footprint `fp`:
/// a box filter of width `fp` over a step, so thin lines and shape edges are anti-aliased.
#[inline]
pub fn coverage(d: f64, fp: f64) -> f32 {
    let w = fp.max(1e-6);
    ((d / w) + 0.5).clamp(0.0, 1.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifloor_matches_floor() {
        for x in [
            -2.5,
            -2.0,
            -1e-12,
            0.0,
            1e-12,
            0.999_999,
            1.0,
            7.5,
            -1e9 - 0.5,
        ] {
            assert_eq!(ifloor(x), x.floor() as i64, "{x}");
        }
    }

    #[test]
    fn value_noise_is_continuous_and_bounded() {
        for i in 0..2000 {
            let u = i as f64 * 0.0137 - 5.0;
            let v = i as f64 * 0.0071 + 2.0;
            let a = value2(u, v, 1);
            let b = value2(u + 1e-6, v, 1);
            assert!((0.0..=1.0).contains(&a));
            assert!((a - b).abs() < 1e-3, "jump at {u},{v}");
        }
    }

    #[test]
    fn fine_octaves_fade_with_footprint() {
        // With a footprint larger than every octave's wavelength the noise is flat (its mean).
        let mut var_fine = 0.0;
        let mut var_coarse = 0.0;
        for i in 0..500 {
            let u = i as f64 * 0.013;
            var_fine += fbm(u, 0.3, 5, 20.0, 4, 0.5, 0.0).powi(2);
            var_coarse += fbm(u, 0.3, 5, 20.0, 4, 0.5, 1.0).powi(2);
        }
        assert!(var_fine > 10.0, "{var_fine}");
        assert_eq!(var_coarse, 0.0);
    }
}
