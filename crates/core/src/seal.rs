//! The privacy seal: a keyed MAC over the privacy stage's `stage.json`, with a key kept outside the
//! run folder.
//!
//! The privacy stage's record lists every redacted photo with its blake3 hash
//! ([`crate::images::ImageFingerprint`]); later stages read the photos only through
//! [`crate::RedactedImages::open`], which checks the folder against that list. A list alone can be
//! rewritten by anyone who can write the run folder (copy an original over its blurred copy, put the
//! new hash in `stage.json`), so the runner also seals the whole record — every field, the list
//! included — with BLAKE3 in keyed mode (a MAC; O'Connor et al., *BLAKE3*, 2020, §2.6 "keyed_hash")
//! under a 256-bit key that never enters the run folder:
//!
//! - `FLYTHROUGH_SEAL_KEY` when set (clusters: the same secret on every node, from the scheduler's
//!   secret store; at least 32 characters, turned into a key with BLAKE3's key derivation), else
//! - a per-user key file, `$XDG_CONFIG_HOME/flythrough/seal.key` (default `~/.config/...`), made of
//!   32 random bytes on first use with permissions 0600.
//!
//! What it protects against: editing a run folder by hand or by a script that does not hold the
//! key, so that a later stage reads an unblurred photo as if the privacy stage had made it. What it
//! does not: someone who can read the key (the same user account, or root), and the original photos
//! themselves, which the privacy stage never changes.

use serde::Serialize;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Environment variable holding the seal secret (clusters, containers).
pub const SEAL_KEY_ENV: &str = "FLYTHROUGH_SEAL_KEY";
/// Name of the per-user key file inside the user's flythrough config folder.
pub const SEAL_KEY_FILE: &str = "seal.key";
/// The shortest secret accepted from [`SEAL_KEY_ENV`].
pub const MIN_SECRET_CHARS: usize = 32;
/// BLAKE3 key-derivation context for secrets given in the environment.
const DERIVE_CONTEXT: &str = "flythrough 2026-12-06 privacy seal key";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "{SEAL_KEY_ENV} is set but holds {0} characters; the privacy seal needs a secret of at least {MIN_SECRET_CHARS}"
    )]
    ShortSecret(usize),
    #[error(
        "no place for the privacy seal key: neither XDG_CONFIG_HOME nor HOME is set; set {SEAL_KEY_ENV} to a secret of at least {MIN_SECRET_CHARS} characters"
    )]
    NoHome,
    #[error("{path}: privacy seal key: {msg}")]
    File { path: PathBuf, msg: String },
}

/// A 256-bit key for [`seal`].
#[derive(Clone, PartialEq, Eq)]
pub struct SealKey([u8; 32]);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl SealKey {
    /// The key of this process: from [`SEAL_KEY_ENV`] or the per-user key file (created on first
    /// use), loaded once.
    pub fn current() -> Result<&'static SealKey, SealError> {
        static KEY: OnceLock<SealKey> = OnceLock::new();
        if let Some(k) = KEY.get() {
            return Ok(k);
        }
        let k =
            SealKey::from_sources(std::env::var_os(SEAL_KEY_ENV), user_config_dir().as_deref())?;
        Ok(KEY.get_or_init(|| k))
    }

    /// The key from an environment secret when given, else from `config_dir/seal.key` (created with
    /// 32 random bytes and permissions 0600 when absent).
    pub fn from_sources(
        secret: Option<OsString>,
        config_dir: Option<&Path>,
    ) -> Result<SealKey, SealError> {
        if let Some(s) = secret.filter(|s| !s.is_empty()) {
            let s = s.to_string_lossy();
            let n = s.chars().count();
            if n < MIN_SECRET_CHARS {
                return Err(SealError::ShortSecret(n));
            }
            return Ok(SealKey(blake3::derive_key(DERIVE_CONTEXT, s.as_bytes())));
        }
        let dir = config_dir.ok_or(SealError::NoHome)?;
        load_or_create_key_file(&dir.join(SEAL_KEY_FILE))
    }

    /// A fixed key (tests).
    pub fn from_bytes(bytes: [u8; 32]) -> SealKey {
        SealKey(bytes)
    }
}

/// `$XDG_CONFIG_HOME/flythrough`, else `$HOME/.config/flythrough`.
pub fn user_config_dir() -> Option<PathBuf> {
    let nonempty = |v: &str| {
        std::env::var_os(v)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    };
    nonempty("XDG_CONFIG_HOME")
        .or_else(|| nonempty("HOME").map(|h| h.join(".config")))
        .map(|c| c.join("flythrough"))
}

fn load_or_create_key_file(path: &Path) -> Result<SealKey, SealError> {
    let err = |msg: String| SealError::File {
        path: path.to_path_buf(),
        msg,
    };
    match std::fs::read(path) {
        Ok(text) => return parse_key_file(&text).map_err(err),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e.to_string())),
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create its folder: {e}")))?;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| err(format!("no random bytes: {e}")))?;
    // Written whole under a private name, then linked in: a concurrent first use by another process
    // either wins the link (and both read its key) or finds the finished file.
    let hex = to_hex(&key);
    let tmp = dir.join(format!(
        ".{SEAL_KEY_FILE}.{}.{}",
        std::process::id(),
        &hex[..16]
    ));
    let write = || -> std::io::Result<()> {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let mut f = o.open(&tmp)?;
        std::io::Write::write_all(&mut f, format!("{hex}\n").as_bytes())?;
        f.sync_all()
    };
    let linked = write().and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(
                "created the privacy seal key {} (keep it private; set {SEAL_KEY_ENV} on clusters)",
                path.display()
            );
            Ok(SealKey(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
            parse_key_file(&text).map_err(err)
        }
        Err(e) => Err(err(format!("cannot write it: {e}"))),
    }
}

fn parse_key_file(text: &[u8]) -> Result<SealKey, String> {
    let s = std::str::from_utf8(text)
        .map_err(|_| "not 64 hexadecimal digits".to_string())?
        .trim();
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(
            "not 64 hexadecimal digits; delete it to make a new key (the next run redoes the privacy stage)"
                .into(),
        );
    }
    let mut key = [0u8; 32];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(SealKey(key))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The seal of a value: BLAKE3 keyed hash (hex) of its compact JSON. The value must serialise
/// deterministically (structs and `BTreeMap`s; floats round-trip exactly with serde_json's
/// `float_roundtrip`).
pub fn seal<T: Serialize>(key: &SealKey, value: &T) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    blake3::keyed_hash(&key.0, &bytes).to_hex().to_string()
}

/// Whether `mac` is the seal of `value` under `key` (compared in constant time).
pub fn verify<T: Serialize>(key: &SealKey, value: &T, mac: &str) -> bool {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    match blake3::Hash::from_hex(mac) {
        Ok(h) => blake3::keyed_hash(&key.0, &bytes) == h,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("cfg/flythrough");
        let a = SealKey::from_sources(None, Some(&cfg)).unwrap();
        let b = SealKey::from_sources(None, Some(&cfg)).unwrap();
        assert_eq!(a, b);
        let path = cfg.join(SEAL_KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{mode:o}");
        }
        // Another user's folder gets another key.
        let other = SealKey::from_sources(None, Some(&dir.path().join("other"))).unwrap();
        assert_ne!(a, other);
        // Only the key file and no leftovers.
        let names: Vec<_> = std::fs::read_dir(&cfg)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [SEAL_KEY_FILE]);
    }

    #[test]
    fn environment_secret_wins_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let s = OsString::from("x".repeat(40));
        let a = SealKey::from_sources(Some(s.clone()), Some(dir.path())).unwrap();
        assert_eq!(a, SealKey::from_sources(Some(s), None).unwrap());
        assert!(!dir.path().join(SEAL_KEY_FILE).exists());
        let e = SealKey::from_sources(Some("short".into()), None).unwrap_err();
        assert!(e.to_string().contains(SEAL_KEY_ENV), "{e}");
        assert!(matches!(
            SealKey::from_sources(None, None),
            Err(SealError::NoHome)
        ));
    }

    #[test]
    fn damaged_key_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SEAL_KEY_FILE), "abc\n").unwrap();
        let e = SealKey::from_sources(None, Some(dir.path())).unwrap_err();
        assert!(e.to_string().contains("seal.key") && e.to_string().contains("hexadecimal"));
    }

    #[test]
    fn seal_detects_any_change_and_the_wrong_key() {
        let k = SealKey::from_bytes([7; 32]);
        let v = serde_json::json!({"a": 1, "t": 1733500000.123_456_7, "f": 0.1 + 0.2});
        let m = seal(&k, &v);
        assert!(verify(&k, &v, &m));
        // The same value after a trip through its JSON text (floats included).
        let back: serde_json::Value =
            serde_json::from_str(&serde_json::to_string_pretty(&v).unwrap()).unwrap();
        assert!(verify(&k, &back, &m));
        assert!(!verify(
            &k,
            &serde_json::json!({"a": 2, "t": 1733500000.123_456_7, "f": 0.1 + 0.2}),
            &m
        ));
        assert!(!verify(&SealKey::from_bytes([8; 32]), &v, &m));
        assert!(!verify(&k, &v, "zz"));
    }
}
