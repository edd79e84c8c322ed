//! `exp` for the march, in a scalar and an 8-lane AVX2 version that give the same bits (the same
//! operations in the same order, no FMA), so the packet march stays identical to the one-ray march
//! while computing its eight lanes' densities and alphas at once.
//!
//! Range reduction `x = n ln 2 + r`, `|r| <= ln 2 / 2`, with `ln 2` split in two parts (Cody and
//! Waite 1980), `n` rounded to nearest by adding and subtracting `1.5 · 2^23` (no SSE4.1 `round`
//! on x86-64 v1); `e^r` by the degree-6 minimax polynomial of Cephes' `expf` (Moshier 1989),
//! relative error below 2e-7 over `[-87, 88]` (tested against `f32::exp`); `2^n` by building the
//! float's exponent bits.

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const ROUND: f32 = 12_582_912.0;
const LO: f32 = -87.0;
const HI: f32 = 88.0;
const P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// `e^x` for `x` in `[-87, 88]` (clamped there; `e^-87` ≈ 1.6e-38), relative error below 2e-7.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(LO, HI);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = P[0];
    for &c in &P[1..] {
        p = p * r + c;
    }
    let e = (p * (r * r) + r) + 1.0;
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// [`exp`] of 8 lanes with AVX2: the same bits lane by lane.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub fn exp8(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let s = _mm256_set1_ps;
    // `clamp` as `max` then `min` (the same for every number; the march never passes NaN).
    let x = _mm256_min_ps(_mm256_max_ps(x, s(LO)), s(HI));
    let n = _mm256_sub_ps(
        _mm256_add_ps(_mm256_mul_ps(x, s(LOG2E)), s(ROUND)),
        s(ROUND),
    );
    let r = _mm256_sub_ps(
        _mm256_sub_ps(x, _mm256_mul_ps(n, s(LN2_HI))),
        _mm256_mul_ps(n, s(LN2_LO)),
    );
    let mut p = s(P[0]);
    for &c in &P[1..] {
        p = _mm256_add_ps(_mm256_mul_ps(p, r), s(c));
    }
    let e = _mm256_add_ps(
        _mm256_add_ps(_mm256_mul_ps(p, _mm256_mul_ps(r, r)), r),
        s(1.0),
    );
    let pow2 = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvttps_epi32(n),
        _mm256_set1_epi32(127),
    ));
    _mm256_mul_ps(e, _mm256_castsi256_ps(pow2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_2e_7_of_std_and_the_lanes_give_the_same_bits() {
        let xs: Vec<f32> = (0..200_001)
            .map(|i| -87.0 + 175.0 * i as f32 / 200_000.0)
            .chain([0.0, -0.0, 1e-9, -1e-9, 15.0, -9.0, -1e3, 1e3])
            .collect();
        let mut worst = 0f64;
        for &x in &xs {
            let want = (x.clamp(LO, HI) as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 2e-7, "relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            use std::arch::x86_64::*;
            for chunk in xs.chunks_exact(8) {
                let mut out = [0f32; 8];
                // SAFETY: AVX2 and FMA are present (checked); `chunk` and `out` are 8 floats.
                unsafe {
                    _mm256_storeu_ps(out.as_mut_ptr(), exp8(_mm256_loadu_ps(chunk.as_ptr())));
                }
                for (x, o) in chunk.iter().zip(out) {
                    assert_eq!(o.to_bits(), exp(*x).to_bits(), "exp({x})");
                }
            }
        }
    }
}
