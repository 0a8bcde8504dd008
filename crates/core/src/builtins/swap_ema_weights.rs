//! [`SwapEmaWeights`]: Keras's `keras.callbacks.SwapEMAWeights`.

use serde::{Deserialize, Serialize};

use crate::callback::Callback;
use crate::context::{Context, ModelSnapshot};
use crate::error::{CallbackError, Result};
use crate::logs::Logs;

use super::averaging::{named, saved};

const NAME: &str = "SwapEMAWeights";

/// The parameters of Keras's `SwapEMAWeights` callback, which swaps the
/// optimizer's moving averages into the model for validation (and, with
/// `swap_on_epoch`, for the other epoch-end callbacks).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SwapEmaWeightsConfig {
    /// Swap at `on_epoch_end` / `on_epoch_begin` too, so that callbacks
    /// after this one (ModelCheckpoint) see the averaged weights.
    pub swap_on_epoch: bool,
}

/// Puts the moving average that an
/// [`ExponentialMovingAverage`](super::ExponentialMovingAverage) in the
/// same list keeps ([`Context::moving_average`]) into the model for
/// validation, and the trained weights back after it, as Keras's
/// `SwapEMAWeights` does; with `swap_on_epoch`, the average also stays in
/// the model from this callback's `on_epoch_end` to the next
/// `on_epoch_begin`, so callbacks after it (ModelCheckpoint) save the
/// averaged weights.
///
/// As Keras's needs an optimizer built with `use_ema=True`, this one fails
/// at the first validation after a training step when no moving average
/// has been published.
///
/// The trained weights it holds while the average is in the model are part
/// of its state: a backup written at that moment resumes with them.
pub struct SwapEmaWeights {
    swap_on_epoch: bool,
    /// The trained weights, while the average is in the model.
    stashed: Option<ModelSnapshot>,
}

impl SwapEmaWeights {
    /// Builds the callback (nothing to check).
    pub fn new(config: SwapEmaWeightsConfig) -> Self {
        Self {
            swap_on_epoch: config.swap_on_epoch,
            stashed: None,
        }
    }

    fn swap_in(&mut self, ctx: &mut Context) -> Result<()> {
        if self.stashed.is_some() {
            return Ok(());
        }
        let Some(average) = ctx.moving_average().cloned() else {
            if ctx.progress().global_step == 0 {
                return Ok(()); // no step taken yet
            }
            return Err(CallbackError::InvalidParameter {
                callback: NAME,
                param: "use_ema",
                message: "needs the optimizer's moving average: add an ExponentialMovingAverage \
                          to the callbacks (in the CLI, `use_ema = true` in [optimizer])"
                    .into(),
            });
        };
        let trained = ctx.current_model();
        ctx.restore_model(&average)?;
        self.stashed = Some(trained);
        Ok(())
    }

    fn swap_out(&mut self, ctx: &mut Context) -> Result<()> {
        match self.stashed.take() {
            Some(trained) => ctx.restore_model(&trained),
            None => Ok(()),
        }
    }
}

impl Callback for SwapEmaWeights {
    fn name(&self) -> String {
        NAME.into()
    }

    fn on_epoch_begin(&mut self, _epoch: usize, ctx: &mut Context) -> Result<()> {
        self.swap_out(ctx)
    }

    fn on_validation_begin(&mut self, ctx: &mut Context) -> Result<()> {
        self.swap_in(ctx)
    }

    fn on_validation_end(&mut self, _logs: &Logs, ctx: &mut Context) -> Result<()> {
        if self.swap_on_epoch {
            Ok(())
        } else {
            self.swap_out(ctx)
        }
    }

    fn on_epoch_end(&mut self, _epoch: usize, _logs: &mut Logs, ctx: &mut Context) -> Result<()> {
        if self.swap_on_epoch {
            self.swap_in(ctx)
        } else {
            Ok(())
        }
    }

    fn on_train_end(&mut self, _logs: &Logs, ctx: &mut Context) -> Result<()> {
        if ctx.train_end().is_some_and(|end| end.is_interrupted()) {
            // The run continues later, with the trained weights.
            self.swap_out(ctx)
        } else {
            // Finished: the model ends with the average (the averaging
            // callback puts it in, whichever of the two runs first).
            self.stashed = None;
            Ok(())
        }
    }

    fn state(&self) -> Result<Option<serde_json::Value>> {
        crate::error::state_to_json(&SwapState {
            swapped: self.stashed.is_some(),
        })
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        let _: SwapState = crate::error::state_from_json(state)?;
        Ok(())
    }

    fn state_models(&self) -> Vec<(String, ModelSnapshot)> {
        saved("trained", &self.stashed)
    }

    fn load_state_models(&mut self, models: Vec<(String, ModelSnapshot)>) -> Result<()> {
        self.stashed = named(models, "trained");
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct SwapState {
    swapped: bool,
}
