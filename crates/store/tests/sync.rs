//! The sync layer over a `file://` object store: a committed stage goes up with `stage.json` last, a
//! fresh machine sees it as a sparse stage and downloads its files only when a later stage needs
//! them, resumable state goes up while a stage runs and comes back on another machine, and partial,
//! truncated or corrupted remote stages are never used.

use flythrough_core::run::{RunDir, StageSummary, run_stage};
use flythrough_store::{Remote, RemoteRun, Stage, StageSync, VenueSync};
use std::path::Path;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(30);

fn machine(local: &Path, url: &str) -> VenueSync {
    let run = RemoteRun::open(url, TTL).unwrap();
    let mut s = VenueSync::open(local, Some(run), None).unwrap();
    s.set_upload_interval(Duration::from_millis(200));
    s
}

/// Commit a fake stage locally (through the real stage runner) and hand it to the sync layer.
fn commit(sync: &VenueSync, stage: Stage, files: &[(&str, &[u8])]) {
    sync.before_stage(stage).unwrap();
    let r = run_stage(sync.local(), stage, "in", "cfg", false, |out, _| {
        sync.stage_inputs(stage)?;
        for (name, bytes) in files {
            let p = out.join(name);
            std::fs::create_dir_all(p.parent().unwrap())?;
            std::fs::write(p, bytes)?;
        }
        Ok(StageSummary::default())
    });
    sync.after_stage(stage, r.is_ok()).unwrap();
    r.unwrap();
}

#[test]
fn commits_go_up_last_and_come_down_only_when_needed() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/bucket/runs/cafe", dir.path().display());
    let a = machine(&dir.path().join("a"), &url);
    commit(
        &a,
        Stage::Capture,
        &[("manifest.json", b"{\"photos\": []}")],
    );
    commit(
        &a,
        Stage::Privacy,
        &[
            ("images/p1.jpg", &[7u8; 5000]),
            ("images/p2.jpg", &[9u8; 3000]),
            ("redactions.json", b"{}"),
        ],
    );
    a.finish();
    let remote = Remote::open(&url).unwrap();
    let names: Vec<String> = remote
        .list("")
        .unwrap()
        .into_iter()
        .map(|o| o.rel)
        .collect();
    for n in [
        "capture/manifest.json",
        "capture/stage.json",
        ".sync/capture.json",
        "privacy/images/p1.jpg",
        "privacy/stage.json",
        ".sync/privacy.json",
    ] {
        assert!(names.contains(&n.to_string()), "{n} not in {names:?}");
    }
    assert!(
        !names.iter().any(|n| n == ".lease"),
        "lease released: {names:?}"
    );

    // Machine B: stage.json records only, until a later stage runs.
    let b_dir = dir.path().join("b");
    let b = machine(&b_dir, &url);
    let rb = RunDir::new(&b_dir);
    assert!(rb.record(Stage::Capture).is_some() && rb.record(Stage::Privacy).is_some());
    assert!(!rb.stage_dir(Stage::Privacy).join("images/p1.jpg").exists());
    let down0 = b.traffic().1;
    // Capture and privacy are up to date: nothing to download for them.
    b.stage_inputs(Stage::Privacy).unwrap();
    assert!(!rb.stage_dir(Stage::Privacy).join("images/p1.jpg").exists());
    assert!(rb.stage_dir(Stage::Capture).join("manifest.json").exists());
    b.after_stage(Stage::Privacy, false).unwrap();
    // SfM reads both: now they come down, checked.
    b.stage_inputs(Stage::Sfm).unwrap();
    b.after_stage(Stage::Sfm, false).unwrap();
    assert_eq!(
        std::fs::read(rb.stage_dir(Stage::Privacy).join("images/p1.jpg")).unwrap(),
        vec![7u8; 5000]
    );
    let down = b.traffic().1 - down0;
    assert!(
        (8000..9000).contains(&down),
        "downloaded {down} bytes for two stages of ~8 KB"
    );
    b.finish();

    // A corrupted file of the same size: caught by its hash when it arrives; the stage is
    // uncommitted so that the next attempt redoes it.
    let p1 = "privacy/images/p1.jpg";
    remote.put(p1, vec![8u8; 5000]).unwrap();
    let c = machine(&dir.path().join("c"), &url);
    let e = c.stage_inputs(Stage::Sfm).unwrap_err();
    c.after_stage(Stage::Sfm, false).unwrap();
    assert!(
        e.contains("corrupted remote stage") && e.contains(p1),
        "{e}"
    );
    assert!(c.found_corruption());
    assert!(remote.get("privacy/stage.json").unwrap().is_none());
    assert!(
        !RunDir::new(dir.path().join("c"))
            .stage_dir(Stage::Privacy)
            .exists()
    );
    c.finish();

    // A truncated file or a stage without its stage.json: ignored from the start (and a complete
    // local commit is kept and uploaded again when the runner keeps it).
    remote.put("capture/manifest.json", b"{".to_vec()).unwrap();
    let d_dir = dir.path().join("d");
    let d = machine(&d_dir, &url);
    assert!(
        RunDir::new(&d_dir).record(Stage::Capture).is_none(),
        "truncated capture ignored"
    );
    assert!(
        RunDir::new(&d_dir).record(Stage::Privacy).is_none(),
        "uncommitted privacy ignored"
    );
    d.finish();
}

#[test]
fn resumable_state_goes_up_while_the_stage_runs_and_comes_back_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/bucket/runs/gym", dir.path().display());
    let a_dir = dir.path().join("a");
    let a = machine(&a_dir, &url);
    let remote = Remote::open(&url).unwrap();
    let work = RunDir::new(&a_dir).work_dir(Stage::Train);
    a.before_stage(Stage::Train).unwrap();
    a.stage_inputs(Stage::Train).unwrap();
    std::fs::create_dir_all(work.join("checkpoints")).unwrap();
    std::fs::write(work.join("inputs.key"), "k1").unwrap();
    std::fs::write(work.join("checkpoints/last.safetensors"), vec![3u8; 4096]).unwrap();
    std::fs::write(work.join("checkpoints/next.safetensors.partial"), b"half").unwrap();
    // Uploaded while the stage still runs (no after_stage yet).
    let t0 = Instant::now();
    while remote
        .get(".work/train/checkpoints/last.safetensors")
        .unwrap()
        .is_none()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "checkpoint never uploaded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        remote
            .get(".work/train/checkpoints/next.safetensors.partial")
            .unwrap()
            .is_none(),
        "files being written are not uploaded"
    );
    a.after_stage(Stage::Train, false).unwrap();
    a.finish();
    // Another machine gets the state back before the runner looks at the stage.
    let b_dir = dir.path().join("b");
    let b = machine(&b_dir, &url);
    b.before_stage(Stage::Train).unwrap();
    let wb = RunDir::new(&b_dir).work_dir(Stage::Train);
    assert_eq!(
        std::fs::read_to_string(wb.join("inputs.key")).unwrap(),
        "k1"
    );
    assert_eq!(
        std::fs::read(wb.join("checkpoints/last.safetensors")).unwrap(),
        vec![3u8; 4096]
    );
    // Once the stage commits, the remote scratch is removed.
    let r = run_stage(b.local(), Stage::Train, "in", "cfg", false, |out, _| {
        std::fs::write(out.join("model.safetensors"), b"weights")?;
        Ok(StageSummary::default())
    });
    b.after_stage(Stage::Train, r.is_ok()).unwrap();
    assert!(remote.list(".work/train").unwrap().is_empty());
    assert!(remote.get("train/stage.json").unwrap().is_some());
    b.finish();
}
