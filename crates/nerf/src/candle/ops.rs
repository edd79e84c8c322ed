//! candle custom ops for per-ray volume rendering with the distortion loss, and for the interlevel
//! (proposal) loss, each with a hand-written backward built from [`crate::composite`] and
//! [`crate::stepfun`]. Together with the kernels' ops ([`crate::candle::kernel_ops`]) they let the model be
//! written as a candle graph ([`crate::candle::graph`]) whose autograd checks the fast path.
//!
//! Ray geometry (fenceposts in distance `t` and in disparity `s`) is not differentiated: it is held
//! by the op, as multinerf stops gradients through the sampling.

use crate::composite;
use crate::stepfun;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

/// Columns of [`VolumeRenderOp`]'s output per ray.
pub const VR_COLS: usize = 6;

fn data<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let v = match s {
        CpuStorage::F32(v) => v,
        _ => bail!("{what}: expected f32"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{what}: expected a contiguous tensor"),
    }
}

/// Volume rendering of `R` rays with `n` samples each: inputs `sigma [R, n]` and `rgb [R, n, 3]`
/// (already activated), output `[R, 6]` = `(r, g, b, depth, opacity, distortion)` where distortion is
/// mip-NeRF 360 Eq. 15 on `(s, w)` per ray. The op holds `t [R, n+1]` and `s [R, n+1]`.
#[derive(Debug, Clone)]
pub struct VolumeRenderOp {
    pub n: usize,
    pub t: Vec<f32>,
    pub s: Vec<f32>,
}

impl VolumeRenderOp {
    fn rays(&self) -> usize {
        self.t.len() / (self.n + 1)
    }

    /// Forward of one ray into `out[6]`, returning its weights.
    fn ray_fwd(&self, i: usize, sigma: &[f32], rgb: &[f32], out: &mut [f32]) -> Vec<f32> {
        let n = self.n;
        let t = &self.t[i * (n + 1)..(i + 1) * (n + 1)];
        let s = &self.s[i * (n + 1)..(i + 1) * (n + 1)];
        let mut w = vec![0.0; n];
        composite::weights(sigma, t, &mut w);
        let (c, d, a) = composite::composite(&w, rgb, t);
        let mut g = vec![0.0; n];
        let dist = stepfun::distortion_loss(s, &w, 0.0, &mut g);
        out[..3].copy_from_slice(&c);
        out[3] = d;
        out[4] = a;
        out[5] = dist;
        w
    }

    /// Plain-function backward: `(d sigma [R*n], d rgb [R*n*3])` from `grad [R*6]`.
    pub fn backward(&self, sigma: &[f32], rgb: &[f32], grad: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let n = self.n;
        let r = self.rays();
        let mut gs = vec![0.0f32; r * n];
        let mut gc = vec![0.0f32; r * n * 3];
        gs.par_chunks_mut(n)
            .zip(gc.par_chunks_mut(n * 3))
            .enumerate()
            .for_each(|(i, (gsi, gci))| {
                let sg = &sigma[i * n..(i + 1) * n];
                let cg = &rgb[i * n * 3..(i + 1) * n * 3];
                let mut tmp = [0.0f32; VR_COLS];
                let w = self.ray_fwd(i, sg, cg, &mut tmp);
                let g = &grad[i * VR_COLS..(i + 1) * VR_COLS];
                let t = &self.t[i * (n + 1)..(i + 1) * (n + 1)];
                let s = &self.s[i * (n + 1)..(i + 1) * (n + 1)];
                let mut gw = vec![0.0f32; n];
                stepfun::distortion_loss(s, &w, g[5], &mut gw);
                for j in 0..n {
                    let mid = if j + 1 == n {
                        t[j]
                    } else {
                        0.5 * (t[j] + t[j + 1])
                    };
                    gw[j] += g[0] * cg[3 * j]
                        + g[1] * cg[3 * j + 1]
                        + g[2] * cg[3 * j + 2]
                        + g[3] * mid
                        + g[4];
                    for k in 0..3 {
                        gci[3 * j + k] = g[k] * w[j];
                    }
                }
                composite::weights_backward(sg, t, &w, &gw, gsi);
            });
        (gs, gc)
    }
}

impl CustomOp2 for VolumeRenderOp {
    fn name(&self) -> &'static str {
        "volume-render"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let r = self.rays();
        if l1.dims() != [r, self.n] || l2.dims() != [r, self.n, 3] {
            bail!(
                "volume-render: expected sigma [{r}, {}] and rgb [{r}, {}, 3], got {:?} and {:?}",
                self.n,
                self.n,
                l1.dims(),
                l2.dims()
            );
        }
        let sigma = data(s1, l1, "sigma")?;
        let rgb = data(s2, l2, "rgb")?;
        let n = self.n;
        let mut out = vec![0.0f32; r * VR_COLS];
        out.par_chunks_mut(VR_COLS).enumerate().for_each(|(i, o)| {
            self.ray_fwd(
                i,
                &sigma[i * n..(i + 1) * n],
                &rgb[i * n * 3..(i + 1) * n * 3],
                o,
            );
        });
        Ok((CpuStorage::F32(out), Shape::from((r, VR_COLS))))
    }

    fn bwd(
        &self,
        sigma: &Tensor,
        rgb: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let s = sigma.flatten_all()?.to_vec1::<f32>()?;
        let c = rgb.flatten_all()?.to_vec1::<f32>()?;
        let g = grad.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let (gs, gc) = self.backward(&s, &c, &g);
        Ok((
            Some(Tensor::from_vec(gs, sigma.shape(), sigma.device())?),
            Some(Tensor::from_vec(gc, rgb.shape(), rgb.device())?),
        ))
    }
}

/// Interlevel loss of one proposal level: input the proposal densities `sigma [R, m]`, output the
/// per-ray loss `[R]` (`stepfun::interlevel_loss`, unnormalised). Holds the proposal's `t`, `s`
/// (`[R, m+1]`) and the NeRF level's fixed `s [R, n+1]`, `w [R, n]`.
#[derive(Debug, Clone)]
pub struct InterlevelOp {
    pub m: usize,
    pub t: Vec<f32>,
    pub s: Vec<f32>,
    pub n: usize,
    pub s_nerf: Vec<f32>,
    pub w_nerf: Vec<f32>,
}

impl InterlevelOp {
    fn rays(&self) -> usize {
        self.t.len() / (self.m + 1)
    }

    fn ray(&self, i: usize, sigma: &[f32], scale: f32, g_sigma: Option<&mut [f32]>) -> f32 {
        let (m, n) = (self.m, self.n);
        let t = &self.t[i * (m + 1)..(i + 1) * (m + 1)];
        let mut w = vec![0.0; m];
        composite::weights(sigma, t, &mut w);
        let mut gw = vec![0.0; m];
        let l = stepfun::interlevel_loss(
            &self.s_nerf[i * (n + 1)..(i + 1) * (n + 1)],
            &self.w_nerf[i * n..(i + 1) * n],
            &self.s[i * (m + 1)..(i + 1) * (m + 1)],
            &w,
            scale,
            &mut gw,
        );
        if let Some(gs) = g_sigma {
            composite::weights_backward(sigma, t, &w, &gw, gs);
        }
        l
    }
}

impl CustomOp1 for InterlevelOp {
    fn name(&self) -> &'static str {
        "interlevel-loss"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout) -> Result<(CpuStorage, Shape)> {
        let r = self.rays();
        if l1.dims() != [r, self.m] {
            bail!(
                "interlevel-loss: expected sigma [{r}, {}], got {:?}",
                self.m,
                l1.dims()
            );
        }
        let sigma = data(s1, l1, "sigma")?;
        let m = self.m;
        let out: Vec<f32> = (0..r)
            .into_par_iter()
            .map(|i| self.ray(i, &sigma[i * m..(i + 1) * m], 0.0, None))
            .collect();
        Ok((CpuStorage::F32(out), Shape::from(r)))
    }

    fn bwd(&self, sigma: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let s = sigma.flatten_all()?.to_vec1::<f32>()?;
        let g = grad.to_vec1::<f32>()?;
        let m = self.m;
        let mut gs = vec![0.0f32; s.len()];
        gs.par_chunks_mut(m).enumerate().for_each(|(i, gsi)| {
            self.ray(i, &s[i * m..(i + 1) * m], g[i], Some(gsi));
        });
        Ok(Some(Tensor::from_vec(gs, sigma.shape(), sigma.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng};

    fn fenceposts(rng: &mut impl Rng, r: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
        let mut t = Vec::new();
        let mut s = Vec::new();
        for _ in 0..r {
            let mut acc = 0.0f32;
            let mut row = vec![0.0f32];
            for _ in 0..n {
                acc += rng.random_range(0.02..0.1);
                row.push(acc);
            }
            let tot = *row.last().unwrap();
            s.extend(row.iter().map(|v| v / tot));
            t.extend(row.iter().map(|v| 0.1 + 2.0 * v));
        }
        (t, s)
    }

    /// Relative error `|g - fd| / |fd|` over the whole gradient vector.
    fn rel_err(g: &[f32], fd: &[f64]) -> f64 {
        let num: f64 = g
            .iter()
            .zip(fd)
            .map(|(a, b)| (*a as f64 - b).powi(2))
            .sum::<f64>()
            .sqrt();
        let den: f64 = fd.iter().map(|b| b * b).sum::<f64>().sqrt();
        num / den
    }

    #[test]
    fn volume_render_op_backward_matches_finite_differences() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (r, n) = (3, 6);
        let (t, s) = fenceposts(&mut rng, r, n);
        let op = VolumeRenderOp { n, t, s };
        let sigma: Vec<f32> = (0..r * n).map(|_| rng.random_range(0.2..4.0)).collect();
        let rgb: Vec<f32> = (0..r * n * 3).map(|_| rng.random_range(0.0..1.0)).collect();
        let coef: Vec<f32> = (0..r * VR_COLS)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let dev = Device::Cpu;
        let sv = Var::from_vec(sigma.clone(), (r, n), &dev).unwrap();
        let cv = Var::from_vec(rgb.clone(), (r, n, 3), &dev).unwrap();
        let ct = Tensor::from_vec(coef.clone(), (r, VR_COLS), &dev).unwrap();
        let out = sv
            .as_tensor()
            .apply_op2(cv.as_tensor(), op.clone())
            .unwrap();
        let loss = (out * &ct).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let gs = grads
            .get(sv.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let gc = grads
            .get(cv.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let f = |sig: &[f32], col: &[f32]| -> f64 {
            let mut o = [0.0f32; VR_COLS];
            (0..r)
                .map(|i| {
                    op.ray_fwd(
                        i,
                        &sig[i * n..(i + 1) * n],
                        &col[i * n * 3..(i + 1) * n * 3],
                        &mut o,
                    );
                    o.iter()
                        .zip(&coef[i * VR_COLS..])
                        .map(|(a, b)| (*a as f64) * (*b as f64))
                        .sum::<f64>()
                })
                .sum()
        };
        let h = 2e-3f32;
        let fd_s: Vec<f64> = (0..r * n)
            .map(|k| {
                let (mut p, mut m) = (sigma.clone(), sigma.clone());
                p[k] += h;
                m[k] -= h;
                (f(&p, &rgb) - f(&m, &rgb)) / (2.0 * h as f64)
            })
            .collect();
        let fd_c: Vec<f64> = (0..r * n * 3)
            .map(|k| {
                let (mut p, mut m) = (rgb.clone(), rgb.clone());
                p[k] += h;
                m[k] -= h;
                (f(&sigma, &p) - f(&sigma, &m)) / (2.0 * h as f64)
            })
            .collect();
        let (es, ec) = (rel_err(&gs, &fd_s), rel_err(&gc, &fd_c));
        assert!(
            es < 1e-3 && ec < 1e-3,
            "relative errors: sigma {es:.2e}, rgb {ec:.2e}"
        );
    }

    #[test]
    fn interlevel_op_backward_matches_finite_differences() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let (r, m, n) = (3, 5, 7);
        let (t, s) = fenceposts(&mut rng, r, m);
        let (_, s_nerf) = fenceposts(&mut rng, r, n);
        // A NeRF histogram that is partly not covered by the proposal (so the loss is active).
        let w_nerf: Vec<f32> = (0..r * n)
            .map(|k| if k % 3 == 0 { 0.4 } else { 0.05 })
            .collect();
        let op = InterlevelOp {
            m,
            t,
            s,
            n,
            s_nerf,
            w_nerf,
        };
        let sigma: Vec<f32> = (0..r * m).map(|_| rng.random_range(0.1..3.0)).collect();
        let coef: Vec<f32> = (0..r).map(|_| rng.random_range(0.5..1.5)).collect();
        let dev = Device::Cpu;
        let sv = Var::from_vec(sigma.clone(), (r, m), &dev).unwrap();
        let out = sv.as_tensor().apply_op1(op.clone()).unwrap();
        let loss = (out * Tensor::from_vec(coef.clone(), r, &dev).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        let lv = loss.to_scalar::<f32>().unwrap();
        assert!(lv > 0.01, "the test case must exercise the loss: {lv}");
        let g = loss
            .backward()
            .unwrap()
            .get(sv.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let f = |sig: &[f32]| -> f64 {
            (0..r)
                .map(|i| op.ray(i, &sig[i * m..(i + 1) * m], 0.0, None) as f64 * coef[i] as f64)
                .sum()
        };
        let h = 1e-3f32;
        let fd: Vec<f64> = (0..r * m)
            .map(|k| {
                let (mut p, mut q) = (sigma.clone(), sigma.clone());
                p[k] += h;
                q[k] -= h;
                (f(&p) - f(&q)) / (2.0 * h as f64)
            })
            .collect();
        let e = rel_err(&g, &fd);
        assert!(e < 1e-3, "relative error {e:.2e}");
    }
}
