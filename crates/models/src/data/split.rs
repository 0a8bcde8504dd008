//! Deterministic shuffling and train/validation splits.
//!
//! Shuffles use `rand`'s [`StdRng`] seeded with [`SeedableRng::seed_from_u64`]:
//! the same seed gives the same order for a given `rand` version (the
//! workspace lock file pins it).

use std::marker::PhantomData;
use std::sync::Arc;

use burn::data::dataset::{Dataset, DatasetError};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Errors raised by [`train_val_split`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SplitError {
    /// The validation fraction is not in `[0, 1)`.
    #[error("validation fraction must be in [0, 1), got {0}")]
    BadFraction(f64),
    /// The split would leave the training set empty.
    #[error("a validation fraction of {fraction} of {len} items leaves no training items")]
    EmptyTrain {
        /// The fraction asked for.
        fraction: f64,
        /// The number of items.
        len: usize,
    },
}

/// The indices `0..len` in a random order determined by `seed`.
pub fn shuffled_indices(len: usize, seed: u64) -> Vec<usize> {
    let mut indices: Vec<usize> = (0..len).collect();
    indices.shuffle(&mut StdRng::seed_from_u64(seed));
    indices
}

/// Index lists of a train/validation split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitIndices {
    /// Indices of the training items.
    pub train: Vec<usize>,
    /// Indices of the validation items.
    pub valid: Vec<usize>,
}

/// Shuffles `0..len` with `seed` and puts `round(len * val_fraction)` indices in
/// the validation set and the rest in the training set.
///
/// A fraction of 0 gives an empty validation set. The two lists are disjoint
/// and together hold every index once.
pub fn train_val_split(
    len: usize,
    val_fraction: f64,
    seed: u64,
) -> Result<SplitIndices, SplitError> {
    if !(0.0..1.0).contains(&val_fraction) {
        return Err(SplitError::BadFraction(val_fraction));
    }
    let num_valid = ((len as f64) * val_fraction).round() as usize;
    if num_valid >= len && len > 0 {
        return Err(SplitError::EmptyTrain {
            fraction: val_fraction,
            len,
        });
    }
    let mut indices = shuffled_indices(len, seed);
    let train = indices.split_off(num_valid);
    Ok(SplitIndices {
        train,
        valid: indices,
    })
}

/// A view of some items of a dataset, in a given order.
pub struct SubsetDataset<D, I> {
    inner: Arc<D>,
    indices: Arc<[usize]>,
    _item: PhantomData<fn() -> I>,
}

impl<D, I> Clone for SubsetDataset<D, I> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            indices: Arc::clone(&self.indices),
            _item: PhantomData,
        }
    }
}

impl<D, I> std::fmt::Debug for SubsetDataset<D, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubsetDataset")
            .field("len", &self.indices.len())
            .finish_non_exhaustive()
    }
}

impl<D: Dataset<I>, I> SubsetDataset<D, I> {
    /// A view of `inner` holding the items at `indices`, in that order.
    ///
    /// # Panics
    ///
    /// Panics if an index is out of bounds.
    pub fn new(inner: Arc<D>, indices: Vec<usize>) -> Self {
        let len = inner.len();
        if let Some(bad) = indices.iter().find(|&&i| i >= len) {
            panic!("subset index {bad} out of bounds for a dataset of {len} items");
        }
        Self {
            inner,
            indices: indices.into(),
            _item: PhantomData,
        }
    }

    /// The indices into the wrapped dataset.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }
}

impl<D: Dataset<I>, I: Send + Sync> Dataset<I> for SubsetDataset<D, I> {
    fn get(&self, index: usize) -> Result<I, DatasetError> {
        assert!(
            index < self.indices.len(),
            "Index out of bounds for dataset: {index} >= {}",
            self.indices.len()
        );
        self.inner.get(self.indices[index])
    }

    fn len(&self) -> usize {
        self.indices.len()
    }
}

/// A training view and a validation view of one dataset, as returned by
/// [`split_dataset`].
pub type TrainValid<D, I> = (SubsetDataset<D, I>, SubsetDataset<D, I>);

/// Splits a dataset into shuffled training and validation views
/// (see [`train_val_split`]).
pub fn split_dataset<D: Dataset<I>, I>(
    dataset: D,
    val_fraction: f64,
    seed: u64,
) -> Result<TrainValid<D, I>, SplitError> {
    let split = train_val_split(dataset.len(), val_fraction, seed)?;
    let inner = Arc::new(dataset);
    Ok((
        SubsetDataset::new(Arc::clone(&inner), split.train),
        SubsetDataset::new(inner, split.valid),
    ))
}

/// A shuffled view of the first `min(n, len)` items of `dataset` after
/// shuffling with `seed`; handy for quick runs on a fraction of the data.
pub fn sample_dataset<D: Dataset<I>, I>(dataset: D, n: usize, seed: u64) -> SubsetDataset<D, I> {
    let mut indices = shuffled_indices(dataset.len(), seed);
    indices.truncate(n);
    SubsetDataset::new(Arc::new(dataset), indices)
}
