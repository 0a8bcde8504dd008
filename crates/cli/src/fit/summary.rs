//! `summary.json` and the run's other end files.

use std::sync::Mutex;

use burnfit_callbacks::engine::FitOutcome;

use super::{Setup, monitor_direction, run_backups, user_backup};
use crate::config::Config;
use crate::error::CliResult;
use crate::run_dir::{RunDir, Summary};
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
    let rss_mib_by_epoch = memory.lock().expect("memory probe").clone();
    let peak_rss_mib = peak_rss(
        resident_mib().map(|(_, high_water)| high_water),
        &rss_mib_by_epoch,
    );
    Summary {
        name: setup.name.clone(),
        backend: setup.backend.name.to_string(),
        backend_reason: setup.backend.reason.clone(),
        burn_backend: crate::backend::burn_name(&setup.backend.device),
        devices: setup.devices.names(),
        epochs_run: epochs.last().map(|(e, _)| e + 1).unwrap_or(0),
        epochs_planned: config.training.epochs,
        stop_reason: outcome.stop_reason.clone(),
        final_metrics: epochs
            .last()
            .map(|(_, logs)| logs.iter().map(|(k, v)| (k.to_string(), v)).collect())
            .unwrap_or_default(),
        monitor,
        best_value: best.map(|b| b.1),
        best_epoch: best.map(|b| b.0),
        wall_time_s: wall,
        train_samples_per_s: (n_train * outcome.epochs.len()) as f64 / wall.max(1e-9),
        global_step: outcome.global_step,
        error: None,
        rss_mib_by_epoch,
        peak_rss_mib,
        resumes: run.read_resumes(),
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
