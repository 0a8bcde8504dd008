//! `burnfit batch-find CONFIG`: the largest training batch that fits in
//! memory (Lightning's `BatchSizeFinder`, HF's `auto_find_batch_size`), and
//! its step time.
//!
//! Invariants:
//! - Each batch size is tried in a child process (this binary, with the
//!   hidden `--probe`): an allocation that fails aborts the process that
//!   makes it, which Rust cannot catch, so only the child dies.
//! - The search grows by powers of two from `training.batch_size` (halving
//!   first if that does not fit), then bisects between the largest batch
//!   that fitted and the smallest that did not; every size it reports was
//!   tried.
//! - Nothing is left behind: a probe trains a fresh model a few steps in a
//!   temporary run directory that the parent deletes once the child has
//!   ended, however it ended; the config is not touched.
//! - A probe that fails for another reason than memory ends the search with
//!   its error.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burnfit_callbacks::{Callback, Context, Logs};
use clap::ValueEnum;

use crate::error::{CliError, CliResult};
use crate::{RunFlags, TrainArgs, train};

/// `burnfit batch-find` options.
#[derive(clap::Args, Debug, Clone)]
pub struct BatchFindArgs {
    /// The config file: its model, data and optimizer (its batch size is
    /// where the search starts).
    pub config: PathBuf,
    /// Training steps timed at each batch size (the first, a warm-up, is
    /// not counted unless it is the only one).
    #[arg(long, default_value_t = 3)]
    pub steps: u64,
    /// The largest batch tried (default: the training set's size).
    #[arg(long)]
    pub max_batch: Option<usize>,
    /// Limit each probe's heap to this many MiB (RLIMIT_DATA), as if the
    /// machine had that much memory.
    #[arg(long, value_name = "MIB")]
    pub memory_limit_mib: Option<u64>,
    /// The flags every training command takes (`--epochs` does not apply).
    #[command(flatten)]
    pub run: RunFlags,
    /// Internal: try this one batch size and print its step time.
    #[arg(long, hide = true, requires = "probe_dir")]
    pub probe: Option<usize>,
    /// Internal: the probe's run directory goes here (the parent removes it,
    /// even after an abort).
    #[arg(long, hide = true)]
    pub probe_dir: Option<PathBuf>,
}

/// What one batch size gave.
#[derive(Clone, Copy, Debug)]
enum Probe {
    /// It trained; the mean step time in seconds.
    Fits(f64),
    /// It ran out of memory.
    TooBig,
}

/// The line a probe prints on success.
const PROBE_LINE: &str = "batch-find probe:";

/// `burnfit batch-find`.
pub fn batch_find_command(args: &BatchFindArgs) -> CliResult<()> {
    check_flags(args)?;
    if let Some(batch) = args.probe {
        return probe(args, batch);
    }
    let train_args = train_args(args);
    let mut setup = train::prepare(&train_args)?;
    let data = train::load(&mut setup)?;
    let train_items = data.sizes().0;
    drop(data);
    let cap = args.max_batch.unwrap_or(train_items).min(train_items);
    let start = setup.config.training.batch_size.clamp(1, cap);
    println!(
        "burnfit: batch-find on {} ({} backend): from batch {start} up to {cap}, {} steps each",
        args.config.display(),
        setup.backend.name,
        args.steps
    );
    let (best, seconds) = search(start, cap, |batch| run_probe(args, batch))?;
    let capped = if best == cap {
        if cap == train_items {
            " (the training set's size: no larger batch exists)"
        } else {
            " (--max-batch)"
        }
    } else {
        ""
    };
    println!(
        "burnfit: the largest batch that fits is {best}{capped}: {:.1} ms per step, {:.0} samples/s",
        seconds * 1e3,
        best as f64 / seconds.max(f64::MIN_POSITIVE)
    );
    println!(
        "burnfit: train with it: {} train {}{} --set training.batch_size={best}",
        crate::program(),
        crate::shell_word(&args.config.display().to_string()),
        args.run.shown()
    );
    Ok(())
}

fn check_flags(args: &BatchFindArgs) -> CliResult<()> {
    if args.run.epochs.is_some() {
        return Err(CliError::usage(
            "batch-find: --epochs does not apply (each batch size trains --steps steps)",
        ));
    }
    if args.steps == 0 {
        return Err(CliError::usage("batch-find: --steps must be at least 1"));
    }
    if args.max_batch == Some(0) {
        return Err(CliError::usage(
            "batch-find: --max-batch must be at least 1",
        ));
    }
    if args.memory_limit_mib == Some(0) {
        return Err(CliError::usage(
            "batch-find: --memory-limit-mib must be at least 1 (or left out for no limit)",
        ));
    }
    Ok(())
}

fn train_args(args: &BatchFindArgs) -> TrainArgs {
    TrainArgs {
        config: args.config.clone(),
        run: args.run.clone(),
        ..Default::default()
    }
}

/// The largest batch in `1..=cap` for which `try_batch` fits, starting
/// from `start`, with its step time.
fn search(
    start: usize,
    cap: usize,
    mut try_batch: impl FnMut(usize) -> CliResult<Probe>,
) -> CliResult<(usize, f64)> {
    let mut report = |batch: usize| -> CliResult<Probe> {
        let result = try_batch(batch)?;
        match result {
            Probe::Fits(s) => println!("batch {batch}: fits, {:.1} ms per step", s * 1e3),
            Probe::TooBig => println!("batch {batch}: does not fit in memory"),
        }
        Ok(result)
    };
    // The largest batch known to fit (with its time), the smallest known not to.
    let (mut fits, mut too_big): (Option<(usize, f64)>, Option<usize>) = (None, None);
    let mut batch = start;
    // Halve until one fits.
    while fits.is_none() {
        match report(batch)? {
            Probe::Fits(s) => fits = Some((batch, s)),
            Probe::TooBig if batch == 1 => {
                return Err(CliError::failed(
                    "batch-find: even a batch of 1 does not fit in memory; use a smaller model \
                     (or raise --memory-limit-mib)",
                ));
            }
            Probe::TooBig => {
                too_big = Some(batch);
                batch /= 2;
            }
        }
    }
    // Double until one does not fit, or the cap.
    while too_big.is_none() {
        let (last, _) = fits.expect("one fits");
        if last >= cap {
            break;
        }
        let next = (last * 2).min(cap);
        match report(next)? {
            Probe::Fits(s) => fits = Some((next, s)),
            Probe::TooBig => too_big = Some(next),
        }
    }
    // Bisect between them.
    while let (Some((low, _)), Some(high)) = (fits, too_big)
        && high - low > 1
    {
        let mid = low + (high - low) / 2;
        match report(mid)? {
            Probe::Fits(s) => fits = Some((mid, s)),
            Probe::TooBig => too_big = Some(mid),
        }
    }
    Ok(fits.expect("one fits"))
}

/// Runs this binary's probe of `batch` and reads what it says.
fn run_probe(args: &BatchFindArgs, batch: usize) -> CliResult<Probe> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::failed(format!("batch-find: cannot find this program: {e}")))?;
    // Removed when this returns, whatever became of the probe.
    let dir = tempfile::Builder::new()
        .prefix("burnfit-batch-find-")
        .tempdir()
        .map_err(|e| CliError::failed(format!("batch-find: a temporary directory: {e}")))?;
    let mut command = Command::new(exe);
    command
        .arg("batch-find")
        .arg(&args.config)
        .arg("--steps")
        .arg(args.steps.to_string())
        .arg("--probe")
        .arg(batch.to_string())
        .arg("--probe-dir")
        .arg(dir.path());
    if let Some(limit) = args.memory_limit_mib {
        command.arg("--memory-limit-mib").arg(limit.to_string());
    }
    if let Some(value) = args.run.backend.and_then(|b| b.to_possible_value()) {
        command.arg("--backend").arg(value.get_name());
    }
    if let Some(data) = &args.run.data {
        command.arg("--data").arg(data);
    }
    for set in &args.run.sets {
        command.arg("--set").arg(set);
    }
    let output = command
        .output()
        .map_err(|e| CliError::failed(format!("batch-find: cannot start a probe: {e}")))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        let seconds = stdout
            .lines()
            .find_map(|l| l.strip_prefix(PROBE_LINE))
            .and_then(|rest| rest.trim().parse::<f64>().ok())
            .ok_or_else(|| {
                CliError::failed(format!(
                    "batch-find: the probe of batch {batch} printed no step time:\n{stdout}"
                ))
            })?;
        return Ok(Probe::Fits(seconds));
    }
    if let Some(signal) = crate::interrupt::received() {
        return Err(CliError::interrupted(
            "burnfit batch-find: interrupted; nothing was changed",
            signal.exit_code(),
        ));
    }
    if out_of_memory(&output.status, &stderr) {
        return Ok(Probe::TooBig);
    }
    let line = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .unwrap_or("it failed without a message");
    let message = format!("batch-find: the probe of batch {batch} failed: {line}");
    Err(match output.status.code() {
        Some(2) => CliError::usage(message),
        _ => CliError::failed(message),
    })
}

/// Whether a probe died of memory: killed by the allocator's abort or the
/// kernel's OOM killer, or a backend's out-of-memory error.
fn out_of_memory(status: &std::process::ExitStatus, stderr: &str) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if matches!(status.signal(), Some(libc::SIGABRT | libc::SIGKILL)) {
            return true;
        }
    }
    let lower = stderr.to_lowercase();
    !status.success()
        && (lower.contains("out of memory")
            || lower.contains("outofmemory")
            || lower.contains("memory allocation"))
}

/// The child: trains a fresh model `args.steps` steps at `batch` in a
/// temporary run directory, and prints the mean step time.
fn probe(args: &BatchFindArgs, batch: usize) -> CliResult<()> {
    if let Some(mib) = args.memory_limit_mib {
        limit_heap(mib)?;
    }
    let dir = args
        .probe_dir
        .as_ref()
        .ok_or_else(|| CliError::usage("batch-find: --probe needs --probe-dir"))?;
    let mut train_args = train_args(args);
    train_args.run_dir = Some(dir.join("run"));
    let mut setup = train::prepare(&train_args)?;
    let config = &mut setup.config;
    config.training.batch_size = batch;
    config.training.epochs = 1;
    config.training.max_steps = Some(args.steps);
    config.training.limit_val_batches = Some(1);
    config.training.accumulate_grad_batches = None;
    config.bare_training();
    config.outputs.progress = false;
    let times = Arc::new(Mutex::new(Vec::new()));
    setup.extra_callbacks.push(Box::new(StepTimer {
        began: None,
        times: times.clone(),
    }));
    let data = train::load(&mut setup)?;
    let started = train::start(&setup)?;
    if let train::Ended::Interrupted { .. } = train::train(&mut setup, &started.run, data)? {
        return Err(CliError::interrupted(
            "batch-find: interrupted",
            crate::interrupt::received().map_or(130, |s| s.exit_code()),
        ));
    }
    let times = times.lock().expect("step times").clone();
    // The first step warms up (allocations, kernel choices) unless it is
    // the only one.
    let timed = if times.len() > 1 {
        &times[1..]
    } else {
        &times[..]
    };
    if timed.is_empty() {
        return Err(CliError::failed("batch-find: no training step ran"));
    }
    let mean = timed.iter().sum::<f64>() / timed.len() as f64;
    println!("{PROBE_LINE} {mean}");
    Ok(())
}

/// Caps this process's heap (RLIMIT_DATA) at `mib` MiB.
fn limit_heap(mib: u64) -> CliResult<()> {
    let bytes = mib.saturating_mul(1 << 20);
    let limit = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_DATA, &limit) } != 0 {
        return Err(CliError::failed(format!(
            "batch-find: cannot limit memory: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// Times each training step (the loss is read each step, so the time
/// includes the device's work).
struct StepTimer {
    began: Option<Instant>,
    times: Arc<Mutex<Vec<f64>>>,
}

impl Callback for StepTimer {
    fn name(&self) -> String {
        "BatchFindStepTimer".into()
    }

    fn wants_batch_logs(&self) -> bool {
        true
    }

    fn on_train_batch_begin(
        &mut self,
        _batch: usize,
        _ctx: &mut Context,
    ) -> burnfit_callbacks::Result<()> {
        self.began = Some(Instant::now());
        Ok(())
    }

    fn on_train_batch_end(
        &mut self,
        _batch: usize,
        _logs: &mut Logs,
        _ctx: &mut Context,
    ) -> burnfit_callbacks::Result<()> {
        if let Some(began) = self.began.take() {
            self.times
                .lock()
                .expect("step times")
                .push(began.elapsed().as_secs_f64());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `search` over a machine where batches up to `fits` fit.
    fn found(start: usize, cap: usize, fits: usize) -> (usize, Vec<usize>) {
        let mut tried = Vec::new();
        let (best, _) = search(start, cap, |b| {
            tried.push(b);
            Ok(if b <= fits {
                Probe::Fits(b as f64)
            } else {
                Probe::TooBig
            })
        })
        .unwrap();
        (best, tried)
    }

    #[test]
    fn the_search_grows_by_doubling_then_bisects_to_the_largest_that_fits() {
        let (best, tried) = found(8, 1000, 100);
        assert_eq!(best, 100);
        assert_eq!(&tried[..5], &[8, 16, 32, 64, 128]);
        assert!(
            tried.contains(&101),
            "the size above the answer was tried: {tried:?}"
        );
    }

    #[test]
    fn the_search_halves_from_a_start_that_does_not_fit_and_stops_at_the_cap() {
        assert_eq!(found(64, 1000, 20).0, 20);
        assert_eq!(found(64, 1000, 20).1[..3], [64, 32, 16]);
        assert_eq!(found(8, 50, 1000).0, 50);
        assert!(search(4, 10, |_| Ok(Probe::TooBig)).is_err());
    }
}
