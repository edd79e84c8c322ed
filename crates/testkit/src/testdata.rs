//! What tests need from outside the repository: the shared real-photo data (`../shared/data` beside
//! the checkout), tools on the PATH (ffmpeg, ffprobe, chromium, flock, …) and optional build parts.
//!
//! One rule for all of them, in [`skip`]: under CI (`CI=true`) a missing requirement **fails** the
//! test, naming what is missing; on a user's machine the test skips, visibly: it prints one line and,
//! when `FLYTHROUGH_SKIP_LOG` is set (as `scripts/test.sh` does), appends `test<TAB>what is missing`
//! to that file, and the script prints how many tests skipped and which at the end. A test calls one
//! of these helpers and returns when it gets `None`:
//!
//! ```ignore
//! let Some(dir) = testdata::shared_data("temple_ring19") else { return };
//! let Some(ffmpeg) = testdata::tool("ffmpeg", "apt-get install ffmpeg") else { return };
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

/// Environment variable naming the skip log (one line per skipped test).
pub const SKIP_LOG_ENV: &str = "FLYTHROUGH_SKIP_LOG";

/// Is this a CI run (`CI` set to anything but `false`/`0`/empty)?
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// The running test's name (libtest names each test's thread after it).
fn test_name() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .map(str::to_string)
        .unwrap_or_else(|| {
            std::env::args()
                .next()
                .map(|a| {
                    Path::new(&a)
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or(a)
                })
                .unwrap_or_else(|| "unknown test".into())
        })
}

/// The current test cannot run because `missing` is not there (`hint`: how to get it). Under CI this
/// panics (the test fails, naming what is missing); otherwise it prints a line, appends it to the
/// skip log and returns, and the caller returns from the test.
#[track_caller]
pub fn skip(missing: &str, hint: &str) {
    let test = format!("{}::{}", env_crate_of_caller(), test_name());
    let hint = if hint.is_empty() {
        String::new()
    } else {
        format!(" ({hint})")
    };
    if under_ci() {
        panic!("{test}: {missing} is missing{hint}; under CI every test must run");
    }
    eprintln!("skipped: {test}: {missing} is missing{hint}");
    println!("skipped: {test}: {missing} is missing{hint}");
    if let Some(log) = std::env::var_os(SKIP_LOG_ENV) {
        // One short append per skip: concurrent test processes do not interleave lines.
        let line = format!("{test}\t{missing}{hint}\n");
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// The test binary's crate, from the caller's source path (`crates/<name>/...`).
#[track_caller]
fn env_crate_of_caller() -> String {
    let file = std::panic::Location::caller().file();
    let parts: Vec<&str> = file.split(['/', '\\']).collect();
    parts
        .iter()
        .position(|p| *p == "crates")
        .and_then(|i| parts.get(i + 1))
        .map(|s| s.to_string())
        .unwrap_or_else(|| file.to_string())
}

/// The shared data folder: `$FLYTHROUGH_SHARED_DATA`, else `../shared/data` beside the checkout.
pub fn shared_data_root() -> PathBuf {
    std::env::var_os("FLYTHROUGH_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // crates/testkit -> workspace root -> ../shared/data
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")
        })
}

/// `<shared data>/<rel>` if it exists; otherwise [`skip`] (a failure under CI) and `None`.
#[track_caller]
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    let p = shared_data_root().join(rel);
    if p.exists() {
        Some(p)
    } else {
        skip(
            &format!("shared test data {rel} (looked in {})", p.display()),
            "set FLYTHROUGH_SHARED_DATA to the shared data folder",
        );
        None
    }
}

/// `name` found on the PATH; otherwise [`skip`] (a failure under CI) with `install` as the hint.
#[track_caller]
pub fn tool(name: &str, install: &str) -> Option<PathBuf> {
    match find_on_path(name) {
        Some(p) => Some(p),
        None => {
            skip(&format!("{name} (not on the PATH)"), install);
            None
        }
    }
}

/// `Some(())` when `present`; otherwise [`skip`] naming `what` (a failure under CI). For
/// requirements that are not files or tools: a cargo feature, a GPU adapter.
#[track_caller]
pub fn require(present: bool, what: &str, hint: &str) -> Option<()> {
    if present {
        Some(())
    } else {
        skip(what, hint);
        None
    }
}

/// First executable file called `name` in the PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_things_are_found() {
        assert!(tool("sh", "").is_some());
        assert!(require(true, "nothing", "").is_some());
        assert_eq!(env_crate_of_caller(), "testkit");
        assert!(test_name().contains("present_things_are_found"));
    }

    /// Run only as a child of `a_missing_requirement_skips_visibly_or_fails_under_ci`.
    #[test]
    fn child_that_skips() {
        if std::env::var_os("FLYTHROUGH_TESTDATA_CHILD").is_none() {
            return;
        }
        let Some(_) = tool("no-such-tool-flythrough", "apt-get install nothing") else {
            return;
        };
        unreachable!();
    }

    #[test]
    fn a_missing_requirement_skips_visibly_or_fails_under_ci() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("skips.log");
        let child = |ci: bool| {
            let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
            cmd.args([
                "--exact",
                "testdata::tests::child_that_skips",
                "--nocapture",
            ])
            .env("FLYTHROUGH_TESTDATA_CHILD", "1")
            .env(SKIP_LOG_ENV, &log);
            if ci {
                cmd.env("CI", "true");
            } else {
                cmd.env_remove("CI");
            }
            let out = cmd.output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            (out.status.success(), text)
        };
        let (ok, text) = child(false);
        assert!(ok, "{text}");
        assert!(
            text.contains("skipped: testkit::testdata::tests::child_that_skips"),
            "{text}"
        );
        let lines = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            lines,
            "testkit::testdata::tests::child_that_skips\tno-such-tool-flythrough (not on the PATH) (apt-get install nothing)\n"
        );
        let (ok, text) = child(true);
        assert!(!ok, "under CI a missing tool must fail the test: {text}");
        assert!(
            text.contains("no-such-tool-flythrough (not on the PATH) is missing"),
            "{text}"
        );
        assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);
    }
}
