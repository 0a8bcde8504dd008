//! [`ExponentialMovingAverage`]: Keras's optimizer option `use_ema`, as a
//! callback.

use serde::{Deserialize, Serialize};

use crate::callback::Callback;
use crate::context::{Context, ModelSnapshot};
use crate::error::{CallbackError, Result};
use crate::logs::Logs;

use super::averaging::{blend, named, saved};

const NAME: &str = "ExponentialMovingAverage";

/// Keras's EMA settings (`keras.optimizers.Optimizer(use_ema=True,
/// ema_momentum=…, ema_overwrite_frequency=…)`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmaConfig {
    /// Weight of the old average at each step (Keras's `ema_momentum`,
    /// default 0.99).
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    /// Every this many steps, copy the average into the model (Keras's
    /// `ema_overwrite_frequency`; default: only at the end of training).
    #[serde(default)]
    pub overwrite_frequency: Option<usize>,
}

fn default_momentum() -> f64 {
    0.99
}

impl Default for EmaConfig {
    fn default() -> Self {
        Self {
            momentum: default_momentum(),
            overwrite_frequency: None,
        }
    }
}

/// Keeps an exponential moving average of the model's weights, as Keras's
/// optimizers do with `use_ema=True`:
///
/// * after every training step, `average = momentum · average + (1 −
///   momentum) · weights` (on the first step, `average = weights`);
/// * with `overwrite_frequency = n`, every `n`-th step copies the average
///   into the model;
/// * when training ends (not when it is interrupted), the model gets the
///   average (Keras's `finalize_variable_values`).
///
/// The average is published as the list's
/// [`Context::moving_average`], where a [`SwapEmaWeights`](super::SwapEmaWeights)
/// anywhere in the same list finds it to validate, and checkpoint, with
/// it. It is saved in backups, so a resumed run continues the same average.
///
/// Works on any model whose snapshots can blend
/// ([`ModelSnapshot::blend`]): every model the Burn glue trains.
pub struct ExponentialMovingAverage {
    config: EmaConfig,
    average: Option<ModelSnapshot>,
}

impl ExponentialMovingAverage {
    /// Checks the settings and builds the callback.
    pub fn new(config: EmaConfig) -> Result<Self> {
        if !(0.0..=1.0).contains(&config.momentum) {
            return Err(CallbackError::InvalidParameter {
                callback: NAME,
                param: "ema_momentum",
                message: "must be between 0 and 1".into(),
            });
        }
        if config.overwrite_frequency == Some(0) {
            return Err(CallbackError::InvalidParameter {
                callback: NAME,
                param: "ema_overwrite_frequency",
                message: "must be at least 1 (or left out)".into(),
            });
        }
        Ok(Self {
            config,
            average: None,
        })
    }

    /// The average so far (`None` before the first step).
    pub fn average(&self) -> Option<&ModelSnapshot> {
        self.average.as_ref()
    }
}

impl Callback for ExponentialMovingAverage {
    fn name(&self) -> String {
        NAME.into()
    }

    fn on_train_begin(&mut self, ctx: &mut Context) -> Result<()> {
        // A resumed run's average, for a SwapEMAWeights before the first step.
        if let Some(average) = &self.average {
            ctx.set_moving_average(average.clone());
        }
        Ok(())
    }

    fn on_train_batch_end(
        &mut self,
        _batch: usize,
        _logs: &mut Logs,
        ctx: &mut Context,
    ) -> Result<()> {
        let model = ctx.current_model();
        let updated = match self.average.take() {
            None => model,
            Some(previous) => blend(NAME, &previous, &model, 1.0 - self.config.momentum)?,
        };
        let overwrite = self
            .config
            .overwrite_frequency
            .is_some_and(|n| ctx.progress().global_step.is_multiple_of(n as u64));
        if overwrite {
            ctx.restore_model(&updated)?;
        }
        ctx.set_moving_average(updated.clone());
        self.average = Some(updated);
        Ok(())
    }

    fn on_train_end(&mut self, _logs: &Logs, ctx: &mut Context) -> Result<()> {
        if ctx.train_end().is_some_and(|end| end.is_interrupted()) {
            return Ok(());
        }
        match &self.average {
            Some(average) => ctx.restore_model(average),
            None => Ok(()),
        }
    }

    fn state_models(&self) -> Vec<(String, ModelSnapshot)> {
        saved("average", &self.average)
    }

    fn load_state_models(&mut self, models: Vec<(String, ModelSnapshot)>) -> Result<()> {
        self.average = named(models, "average");
        Ok(())
    }
}
