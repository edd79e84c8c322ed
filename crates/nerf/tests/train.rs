//! End-to-end training tests on small scenes (release mode; each bounded in time).
#![allow(
    clippy::needless_range_loop,
    clippy::field_reassign_with_default,
    clippy::explicit_counter_loop
)]
mod common;

use flythrough_nerf::{LatentChoice, NerfRenderer, RenderOptions};
use std::time::Instant;

fn eval_psnr(out: &std::path::Path) -> (f64, serde_json::Value) {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
    (v["mean_psnr"].as_f64().unwrap(), v)
}

/// Tiny synthetic venue (64x48 photos): at most 90 s of training reaches >= 20 dB held-out PSNR.
/// The run is interrupted right after its step-100 checkpoint (a simulated kill) and re-run: it
/// resumes from step 100, not from zero.
#[test]
fn tiny_room_reaches_20db_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let scene = common::analytic_room(dir.path(), 64, 48, 24, 0.0);
    let mut cfg = common::tiny_config();
    cfg.steps = 2000;
    cfg.max_seconds = 60.0;
    // A textured room trains best at a high rate (the default 3e-3 suits dark backgrounds too).
    cfg.lr_init = 1e-2;
    cfg.lr_final = 1e-3;
    let (out, work) = (dir.path().join("out"), dir.path().join("work"));
    let t0 = Instant::now();
    // A simulated kill: the stop hook ends the call right after the step-100 checkpoint.
    let kill = flythrough_core::stage::Hooks {
        stop_after_checkpoint: Some(std::sync::Arc::new(|step| step >= 100)),
        ..Default::default()
    };
    let e = common::run_with_hooks(&cfg, &scene, &out, &work, &kill).unwrap_err();
    assert!(
        matches!(e, flythrough_nerf::NerfError::Interrupted(100)),
        "{e}"
    );
    // The resume state after the kill: weights + Adam moments, in the work folder.
    let (_, adam, meta) =
        flythrough_nerf::checkpoint::load(&work.join("checkpoints/last.safetensors")).unwrap();
    assert!(adam.is_some() && meta.adam.is_some() && meta.step == 100);
    let resume_bytes = std::fs::metadata(work.join("checkpoints/last.safetensors"))
        .unwrap()
        .len();
    let s = common::run_with_hooks(&cfg, &scene, &out, &work, &Default::default()).unwrap();
    assert_eq!(s.resumed_from, Some(100));
    let steps = s.steps;
    assert_eq!(s.steps_this_run, steps - 100);
    // metrics.jsonl continues where the first call stopped: steps 10, 20, ... without a restart.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .windows(2)
            .all(|w| w[1]["step"].as_u64() > w[0]["step"].as_u64())
    );
    assert_eq!(lines[0]["step"].as_u64(), Some(10));
    println!("summary {s:?} in {:.1}s", t0.elapsed().as_secs_f64());
    assert!(s.train_seconds <= 90.0 + 30.0);
    let (psnr, v) = eval_psnr(&out);
    println!("{v:#}");
    assert!(psnr >= 20.0, "held-out PSNR {psnr:.2} dB < 20");
    // Outputs exist and the render API loads them.
    for f in [
        "metrics.jsonl",
        "loss.png",
        "model.json",
        "checkpoints/final.safetensors",
        "checkpoints/final.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // The committed checkpoint is weights only: no Adam state, a third of the resume file's size
    // (parameters + two moments of the same size), and it loads for rendering.
    let fin = out.join("checkpoints/final.safetensors");
    let (model, adam, meta) = flythrough_nerf::checkpoint::load(&fin).unwrap();
    assert!(adam.is_none() && meta.adam.is_none());
    let weight_bytes: usize = model.params.iter().map(|p| 4 * p.len()).sum();
    let final_bytes = std::fs::metadata(&fin).unwrap().len();
    println!(
        "checkpoint bytes: resume {resume_bytes}, final {final_bytes}, weights {weight_bytes}"
    );
    assert!(
        final_bytes < weight_bytes as u64 + 64 * 1024,
        "{final_bytes}"
    );
    assert!(
        3 * final_bytes < resume_bytes + 3 * 64 * 1024,
        "{final_bytes} vs {resume_bytes}"
    );
    let r = NerfRenderer::load(&out).unwrap();
    let o = r.render_rays(
        &[[1.6, -0.3, 0.0]],
        &[[-1.0, 0.0, 0.0]],
        &RenderOptions {
            latent: LatentChoice::Zero,
            ..Default::default()
        },
    );
    assert_eq!(o.rgb.len(), 1);
    assert!(o.opacity[0] > 0.99 && o.depth[0] > 0.3, "{o:?}");
}
