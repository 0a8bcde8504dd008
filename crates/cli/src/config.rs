//! The training configuration file (TOML) and its error messages.

use std::path::{Path, PathBuf};

use burnfit_callbacks::builtins::CallbackConfig;
use burnfit_models::ModelConfig;
use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// A whole training configuration, as written in `configs/*.toml`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Run name; defaults to the config file's stem.
    #[serde(default)]
    pub name: Option<String>,
    /// The network (`kind = "mlp" | "cnn" | "simple_cnn" | "resnet" | "mlp_regressor"`).
    pub model: ModelConfig,
    /// The dataset.
    pub data: DataConfig,
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
        }
    }
}

/// Backends the CLI can train on.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// A real GPU through wgpu if one exists, else the fastest CPU backend.
    #[default]
    Auto,
    /// wgpu (Vulkan/Metal/DX12; lavapipe counts as a software GPU).
    Wgpu,
    /// Burn's pure-Rust CPU backend.
    Flex,
    /// burn-ndarray (deprecated by Burn; fine for MLPs, very slow convolutions).
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
    /// Backend (`auto`, `wgpu`, `flex`, `ndarray`); `--backend` overrides it.
    pub backend: BackendChoice,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 64,
            seed: 42,
            workers: 2,
            backend: BackendChoice::Auto,
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
    /// The metric the default checkpoint follows.
    pub checkpoint_monitor: String,
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
            plots: true,
            progress: true,
        }
    }
}

impl Config {
    /// Reads, parses and checks a config file, applying `--set key.path=value` overrides.
    pub fn load(path: &Path, sets: &[String]) -> Result<Self, CliError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::usage(format!(
                "{}: cannot read the config file: {e}",
                path.display()
            ))
        })?;
        let config = parse(&text, path)?;
        if sets.is_empty() {
            config.check(path)?;
            return Ok(config);
        }
        let mut table: toml::Table = toml::from_str(&text).expect("parsed above");
        for set in sets {
            apply_set(&mut table, set)?;
        }
        let text = toml::to_string(&table).expect("a table serialises");
        let config = parse(&text, Path::new("--set"))
            .map_err(|e| CliError::usage(format!("{} (after applying --set)", e.message())))?;
        config.check(path)?;
        Ok(config)
    }

    /// The run name: `name`, else the file stem.
    pub fn run_name(&self, path: &Path) -> String {
        self.name.clone().unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".into())
        })
    }

    /// Checks values serde cannot check (ranges, combinations).
    fn check(&self, path: &Path) -> Result<(), CliError> {
        let bad = |key: &str, message: String| {
            let line = locate(&std::fs::read_to_string(path).unwrap_or_default(), key);
            CliError::usage(format!(
                "{}{}: {key}: {message}",
                path.display(),
                line.map(|l| format!(":{l}")).unwrap_or_default()
            ))
        };
        if self.training.epochs == 0 {
            return Err(bad("training.epochs", "must be at least 1".into()));
        }
        if self.training.batch_size == 0 {
            return Err(bad("training.batch_size", "must be at least 1".into()));
        }
        if !(self.optimizer.lr > 0.0 && self.optimizer.lr.is_finite()) {
            return Err(bad(
                "optimizer.lr",
                format!("must be a positive number, got {}", self.optimizer.lr),
            ));
        }
        let split = match &self.data {
            DataConfig::FashionMnist(d) | DataConfig::Mnist(d) => d.validation_split,
            DataConfig::Csv(d) => d.validation_split,
        };
        if !(0.0..1.0).contains(&split) {
            return Err(bad(
                "data.validation_split",
                format!("must be in [0, 1), got {split}"),
            ));
        }
        for (index, callback) in self.callbacks.iter().enumerate() {
            // Keras ignores unknown ReduceLROnPlateau arguments (**kwargs); in
            // a config file an unknown key is almost always a typo.
            if let CallbackConfig::ReduceLROnPlateau(c) = callback
                && let Some(key) = c.ignored.keys().next()
            {
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
                return Err(bad(
                    &format!("callbacks[{index}].{key}"),
                    with_suggestion(&message),
                ));
            }
            if let Err(e) = callback.build() {
                return Err(bad(&format!("callbacks[{index}]"), e.to_string()));
            }
        }
        Ok(())
    }
}

/// Parses config text, turning serde's errors into one line with the file,
/// line, key path and a suggestion.
fn parse(text: &str, path: &Path) -> Result<Config, CliError> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| syntax_error(path, text, &e))?;
    serde_path_to_error::deserialize::<_, Config>(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.message().to_string();
        let line = inner
            .span()
            .map(|s| line_of(text, s.start))
            .or_else(|| locate(text, &key));
        CliError::usage(format!(
            "{}{}: {}{}",
            path.display(),
            line.map(|l| format!(":{l}")).unwrap_or_default(),
            if key.is_empty() || key == "." {
                String::new()
            } else {
                format!("{key}: ")
            },
            with_suggestion(&message)
        ))
    })
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

/// Finds the line of a key path like `callbacks[1].patience` or
/// `training.epochs` in config text (best effort).
pub fn locate(text: &str, path: &str) -> Option<usize> {
    let mut parts: Vec<(String, Option<usize>)> = Vec::new();
    for part in path.split('.') {
        match part.find('[') {
            Some(i) => parts.push((
                part[..i].to_string(),
                part[i + 1..].trim_end_matches(']').parse().ok(),
            )),
            None => parts.push((part.to_string(), None)),
        }
    }
    let (section, index) = parts.first()?.clone();
    let key = if parts.len() > 1 {
        parts.last().map(|p| p.0.clone())
    } else {
        None
    };
    let mut in_section = false;
    let mut seen = 0usize;
    let mut section_line = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            let name = trimmed.trim_matches(|c| c == '[' || c == ']').trim();
            in_section = name == section
                && match index {
                    Some(i) => {
                        let hit = seen == i;
                        seen += 1;
                        hit
                    }
                    None => true,
                };
            if in_section {
                section_line = Some(n + 1);
            }
            continue;
        }
        if in_section && let Some(key) = &key {
            let name = trimmed.split('=').next().unwrap_or("").trim();
            if name == key {
                return Some(n + 1);
            }
        }
    }
    section_line
}

/// Applies one `--set key.path=value` (the value is TOML: `3`, `1e-3`, `"adam"`, `[32, 64]`).
pub fn apply_set(table: &mut toml::Table, set: &str) -> Result<(), CliError> {
    let (key, raw) = set.split_once('=').ok_or_else(|| {
        CliError::usage(format!(
            "--set {set}: expected key.path=value, e.g. --set training.epochs=3"
        ))
    })?;
    let value = parse_value(raw.trim());
    let mut parts: Vec<&str> = key.trim().split('.').collect();
    let last = parts
        .pop()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CliError::usage(format!("--set {set}: empty key")))?;
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(CliError::usage(format!(
                    "--set {set}: `{part}` is not a table in the config"
                )));
            }
        };
    }
    current.insert(last.to_string(), value);
    Ok(())
}

/// A `--set` value: TOML if it parses, else a plain string.
pub fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}
