//! How glibc's allocator serves the tensors: from its heap, kept between
//! steps, instead of fresh pages from the kernel for each one.
//!
//! flex allocates every tensor it produces (activations, gradients, the
//! optimizer's intermediates: megabytes each at batch 64). By default glibc
//! maps allocations this large straight from the kernel and unmaps them
//! when freed, and gives freed heap memory back to the kernel: each training
//! step then faults its pages in again (≈ 13 000 page faults per
//! `simple_cnn` step, measured with `perf stat`), zeroes them, and pays for
//! the TLB flushes on every core. With a fixed 32 MiB mmap threshold (the
//! largest glibc takes), no trimming below 1 GiB and a 64 MiB top pad, the
//! memory freed by one step is reused by the next (docs/benchmarks.md §6
//! has the side-by-side figures). Memory is kept, not given back: resident
//! memory stays at what the largest step needed.
//!
//! Only on Linux with glibc, and only when `GLIBC_TUNABLES` does not already
//! set a malloc tunable (the user's setting wins; that is also how to
//! measure without this: `GLIBC_TUNABLES=glibc.malloc.check=0`).
//!
//! A library user gets the same with
//! `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824:glibc.malloc.top_pad=67108864`
//! or the three `mallopt` calls below in their own `main`.

use std::sync::atomic::{AtomicBool, Ordering};

/// The mmap threshold: the largest glibc accepts (`HEAP_MAX_SIZE / 2` on
/// 64-bit). Larger allocations (the dataset, once) are still mapped.
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free memory at the top of a heap kept before any is given back.
const TRIM_THRESHOLD: i32 = 1 << 30;
/// Extra memory requested each time a heap grows.
const TOP_PAD: i32 = 64 << 20;

/// Whether [`keep_freed_memory`] changed glibc's settings in this process.
static KEPT: AtomicBool = AtomicBool::new(false);

/// One line on how the allocator is set up, for `burnfit bench`'s header.
pub fn describe() -> &'static str {
    if KEPT.load(Ordering::Relaxed) {
        "glibc keeps freed memory between steps (mmap threshold 32 MiB, trim threshold 1 GiB, top pad 64 MiB)"
    } else {
        "the platform's default (or GLIBC_TUNABLES)"
    }
}

/// Tells glibc's malloc to keep and reuse freed memory (see the module doc).
/// Returns whether it did.
pub fn keep_freed_memory() -> bool {
    let kept = set_glibc_options();
    KEPT.store(kept, Ordering::Relaxed);
    kept
}

fn set_glibc_options() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_set = std::env::var("GLIBC_TUNABLES")
            .map(|tunables| tunables.contains("glibc.malloc."))
            .unwrap_or(false);
        if user_set {
            return false;
        }
        // SAFETY: mallopt only changes allocator parameters; it is called at
        // startup, before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
                && libc::mallopt(libc::M_TOP_PAD, TOP_PAD) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    #[test]
    fn glibc_accepts_the_three_settings() {
        if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.")) {
            assert!(!super::keep_freed_memory(), "the user's tunables win");
        } else {
            assert!(super::keep_freed_memory());
        }
    }
}
