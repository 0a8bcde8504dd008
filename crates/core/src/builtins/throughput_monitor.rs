//! [`ThroughputMonitor`]: how fast training goes, step by step (Lightning's
//! `ThroughputMonitor`): samples per second, the step's compute time, and
//! the time the loop waited for the batch.
//!
//! Each epoch's means go into its logs (`samples_per_sec`, `step_time`,
//! `data_wait_time`, in seconds), so the CSV log and TensorBoard write
//! them; every `log_every_n_steps` training steps the step's own values go
//! into the batch logs. Put it before CSVLogger and TensorBoard in the
//! callback list (the `burnfit` CLI adds its own CSV and TensorBoard after
//! the config's callbacks). The values are timings: a run that logs them
//! is no longer byte-identical to another.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::callback::Callback;
use crate::context::Context;
use crate::error::{CallbackError, Result};
use crate::logs::Logs;

const NAME: &str = "ThroughputMonitor";

/// The parameters of [`ThroughputMonitor`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThroughputMonitorConfig {
    /// Items in a training batch, for samples per second (the `burnfit`
    /// CLI fills in `training.batch_size`); without it, no `samples_per_sec`.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Put a step's values in the batch logs every this many steps (0:
    /// the epoch means only). Default 50, as Lightning's loggers.
    #[serde(default = "default_every")]
    pub log_every_n_steps: u64,
}

fn default_every() -> u64 {
    50
}

impl Default for ThroughputMonitorConfig {
    fn default() -> Self {
        Self {
            batch_size: None,
            log_every_n_steps: default_every(),
        }
    }
}

/// Measures each training step's wait for its batch and its compute time.
#[derive(Debug)]
pub struct ThroughputMonitor {
    config: ThroughputMonitorConfig,
    /// When the last step ended (or the epoch began).
    ready_since: Option<Instant>,
    /// When the current step began, and how long it waited.
    step: Option<(Instant, f64)>,
    /// This epoch's sums: compute seconds, wait seconds, steps.
    sums: (f64, f64, u64),
}

impl ThroughputMonitor {
    /// A monitor with `config`.
    pub fn new(config: ThroughputMonitorConfig) -> Result<Self> {
        if config.batch_size == Some(0) {
            return Err(CallbackError::InvalidParameter {
                callback: NAME,
                param: "batch_size",
                message: "must be at least 1 (or left out)".into(),
            });
        }
        Ok(Self {
            config,
            ready_since: None,
            step: None,
            sums: (0.0, 0.0, 0),
        })
    }

    /// The values of `steps` steps that took `compute` and waited `wait`
    /// seconds in all.
    fn values(&self, compute: f64, wait: f64, steps: u64) -> Vec<(&'static str, f64)> {
        let n = steps.max(1) as f64;
        let mut values = vec![("step_time", compute / n), ("data_wait_time", wait / n)];
        if let Some(batch) = self.config.batch_size {
            let seconds = (compute + wait).max(f64::MIN_POSITIVE);
            values.insert(0, ("samples_per_sec", batch as f64 * n / seconds));
        }
        values
    }
}

impl Callback for ThroughputMonitor {
    fn name(&self) -> String {
        NAME.into()
    }

    fn on_epoch_begin(&mut self, _epoch: usize, _ctx: &mut Context) -> Result<()> {
        self.sums = (0.0, 0.0, 0);
        self.ready_since = Some(Instant::now());
        Ok(())
    }

    fn on_train_batch_begin(&mut self, _batch: usize, _ctx: &mut Context) -> Result<()> {
        let now = Instant::now();
        let wait = self
            .ready_since
            .map_or(0.0, |since| now.duration_since(since).as_secs_f64());
        self.step = Some((now, wait));
        Ok(())
    }

    fn on_train_batch_end(
        &mut self,
        _batch: usize,
        logs: &mut Logs,
        ctx: &mut Context,
    ) -> Result<()> {
        let now = Instant::now();
        self.ready_since = Some(now);
        let Some((start, wait)) = self.step.take() else {
            return Ok(());
        };
        let compute = now.duration_since(start).as_secs_f64();
        self.sums.0 += compute;
        self.sums.1 += wait;
        self.sums.2 += 1;
        let every = self.config.log_every_n_steps;
        if ctx.progress().at_step_multiple_of(every) {
            for (key, value) in self.values(compute, wait, 1) {
                logs.insert(key, value);
            }
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, _epoch: usize, logs: &mut Logs, _ctx: &mut Context) -> Result<()> {
        let (compute, wait, steps) = self.sums;
        if steps > 0 {
            for (key, value) in self.values(compute, wait, steps) {
                logs.insert(key, value);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_per_second_are_the_batch_over_the_step_and_its_wait() {
        let monitor = ThroughputMonitor::new(ThroughputMonitorConfig {
            batch_size: Some(64),
            log_every_n_steps: 1,
        })
        .unwrap();
        let values = monitor.values(0.3, 0.1, 4);
        assert_eq!(values[0], ("samples_per_sec", 64.0 * 4.0 / 0.4));
        assert_eq!(values[1], ("step_time", 0.3 / 4.0));
        assert_eq!(values[2], ("data_wait_time", 0.1 / 4.0));
        let without = ThroughputMonitor::new(ThroughputMonitorConfig::default()).unwrap();
        assert!(
            without
                .values(0.3, 0.1, 4)
                .iter()
                .all(|(k, _)| *k != "samples_per_sec")
        );
        assert!(
            ThroughputMonitor::new(ThroughputMonitorConfig {
                batch_size: Some(0),
                ..Default::default()
            })
            .is_err()
        );
    }
}
