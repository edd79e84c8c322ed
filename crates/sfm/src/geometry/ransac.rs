//! LO-MSAC: RANSAC with the truncated-quadratic MSAC score (Torr & Zisserman 2000), local
//! optimisation of every new best model on its inliers (LO-RANSAC, Chum, Matas & Kittler 2003), and
//! the adaptive trial count `N = log(1 − p) / log(1 − wˢ)` (Fischler & Bolles 1981) for confidence
//! `p`, inlier ratio `w` and sample size `s`.

use super::Rng;

#[derive(Clone, Debug)]
pub struct RansacOptions {
    /// Inlier threshold on the residual (not squared), in the residual's units.
    pub max_error: f64,
    pub confidence: f64,
    pub min_trials: usize,
    pub max_trials: usize,
    pub seed: u64,
}

impl Default for RansacOptions {
    fn default() -> Self {
        RansacOptions {
            max_error: 4.0,
            confidence: 0.999,
            min_trials: 50,
            max_trials: 5000,
            seed: 42,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RansacResult<M> {
    pub model: M,
    pub inliers: Vec<bool>,
    pub num_inliers: usize,
    pub trials: usize,
}

/// Trials needed to draw one all-inlier sample with probability `confidence`.
pub fn required_trials(inlier_ratio: f64, sample_size: usize, confidence: f64) -> f64 {
    let w = inlier_ratio.powi(sample_size as i32);
    if w >= 1.0 - 1e-12 {
        return 1.0;
    }
    if w <= 1e-300 {
        return f64::INFINITY;
    }
    ((1.0 - confidence).ln() / (1.0 - w).ln()).ceil()
}

/// Run LO-MSAC over `n` data points. `minimal(sample)` returns candidate models from `sample_size`
/// indices; `residual_sq(model, i)` is the squared residual of point `i`; `refine(model, inliers)`
/// is the non-minimal fit used for local optimisation (return `None` to skip).
pub fn lo_msac<M: Clone>(
    n: usize,
    sample_size: usize,
    opts: &RansacOptions,
    minimal: impl Fn(&[usize]) -> Vec<M>,
    residual_sq: impl Fn(&M, usize) -> f64,
    refine: impl Fn(&M, &[usize]) -> Option<M>,
) -> Option<RansacResult<M>> {
    if n < sample_size {
        return None;
    }
    let thr2 = opts.max_error * opts.max_error;
    let score = |m: &M| -> (f64, usize) {
        let mut s = 0.0;
        let mut k = 0;
        for i in 0..n {
            let r = residual_sq(m, i);
            if r < thr2 {
                s += r;
                k += 1;
            } else {
                s += thr2;
            }
        }
        (s, k)
    };
    let inlier_idx =
        |m: &M| -> Vec<usize> { (0..n).filter(|&i| residual_sq(m, i) < thr2).collect() };
    let mut rng = Rng::new(opts.seed);
    let mut best: Option<(M, f64, usize)> = None;
    let mut sample = Vec::with_capacity(sample_size);
    let mut needed = opts.max_trials as f64;
    let mut trial = 0;
    while trial < opts.max_trials && (trial < opts.min_trials || (trial as f64) < needed) {
        trial += 1;
        rng.sample(n, sample_size, &mut sample);
        for m in minimal(&sample) {
            let (s, k) = score(&m);
            if best.as_ref().is_none_or(|b| s < b.1) {
                // Local optimisation: refit on the inliers while the score improves.
                let (mut bm, mut bs, mut bk) = (m, s, k);
                for _ in 0..3 {
                    let idx = inlier_idx(&bm);
                    let Some(r) = refine(&bm, &idx) else { break };
                    let (rs, rk) = score(&r);
                    if rs < bs {
                        (bm, bs, bk) = (r, rs, rk);
                    } else {
                        break;
                    }
                }
                needed = required_trials(bk as f64 / n as f64, sample_size, opts.confidence);
                best = Some((bm, bs, bk));
            }
        }
    }
    let (model, _, _) = best?;
    let inliers: Vec<bool> = (0..n).map(|i| residual_sq(&model, i) < thr2).collect();
    let num_inliers = inliers.iter().filter(|&&b| b).count();
    Some(RansacResult {
        model,
        inliers,
        num_inliers,
        trials: trial,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Line fitting y = a x + b with 40 % outliers.
    #[test]
    fn finds_line_among_outliers_and_stops_early() {
        let mut rng = Rng::new(7);
        let pts: Vec<(f64, f64)> = (0..200)
            .map(|i| {
                let x = i as f64 * 0.1;
                if i % 5 < 2 {
                    (x, rng.uniform() * 100.0 - 50.0)
                } else {
                    (x, 2.0 * x + 1.0 + 0.05 * rng.normal())
                }
            })
            .collect();
        let fit = |idx: &[usize]| -> Option<(f64, f64)> {
            let n = idx.len() as f64;
            let (mx, my) = idx
                .iter()
                .fold((0.0, 0.0), |a, &i| (a.0 + pts[i].0, a.1 + pts[i].1));
            let (mx, my) = (mx / n, my / n);
            let (sxy, sxx) = idx.iter().fold((0.0, 0.0), |a, &i| {
                (
                    a.0 + (pts[i].0 - mx) * (pts[i].1 - my),
                    a.1 + (pts[i].0 - mx).powi(2),
                )
            });
            (sxx > 0.0).then(|| (sxy / sxx, my - sxy / sxx * mx))
        };
        let res = lo_msac(
            pts.len(),
            2,
            &RansacOptions {
                max_error: 0.2,
                ..Default::default()
            },
            |s| fit(s).into_iter().collect(),
            |m, i| (pts[i].1 - m.0 * pts[i].0 - m.1).powi(2),
            |_, idx| fit(idx),
        )
        .unwrap();
        assert!((res.model.0 - 2.0).abs() < 0.01 && (res.model.1 - 1.0).abs() < 0.05);
        assert!(
            res.num_inliers >= 118 && res.num_inliers <= 125,
            "{}",
            res.num_inliers
        );
        // 60 % inliers, s = 2: about 16 trials needed; min_trials bounds it from below.
        assert!(res.trials <= 60, "{}", res.trials);
        assert!((required_trials(0.5, 5, 0.999) - 218.0).abs() < 1.0);
    }
}
