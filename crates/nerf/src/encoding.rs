//! Small input encodings of the colour head and the IPE backbone.
//!
//! Naming: `d` a unit view direction, `ev` an exposure value relative to the training mean (stops),
//! `x` a contracted position in `[-2, 2]^3` and `var` its isotropic variance (contracted units²).

/// Width of [`dir_encoding`]: identity + sin/cos of 4 octaves on 3 axes (multinerf `deg_view = 4`).
pub const DIR_DIM: usize = 27;
/// Width of [`exposure_encoding`].
pub const EXPOSURE_DIM: usize = 9;

/// NeRF positional encoding of a view direction, degrees 0..3 plus the identity
/// (`[d, sin(2^l d), sin(2^l d + pi/2)]`, multinerf `pos_enc(include_input=True)`): 27 values.
pub fn dir_encoding(d: [f32; 3], out: &mut [f32]) {
    out[..3].copy_from_slice(&d);
    let mut k = 3;
    for l in 0..4 {
        let f = (1u32 << l) as f32;
        for a in 0..3 {
            out[k] = (f * d[a]).sin();
            out[k + 12] = (f * d[a]).cos();
            k += 1;
        }
    }
}

/// [`dir_encoding`] with one `sin`/`cos` per axis and the octaves above by the double-angle
/// formulas `sin 2x = 2 sin x cos x`, `cos 2x = 1 - 2 sin² x` (a quarter of the libm calls; within
/// 2e-6 of [`dir_encoding`] for unit directions, tested): what the baked model's per-pixel head
/// uses.
pub fn dir_encoding_doubling(d: [f32; 3], out: &mut [f32]) {
    out[..3].copy_from_slice(&d);
    for a in 0..3 {
        let (mut s, mut c) = d[a].sin_cos();
        for l in 0..4 {
            out[3 + 3 * l + a] = s;
            out[15 + 3 * l + a] = c;
            (s, c) = (2.0 * s * c, 1.0 - 2.0 * s * s);
        }
    }
}

/// `(d enc / d d)^T g` of [`dir_encoding`] (`g`: the 27 encoding gradients).
pub fn dir_encoding_vjp(d: [f32; 3], g: &[f32]) -> [f32; 3] {
    let mut out = [g[0], g[1], g[2]];
    let mut k = 3;
    for l in 0..4 {
        let f = (1u32 << l) as f32;
        for a in 0..3 {
            out[a] += g[k] * f * (f * d[a]).cos() - g[k + 12] * f * (f * d[a]).sin();
            k += 1;
        }
    }
    out
}

/// Block-NeRF exposure conditioning: the sinusoidal encoding `gamma_4` of the exposure value
/// (4 frequencies) plus the value itself, `[ev/4, sin(2^l pi ev / 8), cos(2^l pi ev / 8)]`,
/// `l = 0..3`. The `ev / 8` scaling keeps +-4 stops inside one period of the lowest frequency.
pub fn exposure_encoding(ev: f32, out: &mut [f32]) {
    out[0] = ev * 0.25;
    for l in 0..4 {
        let a = (1u32 << l) as f32 * std::f32::consts::PI * ev / 8.0;
        out[1 + l] = a.sin();
        out[5 + l] = a.cos();
    }
}

/// Width of [`ipe`] for `degrees` octaves: sin and cos on each of 3 axes.
pub fn ipe_dim(degrees: usize) -> usize {
    6 * degrees
}

/// Integrated positional encoding (mip-NeRF Eq. 14) of an isotropic Gaussian `N(x, var I)` on the
/// three coordinate axes: `exp(-0.5 4^l var) [sin(2^l x), cos(2^l x)]`, `l = 0..degrees-1`.
/// (mip-NeRF 360 projects a full covariance onto 21 icosahedron directions; this keeps the axes and
/// the isotropic footprint, a documented simplification for CPU speed.)
pub fn ipe(x: [f32; 3], var: f32, degrees: usize, out: &mut [f32]) {
    let mut k = 0;
    for l in 0..degrees {
        let s = (1u64 << l) as f32;
        let att = (-0.5 * s * s * var).exp();
        for a in 0..3 {
            out[k] = att * (s * x[a]).sin();
            out[k + 3 * degrees] = att * (s * x[a]).cos();
            k += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_dir_encoding_is_within_2e_6_of_the_direct_one() {
        let mut worst = 0f32;
        for i in 0..20_000 {
            // Unit directions over the sphere (a Fibonacci lattice), the axes included.
            let z = 1.0 - 2.0 * (i as f32 + 0.5) / 20_000.0;
            let phi = i as f32 * 2.399_963;
            let r = (1.0 - z * z).sqrt();
            for d in [
                [r * phi.cos(), r * phi.sin(), z],
                [1.0, 0.0, 0.0],
                [0.0, -1.0, 0.0],
            ] {
                let (mut a, mut b) = ([0f32; DIR_DIM], [0f32; DIR_DIM]);
                dir_encoding(d, &mut a);
                dir_encoding_doubling(d, &mut b);
                for (x, y) in a.iter().zip(&b) {
                    worst = worst.max((x - y).abs());
                }
            }
        }
        assert!(worst < 2e-6, "{worst:e}");
    }

    #[test]
    fn encodings_hand_values() {
        let mut e = [0.0; EXPOSURE_DIM];
        exposure_encoding(4.0, &mut e);
        // pi * 4 / 8 = pi/2: sin 1, cos 0 at l = 0; l = 1: sin(pi) = 0, cos = -1.
        assert!((e[0] - 1.0).abs() < 1e-6 && (e[1] - 1.0).abs() < 1e-6 && e[5].abs() < 1e-6);
        assert!(e[2].abs() < 1e-6 && (e[6] + 1.0).abs() < 1e-6);
        let mut d = [0.0; DIR_DIM];
        dir_encoding([0.0, 0.0, 1.0], &mut d);
        assert_eq!(d[2], 1.0);
        assert!((d[3 + 2] - 1f32.sin()).abs() < 1e-6 && (d[15 + 2] - 1f32.cos()).abs() < 1e-6);
        // IPE: a wide Gaussian attenuates high octaves to ~0, a point keeps them.
        let mut a = vec![0.0; ipe_dim(8)];
        ipe([0.3, 0.2, 0.1], 1.0, 8, &mut a);
        assert!(a[3 * 7].abs() < 1e-10);
        ipe([0.3, 0.2, 0.1], 0.0, 8, &mut a);
        assert!((a[0] - 0.3f32.sin()).abs() < 1e-6);
    }
}
