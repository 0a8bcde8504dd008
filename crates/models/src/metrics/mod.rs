//! Metrics as Burn [`Metric`](burn::train::metric::Metric)s whose epoch
//! state can be saved and put back, so that a run resumed in the middle of
//! an epoch ends that epoch with the uninterrupted run's values:
//!
//! * [`RegressionMetric`]: mean absolute and squared error, root mean
//!   squared error and R² (Burn 0.22 ships none of them);
//! * [`ConfusionMetric`]: macro-averaged precision, recall and F1, from
//!   per-class confusion counts, as Burn's own metrics compute them;
//! * [`AucMetric`]: macro-averaged one-vs-rest ROC AUC over the epoch's
//!   predictions, as Burn's `AurocMetric` computes it.
//!
//! Each has `epoch_state` (bytes) and `restore_epoch_state`; an application
//! links them to its backups (burnfit's CLI registers them with
//! `Callbacks::resumable_metric`).

mod classification;
mod regression;
mod state_bytes;

pub use classification::{AucMetric, ConfusionKind, ConfusionMetric};
pub use regression::{RegressionInput, RegressionKind, RegressionMetric, Sums};

/// Metadata for a metric update in tests (Burn's own is test-only).
#[cfg(test)]
pub(crate) fn test_metadata() -> burn::train::metric::MetricMetadata {
    burn::train::metric::MetricMetadata {
        progress: burn::data::dataloader::Progress {
            items_processed: 1,
            items_total: 1,
            unit: None,
        },
        iteration: Some(0),
        lr: None,
    }
}
