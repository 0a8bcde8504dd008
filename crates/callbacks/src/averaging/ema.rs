//! [`ExponentialMovingAverage`]: Keras's optimizer option `use_ema`, as a
//! callback.

use std::sync::{Arc, Mutex};

use burn::module::Module;
use burnfit_core::{Callback, CallbackError, Context, Logs, ModelSnapshot, Result};
use serde::{Deserialize, Serialize};

use super::blend::blend;
use crate::engine::snapshot_of;

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

/// The averaged weights, shared by the averaging callback and
/// [`SwapEmaWeights`](super::SwapEmaWeights).
pub type EmaWeights<M> = Arc<Mutex<Option<M>>>;

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
/// Add [`SwapEmaWeights`](super::SwapEmaWeights) (built from
/// [`ExponentialMovingAverage::swap`]) to validate, and checkpoint, with
/// the average. The average is saved in backups, so a resumed run continues
/// the same average.
pub struct ExponentialMovingAverage<M: Module> {
    config: EmaConfig,
    average: EmaWeights<M>,
}

impl<M: Module + 'static> ExponentialMovingAverage<M> {
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
            average: Arc::default(),
        })
    }

    /// The shared average (`None` before the first step).
    pub fn weights(&self) -> EmaWeights<M> {
        self.average.clone()
    }

    /// A [`SwapEmaWeights`](super::SwapEmaWeights) over this average.
    pub fn swap(&self, swap_on_epoch: bool) -> super::SwapEmaWeights<M> {
        super::SwapEmaWeights::new(self.weights(), swap_on_epoch)
    }

    fn model(ctx: &Context) -> Result<M> {
        ctx.model::<M>().ok_or_else(|| CallbackError::Runtime {
            callback: NAME,
            message: "the model being trained is not of the type this average was built for".into(),
        })
    }
}

impl<M: Module + 'static> Callback for ExponentialMovingAverage<M> {
    fn name(&self) -> String {
        NAME.into()
    }

    fn on_train_batch_end(
        &mut self,
        _batch: usize,
        _logs: &mut Logs,
        ctx: &mut Context,
    ) -> Result<()> {
        let model = Self::model(ctx)?;
        let mut average = self.average.lock().expect("ema lock");
        let updated = match average.take() {
            None => model,
            Some(previous) => blend(previous, &model, 1.0 - self.config.momentum),
        };
        let overwrite = self
            .config
            .overwrite_frequency
            .is_some_and(|n| ctx.progress().global_step.is_multiple_of(n as u64));
        if overwrite {
            ctx.set_model(updated.clone())?;
        }
        *average = Some(updated);
        Ok(())
    }

    fn on_train_end(&mut self, _logs: &Logs, ctx: &mut Context) -> Result<()> {
        if ctx.train_end().is_some_and(|end| end.is_interrupted()) {
            return Ok(());
        }
        if let Some(average) = self.average.lock().expect("ema lock").clone() {
            ctx.set_model(average)?;
        }
        Ok(())
    }

    fn state_models(&self) -> Vec<(String, ModelSnapshot)> {
        self.average
            .lock()
            .expect("ema lock")
            .clone()
            .map(|m| vec![("average".to_string(), snapshot_of(m))])
            .unwrap_or_default()
    }

    fn load_state_models(&mut self, models: Vec<(String, ModelSnapshot)>) -> Result<()> {
        *self.average.lock().expect("ema lock") = models
            .into_iter()
            .find(|(name, _)| name == "average")
            .and_then(|(_, m)| m.downcast::<M>().ok());
        Ok(())
    }
}
