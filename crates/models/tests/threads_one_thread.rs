//! `threads::join_global_pool` where rayon would start one thread: the pool
//! is left as rayon makes it, so that work other threads give it still runs
//! while the calling thread blocks outside rayon. One test in its own
//! binary, since the global pool is built once a process.

mod pool_work;

use burnfit_models::threads::{join_global_pool, pool_threads};

#[test]
fn with_one_thread_the_pool_is_left_to_rayon_and_still_runs_other_threads_work() {
    // SAFETY: the binary's only test sets it before any thread reads it.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    assert!(!join_global_pool());
    assert_eq!(rayon::current_thread_index(), None);
    assert_eq!(pool_work::sum_from_another_thread(1000), Ok(499_500));
    assert_eq!(pool_threads(), 1);
}
