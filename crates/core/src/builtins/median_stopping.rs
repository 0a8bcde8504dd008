//! MedianStopping: prune a hyperparameter-search trial that does worse than
//! the median of earlier trials at the same epoch.

use crate::callback::Callback;
use crate::context::Context;
use crate::error::{CallbackError, Result};
use crate::logs::Logs;

const NAME: &str = "MedianStopping";

/// The median stopping rule (as in Optuna's `MedianPruner` and Google
/// Vizier): at the end of epoch `k`, a trial whose monitored value is worse
/// than the median of the earlier trials' values at epoch `k` is stopped.
///
/// `reference[t][k]` is trial `t`'s monitored value at epoch `k` (NaN where
/// unknown). No decision is taken before `warmup_epochs` epochs, nor while
/// fewer than `min_trials` earlier trials reached the epoch.
///
/// ```
/// use burnfit_core::builtins::MedianStopping;
/// let rule = MedianStopping::new("val_loss", false, vec![vec![0.9, 0.5], vec![0.8, 0.4]]).unwrap();
/// assert_eq!(rule.median_at(1), Some(0.45));
/// assert!(rule.should_prune(1, 0.6));
/// assert!(!rule.should_prune(1, 0.3));
/// ```
#[derive(Clone, Debug)]
pub struct MedianStopping {
    monitor: String,
    maximize: bool,
    reference: Vec<Vec<f64>>,
    /// Epochs during which nothing is pruned. Default 1.
    pub warmup_epochs: usize,
    /// Earlier trials needed at an epoch before pruning on it. Default 2.
    pub min_trials: usize,
}

impl MedianStopping {
    /// A rule on `monitor` (`maximize` for accuracy-like metrics) against
    /// earlier trials' per-epoch values.
    pub fn new(
        monitor: impl Into<String>,
        maximize: bool,
        reference: Vec<Vec<f64>>,
    ) -> Result<Self> {
        let monitor = monitor.into();
        if monitor.is_empty() {
            return Err(CallbackError::InvalidParameter {
                callback: NAME,
                param: "monitor",
                message: "must name a log key".into(),
            });
        }
        Ok(Self {
            monitor,
            maximize,
            reference,
            warmup_epochs: 1,
            min_trials: 2,
        })
    }

    /// The median of the earlier trials at `epoch`, if enough reached it.
    pub fn median_at(&self, epoch: usize) -> Option<f64> {
        let mut values: Vec<f64> = self
            .reference
            .iter()
            .filter_map(|trial| trial.get(epoch).copied())
            .filter(|v| v.is_finite())
            .collect();
        if values.len() < self.min_trials.max(1) {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let mid = values.len() / 2;
        Some(if values.len().is_multiple_of(2) {
            (values[mid - 1] + values[mid]) / 2.0
        } else {
            values[mid]
        })
    }

    /// Whether a trial with `value` at `epoch` should stop.
    pub fn should_prune(&self, epoch: usize, value: f64) -> bool {
        if epoch + 1 < self.warmup_epochs.max(1) {
            return false;
        }
        let Some(median) = self.median_at(epoch) else {
            return false;
        };
        if !value.is_finite() {
            return true;
        }
        if self.maximize {
            value < median
        } else {
            value > median
        }
    }
}

impl Callback for MedianStopping {
    fn name(&self) -> String {
        NAME.into()
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &mut Logs, ctx: &mut Context) -> Result<()> {
        let Some(value) = logs.get(&self.monitor) else {
            return Ok(());
        };
        if self.should_prune(epoch, value) {
            let median = self.median_at(epoch).unwrap_or(f64::NAN);
            ctx.stop_training(format!(
                "pruned by MedianStopping: `{}` = {value} at epoch {} is worse than the median {median} of earlier trials",
                self.monitor,
                epoch + 1
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(maximize: bool) -> MedianStopping {
        MedianStopping::new(
            "val_loss",
            maximize,
            vec![
                vec![1.0, 0.8, 0.6],
                vec![1.2, 0.7, 0.5],
                vec![0.9, 0.9, f64::NAN],
            ],
        )
        .unwrap()
    }

    #[test]
    fn worse_than_median_is_pruned_in_min_mode() {
        let r = rule(false);
        assert_eq!(r.median_at(1), Some(0.8));
        assert!(r.should_prune(1, 0.81));
        assert!(!r.should_prune(1, 0.8), "equal to the median is kept");
        // Epoch 2: only two finite values (0.6, 0.5) -> median 0.55.
        assert_eq!(r.median_at(2), Some(0.55));
        assert!(r.should_prune(2, 0.56));
        assert!(r.should_prune(2, f64::NAN), "a diverged trial is pruned");
    }

    #[test]
    fn max_mode_warmup_and_min_trials() {
        let mut r = rule(true);
        assert!(r.should_prune(1, 0.75));
        assert!(!r.should_prune(1, 0.85));
        r.warmup_epochs = 3;
        assert!(!r.should_prune(1, 0.0), "no pruning during warm-up");
        r.min_trials = 4;
        assert_eq!(r.median_at(2), None);
        assert!(!r.should_prune(2, 0.0));
        assert!(
            MedianStopping::new("val_loss", false, vec![])
                .unwrap()
                .median_at(0)
                .is_none()
        );
    }
}
