//! The sync layer: a local run folder (a cache) kept in step with a remote one, so the stage crates
//! read and write local files only.
//!
//! Remote layout of a run folder `URL/`:
//! ```text
//! URL/<stage>/…            a stage's files
//! URL/<stage>/stage.json   uploaded last: the stage is committed remotely once this exists
//! URL/.sync/<stage>.json   the commit's file list (path, size, blake3), uploaded just before stage.json
//! URL/.work/<stage>/…      resumable state of a stage in progress (checkpoints, frames), uploaded as written
//! URL/.lease               the one-writer lease
//! URL/report.html
//! ```
//! At start every remote `stage.json` is checked against its file list and the listing (present,
//! sizes); a stage that fails the check (a task died mid-upload, a file was truncated or removed) is
//! ignored with a warning and will be redone. The local folder then receives the `stage.json` of each
//! remotely committed stage only (a *sparse* stage): enough for the runner to see what is up to date.
//! A stage's files are downloaded only when a later stage that runs reads them, and are checked
//! against their blake3 hashes as they arrive. Originals never go up: only `RUN/<stage>/`,
//! `RUN/.work/<stage>/` and `report.html` are uploaded, and the photo cache lives outside the run
//! folder.

use crate::StageSync;
use crate::lease::Lease;
use crate::remote::{Listed, Remote, StoreError};
use flythrough_core::Stage;
use flythrough_core::run::RunDir;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Remote file list of a committed stage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageFiles {
    /// blake3 of the stage's `stage.json`.
    pub stage_json: String,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// Path inside the stage folder, `/`-separated.
    pub path: String,
    pub size: u64,
    pub blake3: String,
}

/// Local bookkeeping of what came from the remote: `RUN/.sync/state.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    /// Stages whose local folder may hold only `stage.json`: stage -> blake3 of that stage.json.
    sparse: BTreeMap<String, String>,
}

/// Why a remote stage cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(
        "{url}: a downloaded file does not match the stage's file list (corrupted remote stage); the stage was uncommitted and will be redone"
    )]
    Corrupt { url: String },
    #[error("{path}: {msg}")]
    Local { path: String, msg: String },
    #[error("{url}: the run folder's lease was lost (another task took it over); stopped writing")]
    LeaseLost { url: String },
}

fn local_err(path: &Path) -> impl Fn(std::io::Error) -> SyncError + '_ {
    move |e| SyncError::Local {
        path: path.display().to_string(),
        msg: e.to_string(),
    }
}

fn hash_bytes(b: &[u8]) -> String {
    blake3::hash(b).to_hex().to_string()
}

/// Every file under `dir`, as (`/`-separated relative path, full path), sorted.
fn walk(dir: &Path) -> Vec<(String, PathBuf)> {
    fn rec(base: &Path, d: &Path, out: &mut Vec<(String, PathBuf)>) {
        let Ok(rd) = std::fs::read_dir(d) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                rec(base, &p, out);
            } else if p.is_file()
                && let Ok(rel) = p.strip_prefix(base)
            {
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push((rel.join("/"), p));
            }
        }
    }
    let mut out = Vec::new();
    rec(dir, dir, &mut out);
    out.sort();
    out
}

fn is_scratch(name: &str) -> bool {
    name.ends_with(".partial") || name.ends_with(".tmp")
}

/// A remote run folder: the store location, its lease, and the remote commit state.
#[derive(Debug)]
pub struct RemoteRun {
    pub remote: Remote,
    lease: Lease,
    /// stage -> blake3 of the remotely committed stage.json (valid commits only).
    committed: Mutex<BTreeMap<String, String>>,
}

/// Photos in an object store: listed once, downloaded on demand into a local cache folder.
#[derive(Debug)]
pub struct RemotePhotos {
    pub remote: Remote,
    pub listing: Vec<Listed>,
    /// Local cache of the originals (outside every run folder; deleted when the run ends).
    pub dir: PathBuf,
}

impl RemotePhotos {
    /// List the photos at `url` (top-level image files only).
    pub fn open(url: &str, cache: &Path) -> Result<RemotePhotos, StoreError> {
        let remote = Remote::open(url)?;
        remote.check_access()?;
        let listing: Vec<Listed> = remote
            .list("")?
            .into_iter()
            .filter(|o| {
                !o.rel.contains('/')
                    && !o.rel.starts_with('.')
                    && flythrough_core::images::is_image_name(&o.rel)
            })
            .collect();
        if listing.is_empty() {
            return Err(StoreError::Remote {
                url: remote.url().to_string(),
                msg: "no photos (JPEG, PNG, TIFF) at this URL".into(),
            });
        }
        let dir = cache
            .join("photos")
            .join(&hash_bytes(remote.url().as_bytes())[..16]);
        Ok(RemotePhotos {
            remote,
            listing,
            dir,
        })
    }

    /// The names of the listed photos.
    pub fn names(&self) -> Vec<String> {
        self.listing.iter().map(|o| o.rel.clone()).collect()
    }

    /// Whether a photo of this name is in the listing.
    pub fn has(&self, name: &str) -> bool {
        self.listing.iter().any(|o| o.rel == name)
    }

    /// The capture stage's input hash for remote photos: names, sizes and ETags from the listing (an
    /// object's ETag changes when its content does), so a resumed run does not download every
    /// original just to see that capture is up to date.
    pub fn fingerprint(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"remote-photos-v1");
        for o in &self.listing {
            h.update(o.rel.as_bytes());
            h.update(&o.size.to_le_bytes());
            h.update(o.e_tag.as_deref().unwrap_or("").as_bytes());
        }
        h.finalize().to_hex().to_string()
    }

    /// Download every listed photo that is not already in the cache with its size.
    pub fn download(&self) -> Result<(), StoreError> {
        for o in &self.listing {
            let dst = self.dir.join(&o.rel);
            if std::fs::metadata(&dst).is_ok_and(|m| m.len() == o.size) {
                continue;
            }
            self.remote.get_to_file(&o.rel, &dst)?;
        }
        Ok(())
    }
}

/// Uploads a stage's `.work/` folder while the stage runs.
struct Watcher {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<()>,
}

/// Uploaded work files: rel -> (size, mtime).
type Seen = BTreeMap<String, (u64, SystemTime)>;

fn upload_work(remote: &Remote, stage: &str, dir: &Path, seen: &mut Seen) {
    for (rel, p) in walk(dir) {
        if is_scratch(&rel) {
            continue;
        }
        let Ok(m) = std::fs::metadata(&p) else {
            continue;
        };
        let sig = (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH));
        if seen.get(&rel) == Some(&sig) {
            continue;
        }
        match remote.put_file(&p, &format!(".work/{stage}/{rel}")) {
            Ok(()) => {
                seen.insert(rel, sig);
            }
            Err(e) => tracing::warn!("resumable state not uploaded: {e}"),
        }
    }
}

/// A venue's sync: the remote run folder (if `--out` is a URL) and the remote photos (if `[venue]
/// photos` is a URL), around the local run folder `local`.
#[derive(Debug)]
pub struct VenueSync {
    local: RunDir,
    run: Option<RemoteRun>,
    photos: Option<RemotePhotos>,
    state: Mutex<State>,
    uploaded: AtomicBool,
    corrupt: AtomicBool,
    interval: Duration,
    watcher: Mutex<Option<(Stage, WatcherBox)>>,
}

struct WatcherBox(Watcher);
impl std::fmt::Debug for WatcherBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watcher")
    }
}

/// Where local caches go: `FLYTHROUGH_CACHE`, else `$XDG_CACHE_HOME/flythrough`, else
/// `~/.cache/flythrough`, else the system temp folder.
pub fn cache_root() -> PathBuf {
    if let Some(p) = std::env::var_os("FLYTHROUGH_CACHE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("flythrough");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(h).join(".cache").join("flythrough");
    }
    std::env::temp_dir().join("flythrough-cache")
}

/// The local cache folder of a remote run folder.
pub fn local_run_dir(cache: &Path, url: &str) -> PathBuf {
    let url = url.trim_end_matches('/');
    let name = url.rsplit('/').next().unwrap_or("run");
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    cache
        .join("runs")
        .join(format!("{}-{safe}", &hash_bytes(url.as_bytes())[..16]))
}

impl RemoteRun {
    /// Open a remote run folder and take its lease.
    pub fn open(url: &str, lease_ttl: Duration) -> Result<RemoteRun, String> {
        let remote = Remote::open(url).map_err(|e| e.to_string())?;
        remote.check_access().map_err(|e| e.to_string())?;
        let lease = Lease::acquire(&remote, lease_ttl).map_err(|e| e.to_string())?;
        Ok(RemoteRun {
            remote,
            lease,
            committed: Mutex::new(BTreeMap::new()),
        })
    }

    /// The file list and stage.json of a remote stage, if it is a complete commit.
    fn check_stage(&self, stage: Stage) -> Result<Option<(StageFiles, Vec<u8>)>, StoreError> {
        let sj = self.remote.get(&format!("{stage}/stage.json"))?;
        let Some(sj) = sj else {
            let partial = !self.remote.list(stage.as_str())?.is_empty();
            if partial {
                tracing::warn!(
                    "{}/{stage}/: files without a stage.json (a task stopped mid-upload); ignored, the stage will be redone",
                    self.remote.url()
                );
            }
            return Ok(None);
        };
        let bad = |why: String| {
            tracing::warn!(
                "{}/{stage}/: {why}; the remote stage is ignored and will be redone",
                self.remote.url()
            );
            Ok(None)
        };
        let Some(files) = self.remote.get(&format!(".sync/{stage}.json"))? else {
            return bad("no file list (.sync/) for this stage.json".into());
        };
        let Ok(files) = serde_json::from_slice::<StageFiles>(&files.bytes) else {
            return bad("unreadable file list".into());
        };
        if files.stage_json != hash_bytes(&sj.bytes)
            || serde_json::from_slice::<flythrough_core::run::StageRecord>(&sj.bytes).is_err()
        {
            return bad("stage.json does not match the stage's file list".into());
        }
        let listed: BTreeMap<String, u64> = self
            .remote
            .list(stage.as_str())?
            .into_iter()
            .map(|o| (o.rel, o.size))
            .collect();
        for f in &files.files {
            match listed.get(&format!("{stage}/{}", f.path)) {
                None => return bad(format!("{} is missing", f.path)),
                Some(&s) if s != f.size => {
                    return bad(format!(
                        "{} has {s} bytes, the file list says {}",
                        f.path, f.size
                    ));
                }
                _ => {}
            }
        }
        Ok(Some((files, sj.bytes.to_vec())))
    }
}

impl VenueSync {
    /// Set up the sync of one venue: pull the remote commit state into `local` (sparse stages).
    pub fn open(
        local: &Path,
        run: Option<RemoteRun>,
        photos: Option<RemotePhotos>,
    ) -> Result<VenueSync, String> {
        std::fs::create_dir_all(local.join(".sync"))
            .map_err(|e| format!("{}: {e}", local.display()))?;
        let state: State = std::fs::read(local.join(".sync/state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let interval = Duration::from_secs_f64(
            std::env::var("FLYTHROUGH_SYNC_INTERVAL_S")
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(30.0)
                .max(0.2),
        );
        let s = VenueSync {
            local: RunDir::new(local),
            run,
            photos,
            state: Mutex::new(state),
            uploaded: AtomicBool::new(false),
            corrupt: AtomicBool::new(false),
            interval,
            watcher: Mutex::new(None),
        };
        s.pull_records().map_err(|e| e.to_string())?;
        Ok(s)
    }

    /// How often a running stage's resumable state is uploaded (default 30 s,
    /// `FLYTHROUGH_SYNC_INTERVAL_S`).
    pub fn set_upload_interval(&mut self, every: Duration) {
        self.interval = every;
    }

    /// The local run folder.
    pub fn local(&self) -> &RunDir {
        &self.local
    }

    /// The local folder the photos are downloaded into, when they are remote.
    pub fn photos_dir(&self) -> Option<&Path> {
        self.photos.as_ref().map(|p| p.dir.as_path())
    }

    fn save_state(&self) {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let p = self.local.root().join(".sync/state.json");
        let _ = flythrough_core::run::write_json(&p, &st);
    }

    /// Make the local folder agree with the remote commits: a valid remote commit that differs from
    /// the local one replaces it with a sparse stage (its stage.json only).
    fn pull_records(&self) -> Result<(), SyncError> {
        let Some(run) = &self.run else {
            return Ok(());
        };
        for stage in Stage::ALL {
            let dir = self.local.stage_dir(stage);
            let local_json = std::fs::read(dir.join("stage.json")).ok();
            let remote = run.check_stage(stage)?;
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            match remote {
                Some((files, sj)) => {
                    run.committed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(stage.to_string(), files.stage_json.clone());
                    if local_json.as_deref() == Some(&sj[..]) {
                        continue;
                    }
                    if dir.exists() {
                        std::fs::remove_dir_all(&dir).map_err(local_err(&dir))?;
                    }
                    std::fs::create_dir_all(&dir).map_err(local_err(&dir))?;
                    flythrough_core::run::write_atomic(&dir.join("stage.json"), &sj)
                        .map_err(local_err(&dir))?;
                    st.sparse.insert(stage.to_string(), files.stage_json);
                }
                None => {
                    // A local copy that only mirrored a remote commit that is gone is dropped; a
                    // complete local commit stays (the runner decides, and it is uploaded if kept).
                    if st.sparse.remove(stage.as_str()).is_some() && dir.exists() {
                        std::fs::remove_dir_all(&dir).map_err(local_err(&dir))?;
                    }
                }
            }
        }
        self.save_state();
        Ok(())
    }

    fn check_lease(&self) -> Result<(), SyncError> {
        match &self.run {
            Some(r) if !r.lease.is_held() => Err(SyncError::LeaseLost {
                url: r.remote.url().to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Download the files of a sparse stage, checking each against the file list. Only files
    /// accepted by `want` (all of them for a stage's inputs).
    fn download_stage(
        &self,
        stage: Stage,
        want: &dyn Fn(&FileEntry) -> bool,
    ) -> Result<(), SyncError> {
        let Some(run) = &self.run else {
            return Ok(());
        };
        let sparse = self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sparse
            .contains_key(stage.as_str());
        if !sparse {
            return Ok(());
        }
        let files: StageFiles = match run.remote.get(&format!(".sync/{stage}.json"))? {
            Some(f) => serde_json::from_slice(&f.bytes).map_err(|_| SyncError::Corrupt {
                url: format!("{}/.sync/{stage}.json", run.remote.url()),
            })?,
            None => {
                return Err(SyncError::Corrupt {
                    url: format!("{}/{stage}", run.remote.url()),
                });
            }
        };
        let dir = self.local.stage_dir(stage);
        let mut all = true;
        for f in &files.files {
            if !want(f) {
                all = false;
                continue;
            }
            let dst = dir.join(&f.path);
            if std::fs::metadata(&dst).is_ok_and(|m| m.len() == f.size)
                && flythrough_core::run::hash_file(&dst).is_ok_and(|h| h == f.blake3)
            {
                continue;
            }
            let h = run
                .remote
                .get_to_file(&format!("{stage}/{}", f.path), &dst)?;
            if h != f.blake3 {
                let _ = std::fs::remove_file(&dst);
                // Uncommit the remote stage so the next attempt redoes it instead of failing again.
                let _ = run.remote.delete(&format!("{stage}/stage.json"));
                let _ = std::fs::remove_dir_all(&dir);
                self.state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .sparse
                    .remove(stage.as_str());
                self.save_state();
                self.corrupt.store(true, Ordering::SeqCst);
                return Err(SyncError::Corrupt {
                    url: format!("{}/{stage}/{}", run.remote.url(), f.path),
                });
            }
        }
        if all {
            self.state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .sparse
                .remove(stage.as_str());
            self.save_state();
        }
        Ok(())
    }

    /// Upload a locally committed stage: uncommit remotely, files, stale files removed, the file
    /// list, and `stage.json` last.
    fn upload_stage(&self, stage: Stage) -> Result<(), SyncError> {
        let Some(run) = &self.run else {
            return Ok(());
        };
        let dir = self.local.stage_dir(stage);
        let sj_path = dir.join("stage.json");
        let Ok(sj) = std::fs::read(&sj_path) else {
            return Ok(());
        };
        let sj_hash = hash_bytes(&sj);
        if run
            .committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(stage.as_str())
            == Some(&sj_hash)
        {
            return Ok(()); // already there
        }
        if self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sparse
            .get(stage.as_str())
            == Some(&sj_hash)
        {
            return Ok(()); // a mirror of a remote commit
        }
        self.check_lease()?;
        let r = &run.remote;
        r.delete(&format!("{stage}/stage.json"))?;
        r.delete(&format!(".sync/{stage}.json"))?;
        let mut files = Vec::new();
        for (rel, p) in walk(&dir) {
            if rel == "stage.json" || is_scratch(&rel) {
                continue;
            }
            self.check_lease()?;
            let size = std::fs::metadata(&p).map_err(local_err(&p))?.len();
            let blake3 = flythrough_core::run::hash_file(&p).map_err(local_err(&p))?;
            r.put_file(&p, &format!("{stage}/{rel}"))?;
            files.push(FileEntry {
                path: rel,
                size,
                blake3,
            });
        }
        let keep: std::collections::BTreeSet<String> = files
            .iter()
            .map(|f| format!("{stage}/{}", f.path))
            .chain([format!("{stage}/stage.json")])
            .collect();
        for o in r.list(stage.as_str())? {
            if !keep.contains(&o.rel) {
                r.delete(&o.rel)?;
            }
        }
        let list = StageFiles {
            stage_json: sj_hash.clone(),
            files,
        };
        self.check_lease()?;
        r.put(
            &format!(".sync/{stage}.json"),
            serde_json::to_vec_pretty(&list).unwrap_or_default(),
        )?;
        r.put(&format!("{stage}/stage.json"), sj)?;
        r.delete_prefix(&format!(".work/{stage}"))?;
        run.committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(stage.to_string(), sj_hash);
        self.uploaded.store(true, Ordering::SeqCst);
        tracing::info!("{stage}: committed to {}/{stage}/", r.url());
        Ok(())
    }

    fn stop_watcher(&self) {
        let w = self
            .watcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((_, WatcherBox(w))) = w {
            w.stop.store(true, Ordering::SeqCst);
            let _ = w.handle.join();
        }
    }

    /// Whether a downloaded stage turned out corrupted (and was uncommitted): running again redoes it.
    pub fn found_corruption(&self) -> bool {
        self.corrupt.swap(false, Ordering::SeqCst)
    }

    /// Bytes moved so far: (up, down), run folder and photos together.
    pub fn traffic(&self) -> (u64, u64) {
        let mut up = 0;
        let mut down = 0;
        if let Some(r) = &self.run {
            let (u, d, _, _) = r.remote.traffic.snapshot();
            up += u;
            down += d;
        }
        if let Some(p) = &self.photos {
            let (u, d, _, _) = p.remote.traffic.snapshot();
            up += u;
            down += d;
        }
        (up, down)
    }

    /// End of the run: stop uploading, release the lease, delete the downloaded originals.
    pub fn finish(self) {
        self.stop_watcher();
        if let Some(p) = &self.photos {
            let _ = std::fs::remove_dir_all(&p.dir);
        }
        if let Some(r) = self.run {
            r.lease.release();
        }
    }
}

impl StageSync for VenueSync {
    fn photos_fingerprint(&self) -> Option<String> {
        self.photos.as_ref().map(RemotePhotos::fingerprint)
    }

    fn photo_listing(&self) -> Option<(Vec<String>, String)> {
        self.photos
            .as_ref()
            .map(|p| (p.names(), p.remote.url().to_string()))
    }

    fn before_stage(&self, stage: Stage) -> Result<(), String> {
        let Some(run) = &self.run else {
            return Ok(());
        };
        let prefix = format!(".work/{stage}");
        let remote_work = run.remote.list(&prefix).map_err(|e| e.to_string())?;
        if !remote_work.iter().any(|o| o.rel.ends_with("/inputs.key")) {
            return Ok(());
        }
        // The remote copy is the latest one that survived: it replaces the local scratch.
        let dir = self.local.work_dir(stage);
        let _ = std::fs::remove_dir_all(&dir);
        for o in &remote_work {
            let rel = &o.rel[prefix.len() + 1..];
            run.remote
                .get_to_file(&o.rel, &dir.join(rel))
                .map_err(|e| e.to_string())?;
        }
        tracing::info!(
            "{stage}: resumable state downloaded from {}/{prefix}/ ({} files)",
            run.remote.url(),
            remote_work.len()
        );
        Ok(())
    }

    fn stage_inputs(&self, stage: Stage) -> Result<(), String> {
        if let Some(p) = &self.photos
            && stage.reads_originals()
        {
            p.download().map_err(|e| e.to_string())?;
        }
        // Only what the stage declares it reads.
        for &up in stage.reads() {
            self.download_stage(up, &|_| true)
                .map_err(|e| e.to_string())?;
        }
        if let Some(run) = &self.run {
            self.stop_watcher();
            let stop = Arc::new(AtomicBool::new(false));
            let (remote, dir, st, every, stop2) = (
                run.remote.clone(),
                self.local.work_dir(stage),
                stage.as_str().to_string(),
                self.interval,
                stop.clone(),
            );
            let handle = std::thread::spawn(move || {
                let mut seen = Seen::new();
                loop {
                    let t0 = std::time::Instant::now();
                    while t0.elapsed() < every && !stop2.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    upload_work(&remote, &st, &dir, &mut seen);
                    if stop2.load(Ordering::SeqCst) {
                        return;
                    }
                }
            });
            *self.watcher.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((stage, WatcherBox(Watcher { stop, handle })));
        }
        Ok(())
    }

    fn after_stage(&self, stage: Stage, committed: bool) -> Result<(), String> {
        self.stop_watcher();
        if committed {
            self.upload_stage(stage).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn before_report(&self) -> Result<(), String> {
        if !self.uploaded.load(Ordering::SeqCst) {
            return Ok(());
        }
        // The report reads small summaries of every stage, not the photos or the weights.
        for stage in Stage::ALL {
            self.download_stage(stage, &|f| {
                f.size < (2 << 20) && !f.path.starts_with("images/") && !f.path.ends_with(".mp4")
            })
            .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn after_report(&self) -> Result<(), String> {
        let Some(run) = &self.run else {
            return Ok(());
        };
        if !self.uploaded.load(Ordering::SeqCst) {
            return Ok(());
        }
        let p = self.local.root().join("report.html");
        if p.is_file() {
            self.check_lease().map_err(|e| e.to_string())?;
            run.remote
                .put_file(&p, "report.html")
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
