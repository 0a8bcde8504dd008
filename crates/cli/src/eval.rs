//! `burnfit eval` and `burnfit predict`: using a run's checkpoint.

use std::path::{Path, PathBuf};

use burn::data::dataloader::DataLoader;
use burn::module::Module;
use burn::prelude::*;
use burn::store::ModuleRecord;
use burnfit_models::Classifier;
use burnfit_models::data::fashion_mnist::{CLASS_NAMES, PIXEL_MEAN, PIXEL_STD};
use burnfit_models::data::{ImageBatcher, ImageDataset, RegressionBatcher, idx};
use burnfit_models::nets::MlpRegressor;

use crate::backend;
use crate::config::{BackendChoice, Config};
use crate::data::{Data, load_data, loader};
use crate::error::{CliError, CliResult};
use crate::run_dir::RunDir;

/// Test-set metrics of a model.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TestMetrics {
    /// Mean loss.
    pub loss: f64,
    /// Accuracy (classification only).
    pub accuracy: Option<f64>,
    /// Items evaluated.
    pub count: usize,
}

fn checkpoint_path(run: &RunDir, which: &str) -> CliResult<PathBuf> {
    let (path, ours) = match which {
        "best" => (run.best_checkpoint(), true),
        "last" => (run.last_checkpoint(), true),
        "final" => (run.final_checkpoint(), true),
        other => (PathBuf::from(other), false),
    };
    let bytes = std::fs::read(&path).map_err(|e| {
        CliError::usage(format!(
            "{}: no such checkpoint ({e}; use --checkpoint best|last|final|PATH; the run may \
             have stopped before its first checkpoint, and only weight averaging writes final)",
            path.display()
        ))
    })?;
    // The run's own weights files end with a checksum: a damaged one is
    // reported rather than loaded.
    let damaged = |why: &str| {
        CliError::usage(format!(
            "{}: {why}; evaluate the other checkpoint (--checkpoint {})",
            path.display(),
            if which == "best" { "last" } else { "best" }
        ))
    };
    match burnfit_callbacks::checkpoint_file::verify_trailer(&bytes) {
        Ok(true) => {}
        Ok(false) if ours => return Err(damaged("no checksum: the file is truncated")),
        Ok(false) => {}
        Err(e) => return Err(damaged(&e)),
    }
    Ok(path)
}

fn load_weights<M: Module>(model: M, path: &Path) -> CliResult<M> {
    let record = ModuleRecord::load(path).map_err(|e| {
        CliError::usage(format!(
            "{}: cannot read the checkpoint: {e}",
            path.display()
        ))
    })?;
    model.try_load_record(record).map_err(|e| {
        CliError::usage(format!(
            "{}: the checkpoint does not fit this run's model: {e}",
            path.display()
        ))
    })
}

/// Evaluates the checkpoint `which` of the run in `run_dir` on its test set.
pub fn evaluate(
    run_dir: &Path,
    which: &str,
    choice: Option<BackendChoice>,
) -> CliResult<TestMetrics> {
    let run = RunDir::open(run_dir)?;
    let config: Config = run.read_config()?;
    let path = checkpoint_path(&run, which)?;
    let convolutional = config.model.is_convolutional();
    let device = backend::choose(choice.unwrap_or(config.training.backend), convolutional)?.device;
    let batch = config.training.batch_size;
    match load_data(&config, None)? {
        Data::Images { test, .. } => {
            let model = config
                .model
                .init_classifier(&device)
                .map_err(|e| CliError::usage(format!("model: {e}")))?;
            let model = load_weights(model, &path)?.valid();
            let test = loader(ImageBatcher::default(), test, batch, 1).to_device(&device);
            Ok(classify_all(&model, test.as_ref()))
        }
        Data::Table { test, .. } => {
            let model = config
                .model
                .init_regressor(test.num_features(), &device)
                .map_err(|e| CliError::usage(format!("model: {e}")))?;
            let model = load_weights(model, &path)?.valid();
            let test = loader(RegressionBatcher, test, batch, 1).to_device(&device);
            let (mut sum, mut count) = (0.0f64, 0usize);
            for batch in test.iter() {
                let batch = batch.map_err(|e| CliError::usage(e.to_string()))?;
                let n = batch.targets.dims()[0];
                let output = model.forward_regression(batch);
                sum += output.loss.into_scalar::<f32>() as f64 * n as f64;
                count += n;
            }
            Ok(TestMetrics {
                loss: sum / count.max(1) as f64,
                accuracy: None,
                count,
            })
        }
    }
}

fn classify_all(
    model: &Classifier,
    test: &dyn DataLoader<burnfit_models::data::ImageBatch>,
) -> TestMetrics {
    let (mut loss_sum, mut correct, mut count) = (0.0f64, 0usize, 0usize);
    for batch in test.iter().flatten() {
        let n = batch.targets.dims()[0];
        let targets = batch.targets.clone();
        let output = model.forward_classification(batch);
        loss_sum += output.loss.into_scalar::<f32>() as f64 * n as f64;
        let predicted = output.output.argmax(1).reshape([n]);
        correct += predicted.equal(targets).int().sum().into_scalar::<i64>() as usize;
        count += n;
    }
    TestMetrics {
        loss: loss_sum / count.max(1) as f64,
        accuracy: Some(correct as f64 / count.max(1) as f64),
        count,
    }
}

/// `burnfit eval`.
pub fn eval_command(run_dir: &Path, which: &str, choice: Option<BackendChoice>) -> CliResult<()> {
    let metrics = evaluate(run_dir, which, choice)?;
    match metrics.accuracy {
        Some(acc) => println!(
            "test ({} images, {which} checkpoint): loss {:.4}, accuracy {:.4}",
            metrics.count, metrics.loss, acc
        ),
        None => println!(
            "test ({} rows, {which} checkpoint): mse {:.4}",
            metrics.count, metrics.loss
        ),
    }
    // Kept in the run for `best` and `last` (a checkpoint given by path may
    // lie anywhere: nothing is written for it). A run that cannot be written
    // to (read-only, archived) is still evaluated.
    if which == "best" || which == "last" {
        let run = RunDir::open(run_dir)?;
        let path = run.root.join(format!("test_metrics_{which}.json"));
        if let Err(e) = burnfit_callbacks::atomic::write_atomic(
            &path,
            &serde_json::to_vec_pretty(&metrics).expect("json"),
        ) {
            eprintln!(
                "warning: {}: not written ({})",
                path.display(),
                crate::run_dir::io_reason(&e)
            );
        }
    }
    Ok(())
}

/// `burnfit predict`: classes of the images in an IDX file, or values of CSV rows.
pub fn predict_command(run_dir: &Path, input: &Path, limit: Option<usize>) -> CliResult<()> {
    let run = RunDir::open(run_dir)?;
    let config = run.read_config()?;
    let path = checkpoint_path(&run, "best").or_else(|_| checkpoint_path(&run, "last"))?;
    let convolutional = config.model.is_convolutional();
    let device = backend::choose(config.training.backend, convolutional)?.device;
    if config.model.task() == burnfit_models::Task::Regression {
        return predict_table(&config, &path, input, limit, &device);
    }
    let images = idx::read_images(input).map_err(|e| CliError::usage(e.to_string()))?;
    if (images.rows, images.cols) != (28, 28) {
        return Err(CliError::usage(format!(
            "{}: images are {}x{}, this run's model takes 28x28 images",
            input.display(),
            images.rows,
            images.cols
        )));
    }
    let n = limit.unwrap_or(images.count).min(images.count);
    let labels = vec![0u8; n];
    let pixels = images.pixels[..n * images.image_len()].to_vec();
    let dataset = ImageDataset::new(
        pixels,
        labels,
        images.rows,
        images.cols,
        PIXEL_MEAN,
        PIXEL_STD,
    );
    let model = config
        .model
        .init_classifier(&device)
        .map_err(|e| CliError::usage(format!("model: {e}")))?;
    let model = load_weights(model, &path)?.valid();
    let test = loader(ImageBatcher::default(), dataset, 256, 1).to_device(&device);
    let mut index = 0;
    for batch in test.iter().flatten() {
        let probabilities = burn::tensor::activation::softmax(model.forward(batch.images), 1);
        let [rows, classes] = probabilities.dims();
        let values = probabilities
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        for row in 0..rows {
            let p = &values[row * classes..(row + 1) * classes];
            let (best, prob) = p
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, v)| (i, *v))
                .unwrap_or((0, 0.0));
            let name = CLASS_NAMES.get(best).copied().unwrap_or("?");
            println!("{index}\t{best}\t{name}\t{prob:.4}");
            index += 1;
        }
    }
    Ok(())
}

fn predict_table(
    config: &Config,
    weights: &Path,
    input: &Path,
    limit: Option<usize>,
    device: &Device,
) -> CliResult<()> {
    let crate::config::DataConfig::Csv(c) = &config.data else {
        return Err(CliError::usage(
            "this run's model is a regressor but its data is not a CSV table",
        ));
    };
    // Standardise with the training split's statistics, as in training.
    let Data::Table { scaler, .. } = load_data(config, None)? else {
        unreachable!("a CSV config loads a table");
    };
    let mut table = burnfit_models::data::Table::from_csv(
        input,
        &burnfit_models::data::TableConfig::new(c.target.clone()).with_features(c.features.clone()),
    )
    .map_err(|e| CliError::usage(e.to_string()))?;
    if table.num_features() != scaler.mean.len() {
        return Err(CliError::usage(format!(
            "{}: {} feature columns, the model was trained on {}",
            input.display(),
            table.num_features(),
            scaler.mean.len()
        )));
    }
    scaler.apply(&mut table);
    let model: MlpRegressor = config
        .model
        .init_regressor(table.num_features(), device)
        .map_err(|e| CliError::usage(format!("model: {e}")))?;
    let model = load_weights(model, weights)?.valid();
    let n = limit.unwrap_or(table.len()).min(table.len());
    let dataset =
        burnfit_models::data::TableDataset::new(table.select(&(0..n).collect::<Vec<_>>()));
    let test = loader(RegressionBatcher, dataset, 256, 1).to_device(device);
    let mut index = 0;
    for batch in test.iter().flatten() {
        let values = model
            .forward(batch.features)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        for v in values {
            println!("{index}\t{v}");
            index += 1;
        }
    }
    Ok(())
}
