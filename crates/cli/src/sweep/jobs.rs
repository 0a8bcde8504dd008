//! `--jobs N`: N trials at once, each a child process
//! (`burnfit sweep --sweep-dir SWEEP --trial K`), the machine's cores split
//! between them and, with `--devices`, one device each in turn. The output
//! stays readable: each child appends to `SWEEP/logs/trial-NNN.log`, and
//! this process prints one line per trial event and a progress line.
//!
//! A trial another process holds (its directory's lock) is skipped, its log
//! left alone. A SIGINT or SIGTERM to this process is passed on to the
//! running trials, which back up and stop as `train` does; this process
//! waits for them and exits 130 or 143. The signal travels through each
//! child's standard input, not as a signal: Ctrl-C in a terminal (or a
//! `kill` of the whole process group) reaches the children directly as
//! well, and a second signal would make them quit at once, without their
//! backup. A child counts its parent's word only when no signal reached it
//! directly, and stops too when its parent is gone however it ended.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use burn::train::Interrupter;
use signal_hook::consts::{SIGINT, SIGTERM};

use super::leaderboard::{self, Status};
use super::manifest::{self, Manifest};
use super::trial;
use crate::error::{CliError, CliResult};
use crate::interrupt::{self, Signal};
use crate::run_dir::RunDir;

/// Set in the environment of the trials this process starts: they follow
/// it through their standard input (see [`follow_parent`]).
const CHILD_VARIABLE: &str = "BURNFIT_SWEEP_JOBS_CHILD";

/// A trial running in a child process (its standard input a pipe from
/// this process).
struct Running {
    index: usize,
    child: Child,
    started: Instant,
}

/// What the trials of one `sweep` did, for its closing line.
#[derive(Debug, Default)]
pub struct Tally {
    /// Trials finished (pruned included).
    pub finished: usize,
    /// Trials pruned.
    pub pruned: usize,
    /// Trials that failed.
    pub failed: usize,
    /// Trials stopped by a signal (they resume).
    pub stopped: usize,
    /// Trials skipped: another process held them.
    pub elsewhere: Vec<usize>,
    /// The signal that stopped this sweep, if one did.
    pub interrupted: Option<Signal>,
}

/// One line about a trial that just ended, from what it left on disk.
pub fn report(manifest: &Manifest, dir: &Path, index: usize, seconds: f64, tally: &mut Tally) {
    match leaderboard::status(manifest, dir, index) {
        Status::Finished(result) => {
            tally.finished += 1;
            let best = result
                .best
                .zip(result.best_epoch)
                .map(|(v, e)| format!("best {} = {v:.4} at epoch {}", manifest.monitor, e + 1))
                .unwrap_or_else(|| format!("no finite {}", manifest.monitor));
            if result.stop_reason.as_deref().is_some_and(trial::is_pruned) {
                tally.pruned += 1;
                println!(
                    "trial {index}: pruned after epoch {} ({seconds:.1}s), {best}",
                    result.epochs_run
                );
            } else {
                println!(
                    "trial {index}: finished {} ({seconds:.1}s), {best}",
                    crate::report::count(result.epochs_run, "epoch")
                );
            }
        }
        Status::Failed(why) => {
            tally.failed += 1;
            println!("trial {index}: failed: {why}");
        }
        Status::Running => {
            tally.elsewhere.push(index);
            println!("trial {index}: {ELSEWHERE}");
        }
        other => {
            tally.failed += 1;
            println!("trial {index}: stopped without finishing ({other:?})");
        }
    }
}

/// What is said of a trial that another process holds.
pub const ELSEWHERE: &str = "running in another process (its directory is locked), skipped";

/// Whether another process holds trial `index` (its directory's lock).
pub fn held_elsewhere(dir: &Path, index: usize) -> bool {
    RunDir::check_unlocked(&manifest::trial_dir(dir, index)).is_err()
}

/// Runs `indices` with at most `jobs` child processes at once; a first
/// SIGINT or SIGTERM stops the running ones (see the module's notes) and
/// starts no more.
pub fn run_parallel(
    manifest: &Manifest,
    dir: &Path,
    indices: &[usize],
    jobs: usize,
    devices: &[String],
) -> CliResult<Tally> {
    let launcher = Launcher::new(manifest, dir, jobs, devices)?;
    println!(
        "sweep: {} trials, {jobs} at a time, {} thread{} each{}",
        indices.len(),
        launcher.threads,
        if launcher.threads == 1 { "" } else { "s" },
        if devices.is_empty() {
            String::new()
        } else {
            format!(", devices {}", devices.join(" "))
        }
    );
    // From here on a signal is this loop's to handle; a second one still
    // ends this process at once (its children then stop at once too).
    interrupt::watch(Interrupter::new());
    let mut pending: Vec<usize> = indices.iter().rev().copied().collect();
    let mut slots: Vec<Option<Running>> = (0..jobs).map(|_| None).collect();
    let mut tally = Tally::default();
    loop {
        launcher.fill(&mut slots, &mut pending, &mut tally)?;
        // Read again after the starts: a trial started just before the
        // signal came gets it too, and none starts after it.
        if tally.interrupted.is_none()
            && let Some(signal) = interrupt::received()
        {
            tally.interrupted = Some(signal);
            for running in slots.iter_mut().flatten() {
                tell(running, signal);
            }
        }
        if slots.iter().all(Option::is_none) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        for (index, exit, seconds) in reap(&mut slots)? {
            let stopped = exit.code() == Some(130) || exit.code() == Some(143);
            // Told to stop, a trial may also end before its signal handler
            // is installed (killed by the signal itself).
            if stopped || (tally.interrupted.is_some() && !exit.success()) {
                println!("trial {index}: interrupted; run the sweep again to resume it");
                tally.stopped += 1;
            } else {
                report(manifest, dir, index, seconds, &mut tally);
            }
            let running = slots.iter().filter(|s| s.is_some()).count();
            print_progress(&tally, indices.len(), running);
        }
    }
    Ok(tally)
}

/// What starting the trials' child processes needs: this binary, the
/// sweep and its logs folder, each child's share of the cores, the
/// devices given in turn.
struct Launcher<'a> {
    manifest: &'a Manifest,
    dir: &'a Path,
    exe: PathBuf,
    logs: PathBuf,
    threads: usize,
    devices: &'a [String],
}

impl<'a> Launcher<'a> {
    /// Finds this binary and creates the logs folder; `jobs` children
    /// share the cores.
    fn new(
        manifest: &'a Manifest,
        dir: &'a Path,
        jobs: usize,
        devices: &'a [String],
    ) -> CliResult<Self> {
        let exe = std::env::current_exe()
            .map_err(|e| CliError::failed(format!("cannot find the burnfit binary: {e}")))?;
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)
            .map_err(|e| CliError::usage(format!("{}: cannot create: {e}", logs.display())))?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Launcher {
            manifest,
            dir,
            exe,
            logs,
            threads: (cores / jobs).max(1),
            devices,
        })
    }

    /// Starts the next pending trials in the free slots, unless a signal
    /// came.
    fn fill(
        &self,
        slots: &mut [Option<Running>],
        pending: &mut Vec<usize>,
        tally: &mut Tally,
    ) -> CliResult<()> {
        for (slot, place) in slots.iter_mut().enumerate() {
            if place.is_some() || interrupt::received().is_some() {
                continue;
            }
            let Some(index) = next(pending, self.dir, tally) else {
                break;
            };
            let devices = self.devices;
            let device = (!devices.is_empty()).then(|| devices[slot % devices.len()].clone());
            let child = spawn(
                &self.exe,
                self.dir,
                index,
                self.threads,
                device.as_deref(),
                &self.logs,
            )?;
            println!(
                "trial {index}: started ({}){}",
                self.manifest.trials[index]
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                device.map(|d| format!(" on {d}")).unwrap_or_default()
            );
            *place = Some(Running {
                index,
                child,
                started: Instant::now(),
            });
        }
        Ok(())
    }
}

/// The trials that ended since the last look, taken out of their slots:
/// index, exit status, seconds run.
fn reap(slots: &mut [Option<Running>]) -> CliResult<Vec<(usize, ExitStatus, f64)>> {
    let mut ended = Vec::new();
    for place in slots.iter_mut() {
        let Some(running) = place else { continue };
        let exit = running.child.try_wait().map_err(|e| {
            CliError::failed(format!("trial {}: cannot wait for it: {e}", running.index))
        })?;
        if let Some(exit) = exit {
            ended.push((running.index, exit, running.started.elapsed().as_secs_f64()));
            *place = None;
        }
    }
    Ok(ended)
}

/// The progress line after a trial ended: done of `total`, pruned,
/// failed, interrupted, still running, held by another process.
fn print_progress(tally: &Tally, total: usize, running: usize) {
    println!(
        "sweep: {}/{} done ({} pruned, {} failed{}), {} running{}",
        tally.finished + tally.failed,
        total,
        tally.pruned,
        tally.failed,
        if tally.stopped > 0 {
            format!(", {} interrupted", tally.stopped)
        } else {
            String::new()
        },
        running,
        if tally.elsewhere.is_empty() {
            String::new()
        } else {
            format!(", {} in another process", tally.elsewhere.len())
        }
    );
}

/// The next pending trial that no other process holds; those skipped are
/// reported and counted.
fn next(pending: &mut Vec<usize>, dir: &Path, tally: &mut Tally) -> Option<usize> {
    while let Some(index) = pending.pop() {
        if !held_elsewhere(dir, index) {
            return Some(index);
        }
        tally.elsewhere.push(index);
        println!("trial {index}: {ELSEWHERE}");
    }
    None
}

/// Passes `signal` on to a running trial (see [`follow_parent`]). A trial
/// that has just ended cannot read it: nothing to do then.
fn tell(running: &mut Running, signal: Signal) {
    if let Some(stdin) = running.child.stdin.as_mut() {
        let word = match signal {
            Signal::Interrupt => "INT",
            Signal::Terminate => "TERM",
        };
        let _ = writeln!(stdin, "{word}").and_then(|()| stdin.flush());
    }
}

/// In a trial that `--jobs` started: a thread that reads what its parent
/// passes on (a line `INT` or `TERM`, the signal it received) and sends
/// this process that signal, so that the trial backs up and stops as on a
/// signal of its own. Not when a signal already reached this process
/// directly: Ctrl-C in a terminal, or a `kill` of every process, reaches
/// parent and children alike, and a second signal would stop it at once.
/// The end of its input means that the parent is gone, however it ended:
/// the trial stops too (at once if it was stopping already: the parent
/// then quit at once, on a second signal). Elsewhere (no parent): nothing.
pub fn follow_parent() {
    if std::env::var_os(CHILD_VARIABLE).is_none() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("burnfit-sweep-parent".into())
        .spawn(|| {
            for line in std::io::stdin().lock().lines() {
                let signal = match line.as_deref().map(str::trim) {
                    Ok("INT") => SIGINT,
                    Ok("TERM") => SIGTERM,
                    Ok(_) => continue,
                    Err(_) => break,
                };
                // A signal sent to every process has almost always reached
                // this one already (the parent passes its own on from a
                // loop that looks every 50 ms); this wait covers the rest.
                std::thread::sleep(Duration::from_millis(50));
                if interrupt::received().is_none() {
                    raise(signal);
                }
            }
            raise(match interrupt::received() {
                Some(Signal::Interrupt) => SIGINT,
                _ => SIGTERM,
            });
        });
}

/// Sends this process `signal`, through the handler `interrupt` installed
/// (before training starts, the signal's default action: it ends).
fn raise(signal: i32) {
    // SAFETY: kill(2) on this process's own id, with a valid signal number.
    unsafe {
        libc::kill(libc::getpid(), signal);
    }
}

/// Starts `burnfit sweep --sweep-dir DIR --trial INDEX`, its output
/// appended to `logs/trial-NNN.log` (never truncated: a trial that another
/// process took in the meantime is refused by its lock, and the line saying
/// so goes after that process's output, not over it), its standard input a
/// pipe from this process.
fn spawn(
    exe: &Path,
    dir: &Path,
    index: usize,
    threads: usize,
    device: Option<&str>,
    logs: &Path,
) -> CliResult<Child> {
    let log = logs.join(format!("trial-{index:03}.log"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| CliError::usage(format!("{}: cannot create: {e}", log.display())))?;
    let err = file
        .try_clone()
        .map_err(|e| CliError::usage(format!("{}: {e}", log.display())))?;
    let mut command = Command::new(exe);
    command
        .args(["sweep", "--sweep-dir"])
        .arg(dir)
        .args(["--trial", &index.to_string()])
        // Each child gets its share of the cores.
        .env("RAYON_NUM_THREADS", threads.to_string())
        .env(CHILD_VARIABLE, "1")
        .stdin(Stdio::piped())
        .stdout(file)
        .stderr(err);
    if let Some(device) = device {
        command.args(["--devices", device]);
    }
    command
        .spawn()
        .map_err(|e| CliError::failed(format!("trial {index}: cannot start: {e}")))
}
