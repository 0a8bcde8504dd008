//! The data a config names: loaded, split, checked, and its loaders.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataloader::DataLoader;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burnfit_models::data::fashion_mnist::{self, Split as IdxSplit};
use burnfit_models::data::{
    CsvError, IdxError, ImageDataset, ImageItem, OrderedDataLoader, Standardizer, SubsetDataset,
    Table, TableConfig, TableDataset, train_val_split,
};

use crate::config::{CsvDataConfig, DataConfig, ImageDataConfig};
use crate::error::{CliError, CliResult};
use crate::image_folder::FolderInputs;
use crate::tables::DataContext;

/// Train/validation/test data, ready for loaders.
pub enum Data {
    /// Image classification.
    Images {
        /// Training images.
        train: SubsetDataset<ImageDataset, ImageItem>,
        /// Validation images (held out of the training file).
        valid: SubsetDataset<ImageDataset, ImageItem>,
        /// The test images.
        test: SubsetDataset<ImageDataset, ImageItem>,
        /// An image folder's classes, shape and normalisation (`None` for
        /// IDX files: 10 classes of 28x28 grayscale images).
        folder: Option<FolderInputs>,
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

impl Data {
    /// Items in the training, validation and test sets.
    pub fn sizes(&self) -> (usize, usize, usize) {
        match self {
            Data::Images {
                train, valid, test, ..
            } => (train.len(), valid.len(), test.len()),
            Data::Table {
                train, valid, test, ..
            } => (train.len(), valid.len(), test.len()),
        }
    }

    /// Checks that every split has items and that a batch fits in the
    /// training set.
    pub fn check(&self, config: &DataConfig, batch: usize) -> CliResult<()> {
        let (train, valid, test) = self.sizes();
        let source = data_source(config);
        let empty = |split: &str, hint: &str| {
            CliError::usage(format!("{source}: the {split} set is empty; {hint}"))
        };
        if train == 0 {
            return Err(empty(
                "training",
                "raise data.limit_train or lower data.validation_split",
            ));
        }
        if valid == 0 {
            return Err(empty(
                "validation",
                "raise data.validation_split (or data.limit_train)",
            ));
        }
        if test == 0 {
            return Err(empty(
                "test",
                "raise data.limit_test / data.test_split, or use a data set with test items",
            ));
        }
        if batch > train {
            return Err(batch_too_large(batch, train));
        }
        Ok(())
    }
}

/// A `training.batch_size` of more items than the training set has, as an
/// error at that key (the config's [`crate::config::Config::locate`] adds
/// the file and line, or the `--set`).
pub(crate) fn batch_too_large(batch: usize, train: usize) -> CliError {
    CliError::at_key(
        "training.batch_size",
        format!("{batch} is larger than the training set ({train} items); use at most {train}"),
    )
}

/// The file or directory the data comes from, for messages.
fn data_source(config: &DataConfig) -> String {
    match config {
        DataConfig::FashionMnist(d) | DataConfig::Mnist(d) => d
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(fashion_mnist::DEFAULT_DIR))
            .display()
            .to_string(),
        DataConfig::Csv(c) => c.path.display().to_string(),
        DataConfig::ImageFolder(f) => f.dir.display().to_string(),
    }
}

/// Loads the data a built-in `[data]` table names (`--data` replaces the
/// directory or file) and checks it ([`Data::check`]).
pub fn load_builtin(config: &DataConfig, context: &DataContext) -> CliResult<Data> {
    let data = read(config, context.data_dir.as_deref(), context.seed)?;
    data.check(config, context.batch_size)?;
    Ok(data)
}

fn read(config: &DataConfig, data_override: Option<&Path>, seed: u64) -> CliResult<Data> {
    match config {
        DataConfig::FashionMnist(d) | DataConfig::Mnist(d) => {
            let mnist = matches!(config, DataConfig::Mnist(_));
            read_idx(d, mnist, data_override, seed)
        }
        DataConfig::ImageFolder(f) => {
            let folder = crate::image_folder::read(f, data_override, seed)?;
            Ok(Data::Images {
                train: folder.train,
                valid: folder.valid,
                test: folder.test,
                folder: Some(folder.inputs),
            })
        }
        DataConfig::Csv(c) => read_csv(c, data_override, seed),
    }
}

/// IDX images (MNIST when `mnist`, else Fashion-MNIST) from `data.dir` or
/// `--data`: the training file split into training and validation, the
/// test file whole, each cut to its `limit_*`.
fn read_idx(
    d: &ImageDataConfig,
    mnist: bool,
    data_override: Option<&Path>,
    seed: u64,
) -> CliResult<Data> {
    let dir = data_override
        .map(Path::to_path_buf)
        .or_else(|| d.dir.clone())
        .unwrap_or_else(|| PathBuf::from(fashion_mnist::DEFAULT_DIR));
    if dir.is_file() {
        return Err(CliError::at_key(
            "data.dir",
            format!(
                "{} is a file; give the directory that holds the IDX files",
                dir.display()
            ),
        ));
    }
    let load = |split| {
        fashion_mnist::load_raw(&dir, split).map_err(|e| match e {
            // The hint names Fashion-MNIST's package, which MNIST is not.
            IdxError::Missing { path, .. } if mnist => CliError::at_key(
                "data.dir",
                format!(
                    "{}: file not found; put MNIST's four IDX files (each may end in \
                     .gz) in that directory",
                    path.display()
                ),
            ),
            e => CliError::at_key("data.dir", e.to_string()),
        })
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
        .map_err(|e| CliError::at_key("data.validation_split", e.to_string()))?;
    let train_all = Arc::new(train_all);
    let test_len = test.len();
    Ok(Data::Images {
        train: SubsetDataset::new(train_all.clone(), split.train),
        valid: SubsetDataset::new(train_all, split.valid),
        test: SubsetDataset::new(Arc::new(test), (0..test_len).collect()),
        folder: None,
    })
}

/// A CSV table from `data.path` or `--data`, split into training,
/// validation and test rows, standardised by the training rows' statistics.
fn read_csv(c: &CsvDataConfig, data_override: Option<&Path>, seed: u64) -> CliResult<Data> {
    let path = data_override
        .map(Path::to_path_buf)
        .unwrap_or_else(|| c.path.clone());
    if path.is_dir() {
        return Err(CliError::at_key(
            "data.path",
            format!("{} is a directory; give the CSV file", path.display()),
        ));
    }
    let table = Table::from_csv(
        &path,
        &TableConfig::new(c.target.clone()).with_features(c.features.clone()),
    )
    .map_err(|e| CliError::at_key(csv_key(&e, c), e.to_string()))?;
    let order = train_val_split(table.len(), c.test_split, seed)
        .map_err(|e| CliError::at_key("data.test_split", e.to_string()))?;
    let rest = table.select(&order.train);
    let test = table.select(&order.valid);
    let split = train_val_split(rest.len(), c.validation_split, seed.wrapping_add(1))
        .map_err(|e| CliError::at_key("data.validation_split", e.to_string()))?;
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

/// The `[data]` key a CSV error is about: a column the file lacks is
/// named by `data.target` or `data.features`, and so are columns that
/// cannot be the features; anything else is the file's (`data.path`).
fn csv_key(error: &CsvError, config: &CsvDataConfig) -> &'static str {
    match error {
        CsvError::MissingColumn { column, .. } if *column == config.target => "data.target",
        CsvError::MissingColumn { .. }
        | CsvError::TargetIsFeature { .. }
        | CsvError::DuplicateFeature { .. }
        | CsvError::NoFeatures { .. } => "data.features",
        _ => "data.path",
    }
}

/// What predicting with a CSV-table run needs of its training data: the
/// feature columns, in model order, and the standardisation fitted on the
/// training rows. Kept in the run directory (`table.json`) at train time,
/// so that `predict` reads neither the training CSV nor the target column,
/// from any working directory.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TableInputs {
    /// The feature columns, in the order the model sees them.
    pub features: Vec<String>,
    /// The target column (not needed in predict's input).
    pub target: String,
    /// The training rows' standardisation.
    pub scaler: Standardizer,
}

impl TableInputs {
    /// The file in a run directory.
    pub const FILE: &'static str = "table.json";

    /// The inputs of a model trained on `train` with `scaler`.
    pub fn new(train: &TableDataset, scaler: &Standardizer) -> Self {
        Self {
            features: train.table().feature_names.clone(),
            target: train.table().target_name.clone(),
            scaler: scaler.clone(),
        }
    }

    /// The contents of `RUN/table.json`.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("table inputs serialise")
    }

    /// Reads `RUN/table.json`; `None` for a run trained before it existed.
    pub fn read(run_root: &Path) -> Option<CliResult<Self>> {
        let path = run_root.join(Self::FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                return Some(Err(CliError::usage(format!(
                    "{}: cannot read: {e}",
                    path.display()
                ))));
            }
        };
        Some(serde_json::from_slice(&bytes).map_err(|e| {
            CliError::usage(format!(
                "{}: damaged ({e}); train the run again to recreate it",
                path.display()
            ))
        }))
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

/// A data loader: batches in index order, prefetched by `workers` threads
/// (the same batches for any number of workers, see [`OrderedDataLoader`]).
pub fn loader<I, O, B, D>(
    batcher: B,
    dataset: D,
    batch_size: usize,
    workers: usize,
) -> Arc<dyn DataLoader<O>>
where
    I: Send + Sync + 'static,
    O: Send + 'static,
    B: Batcher<I, O> + 'static,
    D: Dataset<I> + 'static,
{
    Arc::new(OrderedDataLoader::new(
        batcher, dataset, batch_size, workers,
    ))
}
