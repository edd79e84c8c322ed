//! `sample_batch` (training batches drawn on the device) against the CPU's `step_batch`, and the
//! distribution of its picks (chi-square tests against uniform sampling over all training pixels).

use super::*;
use crate::data::{Dataset, Photo};
use crate::gpu::sampler::{DeviceData, DeviceSampler, HostData};
use flythrough_core::config::TrainConfig;
use flythrough_core::{Camera, CameraModel, Pose};
use image::RgbImage;
use nalgebra::{UnitQuaternion, Vector3};

/// Photos with the given cameras, random poses and EVs; `colour(k, x, y)` gives photo `k`'s pixels.
fn dataset(
    cams: &[Camera],
    holdout_every: usize,
    colour: impl Fn(usize, u32, u32) -> [u8; 3],
) -> Dataset {
    let mut r = rng(17);
    let photos = cams
        .iter()
        .enumerate()
        .map(|(k, cam)| Photo {
            name: format!("p{k:02}.png"),
            cam: cam.clone(),
            pose: Pose {
                rotation: UnitQuaternion::from_euler_angles(
                    r.random_range(-3.0..3.0),
                    r.random_range(-1.5..1.5),
                    r.random_range(-3.0..3.0),
                ),
                translation: Vector3::new(
                    r.random_range(-2.0..2.0),
                    r.random_range(-2.0..2.0),
                    r.random_range(-2.0..2.0),
                ),
            },
            img: RgbImage::from_fn(cam.width, cam.height, |x, y| image::Rgb(colour(k, x, y))),
            ev: r.random_range(-1.5..1.5),
            latent: None,
        })
        .collect();
    let norm = coord::SceneNorm {
        center: [0.3, -0.2, 0.5],
        scale: 0.45,
        near: 0.1,
    };
    Dataset::from_photos(photos, norm, holdout_every)
}

/// Output buffers of `n` rays and the sampler writing them.
struct Out {
    rays: GpuBuffer,
    idx: GpuBuffer,
    jit: GpuBuffer,
    tgt: GpuBuffer,
    s: DeviceSampler,
}

fn sampler(g: &Arc<Gpu>, ds: &Dataset, seed: u64, n: usize, nlev: usize) -> Out {
    let k = ks(g, AtomicMode::CasU32);
    let (rays, idx, jit, tgt) = (out(g, n * 8), out(g, n), out(g, n * nlev), out(g, n * 3));
    let data = DeviceData::upload(g, ds).unwrap();
    let s = data
        .sampler(&k, seed, n, nlev, &rays, &idx, &jit, &tgt)
        .unwrap();
    Out {
        rays,
        idx,
        jit,
        tgt,
        s,
    }
}

impl Out {
    /// Draw step `step`'s batch alone: rays, latent indices, jitter, targets.
    fn draw(&mut self, g: &Gpu, step: usize) -> (Vec<f32>, Vec<u32>, Vec<f32>, Vec<f32>) {
        self.s.set_step(g, step);
        let mut rec = g.recorder("sample batch");
        self.s.dispatch.record(&mut rec);
        rec.submit();
        (
            g.read(&self.rays).unwrap(),
            g.read(&self.idx).unwrap(),
            g.read(&self.jit).unwrap(),
            g.read(&self.tgt).unwrap(),
        )
    }
}

/// The kernel draws exactly the CPU's batch: the same pixels (latent index, colour) and jitter
/// bit for bit, rays within f32 rounding of the CPU's f64 `camera_ray` (distorted, pinhole and
/// one-radial-term cameras of different sizes, photos sharing a camera, a held-out photo left out).
#[test]
fn device_batches_are_the_cpu_batches() {
    let Some(g) = test_gpu() else { return };
    let mut shared = Camera::new(1, CameraModel::Opencv, 37, 23, 30.0);
    shared.params[4..8].copy_from_slice(&[-0.12, 0.03, 0.002, -0.001]);
    let mut radial = Camera::new(3, CameraModel::SimpleRadial, 25, 17, 22.0);
    radial.params[3] = 0.08;
    let pinhole = Camera::new(2, CameraModel::Pinhole, 20, 30, 26.0);
    let mut other_id = shared.clone();
    other_id.id = 9;
    // Photos 0 and 6 are held out (holdout_every = 6).
    let cams = [
        shared.clone(),
        shared.clone(),
        pinhole.clone(),
        other_id,
        radial,
        shared,
        pinhole,
    ];
    let mut r = rng(4);
    let noise: Vec<u8> = (0..7 * 40 * 40).map(|_| r.random()).collect();
    let ds = dataset(&cams, 6, |k, x, y| {
        let i = 3 * ((k * 40 + y as usize) * 40 + x as usize);
        [
            noise[i % noise.len()],
            noise[(i + 1) % noise.len()],
            noise[(i + 2) % noise.len()],
        ]
    });
    assert_eq!(ds.train.len(), 5);
    let size = HostData::size(&ds);
    // Three distinct cameras among the training photos (the id does not count).
    assert_eq!(size.cameras, 3, "{size:?}");
    assert_eq!(size.pixels, (3 * ds.train_pixels() as u64).div_ceil(4) * 4);
    let cfg = TrainConfig {
        seed: 0x1234_5678_9abc,
        batch_rays: 300,
        ..Default::default()
    };
    let nlev = 3;
    let mut o = sampler(&g, &ds, cfg.seed, cfg.batch_rays, nlev);
    let mut seen = vec![0usize; ds.train.len()];
    for step in [0usize, 1, 77, 4_000_000_000] {
        let (rays, idx, jit, tgt) = o.draw(&g, step);
        let (cr, ct, ci, cj) = crate::train::step_batch(&cfg, &ds, step, &[], 0, nlev);
        for i in 0..cfg.batch_rays {
            assert_eq!(idx[i] as usize, ci[i], "step {step} ray {i}: photo");
            seen[ci[i]] += 1;
            for l in 0..nlev {
                assert_eq!(
                    jit[i * nlev + l],
                    cj[l][i],
                    "step {step} ray {i}: jitter {l}"
                );
            }
            for c in 0..3 {
                assert!(
                    (tgt[3 * i + c] - ct[i][c]).abs() <= 1e-6,
                    "step {step} ray {i}: colour"
                );
            }
            let gr = &rays[8 * i..8 * i + 8];
            for a in 0..3 {
                assert_eq!(gr[a], cr.o[i][a], "step {step} ray {i}: origin");
                assert!(
                    (gr[3 + a] - cr.d[i][a]).abs() < 1e-6,
                    "step {step} ray {i}: direction {:?} vs {:?}",
                    &gr[3..6],
                    cr.d[i]
                );
            }
            assert_eq!(gr[6], cr.r[i], "step {step} ray {i}: radius");
            assert_eq!(gr[7], cr.ev[i], "step {step} ray {i}: EV offset");
        }
    }
    assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
    // Another step draws another batch.
    let a = o.draw(&g, 5).1;
    let b = o.draw(&g, 6).1;
    assert_ne!(a, b);
}

/// The chi-square critical value at significance `alpha` = 1e-3 for `df` degrees of freedom
/// (Wilson-Hilferty; within 1.5 % of the exact value from 4 degrees of freedom up: 18.7 vs
/// 18.47 at 4).
fn chi2_crit_1e3(df: f64) -> f64 {
    let z = 3.090_232; // the standard normal's 0.999 quantile
    let a = 2.0 / (9.0 * df);
    df * (1.0 - a + z * a.sqrt()).powi(3)
}

/// Pearson's statistic of `counts` against `expected`.
fn chi2(counts: &[u64], expected: &[f64]) -> f64 {
    counts
        .iter()
        .zip(expected)
        .map(|(&c, &e)| (c as f64 - e).powi(2) / e)
        .sum()
}

/// The GPU sampler's picks are uniform over all training pixels: over photos of different sizes
/// (so not uniform over photos) and over a 4 x 4 grid of position bins in every photo, Pearson's
/// chi-square against the pixel counts stays below the critical value at significance 1e-3
/// (fixed seed: the outcome is deterministic); the CPU sampler gives the same counts (the same
/// draws), and each level's jitter is uniform over 20 bins at the same significance.
#[test]
fn device_sampler_is_uniform_over_training_pixels_chi_square() {
    let Some(g) = test_gpu() else { return };
    let cams = [
        Camera::new(1, CameraModel::Pinhole, 40, 30, 30.0),
        Camera::new(2, CameraModel::Pinhole, 24, 36, 30.0),
        Camera::new(3, CameraModel::Pinhole, 50, 20, 30.0),
        Camera::new(4, CameraModel::Pinhole, 30, 30, 30.0),
        Camera::new(5, CameraModel::Pinhole, 12, 10, 30.0),
    ];
    // Each pixel's colour says where it is: (x, y, photo).
    let ds = dataset(&cams, 0, |k, x, y| [x as u8, y as u8, k as u8]);
    let (n, steps, nlev) = (4096usize, 64usize, 2usize);
    let seed = 0x5eed;
    let mut o = sampler(&g, &ds, seed, n, nlev);
    let bins = 4u32;
    let nb = ds.train.len() * (bins * bins) as usize;
    let bin = |k: usize, x: u32, y: u32| {
        let (w, h) = ds.photos[ds.train[k]].img.dimensions();
        k * (bins * bins) as usize + ((y * bins / h) * bins + x * bins / w) as usize
    };
    let mut gpu_bins = vec![0u64; nb];
    let mut gpu_photos = vec![0u64; ds.train.len()];
    let mut cpu_bins = vec![0u64; nb];
    let mut jit_bins = vec![vec![0u64; 20]; nlev];
    for step in 0..steps {
        let (_, idx, jit, tgt) = o.draw(&g, step);
        for i in 0..n {
            let c = |a: usize| (tgt[3 * i + a] * 255.0).round() as u32;
            let (x, y, k) = (c(0), c(1), c(2) as usize);
            assert_eq!(k, idx[i] as usize, "the colour's photo is the latent index");
            gpu_photos[k] += 1;
            gpu_bins[bin(k, x, y)] += 1;
            for l in 0..nlev {
                jit_bins[l][(jit[i * nlev + l] * 20.0) as usize] += 1;
            }
        }
        let cum = ds.train_cum();
        for p in crate::train::step_picks(seed, step, ds.train_pixels(), n) {
            let k = cum.partition_point(|&c| c <= p) - 1;
            let w = ds.photos[ds.train[k]].img.width() as usize;
            let local = p - cum[k];
            cpu_bins[bin(k, (local % w) as u32, (local / w) as u32)] += 1;
        }
    }
    let draws = (n * steps) as f64;
    let total = ds.train_pixels() as f64;
    let mut exp_bins = vec![0.0f64; nb];
    let mut exp_photos = vec![0.0f64; ds.train.len()];
    for (k, &p) in ds.train.iter().enumerate() {
        let (w, h) = ds.photos[p].img.dimensions();
        for y in 0..h {
            for x in 0..w {
                exp_bins[bin(k, x, y)] += draws / total;
                exp_photos[k] += draws / total;
            }
        }
    }
    let (s_ph, s_bin, s_cpu) = (
        chi2(&gpu_photos, &exp_photos),
        chi2(&gpu_bins, &exp_bins),
        chi2(&cpu_bins, &exp_bins),
    );
    let (c_ph, c_bin) = (
        chi2_crit_1e3(exp_photos.len() as f64 - 1.0),
        chi2_crit_1e3(nb as f64 - 1.0),
    );
    println!(
        "{draws} draws: photos chi2 {s_ph:.1} (critical {c_ph:.1}), {nb} position bins chi2 \
         {s_bin:.1} (critical {c_bin:.1}), CPU {s_cpu:.1}"
    );
    assert!(s_ph < c_ph, "photos: chi2 {s_ph:.1} >= {c_ph:.1}");
    assert!(
        s_bin < c_bin,
        "position bins: chi2 {s_bin:.1} >= {c_bin:.1}"
    );
    assert_eq!(gpu_bins, cpu_bins, "the CPU sampler draws the same pixels");
    // Not uniform over photos: the smallest photo (120 pixels of 4920) gets its share, not 1/5.
    assert!((gpu_photos[4] as f64) < 0.05 * draws);
    let e = vec![draws / 20.0; 20];
    for (l, jb) in jit_bins.iter().enumerate() {
        let s = chi2(jb, &e);
        assert!(s < chi2_crit_1e3(19.0), "jitter {l}: chi2 {s:.1}");
    }
}
