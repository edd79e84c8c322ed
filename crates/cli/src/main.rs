//! `flythrough`: photos of a venue in, a 360° fly-through video out.

use clap::{Parser, Subcommand};
use flythrough::pipeline::{self, PipelineError, RunOptions};
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
    /// Run the pipeline (capture, privacy, sfm, train, render) for one venue config.
    Run {
        /// The venue's TOML config.
        config: PathBuf,
        /// Run folder (default: runs/<venue name> beside the config).
        #[arg(long)]
        out: Option<PathBuf>,
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
    /// Run several venues, one process per venue; exits 1 if any venue failed.
    Batch {
        /// Venue configs.
        configs: Vec<PathBuf>,
        /// Stop after this stage (capture, privacy, sfm, train, render).
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
    /// Print the default config (`--defaults`) or check a config file (`--check FILE`).
    Config {
        #[arg(long)]
        defaults: bool,
        #[arg(long, value_name = "FILE")]
        check: Option<PathBuf>,
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
/// a 2-core laptop CPU: small 360° frames (the defaults are sized for a long GPU-less batch job), at most
/// 48 frames (the frame rate drops so the path still plays at walking speed), and keyframes that SfM
/// could not register are left out of the path rather than stopping the demo.
const DEMO_SETTINGS: &str = "
# Added by `flythrough demo`: sized to finish in minutes on a 2-core CPU.
[render]
width = 256
height = 128
max_frames = 48
preview_source = \"reproject\"
preview_width = 320
preview_height = 180
unregistered_keyframes = \"skip\"
";

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.quiet, cli.verbose);
    flythrough_core::alloc::retain_freed_memory();
    match cli.command {
        Command::Run {
            config,
            out,
            until,
            force,
            device,
        } => match pipeline::run_venue(
            &config,
            &RunOptions {
                out,
                until,
                force,
                device,
            },
        ) {
            Ok(report) => {
                println!("run folder: {}", report.run_dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Batch { configs, until } => {
            let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("flythrough"));
            let mut failed = Vec::new();
            for c in &configs {
                let mut cmd = std::process::Command::new(&exe);
                cmd.arg("run").arg(c);
                if let Some(u) = until {
                    cmd.arg("--until").arg(u.as_str());
                }
                if cli.quiet {
                    cmd.arg("--quiet");
                }
                match cmd.status() {
                    Ok(s) if s.success() => eprintln!("{}: ok", c.display()),
                    Ok(s) => {
                        eprintln!("{}: failed ({s})", c.display());
                        failed.push(c.clone());
                    }
                    Err(e) => {
                        eprintln!("{}: could not start: {e}", c.display());
                        failed.push(c.clone());
                    }
                }
            }
            if failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
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
        Command::Config { defaults, check } => {
            if let Some(path) = check {
                return match pipeline::load_config(&path) {
                    Ok(c) => {
                        println!(
                            "{}: ok (venue {:?}, {} keyframes, {} calibration pairs)",
                            path.display(),
                            c.config.venue.name,
                            c.config.venue.keyframes.len(),
                            c.config.calibration.len()
                        );
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
