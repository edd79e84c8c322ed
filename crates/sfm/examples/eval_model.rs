//! Evaluate any COLMAP model (text or binary) against ground truth, as `flythrough eval-poses` does:
//! `cargo run --release -p flythrough-sfm --example eval_model -- EST_DIR GT [--only-names-of DIR]`
//! where GT is a COLMAP model folder, a Middlebury `*_par.txt` (640x480), `--gt-nerf
//! transforms.json` (instant-ngp) or `--gt-7scenes POSES_DIR` (7-Scenes, needs `--only-names-of`
//! for the photo names). Only ground-truth images whose names appear in `--only-names-of DIR` are
//! kept when given.

use flythrough_core::Reconstruction;
use flythrough_sfm::eval::{
    eval_poses, parse_7scenes, parse_middlebury_par, parse_nerf_transforms,
};
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!(
            "usage: eval_model EST_DIR (GT_DIR | GT_par.txt | --gt-nerf JSON | --gt-7scenes POSES) [--only-names-of DIR]"
        );
        std::process::exit(2);
    }
    let run = || -> Result<String, Box<dyn std::error::Error>> {
        let est = Reconstruction::read(&PathBuf::from(&args[0]))?;
        let mut rest = &args[1..];
        let only: Option<Vec<String>> = match rest.iter().position(|a| a == "--only-names-of") {
            Some(k) => {
                let dir = rest.get(k + 1).ok_or("--only-names-of needs a folder")?;
                let mut names: Vec<String> = std::fs::read_dir(dir)?
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| flythrough_core::images::is_image_name(n))
                    .collect();
                names.sort();
                rest = &rest[..k];
                Some(names)
            }
            None => None,
        };
        let mut gt = match rest {
            [flag, p] if flag == "--gt-nerf" => {
                parse_nerf_transforms(&std::fs::read_to_string(p)?)?
            }
            [flag, p] if flag == "--gt-7scenes" => parse_7scenes(
                &PathBuf::from(p),
                only.as_deref()
                    .ok_or("--gt-7scenes needs --only-names-of")?,
                (585.0, 320.0, 240.0, 640, 480),
            )?,
            [p] if PathBuf::from(p).is_file() => {
                parse_middlebury_par(&std::fs::read_to_string(p)?, 640, 480)?
            }
            [p] => Reconstruction::read(&PathBuf::from(p))?,
            _ => return Err("expected one ground truth".into()),
        };
        if let Some(names) = only {
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
