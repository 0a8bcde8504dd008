//! `threads::join_global_pool` where rayon would start two threads: the
//! calling thread becomes the pool's first worker, and work that other
//! threads give the pool still runs while it blocks outside rayon. One
//! test in its own binary, since the global pool is built once a process.

mod pool_work;

use burnfit_models::threads::{join_global_pool, pool_threads};
use rayon::prelude::*;

#[test]
fn the_calling_thread_becomes_a_worker_and_the_pool_still_runs_other_threads_work() {
    // SAFETY: the binary's only test sets it before any thread reads it.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", "2") };
    assert!(join_global_pool());
    assert_eq!(rayon::current_thread_index(), Some(0));
    assert_eq!(pool_threads(), 2, "the calling thread counted among them");
    // A pass started here runs part of itself here (a worker runs the
    // first half of each split itself).
    let here = (0..64u32)
        .into_par_iter()
        .filter(|_| rayon::current_thread_index() == Some(0))
        .count();
    assert!(here > 0);
    assert!(!join_global_pool(), "once a process");
    assert_eq!(pool_work::sum_from_another_thread(1000), Ok(499_500));
}
