//! `flythrough batch`: the shard split (a property test), and the real binary over a list with good
//! venues, a failing venue, a missing config, a duplicate and two configs sharing one run folder.

use flythrough::batch::{Plan, Shard};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flythrough"))
}

fn write_config(dir: &Path, file: &str, venue: &str, photos: &str) -> PathBuf {
    let p = dir.join(file);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(
        &p,
        format!("[venue]\nname = \"{venue}\"\nphotos = \"{photos}\"\n"),
    )
    .unwrap();
    p
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Every venue of the list is in exactly one shard, for N = 1..8, and the split does not depend
    /// on the order the list was written in (every task of a job array must agree).
    #[test]
    fn shards_cover_every_venue_exactly_once(
        n_venues in 0usize..30,
        seed in any::<u64>(),
        dup in proptest::option::of(0usize..30),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut paths: Vec<String> = (0..n_venues)
            .map(|i| write_config(dir.path(), &format!("v{i:02}/venue.toml"), &format!("venue{i}"), "photos")
                .to_string_lossy().into_owned())
            .collect();
        // A shuffled copy of the list (a deterministic permutation from the seed), with a duplicate.
        let mut shuffled = paths.clone();
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        if let Some(d) = dup.filter(|d| *d < n_venues) {
            paths.push(paths[d].clone());
            shuffled.insert(0, paths[d].clone());
        }
        let a = Plan::new(&paths, Some("runs"));
        let b = Plan::new(&shuffled, Some("runs"));
        prop_assert_eq!(&a.entries, &b.entries);
        prop_assert_eq!(a.entries.len(), paths.len());
        for count in 1..=8usize {
            let mut seen = vec![0usize; a.entries.len()];
            for index in 0..count {
                let sh = Shard { index, count };
                let mine = a.shard(sh);
                for e in &mine {
                    let pos = a.entries.iter().position(|x| std::ptr::eq(x, *e)).unwrap();
                    seen[pos] += 1;
                }
                // Balanced: shard sizes differ by at most one.
                let len = mine.len();
                let ideal = a.entries.len() / count;
                prop_assert!(len == ideal || len == ideal + 1, "shard {index}/{count}: {len} of {}", a.entries.len());
            }
            prop_assert!(seen.iter().all(|&c| c == 1), "N = {count}: {seen:?}");
        }
        // Exactly one entry per duplicated config is an error; every venue runs once.
        let runnable = a.entries.iter().filter(|e| e.error.is_none()).count();
        prop_assert_eq!(runnable, n_venues);
    }
}

/// Issue 20: two venues whose run folders are one folder through a link are refused when the batch
/// is planned (before, only the run-folder lock caught it, once the second venue started).
#[cfg(unix)]
#[test]
fn run_folders_that_are_one_through_a_link_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = write_config(d, "a.toml", "alpha", "photos");
    let b = write_config(d, "b.toml", "beta", "photos");
    let out = d.join("runs");
    std::fs::create_dir_all(out.join("beta")).unwrap();
    std::os::unix::fs::symlink(out.join("beta"), out.join("alpha")).unwrap();
    let args: Vec<String> = vec![a.to_string_lossy().into(), b.to_string_lossy().into()];
    let plan = Plan::new(&args, Some(out.to_str().unwrap()));
    assert_eq!(plan.entries.len(), 2);
    for e in &plan.entries {
        let msg = e.error.as_deref().unwrap_or("(runs)");
        assert!(msg.contains("resolve to the same run folder"), "{msg}");
    }
}

#[test]
fn list_files_globs_and_planning_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = write_config(d, "a/venue.toml", "alpha", "photos");
    let b = write_config(d, "b/venue.toml", "beta", "photos");
    write_config(d, "c/venue.toml", "gamma", "photos");
    // Two configs of one venue name: one run folder.
    let x = write_config(d, "x1.toml", "same", "photos");
    let y = write_config(d, "x2.toml", "same", "photos");
    std::fs::write(d.join("bad.toml"), "[venue]\nname = 3\n").unwrap();
    std::fs::write(
        d.join("list.txt"),
        "# venues of the week\na/venue.toml\n\nb/venue.toml  # again below\nmissing.toml\n",
    )
    .unwrap();
    let args: Vec<String> = vec![
        d.join("list.txt").to_string_lossy().into(),
        d.join("*/venue.toml").to_string_lossy().into(),
        d.join("nothing-*.toml").to_string_lossy().into(),
        x.to_string_lossy().into(),
        y.to_string_lossy().into(),
        d.join("bad.toml").to_string_lossy().into(),
    ];
    let plan = Plan::new(&args, Some("/srv/runs"));
    let err = |p: &Path| {
        plan.entries
            .iter()
            .filter(|e| e.config == p)
            .map(|e| e.error.clone())
            .collect::<Vec<_>>()
    };
    // a and b are listed twice (list file and glob): one runs, the other is reported.
    for p in [&a, &b] {
        let errs = err(p);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].is_none(), "{errs:?}");
        assert!(
            errs[1]
                .as_deref()
                .unwrap()
                .contains("listed more than once")
        );
    }
    assert_eq!(err(&d.join("c/venue.toml")), vec![None]);
    assert!(
        err(&d.join("missing.toml"))[0]
            .as_deref()
            .unwrap()
            .contains("no such config file")
    );
    assert!(
        err(&d.join("nothing-*.toml"))[0]
            .as_deref()
            .unwrap()
            .contains("matches no config file")
    );
    let bad = err(&d.join("bad.toml"))[0].clone().unwrap();
    assert!(bad.contains("name"), "{bad}");
    for (p, other) in [(&x, &y), (&y, &x)] {
        let e = err(p)[0].clone().unwrap();
        assert!(
            e.contains("same run folder /srv/runs/same")
                && e.contains(&*p.to_string_lossy())
                && e.contains(&*other.to_string_lossy()),
            "{e}"
        );
    }
    let ok: Vec<&str> = plan
        .entries
        .iter()
        .filter(|e| e.error.is_none())
        .map(|e| e.venue.as_deref().unwrap())
        .collect();
    assert_eq!(ok, ["alpha", "beta", "gamma"]);
    assert_eq!(
        plan.entries
            .iter()
            .find(|e| e.venue.as_deref() == Some("alpha"))
            .unwrap()
            .run_dir
            .as_deref(),
        Some("/srv/runs/alpha")
    );
}

/// One synthetic photo folder shared by several venue configs (each its own venue name).
fn venues(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
    flythrough_testkit::synth_venue(&dir.join("synth"), 8, 96, 72);
    names
        .iter()
        .map(|n| write_config(dir, &format!("{n}.toml"), n, "synth/photos"))
        .collect()
}

fn batch(args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(exe());
    cmd.arg("batch").args(args);
    for k in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "JOB_COMPLETION_INDEX",
        "FLYTHROUGH_SHARD_COUNT",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn one_failure_never_stops_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfgs = venues(d, &["cafe", "deli", "gym"]);
    // A venue whose photos are all broken passes the pre-run count and fails in capture.
    std::fs::create_dir_all(d.join("broken")).unwrap();
    std::fs::write(d.join("broken/x.jpg"), b"not a jpeg").unwrap();
    std::fs::write(d.join("broken/y.jpg"), b"not a jpeg either").unwrap();
    let broken = write_config(d, "broken.toml", "broken", "broken");
    let out = d.join("runs");
    let mut args: Vec<String> = cfgs.iter().map(|p| p.to_string_lossy().into()).collect();
    args.push(broken.to_string_lossy().into());
    args.push(d.join("missing.toml").to_string_lossy().into());
    args.push(cfgs[0].to_string_lossy().into()); // listed twice
    let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
    a.extend([
        "--out",
        out.to_str().unwrap(),
        "--jobs",
        "2",
        "--until",
        "capture",
        "--quiet",
    ]);
    let (code, log) = batch(&a, &[]);
    assert_eq!(code, 1, "{log}");
    let r = report(&out.join("batch.json"));
    let by = |v: &str| {
        r["venues"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["venue"].as_str().unwrap().ends_with(v))
            .cloned()
            .collect::<Vec<_>>()
    };
    for v in ["cafe", "deli", "gym"] {
        let rows = by(v);
        let ok: Vec<_> = rows.iter().filter(|x| x["status"] == "ok").collect();
        assert_eq!(ok.len(), 1, "{v}: {rows:?}");
        assert_eq!(ok[0]["stage"], "capture", "{v}");
        assert!(out.join(v).join("capture/stage.json").is_file(), "{v}");
    }
    let broken_row = &by("broken")[0];
    assert_eq!(broken_row["status"], "failed");
    assert!(
        broken_row["error"].as_str().unwrap().contains("capture"),
        "{broken_row}"
    );
    assert!(
        by("missing.toml")[0]["error"]
            .as_str()
            .unwrap()
            .contains("no such config file")
    );
    assert_eq!(r["ok"], 3);
    assert_eq!(r["failed"], 3);
    // One line per planning error, naming the config.
    assert!(
        log.lines().any(|l| l.starts_with("error: ")
            && l.contains("missing.toml")
            && l.contains("no such config file")),
        "{log}"
    );
    assert!(log.contains("listed more than once"), "{log}");
    // The summary table.
    assert!(log.contains("batch shard 0/1: 3 of 6 venues ok"), "{log}");

    // Only the good venues: exit 0, and they are up to date now.
    let mut a: Vec<&str> = args[..3].iter().map(String::as_str).collect();
    a.extend(["--out", out.to_str().unwrap(), "--until", "capture"]);
    let (code, log) = batch(&a, &[]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("capture: up to date"), "{log}");
}

#[test]
fn shard_from_slurm_and_kubernetes_environment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfgs = venues(d, &["v0", "v1", "v2"]);
    let glob = d.join("v*.toml");
    let out = d.join("runs");
    let common = [
        glob.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--until",
        "capture",
        "--quiet",
    ];
    // Slurm task 1 of 2 runs the second venue of the sorted list only.
    let (code, log) = batch(
        &common,
        &[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
        ],
    );
    assert_eq!(code, 0, "{log}");
    let r = report(&out.join("batch-1-of-2.json"));
    assert_eq!(r["shard"], "1/2");
    assert_eq!(r["venues"].as_array().unwrap().len(), 1);
    assert_eq!(r["venues"][0]["venue"], "v1");
    assert!(out.join("v1/capture/stage.json").is_file());
    assert!(!out.join("v0").exists() && !out.join("v2").exists());
    // Kubernetes index 0 of 2 (count from the environment): v0 and v2.
    let (code, log) = batch(
        &common,
        &[
            ("JOB_COMPLETION_INDEX", "0"),
            ("FLYTHROUGH_SHARD_COUNT", "2"),
        ],
    );
    assert_eq!(code, 0, "{log}");
    let r = report(&out.join("batch-0-of-2.json"));
    let names: Vec<&str> = r["venues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["venue"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["v0", "v2"]);
    // A completion index without a count is a usage error naming what is missing.
    let (code, log) = batch(&common, &[("JOB_COMPLETION_INDEX", "0")]);
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("--shard-count"), "{log}");
    let (code, log) = batch(&[cfgs[0].to_str().unwrap(), "--shard", "2/2"], &[]);
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("--shard \"2/2\""), "{log}");
}
