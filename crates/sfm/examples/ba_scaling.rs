//! Bundle adjustment at scale: time per iteration and peak memory of the reduced camera system's
//! dense and sparse factorisations on the synthetic walk of [`ba::synthetic_walk`] (cameras 0.1 m
//! apart on a closed loop, 100 new points per camera, tracks of about 8 photos, one shared
//! `RADIAL` camera refined, the first photo fixed: the mapper's global BA).
//!
//! usage: `ba_scaling IMAGES [auto|dense|sparse] [ITERATIONS]` (default `auto`, 5 iterations).
//! Prints one JSON line; `scripts/bench-sfm.sh` runs it for 240, 500 and 1000 photos.

use flythrough_sfm::ba::{self, BaOptions, SchurSolver};

/// `VmRSS` / `VmHWM` of this process in MB (Linux; 0 elsewhere).
fn mem_mb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: ba_scaling IMAGES [auto|dense|sparse] [ITERATIONS]";
    let Some(n) = args.get(1).and_then(|a| a.parse::<usize>().ok()) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let solver = match args.get(2).map(String::as_str) {
        None | Some("auto") => SchurSolver::Auto,
        Some("dense") => SchurSolver::Dense,
        Some("sparse") => SchurSolver::Sparse,
        Some(other) => {
            eprintln!("unknown solver {other:?}; {usage}");
            std::process::exit(2);
        }
    };
    let iterations = args
        .get(3)
        .and_then(|a| a.parse::<usize>().ok())
        .unwrap_or(5);
    let (_, mut data) = ba::synthetic_walk(n, 1);
    let rss_problem = mem_mb("VmRSS:");
    let mut fixed = vec![false; n];
    fixed[0] = true;
    let opts = BaOptions {
        max_iterations: iterations,
        loss_scale: 1.0,
        fixed_images: fixed,
        fixed_points: vec![],
        refine_intrinsics: vec![[true, true, true]],
        function_tolerance: 0.0,
        distortion_prior: 1.0,
        solver,
    };
    let cpu0 = cpu_seconds();
    let t = std::time::Instant::now();
    let s = ba::bundle_adjust(&mut data, &opts);
    let wall = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let it = s.iterations.max(1) as f64;
    println!(
        "{}",
        serde_json::json!({
            "images": n,
            "points": data.points.len(),
            "observations": data.obs.len(),
            "solver": format!("{:?}", s.solver).to_lowercase(),
            "columns": s.columns,
            "stored_values": s.nonzeros,
            "iterations": s.iterations,
            "wall_s_per_iteration": wall / it,
            "cpu_s_per_iteration": cpu / it,
            "linearize_s_per_iteration": s.seconds.linearize / it,
            "schur_s_per_iteration": s.seconds.schur / it,
            "solve_s_per_iteration": s.seconds.solve / it,
            "step_s_per_iteration": s.seconds.step / it,
            "rms_px": s.rms_px,
            "problem_rss_mb": rss_problem,
            "peak_rss_mb": mem_mb("VmHWM:"),
            "threads": rayon::current_num_threads(),
        })
    );
}

/// User + system CPU seconds of this process (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |k: usize| f.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
