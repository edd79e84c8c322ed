//! Real photos: the Middlebury temple ring (19 photos) with its ground-truth cameras, every 8th photo
//! held out, photos downscaled 4x (160x120) to keep CI short. Skips when the shared data is absent.
#![allow(
    clippy::needless_range_loop,
    clippy::field_reassign_with_default,
    clippy::explicit_counter_loop
)]
mod common;

/// PSNR of the mean training colour as a constant image on the held-out photos (the trivial baseline
/// of `shared/data/README.md`), at the same resolution.
fn mean_colour_baseline(scene: &common::Scene, downscale: u32) -> f64 {
    let names = scene.images.names().to_vec();
    let mut sum = [0.0f64; 3];
    let mut count = 0.0;
    let load = |n: &str| {
        let im = scene.images.load_rgb(n).unwrap();
        image::imageops::resize(
            &im,
            im.width() / downscale,
            im.height() / downscale,
            image::imageops::FilterType::Triangle,
        )
    };
    // Only photos that are in the model (the folder has exactly those 19).
    for (i, n) in names.iter().enumerate() {
        if i % 8 != 0 {
            for p in load(n).pixels() {
                for k in 0..3 {
                    sum[k] += p.0[k] as f64 / 255.0;
                }
                count += 1.0;
            }
        }
    }
    let mean = sum.map(|s| s / count);
    let mut psnr = Vec::new();
    for (i, n) in names.iter().enumerate() {
        if i % 8 == 0 {
            let im = load(n);
            let mut se = 0.0;
            for p in im.pixels() {
                for k in 0..3 {
                    se += (p.0[k] as f64 / 255.0 - mean[k]).powi(2);
                }
            }
            psnr.push(-10.0 * (se / (im.len() as f64)).log10());
        }
    }
    psnr.iter().sum::<f64>() / psnr.len() as f64
}

#[test]
fn temple_beats_mean_colour_by_8db_within_2_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let Some(scene) = common::temple(dir.path()) else {
        return;
    };
    let downscale = 4;
    let base = mean_colour_baseline(&scene, downscale);
    let mut cfg = common::tiny_config();
    cfg.image_downscale = downscale;
    cfg.steps = 5000;
    cfg.max_seconds = 80.0;
    let (out, work) = (dir.path().join("out"), dir.path().join("work"));
    let s = flythrough_nerf::run(&cfg, &scene.images, None, &scene.sfm_dir, &out, &work).unwrap();
    println!("temple: {s:?}; mean-colour baseline {base:.2} dB");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (first, last) = (
        lines[0]["loss"].as_f64().unwrap(),
        lines[lines.len() - 1]["loss"].as_f64().unwrap(),
    );
    println!("loss {first:.4} -> {last:.4}");
    assert!(last < 0.5 * first, "loss did not fall: {first} -> {last}");
    let psnr = s.psnr_holdout;
    assert!(
        psnr >= base + 8.0,
        "held-out {psnr:.2} dB vs mean colour {base:.2} dB"
    );
}
