//! The built-in tasks' predictions: classes of IDX images, values of CSV
//! rows.

use std::path::{Path, PathBuf};

use burnfit_models::Classifier;
use burnfit_models::data::fashion_mnist::{CLASS_NAMES, PIXEL_MEAN, PIXEL_STD};
use burnfit_models::data::{
    ImageBatch, ImageBatcher, ImageDataset, RegressionBatch, RegressionBatcher, idx,
};
use burnfit_models::nets::MlpRegressor;

use super::{ImageClassification, TableRegression};
use crate::config::DataConfig;
use crate::data::{Data, TableInputs};
use crate::error::{CliError, CliResult};
use crate::image_folder::{FolderInputs, image_files};
use crate::inference::{check_count, output_values};
use crate::tables::DataContext;
use crate::task::Predict;

/// The image classifier's predictions: the class of each image, with its
/// probability. An IDX run reads an IDX file; an image-folder run reads an
/// image file or a folder of them, as training read its images.
pub fn images(job: Predict<'_, ImageClassification>) -> CliResult<()> {
    if let DataConfig::ImageFolder(_) = job.data_config {
        return folder_images(job);
    }
    let input = job.input;
    let images = idx::read_images(input).map_err(|e| match e {
        idx::IdxError::BadMagic { .. } => CliError::usage(format!(
            "{e} This run trained on IDX images, so predict reads an IDX images file such as \
             t10k-images-idx3-ubyte.gz"
        )),
        e => CliError::usage(e.to_string()),
    })?;
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
    let classes: Vec<String> = match job.data_config {
        // MNIST's classes are its digits.
        DataConfig::Mnist(_) => (0..10).map(|digit| digit.to_string()).collect(),
        _ => CLASS_NAMES.iter().map(|c| c.to_string()).collect(),
    };
    let printed = print_classes(&job, job.load(model)?, dataset, &classes, &[])?;
    check_count(printed, n, &input.display().to_string())
}

/// What an image-folder run's `predict` reads, said where an input is not
/// an image it can decode (an IDX file, say).
const FOLDER_INPUTS: &str = "this run trained on an image folder, so predict reads PNG or JPEG \
                             images: give one, or a folder of them";

/// An image-folder run's predictions: each image file of the input (a
/// file, or a folder read recursively in name order), its path last.
fn folder_images(job: Predict<'_, ImageClassification>) -> CliResult<()> {
    let inputs = FolderInputs::read(job.run_root)?;
    let mut files = image_files(job.input)?;
    if files.is_empty() {
        return Err(CliError::usage(format!(
            "{}: no PNG or JPEG images to predict",
            job.input.display()
        )));
    }
    files.truncate(job.limit.unwrap_or(files.len()));
    let mut pixels = Vec::new();
    for file in &files {
        let (image, shape) = inputs.decode.read(file, FOLDER_INPUTS)?;
        if shape != inputs.shape {
            return Err(CliError::usage(format!(
                "{}: is {}x{} with {} channel(s), this run's model takes {}x{} with {}; train \
                 with data.image_size to resize images of any size",
                file.display(),
                shape[2],
                shape[1],
                shape[0],
                inputs.shape[2],
                inputs.shape[1],
                inputs.shape[0]
            )));
        }
        pixels.extend_from_slice(&image);
    }
    // The class count the run trained with: its config.toml records it.
    let classes = super::num_classes(job.model_config).unwrap_or(inputs.classes.len());
    let model = job
        .model_config
        .for_images(inputs.shape, classes)
        .and_then(|c| c.init_classifier(job.device))
        .map_err(|e| CliError::usage(format!("model: {e}")))?;
    let dataset = inputs.dataset(pixels, files.len());
    let printed = print_classes(&job, job.load(model)?, dataset, &inputs.classes, &files)?;
    check_count(printed, files.len(), &job.input.display().to_string())
}

/// Prints `index, class, name, probability` (and the file, where given)
/// for each image of `dataset`; returns the lines printed.
fn print_classes(
    job: &Predict<'_, ImageClassification>,
    model: Classifier,
    dataset: ImageDataset,
    classes: &[String],
    files: &[PathBuf],
) -> CliResult<usize> {
    let mut index = 0;
    job.each_batch(dataset, ImageBatcher, |batch: ImageBatch| {
        let probabilities = burn::tensor::activation::softmax(model.forward(batch.images), 1);
        let [rows, width] = probabilities.dims();
        let values = output_values(probabilities.into_data())?;
        for row in 0..rows {
            let p = &values[row * width..(row + 1) * width];
            let (best, prob) = p
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, v)| (i, *v))
                .unwrap_or((0, 0.0));
            let name = classes.get(best).map_or("?", String::as_str);
            match files.get(index) {
                Some(file) => println!("{index}\t{best}\t{name}\t{prob:.4}\t{}", file.display()),
                None => println!("{index}\t{best}\t{name}\t{prob:.4}"),
            }
            index += 1;
        }
        Ok(())
    })?;
    Ok(index)
}

/// The table regressor's predictions: the value of each row of a CSV file.
pub fn table(job: Predict<'_, TableRegression>) -> CliResult<()> {
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
    context: &DataContext,
) -> CliResult<TableInputs> {
    if let Some(inputs) = TableInputs::read(run_root) {
        return inputs;
    }
    let DataConfig::Csv(c) = data else {
        return Err(CliError::usage(format!(
            "{}: data.kind: this run's model is a regressor, which reads a CSV table, but its \
             data is not one; give the run's config.toml the [data] it was trained with",
            run_root.join("config.toml").display()
        )));
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
