//! Write the synthetic venue (`flythrough synth` without the CLI) for the SfM benchmarks:
//! `synth_venue OUT IMAGES [WIDTH HEIGHT]` (default 320x240). The walk is one closed loop around
//! the room whatever the photo count, so 1000 photos are about 1 cm apart and the walk's end
//! returns to its start (a loop closure). Prints the summary as JSON.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: synth_venue OUT IMAGES [WIDTH HEIGHT]";
    let (Some(out), Some(images)) = (
        args.first(),
        args.get(1).and_then(|a| a.parse::<usize>().ok()),
    ) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let size = |k: usize, d: u32| args.get(k).and_then(|a| a.parse().ok()).unwrap_or(d);
    let opts = flythrough_synth::SynthOptions {
        images,
        width: size(2, 320),
        height: size(3, 240),
        ..Default::default()
    };
    match flythrough_synth::generate(&opts, std::path::Path::new(out)) {
        Ok(s) => println!("{}", serde_json::to_string(&s).expect("summary")),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
