//! [`EpochMetricState`]: what a metric has accumulated over the epoch so
//! far, kept by mid-epoch backups.
//!
//! Most of Burn's metrics log one entry per batch and their epoch value is
//! the mean of those entries, which a backup keeps (its `metrics` section).
//! Others compute their epoch value from state they accumulate over the
//! epoch (confusion counts for precision, recall and F1; every prediction
//! for AUC; sums for RMSE and R²): the entries alone cannot give it back. A
//! metric that exposes that state through this trait, registered with
//! [`Callbacks::resumable_metric`](super::Callbacks::resumable_metric), is
//! saved with each mid-epoch backup (section `metric_state/<name>`) and put
//! back before the resumed epoch's first batch, so the epoch ends with the
//! uninterrupted run's value.
//!
//! Invariants, each with a test named after it (in
//! `tests/suite/resumable_metrics.rs`):
//!
//! * **A restored metric ends its epoch as the uninterrupted run does**:
//!   its own epoch value (Burn's `Final` entry) is kept for the resumed
//!   epoch, where an unregistered metric's is replaced by the mean of its
//!   entries. This holds for a backup written after the training split
//!   ended (a stop, or one during validation), when Burn has already
//!   cleared the metric: the engine keeps the states as the split ends.
//! * **State is taken once every batch so far reached the metric**: the
//!   backup waits for Burn's event processor (as for the entries) before
//!   it calls [`EpochMetricState::save`].

use std::sync::Arc;

/// The state a metric has accumulated over the current epoch's training
/// batches so far. Implemented by a handle shared with the metric Burn
/// updates (the metric itself is owned by Burn's event processor).
pub trait EpochMetricState: Send + Sync {
    /// The state after the batches the metric has seen this epoch.
    fn save(&self) -> Vec<u8>;

    /// Puts back a state [`save`](Self::save) returned, before the metric
    /// sees the resumed epoch's first batch. An error names what does not
    /// fit (the backup is then refused).
    fn restore(&self, bytes: &[u8]) -> Result<(), String>;
}

/// The registered states, by the metric's name (as Burn logs it).
pub(crate) type MetricStates = Vec<(String, Arc<dyn EpochMetricState>)>;
