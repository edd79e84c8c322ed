//! Run the SfM stage on a folder of photos that need no redaction (benchmark sets), without the CLI.
//!
//! ```text
//! cargo run --release -p flythrough-sfm --example sfm_folder -- PHOTOS OUT \
//!     [--max-image-size N] [--max-features N] [--features-per-megapixel N] [--gt-middlebury PAR.txt]
//!     [--gt COLMAP_DIR] [--config VENUE.toml]
//!     [--gt-nerf transforms.json] [--gt-7scenes POSES_DIR] [--calibrate-from-gt A B]
//! ```
//! `--gt-nerf` reads an instant-ngp `transforms.json`; `--gt-7scenes` a 7-Scenes `poses/` folder
//! (metric, f 585 at 640x480); `--calibrate-from-gt A B` adds one `[[calibration]]` pair with the
//! ground-truth distance between photos A and B (metric ground truth only).
//! ```text
//! ```
//! Writes `OUT/sparse`, `OUT/transforms.json`, `OUT/report.json` and prints a one-line JSON summary
//! (plus `OUT/eval.json` with a ground truth).

use flythrough_core::LoadedConfig;
use flythrough_core::config::Config;
use flythrough_core::stage::FromConfig;
use flythrough_sfm::eval::{
    eval_poses, parse_7scenes, parse_middlebury_par, parse_nerf_transforms,
};
use std::path::PathBuf;

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        return Err("usage: sfm_folder PHOTOS OUT [--max-image-size N] [--max-features N] [--features-per-megapixel N] [--gt-middlebury PAR] [--gt DIR] [--gt-nerf JSON] [--gt-7scenes POSES] [--calibrate-from-gt A B] [--config TOML]".into());
    }
    let photos = PathBuf::from(&args[0]);
    let out = PathBuf::from(&args[1]);
    let mut config = Config::default();
    let (mut gt_par, mut gt_dir, mut config_path) = (None, None, None);
    let (mut gt_nerf, mut gt_7scenes, mut calib) = (None, None, None);
    let mut i = 2;
    while i < args.len() {
        let v = args
            .get(i + 1)
            .ok_or(format!("{} needs a value", args[i]))?;
        match args[i].as_str() {
            "--max-image-size" => config.sfm.max_image_size = v.parse()?,
            "--max-features" => config.sfm.max_features = v.parse()?,
            "--features-per-megapixel" => config.sfm.features_per_megapixel = v.parse()?,
            "--gt-middlebury" => gt_par = Some(PathBuf::from(v)),
            "--gt" => gt_dir = Some(PathBuf::from(v)),
            "--config" => config_path = Some(PathBuf::from(v)),
            "--gt-nerf" => gt_nerf = Some(PathBuf::from(v)),
            "--gt-7scenes" => gt_7scenes = Some(PathBuf::from(v)),
            "--calibrate-from-gt" => {
                let b = args
                    .get(i + 2)
                    .ok_or("--calibrate-from-gt needs two photos")?;
                calib = Some((v.clone(), b.clone()));
                i += 1;
            }
            other => return Err(format!("unknown option {other}").into()),
        }
        i += 2;
    }
    let images = flythrough_testkit::cleared_images(&photos)?;
    let gt = match (gt_par, gt_dir, gt_nerf, gt_7scenes) {
        (Some(p), ..) => {
            let first = images.load_rgb(&images.names()[0])?;
            Some(parse_middlebury_par(
                &std::fs::read_to_string(&p)?,
                first.width(),
                first.height(),
            )?)
        }
        (None, Some(d), ..) => Some(flythrough_core::Reconstruction::read(&d)?),
        (None, None, Some(p), _) => Some(parse_nerf_transforms(&std::fs::read_to_string(&p)?)?),
        (None, None, None, Some(d)) => Some(parse_7scenes(
            &d,
            images.names(),
            (585.0, 320.0, 240.0, 640, 480),
        )?),
        _ => None,
    };
    if let Some((a, b)) = calib {
        let g = gt
            .as_ref()
            .ok_or("--calibrate-from-gt needs a ground truth")?;
        let c = |n: &str| {
            g.image_by_name(n)
                .map(|im| im.pose.center())
                .ok_or(format!("{n} is not in the ground truth"))
        };
        let distance_m = (c(&a)? - c(&b)?).norm();
        config.calibration = vec![flythrough_core::config::Calibration { a, b, distance_m }];
    }
    let cfg = match config_path {
        // A venue config (its [sfm] keys and calibration pairs; size options above are ignored).
        Some(p) => Config::load(&p)?,
        None => LoadedConfig {
            config,
            path: photos.join("none.toml"),
            dir: photos.clone(),
            photos_dir: photos.clone(),
        },
    };
    std::fs::create_dir_all(&out)?;
    let inputs = flythrough_sfm::SfmInputs::from_config(&cfg);
    let summary = flythrough_sfm::run(&inputs, &images, None, &out)?;
    println!("{}", serde_json::to_string(&summary)?);
    let est = flythrough_core::Reconstruction::read(&out.join("sparse"))?;
    if let Some(mut gt) = gt {
        // Evaluate only the photos of this folder.
        gt.images.retain(|_, im| images.names().contains(&im.name));
        let e = eval_poses(&est, &gt);
        let s = serde_json::to_string_pretty(&e)?;
        std::fs::write(out.join("eval.json"), &s)?;
        println!("{s}");
    }
    Ok(())
}
