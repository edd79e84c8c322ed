//! `flythrough batch`: many venues, one process per venue, on one machine or split across the tasks
//! of a cluster job (Slurm job array, Kubernetes Indexed Job).
//!
//! The plan is made the same way by every task: the listed configs (files, globs, list files) are
//! expanded and sorted, problems that can be seen before anything runs (a missing config, a config
//! listed twice, two configs that resolve to one run folder, a config that does not parse) become
//! failed entries of the plan, and shard `I/N` takes the entries at positions `I, I + N, I + 2N, ...`
//! of the sorted list. So every venue is run (or reported) by exactly one task, whatever order the
//! list was written in.

use flythrough_core::config::Config;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Which part of the sorted venue list this task runs: entries `index, index + count, ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The whole list.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parse `I/N` (0-based `I < N`).
    pub fn parse(s: &str) -> Result<Shard, String> {
        let err = || format!("--shard {s:?}: expected I/N with 0 <= I < N, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(err)?;
        let index: usize = i.trim().parse().map_err(|_| err())?;
        let count: usize = n.trim().parse().map_err(|_| err())?;
        if count == 0 || index >= count {
            return Err(err());
        }
        Ok(Shard { index, count })
    }

    /// The shard from a cluster's environment, when `--shard` is not given:
    /// - Slurm job arrays: `SLURM_ARRAY_TASK_ID` (minus `SLURM_ARRAY_TASK_MIN`, divided by
    ///   `SLURM_ARRAY_TASK_STEP`) of `SLURM_ARRAY_TASK_COUNT` tasks;
    /// - Kubernetes Indexed Jobs: `JOB_COMPLETION_INDEX` of `shard_count` (`--shard-count`) or
    ///   `FLYTHROUGH_SHARD_COUNT` tasks (set it to the Job's `completions`).
    ///
    /// `Ok(None)` outside a cluster job (run the whole list).
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        shard_count: Option<usize>,
    ) -> Result<Option<Shard>, String> {
        let num = |name: &str| -> Result<Option<usize>, String> {
            match env(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{name}={v:?}: not a task number")),
            }
        };
        let check = |index: usize, count: usize, what: &str| {
            if count == 0 || index >= count {
                Err(format!(
                    "{what}: task {index} of {count} is out of range (0 <= task < count)"
                ))
            } else {
                Ok(Some(Shard { index, count }))
            }
        };
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let count = num("SLURM_ARRAY_TASK_COUNT")?.ok_or(
                "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass --shard I/N",
            )?;
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
            let index = id
                .checked_sub(min)
                .ok_or("SLURM_ARRAY_TASK_ID is below SLURM_ARRAY_TASK_MIN")?
                / step;
            return check(index, count, "SLURM_ARRAY_TASK_ID");
        }
        if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let count = match shard_count {
                Some(c) => c,
                None => num("FLYTHROUGH_SHARD_COUNT")?.ok_or(
                    "JOB_COMPLETION_INDEX is set but the number of tasks is not: pass --shard-count N \
                     or set FLYTHROUGH_SHARD_COUNT to the Job's completions",
                )?,
            };
            return check(index, count, "JOB_COMPLETION_INDEX");
        }
        Ok(None)
    }

    /// Positions of the sorted list of `len` entries that this shard runs (round robin, so shards
    /// differ in size by at most one venue).
    pub fn positions(&self, len: usize) -> impl Iterator<Item = usize> + use<> {
        (self.index..len).step_by(self.count.max(1))
    }
}

/// One entry of the expanded venue list.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The config as listed (a path, or a glob that matched nothing).
    pub config: PathBuf,
    /// The venue name, once the config parsed.
    pub venue: Option<String>,
    /// Its run folder (a path or an object-store URL), once the config parsed.
    pub run_dir: Option<String>,
    /// A problem found before anything ran: this entry is reported as failed and not run.
    pub error: Option<String>,
}

/// The venue list, expanded and sorted, with the problems that can be seen before running.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub entries: Vec<Entry>,
}

fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Expand the listed arguments into config paths, in listing order. An argument is a config (a
/// `.toml` file), a glob (`venues/*/venue.toml`), or a text file listing configs or globs, one a line
/// (`#` starts a comment; relative paths are relative to the list file's folder). A glob that matches
/// nothing and a list file that cannot be read are kept as entries with their error.
pub fn expand(args: &[String]) -> Vec<(PathBuf, Option<String>)> {
    let mut out = Vec::new();
    for a in args {
        expand_one(a, Path::new(""), &mut out, 0);
    }
    out
}

fn expand_one(arg: &str, base: &Path, out: &mut Vec<(PathBuf, Option<String>)>, depth: usize) {
    let arg = arg.trim();
    if arg.is_empty() {
        return;
    }
    let full = base.join(arg);
    let full_s = full.to_string_lossy().into_owned();
    if has_glob_chars(arg) {
        let mut found: Vec<PathBuf> = match glob::glob(&full_s) {
            Ok(paths) => paths.filter_map(Result::ok).collect(),
            Err(e) => {
                out.push((full, Some(format!("bad glob pattern: {e}"))));
                return;
            }
        };
        found.sort();
        if found.is_empty() {
            out.push((full, Some("matches no config file".to_string())));
        }
        for p in found {
            out.push((p, None));
        }
        return;
    }
    let is_toml = full
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    if is_toml || !full.is_file() || depth > 0 {
        // A config (checked later), or a missing file. List files are not nested.
        out.push((full, None));
        return;
    }
    match std::fs::read_to_string(&full) {
        Ok(text) => {
            let dir = full.parent().map(Path::to_path_buf).unwrap_or_default();
            let before = out.len();
            for line in text.lines() {
                let line = line.split('#').next().unwrap_or("").trim();
                expand_one(line, &dir, out, depth + 1);
            }
            if out.len() == before {
                out.push((full, Some("the venue list is empty".to_string())));
            }
        }
        Err(e) => out.push((full, Some(format!("cannot read the venue list: {e}")))),
    }
}

/// The run folder of a venue: `OUT/<name>` when `--out` is given (a folder or an object-store URL),
/// else `runs/<name>` beside the config (as `flythrough run` does).
pub fn run_dir_for(config: &Path, venue: &str, out: Option<&str>) -> String {
    match out {
        Some(o) if o.contains("://") => format!("{}/{venue}", o.trim_end_matches('/')),
        Some(o) => Path::new(o).join(venue).to_string_lossy().into_owned(),
        None => {
            let dir = config.parent().unwrap_or(Path::new(""));
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            dir.join("runs").join(venue).to_string_lossy().into_owned()
        }
    }
}

/// A lexical absolute form of a path (no symlinks resolved, `.` and `..` folded), for sorting and
/// for comparing run folders that do not exist yet.
fn lexical_absolute(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// `p` with every link resolved: the longest part of it that exists is canonicalised and the rest
/// (folders not made yet) appended, so that two run folders reached through a link compare equal.
fn resolved_path(p: &Path) -> PathBuf {
    let abs = lexical_absolute(p);
    let mut rest = Vec::new();
    let mut cur = abs.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(cur) {
            return rest.iter().rev().fold(real, |acc, c| acc.join(c));
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                cur = parent;
            }
            _ => return abs,
        }
    }
}

impl Plan {
    /// Expand, sort and check the list. `out` is `--out`, if given.
    pub fn new(args: &[String], out: Option<&str>) -> Plan {
        let mut listed: Vec<(PathBuf, Option<String>)> = expand(args)
            .into_iter()
            .map(|(p, e)| (lexical_absolute(&p), e))
            .collect();
        // Stable: a config listed twice keeps its first position for its first listing.
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        let mut entries: Vec<Entry> = Vec::with_capacity(listed.len());
        let mut seen: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
        for (path, error) in listed {
            let mut e = Entry {
                config: path.clone(),
                venue: None,
                run_dir: None,
                error,
            };
            if e.error.is_none() {
                let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
                if let Some(first) = seen.get(&key) {
                    e.error = Some(format!(
                        "listed more than once (also as {}); it runs once",
                        first.display()
                    ));
                } else {
                    seen.insert(key, path.clone());
                    match std::fs::read_to_string(&path) {
                        Err(e2) if e2.kind() == std::io::ErrorKind::NotFound => {
                            e.error = Some("no such config file".to_string())
                        }
                        Err(e2) => e.error = Some(format!("cannot read the config: {e2}")),
                        Ok(text) => match Config::parse(&text, &path) {
                            Ok(cfg) => {
                                e.run_dir = Some(run_dir_for(&path, &cfg.venue.name, out));
                                e.venue = Some(cfg.venue.name);
                            }
                            Err(err) => e.error = Some(err.msg),
                        },
                    }
                }
            }
            entries.push(e);
        }
        // Two configs that resolve to one run folder would take turns overwriting each other's
        // stages: refuse both, naming both.
        let mut by_run: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            if let Some(r) = &e.run_dir {
                let key = if r.contains("://") {
                    r.trim_end_matches('/').to_string()
                } else {
                    resolved_path(Path::new(r)).to_string_lossy().into_owned()
                };
                by_run.entry(key).or_default().push(i);
            }
        }
        for (run, idx) in by_run {
            if idx.len() < 2 {
                continue;
            }
            let names: Vec<String> = idx
                .iter()
                .map(|&i| entries[i].config.display().to_string())
                .collect();
            for &i in &idx {
                let others: Vec<&str> = names
                    .iter()
                    .filter(|n| **n != entries[i].config.display().to_string())
                    .map(String::as_str)
                    .collect();
                entries[i].error = Some(format!(
                    "refused: {} and {} resolve to the same run folder {run}; give one of them another [venue] name",
                    entries[i].config.display(),
                    others.join(" and ")
                ));
            }
        }
        Plan { entries }
    }

    /// The entries of one shard.
    pub fn shard(&self, shard: Shard) -> Vec<&Entry> {
        shard
            .positions(self.entries.len())
            .map(|i| &self.entries[i])
            .collect()
    }
}

/// How one venue ended.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VenueResult {
    /// The venue name (the config path when the config could not be read).
    pub venue: String,
    pub config: String,
    pub run_dir: Option<String>,
    /// `ok` or `failed`.
    pub status: String,
    /// The last stage that finished (committed or up to date), if any.
    pub stage: Option<String>,
    pub seconds: f64,
    pub error: Option<String>,
    /// Bytes uploaded to and downloaded from the object store (remote runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_up: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_down: Option<u64>,
}

/// What a `flythrough run --status-file` writes when it ends.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
pub struct RunStatus {
    pub stage: Option<String>,
    pub error: Option<String>,
    /// Object-store traffic of a remote run, in bytes.
    #[serde(default)]
    pub bytes_up: Option<u64>,
    #[serde(default)]
    pub bytes_down: Option<u64>,
}

/// The last stage of a run folder that finished, with every stage before it finished too.
pub fn last_finished_stage(run: &flythrough_core::RunDir) -> Option<String> {
    flythrough_core::Stage::ALL
        .into_iter()
        .take_while(|s| run.record(*s).is_some())
        .last()
        .map(|s| s.to_string())
}

/// Options of one batch.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    pub jobs: usize,
    pub until: Option<flythrough_core::Stage>,
    pub out: Option<String>,
    pub quiet: bool,
    /// The `flythrough` binary that runs each venue.
    pub exe: PathBuf,
}

/// `batch.json`: the shard, and how each of its venues ended.
#[derive(Debug, Clone, Serialize)]
pub struct BatchReport {
    pub shard: String,
    pub venues_in_list: usize,
    pub ok: usize,
    pub failed: usize,
    pub venues: Vec<VenueResult>,
}

fn failed_entry(e: &Entry) -> VenueResult {
    VenueResult {
        venue: e
            .venue
            .clone()
            .unwrap_or_else(|| e.config.display().to_string()),
        config: e.config.display().to_string(),
        run_dir: e.run_dir.clone(),
        status: "failed".into(),
        stage: None,
        seconds: 0.0,
        error: e.error.clone(),
        bytes_up: None,
        bytes_down: None,
    }
}

/// Threads each child of `jobs` concurrent venue processes gets: the machine's cores shared out, so
/// `--jobs 2` does not run two trainings that each think they own every core.
fn threads_per_job(jobs: usize) -> usize {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    (cores / jobs.max(1)).max(1)
}

/// Run one venue in its own process and wait for it.
fn run_one(entry: &Entry, opts: &BatchOptions, status_dir: &Path, n: usize) -> VenueResult {
    let venue = entry.venue.clone().unwrap_or_default();
    let run_dir = entry.run_dir.clone().unwrap_or_default();
    let status_file = status_dir.join(format!("{n}.json"));
    let _ = std::fs::remove_file(&status_file);
    let mut cmd = Command::new(&opts.exe);
    cmd.arg("run")
        .arg(&entry.config)
        .arg("--out")
        .arg(&run_dir)
        .arg("--status-file")
        .arg(&status_file);
    if let Some(u) = opts.until {
        cmd.arg("--until").arg(u.as_str());
    }
    if opts.quiet {
        cmd.arg("--quiet");
    }
    if opts.jobs > 1 && std::env::var_os("RAYON_NUM_THREADS").is_none() {
        cmd.env("RAYON_NUM_THREADS", threads_per_job(opts.jobs).to_string());
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut last_error: Option<String> = None;
    let code = match cmd.spawn() {
        Err(e) => {
            last_error = Some(format!("could not start {}: {e}", opts.exe.display()));
            None
        }
        Ok(mut child) => {
            if let Some(err) = child.stderr.take() {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    eprintln!("[{venue}] {line}");
                    if let Some(msg) = line.strip_prefix("error: ") {
                        last_error = Some(msg.to_string());
                    }
                }
            }
            match child.wait() {
                Ok(s) => Some(s),
                Err(e) => {
                    last_error = Some(format!("lost the venue's process: {e}"));
                    None
                }
            }
        }
    };
    let seconds = t0.elapsed().as_secs_f64();
    let status: RunStatus = std::fs::read_to_string(&status_file)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let _ = std::fs::remove_file(&status_file);
    let ok = code.is_some_and(|c| c.success());
    let error = if ok {
        None
    } else {
        Some(status.error.or(last_error).unwrap_or_else(|| match code {
            Some(c) => describe_exit(c),
            None => "did not run".to_string(),
        }))
    };
    VenueResult {
        venue,
        config: entry.config.display().to_string(),
        run_dir: entry.run_dir.clone(),
        status: if ok { "ok" } else { "failed" }.into(),
        stage: status.stage,
        seconds,
        error,
        bytes_up: status.bytes_up,
        bytes_down: status.bytes_down,
    }
}

fn describe_exit(s: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = s.signal() {
            return format!("killed by signal {sig}");
        }
    }
    format!("exited with {s}")
}

/// Run a shard's venues, `opts.jobs` at a time, each in its own process. Entries with a problem
/// found while planning are reported without running. Never stops early: one venue's failure leaves
/// the others running.
pub fn run_shard(plan: &Plan, shard: Shard, opts: &BatchOptions) -> BatchReport {
    let mine = plan.shard(shard);
    let status_dir = std::env::temp_dir().join(format!("flythrough-batch-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&status_dir);
    let results: Arc<Mutex<Vec<Option<VenueResult>>>> =
        Arc::new(Mutex::new(vec![None; mine.len()]));
    let next = Arc::new(Mutex::new(0usize));
    for (i, e) in mine.iter().enumerate() {
        if let Some(err) = &e.error {
            eprintln!("error: {}: {err}", e.config.display());
            results.lock().unwrap()[i] = Some(failed_entry(e));
        }
    }
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.max(1) {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap();
                        while *n < mine.len() && mine[*n].error.is_some() {
                            *n += 1;
                        }
                        if *n >= mine.len() {
                            break;
                        }
                        *n += 1;
                        *n - 1
                    };
                    let r = run_one(mine[i], opts, &status_dir, i);
                    results.lock().unwrap()[i] = Some(r);
                }
            });
        }
    });
    let _ = std::fs::remove_dir_all(&status_dir);
    let venues: Vec<VenueResult> = Arc::try_unwrap(results)
        .map(|m| m.into_inner().unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect();
    let ok = venues.iter().filter(|v| v.status == "ok").count();
    BatchReport {
        shard: format!("{}/{}", shard.index, shard.count),
        venues_in_list: plan.entries.len(),
        ok,
        failed: venues.len() - ok,
        venues,
    }
}

/// The summary table printed on stderr.
pub fn summary_table(r: &BatchReport) -> String {
    let mut rows = vec![[
        "venue".to_string(),
        "status".to_string(),
        "stage".to_string(),
        "seconds".to_string(),
        "error".to_string(),
    ]];
    for v in &r.venues {
        rows.push([
            v.venue.clone(),
            v.status.clone(),
            v.stage.clone().unwrap_or_else(|| "-".into()),
            format!("{:.1}", v.seconds),
            v.error.clone().unwrap_or_default(),
        ]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!(
        "batch shard {}: {} of {} venues ok\n",
        r.shard,
        r.ok,
        r.venues.len()
    );
    for row in rows {
        let mut line = String::new();
        for c in 0..4 {
            line.push_str(&format!("{:<w$}  ", row[c], w = widths[c]));
        }
        line.push_str(&row[4]);
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Where `batch.json` goes: next to the run folders (`OUT/`) when `--out` is a local folder, else
/// the current folder; `batch-I-of-N.json` when the list is split into shards, so tasks sharing a
/// folder do not overwrite each other's report.
pub fn report_name(shard: Shard) -> String {
    if shard.count > 1 {
        format!("batch-{}-of-{}.json", shard.index, shard.count)
    } else {
        "batch.json".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_parse_and_env() {
        assert_eq!(Shard::parse("2/5").unwrap(), Shard { index: 2, count: 5 });
        for bad in ["5/5", "1/0", "x/2", "3", "-1/2"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_MIN", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(
            Shard::from_env(&slurm, None).unwrap(),
            Some(Shard { index: 3, count: 4 })
        );
        let k8s = env(&[("JOB_COMPLETION_INDEX", "1")]);
        assert!(Shard::from_env(&k8s, None).is_err());
        assert_eq!(
            Shard::from_env(&k8s, Some(3)).unwrap(),
            Some(Shard { index: 1, count: 3 })
        );
        let k8s2 = env(&[
            ("JOB_COMPLETION_INDEX", "3"),
            ("FLYTHROUGH_SHARD_COUNT", "3"),
        ]);
        assert!(Shard::from_env(&k8s2, None).is_err(), "index out of range");
        assert_eq!(Shard::from_env(&env(&[]), None).unwrap(), None);
    }
}
