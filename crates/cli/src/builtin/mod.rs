//! burnfit's own tasks: the zoo's image classifiers on IDX images, and the
//! MLP regressor on CSV tables. The `burnfit` binary is [`crate::run`] over
//! [`tasks`]: both are [`Task`]s like a user's, with nothing private.

mod parameters;
mod predict;

use burn::prelude::*;
use burn::train::ClassificationOutput;
use burn::train::SupervisedTraining;
use burnfit_models::data::{
    ImageBatcher, ImageItem, RegressionBatcher, RegressionItem, fashion_mnist,
};
use burnfit_models::nets::MlpRegressor;
use burnfit_models::{Classifier, ModelConfig};

use crate::config::{CsvDataConfig, DataConfig, ImageDataConfig, ImageFolderConfig};
use crate::data::{Data, TableInputs, load_builtin};
use crate::error::{CliError, CliResult};
use crate::image_folder::FolderInputs;
use crate::task::{
    DataContext, Given, KeyError, MetricNames, Predict, Select, Task, TaskData, TestMetrics, Which,
};

/// Image classification: `[model] kind = "mlp" | "cnn" | "simple_cnn" |
/// "resnet"` on `[data] kind = "fashion_mnist" | "mnist" | "image_folder"`.
/// On an image folder, the model's input keys and class count follow the
/// images ([`ModelConfig::for_images`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct ImageClassification;

/// Table regression: `[model] kind = "mlp_regressor"` on `[data] kind = "csv"`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TableRegression;

/// The `burnfit` binary's tasks: images, or a CSV table, by `[data] kind`.
pub fn tasks() -> Select<ImageClassification, TableRegression> {
    Select::new(ImageClassification, TableRegression, |_, data| match data {
        DataConfig::Csv(_) => Which::Second,
        _ => Which::First,
    })
}

/// The key of `[data]` that `--data` replaces.
fn data_path_key(config: &DataConfig) -> &'static str {
    match config {
        DataConfig::Csv(_) => "path",
        _ => "dir",
    }
}

fn model_error(e: impl std::fmt::Display) -> CliError {
    CliError::usage(format!("model: {e}"))
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| n.to_string()).collect()
}

/// Checks shared by both tasks: the model's own, and the data's ranges.
fn check_tables(model: &ModelConfig, data: &DataConfig) -> Result<(), KeyError> {
    if let Err(e) = model.validate() {
        return Err(KeyError::new("model", e.to_string()));
    }
    let regression = model.task() == burnfit_models::nets::Task::Regression;
    match data {
        DataConfig::FashionMnist(d) | DataConfig::Mnist(d) => {
            if regression {
                return Err(KeyError::new(
                    "model.kind",
                    format!(
                        "`{}` is a regression model; {} images train a classifier (mlp, cnn, \
                         simple_cnn or resnet)",
                        model.kind(),
                        data_kind(data)
                    ),
                ));
            }
            check_idx_data(d, matches!(data, DataConfig::Mnist(_)))
        }
        DataConfig::ImageFolder(f) => {
            check_folder_data(f)?;
            if regression {
                return Err(KeyError::new(
                    "model.kind",
                    format!(
                        "`{}` is a regression model; an image folder trains a classifier \
                         (mlp, cnn, simple_cnn or resnet)",
                        model.kind()
                    ),
                ));
            }
            Ok(())
        }
        DataConfig::Csv(d) => {
            if !regression {
                return Err(KeyError::new(
                    "model.kind",
                    format!(
                        "`{}` is a classification model; a CSV table trains a regressor \
                         (mlp_regressor)",
                        model.kind()
                    ),
                ));
            }
            check_csv_data(d)
        }
    }
}

/// Whether `x` is a fraction strictly between 0 and 1 (a split).
fn in_open_unit(x: f64) -> bool {
    x > 0.0 && x < 1.0
}

/// IDX images (MNIST when `mnist`, else Fashion-MNIST): a directory for
/// MNIST (the default one holds Fashion-MNIST), a validation split, limits
/// of at least one item.
fn check_idx_data(d: &ImageDataConfig, mnist: bool) -> Result<(), KeyError> {
    if mnist && d.dir.is_none() {
        return Err(KeyError::new(
            "data.dir",
            format!(
                "left out, but its default ({}) holds Fashion-MNIST, not MNIST: set data.dir \
                 to the directory of the MNIST files, or kind = \"fashion_mnist\"",
                fashion_mnist::DEFAULT_DIR
            ),
        ));
    }
    if !in_open_unit(d.validation_split) {
        return Err(KeyError::new(
            "data.validation_split",
            format!(
                "must be between 0 and 1 (exclusive), got {}: without validation data \
                 val_loss is undefined",
                d.validation_split
            ),
        ));
    }
    for (key, limit) in [
        ("data.limit_train", d.limit_train),
        ("data.limit_test", d.limit_test),
    ] {
        if limit == Some(0) {
            return Err(KeyError::new(
                key,
                "must be at least 1 (or left out for all items)",
            ));
        }
    }
    Ok(())
}

/// An image folder: its split, if given, and the size images are resized to.
fn check_folder_data(f: &ImageFolderConfig) -> Result<(), KeyError> {
    if let Some(split) = f.validation_split.filter(|s| !in_open_unit(*s)) {
        return Err(KeyError::new(
            "data.validation_split",
            format!("must be between 0 and 1 (exclusive), got {split}"),
        ));
    }
    if f.image_size == Some(0) {
        return Err(KeyError::new(
            "data.image_size",
            "must be at least 1 (or left out to keep the images' own size)",
        ));
    }
    Ok(())
}

/// A CSV table: its validation and test splits.
fn check_csv_data(d: &CsvDataConfig) -> Result<(), KeyError> {
    for (key, split) in [
        ("data.validation_split", d.validation_split),
        ("data.test_split", d.test_split),
    ] {
        if !in_open_unit(split) {
            return Err(KeyError::new(
                key,
                format!("must be between 0 and 1 (exclusive), got {split}"),
            ));
        }
    }
    Ok(())
}

/// The `[data] kind` of IDX images, for messages.
fn data_kind(data: &DataConfig) -> &'static str {
    match data {
        DataConfig::Mnist(_) => "mnist",
        DataConfig::FashionMnist(_) => "fashion_mnist",
        DataConfig::ImageFolder(_) => "image_folder",
        DataConfig::Csv(_) => "csv",
    }
}

/// A model for IDX images takes its input keys and class count from the
/// config: they must match the images (`[channels, height, width]`) and
/// leave no label without an output.
fn check_idx(model: &ModelConfig, shape: [usize; 3], classes: usize) -> Result<(), KeyError> {
    let labels = format!(
        "the data's labels are 0 to {} ({classes} classes)",
        classes - 1
    );
    check_sizes(model, shape, classes, &labels)
}

/// The input keys and class count of `model` against images of `[channels,
/// height, width]` and `classes` classes (`labels` says what they are, for
/// the message).
fn check_sizes(
    model: &ModelConfig,
    [channels, height, width]: [usize; 3],
    classes: usize,
    labels: &str,
) -> Result<(), KeyError> {
    let mismatch = |key: &str, value: usize, data: String, want: usize| {
        Err(KeyError::new(
            format!("model.{key}"),
            format!(
                "is {value}, but the data's {data}; set model.{key} = {want} (or leave it out)"
            ),
        ))
    };
    let (in_channels, image_size, input_size, num_classes) = match model {
        ModelConfig::Mlp(c) => (None, None, Some(c.input_size), c.num_classes),
        ModelConfig::Cnn(c) => (Some(c.in_channels), Some(c.image_size), None, c.num_classes),
        ModelConfig::SimpleCnn(c) => (Some(c.in_channels), Some(c.image_size), None, c.num_classes),
        ModelConfig::ResNet(c) => (Some(c.in_channels), None, None, c.num_classes),
        ModelConfig::MlpRegressor(_) => return Ok(()),
    };
    if let Some(value) = in_channels.filter(|&v| v != channels) {
        return mismatch(
            "in_channels",
            value,
            format!("images have {channels} channel(s)"),
            channels,
        );
    }
    if let Some(value) = image_size.filter(|&v| v != height || v != width) {
        return mismatch(
            "image_size",
            value,
            format!("images are {width}x{height} (width x height)"),
            height,
        );
    }
    let pixels = channels * height * width;
    if let Some(value) = input_size.filter(|&v| v != pixels) {
        return mismatch(
            "input_size",
            value,
            format!("images have {pixels} values ({channels}x{width}x{height})"),
            pixels,
        );
    }
    check_num_classes(num_classes, classes, labels)
}

/// A class count the config gives, against the data's `classes` (`data`
/// says what they are, for the message): fewer leave labels without an
/// output (an error), more leave outputs that are never a label (a
/// warning).
fn check_num_classes(num_classes: usize, classes: usize, data: &str) -> Result<(), KeyError> {
    if num_classes < classes {
        return Err(KeyError::new(
            "model.num_classes",
            format!(
                "is {num_classes}, but {data}; set model.num_classes = {classes} \
                 (or leave it out)"
            ),
        ));
    }
    if num_classes > classes {
        eprintln!(
            "warning: model.num_classes = {num_classes}, but the data has {classes} classes: \
             {} outputs are never a label",
            num_classes - classes
        );
    }
    Ok(())
}

/// A classifier's class count (`None` for the regressor).
fn num_classes(model: &ModelConfig) -> Option<usize> {
    match model {
        ModelConfig::Mlp(c) => Some(c.num_classes),
        ModelConfig::Cnn(c) => Some(c.num_classes),
        ModelConfig::SimpleCnn(c) => Some(c.num_classes),
        ModelConfig::ResNet(c) => Some(c.num_classes),
        ModelConfig::MlpRegressor(_) => None,
    }
}

/// The model keys that follow an image folder when the config leaves
/// them out (those of the model's kind: an MLP has `input_size` only).
const FOLDER_KEYS: [&str; 4] = [
    "model.in_channels",
    "model.image_size",
    "model.input_size",
    "model.num_classes",
];

/// The classifier `model` on an image folder of `classes` classes and
/// images of `shape`: its input keys and class count follow the folder
/// where the config leaves them out ([`ModelConfig::for_images`]); those
/// it gives are checked as on IDX images (another input size: an error;
/// fewer classes than class folders: an error; more: a warning, and the
/// model has them).
fn folder_model(
    model: &ModelConfig,
    shape: [usize; 3],
    classes: &[String],
    given: &Given,
) -> Result<ModelConfig, KeyError> {
    let count = classes.len();
    let asked = num_classes(model).filter(|_| given.contains("model.num_classes"));
    let follows = model
        .for_images(shape, asked.unwrap_or(count))
        .map_err(|e| KeyError::new("model", e.to_string()))?;
    let labels = format!(
        "the image folder has {count} class folders ({})",
        classes.join(", ")
    );
    check_sizes(&with_given(&follows, model, given)?, shape, count, &labels)?;
    Ok(follows)
}

/// `follows` with the values `model` has at the keys of [`FOLDER_KEYS`]
/// the config gives.
fn with_given(
    follows: &ModelConfig,
    model: &ModelConfig,
    given: &Given,
) -> Result<ModelConfig, KeyError> {
    let table = |m: &ModelConfig| match toml::Value::try_from(m) {
        Ok(toml::Value::Table(t)) => Ok(t),
        _ => Err(KeyError::new("model", "cannot be written as TOML")),
    };
    let (mut out, of_model) = (table(follows)?, table(model)?);
    for key in FOLDER_KEYS.iter().filter(|k| given.contains(k)) {
        let name = key.trim_start_matches("model.");
        if let Some(value) = of_model.get(name) {
            out.insert(name.to_string(), value.clone());
        }
    }
    toml::Value::Table(out)
        .try_into()
        .map_err(|e| KeyError::new("model", e.to_string()))
}

/// A model on an image folder follows the images
/// ([`ModelConfig::for_images`], [`folder_model`]): their size
/// (`image_size`, the size `data.image_size` resized them to, or their
/// own) must be one the model takes.
fn check_folder(
    model: &ModelConfig,
    shape: [usize; 3],
    classes: usize,
    image_size: Option<usize>,
) -> Result<(), KeyError> {
    let [channels, height, width] = shape;
    let Err(e) = model.for_images(shape, classes) else {
        return Ok(());
    };
    let takes = |size: usize| model.for_images([channels, size, size], classes).is_ok();
    let near = height.max(width);
    let suggestion = (0..=near)
        .flat_map(|d| [near + d, near.saturating_sub(d)])
        .find(|&s| s > 0 && takes(s));
    let kind = model.kind();
    let what = if height != width {
        format!(
            "left out, and the images are {width}x{height} (width x height), but `{kind}` takes square images"
        )
    } else {
        let reason = match e {
            burnfit_models::nets::ModelConfigError::Invalid { message, .. } => message,
            other => other.to_string(),
        };
        match image_size {
            Some(size) => {
                format!("is {size}, but `{kind}` cannot take {size}x{size} images ({reason})")
            }
            None => format!(
                "left out, and the images are {width}x{height}, which `{kind}` cannot take ({reason})"
            ),
        }
    };
    let fix = match suggestion {
        Some(size) => {
            format!("set data.image_size = {size} to resize every image to {size}x{size}")
        }
        None => "set data.image_size to a size the model takes".to_string(),
    };
    Err(KeyError::new("data.image_size", format!("{what}; {fix}")))
}

impl Task for ImageClassification {
    type ModelConfig = ModelConfig;
    type DataConfig = DataConfig;
    type Model = Classifier;
    type Item = ImageItem;
    type Batcher = ImageBatcher;

    fn model(
        &self,
        config: &ModelConfig,
        _data: &TaskData<ImageItem>,
        device: &Device,
    ) -> CliResult<Classifier> {
        // On an image folder, `model_for_data` sized it for the images.
        config.init_classifier(device).map_err(model_error)
    }

    fn data(&self, config: &DataConfig, context: &DataContext) -> CliResult<TaskData<ImageItem>> {
        match load_builtin(config, context)? {
            Data::Images {
                train,
                valid,
                test,
                folder,
            } => {
                let mut data = TaskData::new(train, valid, test);
                if let Some(inputs) = folder {
                    // What `predict` needs to read new images as these were.
                    data.run_files
                        .push((FolderInputs::FILE.into(), inputs.to_bytes()));
                    data.classes = Some(inputs.classes);
                }
                Ok(data)
            }
            Data::Table { .. } => unreachable!("a CSV config is the table task's"),
        }
    }

    fn batcher(&self) -> ImageBatcher {
        ImageBatcher
    }

    fn data_path_key(&self, config: &DataConfig) -> Option<&'static str> {
        Some(data_path_key(config))
    }

    fn kind(&self, config: &ModelConfig) -> String {
        config.kind().to_string()
    }

    fn is_convolutional(&self, config: &ModelConfig) -> bool {
        config.is_convolutional()
    }

    fn check(&self, model: &ModelConfig, data: &DataConfig) -> Result<(), KeyError> {
        check_tables(model, data)
    }

    fn check_data(
        &self,
        model: &ModelConfig,
        config: &DataConfig,
        data: &TaskData<ImageItem>,
    ) -> Result<(), KeyError> {
        let Ok(first) = data.train.get(0) else {
            return Ok(());
        };
        match (&data.classes, config) {
            (Some(classes), DataConfig::ImageFolder(f)) => {
                check_folder(model, first.shape, classes.len(), f.image_size)
            }
            _ => check_idx(model, first.shape, fashion_mnist::NUM_CLASSES),
        }
    }

    fn model_for_data(
        &self,
        model: &ModelConfig,
        config: &DataConfig,
        data: &TaskData<ImageItem>,
        given: &Given,
    ) -> Result<ModelConfig, KeyError> {
        match (&data.classes, config, data.train.get(0)) {
            (Some(classes), DataConfig::ImageFolder(_), Ok(first)) => {
                folder_model(model, first.shape, classes, given)
            }
            _ => Ok(model.clone()),
        }
    }

    fn data_keys(&self, _model: &ModelConfig, config: &DataConfig) -> Vec<String> {
        match config {
            DataConfig::ImageFolder(_) => names(&FOLDER_KEYS),
            _ => Vec::new(),
        }
    }

    fn parameter_count(&self, config: &ModelConfig) -> Option<(u128, &'static str)> {
        Some(parameters::lower_bound(config))
    }

    fn metric_names(&self) -> MetricNames {
        MetricNames {
            available: names(crate::metrics::CLASSIFICATION),
            default: vec!["accuracy".into()],
            other_tasks: names(crate::metrics::REGRESSION),
        }
    }

    fn register_metrics(
        &self,
        training: SupervisedTraining<Classifier>,
        names: &[String],
    ) -> SupervisedTraining<Classifier> {
        crate::metrics::register_classification(training, names)
    }

    fn correct(&self, output: &ClassificationOutput) -> Option<usize> {
        Some(crate::task::right_classes(output))
    }

    fn eval_line(&self, metrics: &TestMetrics, checkpoint: &str) -> String {
        format!(
            "test ({} images, {checkpoint} checkpoint): loss {:.4}, accuracy {:.4}",
            metrics.count,
            metrics.loss,
            metrics.accuracy.unwrap_or(f64::NAN)
        )
    }

    fn predict(&self, job: Predict<'_, Self>) -> CliResult<()> {
        predict::images(job)
    }
}

impl Task for TableRegression {
    type ModelConfig = ModelConfig;
    type DataConfig = DataConfig;
    type Model = MlpRegressor;
    type Item = RegressionItem;
    type Batcher = RegressionBatcher;

    fn model(
        &self,
        config: &ModelConfig,
        data: &TaskData<RegressionItem>,
        device: &Device,
    ) -> CliResult<MlpRegressor> {
        let features = data
            .train
            .get(0)
            .map(|item| item.features.len())
            .map_err(|e| CliError::failed(format!("the training set's first row: {e}")))?;
        config.init_regressor(features, device).map_err(model_error)
    }

    fn data(
        &self,
        config: &DataConfig,
        context: &DataContext,
    ) -> CliResult<TaskData<RegressionItem>> {
        match load_builtin(config, context)? {
            Data::Table {
                train,
                valid,
                test,
                scaler,
            } => {
                // What `predict` needs, so that it reads no training data.
                let inputs = TableInputs::new(&train, &scaler);
                let mut data = TaskData::new(train, valid, test);
                data.run_files
                    .push((TableInputs::FILE.into(), inputs.to_bytes()));
                Ok(data)
            }
            Data::Images { .. } => unreachable!("an image config is the image task's"),
        }
    }

    fn batcher(&self) -> RegressionBatcher {
        RegressionBatcher
    }

    fn data_path_key(&self, config: &DataConfig) -> Option<&'static str> {
        Some(data_path_key(config))
    }

    fn kind(&self, config: &ModelConfig) -> String {
        config.kind().to_string()
    }

    fn check(&self, model: &ModelConfig, data: &DataConfig) -> Result<(), KeyError> {
        check_tables(model, data)
    }

    fn check_data(
        &self,
        model: &ModelConfig,
        _config: &DataConfig,
        data: &TaskData<RegressionItem>,
    ) -> Result<(), KeyError> {
        let (ModelConfig::MlpRegressor(config), Ok(first)) = (model, data.train.get(0)) else {
            return Ok(());
        };
        let features = first.features.len();
        if config.input_size != 0 && config.input_size != features {
            return Err(KeyError::new(
                "model.input_size",
                format!(
                    "is {}, but the table has {features} feature columns; set \
                     model.input_size = {features}, or leave it out to follow the table",
                    config.input_size
                ),
            ));
        }
        Ok(())
    }

    fn parameter_count(&self, config: &ModelConfig) -> Option<(u128, &'static str)> {
        Some(parameters::lower_bound(config))
    }

    fn metric_names(&self) -> MetricNames {
        MetricNames {
            available: names(crate::metrics::REGRESSION),
            default: Vec::new(),
            other_tasks: names(crate::metrics::CLASSIFICATION),
        }
    }

    fn register_metrics(
        &self,
        training: SupervisedTraining<MlpRegressor>,
        names: &[String],
    ) -> SupervisedTraining<MlpRegressor> {
        crate::metrics::register_regression(training, names)
    }

    fn eval_line(&self, metrics: &TestMetrics, checkpoint: &str) -> String {
        format!(
            "test ({} rows, {checkpoint} checkpoint): mse {:.4}",
            metrics.count, metrics.loss
        )
    }

    fn predict(&self, job: Predict<'_, Self>) -> CliResult<()> {
        predict::table(job)
    }
}
