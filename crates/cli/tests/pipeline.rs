//! End-to-end behaviour of the stage runner through the real binary: skipping up-to-date stages,
//! re-running on a config change, and a killed run leaving the previous output intact.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flythrough"))
}

fn venue(dir: &Path) -> PathBuf {
    flythrough_testkit::synth_venue(dir, 10, 96, 72).config_path
}

use common::{flythrough as run, stage_json as record};

/// `flythrough run CFG --out RUN --until capture EXTRA...`
fn run_capture(cfg: &Path, run_dir: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["--until", "capture"];
    args.extend_from_slice(extra);
    common::run_venue(cfg, run_dir, &args)
}

#[test]
fn rerun_skips_and_config_change_reruns() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = venue(dir.path());
    let run_dir = dir.path().join("run");
    let (code, log) = run_capture(&cfg, &run_dir, &[]);
    assert_eq!(code, 0, "{log}");
    let first = record(&run_dir, "capture");
    assert_eq!(first["summary"]["photos_usable"], 10);
    let (code, log) = run_capture(&cfg, &run_dir, &[]);
    assert_eq!(code, 0);
    assert!(log.contains("capture: up to date, skipped"), "{log}");
    assert_eq!(
        record(&run_dir, "capture")["started"],
        first["started"],
        "must not run again"
    );
    // Change the capture section: it runs again.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}\n[capture]\nblur_threshold = 12.5\n")).unwrap();
    let (code, log) = run_capture(&cfg, &run_dir, &[]);
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("capture: up to date"), "{log}");
    assert_ne!(
        record(&run_dir, "capture")["config_hash"],
        first["config_hash"]
    );
    // --force redoes it.
    let before = record(&run_dir, "capture")["started"].clone();
    let (code, _) = run_capture(&cfg, &run_dir, &["--force", "capture"]);
    assert_eq!(code, 0);
    assert_ne!(record(&run_dir, "capture")["started"], before);
}

#[test]
fn killed_stage_leaves_previous_output_intact() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = venue(dir.path());
    let run_dir = dir.path().join("run");
    let (code, log) = run_capture(&cfg, &run_dir, &[]);
    assert_eq!(code, 0, "{log}");
    let good = std::fs::read(run_dir.join("capture/manifest.json")).unwrap();
    // Re-run with --force, pause inside the stage after it wrote part of its output, and kill it.
    let mut child = Command::new(exe())
        .args([
            "run",
            cfg.to_str().unwrap(),
            "--out",
            run_dir.to_str().unwrap(),
            "--until",
            "capture",
            "--force",
            "capture",
        ])
        .env("FLYTHROUGH_TEST_PAUSE_IN", "capture")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !run_dir.join(".tmp-capture/partial.marker").exists() {
        assert!(t0.elapsed().as_secs() < 60, "stage never paused");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        std::fs::read(run_dir.join("capture/manifest.json")).unwrap(),
        good,
        "previous output changed"
    );
    assert!(!run_dir.join("capture/partial.marker").exists());
    // The next run finds the stage up to date and, once it holds the lock, removes what the killed
    // process left (its temporary folder, a partial file), never the resumable state.
    assert!(run_dir.join(".tmp-capture").exists());
    std::fs::create_dir_all(run_dir.join(".work/train")).unwrap();
    std::fs::write(run_dir.join(".work/train/last.safetensors"), b"resume").unwrap();
    std::fs::write(run_dir.join(".work/train/last.safetensors.partial"), b"cut").unwrap();
    let (code, log) = run_capture(&cfg, &run_dir, &[]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("capture: up to date"), "{log}");
    assert!(log.contains("removed 2 stale temporary item(s)"), "{log}");
    assert!(!run_dir.join(".tmp-capture").exists());
    assert!(
        !run_dir
            .join(".work/train/last.safetensors.partial")
            .exists()
    );
    assert!(run_dir.join(".work/train/last.safetensors").exists());
}

#[test]
fn exit_codes_and_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = venue(dir.path());
    let text = std::fs::read_to_string(&cfg).unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, text.replace("[venue]", "[venue]\nfoo = 1")).unwrap();
    let (code, log) = run(&["run", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("bad.toml") && log.contains("foo"), "{log}");
    let (code, log) = run(&["run", cfg.to_str().unwrap(), "--until", "nonsense"]);
    assert_eq!(code, 2);
    assert!(log.contains("unknown stage"), "{log}");
    let (code, _) = run(&["frobnicate"]);
    assert_eq!(code, 2);
    // A stage failure is exit 1: a photo folder with only a broken photo.
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(broken.join("x.jpg"), b"not a jpeg").unwrap();
    std::fs::write(broken.join("y.jpg"), b"not a jpeg either").unwrap();
    let c2 = dir.path().join("broken.toml");
    std::fs::write(
        &c2,
        "[venue]\nname = \"b\"\nphotos = \"broken\"\nkeyframes = [\"x.jpg\", \"y.jpg\"]\n",
    )
    .unwrap();
    let (code, log) = run(&["run", c2.to_str().unwrap()]);
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("broken"), "{log}");
    // The documented defaults are a valid config.
    let out = Command::new(exe())
        .args(["config", "--defaults"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let parsed = flythrough_core::Config::parse(
        &String::from_utf8_lossy(&out.stdout),
        Path::new("defaults.toml"),
    );
    assert!(parsed.is_ok(), "{parsed:?}");
}

#[test]
fn originals_are_never_modified() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = venue(dir.path());
    let photos = dir.path().join("photos");
    let before = common::files(&photos);
    // Only capture and privacy open originals; the later stages are covered by the privacy-boundary test.
    let (code, log) = run(&[
        "run",
        cfg.to_str().unwrap(),
        "--out",
        dir.path().join("run").to_str().unwrap(),
        "--until",
        "privacy",
    ]);
    assert_eq!(code, 0, "{log}");
    for (name, bytes) in before {
        assert_eq!(
            std::fs::read(photos.join(&name)).unwrap(),
            bytes,
            "{name} changed"
        );
    }
    assert_eq!(
        std::fs::read_dir(&photos).unwrap().count(),
        10,
        "nothing added to the photo folder"
    );
}

/// `--out` with an unsupported URL scheme is a usage error (exit 2) naming the supported schemes,
/// and nothing is written: the previous version ran every stage into a local folder `./ftp:/host/x`
/// (seen on 2026-12-06). A scheme in capitals is still a URL (`S3://` is `s3://`).
#[test]
fn an_unsupported_url_scheme_is_a_usage_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = venue(&dir.path().join("venue"));
    for args in [
        vec!["run", cfg.to_str().unwrap(), "--out", "ftp://host/x"],
        vec!["batch", cfg.to_str().unwrap(), "--out", "FTP://host/x"],
    ] {
        let out = Command::new(exe())
            .current_dir(dir.path())
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("unsupported URL scheme `ftp://`") && err.contains("s3://"),
            "{err}"
        );
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["venue"], "{args:?} wrote into the working folder");
    }
    assert!(flythrough_core::config::is_url("S3://bucket/runs"));
}
