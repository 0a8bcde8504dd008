//! [`ReduceLROnPlateau`]: lower the learning rate when a metric has stopped
//! improving (Keras's `keras.callbacks.ReduceLROnPlateau`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::python::float_repr;
use crate::callback::Callback;
use crate::context::Context;
use crate::error::{CallbackError, Result};
use crate::logs::Logs;
use crate::monitor::{MetricDirections, Monitor, MonitorState, available_keys, special_float};

/// The parameters of [`ReduceLROnPlateau`], with Keras's names and defaults.
///
/// Unknown keys are accepted and ignored, as Keras's `**kwargs` does (for
/// example the old `epsilon=`); they are kept in [`Self::ignored`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReduceLROnPlateauConfig {
    /// The log key to watch. Default `"val_loss"`.
    pub monitor: String,
    /// The new learning rate is `lr * factor`. Must be `< 1`. Default `0.1`.
    #[serde(with = "special_float")]
    pub factor: f64,
    /// Epochs without improvement before a reduction. Default `10`.
    pub patience: usize,
    /// `1` prints a message on each reduction. Default `0`.
    pub verbose: u32,
    /// `"auto"`, `"min"` or `"max"`; anything else warns and means `"auto"`.
    pub mode: String,
    /// Minimum change that counts as an improvement. Default `1e-4`.
    #[serde(with = "special_float")]
    pub min_delta: f64,
    /// Epochs to wait after a reduction (Keras's off-by-one included:
    /// `cooldown = N` gives `N - 1` quiet epochs). Default `0`.
    pub cooldown: usize,
    /// Lower bound of the learning rate. Default `0`.
    #[serde(with = "special_float")]
    pub min_lr: f64,
    /// Unknown keys, ignored like Keras's `**kwargs`.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub ignored: BTreeMap<String, serde_json::Value>,
}

impl Default for ReduceLROnPlateauConfig {
    fn default() -> Self {
        Self {
            monitor: "val_loss".into(),
            factor: 0.1,
            patience: 10,
            verbose: 0,
            mode: "auto".into(),
            min_delta: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
            ignored: BTreeMap::new(),
        }
    }
}

/// The serialisable state of [`ReduceLROnPlateau`] (Keras's attributes).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReduceLROnPlateauState {
    /// Epochs without improvement since the last reset.
    pub wait: usize,
    /// `best` and the comparison (the monitor base's state).
    #[serde(flatten)]
    pub monitor: MonitorState,
    /// Remaining cooldown epochs.
    pub cooldown_counter: usize,
}

/// Reduces the learning rate when the monitored metric has stopped
/// improving.
///
/// Keras 3's exact rules, per epoch with the metric present:
///
/// ```text
/// if cooldown_counter > 0: cooldown_counter -= 1; wait = 0
/// if improvement: best = current; wait = 0
/// elif cooldown_counter == 0:
///     wait += 1
///     if wait >= patience and f32(lr) > f32(min_lr):
///         lr = max(lr * factor, min_lr)      // stored as f32
///         cooldown_counter = cooldown; wait = 0
/// ```
///
/// Before reading the metric it writes `logs["learning_rate"]` (the rate
/// before this epoch's reduction), so callbacks later in the list see it and
/// `monitor = "learning_rate"` (with `mode = "min"`) works. New rates are
/// rounded to `f32` like Keras's float32 variable, so sequences match Keras
/// bit for bit.
///
/// ```
/// use burnfit_core::builtins::{ReduceLROnPlateau, ReduceLROnPlateauConfig};
/// use burnfit_core::testing::{drive, Script, ScriptedControl};
/// use burnfit_core::{CallbackList, Logs};
///
/// let rlr = ReduceLROnPlateau::new(ReduceLROnPlateauConfig {
///     patience: 1,
///     factor: 0.5,
///     ..Default::default()
/// })
/// .unwrap();
/// let mut list = CallbackList::new();
/// list.push(rlr);
/// let mut ctl = ScriptedControl::new(0.1);
/// let script = Script::from_epochs([1.0, 1.0, 1.0].map(|v| Logs::from_iter([("val_loss", v)])));
/// let trace = drive(&mut list, &mut ctl, &script);
/// assert_eq!(trace.final_lr, Some(0.02500000037252903)); // halved twice, in f32
/// ```
pub struct ReduceLROnPlateau {
    config: ReduceLROnPlateauConfig,
    monitor: Monitor,
    wait: usize,
    cooldown_counter: usize,
    state_loaded: bool,
}

impl ReduceLROnPlateau {
    /// Builds the callback; `factor >= 1` is rejected with Keras's message.
    pub fn new(config: ReduceLROnPlateauConfig) -> Result<Self> {
        if config.factor >= 1.0 {
            return Err(CallbackError::InvalidParameter {
                callback: "ReduceLROnPlateau",
                param: "factor",
                message: format!(
                    "ReduceLROnPlateau does not support a factor >= 1.0. Received factor={}",
                    float_repr(config.factor)
                ),
            });
        }
        if config.monitor.is_empty() {
            return Err(CallbackError::InvalidParameter {
                callback: "ReduceLROnPlateau",
                param: "monitor",
                message: "must name a log key such as `val_loss`".into(),
            });
        }
        let monitor = Monitor::new(
            "ReduceLROnPlateau",
            &config.monitor,
            &config.mode,
            config.min_delta,
        );
        Ok(Self {
            config,
            monitor,
            wait: 0,
            cooldown_counter: 0,
            state_loaded: false,
        })
    }

    /// The parameters it was built with.
    pub fn config(&self) -> &ReduceLROnPlateauConfig {
        &self.config
    }

    /// Sets the metric directions `mode="auto"` resolves with.
    pub fn with_metric_directions(mut self, metrics: MetricDirections) -> Self {
        self.monitor.set_metric_directions(metrics);
        self
    }

    /// Takes the construction warnings (unknown mode); those not taken are
    /// emitted at `on_train_begin`.
    pub fn take_warnings(&mut self) -> Vec<String> {
        self.monitor.take_warnings()
    }

    /// The current state (Keras's attributes).
    pub fn current_state(&self) -> ReduceLROnPlateauState {
        ReduceLROnPlateauState {
            wait: self.wait,
            monitor: self.monitor.saved_state(),
            cooldown_counter: self.cooldown_counter,
        }
    }

    fn reduce(&mut self, epoch: usize, lr: f64, ctx: &mut Context) -> Result<()> {
        if (lr as f32) > (self.config.min_lr as f32) {
            let new_lr = (lr * self.config.factor).max(self.config.min_lr);
            ctx.set_learning_rate(f64::from(new_lr as f32))?;
            if self.config.verbose > 0 {
                ctx.info(format!(
                    "Epoch {}: ReduceLROnPlateau reducing learning rate to {}.",
                    epoch + 1,
                    float_repr(new_lr)
                ));
            }
            self.cooldown_counter = self.config.cooldown;
            self.wait = 0;
        }
        Ok(())
    }
}

impl Callback for ReduceLROnPlateau {
    fn on_train_begin(&mut self, ctx: &mut Context) -> Result<()> {
        for warning in self.monitor.take_warnings() {
            ctx.warn(warning);
        }
        if !std::mem::take(&mut self.state_loaded) {
            self.cooldown_counter = 0;
            self.wait = 0;
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &mut Logs, ctx: &mut Context) -> Result<()> {
        self.monitor.resolve()?;
        let lr = ctx.learning_rate().ok_or_else(|| {
            CallbackError::Unsupported(
                "ReduceLROnPlateau needs a learning rate it can read and set".into(),
            )
        })?;
        logs.insert("learning_rate", lr);
        let Some(current) = self.monitor.current(logs) else {
            ctx.warn(format!(
                "Learning rate reduction is conditioned on metric `{}` which is not available. \
                 Available metrics are: {}.",
                self.config.monitor,
                available_keys(logs)
            ));
            return Ok(());
        };
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.wait = 0;
        }
        if self.monitor.update_best(current)? {
            self.wait = 0;
        } else if self.cooldown_counter == 0 {
            self.wait += 1;
            if self.wait >= self.config.patience {
                self.reduce(epoch, lr, ctx)?;
            }
        }
        Ok(())
    }

    fn state(&self) -> Result<Option<serde_json::Value>> {
        crate::error::state_to_json(&self.current_state())
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        let state: ReduceLROnPlateauState = crate::error::state_from_json(state)?;
        self.wait = state.wait;
        self.monitor.load_saved_state(&state.monitor);
        self.cooldown_counter = state.cooldown_counter;
        self.state_loaded = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CallbackList;
    use crate::testing::{Script, ScriptedControl, drive};

    fn cfg(patience: usize, factor: f64) -> ReduceLROnPlateauConfig {
        ReduceLROnPlateauConfig {
            patience,
            factor,
            ..Default::default()
        }
    }

    fn run(
        rlr: ReduceLROnPlateau,
        values: &[f64],
        lr: f64,
    ) -> (crate::testing::Trace, ScriptedControl) {
        let mut list = CallbackList::new();
        list.push(rlr);
        let mut ctl = ScriptedControl::new(lr);
        let script =
            Script::from_epochs(values.iter().map(|v| Logs::from_iter([("val_loss", *v)])));
        (drive(&mut list, &mut ctl, &script), ctl)
    }

    #[test]
    fn factor_ge_one_is_rejected_with_keras_text() {
        let err = ReduceLROnPlateau::new(cfg(1, 1.0))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("ReduceLROnPlateau does not support a factor >= 1.0. Received factor=1.0")
        );
        assert!(ReduceLROnPlateau::new(cfg(1, -1.0)).is_ok());
    }

    #[test]
    fn unknown_kwargs_are_ignored() {
        let config: ReduceLROnPlateauConfig =
            serde_json::from_str(r#"{"epsilon": 0.01, "patience": 2}"#).unwrap();
        assert_eq!(config.patience, 2);
        assert_eq!(config.ignored["epsilon"], 0.01);
    }

    #[test]
    fn verbose_message_prints_the_double_value() {
        let rlr = ReduceLROnPlateau::new(ReduceLROnPlateauConfig {
            verbose: 1,
            ..cfg(0, 0.5)
        })
        .unwrap();
        let (_, ctl) = run(rlr, &[1.0, 1.0], 0.1);
        assert_eq!(
            ctl.infos(),
            ["Epoch 2: ReduceLROnPlateau reducing learning rate to 0.05000000074505806."]
        );
    }

    #[test]
    fn min_lr_clamp_in_f32() {
        // min_lr = 0.1 as f64 while the stored lr is f32(0.1): equal in f32, no reduction.
        let rlr = ReduceLROnPlateau::new(ReduceLROnPlateauConfig {
            min_lr: 0.1,
            ..cfg(0, 0.5)
        })
        .unwrap();
        let (trace, _) = run(rlr, &[1.0, 1.0, 1.0], 0.1);
        assert_eq!(trace.final_lr, Some(f64::from(0.1f32)));
        let state = &trace.final_states.unwrap()["ReduceLROnPlateau"];
        assert_eq!(state["wait"], 2);
    }

    #[test]
    fn state_roundtrip_resumes_cooldown() {
        let mut rlr = ReduceLROnPlateau::new(ReduceLROnPlateauConfig {
            cooldown: 3,
            ..cfg(1, 0.5)
        })
        .unwrap();
        rlr.load_state(serde_json::json!({"wait": 0, "best": 1.0, "cooldown_counter": 2}))
            .unwrap();
        let (trace, _) = run(rlr, &[1.0, 1.0, 1.0], 0.1);
        // The counter reaches 0 in epoch 1, which already counts `wait = 1`
        // and reduces; epoch 2 is in the new cooldown.
        let lrs: Vec<_> = trace.lr_end.iter().map(|lr| lr.unwrap() as f32).collect();
        assert_eq!(lrs, [0.1, 0.05, 0.05]);
    }

    #[test]
    fn needs_a_learning_rate() {
        let mut list = CallbackList::new();
        list.push(ReduceLROnPlateau::new(cfg(0, 0.5)).unwrap());
        let mut ctl = ScriptedControl::without_learning_rate();
        let trace = drive(
            &mut list,
            &mut ctl,
            &Script::from_epochs([Logs::from_iter([("val_loss", 1.0)])]),
        );
        assert!(trace.error.is_some());
    }
}
