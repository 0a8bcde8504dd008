//! [`EarlyStopping`]: stop training when a monitored metric has stopped
//! improving (Keras's `keras.callbacks.EarlyStopping`).

use serde::{Deserialize, Serialize};

use crate::callback::Callback;
use crate::context::{Context, ModelSnapshot};
use crate::error::{CallbackError, Result};
use crate::logs::Logs;
use crate::monitor::{
    Direction, MetricDirections, Monitor, MonitorState, available_keys, special_float,
};

/// The parameters of [`EarlyStopping`], with Keras's names and defaults.
///
/// The last three fields are PyTorch Lightning extras; their defaults leave
/// the Keras behaviour untouched.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EarlyStoppingConfig {
    /// The log key to watch. Default `"val_loss"`.
    pub monitor: String,
    /// Minimum change that counts as an improvement (its absolute value is
    /// used). Default `0`.
    #[serde(with = "special_float")]
    pub min_delta: f64,
    /// Epochs without improvement after which training stops. Default `0`.
    pub patience: usize,
    /// `1` prints "Epoch N: early stopping" and the restore message. Default `0`.
    pub verbose: u32,
    /// `"auto"`, `"min"` or `"max"`; anything else warns and means `"auto"`.
    pub mode: String,
    /// A value the metric must beat (with `min_delta`) for `wait` to reset.
    #[serde(with = "special_float::option")]
    pub baseline: Option<f64>,
    /// Put back the weights of the best epoch in `on_train_end` (also when
    /// training was not stopped early). Default `false`.
    pub restore_best_weights: bool,
    /// Epochs before this one (0-based) are ignored entirely. Default `0`.
    pub start_from_epoch: usize,
    /// *Lightning extra.* Stop as soon as the monitored value is better than
    /// this threshold (below it in min mode, above it in max mode; compared
    /// in f32). Default `None` (off).
    #[serde(with = "special_float::option")]
    pub stopping_threshold: Option<f64>,
    /// *Lightning extra.* Stop as soon as the monitored value is worse than
    /// this threshold (above it in min mode, below it in max mode; compared
    /// in f32). Default `None` (off).
    #[serde(with = "special_float::option")]
    pub divergence_threshold: Option<f64>,
    /// *Lightning extra.* Stop as soon as the monitored value is NaN or
    /// infinite. Default `false` (Keras keeps going and treats NaN as "no
    /// improvement").
    pub check_finite: bool,
}

impl Default for EarlyStoppingConfig {
    fn default() -> Self {
        Self {
            monitor: "val_loss".into(),
            min_delta: 0.0,
            patience: 0,
            verbose: 0,
            mode: "auto".into(),
            baseline: None,
            restore_best_weights: false,
            start_from_epoch: 0,
            stopping_threshold: None,
            divergence_threshold: None,
            check_finite: false,
        }
    }
}

/// The serialisable state of [`EarlyStopping`] (Keras's attributes).
///
/// The best *weights* are not part of it (a model snapshot is not JSON):
/// they are saved next to it through [`Callback::state_models`], so a
/// backup keeps them and `restore_best_weights` works across a resume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EarlyStoppingState {
    /// Epochs since the last improvement (Keras's `wait`).
    pub wait: usize,
    /// `best` and the comparison (the monitor base's state).
    #[serde(flatten)]
    pub monitor: MonitorState,
    /// The epoch of `best` (0-based).
    pub best_epoch: usize,
    /// The epoch training was stopped at (0 = not stopped).
    pub stopped_epoch: usize,
}

/// Stops training when the monitored metric has stopped improving.
///
/// Decisions match Keras 3 exactly (float32 comparisons, strict
/// improvement, `min_delta` applied to the current value, NaN handling,
/// `baseline`, `start_from_epoch`, `restore_best_weights` also without an
/// early stop). Per monitored epoch: `wait += 1`; on an improvement `best`
/// is updated and `wait` reset to 0 only if the value also beats `baseline`;
/// an improving epoch never stops training; otherwise training stops once
/// `wait >= patience` (from the second epoch on). A missing metric warns and
/// changes nothing.
///
/// ```
/// use burnfit_core::builtins::{EarlyStopping, EarlyStoppingConfig};
/// use burnfit_core::testing::{drive, Script, ScriptedControl};
/// use burnfit_core::{CallbackList, Logs};
///
/// let early_stopping = EarlyStopping::new(EarlyStoppingConfig {
///     monitor: "val_loss".into(),
///     patience: 2,
///     restore_best_weights: true,
///     ..Default::default()
/// })
/// .unwrap();
/// let mut list = CallbackList::new();
/// list.push(early_stopping);
/// let mut ctl = ScriptedControl::new(0.01);
/// let losses = [1.0, 0.5, 0.6, 0.7, 0.4];
/// let script = Script::from_epochs(losses.map(|v| Logs::from_iter([("val_loss", v)])));
/// let trace = drive(&mut list, &mut ctl, &script);
/// assert_eq!(trace.stop_epoch, Some(3));
/// assert_eq!(ctl.marker(), 1); // the weights of the best epoch are back
/// ```
pub struct EarlyStopping {
    config: EarlyStoppingConfig,
    monitor: Monitor,
    wait: usize,
    best_epoch: usize,
    stopped_epoch: usize,
    best_weights: Option<ModelSnapshot>,
    state_loaded: bool,
}

impl EarlyStopping {
    /// Builds the callback. An unknown `mode` string is accepted (Keras
    /// warns and uses `"auto"`); the warning is emitted at `on_train_begin`
    /// unless taken earlier with [`EarlyStopping::take_warnings`].
    pub fn new(config: EarlyStoppingConfig) -> Result<Self> {
        if config.monitor.is_empty() {
            return Err(CallbackError::InvalidParameter {
                callback: "EarlyStopping",
                param: "monitor",
                message: "must name a log key such as `val_loss`".into(),
            });
        }
        let monitor = Monitor::new(
            "EarlyStopping",
            &config.monitor,
            &config.mode,
            config.min_delta,
        );
        Ok(Self {
            config,
            monitor,
            wait: 0,
            best_epoch: 0,
            stopped_epoch: 0,
            best_weights: None,
            state_loaded: false,
        })
    }

    /// The parameters it was built with.
    pub fn config(&self) -> &EarlyStoppingConfig {
        &self.config
    }

    /// Sets the metric directions `mode="auto"` resolves with (default:
    /// [`MetricDirections::known`]).
    pub fn with_metric_directions(mut self, metrics: MetricDirections) -> Self {
        self.monitor.set_metric_directions(metrics);
        self
    }

    /// Takes the warnings Keras would emit at construction (an unknown
    /// mode); those not taken are emitted through the context at
    /// `on_train_begin`.
    pub fn take_warnings(&mut self) -> Vec<String> {
        self.monitor.take_warnings()
    }

    /// The current state (Keras's attributes).
    pub fn current_state(&self) -> EarlyStoppingState {
        EarlyStoppingState {
            wait: self.wait,
            monitor: self.monitor.saved_state(),
            best_epoch: self.best_epoch,
            stopped_epoch: self.stopped_epoch,
        }
    }

    /// Keras's per-epoch update. Returns whether training should stop.
    fn keras_update(&mut self, epoch: usize, current: f64, ctx: &Context) -> Result<bool> {
        if self.config.restore_best_weights
            && self.best_weights.is_none()
            && self.monitor.best().is_none()
        {
            // Keras: "if best weights were never set, the current weights are
            // considered the best" (only matters on the first monitored epoch).
            self.best_weights = Some(ctx.snapshot_model());
            self.best_epoch = epoch;
        }
        self.wait += 1;
        if self.monitor.update_best(current)? {
            self.best_epoch = epoch;
            if self.config.restore_best_weights {
                self.best_weights = Some(ctx.snapshot_model());
            }
            let beats_baseline = match self.config.baseline {
                None => true,
                Some(baseline) => self.monitor.is_improvement(current, Some(baseline))?,
            };
            if beats_baseline {
                self.wait = 0;
            }
            return Ok(false);
        }
        Ok(self.wait >= self.config.patience && epoch > 0)
    }

    /// The Lightning extras: a reason to stop regardless of patience.
    fn extra_stop_reason(&self, current: f64, direction: Direction) -> Option<String> {
        let key = &self.config.monitor;
        if self.config.check_finite && !current.is_finite() {
            return Some(format!(
                "monitored metric `{key}` = {current} is not finite"
            ));
        }
        if let Some(threshold) = self.config.stopping_threshold
            && direction.better(current as f32, threshold as f32)
        {
            return Some(format!(
                "monitored metric `{key}` = {current} reached stopping_threshold {threshold}"
            ));
        }
        if let Some(threshold) = self.config.divergence_threshold
            && direction.better(threshold as f32, current as f32)
        {
            return Some(format!(
                "monitored metric `{key}` = {current} passed divergence_threshold {threshold}"
            ));
        }
        None
    }
}

impl Callback for EarlyStopping {
    fn on_train_begin(&mut self, ctx: &mut Context) -> Result<()> {
        for warning in self.monitor.take_warnings() {
            ctx.warn(warning);
        }
        if !std::mem::take(&mut self.state_loaded) {
            self.wait = 0;
            self.stopped_epoch = 0;
            self.monitor.set_best(None);
            self.best_epoch = 0;
            self.best_weights = None;
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &mut Logs, ctx: &mut Context) -> Result<()> {
        let direction = self.monitor.resolve()?;
        let Some(current) = self.monitor.current(logs) else {
            ctx.warn(format!(
                "Early stopping conditioned on metric `{}` which is not available. Available metrics are: {}",
                self.config.monitor,
                available_keys(logs)
            ));
            return Ok(());
        };
        if epoch < self.config.start_from_epoch {
            return Ok(());
        }
        let patience_exhausted = self.keras_update(epoch, current, ctx)?;
        let reason = if patience_exhausted {
            Some(format!(
                "EarlyStopping: `{}` did not improve for {} epochs (best {} at epoch {})",
                self.config.monitor,
                self.wait,
                self.monitor.best().unwrap_or(f64::NAN),
                self.best_epoch + 1
            ))
        } else {
            self.extra_stop_reason(current, direction)
                .map(|r| format!("EarlyStopping: {r}"))
        };
        if let Some(reason) = reason {
            self.stopped_epoch = epoch;
            ctx.stop_training(reason);
        }
        Ok(())
    }

    fn on_train_end(&mut self, _logs: &Logs, ctx: &mut Context) -> Result<()> {
        if ctx.train_end().is_some_and(|end| end.is_interrupted()) {
            // Not the end of training: the run continues from a backup, with
            // the weights it had, not the best ones.
            return Ok(());
        }
        if self.stopped_epoch > 0 && self.config.verbose > 0 {
            ctx.info(format!("Epoch {}: early stopping", self.stopped_epoch + 1));
        }
        if self.config.restore_best_weights {
            if let Some(weights) = self.best_weights.take() {
                if self.config.verbose > 0 {
                    ctx.info(format!(
                        "Restoring model weights from the end of the best epoch: {}.",
                        self.best_epoch + 1
                    ));
                }
                ctx.restore_model(&weights)?;
            } else if self.monitor.best().is_some() {
                ctx.warn(format!(
                    "EarlyStopping: the weights of the best epoch ({}) were not in the backup \
                     resumed from and cannot be restored; load them from a checkpoint",
                    self.best_epoch + 1
                ));
            }
        }
        Ok(())
    }

    fn state(&self) -> Result<Option<serde_json::Value>> {
        crate::error::state_to_json(&self.current_state())
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        let state: EarlyStoppingState = crate::error::state_from_json(state)?;
        self.wait = state.wait;
        self.monitor.load_saved_state(&state.monitor);
        self.best_epoch = state.best_epoch;
        self.stopped_epoch = state.stopped_epoch;
        self.best_weights = None;
        self.state_loaded = true;
        Ok(())
    }

    fn state_models(&self) -> Vec<(String, crate::context::ModelSnapshot)> {
        match &self.best_weights {
            Some(weights) if self.config.restore_best_weights => {
                vec![(BEST_WEIGHTS.to_string(), weights.clone())]
            }
            _ => Vec::new(),
        }
    }

    fn load_state_models(
        &mut self,
        models: Vec<(String, crate::context::ModelSnapshot)>,
    ) -> Result<()> {
        self.best_weights = models
            .into_iter()
            .find(|(name, _)| name == BEST_WEIGHTS)
            .map(|(_, model)| model);
        Ok(())
    }
}

/// The name of the best weights among [`EarlyStopping`]'s state models.
const BEST_WEIGHTS: &str = "best_weights";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CallbackList;
    use crate::testing::{Script, ScriptedControl, Trace, drive};

    fn run(config: EarlyStoppingConfig, values: &[f64]) -> (Trace, ScriptedControl) {
        let mut list = CallbackList::new();
        list.push(EarlyStopping::new(config).unwrap());
        let mut ctl = ScriptedControl::new(0.01);
        let script =
            Script::from_epochs(values.iter().map(|v| Logs::from_iter([("val_loss", *v)])));
        let trace = drive(&mut list, &mut ctl, &script);
        (trace, ctl)
    }

    fn cfg(patience: usize) -> EarlyStoppingConfig {
        EarlyStoppingConfig {
            patience,
            ..Default::default()
        }
    }

    #[test]
    fn stopping_threshold_stops_at_once() {
        let config = EarlyStoppingConfig {
            stopping_threshold: Some(0.5),
            ..cfg(10)
        };
        let (trace, ctl) = run(config, &[1.0, 0.6, 0.5, 0.4, 0.3]);
        // 0.5 is not below 0.5; 0.4 is.
        assert_eq!(trace.stop_epoch, Some(3));
        assert!(ctl.stop_reason().unwrap().contains("stopping_threshold"));
    }

    #[test]
    fn divergence_threshold_stops_at_once() {
        let config = EarlyStoppingConfig {
            divergence_threshold: Some(5.0),
            ..cfg(10)
        };
        let (trace, _) = run(config, &[1.0, 2.0, 5.0, 6.0, 0.1]);
        assert_eq!(trace.stop_epoch, Some(3));
        let state = &trace.final_states.unwrap()["EarlyStopping"];
        assert_eq!(state["stopped_epoch"], 3);
    }

    #[test]
    fn check_finite_stops_on_nan_and_inf() {
        let config = EarlyStoppingConfig {
            check_finite: true,
            ..cfg(10)
        };
        let (trace, _) = run(config.clone(), &[1.0, f64::NAN, 0.5]);
        assert_eq!(trace.stop_epoch, Some(1));
        let (trace, _) = run(config, &[f64::INFINITY, 0.5]);
        assert_eq!(trace.stop_epoch, Some(0));
        // Off by default: Keras keeps going.
        let (trace, _) = run(cfg(10), &[1.0, f64::NAN, 0.5]);
        assert_eq!(trace.stop_epoch, None);
    }

    #[test]
    fn thresholds_in_max_mode() {
        let config = EarlyStoppingConfig {
            mode: "max".into(),
            stopping_threshold: Some(0.9),
            divergence_threshold: Some(0.1),
            ..cfg(10)
        };
        let (trace, _) = run(config.clone(), &[0.5, 0.95]);
        assert_eq!(trace.stop_epoch, Some(1));
        let (trace, _) = run(config, &[0.5, 0.05]);
        assert_eq!(trace.stop_epoch, Some(1));
    }

    #[test]
    fn state_roundtrip_and_resume_keeps_counters() {
        let mut es = EarlyStopping::new(cfg(2)).unwrap();
        es.load_state(serde_json::json!({"wait": 1, "best": "NaN", "best_epoch": 3, "stopped_epoch": 0, "monitor_op": "less"}))
            .unwrap();
        let mut list = CallbackList::new();
        list.push(es);
        let mut ctl = ScriptedControl::new(0.01);
        // NaN best: nothing beats it, wait goes 2 -> stop at the first epoch > 0.
        let script = Script::from_epochs([0.5, 0.4].map(|v| Logs::from_iter([("val_loss", v)])));
        let trace = drive(&mut list, &mut ctl, &script);
        assert_eq!(trace.stop_epoch, Some(1));
        let state: EarlyStoppingState =
            serde_json::from_value(trace.final_states.unwrap()["EarlyStopping"].clone()).unwrap();
        assert_eq!(state.wait, 3);
        assert!(state.monitor.best.unwrap().is_nan());
        assert_eq!(state.best_epoch, 3);
        assert_eq!(state.monitor.min_delta_effective, 0.0);
    }

    #[test]
    fn resume_without_best_weights_warns_instead_of_restoring_wrong_epoch() {
        let mut es = EarlyStopping::new(EarlyStoppingConfig {
            restore_best_weights: true,
            ..cfg(5)
        })
        .unwrap();
        es.load_state(serde_json::json!({"wait": 0, "best": 0.1, "best_epoch": 0}))
            .unwrap();
        let mut list = CallbackList::new();
        list.push(es);
        let mut ctl = ScriptedControl::new(0.01);
        let script = Script::from_epochs([0.5, 0.4].map(|v| Logs::from_iter([("val_loss", v)])));
        let trace = drive(&mut list, &mut ctl, &script);
        assert_eq!(trace.marker_after_train_end, Some(1));
        assert!(ctl.restores().is_empty());
        assert_eq!(ctl.warnings().len(), 1);
    }

    #[test]
    fn best_weights_survive_resume_through_state_models() {
        let config = EarlyStoppingConfig {
            restore_best_weights: true,
            ..cfg(5)
        };
        // First process: epochs 0 (best) and 1, then a backup.
        let mut first = EarlyStopping::new(config.clone()).unwrap();
        let mut ctl = ScriptedControl::new(0.01);
        ctl.set_marker(0);
        let mut ctx = crate::context::Context::new(&mut ctl);
        first.on_train_begin(&mut ctx).unwrap();
        first
            .on_epoch_end(0, &mut Logs::from_iter([("val_loss", 0.1)]), &mut ctx)
            .unwrap();
        let state = first.state().unwrap().unwrap();
        let models = first.state_models();
        assert_eq!(models.len(), 1);

        // Second process: resumes, sees worse epochs, restores epoch 0's weights.
        let mut es = EarlyStopping::new(config).unwrap();
        es.load_state(state).unwrap();
        es.load_state_models(models).unwrap();
        let mut list = CallbackList::new();
        list.push(es);
        let mut ctl = ScriptedControl::new(0.01);
        let script = Script::from_epochs([0.5, 0.4].map(|v| Logs::from_iter([("val_loss", v)])));
        let trace = drive(&mut list, &mut ctl, &script);
        assert_eq!(trace.marker_after_train_end, Some(0));
        assert!(ctl.warnings().is_empty());
    }

    #[test]
    fn verbose_messages() {
        let config = EarlyStoppingConfig {
            verbose: 1,
            restore_best_weights: true,
            ..cfg(1)
        };
        let (_, ctl) = run(config, &[1.0, 0.5, 0.6]);
        assert_eq!(
            ctl.infos(),
            [
                "Epoch 3: early stopping",
                "Restoring model weights from the end of the best epoch: 2."
            ]
        );
    }

    #[test]
    fn config_rejects_unknown_fields_and_accepts_special_floats() {
        let config: EarlyStoppingConfig =
            serde_json::from_str(r#"{"baseline": "Infinity", "patience": 3}"#).unwrap();
        assert_eq!(config.baseline, Some(f64::INFINITY));
        assert_eq!(config.patience, 3);
        assert!(serde_json::from_str::<EarlyStoppingConfig>(r#"{"patiance": 3}"#).is_err());
        assert!(
            EarlyStopping::new(EarlyStoppingConfig {
                monitor: String::new(),
                ..cfg(0)
            })
            .is_err()
        );
    }
}
