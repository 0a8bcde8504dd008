//! The training configuration file (TOML) and its error messages.

use std::path::{Path, PathBuf};

use burnfit_callbacks::builtins::CallbackConfig;
use serde::{Deserialize, Serialize};

use crate::error::CliError;
use crate::tables::{Description, Section};

/// A whole training configuration, as written in `configs/*.toml`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Run name; defaults to the config file's stem.
    #[serde(default)]
    pub name: Option<String>,
    /// The network: the task's own table (for the `burnfit` binary, `kind =
    /// "mlp" | "cnn" | "simple_cnn" | "resnet" | "mlp_regressor"`).
    #[serde(deserialize_with = "crate::tables::deserialize_model")]
    pub model: Section,
    /// The dataset: the task's own table (for the `burnfit` binary, a
    /// [`DataConfig`]).
    #[serde(deserialize_with = "crate::tables::deserialize_data")]
    pub data: Section,
    /// The optimizer.
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// Epochs, batch size, seed, backend.
    #[serde(default)]
    pub training: TrainingConfig,
    /// What the run directory receives by default.
    #[serde(default)]
    pub outputs: OutputsConfig,
    /// Callbacks, with Keras's class and parameter names.
    #[serde(default)]
    pub callbacks: Vec<CallbackConfig>,
    /// Where [`Config::load`] read it: for errors that name a key's line
    /// or `--set` after loading (the checks of the model against the data).
    #[serde(skip)]
    source: Option<Source>,
}

/// A loaded config's file, its text and the `--set` arguments given.
#[derive(Clone, Debug)]
struct Source {
    path: PathBuf,
    text: String,
    sets: Vec<String>,
    /// A flag that set a key after the `--set` arguments, and how to show
    /// it: `("data.path", "--data x.csv")`.
    flag: Option<(String, String)>,
}

/// Where the data comes from.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataConfig {
    /// Fashion-MNIST IDX files (plain or .gz).
    FashionMnist(ImageDataConfig),
    /// MNIST IDX files (same layout as Fashion-MNIST).
    Mnist(ImageDataConfig),
    /// A CSV table for regression.
    Csv(CsvDataConfig),
    /// A folder of PNG or JPEG images, a subfolder per class.
    ImageFolder(ImageFolderConfig),
}

/// An IDX image dataset.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageDataConfig {
    /// Directory with the four IDX files; default `/usr/share/datasets/fashion-mnist`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Fraction of the training set held out for validation.
    #[serde(default = "default_validation_split")]
    pub validation_split: f64,
    /// Use only the first N training images (quick runs).
    #[serde(default)]
    pub limit_train: Option<usize>,
    /// Use only the first N test images.
    #[serde(default)]
    pub limit_test: Option<usize>,
}

/// A CSV regression table.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CsvDataConfig {
    /// The CSV file (header row required).
    pub path: PathBuf,
    /// Feature column names.
    pub features: Vec<String>,
    /// Target column name.
    pub target: String,
    /// Fraction of rows held out for validation.
    #[serde(default = "default_validation_split")]
    pub validation_split: f64,
    /// Fraction of rows held out as the test set (`burnfit eval`).
    #[serde(default = "default_validation_split")]
    pub test_split: f64,
}

/// A folder of images, the format people's own images come in: a
/// subfolder per class (named after it), each with PNG or JPEG files.
///
/// Either `dir` holds the class folders, and `validation_split` of the
/// images is held out (and is also the test set of `burnfit eval`); or
/// `dir` holds `train/` and `valid/` (and optionally `test/`), each with
/// the same class folders.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageFolderConfig {
    /// The folder.
    pub dir: PathBuf,
    /// Resize every image to `image_size` x `image_size`. Left out, the
    /// images must all have one size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<usize>,
    /// Read the images as one gray channel instead of three (RGB).
    #[serde(default)]
    pub grayscale: bool,
    /// Fraction held out for validation, when `dir` holds the class
    /// folders (default 0.1). Refused with a `train/` + `valid/` layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_split: Option<f64>,
}

fn default_validation_split() -> f64 {
    0.1
}

/// Optimizer kinds.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam.
    #[default]
    Adam,
    /// Adam with decoupled weight decay.
    AdamW,
    /// Stochastic gradient descent with optional momentum.
    Sgd,
}

/// The optimizer section.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// `adam`, `adamw` or `sgd`.
    pub kind: OptimizerKind,
    /// Initial learning rate.
    pub lr: f64,
    /// L2 (Adam, SGD) or decoupled (AdamW) weight decay.
    pub weight_decay: f64,
    /// SGD momentum (0 = none).
    pub momentum: f64,
    /// SGD Nesterov momentum.
    pub nesterov: bool,
    /// Adam β1.
    pub beta_1: f32,
    /// Adam β2.
    pub beta_2: f32,
    /// Adam ε.
    pub epsilon: f32,
    /// Clip gradients to this global L2 norm.
    pub clip_norm: Option<f32>,
    /// Clip each gradient value to ±this.
    pub clip_value: Option<f32>,
    /// Keep an exponential moving average of the weights (Keras's
    /// `use_ema`); the model ends training with the average.
    pub use_ema: bool,
    /// The average's momentum (Keras's `ema_momentum`).
    pub ema_momentum: f64,
    /// Copy the average into the model every this many steps (Keras's
    /// `ema_overwrite_frequency`; default: only at the end).
    pub ema_overwrite_frequency: Option<usize>,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Adam,
            lr: 1e-3,
            weight_decay: 0.0,
            momentum: 0.0,
            nesterov: false,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
            clip_norm: None,
            clip_value: None,
            use_ema: false,
            ema_momentum: 0.99,
            ema_overwrite_frequency: None,
        }
    }
}

/// Backends the CLI can train on.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// An NVIDIA GPU through CUDA in a binary built with `--features cuda`, else a real GPU
    /// through wgpu if one exists, else the fastest CPU backend.
    #[default]
    Auto,
    /// wgpu (Vulkan/Metal/DX12; lavapipe counts as a software GPU).
    Wgpu,
    /// Burn's CUDA backend (NVIDIA), in a binary built with `--features cuda`.
    Cuda,
    /// Burn's pure-Rust CPU backend.
    Flex,
    /// burn-ndarray (deprecated by Burn; fine for MLPs, very slow convolutions), in a binary
    /// built with `--features ndarray`.
    Ndarray,
}

/// The training section.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// Number of epochs.
    pub epochs: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Seed for initialisation, shuffling and the validation split.
    pub seed: u64,
    /// Data-loading worker threads.
    pub workers: usize,
    /// Backend (`auto`, `wgpu`, `cuda`, `flex`, `ndarray`); `--backend` overrides it.
    pub backend: BackendChoice,
    /// Metrics besides the loss, by Keras's names: `accuracy`,
    /// `top_k_categorical_accuracy`, `precision`, `recall`, `f1_score`, `auc`
    /// (classification), `mae`, `mse`, `rmse`, `r2_score` (regression).
    /// Default: `["accuracy"]` for a classifier, none for a regressor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<String>>,
    /// Devices to train on (`--devices`): `["flex", "flex"]` for two workers
    /// on the CPU, `["wgpu:0", "wgpu:1"]` for two GPUs; empty: the backend's
    /// one device. `batch_size` is the batch of a step over all of them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// With several devices, the seconds one step may take before training
    /// ends with an error naming the devices that did not answer (a remote
    /// server that stopped answering); 0: no limit.
    pub step_timeout: f64,
    /// Step the optimizer once every N batches with the mean of their
    /// gradients (Lightning's `accumulate_grad_batches`): N batches update
    /// as one batch N times larger. Resume is exact inside a window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accumulate_grad_batches: Option<usize>,
    /// Stop after this many optimizer steps in all, resumes included
    /// (Lightning's `max_steps`); the epoch it stops in is validated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u64>,
    /// Validate every N training batches (Lightning's `val_check_interval`
    /// as a number of batches). Each validation ends an epoch of the logs,
    /// as Keras's `steps_per_epoch` does over a repeated dataset: an epoch is
    /// N batches read from a stream of shuffled passes over the training
    /// set, and `epochs` counts these. Callbacks (checkpoints, early
    /// stopping, learning-rate schedules), history.csv and TensorBoard's
    /// epoch axis follow them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_check_interval: Option<usize>,
    /// Validate on the first N batches only (Lightning's `limit_val_batches`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_val_batches: Option<usize>,
    /// Train on the first N training batches, unshuffled, and validate on
    /// the same batches (Lightning's `overfit_batches`): a model that cannot
    /// overfit them has a bug.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overfit_batches: Option<usize>,
    /// A smoke run (Lightning's `fast_dev_run`): one epoch of N batches of
    /// training and of validation (`true`: 1), and no files but the run's own
    /// (no checkpoints, CSV, TensorBoard, plots, nor `[[callbacks]]` that
    /// write or send anything).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fast_dev_run: Option<FastDevRun>,
}

/// `fast_dev_run = true` (one batch) or a number of batches.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(
    untagged,
    expecting = "expected true, false or a number of batches >= 1"
)]
pub enum FastDevRun {
    /// `true`: one batch; `false`: off.
    Flag(bool),
    /// This many batches.
    Batches(usize),
}

impl FastDevRun {
    /// The batches of training and validation, if on.
    pub fn batches(self) -> Option<usize> {
        match self {
            FastDevRun::Flag(true) => Some(1),
            FastDevRun::Flag(false) => None,
            FastDevRun::Batches(n) => Some(n),
        }
    }
}

impl TrainingConfig {
    /// Batches of training per epoch, and of validation, when a knob limits
    /// them (`overfit_batches`, `fast_dev_run`, `limit_val_batches`); and
    /// whether the training batches are shuffled.
    pub fn batch_limits(&self) -> BatchLimits {
        let fast = self.fast_dev_run.and_then(FastDevRun::batches);
        let train = fast.or(self.overfit_batches);
        BatchLimits {
            train,
            valid: fast.or(self.limit_val_batches).or(self.overfit_batches),
            valid_is_train: self.overfit_batches.is_some() && fast.is_none(),
            shuffle: self.overfit_batches.is_none(),
        }
    }
}

/// What [`TrainingConfig::batch_limits`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// Training batches per epoch (all when `None`).
    pub train: Option<usize>,
    /// Validation batches (all when `None`).
    pub valid: Option<usize>,
    /// Validate on the training batches (`overfit_batches`).
    pub valid_is_train: bool,
    /// Shuffle the training batches each epoch.
    pub shuffle: bool,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 64,
            seed: 42,
            workers: 2,
            backend: BackendChoice::Auto,
            metrics: None,
            devices: Vec::new(),
            step_timeout: 600.0,
            accumulate_grad_batches: None,
            max_steps: None,
            val_check_interval: None,
            limit_val_batches: None,
            overfit_batches: None,
            fast_dev_run: None,
        }
    }
}

/// The default outputs of a run directory.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputsConfig {
    /// `history.csv` (CSVLogger).
    pub csv: bool,
    /// `tensorboard/` (TensorBoard callback).
    pub tensorboard: bool,
    /// TensorBoard weight histograms every N epochs (0 = off).
    pub histogram_freq: usize,
    /// `checkpoints/best.bpk`, the best model by `checkpoint_monitor`.
    pub checkpoint: bool,
    /// The metric the default checkpoint follows (and the summary's "best"
    /// and a sweep's ranking).
    pub checkpoint_monitor: String,
    /// Whether lower (`min`) or higher (`max`) `checkpoint_monitor` is
    /// better; `auto` looks the name up in Keras's table of metric
    /// directions.
    pub checkpoint_mode: String,
    /// `plots/` at the end of training.
    pub plots: bool,
    /// A progress line per epoch on the terminal.
    pub progress: bool,
}

impl Default for OutputsConfig {
    fn default() -> Self {
        Self {
            csv: true,
            tensorboard: true,
            histogram_freq: 1,
            checkpoint: true,
            checkpoint_monitor: "val_loss".into(),
            checkpoint_mode: "auto".into(),
            plots: true,
            progress: true,
        }
    }
}

impl Config {
    /// The training alone, for commands that train to measure something
    /// (`lr-find`, `batch-find`): no `[[callbacks]]`, no weight EMA, and no
    /// checkpoints, CSV, TensorBoard or plots.
    pub fn bare_training(&mut self) {
        self.callbacks.clear();
        self.optimizer.use_ema = false;
        self.outputs.checkpoint = false;
        self.outputs.tensorboard = false;
        self.outputs.csv = false;
        self.outputs.plots = false;
        self.training.val_check_interval = None;
    }

    /// Reads, parses and checks a config file, applying `--set key.path=value` overrides.
    ///
    /// Every error is one line naming where the bad value came from: the
    /// file and line, or the `--set` argument that put it there.
    pub fn load(path: &Path, sets: &[String]) -> Result<Self, CliError> {
        let text = read_config_text(path)?;
        let origin = Origin {
            path,
            text: &text,
            sets,
            flag: None,
        };
        let config = parse(&origin)?;
        config.check(&origin)?;
        let source = Some(Source {
            path: path.to_path_buf(),
            text: text.clone(),
            sets: sets.to_vec(),
            flag: None,
        });
        Ok(Config { source, ..config })
    }

    /// The same config, its `--set` arguments said to be `sets` in errors
    /// (those the user gave, not ones the CLI added).
    pub(crate) fn with_sets_shown(mut self, sets: &[String]) -> Self {
        if let Some(source) = &mut self.source {
            source.sets = sets.to_vec();
        }
        self
    }

    /// The same config, its key `key` said to come from the flag `shown`
    /// in errors (`--data x.csv` sets `data.path`).
    pub(crate) fn with_flag_shown(mut self, key: &str, shown: String) -> Self {
        if let Some(source) = &mut self.source {
            source.flag = Some((key.to_string(), shown));
        }
        self
    }

    /// A check of the model against the data, as one error line: where the
    /// key's value came from (the `--set` that set it, else the file and
    /// the key's line), the key and the message.
    pub(crate) fn key_error(&self, error: crate::tables::KeyError) -> CliError {
        self.at_origin(&error.key, format!("{}: {}", error.key, error.message))
    }

    /// `message`, which names `key` itself, after where `key`'s value
    /// came from: the file and line, or the `--set` or flag that gave it.
    pub(crate) fn at_origin(&self, key: &str, message: String) -> CliError {
        match &self.source {
            Some(source) => {
                let origin = Origin {
                    path: &source.path,
                    text: &source.text,
                    sets: &source.sets,
                    flag: source
                        .flag
                        .as_ref()
                        .map(|(k, shown)| (k.as_str(), shown.as_str())),
                };
                CliError::usage(format!("{}: {message}", origin.of(key)))
            }
            None => CliError::usage(message),
        }
    }

    /// `error` with where its key's value came from, when it names a key
    /// ([`CliError::at_key`]); other errors as they are.
    pub(crate) fn locate(&self, error: CliError) -> CliError {
        match error.key() {
            Some((key, message)) => self.key_error(crate::tables::KeyError::new(key, message)),
            None => error,
        }
    }

    /// The keys this config gives, in its file or with `--set` (every
    /// other key has its default). A config not read from a file gives
    /// none.
    pub(crate) fn given(&self) -> crate::tables::Given {
        let Some(source) = &self.source else {
            return crate::tables::Given::default();
        };
        let mut table: toml::Table = toml::from_str(&source.text).unwrap_or_default();
        for set in &source.sets {
            // Each was applied when the config was loaded.
            let _ = apply_set(&mut table, set);
        }
        let mut keys = Vec::new();
        key_paths("", &toml::Value::Table(table), &mut keys);
        crate::tables::Given::new(keys)
    }

    /// The task's description of this config's model.
    pub(crate) fn describe(&self) -> Description {
        crate::tables::current().describe(&self.model, &self.data)
    }

    /// The run name: `name`, else the file stem.
    pub fn run_name(&self, path: &Path) -> String {
        self.name.clone().unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".into())
        })
    }

    /// The metrics computed besides the loss (`[training] metrics`, or the
    /// task's default).
    pub fn metric_names(&self) -> Vec<String> {
        match &self.training.metrics {
            Some(names) => names.clone(),
            None => self.describe().metrics.default,
        }
    }

    /// The log keys a run of this config has at each epoch end: what a
    /// monitor or a checkpoint file name can refer to.
    pub fn produced_metrics(&self) -> Vec<String> {
        let mut train = vec!["loss".to_string()];
        train.extend(self.metric_names());
        let mut all: Vec<String> = train.iter().map(|k| format!("val_{k}")).collect();
        all.splice(0..0, train);
        all.push("learning_rate".into());
        all
    }

    /// The training knobs: counts of at least 1, and no two that say what
    /// to train on.
    fn check_knobs(&self, bad: &Bad<'_>) -> Result<(), CliError> {
        let training = &self.training;
        let counts = [
            (
                "training.accumulate_grad_batches",
                training.accumulate_grad_batches,
            ),
            ("training.max_steps", training.max_steps.map(|n| n as usize)),
            ("training.val_check_interval", training.val_check_interval),
            ("training.limit_val_batches", training.limit_val_batches),
            ("training.overfit_batches", training.overfit_batches),
            (
                "training.fast_dev_run",
                match training.fast_dev_run {
                    Some(FastDevRun::Batches(n)) => Some(n),
                    _ => None,
                },
            ),
        ];
        for (key, value) in counts {
            if value == Some(0) {
                // Left out, accumulation steps every batch; the others
                // then set no limit.
                let left_out = if key == "training.accumulate_grad_batches" {
                    "a step every batch"
                } else {
                    "no limit"
                };
                return Err(bad(
                    key,
                    format!("must be at least 1 (or left out: {left_out})"),
                ));
            }
        }
        let fast = training
            .fast_dev_run
            .and_then(FastDevRun::batches)
            .is_some();
        if fast && training.val_check_interval.is_some() {
            return Err(bad(
                "training.val_check_interval",
                "and training.fast_dev_run both say when to validate: keep one".into(),
            ));
        }
        if fast && training.overfit_batches.is_some() {
            return Err(bad(
                "training.fast_dev_run",
                "and training.overfit_batches both choose the batches to train on: keep one".into(),
            ));
        }
        Ok(())
    }

    /// Checks values serde cannot check (ranges, combinations, names).
    fn check(&self, origin: &Origin<'_>) -> Result<(), CliError> {
        let bad = |key: &str, message: String| {
            CliError::usage(format!("{}: {key}: {message}", origin.of(key)))
        };
        self.check_name(&bad)?;
        self.check_training(&bad)?;
        self.check_knobs(&bad)?;
        self.check_optimizer(&bad)?;
        if let Err(e) = crate::tables::current().check(&self.model, &self.data) {
            return Err(bad(&e.key, e.message));
        }
        self.check_metric_names(&bad)?;
        self.check_callbacks(&bad)
    }

    /// `name`: one directory name under `runs/`, nothing that climbs out of
    /// it or nests.
    fn check_name(&self, bad: &Bad<'_>) -> Result<(), CliError> {
        let Some(name) = &self.name else {
            return Ok(());
        };
        let plain = !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains(['/', '\\'])
            && !name.chars().any(char::is_control);
        if plain {
            return Ok(());
        }
        Err(bad(
            "name",
            format!(
                "{name:?} must be a plain directory name (the run goes to runs/NAME-TIMESTAMP/): \
                 no `/`, not empty, not `.` or `..`; use --run-dir to choose the directory itself"
            ),
        ))
    }

    /// `[training]`: counts and the step timeout.
    fn check_training(&self, bad: &Bad<'_>) -> Result<(), CliError> {
        if self.training.epochs == 0 {
            return Err(bad("training.epochs", "must be at least 1".into()));
        }
        if self.training.batch_size == 0 {
            return Err(bad("training.batch_size", "must be at least 1".into()));
        }
        let timeout = self.training.step_timeout;
        if !(timeout >= 0.0 && timeout.is_finite()) {
            return Err(bad(
                "training.step_timeout",
                format!("must be a number of seconds (0 for no limit), got {timeout}"),
            ));
        }
        Ok(())
    }

    /// `[optimizer]`: the rate and the moving average's settings.
    fn check_optimizer(&self, bad: &Bad<'_>) -> Result<(), CliError> {
        if !(self.optimizer.lr > 0.0 && self.optimizer.lr.is_finite()) {
            return Err(bad(
                "optimizer.lr",
                format!("must be a positive number, got {}", self.optimizer.lr),
            ));
        }
        if !(0.0..=1.0).contains(&self.optimizer.ema_momentum) {
            return Err(bad(
                "optimizer.ema_momentum",
                format!(
                    "must be between 0 and 1, got {}",
                    self.optimizer.ema_momentum
                ),
            ));
        }
        if self.optimizer.ema_overwrite_frequency == Some(0) {
            return Err(bad(
                "optimizer.ema_overwrite_frequency",
                "must be at least 1 (or left out: overwrite only at the end)".into(),
            ));
        }
        Ok(())
    }

    /// `[training] metrics`: names the task offers, each once.
    fn check_metric_names(&self, bad: &Bad<'_>) -> Result<(), CliError> {
        let metrics = self.describe().metrics;
        let available = &metrics.available;
        let mut seen = Vec::new();
        for name in self.metric_names() {
            if !available.contains(&name) {
                let why = if metrics.other_tasks.contains(&name) {
                    format!("`{name}` is not a metric of this model's task")
                } else {
                    format!("unknown metric `{name}`")
                };
                let names: Vec<String> = available.iter().map(|n| n.to_string()).collect();
                let suggestion = closest(&name, &names)
                    .map(|m| format!("; did you mean `{m}`?"))
                    .unwrap_or_default();
                return Err(bad(
                    "training.metrics",
                    format!("{why}; use {}{suggestion}", available.join(", ")),
                ));
            }
            if seen.contains(&name) {
                return Err(bad("training.metrics", format!("`{name}` is listed twice")));
            }
            seen.push(name);
        }
        Ok(())
    }

    /// `[outputs]` and `[[callbacks]]`: the monitors and file-name
    /// placeholders name metrics this config produces, and every callback
    /// builds.
    fn check_callbacks(&self, bad: &Bad<'_>) -> Result<(), CliError> {
        let metrics = self.produced_metrics();
        let known = |key: &str, name: &str| -> Result<(), CliError> {
            if metrics.iter().any(|m| m == name) {
                return Ok(());
            }
            let suggestion = closest(name, &metrics)
                .map(|m| format!("; did you mean `{m}`?"))
                .unwrap_or_default();
            Err(bad(
                key,
                format!(
                    "`{name}` is not a metric this config produces ({}){suggestion}",
                    metrics.join(", ")
                ),
            ))
        };
        // Keras warns and falls back to "auto" on an unknown mode; in a
        // config file it is a typo (a `max` metric read as `auto` picks the
        // wrong direction for names Keras cannot guess).
        let known_mode = |key: &str, mode: &str| -> Result<(), CliError> {
            const MODES: [&str; 3] = ["auto", "min", "max"];
            if MODES.contains(&mode) {
                return Ok(());
            }
            let message = format!("unknown mode `{mode}`, expected one of `auto`, `min`, `max`");
            Err(bad(key, with_suggestion(&message)))
        };
        if self.outputs.checkpoint {
            known(
                "outputs.checkpoint_monitor",
                &self.outputs.checkpoint_monitor,
            )?;
            known_mode("outputs.checkpoint_mode", &self.outputs.checkpoint_mode)?;
        }
        for (index, callback) in self.callbacks.iter().enumerate() {
            if let Some((key, message)) = unknown_reduce_lr_key(callback) {
                return Err(bad(&format!("callbacks[{index}].{key}"), message));
            }
            if let Err(e) = self.builds(callback) {
                return Err(bad(&format!("callbacks[{index}]"), e));
            }
            if let Some((monitor, mode)) = callback.monitor() {
                known(&format!("callbacks[{index}].monitor"), monitor)?;
                known_mode(&format!("callbacks[{index}].mode"), mode)?;
            }
            for key in callback.filepath_keys() {
                if !metrics.contains(&key) {
                    return Err(bad(
                        &format!("callbacks[{index}].filepath"),
                        format!(
                            "the placeholder {{{key}}} is not a log key this config produces; \
                             use {{epoch}}, {{batch}} or one of {}",
                            metrics.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether `callback` would build in this config (SwapEMAWeights needs
    /// the optimizer's moving average), or why not.
    fn builds(&self, callback: &CallbackConfig) -> Result<(), String> {
        match callback {
            CallbackConfig::SwapEMAWeights(_) if !self.optimizer.use_ema => Err(
                "SwapEMAWeights swaps in the optimizer's moving average: set \
                 `use_ema = true` in [optimizer]"
                    .to_string(),
            ),
            CallbackConfig::SwapEMAWeights(_) => Ok(()),
            CallbackConfig::StochasticWeightAveraging(c) => c.validate().map_err(|e| e.to_string()),
            other => other.build().map(drop).map_err(|e| e.to_string()),
        }
    }
}

/// A key of a ReduceLROnPlateau entry that it does not know, with the
/// message naming those it does. Keras ignores unknown ReduceLROnPlateau
/// arguments (**kwargs); in a config file an unknown key is almost always
/// a typo.
fn unknown_reduce_lr_key(callback: &CallbackConfig) -> Option<(String, String)> {
    let CallbackConfig::ReduceLROnPlateau(c) = callback else {
        return None;
    };
    let key = c.ignored.keys().next()?;
    const KNOWN: [&str; 8] = [
        "monitor",
        "factor",
        "patience",
        "verbose",
        "mode",
        "min_delta",
        "cooldown",
        "min_lr",
    ];
    let message = format!(
        "unknown field `{key}`, expected one of {}",
        KNOWN
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Some((key.clone(), with_suggestion(&message)))
}

/// The largest config file read (a config is a few KiB; anything this
/// large is not one).
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// Reads a config file's text: only a regular file (a device, FIFO or
/// directory is refused before it is opened, so `/dev/zero` or a FIFO
/// without a writer cannot hang the CLI), of at most [`MAX_CONFIG_BYTES`].
pub fn read_config_text(path: &Path) -> Result<String, CliError> {
    use std::io::Read;
    let cannot = |e: std::io::Error| {
        CliError::usage(format!(
            "{}: cannot read the config file: {e}",
            path.display()
        ))
    };
    check_config_file(path, &std::fs::metadata(path).map_err(cannot)?)?;
    // Opened without blocking (a FIFO put here since the check would
    // otherwise wait for a writer), then checked again on the open file.
    let file = open_nonblocking(path).map_err(cannot)?;
    check_config_file(path, &file.metadata().map_err(cannot)?)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_large(path));
    }
    String::from_utf8(bytes).map_err(|e| {
        CliError::usage(format!(
            "{}: not a text file (invalid UTF-8 at byte {}); give a TOML config file",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Refuses what is not a regular file, or is larger than [`MAX_CONFIG_BYTES`].
fn check_config_file(path: &Path, metadata: &std::fs::Metadata) -> Result<(), CliError> {
    if !metadata.is_file() {
        return Err(CliError::usage(format!(
            "{}: not a regular file ({}); give the path of a TOML config file",
            path.display(),
            file_kind(metadata)
        )));
    }
    if metadata.len() > MAX_CONFIG_BYTES {
        return Err(too_large(path));
    }
    Ok(())
}

fn too_large(path: &Path) -> CliError {
    CliError::usage(format!(
        "{}: larger than {} MiB, too large for a config file; give the path of a TOML config file",
        path.display(),
        MAX_CONFIG_BYTES >> 20
    ))
}

/// What a path that is not a regular file is, in words.
fn file_kind(metadata: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let kind = metadata.file_type();
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "a device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if metadata.is_dir() {
        "a directory"
    } else {
        "not a plain file"
    }
}

fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options.open(path)
}

/// Makes the one-line error of a key (with where its value came from).
type Bad<'a> = dyn Fn(&str, String) -> CliError + 'a;

/// Where a key's value came from, for error messages: the `--set` that
/// last set it, else the config file and the key's line.
struct Origin<'a> {
    path: &'a Path,
    text: &'a str,
    sets: &'a [String],
    /// A flag applied after the sets: the key it set, and how to show it.
    flag: Option<(&'a str, &'a str)>,
}

impl Origin<'_> {
    fn of(&self, key: &str) -> String {
        let key_path = normalise_key(key);
        if let Some((_, shown)) = self.flag.filter(|(k, _)| normalise_key(k) == key_path) {
            return shown.to_string();
        }
        let from_set = self.sets.iter().rev().find(|set| {
            let set_key = normalise_key(set.split_once('=').map_or(set.as_str(), |(k, _)| k));
            !set_key.is_empty()
                && (key_path == set_key
                    || key_path.starts_with(&format!("{set_key}."))
                    || set_key.starts_with(&format!("{key_path}.")))
        });
        match from_set {
            Some(set) => format!("--set {set}"),
            None => format!(
                "{}{}",
                self.path.display(),
                locate(self.text, key)
                    .map(|l| format!(":{l}"))
                    .unwrap_or_default()
            ),
        }
    }
}

/// The dotted path of every value in `value` that is not a table
/// (`model.num_classes`, `model.channels`).
fn key_paths(prefix: &str, value: &toml::Value, out: &mut Vec<String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                key_paths(&path, value, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// `callbacks[0].patience` and `callbacks.0.patience` as one spelling.
fn normalise_key(key: &str) -> String {
    key.trim()
        .replace('[', ".")
        .replace(']', "")
        .trim_matches('.')
        .to_string()
}

/// The most similar name (Jaro-Winkler above 0.8), for "did you mean".
fn closest<'a>(wrong: &str, candidates: &'a [String]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(wrong, c), c.as_str()))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Parses the config file's text with the `--set` arguments applied.
///
/// Only the file's TOML syntax must hold on its own: its values are
/// checked in the merged document, so a value a `--set` replaces does not
/// matter. An error is one line: where the failing key's value came from
/// (the file and the key's line, or the `--set` that gave it), the key path
/// and serde's message with a suggestion.
fn parse(origin: &Origin<'_>) -> Result<Config, CliError> {
    let mut table: toml::Table = origin
        .text
        .parse()
        .map_err(|e| syntax_error(origin.path, origin.text, &e))?;
    for set in origin.sets {
        apply_set(&mut table, set)?;
    }
    serde_path_to_error::deserialize::<_, Config>(table.clone()).map_err(|e| {
        let key = e.path().to_string();
        let message = e.into_inner().message().to_string();
        let (key, message) = callback_error(&table, key, message);
        let key = section_error_key(&table, key, &message);
        value_error(origin, &key, &message)
    })
}

/// An error in a `[[callbacks]]` entry at the parameter that caused it.
///
/// The entry's `type` tag makes serde read it through a buffer, so the
/// error's path ends at the entry (`callbacks[0]`): the entry is read again
/// as its type's own parameters to find the key inside it
/// (`callbacks[0].patience`) and that read's message. Other errors, and
/// entries without a `type` string, are kept as they are.
fn callback_error(table: &toml::Table, key: String, message: String) -> (String, String) {
    let index = key
        .strip_prefix("callbacks[")
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|i| i.parse::<usize>().ok());
    let entry = index.and_then(|i| table.get("callbacks")?.get(i)?.as_table());
    let Some(mut parameters) = entry.cloned() else {
        return (key, message);
    };
    let Some(toml::Value::String(type_name)) = parameters.remove("type") else {
        return (key, message);
    };
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(parameters, &mut track);
    match CallbackConfig::from_parameters(&type_name, tracked) {
        Ok(_) => (key, message),
        Err(e) => match track.path().to_string() {
            inner if inner == "." => (key, e.message().to_string()),
            inner => (format!("{key}.{inner}"), e.message().to_string()),
        },
    }
}

/// The key inside `[model]` or `[data]` an error at the table itself is
/// about. The task reads these tables (tagged by `kind`) through a buffer,
/// so serde's path stops at the table: the key is the first whose removal
/// changes the error (the table then reads, or fails on something else,
/// such as that key missing). Other errors are kept as they are.
fn section_error_key(table: &toml::Table, key: String, message: &str) -> String {
    if !matches!(key.as_str(), "model" | "data") || named_field(message).is_some() {
        return key;
    }
    let Some(section) = table.get(&key).and_then(toml::Value::as_table) else {
        return key;
    };
    let culprit = section.keys().filter(|k| *k != "kind").find(|field| {
        let mut without = table.clone();
        let mut reduced = section.clone();
        reduced.remove(*field);
        without.insert(key.clone(), toml::Value::Table(reduced));
        match serde_path_to_error::deserialize::<_, Config>(without) {
            Ok(_) => true,
            Err(e) => e.into_inner().message() != message,
        }
    });
    match culprit {
        Some(field) => format!("{key}.{field}"),
        None => key,
    }
}

/// The error line of a value serde refused at key path `key` with
/// `message`: where the value came from ([`blamed_key`]), the key path and
/// the message with a suggestion.
fn value_error(origin: &Origin<'_>, key: &str, message: &str) -> CliError {
    let key = if key == "." { "" } else { key };
    let from = origin.of(&blamed_key(key, message));
    let message = in_plain_words(&with_suggestion(message));
    let shown = if key.is_empty() {
        message
    } else {
        format!("{key}: {message}")
    };
    CliError::usage(format!("{from}: {shown}"))
}

/// The key an error at `key` is about: an unknown or missing field's own
/// key (`training.epochz`, `data.target`) where serde's path stops at its
/// table, so the line is the field's own (or its table's, for a missing
/// one) and a `--set` of another key in the table is not named.
fn blamed_key(key: &str, message: &str) -> String {
    match named_field(message) {
        Some(field) if key.is_empty() => field.to_string(),
        Some(field) if key != field && !key.ends_with(&format!(".{field}")) => {
            format!("{key}.{field}")
        }
        _ => key.to_string(),
    }
}

/// `x` of serde's "unknown field `x`, expected …" and "missing field `x`".
fn named_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("missing field `"))?
        .split_once('`')
        .map(|(field, _)| field)
}

fn syntax_error(path: &Path, text: &str, e: &toml::de::Error) -> CliError {
    let line = e.span().map(|s| line_of(text, s.start));
    CliError::usage(format!(
        "{}{}: invalid TOML: {}",
        path.display(),
        line.map(|l| format!(":{l}")).unwrap_or_default(),
        e.message().trim()
    ))
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Adds "did you mean" to serde's "unknown field/variant `x`, expected one of `a`, `b`".
/// `message` with serde's Rust type names at its end ("…, expected usize")
/// said as what the key takes ("…, expected a whole number, 0 or more").
fn in_plain_words(message: &str) -> String {
    let Some((head, rust_type)) = message.rsplit_once("expected ") else {
        return message.to_string();
    };
    if rust_type.starts_with("internally tagged enum ") {
        return format!("{head}expected a table with its `kind`");
    }
    let plain = match rust_type {
        "usize" | "u64" | "u32" | "u16" | "u8" => "a whole number, 0 or more",
        "isize" | "i64" | "i32" | "i16" | "i8" => "a whole number",
        "f64" | "f32" => "a number",
        _ => return message.to_string(),
    };
    format!("{head}expected {plain}")
}

fn with_suggestion(message: &str) -> String {
    let message = message.trim();
    let (Some(start), true) = (message.find('`'), message.starts_with("unknown")) else {
        return message.to_string();
    };
    let rest = &message[start + 1..];
    let Some(end) = rest.find('`') else {
        return message.to_string();
    };
    let wrong = &rest[..end];
    let candidates: Vec<&str> = rest[end + 1..]
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect();
    let best = candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(wrong, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, suggestion)) => format!("{message}; did you mean `{suggestion}`?"),
        None => message.to_string(),
    }
}

/// The line of a key path (`callbacks[1].patience`, `training.epochs`,
/// also spelt `callbacks.1.patience`) in config text: of the key's value,
/// or, where the text leaves the key out, of the nearest table on its path
/// that the text gives (the `[data]` header for a missing `data.path`).
/// `None` when the text gives none of it or is not TOML.
pub fn locate(text: &str, path: &str) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let root = DeValue::Table(DeTable::parse(text).ok()?.into_inner());
    let mut current = &root;
    let mut line = None;
    for segment in normalise_key(path).split('.') {
        let next = match current {
            DeValue::Array(_) => segment.parse::<usize>().ok().and_then(|i| current.get(i)),
            _ => current.get(segment),
        };
        let Some(next) = next else { break };
        line = Some(line_of(text, next.span().start));
        current = next.get_ref();
    }
    line
}

/// Applies one `--set key.path=value` (the value is TOML: `3`, `1e-3`,
/// `"adam"`, `[32, 64]`); `callbacks[0].patience=5` reaches into a list.
pub fn apply_set(table: &mut toml::Table, set: &str) -> Result<(), CliError> {
    let usage = |why: &str| {
        CliError::usage(format!(
            "--set {set}: {why}; expected key.path=value, e.g. --set training.epochs=3"
        ))
    };
    let (key, raw) = set.split_once('=').ok_or_else(|| usage("no `=`"))?;
    let value = parse_set_value(raw.trim()).map_err(|why| {
        CliError::usage(format!(
            "--set {set}: not a valid TOML value ({why}); write a list as [32, 64], a table as \
             {{ a = 1 }}, a string as \"text\""
        ))
    })?;
    let mut segments: Vec<(String, Option<usize>)> = Vec::new();
    for part in key.trim().split('.') {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => {
                let index = rest
                    .strip_suffix(']')
                    .and_then(|i| i.parse::<usize>().ok())
                    .ok_or_else(|| usage(&format!("`{part}` is not `name[index]`")))?;
                (name, Some(index))
            }
            None => (part, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(usage(&format!("`{key}` is not a key path")));
        }
        segments.push((name.to_string(), index));
    }
    let (last, last_index) = segments.pop().expect("split yields one segment");
    let mut current = table;
    for (name, index) in segments {
        let entry = current
            .entry(name.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let entry = match (entry, index) {
            (toml::Value::Array(items), Some(i)) => {
                let len = items.len();
                items.get_mut(i).ok_or_else(|| {
                    usage(&format!("`{name}` has {len} entries, there is no [{i}]"))
                })?
            }
            (toml::Value::Array(_), None) => {
                return Err(usage(&format!(
                    "`{name}` is a list: name one of its entries, as `{name}[0]`"
                )));
            }
            (entry, None) => entry,
            (_, Some(_)) => return Err(usage(&format!("`{name}` is not a list in the config"))),
        };
        current = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(usage(&format!("`{name}` is not a table in the config"))),
        };
    }
    match last_index {
        None => {
            current.insert(last, value);
        }
        Some(i) => match current.get_mut(&last) {
            Some(toml::Value::Array(items)) if i < items.len() => items[i] = value,
            _ => return Err(usage(&format!("`{last}` has no entry [{i}]"))),
        },
    }
    Ok(())
}

/// A `--set` value: TOML if it parses; a plain word (`adam`,
/// `data/x.csv`) is a string. A value that starts as a list, table or
/// quoted string but does not parse is an error (TOML's message), not the
/// string of its characters.
fn parse_set_value(raw: &str) -> Result<toml::Value, String> {
    if !raw.starts_with(['[', '{', '"', '\'']) {
        return Ok(parse_value(raw));
    }
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .map_err(|e| {
            e.message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(", ")
        })?
        .remove("v")
        .ok_or_else(|| "no value".to_string())
}

/// A `--set` value: TOML if it parses, else a plain string.
pub fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}
