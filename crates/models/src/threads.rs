//! The training thread as one of rayon's workers.
//!
//! Every kernel of this crate, and flex's own, splits its work over rayon's
//! global pool. A training loop on a thread outside the pool hands each of
//! a step's parallel passes to the pool and sleeps until the workers are
//! done: a wake-up across threads, there and back, for each of the tens of
//! passes in a step, most of them short (docs/benchmarks.md §6, item 31).
//! [`join_global_pool`] makes the calling thread the pool's first worker
//! instead: it runs each pass itself, the other workers steal parts of it,
//! and nothing is handed over or woken for the part it does.
//!
//! Invariants:
//! * **The pool keeps a worker besides the calling thread.** When the
//!   calling thread blocks outside rayon (on a channel, a lock, a file),
//!   work that other threads give the pool (a data loader, a checkpoint
//!   writer) still runs; so where rayon would have one thread
//!   (`RAYON_NUM_THREADS=1`, one core) the pool is left as it is.
//! * **The same number of threads as rayon's default**, the calling thread
//!   counted among them, so the same work per thread.
//! * **Once per process**, before anything uses the pool: afterwards it
//!   changes nothing (and says so).
//! * **The same results**: this crate's kernels give the same values
//!   whichever threads run them, and how many.
//!
//! Not for a thread that gives the work to other threads and waits for
//! them (one thread per device, several devices): while it waits, the pool
//! has one worker fewer for theirs.

/// Makes the calling thread a worker of rayon's global pool, of as many
/// threads as rayon would start (`RAYON_NUM_THREADS`, else one per
/// logical CPU); `true` when it did. `false`, changing nothing, where that
/// is one thread (none would be left to run other threads' work while this
/// one blocks) or the global pool already exists.
///
/// Call it first thing on the thread that will train (it stays a worker
/// for the life of the process), and only where that thread does the
/// training's work itself: not on one that waits for device threads.
pub fn join_global_pool() -> bool {
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|value| value.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    threads >= 2
        && rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .use_current_thread()
            .build_global()
            .is_ok()
}

/// The threads of rayon's global pool (starting it if nothing has yet).
pub fn pool_threads() -> usize {
    rayon::current_num_threads()
}
