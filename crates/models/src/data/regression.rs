//! Regression items, dataset and batcher for numeric tables.

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::prelude::*;

use super::csv_table::Table;

/// One table row: its features and its target.
#[derive(Debug, Clone, PartialEq)]
pub struct RegressionItem {
    /// Feature values, in model order.
    pub features: Vec<f32>,
    /// The target value.
    pub target: f32,
}

/// A batch of table rows.
#[derive(Debug, Clone)]
pub struct RegressionBatch {
    /// Features, shape `[batch, num_features]`.
    pub features: Tensor<2>,
    /// Targets, shape `[batch, 1]`.
    pub targets: Tensor<2>,
}

/// A [`Table`] as a Burn dataset. Cloning is cheap: the table is shared.
#[derive(Debug, Clone)]
pub struct TableDataset {
    table: Arc<Table>,
}

impl TableDataset {
    /// Wraps a table.
    pub fn new(table: Table) -> Self {
        Self {
            table: Arc::new(table),
        }
    }

    /// The underlying table.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Number of features per row.
    pub fn num_features(&self) -> usize {
        self.table.num_features()
    }
}

impl From<Table> for TableDataset {
    fn from(table: Table) -> Self {
        Self::new(table)
    }
}

impl Dataset<RegressionItem> for TableDataset {
    fn get(&self, index: usize) -> Result<RegressionItem, DatasetError> {
        assert!(
            index < self.len(),
            "Index out of bounds for dataset: {index} >= {}",
            self.len()
        );
        Ok(RegressionItem {
            features: self.table.row(index).to_vec(),
            target: self.table.targets[index],
        })
    }

    fn len(&self) -> usize {
        self.table.len()
    }
}

/// Stacks [`RegressionItem`]s into a [`RegressionBatch`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RegressionBatcher;

impl Batcher<RegressionItem, RegressionBatch> for RegressionBatcher {
    fn batch(&self, items: Vec<RegressionItem>, device: &Device) -> RegressionBatch {
        let n = items.len();
        let width = items.first().map_or(0, |i| i.features.len());
        let mut features = Vec::with_capacity(n * width);
        let mut targets = Vec::with_capacity(n);
        for item in items {
            assert_eq!(
                item.features.len(),
                width,
                "all rows of a batch must have the same number of features"
            );
            features.extend_from_slice(&item.features);
            targets.push(item.target);
        }
        RegressionBatch {
            features: Tensor::from_data(TensorData::new(features, [n, width]), device),
            targets: Tensor::from_data(TensorData::new(targets, [n, 1]), device),
        }
    }
}
