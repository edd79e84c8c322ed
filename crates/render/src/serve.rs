//! `flythrough view RUN_DIR`: a tiny HTTP/1.1 file server on 127.0.0.1 for `RUN/render/`.
//!
//! Routes: `/` → `viewer.html`; `/report.html` → `RUN/report.html`; `/render/<file>` and `/<file>` →
//! `RUN/render/<file>`; for the viewer's walk mode, `/walk.json` (whether the run has a baked model
//! the page can march, why not, and the march's constants) and `/bake/baked.safetensors` (the bake
//! stage's model, served only when its blake3 matches `bake/stage.json`'s `model_blake3`: the bytes
//! served are the bytes hashed; a mismatch answers 409 with the reason). GET and HEAD only;
//! single-range `Range: bytes=…` requests get `206 Partial Content` (browsers need them to scrub
//! video). One thread per connection, `Connection: close`.
//!
//! What it refuses (issue 20):
//! - request paths with `..`, backslashes, NUL, empty or dot-led components (404);
//! - anything that is not a regular file once every link is resolved, or whose resolved path leaves
//!   the run folder (resolved once at bind): a link in `render/` to `/etc` or to `~/.ssh/id_ed25519`
//!   answers 404; a link to another file of the same run is served. On Linux the opened file is
//!   checked again through `/proc/self/fd`, so swapping a link between the check and the open does
//!   not escape either;
//! - requests without a `Host` header or with two (400), and any `Host` other than `localhost`,
//!   `127.0.0.1` or `[::1]` with the bound port (bare when the port is 80): 421 Misdirected Request.
//!   That is what stops DNS rebinding: a page on `evil.example` whose name is re-pointed at
//!   127.0.0.1 is same-origin with its own name, and its requests carry `Host: evil.example:PORT`;
//! - header blocks over 16 KiB (431). Answers carry `Cross-Origin-Resource-Policy: same-origin` and
//!   `X-Content-Type-Options: nosniff`, so other sites cannot even embed the files.
//!
//! Why hand-written over std::net rather than axum + tower-http's `ServeDir`: the server needs GET,
//! HEAD and one byte range on a handful of static files, which is ~320 lines plus tests; axum, the
//! server half of hyper and tokio's net/fs features would add dozens of crates to every build of
//! the CLI (2-core CI) and a second runtime to a synchronous program; and `ServeDir` follows links
//! out of its folder by design (tower-http PR #658 is still open), so the link check and the `Host`
//! check would have to be written here either way.

use crate::RenderError;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};

/// The most bytes of request line and headers read before answering 431.
const MAX_HEAD_BYTES: u64 = 16 * 1024;

/// A bound server.
pub struct Server {
    listener: TcpListener,
    /// The run folder with every link resolved (`std::fs::canonicalize`).
    run_root: PathBuf,
}

impl Server {
    /// Bind `127.0.0.1:port` (0 = any free port) for the run folder `run_dir`.
    pub fn bind(run_dir: &Path, port: u16) -> Result<Server, RenderError> {
        let render = run_dir.join("render");
        if !render.is_dir() {
            return Err(RenderError::Serve(format!(
                "{}: no render output here; run the pipeline (or `flythrough run`) first",
                render.display()
            )));
        }
        let run_root = std::fs::canonicalize(run_dir)
            .map_err(|e| RenderError::Serve(format!("{}: {e}", run_dir.display())))?;
        let listener = TcpListener::bind(("127.0.0.1", port))
            .map_err(|e| RenderError::Serve(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
        Ok(Server { listener, run_root })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serve until the process ends.
    pub fn serve_forever(self) -> Result<(), RenderError> {
        let port = self.addr().port();
        for conn in self.listener.incoming() {
            match conn {
                Ok(stream) => {
                    let root = self.run_root.clone();
                    std::thread::spawn(move || {
                        if let Err(e) = handle(stream, &root, port) {
                            tracing::debug!("view: connection ended: {e}");
                        }
                    });
                }
                Err(e) => tracing::warn!("view: accept failed: {e}"),
            }
        }
        Ok(())
    }
}

/// `flythrough view RUN_DIR`: serve `RUN/render/` on `127.0.0.1:port` until interrupted.
pub fn serve_viewer(run_dir: &Path, port: u16) -> Result<(), RenderError> {
    let server = Server::bind(run_dir, port)?;
    eprintln!(
        "flythrough view: open http://{}/ (viewer), http://{}/report.html (report); Ctrl-C to stop",
        server.addr(),
        server.addr()
    );
    match walk_status(&server.run_root) {
        WalkStatus::Ready { bytes, .. } => eprintln!(
            "flythrough view: walk mode: http://{}/?mode=walk (baked model, {:.1} MB)",
            server.addr(),
            bytes as f64 / 1e6
        ),
        WalkStatus::Unavailable { reason, .. } => {
            eprintln!("flythrough view: walk mode unavailable: {reason}")
        }
    }
    server.serve_forever()
}

/// The bake stage's model file, as the page asks for it.
pub const WALK_MODEL_URL: &str = "/bake/baked.safetensors";
/// The walk mode's status, as the page asks for it.
pub const WALK_STATUS_URL: &str = "/walk.json";

/// Whether the viewer's walk mode can run on this run folder.
#[derive(Debug, Clone, PartialEq)]
pub enum WalkStatus {
    /// The bake stage is committed and its model (resolved path) matches the hash it recorded.
    Ready {
        path: PathBuf,
        bytes: u64,
        blake3: String,
    },
    /// Why not (no bake stage, a model that does not match, a build without the baked renderer);
    /// `missing`: there is no bake stage at all.
    Unavailable { reason: String, missing: bool },
}

/// The committed bake stage's model under `run_root` (resolved), its blake3 checked
/// ([`flythrough_core::BakeOutput::open`]) and its resolved path inside the run folder.
pub fn walk_status(run_root: &Path) -> WalkStatus {
    let unavailable = |reason: String| WalkStatus::Unavailable {
        reason,
        missing: false,
    };
    if !cfg!(feature = "nerf") {
        return unavailable(
            "this flythrough was built without the baked renderer (cargo feature `nerf`)".into(),
        );
    }
    let run = flythrough_core::RunDir::new(run_root);
    let out = match flythrough_core::BakeOutput::open(&run) {
        Ok(out) => out,
        Err(flythrough_core::artifacts::ArtifactError::NotCommitted { .. }) => {
            return WalkStatus::Unavailable {
                reason:
                    "this run has no bake stage (bake/stage.json): walk mode marches the baked \
                         model; run `flythrough run CONFIG` with the bake stage first"
                        .into(),
                missing: true,
            };
        }
        Err(e) => return unavailable(e.to_string()),
    };
    let blake3 = match out
        .record()
        .summary::<flythrough_core::summary::BakeSummary>()
    {
        Ok(s) => s.model_blake3,
        Err(e) => return unavailable(format!("{}: {e}", out.dir().join("stage.json").display())),
    };
    match std::fs::canonicalize(out.model()) {
        Ok(real) if real.starts_with(run_root) => match std::fs::metadata(&real) {
            Ok(m) if m.is_file() => WalkStatus::Ready {
                path: real,
                bytes: m.len(),
                blake3,
            },
            _ => unavailable(format!("{}: not a regular file", out.model().display())),
        },
        _ => unavailable(format!(
            "{}: missing or outside the run folder",
            out.model().display()
        )),
    }
}

/// `/walk.json`: `{"ok": true, "model": URL, "bytes": N, "march": {…}}` or `{"ok": false,
/// "reason": "…"}`. The march constants are the CPU renderer's (`flythrough_bake::grid`), so the
/// page marches exactly as the binary serving it.
fn walk_json(run_root: &Path) -> String {
    let v = match walk_status(run_root) {
        WalkStatus::Ready { bytes, .. } => serde_json::json!({
            "ok": true,
            "model": WALK_MODEL_URL.trim_start_matches('/'),
            "bytes": bytes,
            "march": march_constants(),
        }),
        WalkStatus::Unavailable { reason, .. } => {
            serde_json::json!({ "ok": false, "reason": reason })
        }
    };
    v.to_string()
}

#[cfg(feature = "nerf")]
fn march_constants() -> serde_json::Value {
    use flythrough_bake::grid;
    serde_json::json!({
        "t_min": grid::T_MIN,
        "step_voxels": grid::STEP_VOXELS,
        "mask_alpha": grid::MASK_ALPHA,
        "raw_empty": grid::RAW_EMPTY,
        "block": grid::BLOCK,
        "channels": grid::CHANNELS,
    })
}

#[cfg(not(feature = "nerf"))]
fn march_constants() -> serde_json::Value {
    serde_json::Value::Null
}

/// The model's bytes for `/bake/baked.safetensors`: read once and hashed, so what is served is
/// what matched `model_blake3`. `Err((status, reason))` otherwise.
fn walk_model(run_root: &Path) -> Result<Vec<u8>, (&'static str, String)> {
    let (path, want) = match walk_status(run_root) {
        WalkStatus::Ready { path, blake3, .. } => (path, blake3),
        WalkStatus::Unavailable { reason, missing } => {
            let status = if missing {
                "404 Not Found"
            } else {
                "409 Conflict"
            };
            return Err((status, reason));
        }
    };
    let mut f = open_inside(run_root, &path)
        .ok_or_else(|| ("404 Not Found", format!("{}: not found", path.display())))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(|e| {
        (
            "500 Internal Server Error",
            format!("{}: {e}", path.display()),
        )
    })?;
    if blake3::hash(&bytes).to_hex().as_str() != want {
        return Err((
            "409 Conflict",
            format!(
                "{}: does not match the hash its stage.json records (changed after the bake stage \
                 wrote it); redo it with `flythrough run CONFIG --force bake`",
                path.display()
            ),
        ));
    }
    Ok(bytes)
}

/// Whether a `Host` header names this server: `localhost`, `127.0.0.1` or `[::1]` (any case) with
/// `port`, or without a port when `port` is 80 (browsers leave the default port out).
pub fn host_allowed(host: &str, port: u16) -> bool {
    let host = host.trim().to_ascii_lowercase();
    ["localhost", "127.0.0.1", "[::1]"]
        .iter()
        .any(|name| host == format!("{name}:{port}") || (port == 80 && host == *name))
}

fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("html") => "text/html; charset=utf-8",
        Some("mp4") => "video/mp4",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("jpg") | Some("jpeg") => "image/jpeg",
        Some("js") => "text/javascript",
        Some("css") => "text/css",
        _ => "application/octet-stream",
    }
}

/// Minimal percent-decoding of a URL path.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Map a request path to a file, or `None` (404). `run_root` must already be resolved
/// (`std::fs::canonicalize`, as `Server::bind` does; otherwise every request is refused). The answer
/// is the file's resolved path: a regular file inside `run_root` after following every link.
pub fn resolve(run_root: &Path, url_path: &str) -> Option<PathBuf> {
    let p = url_path.split(['?', '#']).next().unwrap_or("");
    let p = percent_decode(p)?;
    if p.contains("..") || p.contains('\\') || p.contains('\0') {
        return None;
    }
    let rel = p.trim_start_matches('/');
    let file = match rel {
        "" => run_root.join("render").join("viewer.html"),
        "report.html" => run_root.join("report.html"),
        r => {
            let r = r.strip_prefix("render/").unwrap_or(r);
            if r.is_empty() || r.split('/').any(|c| c.is_empty() || c.starts_with('.')) {
                return None;
            }
            run_root.join("render").join(r)
        }
    };
    let real = std::fs::canonicalize(&file).ok()?;
    (real.starts_with(run_root) && std::fs::metadata(&real).ok()?.is_file()).then_some(real)
}

/// Open what `resolve` found and check the opened file itself: a regular file and, where the
/// system tells (Linux's `/proc/self/fd`), still inside `run_root` — a link swapped in between
/// `resolve` and the open is not followed out.
fn open_inside(run_root: &Path, real: &Path) -> Option<std::fs::File> {
    let f = std::fs::File::open(real).ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        if let Ok(p) = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd()))
            && !p.starts_with(run_root)
        {
            return None;
        }
    }
    Some(f)
}

/// Parse `bytes=a-b`, `bytes=a-`, `bytes=-n` for a file of `len` bytes → inclusive `(start, end)`.
/// `Err(())` = unsatisfiable (416); `Ok(None)` = ignore the header (multi-range or malformed).
#[allow(clippy::result_unit_err)]
pub fn parse_range(h: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let r = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 || len == 0 {
            return Err(());
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let s: u64 = a.parse().map_err(|_| ())?;
        let e: u64 = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse().map_err(|_| ())?
        };
        if s >= len || e < s {
            return Err(());
        }
        (s, e.min(len - 1))
    };
    Ok(Some(r))
}

fn handle(stream: TcpStream, run_root: &Path, port: u16) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?).take(MAX_HEAD_BYTES);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (mut range, mut hosts) = (None, Vec::new());
    let mut complete = line.ends_with('\n');
    while complete {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || !h.ends_with('\n') {
            complete = false;
            break;
        }
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let k = k.trim();
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            } else if k.eq_ignore_ascii_case("host") {
                hosts.push(v.trim().to_string());
            }
        }
    }
    drop(reader);
    let mut out = stream;
    let simple = |out: &mut TcpStream, status: &str, body: &str| -> std::io::Result<()> {
        write!(
            out,
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    if !complete {
        if line.is_empty() {
            return Ok(());
        }
        return simple(
            &mut out,
            "431 Request Header Fields Too Large",
            "request head too large or cut short\n",
        );
    }
    let [host] = hosts.as_slice() else {
        return simple(
            &mut out,
            "400 Bad Request",
            "exactly one Host header, please\n",
        );
    };
    if !host_allowed(host, port) {
        tracing::debug!("view: refused Host: {host}");
        return simple(
            &mut out,
            "421 Misdirected Request",
            &format!(
                "this server answers only to localhost:{port}, 127.0.0.1:{port} or [::1]:{port}\n"
            ),
        );
    }
    if method != "GET" && method != "HEAD" {
        return simple(&mut out, "405 Method Not Allowed", "GET or HEAD only\n");
    }
    let route = target.split(['?', '#']).next().unwrap_or("");
    if route == WALK_STATUS_URL || route == WALK_MODEL_URL {
        let (body, ctype) = if route == WALK_STATUS_URL {
            (walk_json(run_root).into_bytes(), "application/json")
        } else {
            match walk_model(run_root) {
                Ok(b) => (b, "application/octet-stream"),
                Err((status, reason)) => {
                    tracing::debug!("view: refused the baked model: {reason}");
                    return simple(&mut out, status, &format!("{reason}\n"));
                }
            }
        };
        write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nCross-Origin-Resource-Policy: same-origin\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
        if method == "GET" {
            out.write_all(&body)?;
        }
        return out.flush();
    }
    let Some(file) = resolve(run_root, target) else {
        return simple(&mut out, "404 Not Found", "not found\n");
    };
    let Some(mut f) = open_inside(run_root, &file) else {
        return simple(&mut out, "404 Not Found", "not found\n");
    };
    let len = f.metadata()?.len();
    let ctype = content_type(&file);
    let (status, start, end) = match range.as_deref().map(|r| parse_range(r, len)) {
        Some(Err(())) => {
            return write!(
                out,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        Some(Ok(Some((s, e)))) => ("206 Partial Content", s, e),
        _ => ("200 OK", 0, len.saturating_sub(1)),
    };
    let n = if len == 0 { 0 } else { end - start + 1 };
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {n}\r\nAccept-Ranges: bytes\r\nCache-Control: no-cache\r\nCross-Origin-Resource-Policy: same-origin\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n"
    );
    if status.starts_with("206") {
        head.push_str(&format!("Content-Range: bytes {start}-{end}/{len}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if method == "GET" && n > 0 {
        f.seek(SeekFrom::Start(start))?;
        std::io::copy(&mut f.take(n), &mut out)?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, req: &str) -> (String, Vec<u8>) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        (
            String::from_utf8_lossy(&buf[..split]).into_owned(),
            buf[split + 4..].to_vec(),
        )
    }

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range("bytes=0-99", 1000), Ok(Some((0, 99))));
        assert_eq!(parse_range("bytes=900-", 1000), Ok(Some((900, 999))));
        assert_eq!(parse_range("bytes=-100", 1000), Ok(Some((900, 999))));
        assert_eq!(parse_range("bytes=990-2000", 1000), Ok(Some((990, 999))));
        assert_eq!(parse_range("bytes=1000-", 1000), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Ok(None));
    }

    #[test]
    fn serves_files_with_ranges_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let render = dir.path().join("render");
        std::fs::create_dir_all(&render).unwrap();
        let data: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        std::fs::write(render.join("flythrough_360.mp4"), &data).unwrap();
        std::fs::write(render.join("viewer.html"), "<html>v</html>").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "no").unwrap();
        let server = Server::bind(dir.path(), 0).unwrap();
        let addr = server.addr();
        std::thread::spawn(move || server.serve_forever());
        let host = format!("Host: {addr}\r\n");

        let (h, b) = get(addr, &format!("GET / HTTP/1.1\r\n{host}\r\n"));
        assert!(
            h.starts_with("HTTP/1.1 200") && h.contains("text/html"),
            "{h}"
        );
        assert_eq!(b, b"<html>v</html>");
        let (h, b) = get(
            addr,
            &format!("GET /flythrough_360.mp4 HTTP/1.1\r\n{host}Range: bytes=100-199\r\n\r\n"),
        );
        assert!(
            h.starts_with("HTTP/1.1 206") && h.contains("Content-Range: bytes 100-199/5000"),
            "{h}"
        );
        assert_eq!(b, &data[100..200]);
        let (h, b) = get(
            addr,
            &format!("GET /render/flythrough_360.mp4 HTTP/1.1\r\n{host}Range: bytes=4990-\r\n\r\n"),
        );
        assert!(
            h.contains("video/mp4") && h.contains("Content-Length: 10"),
            "{h}"
        );
        assert_eq!(b, &data[4990..]);
        let (h, _) = get(
            addr,
            &format!("GET /flythrough_360.mp4 HTTP/1.1\r\n{host}Range: bytes=6000-\r\n\r\n"),
        );
        assert!(h.starts_with("HTTP/1.1 416"), "{h}");
        let (h, b) = get(
            addr,
            &format!("HEAD /flythrough_360.mp4 HTTP/1.1\r\n{host}\r\n"),
        );
        assert!(h.contains("Content-Length: 5000") && b.is_empty(), "{h}");
        for bad in [
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/render/../secret.txt",
            "/nothing.mp4",
        ] {
            let (h, _) = get(addr, &format!("GET {bad} HTTP/1.1\r\n{host}\r\n"));
            assert!(h.starts_with("HTTP/1.1 404"), "{bad}: {h}");
        }
        let (h, _) = get(addr, &format!("POST / HTTP/1.1\r\n{host}\r\n"));
        assert!(h.starts_with("HTTP/1.1 405"));
    }

    /// A run folder with `render/viewer.html` and a 5000-byte `render/flythrough_360.mp4`, served on
    /// a free port; the server's thread runs until the test process ends.
    fn served_run() -> (tempfile::TempDir, SocketAddr, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let render = dir.path().join("render");
        std::fs::create_dir_all(&render).unwrap();
        let data: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        std::fs::write(render.join("flythrough_360.mp4"), &data).unwrap();
        std::fs::write(render.join("viewer.html"), "<html>v</html>").unwrap();
        let server = Server::bind(dir.path(), 0).unwrap();
        let addr = server.addr();
        std::thread::spawn(move || server.serve_forever());
        (dir, addr, data)
    }

    /// Issue 20: links inside `render/` that lead out of the run folder (a folder link to a
    /// secrets folder, a file link to a secret file) are not followed; links that stay inside
    /// the run folder are.
    #[cfg(unix)]
    #[test]
    fn serve_refuses_links_leaving_the_run_folder() {
        use std::os::unix::fs::symlink;
        let (dir, addr, data) = served_run();
        let render = dir.path().join("render");
        let outside = tempfile::tempdir().unwrap();
        let secret = b"TOP-SECRET-shadow-4f1c";
        std::fs::create_dir_all(outside.path().join("etc")).unwrap();
        std::fs::write(outside.path().join("etc").join("shadow"), secret).unwrap();
        std::fs::write(outside.path().join("passwd"), secret).unwrap();
        symlink(outside.path().join("etc"), render.join("etcd")).unwrap();
        symlink(outside.path().join("passwd"), render.join("pw")).unwrap();
        symlink("/etc/hostname", render.join("host.txt")).unwrap();
        // Links that stay inside the run folder: served.
        symlink("flythrough_360.mp4", render.join("alias.mp4")).unwrap();
        let host = format!("Host: {addr}\r\n");
        for bad in [
            "/render/etcd/shadow",
            "/etcd/shadow",
            "/render/etcd",
            "/render/pw",
            "/pw",
            "/render/host.txt",
        ] {
            for method in ["GET", "HEAD"] {
                let (h, b) = get(addr, &format!("{method} {bad} HTTP/1.1\r\n{host}\r\n"));
                assert!(h.starts_with("HTTP/1.1 404"), "{method} {bad}: {h}");
                assert!(
                    !b.windows(secret.len()).any(|w| w == secret),
                    "{method} {bad}: the secret was served"
                );
            }
        }
        let (h, b) = get(
            addr,
            &format!("GET /render/alias.mp4 HTTP/1.1\r\n{host}\r\n"),
        );
        assert!(h.starts_with("HTTP/1.1 200"), "{h}");
        assert_eq!(b, data);

        // A run folder reached through a link is still served (the root is resolved too).
        let linked = outside.path().join("run-link");
        symlink(dir.path(), &linked).unwrap();
        let server = Server::bind(&linked, 0).unwrap();
        let addr2 = server.addr();
        std::thread::spawn(move || server.serve_forever());
        let (h, b) = get(addr2, &format!("GET / HTTP/1.1\r\nHost: {addr2}\r\n\r\n"));
        assert!(h.starts_with("HTTP/1.1 200"), "{h}");
        assert_eq!(b, b"<html>v</html>");
        let (h, _) = get(
            addr2,
            &format!("GET /render/pw HTTP/1.1\r\nHost: {addr2}\r\n\r\n"),
        );
        assert!(h.starts_with("HTTP/1.1 404"), "{h}");
    }

    /// Issue 20: only `localhost`, `127.0.0.1` and `[::1]` with the bound port are answered, so a
    /// page on another site that rebinds its name to 127.0.0.1 cannot read the run.
    #[test]
    fn serve_checks_the_host_header() {
        let (_dir, addr, _) = served_run();
        let port = addr.port();
        for bad in [
            format!("evil.example:{port}"),
            "evil.example".to_string(),
            "127.0.0.1".to_string(),
            format!("127.0.0.1:{}", port.wrapping_add(1)),
            format!("localhost.evil.example:{port}"),
            format!("127.0.0.1.nip.io:{port}"),
            format!("localhost:{port}@evil.example"),
        ] {
            let (h, b) = get(addr, &format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n"));
            assert!(h.starts_with("HTTP/1.1 421"), "Host: {bad}: {h}");
            assert!(
                !b.starts_with(b"<html>"),
                "Host: {bad}: the page was served"
            );
        }
        for good in [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("LocalHost:{port}"),
            format!("[::1]:{port}"),
        ] {
            let (h, b) = get(addr, &format!("GET / HTTP/1.1\r\nhost:  {good} \r\n\r\n"));
            assert!(h.starts_with("HTTP/1.1 200"), "Host: {good}: {h}");
            assert_eq!(b, b"<html>v</html>");
        }
        // No Host, or two of them: 400.
        let (h, _) = get(addr, "GET / HTTP/1.1\r\n\r\n");
        assert!(h.starts_with("HTTP/1.1 400"), "{h}");
        let (h, _) = get(
            addr,
            &format!("GET / HTTP/1.1\r\nHost: {addr}\r\nHost: evil.example\r\n\r\n"),
        );
        assert!(h.starts_with("HTTP/1.1 400"), "{h}");
    }

    /// A request head that does not end within `MAX_HEAD_BYTES` is answered 431, not read forever.
    /// (Exactly that many bytes are sent, so the server has read them all when it closes.)
    #[test]
    fn serve_caps_the_request_head() {
        let (_dir, addr, _) = served_run();
        let mut req = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nX-Pad: ");
        req.extend(std::iter::repeat_n(
            'a',
            MAX_HEAD_BYTES as usize - req.len(),
        ));
        let (h, _) = get(addr, &req);
        assert!(h.starts_with("HTTP/1.1 431"), "{h}");
    }
}
