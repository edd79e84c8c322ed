//! The privacy invariant, through the real binary: only capture and privacy open an original photo.
//! After the privacy stage the original photo folder is deleted (a data-retention policy that keeps
//! only the redacted copies); sfm, train and render still run from `privacy/images`, capture and
//! privacy say they cannot be redone and why, and redacted photos changed after the commit are
//! refused.

use std::path::{Path, PathBuf};

mod common;

use common::{flythrough, run_venue as run};

fn started(run_dir: &Path, stage: &str) -> f64 {
    common::stage_json(run_dir, stage)["started"]
        .as_f64()
        .unwrap()
}

#[test]
fn later_stages_run_from_the_redacted_copies_when_the_originals_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let venue = dir.path().join("venue");
    let cfg = flythrough_testkit::synth_venue(&venue, 24, 160, 120).config_path;
    // Small enough for a test: a few training steps, four tiny frames.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "{text}\n[train]\nsteps = 30\nmax_seconds = 20.0\nbatch_rays = 512\n\n\
             [render]\nwidth = 64\nheight = 32\npreview_width = 64\npreview_height = 48\n\
             max_frames = 4\nstills = 2\nunregistered_keyframes = \"skip\"\n"
        ),
    )
    .unwrap();
    let run_dir = dir.path().join("run");
    let (code, log) = run(&cfg, &run_dir, &["--until", "privacy"]);
    assert_eq!(code, 0, "{log}");
    let (cap0, priv0) = (started(&run_dir, "capture"), started(&run_dir, "privacy"));

    // The originals are deleted.
    std::fs::remove_dir_all(venue.join("photos")).unwrap();
    let (code, log) = flythrough(&[
        "config",
        "--check",
        cfg.to_str().unwrap(),
        "--out",
        run_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("does not exist") && log.contains("cannot be redone"),
        "{log}"
    );

    let (code, log) = run(&cfg, &run_dir, &[]);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("capture: kept as committed; capture cannot be redone: the photo folder")
            && log.contains("does not exist"),
        "{log}"
    );
    assert!(log.contains("privacy: kept as committed"), "{log}");
    for st in ["sfm", "train", "bake", "render"] {
        assert!(
            run_dir.join(st).join("stage.json").is_file(),
            "{st} did not commit: {log}"
        );
    }
    // `[render] source = "auto"` renders from the baked model exactly when it is within 1.5 dB of
    // its NeRF on the held-out photos (on the CPU).
    let bake = &common::stage_json(&run_dir, "bake")["summary"];
    let loss =
        bake["psnr_holdout_nerf"].as_f64().unwrap() - bake["psnr_holdout_baked"].as_f64().unwrap();
    let source = common::stage_json(&run_dir, "render")["summary"]["source"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        source.starts_with("baked"),
        loss <= 1.5,
        "{source}, {loss} dB: {log}"
    );
    assert!(run_dir.join("bake/baked.safetensors").is_file());
    // A baked model changed after the bake stage wrote it is refused by render, naming it.
    let baked = run_dir.join("bake/baked.safetensors");
    let good = std::fs::read(&baked).unwrap();
    let mut bad = good.clone();
    bad.push(0);
    std::fs::write(&baked, &bad).unwrap();
    let (code, log) = run(&cfg, &run_dir, &["--force", "render", "--until", "render"]);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("baked.safetensors") && log.contains("does not match the hash"),
        "{log}"
    );
    std::fs::write(&baked, &good).unwrap();
    assert!(run_dir.join("render/flythrough_360.mp4").is_file());
    assert!(run_dir.join("report.html").is_file());
    assert_eq!(started(&run_dir, "capture"), cap0, "capture was redone");
    assert_eq!(started(&run_dir, "privacy"), priv0, "privacy was redone");
    assert!(
        !venue.join("photos").exists(),
        "nothing recreated the photo folder"
    );

    // An emptied folder is the same as a deleted one; capture and privacy cannot be forced.
    std::fs::create_dir(venue.join("photos")).unwrap();
    for st in ["capture", "privacy"] {
        let (code, log) = run(&cfg, &run_dir, &["--force", st]);
        assert_eq!(code, 2, "{log}");
        assert!(
            log.contains(&format!(
                "--force {st}: {st} cannot be redone: the photo folder"
            )) && log.contains("holds no photo"),
            "{log}"
        );
    }
    // Changed privacy settings cannot be applied without the originals either.
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg).unwrap() + "\n[privacy]\nscore_threshold = 0.4\n",
    )
    .unwrap();
    let (code, log) = run(&cfg, &run_dir, &["--until", "sfm"]);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("privacy: the [privacy] settings changed since it ran"),
        "{log}"
    );
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("score_threshold = 0.4", ""),
    )
    .unwrap();

    // A photo slipped into the committed redacted folder afterwards is refused by every later stage.
    let images = run_dir.join("privacy/images");
    let any: PathBuf = std::fs::read_dir(&images)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(&any, images.join("zz_unredacted.jpg")).unwrap();
    let (code, log) = run(&cfg, &run_dir, &["--until", "sfm", "--force", "sfm"]);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("the redacted photos differ from those the privacy stage committed (added: zz_unredacted.jpg)"),
        "{log}"
    );
    // Issue 20: a failed run still writes report.html: the sections of the stages before the failed
    // one (capture QA and privacy explain it) and, at the top, the failed stage and its error.
    let report = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    let failure = report
        .find("Run failed at stage sfm")
        .unwrap_or_else(|| panic!("no failure section in report.html: {log}"));
    assert!(
        report[failure..].contains("added: zz_unredacted.jpg"),
        "the error is not in the failure section"
    );
    let capture = report
        .find(">Capture quality</h2>")
        .expect("capture section");
    assert!(failure < capture, "the failure is shown first");
    assert!(report.contains(">Privacy: redactions</h2>"));
    for later in ["sfm", "train", "render"] {
        assert!(
            !report.contains(&format!("<h2 id=\"{later}\">")),
            "{later}: a stage from the earlier run is shown"
        );
    }
    assert!(log.contains("report:"), "{log}");

    // Issue 20, defect 1: the same photo copied over a redacted one *and* its new hash written into
    // privacy/stage.json. The file list then matches, but the record's seal does not verify.
    std::fs::remove_file(images.join("zz_unredacted.jpg")).unwrap();
    let name = any.file_name().unwrap().to_str().unwrap().to_string();
    let mut other = std::fs::read(&any).unwrap();
    other.extend_from_slice(b"forged");
    std::fs::write(&any, &other).unwrap();
    let rec_path = run_dir.join("privacy/stage.json");
    let mut rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rec_path).unwrap()).unwrap();
    rec["redacted_images"]["files"][&name] = blake3::hash(&other).to_hex().to_string().into();
    std::fs::write(&rec_path, serde_json::to_string_pretty(&rec).unwrap()).unwrap();
    let (code, log) = run(&cfg, &run_dir, &["--until", "sfm", "--force", "sfm"]);
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("privacy/stage.json") && log.contains("its seal does not verify"),
        "{log}"
    );
}
