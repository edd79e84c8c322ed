//! Exposure conditioning on a synthetic venue whose photos vary by +-1.5 EV.
#![allow(
    clippy::needless_range_loop,
    clippy::field_reassign_with_default,
    clippy::explicit_counter_loop
)]
mod common;

use flythrough_nerf::{LatentChoice, NerfRenderer, RenderOptions};

/// With exposure conditioning the held-out PSNR beats the same model without it by >= 2 dB at the
/// same step count (GLO off in both, so no latent can soak up the exposure), and rendering a training
/// photo with its own exposure reproduces its mean brightness within 3 %.
#[test]
fn exposure_conditioning_beats_none_and_reproduces_brightness() {
    let dir = tempfile::tempdir().unwrap();
    let scene = common::analytic_room(dir.path(), 48, 36, 24, 1.5);
    let mut psnr = Vec::new();
    for exposure in [true, false] {
        let mut cfg = common::tiny_config();
        cfg.steps = 180;
        // The textured room trains well at a high rate (the default suits dark backgrounds too).
        cfg.lr_init = 1e-2;
        cfg.lr_final = 1e-3;
        cfg.glo_dim = 0;
        cfg.exposure_conditioning = exposure;
        let tag = if exposure { "with" } else { "without" };
        let (out, work) = (
            dir.path().join(format!("out_{tag}")),
            dir.path().join(format!("work_{tag}")),
        );
        let s = common::run_with_hooks(&cfg, &scene, &out, &work, &Default::default()).unwrap();
        println!("{tag}: {s:?}");
        psnr.push(s.psnr_holdout);
        if exposure {
            let r = NerfRenderer::load(&out).unwrap();
            let recon =
                flythrough_core::Reconstruction::read(&scene.sfm_dir.join("sparse")).unwrap();
            let cam = &recon.cameras[&1];
            // The brightest and the darkest training photos.
            let mut train: Vec<_> = scene
                .manifest
                .photos
                .iter()
                .filter(|p| r.meta.train_names.contains(&p.file))
                .collect();
            train.sort_by(|a, b| a.exposure.ev.total_cmp(&b.exposure.ev));
            for p in [train[0], train[train.len() - 1]] {
                let im = recon.image_by_name(&p.file).unwrap();
                let img = r.render_camera(
                    cam,
                    &im.pose,
                    &RenderOptions {
                        exposure_ev: Some(p.exposure.ev),
                        latent: LatentChoice::Mean,
                        radius_px: None,
                    },
                );
                let photo = scene.images.load_rgb(&p.file).unwrap();
                let mean = |v: &[u8]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
                let (a, b) = (mean(img.as_raw()), mean(photo.as_raw()));
                println!(
                    "{}: EV {:+.2}: rendered mean {a:.2}, photo {b:.2}",
                    p.file, p.exposure.ev
                );
                assert!(
                    (a / b - 1.0).abs() < 0.03,
                    "{}: mean intensity {a:.2} vs photo {b:.2}",
                    p.file
                );
            }
        }
    }
    println!(
        "held-out PSNR with exposure {:.2} dB, without {:.2} dB",
        psnr[0], psnr[1]
    );
    assert!(
        psnr[0] - psnr[1] >= 2.0,
        "with {:.2} vs without {:.2}",
        psnr[0],
        psnr[1]
    );
}
