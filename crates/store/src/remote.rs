//! One object-store location (`s3://bucket/prefix/`, `gs://…`, `az://…`, `file:///…`) with blocking
//! helpers around `object_store`, byte counters, and errors that fit on one line and name the URL.
//!
//! Credentials come from the environment only (`object_store`'s `from_env` builders read the usual
//! variables: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`/`AWS_REGION`/
//! `AWS_ENDPOINT_URL`, `GOOGLE_APPLICATION_CREDENTIALS`/`GOOGLE_SERVICE_ACCOUNT`,
//! `AZURE_STORAGE_ACCOUNT_NAME`/`AZURE_STORAGE_ACCOUNT_KEY`/…). A cloud URL without any credential
//! variable is refused before any request: the SDKs' fallback to an instance-metadata endpoint would
//! otherwise hang on machines that have none. Nothing here prints a credential.

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
    UpdateVersion, WriteMultipart,
};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Files above this size are uploaded in parts.
const MULTIPART_ABOVE: u64 = 32 << 20;

/// An object-store error: one line naming the URL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{url}: {msg}")]
    Remote { url: String, msg: String },
    #[error("{path}: {msg}")]
    Local { path: String, msg: String },
    #[error("{url}: not found")]
    NotFound { url: String },
    #[error("{url}: already exists")]
    AlreadyExists { url: String },
    #[error("{url}: changed by another writer")]
    Precondition { url: String },
}

/// Bytes and objects moved, for the log and the benchmark.
#[derive(Debug, Default)]
pub struct Traffic {
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
    pub objects_up: AtomicU64,
    pub objects_down: AtomicU64,
}

impl Traffic {
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.bytes_up.load(Ordering::Relaxed),
            self.bytes_down.load(Ordering::Relaxed),
            self.objects_up.load(Ordering::Relaxed),
            self.objects_down.load(Ordering::Relaxed),
        )
    }
}

/// An object listed under a prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// Path relative to the location's prefix, with `/` separators.
    pub rel: String,
    pub size: u64,
    pub e_tag: Option<String>,
}

/// A fetched object with its version tag.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Bytes,
    pub e_tag: Option<String>,
    pub version: Option<String>,
}

/// A location in an object store: a store, a prefix inside it, and a tokio runtime to drive it.
#[derive(Debug, Clone)]
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    prefix: ObjPath,
    url: String,
    scheme: String,
    rt: Arc<tokio::runtime::Runtime>,
    pub traffic: Arc<Traffic>,
}

/// Whether an argument is an object-store URL rather than a local path.
pub use flythrough_core::config::is_url;

fn any_env(vars: &[&str]) -> bool {
    vars.iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

/// Refuse a cloud URL when no credential variable is set, naming what to set.
fn check_credentials(scheme: &str, url: &str) -> Result<(), StoreError> {
    let (ok, need) = match scheme {
        "s3" => (
            any_env(&[
                "AWS_ACCESS_KEY_ID",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            ]) || std::env::var("AWS_SKIP_SIGNATURE").is_ok_and(|v| v == "true"),
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN)",
        ),
        "gs" => (
            any_env(&[
                "GOOGLE_APPLICATION_CREDENTIALS",
                "GOOGLE_SERVICE_ACCOUNT",
                "GOOGLE_SERVICE_ACCOUNT_PATH",
                "GOOGLE_SERVICE_ACCOUNT_KEY",
            ]),
            "set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file",
        ),
        "az" | "abfs" | "abfss" => (
            any_env(&[
                "AZURE_STORAGE_ACCOUNT_KEY",
                "AZURE_STORAGE_ACCESS_KEY",
                "AZURE_STORAGE_SAS_KEY",
                "AZURE_STORAGE_TOKEN",
                "AZURE_CLIENT_SECRET",
                "AZURE_FEDERATED_TOKEN_FILE",
                "AZURE_STORAGE_USE_EMULATOR",
            ]),
            "set AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY (or a SAS key or service principal)",
        ),
        _ => (true, ""),
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::Remote {
            url: url.to_string(),
            msg: format!("no credentials in the environment: {need}"),
        })
    }
}

/// Squash an error's text onto one line and bound its length (servers answer with XML bodies).
fn one_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        src = s.source();
    }
    let s: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 300 {
        s.chars().take(300).collect::<String>() + "…"
    } else {
        s
    }
}

impl Remote {
    /// Open a location. Checks credentials and the URL's form; no request is made.
    pub fn open(url: &str) -> Result<Remote, StoreError> {
        let url = url.trim_end_matches('/');
        // Schemes are matched in any case (`S3://` is `s3://`).
        let url = match url.split_once("://") {
            Some((scheme, rest)) => format!("{}://{rest}", scheme.to_ascii_lowercase()),
            None => url.to_string(),
        };
        let bad = |msg: String| StoreError::Remote {
            url: url.clone(),
            msg,
        };
        let parsed = url::Url::parse(&url).map_err(|e| bad(format!("not a valid URL: {e}")))?;
        let scheme = parsed.scheme().to_string();
        check_credentials(&scheme, &url)?;
        let retry = RetryConfig {
            max_retries: env_num("FLYTHROUGH_STORE_RETRIES", 4) as usize,
            retry_timeout: Duration::from_secs(env_num("FLYTHROUGH_STORE_RETRY_TIMEOUT_S", 60)),
            ..Default::default()
        };
        // These options replace the ones `from_env` read, so plain-http endpoints (a local
        // S3-compatible server, the Azure emulator) are carried over from the environment here.
        let allow_http = ["AWS_ALLOW_HTTP", "GOOGLE_ALLOW_HTTP", "AZURE_ALLOW_HTTP"]
            .iter()
            .any(|v| std::env::var(v).is_ok_and(|x| x.eq_ignore_ascii_case("true")))
            || std::env::var("AZURE_STORAGE_USE_EMULATOR").is_ok_and(|x| x == "true");
        let client = ClientOptions::new()
            .with_allow_http(allow_http)
            .with_connect_timeout(Duration::from_secs(10))
            .with_timeout(Duration::from_secs(300));
        let store: Arc<dyn ObjectStore> = match scheme.as_str() {
            "s3" => Arc::new(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_url(&url)
                    .with_retry(retry)
                    .with_client_options(client)
                    .build()
                    .map_err(|e| bad(one_line(&e)))?,
            ),
            "gs" => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(&url)
                    .with_retry(retry)
                    .with_client_options(client)
                    .build()
                    .map_err(|e| bad(one_line(&e)))?,
            ),
            "az" | "abfs" | "abfss" => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(&url)
                    .with_retry(retry)
                    .with_client_options(client)
                    .build()
                    .map_err(|e| bad(one_line(&e)))?,
            ),
            "file" => Arc::new(object_store::local::LocalFileSystem::new()),
            other => {
                return Err(bad(format!(
                    "unsupported scheme {other}://; use s3://, gs://, az:// or file://"
                )));
            }
        };
        let prefix = match scheme.as_str() {
            // The file store is rooted at `/`: the whole path is the prefix.
            "file" => {
                let p = parsed
                    .to_file_path()
                    .map_err(|_| bad("not an absolute file:// path".into()))?;
                std::fs::create_dir_all(&p)
                    .map_err(|e| bad(format!("cannot create the folder: {e}")))?;
                ObjPath::from_absolute_path(&p).map_err(|e| bad(one_line(&e)))?
            }
            "s3" | "gs" => ObjPath::from(parsed.path().trim_matches('/')),
            // az://container/path or abfs(s)://container@account.dfs.core.windows.net/path
            _ => ObjPath::from(parsed.path().trim_matches('/')),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| bad(format!("cannot start the I/O runtime: {e}")))?;
        Ok(Remote {
            store,
            prefix,
            url,
            scheme,
            rt: Arc::new(rt),
            traffic: Arc::new(Traffic::default()),
        })
    }

    /// A location below this one (same store, runtime and counters).
    pub fn child(&self, rel: &str) -> Remote {
        let mut r = self.clone();
        r.prefix = self.key(rel);
        r.url = format!("{}/{}", self.url, rel.trim_matches('/'));
        r
    }

    /// The URL, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the store implements `PutMode::Update` (the local file store does not).
    pub fn has_conditional_update(&self) -> bool {
        self.scheme != "file"
    }

    fn key(&self, rel: &str) -> ObjPath {
        let rel = rel.trim_matches('/');
        if rel.is_empty() {
            return self.prefix.clone();
        }
        let mut p = self.prefix.clone();
        for part in rel.split('/') {
            p = p.clone().join(part);
        }
        p
    }

    fn url_of(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.url.clone()
        } else {
            format!("{}/{}", self.url, rel.trim_matches('/'))
        }
    }

    fn err(&self, rel: &str, e: object_store::Error) -> StoreError {
        let url = self.url_of(rel);
        match e {
            object_store::Error::NotFound { .. } => StoreError::NotFound { url },
            object_store::Error::AlreadyExists { .. } => StoreError::AlreadyExists { url },
            object_store::Error::Precondition { .. } => StoreError::Precondition { url },
            e => StoreError::Remote {
                url,
                msg: one_line(&e),
            },
        }
    }

    /// Make one request that needs read access to the location: a clear error now (no such bucket,
    /// unreachable endpoint, refused credentials) instead of in the middle of a stage.
    pub fn check_access(&self) -> Result<(), StoreError> {
        self.rt.block_on(async {
            let mut s = self.store.list(Some(&self.prefix));
            match s.next().await {
                Some(Err(object_store::Error::NotFound { .. })) => Err(StoreError::Remote {
                    url: self.url.clone(),
                    msg: "the bucket (or container) does not exist, or these credentials cannot see it"
                        .into(),
                }),
                Some(Err(e)) => Err(self.err("", e)),
                _ => Ok(()),
            }
        })
    }

    /// Every object under `rel` (recursively), paths relative to this location, sorted.
    pub fn list(&self, rel: &str) -> Result<Vec<Listed>, StoreError> {
        let prefix = self.key(rel);
        let base: Vec<String> = self
            .prefix
            .parts()
            .map(|p| p.as_ref().to_string())
            .collect();
        let mut out = self.rt.block_on(async {
            let mut s = self.store.list(Some(&prefix));
            let mut out = Vec::new();
            while let Some(m) = s.next().await {
                let m = m.map_err(|e| self.err(rel, e))?;
                let parts: Vec<String> =
                    m.location.parts().map(|p| p.as_ref().to_string()).collect();
                if parts.len() <= base.len() || parts[..base.len()] != base[..] {
                    continue;
                }
                out.push(Listed {
                    rel: parts[base.len()..].join("/"),
                    size: m.size,
                    e_tag: m.e_tag,
                });
            }
            Ok::<_, StoreError>(out)
        })?;
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(out)
    }

    /// Read a whole object. `Ok(None)` when it does not exist.
    pub fn get(&self, rel: &str) -> Result<Option<Fetched>, StoreError> {
        let key = self.key(rel);
        let r = self.rt.block_on(async {
            let g = self.store.get(&key).await?;
            let e_tag = g.meta.e_tag.clone();
            let version = g.meta.version.clone();
            let bytes = g.bytes().await?;
            Ok::<_, object_store::Error>(Fetched {
                bytes,
                e_tag,
                version,
            })
        });
        match r {
            Ok(f) => {
                self.traffic
                    .bytes_down
                    .fetch_add(f.bytes.len() as u64, Ordering::Relaxed);
                self.traffic.objects_down.fetch_add(1, Ordering::Relaxed);
                Ok(Some(f))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// Download an object to a local file (through `file.partial`, renamed when complete). Returns
    /// the file's blake3 hash.
    pub fn get_to_file(&self, rel: &str, dst: &Path) -> Result<String, StoreError> {
        let local = |e: std::io::Error| StoreError::Local {
            path: dst.display().to_string(),
            msg: e.to_string(),
        };
        if let Some(d) = dst.parent() {
            std::fs::create_dir_all(d).map_err(local)?;
        }
        let mut tmp = dst.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = std::path::PathBuf::from(tmp);
        let key = self.key(rel);
        let hash = self.rt.block_on(async {
            use std::io::Write;
            let g = self.store.get(&key).await.map_err(|e| self.err(rel, e))?;
            let mut f = std::fs::File::create(&tmp).map_err(local)?;
            let mut h = blake3::Hasher::new();
            let mut n = 0u64;
            let mut s = g.into_stream();
            while let Some(chunk) = s.next().await {
                let chunk = chunk.map_err(|e| self.err(rel, e))?;
                h.update(&chunk);
                f.write_all(&chunk).map_err(local)?;
                n += chunk.len() as u64;
            }
            f.sync_all().map_err(local)?;
            self.traffic.bytes_down.fetch_add(n, Ordering::Relaxed);
            self.traffic.objects_down.fetch_add(1, Ordering::Relaxed);
            Ok::<_, StoreError>(h.finalize().to_hex().to_string())
        });
        match hash {
            Ok(h) => {
                std::fs::rename(&tmp, dst).map_err(local)?;
                Ok(h)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Upload bytes (plain overwrite).
    pub fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.put_mode(rel, bytes, PutMode::Overwrite).map(|_| ())
    }

    /// Upload bytes with a write condition; returns the new ETag.
    pub fn put_mode(
        &self,
        rel: &str,
        bytes: Vec<u8>,
        mode: PutMode,
    ) -> Result<Option<String>, StoreError> {
        let n = bytes.len() as u64;
        let key = self.key(rel);
        let r = self.rt.block_on(self.store.put_opts(
            &key,
            PutPayload::from(bytes),
            PutOptions {
                mode,
                ..Default::default()
            },
        ));
        let r = r.map_err(|e| self.err(rel, e))?;
        self.traffic.bytes_up.fetch_add(n, Ordering::Relaxed);
        self.traffic.objects_up.fetch_add(1, Ordering::Relaxed);
        Ok(r.e_tag)
    }

    /// `PutMode::Update` for an object fetched with this ETag and version.
    pub fn update_mode(e_tag: Option<String>, version: Option<String>) -> PutMode {
        PutMode::Update(UpdateVersion { e_tag, version })
    }

    /// Upload a local file; large files in parts. The object appears whole or not at all.
    pub fn put_file(&self, src: &Path, rel: &str) -> Result<(), StoreError> {
        let local = |e: std::io::Error| StoreError::Local {
            path: src.display().to_string(),
            msg: e.to_string(),
        };
        let len = std::fs::metadata(src).map_err(local)?.len();
        if len <= MULTIPART_ABOVE {
            let bytes = std::fs::read(src).map_err(local)?;
            return self.put(rel, bytes);
        }
        let key = self.key(rel);
        self.rt.block_on(async {
            use std::io::Read;
            let upload = self
                .store
                .put_multipart(&key)
                .await
                .map_err(|e| self.err(rel, e))?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, 16 << 20);
            let mut f = std::fs::File::open(src).map_err(local)?;
            let mut buf = vec![0u8; 4 << 20];
            loop {
                let k = f.read(&mut buf).map_err(local)?;
                if k == 0 {
                    break;
                }
                w.wait_for_capacity(4).await.map_err(|e| self.err(rel, e))?;
                w.write(&buf[..k]);
            }
            w.finish().await.map_err(|e| self.err(rel, e))?;
            Ok::<_, StoreError>(())
        })?;
        self.traffic.bytes_up.fetch_add(len, Ordering::Relaxed);
        self.traffic.objects_up.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Delete one object (missing is fine).
    pub fn delete(&self, rel: &str) -> Result<(), StoreError> {
        let key = self.key(rel);
        match self.rt.block_on(self.store.delete(&key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// Delete every object under `rel`.
    pub fn delete_prefix(&self, rel: &str) -> Result<(), StoreError> {
        let rel = rel.trim_matches('/');
        for o in self.list(rel)? {
            self.delete(&o.rel)?;
        }
        Ok(())
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_url_round_trip_and_listing() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/bucket/runs", dir.path().display());
        let r = Remote::open(&url).unwrap();
        r.check_access().unwrap();
        r.put("cafe/a.txt", b"hello".to_vec()).unwrap();
        r.put("cafe/sub/b.txt", b"world!".to_vec()).unwrap();
        r.put("cafe2/c.txt", b"x".to_vec()).unwrap();
        let l = r.list("cafe").unwrap();
        let names: Vec<&str> = l.iter().map(|o| o.rel.as_str()).collect();
        assert_eq!(names, ["cafe/a.txt", "cafe/sub/b.txt"]);
        assert_eq!(l[1].size, 6);
        let c = r.child("cafe");
        assert_eq!(c.list("").unwrap().len(), 2);
        let dst = dir.path().join("out/b.txt");
        let h = c.get_to_file("sub/b.txt", &dst).unwrap();
        assert_eq!(std::fs::read(&dst).unwrap(), b"world!");
        assert_eq!(h, blake3::hash(b"world!").to_hex().to_string());
        assert!(c.get("nope").unwrap().is_none());
        // Create refuses an existing object.
        let e = c.put_mode("a.txt", b"again".to_vec(), PutMode::Create);
        assert!(matches!(e, Err(StoreError::AlreadyExists { .. })), "{e:?}");
        c.delete_prefix("sub").unwrap();
        assert_eq!(c.list("").unwrap().len(), 1);
        let (up, down, _, _) = r.traffic.snapshot();
        assert_eq!(up, 5 + 6 + 1);
        assert_eq!(down, 6);
    }

    #[test]
    fn cloud_urls_without_credentials_are_refused_naming_the_url() {
        // Only meaningful when the variables are not set in the test's environment.
        if any_env(&[
            "AWS_ACCESS_KEY_ID",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        ]) {
            eprintln!("skipped: AWS credentials are set in this environment");
            return;
        }
        let e = Remote::open("s3://some-bucket/runs/")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("s3://some-bucket/runs: no credentials")
                && e.contains("AWS_ACCESS_KEY_ID"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        let e = Remote::open("ftp://host/x").unwrap_err().to_string();
        assert!(e.contains("unsupported scheme"), "{e}");
    }
}
