//! [`TerminateOnNaN`]: stop when a batch loss is NaN or infinite (Keras's
//! `keras.callbacks.TerminateOnNaN`).

use serde::{Deserialize, Serialize};

use super::python::float_repr;
use crate::callback::Callback;
use crate::context::Context;
use crate::error::{CallbackError, Result};
use crate::logs::Logs;

/// The parameters of [`TerminateOnNaN`], with Keras's names and defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TerminateOnNaNConfig {
    /// Fail at once with an error from the batch hook (no `on_epoch_end`, no
    /// `on_train_end`) instead of stopping gracefully. Default `false`.
    pub raise_error: bool,
}

/// Stops training when a training batch's `loss` is NaN or ±inf.
///
/// Only the per-batch `loss` is checked (in `on_train_batch_end`; NaN in
/// epoch logs is ignored, as in Keras). When it fires it prints
/// `Batch N: Invalid loss, terminating training` and requests a stop: the
/// rest of the epoch's batches are skipped, the epoch's `on_epoch_end` still
/// runs, then training ends. With `raise_error` it returns an error instead.
///
/// ```
/// use burnfit_core::builtins::TerminateOnNaN;
/// use burnfit_core::testing::{drive, Script, ScriptedControl};
/// use burnfit_core::{CallbackList, Logs};
///
/// let mut list = CallbackList::new();
/// list.push(TerminateOnNaN::default());
/// let mut ctl = ScriptedControl::new(0.01);
/// let batch = |loss: f64| Logs::from_iter([("loss", loss)]);
/// let script = Script::from_epochs([batch(1.0), batch(1.0)])
///     .with_batches(vec![vec![batch(0.9), batch(f64::NAN), batch(0.8)], vec![batch(0.7)]]);
/// let trace = drive(&mut list, &mut ctl, &script);
/// assert_eq!(trace.stop_epoch, Some(0));
/// assert_eq!(trace.epochs[0].batches_run, 2);
/// assert_eq!(ctl.infos(), ["Batch 1: Invalid loss, terminating training"]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct TerminateOnNaN {
    config: TerminateOnNaNConfig,
}

impl TerminateOnNaN {
    /// Builds the callback (no parameter can be invalid).
    pub fn new(config: TerminateOnNaNConfig) -> Result<Self> {
        Ok(Self { config })
    }

    /// The parameters it was built with.
    pub fn config(&self) -> &TerminateOnNaNConfig {
        &self.config
    }
}

impl Callback for TerminateOnNaN {
    fn on_train_batch_end(
        &mut self,
        batch: usize,
        logs: &mut Logs,
        ctx: &mut Context,
    ) -> Result<()> {
        let Some(loss) = logs.get("loss") else {
            return Ok(());
        };
        if loss.is_finite() {
            return Ok(());
        }
        if self.config.raise_error {
            return Err(CallbackError::Runtime {
                callback: "TerminateOnNaN",
                message: format!(
                    "NaN or Inf loss encountered at batch {batch}. Loss value: {}. Terminating training immediately.",
                    float_repr(loss)
                ),
            });
        }
        ctx.info(format!("Batch {batch}: Invalid loss, terminating training"));
        ctx.stop_training(format!(
            "TerminateOnNaN: invalid loss {} at batch {batch}",
            float_repr(loss)
        ));
        Ok(())
    }

    fn wants_batch_logs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CallbackList;
    use crate::testing::{Phase, Script, ScriptedControl, drive};

    fn batch(loss: f64) -> Logs {
        Logs::from_iter([("loss", loss)])
    }

    #[test]
    fn raise_error_fails_in_the_batch_hook() {
        let mut list = CallbackList::new();
        list.push(TerminateOnNaN::new(TerminateOnNaNConfig { raise_error: true }).unwrap());
        let mut ctl = ScriptedControl::new(0.01);
        let script = Script::from_epochs([batch(1.0)])
            .with_batches(vec![vec![batch(1.0), batch(f64::NEG_INFINITY)]]);
        let trace = drive(&mut list, &mut ctl, &script);
        let err = trace.error.unwrap();
        assert_eq!(err.at.phase, Phase::BatchEnd);
        assert_eq!(err.at.batch, Some(1));
        assert!(err.error.to_string().contains("Loss value: -inf."));
        assert_eq!(trace.epochs_run, 0);
    }

    #[test]
    fn nan_in_epoch_logs_is_ignored_and_missing_loss_is_fine() {
        let mut list = CallbackList::new();
        list.push(TerminateOnNaN::default());
        let mut ctl = ScriptedControl::new(0.01);
        let script = Script::from_epochs([batch(f64::NAN), batch(1.0)])
            .with_batches(vec![vec![Logs::from_iter([("acc", f64::NAN)])]]);
        let trace = drive(&mut list, &mut ctl, &script);
        assert_eq!(trace.stop_epoch, None);
        assert_eq!(trace.epochs_run, 2);
        assert!(TerminateOnNaN::default().wants_batch_logs());
    }
}
