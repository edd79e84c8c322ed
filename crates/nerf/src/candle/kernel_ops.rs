//! candle custom ops over the plain kernels, so the model can be a candle graph whose autograd
//! (`Var`, `Tensor::backward`, `GradStore`) runs our hand-written backward passes.
//!
//! All ops are CPU-only and f32-only; inputs may have any layout (non-contiguous inputs are copied).
//! Use the functions [`hash_encode`] and [`mlp`]; the op structs are public for `apply_op*_arc` users.
//!
//! Graph-path overheads compared with the plain functions: candle copies tensors in and out of the
//! ops' backward (`to_vec1`, `from_vec`), and its `GradStore` adds each gradient onto a zero tensor
//! (one extra pass over the 64 MB grid gradient). `KERNELS.md` measures both paths.

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};

use crate::kernels::hashgrid::{HashGridConfig, hash_encode_backward, hash_encode_forward};
use crate::kernels::mlp::{MlpCache, MlpConfig, mlp_backward, mlp_forward, mlp_forward_into};

/// The f32 data of a CPU storage in logical (row-major) order, borrowing when contiguous.
fn f32_data<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<std::borrow::Cow<'a, [f32]>> {
    let v = match s {
        CpuStorage::F32(v) => v,
        _ => bail!(
            "{what}: expected an f32 tensor, got {:?}",
            BackendStorage::dtype(s)
        ),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(std::borrow::Cow::Borrowed(&v[a..b])),
        None => Ok(std::borrow::Cow::Owned(gather_strided(v, l))),
    }
}

/// Copies a strided view into row-major order.
fn gather_strided(v: &[f32], l: &Layout) -> Vec<f32> {
    let dims = l.dims();
    let strides = l.stride();
    let total: usize = dims.iter().product();
    let mut out = Vec::with_capacity(total);
    let mut idx = vec![0usize; dims.len()];
    for _ in 0..total {
        let off: usize =
            l.start_offset() + idx.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>();
        out.push(v[off]);
        for d in (0..dims.len()).rev() {
            idx[d] += 1;
            if idx[d] < dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

/// A tensor's data as a contiguous f32 vector (copies).
fn tensor_f32(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

fn check_positions(cfg: &HashGridConfig, params: &Layout, pos: &Layout) -> Result<usize> {
    if params.dims() != [cfg.num_params()] {
        bail!(
            "hash_encode: params must have shape [{}], got {:?}",
            cfg.num_params(),
            params.dims()
        );
    }
    match pos.dims() {
        [n, 3] => Ok(*n),
        d => bail!("hash_encode: positions must have shape [N, 3], got {d:?}"),
    }
}

/// Hash-grid encoding without anti-aliasing: `(params [P], positions [N, 3]) -> [N, L*F]`.
/// Backward returns the gradient for `params` only.
#[derive(Clone, Debug)]
pub struct HashEncodeOp {
    /// Grid configuration.
    pub cfg: HashGridConfig,
}

/// Hash-grid encoding with Zip-NeRF level weights:
/// `(params [P], positions [N, 3], sigma [N]) -> [N, L*F]`. Backward: `params` only.
#[derive(Clone, Debug)]
pub struct HashEncodeSigmaOp {
    /// Grid configuration.
    pub cfg: HashGridConfig,
}

impl CustomOp2 for HashEncodeOp {
    fn name(&self) -> &'static str {
        "hash-encode"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = check_positions(&self.cfg, l1, l2)?;
        let params = f32_data(s1, l1, "hash_encode params")?;
        let pos = f32_data(s2, l2, "hash_encode positions")?;
        let mut out = vec![0f32; n * self.cfg.output_dim()];
        hash_encode_forward(&self.cfg, &params, &pos, None, &mut out);
        Ok((
            CpuStorage::F32(out),
            Shape::from((n, self.cfg.output_dim())),
        ))
    }

    fn bwd(
        &self,
        params: &Tensor,
        pos: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        if !params.track_op() {
            return Ok((None, None));
        }
        let p = tensor_f32(pos)?;
        let g = tensor_f32(grad)?;
        let mut dp = vec![0f32; self.cfg.num_params()];
        hash_encode_backward(&self.cfg, &p, None, &g, &mut dp);
        Ok((
            Some(Tensor::from_vec(
                dp,
                self.cfg.num_params(),
                params.device(),
            )?),
            None,
        ))
    }
}

impl CustomOp3 for HashEncodeSigmaOp {
    fn name(&self) -> &'static str {
        "hash-encode-sigma"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = check_positions(&self.cfg, l1, l2)?;
        if l3.dims() != [n] {
            bail!(
                "hash_encode: sigma must have shape [{n}], got {:?}",
                l3.dims()
            );
        }
        let params = f32_data(s1, l1, "hash_encode params")?;
        let pos = f32_data(s2, l2, "hash_encode positions")?;
        let sigma = f32_data(s3, l3, "hash_encode sigma")?;
        let mut out = vec![0f32; n * self.cfg.output_dim()];
        hash_encode_forward(&self.cfg, &params, &pos, Some(&sigma), &mut out);
        Ok((
            CpuStorage::F32(out),
            Shape::from((n, self.cfg.output_dim())),
        ))
    }

    fn bwd(
        &self,
        params: &Tensor,
        pos: &Tensor,
        sigma: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if !params.track_op() {
            return Ok((None, None, None));
        }
        let p = tensor_f32(pos)?;
        let s = tensor_f32(sigma)?;
        let g = tensor_f32(grad)?;
        let mut dp = vec![0f32; self.cfg.num_params()];
        hash_encode_backward(&self.cfg, &p, Some(&s), &g, &mut dp);
        Ok((
            Some(Tensor::from_vec(
                dp,
                self.cfg.num_params(),
                params.device(),
            )?),
            None,
            None,
        ))
    }
}

/// Hash-grid encoding as a candle op: `params [P]`, `positions [N, 3]` in `[0,1]^3`, optional
/// `sigma [N]` (footprint radius, Zip-NeRF level weights) -> `[N, L*F]`. Differentiable w.r.t.
/// `params` only.
pub fn hash_encode(
    params: &Tensor,
    positions: &Tensor,
    sigma: Option<&Tensor>,
    cfg: &HashGridConfig,
) -> Result<Tensor> {
    match sigma {
        None => params.apply_op2(positions, HashEncodeOp { cfg: cfg.clone() }),
        Some(s) => params.apply_op3(positions, s, HashEncodeSigmaOp { cfg: cfg.clone() }),
    }
}

/// Fused MLP as a candle op: `(params [P], x [N, d_0]) -> [N, d_K]`; backward returns gradients
/// for both `params` and `x` (only for those that are tracked).
///
/// The forward's [`MlpCache`] is kept inside the op (one op instance per graph node, as created by
/// [`mlp`]) and taken by `bwd`; if it is missing (e.g. a second backward) the forward is recomputed.
/// The cache (`N * sum(hidden widths)` floats) lives as long as the output tensor when no backward
/// runs, so render/inference code should call [`super::mlp_forward_inference`] instead.
#[derive(Debug)]
pub struct MlpOp {
    /// MLP shape.
    pub cfg: MlpConfig,
    cache: Mutex<Option<MlpCache>>,
}

impl MlpOp {
    /// A fresh op (use one per graph node).
    pub fn new(cfg: MlpConfig) -> Self {
        Self {
            cfg,
            cache: Mutex::new(None),
        }
    }
}

impl CustomOp2 for MlpOp {
    fn name(&self) -> &'static str {
        "fused-mlp"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.dims() != [self.cfg.num_params()] {
            bail!(
                "mlp: params must have shape [{}], got {:?}",
                self.cfg.num_params(),
                l1.dims()
            );
        }
        let n = match l2.dims() {
            [n, d] if *d == self.cfg.input_dim() => *n,
            d => bail!(
                "mlp: x must have shape [N, {}], got {d:?}",
                self.cfg.input_dim()
            ),
        };
        let params = f32_data(s1, l1, "mlp params")?;
        let x = f32_data(s2, l2, "mlp x")?;
        let mut out = vec![0f32; n * self.cfg.output_dim()];
        let mut cache = MlpCache::default();
        mlp_forward_into(&self.cfg, &params, &x, &mut out, &mut cache);
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = Some(cache);
        Ok((
            CpuStorage::F32(out),
            Shape::from((n, self.cfg.output_dim())),
        ))
    }

    fn bwd(
        &self,
        params: &Tensor,
        x: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (want_p, want_x) = (params.track_op(), x.track_op());
        if !want_p && !want_x {
            return Ok((None, None));
        }
        let p = tensor_f32(params)?;
        let xv = tensor_f32(x)?;
        let g = tensor_f32(grad)?;
        let n = xv.len() / self.cfg.input_dim();
        let cache = match self.cache.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(c) if c.rows() == n => c,
            _ => mlp_forward(&self.cfg, &p, &xv).1,
        };
        let mut dp = vec![0f32; p.len()];
        let mut dx = want_x.then(|| vec![0f32; xv.len()]);
        mlp_backward(&self.cfg, &p, &xv, &cache, &g, &mut dp, dx.as_deref_mut());
        let dp = if want_p {
            Some(Tensor::from_vec(dp, p.len(), params.device())?)
        } else {
            None
        };
        let dx = match dx {
            Some(d) => Some(Tensor::from_vec(d, (n, self.cfg.input_dim()), x.device())?),
            None => None,
        };
        Ok((dp, dx))
    }
}

/// Fused MLP as a candle op: `params [P]`, `x [N, d_0]` -> `[N, d_K]` (ReLU hidden, linear out).
pub fn mlp(params: &Tensor, x: &Tensor, cfg: &MlpConfig) -> Result<Tensor> {
    params.apply_op2_arc(x, Arc::new(Box::new(MlpOp::new(cfg.clone()))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng};

    fn rand_vec(n: usize, lo: f32, hi: f32, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(lo..hi)).collect()
    }

    /// `||a - b|| / ||b||`.
    fn rel_err(a: &[f64], b: &[f64]) -> f64 {
        let num = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt();
        num / b.iter().map(|y| y * y).sum::<f64>().sqrt().max(1e-30)
    }

    fn to_f64(t: &Tensor) -> Vec<f64> {
        tensor_f32(t).unwrap().into_iter().map(f64::from).collect()
    }

    /// `sum(out * g)` accumulated in f64.
    fn dot(out: &Tensor, g: &[f32]) -> f64 {
        tensor_f32(out)
            .unwrap()
            .iter()
            .zip(g)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum()
    }

    /// Central differences of `f` at the given parameter indices.
    fn central_fd(p: &[f32], idx: &[usize], eps: f32, f: &dyn Fn(&[f32]) -> f64) -> Vec<f64> {
        idx.iter()
            .map(|&i| {
                let mut q = p.to_vec();
                q[i] = p[i] + eps;
                let up = f(&q);
                q[i] = p[i] - eps;
                let down = f(&q);
                (up - down) / (2.0 * (eps as f64))
            })
            .collect()
    }

    fn small_grid() -> HashGridConfig {
        HashGridConfig {
            levels: 4,
            features_per_level: 2,
            log2_table_size: 10,
            base_resolution: 4,
            max_resolution: 40,
        }
    }

    #[test]
    fn hash_encode_grad_matches_reference_and_finite_differences() {
        let dev = Device::Cpu;
        let cfg = small_grid();
        let n = 64;
        let p0 = rand_vec(cfg.num_params(), -1.0, 1.0, 1);
        let pos = Tensor::from_vec(rand_vec(n * 3, 0.0, 1.0, 2), (n, 3), &dev).unwrap();
        let sigma_v = rand_vec(n, 0.0, 0.05, 3);
        let sigma = Tensor::from_vec(sigma_v.clone(), n, &dev).unwrap();
        let g = rand_vec(n * cfg.output_dim(), -1.0, 1.0, 4);
        let gt = Tensor::from_vec(g.clone(), (n, cfg.output_dim()), &dev).unwrap();
        for sg in [None, Some(&sigma)] {
            let var = Var::from_vec(p0.clone(), cfg.num_params(), &dev).unwrap();
            let out = hash_encode(var.as_tensor(), &pos, sg, &cfg).unwrap();
            let grads = (out * &gt).unwrap().sum_all().unwrap().backward().unwrap();
            let dp = to_f64(grads.get(&var).unwrap());
            // (a) Reference: the encoding is linear in the params, so the gradient is the sum over
            // samples of trilinear weight x level weight x g, computed here in f64 from scratch.
            let mut reference = vec![0f64; cfg.num_params()];
            let posv = tensor_f32(&pos).unwrap();
            for s in 0..n {
                for (l, info) in cfg.level_infos().iter().enumerate() {
                    let res = info.resolution as f64;
                    let lw = match sg {
                        Some(_) => {
                            crate::kernels::hashgrid::level_weight(sigma_v[s], res as f32) as f64
                        }
                        None => 1.0,
                    };
                    for c in 0..8usize {
                        let mut w = 1.0;
                        let mut v = [0u64; 3];
                        for a in 0..3 {
                            let x = posv[s * 3 + a] as f64 * res;
                            let i = (x.floor() as u64).min(info.resolution as u64 - 1);
                            let t = x - i as f64;
                            let d = ((c >> a) & 1) as u64;
                            v[a] = i + d;
                            w *= if d == 1 { t } else { 1.0 - t };
                        }
                        let tsz = cfg.table_size() as u64;
                        let e = if info.dense {
                            let st = info.resolution as u64 + 1;
                            v[0] + v[1] * st + v[2] * st * st
                        } else {
                            (v[0] ^ (v[1] * 2654435761) ^ (v[2] * 805459861)) % tsz
                        };
                        for f in 0..2 {
                            reference[((l as u64 * tsz + e) * 2) as usize + f] +=
                                w * lw * g[s * cfg.output_dim() + l * 2 + f] as f64;
                        }
                    }
                }
            }
            let e_ref = rel_err(&dp, &reference);
            assert!(e_ref < 1e-5, "encode grad vs reference: {e_ref}");
            // (b) Central finite differences through the op, on the touched entries of every level.
            let idx: Vec<usize> = (0..cfg.num_params())
                .filter(|&i| dp[i] != 0.0)
                .step_by(7)
                .collect();
            assert!(idx.len() > 100);
            let f = |q: &[f32]| {
                let t = Tensor::from_vec(q.to_vec(), q.len(), &dev).unwrap();
                dot(&hash_encode(&t, &pos, sg, &cfg).unwrap(), &g)
            };
            let fd = central_fd(&p0, &idx, 1e-2, &f);
            let sel: Vec<f64> = idx.iter().map(|&i| dp[i]).collect();
            let e_fd = rel_err(&sel, &fd);
            assert!(e_fd < 1e-3, "encode grad vs finite differences: {e_fd}");
        }
    }

    /// The same MLP from plain candle ops on slices of the flat parameter tensor.
    fn candle_mlp(p: &Tensor, x: &Tensor, cfg: &MlpConfig) -> Tensor {
        let offs = cfg.layer_offsets();
        let mut h = x.clone();
        for (k, lo) in offs.iter().enumerate() {
            let w = p
                .narrow(0, lo.weight, lo.fan_in * lo.fan_out)
                .unwrap()
                .reshape((lo.fan_in, lo.fan_out))
                .unwrap();
            h = h.matmul(&w).unwrap();
            if let Some(b) = lo.bias {
                h = h
                    .broadcast_add(&p.narrow(0, b, lo.fan_out).unwrap())
                    .unwrap();
            }
            if k + 1 < offs.len() {
                h = h.relu().unwrap();
            }
        }
        h
    }

    #[test]
    fn mlp_grad_matches_candle_reference_and_finite_differences() {
        let dev = Device::Cpu;
        let cfg = MlpConfig::new(&[6, 16, 12, 3], true);
        let n = 300; // two chunks
        let mut p0 = cfg.init_params(5);
        for lo in cfg.layer_offsets() {
            let b = lo.bias.unwrap();
            p0[b..b + lo.fan_out].copy_from_slice(&rand_vec(lo.fan_out, -0.1, 0.1, b as u64));
        }
        // x as a strided (non-contiguous) view, to exercise the layout handling.
        let wide = Tensor::from_vec(rand_vec(n * 8, -1.0, 1.0, 6), (n, 8), &dev).unwrap();
        let x_view = wide.narrow(1, 1, 6).unwrap();
        assert!(!x_view.is_contiguous());
        let x0 = tensor_f32(&x_view).unwrap();
        let g = rand_vec(n * 3, -1.0, 1.0, 7);
        let gt = Tensor::from_vec(g.clone(), (n, 3), &dev).unwrap();

        let pv = Var::from_vec(p0.clone(), p0.len(), &dev).unwrap();
        let xv = Var::from_vec(x0.clone(), (n, 6), &dev).unwrap();
        let out = mlp(pv.as_tensor(), &x_view, &cfg).unwrap();
        let out_ref = candle_mlp(pv.as_tensor(), &x_view, &cfg);
        assert!(rel_err(&to_f64(&out), &to_f64(&out_ref)) < 1e-6);
        let grads = (mlp(pv.as_tensor(), xv.as_tensor(), &cfg).unwrap() * &gt)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let (dp, dx) = (
            to_f64(grads.get(&pv).unwrap()),
            to_f64(grads.get(&xv).unwrap()),
        );
        let pr = Var::from_vec(p0.clone(), p0.len(), &dev).unwrap();
        let xr = Var::from_vec(x0.clone(), (n, 6), &dev).unwrap();
        let gr = (candle_mlp(pr.as_tensor(), xr.as_tensor(), &cfg) * &gt)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let (dp_ref, dx_ref) = (to_f64(gr.get(&pr).unwrap()), to_f64(gr.get(&xr).unwrap()));
        assert!(
            rel_err(&dp, &dp_ref) < 1e-5,
            "d_params vs candle: {}",
            rel_err(&dp, &dp_ref)
        );
        assert!(
            rel_err(&dx, &dx_ref) < 1e-5,
            "d_x vs candle: {}",
            rel_err(&dx, &dx_ref)
        );

        // Central differences. ReLU kinks would make FD wrong wherever a perturbation flips a unit,
        // so these params keep every hidden pre-activation at least 0.75 away from 0 (biases +-2,
        // weights in +-0.5/fan_in): about half the units are dead, which exercises the ReLU mask,
        // and no perturbation below 0.1 can flip one.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
        let mut p0 = vec![0f32; cfg.num_params()];
        let offs = cfg.layer_offsets();
        for (k, lo) in offs.iter().enumerate() {
            let a = 0.5 / lo.fan_in as f32;
            for v in &mut p0[lo.weight..lo.weight + lo.fan_in * lo.fan_out] {
                *v = rng.random_range(-a..a);
            }
            for v in &mut p0[lo.bias.unwrap()..lo.bias.unwrap() + lo.fan_out] {
                *v = if k + 1 == offs.len() {
                    rng.random_range(-0.1f32..0.1)
                } else if rng.random_bool(0.5) {
                    2.0
                } else {
                    -2.0
                };
            }
        }
        let pv = Var::from_vec(p0.clone(), p0.len(), &dev).unwrap();
        let xv = Var::from_vec(x0.clone(), (n, 6), &dev).unwrap();
        let grads = (mlp(pv.as_tensor(), xv.as_tensor(), &cfg).unwrap() * &gt)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let (dp, dx) = (
            to_f64(grads.get(&pv).unwrap()),
            to_f64(grads.get(&xv).unwrap()),
        );
        assert!(
            dp.iter().filter(|v| **v == 0.0).count() > 20,
            "some units must be dead"
        );
        let xt = Tensor::from_vec(x0.clone(), (n, 6), &dev).unwrap();
        let f_p = |q: &[f32]| {
            dot(
                &mlp(
                    &Tensor::from_vec(q.to_vec(), q.len(), &dev).unwrap(),
                    &xt,
                    &cfg,
                )
                .unwrap(),
                &g,
            )
        };
        let idx: Vec<usize> = (0..p0.len()).collect();
        let fd = central_fd(&p0, &idx, 1e-2, &f_p);
        let e = rel_err(&dp, &fd);
        assert!(e < 1e-3, "d_params vs finite differences: {e}");
        let pt = Tensor::from_vec(p0.clone(), p0.len(), &dev).unwrap();
        let f_x = |q: &[f32]| {
            dot(
                &mlp(
                    &pt,
                    &Tensor::from_vec(q.to_vec(), (n, 6), &dev).unwrap(),
                    &cfg,
                )
                .unwrap(),
                &g,
            )
        };
        let idx: Vec<usize> = (0..x0.len()).step_by(5).collect();
        let fd = central_fd(&x0, &idx, 5e-2, &f_x);
        let sel: Vec<f64> = idx.iter().map(|&i| dx[i]).collect();
        let e = rel_err(&sel, &fd);
        assert!(e < 1e-3, "d_x vs finite differences: {e}");
    }

    #[test]
    fn encode_then_mlp_chain_grad_matches_finite_differences() {
        // The grid gradient that flows back through the MLP's d_x (the model's real path).
        let dev = Device::Cpu;
        let grid = small_grid();
        let mcfg = MlpConfig::new(&[grid.output_dim(), 16, 2], false);
        let n = 40;
        let gp0 = rand_vec(grid.num_params(), -0.5, 0.5, 8);
        let mp = Tensor::from_vec(mcfg.init_params(9), mcfg.num_params(), &dev).unwrap();
        let pos = Tensor::from_vec(rand_vec(n * 3, 0.0, 1.0, 10), (n, 3), &dev).unwrap();
        let sigma = Tensor::from_vec(rand_vec(n, 0.0, 0.03, 11), n, &dev).unwrap();
        let g = rand_vec(n * 2, -1.0, 1.0, 12);
        let gt = Tensor::from_vec(g.clone(), (n, 2), &dev).unwrap();
        let gv = Var::from_vec(gp0.clone(), gp0.len(), &dev).unwrap();
        let feat = hash_encode(gv.as_tensor(), &pos, Some(&sigma), &grid).unwrap();
        let grads = (mlp(&mp, &feat, &mcfg).unwrap() * &gt)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let dg = to_f64(grads.get(&gv).unwrap());
        let idx: Vec<usize> = (0..gp0.len())
            .filter(|&i| dg[i] != 0.0)
            .step_by(3)
            .collect();
        assert!(idx.len() > 50);
        let f = |q: &[f32]| {
            let t = Tensor::from_vec(q.to_vec(), q.len(), &dev).unwrap();
            dot(
                &mlp(
                    &mp,
                    &hash_encode(&t, &pos, Some(&sigma), &grid).unwrap(),
                    &mcfg,
                )
                .unwrap(),
                &g,
            )
        };
        let fd = central_fd(&gp0, &idx, 1e-3, &f);
        let sel: Vec<f64> = idx.iter().map(|&i| dg[i]).collect();
        let e = rel_err(&sel, &fd);
        assert!(
            e < 1e-3,
            "grid grad through the MLP vs finite differences: {e}"
        );
    }
}
