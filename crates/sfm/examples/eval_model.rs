//! Evaluate any COLMAP model (text or binary) against ground truth, as `flythrough eval-poses` does:
//! `cargo run --release -p flythrough-sfm --example eval_model -- EST_DIR GT`
//! where GT is a COLMAP model folder or a Middlebury `*_par.txt` (then `--size W H`, default 640 480).
//! Only ground-truth images whose names appear in `--only-names-of DIR` are kept when given.

use flythrough_core::Reconstruction;
use flythrough_sfm::eval::{eval_poses, parse_middlebury_par};
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: eval_model EST_DIR GT_DIR|GT_par.txt [--only-names-of DIR]");
        std::process::exit(2);
    }
    let run = || -> Result<String, Box<dyn std::error::Error>> {
        let est = Reconstruction::read(&PathBuf::from(&args[0]))?;
        let gt_path = PathBuf::from(&args[1]);
        let mut gt = if gt_path.is_file() {
            parse_middlebury_par(&std::fs::read_to_string(&gt_path)?, 640, 480)?
        } else {
            Reconstruction::read(&gt_path)?
        };
        if let (Some(flag), Some(dir)) = (args.get(2), args.get(3))
            && flag == "--only-names-of"
        {
            let names: Vec<String> = std::fs::read_dir(dir)?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect();
            gt.images.retain(|_, im| names.contains(&im.name));
        }
        Ok(serde_json::to_string(&eval_poses(&est, &gt))?)
    };
    match run() {
        Ok(s) => println!("{s}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
