//! Your own model and data with all of burnfit: the [`Task`] a binary
//! hands to [`crate::run`].
//!
//! A task says, once, how its model is built from the `[model]` table and
//! where its data comes from (the `[data]` table): both tables are the
//! task's own serde types, so unknown keys are refused with the file, the
//! line and a suggestion, as for burnfit's own networks. Everything else
//! (the run directory, `--resume`, `--devices`, `--remote`, sweeps,
//! `lr-find`, `eval`, callbacks from TOML) is burnfit's and works the same
//! for every task.
//!
//! Invariants:
//! - **One path for every model.** The `burnfit` binary is `run` over the
//!   built-in tasks ([`crate::builtin`]), which implement this trait with
//!   nothing a user's task could not write.
//! - **One task per process.** `run` records it before parsing anything;
//!   the config's `[model]` and `[data]` tables are read through it.

mod runner;

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::Device;
use burn::train::metric::{Adaptor, LossInput};
use burn::train::{InferenceStep, LearnerModel, SupervisedTraining, TrainStep};
use burnfit_callbacks::engine::BatchLoss;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::tables::{DataContext, Given, KeyError, MetricNames, Section};
pub(crate) use runner::{Loaded, PredictJob, Runner, current, install};

use crate::error::{CliError, CliResult};

/// A model and its data, described once: what `burnfit_cli::run` needs to
/// give a binary every burnfit command for that model.
///
/// Required: the two config types, [`Task::model`], [`Task::data`] and
/// [`Task::batcher`]. The rest has defaults.
pub trait Task: Send + Sync + 'static {
    /// The `[model]` table (serde; add `#[serde(deny_unknown_fields)]` so
    /// that a misspelt key is an error).
    type ModelConfig: Serialize + DeserializeOwned + Debug + Clone + Send + Sync + 'static;
    /// The `[data]` table.
    type DataConfig: Serialize + DeserializeOwned + Debug + Clone + Send + Sync + 'static;
    /// The Burn module trained: it implements Burn's `TrainStep` and
    /// `InferenceStep`, and its outputs give their loss ([`BatchLoss`], and
    /// Burn's loss metric). Burn's `ClassificationOutput` and
    /// `RegressionOutput` do both.
    type Model: LearnerModel
        + TrainStep<Output: BatchLoss + Adaptor<LossInput>>
        + InferenceStep<Output: BatchLoss + Adaptor<LossInput>>;
    /// One item of the datasets.
    type Item: Send + Sync + Clone + Debug + 'static;
    /// Makes the model's training and inference batches from items.
    type Batcher: Batcher<Self::Item, <Self::Model as TrainStep>::Input>
        + Batcher<Self::Item, <Self::Model as InferenceStep>::Input>
        + Clone
        + 'static;

    /// The model of `config` on `device`, freshly initialised. `data` is the
    /// loaded data, for a model whose shape follows it (a number of
    /// features or classes).
    fn model(
        &self,
        config: &Self::ModelConfig,
        data: &TaskData<Self::Item>,
        device: &Device,
    ) -> CliResult<Self::Model>;

    /// The training, validation and test sets of `config`. Every split
    /// must have items; burnfit checks that, and that a batch fits. An
    /// error about a key's value ([`CliError::at_key`]: the file
    /// `data.path` names cannot be read) is shown with where that value
    /// came from (the config's line, the `--set` or `--data`).
    fn data(
        &self,
        config: &Self::DataConfig,
        context: &DataContext,
    ) -> CliResult<TaskData<Self::Item>>;

    /// The batcher of both training and inference batches.
    fn batcher(&self) -> Self::Batcher;

    /// The key of `[data]` that the `--data` flag replaces (a directory or
    /// a file), such as `"dir"`. `None` (the default): the flag is refused.
    fn data_path_key(&self, _config: &Self::DataConfig) -> Option<&'static str> {
        None
    }

    /// The model's name in messages (`burnfit validate`); by default the
    /// model type's name.
    fn kind(&self, _config: &Self::ModelConfig) -> String {
        let full = std::any::type_name::<Self::Model>();
        let path = full.split('<').next().unwrap_or(full);
        path.rsplit("::").next().unwrap_or(path).to_string()
    }

    /// Whether the model has convolutions (the backend report warns that
    /// burn-ndarray's are slow).
    fn is_convolutional(&self, _config: &Self::ModelConfig) -> bool {
        false
    }

    /// Checks serde cannot make (ranges, combinations): `Err` names the
    /// key, such as `model.hidden` or `data.validation_split`.
    fn check(&self, _model: &Self::ModelConfig, _data: &Self::DataConfig) -> Result<(), KeyError> {
        Ok(())
    }

    /// Checks of the model config against the loaded data (its input
    /// shape, its number of classes), made before anything is created:
    /// `Err` names the key to change, its value and the data's. The
    /// default checks nothing.
    fn check_data(
        &self,
        _model: &Self::ModelConfig,
        _data_config: &Self::DataConfig,
        _data: &TaskData<Self::Item>,
    ) -> Result<(), KeyError> {
        Ok(())
    }

    /// The model config as it trains on `data`, made after
    /// [`Task::check_data`]: a model whose sizes follow the data (the class
    /// count of an image folder) gets them here, for the keys of
    /// [`Task::data_keys`] the config leaves out; a key the config gives
    /// (`given`) is checked against the data instead, and `Err` names it.
    /// The run's `config.toml` records the result, so that `eval`,
    /// `predict`, `average` and `--resume` build the model that trained.
    /// The default is `model` as it is.
    fn model_for_data(
        &self,
        model: &Self::ModelConfig,
        _data_config: &Self::DataConfig,
        _data: &TaskData<Self::Item>,
        _given: &Given,
    ) -> Result<Self::ModelConfig, KeyError> {
        Ok(model.clone())
    }

    /// The model keys (`model.num_classes`) that [`Task::model_for_data`]
    /// fills from the data when the config leaves them out. A `--resume`
    /// whose config leaves one out takes it from the data as the run did,
    /// and is refused if the data now gives another value. The default is
    /// none.
    fn data_keys(&self, _model: &Self::ModelConfig, _data: &Self::DataConfig) -> Vec<String> {
        Vec::new()
    }

    /// A lower bound of the model's parameters, with the key that sizes
    /// it: a model that cannot fit in memory is refused before anything is
    /// created. `None` (the default) checks nothing.
    fn parameter_count(&self, _config: &Self::ModelConfig) -> Option<(u128, &'static str)> {
        None
    }

    /// The metric names `[training] metrics` may list, and those used when
    /// it is left out.
    fn metric_names(&self) -> MetricNames {
        MetricNames::default()
    }

    /// Registers the metrics `names` (checked against
    /// [`Task::metric_names`]) with Burn's training. The loss is always
    /// registered (as `loss`).
    fn register_metrics(
        &self,
        training: SupervisedTraining<Self::Model>,
        _names: &[String],
    ) -> SupervisedTraining<Self::Model> {
        training
    }

    /// Items of an inference output whose prediction is right: with it,
    /// `burnfit eval` reports an accuracy.
    fn correct(&self, _output: &<Self::Model as InferenceStep>::Output) -> Option<usize> {
        None
    }

    /// The line `burnfit eval` prints.
    fn eval_line(&self, metrics: &TestMetrics, checkpoint: &str) -> String {
        let accuracy = metrics
            .accuracy
            .map(|a| format!(", accuracy {a:.4}"))
            .unwrap_or_default();
        format!(
            "test ({} items, {checkpoint} checkpoint): loss {:.4}{accuracy}",
            metrics.count, metrics.loss
        )
    }

    /// `burnfit predict RUN INPUT`: reads `INPUT` and prints one line per
    /// prediction. The default says the task has no prediction.
    fn predict(&self, job: Predict<'_, Self>) -> CliResult<()> {
        let _ = job;
        Err(CliError::usage(
            "predict: this task does not say how to read inputs or print predictions \
             (implement Task::predict)",
        ))
    }
}

/// Items of a classification output whose highest logit is the target:
/// what [`Task::correct`] returns for a classifier.
pub fn right_classes(output: &burn::train::ClassificationOutput) -> usize {
    let n = output.targets.dims()[0];
    let predicted = output.output.clone().argmax(1).reshape([n]);
    predicted
        .equal(output.targets.clone())
        .int()
        .sum()
        .into_scalar::<i64>() as usize
}

/// A task's data: three splits, and files for the run directory.
pub struct TaskData<I> {
    /// Training items.
    pub train: Arc<dyn Dataset<I>>,
    /// Validation items.
    pub valid: Arc<dyn Dataset<I>>,
    /// Test items (`burnfit eval`).
    pub test: Arc<dyn Dataset<I>>,
    /// Files written into the run directory when training starts, by name:
    /// what `predict` needs besides the weights (a scaler, a vocabulary).
    pub run_files: Vec<(String, Vec<u8>)>,
    /// The class names, where the data names them (an image folder's
    /// class folders): a classifier whose class count follows the data
    /// reads it here.
    pub classes: Option<Vec<String>>,
}

impl<I> TaskData<I> {
    /// Three splits and no run files.
    pub fn new(
        train: impl Dataset<I> + 'static,
        valid: impl Dataset<I> + 'static,
        test: impl Dataset<I> + 'static,
    ) -> Self {
        Self {
            train: Arc::new(train),
            valid: Arc::new(valid),
            test: Arc::new(test),
            run_files: Vec::new(),
            classes: None,
        }
    }

    /// Items in the training, validation and test sets.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.train.len(), self.valid.len(), self.test.len())
    }
}

/// Test-set metrics of a model.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TestMetrics {
    /// Mean loss.
    pub loss: f64,
    /// Accuracy, where the task counts right predictions.
    pub accuracy: Option<f64>,
    /// Items evaluated.
    pub count: usize,
}

/// What [`Task::predict`] gets: the run's config, its model with the
/// checkpoint's weights, and the input.
pub struct Predict<'a, T: Task + ?Sized> {
    /// The run's `[model]` table.
    pub model_config: &'a T::ModelConfig,
    /// The run's `[data]` table.
    pub data_config: &'a T::DataConfig,
    /// The run's data context (its batch size and seed; no `--data`).
    pub data_context: DataContext,
    /// The run directory (its `run_files` are there).
    pub run_root: &'a Path,
    /// The input file given on the command line.
    pub input: &'a Path,
    /// `--limit`: predict at most this many items.
    pub limit: Option<usize>,
    /// The device the model is on.
    pub device: &'a Device,
    load: &'a dyn Fn(T::Model) -> CliResult<T::Model>,
}

impl<T: Task + ?Sized> Predict<'_, T> {
    /// `model` (built on [`Predict::device`]) with the checkpoint's weights,
    /// ready for inference.
    pub fn load(&self, model: T::Model) -> CliResult<T::Model> {
        (self.load)(model)
    }

    /// Runs `each` on every batch of `items`, in order, failing on a batch
    /// that cannot be loaded (never skipping it).
    pub fn each_batch<O: Send + 'static>(
        &self,
        items: impl Dataset<T::Item> + 'static,
        batcher: impl Batcher<T::Item, O> + 'static,
        each: impl FnMut(O) -> CliResult<()>,
    ) -> CliResult<()> {
        let loader = crate::data::loader(batcher, items, 256, 1).to_device(self.device);
        crate::inference::for_each_batch(loader.iter(), &self.input.display().to_string(), each)
    }
}

/// Two tasks behind one binary, sharing their config types: `pick` says
/// which one a config is for. The `burnfit` binary is the image classifier
/// and the table regressor put together this way.
pub struct Select<A: Task, B> {
    first: A,
    second: B,
    pick: fn(&A::ModelConfig, &A::DataConfig) -> Which,
}

/// Which task of a [`Select`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// The first task.
    First,
    /// The second task.
    Second,
}

impl<A: Task, B: Task<ModelConfig = A::ModelConfig, DataConfig = A::DataConfig>> Select<A, B> {
    /// `first` and `second`, chosen per config by `pick`.
    pub fn new(first: A, second: B, pick: fn(&A::ModelConfig, &A::DataConfig) -> Which) -> Self {
        Self {
            first,
            second,
            pick,
        }
    }
}

/// What [`crate::run`] takes: a [`Task`], or tasks put together with
/// [`Select`].
pub trait Runnable {
    /// The process's runner.
    fn into_runner(self) -> TaskRunner;
}

/// A task ready to run (opaque).
pub struct TaskRunner(pub(crate) Arc<dyn Runner>);

impl<T: Task> Runnable for T {
    fn into_runner(self) -> TaskRunner {
        TaskRunner(Arc::new(runner::Single(Arc::new(self))))
    }
}

impl<A, B> Runnable for Select<A, B>
where
    A: Task,
    B: Task<ModelConfig = A::ModelConfig, DataConfig = A::DataConfig>,
{
    fn into_runner(self) -> TaskRunner {
        TaskRunner(Arc::new(runner::Pair {
            first: runner::Single(Arc::new(self.first)),
            second: runner::Single(Arc::new(self.second)),
            pick: self.pick,
        }))
    }
}
