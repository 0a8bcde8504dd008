//! Fault injection for the crash and interrupt tests, switched on by
//! environment variables when the binary is built with the cargo feature
//! `fault-injection` (`make test` builds it so; without the feature no
//! variable is read and this adds no callback at all):
//!
//! * `BURNFIT_ABORT_AT_STEP=S`: the process aborts (as SIGKILL would stop
//!   it) at the start of global step `S` (1-based), in the middle of an
//!   epoch, once the backup of the last epoch end (or of the step
//!   `BURNFIT_ABORT_AFTER_BACKUP` names) is on disk: backups are written by
//!   a background thread, and without the wait which backup a test resumes
//!   from would depend on the disk's speed;
//! * `BURNFIT_SIGINT_AT_STEP=S`: the process sends itself SIGINT (or
//!   SIGTERM with `BURNFIT_SIGNAL=TERM`) at the start of step `S` and waits
//!   until the stop request is seen, so the run stops after exactly that
//!   batch, through the real signal handler.
//!
//! (`BURNFIT_ABORT_IN_WRITE=N`, `BURNFIT_ABORT_IN_WRITE_TO=NAME` and
//! `BURNFIT_FAIL_WRITE_TO=PREFIX`, in the library's atomic writes, abort in
//! the middle of the N-th file write or of the write of file `NAME`, or fail
//! the writes of files named `PREFIX…` as on a full disk; the feature turns
//! on burnfit-core's `fault-injection`.)

use std::path::PathBuf;
#[cfg(feature = "fault-injection")]
use std::time::{Duration, Instant};

use burnfit_callbacks::Callback;
#[cfg(feature = "fault-injection")]
use burnfit_callbacks::{Context, Result};

/// The fault callbacks the environment asks for; `backup_dir` is where the
/// run's backups go. Without the `fault-injection` feature: none.
#[cfg(not(feature = "fault-injection"))]
pub fn from_env(_backup_dir: PathBuf) -> Vec<Box<dyn Callback>> {
    Vec::new()
}

/// The fault callbacks the environment asks for; `backup_dir` is where the
/// run's backups go.
#[cfg(feature = "fault-injection")]
pub fn from_env(backup_dir: PathBuf) -> Vec<Box<dyn Callback>> {
    let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let mut faults: Vec<Box<dyn Callback>> = Vec::new();
    if let Some(step) = number("BURNFIT_ABORT_AT_STEP") {
        faults.push(Box::new(AbortAtStep {
            step,
            after_backup: number("BURNFIT_ABORT_AFTER_BACKUP"),
            backup_dir,
        }));
    }
    if let Some(step) = number("BURNFIT_SIGINT_AT_STEP") {
        let signal = match std::env::var("BURNFIT_SIGNAL").as_deref() {
            Ok("TERM") => signal_hook::consts::SIGTERM,
            _ => signal_hook::consts::SIGINT,
        };
        faults.push(Box::new(SignalAtStep { step, signal }));
    }
    faults
}

#[cfg(feature = "fault-injection")]
struct AbortAtStep {
    step: u64,
    after_backup: Option<u64>,
    backup_dir: PathBuf,
}

#[cfg(feature = "fault-injection")]
impl Callback for AbortAtStep {
    fn on_train_batch_begin(&mut self, _batch: usize, ctx: &mut Context) -> Result<()> {
        let progress = ctx.progress();
        if progress.global_batch + 1 != self.step {
            return Ok(());
        }
        let last_epoch_end = progress
            .steps_per_epoch
            .filter(|_| progress.epoch > 0)
            .map(|steps| (progress.epoch * steps) as u64);
        if let Some(at) = self.after_backup.or(last_epoch_end) {
            let backup = self.backup_dir.join(format!("backup-{at:012}.bfk"));
            let deadline = Instant::now() + Duration::from_secs(30);
            while !backup.is_file() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        eprintln!("BURNFIT_ABORT_AT_STEP: aborting at step {}", self.step);
        std::process::abort();
    }
}

#[cfg(feature = "fault-injection")]
struct SignalAtStep {
    step: u64,
    signal: i32,
}

#[cfg(feature = "fault-injection")]
impl Callback for SignalAtStep {
    fn on_train_batch_begin(&mut self, _batch: usize, ctx: &mut Context) -> Result<()> {
        if ctx.progress().global_batch + 1 == self.step {
            let _ = signal_hook::low_level::raise(self.signal);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !ctx.stop_requested() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    }
}
