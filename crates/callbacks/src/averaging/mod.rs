//! Weight averaging: callbacks that keep an average of the model's weights
//! and put it into the model. They do arithmetic on whole models, so they
//! live here, in the Burn glue, generic over the model type.
//!
//! | callback | from | averages |
//! | --- | --- | --- |
//! | [`ExponentialMovingAverage`] | Keras's `use_ema` optimizer option | every step, exponentially |
//! | [`SwapEmaWeights`] | Keras's `SwapEMAWeights` | (puts that average in for validation) |
//! | [`StochasticWeightAveraging`] | Lightning's `StochasticWeightAveraging` | every epoch from `swa_epoch_start`, equally |
//!
//! [`build_callback`] builds any configured callback for a model type,
//! these included.

mod blend;
mod ema;
mod swa;
mod swap_ema;

pub use blend::blend;
pub use ema::{EmaConfig, EmaWeights, ExponentialMovingAverage};
pub use swa::StochasticWeightAveraging;
pub use swap_ema::SwapEmaWeights;

use burn::module::Module;
use burnfit_core::builtins::CallbackConfig;
use burnfit_core::{Callback, CallbackError, Result};

/// Builds a configured callback for models of type `M`: the weight
/// averaging ones here, every other one by
/// [`CallbackConfig::build`]. `ema` is the model's
/// [`ExponentialMovingAverage`], which a `SwapEMAWeights` needs (as in
/// Keras, where it needs an optimizer built with `use_ema=True`).
pub fn build_callback<M: Module + 'static>(
    config: &CallbackConfig,
    ema: Option<&EmaWeights<M>>,
) -> Result<Box<dyn Callback>> {
    match config {
        CallbackConfig::SwapEMAWeights(c) => match ema {
            Some(weights) => Ok(Box::new(SwapEmaWeights::new(
                weights.clone(),
                c.swap_on_epoch,
            ))),
            None => Err(CallbackError::InvalidParameter {
                callback: "SwapEMAWeights",
                param: "use_ema",
                message:
                    "needs the optimizer's moving average: set `use_ema = true` in [optimizer]"
                        .into(),
            }),
        },
        CallbackConfig::StochasticWeightAveraging(c) => {
            Ok(Box::new(StochasticWeightAveraging::<M>::new(c.clone())?))
        }
        other => other.build(),
    }
}
