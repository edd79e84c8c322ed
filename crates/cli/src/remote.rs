//! `flythrough run` with an object-store run folder (`--out s3://…`) or photo folder
//! (`[venue] photos = "s3://…"`): sets up the sync layer (`flythrough_store`) around a local cache
//! of the run folder and runs the ordinary pipeline on that cache.

use crate::pipeline::{self, PipelineError, RunOptions, RunReport};
use flythrough_core::config::{Config, LoadedConfig};
use flythrough_store::{RemotePhotos, RemoteRun, VenueSync, is_url};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How a remote run ended: the report, or the error, with the local cache folder and the traffic.
pub struct RemoteOutcome {
    pub result: Result<RunReport, PipelineError>,
    /// The local run folder (the cache of the remote one).
    pub local: Option<PathBuf>,
    /// Bytes uploaded and downloaded.
    pub traffic: (u64, u64),
}

/// Whether a run needs the sync layer: `--out` or the config's photo folder is a URL.
pub fn needs_remote(config: &Path, out: Option<&str>) -> bool {
    if out.is_some_and(is_url) {
        return true;
    }
    std::fs::read_to_string(config)
        .ok()
        .and_then(|t| Config::parse(&t, config).ok())
        .is_some_and(|c| is_url(&c.venue.photos))
}

/// Seconds a remote run folder's lease lives without renewal (`FLYTHROUGH_LEASE_TTL_S`, default
/// 120): how long another task waits before taking over from a task that died.
fn lease_ttl() -> Duration {
    Duration::from_secs_f64(
        std::env::var("FLYTHROUGH_LEASE_TTL_S")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| *v >= 1.0)
            .unwrap_or(120.0),
    )
}

fn load(config: &Path, photos: Option<&RemotePhotos>) -> Result<LoadedConfig, PipelineError> {
    let Some(photos) = photos else {
        return pipeline::load_config(config);
    };
    let cerr = |msg: String| PipelineError::Config(format!("{}: {msg}", config.display()));
    let text = std::fs::read_to_string(config)
        .map_err(|e| cerr(format!("cannot read the config: {e}")))?;
    let cfg = Config::parse(&text, config).map_err(|e| PipelineError::Config(e.to_string()))?;
    for k in &cfg.venue.keyframes {
        if !photos.has(k) {
            return Err(cerr(format!(
                "[venue] keyframes: photo {k:?} is not in {}",
                photos.remote.url()
            )));
        }
    }
    for (i, c) in cfg.calibration.iter().enumerate() {
        for name in [&c.a, &c.b] {
            if !photos.has(name) {
                return Err(cerr(format!(
                    "[[calibration]] #{}: photo {name:?} is not in {}",
                    i + 1,
                    photos.remote.url()
                )));
            }
        }
    }
    std::fs::create_dir_all(&photos.dir)
        .map_err(|e| cerr(format!("{}: {e}", photos.dir.display())))?;
    let dir = config
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(LoadedConfig {
        config: cfg,
        path: config.to_path_buf(),
        dir,
        photos_dir: photos.dir.clone(),
    })
}

/// Run one venue whose run folder and/or photo folder is in an object store.
pub fn run(config: &Path, out: Option<&str>, opts: &RunOptions) -> RemoteOutcome {
    let fail = |e: PipelineError, local: Option<PathBuf>| RemoteOutcome {
        result: Err(e),
        local,
        traffic: (0, 0),
    };
    let cache = flythrough_store::sync::cache_root();
    let text = std::fs::read_to_string(config).unwrap_or_default();
    let photos_url = Config::parse(&text, config)
        .ok()
        .map(|c| c.venue.photos)
        .filter(|p| is_url(p));
    let photos = match &photos_url {
        Some(u) => match RemotePhotos::open(u, &cache) {
            Ok(p) => Some(p),
            Err(e) => return fail(PipelineError::Stage(e.to_string()), None),
        },
        None => None,
    };
    let cfg = match load(config, photos.as_ref()) {
        Ok(c) => c,
        Err(e) => return fail(e, None),
    };
    let (local, remote_run) = match out {
        Some(u) if is_url(u) => {
            let local = flythrough_store::sync::local_run_dir(&cache, u);
            match RemoteRun::open(u, lease_ttl()) {
                Ok(r) => (local, Some(r)),
                Err(e) => return fail(PipelineError::Stage(e), None),
            }
        }
        Some(p) => (PathBuf::from(p), None),
        None => (pipeline::default_run_dir(&cfg), None),
    };
    if remote_run.is_some() {
        tracing::info!("local cache of the run folder: {}", local.display());
    }
    let sync = match VenueSync::open(&local, remote_run, photos) {
        Ok(s) => Arc::new(s),
        Err(e) => return fail(PipelineError::Stage(e), Some(local)),
    };
    let run_opts = RunOptions {
        out: Some(local.clone()),
        until: opts.until,
        force: opts.force,
        sync: Some(sync.clone()),
        device: opts.device,
        hooks: opts.hooks.clone(),
    };
    let mut result = pipeline::run_loaded(&cfg, &run_opts);
    if result.is_err() && sync.found_corruption() {
        tracing::warn!(
            "a remote stage was corrupted and has been uncommitted: running again to redo it"
        );
        result = pipeline::run_loaded(&cfg, &run_opts);
    }
    drop(run_opts);
    let traffic = sync.traffic();
    tracing::info!(
        "object store: {:.2} MB uploaded, {:.2} MB downloaded",
        traffic.0 as f64 / 1e6,
        traffic.1 as f64 / 1e6
    );
    match Arc::try_unwrap(sync) {
        Ok(s) => s.finish(),
        Err(_) => tracing::warn!("sync layer still in use at the end of the run"),
    }
    RemoteOutcome {
        result,
        local: Some(local),
        traffic,
    }
}
