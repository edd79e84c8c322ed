//! `flythrough view RUN_DIR`: a tiny HTTP/1.1 file server on 127.0.0.1 for `RUN/render/`.
//!
//! Routes: `/` → `viewer.html`; `/report.html` → `RUN/report.html`; `/render/<file>` and `/<file>` →
//! `RUN/render/<file>`. GET and HEAD only; single-range `Range: bytes=…` requests get `206 Partial
//! Content` (browsers need them to scrub video). One thread per connection, `Connection: close`.
//! Paths with `..`, backslashes or NUL are refused; nothing outside `RUN/render/` and
//! `RUN/report.html` is reachable.

use crate::RenderError;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};

/// A bound server.
pub struct Server {
    listener: TcpListener,
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
        let listener = TcpListener::bind(("127.0.0.1", port))
            .map_err(|e| RenderError::Serve(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
        Ok(Server {
            listener,
            run_root: run_dir.to_path_buf(),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serve until the process ends.
    pub fn serve_forever(self) -> Result<(), RenderError> {
        for conn in self.listener.incoming() {
            match conn {
                Ok(stream) => {
                    let root = self.run_root.clone();
                    std::thread::spawn(move || {
                        if let Err(e) = handle(stream, &root) {
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
    server.serve_forever()
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

/// Map a request path to a file, or `None` (404).
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
    file.is_file().then_some(file)
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

fn handle(stream: TcpStream, run_root: &Path) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.trim().eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_string());
        }
    }
    let mut out = stream;
    let simple = |out: &mut TcpStream, status: &str, body: &str| -> std::io::Result<()> {
        write!(
            out,
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    if method != "GET" && method != "HEAD" {
        return simple(&mut out, "405 Method Not Allowed", "GET or HEAD only\n");
    }
    let Some(file) = resolve(run_root, target) else {
        return simple(&mut out, "404 Not Found", "not found\n");
    };
    let mut f = std::fs::File::open(&file)?;
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
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {n}\r\nAccept-Ranges: bytes\r\nCache-Control: no-cache\r\nConnection: close\r\n"
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

        let (h, b) = get(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            h.starts_with("HTTP/1.1 200") && h.contains("text/html"),
            "{h}"
        );
        assert_eq!(b, b"<html>v</html>");
        let (h, b) = get(
            addr,
            "GET /flythrough_360.mp4 HTTP/1.1\r\nRange: bytes=100-199\r\n\r\n",
        );
        assert!(
            h.starts_with("HTTP/1.1 206") && h.contains("Content-Range: bytes 100-199/5000"),
            "{h}"
        );
        assert_eq!(b, &data[100..200]);
        let (h, b) = get(
            addr,
            "GET /render/flythrough_360.mp4 HTTP/1.1\r\nRange: bytes=4990-\r\n\r\n",
        );
        assert!(
            h.contains("video/mp4") && h.contains("Content-Length: 10"),
            "{h}"
        );
        assert_eq!(b, &data[4990..]);
        let (h, _) = get(
            addr,
            "GET /flythrough_360.mp4 HTTP/1.1\r\nRange: bytes=6000-\r\n\r\n",
        );
        assert!(h.starts_with("HTTP/1.1 416"), "{h}");
        let (h, b) = get(addr, "HEAD /flythrough_360.mp4 HTTP/1.1\r\n\r\n");
        assert!(h.contains("Content-Length: 5000") && b.is_empty(), "{h}");
        for bad in [
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/render/../secret.txt",
            "/nothing.mp4",
        ] {
            let (h, _) = get(addr, &format!("GET {bad} HTTP/1.1\r\n\r\n"));
            assert!(h.starts_with("HTTP/1.1 404"), "{bad}: {h}");
        }
        let (h, _) = get(addr, "POST / HTTP/1.1\r\n\r\n");
        assert!(h.starts_with("HTTP/1.1 405"));
    }
}
