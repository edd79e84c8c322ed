//! Per-ray volume rendering (alpha compositing) and the data loss, with hand-written backward passes.
//!
//! Naming: per ray, `t` holds the n+1 fenceposts in distance (norm units, unit directions), `sigma`
//! the n densities, `rgb` the n colours (`[n*3]`), `w` the n compositing weights. The last bin is
//! opaque (multinerf `opaque_background`: its `sigma * delta` is infinite), so `sum w = 1`.

/// Compositing weights (NeRF Eq. 3, multinerf `render.compute_alpha_weights`):
/// `w_i = T_i (1 - exp(-sigma_i delta_i))`, `T_i = exp(-sum_{j<i} sigma_j delta_j)`, last bin opaque.
pub fn weights(sigma: &[f32], t: &[f32], w: &mut [f32]) {
    let n = sigma.len();
    let mut acc = 0.0f32; // optical depth so far
    for i in 0..n {
        let trans = (-acc).exp();
        if i + 1 == n {
            w[i] = trans;
        } else {
            let tau = sigma[i].max(0.0) * (t[i + 1] - t[i]);
            w[i] = trans * (1.0 - (-tau).exp());
            acc += tau;
        }
    }
}

/// Backward of [`weights`]: given `g_w = dL/dw`, writes `dL/dsigma`:
/// `dL/dtau_k = g_k T_{k+1} - sum_{i>k} g_i w_i` and `dL/dsigma_k = dL/dtau_k * delta_k`
/// (0 for the opaque last bin).
pub fn weights_backward(sigma: &[f32], t: &[f32], w: &[f32], g_w: &[f32], g_sigma: &mut [f32]) {
    let n = sigma.len();
    let mut suffix = 0.0f32; // sum_{i>k} g_i w_i
    let mut acc_total = 0.0f32;
    for i in 0..n.saturating_sub(1) {
        acc_total += sigma[i].max(0.0) * (t[i + 1] - t[i]);
    }
    // Walk backwards keeping the optical depth up to and including k.
    let mut acc = acc_total;
    for k in (0..n).rev() {
        if k + 1 == n {
            g_sigma[k] = 0.0;
        } else {
            let delta = t[k + 1] - t[k];
            let t_next = (-acc).exp(); // T_{k+1}
            let gt = g_w[k] * t_next - suffix;
            g_sigma[k] = if sigma[k] > 0.0 { gt * delta } else { 0.0 };
            acc -= sigma[k].max(0.0) * delta;
        }
        suffix += g_w[k] * w[k];
    }
}

/// Composite colour, expected depth (at bin midpoints) and opacity of one ray.
pub fn composite(w: &[f32], rgb: &[f32], t: &[f32]) -> ([f32; 3], f32, f32) {
    let mut c = [0.0f32; 3];
    let mut depth = 0.0;
    let mut acc = 0.0;
    for i in 0..w.len() {
        for k in 0..3 {
            c[k] += w[i] * rgb[3 * i + k];
        }
        let mid = if i + 1 == w.len() {
            t[i]
        } else {
            0.5 * (t[i] + t[i + 1])
        };
        depth += w[i] * mid;
        acc += w[i];
    }
    (c, depth, acc)
}

/// Charbonnier data loss of one channel, `sqrt(r^2 + eps^2)` with `eps = 1e-3` (multinerf
/// `data_loss_type = 'charb'`), and its derivative `r / sqrt(r^2 + eps^2)`.
pub fn charbonnier(r: f32) -> (f32, f32) {
    const E2: f32 = 1e-6;
    let v = (r * r + E2).sqrt();
    (v, r / v)
}

/// PSNR in dB for a mean squared error on `[0,1]` intensities.
pub fn psnr(mse: f64) -> f64 {
    -10.0 * mse.max(1e-12).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_hand_values_and_sum_to_one() {
        // sigma*delta = ln 2 on the first bin: alpha 1/2; second bin opaque gets the rest.
        let t = [0.0, 1.0, 2.0];
        let mut w = [0.0; 2];
        weights(&[std::f32::consts::LN_2, 5.0], &t, &mut w);
        assert!((w[0] - 0.5).abs() < 1e-6 && (w[1] - 0.5).abs() < 1e-6);
        let (c, d, a) = composite(&w, &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], &t);
        assert!((c[0] - 0.5).abs() < 1e-6 && (c[1] - 0.5).abs() < 1e-6 && (a - 1.0).abs() < 1e-6);
        assert!((d - (0.5 * 0.5 + 0.5 * 1.0)).abs() < 1e-6);
    }

    #[test]
    fn weights_backward_matches_finite_differences() {
        let t = [0.1f32, 0.3, 0.45, 0.8, 1.2, 2.0];
        let sigma = [0.5f32, 2.0, 0.1, 3.0, 1.0];
        let g_w = [0.3f32, -1.0, 0.7, 0.2, -0.4];
        let f = |s: &[f32]| {
            let mut w = [0.0; 5];
            weights(s, &t, &mut w);
            w.iter()
                .zip(&g_w)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum::<f64>()
        };
        let mut w = [0.0; 5];
        weights(&sigma, &t, &mut w);
        let mut g = [0.0; 5];
        weights_backward(&sigma, &t, &w, &g_w, &mut g);
        for k in 0..4 {
            let h = 1e-3;
            let mut sp = sigma;
            sp[k] += h;
            let mut sm = sigma;
            sm[k] -= h;
            let fd = (f(&sp) - f(&sm)) / (2.0 * h as f64);
            let rel = (g[k] as f64 - fd).abs() / fd.abs().max(1e-3);
            assert!(rel < 1e-3, "{k}: {} vs {fd}", g[k]);
        }
        assert_eq!(g[4], 0.0);
    }
}
