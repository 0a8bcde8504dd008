//! Per-epoch shuffling that depends only on (seed, epoch), so a run resumed
//! from a backup sees every epoch's batches in the same order as the
//! uninterrupted run.

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
        let fresh: Arc<[usize]> = shuffled_indices(
            self.inner.len(),
            self.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        )
        .into();
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

/// Tells [`EpochShuffled`] datasets which epoch starts.
pub struct EpochTracker(pub EpochCell);

impl Callback for EpochTracker {
    fn on_epoch_begin(&mut self, epoch: usize, _ctx: &mut Context) -> Result<()> {
        self.0.store(epoch, Ordering::Release);
        Ok(())
    }
}

/// Resident memory (MiB) of this process at each epoch end, from
/// `/proc/self/status` (empty on systems without it): shows whether memory
/// grows from epoch to epoch.
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
