//! `summary.json` and the run's other end files.

use std::sync::Mutex;

use burnfit_callbacks::engine::FitOutcome;

use super::{Setup, monitor_direction, run_backups, user_backup};
use crate::config::Config;
use crate::error::CliResult;
use crate::resume::this_process;
use crate::run_dir::{ProcessRecord, RunDir, Summary};
use crate::shuffle::resident_mib;

/// The end files of a run whose training ended (`ended.json`) in an
/// earlier process: its summary, with this resume recorded.
pub fn write_end_files_of_ended(setup: &Setup, run: &RunDir) -> CliResult<Summary> {
    let mut summary = setup
        .resume
        .as_ref()
        .and_then(|p| p.end_files())
        .cloned()
        .expect("a resume that writes the end files");
    println!("burnfit: training had ended; writing the run's end files (no training)");
    summary.resumes = run.read_resumes();
    write_end_files(&setup.config, run, &summary)?;
    Ok(summary)
}

/// Writes `summary.json`, then (the run is finished and says so) deletes
/// the backups, drops `ended.json` and draws the final plots.
pub fn write_end_files(config: &Config, run: &RunDir, summary: &Summary) -> CliResult<()> {
    run.write_summary(summary)?;
    let delete = user_backup(config).is_none_or(|c| c.delete_checkpoint);
    if delete {
        for backup in run_backups(config, run) {
            let _ = std::fs::remove_file(backup);
        }
    }
    let _ = std::fs::remove_file(run.ended());
    if config.outputs.plots
        && config.outputs.csv
        && let Err(e) = crate::report::render_plots(run)
    {
        eprintln!("warning: plots: {}", e.message());
    }
    Ok(())
}

/// The summary of a run whose training ended in this process, `wall`
/// seconds of training over `n_train` items an epoch; a resumed run's
/// includes its earlier processes (their epochs' memory readings come back
/// with the probe's state in `memory`).
pub fn summarize(
    setup: &Setup,
    run: &RunDir,
    outcome: &FitOutcome,
    wall: f64,
    n_train: usize,
    memory: &Mutex<Vec<f64>>,
) -> Summary {
    let config = &setup.config;
    let monitor = config.outputs.checkpoint_monitor.clone();
    let direction = monitor_direction(&monitor, &config.outputs.checkpoint_mode);
    // Every epoch of the run, earlier processes included when resumed: the
    // CSV log has them all; this process's outcome has the ones it ran.
    let epochs: Vec<(usize, burnfit_callbacks::Logs)> =
        match crate::report::History::read(&run.history()) {
            Ok(history) if config.outputs.csv => history.epoch_logs(),
            _ => outcome.epochs.clone(),
        };
    let mut best: Option<(usize, f64)> = None;
    for (epoch, logs) in &epochs {
        if let Some(v) = logs.get(&monitor)
            && v.is_finite()
            && best.is_none_or(|(_, b)| direction.better(v, b))
        {
            best = Some((*epoch, v));
        }
    }
    // The probe's readings begin with the earlier processes' epochs.
    let rss_mib_by_epoch = memory.lock().expect("memory probe").clone();
    let epochs_run = epochs.last().map(|(e, _)| e + 1).unwrap_or(0);
    let whole = WholeRun::of(setup, outcome, wall, epochs_run, &rss_mib_by_epoch);
    Summary {
        name: setup.name.clone(),
        backend: setup.backend.name.to_string(),
        backend_reason: setup.backend.reason.clone(),
        burn_backend: crate::backend::burn_name(&setup.backend.device),
        devices: setup.devices.names(),
        epochs_run,
        epochs_planned: config.training.epochs,
        stop_reason: outcome.stop_reason.clone(),
        final_metrics: epochs
            .last()
            .map(|(_, logs)| logs.iter().map(|(k, v)| (k.to_string(), v)).collect())
            .unwrap_or_default(),
        monitor,
        best_value: best.map(|b| b.1),
        best_epoch: best.map(|b| b.0),
        wall_time_s: whole.wall_time_s,
        train_samples_per_s: (n_train * whole.epochs) as f64 / whole.wall_time_s.max(1e-9),
        global_step: outcome.global_step,
        error: None,
        rss_mib_by_epoch,
        peak_rss_mib: whole.peak_rss_mib,
        processes: whole.processes,
        resumes: run.read_resumes(),
    }
}

/// The time, memory and processes of the whole run: this process's, and
/// those of the earlier processes that the backup it resumed from lists.
struct WholeRun {
    /// Seconds of training of every process.
    wall_time_s: f64,
    /// The epochs trained in that time.
    epochs: usize,
    /// The peak resident memory of every process.
    peak_rss_mib: Option<f64>,
    /// Every process, this one last.
    processes: Vec<ProcessRecord>,
}

impl WholeRun {
    /// The run of this process (`wall` seconds of training) after the
    /// earlier ones: `epochs_run` epochs in all, `rss_by_epoch` read at
    /// their ends.
    fn of(
        setup: &Setup,
        outcome: &FitOutcome,
        wall: f64,
        epochs_run: usize,
        rss_by_epoch: &[f64],
    ) -> Self {
        let earlier = setup
            .resume
            .as_ref()
            .map(|plan| plan.earlier.clone())
            .unwrap_or_default();
        let high_water = resident_mib().map(|(_, high_water)| high_water);
        let this = ProcessRecord {
            training_time_s: wall,
            peak_rss_mib: high_water,
            ..this_process(&setup.backend, &setup.devices, setup.resume.as_ref())
        };
        // Without the earlier processes' record (a restart, an older
        // backup), this process's epochs over its own time.
        let epochs = if earlier.is_empty() {
            outcome.epochs.len()
        } else {
            epochs_run
        };
        let peaks = earlier.iter().filter_map(|p| p.peak_rss_mib);
        let mut processes = earlier.clone();
        processes.push(this);
        Self {
            wall_time_s: processes.iter().map(|p| p.training_time_s).sum(),
            epochs,
            peak_rss_mib: peak_rss(high_water, rss_by_epoch)
                .into_iter()
                .chain(peaks)
                .reduce(f64::max),
            processes,
        }
    }
}

/// The process's peak resident memory: the kernel's high-water mark
/// (`VmHWM`, read now), or the largest per-epoch reading (`VmRSS` at each
/// epoch's end) when that is larger. The kernel keeps its high-water mark
/// from approximate counters and raises it only at some moments, so on its
/// own it can be a little under a `VmRSS` read earlier (measured: 44.04 MiB
/// against a last epoch's 44.06).
fn peak_rss(high_water: Option<f64>, by_epoch: &[f64]) -> Option<f64> {
    by_epoch
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .chain(high_water)
        .reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::peak_rss;

    #[test]
    fn the_peak_is_at_least_every_epoch_reading() {
        assert_eq!(peak_rss(Some(44.03), &[42.5, 44.06]), Some(44.06));
        assert_eq!(peak_rss(Some(50.0), &[42.5, 44.06]), Some(50.0));
        assert_eq!(peak_rss(None, &[42.5]), Some(42.5));
        assert_eq!(peak_rss(Some(40.0), &[]), Some(40.0));
        assert_eq!(peak_rss(None, &[]), None);
    }
}
