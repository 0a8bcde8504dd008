//! Per-epoch shuffling that depends only on (seed, epoch), so a run resumed
//! from a backup sees every epoch's batches in the same order as the
//! uninterrupted run; and [`IntervalStream`], the epochs of
//! `training.val_check_interval`: N batches each, read from a stream of
//! passes over the training set shuffled the same way.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use burn::data::dataset::{Dataset, DatasetError};
use burnfit_callbacks::{Callback, Context, Result};
use burnfit_models::data::shuffled_indices;

/// The epoch the loader is serving, set by [`EpochTracker`] at each epoch begin.
pub type EpochCell = Arc<AtomicUsize>;

/// A dataset whose item order is a permutation chosen by `(seed, epoch)`.
pub struct EpochShuffled<D, I> {
    inner: D,
    seed: u64,
    epoch: EpochCell,
    order: RwLock<(usize, Arc<[usize]>)>,
    _item: PhantomData<fn() -> I>,
}

impl<D: Dataset<I>, I> EpochShuffled<D, I> {
    /// Wraps `inner`; the order follows the epoch stored in `epoch`.
    pub fn new(inner: D, seed: u64, epoch: EpochCell) -> Self {
        let first = shuffled_indices(inner.len(), seed);
        Self {
            inner,
            seed,
            epoch,
            order: RwLock::new((0, first.into())),
            _item: PhantomData,
        }
    }

    fn order(&self) -> Arc<[usize]> {
        let epoch = self.epoch.load(Ordering::Acquire);
        {
            let order = self.order.read().expect("order lock");
            if order.0 == epoch {
                return order.1.clone();
            }
        }
        let fresh = epoch_order(self.inner.len(), self.seed, epoch);
        *self.order.write().expect("order lock") = (epoch, fresh.clone());
        fresh
    }
}

impl<D: Dataset<I>, I: Send + Sync> Dataset<I> for EpochShuffled<D, I> {
    fn get(&self, index: usize) -> Result<I, DatasetError> {
        let order = self.order();
        match order.get(index) {
            Some(&inner) => self.inner.get(inner),
            None => Err(DatasetError::new(std::io::Error::other(format!(
                "index {index} out of bounds for {} items",
                order.len()
            )))),
        }
    }

    fn len(&self) -> usize {
        self.inner.len()
    }
}

/// The order of `len` items in pass `pass` for `seed`: a permutation that
/// depends on nothing else.
fn epoch_order(len: usize, seed: u64, pass: usize) -> Arc<[usize]> {
    shuffled_indices(
        len,
        seed ^ (pass as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    )
    .into()
}

/// The training set as `training.val_check_interval` reads it (Keras's
/// `steps_per_epoch` over a repeated dataset): epoch `e` is items
/// `e·n .. (e+1)·n` of an endless stream of passes over the set, each pass
/// in its own order (`(seed, pass)`, as [`EpochShuffled`]; in the set's
/// order without a seed). An epoch may end inside a pass and the next one
/// go on from there; one that reaches a pass's end goes on into the next
/// pass, so every epoch has exactly `n` items. Like [`EpochShuffled`] it
/// follows the epoch that [`EpochTracker`] stores, so a resumed run reads
/// the same batches.
pub struct IntervalStream<I> {
    inner: Arc<dyn Dataset<I>>,
    items: usize,
    seed: Option<u64>,
    epoch: EpochCell,
    /// The orders of the last passes read (an epoch spans at most a few).
    orders: RwLock<Vec<(usize, Arc<[usize]>)>>,
}

impl<I> IntervalStream<I> {
    /// Epochs of `items` items of `inner` (which has at least one item).
    pub fn new(
        inner: Arc<dyn Dataset<I>>,
        items: usize,
        seed: Option<u64>,
        epoch: EpochCell,
    ) -> Self {
        Self {
            inner,
            items,
            seed,
            epoch,
            orders: RwLock::new(Vec::new()),
        }
    }

    /// The index in `inner` of item `index` of the current epoch.
    fn inner_index(&self, index: usize) -> usize {
        let len = self.inner.len();
        let at = self.epoch.load(Ordering::Acquire) * self.items + index;
        let (pass, position) = (at / len, at % len);
        let Some(seed) = self.seed else {
            return position;
        };
        if let Some((_, order)) = self
            .orders
            .read()
            .expect("order lock")
            .iter()
            .find(|(p, _)| *p == pass)
        {
            return order[position];
        }
        let order = epoch_order(len, seed, pass);
        let mut orders = self.orders.write().expect("order lock");
        if orders.len() >= 4 {
            orders.remove(0);
        }
        orders.push((pass, order.clone()));
        order[position]
    }
}

impl<I: Send + Sync> Dataset<I> for IntervalStream<I> {
    fn get(&self, index: usize) -> Result<I, DatasetError> {
        if index >= self.items {
            return Err(DatasetError::new(std::io::Error::other(format!(
                "index {index} out of bounds for {} items",
                self.items
            ))));
        }
        self.inner.get(self.inner_index(index))
    }

    fn len(&self) -> usize {
        self.items
    }
}

/// Tells [`EpochShuffled`] and [`IntervalStream`] datasets which epoch starts.
pub struct EpochTracker(pub EpochCell);

impl Callback for EpochTracker {
    fn on_epoch_begin(&mut self, epoch: usize, _ctx: &mut Context) -> Result<()> {
        self.0.store(epoch, Ordering::Release);
        Ok(())
    }
}

/// Resident memory (MiB) at each epoch end, from `/proc/self/status`
/// (empty on systems without it): shows whether memory grows from epoch to
/// epoch. Backups keep the readings, so that a resumed run's list begins
/// with the epochs its earlier processes ran.
pub struct MemoryProbe(pub std::sync::Arc<std::sync::Mutex<Vec<f64>>>);

/// `VmRSS` and `VmHWM` (peak) of this process in MiB.
pub fn resident_mib() -> Option<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

impl Callback for MemoryProbe {
    fn state(&self) -> Result<Option<serde_json::Value>> {
        burnfit_callbacks::error::state_to_json(&*self.0.lock().expect("memory probe"))
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        *self.0.lock().expect("memory probe") = burnfit_callbacks::error::state_from_json(state)?;
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        _epoch: usize,
        _logs: &mut burnfit_callbacks::Logs,
        _ctx: &mut Context,
    ) -> Result<()> {
        if let Some((rss, _)) = resident_mib() {
            self.0.lock().expect("memory probe").push(rss);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::data::dataset::InMemDataset;

    fn stream(items: usize, seed: Option<u64>) -> (IntervalStream<usize>, EpochCell) {
        let epoch = EpochCell::default();
        let set: Arc<dyn Dataset<usize>> = Arc::new(InMemDataset::new((0..10).collect()));
        (IntervalStream::new(set, items, seed, epoch.clone()), epoch)
    }

    fn epoch_items(stream: &IntervalStream<usize>, cell: &EpochCell, epoch: usize) -> Vec<usize> {
        cell.store(epoch, Ordering::Release);
        (0..stream.len()).map(|i| stream.get(i).unwrap()).collect()
    }

    #[test]
    fn interval_epochs_continue_the_stream_of_passes_each_a_permutation() {
        let (stream, cell) = stream(4, Some(7));
        // Epochs of 4 items over passes of 10: 5 epochs are exactly 2 passes.
        let read: Vec<usize> = (0..5)
            .flat_map(|e| epoch_items(&stream, &cell, e))
            .collect();
        for pass in read.chunks(10) {
            let mut sorted = pass.to_vec();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..10).collect::<Vec<_>>(), "{read:?}");
        }
        assert_ne!(read[..10], read[10..], "each pass in its own order");
        // A resumed run that starts at epoch 3 reads what epoch 3 read.
        let (again, cell) = super::tests::stream(4, Some(7));
        assert_eq!(epoch_items(&again, &cell, 3), read[12..16]);
        assert!(stream.get(4).is_err());
    }

    #[test]
    fn without_a_seed_the_stream_is_in_the_set_s_order() {
        let (stream, cell) = stream(3, None);
        assert_eq!(epoch_items(&stream, &cell, 3), vec![9, 0, 1]);
    }
}
