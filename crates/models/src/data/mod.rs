//! Datasets: IDX (MNIST-style) and CSV readers, Fashion-MNIST, splits, and
//! Burn [`Dataset`](burn::data::dataset::Dataset)s with their batchers.

pub mod csv_table;
pub mod fashion_mnist;
pub mod idx;
pub mod image;
pub mod loader;
pub mod regression;
pub mod split;

pub use csv_table::{CsvError, Standardizer, Table, TableConfig};
pub use fashion_mnist::{CLASS_NAMES, FashionMnist};
pub use idx::IdxError;
pub use image::{ImageBatch, ImageBatcher, ImageDataset, ImageItem};
pub use loader::OrderedDataLoader;
pub use regression::{RegressionBatch, RegressionBatcher, RegressionItem, TableDataset};
pub use split::{
    SplitError, SplitIndices, SubsetDataset, shuffled_indices, split_dataset, train_val_split,
};
