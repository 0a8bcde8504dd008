//! One trial: its run directory `SWEEP/trial-NNN`, locked while it runs,
//! resumed from its backup when a process running it died, and pruned
//! against the trials completed on disk.

use std::path::{Path, PathBuf};

use burnfit_callbacks::builtins::{MedianStopping, MedianStoppingConfig};

use super::manifest::{self, Manifest};
use super::space;
use crate::config::Config;
use crate::error::{CliError, CliResult};
use crate::report::History;
use crate::run_dir::{RunDir, RunState};
use crate::train;
use crate::{RunFlags, TrainArgs};

/// The marker a trial that failed leaves in its run directory.
pub const FAILED: &str = "failed.txt";

/// How a trial ended in this process.
#[derive(Debug)]
pub enum TrialEnd {
    /// It had finished before: not run again.
    AlreadyFinished,
    /// It ran to its end (or was pruned).
    Finished,
}

/// Runs trial `index` of the sweep in `dir` (`devices`: `--devices` for it).
pub fn run(
    manifest: &Manifest,
    dir: &Path,
    index: usize,
    devices: Option<String>,
) -> CliResult<TrialEnd> {
    let run_dir = unlocked_trial_dir(manifest, dir, index)?;
    let params = manifest.params(index);
    // The sweep's --set first, then the trial's own parameters.
    let mut sets = manifest.sets.clone();
    sets.extend(space::sets(&params));
    let base = dir.join(manifest::BASE);
    let config = crate::config::Config::load(&base, &sets)?;
    let Some(resume) = resumes(&run_dir, &config)? else {
        return Ok(TrialEnd::AlreadyFinished);
    };
    let args = TrainArgs {
        config: base,
        run: RunFlags {
            backend: manifest.backend,
            epochs: manifest.epochs,
            data: manifest.data.clone(),
            sets,
        },
        run_dir: Some(run_dir.clone()),
        resume,
        force: false,
        devices,
        remote: None,
    };
    let mut setup = train::prepare(&args)?;
    setup.hparams = params
        .iter()
        .map(|(k, v)| (k.clone(), space::hparam(v)))
        .collect();
    if manifest.pruning {
        setup
            .extra_callbacks
            .push(Box::new(pruning(manifest, dir, index)?));
    }
    let data = train::load(&mut setup)?;
    let started = train::start(&setup)?;
    let _ = std::fs::remove_file(run_dir.join(FAILED));
    match train::train(&mut setup, &started.run, data) {
        Ok(train::Ended::Finished(_)) => Ok(TrialEnd::Finished),
        Ok(train::Ended::Interrupted { .. }) => Err(CliError::interrupted(
            format!(
                "burnfit sweep: interrupted in trial {index}; run the same command again to \
                 continue (finished trials are kept, this one resumes)"
            ),
            crate::interrupt::received().map_or(130, |s| s.exit_code()),
        )),
        Err(error) => {
            let _ = burnfit_callbacks::atomic::write_atomic(
                &run_dir.join(FAILED),
                format!("{}\n", error.message()).as_bytes(),
            );
            Err(error)
        }
    }
}

/// The run directory of trial `index`, which must exist in the plan and
/// not be held by another process.
fn unlocked_trial_dir(manifest: &Manifest, dir: &Path, index: usize) -> CliResult<PathBuf> {
    let count = manifest.trials.len();
    if index >= count {
        return Err(CliError::usage(format!(
            "--trial {index}: the sweep in {} has {count} trials, numbered 0 to {}",
            dir.display(),
            count.saturating_sub(1)
        )));
    }
    let run_dir = manifest::trial_dir(dir, index);
    if RunDir::check_unlocked(&run_dir).is_err() {
        return Err(CliError::usage(format!(
            "trial {index}: already running in another process (its directory {} is locked)",
            run_dir.display()
        )));
    }
    Ok(run_dir)
}

/// Whether the trial in `run_dir` resumes from a backup; `None` when it
/// has finished. A trial killed before its first backup has nothing that
/// can continue: its directory is cleared and it starts again.
fn resumes(run_dir: &Path, config: &Config) -> CliResult<Option<bool>> {
    let backups = crate::fit::backup_dir(config, run_dir);
    match RunDir::inspect(run_dir, &backups) {
        RunState::Finished => return Ok(None),
        RunState::Unfinished { backup: None } => {
            std::fs::remove_dir_all(run_dir).map_err(|e| {
                CliError::usage(format!("{}: cannot clear: {e}", run_dir.display()))
            })?;
        }
        _ => {}
    }
    Ok(Some(matches!(
        RunDir::inspect(run_dir, &backups),
        RunState::Unfinished { backup: Some(_) }
    )))
}

/// The median-stopping rule of trial `index`: its monitor against the
/// sweep's completed trials, read at each epoch's end.
fn pruning(manifest: &Manifest, dir: &Path, index: usize) -> CliResult<MedianStopping> {
    let config = MedianStoppingConfig {
        monitor: manifest.monitor.clone(),
        direction: crate::fit::monitor_direction(&manifest.monitor, &manifest.mode),
        ..Default::default()
    };
    let monitor = manifest.monitor.clone();
    let sweep = dir.to_path_buf();
    Ok(MedianStopping::new(config, Vec::new())?
        .with_reference_source(Box::new(move || completed_values(&sweep, index, &monitor))))
}

/// The per-epoch values of `monitor` of every trial of the sweep in `dir`
/// that completed (finished and not pruned), but trial `own`: what
/// MedianStopping compares with, as Optuna's median pruner does.
pub fn completed_values(dir: &Path, own: usize, monitor: &str) -> Vec<Vec<f64>> {
    let mut values = Vec::new();
    for (index, run) in trial_dirs(dir) {
        if index == own {
            continue;
        }
        let Ok(summary) = (RunDir { root: run.clone() }).read_summary() else {
            continue;
        };
        if summary.stop_reason.as_deref().is_some_and(is_pruned) {
            continue;
        }
        if let Ok(history) = History::read(&run.join("history.csv")) {
            values.push(history.columns.get(monitor).cloned().unwrap_or_default());
        }
    }
    values
}

/// Whether a stop reason is MedianStopping's.
pub fn is_pruned(reason: &str) -> bool {
    reason.contains("MedianStopping")
}

/// Every `trial-NNN` directory of `dir`, by trial number.
pub fn trial_dirs(dir: &Path) -> Vec<(usize, PathBuf)> {
    let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let index = name.strip_prefix("trial-")?.parse().ok()?;
            Some((index, entry.path()))
        })
        .collect();
    found.sort();
    found
}
