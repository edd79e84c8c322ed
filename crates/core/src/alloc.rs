//! Allocator tuning for the numeric stages.
//!
//! The training and rendering loops allocate and free the same few tens of megabytes of scratch
//! buffers every step. With glibc's defaults, freed memory at the top of the heap is returned to
//! the kernel (`M_TRIM_THRESHOLD`, 128 KiB, raised dynamically) and large blocks are `mmap`ed and
//! `munmap`ed, so every step faults the same pages in again: on the 2-core CI machine that was
//! 5.6 M page faults in a 20 s training run, about 15 % of the CPU time in the kernel and half
//! the forward pass (see `crates/nerf/README.md`, "Performance"). [`retain_freed_memory`] keeps
//! freed memory in the process instead (peak memory is unchanged; it is just not handed back).

use std::sync::Once;

/// Tell the C allocator to keep freed memory for reuse (glibc: `M_TRIM_THRESHOLD` 1 GiB,
/// `M_TOP_PAD` 64 MiB, `M_MMAP_THRESHOLD` fixed at its 32 MiB maximum). Idempotent, process
/// wide, and a no-op on platforms whose allocator is not glibc's.
pub fn retain_freed_memory() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: `mallopt` only sets allocator parameters; it is thread-safe in glibc and the
        // values are within the documented ranges (a rejected value leaves the default).
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
            libc::mallopt(libc::M_TOP_PAD, 64 << 20);
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        }
    });
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    /// Minor page faults of the calling thread so far.
    fn thread_minor_faults() -> i64 {
        // SAFETY: getrusage writes into the zeroed struct we pass.
        unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut u), 0);
            u.ru_minflt
        }
    }

    /// Eight 8 MiB scratch buffers allocated, written and freed 10 times (the pattern of a
    /// training step) fault their pages in once, not every time.
    #[test]
    fn freed_scratch_is_reused_without_page_faults() {
        super::retain_freed_memory();
        super::retain_freed_memory();
        let n = 8 << 20;
        let pages = 8 * n / 4096;
        let mut sum = 0usize;
        let before = thread_minor_faults();
        for i in 0..10u8 {
            let bufs: Vec<Vec<u8>> = (0..8)
                .map(|_| {
                    let mut v = vec![0u8; n];
                    for p in v.chunks_mut(4096) {
                        p[0] = i;
                    }
                    v
                })
                .collect();
            sum += bufs[7][n - 4096] as usize;
            drop(std::hint::black_box(bufs));
        }
        let faults = thread_minor_faults() - before;
        assert_eq!(sum, (0..10).sum::<usize>());
        assert!(
            faults < 3 * pages as i64,
            "{faults} minor faults for 10 x {pages} pages: freed memory was returned to the kernel"
        );
    }
}
