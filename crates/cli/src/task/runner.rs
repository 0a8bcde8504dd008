//! The process's task behind one object-safe trait: what the commands call.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use burn::data::dataset::Dataset;
use burn::module::Module;
use burn::prelude::Device;
use burn::train::InferenceStep;
use burnfit_callbacks::engine::BatchLoss;

use super::{
    DataContext, KeyError, MetricNames, Predict, Runnable, Section, Task, TaskData, TaskRunner,
    TestMetrics, Which,
};
use crate::config::Config;
use crate::data::loader;
use crate::error::{CliError, CliResult};
use crate::eval::{check_count, for_each_batch, load_weights};
use crate::run_dir::RunDir;
use crate::shuffle::{EpochCell, EpochShuffled};
use crate::train::{Ended, Setup};

/// What the commands need of the process's task, whatever its types.
pub(crate) trait Runner: Send + Sync {
    /// Reads a `[model]` table.
    fn deserialize_model<'de>(
        &self,
        deserializer: &mut dyn erased_serde::Deserializer<'de>,
    ) -> Result<Section, erased_serde::Error>;
    /// Reads a `[data]` table.
    fn deserialize_data<'de>(
        &self,
        deserializer: &mut dyn erased_serde::Deserializer<'de>,
    ) -> Result<Section, erased_serde::Error>;
    /// The model's description.
    fn describe(&self, config: &Config) -> Description;
    /// The `[data]` key `--data` replaces.
    fn data_path_key(&self, config: &Config) -> Option<&'static str>;
    /// The task's own checks of its tables.
    fn check(&self, config: &Config) -> Result<(), KeyError>;
    /// Loads (and checks) the data.
    fn load(&self, config: &Config, data_dir: Option<&Path>) -> CliResult<Box<dyn Loaded>>;
    /// Test-set metrics of the weights in `weights`, and the line to print.
    fn evaluate(
        &self,
        config: &Config,
        weights: &Path,
        device: &Device,
        checkpoint: &str,
    ) -> CliResult<(TestMetrics, String)>;
    /// `burnfit predict`.
    fn predict(&self, job: PredictJob<'_>) -> CliResult<()>;
}

/// What `burnfit predict` asked for.
pub(crate) struct PredictJob<'a> {
    pub config: &'a Config,
    pub run: &'a RunDir,
    pub weights: &'a Path,
    pub input: &'a Path,
    pub limit: Option<usize>,
    pub device: &'a Device,
}

/// A model's description, from its config.
pub(crate) struct Description {
    /// Its name in messages.
    pub kind: String,
    /// Whether it has convolutions.
    pub convolutional: bool,
    /// A lower bound of its parameters and the key that sizes it.
    pub parameters: Option<(u128, &'static str)>,
    /// Its metrics.
    pub metrics: MetricNames,
}

/// Data loaded and checked, ready to train on.
pub(crate) trait Loaded {
    /// Items in the training, validation and test sets.
    fn sizes(&self) -> (usize, usize, usize);
    /// Trains in the started run directory.
    fn train(self: Box<Self>, setup: &Setup, run: &RunDir) -> CliResult<Ended>;
}

static RUNNER: OnceLock<Arc<dyn Runner>> = OnceLock::new();

/// Makes `task` the process's task (the first call wins).
pub(crate) fn install(task: impl Runnable) {
    let TaskRunner(runner) = task.into_runner();
    let _ = RUNNER.set(runner);
}

/// The process's task: the one `run` installed, else burnfit's own.
pub(crate) fn current() -> &'static dyn Runner {
    RUNNER
        .get_or_init(|| crate::builtin::tasks().into_runner().0)
        .as_ref()
}

/// One [`Task`].
pub(crate) struct Single<T>(pub Arc<T>);

impl<T: Task> Single<T> {
    fn context(config: &Config, data_dir: Option<&Path>) -> DataContext {
        DataContext {
            data_dir: data_dir.map(Path::to_path_buf),
            batch_size: config.training.batch_size,
            seed: config.training.seed,
        }
    }

    fn data(&self, config: &Config, data_dir: Option<&Path>) -> CliResult<TaskData<T::Item>> {
        let data = self.0.data(
            config.data.typed::<T::DataConfig>(),
            &Self::context(config, data_dir),
        )?;
        check_sizes(&data, config.training.batch_size)?;
        Ok(data)
    }
}

/// The checks every task's data gets: no split is empty, and a batch fits
/// in the training set.
fn check_sizes<I>(data: &TaskData<I>, batch: usize) -> CliResult<()> {
    let (train, valid, test) = data.sizes();
    for (split, n) in [("training", train), ("validation", valid), ("test", test)] {
        if n == 0 {
            return Err(CliError::usage(format!(
                "data: the {split} set is empty; give the data more items"
            )));
        }
    }
    if batch > train {
        return Err(CliError::usage(format!(
            "training.batch_size = {batch} is larger than the training set ({train} items); use \
             at most {train}"
        )));
    }
    Ok(())
}

impl<T: Task> Runner for Single<T> {
    fn deserialize_model<'de>(
        &self,
        deserializer: &mut dyn erased_serde::Deserializer<'de>,
    ) -> Result<Section, erased_serde::Error> {
        erased_serde::deserialize::<T::ModelConfig>(deserializer).map(Section::new)
    }

    fn deserialize_data<'de>(
        &self,
        deserializer: &mut dyn erased_serde::Deserializer<'de>,
    ) -> Result<Section, erased_serde::Error> {
        erased_serde::deserialize::<T::DataConfig>(deserializer).map(Section::new)
    }

    fn describe(&self, config: &Config) -> Description {
        let model = config.model.typed::<T::ModelConfig>();
        Description {
            kind: self.0.kind(model),
            convolutional: self.0.is_convolutional(model),
            parameters: self.0.parameter_count(model),
            metrics: self.0.metric_names(),
        }
    }

    fn data_path_key(&self, config: &Config) -> Option<&'static str> {
        self.0.data_path_key(config.data.typed())
    }

    fn check(&self, config: &Config) -> Result<(), KeyError> {
        self.0.check(config.model.typed(), config.data.typed())
    }

    fn load(&self, config: &Config, data_dir: Option<&Path>) -> CliResult<Box<dyn Loaded>> {
        Ok(Box::new(LoadedData {
            task: self.0.clone(),
            data: self.data(config, data_dir)?,
        }))
    }

    fn evaluate(
        &self,
        config: &Config,
        weights: &Path,
        device: &Device,
        checkpoint: &str,
    ) -> CliResult<(TestMetrics, String)> {
        let data = self.data(config, None)?;
        let model = self.0.model(config.model.typed(), &data, device)?;
        let model = load_weights(model, weights)?.valid();
        let batch = config.training.batch_size;
        let total = data.test.len();
        let test = loader(self.0.batcher(), data.test.clone(), batch, 1).to_device(device);
        let (mut loss_sum, mut correct, mut count) = (0.0f64, Some(0usize), 0usize);
        for_each_batch(test.iter(), "the test set", |batch_input| {
            // Batches come in order, all full but the last.
            let n = batch.min(total - count);
            let output = InferenceStep::step(&model, batch_input);
            let loss = output.batch_loss().ok_or_else(|| {
                CliError::failed("the model's inference output has no loss to evaluate")
            })?;
            loss_sum += loss * n as f64;
            correct = correct.zip(self.0.correct(&output)).map(|(a, b)| a + b);
            count += n;
            Ok(())
        })?;
        check_count(count, total, "the test set")?;
        let metrics = TestMetrics {
            loss: loss_sum / count.max(1) as f64,
            accuracy: correct.map(|c| c as f64 / count.max(1) as f64),
            count,
        };
        let line = self.0.eval_line(&metrics, checkpoint);
        Ok((metrics, line))
    }

    fn predict(&self, job: PredictJob<'_>) -> CliResult<()> {
        let weights = job.weights;
        let load = |model: T::Model| load_weights(model, weights).map(|m| m.valid());
        self.0.predict(Predict {
            model_config: job.config.model.typed(),
            data_config: job.config.data.typed(),
            data_context: Self::context(job.config, None),
            run_root: &job.run.root,
            input: job.input,
            limit: job.limit,
            device: job.device,
            load: &load,
        })
    }
}

/// A task's data, loaded.
struct LoadedData<T: Task> {
    task: Arc<T>,
    data: TaskData<T::Item>,
}

impl<T: Task> Loaded for LoadedData<T> {
    fn sizes(&self) -> (usize, usize, usize) {
        self.data.sizes()
    }

    fn train(self: Box<Self>, setup: &Setup, run: &RunDir) -> CliResult<Ended> {
        let LoadedData { task, data } = *self;
        for (name, bytes) in &data.run_files {
            let path = run.root.join(name);
            burnfit_callbacks::atomic::write_atomic(&path, bytes).map_err(|e| {
                CliError::failed(format!(
                    "{}: cannot write: {}",
                    path.display(),
                    crate::run_dir::io_reason(&e)
                ))
            })?;
        }
        // Burn trains a model whose parameters live on an autodiff device.
        let device = setup.backend.device.clone().autodiff();
        let config = &setup.config;
        // The loaders give each device its share of a step's batch.
        let batch = config.training.batch_size / setup.devices.list.len();
        let workers = config.training.workers;
        let seed = config.training.seed;
        device.seed(seed);
        let n_train = data.train.len();
        let epoch = EpochCell::default();
        let train = EpochShuffled::new(data.train.clone(), seed, epoch.clone());
        let model = task.model(config.model.typed(), &data, &device)?;
        let batcher = task.batcher();
        let train = loader(batcher.clone(), train, batch, workers);
        let valid = loader(batcher, data.valid.clone(), batch, workers);
        let names = config.metric_names();
        crate::train::fit::<T::Model>(setup, run, model, train, valid, n_train, epoch, |t| {
            task.register_metrics(crate::metrics::register_loss(t), &names)
        })
    }
}

/// Two tasks sharing their config types ([`super::Select`]).
pub(crate) struct Pair<A, B, M, D> {
    pub first: Single<A>,
    pub second: Single<B>,
    pub pick: fn(&M, &D) -> Which,
}

impl<A, B> Pair<A, B, A::ModelConfig, A::DataConfig>
where
    A: Task,
    B: Task<ModelConfig = A::ModelConfig, DataConfig = A::DataConfig>,
{
    fn of(&self, config: &Config) -> &dyn Runner {
        match (self.pick)(config.model.typed(), config.data.typed()) {
            Which::First => &self.first,
            Which::Second => &self.second,
        }
    }
}

impl<A, B> Runner for Pair<A, B, A::ModelConfig, A::DataConfig>
where
    A: Task,
    B: Task<ModelConfig = A::ModelConfig, DataConfig = A::DataConfig>,
{
    fn deserialize_model<'de>(
        &self,
        deserializer: &mut dyn erased_serde::Deserializer<'de>,
    ) -> Result<Section, erased_serde::Error> {
        self.first.deserialize_model(deserializer)
    }

    fn deserialize_data<'de>(
        &self,
        deserializer: &mut dyn erased_serde::Deserializer<'de>,
    ) -> Result<Section, erased_serde::Error> {
        self.first.deserialize_data(deserializer)
    }

    fn describe(&self, config: &Config) -> Description {
        self.of(config).describe(config)
    }

    fn data_path_key(&self, config: &Config) -> Option<&'static str> {
        self.of(config).data_path_key(config)
    }

    fn check(&self, config: &Config) -> Result<(), KeyError> {
        self.of(config).check(config)
    }

    fn load(&self, config: &Config, data_dir: Option<&Path>) -> CliResult<Box<dyn Loaded>> {
        self.of(config).load(config, data_dir)
    }

    fn evaluate(
        &self,
        config: &Config,
        weights: &Path,
        device: &Device,
        checkpoint: &str,
    ) -> CliResult<(TestMetrics, String)> {
        self.of(config)
            .evaluate(config, weights, device, checkpoint)
    }

    fn predict(&self, job: PredictJob<'_>) -> CliResult<()> {
        self.of(job.config).predict(job)
    }
}
