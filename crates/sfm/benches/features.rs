//! Feature front-end benchmark: ms per image for SIFT extraction at 1600 px and ms per pair for
//! matching 8192 x 8192 descriptors, on the Sceaux photos (2832x2128 JPEGs).
//!
//! `cargo bench -p flythrough-sfm --bench features` (prints a table; `FEATURES_BENCH_IMAGES=n`
//! sets how many photos, default 4).

use flythrough_core::testdata::shared_data;
use flythrough_sfm::features::{SiftOptions, extract};
use flythrough_sfm::matching::{MatchOptions, match_pair};
use std::time::Instant;

fn main() {
    let Some(dir) = shared_data("sceaux_castle/images") else {
        return;
    };
    let n: usize = std::env::var("FEATURES_BENCH_IMAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("sceaux images")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("jpg")))
        .collect();
    paths.sort();
    paths.truncate(n);
    let t = Instant::now();
    let imgs: Vec<_> = paths
        .iter()
        .map(|p| image::open(p).expect("jpeg").to_luma8())
        .collect();
    let decode_ms = t.elapsed().as_secs_f64() * 1e3 / imgs.len() as f64;
    println!(
        "threads: {}, images: {} ({}x{})",
        rayon::current_num_threads(),
        imgs.len(),
        imgs[0].width(),
        imgs[0].height()
    );
    println!("{:<44} {:>10} {:>10}", "step", "ms/item", "count");
    println!(
        "{:<44} {:>10.0} {:>10}",
        "decode JPEG + grey", decode_ms, ""
    );
    let mut feats = Vec::new();
    for (label, up, max) in [
        ("extract 1600 px, upsampled first octave", true, 1600),
        ("extract 1600 px, no upsampling", false, 1600),
    ] {
        let opts = SiftOptions {
            upsample_first_octave: up,
            max_image_size: max,
            ..Default::default()
        };
        let t = Instant::now();
        let f: Vec<_> = imgs.iter().map(|i| extract(i, &opts)).collect();
        let ms = t.elapsed().as_secs_f64() * 1e3 / imgs.len() as f64;
        let mean = f.iter().map(|f| f.keypoints.len()).sum::<usize>() / f.len();
        println!("{label:<44} {ms:>10.0} {mean:>10}");
        if up {
            feats = f;
        }
    }
    let opts = MatchOptions::default();
    let t = Instant::now();
    let mut total = 0;
    let pairs = feats.len().saturating_sub(1).max(1);
    for k in 0..pairs {
        total += match_pair(&feats[k], &feats[(k + 1) % feats.len()], &opts).len();
    }
    let ms = t.elapsed().as_secs_f64() * 1e3 / pairs as f64;
    let nf = feats.iter().map(|f| f.keypoints.len()).min().unwrap_or(0);
    println!(
        "{:<44} {ms:>10.0} {:>10}",
        format!("match pair (>= {nf} x {nf}), mutual + ratio"),
        total / pairs
    );
}
