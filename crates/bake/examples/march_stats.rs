//! Where a baked model's march spends its steps: per ray of 360° frames from the registered cameras,
//! march iterations, grid lookups, composited samples (and those above a weight), split by whether
//! the ray ends inside the unit ball; and how busy the lanes of the renderer's packet march are (its
//! lane groups: `LANES` neighbouring pixels of a row stepping in lockstep).
//!
//! `cargo run --release --example march_stats -- RUN_DIR [width]`

use flythrough_bake::BakedModel;
use flythrough_core::{BakeOutput, RunDir, SfmOutput};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let run = RunDir::new(args.get(1).expect("a run folder"));
    let width: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(512);
    let bake = BakeOutput::open(&run).expect("a bake stage");
    let model = BakedModel::from_bytes(&std::fs::read(bake.model()).unwrap()).unwrap();
    let rec = SfmOutput::open(&run).unwrap().model().unwrap();
    let height = width / 2;
    let (mut n, mut steps, mut lookups, mut comp, mut heavy) = (0u64, 0u64, 0u64, 0u64, 0u64);
    // Per lane group of LANES pixels: the most steps of its rays (the group's iterations).
    let (mut packet_iters, mut packet_max) = (0u64, 0u64);
    for im in rec.images.values().take(3) {
        let c = im.pose.center();
        let o = model.norm.point([c.x, c.y, c.z]);
        let o = [o[0] as f32, o[1] as f32, o[2] as f32];
        for y in 0..height {
            for x in 0..width {
                let lon = (x as f32 + 0.5) / width as f32 * std::f32::consts::TAU;
                let lat = (0.5 - (y as f32 + 0.5) / height as f32) * std::f32::consts::PI;
                let d = [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()];
                let (mut cs, mut hs) = (0u64, 0u64);
                let s = model
                    .grid
                    .march_visiting(o, d, model.norm.near as f32, &mut |v| {
                        cs += 1;
                        if v.weight > 1e-3 {
                            hs += 1;
                        }
                    });
                n += 1;
                packet_max = packet_max.max(s.steps as u64);
                if (x + 1) % flythrough_bake::grid::LANES == 0 || x + 1 == width {
                    packet_iters += packet_max;
                    packet_max = 0;
                }
                steps += s.steps as u64;
                lookups += s.lookups as u64;
                comp += cs;
                heavy += hs;
            }
        }
    }
    let per = |v: u64| v as f64 / n as f64;
    println!(
        "{n} rays: {:.1} steps, {:.1} lookups, {:.1} composited samples, {:.1} with weight > 1e-3 per ray",
        per(steps),
        per(lookups),
        per(comp),
        per(heavy)
    );
    println!(
        "lane groups of {}: {:.1} iterations per ray's group, lanes {:.0} % busy",
        flythrough_bake::grid::LANES,
        packet_iters as f64 * flythrough_bake::grid::LANES as f64 / n as f64,
        100.0 * steps as f64 / (packet_iters as f64 * flythrough_bake::grid::LANES as f64)
    );
}
