//! `burnfit eval` and `burnfit predict`: using a run's checkpoint.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleRecord;
use burnfit_models::data::fashion_mnist::{CLASS_NAMES, PIXEL_MEAN, PIXEL_STD};
use burnfit_models::data::{
    ImageBatch, ImageBatcher, ImageDataset, RegressionBatch, RegressionBatcher, idx,
};
use burnfit_models::nets::MlpRegressor;

use crate::backend;
use crate::builtin::{ImageClassification, TableRegression};
use crate::config::{BackendChoice, Config, DataConfig};
use crate::data::{Data, TableInputs};
use crate::error::{CliError, CliResult};
use crate::run_dir::RunDir;
use crate::task::{Predict, PredictJob};

pub use crate::task::TestMetrics;

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

pub(crate) fn load_weights<M: Module>(model: M, path: &Path) -> CliResult<M> {
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

/// Evaluates the checkpoint `which` of the run in `run_dir` on its test
/// set: its metrics and the line that reports them.
pub fn evaluate(
    run_dir: &Path,
    which: &str,
    choice: Option<BackendChoice>,
) -> CliResult<(TestMetrics, String)> {
    let run = RunDir::open(run_dir)?;
    let config: Config = run.read_config()?;
    let path = checkpoint_path(&run, which)?;
    let task = crate::task::current();
    let convolutional = task.describe(&config).convolutional;
    let device = backend::choose(choice.unwrap_or(config.training.backend), convolutional)?.device;
    task.evaluate(&config, &path, &device, which)
}

/// Runs `each` on every batch, in order. A batch that failed to load is an
/// error naming it: never skipped, since a result over fewer items would
/// look complete.
pub(crate) fn for_each_batch<B, E: std::fmt::Display>(
    batches: impl Iterator<Item = Result<B, E>>,
    what: &str,
    mut each: impl FnMut(B) -> CliResult<()>,
) -> CliResult<()> {
    for (index, batch) in batches.enumerate() {
        let batch = batch.map_err(|e| {
            CliError::failed(format!(
                "{what}: batch {} could not be loaded ({e}); nothing was reported for a part of \
                 the data",
                index + 1
            ))
        })?;
        each(batch)?;
    }
    Ok(())
}

/// Fails unless every one of the `expected` items was evaluated.
pub(crate) fn check_count(count: usize, expected: usize, what: &str) -> CliResult<()> {
    if count == expected {
        return Ok(());
    }
    Err(CliError::failed(format!(
        "{what}: {count} of {expected} items were evaluated; the result would be incomplete"
    )))
}

/// The values of a model's output, as `f32` (whatever its float type).
fn output_values(data: burn::tensor::TensorData) -> CliResult<Vec<f32>> {
    data.try_into_vec_as::<f32>()
        .map_err(|e| CliError::failed(format!("cannot read the model's output: {e:?}")))
}

/// `burnfit eval`.
pub fn eval_command(run_dir: &Path, which: &str, choice: Option<BackendChoice>) -> CliResult<()> {
    let (metrics, line) = evaluate(run_dir, which, choice)?;
    println!("{line}");
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

/// `burnfit predict`: the task's predictions of the items in `input`.
pub fn predict_command(run_dir: &Path, input: &Path, limit: Option<usize>) -> CliResult<()> {
    let run = RunDir::open(run_dir)?;
    let config = run.read_config()?;
    let weights = checkpoint_path(&run, "best").or_else(|_| checkpoint_path(&run, "last"))?;
    let task = crate::task::current();
    let convolutional = task.describe(&config).convolutional;
    let device = backend::choose(config.training.backend, convolutional)?.device;
    task.predict(PredictJob {
        config: &config,
        run: &run,
        weights: &weights,
        input,
        limit,
        device: &device,
    })
}

/// The image classifier's predictions: the class of each image of an IDX
/// file, with its probability.
pub fn predict_images(job: Predict<'_, ImageClassification>) -> CliResult<()> {
    let input = job.input;
    let images = idx::read_images(input).map_err(|e| CliError::usage(e.to_string()))?;
    if (images.rows, images.cols) != (28, 28) {
        return Err(CliError::usage(format!(
            "{}: images are {}x{}, this run's model takes 28x28 images",
            input.display(),
            images.rows,
            images.cols
        )));
    }
    let n = job.limit.unwrap_or(images.count).min(images.count);
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
    let model = job
        .model_config
        .init_classifier(job.device)
        .map_err(|e| CliError::usage(format!("model: {e}")))?;
    let model = job.load(model)?;
    let mut index = 0;
    job.each_batch(dataset, ImageBatcher::default(), |batch: ImageBatch| {
        let probabilities = burn::tensor::activation::softmax(model.forward(batch.images), 1);
        let [rows, classes] = probabilities.dims();
        let values = output_values(probabilities.into_data())?;
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
        Ok(())
    })?;
    check_count(index, n, &input.display().to_string())
}

/// The table regressor's predictions: the value of each row of a CSV file.
pub fn predict_table(job: Predict<'_, TableRegression>) -> CliResult<()> {
    let input = job.input;
    let inputs = table_inputs(job.run_root, job.data_config, &job.data_context)?;
    // The target column is not needed (and left out of an input to predict).
    let mut table = burnfit_models::data::Table::features_from_csv(
        input,
        &burnfit_models::data::TableConfig::new(inputs.target.clone())
            .with_features(inputs.features.clone()),
    )
    .map_err(|e| CliError::usage(e.to_string()))?;
    if table.num_features() != inputs.scaler.mean.len() {
        return Err(CliError::usage(format!(
            "{}: {} feature columns, the model was trained on {}",
            input.display(),
            table.num_features(),
            inputs.scaler.mean.len()
        )));
    }
    // Standardised with the training split's statistics, as in training.
    inputs.scaler.apply(&mut table);
    let model: MlpRegressor = job
        .model_config
        .init_regressor(table.num_features(), job.device)
        .map_err(|e| CliError::usage(format!("model: {e}")))?;
    let model = job.load(model)?;
    let n = job.limit.unwrap_or(table.len()).min(table.len());
    let dataset =
        burnfit_models::data::TableDataset::new(table.select(&(0..n).collect::<Vec<_>>()));
    let mut index = 0;
    job.each_batch(dataset, RegressionBatcher, |batch: RegressionBatch| {
        for v in output_values(model.forward(batch.features).into_data())? {
            println!("{index}\t{v}");
            index += 1;
        }
        Ok(())
    })?;
    check_count(index, n, &input.display().to_string())
}

/// The feature columns and standardisation a CSV run was trained with: its
/// `table.json`, or (a run trained before burnfit kept it) fitted again
/// from the training CSV that `data.path` names.
fn table_inputs(
    run_root: &Path,
    data: &DataConfig,
    context: &crate::task::DataContext,
) -> CliResult<TableInputs> {
    if let Some(inputs) = TableInputs::read(run_root) {
        return inputs;
    }
    let DataConfig::Csv(c) = data else {
        return Err(CliError::usage(
            "this run's model is a regressor but its data is not a CSV table",
        ));
    };
    if c.path.is_relative() && !c.path.exists() {
        return Err(CliError::usage(format!(
            "{}: this run has no {} (trained by an older burnfit), and its data.path {} is \
             relative to the directory it was trained in; run predict from that directory",
            run_root.display(),
            TableInputs::FILE,
            c.path.display()
        )));
    }
    let Data::Table { train, scaler, .. } = crate::data::load_builtin(data, context)? else {
        unreachable!("a CSV config loads a table");
    };
    Ok(TableInputs::new(&train, &scaler))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_that_fails_to_load_is_an_error_not_a_smaller_result() {
        let batches = vec![Ok(1), Err("bad item 7"), Ok(3)];
        let mut seen = Vec::new();
        let result = for_each_batch(batches.into_iter(), "the test set", |b| {
            seen.push(b);
            Ok(())
        });
        let error = result.expect_err("a failed batch fails the command");
        assert!(error.message().contains("batch 2"), "{}", error.message());
        assert!(
            error.message().contains("bad item 7"),
            "{}",
            error.message()
        );
        assert_eq!(seen, [1], "nothing after the failed batch");
    }

    #[test]
    fn fewer_items_than_the_data_has_is_an_error() {
        assert!(check_count(200, 200, "the test set").is_ok());
        let error = check_count(150, 200, "the test set").expect_err("incomplete");
        assert!(
            error.message().contains("150 of 200"),
            "{}",
            error.message()
        );
    }
}
