//! Every config gap is caught by `flythrough config --check` (and by `flythrough run` before its first
//! stage, through the same code), with a message naming the file, the key and what is wrong.

use std::path::{Path, PathBuf};
use std::process::Command;

fn flythrough(args: &[&str], path_env: Option<&str>) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flythrough"));
    cmd.args(args);
    if let Some(p) = path_env {
        cmd.env("PATH", p);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

const BASE: &str = "[venue]\nname = \"cafe\"\nphotos = \"photos\"\nkeyframes = [\"a.jpg\", \"b.jpg\", \"c.jpg\"]\n\n[[calibration]]\na = \"a.jpg\"\nb = \"b.jpg\"\ndistance_m = 3.0\n";

/// A venue folder with four (unreadable, which no check before the stages decodes) photos.
fn venue(dir: &Path) -> PathBuf {
    let photos = dir.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for n in ["a.jpg", "b.jpg", "c.jpg", "d.jpg"] {
        std::fs::write(photos.join(n), b"jpeg bytes").unwrap();
    }
    std::fs::write(dir.join("secret.jpg"), b"outside the photo folder").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.join("secret.jpg"), photos.join("link.jpg")).unwrap();
    dir.join("venue.toml")
}

fn check(cfg: &Path, text: &str) -> (i32, String) {
    std::fs::write(cfg, text).unwrap();
    flythrough(&["config", "--check", cfg.to_str().unwrap()], None)
}

#[test]
fn each_config_gap_is_rejected_by_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = venue(dir.path());
    let (code, log) = check(&cfg, BASE);
    assert_eq!(code, 0, "the base config is valid: {log}");

    let kf = |list: &str| BASE.replace("[\"a.jpg\", \"b.jpg\", \"c.jpg\"]", list);
    let dist = |d: &str| BASE.replace("distance_m = 3.0", &format!("distance_m = {d}"));
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "absolute keyframe",
            kf("[\"/etc/passwd\", \"b.jpg\"]"),
            &[
                "[venue] keyframes #1 = \"/etc/passwd\"",
                "without a folder part",
            ],
        ),
        (
            "keyframe outside the folder",
            kf("[\"a.jpg\", \"../secret.jpg\"]"),
            &[
                "[venue] keyframes #2 = \"../secret.jpg\"",
                "without a folder part",
            ],
        ),
        (
            "keyframe in a sub-folder",
            kf("[\"a.jpg\", \"sub/b.jpg\"]"),
            &["keyframes #2", "path separator"],
        ),
        (
            "keyframe that is a dot-dot",
            kf("[\"a.jpg\", \"..\"]"),
            &["keyframes #2 = \"..\"", "must be a photo's file name"],
        ),
        (
            "keyframe linking outside the folder",
            kf("[\"a.jpg\", \"link.jpg\"]"),
            &["keyframes #2 = \"link.jpg\"", "outside the photo folder"],
        ),
        (
            "keyframe not in the folder",
            kf("[\"a.jpg\", \"nope.jpg\"]"),
            &["keyframes #2 = \"nope.jpg\"", "is not in the photo folder"],
        ),
        (
            "one keyframe",
            kf("[\"a.jpg\"]"),
            &["[venue] keyframes lists 1 photo(s)", "at least 2"],
        ),
        (
            "no keyframes",
            kf("[]"),
            &["[venue] keyframes lists 0 photo(s)"],
        ),
        (
            "a keyframe repeated at once",
            kf("[\"a.jpg\", \"b.jpg\", \"b.jpg\"]"),
            &["[venue] keyframes #3", "repeats the keyframe before it"],
        ),
        (
            "calibration photo outside the folder",
            BASE.replace("a = \"a.jpg\"", "a = \"../secret.jpg\""),
            &[
                "[[calibration]] #1 a = \"../secret.jpg\"",
                "without a folder part",
            ],
        ),
        (
            "calibration photo missing",
            BASE.replace("b = \"b.jpg\"", "b = \"zzz.jpg\""),
            &[
                "[[calibration]] #1 b = \"zzz.jpg\"",
                "not in the photo folder",
            ],
        ),
        (
            "millimetres typed as metres",
            dist("3600"),
            &[
                "distance_m = 3600",
                "in metres",
                "within 0.05-100 m",
                "write distance_m = 3.6",
            ],
        ),
        (
            "an absurd distance",
            dist("1e300"),
            &[
                "[[calibration]] #1",
                "distance_m = 1e300",
                "within 0.05-100 m",
            ],
        ),
        (
            "a distance too small",
            dist("0.001"),
            &["distance_m = 0.001", "within 0.05-100 m"],
        ),
        (
            "a privacy override for a photo that is not there",
            format!("{BASE}\n[[privacy.keep]]\nphoto = \"bag.jpg\"\nrect = [1, 2, 3, 4]\n"),
            &[
                "[[privacy.keep]] #1 photo = \"bag.jpg\"",
                "not in the photo folder",
            ],
        ),
        (
            "an extra region outside the folder",
            format!(
                "{BASE}\n[[privacy.extra_regions]]\nphoto = \"/tmp/x.jpg\"\nrect = [1, 2, 3, 4]\n"
            ),
            &["[[privacy.extra_regions]] #1 photo = \"/tmp/x.jpg\""],
        ),
        (
            "an appearance photo that is not there",
            format!("{BASE}\n[render]\nappearance = \"IMG_9.JPG\"\n"),
            &[
                "[render] appearance = \"IMG_9.JPG\"",
                "not in the photo folder",
            ],
        ),
        (
            "an import folder that is not a model",
            format!("{BASE}\n[sfm]\nimport = \"colmap/sparse/0\"\n"),
            &[
                "[sfm] import = \"colmap/sparse/0\"",
                "not a COLMAP model folder",
            ],
        ),
        (
            "every photo held out",
            format!("{BASE}\n[train]\nholdout_every = 1\n"),
            &["[train] holdout_every = 1", "none to train on"],
        ),
        (
            "a misspelt choice",
            format!("{BASE}\n[render]\nheading = \"forward\"\n"),
            &[
                "heading",
                "unknown variant `forward`",
                "`travel`",
                "`keyframes`",
            ],
        ),
    ];
    for (what, text, wants) in &cases {
        let (code, log) = check(&cfg, text);
        assert_eq!(code, 2, "{what}: accepted: {log}");
        assert!(
            log.contains("venue.toml"),
            "{what}: the file is not named: {log}"
        );
        for w in *wants {
            assert!(log.contains(w), "{what}: {w:?} missing from: {log}");
        }
    }

    // A run folder that is the photo folder.
    std::fs::write(&cfg, BASE).unwrap();
    let photos = dir.path().join("photos");
    let (code, log) = flythrough(
        &[
            "config",
            "--check",
            cfg.to_str().unwrap(),
            "--out",
            photos.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("is the photo folder"), "{log}");

    // encoder = "ffmpeg" without ffmpeg on the PATH is found before training, not after.
    std::fs::write(&cfg, format!("{BASE}\n[render]\nencoder = \"ffmpeg\"\n")).unwrap();
    let (code, log) = flythrough(&["config", "--check", cfg.to_str().unwrap()], Some(""));
    assert_eq!(code, 2, "{log}");
    assert!(
        log.contains("[render] encoder = \"ffmpeg\"") && log.contains("not on the PATH"),
        "{log}"
    );

    // A folder with one photo cannot make a reconstruction.
    let one = dir.path().join("one");
    std::fs::create_dir(&one).unwrap();
    std::fs::write(one.join("a.jpg"), b"x").unwrap();
    let (code, log) = check(
        &cfg,
        &BASE.replace("photos = \"photos\"", "photos = \"one\""),
    );
    assert_eq!(code, 2, "{log}");
    assert!(
        log.contains("holds 1 photo") && log.contains("at least 2"),
        "{log}"
    );
}

/// `run` makes the same checks before its first stage: nothing is written but the lock.
#[test]
fn run_refuses_a_bad_config_before_any_stage() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = venue(dir.path());
    std::fs::write(&cfg, BASE.replace("\"c.jpg\"]", "\"../secret.jpg\"]")).unwrap();
    let run_dir = dir.path().join("run");
    let (code, log) = flythrough(
        &[
            "run",
            cfg.to_str().unwrap(),
            "--out",
            run_dir.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("keyframes #3 = \"../secret.jpg\""), "{log}");
    let written: Vec<String> = std::fs::read_dir(&run_dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(written.iter().all(|n| n == ".lock"), "{written:?}");
}
