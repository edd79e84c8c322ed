//! Crafted and junk input files (issue 20): an `[sfm] import` model whose counts claim more than the
//! file holds is a config error (exit 2) naming the file, never a crash; `config --check` reads the
//! model instead of only seeing that the folder exists; a panic anywhere in the CLI is exit 1 with
//! one line on stderr, never an abort.

mod common;

use common::flythrough;
use flythrough_core::camera::{Camera, CameraModel};
use flythrough_core::colmap::{Image, Reconstruction};
use flythrough_core::pose::Pose;
use std::path::{Path, PathBuf};

const BASE: &str = "[venue]\nname = \"cafe\"\nphotos = \"photos\"\nkeyframes = [\"a.jpg\", \"b.jpg\"]\n\n[[calibration]]\na = \"a.jpg\"\nb = \"b.jpg\"\ndistance_m = 3.0\n\n[sfm]\nimport = \"model\"\n";

/// A venue whose `[sfm] import` is `model/`, holding a valid binary model of its two photos.
fn venue(dir: &Path) -> (PathBuf, PathBuf) {
    let photos = dir.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for n in ["a.jpg", "b.jpg"] {
        std::fs::write(photos.join(n), b"jpeg bytes").unwrap();
    }
    let mut r = Reconstruction::default();
    r.cameras.insert(
        1,
        Camera::new(1, CameraModel::SimpleRadial, 640, 480, 500.0),
    );
    for (id, name) in [(1u32, "a.jpg"), (2, "b.jpg")] {
        r.images.insert(
            id,
            Image {
                id,
                camera_id: 1,
                name: name.into(),
                pose: Pose::identity(),
                points2d: vec![],
            },
        );
    }
    let model = dir.join("model");
    r.write_binary(&model).unwrap();
    let cfg = dir.join("venue.toml");
    std::fs::write(&cfg, BASE).unwrap();
    (cfg, model)
}

/// `images.bin` of `model` with the first image's `num_points2D` set to `n`.
fn craft_points2d_count(model: &Path, n: u64) {
    let p = model.join("images.bin");
    let mut b = std::fs::read(&p).unwrap();
    let at = b.windows(6).position(|w| w == b"a.jpg\0").unwrap() + 6;
    b[at..at + 8].copy_from_slice(&n.to_le_bytes());
    std::fs::write(&p, b).unwrap();
}

fn check(cfg: &Path) -> (i32, String) {
    flythrough(&["config", "--check", cfg.to_str().unwrap()])
}

#[test]
fn a_valid_imported_model_passes_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = venue(dir.path());
    let (code, log) = check(&cfg);
    assert_eq!(code, 0, "{log}");
}

/// Before the bounds, `2^60` panicked with `capacity overflow` (exit 101) and `2^34` aborted on a
/// 512 GB allocation (exit 134) wherever the model was read; `config --check` said ok.
#[test]
fn a_crafted_points2d_count_is_exit_2_naming_the_file() {
    for n in [1u64 << 60, 1u64 << 34] {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, model) = venue(dir.path());
        craft_points2d_count(&model, n);
        let (code, log) = check(&cfg);
        assert_eq!(code, 2, "2^{}: {log}", n.trailing_zeros());
        assert!(
            log.contains("[sfm] import")
                && log.contains("images.bin")
                && log.contains(&format!("claims {n} 2D points")),
            "{log}"
        );
        assert_eq!(
            log.lines().filter(|l| l.contains("error")).count(),
            1,
            "one line: {log}"
        );
        // Everything else that reads a model says the same.
        let (code, log) = flythrough(&[
            "eval-poses",
            "--est",
            model.to_str().unwrap(),
            "--gt",
            model.to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "eval-poses, 2^{}: {log}", n.trailing_zeros());
        assert!(log.contains("images.bin"), "{log}");
    }
}

/// Before, `config --check` looked only for the file names: a folder of junk files was ok.
#[test]
fn a_folder_of_junk_files_is_not_a_model() {
    for ext in ["bin", "txt"] {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, model) = venue(dir.path());
        std::fs::remove_dir_all(&model).unwrap();
        std::fs::create_dir_all(&model).unwrap();
        for stem in ["cameras", "images", "points3D"] {
            std::fs::write(
                model.join(format!("{stem}.{ext}")),
                b"this is not a COLMAP model, just some junk bytes\n",
            )
            .unwrap();
        }
        let (code, log) = check(&cfg);
        assert_eq!(code, 2, "{ext}: {log}");
        assert!(
            log.contains("[sfm] import") && log.contains(&format!("cameras.{ext}")),
            "{ext}: {log}"
        );
        // Empty files: binary ones end before their count, text ones are a model with no image.
        for stem in ["cameras", "images", "points3D"] {
            std::fs::write(model.join(format!("{stem}.{ext}")), b"").unwrap();
        }
        let (code, log) = check(&cfg);
        assert_eq!(code, 2, "{ext}, empty files: {log}");
        let want = if ext == "bin" {
            "cameras.bin: at byte 0"
        } else {
            "holds no image"
        };
        assert!(
            log.contains("[sfm] import") && log.contains(want),
            "{ext}: {log}"
        );
    }
}

/// A panic (provoked through the test build's `FLYTHROUGH_TEST_PANIC` hook) is exit 1 with one line
/// naming it as an internal error, never the default multi-line report or exit 101.
#[test]
fn a_panic_is_exit_1_with_one_line() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flythrough"))
        .args(["config", "--defaults"])
        .env("FLYTHROUGH_TEST_PANIC", "provoked for a test\nsecond line")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("flythrough: internal error: provoked for a test second line at ")
            && lines[0].contains("main.rs:")
            && lines[0].ends_with("; please report it"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing printed after the panic");
}
