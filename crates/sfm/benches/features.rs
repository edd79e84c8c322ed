//! Feature front-end benchmark: ms per image for SIFT extraction at 1600 px and ms per pair for
//! matching 8192 x 8192 descriptors, on the Sceaux photos (2832x2128 JPEGs).
//!
//! `cargo bench -p flythrough-sfm --bench features` (prints a table; `FEATURES_BENCH_IMAGES=n`
//! sets how many photos, default 4; `FEATURES_BENCH_DEFAULT_ONLY=1` runs only the default extraction
//! and the matching).

use flythrough_sfm::features::{SiftOptions, extract};
use flythrough_sfm::matching::{MatchOptions, match_pair};
use flythrough_testkit::testdata::shared_data;
use std::time::Instant;

/// CPU time (user + system, all threads) of this process in ms, from `/proc/self/stat`
/// (clock ticks of 10 ms); 0 where unavailable. With other work on the machine, CPU time is the
/// steadier measure; wall time is what a user waits.
fn cpu_ms() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of the whole line are the 12th and 13th after the ")".
    (tick(11) + tick(12)) * 10.0
}

/// Runs `f`, returns its result with wall and CPU ms divided by `per`.
fn timed<T>(per: usize, f: impl FnOnce() -> T) -> (T, f64, f64) {
    let (t, c) = (Instant::now(), cpu_ms());
    let out = f();
    let per = per.max(1) as f64;
    (
        out,
        t.elapsed().as_secs_f64() * 1e3 / per,
        (cpu_ms() - c) / per,
    )
}

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
    let (imgs, decode_ms, decode_cpu) = timed(paths.len(), || {
        paths
            .iter()
            .map(|p| image::open(p).expect("jpeg").to_luma8())
            .collect::<Vec<_>>()
    });
    println!(
        "threads: {}, images: {} ({}x{})",
        rayon::current_num_threads(),
        imgs.len(),
        imgs[0].width(),
        imgs[0].height()
    );
    println!(
        "{:<44} {:>9} {:>9} {:>8}",
        "step", "wall ms", "cpu ms", "count"
    );
    println!(
        "{:<44} {decode_ms:>9.0} {decode_cpu:>9.0} {:>8}",
        "decode JPEG + grey (per image)", ""
    );
    let mut feats = Vec::new();
    for (label, up, max) in [
        ("extract 1600 px, upsampled first octave", true, 1600),
        ("extract 1600 px, no upsampling", false, 1600),
        ("extract 3200 px (COLMAP default size)", true, 3200),
    ] {
        // FEATURES_BENCH_DEFAULT_ONLY=1: only the default row (for a peak-memory reading).
        if std::env::var_os("FEATURES_BENCH_DEFAULT_ONLY").is_some() && !(up && max == 1600) {
            continue;
        }
        let opts = SiftOptions {
            upsample_first_octave: up,
            max_image_size: max,
            ..Default::default()
        };
        let (f, ms, cpu) = timed(imgs.len(), || {
            imgs.iter().map(|i| extract(i, &opts)).collect::<Vec<_>>()
        });
        let mean = f.iter().map(|f| f.keypoints.len()).sum::<usize>() / f.len();
        println!("{label:<44} {ms:>9.0} {cpu:>9.0} {mean:>8}");
        if up && max == 1600 {
            feats = f;
        }
    }
    let opts = MatchOptions::default();
    let pairs = feats.len().saturating_sub(1).max(1);
    let (total, ms, cpu) = timed(pairs, || {
        (0..pairs)
            .map(|k| match_pair(&feats[k], &feats[(k + 1) % feats.len()], &opts).len())
            .sum::<usize>()
    });
    let nf = feats.iter().map(|f| f.keypoints.len()).min().unwrap_or(0);
    println!(
        "{:<44} {ms:>9.0} {cpu:>9.0} {:>8}",
        format!("match pair ({nf} x {nf}), mutual + ratio"),
        total / pairs
    );
}
