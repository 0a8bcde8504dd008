//! `burnfit train`: config → data + model + optimizer + callbacks → run directory.
//!
//! The order keeps a promise: **nothing is created or changed before every
//! check has passed.** [`prepare`] resolves the config and flags and checks
//! the run directory (and, with `--resume`, that the run can continue with
//! this config); the data is loaded and checked; only then [`start`]
//! creates and locks the run directory. A run that fails leaves its backups
//! (so `--resume` continues it) and no `summary.json`; a run stopped by
//! Ctrl-C or SIGTERM backs up at its last batch and says how to resume.

use std::path::Path;

use crate::TrainArgs;
use crate::backend::{self, Devices};
use crate::config::{BackendChoice, Config, FastDevRun, OptimizerConfig, OptimizerKind};
use crate::error::{CliError, CliResult};
pub use crate::fit::{Ended, Setup};
use crate::fit::{backup_dir, write_end_files_of_ended};
use crate::resume::{self, ResumeKind};
use crate::run_dir::{RunDir, RunLock, RunState, Summary};
use crate::task::Loaded;

/// A run directory created (or reopened) and locked for this process.
pub struct Started {
    /// The run directory.
    pub run: RunDir,
    _lock: RunLock,
}

/// Resolves config + flags into a [`Setup`], checking the config and the
/// run directory. Creates and changes nothing.
pub fn prepare(args: &TrainArgs) -> CliResult<Setup> {
    let mut config = resolve_config(args)?;
    check_memory(&config)?;
    if config
        .training
        .fast_dev_run
        .and_then(FastDevRun::batches)
        .is_some()
    {
        smoke_run(&mut config);
    }
    let backend = choose_backend(args, &mut config)?;
    let devices = choose_devices(args, &mut config, &backend)?;
    let name = config.run_name(&args.config);
    let root = RunDir::choose(&name, args.run_dir.as_deref());
    check_run_paths(&config, &root, !args.resume)?;
    // Left-over temporary files of writes a kill interrupted are garbage,
    // whatever the checks below decide.
    RunDir::sweep_unlocked(&root, &[&backup_dir(&config, &root)])?;
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
        check_new_run(&config, &root)?;
        None
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

/// The backend `--backend` or `training.backend` asks for, as it resolved
/// (`auto` becomes the one chosen), written back into the config.
fn choose_backend(args: &TrainArgs, config: &mut Config) -> CliResult<backend::ChosenBackend> {
    let choice = args.run.backend.unwrap_or(config.training.backend);
    let convolutional = config.describe().convolutional;
    let backend = backend::choose(choice, convolutional)?;
    config.training.backend = match backend.name {
        "wgpu" => BackendChoice::Wgpu,
        "cuda" => BackendChoice::Cuda,
        "ndarray" => BackendChoice::Ndarray,
        _ => BackendChoice::Flex,
    };
    Ok(backend)
}

/// The devices of the run: `--devices`, `training.devices`, or on a resume
/// the run's own; then `--remote`'s servers. Several devices must split the
/// batch evenly, and are written into the config; one device has this
/// thread join rayon's pool.
fn choose_devices(
    args: &TrainArgs,
    config: &mut Config,
    backend: &backend::ChosenBackend,
) -> CliResult<Devices> {
    // Devices the config gives are named at their key, not at --devices.
    let devices_of_the_config = args.devices.is_none() && !config.training.devices.is_empty();
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
        Some(spec) => backend::resolve_devices(&spec, backend).map_err(|e| {
            match (devices_of_the_config, e.message().split_once(": ")) {
                (true, Some((_, why))) => config.locate(CliError::at_key("training.devices", why)),
                _ => e,
            }
        })?,
        None => Devices::single(backend),
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
    if count == 1 {
        // One device: this thread does the training's work itself, so it
        // joins rayon's pool rather than waiting on it at every pass.
        burnfit_models::threads::join_global_pool();
    }
    if count <= 1 {
        config.training.devices.clear();
        return Ok(devices);
    }
    config.training.devices = devices.names();
    let batch = config.training.batch_size;
    if !batch.is_multiple_of(count) || batch < count {
        let flag = args
            .devices
            .as_ref()
            .map(|spec| format!("--devices {spec}: "))
            .unwrap_or_default();
        return Err(CliError::usage(format!(
            "{flag}training.batch_size = {batch} cannot be split evenly over {count} devices \
             (it is the batch of a step over all of them); use a batch that is a multiple of \
             {count}, or fewer devices"
        )));
    }
    Ok(devices)
}

/// The checks of the run directory `root`'s name and of the callbacks'
/// paths against it: one writer per file, and, for a run that `starts`
/// (not a `--resume`), nothing the user has outside it overwritten. Each
/// refusal names where its key's value came from.
fn check_run_paths(config: &Config, root: &Path, starts: bool) -> CliResult<()> {
    check_run_dir_name(root)?;
    let refused = |e: crate::run_dir::PathRefused| config.at_origin(&e.key, e.message);
    crate::run_dir::check_one_writer_per_file(config, root).map_err(refused)?;
    if starts {
        crate::run_dir::check_outputs_outside_are_new(config, root).map_err(refused)?;
    }
    Ok(())
}

/// Refuses a run directory whose path is not UTF-8: its paths are written
/// into the run's config and logs as text.
fn check_run_dir_name(root: &Path) -> CliResult<()> {
    match root.to_str() {
        Some(_) => Ok(()),
        None => Err(CliError::usage(format!(
            "--run-dir {}: the path is not valid UTF-8; burnfit writes the run's paths into its \
             config and logs as text: choose a UTF-8 name (nothing was created)",
            root.display()
        ))),
    }
}

/// Refuses a `root` that a run which starts (not a `--resume`) would
/// write over: a file, a finished run, an interrupted one (which
/// `--resume` continues), or a directory that is not a run. Creates
/// nothing.
pub fn check_new_run(config: &Config, root: &Path) -> CliResult<()> {
    let shown = root.display();
    if root.exists() && !root.is_dir() {
        return Err(CliError::usage(format!(
            "{shown}: a file, not a directory: choose another --run-dir (the file is left as it is)"
        )));
    }
    match RunDir::inspect(root, &backup_dir(config, root)) {
        RunState::Absent | RunState::Empty => Ok(()),
        RunState::Finished => Err(CliError::usage(format!(
            "{shown}: this run directory already holds a finished run; choose another \
                 --run-dir (nothing was overwritten)"
        ))),
        RunState::Unfinished { backup: Some(_) } => Err(CliError::usage(format!(
            "{shown}: this run directory holds the backup of an interrupted run; pass \
                 --resume to continue it, or choose another --run-dir (nothing was \
                 overwritten)"
        ))),
        RunState::Unfinished { backup: None } => Err(CliError::usage(format!(
            "{shown}: this run directory holds a run that stopped before its first \
                 backup; pass --resume to start it again from its config.toml, or choose \
                 another --run-dir (nothing was overwritten)"
        ))),
        RunState::Foreign => Err(CliError::usage(format!(
            "{shown}: this directory is not empty and is not a burnfit run; choose a new \
                 or empty --run-dir (nothing was overwritten)"
        ))),
    }
}

/// Loads and checks the data of `setup`'s config, and puts the model as
/// it trains on that data into the config ([`Loaded::model`]): what the
/// run's `config.toml` records. A resume is checked to build the run's
/// model. Creates nothing.
pub fn load(setup: &mut Setup) -> CliResult<Box<dyn Loaded>> {
    let data = crate::task::current().load(&setup.config, None)?;
    setup.config.model = data.model();
    if setup.resume.is_some() {
        resume::check_model(&setup.root, &setup.config)?;
    }
    Ok(data)
}

/// `fast_dev_run`: one epoch, and no files but the run's own: the default
/// outputs off, and the `[[callbacks]]` that write or send anything left
/// out.
fn smoke_run(config: &mut Config) {
    config.training.epochs = 1;
    let outputs = &mut config.outputs;
    outputs.checkpoint = false;
    outputs.csv = false;
    outputs.tensorboard = false;
    outputs.plots = false;
    const WRITERS: [&str; 8] = [
        "ModelCheckpoint",
        "CSVLogger",
        "TensorBoard",
        "BackupAndRestore",
        "OnExceptionCheckpoint",
        "GradientNormMonitor",
        "RemoteMonitor",
        "MLFlowLogger",
    ];
    config
        .callbacks
        .retain(|callback| !WRITERS.contains(&callback.type_name()));
}

/// The config with its `--set` overrides and `--data` (which replaces the
/// directory or file `[data]` names), that directory or file made absolute
/// (a relative one is read from the working directory): the run's
/// `config.toml` then finds the data for `eval`, `predict` and `--resume`
/// from any directory.
pub fn load_config(args: &TrainArgs) -> CliResult<Config> {
    let config = absolute_data_path(args)?.with_sets_shown(&args.run.sets);
    let key = config.describe().data_path_key;
    Ok(match (&args.run.data, key) {
        (Some(data), Some(key)) => {
            config.with_flag_shown(&format!("data.{key}"), format!("--data {}", data.display()))
        }
        _ => config,
    })
}

/// The config as `train` trains with it: [`load_config`], then `--epochs`.
pub fn resolve_config(args: &TrainArgs) -> CliResult<Config> {
    let mut config = load_config(args)?;
    if let Some(epochs) = args.run.epochs {
        if epochs == 0 {
            return Err(CliError::usage("--epochs must be at least 1"));
        }
        config.training.epochs = epochs;
    }
    Ok(config)
}

/// The config with `--data` applied and the data path made absolute.
fn absolute_data_path(args: &TrainArgs) -> CliResult<Config> {
    let config = with_data_flag(args)?;
    let Some(key) = config.describe().data_path_key else {
        return Ok(config);
    };
    let table = toml::Value::try_from(&config.data).ok();
    let relative = table
        .as_ref()
        .and_then(|t| t.get(key))
        .and_then(toml::Value::as_str)
        .map(Path::new)
        .filter(|p| p.is_relative() && !p.as_os_str().is_empty());
    let Some(absolute) = relative.and_then(|p| std::path::absolute(p).ok()) else {
        return Ok(config);
    };
    let Some(absolute) = absolute.to_str() else {
        return Ok(config);
    };
    let mut sets = args.run.sets.clone();
    sets.push(format!(
        "data.{key}={}",
        toml::Value::String(absolute.to_string())
    ));
    Config::load(&args.config, &sets)
}

/// The config with its `--set` overrides and `--data`.
fn with_data_flag(args: &TrainArgs) -> CliResult<Config> {
    let config = Config::load(&args.config, &args.run.sets)?;
    let Some(data) = &args.run.data else {
        return Ok(config);
    };
    let Some(key) = config.describe().data_path_key else {
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

/// The checks of a config that `train` makes before creating anything,
/// for `burnfit validate`: the model fits in memory, no two writers aim at
/// one file of the run directory, and no callback writes over what the
/// user has outside it. With `run_dir` (`--run-dir`) the callbacks'
/// relative paths are checked in that directory, and the directory itself
/// as a run that starts would check it ([`check_new_run`]); without it, in
/// the default `runs/<name>-<timestamp>/`, which is always new.
pub fn check_config(path: &Path, config: &Config, run_dir: Option<&Path>) -> CliResult<()> {
    check_memory(config)?;
    let root = RunDir::choose(&config.run_name(path), run_dir);
    check_run_paths(config, &root, true)?;
    match run_dir {
        Some(_) => check_new_run(config, &root),
        None => Ok(()),
    }
}

/// Refuses a model whose parameters and optimizer state alone would not fit
/// in the memory available now (`MemAvailable` of `/proc/meminfo`), before
/// anything is created: building it would end in an allocation failure
/// and a backtrace. The count is a lower bound (activations, gradients and
/// buffers come on top), so a model that could fit is never refused; where
/// the memory cannot be read, nothing is checked.
fn check_memory(config: &Config) -> CliResult<()> {
    let Some(available) = crate::memory::available() else {
        return Ok(());
    };
    let Some((parameters, key)) = config.describe().parameters else {
        return Ok(());
    };
    let copies = 1 + optimizer_copies(&config.optimizer) + u128::from(config.optimizer.use_ema);
    let needed = parameters.saturating_mul(4).saturating_mul(copies);
    if needed <= u128::from(available) {
        return Ok(());
    }
    // Named where the key's value came from: the file's line or a --set.
    Err(config.locate(CliError::at_key(
        key,
        format!(
            "the model has at least {parameters} parameters: {} with the optimizer's state \
             (f32), more than the {} of memory available; make the model smaller (nothing was \
             created)",
            crate::memory::shown(needed),
            crate::memory::shown(u128::from(available))
        ),
    )))
}

/// Copies of the parameters the optimizer keeps (Adam's two moments, SGD's
/// momentum).
fn optimizer_copies(optimizer: &OptimizerConfig) -> u128 {
    match optimizer.kind {
        OptimizerKind::Adam | OptimizerKind::AdamW => 2,
        OptimizerKind::Sgd => u128::from(optimizer.momentum > 0.0),
    }
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
                let backups = backup_dir(&setup.config, &run.root);
                let damaged = burnfit_callbacks::builtins::BackupAndRestore::backups(&backups);
                if !damaged.is_empty() {
                    eprintln!(
                        "warning: every backup in {} is damaged ({}): the run cannot continue \
                         where it stopped",
                        backups.display(),
                        crate::report::count(damaged.len(), "file")
                    );
                }
                let aside = run.set_aside_attempt(&backups)?;
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
    let mut setup = prepare(args)?;
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
    let data = load(&mut setup)?;
    let started = start(&setup)?;
    let run = &started.run;
    println!("burnfit: run directory {}", run.root.display());
    println!(
        "burnfit: backend {} ({})",
        setup.backend.name, setup.backend.reason
    );
    if setup.backend.is_gpu() {
        println!(
            "burnfit: Burn stack {}",
            crate::backend::stack(&setup.backend.device)
        );
    }
    if setup.devices.list.len() > 1 {
        println!(
            "burnfit: {} devices ({}), {} items each per step",
            setup.devices.list.len(),
            setup.devices.names().join(", "),
            setup.config.training.batch_size / setup.devices.list.len()
        );
    }
    match train(&mut setup, run, data)? {
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
                    "burnfit: interrupted{position} ({backup}); continue with: {}",
                    run.resume_command()
                ),
                signal.map_or(130, |s| s.exit_code()),
            ))
        }
    }
}

fn print_summary(summary: &Summary) {
    println!(
        "burnfit: {} in {:.1}s ({:.0} samples/s){}",
        crate::report::count(summary.epochs_run, "epoch"),
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
pub fn train(setup: &mut Setup, run: &RunDir, data: Box<dyn Loaded>) -> CliResult<Ended> {
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
