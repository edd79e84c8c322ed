//! What the CLI's end-to-end tests share.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Run the `flythrough` binary with `args`: its exit code and its stderr followed by its stdout.
pub fn flythrough(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flythrough"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

/// `flythrough run CFG --out RUN_DIR EXTRA...`.
pub fn run_venue(cfg: &Path, run_dir: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec![
        "run",
        cfg.to_str().unwrap(),
        "--out",
        run_dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    flythrough(&args)
}

/// A committed stage's `stage.json`.
pub fn stage_json(run_dir: &Path, stage: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run_dir.join(stage).join("stage.json")).unwrap())
        .unwrap()
}

/// Name and bytes of every file of `dir`, sorted by name.
pub fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}
