//! One training in a started run directory: the model and loaders a task
//! made, the callbacks the config names, Burn's loop, and the end files.
//!
//! | module | job |
//! | --- | --- |
//! | `callbacks` | the config's callbacks and the run's own (backups, checkpoints, logs) |
//! | `optimizer` | the optimizer the config describes |
//! | `summary` | `summary.json` and the end files |
//!
//! Invariant: a run that ended (`ended.json` written) only needs its end
//! files; a run stopped by Ctrl-C or SIGTERM keeps its backups and says how
//! to resume; one that failed keeps them too and says how to continue once
//! the cause is fixed.

mod callbacks;
mod optimizer;
mod summary;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::data::dataloader::DataLoader;
use burn::train::{InferenceStep, Learner, LearnerModel, SupervisedTraining, TrainStep};
use burnfit_callbacks::Callback;
use burnfit_callbacks::builtins::{BackupAndRestore, BackupAndRestoreConfig, CallbackConfig};
use burnfit_callbacks::engine::{BatchLoss, FitError, FitOutcome};
use burnfit_callbacks::monitor::{Direction, Monitor};
use burnfit_callbacks::tensorboard::HParamValue;
use burnfit_callbacks::{Callbacks, TrainEnd, WithCallbacks};

pub use summary::write_end_files_of_ended;

use crate::backend::{ChosenBackend, Devices};
use crate::config::Config;
use crate::error::{CliError, CliResult};
use crate::resume::ResumePlan;
use crate::run_dir::{RunDir, Summary};
use crate::shuffle::{EpochCell, MemoryProbe};

/// Everything a training needs, resolved from the config and flags and
/// checked; nothing is created yet.
pub struct Setup {
    /// The resolved config.
    pub config: Config,
    /// The run name.
    pub name: String,
    /// The run directory (it may not exist yet).
    pub root: PathBuf,
    /// The backend.
    pub backend: ChosenBackend,
    /// The devices (one, or several for multi-device training).
    pub devices: Devices,
    /// Where a resumed run continues from.
    pub resume: Option<ResumePlan>,
    /// Callbacks added by the caller (the sweep's pruning rule, lr-find's
    /// range test), moved into the training.
    pub extra_callbacks: Vec<Box<dyn Callback>>,
    /// Hyperparameters logged to TensorBoard's hparams plugin.
    pub hparams: BTreeMap<String, HParamValue>,
}

/// How a training ended.
pub enum Ended {
    /// Every epoch ran, or a callback stopped it: `summary.json` is written.
    Finished(Box<Summary>),
    /// Ctrl-C or SIGTERM: a backup holds the last batch.
    Interrupted {
        /// The newest backup.
        backup: Option<PathBuf>,
        /// The epoch (0-based) and batches done in it, when known.
        at: Option<(usize, usize)>,
    },
}

/// The data a [`fit`] trains on.
pub struct Loaders<M: LearnerModel> {
    /// The training batches (shuffled each epoch).
    pub train: Arc<dyn DataLoader<<M as TrainStep>::Input>>,
    /// The validation batches.
    pub valid: Arc<dyn DataLoader<<M as InferenceStep>::Input>>,
    /// Items in the training set (for the summary's throughput).
    pub n_train: usize,
    /// The epoch the training set's shuffle is at.
    pub epoch: EpochCell,
}

/// Trains `model` on `loaders` in the started run directory `run`, with
/// the callbacks the config names (and `setup`'s extra ones, taken), and
/// writes the end files. `register` adds the task's metrics.
pub fn fit<M>(
    setup: &mut Setup,
    run: &RunDir,
    model: M,
    loaders: Loaders<M>,
    register: impl FnOnce(SupervisedTraining<M>) -> SupervisedTraining<M>,
) -> CliResult<Ended>
where
    M: LearnerModel,
    <M as TrainStep>::Output: BatchLoss,
    <M as InferenceStep>::Output: BatchLoss,
{
    let extra = std::mem::take(&mut setup.extra_callbacks);
    let setup = &*setup;
    let Loaders {
        train,
        valid,
        n_train,
        epoch,
    } = loaders;
    let config = &setup.config;
    let mut callbacks = with_run_options(callbacks::build::<M>(setup, run, epoch, extra)?, setup);
    let memory = Arc::new(Mutex::new(Vec::new()));
    callbacks.push(MemoryProbe(memory.clone()));
    let lr = callbacks.lr_scheduler(config.optimizer.lr);
    let outcome = callbacks.outcome();
    let training = training_loop(config, run, train, valid, register, callbacks);
    let start = Instant::now();
    let result = training.launch(Learner::new(
        model,
        optimizer::optimizer(&config.optimizer),
        lr,
    ));
    let outcome = outcome.get();
    // The loop's own time: a tracker's closing uploads are not training.
    let wall = outcome
        .training_time
        .unwrap_or_else(|| start.elapsed())
        .as_secs_f64();

    if let Some(error) = &outcome.error {
        return Err(training_error(error, config, run));
    }
    if let Some(error) = &result.error {
        return Err(CliError::failed(format!("training failed: {error}")));
    }
    if outcome
        .train_end
        .as_ref()
        .is_none_or(TrainEnd::is_interrupted)
    {
        return Ok(interrupted(config, run, &outcome));
    }
    if averages_weights(config) && config.outputs.checkpoint {
        // The model ends with an average put in after the last epoch's
        // checkpoint: keep it too (a run without checkpoints, as
        // `fast_dev_run`'s, writes none).
        let encode = burnfit_callbacks::engine::encode_module_record(result.model.into_record());
        let bytes = encode().map_err(|e| CliError::failed(format!("final weights: {e}")))?;
        burnfit_callbacks::atomic::write_atomic(&run.final_checkpoint(), &bytes)?;
    }
    let summary = summary::summarize(setup, run, &outcome, wall, n_train, &memory);
    // Training ended: say so first, so that a kill while the end files are
    // written leaves a run `--resume` finishes without training.
    run.write_ended(&summary)?;
    summary::write_end_files(config, run, &summary)?;
    Ok(Ended::Finished(Box::new(summary)))
}

/// The engine's options the run's setup asks for: its devices (and their
/// step timeout) when there are several, gradients averaged over an
/// accumulation window.
fn with_run_options(mut callbacks: Callbacks, setup: &Setup) -> Callbacks {
    let config = &setup.config;
    if setup.devices.list.len() > 1 {
        callbacks = callbacks.devices(
            setup
                .devices
                .list
                .iter()
                .map(|(_, device)| device.clone())
                .collect(),
        );
        if config.training.step_timeout > 0.0 {
            callbacks = callbacks.step_timeout(std::time::Duration::from_secs_f64(
                config.training.step_timeout,
            ));
        }
    }
    if config
        .training
        .accumulate_grad_batches
        .is_some_and(|n| n > 1)
    {
        callbacks = callbacks.average_accumulated_gradients();
    }
    callbacks
}

/// Burn's training loop over `train` and `valid`, silent, watching for
/// Ctrl-C and SIGTERM, with the task's metrics (`register`), whose epoch
/// state the backups keep, and `callbacks`.
fn training_loop<M>(
    config: &Config,
    run: &RunDir,
    train: Arc<dyn DataLoader<<M as TrainStep>::Input>>,
    valid: Arc<dyn DataLoader<<M as InferenceStep>::Input>>,
    register: impl FnOnce(SupervisedTraining<M>) -> SupervisedTraining<M>,
    callbacks: Callbacks,
) -> SupervisedTraining<M>
where
    M: LearnerModel,
    <M as TrainStep>::Output: BatchLoss,
    <M as InferenceStep>::Output: BatchLoss,
{
    let mut training = SupervisedTraining::new(run.burn(), train, valid)
        .num_epochs(config.training.epochs)
        .renderer(Box::new(burnfit_callbacks::engine::SilentRenderer))
        .with_application_logger(None);
    let window = config.training.accumulate_grad_batches.filter(|&n| n > 1);
    if let Some(window) = window {
        training = training.grads_accumulation(window);
    }
    crate::interrupt::watch(training.interrupter());
    // The training metrics whose epoch state backups keep.
    let (training, states) = crate::metrics::collect_epoch_states(|| register(training));
    let callbacks = states
        .into_iter()
        .fold(callbacks, |callbacks, (name, state)| {
            callbacks.resumable_metric(&name, state)
        });
    training.with_callbacks(callbacks)
}

/// A run stopped by Ctrl-C or SIGTERM: its plots mark where, and the
/// newest backup holds the last batch.
fn interrupted(config: &Config, run: &RunDir, outcome: &FitOutcome) -> Ended {
    if config.outputs.plots && config.outputs.csv {
        let position = outcome.stopped_at.map(|(epoch, batches)| {
            let fraction = outcome
                .steps_per_epoch
                .filter(|&s| s > 0)
                .map_or(0.0, |s| batches as f64 / s as f64);
            epoch as f64 + fraction.min(1.0)
        });
        // Nothing to draw before the first epoch ended.
        let _ = crate::report::render_plots_marked(run, position);
    }
    Ended::Interrupted {
        backup: run_backups(config, run).first().cloned(),
        at: interrupted_at(outcome),
    }
}

/// Where the run's backups go: the config's own BackupAndRestore
/// `backup_dir` (relative to the run) if it has one, else `RUN/backup`.
pub fn backup_dir(config: &Config, root: &Path) -> PathBuf {
    match user_backup(config) {
        Some(c) => root.join(&c.backup_dir),
        None => root.join("backup"),
    }
}

fn user_backup(config: &Config) -> Option<&BackupAndRestoreConfig> {
    config.callbacks.iter().find_map(|c| match c {
        CallbackConfig::BackupAndRestore(c) => Some(c),
        _ => None,
    })
}

/// The direction `monitor` is better in under `mode` (`"auto"`: Keras's
/// table of metric directions), so that "best" means the same thing in the
/// summary, the checkpoint, a sweep's ranking and its pruning.
pub fn monitor_direction(monitor: &str, mode: &str) -> Direction {
    Monitor::new("burnfit", monitor, mode, 0.0)
        .resolve()
        .unwrap_or(Direction::Min)
}

/// Whether a callback puts averaged weights into the model at train end.
fn averages_weights(config: &Config) -> bool {
    config.optimizer.use_ema
        || config
            .callbacks
            .iter()
            .any(|c| matches!(c, CallbackConfig::StochasticWeightAveraging(_)))
}

/// The backups of the run, newest first.
fn run_backups(config: &Config, run: &RunDir) -> Vec<PathBuf> {
    BackupAndRestore::backups(&backup_dir(config, &run.root))
}

/// Where an interrupted run stopped: the epoch it was in and its batches done.
fn interrupted_at(outcome: &FitOutcome) -> Option<(usize, usize)> {
    outcome.stopped_at
}

/// One line for an error that ended training: a file that could not be
/// written is the user's to fix (exit 2); anything else failed (exit 1).
/// When the run has a backup, how to continue it once the cause is fixed
/// (a lost `--remote` server back, a bug fixed).
fn training_error(error: &FitError, config: &Config, run: &RunDir) -> CliError {
    let resume = run.resume_command();
    match &error.path {
        Some(path) if run_backups(config, run).is_empty() => CliError::usage(format!(
            "{}: cannot write: {error} (is the disk full or read-only?); no backup was written \
             yet: free space, then start the run again from its config.toml with: {resume}",
            path.display()
        )),
        Some(path) => CliError::usage(format!(
            "{}: cannot write: {error} (is the disk full or read-only?); the backups are kept: \
             free space, then continue with: {resume}",
            path.display()
        )),
        None if !run_backups(config, run).is_empty() => CliError::failed(format!(
            "training failed: {error}; the backups are kept: once the cause is fixed, continue \
             with: {resume}"
        )),
        None => CliError::failed(format!("training failed: {error}")),
    }
}
