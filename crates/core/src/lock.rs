//! One writer per run folder: an exclusive advisory lock on `RUN/.lock`, held for a whole run.
//!
//! The lock is an OS file lock (`flock` on Unix, `LockFileEx` on Windows, through
//! [`std::fs::File::try_lock`]): the kernel releases it when the holding process exits, however it
//! exits (`kill -9` included), so a stale lock never blocks a later run. The lock file itself is never
//! deleted (deleting a lock file while another process waits on it would let two processes hold two
//! different files); it holds the holder's PID, host and start time, for the error message only.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// File name of the lock inside a run folder.
pub const LOCK_FILE: &str = ".lock";

/// Why a run folder could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{dir}: this run folder is in use by another flythrough process ({holder}); wait for it to finish or stop it, or choose another --out"
    )]
    Busy { dir: PathBuf, holder: String },
    #[error("{path}: cannot lock the run folder: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The exclusive lock on a run folder; released when dropped or when the process dies.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

impl RunLock {
    /// Take the lock of run folder `dir` (created if missing), or fail at once with
    /// [`LockError::Busy`] naming the holder.
    pub fn acquire(dir: &Path) -> Result<RunLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Busy {
                    dir: dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        "holder unknown".to_string()
                    } else {
                        holder.to_string()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let note = format!(
            "pid {} on {}, since unix time {}",
            std::process::id(),
            hostname(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        );
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(note.as_bytes()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(RunLock { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "this host".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_fails_naming_the_holder_and_frees_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let a = RunLock::acquire(&run).unwrap();
        let e = RunLock::acquire(&run).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, LockError::Busy { .. }), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "the error names the holder's pid: {msg}"
        );
        drop(a);
        let b = RunLock::acquire(&run).unwrap();
        assert!(b.path().ends_with(LOCK_FILE));
    }

    #[test]
    fn lock_of_a_dead_process_does_not_block() {
        // A child process takes the lock and is killed with SIGKILL: the kernel drops its lock.
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        let lock = run.join(LOCK_FILE);
        // One process holds the lock: the shell opens fd 9, flock(1) locks it (the lock belongs to
        // the open file, which only the shell keeps), the shell says so and becomes `sleep`. (With
        // `flock -o FILE sleep`, the forked `sleep` could still hold the file when flock was killed.)
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg("exec 9>\"$1\" && flock -x 9 && echo locked && exec sleep 60")
            .arg("sh")
            .arg(&lock)
            .stdout(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            flythrough_testkit::testdata::skip("sh", "a POSIX shell");
            return;
        };
        // Wait for the child to say it holds the lock (a condition, not a time).
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        if line.trim() != "locked" {
            // flock(1) is part of util-linux, present on every Debian system.
            flythrough_testkit::testdata::skip("flock(1)", "Debian: apt-get install util-linux");
            return;
        }
        assert!(RunLock::acquire(&run).is_err(), "the child holds the lock");
        child.kill().unwrap();
        child.wait().unwrap();
        RunLock::acquire(&run).expect("a dead holder's lock is released by the OS");
    }
}
