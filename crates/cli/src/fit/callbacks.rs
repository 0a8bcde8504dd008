//! The callbacks of a run: the run's own (backups, checkpoints, the CSV
//! log, plots, TensorBoard, progress), the config's `[[callbacks]]`, and
//! the caller's (moved in).

use std::path::{Path, PathBuf};

use burn::prelude::Module;
use burnfit_callbacks::builtins::{
    BackupAndRestore, BackupAndRestoreConfig, CSVLogger, CallbackConfig, DeviceStatsMonitor,
    EmaConfig, ExponentialMovingAverage, ModelCheckpoint, ModelCheckpointConfig, ProgressLogger,
    ProgressLoggerConfig, ThroughputMonitorConfig,
};
use burnfit_callbacks::engine::param_values_of;
use burnfit_callbacks::tensorboard::{GradientNormMonitorConfig, TensorBoard};
use burnfit_callbacks::{Callback, Callbacks};

use super::{Setup, backup_dir, user_backup};
use crate::error::{CliError, CliResult};
use crate::run_dir::RunDir;
use crate::shuffle::{EpochCell, EpochTracker};

/// Relative paths in a callback config (filepath, filename, log_dir,
/// backup_dir) are taken relative to the run directory.
fn rebase_paths(callback: &CallbackConfig, root: &Path) -> CliResult<CallbackConfig> {
    let mut value = toml::Value::try_from(callback)
        .map_err(|e| CliError::failed(format!("callback config: {e}")))?;
    if let toml::Value::Table(table) = &mut value {
        for key in ["filepath", "filename", "log_dir", "backup_dir", "dirpath"] {
            if let Some(toml::Value::String(path)) = table.get_mut(key)
                && Path::new(path.as_str()).is_relative()
            {
                *path = root.join(path.as_str()).to_string_lossy().into_owned();
            }
        }
    }
    value
        .try_into()
        .map_err(|e| CliError::failed(format!("callback config: {e}")))
}

/// Redraws the plots at each epoch end, so a long run can be watched.
struct PlotEachEpoch(RunDir);

impl Callback for PlotEachEpoch {
    fn on_epoch_end(
        &mut self,
        _epoch: usize,
        _logs: &mut burnfit_callbacks::Logs,
        ctx: &mut burnfit_callbacks::Context,
    ) -> burnfit_callbacks::Result<()> {
        if let Err(e) = crate::report::render_plots(&self.0) {
            ctx.warn(format!("plots: {}", e.message()));
        }
        Ok(())
    }
}

/// `max_steps`: stops training once this many optimizer steps were taken
/// in all (resumes included); the epoch it stops in is validated.
struct MaxSteps(u64);

impl Callback for MaxSteps {
    fn name(&self) -> String {
        "MaxSteps".into()
    }

    fn on_train_batch_end(
        &mut self,
        _batch: usize,
        _logs: &mut burnfit_callbacks::Logs,
        ctx: &mut burnfit_callbacks::Context,
    ) -> burnfit_callbacks::Result<()> {
        if ctx.progress().global_step >= self.0 {
            ctx.stop_training(format!("training.max_steps = {} reached", self.0));
        }
        Ok(())
    }
}

/// Every callback of the run, in order; `extra` (the caller's) last but
/// the test hooks.
pub fn build<M: Module + 'static>(
    setup: &Setup,
    run: &RunDir,
    epoch: EpochCell,
    extra: Vec<Box<dyn Callback>>,
) -> CliResult<Callbacks> {
    let config = &setup.config;
    let mut callbacks = Callbacks::new().deterministic(config.training.seed);
    callbacks.push(EpochTracker(epoch));
    push_backup(&mut callbacks, setup, run)?;
    if config.optimizer.use_ema {
        callbacks.push(ExponentialMovingAverage::new(EmaConfig {
            momentum: config.optimizer.ema_momentum,
            overwrite_frequency: config.optimizer.ema_overwrite_frequency,
        })?);
    }
    push_configured(&mut callbacks, setup, run)?;
    push_outputs::<M>(&mut callbacks, setup, run)?;
    if let Some(steps) = config.training.max_steps {
        callbacks.push(MaxSteps(steps));
    }
    for callback in extra {
        callbacks.push_boxed(callback);
    }
    for fault in crate::faults::from_env(backup_dir(config, &run.root)) {
        callbacks.push_boxed(fault);
    }
    Ok(callbacks)
}

/// Backups (at each epoch end unless the config says otherwise), so that
/// an interrupted run can be resumed. The backups are deleted once
/// summary.json is written, never before.
fn push_backup(callbacks: &mut Callbacks, setup: &Setup, run: &RunDir) -> CliResult<()> {
    let config = &setup.config;
    let backup = user_backup(config)
        .cloned()
        .unwrap_or(BackupAndRestoreConfig {
            backup_dir: "backup".into(),
            save_freq: Default::default(),
            delete_checkpoint: true,
            keep: 2,
        });
    callbacks.push(BackupAndRestore::new(BackupAndRestoreConfig {
        backup_dir: backup_dir(config, &run.root).to_string_lossy().into_owned(),
        delete_checkpoint: false,
        ..backup
    })?);
    Ok(())
}

/// The callbacks the config names (its BackupAndRestore is
/// [`push_backup`]'s), with the run's paths and batch filled in.
fn push_configured(callbacks: &mut Callbacks, setup: &Setup, run: &RunDir) -> CliResult<()> {
    let config = &setup.config;
    // Loggers and trackers after the callbacks that add log keys
    // (ThroughputMonitor's, DeviceStatsMonitor's, the learning rate), so
    // each records every key, whatever the config's order.
    let (recorders, others): (Vec<_>, Vec<_>) =
        config.callbacks.iter().partition(|c| c.records_logs());
    for callback in others.into_iter().chain(recorders) {
        let callback = match callback {
            CallbackConfig::BackupAndRestore(_) => continue,
            // Gradient norms go next to the run's other TensorBoard
            // scalars unless the config says where.
            CallbackConfig::GradientNormMonitor(c) if c.log_dir == Path::new("logs") => {
                CallbackConfig::GradientNormMonitor(GradientNormMonitorConfig {
                    log_dir: run.tensorboard(),
                    ..c.clone()
                })
            }
            // Samples per second need the batch: the config's.
            CallbackConfig::ThroughputMonitor(c) if c.batch_size.is_none() => {
                CallbackConfig::ThroughputMonitor(ThroughputMonitorConfig {
                    batch_size: Some(config.training.batch_size),
                    ..c.clone()
                })
            }
            // The device's memory: the first device's (the model's).
            CallbackConfig::DeviceStatsMonitor(c) => {
                let device = setup.devices.list[0].1.clone();
                let monitor = DeviceStatsMonitor::new(c.clone())?
                    .with_device_memory(burnfit_callbacks::device_memory(device));
                callbacks.push(monitor);
                continue;
            }
            other => rebase_paths(other, &run.root)?,
        };
        callbacks.push_boxed(callback.build()?);
    }
    Ok(())
}

/// The run directory's outputs the config's `[outputs]` turns on: the
/// best and last checkpoints, `history.csv` and its plots, TensorBoard
/// files, the progress bar.
fn push_outputs<M: Module + 'static>(
    callbacks: &mut Callbacks,
    setup: &Setup,
    run: &RunDir,
) -> CliResult<()> {
    let config = &setup.config;
    let outputs = &config.outputs;
    if outputs.checkpoint {
        let checkpoint = |filepath: PathBuf, save_best_only| ModelCheckpointConfig {
            filepath: filepath.to_string_lossy().into_owned(),
            monitor: outputs.checkpoint_monitor.clone(),
            mode: outputs.checkpoint_mode.clone(),
            save_best_only,
            save_weights_only: true,
            ..Default::default()
        };
        callbacks.push(ModelCheckpoint::new(checkpoint(
            run.best_checkpoint(),
            true,
        ))?);
        callbacks.push(ModelCheckpoint::new(checkpoint(
            run.last_checkpoint(),
            false,
        ))?);
    }
    if outputs.csv {
        callbacks.push(CSVLogger::new(run.history()));
        if outputs.plots {
            callbacks.push(PlotEachEpoch(run.clone()));
        }
    }
    if outputs.tensorboard {
        let tb = TensorBoard::new(run.tensorboard())
            .histogram_freq(outputs.histogram_freq)
            .config_text(toml::to_string_pretty(config).unwrap_or_default())
            .hparams(setup.hparams.clone())
            .with_param_source(param_values_of::<M>);
        callbacks.push(tb);
    }
    if outputs.progress {
        callbacks.push(ProgressLogger::new(ProgressLoggerConfig::default()));
    }
    Ok(())
}
