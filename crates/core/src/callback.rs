//! The [`Callback`] trait: Keras's hooks, each a no-op by default.

use crate::context::Context;
use crate::error::Result;
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
