//! The counter-based random numbers of training batches, shared by both back ends: every draw is a
//! pure function of `(seed, step, ray, stream)` in u32 arithmetic, so the CPU ([`crate::train::
//! step_batch`]) and the GPU kernel `shaders/sample_batch.wgsl` (which repeats these functions
//! line for line) draw the same pixels and jitter bit for bit, in any order and on any thread, and
//! a resumed run draws the same batches.
//!
//! - [`pcg`]: the PCG hash (Jarzynski and Olano, "Hash Functions for GPU Rendering", JCGT 2020):
//!   an LCG step then PCG's RXS-M-XS output permutation, a bijection of u32.
//! - [`step_key`]: the key of a step, from the 64-bit seed and the step (steps below 2^32).
//! - [`draw`]: the draw of `stream` for `ray` under a key: `pcg(key ^ pcg(ray ^ pcg(stream)))`, so
//!   for a fixed key and stream distinct rays get distinct draws (a bijection of the ray index).
//!   Stream [`STREAM_PICK`] picks the pixel, stream `STREAM_JITTER + level` the level's jitter.
//! - [`below`]: range reduction without 64-bit integers (WGSL has none): `(h * n) >> 32` with
//!   the 32x32 -> 64 product's high word built from 16-bit halves (Lemire's multiply-shift without
//!   the rejection step). Each of the `n` values is hit by `floor(2^32 / n)` or `ceil(2^32 / n)`
//!   of the 2^32 draws, so the relative bias of any value is below `n / 2^32` (2.3e-4 for a
//!   million training pixels, 0.023 for 10^8): far below the sampling noise of any training run.
//! - [`unit`]: a float in `[0, 1)` from the top 24 bits (exact in f32 on both sides).

/// The pixel pick's stream.
pub const STREAM_PICK: u32 = 0;
/// The first jitter stream (level `l` uses `STREAM_JITTER + l`).
pub const STREAM_JITTER: u32 = 1;

/// The PCG hash of `v` (a bijection of u32).
#[inline]
pub fn pcg(v: u32) -> u32 {
    let state = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// The key of training step `step` under `seed` (`step` is taken modulo 2^32).
#[inline]
pub fn step_key(seed: u64, step: u64) -> u32 {
    let (lo, hi) = (seed as u32, (seed >> 32) as u32);
    pcg(pcg(pcg(hi) ^ lo) ^ step as u32)
}

/// The draw of `stream` for ray `ray` under `key`.
#[inline]
pub fn draw(key: u32, ray: u32, stream: u32) -> u32 {
    pcg(key ^ pcg(ray ^ pcg(stream)))
}

/// The high word of the 64-bit product `a * b`, from 16-bit halves (as the WGSL does).
#[inline]
pub fn mul_hi(a: u32, b: u32) -> u32 {
    let (a0, a1) = (a & 0xffff, a >> 16);
    let (b0, b1) = (b & 0xffff, b >> 16);
    let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
    let mid = (p00 >> 16) + (p01 & 0xffff) + (p10 & 0xffff);
    p11 + (p01 >> 16) + (p10 >> 16) + (mid >> 16)
}

/// A value in `0..n` from the draw `h` (`n > 0`; see the module's bias bound).
#[inline]
pub fn below(h: u32, n: u32) -> u32 {
    mul_hi(h, n)
}

/// A float in `[0, 1)` from the draw `h`: its top 24 bits times 2^-24.
#[inline]
pub fn unit(h: u32) -> f32 {
    (h >> 8) as f32 * (1.0 / 16_777_216.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mul_hi_is_the_high_word_of_the_64_bit_product() {
        let mut h = 12345u32;
        for _ in 0..100_000 {
            h = pcg(h);
            let n = pcg(h ^ 0xdead_beef);
            assert_eq!(mul_hi(h, n), ((h as u64 * n as u64) >> 32) as u32);
        }
        for (a, b) in [
            (u32::MAX, u32::MAX),
            (0, u32::MAX),
            (u32::MAX, 1),
            (65536, 65536),
        ] {
            assert_eq!(mul_hi(a, b), ((a as u64 * b as u64) >> 32) as u32);
        }
    }

    /// Known values (the WGSL twin test compares whole batches; these pin the functions down).
    #[test]
    fn draws_are_fixed_and_distinct_per_ray() {
        assert_eq!(pcg(0), 129_708_002);
        let k = step_key(0, 0);
        assert_eq!(k, step_key(0, 0));
        assert_ne!(step_key(0, 1), k);
        assert_ne!(step_key(1 << 32, 0), k);
        let d: std::collections::HashSet<u32> = (0..10_000).map(|r| draw(k, r, 0)).collect();
        assert_eq!(d.len(), 10_000);
        assert!((0..1000).all(|r| below(draw(k, r, 0), 7) < 7));
        assert!(unit(u32::MAX) < 1.0 && unit(0) == 0.0);
        // The mean of the jitter stream is 1/2 within its standard error (x 5).
        let n = 100_000;
        let m = (0..n).map(|r| unit(draw(k, r, 1)) as f64).sum::<f64>() / n as f64;
        assert!(
            (m - 0.5).abs() < 5.0 * (1.0 / 12.0f64 / n as f64).sqrt(),
            "{m}"
        );
    }
}
