//! The work a GPU training step costs the host, on whatever adapter there is (lavapipe in CI; see
//! tests/gpu.rs for when these skip): checkpoints written by the writer thread, not the training
//! thread, and the per-step counters (dispatches, passes, uploaded bytes, submits). A test binary
//! of its own: the device's counters are process-wide, so no other test may use the GPU meanwhile.
#![allow(clippy::explicit_counter_loop)]
mod common;

use flythrough_core::config::TrainConfig;
use flythrough_nerf::data::Dataset;

fn cfg() -> TrainConfig {
    common::small_gpu_cfg()
}

fn dataset(dir: &std::path::Path, c: &TrainConfig) -> Dataset {
    common::small_room_dataset(dir, c)
}

/// A GPU training run with a checkpoint due every 3 steps: the writes happen on the writer thread,
/// so the training thread's time on checkpoints (handing them over, waiting for a write or a
/// read-back) stays under half of what one synchronous write of the same checkpoint takes per
/// checkpoint, and under a tenth of the step time; the per-step counters are reported, the upload
/// (at most 1 KiB) exactly the uniforms of the batch sampler, the Adam step and the two annealed
/// sampling levels (the batch itself is drawn on the device), with one submit per step.
#[test]
fn gpu_training_writes_checkpoints_in_the_background_and_counts_its_work() {
    let Some(g) = flythrough_testkit::test_gpu() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg();
    c.steps = 45;
    c.checkpoint_every = 3;
    c.checkpoint_seconds = 0.0;
    c.metrics_every = 5;
    // Larger grids so a checkpoint (weights + Adam moments) is a few MB: its write is measurable.
    c.hash_table_log2 = 16;
    let ds = dataset(dir.path(), &c);
    let work = dir.path().join("work");
    let t0 = std::time::Instant::now();
    let t = flythrough_nerf::gpu::train::train(&c, &ds, &work, g).unwrap();
    let wall = t0.elapsed().as_secs_f64();
    let step_ms = 1e3 * wall / c.steps as f64;
    let ck = work.join("checkpoints/last.safetensors");
    let bytes = std::fs::metadata(&ck).unwrap().len();
    // The synchronous baseline: the same checkpoint written on this thread (best of 3).
    let (m, a, meta) = flythrough_nerf::checkpoint::load(&ck).unwrap();
    let a = a.unwrap();
    let sync_ms = (0..3)
        .map(|_| {
            let t = std::time::Instant::now();
            flythrough_nerf::checkpoint::save(
                &dir.path().join("sync.safetensors"),
                &m,
                Some(&a),
                &meta,
            )
            .unwrap();
            1e3 * t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    let n_ck = t.checkpoints_written;
    let per_ck = t.checkpoint_wait_ms_per_step * c.steps as f64 / n_ck.max(1) as f64;
    let p = t.gpu_per_step.expect("GPU counters");
    println!(
        "{} steps, {step_ms:.1} ms a step; {n_ck} checkpoints of {:.1} MB in the background: \
         {per_ck:.2} ms of the training thread each vs {sync_ms:.1} ms for a synchronous write; \
         host wait {:.2} ms/step ({:.3} ms/step on checkpoints); per step {p:?}",
        c.steps,
        bytes as f64 / 1e6,
        t.host_wait_ms_per_step,
        t.checkpoint_wait_ms_per_step
    );
    assert_eq!(n_ck, 14);
    assert!(bytes > 4 << 20, "{bytes}");
    assert!(
        per_ck < 0.5 * sync_ms,
        "{per_ck:.2} ms per checkpoint on the training thread vs {sync_ms:.2} ms for a synchronous write"
    );
    assert!(
        t.checkpoint_wait_ms_per_step < 0.1 * step_ms,
        "{:.2} ms/step on checkpoints vs {step_ms:.1} ms a step",
        t.checkpoint_wait_ms_per_step
    );
    assert!(t.host_wait_ms_per_step >= t.checkpoint_wait_ms_per_step);
    assert!(t.host_wait_ms_per_step < step_ms);
    // One submit per step; dispatches in at most as many passes; the batch upload.
    assert_eq!(p.submits_per_step, 1.0);
    assert!(p.dispatches_per_step >= 10.0 && p.passes_per_step >= 1.0);
    assert!(p.passes_per_step <= p.dispatches_per_step);
    let nlev = c.prop_samples.len() + 1;
    // The batch is drawn on the device from the photos uploaded once: per step only uniforms go
    // up, the batch sampler's (seed, step: 8 words), the Adam step's (8 floats) and the sampling
    // uniform (12 words) of each resampled level, whose anneal changes every step. (Uploading the
    // batch instead cost 128 x (48 + 4 x 3) + 128 = 7808 bytes here.)
    let want = 32 + 32 + (nlev - 1) * 48;
    assert_eq!(p.upload_bytes_per_step, want as f64);
    assert!(p.upload_bytes_per_step <= 1024.0);
    assert!(p.readback_bytes_per_step > 0.0);
}
