//! Deterministic randomness: a SplitMix64 stream for sequential choices and stateless lattice hashes
//! for textures (a pixel's colour never depends on evaluation order or thread).

/// SplitMix64 finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mixer.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hash of an integer lattice cell `(x, y)` under a salt.
#[inline]
pub fn hash2(x: i64, y: i64, salt: u64) -> u64 {
    hash2_mixed(x, y, mix64(salt))
}

/// [`hash2`] with the salt already passed through [`mix64`] (saves one mix per lookup when many
/// cells share a salt).
#[inline]
pub fn hash2_mixed(x: i64, y: i64, mixed_salt: u64) -> u64 {
    mix64(
        (x as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ (y as u64)
                .wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
                .rotate_left(17)
            ^ mixed_salt,
    )
}

/// [`hash2_mixed`] as a float in `[0, 1)`.
#[inline]
pub fn hash2f_mixed(x: i64, y: i64, mixed_salt: u64) -> f32 {
    (hash2_mixed(x, y, mixed_salt) >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
}

/// `hash2` as a float in `[0, 1)`.
#[inline]
pub fn hash2f(x: i64, y: i64, salt: u64) -> f32 {
    (hash2(x, y, salt) >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
}

/// `k`-th independent float in `[0, 1)` of a cell (for several attributes of one tile, brick, ...).
#[inline]
pub fn cellf(x: i64, y: i64, salt: u64, k: u64) -> f32 {
    hash2f(
        x,
        y,
        salt.wrapping_add(k.wrapping_mul(0x632b_e59b_d9b4_e019)),
    )
}

/// A sequential SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(mix64(seed ^ 0x5eed_f1e5_7a11_0000))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }
    /// Uniform in `[0, 1)`.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform in `[a, b)`.
    pub fn range(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.f64()
    }
    /// Uniform in `[-a, a)`.
    pub fn sym(&mut self, a: f64) -> f64 {
        self.range(-a, a)
    }
    /// Uniform integer in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
    /// A random permutation of `0..n` (Fisher-Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_uniform() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xs: Vec<f64> = (0..10_000).map(|_| a.f64()).collect();
        let ys: Vec<f64> = (0..10_000).map(|_| b.f64()).collect();
        assert_eq!(xs, ys);
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mut p = Rng::new(1).permutation(50);
        p.sort();
        assert_eq!(p, (0..50).collect::<Vec<_>>());
        let h: f32 = (0..1000).map(|i| hash2f(i, -i, 3)).sum::<f32>() / 1000.0;
        assert!((h - 0.5).abs() < 0.05, "{h}");
    }
}
