//! Throughput of the NeRF CPU kernels (hash-grid encoding, fused MLP, Adam) and of one combined
//! training step, direct calls vs the candle graph. Prints a markdown table.
//!
//! `cargo bench -p flythrough-nerf --bench kernels` (env: `KERNELS_BENCH_N` = samples per batch,
//! default 2^18; `KERNELS_BENCH_REPS` = timed repetitions, default 5; the median is reported).

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use flythrough_nerf::candle::kernel_ops as ops;
use flythrough_nerf::kernels::{
    Adam, AdamConfig, HashGridConfig, MlpCache, MlpConfig, hash_encode_backward,
    hash_encode_backward_positions, hash_encode_forward, mlp_backward, mlp_forward_inference,
    mlp_forward_into,
};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// Process CPU time (user + system) in seconds, from `/proc/self/stat` (clock ticks of 1/100 s);
/// 0 where that file does not exist.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the ")" that closes the command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Median wall time in seconds of `reps` runs after one warm-up, and the CPU seconds of all of them
/// divided by `reps`.
fn time<F: FnMut()>(reps: usize, mut f: F) -> (f64, f64) {
    f();
    let c0 = cpu_seconds();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    let cpu = (cpu_seconds() - c0) / reps as f64;
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (t[t.len() / 2], cpu)
}

/// "rays": 32 stratified samples per ray along a random 0.6-long chord, rays in random order
/// (the access pattern of a training batch); sigma grows linearly along the ray (cone footprint).
fn ray_samples(n: usize, rng: &mut impl Rng) -> (Vec<f32>, Vec<f32>) {
    let mut pos = Vec::with_capacity(n * 3);
    let mut sigma = Vec::with_capacity(n);
    while sigma.len() < n {
        let o: [f32; 3] = [
            rng.random_range(0.2..0.8),
            rng.random_range(0.2..0.8),
            rng.random_range(0.2..0.8),
        ];
        let mut d: [f32; 3] = [
            rng.random_range(-1.0..1.0),
            rng.random_range(-1.0..1.0),
            rng.random_range(-1.0..1.0),
        ];
        let l = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt().max(1e-3);
        d.iter_mut().for_each(|v| *v /= l);
        for s in 0..32 {
            if sigma.len() == n {
                break;
            }
            let t = (s as f32 + rng.random_range(0.0..1.0)) / 32.0 * 0.6 - 0.3;
            for a in 0..3 {
                pos.push((o[a] + t * d[a]).clamp(0.0, 1.0));
            }
            sigma.push(2e-4 * (1.0 + 4.0 * (t + 0.3)));
        }
    }
    (pos, sigma)
}

fn uniform_samples(n: usize, rng: &mut impl Rng) -> Vec<f32> {
    (0..n * 3).map(|_| rng.random_range(0.0..1.0)).collect()
}

struct Row {
    part: String,
    /// Measured with the wall clock (median).
    value: f64,
    /// The same figure if the CPU time had been spread evenly over the rayon threads (what the
    /// kernel does when the shared machine's other jobs do not steal cores).
    cpu_value: f64,
    unit: &'static str,
}

fn main() {
    let n = env_usize("KERNELS_BENCH_N", 1 << 18);
    let reps = env_usize("KERNELS_BENCH_REPS", 5);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let grid = HashGridConfig::default();
    let gp = grid.init_params(1);
    let (pos, sigma) = ray_samples(n, &mut rng);
    let upos = uniform_samples(n, &mut rng);
    let w = grid.output_dim();
    let mut rows: Vec<Row> = Vec::new();
    let threads = rayon::current_num_threads() as f64;
    let load_before = load_average();
    let row = |part: String, (wall, cpu): (f64, f64)| Row {
        part,
        value: n as f64 / wall / 1e6,
        cpu_value: n as f64 / (cpu / threads) / 1e6,
        unit: "M samples/s",
    };

    // --- encoding
    let mut enc = vec![0f32; n * w];
    for (name, p, s) in [("rays", &pos, Some(&sigma[..])), ("random", &upos, None)] {
        let t = time(reps, || hash_encode_forward(&grid, &gp, p, s, &mut enc));
        rows.push(row(format!("encode fwd ({name})"), t));
        let d_enc: Vec<f32> = (0..n * w).map(|i| ((i % 7) as f32 - 3.0) * 1e-3).collect();
        let mut dgp = vec![0f32; gp.len()];
        let t = time(reps, || hash_encode_backward(&grid, p, s, &d_enc, &mut dgp));
        rows.push(row(format!("encode bwd ({name})"), t));
        // Camera-pose refinement's gradient w.r.t. the sample positions (`[train] pose_lr`).
        let mut dpos = vec![0f32; p.len()];
        let t = time(reps, || {
            hash_encode_backward_positions(&grid, &gp, p, s, &d_enc, &mut dpos)
        });
        rows.push(row(format!("encode bwd positions ({name})"), t));
    }
    hash_encode_forward(&grid, &gp, &pos, Some(&sigma), &mut enc);

    // --- MLPs
    let dens = MlpConfig::new(&[w, 64, 64, 16], false);
    let col = MlpConfig::new(&[15 + 16 + 32 + 8, 64, 64, 3], false);
    for (name, cfg) in [
        ("MLP 32-64-64-16", &dens),
        ("MLP 71-64-64-3 (colour)", &col),
    ] {
        let p = cfg.init_params(2);
        let x: Vec<f32> = (0..n * cfg.input_dim())
            .map(|i| ((i % 13) as f32 - 6.0) * 0.1)
            .collect();
        let mut out = vec![0f32; n * cfg.output_dim()];
        let t = time(reps, || mlp_forward_inference(cfg, &p, &x, &mut out));
        rows.push(row(format!("{name} fwd (inference)"), t));
        let mut cache = MlpCache::default();
        let g: Vec<f32> = (0..n * cfg.output_dim())
            .map(|i| ((i % 5) as f32 - 2.0) * 0.01)
            .collect();
        let mut dp = vec![0f32; p.len()];
        let mut dx = vec![0f32; x.len()];
        let t = time(reps, || {
            mlp_forward_into(cfg, &p, &x, &mut out, &mut cache);
            mlp_backward(cfg, &p, &x, &cache, &g, &mut dp, Some(&mut dx));
        });
        rows.push(row(format!("{name} fwd+bwd"), t));
    }

    // --- Adam
    let mut adam = Adam::new(gp.len(), AdamConfig::default());
    let grads: Vec<f32> = (0..gp.len())
        .map(|i| ((i % 11) as f32 - 5.0) * 1e-4)
        .collect();
    let mut gp_mut = gp.clone();
    let t = time(reps, || adam.update(&mut gp_mut, &grads, 1e-2));
    rows.push(Row {
        part: format!("Adam, dense, {} params", gp.len()),
        value: t.0 * 1e3,
        cpu_value: t.1 / threads * 1e3,
        unit: "ms/step",
    });

    // --- combined step, direct calls
    let dp0 = dens.init_params(3);
    let cp0 = col.init_params(4);
    let extra: Vec<f32> = (0..n * 56)
        .map(|i| ((i % 17) as f32 - 8.0) * 0.05)
        .collect(); // dir enc 16 + GLO 32 + exposure 8
    let target: Vec<f32> = (0..n * 3).map(|i| (i % 3) as f32 * 0.3).collect();
    {
        let (mut gpm, mut dpm, mut cpm) = (gp.clone(), dp0.clone(), cp0.clone());
        let (mut ag, mut ad, mut ac) = (
            Adam::new(gpm.len(), AdamConfig::default()),
            Adam::new(dpm.len(), AdamConfig::default()),
            Adam::new(cpm.len(), AdamConfig::default()),
        );
        let mut feat = vec![0f32; n * w];
        let mut h = vec![0f32; n * 16];
        let mut cin = vec![0f32; n * 71];
        let mut rgb = vec![0f32; n * 3];
        let (mut c1, mut c2) = (MlpCache::default(), MlpCache::default());
        let mut g_gp = vec![0f32; gpm.len()];
        let mut g_dp = vec![0f32; dpm.len()];
        let mut g_cp = vec![0f32; cpm.len()];
        let mut d_rgb = vec![0f32; n * 3];
        let mut d_cin = vec![0f32; n * 71];
        let mut d_h = vec![0f32; n * 16];
        let mut d_feat = vec![0f32; n * w];
        let t = time(reps, || {
            hash_encode_forward(&grid, &gpm, &pos, Some(&sigma), &mut feat);
            mlp_forward_into(&dens, &dpm, &feat, &mut h, &mut c1);
            cin.par_chunks_mut(71)
                .zip(h.par_chunks(16))
                .zip(extra.par_chunks(56))
                .for_each(|((c, hh), e)| {
                    c[..15].copy_from_slice(&hh[1..]);
                    c[15..].copy_from_slice(e);
                });
            mlp_forward_into(&col, &cpm, &cin, &mut rgb, &mut c2);
            // L2 loss gradient on raw outputs (stands in for volume rendering + loss).
            d_rgb
                .par_iter_mut()
                .zip(rgb.par_iter().zip(&target))
                .for_each(|(d, (r, t))| *d = (r - t) / n as f32);
            g_gp.par_iter_mut().for_each(|v| *v = 0.0);
            g_dp.iter_mut().for_each(|v| *v = 0.0);
            g_cp.iter_mut().for_each(|v| *v = 0.0);
            mlp_backward(&col, &cpm, &cin, &c2, &d_rgb, &mut g_cp, Some(&mut d_cin));
            d_h.par_chunks_mut(16)
                .zip(d_cin.par_chunks(71))
                .for_each(|(dh, dc)| {
                    dh[0] = 0.0;
                    dh[1..].copy_from_slice(&dc[..15]);
                });
            mlp_backward(&dens, &dpm, &feat, &c1, &d_h, &mut g_dp, Some(&mut d_feat));
            hash_encode_backward(&grid, &pos, Some(&sigma), &d_feat, &mut g_gp);
            ag.update(&mut gpm, &g_gp, 1e-2);
            ad.update(&mut dpm, &g_dp, 1e-2);
            ac.update(&mut cpm, &g_cp, 1e-2);
        });
        rows.push(row("COMBINED step, direct calls".into(), t));
    }

    // --- combined step, candle graph with the custom ops
    {
        let dev = Device::Cpu;
        let gv = Var::from_vec(gp.clone(), gp.len(), &dev).unwrap();
        let dv = Var::from_vec(dp0.clone(), dp0.len(), &dev).unwrap();
        let cv = Var::from_vec(cp0.clone(), cp0.len(), &dev).unwrap();
        let pos_t = Tensor::from_vec(pos.clone(), (n, 3), &dev).unwrap();
        let sig_t = Tensor::from_vec(sigma.clone(), n, &dev).unwrap();
        let extra_t = Tensor::from_vec(extra.clone(), (n, 56), &dev).unwrap();
        let target_t = Tensor::from_vec(target.clone(), (n, 3), &dev).unwrap();
        let mut opt: Vec<Adam> = [gp.len(), dp0.len(), cp0.len()]
            .iter()
            .map(|&k| Adam::new(k, AdamConfig::default()))
            .collect();
        let t = time(reps, || {
            let feat = ops::hash_encode(gv.as_tensor(), &pos_t, Some(&sig_t), &grid).unwrap();
            let h = ops::mlp(dv.as_tensor(), &feat, &dens).unwrap();
            let cin = Tensor::cat(&[&h.narrow(1, 1, 15).unwrap(), &extra_t], 1).unwrap();
            let rgb = ops::mlp(cv.as_tensor(), &cin, &col).unwrap();
            let loss = ((rgb - &target_t).unwrap().sqr().unwrap().sum_all().unwrap()
                * (0.5 / n as f64))
                .unwrap();
            let grads = loss.backward().unwrap();
            for (var, a) in [&gv, &dv, &cv].into_iter().zip(opt.iter_mut()) {
                let g = grads.get(var).unwrap().to_vec1::<f32>().unwrap();
                let mut p = var.as_tensor().to_vec1::<f32>().unwrap();
                a.update(&mut p, &g, 1e-2);
                let len = p.len();
                var.set(&Tensor::from_vec(p, len, &dev).unwrap()).unwrap();
            }
        });
        rows.push(row("COMBINED step, candle graph + custom ops".into(), t));
    }

    println!(
        "\nN = {n} samples, {} rayon threads, median of {reps} after 1 warm-up; grid {} levels x {} features, T = 2^{}\n",
        rayon::current_num_threads(),
        grid.levels,
        grid.features_per_level,
        grid.log2_table_size
    );
    println!(
        "load average before: {load_before}, after: {}\n",
        load_average()
    );
    println!("| part | wall clock | CPU time / threads | unit |\n|---|---:|---:|---|");
    for r in &rows {
        println!(
            "| {} | {:.2} | {:.2} | {} |",
            r.part, r.value, r.cpu_value, r.unit
        );
    }
}
