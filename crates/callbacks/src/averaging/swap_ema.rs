//! [`SwapEmaWeights`]: Keras's `keras.callbacks.SwapEMAWeights`.

use burn::module::Module;
use burnfit_core::{Callback, CallbackError, Context, Logs, ModelSnapshot, Result};
use serde::{Deserialize, Serialize};

use super::ema::EmaWeights;
use crate::engine::snapshot_of;

const NAME: &str = "SwapEMAWeights";

/// Puts the moving average of an
/// [`ExponentialMovingAverage`](super::ExponentialMovingAverage) into the
/// model for validation, and the trained weights back after it, as Keras's
/// `SwapEMAWeights` does; with `swap_on_epoch`, the average also stays in
/// the model from this callback's `on_epoch_end` to the next
/// `on_epoch_begin`, so callbacks after it (ModelCheckpoint) save the
/// averaged weights.
///
/// The trained weights it holds while the average is in the model are part
/// of its state: a backup written at that moment resumes with them.
pub struct SwapEmaWeights<M: Module> {
    average: EmaWeights<M>,
    swap_on_epoch: bool,
    /// The trained weights, while the average is in the model.
    stashed: Option<M>,
}

impl<M: Module + 'static> SwapEmaWeights<M> {
    /// Swaps the average `average` in and out.
    pub fn new(average: EmaWeights<M>, swap_on_epoch: bool) -> Self {
        Self {
            average,
            swap_on_epoch,
            stashed: None,
        }
    }

    fn swap_in(&mut self, ctx: &mut Context) -> Result<()> {
        if self.stashed.is_some() {
            return Ok(());
        }
        let Some(average) = self.average.lock().expect("ema lock").clone() else {
            return Ok(()); // no step taken yet
        };
        let trained = ctx.model::<M>().ok_or_else(|| CallbackError::Runtime {
            callback: NAME,
            message: "the model being trained is not of the averaged type".into(),
        })?;
        ctx.set_model(average)?;
        self.stashed = Some(trained);
        Ok(())
    }

    fn swap_out(&mut self, ctx: &mut Context) -> Result<()> {
        match self.stashed.take() {
            Some(trained) => ctx.set_model(trained),
            None => Ok(()),
        }
    }
}

impl<M: Module + 'static> Callback for SwapEmaWeights<M> {
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
        burnfit_core::error::state_to_json(&SwapState {
            swapped: self.stashed.is_some(),
        })
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        let _: SwapState = burnfit_core::error::state_from_json(state)?;
        Ok(())
    }

    fn state_models(&self) -> Vec<(String, ModelSnapshot)> {
        self.stashed
            .clone()
            .map(|m| vec![("trained".to_string(), snapshot_of(m))])
            .unwrap_or_default()
    }

    fn load_state_models(&mut self, models: Vec<(String, ModelSnapshot)>) -> Result<()> {
        self.stashed = models
            .into_iter()
            .find(|(name, _)| name == "trained")
            .and_then(|(_, m)| m.downcast::<M>().ok());
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct SwapState {
    swapped: bool,
}
