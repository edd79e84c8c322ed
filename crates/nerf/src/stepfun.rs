//! Step functions along a ray, after multinerf's `internal/stepfun.py`.
//!
//! Naming: `t` holds the n+1 bin endpoints ("fenceposts") of a ray, sorted; `w` the n weights of the
//! bins (non-negative, summing to <= 1); `p = w / (t[i+1]-t[i])` a density that integrates to <= 1.
//! All functions work on one ray (slices); callers parallelise over rays. In this crate `t` is usually
//! the normalised disparity `s` (mip-NeRF 360 Eq. 11), on which resampling and both regularisers act.

/// Machine epsilon of f32, as multinerf uses it.
pub const EPS: f32 = f32::EPSILON;

/// Schlick's bias function used to anneal proposal weights (mip-NeRF 360 / Zip-NeRF):
/// `b(x, a) = a x / ((a - 1) x + 1)` with slope `a` (10) and `x` the fraction of training done.
pub fn anneal_power(train_frac: f32, slope: f32) -> f32 {
    let x = train_frac.clamp(0.0, 1.0);
    slope * x / ((slope - 1.0) * x + 1.0)
}

/// Dilation of the proposal histogram before resampling (multinerf `Model.__call__`):
/// `0.0025 + 0.5 / prod(samples of the previous levels)`.
pub fn dilation(prod_prev_samples: usize) -> f32 {
    0.0025 + 0.5 / prod_prev_samples as f32
}

/// `stepfun.max_dilate_weights`: max-pool the density `p = w/dt` over `±dilation` and re-integrate it
/// on the fenceposts `sort(t, t[:-1]-dilation, t[1:]+dilation)` clipped to `domain`, renormalised to
/// sum to 1. Returns `(t_dilated, w_dilated)` with 3n+1 fenceposts.
pub fn max_dilate_weights(
    t: &[f32],
    w: &[f32],
    dil: f32,
    domain: (f32, f32),
) -> (Vec<f32>, Vec<f32>) {
    let (mut td, mut wd) = (Vec::new(), Vec::new());
    max_dilate_weights_into(t, w, dil, domain, &mut td, &mut wd);
    (td, wd)
}

/// [`max_dilate_weights`] into reused buffers (the training loop calls it for every ray). The
/// fenceposts are a 3-way merge of the sorted `t`, `t[:-1] - dil` and `t[1:] + dil`.
pub fn max_dilate_weights_into(
    t: &[f32],
    w: &[f32],
    dil: f32,
    domain: (f32, f32),
    td: &mut Vec<f32>,
    wd: &mut Vec<f32>,
) {
    let n = w.len();
    let p = |i: usize| {
        let dt = t[i + 1] - t[i];
        if dt > 0.0 { w[i] / dt } else { 0.0 }
    };
    td.clear();
    // Merge the three sorted sequences a = t, b = t[..n] - dil, c = t[1..] + dil.
    let (mut ia, mut ib, mut ic) = (0usize, 0usize, 0usize);
    while ia <= n || ib < n || ic < n {
        let va = if ia <= n { t[ia] } else { f32::INFINITY };
        let vb = if ib < n { t[ib] - dil } else { f32::INFINITY };
        let vc = if ic < n {
            t[ic + 1] + dil
        } else {
            f32::INFINITY
        };
        let v = if va <= vb && va <= vc {
            ia += 1;
            va
        } else if vb <= vc {
            ib += 1;
            vb
        } else {
            ic += 1;
            vc
        };
        td.push(v.clamp(domain.0, domain.1));
    }
    // p_dilated at fencepost x = max over bins j with t[j]-dil <= x < t[j+1]+dil of p[j].
    // Both bounds are monotone in x: a sliding window over j.
    wd.clear();
    let mut lo = 0usize; // first j with t[j+1] + dil > x
    let mut hi = 0usize; // one past the last j with t[j] - dil <= x
    let mut sum = 0.0f32;
    for k in 0..td.len() - 1 {
        let x = td[k];
        while lo < n && t[lo + 1] + dil <= x {
            lo += 1;
        }
        while hi < n && t[hi] - dil <= x {
            hi += 1;
        }
        let mut m = 0.0f32;
        for j in lo.min(hi)..hi {
            m = m.max(p(j));
        }
        let wk = m * (td[k + 1] - td[k]);
        sum += wk;
        wd.push(wk);
    }
    let s = sum.max(EPS);
    for v in wd.iter_mut() {
        *v /= s;
    }
}

/// The `i`-th of `m >= 2` stratified CDF values in `[0, 1)` that [`sample_intervals`] inverts: the
/// bin centres (padded by half a bin) when `u0` is `None`, else evenly spaced values shifted by the
/// ray's one jitter `u0 in [0, 1)` (multinerf `stepfun.sample`).
pub fn stratified_u(i: usize, m: usize, u0: Option<f32>) -> f32 {
    match u0 {
        None => {
            let pad = 1.0 / (2 * m) as f32;
            pad + (1.0 - 2.0 * pad - EPS) * i as f32 / (m - 1) as f32
        }
        Some(j) => {
            let u_max = EPS + (1.0 - EPS) / m as f32;
            let max_jitter = (1.0 - u_max) / (m - 1) as f32 - EPS;
            (1.0 - u_max) * i as f32 / (m - 1) as f32 + j * max_jitter
        }
    }
}

/// `stepfun.sample_intervals`: draw `m` sample centres from the step function's inverse CDF
/// (stratified, with one jitter `u0 in [0,1)` per ray, or the deterministic bin centres when `None`),
/// then return the m+1 fenceposts at the midpoints between centres, the two ends reflected about the
/// first/last centre and clamped to `domain`. `w` need not be normalised; zero-width bins are ignored.
pub fn sample_intervals(
    t: &[f32],
    w: &[f32],
    m: usize,
    u0: Option<f32>,
    domain: (f32, f32),
    out: &mut [f32],
) {
    debug_assert!(m >= 2 && out.len() == m + 1);
    let n = w.len();
    let total: f32 = (0..n)
        .map(|i| if t[i + 1] > t[i] { w[i].max(0.0) } else { 0.0 })
        .sum();
    let u = |i: usize| stratified_u(i, m, u0);
    // Centres are produced in order; fencepost k (1..m) is the midpoint of centres k-1 and k.
    let (mut c_first, mut c_prev) = (0.0f32, 0.0f32);
    let mut emit = |idx: usize, c: f32| {
        if idx == 0 {
            c_first = c;
        } else {
            out[idx] = 0.5 * (c_prev + c);
        }
        c_prev = c;
    };
    if total.is_nan() || total <= 0.0 {
        // Degenerate histogram: uniform over the domain spanned by t.
        let (a, b) = (t[0], t[n]);
        for k in 0..m {
            emit(k, a + (b - a) * u(k));
        }
    } else {
        // Walk the CDF once (u is increasing).
        let mut i = 0usize;
        let mut cw0 = 0.0f32; // CDF at t[i]
        for k in 0..m {
            let uk = u(k);
            loop {
                let wi = if t[i + 1] > t[i] {
                    w[i].max(0.0) / total
                } else {
                    0.0
                };
                let cw1 = (cw0 + wi).min(1.0);
                if uk < cw1 || i + 1 == n {
                    let f = if wi > 0.0 {
                        ((uk - cw0) / wi).clamp(0.0, 1.0)
                    } else {
                        0.0
                    };
                    emit(k, t[i] + f * (t[i + 1] - t[i]));
                    break;
                }
                cw0 = cw1;
                i += 1;
            }
        }
    }
    let c_last = c_prev;
    out[0] = (2.0 * c_first - out[1]).max(domain.0);
    out[m] = (2.0 * c_last - out[m - 1]).min(domain.1);
    // Guard monotonicity against rounding.
    for k in 1..=m {
        if out[k] < out[k - 1] {
            out[k] = out[k - 1];
        }
    }
}

/// For each bin `[t0[i], t0[i+1]]`, the summed weight of the bins of `(t1, w1)` that overlap it
/// (`stepfun.inner_outer`'s outer measure). Also returns, per bin, the index range `[lo, hi)` of the
/// overlapping bins of `t1` (for the gradient).
pub fn outer(t0: &[f32], t1: &[f32], w1: &[f32]) -> (Vec<f32>, Vec<(usize, usize)>) {
    let n1 = w1.len();
    let mut cy = Vec::with_capacity(n1 + 1);
    cy.push(0.0f32);
    for (i, w) in w1.iter().enumerate() {
        cy.push(cy[i] + w);
    }
    // idx_lo(v): largest i with t1[i] <= v (0 if none); idx_hi(v): smallest i with t1[i] > v (n1 if none).
    let idx_lo = |v: f32| t1.partition_point(|&x| x <= v).saturating_sub(1);
    let idx_hi = |v: f32| t1.partition_point(|&x| x <= v).min(n1);
    let n0 = t0.len() - 1;
    let mut out = Vec::with_capacity(n0);
    let mut ranges = Vec::with_capacity(n0);
    for i in 0..n0 {
        let lo = idx_lo(t0[i]);
        let hi = idx_hi(t0[i + 1]).max(lo);
        out.push(cy[hi] - cy[lo]);
        ranges.push((lo, hi));
    }
    (out, ranges)
}

/// Interlevel (proposal) loss of one ray, mip-NeRF 360 Eq. 13 (`stepfun.lossfun_outer`):
/// `sum_i max(0, w_i - outer_i)^2 / (w_i + eps)` where `(t, w)` is the NeRF histogram (held fixed) and
/// `outer` bounds it from the proposal histogram `(t_env, w_env)`. Returns the loss and adds
/// `scale * dL/dw_env` into `g_env`.
///
/// Same bins and sums as [`outer`], found by one merge walk (both fencepost lists are sorted) with
/// running prefix sums, without allocating.
pub fn interlevel_loss(
    t: &[f32],
    w: &[f32],
    t_env: &[f32],
    w_env: &[f32],
    scale: f32,
    g_env: &mut [f32],
) -> f32 {
    let n1 = w_env.len();
    // count(v) = #{t_env <= v}; lo = count(t[i]) - 1 (>= 0), hi = min(count(t[i+1]), n1), >= lo.
    // cum(k) = sum of w_env[..k], accumulated in the same order as `outer`'s prefix array.
    let (mut c_lo, mut c_hi) = (0usize, 0usize);
    let (mut cum_lo, mut cum_hi) = (0.0f32, 0.0f32); // cum(lo_ptr), cum(hi_ptr)
    let (mut lo_ptr, mut hi_ptr) = (0usize, 0usize);
    let mut loss = 0.0;
    for i in 0..w.len() {
        while c_lo <= n1 && t_env[c_lo] <= t[i] {
            c_lo += 1;
        }
        while c_hi <= n1 && t_env[c_hi] <= t[i + 1] {
            c_hi += 1;
        }
        let lo = c_lo.saturating_sub(1);
        let hi = c_hi.min(n1).max(lo);
        while lo_ptr < lo {
            cum_lo += w_env[lo_ptr];
            lo_ptr += 1;
        }
        while hi_ptr < hi {
            cum_hi += w_env[hi_ptr];
            hi_ptr += 1;
        }
        let r = (w[i] - (cum_hi - cum_lo)).max(0.0);
        if r > 0.0 {
            let den = w[i] + EPS;
            loss += r * r / den;
            let g = -2.0 * r / den * scale;
            for ge in &mut g_env[lo..hi] {
                *ge += g;
            }
        }
    }
    loss
}

/// Distortion loss of one ray, mip-NeRF 360 Eq. 15 in its O(n) form (`stepfun.lossfun_distortion`):
/// `sum_{i,j} w_i w_j |u_i - u_j| + 1/3 sum_i w_i^2 (t_{i+1} - t_i)`, `u` the bin midpoints.
/// Returns the loss and writes `scale * dL/dw` into `g` (added).
pub fn distortion_loss(t: &[f32], w: &[f32], scale: f32, g: &mut [f32]) -> f32 {
    let n = w.len();
    // Prefix sums of w and w*u.
    let mut total_w = 0.0f32;
    let mut total_wu = 0.0f32;
    for i in 0..n {
        let u = 0.5 * (t[i] + t[i + 1]);
        total_w += w[i];
        total_wu += w[i] * u;
    }
    let mut cw = 0.0f32; // sum_{j<i} w_j
    let mut cwu = 0.0f32; // sum_{j<i} w_j u_j
    let mut inter = 0.0f32;
    let mut intra = 0.0f32;
    for i in 0..n {
        let u = 0.5 * (t[i] + t[i + 1]);
        let dt = t[i + 1] - t[i];
        // sum_j w_j |u_i - u_j| = u_i W_< - WU_< + (WU_> - u_i W_>)
        let w_gt = total_w - cw - w[i];
        let wu_gt = total_wu - cwu - w[i] * u;
        let a = u * cw - cwu + wu_gt - u * w_gt;
        inter += w[i] * a;
        intra += w[i] * w[i] * dt;
        g[i] += scale * (2.0 * a + 2.0 / 3.0 * w[i] * dt);
        cw += w[i];
        cwu += w[i] * u;
    }
    inter + intra / 3.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distortion_matches_quadratic_form_and_hand_value() {
        // Two bins [0,1],[1,2], w = (0.5, 0.5): inter = 2*0.25*1 = 0.5, intra = (0.25+0.25)/3.
        let mut g = [0.0; 2];
        let l = distortion_loss(&[0.0, 1.0, 2.0], &[0.5, 0.5], 1.0, &mut g);
        assert!((l - (0.5 + 0.5 / 3.0)).abs() < 1e-6, "{l}");
        // Brute force on a random-ish case, and its gradient by finite differences.
        let t = [0.0, 0.1, 0.25, 0.3, 0.7, 1.0];
        let w = [0.1f32, 0.3, 0.05, 0.4, 0.1];
        let brute = |w: &[f32]| {
            let mut s = 0.0f64;
            for i in 0..5 {
                for j in 0..5 {
                    let ui = 0.5 * (t[i] + t[i + 1]) as f64;
                    let uj = 0.5 * (t[j] + t[j + 1]) as f64;
                    s += (w[i] * w[j]) as f64 * (ui - uj).abs();
                }
                s += (w[i] * w[i]) as f64 * (t[i + 1] - t[i]) as f64 / 3.0;
            }
            s
        };
        let mut g = [0.0f32; 5];
        let l = distortion_loss(&t, &w, 1.0, &mut g);
        assert!((l as f64 - brute(&w)).abs() < 1e-6);
        for k in 0..5 {
            let h = 1e-3;
            let mut wp = w;
            wp[k] += h;
            let mut wm = w;
            wm[k] -= h;
            let fd = (brute(&wp) - brute(&wm)) / (2.0 * h as f64);
            assert!(
                (g[k] as f64 - fd).abs() < 1e-3 * fd.abs().max(1e-2),
                "{k}: {} vs {fd}",
                g[k]
            );
        }
    }

    #[test]
    fn outer_and_interlevel_hand_values() {
        // Proposal bins [0,.5],[.5,1] with w (0.2, 0.8); NeRF bins [0,.25],[.25,.75],[.75,1].
        let (wo, _) = outer(&[0.0, 0.25, 0.75, 1.0], &[0.0, 0.5, 1.0], &[0.2, 0.8]);
        assert_eq!(wo.len(), 3);
        assert!(
            (wo[0] - 0.2).abs() < 1e-6 && (wo[1] - 1.0).abs() < 1e-6 && (wo[2] - 0.8).abs() < 1e-6
        );
        // NeRF weight 0.5 in the first bin exceeds its bound 0.2: loss 0.3^2/0.5 = 0.18.
        let mut g = [0.0; 2];
        let l = interlevel_loss(
            &[0.0, 0.25, 0.75, 1.0],
            &[0.5, 0.3, 0.2],
            &[0.0, 0.5, 1.0],
            &[0.2, 0.8],
            1.0,
            &mut g,
        );
        assert!((l - 0.18).abs() < 1e-5, "{l}");
        assert!((g[0] + 2.0 * 0.3 / 0.5).abs() < 1e-4 && g[1] == 0.0);
    }

    #[test]
    fn sampling_follows_the_cdf() {
        // All mass in [0.5, 1]: every sample lands there; deterministic centres are evenly spaced.
        let mut out = [0.0; 5];
        sample_intervals(&[0.0, 0.5, 1.0], &[0.0, 1.0], 4, None, (0.0, 1.0), &mut out);
        // centres 0.5 + 0.5*(1/8, 3/8, 5/8, 7/8) = 0.5625, 0.6875, 0.8125, 0.9375
        let want = [0.5, 0.625, 0.75, 0.875, 1.0];
        for (a, b) in out.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{out:?}");
        }
        // Uniform histogram with jitter: monotone, inside the domain.
        let mut out = [0.0; 65];
        sample_intervals(&[0.0, 1.0], &[1.0], 64, Some(0.7), (0.0, 1.0), &mut out);
        assert!(out.windows(2).all(|p| p[1] >= p[0]) && out[0] >= 0.0 && out[64] <= 1.0);
        assert!((out[32] - 0.5).abs() < 0.02);
    }

    /// The merge-walk versions equal the direct definitions (sorted fenceposts; `outer` by binary
    /// search) on random histograms, including repeated fenceposts.
    #[test]
    fn merge_walks_match_direct_definitions() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let sorted = |rng: &mut rand_chacha::ChaCha8Rng, n: usize| {
            let mut v: Vec<f32> = (0..=n).map(|_| rng.random_range(0.0f32..1.0)).collect();
            v[0] = 0.0;
            v[n] = 1.0;
            if n > 3 {
                v[2] = v[1]; // a zero-width bin
            }
            v.sort_by(f32::total_cmp);
            v
        };
        for trial in 0..200 {
            let (n, m) = (2 + trial % 40, 2 + (trial * 7) % 70);
            let t = sorted(&mut rng, n);
            let w: Vec<f32> = (0..n).map(|_| rng.random_range(0.0f32..0.1)).collect();
            let te = sorted(&mut rng, m);
            let we: Vec<f32> = (0..m).map(|_| rng.random_range(0.0f32..0.1)).collect();
            // interlevel vs outer
            let (wo, ranges) = outer(&t, &te, &we);
            let mut g_ref = vec![0.0f32; m];
            let mut l_ref = 0.0;
            for i in 0..n {
                let r = (w[i] - wo[i]).max(0.0);
                if r > 0.0 {
                    l_ref += r * r / (w[i] + EPS);
                    for g in &mut g_ref[ranges[i].0..ranges[i].1] {
                        *g += -2.0 * r / (w[i] + EPS) * 0.5;
                    }
                }
            }
            let mut g = vec![0.0f32; m];
            let l = interlevel_loss(&t, &w, &te, &we, 0.5, &mut g);
            assert_eq!(l, l_ref, "trial {trial}");
            assert_eq!(g, g_ref, "trial {trial}");
            // dilation fenceposts vs sort
            let dil = 0.03;
            let mut td_ref: Vec<f32> = t.clone();
            td_ref.extend(t[..n].iter().map(|x| x - dil));
            td_ref.extend(t[1..].iter().map(|x| x + dil));
            td_ref.sort_by(f32::total_cmp);
            td_ref.iter_mut().for_each(|x| *x = x.clamp(0.0, 1.0));
            let (td, wd) = max_dilate_weights(&t, &w, dil, (0.0, 1.0));
            assert_eq!(td, td_ref, "trial {trial}");
            assert_eq!(wd.len(), 3 * n);
        }
    }

    #[test]
    fn dilation_spreads_mass_and_renormalises() {
        let t = [0.0, 0.4, 0.5, 1.0];
        let w = [0.0, 1.0, 0.0];
        let (td, wd) = max_dilate_weights(&t, &w, 0.05, (0.0, 1.0));
        assert_eq!(td.len(), 10);
        let s: f32 = wd.iter().sum();
        assert!((s - 1.0).abs() < 1e-5);
        // Mass now covers [0.35, 0.55] with constant density 1/0.2.
        for i in 0..wd.len() {
            let mid = 0.5 * (td[i] + td[i + 1]);
            if wd[i] > 0.0 {
                assert!(mid > 0.35 - 1e-6 && mid < 0.55 + 1e-6, "{td:?} {wd:?}");
                assert!((wd[i] / (td[i + 1] - td[i]) - 5.0).abs() < 1e-3);
            }
        }
        assert!((anneal_power(1.0, 10.0) - 1.0).abs() < 1e-6 && anneal_power(0.0, 10.0) == 0.0);
        assert!((dilation(64) - 0.0103125).abs() < 1e-7);
    }
}
