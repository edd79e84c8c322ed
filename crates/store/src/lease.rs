//! One writer per remote run folder: a lease object `RUN/.lease` with an expiry.
//!
//! The remote counterpart of `flythrough_core::RunLock`. Taking it is a conditional write:
//! `PutMode::Create` when there is none, `PutMode::Update` with the ETag of an expired one when its
//! holder died, so of two tasks racing for it exactly one succeeds (the other's write fails its
//! precondition). The holder renews it (again `Update` with its own last ETag) every third of its
//! time to live; a task that dies stops renewing and the lease expires, so another machine can take
//! over. A holder whose renewal finds the lease changed has lost it and stops uploading.
//!
//! Stores without conditional updates (the local `file://` store) take a lease with `Create` and
//! take over an expired one by delete + `Create`: safe against two takers, racy only in the
//! sub-millisecond window between the two calls.

use crate::remote::{Remote, StoreError};
use object_store::PutMode;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Name of the lease object inside a remote run folder.
pub const LEASE: &str = ".lease";

/// The lease object's contents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseBody {
    /// Who holds it: PID, host, and a random token that tells two holders apart.
    pub holder: String,
    pub token: String,
    /// Unix seconds after which the lease may be taken over.
    pub expires: f64,
}

/// Why a lease could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "{url}: this run folder is in use by another flythrough task ({holder}, lease expires in {secs:.0} s); wait for it, or choose another --out"
    )]
    Busy {
        url: String,
        holder: String,
        secs: f64,
    },
    #[error("{0}")]
    Store(#[from] StoreError),
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "this host".into())
}

struct State {
    e_tag: Option<String>,
    version: Option<String>,
}

/// A held lease; renewed by a background thread, released on drop.
pub struct Lease {
    remote: Remote,
    token: String,
    holder: String,
    ttl: Duration,
    lost: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("url", &self.remote.url())
            .field("holder", &self.holder)
            .finish()
    }
}

impl Lease {
    /// Take the lease of the run folder at `remote`, or fail at once naming the holder.
    pub fn acquire(remote: &Remote, ttl: Duration) -> Result<Lease, LeaseError> {
        let token =
            blake3::hash(format!("{}-{}-{}", std::process::id(), hostname(), now()).as_bytes())
                .to_hex()[..16]
                .to_string();
        let holder = format!("pid {} on {}", std::process::id(), hostname());
        let body = |token: &str| {
            serde_json::to_vec(&LeaseBody {
                holder: holder.clone(),
                token: token.to_string(),
                expires: now() + ttl.as_secs_f64(),
            })
            .unwrap_or_default()
        };
        let lease_url = format!("{}/{LEASE}", remote.url());
        let state = match remote.put_mode(LEASE, body(&token), PutMode::Create) {
            Ok(e_tag) => State {
                e_tag,
                version: None,
            },
            Err(StoreError::AlreadyExists { .. }) | Err(StoreError::Precondition { .. }) => {
                let Some(cur) = remote.get(LEASE)? else {
                    // Released between our two calls: try once more.
                    let e_tag = remote
                        .put_mode(LEASE, body(&token), PutMode::Create)
                        .map_err(|_| LeaseError::Busy {
                            url: remote.url().to_string(),
                            holder: "another task".into(),
                            secs: ttl.as_secs_f64(),
                        })?;
                    return Ok(Self::start(remote, token, holder, ttl, e_tag, None));
                };
                let parsed: Option<LeaseBody> = serde_json::from_slice(&cur.bytes).ok();
                if let Some(b) = &parsed
                    && b.expires > now()
                {
                    return Err(LeaseError::Busy {
                        url: remote.url().to_string(),
                        holder: b.holder.clone(),
                        secs: b.expires - now(),
                    });
                }
                // Expired (or unreadable): take it over, conditional on nobody else doing so first.
                let who = parsed
                    .map(|b| b.holder)
                    .unwrap_or_else(|| "unreadable".into());
                let taken = if remote.has_conditional_update() {
                    remote.put_mode(
                        LEASE,
                        body(&token),
                        Remote::update_mode(cur.e_tag.clone(), cur.version.clone()),
                    )
                } else {
                    remote.delete(LEASE)?;
                    remote.put_mode(LEASE, body(&token), PutMode::Create)
                };
                match taken {
                    Ok(e_tag) => {
                        tracing::warn!(
                            "{lease_url}: took over the expired lease of {who} (that task stopped without releasing it)"
                        );
                        State {
                            e_tag,
                            version: None,
                        }
                    }
                    Err(StoreError::Precondition { .. })
                    | Err(StoreError::AlreadyExists { .. }) => {
                        return Err(LeaseError::Busy {
                            url: remote.url().to_string(),
                            holder: "another task that took the expired lease first".into(),
                            secs: ttl.as_secs_f64(),
                        });
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Self::start(
            remote,
            token,
            holder,
            ttl,
            state.e_tag,
            state.version,
        ))
    }

    fn start(
        remote: &Remote,
        token: String,
        holder: String,
        ttl: Duration,
        e_tag: Option<String>,
        version: Option<String>,
    ) -> Lease {
        let state = Arc::new(Mutex::new(State { e_tag, version }));
        let lost = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (remote, token, holder) = (remote.clone(), token.clone(), holder.clone());
            let (state, lost, stop) = (state.clone(), lost.clone(), stop.clone());
            std::thread::spawn(move || {
                let every = ttl / 3;
                let mut expires = now() + ttl.as_secs_f64();
                loop {
                    let t0 = std::time::Instant::now();
                    while t0.elapsed() < every {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(50).min(every));
                    }
                    match renew(&remote, &token, &holder, ttl, &state) {
                        Ok(()) => expires = now() + ttl.as_secs_f64(),
                        Err(e) => {
                            let gone =
                                matches!(e, StoreError::Precondition { .. }) || now() > expires;
                            tracing::warn!(
                                "{}/{LEASE}: renewing the lease failed: {e}",
                                remote.url()
                            );
                            if gone {
                                tracing::error!(
                                    "{}/{LEASE}: lease lost; this task stops writing to the run folder",
                                    remote.url()
                                );
                                lost.store(true, Ordering::SeqCst);
                                return;
                            }
                        }
                    }
                }
            })
        };
        Lease {
            remote: remote.clone(),
            token,
            holder,
            ttl,
            lost,
            stop,
            renewer: Some(renewer),
        }
    }

    /// Whether the lease is still ours (false once a renewal found it taken or expired).
    pub fn is_held(&self) -> bool {
        !self.lost.load(Ordering::SeqCst)
    }

    /// The time to live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Release now: stop renewing and delete the lease object if it is still ours.
    pub fn release(mut self) {
        self.release_inner();
    }

    fn release_inner(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.renewer.take() {
            let _ = h.join();
        }
        if !self.is_held() {
            return;
        }
        if let Ok(Some(cur)) = self.remote.get(LEASE)
            && serde_json::from_slice::<LeaseBody>(&cur.bytes).is_ok_and(|b| b.token == self.token)
        {
            let _ = self.remote.delete(LEASE);
        }
    }
}

fn renew(
    remote: &Remote,
    token: &str,
    holder: &str,
    ttl: Duration,
    state: &Mutex<State>,
) -> Result<(), StoreError> {
    let body = serde_json::to_vec(&LeaseBody {
        holder: holder.to_string(),
        token: token.to_string(),
        expires: now() + ttl.as_secs_f64(),
    })
    .unwrap_or_default();
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    if remote.has_conditional_update() {
        let e_tag = remote.put_mode(
            LEASE,
            body,
            Remote::update_mode(st.e_tag.clone(), st.version.clone()),
        )?;
        st.e_tag = e_tag;
    } else {
        // No conditional update: check that it is still ours, then overwrite.
        let cur = remote.get(LEASE)?.ok_or(StoreError::Precondition {
            url: format!("{}/{LEASE}", remote.url()),
        })?;
        let ours = serde_json::from_slice::<LeaseBody>(&cur.bytes).is_ok_and(|b| b.token == token);
        if !ours {
            return Err(StoreError::Precondition {
                url: format!("{}/{LEASE}", remote.url()),
            });
        }
        remote.put(LEASE, body)?;
    }
    Ok(())
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.release_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_taker_is_refused_until_expiry_then_takes_over() {
        let dir = tempfile::tempdir().unwrap();
        let r = Remote::open(&format!("file://{}/runs/cafe", dir.path().display())).unwrap();
        let a = Lease::acquire(&r, Duration::from_secs(60)).unwrap();
        let e = Lease::acquire(&r, Duration::from_secs(60)).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, LeaseError::Busy { .. }), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        a.release();
        assert!(r.get(LEASE).unwrap().is_none(), "released");
        // A dead holder: an expired lease object left behind is taken over.
        let stale = LeaseBody {
            holder: "pid 1 on elsewhere".into(),
            token: "dead".into(),
            expires: now() - 1.0,
        };
        r.put(LEASE, serde_json::to_vec(&stale).unwrap()).unwrap();
        let b = Lease::acquire(&r, Duration::from_secs(60)).unwrap();
        assert!(b.is_held());
        let body: LeaseBody =
            serde_json::from_slice(&r.get(LEASE).unwrap().unwrap().bytes).unwrap();
        assert_ne!(body.token, "dead");
    }
}
