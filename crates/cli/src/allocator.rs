//! How glibc's allocator serves the tensors: from its heap, kept between
//! steps, instead of fresh pages from the kernel for each one.
//!
//! flex allocates every tensor it produces (activations, gradients, the
//! optimizer's intermediates: megabytes each at batch 64). By default glibc
//! maps allocations this large straight from the kernel and unmaps them when
//! freed, and trims freed heap memory back to the kernel: each training step
//! then faults its pages in again and pays for TLB shootdowns on both cores
//! (`perf` put ≈ 28% of a `simple_cnn` step in the kernel's page-fault and
//! unmap paths). With no mmap'd chunks and no trimming the freed memory is
//! reused by the next step; measured side by side, a `simple_cnn` step went
//! from ≈ 112 to ≈ 70 ms (docs/benchmarks.md §6). Peak memory stays what the
//! biggest step needs (it is kept, not given back).
//!
//! Only on Linux with glibc, and only when `GLIBC_TUNABLES` does not already
//! set glibc's malloc tunables (the user's setting wins).

/// Tells glibc's malloc to keep and reuse freed memory (see the module doc).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_set = std::env::var("GLIBC_TUNABLES")
            .map(|t| t.contains("glibc.malloc."))
            .unwrap_or(false);
        if !user_set {
            // SAFETY: mallopt only changes allocator parameters; it is called
            // at startup, before any other thread exists.
            unsafe {
                libc::mallopt(libc::M_MMAP_MAX, 0);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
            }
        }
    }
}
