//! Memory guards for the stages that decode whole photos (capture, privacy).
//!
//! A photo in flight costs memory in proportion to its pixel count (a decoded 48-megapixel photo
//! alone is 144 MB of RGB8), and the stages process photos in parallel, one per core. Instead of
//! letting `cores × bytes per photo` decide the peak, each stage estimates the bytes a photo needs
//! before decoding it (from its size, known from the manifest or the file header) and takes that
//! many bytes from a [`ByteBudget`]: a counting semaphore measured in bytes, first come first
//! served. Photos in flight therefore never hold more than the budget between them; a photo whose
//! estimate alone exceeds the budget is refused with [`too_large_message`], never half-decoded.
//!
//! The budget is `[privacy] memory_budget_gb` (0 = automatic: [`AUTO_FRACTION`] of the kernel's
//! `MemAvailable`, see [`resolve_budget`]). The same figure sizes the decoder's allocation limit
//! ([`decode_limits`]), which replaces the `image` crate's fixed 512 MiB default: photos up to the
//! budget decode, larger ones are named as too large instead of failing with the decoder's bare
//! "Memory limit exceeded".

use std::sync::{Condvar, Mutex};

/// Fraction of `MemAvailable` the automatic budget takes (the rest is left to the OS, the page cache
/// and other processes).
pub const AUTO_FRACTION: f64 = 0.5;
/// Budget used when `MemAvailable` cannot be read (not Linux): 4 GiB.
pub const FALLBACK_BUDGET: u64 = 4 << 30;
/// The config key that sets the budget, for messages.
pub const BUDGET_KEY: &str = "[privacy] memory_budget_gb";

const GIB: f64 = (1u64 << 30) as f64;

/// `MemAvailable` of `/proc/meminfo` in bytes (Linux), `None` elsewhere or when unreadable.
pub fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&text)
}

/// The `MemAvailable:  N kB` line of a `/proc/meminfo` text, in bytes.
pub fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

/// Where a budget came from (for the log).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BudgetSource {
    /// `memory_budget_gb` set in the config.
    Config,
    /// [`AUTO_FRACTION`] of `MemAvailable`.
    Auto { mem_available: u64 },
    /// `MemAvailable` unknown: [`FALLBACK_BUDGET`].
    Fallback,
}

/// The memory budget in bytes for `memory_budget_gb` (GiB; 0 = automatic).
pub fn resolve_budget(memory_budget_gb: f64) -> (u64, BudgetSource) {
    resolve_budget_with(memory_budget_gb, mem_available())
}

/// [`resolve_budget`] with `MemAvailable` given (testable).
pub fn resolve_budget_with(
    memory_budget_gb: f64,
    mem_available: Option<u64>,
) -> (u64, BudgetSource) {
    if memory_budget_gb > 0.0 {
        return ((memory_budget_gb * GIB) as u64, BudgetSource::Config);
    }
    match mem_available {
        Some(m) => (
            (m as f64 * AUTO_FRACTION) as u64,
            BudgetSource::Auto { mem_available: m },
        ),
        None => (FALLBACK_BUDGET, BudgetSource::Fallback),
    }
}

/// Bytes as GiB with two decimals, for messages.
pub fn gib(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / GIB)
}

/// Megapixels of a `w x h` photo.
pub fn megapixels(w: u32, h: u32) -> f64 {
    w as f64 * h as f64 / 1e6
}

/// The message for a photo whose estimate exceeds the budget: names the photo, its size and the key.
pub fn too_large_message(file: &str, w: u32, h: u32, need: u64, budget: u64) -> String {
    format!(
        "{file} is too large: {w}x{h} ({:.1} megapixels) needs about {} in memory, above the memory \
         budget of {}; raise {BUDGET_KEY} (0 = half of the available memory) or downscale the photo",
        megapixels(w, h),
        gib(need),
        gib(budget)
    )
}

/// Decoder limits for a photo allowed `max_alloc` bytes: no width/height cap (the budget is what
/// bounds a photo), the allocation limit raised or lowered from the `image` crate's 512 MiB default.
pub fn decode_limits(max_alloc: u64) -> image::Limits {
    let mut l = image::Limits::no_limits();
    l.max_alloc = Some(max_alloc);
    l
}

/// Decode image bytes with [`decode_limits`]`(max_alloc)`. A limit error names the photo's size and
/// the key to raise instead of the decoder's bare "Memory limit exceeded".
pub fn decode_with_limit(
    bytes: &[u8],
    file: &str,
    max_alloc: u64,
    budget: u64,
) -> Result<image::DynamicImage, String> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read: {e}"))?;
    let dims = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_dimensions().ok());
    reader.limits(decode_limits(max_alloc));
    reader.decode().map_err(|e| match (&e, dims) {
        (image::ImageError::Limits(_), Some((w, h))) => {
            too_large_message(file, w, h, max_alloc.max(3 * w as u64 * h as u64), budget)
        }
        _ => format!("cannot decode: {e}"),
    })
}

/// A counting semaphore in bytes: holders take an estimate before working on a photo and give it back
/// when done (the [`BudgetGuard`] drops). Requests are served in arrival order (a ticket queue), so
/// a large photo is not starved by small ones. The sum held never exceeds the capacity.
#[derive(Debug)]
pub struct ByteBudget {
    capacity: u64,
    state: Mutex<BudgetState>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct BudgetState {
    in_use: u64,
    next_ticket: u64,
    serving: u64,
    holders: usize,
    peak_in_use: u64,
    peak_holders: usize,
}

/// Bytes taken from a [`ByteBudget`], returned on drop.
#[derive(Debug)]
pub struct BudgetGuard<'a> {
    budget: &'a ByteBudget,
    bytes: u64,
}

impl ByteBudget {
    pub fn new(capacity: u64) -> Self {
        ByteBudget {
            capacity,
            state: Mutex::new(BudgetState::default()),
            cv: Condvar::new(),
        }
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Wait until `bytes` fit next to what others hold, then take them. `Err(bytes)` at once when
    /// `bytes` alone exceed the capacity (it could never be served; the caller refuses the photo).
    pub fn acquire(&self, bytes: u64) -> Result<BudgetGuard<'_>, u64> {
        if bytes > self.capacity {
            return Err(bytes);
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let ticket = s.next_ticket;
        s.next_ticket += 1;
        while !(s.serving == ticket && s.in_use + bytes <= self.capacity) {
            s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.serving += 1;
        s.in_use += bytes;
        s.holders += 1;
        s.peak_in_use = s.peak_in_use.max(s.in_use);
        s.peak_holders = s.peak_holders.max(s.holders);
        drop(s);
        // The next ticket may fit too.
        self.cv.notify_all();
        Ok(BudgetGuard {
            budget: self,
            bytes,
        })
    }

    /// Largest sum held at once so far, and the most holders at once.
    pub fn peak(&self) -> (u64, usize) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (s.peak_in_use, s.peak_holders)
    }
}

impl Drop for BudgetGuard<'_> {
    fn drop(&mut self) {
        let mut s = self.budget.state.lock().unwrap_or_else(|p| p.into_inner());
        s.in_use -= self.bytes;
        s.holders -= 1;
        drop(s);
        self.budget.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn budget_from_config_or_meminfo() {
        let text = "MemTotal:       24000000 kB\nMemFree:  1 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(parse_mem_available(text), Some(20_000_000 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 5 kB\n"), None);
        let (b, s) = resolve_budget_with(0.0, Some(8 << 30));
        assert_eq!(
            (b, s),
            (
                4 << 30,
                BudgetSource::Auto {
                    mem_available: 8 << 30
                }
            )
        );
        assert_eq!(resolve_budget_with(1.5, Some(8 << 30)).0, 3 << 29);
        assert_eq!(
            resolve_budget_with(0.0, None),
            (FALLBACK_BUDGET, BudgetSource::Fallback)
        );
    }

    /// Sixteen threads take random estimates (some near the capacity) from a budget: the sum held at
    /// once, checked by every holder and by the budget's own record, never exceeds it, every request
    /// is served, and a request above the capacity is refused at once.
    #[test]
    fn photos_in_flight_never_exceed_the_budget() {
        let cap = 1000u64;
        let b = ByteBudget::new(cap);
        assert_eq!(b.acquire(1001).unwrap_err(), 1001);
        let held = AtomicU64::new(0);
        let max_seen = AtomicU64::new(0);
        let served = AtomicU64::new(0);
        std::thread::scope(|sc| {
            for t in 0..16u64 {
                let (b, held, max_seen, served) = (&b, &held, &max_seen, &served);
                sc.spawn(move || {
                    let mut x = t * 7919 + 1;
                    for _ in 0..50 {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let need = 50 + (x >> 33) % 900;
                        let g = b.acquire(need).unwrap();
                        let now = held.fetch_add(need, Ordering::SeqCst) + need;
                        max_seen.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        held.fetch_sub(need, Ordering::SeqCst);
                        drop(g);
                        served.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(served.load(Ordering::SeqCst), 16 * 50);
        let (peak, holders) = b.peak();
        assert!(peak <= cap, "budget record {peak} > {cap}");
        assert!(max_seen.load(Ordering::SeqCst) <= cap);
        assert!(holders >= 2, "the budget never let two photos run together");
        assert_eq!(
            b.acquire(cap).map(|g| g.bytes).unwrap(),
            cap,
            "all returned"
        );
    }

    #[test]
    fn a_decode_over_the_limit_names_the_photo_and_the_key() {
        let img = image::RgbImage::new(400, 300);
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        // 400x300 RGB8 needs 360000 bytes: a 100 kB limit refuses it, 1 MB decodes it.
        let e = decode_with_limit(&png, "IMG_1.png", 100_000, 100_000).unwrap_err();
        assert!(
            e.contains("IMG_1.png") && e.contains("0.1 megapixels") && e.contains(BUDGET_KEY),
            "{e}"
        );
        assert!(!e.contains("Memory limit exceeded"), "{e}");
        assert_eq!(
            decode_with_limit(&png, "IMG_1.png", 1_000_000, 1_000_000)
                .unwrap()
                .width(),
            400
        );
    }
}
