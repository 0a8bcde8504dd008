//! The process's task behind one object-safe trait: what the commands call.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use burn::data::dataset::Dataset;
use burn::data::dataset::transform::PartialDataset;
use burn::module::Module;
use burn::prelude::Device;
use burn::train::InferenceStep;
use burnfit_callbacks::averaging::blend;
use burnfit_callbacks::engine::{BatchLoss, encode_module_record};

use super::{Predict, Runnable, Task, TaskData, TaskRunner, TestMetrics, Which};
use crate::config::{Config, TrainingConfig};
use crate::data::loader;
use crate::error::{CliError, CliResult};
use crate::fit::{Ended, Loaders, Setup};
use crate::inference::{check_count, for_each_batch, load_weights};
use crate::resume::{ProcessLedger, this_process};
use crate::run_dir::RunDir;
use crate::shuffle::{EpochCell, EpochShuffled, IntervalStream};
use crate::tables::{DataContext, Description, KeyError, Section, TableReader};

/// What the commands need of the process's task, whatever its types (and
/// what the config needs of it: [`TableReader`]).
pub(crate) trait Runner: TableReader {
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
    /// The mean of the weights in `weights` (`burnfit average`), encoded as
    /// a checkpoint file.
    fn average(&self, config: &Config, weights: &[PathBuf], device: &Device) -> CliResult<Vec<u8>>;
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

/// Data loaded and checked, ready to train on.
pub(crate) trait Loaded {
    /// Items in the training, validation and test sets.
    fn sizes(&self) -> (usize, usize, usize);
    /// The `[model]` table as the model trains on this data
    /// ([`Task::model_for_data`]): what the run's `config.toml` records.
    fn model(&self) -> Section;
    /// Trains in the started run directory.
    fn train(self: Box<Self>, setup: &mut Setup, run: &RunDir) -> CliResult<Ended>;
}

static RUNNER: OnceLock<Arc<dyn Runner>> = OnceLock::new();

/// Makes `task` the process's task (the first call wins), for the commands
/// and for the config's tables.
pub(crate) fn install(task: impl Runnable) {
    let TaskRunner(runner) = task.into_runner();
    crate::tables::install(runner.clone());
    let _ = RUNNER.set(runner);
}

/// The process's task.
///
/// # Panics
///
/// Before [`crate::run`] installed one.
pub(crate) fn current() -> &'static dyn Runner {
    RUNNER
        .get()
        .expect("burnfit_cli::run installs the task before a command runs")
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

    /// The data of `config`, loaded and checked, and the model config as
    /// it trains on that data.
    fn data(
        &self,
        config: &Config,
        data_dir: Option<&Path>,
    ) -> CliResult<(TaskData<T::Item>, T::ModelConfig)> {
        let mut data = self
            .0
            .data(
                config.data.typed::<T::DataConfig>(),
                &Self::context(config, data_dir),
            )
            .map_err(|e| config.locate(e))?;
        limit_batches(&mut data, &config.training);
        check_sizes(&data, config.training.batch_size).map_err(|e| config.locate(e))?;
        self.0
            .check_data(config.model.typed(), config.data.typed(), &data)
            .map_err(|e| config.key_error(e))?;
        let model = self
            .0
            .model_for_data(
                config.model.typed(),
                config.data.typed(),
                &data,
                &config.given(),
            )
            .map_err(|e| config.key_error(e))?;
        Ok((data, model))
    }
}

/// The first batches of the training and validation sets, as
/// `overfit_batches`, `fast_dev_run` and `limit_val_batches` ask (the test
/// set is left whole).
fn limit_batches<I: Clone + Send + Sync + 'static>(
    data: &mut TaskData<I>,
    training: &TrainingConfig,
) {
    let limits = training.batch_limits();
    let first = |set: &Arc<dyn Dataset<I>>, batches: usize| -> Arc<dyn Dataset<I>> {
        let items = batches.saturating_mul(training.batch_size).min(set.len());
        Arc::new(PartialDataset::new(set.clone(), 0, items))
    };
    if let Some(batches) = limits.train {
        data.train = first(&data.train, batches);
    }
    if limits.valid_is_train {
        data.valid = data.train.clone();
    } else if let Some(batches) = limits.valid {
        data.valid = first(&data.valid, batches);
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
        return Err(crate::data::batch_too_large(batch, train));
    }
    Ok(())
}

impl<T: Task> TableReader for Single<T> {
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

    fn describe(&self, model: &Section, data: &Section) -> Description {
        let model = model.typed::<T::ModelConfig>();
        Description {
            kind: self.0.kind(model),
            convolutional: self.0.is_convolutional(model),
            parameters: self.0.parameter_count(model),
            metrics: self.0.metric_names(),
            data_path_key: self.0.data_path_key(data.typed()),
            data_keys: self.0.data_keys(model, data.typed()),
        }
    }

    fn check(&self, model: &Section, data: &Section) -> Result<(), KeyError> {
        self.0.check(model.typed(), data.typed())
    }
}

impl<T: Task> Runner for Single<T> {
    fn load(&self, config: &Config, data_dir: Option<&Path>) -> CliResult<Box<dyn Loaded>> {
        let (data, model) = self.data(config, data_dir)?;
        Ok(Box::new(LoadedData {
            task: self.0.clone(),
            data,
            model,
        }))
    }

    fn evaluate(
        &self,
        config: &Config,
        weights: &Path,
        device: &Device,
        checkpoint: &str,
    ) -> CliResult<(TestMetrics, String)> {
        let (data, model_config) = self.data(config, None)?;
        let model = self.0.model(&model_config, &data, device)?;
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

    fn average(&self, config: &Config, weights: &[PathBuf], device: &Device) -> CliResult<Vec<u8>> {
        let (data, model_config) = self.data(config, None)?;
        // `blend` averages the parameters that take gradients: load the
        // models on the autodiff form of the device.
        let device = device.clone().autodiff();
        let mut average = None;
        for (count, path) in weights.iter().enumerate() {
            let model = self.0.model(&model_config, &data, &device)?;
            let model = load_weights(model, path)?;
            // The running mean: the k-th model weighs 1/k.
            average = Some(match average {
                None => model,
                Some(mean) => blend(mean, &model, 1.0 / (count + 1) as f64),
            });
        }
        let mean = average.ok_or_else(|| CliError::failed("average: no checkpoint to average"))?;
        let encode = encode_module_record(mean.into_record());
        encode().map_err(|e| CliError::failed(format!("averaged weights: {e}")))
    }
}

/// A task's data, loaded, and its model config as it trains on it.
struct LoadedData<T: Task> {
    task: Arc<T>,
    data: TaskData<T::Item>,
    model: T::ModelConfig,
}

impl<T: Task> Loaded for LoadedData<T> {
    fn sizes(&self) -> (usize, usize, usize) {
        self.data.sizes()
    }

    fn model(&self) -> Section {
        Section::new(self.model.clone())
    }

    fn train(self: Box<Self>, setup: &mut Setup, run: &RunDir) -> CliResult<Ended> {
        let LoadedData {
            task,
            data,
            model: model_config,
        } = *self;
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
        // This process, for the summary of a run that a later one resumes.
        let this = this_process(&setup.backend, &setup.devices, setup.resume.as_ref());
        setup
            .extra_callbacks
            .push(Box::new(ProcessLedger::new(this)));
        // Burn trains a model whose parameters live on an autodiff device.
        let device = setup.backend.device.clone().autodiff();
        let config = &setup.config;
        // The loaders give each device its share of a step's batch.
        let batch = config.training.batch_size / setup.devices.list.len();
        let workers = config.training.workers;
        let seed = config.training.seed;
        device.seed(seed);
        let epoch = EpochCell::default();
        let shuffle = config.training.batch_limits().shuffle;
        let train: Arc<dyn Dataset<T::Item>> = match config.training.val_check_interval {
            Some(steps) => Arc::new(IntervalStream::new(
                data.train.clone(),
                steps * config.training.batch_size,
                shuffle.then_some(seed),
                epoch.clone(),
            )),
            None if shuffle => {
                Arc::new(EpochShuffled::new(data.train.clone(), seed, epoch.clone()))
            }
            None => data.train.clone(),
        };
        // The items of one epoch.
        let n_train = train.len();
        let model = task.model(&model_config, &data, &device)?;
        let batcher = task.batcher();
        let train = loader(batcher.clone(), train, batch, workers);
        let valid = loader(batcher, data.valid.clone(), batch, workers);
        let names = config.metric_names();
        let loaders = Loaders {
            train,
            valid,
            n_train,
            epoch,
        };
        crate::fit::fit::<T::Model>(setup, run, model, loaders, |t| {
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
    fn of(&self, model: &Section, data: &Section) -> &dyn Runner {
        match (self.pick)(model.typed(), data.typed()) {
            Which::First => &self.first,
            Which::Second => &self.second,
        }
    }
}

impl<A, B> TableReader for Pair<A, B, A::ModelConfig, A::DataConfig>
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

    fn describe(&self, model: &Section, data: &Section) -> Description {
        self.of(model, data).describe(model, data)
    }

    fn check(&self, model: &Section, data: &Section) -> Result<(), KeyError> {
        self.of(model, data).check(model, data)
    }
}

impl<A, B> Runner for Pair<A, B, A::ModelConfig, A::DataConfig>
where
    A: Task,
    B: Task<ModelConfig = A::ModelConfig, DataConfig = A::DataConfig>,
{
    fn load(&self, config: &Config, data_dir: Option<&Path>) -> CliResult<Box<dyn Loaded>> {
        self.of(&config.model, &config.data).load(config, data_dir)
    }

    fn evaluate(
        &self,
        config: &Config,
        weights: &Path,
        device: &Device,
        checkpoint: &str,
    ) -> CliResult<(TestMetrics, String)> {
        self.of(&config.model, &config.data)
            .evaluate(config, weights, device, checkpoint)
    }

    fn predict(&self, job: PredictJob<'_>) -> CliResult<()> {
        self.of(&job.config.model, &job.config.data).predict(job)
    }

    fn average(&self, config: &Config, weights: &[PathBuf], device: &Device) -> CliResult<Vec<u8>> {
        self.of(&config.model, &config.data)
            .average(config, weights, device)
    }
}
