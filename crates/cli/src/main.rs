//! `flythrough`: photos of a venue in, a 360° fly-through video out.

use clap::{Parser, Subcommand};
use flythrough::batch;
use flythrough::pipeline::{self, PipelineError, RunOptions};
use flythrough::remote;
use flythrough_core::Stage;
use flythrough_core::config::Device;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "flythrough", version, about = "Photos of a venue in, a 360° fly-through video out.", long_about = None)]
struct Cli {
    /// Only warnings and errors; no progress bars.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write PHOTO_DIR/venue.toml for a folder of photos: name, photos, keyframes spread along the
    /// capture order, every key documented. Then: flythrough run PHOTO_DIR/venue.toml
    Init {
        /// The folder of photos.
        photo_dir: PathBuf,
        /// Replace an existing venue.toml.
        #[arg(long)]
        force: bool,
    },
    /// Run the pipeline (capture, privacy, sfm, train, render) for one venue config.
    Run {
        /// The venue's TOML config.
        config: PathBuf,
        /// Run folder (default: runs/<venue name> beside the config).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write {"stage": last finished stage, "error": ...} here when the run ends (used by batch).
        #[arg(long, hide = true, value_name = "FILE")]
        status_file: Option<PathBuf>,
        /// Stop after this stage (capture, privacy, sfm, train, render).
        #[arg(long, value_name = "STAGE")]
        until: Option<Stage>,
        /// Redo this stage and every later one, even if up to date.
        #[arg(long, value_name = "STAGE")]
        force: Option<Stage>,
        /// Where the NeRF trains and renders: auto (a hardware GPU if there is one), cpu or gpu
        /// (any GPU adapter, software ones included). Overrides [train] device and [render] device.
        #[arg(long, value_name = "DEVICE")]
        device: Option<Device>,
    },
    /// Run many venues, each in its own process; on a cluster, each task runs its shard of the list.
    /// Exits 0 only when every venue of the shard succeeded.
    Batch {
        /// Venue configs, globs ("venues/*/venue.toml") or text files listing them, one a line.
        #[arg(required = true, value_name = "LIST")]
        list: Vec<String>,
        /// Parent of the run folders: each venue runs into OUT/<venue name> (a folder or an
        /// object-store URL); default runs/<venue name> beside each config.
        #[arg(long)]
        out: Option<String>,
        /// Venues run at once on this machine, each in its own process.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Run only shard I of N of the sorted list (0-based). Default: from SLURM_ARRAY_TASK_ID /
        /// SLURM_ARRAY_TASK_COUNT, or JOB_COMPLETION_INDEX and --shard-count (or
        /// FLYTHROUGH_SHARD_COUNT); else the whole list.
        #[arg(long, value_name = "I/N")]
        shard: Option<String>,
        /// Number of tasks when the task index comes from JOB_COMPLETION_INDEX (Kubernetes).
        #[arg(long, value_name = "N")]
        shard_count: Option<usize>,
        /// Where to write the batch report (default OUT/batch.json, or batch-I-of-N.json for a shard).
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Stop each venue after this stage (capture, privacy, sfm, train, render).
        #[arg(long, value_name = "STAGE")]
        until: Option<Stage>,
    },
    /// Generate the synthetic venue (photos with EXIF, venue.toml, ground truth).
    Synth {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 40)]
        images: usize,
        #[arg(long, default_value_t = 320)]
        width: u32,
        #[arg(long, default_value_t = 240)]
        height: u32,
    },
    /// Synthesize a small venue and run the whole pipeline on it (CPU).
    Demo {
        /// Where to put the venue and its run folder.
        #[arg(long, default_value = "demo")]
        out: PathBuf,
        /// Where the NeRF trains and renders (auto, cpu, gpu), as for `run`.
        #[arg(long, value_name = "DEVICE")]
        device: Option<Device>,
    },
    /// Compare an estimated COLMAP model with ground truth; prints JSON (registered fraction, pair AUC
    /// at 1/2/5/10°, camera-centre error after a similarity alignment, focal error).
    EvalPoses {
        /// Estimated model folder (COLMAP text or binary).
        #[arg(long)]
        est: PathBuf,
        /// Ground-truth model folder (COLMAP text or binary).
        #[arg(long)]
        gt: PathBuf,
    },
    /// Serve a run's viewer page and report on http://127.0.0.1:PORT/.
    View {
        run_dir: PathBuf,
        #[arg(long, default_value_t = 8360)]
        port: u16,
    },
    /// Print the default config (`--defaults`) or check a config file (`--check FILE`): every check
    /// `run` makes before its first stage (photo names, keyframes, calibration, folders, encoder).
    Config {
        #[arg(long)]
        defaults: bool,
        #[arg(long, value_name = "FILE")]
        check: Option<PathBuf>,
        /// Run folder the check assumes (default: runs/<venue name> beside the config).
        #[arg(long, requires = "check")]
        out: Option<PathBuf>,
    },
}

fn init_logging(quiet: bool, verbose: u8) {
    let level = if quiet {
        "warn"
    } else {
        match verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    if quiet {
        // SAFETY: set before any thread is spawned.
        unsafe { std::env::set_var("FLYTHROUGH_QUIET", "1") };
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLYTHROUGH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
}

/// Settings the demo adds to the synthetic venue's config so the whole pipeline finishes in minutes on
/// a 2-core laptop CPU: the 360° video at 1024x512 and the path's full frame rate, drawn from the
/// baked model (`source = "baked"`: about 0.7 s per frame on 2 cores, where the NeRF takes 12 s, so
/// the demo's time does not depend on the quality gate of `auto`), the preview resampled from the
/// 360° frames, and keyframes that SfM could not register left out of the path rather than stopping
/// the demo.
const DEMO_SETTINGS: &str = "
# Added by `flythrough demo`: sized to finish in minutes on a 2-core CPU.
[render]
width = 1024
height = 512
source = \"baked\"
preview_source = \"reproject\"
preview_width = 640
preview_height = 360
unregistered_keyframes = \"skip\"
";

/// Test hooks, compiled only with the `test-hooks` feature (which only this crate's tests turn on,
/// never a release build): `FLYTHROUGH_TEST_PAUSE_IN=<stage>` makes that stage write a marker into
/// its unfinished output and sleep, so a test can kill the process mid-stage;
/// `FLYTHROUGH_TEST_PAUSE_IN=<stage>:<seconds>` makes it sleep that long (lock held) and go on.
/// Both print `FLYTHROUGH_TEST_PAUSED <stage>` on stderr first. The library takes them as an
/// injected callback ([`flythrough_core::stage::Hooks`]); only the binary's edge reads the variable.
#[cfg(feature = "test-hooks")]
fn test_hooks() -> flythrough_core::stage::Hooks {
    let Ok(v) = std::env::var("FLYTHROUGH_TEST_PAUSE_IN") else {
        return Default::default();
    };
    let (name, secs) = match v.split_once(':') {
        Some((n, s)) => (n.to_string(), s.parse::<u64>().ok()),
        None => (v.clone(), None),
    };
    flythrough_core::stage::Hooks {
        before_commit: Some(std::sync::Arc::new(move |stage, out| {
            if name != stage.as_str() {
                return;
            }
            if secs.is_none() {
                let _ = std::fs::write(out.join("partial.marker"), b"half-written");
            }
            eprintln!("FLYTHROUGH_TEST_PAUSED {stage}");
            std::thread::sleep(std::time::Duration::from_secs(secs.unwrap_or(600)));
        })),
        ..Default::default()
    }
}

#[cfg(not(feature = "test-hooks"))]
fn test_hooks() -> flythrough_core::stage::Hooks {
    Default::default()
}

fn add_demo_settings(config: &std::path::Path) -> std::io::Result<()> {
    let text = std::fs::read_to_string(config)?;
    if text.contains("[render]") {
        return Ok(());
    }
    std::fs::write(config, text + DEMO_SETTINGS)
}

fn fail(e: PipelineError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(e.exit_code() as u8)
}

/// `flythrough run --status-file`: the last stage that finished, the error if the run failed, and
/// the object store's traffic.
fn write_status(
    path: &std::path::Path,
    local: Option<PathBuf>,
    result: &Result<pipeline::RunReport, PipelineError>,
    traffic: Option<(u64, u64)>,
) {
    let stage = match result {
        Ok(r) => r.stages.last().map(|(s, _)| s.to_string()),
        Err(_) => local.and_then(|d| batch::last_finished_stage(&flythrough_core::RunDir::new(d))),
    };
    let status = batch::RunStatus {
        stage,
        error: result.as_ref().err().map(|e| e.to_string()),
        bytes_up: traffic.map(|t| t.0),
        bytes_down: traffic.map(|t| t.1),
    };
    let _ = std::fs::write(path, serde_json::to_string(&status).unwrap_or_default());
}

#[allow(clippy::too_many_arguments)]
fn run_batch(
    list: &[String],
    out: Option<String>,
    jobs: usize,
    shard: Option<&str>,
    shard_count: Option<usize>,
    report: Option<PathBuf>,
    until: Option<Stage>,
    quiet: bool,
) -> ExitCode {
    let usage = |msg: String| {
        eprintln!("error: {msg}");
        ExitCode::from(2)
    };
    if jobs == 0 {
        return usage("--jobs 0: at least one venue must run at a time".into());
    }
    let shard = match shard {
        Some(s) => match batch::Shard::parse(s) {
            Ok(s) => s,
            Err(e) => return usage(e),
        },
        None => match batch::Shard::from_env(&|k| std::env::var(k).ok(), shard_count) {
            Ok(s) => s.unwrap_or(batch::Shard::ALL),
            Err(e) => return usage(e),
        },
    };
    if let Some(Err(e)) = out
        .as_deref()
        .map(|o| flythrough_core::config::check_location("--out", o))
    {
        return usage(e);
    }
    let plan = batch::Plan::new(list, out.as_deref());
    let opts = batch::BatchOptions {
        jobs,
        until,
        out: out.clone(),
        quiet,
        exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("flythrough")),
    };
    let result = batch::run_shard(&plan, shard, &opts);
    eprint!("{}", batch::summary_table(&result));
    let report_path = report.unwrap_or_else(|| {
        let name = batch::report_name(shard);
        match &out {
            Some(o) if !o.contains("://") => PathBuf::from(o).join(name),
            _ => PathBuf::from(name),
        }
    });
    if let Some(dir) = report_path.parent()
        && !dir.as_os_str().is_empty()
    {
        let _ = std::fs::create_dir_all(dir);
    }
    match flythrough_core::run::write_json(&report_path, &result) {
        Ok(()) => eprintln!("batch report: {}", report_path.display()),
        Err(e) => eprintln!(
            "error: {}: cannot write the batch report: {e}",
            report_path.display()
        ),
    }
    // With run folders in an object store, the report goes there too.
    if let Some(o) = out.as_deref().filter(|o| flythrough_store::is_url(o)) {
        let name = batch::report_name(shard);
        let bytes = serde_json::to_vec_pretty(&result).unwrap_or_default();
        match flythrough_store::Remote::open(o).and_then(|r| r.put(&name, bytes)) {
            Ok(()) => eprintln!("batch report: {}/{name}", o.trim_end_matches('/')),
            Err(e) => eprintln!("error: {e}"),
        }
    }
    if result.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The one line a panic prints: `flythrough: internal error: <message> at <file:line:col>; please
/// report it` (a multi-line message joined with spaces).
fn panic_line(payload: &(dyn std::any::Any + Send), location: Option<String>) -> String {
    let msg = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic without a message)");
    let msg = msg
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let at = location.map(|l| format!(" at {l}")).unwrap_or_default();
    format!("flythrough: internal error: {msg}{at}; please report it")
}

/// A panic anywhere prints [`panic_line`] (and a backtrace only when `RUST_BACKTRACE` asks for one);
/// `main` turns it into exit code 1. Allocation failures abort and cannot be caught: readers of
/// files bound every allocation by the file's size instead.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        eprintln!("{}", panic_line(info.payload(), location));
        if std::env::var("RUST_BACKTRACE").is_ok_and(|v| v != "0") {
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
        }
    }));
}

/// Test hook (the `test-hooks` feature only, never a release build): `FLYTHROUGH_TEST_PANIC=<msg>`
/// panics with that message before the command runs, so a test can see what a panic does.
#[cfg(feature = "test-hooks")]
fn test_panic() {
    if let Ok(msg) = std::env::var("FLYTHROUGH_TEST_PANIC") {
        panic!("{msg}");
    }
}

#[cfg(not(feature = "test-hooks"))]
fn test_panic() {}

fn main() -> ExitCode {
    install_panic_hook();
    // The hook has printed the one line; a panic in a command is exit 1, never an abort.
    std::panic::catch_unwind(run_cli).unwrap_or(ExitCode::from(1))
}

fn run_cli() -> ExitCode {
    // Before any thread exists (it sets an environment variable).
    flythrough_gpu::quiet_vulkan_layers();
    let cli = Cli::parse();
    init_logging(cli.quiet, cli.verbose);
    flythrough_core::alloc::retain_freed_memory();
    test_panic();
    match cli.command {
        Command::Init { photo_dir, force } => match flythrough::init::init_venue(&photo_dir, force)
        {
            Ok(path) => {
                println!("wrote {}", path.display());
                println!("next: flythrough run {}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Run {
            config,
            out,
            until,
            force,
            status_file,
            device,
        } => {
            let out_s = out.as_ref().map(|p| p.to_string_lossy().into_owned());
            // `--out ftp://…` is a usage error, never a local folder called `ftp:`.
            if let Some(Err(e)) = out_s
                .as_deref()
                .map(|o| flythrough_core::config::check_location("--out", o))
            {
                return fail(PipelineError::Config(e));
            }
            let opts = RunOptions {
                out: out.clone(),
                until,
                force,
                sync: None,
                device,
                hooks: test_hooks(),
            };
            let (result, local, traffic) = if remote::needs_remote(&config, out_s.as_deref()) {
                let o = remote::run(&config, out_s.as_deref(), &opts);
                (o.result, o.local, Some(o.traffic))
            } else {
                let local = out.clone().or_else(|| {
                    pipeline::load_config(&config)
                        .ok()
                        .map(|cfg| pipeline::default_run_dir(&cfg))
                });
                (pipeline::run_venue(&config, &opts), local, None)
            };
            if let Some(path) = &status_file {
                write_status(path, local, &result, traffic);
            }
            match result {
                Ok(report) => {
                    match &out_s {
                        Some(u) if flythrough_store::is_url(u) => println!("run folder: {u}"),
                        _ => println!("run folder: {}", report.run_dir.display()),
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Batch {
            list,
            out,
            jobs,
            shard,
            shard_count,
            report,
            until,
        } => run_batch(
            &list,
            out,
            jobs,
            shard.as_deref(),
            shard_count,
            report,
            until,
            cli.quiet,
        ),
        Command::Synth {
            out,
            seed,
            images,
            width,
            height,
        } => {
            let opts = flythrough_synth::SynthOptions {
                seed,
                images,
                width,
                height,
                ..Default::default()
            };
            match flythrough_synth::generate(&opts, &out) {
                Ok(_) => {
                    println!(
                        "synthetic venue: {} (config: {})",
                        out.display(),
                        out.join("venue.toml").display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(PipelineError::Stage(e.to_string())),
            }
        }
        Command::Demo { out, device } => {
            let venue = out.join("venue");
            let opts = flythrough_synth::SynthOptions::default();
            if let Err(e) = flythrough_synth::generate(&opts, &venue) {
                return fail(PipelineError::Stage(e.to_string()));
            }
            if let Err(e) = add_demo_settings(&venue.join("venue.toml")) {
                return fail(PipelineError::Stage(e.to_string()));
            }
            tracing::info!("synthetic venue written to {}", venue.display());
            let run_dir = out.join("run");
            match pipeline::run_venue(
                &venue.join("venue.toml"),
                &RunOptions {
                    out: Some(run_dir.clone()),
                    device,
                    ..Default::default()
                },
            ) {
                Ok(_) => {
                    println!("demo venue: {}", venue.display());
                    println!("run folder: {}", run_dir.display());
                    for f in [
                        "render/flythrough_360.mp4",
                        "render/viewer.html",
                        "report.html",
                    ] {
                        let p = run_dir.join(f);
                        if p.exists() {
                            println!("  {}", p.display());
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::EvalPoses { est, gt } => {
            let read = |p: &PathBuf| {
                flythrough_core::Reconstruction::read(p)
                    .map_err(|e| PipelineError::Config(e.to_string()))
            };
            match (read(&est), read(&gt)) {
                (Ok(e), Ok(g)) => {
                    let ev = flythrough_sfm::eval_poses(&e, &g);
                    println!("{}", serde_json::to_string_pretty(&ev).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                (Err(e), _) | (_, Err(e)) => fail(e),
            }
        }
        Command::View { run_dir, port } => match flythrough_render::serve_viewer(&run_dir, port) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(PipelineError::Stage(e.to_string())),
        },
        Command::Config {
            defaults,
            check,
            out,
        } => {
            if let Some(path) = check {
                return match pipeline::check_config(&path, out.as_deref()) {
                    Ok((c, originals)) => {
                        println!(
                            "{}: ok (venue {:?}, {} keyframes, {} calibration pairs)",
                            path.display(),
                            c.config.venue.name,
                            c.config.venue.keyframes.len(),
                            c.config.calibration.len()
                        );
                        if let flythrough_core::config::Originals::Gone(why) = originals {
                            println!(
                                "note: {why}; the run continues from the committed capture and privacy outputs (they cannot be redone)"
                            );
                        }
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(e),
                };
            }
            if defaults {
                print!("{}", flythrough_core::Config::defaults_documented());
                return ExitCode::SUCCESS;
            }
            eprintln!("error: say --defaults or --check FILE");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::panic_line;

    #[test]
    fn a_panic_is_one_line_naming_message_and_place() {
        let p: Box<dyn std::any::Any + Send> = Box::new("index out of bounds:\n  the len is 0");
        assert_eq!(
            panic_line(p.as_ref(), Some("crates/x.rs:3:5".into())),
            "flythrough: internal error: index out of bounds: the len is 0 at crates/x.rs:3:5; please report it"
        );
        let p: Box<dyn std::any::Any + Send> = Box::new(String::from("capacity overflow"));
        assert_eq!(
            panic_line(p.as_ref(), None),
            "flythrough: internal error: capacity overflow; please report it"
        );
        let p: Box<dyn std::any::Any + Send> = Box::new(42u32);
        assert!(panic_line(p.as_ref(), None).contains("a panic without a message"));
    }
}
