//! `burnfit train`: config → data + model + optimizer + callbacks → run directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::Dataset;
use burn::grad_clipping::GradientClippingConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, SgdConfig};
use burn::prelude::Module;
use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::{Learner, LearnerModel, SupervisedTraining, TrainStep};
use burnfit_callbacks::builtins::{
    BackupAndRestore, BackupAndRestoreConfig, BackupFrequency, CSVLogger, CallbackConfig,
    ModelCheckpoint, ModelCheckpointConfig, ProgressLogger, ProgressLoggerConfig,
};
use burnfit_callbacks::engine::{BatchLoss, param_values_of};
use burnfit_callbacks::tensorboard::TensorBoard;
use burnfit_callbacks::{Callbacks, WithCallbacks};
use burnfit_models::Classifier;
use burnfit_models::data::fashion_mnist::{self, Split as IdxSplit};
use burnfit_models::data::{
    ImageBatcher, ImageDataset, ImageItem, RegressionBatcher, Standardizer, SubsetDataset, Table,
    TableConfig, TableDataset, train_val_split,
};
use burnfit_models::nets::MlpRegressor;

use crate::TrainArgs;
use crate::backend::{self, ChosenBackend};
use crate::config::{BackendChoice, Config, DataConfig, OptimizerConfig, OptimizerKind};
use crate::error::{CliError, CliResult};
use crate::run_dir::{RunDir, Summary};
use crate::shuffle::{EpochCell, EpochShuffled, EpochTracker};

/// Everything a training needs, resolved from the config and flags.
pub struct Setup {
    /// The resolved config.
    pub config: Config,
    /// The run name.
    pub name: String,
    /// The run directory.
    pub run: RunDir,
    /// The device.
    pub backend: ChosenBackend,
    /// Callbacks added by the caller (the sweep's pruning rule).
    pub extra_callbacks: std::sync::Mutex<Vec<Box<dyn burnfit_callbacks::Callback>>>,
    /// Hyperparameters logged to TensorBoard's hparams plugin.
    pub hparams: std::collections::BTreeMap<String, burnfit_callbacks::tensorboard::HParamValue>,
}

/// Train/validation/test data, ready for loaders.
pub enum Data {
    /// Image classification.
    Images {
        /// Training images.
        train: SubsetDataset<ImageDataset, ImageItem>,
        /// Validation images (held out of the training file).
        valid: SubsetDataset<ImageDataset, ImageItem>,
        /// The test file.
        test: ImageDataset,
    },
    /// Table regression.
    Table {
        /// Training rows.
        train: TableDataset,
        /// Validation rows.
        valid: TableDataset,
        /// Test rows.
        test: TableDataset,
        /// The feature standardisation fitted on the training rows.
        scaler: Standardizer,
    },
}

/// Loads the data a config names (`data_override` replaces the directory).
pub fn load_data(config: &Config, data_override: Option<&Path>) -> CliResult<Data> {
    let seed = config.training.seed;
    match &config.data {
        DataConfig::FashionMnist(d) | DataConfig::Mnist(d) => {
            let dir = data_override
                .map(Path::to_path_buf)
                .or_else(|| d.dir.clone())
                .unwrap_or_else(|| PathBuf::from(fashion_mnist::DEFAULT_DIR));
            let load = |split| {
                fashion_mnist::load_raw(&dir, split).map_err(|e| CliError::usage(e.to_string()))
            };
            let mut train_raw = load(IdxSplit::Train)?;
            let mut test_raw = load(IdxSplit::Test)?;
            if let Some(n) = d.limit_train {
                truncate(&mut train_raw, n);
            }
            if let Some(n) = d.limit_test {
                truncate(&mut test_raw, n);
            }
            let train_all = ImageDataset::from_labeled(
                train_raw,
                fashion_mnist::PIXEL_MEAN,
                fashion_mnist::PIXEL_STD,
            );
            let test = ImageDataset::from_labeled(
                test_raw,
                fashion_mnist::PIXEL_MEAN,
                fashion_mnist::PIXEL_STD,
            );
            let split = train_val_split(train_all.len(), d.validation_split, seed)
                .map_err(|e| CliError::usage(format!("data.validation_split: {e}")))?;
            let train_all = Arc::new(train_all);
            Ok(Data::Images {
                train: SubsetDataset::new(train_all.clone(), split.train),
                valid: SubsetDataset::new(train_all, split.valid),
                test,
            })
        }
        DataConfig::Csv(c) => {
            let path = data_override
                .map(Path::to_path_buf)
                .unwrap_or_else(|| c.path.clone());
            let table = Table::from_csv(
                &path,
                &TableConfig::new(c.target.clone()).with_features(c.features.clone()),
            )
            .map_err(|e| CliError::usage(e.to_string()))?;
            let order = train_val_split(table.len(), c.test_split, seed)
                .map_err(|e| CliError::usage(format!("data.test_split: {e}")))?;
            let rest = table.select(&order.train);
            let test = table.select(&order.valid);
            let split = train_val_split(rest.len(), c.validation_split, seed.wrapping_add(1))
                .map_err(|e| CliError::usage(format!("data.validation_split: {e}")))?;
            let mut train = rest.select(&split.train);
            let mut valid = rest.select(&split.valid);
            let mut test = test;
            let scaler = Standardizer::fit(&train);
            scaler.apply(&mut train);
            scaler.apply(&mut valid);
            scaler.apply(&mut test);
            Ok(Data::Table {
                train: TableDataset::new(train),
                valid: TableDataset::new(valid),
                test: TableDataset::new(test),
                scaler,
            })
        }
    }
}

/// Keeps the first `n` images.
fn truncate(data: &mut burnfit_models::data::idx::LabeledImages, n: usize) {
    let n = n.min(data.labels.len());
    data.labels.truncate(n);
    data.images.count = n;
    let len = n * data.images.image_len();
    data.images.pixels.truncate(len);
}

/// Resolves config + flags into a [`Setup`] (creating the run directory).
pub fn prepare(args: &TrainArgs) -> CliResult<Setup> {
    let mut config = Config::load(&args.config, &args.sets)?;
    if let Some(epochs) = args.epochs {
        if epochs == 0 {
            return Err(CliError::usage("--epochs must be at least 1"));
        }
        config.training.epochs = epochs;
    }
    if let Some(data) = &args.data {
        match &mut config.data {
            DataConfig::FashionMnist(d) | DataConfig::Mnist(d) => d.dir = Some(data.clone()),
            DataConfig::Csv(c) => c.path = data.clone(),
        }
    }
    let choice = args.backend.unwrap_or(config.training.backend);
    let convolutional = config.model.is_convolutional();
    let backend = backend::choose(choice, convolutional)?;
    let name = config.run_name(&args.config);
    let root = RunDir::choose(&name, args.run_dir.as_deref());
    let has_backup =
        !burnfit_callbacks::builtins::BackupAndRestore::backups(&root.join("backup")).is_empty();
    if args.resume {
        if args.run_dir.is_none() {
            return Err(CliError::usage(
                "--resume needs --run-dir DIR: the run directory of the interrupted run",
            ));
        }
        if !has_backup {
            eprintln!(
                "warning: {}: no backup yet (the run stopped before its first epoch ended): \
                 starting from the beginning",
                root.display()
            );
        }
    } else if root.join("summary.json").exists() {
        return Err(CliError::usage(format!(
            "{}: this run directory already holds a finished run; choose another --run-dir \
             (nothing was overwritten)",
            root.display()
        )));
    } else if has_backup {
        return Err(CliError::usage(format!(
            "{}: this run directory holds the backup of an interrupted run; pass --resume to \
             continue it, or choose another --run-dir (nothing was overwritten)",
            root.display()
        )));
    }
    let run = RunDir::create(root)?;
    if args.resume {
        // Temporary files of writes a crash interrupted are garbage.
        for dir in [run.checkpoints(), run.backup()] {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
    config.training.backend = match backend.name {
        "wgpu" => BackendChoice::Wgpu,
        "ndarray" => BackendChoice::Ndarray,
        _ => BackendChoice::Flex,
    };
    Ok(Setup {
        config,
        name,
        run,
        backend,
        extra_callbacks: Default::default(),
        hparams: Default::default(),
    })
}

/// `burnfit train`.
pub fn train_command(args: &TrainArgs) -> CliResult<Summary> {
    let setup = prepare(args)?;
    let data = load_data(&setup.config, None)?;
    println!("burnfit: run directory {}", setup.run.root.display());
    println!(
        "burnfit: backend {} ({})",
        setup.backend.name, setup.backend.reason
    );
    setup.run.write_config(&setup.config)?;
    let summary = train(&setup, data)?;
    if setup.config.outputs.plots
        && let Err(e) = crate::report::render_plots(&setup.run)
    {
        eprintln!("warning: plots: {e}");
    }
    print_summary(&summary);
    Ok(summary)
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

/// Trains on prepared data and writes summary.json.
pub fn train(setup: &Setup, data: Data) -> CliResult<Summary> {
    // Burn trains a model whose parameters live on an autodiff device.
    let device = setup.backend.device.clone().autodiff();
    let config = &setup.config;
    let batch = config.training.batch_size;
    let workers = config.training.workers;
    let seed = config.training.seed;
    device.seed(seed);
    match data {
        Data::Images { train, valid, .. } => {
            let n_train = train.len();
            let epoch = EpochCell::default();
            let train = EpochShuffled::new(train, seed, epoch.clone());
            let model = config
                .model
                .init_classifier(&device)
                .map_err(|e| CliError::usage(format!("model: {e}")))?;
            let train = loader(ImageBatcher::default(), train, batch, workers, None);
            let valid = loader(ImageBatcher::default(), valid, batch, workers, None);
            fit::<Classifier>(setup, model, train, valid, n_train, epoch, |t| {
                t.metrics((AccuracyMetric::new(), LossMetric::new()))
            })
        }
        Data::Table { train, valid, .. } => {
            let n_train = train.len();
            let num_features = train.num_features();
            let epoch = EpochCell::default();
            let train = EpochShuffled::new(train, seed, epoch.clone());
            let model = config
                .model
                .init_regressor(num_features, &device)
                .map_err(|e| CliError::usage(format!("model: {e}")))?;
            let train = loader(RegressionBatcher, train, batch, workers, None);
            let valid = loader(RegressionBatcher, valid, batch, workers, None);
            fit::<MlpRegressor>(setup, model, train, valid, n_train, epoch, |t| {
                t.metrics((LossMetric::new(),))
            })
        }
    }
}

/// A data loader.
pub fn loader<I, O, B, D>(
    batcher: B,
    dataset: D,
    batch_size: usize,
    workers: usize,
    shuffle_seed: Option<u64>,
) -> Arc<dyn DataLoader<O>>
where
    I: Send + Sync + Clone + std::fmt::Debug + 'static,
    O: Send + Clone + std::fmt::Debug + 'static,
    B: burn::data::dataloader::batcher::Batcher<I, O> + 'static,
    D: Dataset<I> + 'static,
{
    let mut builder = DataLoaderBuilder::new(batcher)
        .batch_size(batch_size)
        .num_workers(workers);
    if let Some(seed) = shuffle_seed {
        builder = builder.shuffle(seed);
    }
    builder.build(dataset)
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
        for key in ["filepath", "filename", "log_dir", "backup_dir"] {
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

fn build_callbacks<M: Module + 'static>(setup: &Setup, epoch: EpochCell) -> CliResult<Callbacks> {
    let config = &setup.config;
    let run = &setup.run;
    let mut callbacks = Callbacks::new().deterministic(config.training.seed);
    callbacks.push(EpochTracker(epoch));
    // Always back up at each epoch end, so an interrupted run can be resumed
    // with --resume; the backups are deleted when training ends normally.
    callbacks.push(BackupAndRestore::new(BackupAndRestoreConfig {
        backup_dir: run.backup().to_string_lossy().into_owned(),
        save_freq: BackupFrequency::default(),
        delete_checkpoint: true,
        keep: 2,
    })?);
    for callback in &config.callbacks {
        let callback = rebase_paths(callback, &run.root)?;
        callbacks.push_boxed(callback.build()?);
    }
    let outputs = &config.outputs;
    if outputs.checkpoint {
        let best = ModelCheckpointConfig {
            filepath: run.best_checkpoint().to_string_lossy().into_owned(),
            monitor: outputs.checkpoint_monitor.clone(),
            save_best_only: true,
            save_weights_only: true,
            ..Default::default()
        };
        callbacks.push(ModelCheckpoint::new(best)?);
        let last = ModelCheckpointConfig {
            filepath: run.last_checkpoint().to_string_lossy().into_owned(),
            monitor: outputs.checkpoint_monitor.clone(),
            save_best_only: false,
            save_weights_only: true,
            ..Default::default()
        };
        callbacks.push(ModelCheckpoint::new(last)?);
    }
    if outputs.csv {
        callbacks.push(CSVLogger::new(run.history()));
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
    Ok(callbacks)
}

fn fit<M>(
    setup: &Setup,
    model: M,
    train: Arc<dyn DataLoader<<M as TrainStep>::Input>>,
    valid: Arc<dyn DataLoader<<M as burn::train::InferenceStep>::Input>>,
    n_train: usize,
    epoch: EpochCell,
    register: impl FnOnce(SupervisedTraining<M>) -> SupervisedTraining<M>,
) -> CliResult<Summary>
where
    M: LearnerModel,
    <M as TrainStep>::Output: BatchLoss,
{
    let config = &setup.config;
    let mut callbacks = build_callbacks::<M>(setup, epoch)?;
    let memory = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    callbacks.push(crate::shuffle::MemoryProbe(memory.clone()));
    let lr = callbacks.lr_scheduler(config.optimizer.lr);
    let outcome = callbacks.outcome();
    let training = SupervisedTraining::new(setup.run.burn(), train, valid)
        .num_epochs(config.training.epochs)
        .renderer(Box::new(burnfit_callbacks::engine::SilentRenderer))
        .with_application_logger(None);
    let training = register(training).with_callbacks(callbacks);
    let start = Instant::now();
    let result = training.launch(Learner::new(model, optimizer(&config.optimizer), lr));
    let wall = start.elapsed().as_secs_f64();
    let outcome = outcome.lock().expect("outcome").clone();

    let monitor = config.outputs.checkpoint_monitor.clone();
    let minimise = !monitor.contains("acc");
    // Every epoch of the run, earlier processes included when resumed: the
    // CSV log has them all; this process's outcome has the ones it ran.
    let epochs: Vec<(usize, burnfit_callbacks::Logs)> =
        match crate::report::History::read(&setup.run.history()) {
            Ok(history) if config.outputs.csv => history.epoch_logs(),
            _ => outcome.epochs.clone(),
        };
    let mut best: Option<(usize, f64)> = None;
    for (epoch, logs) in &epochs {
        if let Some(v) = logs.get(&monitor)
            && v.is_finite()
            && best.is_none_or(|(_, b)| if minimise { v < b } else { v > b })
        {
            best = Some((*epoch, v));
        }
    }
    let summary = Summary {
        name: setup.name.clone(),
        backend: setup.backend.name.to_string(),
        backend_reason: setup.backend.reason.clone(),
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
        error: outcome
            .error
            .clone()
            .or_else(|| result.error.as_ref().map(|e| e.to_string())),
        rss_mib_by_epoch: memory.lock().expect("memory probe").clone(),
        peak_rss_mib: crate::shuffle::resident_mib().map(|(_, peak)| peak),
    };
    setup.run.write_summary(&summary)?;
    if let Some(error) = &summary.error {
        return Err(CliError::failed(format!("training failed: {error}")));
    }
    Ok(summary)
}
