//! The [`Callback`] trait: Keras's hooks, each a no-op by default.

use crate::context::{Context, ModelSnapshot, Progress};
use crate::error::Result;
use crate::gradients::GradientView;
use crate::logs::Logs;

/// A training callback. Every hook has a default that does nothing, so a
/// callback implements only what it needs.
///
/// Hooks run synchronously on the training thread, in the order the callbacks
/// were added, so a decision (stop, new learning rate, restored weights) takes
/// effect at once. When each hook fires relative to the optimizer step and to
/// validation is documented in `docs/architecture.md`:
///
/// ```text
/// on_train_begin
/// for each epoch:
///     on_epoch_begin(epoch)
///     for each training batch:
///         on_train_batch_begin(batch)
///         forward, backward, optimizer step (with the current learning rate)
///         on_train_batch_end(batch, logs)      // a stop request ends the epoch here
///     on_validation_begin
///     for each validation batch: on_validation_batch_end(batch, logs)
///     on_validation_end(logs)                  // val_ metrics of this epoch
///     on_epoch_end(epoch, logs)                // train + val_ metrics, aggregated by Burn
/// on_train_end(logs)                           // also after an early stop
/// ```
///
/// An error returned by a hook ends training at once (no further hook runs,
/// `on_train_end` included) and is reported to the caller, as an exception in
/// a Keras callback would be.
pub trait Callback: Send {
    /// A short name used in messages and as the key of this callback's saved
    /// state (so it should be stable). Defaults to the type's name.
    fn name(&self) -> String {
        let full = std::any::type_name::<Self>();
        full.rsplit("::").next().unwrap_or(full).to_string()
    }

    /// Called once before the first epoch (also when resuming).
    fn on_train_begin(&mut self, _ctx: &mut Context) -> Result<()> {
        Ok(())
    }

    /// Called once after the last epoch, after an early stop too, with the
    /// last epoch's logs.
    fn on_train_end(&mut self, _logs: &Logs, _ctx: &mut Context) -> Result<()> {
        Ok(())
    }

    /// Called at the start of each epoch (0-based), before its first batch.
    fn on_epoch_begin(&mut self, _epoch: usize, _ctx: &mut Context) -> Result<()> {
        Ok(())
    }

    /// Called at the end of each epoch, after validation, with the epoch's
    /// aggregated train and `val_` metrics. Callbacks may add keys (for example
    /// `learning_rate`); later callbacks in the list see them.
    fn on_epoch_end(&mut self, _epoch: usize, _logs: &mut Logs, _ctx: &mut Context) -> Result<()> {
        Ok(())
    }

    /// Called before each training batch (0-based within the epoch).
    fn on_train_batch_begin(&mut self, _batch: usize, _ctx: &mut Context) -> Result<()> {
        Ok(())
    }

    /// Called after each training batch's optimizer step. `logs` holds
    /// `loss` for this batch when any callback's [`Callback::wants_batch_logs`]
    /// is true (reading the loss synchronises the device, so it is opt-in).
    fn on_train_batch_end(
        &mut self,
        _batch: usize,
        _logs: &mut Logs,
        _ctx: &mut Context,
    ) -> Result<()> {
        Ok(())
    }

    /// Called before the validation pass of each epoch.
    fn on_validation_begin(&mut self, _ctx: &mut Context) -> Result<()> {
        Ok(())
    }

    /// Called after each validation batch.
    fn on_validation_batch_end(
        &mut self,
        _batch: usize,
        _logs: &Logs,
        _ctx: &mut Context,
    ) -> Result<()> {
        Ok(())
    }

    /// Called after the validation pass with its `val_` metrics.
    fn on_validation_end(&mut self, _logs: &Logs, _ctx: &mut Context) -> Result<()> {
        Ok(())
    }

    /// Whether this callback needs the per-batch `loss` in
    /// [`Callback::on_train_batch_end`]. Defaults to `false`.
    fn wants_batch_logs(&self) -> bool {
        false
    }

    /// Whether this callback wants every metric in the batch logs (the
    /// running mean of the epoch so far, as Keras's batch logs hold), not
    /// only `loss`. Waiting for the metrics costs a round trip to Burn's
    /// metric thread per batch, so it is opt-in. Defaults to `false`.
    fn wants_batch_metrics(&self) -> bool {
        false
    }

    /// Whether this callback wants the metrics at the end of the training
    /// batch `progress` describes (its counters already count this batch:
    /// `global_batch` is 1-based, and `global_step` and `step_ended` say
    /// whether it ended an optimizer step). Asked only of callbacks whose
    /// [`Callback::wants_batch_metrics`] is `true`; the default is every
    /// batch. A callback that writes every N steps (TensorBoard's
    /// `update_freq`) says so here, so the other batches do not wait for
    /// the metrics.
    fn wants_batch_metrics_at(&self, progress: &Progress) -> bool {
        let _ = progress;
        self.wants_batch_metrics()
    }

    /// Whether this callback reads gradients in
    /// [`Callback::on_after_backward`] / [`Callback::on_before_optimizer_step`]
    /// (opt-in, like batch logs: the loop calls those hooks only when a
    /// callback says yes). Defaults to `false`.
    fn wants_gradients(&self) -> bool {
        false
    }

    /// Called after each batch's backward pass (on several devices, once
    /// per step with the combined gradients), before gradient accumulation
    /// and the optimizer step. Only if [`Callback::wants_gradients`].
    fn on_after_backward(
        &mut self,
        _batch: usize,
        _grads: &dyn GradientView,
        _ctx: &mut Context,
    ) -> Result<()> {
        Ok(())
    }

    /// Called right before each optimizer step with the gradients it will
    /// apply (accumulated, if Burn accumulates); `ctx.skip_optimizer_step()`
    /// skips it. Only if [`Callback::wants_gradients`].
    fn on_before_optimizer_step(
        &mut self,
        _batch: usize,
        _grads: &dyn GradientView,
        _ctx: &mut Context,
    ) -> Result<()> {
        Ok(())
    }

    /// Called when training is ending with an error (a hook's, a device's,
    /// a write's), before the error is returned: the last chance to save
    /// something. Errors returned here are ignored.
    fn on_exception(&mut self, _error: &str, _ctx: &mut Context) -> Result<()> {
        Ok(())
    }

    /// Models this callback keeps (best weights, an average), to be saved
    /// with a backup next to [`Callback::state`] and given back to
    /// [`Callback::load_state_models`] on resume. Defaults to none.
    fn state_models(&self) -> Vec<(String, ModelSnapshot)> {
        Vec::new()
    }

    /// Restores the models returned earlier by [`Callback::state_models`].
    fn load_state_models(&mut self, _models: Vec<(String, ModelSnapshot)>) -> Result<()> {
        Ok(())
    }

    /// This callback's state, to be saved with a backup and given back to
    /// [`Callback::load_state`] on resume. `None` (the default) means stateless.
    fn state(&self) -> Result<Option<serde_json::Value>> {
        Ok(None)
    }

    /// Restores the state returned earlier by [`Callback::state`].
    fn load_state(&mut self, _state: serde_json::Value) -> Result<()> {
        Ok(())
    }

    /// Called once before `on_train_begin`: a callback that keeps backups
    /// (BackupAndRestore) returns the backup training should continue from.
    /// The engine then restores the model, optimizer, scheduler, every
    /// callback's state and the position in the data before any hook runs.
    fn resume_point(&mut self) -> Result<Option<std::path::PathBuf>> {
        Ok(None)
    }
}

impl<C: Callback + ?Sized> Callback for Box<C> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn on_train_begin(&mut self, ctx: &mut Context) -> Result<()> {
        (**self).on_train_begin(ctx)
    }
    fn on_train_end(&mut self, logs: &Logs, ctx: &mut Context) -> Result<()> {
        (**self).on_train_end(logs, ctx)
    }
    fn on_epoch_begin(&mut self, epoch: usize, ctx: &mut Context) -> Result<()> {
        (**self).on_epoch_begin(epoch, ctx)
    }
    fn on_epoch_end(&mut self, epoch: usize, logs: &mut Logs, ctx: &mut Context) -> Result<()> {
        (**self).on_epoch_end(epoch, logs, ctx)
    }
    fn on_train_batch_begin(&mut self, batch: usize, ctx: &mut Context) -> Result<()> {
        (**self).on_train_batch_begin(batch, ctx)
    }
    fn on_train_batch_end(
        &mut self,
        batch: usize,
        logs: &mut Logs,
        ctx: &mut Context,
    ) -> Result<()> {
        (**self).on_train_batch_end(batch, logs, ctx)
    }
    fn on_validation_begin(&mut self, ctx: &mut Context) -> Result<()> {
        (**self).on_validation_begin(ctx)
    }
    fn on_validation_batch_end(
        &mut self,
        batch: usize,
        logs: &Logs,
        ctx: &mut Context,
    ) -> Result<()> {
        (**self).on_validation_batch_end(batch, logs, ctx)
    }
    fn on_validation_end(&mut self, logs: &Logs, ctx: &mut Context) -> Result<()> {
        (**self).on_validation_end(logs, ctx)
    }
    fn wants_batch_logs(&self) -> bool {
        (**self).wants_batch_logs()
    }
    fn wants_gradients(&self) -> bool {
        (**self).wants_gradients()
    }
    fn wants_batch_metrics(&self) -> bool {
        (**self).wants_batch_metrics()
    }
    fn wants_batch_metrics_at(&self, progress: &Progress) -> bool {
        (**self).wants_batch_metrics_at(progress)
    }
    fn on_after_backward(
        &mut self,
        batch: usize,
        grads: &dyn GradientView,
        ctx: &mut Context,
    ) -> Result<()> {
        (**self).on_after_backward(batch, grads, ctx)
    }
    fn on_before_optimizer_step(
        &mut self,
        batch: usize,
        grads: &dyn GradientView,
        ctx: &mut Context,
    ) -> Result<()> {
        (**self).on_before_optimizer_step(batch, grads, ctx)
    }
    fn on_exception(&mut self, error: &str, ctx: &mut Context) -> Result<()> {
        (**self).on_exception(error, ctx)
    }
    fn state_models(&self) -> Vec<(String, ModelSnapshot)> {
        (**self).state_models()
    }
    fn load_state_models(&mut self, models: Vec<(String, ModelSnapshot)>) -> Result<()> {
        (**self).load_state_models(models)
    }
    fn state(&self) -> Result<Option<serde_json::Value>> {
        (**self).state()
    }
    fn load_state(&mut self, state: serde_json::Value) -> Result<()> {
        (**self).load_state(state)
    }
    fn resume_point(&mut self) -> Result<Option<std::path::PathBuf>> {
        (**self).resume_point()
    }
}
