//! A real S3-compatible server for tests (moto in server mode, from PyPI: `pip install
//! 'moto[server]'`, which `scripts/setup.sh` installs) started on 127.0.0.1 for one test and stopped
//! when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A moto S3 server on a free localhost port.
pub struct S3Server {
    child: Child,
    pub port: u16,
}

/// Start moto, or `Err(reason)` when it is not installed. Under `CI=true` the caller must fail.
pub fn start_s3() -> Result<S3Server, String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import moto.server, flask"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        return Err(format!(
            "moto server not installed ({python} -m pip install 'moto[server]'; scripts/setup.sh does it)"
        ));
    }
    let child = Command::new(&python)
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start moto: {e}"))?;
    let s = S3Server { child, port };
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t0.elapsed() > Duration::from_secs(60) {
            return Err("moto did not start listening within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(s)
}

impl S3Server {
    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Environment for a client of this server (dummy credentials: moto does not check them).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), "test".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_ENDPOINT_URL".into(), self.endpoint()),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
        ]
    }

    /// Create a bucket (a plain `PUT /bucket`; moto does not check signatures).
    pub fn create_bucket(&self, name: &str) -> Result<(), String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        write!(
            s,
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .map_err(|e| e.to_string())?;
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        if resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200") {
            Ok(())
        } else {
            Err(format!(
                "create bucket {name}: {}",
                resp.lines().next().unwrap_or("")
            ))
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start moto or decide what to do without it: under `CI=true` the test fails naming moto, else it
/// skips visibly ([`crate::testdata::skip`]) and this returns `None`.
#[track_caller]
pub fn s3_or_skip(test: &str) -> Option<S3Server> {
    match start_s3() {
        Ok(s) => Some(s),
        Err(why) => {
            crate::testdata::skip(
                &format!("an S3 server for {test} ({why})"),
                "scripts/setup-python-tools.sh installs moto[server]",
            );
            None
        }
    }
}
