//! `--jobs N`: N trials at once, each a child process
//! (`burnfit sweep --sweep-dir SWEEP --trial K`), the machine's cores split
//! between them and, with `--devices`, one device each in turn. The output
//! stays readable: each child writes to `SWEEP/logs/trial-NNN.log`, and this
//! process prints one line per trial event and a progress line.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::leaderboard::{self, Status};
use super::manifest::Manifest;
use super::trial;
use crate::error::{CliError, CliResult};

/// A trial running in a child process.
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
        other => {
            tally.failed += 1;
            println!("trial {index}: stopped without finishing ({other:?})");
        }
    }
}

/// Runs `indices` with at most `jobs` child processes at once.
pub fn run_parallel(
    manifest: &Manifest,
    dir: &Path,
    indices: &[usize],
    jobs: usize,
    devices: &[String],
) -> CliResult<Tally> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::failed(format!("cannot find the burnfit binary: {e}")))?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)
        .map_err(|e| CliError::usage(format!("{}: cannot create: {e}", logs.display())))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / jobs).max(1);
    println!(
        "sweep: {} trials, {jobs} at a time, {threads} thread{} each{}",
        indices.len(),
        if threads == 1 { "" } else { "s" },
        if devices.is_empty() {
            String::new()
        } else {
            format!(", devices {}", devices.join(" "))
        }
    );
    let mut pending: Vec<usize> = indices.iter().rev().copied().collect();
    let mut slots: Vec<Option<Running>> = (0..jobs).map(|_| None).collect();
    let mut tally = Tally::default();
    loop {
        for (slot, place) in slots.iter_mut().enumerate() {
            if place.is_some() {
                continue;
            }
            let Some(index) = pending.pop() else {
                break;
            };
            let device = (!devices.is_empty()).then(|| devices[slot % devices.len()].clone());
            let child = spawn(&exe, dir, index, threads, device.as_deref(), &logs)?;
            println!(
                "trial {index}: started ({}){}",
                manifest.trials[index]
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
        if slots.iter().all(Option::is_none) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
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
        for (index, exit, seconds) in ended {
            if exit.code() == Some(130) || exit.code() == Some(143) {
                println!("trial {index}: interrupted; run the sweep again to resume it");
                tally.failed += 1;
            } else {
                report(manifest, dir, index, seconds, &mut tally);
            }
            println!(
                "sweep: {}/{} done ({} pruned, {} failed), {} running",
                tally.finished + tally.failed,
                indices.len(),
                tally.pruned,
                tally.failed,
                slots.iter().filter(|s| s.is_some()).count()
            );
        }
    }
    Ok(tally)
}

/// Starts `burnfit sweep --sweep-dir DIR --trial INDEX`, its output to
/// `logs/trial-NNN.log`.
fn spawn(
    exe: &Path,
    dir: &Path,
    index: usize,
    threads: usize,
    device: Option<&str>,
    logs: &Path,
) -> CliResult<Child> {
    let log = logs.join(format!("trial-{index:03}.log"));
    let file = std::fs::File::create(&log)
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
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err);
    if let Some(device) = device {
        command.args(["--devices", device]);
    }
    command
        .spawn()
        .map_err(|e| CliError::failed(format!("trial {index}: cannot start: {e}")))
}
