//! Run folders and photo folders on a real S3-compatible server (moto in server mode, started on
//! 127.0.0.1 by each test), through the real binary: a run uploaded and its stages committed with
//! `stage.json` last, originals never uploaded, a kill mid-stage resumed on "another machine" (an
//! empty local cache) from the last committed stage and from the uploaded training checkpoint,
//! partial and corrupted remote stages ignored, the one-writer lease, and bad URLs.

use flythrough_store::Remote;
use flythrough_testkit::s3::{S3Server, s3_or_skip};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flythrough"))
}

/// The binary with the server's environment and its own local cache.
fn cmd(s3: &S3Server, cache: &Path) -> Command {
    let mut c = Command::new(exe());
    for (k, v) in s3.env() {
        c.env(k, v);
    }
    c.env("FLYTHROUGH_CACHE", cache)
        .env("FLYTHROUGH_LEASE_TTL_S", "3")
        .env("FLYTHROUGH_SYNC_INTERVAL_S", "0.3")
        .env("FLYTHROUGH_STORE_RETRIES", "1")
        .env_remove("FLYTHROUGH_TEST_PAUSE_IN");
    c
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout)
}

/// A synthetic venue whose photos are uploaded to `s3://bkt/venues/<name>/photos/`; its config points
/// there. Returns (config, local photo folder).
fn remote_venue(s3: &S3Server, dir: &Path, name: &str, images: usize) -> (PathBuf, PathBuf) {
    let venue = dir.join(name);
    flythrough_testkit::synth_venue(&venue, images, 160, 120);
    let photos = venue.join("photos");
    let up = s3_remote(s3, &format!("s3://bkt/venues/{name}/photos"));
    for e in std::fs::read_dir(&photos).unwrap() {
        let p = e.unwrap().path();
        up.put_file(&p, p.file_name().unwrap().to_str().unwrap())
            .unwrap();
    }
    let cfg = venue.join("venue.toml");
    let t = std::fs::read_to_string(&cfg).unwrap();
    let t = t.replace(
        "photos = \"photos\"",
        &format!("photos = \"s3://bkt/venues/{name}/photos/\""),
    );
    assert!(
        t.contains("s3://bkt"),
        "the synthetic config names its photo folder: {t}"
    );
    std::fs::write(&cfg, t).unwrap();
    (cfg, photos)
}

/// A `Remote` on the test's server. The endpoint and dummy keys go through the environment of this
/// test process: every test that calls this uses the same values except the endpoint, so the tests
/// of this file run one at a time (`S3_LOCK`).
fn s3_remote(s3: &S3Server, url: &str) -> Remote {
    for (k, v) in s3.env() {
        // SAFETY: the tests of this file hold S3_LOCK while they touch the environment and the
        // object store; nothing else in this test binary reads these variables.
        unsafe { std::env::set_var(k, v) };
    }
    Remote::open(url).expect("open remote")
}

static S3_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn record(run: &Remote, stage: &str) -> serde_json::Value {
    serde_json::from_slice(
        &run.get(&format!("{stage}/stage.json"))
            .unwrap()
            .unwrap()
            .bytes,
    )
    .unwrap()
}

fn server(test: &str) -> Option<S3Server> {
    let s3 = s3_or_skip(test)?;
    s3.create_bucket("bkt").unwrap();
    Some(s3)
}

#[test]
fn remote_run_uploads_stages_never_originals_and_resumes_elsewhere_after_a_kill() {
    let _g = S3_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let Some(s3) = server("remote_run_resumes_elsewhere") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (cfg, photos) = remote_venue(&s3, dir.path(), "cafe", 12);
    let url = "s3://bkt/runs/cafe";
    // Machine A: capture, then killed in the middle of privacy.
    let mut child = cmd(&s3, &dir.path().join("cache-a"))
        .args([
            "run",
            cfg.to_str().unwrap(),
            "--out",
            url,
            "--until",
            "privacy",
        ])
        .env("FLYTHROUGH_TEST_PAUSE_IN", "privacy")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run = s3_remote(&s3, url);
    let t0 = Instant::now();
    loop {
        let paused = dir
            .path()
            .join("cache-a/runs")
            .read_dir()
            .ok()
            .and_then(|mut d| d.next())
            .is_some_and(|e| {
                e.unwrap()
                    .path()
                    .join(".tmp-privacy/partial.marker")
                    .exists()
            });
        if paused {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "privacy never paused"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // While A holds the run folder, a second task is refused at once, naming A.
    let busy = cmd(&s3, &dir.path().join("cache-c"))
        .args([
            "run",
            cfg.to_str().unwrap(),
            "--out",
            url,
            "--until",
            "capture",
        ])
        .output()
        .unwrap();
    assert_eq!(busy.status.code(), Some(1), "{}", text(&busy));
    let log = text(&busy);
    assert!(
        log.contains(&format!(
            "{url}: this run folder is in use by another flythrough task (pid {}",
            child.id()
        )),
        "{log}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let capture = record(&run, "capture");
    assert!(
        run.get("privacy/stage.json").unwrap().is_none(),
        "privacy was not committed"
    );
    assert!(run.get(".sync/capture.json").unwrap().is_some());

    // Machine B: an empty cache. It waits out A's lease (3 s), takes over, skips capture and finishes
    // privacy.
    std::fs::remove_dir_all(dir.path().join("cache-a")).unwrap();
    let t0 = Instant::now();
    let out = cmd(&s3, &dir.path().join("cache-b"))
        .args([
            "run",
            cfg.to_str().unwrap(),
            "--out",
            url,
            "--until",
            "privacy",
        ])
        .output()
        .unwrap();
    // Until A's lease has expired, B is refused ("in use by another"): try again until it is not,
    // a condition rather than a guess at how long expiry takes on a busy machine.
    let mut out = out;
    while out.status.code() == Some(1) && text(&out).contains("in use by another") {
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "the expired lease was never taken over: {}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(500));
        out = cmd(&s3, &dir.path().join("cache-b"))
            .args([
                "run",
                cfg.to_str().unwrap(),
                "--out",
                url,
                "--until",
                "privacy",
            ])
            .output()
            .unwrap();
    }
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(t0.elapsed() < Duration::from_secs(300));
    assert!(log.contains("capture: up to date"), "{log}");
    assert!(log.contains("took over the expired lease"), "{log}");
    assert_eq!(record(&run, "capture"), capture, "capture not redone");
    assert_eq!(record(&run, "privacy")["summary"]["photos_out"], 12);
    assert!(
        run.get(".lease").unwrap().is_none(),
        "lease released at the end"
    );
    // Nothing uploaded is an original: no object under runs/ has the bytes of a photo.
    let originals: Vec<String> = std::fs::read_dir(&photos)
        .unwrap()
        .map(|e| {
            blake3::hash(&std::fs::read(e.unwrap().path()).unwrap())
                .to_hex()
                .to_string()
        })
        .collect();
    let objects = run.list("").unwrap();
    assert!(objects.iter().any(|o| o.rel.starts_with("privacy/images/")));
    for o in &objects {
        let b = run.get(&o.rel).unwrap().unwrap().bytes;
        assert!(
            !originals.contains(&blake3::hash(&b).to_hex().to_string()),
            "{} is an original photo",
            o.rel
        );
    }
    // The downloaded originals are gone from B's cache once the run ended.
    assert!(
        !dir.path()
            .join("cache-b/photos")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "originals left in the cache"
    );
}

#[test]
fn bad_urls_fail_with_one_line_naming_the_url_and_spare_the_other_venues() {
    let _g = S3_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let Some(s3) = server("bad object-store URLs") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    flythrough_testkit::synth_venue(&d.join("v"), 8, 96, 72);
    let good = d.join("v/venue.toml");
    let t = std::fs::read_to_string(&good).unwrap();
    let bad_photos = d.join("v/bad-photos.toml");
    std::fs::write(
        &bad_photos,
        t.replace(
            "photos = \"photos\"",
            "photos = \"s3://no-such-bucket/photos/\"",
        )
        .replace("name = \"synthetic-venue\"", "name = \"elsewhere\""),
    )
    .unwrap();
    let cache = d.join("cache");
    let error_line = |log: &str, url: &str| {
        log.lines()
            .find(|l| l.starts_with("error: ") && l.contains(url))
            .map(str::to_string)
    };
    // A bucket that does not exist.
    let url = "s3://no-such-bucket/runs/cafe";
    let o = cmd(&s3, &cache)
        .env("AWS_SECRET_ACCESS_KEY", "Sup3rS3cretValue")
        .args(["run", good.to_str().unwrap(), "--out", url, "-v"])
        .output()
        .unwrap();
    let log = text(&o);
    assert_eq!(o.status.code(), Some(1), "{log}");
    let line = error_line(&log, url).unwrap_or_else(|| panic!("{log}"));
    assert!(line.to_lowercase().contains("bucket"), "{line}");
    assert!(
        !log.contains("Sup3rS3cretValue"),
        "a credential was printed: {log}"
    );
    // An endpoint nobody listens on: fails within seconds, naming the URL.
    let t0 = Instant::now();
    let o = cmd(&s3, &cache)
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .args(["run", good.to_str().unwrap(), "--out", "s3://bkt/runs/cafe"])
        .output()
        .unwrap();
    let log = text(&o);
    assert_eq!(o.status.code(), Some(1), "{log}");
    assert!(error_line(&log, "s3://bkt/runs/cafe").is_some(), "{log}");
    assert!(t0.elapsed() < Duration::from_secs(90), "{:?}", t0.elapsed());
    // No credentials in the environment.
    let o = cmd(&s3, &cache)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .args(["run", good.to_str().unwrap(), "--out", "s3://bkt/runs/cafe"])
        .output()
        .unwrap();
    let log = text(&o);
    assert_eq!(o.status.code(), Some(1), "{log}");
    let line = error_line(&log, "s3://bkt/runs/cafe").unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("no credentials") && line.contains("AWS_ACCESS_KEY_ID"),
        "{line}"
    );
    // In a batch, the venue with the bad photo URL fails with its line; the other one is committed.
    let report = d.join("batch.json");
    let o = cmd(&s3, &cache)
        .args([
            "batch",
            good.to_str().unwrap(),
            bad_photos.to_str().unwrap(),
            "--out",
            "s3://bkt/runs/",
            "--until",
            "capture",
            "--report",
            report.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let log = text(&o);
    assert_eq!(o.status.code(), Some(1), "{log}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let venues = r["venues"].as_array().unwrap();
    let by = |n: &str| venues.iter().find(|v| v["venue"] == n).unwrap().clone();
    assert_eq!(by("synthetic-venue")["status"], "ok", "{r}");
    assert!(
        by("synthetic-venue")["bytes_up"].as_u64().unwrap() > 0,
        "{r}"
    );
    let bad = by("elsewhere");
    assert_eq!(bad["status"], "failed");
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains("s3://no-such-bucket/photos"),
        "{bad}"
    );
    let run = s3_remote(&s3, "s3://bkt/runs/synthetic-venue");
    assert!(run.get("capture/stage.json").unwrap().is_some());
    assert!(
        s3_remote(&s3, "s3://bkt/runs")
            .get("batch.json")
            .unwrap()
            .is_some()
    );
}
