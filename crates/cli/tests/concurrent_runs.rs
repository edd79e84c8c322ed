//! Two `flythrough run` processes on one run folder (a second terminal, a retry while the first still
//! runs): the second fails at once with the lock message naming the first one's PID, and what the
//! first commits is exactly what a run on its own commits.

mod common;

use common::files;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flythrough"))
}

fn run_args<'a>(cfg: &'a Path, run_dir: &'a Path) -> Vec<&'a str> {
    vec![
        "run",
        cfg.to_str().unwrap(),
        "--out",
        run_dir.to_str().unwrap(),
        "--until",
        "privacy",
    ]
}

#[test]
fn a_second_run_on_the_same_folder_fails_fast_and_the_first_commits_what_a_single_run_does() {
    let dir = tempfile::tempdir().unwrap();
    let venue = dir.path().join("venue");
    let cfg = flythrough_testkit::synth_venue(&venue, 10, 96, 72).config_path;

    // Reference: one run on its own.
    let single = dir.path().join("single");
    let out = Command::new(exe())
        .args(run_args(&cfg, &single))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // First run: it holds the lock and pauses 4 s inside capture (test hook), then goes on.
    let shared = dir.path().join("shared");
    let mut first = Command::new(exe())
        .args(run_args(&cfg, &shared))
        .env("FLYTHROUGH_TEST_PAUSE_IN", "capture:4")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stderr.take().unwrap()).lines();
    let mut first_log = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        first_log += &line;
        first_log.push('\n');
        if line.contains("FLYTHROUGH_TEST_PAUSED capture") {
            break;
        }
    }
    assert!(first_log.contains("FLYTHROUGH_TEST_PAUSED"), "{first_log}");

    // Second run while the first holds the folder: refused at once, naming the holder.
    let t0 = Instant::now();
    let second = Command::new(exe())
        .args(run_args(&cfg, &shared))
        .output()
        .unwrap();
    let waited = t0.elapsed();
    let msg = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("this run folder is in use by another flythrough process")
            && msg.contains(&format!("pid {}", first.id())),
        "{msg}"
    );
    // Refused, not queued: the first run is paused until this test lets it go, so a second run that
    // waited for the lock would never end. The bound only turns such a hang into a failure; it is
    // far above what a busy machine needs to start a process and read a lock.
    assert!(
        waited < Duration::from_secs(120),
        "the second run waited {waited:?}"
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run must still be running: the refusal was not a race"
    );

    // The first run finishes and commits what a single run commits, byte for byte.
    for line in lines {
        first_log += &line.unwrap();
        first_log.push('\n');
    }
    let status = first.wait().unwrap();
    assert!(status.success(), "{first_log}");
    let (a, b) = (
        files(&single.join("privacy/images")),
        files(&shared.join("privacy/images")),
    );
    assert_eq!(a.len(), 10);
    assert_eq!(
        a.iter().map(|x| &x.0).collect::<Vec<_>>(),
        b.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{name} differs from a single run's");
    }
    // And the committed record seals exactly these files.
    flythrough_core::RedactedImages::open(&flythrough_core::RunDir::new(&shared)).unwrap();
}
