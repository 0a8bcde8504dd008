//! `burnfit train`: config → data + model + optimizer + callbacks → run directory.
//!
//! The order keeps a promise: **nothing is created or changed before every
//! check has passed.** [`prepare`] resolves the config and flags and checks
//! the run directory (and, with `--resume`, that the run can continue with
//! this config); the data is loaded and checked; only then [`start`]
//! creates and locks the run directory. A run that fails leaves its backups
//! (so `--resume` continues it) and no `summary.json`; a run stopped by
//! Ctrl-C or SIGTERM backs up at its last batch and says how to resume.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::data::dataloader::DataLoader;
use burn::grad_clipping::GradientClippingConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, SgdConfig};
use burn::prelude::Module;
use burn::train::{InferenceStep, Learner, LearnerModel, SupervisedTraining, TrainStep};
use burnfit_callbacks::averaging::{EmaConfig, ExponentialMovingAverage, build_callback};
use burnfit_callbacks::builtins::{
    BackupAndRestore, BackupAndRestoreConfig, CSVLogger, CallbackConfig, ModelCheckpoint,
    ModelCheckpointConfig, ProgressLogger, ProgressLoggerConfig,
};
use burnfit_callbacks::engine::{BatchLoss, FitOutcome, param_values_of};
use burnfit_callbacks::monitor::{Direction, Monitor};
use burnfit_callbacks::tensorboard::{GradientNormMonitorConfig, HParamValue, TensorBoard};
use burnfit_callbacks::{Callback, Callbacks, TrainEnd, WithCallbacks};

use crate::TrainArgs;
use crate::backend::{self, ChosenBackend, Devices};
use crate::config::{BackendChoice, Config, OptimizerConfig, OptimizerKind};
use crate::error::{CliError, CliResult};
use crate::resume::{self, ResumeKind, ResumePlan};
use crate::run_dir::{RunDir, RunLock, RunState, Summary};
use crate::shuffle::{EpochCell, EpochTracker, MemoryProbe, resident_mib};
use crate::task::Loaded;

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
    /// Callbacks added by the caller (the sweep's pruning rule).
    pub extra_callbacks: Mutex<Vec<Box<dyn Callback>>>,
    /// Hyperparameters logged to TensorBoard's hparams plugin.
    pub hparams: BTreeMap<String, HParamValue>,
}

/// A run directory created (or reopened) and locked for this process.
pub struct Started {
    /// The run directory.
    pub run: RunDir,
    _lock: RunLock,
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

/// Resolves config + flags into a [`Setup`], checking the config and the
/// run directory. Creates and changes nothing.
pub fn prepare(args: &TrainArgs) -> CliResult<Setup> {
    let mut config = load_config(args)?;
    if let Some(epochs) = args.run.epochs {
        if epochs == 0 {
            return Err(CliError::usage("--epochs must be at least 1"));
        }
        config.training.epochs = epochs;
    }
    check_memory(&config)
        .map_err(|e| CliError::usage(format!("{}: {e}", args.config.display())))?;
    let choice = args.run.backend.unwrap_or(config.training.backend);
    let convolutional = crate::task::current().describe(&config).convolutional;
    let backend = backend::choose(choice, convolutional)?;
    config.training.backend = match backend.name {
        "wgpu" => BackendChoice::Wgpu,
        "ndarray" => BackendChoice::Ndarray,
        _ => BackendChoice::Flex,
    };
    // A resume without --devices continues on the run's devices.
    if args.resume
        && args.devices.is_none()
        && args.remote.is_none()
        && config.training.devices.is_empty()
        && let Some(dir) = &args.run_dir
        && let Ok(run_config) = (RunDir { root: dir.clone() }).read_config()
    {
        config.training.devices = run_config.training.devices;
    }
    let spec = match &args.devices {
        Some(spec) => Some(spec.clone()),
        None if !config.training.devices.is_empty() => Some(config.training.devices.join(",")),
        None => None,
    };
    let mut devices = match spec {
        Some(spec) => backend::resolve_devices(&spec, &backend)?,
        None => Devices::single(&backend),
    };
    // The other machines' devices come after this machine's (or --devices):
    // the first device holds the model.
    if let Some(urls) = &args.remote {
        for url in urls.split(',').map(str::trim) {
            devices
                .list
                .push((url.to_string(), crate::remote::connect(url)?));
        }
    }
    let count = devices.list.len();
    if count > 1 {
        config.training.devices = devices.names();
        let batch = config.training.batch_size;
        if batch % count != 0 || batch < count {
            return Err(CliError::usage(format!(
                "training.batch_size = {batch} cannot be split evenly over {count} devices (it is \
                 the batch of a step over all of them); use a multiple of {count}"
            )));
        }
    } else {
        config.training.devices.clear();
    }
    let name = config.run_name(&args.config);
    let root = RunDir::choose(&name, args.run_dir.as_deref());
    if root.to_str().is_none() {
        return Err(CliError::usage(format!(
            "--run-dir {}: the path is not valid UTF-8; burnfit writes the run's paths into its \
             config and logs as text: choose a UTF-8 name (nothing was created)",
            root.display()
        )));
    }
    crate::run_dir::check_one_writer_per_file(&config, &root)
        .map_err(|e| CliError::usage(format!("{}: {e}", args.config.display())))?;
    // Left-over temporary files of writes a kill interrupted are garbage,
    // whatever the checks below decide.
    RunDir::sweep_unlocked(&root, &[&backup_dir(&config, &root)])?;
    let shown = root.display();
    let resume = if args.resume {
        if args.run_dir.is_none() {
            return Err(CliError::usage(
                "--resume needs --run-dir DIR: the run directory of the interrupted run",
            ));
        }
        Some(resume::plan(
            &root,
            &backup_dir(&config, &root),
            &config,
            args.force,
        )?)
    } else {
        match RunDir::inspect(&root, &backup_dir(&config, &root)) {
            RunState::Absent | RunState::Empty => None,
            RunState::Finished => {
                return Err(CliError::usage(format!(
                    "{shown}: this run directory already holds a finished run; choose another \
                     --run-dir (nothing was overwritten)"
                )));
            }
            RunState::Unfinished { backup: Some(_) } => {
                return Err(CliError::usage(format!(
                    "{shown}: this run directory holds the backup of an interrupted run; pass \
                     --resume to continue it, or choose another --run-dir (nothing was \
                     overwritten)"
                )));
            }
            RunState::Unfinished { backup: None } => {
                return Err(CliError::usage(format!(
                    "{shown}: this run directory holds a run that stopped before its first \
                     backup; pass --resume to start it again from its config.toml, or choose \
                     another --run-dir (nothing was overwritten)"
                )));
            }
            RunState::Foreign => {
                return Err(CliError::usage(format!(
                    "{shown}: this directory is not empty and is not a burnfit run; choose a new \
                     or empty --run-dir (nothing was overwritten)"
                )));
            }
        }
    };
    Ok(Setup {
        config,
        name,
        root,
        backend,
        devices,
        resume,
        extra_callbacks: Default::default(),
        hparams: Default::default(),
    })
}

/// The config with its `--set` overrides and `--data` (which replaces the
/// directory or file `[data]` names).
pub fn load_config(args: &TrainArgs) -> CliResult<Config> {
    let config = Config::load(&args.config, &args.run.sets)?;
    let Some(data) = &args.run.data else {
        return Ok(config);
    };
    let Some(key) = crate::task::current().data_path_key(&config) else {
        return Err(CliError::usage(
            "--data: this task's [data] table names no directory or file to replace; set the \
             data in the config",
        ));
    };
    let Some(path) = data.to_str() else {
        return Err(CliError::usage(format!(
            "--data {}: the path is not valid UTF-8",
            data.display()
        )));
    };
    let mut sets = args.run.sets.clone();
    sets.push(format!(
        "data.{key}={}",
        toml::Value::String(path.to_string())
    ));
    Config::load(&args.config, &sets)
}

/// The checks of a config alone that `train` makes before creating
/// anything, for `burnfit validate`: the model fits in memory, and no two
/// writers aim at one file of a run directory.
pub fn check_config(path: &Path, config: &Config) -> CliResult<()> {
    let bad = |e: String| CliError::usage(format!("{}: {e}", path.display()));
    check_memory(config).map_err(bad)?;
    let root = RunDir::choose(&config.run_name(path), None);
    crate::run_dir::check_one_writer_per_file(config, &root).map_err(bad)
}

/// Refuses a model whose parameters and optimizer state alone would not fit
/// in the memory available now (`MemAvailable` of `/proc/meminfo`), before
/// anything is created: building it would end in an allocation failure
/// and a backtrace. The count is a lower bound (activations, gradients and
/// buffers come on top), so a model that could fit is never refused; where
/// the memory cannot be read, nothing is checked.
fn check_memory(config: &Config) -> Result<(), String> {
    let Some(available) = available_memory() else {
        return Ok(());
    };
    let Some((parameters, key)) = crate::task::current().describe(config).parameters else {
        return Ok(());
    };
    let copies = 1 + optimizer_copies(&config.optimizer) + u128::from(config.optimizer.use_ema);
    let needed = parameters.saturating_mul(4).saturating_mul(copies);
    if needed <= u128::from(available) {
        return Ok(());
    }
    Err(format!(
        "{key}: the model has at least {parameters} parameters: {} with the optimizer's state \
         (f32), more than the {} of memory available; make the model smaller (nothing was \
         created)",
        bytes(needed),
        bytes(u128::from(available))
    ))
}

/// Copies of the parameters the optimizer keeps (Adam's two moments, SGD's
/// momentum).
fn optimizer_copies(optimizer: &OptimizerConfig) -> u128 {
    match optimizer.kind {
        OptimizerKind::Adam | OptimizerKind::AdamW => 2,
        OptimizerKind::Sgd => u128::from(optimizer.momentum > 0.0),
    }
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// `bytes` in GiB or TiB, for a message.
fn bytes(bytes: u128) -> String {
    let gib = bytes as f64 / (1u64 << 30) as f64;
    if gib >= 1024.0 {
        format!("{:.1} TiB", gib / 1024.0)
    } else {
        format!("{gib:.1} GiB")
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

/// Creates (or, to resume, reopens) the run directory and locks it; writes
/// `config.toml` for a new run, records a resume in `resumes.json`.
pub fn start(setup: &Setup) -> CliResult<Started> {
    let (run, lock) = RunDir::create_locked(setup.root.clone())?;
    match &setup.resume {
        None => {
            // Another process may have started a run here after `prepare`.
            if run.config().exists() {
                return Err(CliError::usage(format!(
                    "{}: another burnfit process started a run in this directory",
                    run.root.display()
                )));
            }
            run.write_config(&setup.config)?;
        }
        Some(plan) => {
            // Temporary files of writes a kill interrupted are garbage.
            run.remove_temporary_files();
            if matches!(plan.kind, ResumeKind::Restart) {
                let aside = run.set_aside_attempt(&backup_dir(&setup.config, &run.root))?;
                println!(
                    "burnfit: the run has no usable backup: starting it again from its \
                     config.toml (the first attempt's files are in {})",
                    aside.display()
                );
            }
            if !plan.forced_changes.is_empty() {
                let original = run.root.join("config.original.toml");
                if !original.exists() {
                    std::fs::copy(run.config(), &original).map_err(|e| {
                        CliError::usage(format!("{}: cannot write: {e}", original.display()))
                    })?;
                }
                run.write_config(&setup.config)?;
            }
            run.record_resume(plan.record())?;
        }
    }
    Ok(Started { run, _lock: lock })
}

/// `burnfit train`.
pub fn train_command(args: &TrainArgs) -> CliResult<Summary> {
    let setup = prepare(args)?;
    if setup
        .resume
        .as_ref()
        .is_some_and(|p| p.end_files().is_some())
    {
        // Training ended: no data, no model, only the end files.
        let started = start(&setup)?;
        let summary = write_end_files_of_ended(&setup, &started.run)?;
        print_summary(&summary);
        return Ok(summary);
    }
    let data = crate::task::current().load(&setup.config, None)?;
    let started = start(&setup)?;
    let run = &started.run;
    println!("burnfit: run directory {}", run.root.display());
    println!(
        "burnfit: backend {} ({})",
        setup.backend.name, setup.backend.reason
    );
    if setup.devices.list.len() > 1 {
        println!(
            "burnfit: {} devices ({}), {} items each per step",
            setup.devices.list.len(),
            setup.devices.names().join(", "),
            setup.config.training.batch_size / setup.devices.list.len()
        );
    }
    match train(&setup, run, data)? {
        Ended::Finished(summary) => {
            print_summary(&summary);
            Ok(*summary)
        }
        Ended::Interrupted { backup, at } => {
            let signal = crate::interrupt::received();
            let position = at
                .map(|(epoch, batch)| format!(" at epoch {}, batch {batch}", epoch + 1))
                .unwrap_or_default();
            let backup = backup
                .map(|b| format!("backup {}", b.display()))
                .unwrap_or_else(|| "no backup".into());
            Err(CliError::interrupted(
                format!(
                    "burnfit: interrupted{position} ({backup}); continue with: {} train {} \
                     --run-dir {} --resume",
                    crate::program(),
                    run.config().display(),
                    run.root.display()
                ),
                signal.map_or(130, |s| s.exit_code()),
            ))
        }
    }
}

fn print_summary(summary: &Summary) {
    println!(
        "burnfit: {} epochs in {:.1}s ({:.0} samples/s){}",
        summary.epochs_run,
        summary.wall_time_s,
        summary.train_samples_per_s,
        summary
            .stop_reason
            .as_ref()
            .map(|r| format!(", stopped: {r}"))
            .unwrap_or_default()
    );
    if let (Some(best), Some(epoch)) = (summary.best_value, summary.best_epoch) {
        println!(
            "burnfit: best {} = {best:.4} at epoch {}",
            summary.monitor,
            epoch + 1
        );
    }
}

/// Trains on prepared data in a started run directory.
pub fn train(setup: &Setup, run: &RunDir, data: Box<dyn Loaded>) -> CliResult<Ended> {
    if setup
        .resume
        .as_ref()
        .is_some_and(|p| p.end_files().is_some())
    {
        let summary = write_end_files_of_ended(setup, run)?;
        return Ok(Ended::Finished(Box::new(summary)));
    }
    data.train(setup, run)
}

/// The optimizer a config describes.
pub fn optimizer(config: &OptimizerConfig) -> ModuleOptimizer {
    let clipping = match (config.clip_norm, config.clip_value) {
        (Some(norm), _) => Some(GradientClippingConfig::Norm(norm)),
        (None, Some(value)) => Some(GradientClippingConfig::Value(value)),
        (None, None) => None,
    };
    let decay =
        (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    match config.kind {
        OptimizerKind::Adam => AdamConfig::new()
            .with_beta_1(config.beta_1)
            .with_beta_2(config.beta_2)
            .with_epsilon(config.epsilon)
            .with_weight_decay(decay)
            .with_grad_clipping(clipping)
            .init(),
        OptimizerKind::AdamW => AdamWConfig::new()
            .with_beta_1(config.beta_1)
            .with_beta_2(config.beta_2)
            .with_epsilon(config.epsilon)
            .with_weight_decay(config.weight_decay as f32)
            .with_grad_clipping(clipping)
            .init(),
        OptimizerKind::Sgd => SgdConfig::new()
            .with_weight_decay(decay)
            .with_momentum((config.momentum > 0.0).then(|| {
                MomentumConfig::new()
                    .with_momentum(config.momentum)
                    .with_nesterov(config.nesterov)
            }))
            .with_gradient_clipping(clipping)
            .init(),
    }
}

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

fn build_callbacks<M: Module + 'static>(
    setup: &Setup,
    run: &RunDir,
    epoch: EpochCell,
) -> CliResult<Callbacks> {
    let config = &setup.config;
    let mut callbacks = Callbacks::new().deterministic(config.training.seed);
    callbacks.push(EpochTracker(epoch));
    // Back up (at each epoch end unless the config says otherwise) so that an
    // interrupted run can be resumed. The backups are deleted once
    // summary.json is written, never before.
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
    let ema = if config.optimizer.use_ema {
        let ema = ExponentialMovingAverage::<M>::new(EmaConfig {
            momentum: config.optimizer.ema_momentum,
            overwrite_frequency: config.optimizer.ema_overwrite_frequency,
        })?;
        let weights = ema.weights();
        callbacks.push(ema);
        Some(weights)
    } else {
        None
    };
    for callback in &config.callbacks {
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
            other => rebase_paths(other, &run.root)?,
        };
        callbacks.push_boxed(build_callback::<M>(&callback, ema.as_ref())?);
    }
    let outputs = &config.outputs;
    if outputs.checkpoint {
        let best = ModelCheckpointConfig {
            filepath: run.best_checkpoint().to_string_lossy().into_owned(),
            monitor: outputs.checkpoint_monitor.clone(),
            mode: outputs.checkpoint_mode.clone(),
            save_best_only: true,
            save_weights_only: true,
            ..Default::default()
        };
        callbacks.push(ModelCheckpoint::new(best)?);
        let last = ModelCheckpointConfig {
            filepath: run.last_checkpoint().to_string_lossy().into_owned(),
            monitor: outputs.checkpoint_monitor.clone(),
            mode: outputs.checkpoint_mode.clone(),
            save_best_only: false,
            save_weights_only: true,
            ..Default::default()
        };
        callbacks.push(ModelCheckpoint::new(last)?);
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
    for extra in setup
        .extra_callbacks
        .lock()
        .expect("extra callbacks")
        .drain(..)
    {
        callbacks.push_boxed(extra);
    }
    for fault in crate::faults::from_env(backup_dir(config, &run.root)) {
        callbacks.push_boxed(fault);
    }
    Ok(callbacks)
}

/// The direction `monitor` is better in under `mode` (`"auto"`: Keras's
/// table of metric directions), so that "best" means the same thing in the
/// summary, the checkpoint, a sweep's ranking and its pruning.
pub fn monitor_direction(monitor: &str, mode: &str) -> Direction {
    Monitor::new("burnfit", monitor, mode, 0.0)
        .resolve()
        .unwrap_or(Direction::Min)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn fit<M>(
    setup: &Setup,
    run: &RunDir,
    model: M,
    train: Arc<dyn DataLoader<<M as TrainStep>::Input>>,
    valid: Arc<dyn DataLoader<<M as burn::train::InferenceStep>::Input>>,
    n_train: usize,
    epoch: EpochCell,
    register: impl FnOnce(SupervisedTraining<M>) -> SupervisedTraining<M>,
) -> CliResult<Ended>
where
    M: LearnerModel,
    <M as TrainStep>::Output: BatchLoss,
    <M as InferenceStep>::Output: BatchLoss,
{
    let config = &setup.config;
    let mut callbacks = build_callbacks::<M>(setup, run, epoch)?;
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
    let memory = Arc::new(Mutex::new(Vec::new()));
    callbacks.push(MemoryProbe(memory.clone()));
    let lr = callbacks.lr_scheduler(config.optimizer.lr);
    let outcome = callbacks.outcome();
    let training = SupervisedTraining::new(run.burn(), train, valid)
        .num_epochs(config.training.epochs)
        .renderer(Box::new(burnfit_callbacks::engine::SilentRenderer))
        .with_application_logger(None);
    crate::interrupt::watch(training.interrupter());
    let training = register(training).with_callbacks(callbacks);
    let start = Instant::now();
    let result = training.launch(Learner::new(model, optimizer(&config.optimizer), lr));
    let wall = start.elapsed().as_secs_f64();
    let outcome = outcome.lock().expect("outcome").clone();

    if let Some(error) = &outcome.error {
        return Err(training_error(error, &outcome, config, run));
    }
    if let Some(error) = &result.error {
        return Err(CliError::failed(format!("training failed: {error}")));
    }
    if outcome
        .train_end
        .as_ref()
        .is_none_or(TrainEnd::is_interrupted)
    {
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
        return Ok(Ended::Interrupted {
            backup: run_backups(config, run).first().cloned(),
            at: interrupted_at(&outcome),
        });
    }
    if averages_weights(config) {
        // The model ends with an average put in after the last epoch's
        // checkpoint: keep it too.
        let encode = burnfit_callbacks::engine::encode_module_record(result.model.into_record());
        let bytes = encode().map_err(|e| CliError::failed(format!("final weights: {e}")))?;
        burnfit_callbacks::atomic::write_atomic(&run.final_checkpoint(), &bytes)?;
    }
    let summary = summarize(setup, run, &outcome, wall, n_train, &memory);
    // Training ended: say so first, so that a kill while the end files are
    // written leaves a run `--resume` finishes without training.
    run.write_ended(&summary)?;
    write_end_files(config, run, &summary)?;
    Ok(Ended::Finished(Box::new(summary)))
}

/// The end files of a run whose training ended (`ended.json`) in an
/// earlier process: its summary, with this resume recorded.
fn write_end_files_of_ended(setup: &Setup, run: &RunDir) -> CliResult<Summary> {
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
fn write_end_files(config: &Config, run: &RunDir, summary: &Summary) -> CliResult<()> {
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
fn training_error(error: &str, outcome: &FitOutcome, config: &Config, run: &RunDir) -> CliError {
    let resume = format!(
        "{} train {} --run-dir {} --resume",
        crate::program(),
        run.config().display(),
        run.root.display()
    );
    match &outcome.error_path {
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

fn summarize(
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
    Summary {
        name: setup.name.clone(),
        backend: setup.backend.name.to_string(),
        backend_reason: setup.backend.reason.clone(),
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
        rss_mib_by_epoch: memory.lock().expect("memory probe").clone(),
        peak_rss_mib: resident_mib().map(|(_, peak)| peak),
        resumes: run.read_resumes(),
    }
}
