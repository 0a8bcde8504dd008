//! MedianStopping: prune a hyperparameter-search trial that does worse than
//! the median of earlier trials at the same epoch.

use crate::callback::Callback;
use crate::context::Context;
use crate::error::{CallbackError, Result};
use crate::logs::Logs;
use crate::monitor::Direction;

const NAME: &str = "MedianStopping";

/// Where a [`MedianStopping`] reads the other trials' values, at each epoch
/// end: for a sweep whose trials run in parallel (in other processes, on
/// other machines), the trials completed so far, read from disk.
pub type ReferenceSource = Box<dyn FnMut() -> Vec<Vec<f64>> + Send>;

/// The median stopping rule (as in Optuna's `MedianPruner` and Google
/// Vizier): at the end of epoch `k`, a trial whose monitored value is worse
/// than the median of the earlier trials' values at epoch `k` is stopped.
///
/// `reference[t][k]` is trial `t`'s monitored value at epoch `k` (NaN where
/// unknown). No decision is taken before `warmup_epochs` epochs, nor while
/// fewer than `min_trials` earlier trials reached the epoch.
///
/// ```
/// use burnfit_core::builtins::{MedianStopping, MedianStoppingConfig};
/// let reference = vec![vec![0.9, 0.5], vec![0.8, 0.4]];
/// let rule = MedianStopping::new(MedianStoppingConfig::default(), reference).unwrap();
/// assert_eq!(rule.median_at(1), Some(0.45));
/// assert!(rule.should_prune(1, 0.6));
/// assert!(!rule.should_prune(1, 0.3));
/// ```
pub struct MedianStopping {
    config: MedianStoppingConfig,
    reference: Vec<Vec<f64>>,
    source: Option<ReferenceSource>,
}

/// What a [`MedianStopping`] compares, and when it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct MedianStoppingConfig {
    /// The log key compared. Default `val_loss`.
    pub monitor: String,
    /// Which way is better ([`Direction::Max`] for accuracy-like metrics).
    /// Default [`Direction::Min`].
    pub direction: Direction,
    /// Epochs during which nothing is pruned. Default 1.
    pub warmup_epochs: usize,
    /// Earlier trials needed at an epoch before pruning on it. Default 2.
    pub min_trials: usize,
}

impl Default for MedianStoppingConfig {
    fn default() -> Self {
        Self {
            monitor: "val_loss".into(),
            direction: Direction::Min,
            warmup_epochs: 1,
            min_trials: 2,
        }
    }
}

impl MedianStopping {
    /// The rule `config` against earlier trials' per-epoch values
    /// (`reference[trial][epoch]`).
    pub fn new(config: MedianStoppingConfig, reference: Vec<Vec<f64>>) -> Result<Self> {
        if config.monitor.is_empty() {
            return Err(CallbackError::InvalidParameter {
                callback: NAME,
                param: "monitor",
                message: "must name a log key".into(),
            });
        }
        Ok(Self {
            config,
            reference,
            source: None,
        })
    }

    /// Reads the reference afresh from `source` before each decision (the
    /// trials completed when this epoch ends), instead of a fixed list.
    pub fn with_reference_source(mut self, source: ReferenceSource) -> Self {
        self.source = Some(source);
        self
    }

    /// The median of the earlier trials at `epoch`, if enough reached it.
    pub fn median_at(&self, epoch: usize) -> Option<f64> {
        let mut values: Vec<f64> = self
            .reference
            .iter()
            .filter_map(|trial| trial.get(epoch).copied())
            .filter(|v| v.is_finite())
            .collect();
        if values.len() < self.config.min_trials.max(1) {
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
        if epoch + 1 < self.config.warmup_epochs.max(1) {
            return false;
        }
        let Some(median) = self.median_at(epoch) else {
            return false;
        };
        if !value.is_finite() {
            return true;
        }
        if self.config.direction == Direction::Max {
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
        let Some(value) = logs.get(&self.config.monitor) else {
            return Ok(());
        };
        if let Some(source) = &mut self.source {
            self.reference = source();
        }
        if self.should_prune(epoch, value) {
            let median = self.median_at(epoch).unwrap_or(f64::NAN);
            ctx.stop_training(format!(
                "pruned by MedianStopping: `{}` = {value} at epoch {} is worse than the median {median} of earlier trials",
                self.config.monitor,
                epoch + 1
            ));
        }
        Ok(())
    }
}

impl std::fmt::Debug for MedianStopping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(NAME)
            .field("config", &self.config)
            .field("reference", &self.reference)
            .field("source", &self.source.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_source_is_read_at_each_epoch_end() {
        use crate::CallbackList;
        use crate::testing::{Script, ScriptedControl, drive};
        // Completed trials appear on disk while this one runs: none at
        // epoch 0, two better ones by epoch 1.
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = calls.clone();
        let rule = MedianStopping::new(MedianStoppingConfig::default(), vec![])
            .unwrap()
            .with_reference_source(Box::new(move || {
                match seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                    0 => vec![],
                    _ => vec![vec![0.9, 0.5], vec![0.8, 0.4]],
                }
            }));
        let mut list = CallbackList::new();
        list.push(rule);
        let script =
            Script::from_epochs([0.95, 0.6, 0.5].map(|v| Logs::from_iter([("val_loss", v)])));
        let trace = drive(&mut list, &mut ScriptedControl::new(0.1), &script);
        assert_eq!(
            trace.stop_epoch,
            Some(1),
            "pruned once the others are known"
        );
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    fn rule(config: MedianStoppingConfig) -> MedianStopping {
        MedianStopping::new(
            config,
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
        let r = rule(MedianStoppingConfig::default());
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
        let max = MedianStoppingConfig {
            direction: Direction::Max,
            ..Default::default()
        };
        let r = rule(max.clone());
        assert!(r.should_prune(1, 0.75));
        assert!(!r.should_prune(1, 0.85));
        let r = rule(MedianStoppingConfig {
            warmup_epochs: 3,
            ..max.clone()
        });
        assert!(!r.should_prune(1, 0.0), "no pruning during warm-up");
        let r = rule(MedianStoppingConfig {
            warmup_epochs: 3,
            min_trials: 4,
            ..max
        });
        assert_eq!(r.median_at(2), None);
        assert!(!r.should_prune(2, 0.0));
        assert!(
            MedianStopping::new(MedianStoppingConfig::default(), vec![])
                .unwrap()
                .median_at(0)
                .is_none()
        );
    }
}
