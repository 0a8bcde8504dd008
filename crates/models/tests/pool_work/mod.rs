//! Work given to rayon's global pool from a thread of its own.

use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::Duration;

use rayon::prelude::*;

/// `Σ 0..n`, summed on the pool by a thread of its own while the calling
/// thread waits on a channel, outside rayon; `Err` when no worker ran it
/// (a deadlock, cut after a minute so that the test fails, not hangs).
pub fn sum_from_another_thread(n: u64) -> Result<u64, RecvTimeoutError> {
    let (sender, receiver) = channel();
    std::thread::spawn(move || {
        let sum: u64 = (0..n).into_par_iter().sum();
        let _ = sender.send(sum);
    });
    receiver.recv_timeout(Duration::from_secs(60))
}
