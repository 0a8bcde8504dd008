//! [`OrderedDataLoader`]: batches prefetched on worker threads, handed over
//! in index order.
//!
//! Burn's multi-threaded loader gives each worker a contiguous part of the
//! dataset and hands batches over in the order the workers finish them, so
//! two runs with the same seed see different batch orders (and a resumed
//! run differs from the uninterrupted one). This loader keeps the
//! parallelism and drops the randomness:
//!
//! * batch `k` holds items `k·B .. (k+1)·B` of the dataset (the last batch
//!   may be shorter), exactly as with one worker;
//! * with `N` workers, worker `w` builds batches `w, w+N, w+2N, …`, each
//!   into its own bounded queue ([`PREFETCH`] batches deep), and the
//!   iterator takes batch `k` from worker `k mod N`'s queue: the order is
//!   the index order whatever the threads' timing;
//! * workers start when an iteration starts (after the epoch's shuffle is
//!   chosen) and stop when the iterator is dropped.
//!
//! So the batches, and a training run fed by them, are the same for any
//! number of workers.

use std::ops::Range;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::data::dataset::Dataset;
use burn::data::dataset::DatasetError;
use burn::tensor::Device;

/// Batches each worker may have ready ahead of the consumer.
pub const PREFETCH: usize = 2;

/// A [`DataLoader`] whose batches come in index order whatever the number
/// of workers; see the [module documentation](self).
pub struct OrderedDataLoader<I, O> {
    dataset: Arc<dyn Dataset<I>>,
    batcher: Arc<dyn Batcher<I, O>>,
    batch_size: usize,
    workers: usize,
    device: Device,
    range: Range<usize>,
}

impl<I, O> Clone for OrderedDataLoader<I, O> {
    fn clone(&self) -> Self {
        Self {
            dataset: self.dataset.clone(),
            batcher: self.batcher.clone(),
            batch_size: self.batch_size,
            workers: self.workers,
            device: self.device.clone(),
            range: self.range.clone(),
        }
    }
}

impl<I, O> OrderedDataLoader<I, O>
where
    I: Send + Sync + 'static,
    O: Send + 'static,
{
    /// Batches of `batch_size` (at least 1) items of `dataset`, built by
    /// `workers` threads (0 or 1: on the consuming thread).
    pub fn new(
        batcher: impl Batcher<I, O> + 'static,
        dataset: impl Dataset<I> + 'static,
        batch_size: usize,
        workers: usize,
    ) -> Self {
        let len = dataset.len();
        Self {
            dataset: Arc::new(dataset),
            batcher: Arc::new(batcher),
            batch_size: batch_size.max(1),
            workers,
            device: Device::default(),
            range: 0..len,
        }
    }

    /// The same loader, producing batches on `device`.
    pub fn with_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    fn num_batches(&self) -> usize {
        self.range.len().div_ceil(self.batch_size)
    }

    /// The items of batch `k`, batched.
    fn batch(&self, k: usize) -> Result<O, DatasetError> {
        let start = self.range.start + k * self.batch_size;
        let end = (start + self.batch_size).min(self.range.end);
        let items = (start..end)
            .map(|i| self.dataset.get(i))
            .collect::<Result<Vec<I>, DatasetError>>()?;
        Ok(self.batcher.batch(items, &self.device))
    }
}

impl<I, O> DataLoader<O> for OrderedDataLoader<I, O>
where
    I: Send + Sync + 'static,
    O: Send + 'static,
{
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<O> + 'a> {
        let workers = self.workers.min(self.num_batches());
        let source = if workers <= 1 {
            Source::Inline
        } else {
            Source::Workers(WorkerPool::start(self.clone(), workers))
        };
        Box::new(OrderedIterator {
            loader: self,
            source,
            next: 0,
        })
    }

    fn num_items(&self) -> usize {
        self.range.len()
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<O>> {
        Arc::new(self.clone().with_device(device.clone()))
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<O>> {
        let mut sliced = self.clone();
        let start = (self.range.start + start).min(self.range.end);
        let end = (self.range.start + end).clamp(start, self.range.end);
        sliced.range = start..end;
        Arc::new(sliced)
    }
}

enum Source<O> {
    /// Batches built on the consuming thread.
    Inline,
    /// Batches built by worker threads.
    Workers(WorkerPool<O>),
}

struct OrderedIterator<'a, I, O> {
    loader: &'a OrderedDataLoader<I, O>,
    source: Source<O>,
    next: usize,
}

impl<I, O> Iterator for OrderedIterator<'_, I, O>
where
    I: Send + Sync + 'static,
    O: Send + 'static,
{
    type Item = Result<O, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.loader.num_batches() {
            return None;
        }
        let k = self.next;
        self.next += 1;
        match &self.source {
            Source::Inline => Some(self.loader.batch(k)),
            Source::Workers(pool) => Some(pool.receive(k)),
        }
    }
}

impl<I, O> DataLoaderIterator<O> for OrderedIterator<'_, I, O>
where
    I: Send + Sync + 'static,
    O: Send + 'static,
{
    fn progress(&self) -> Progress {
        let done = (self.next * self.loader.batch_size).min(self.loader.range.len());
        Progress {
            items_processed: done,
            items_total: self.loader.range.len(),
            unit: None,
        }
    }
}

/// One thread per worker, each with its own queue of finished batches.
struct WorkerPool<O> {
    queues: Vec<Receiver<Result<O, DatasetError>>>,
    threads: Vec<JoinHandle<()>>,
}

impl<O: Send + 'static> WorkerPool<O> {
    fn start<I: Send + Sync + 'static>(loader: OrderedDataLoader<I, O>, workers: usize) -> Self {
        let batches = loader.num_batches();
        let mut queues = Vec::with_capacity(workers);
        let mut threads = Vec::with_capacity(workers);
        for worker in 0..workers {
            let (sender, receiver) = sync_channel(PREFETCH);
            let loader = loader.clone();
            let thread = std::thread::Builder::new()
                .name(format!("burnfit-loader-{worker}"))
                .spawn(move || {
                    for k in (worker..batches).step_by(workers) {
                        let batch = loader.batch(k);
                        let failed = batch.is_err();
                        // The iterator was dropped: stop early.
                        if sender.send(batch).is_err() || failed {
                            break;
                        }
                    }
                })
                .expect("spawn a data loader thread");
            queues.push(receiver);
            threads.push(thread);
        }
        Self { queues, threads }
    }

    fn receive(&self, k: usize) -> Result<O, DatasetError> {
        let queue = &self.queues[k % self.queues.len()];
        queue.recv().unwrap_or_else(|_| {
            Err(DatasetError::new(std::io::Error::other(format!(
                "data loader worker {} stopped before batch {k}",
                k % self.queues.len()
            ))))
        })
    }
}

impl<O> Drop for WorkerPool<O> {
    fn drop(&mut self) {
        // Closing the queues ends the workers at their next send.
        self.queues.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::data::dataset::InMemDataset;

    struct Collect;

    impl Batcher<usize, Vec<usize>> for Collect {
        fn batch(&self, items: Vec<usize>, _device: &Device) -> Vec<usize> {
            // Uneven work, so threads finish out of order.
            std::thread::sleep(std::time::Duration::from_micros((items[0] % 7) as u64 * 50));
            items
        }
    }

    fn batches(workers: usize, n: usize, batch: usize) -> Vec<Vec<usize>> {
        let loader = OrderedDataLoader::new(
            Collect,
            InMemDataset::new((0..n).collect::<Vec<_>>()),
            batch,
            workers,
        );
        loader.iter().map(|b| b.unwrap()).collect()
    }

    #[test]
    fn batches_come_in_index_order_for_any_number_of_workers() {
        let one = batches(1, 103, 10);
        assert_eq!(one.len(), 11);
        assert_eq!(one[10], vec![100, 101, 102]);
        for workers in [2, 3, 4, 16] {
            assert_eq!(batches(workers, 103, 10), one, "{workers} workers");
        }
    }

    #[test]
    fn progress_counts_items_and_slices_keep_the_order() {
        let loader = OrderedDataLoader::new(
            Collect,
            InMemDataset::new((0..25).collect::<Vec<_>>()),
            10,
            2,
        );
        let mut iter = loader.iter();
        iter.next();
        assert_eq!(iter.progress().items_processed, 10);
        iter.next();
        iter.next();
        assert_eq!(iter.progress().items_processed, 25);
        assert!(iter.next().is_none());
        drop(iter);
        let slice = loader.slice(10, 25);
        let got: Vec<Vec<usize>> = slice.iter().map(|b| b.unwrap()).collect();
        assert_eq!(got, vec![(10..20).collect::<Vec<_>>(), (20..25).collect()]);
        assert_eq!(slice.num_items(), 15);
    }

    #[test]
    fn dropping_the_iterator_early_stops_the_workers() {
        let loader = OrderedDataLoader::new(
            Collect,
            InMemDataset::new((0..1000).collect::<Vec<_>>()),
            1,
            4,
        );
        let mut iter = loader.iter();
        assert_eq!(iter.next().unwrap().unwrap(), vec![0]);
        drop(iter); // joins the workers without reading the rest
    }
}
