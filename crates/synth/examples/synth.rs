//! `cargo run --release -p flythrough-synth --example synth -- OUT [SEED IMAGES WIDTH HEIGHT]`:
//! generate a synthetic venue and print what was written (used by scripts/bench-synth.sh).
use flythrough_synth::{SynthOptions, generate};
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first().map(PathBuf::from) else {
        eprintln!("usage: synth OUT [SEED IMAGES WIDTH HEIGHT]");
        std::process::exit(2);
    };
    let num = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let opts = SynthOptions {
        seed: num(1, 1),
        images: num(2, 40) as usize,
        width: num(3, 320) as u32,
        height: num(4, 240) as u32,
        ..Default::default()
    };
    match generate(&opts, &out) {
        Ok(s) => println!(
            "{} photos {}x{} in {:.2} s; faces listed {}, photos with a detectable face {}, points {}",
            s.images,
            opts.width,
            opts.height,
            s.seconds,
            s.faces,
            s.photos_with_detectable_face,
            s.points3d
        ),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
