//! `flythrough init PHOTO_DIR` writes a venue.toml that `flythrough run` takes with no edits.

use std::path::{Path, PathBuf};

mod common;

use common::flythrough;

#[test]
fn init_writes_a_config_that_runs_without_edits() {
    let dir = tempfile::tempdir().unwrap();
    let synth = dir.path().join("synth");
    flythrough_testkit::synth_venue(&synth, 12, 96, 72);
    // The photos under names that sort against the capture order: Z_IMG_0001 ... A_IMG_0012. The
    // keyframes must follow the EXIF capture time, not the names.
    let photos = dir.path().join("Corner Café");
    std::fs::create_dir(&photos).unwrap();
    let mut shot_order: Vec<String> = Vec::new();
    for i in 1..=12 {
        let prefix = (b'A' + (12 - i) as u8) as char;
        let name = format!("{prefix}_IMG_{i:04}.JPG");
        std::fs::copy(
            synth.join("photos").join(format!("IMG_{i:04}.JPG")),
            photos.join(&name),
        )
        .unwrap();
        shot_order.push(name);
    }
    let p = photos.to_str().unwrap();
    let (code, log) = flythrough(&["init", p]);
    assert_eq!(code, 0, "{log}");
    let cfg = photos.join("venue.toml");
    assert!(
        log.contains(&format!("flythrough run {}", cfg.display())),
        "{log}"
    );

    let text = std::fs::read_to_string(&cfg).unwrap();
    let c = flythrough_core::Config::parse(&text, &cfg).unwrap();
    assert_eq!(c.venue.name, "Corner-Caf\u{e9}");
    assert_eq!(c.venue.photos, ".");
    // 12 photos: 3 keyframes, first, middle and last of the capture order.
    assert_eq!(
        c.venue.keyframes,
        [
            shot_order[0].clone(),
            shot_order[6].clone(),
            shot_order[11].clone()
        ]
    );
    assert!(c.calibration.is_empty());
    // Every key of every section is there, commented; calibration is explained.
    let defaults = flythrough_core::Config::defaults_documented();
    for line in defaults
        .lines()
        .filter(|l| l.contains(" = ") && !l.starts_with('#'))
    {
        let key = line.split(" = ").next().unwrap();
        if ["a", "b", "distance_m"].contains(&key) {
            // The calibration pair is an example, commented out.
            assert!(text.contains(&format!("# {key} = ")), "{key}");
            continue;
        }
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{key} = "))),
            "{key} missing from the written config"
        );
    }
    assert!(
        text.contains("# [[calibration]]") && text.contains("tape measure"),
        "{text}"
    );
    assert!(
        text.contains("# Camera speed along the path"),
        "docs are there"
    );

    // Not overwritten without --force.
    let (code, log) = flythrough(&["init", p]);
    assert_eq!(code, 2, "{log}");
    assert!(
        log.contains("already exists") && log.contains("--force"),
        "{log}"
    );
    let (code, log) = flythrough(&["init", p, "--force"]);
    assert_eq!(code, 0, "{log}");

    // The config passes every check and runs as written. Its run folder is PHOTO_DIR/runs/<name>:
    // capture takes the photos and nothing from the run folder.
    let (code, log) = flythrough(&["config", "--check", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{log}");
    let (code, log) = flythrough(&["run", cfg.to_str().unwrap(), "--until", "privacy"]);
    assert_eq!(code, 0, "{log}");
    let run: PathBuf = photos.join("runs").join("Corner-Caf\u{e9}");
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("capture/stage.json")).unwrap())
            .unwrap();
    assert_eq!(rec["summary"]["photos_found"], 12);
    assert_eq!(rec["summary"]["photos_usable"], 12);
    assert_eq!(rec["summary"]["ignored_files"][0]["file"], "venue.toml");
    assert_eq!(
        std::fs::read_dir(run.join("privacy/images"))
            .unwrap()
            .count(),
        12
    );
    let (code, log) = flythrough(&["run", cfg.to_str().unwrap(), "--until", "privacy"]);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("capture: up to date") && log.contains("privacy: up to date"),
        "the run folder inside the photo folder changed capture's inputs: {log}"
    );
    assert!(Path::new(&run).join("report.html").is_file());
}

/// Issue 20: a config that cannot be written or read is named once. Before, `init` said
/// `ro/venue.toml: ro/venue.toml: Permission denied` (the write named the file, and so did init).
/// The write is made to fail with a folder where its temporary file goes: a read-only folder does
/// not stop root.
#[test]
fn a_config_that_cannot_be_written_or_read_is_named_once() {
    let dir = tempfile::tempdir().unwrap();
    flythrough_testkit::synth_venue(dir.path(), 4, 96, 72);
    let photos = dir.path().join("photos");
    std::fs::create_dir(photos.join("venue.toml.partial")).unwrap();
    let (code, log) = flythrough(&["init", photos.to_str().unwrap()]);
    assert_eq!(code, 2, "{log}");
    let cfg = photos.join("venue.toml");
    assert!(
        log.contains(&format!("{}: cannot write the config: ", cfg.display())),
        "{log}"
    );
    assert_eq!(log.matches("venue.toml").count(), 1, "{log}");
    assert!(!cfg.exists());
    // A config path that cannot be read (a folder) is named once too.
    let (code, log) = flythrough(&["run", photos.to_str().unwrap()]);
    assert_eq!(code, 2, "{log}");
    assert_eq!(log.matches(photos.to_str().unwrap()).count(), 1, "{log}");
}
