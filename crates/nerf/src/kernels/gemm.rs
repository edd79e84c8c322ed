//! Small single-threaded GEMM for the MLP kernels: `C (m x n) = A (m x k) B (k x n) + beta C`,
//! with `A` at any strides and the rows of `B` and `C` contiguous.
//!
//! The MLPs multiply chunks of a few hundred rows by weight matrices of at most 83 x 64. At that
//! size a packing GEMM (matrixmultiply) spends about as long copying both operands into its panels as
//! multiplying them (perf: `pack_avx512` 15.5 % vs its kernel 14.4 % of a training run). Here nothing
//! is packed: a register tile of `C` (`MR` rows x `NR` columns) is accumulated over `k`
//! (`C[i, j0..j0+NR] += A[i, p] * B[p, j0..j0+NR]`: one broadcast per row and `NR/lanes` FMAs per
//! step), reading `B`'s row segment from L1 (a layer's weights are at most 21 KB). Columns left over
//! after the wide blocks go through a 16- and an 8-wide block and, for the last 1..7, a zero-padded
//! copy of `B`'s last columns (so narrow outputs such as the 3 colour logits still use vector FMAs).
//!
//! The tile code is plain Rust that LLVM vectorises; [`gemm`] compiles it three times and picks at
//! run time (no `target-cpu=native`): AVX-512F with 8 x 32 tiles (16 of the 32 zmm registers as
//! accumulators), AVX2 + FMA with 4 x 16 tiles (8 of 16 ymm), and the baseline target (unfused).
//! Measured on the 2-core EPYC VM, single thread, hot caches (GFLOP/s, this / matrixmultiply 0.3):
//! 256x64 . 64x64 222 / 147; 256x15 . 15x64 207 / 121; (64x256)^T-strided . 256x64 241 / 221;
//! 256x64 . 64x16 153 / 79; 256x64 . 64x3 17 / 14. Training: 21.1k -> 22.3k rays/s, rendering
//! 51k -> 58k rays/s.

/// `C = A B + beta C` (`beta` 0 or 1 in practice; 0 never reads `C`). `A` is `m x k` at strides
/// `(rsa, csa)`, `B` is `k x n` with row stride `rsb` and unit column stride, `C` is `m x n` with
/// row stride `rsc` and unit column stride.
///
/// # Safety
/// The pointers and strides must describe valid matrices of those shapes; `C` must be writable and
/// not overlap `A` or `B`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    beta: f32,
    c: *mut f32,
    rsc: isize,
) {
    if m == 0 || n == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (which implies FMA); the rest is this function's contract.
        unsafe { gemm_avx512(m, k, n, a, rsa, csa, b, rsb, beta, c, rsc) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked above); the rest is this function's contract.
        unsafe { gemm_avx2_fma(m, k, n, a, rsa, csa, b, rsb, beta, c, rsc) };
        return;
    }
    // SAFETY: this function's contract.
    unsafe { gemm_body::<false, false>(m, k, n, a, rsa, csa, b, rsb, beta, c, rsc) };
}

/// [`gemm_body`] compiled with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_avx2_fma(
    m: usize,
    k: usize,
    n: usize,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    beta: f32,
    c: *mut f32,
    rsc: isize,
) {
    // SAFETY: forwarded contract of `gemm`.
    unsafe { gemm_body::<true, false>(m, k, n, a, rsa, csa, b, rsb, beta, c, rsc) };
}

/// [`gemm_body`] compiled with AVX-512F (16-wide registers; 32 of them).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_avx512(
    m: usize,
    k: usize,
    n: usize,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    beta: f32,
    c: *mut f32,
    rsc: isize,
) {
    // SAFETY: forwarded contract of `gemm`.
    unsafe { gemm_body::<true, true>(m, k, n, a, rsa, csa, b, rsb, beta, c, rsc) };
}

/// `x * y + z`, fused when the caller was compiled with FMA (an unfused `mul_add` would call libm).
#[inline(always)]
fn madd<const FMA: bool>(x: f32, y: f32, z: f32) -> f32 {
    if FMA { x.mul_add(y, z) } else { x * y + z }
}

/// The whole product: 16-wide column blocks, one 8-wide block, then the padded remainder.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_body<const FMA: bool, const WIDE: bool>(
    m: usize,
    k: usize,
    n: usize,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    beta: f32,
    c: *mut f32,
    rsc: isize,
) {
    let mut j0 = 0;
    if WIDE {
        // 32 registers: 8 x 32 tiles (16 accumulators of 16 lanes).
        while j0 + 32 <= n {
            // SAFETY: columns j0..j0+32 of B and C are inside the matrices.
            unsafe {
                column_block::<8, 32, FMA>(m, k, a, rsa, csa, b.add(j0), rsb, beta, c.add(j0), rsc)
            };
            j0 += 32;
        }
    }
    while j0 + 16 <= n {
        // SAFETY: columns j0..j0+16 of B and C are inside the matrices.
        unsafe {
            column_block::<4, 16, FMA>(m, k, a, rsa, csa, b.add(j0), rsb, beta, c.add(j0), rsc)
        };
        j0 += 16;
    }
    if j0 + 8 <= n {
        // SAFETY: as above, 8 columns.
        unsafe {
            column_block::<4, 8, FMA>(m, k, a, rsa, csa, b.add(j0), rsb, beta, c.add(j0), rsc)
        };
        j0 += 8;
    }
    let rest = n - j0;
    if rest == 0 {
        return;
    }
    // Last 1..7 columns: B's columns zero-padded to 8, products into an m x 8 scratch, copied out.
    let mut bp = vec![0.0f32; k * 8];
    for p in 0..k {
        for j in 0..rest {
            // SAFETY: row p, column j0 + j < n of B.
            bp[p * 8 + j] = unsafe { *b.offset(p as isize * rsb).add(j0 + j) };
        }
    }
    let mut cp = vec![0.0f32; m * 8];
    if beta != 0.0 {
        for i in 0..m {
            for j in 0..rest {
                // SAFETY: row i, column j0 + j < n of C.
                cp[i * 8 + j] = unsafe { *c.offset(i as isize * rsc).add(j0 + j) };
            }
        }
    }
    // SAFETY: bp is k x 8 and cp is m x 8, both row-major and local.
    unsafe {
        column_block::<4, 8, FMA>(m, k, a, rsa, csa, bp.as_ptr(), 8, beta, cp.as_mut_ptr(), 8)
    };
    for i in 0..m {
        for j in 0..rest {
            // SAFETY: row i, column j0 + j < n of C.
            unsafe { *c.offset(i as isize * rsc).add(j0 + j) = cp[i * 8 + j] };
        }
    }
}

/// `NR` columns of `C` (all rows): tiles of `MR` rows, then single rows.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn column_block<const MR: usize, const NR: usize, const FMA: bool>(
    m: usize,
    k: usize,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    beta: f32,
    c: *mut f32,
    rsc: isize,
) {
    let mut i0 = 0;
    while i0 + MR <= m {
        let mut acc = [[0.0f32; NR]; MR];
        for p in 0..k {
            // SAFETY: row p of B has NR readable columns from here (caller's contract).
            let brow: &[f32; NR] = unsafe { &*(b.offset(p as isize * rsb) as *const [f32; NR]) };
            for (r, accr) in acc.iter_mut().enumerate() {
                // SAFETY: A(i0 + r, p) is inside A.
                let av = unsafe { *a.offset((i0 + r) as isize * rsa + p as isize * csa) };
                for j in 0..NR {
                    accr[j] = madd::<FMA>(av, brow[j], accr[j]);
                }
            }
        }
        for (r, accr) in acc.iter().enumerate() {
            // SAFETY: row i0 + r of C has NR writable columns from here.
            let crow = unsafe { &mut *(c.offset((i0 + r) as isize * rsc) as *mut [f32; NR]) };
            store::<NR>(crow, accr, beta);
        }
        i0 += MR;
    }
    while i0 < m {
        let mut acc = [0.0f32; NR];
        for p in 0..k {
            // SAFETY: as above.
            let brow: &[f32; NR] = unsafe { &*(b.offset(p as isize * rsb) as *const [f32; NR]) };
            // SAFETY: A(i0, p) is inside A.
            let av = unsafe { *a.offset(i0 as isize * rsa + p as isize * csa) };
            for j in 0..NR {
                acc[j] = madd::<FMA>(av, brow[j], acc[j]);
            }
        }
        // SAFETY: as above.
        let crow = unsafe { &mut *(c.offset(i0 as isize * rsc) as *mut [f32; NR]) };
        store::<NR>(crow, &acc, beta);
        i0 += 1;
    }
}

#[inline(always)]
fn store<const NR: usize>(crow: &mut [f32; NR], acc: &[f32; NR], beta: f32) {
    if beta == 0.0 {
        *crow = *acc;
    } else {
        for j in 0..NR {
            crow[j] = acc[j] + beta * crow[j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    type Gemm = unsafe fn(
        usize,
        usize,
        usize,
        *const f32,
        isize,
        isize,
        *const f32,
        isize,
        f32,
        *mut f32,
        isize,
    );

    /// The dispatched entry point and the portable builds of both tile shapes.
    const VARIANTS: [(&str, Gemm); 3] = [
        ("dispatched", gemm),
        ("portable", gemm_body::<false, false>),
        ("portable, 8 x 32 tiles", gemm_body::<false, true>),
    ];

    /// Every variant matches an f64 triple loop on every shape class (16/8/padded column
    /// blocks, tile and single rows), transposed `A`, and `beta` 0 and 1.
    #[test]
    fn matches_naive_product() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for &(m, k, n) in &[
            (256, 15, 64),
            (256, 83, 64),
            (7, 5, 3),
            (64, 256, 3),
            (16, 256, 1),
            (256, 64, 15),
            (5, 9, 40),
            (19, 7, 77),
            (1, 1, 1),
            (3, 0, 9),
        ] {
            for transposed in [false, true] {
                for beta in [0.0f32, 1.0] {
                    let a: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
                    let b: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();
                    let c0: Vec<f32> = (0..m * n).map(|_| rng.random_range(-1.0..1.0)).collect();
                    // A stored row-major (m x k) or as the transpose of a row-major k x m.
                    let (rsa, csa) = if transposed {
                        (1isize, m as isize)
                    } else {
                        (k as isize, 1isize)
                    };
                    let at = |i: usize, p: usize| a[(i as isize * rsa + p as isize * csa) as usize];
                    let mut want = vec![0.0f64; m * n];
                    for i in 0..m {
                        for j in 0..n {
                            let mut s = beta as f64 * c0[i * n + j] as f64;
                            for p in 0..k {
                                s += at(i, p) as f64 * b[p * n + j] as f64;
                            }
                            want[i * n + j] = s;
                        }
                    }
                    let check = |got: &[f32], what: &str| {
                        for (g, w) in got.iter().zip(&want) {
                            assert!(
                                (*g as f64 - w).abs() < 1e-4 * (1.0 + w.abs()),
                                "{what} m{m} k{k} n{n} t{transposed} beta{beta}: {g} vs {w}"
                            );
                        }
                    };
                    for (what, f) in VARIANTS {
                        let mut c = c0.clone();
                        // SAFETY: shapes and strides as constructed above.
                        unsafe {
                            f(
                                m,
                                k,
                                n,
                                a.as_ptr(),
                                rsa,
                                csa,
                                b.as_ptr(),
                                n as isize,
                                beta,
                                c.as_mut_ptr(),
                                n as isize,
                            )
                        };
                        check(&c, what);
                    }
                }
            }
        }
    }
}
