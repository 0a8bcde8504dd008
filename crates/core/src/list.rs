//! [`CallbackList`]: runs a list of callbacks hook by hook, in order.

use std::collections::BTreeMap;

use crate::callback::Callback;
use crate::context::{Context, ModelSnapshot, Progress, TrainingControl};
use crate::error::{CallbackError, Result};
use crate::gradients::GradientView;
use crate::logs::Logs;

/// The models callbacks keep, keyed like their states: callback key, then
/// `(name, model)` pairs.
pub type CallbackModels = BTreeMap<String, Vec<(String, ModelSnapshot)>>;

/// An ordered list of callbacks, driven as one.
///
/// Each hook is called on every callback in list order; the first error
/// stops the dispatch and is returned. The epoch-end `logs` are one shared
/// map, so a key written by a callback (e.g. ReduceLROnPlateau's
/// `learning_rate`) is seen by the callbacks after it, as in Keras.
#[derive(Default)]
pub struct CallbackList {
    callbacks: Vec<Box<dyn Callback>>,
    /// What [`Context::moving_average`] shows the callbacks.
    moving_average: Option<ModelSnapshot>,
}

impl CallbackList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a callback.
    pub fn push(&mut self, callback: impl Callback + 'static) {
        self.callbacks.push(Box::new(callback));
    }

    /// Appends an already boxed callback.
    pub fn push_boxed(&mut self, callback: Box<dyn Callback>) {
        self.callbacks.push(callback);
    }

    /// Number of callbacks.
    pub fn len(&self) -> usize {
        self.callbacks.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.callbacks.is_empty()
    }

    /// The callbacks' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.callbacks.iter().map(|c| c.name()).collect()
    }

    /// Whether any callback wants per-batch logs.
    pub fn wants_batch_logs(&self) -> bool {
        self.callbacks.iter().any(|c| c.wants_batch_logs())
    }

    /// Whether any callback wants every metric in the batch logs.
    pub fn wants_batch_metrics(&self) -> bool {
        self.callbacks.iter().any(|c| c.wants_batch_metrics())
    }

    /// Whether any callback wants the metrics at the end of the batch
    /// `progress` describes (see [`Callback::wants_batch_metrics_at`]).
    pub fn wants_batch_metrics_at(&self, progress: &Progress) -> bool {
        self.callbacks
            .iter()
            .any(|c| c.wants_batch_metrics() && c.wants_batch_metrics_at(progress))
    }

    /// Whether any callback reads gradients.
    pub fn wants_gradients(&self) -> bool {
        self.callbacks.iter().any(|c| c.wants_gradients())
    }

    /// Runs `on_after_backward` on every callback that wants gradients.
    pub fn on_after_backward(
        &mut self,
        batch: usize,
        grads: &dyn GradientView,
        ctl: &mut dyn TrainingControl,
    ) -> Result<()> {
        self.each(ctl, |cb, ctx| {
            if cb.wants_gradients() {
                cb.on_after_backward(batch, grads, ctx)
            } else {
                Ok(())
            }
        })
    }

    /// Runs `on_before_optimizer_step` on every callback that wants gradients.
    pub fn on_before_optimizer_step(
        &mut self,
        batch: usize,
        grads: &dyn GradientView,
        ctl: &mut dyn TrainingControl,
    ) -> Result<()> {
        self.each(ctl, |cb, ctx| {
            if cb.wants_gradients() {
                cb.on_before_optimizer_step(batch, grads, ctx)
            } else {
                Ok(())
            }
        })
    }

    /// Runs `on_exception` on every callback; a callback's own error is
    /// logged and the next callback still runs.
    pub fn on_exception(&mut self, error: &str, ctl: &mut dyn TrainingControl) {
        for callback in self.callbacks.iter_mut() {
            let mut ctx = Context::with_moving_average(&mut *ctl, &mut self.moving_average);
            if let Err(e) = callback.on_exception(error, &mut ctx) {
                log::warn!("{}: on_exception failed: {e}", callback.name());
            }
        }
    }

    /// Runs `on_train_begin` on every callback.
    pub fn on_train_begin(&mut self, ctl: &mut dyn TrainingControl) -> Result<()> {
        self.each(ctl, |cb, ctx| cb.on_train_begin(ctx))
    }

    /// Runs `on_train_end` on every callback.
    pub fn on_train_end(&mut self, logs: &Logs, ctl: &mut dyn TrainingControl) -> Result<()> {
        self.each(ctl, |cb, ctx| cb.on_train_end(logs, ctx))
    }

    /// Runs `on_epoch_begin` on every callback.
    pub fn on_epoch_begin(&mut self, epoch: usize, ctl: &mut dyn TrainingControl) -> Result<()> {
        self.each(ctl, |cb, ctx| cb.on_epoch_begin(epoch, ctx))
    }

    /// Runs `on_epoch_end` on every callback, sharing `logs`.
    pub fn on_epoch_end(
        &mut self,
        epoch: usize,
        logs: &mut Logs,
        ctl: &mut dyn TrainingControl,
    ) -> Result<()> {
        self.each(ctl, |cb, ctx| cb.on_epoch_end(epoch, logs, ctx))
    }

    /// Runs `on_train_batch_begin` on every callback.
    pub fn on_train_batch_begin(
        &mut self,
        batch: usize,
        ctl: &mut dyn TrainingControl,
    ) -> Result<()> {
        self.each(ctl, |cb, ctx| cb.on_train_batch_begin(batch, ctx))
    }

    /// Runs `on_train_batch_end` on every callback, sharing `logs`.
    pub fn on_train_batch_end(
        &mut self,
        batch: usize,
        logs: &mut Logs,
        ctl: &mut dyn TrainingControl,
    ) -> Result<()> {
        self.each(ctl, |cb, ctx| cb.on_train_batch_end(batch, logs, ctx))
    }

    /// Runs `on_validation_begin` on every callback.
    pub fn on_validation_begin(&mut self, ctl: &mut dyn TrainingControl) -> Result<()> {
        self.each(ctl, |cb, ctx| cb.on_validation_begin(ctx))
    }

    /// Runs `on_validation_batch_end` on every callback.
    pub fn on_validation_batch_end(
        &mut self,
        batch: usize,
        logs: &Logs,
        ctl: &mut dyn TrainingControl,
    ) -> Result<()> {
        self.each(ctl, |cb, ctx| cb.on_validation_batch_end(batch, logs, ctx))
    }

    /// Runs `on_validation_end` on every callback.
    pub fn on_validation_end(&mut self, logs: &Logs, ctl: &mut dyn TrainingControl) -> Result<()> {
        self.each(ctl, |cb, ctx| cb.on_validation_end(logs, ctx))
    }

    /// Calls `hook` on every callback in order, each with a fresh [`Context`]
    /// over `ctl`; stops at the first error and returns it.
    fn each(
        &mut self,
        ctl: &mut dyn TrainingControl,
        mut hook: impl FnMut(&mut dyn Callback, &mut Context) -> Result<()>,
    ) -> Result<()> {
        for callback in self.callbacks.iter_mut() {
            let mut ctx = Context::with_moving_average(&mut *ctl, &mut self.moving_average);
            hook(callback.as_mut(), &mut ctx)?;
        }
        Ok(())
    }

    /// The first backup a callback wants training to resume from.
    pub fn resume_point(&mut self) -> Result<Option<std::path::PathBuf>> {
        for cb in self.callbacks.iter_mut() {
            if let Some(path) = cb.resume_point()? {
                return Ok(Some(path));
            }
        }
        Ok(None)
    }

    /// Every stateful callback's state, keyed by its name (a `#n` suffix
    /// tells apart callbacks of the same name).
    pub fn states(&self) -> Result<BTreeMap<String, serde_json::Value>> {
        let mut states = BTreeMap::new();
        for key_and_cb in self.keyed() {
            let (key, cb) = key_and_cb;
            if let Some(state) = cb.state()? {
                states.insert(key, state);
            }
        }
        Ok(states)
    }

    /// Gives each callback the state saved under its key by [`CallbackList::states`].
    /// A callback with no saved state keeps its fresh state.
    pub fn load_states(&mut self, mut states: BTreeMap<String, serde_json::Value>) -> Result<()> {
        let keys: Vec<String> = self.keyed().map(|(key, _)| key).collect();
        for (key, cb) in keys.into_iter().zip(self.callbacks.iter_mut()) {
            if let Some(state) = states.remove(&key) {
                cb.load_state(state)
                    .map_err(|e| CallbackError::State(format!("{key}: {e}")))?;
            }
        }
        Ok(())
    }

    /// The models every callback keeps ([`Callback::state_models`]), keyed
    /// like [`CallbackList::states`].
    pub fn models(&self) -> CallbackModels {
        self.keyed()
            .map(|(key, cb)| (key, cb.state_models()))
            .filter(|(_, models)| !models.is_empty())
            .collect()
    }

    /// Gives each callback the models saved under its key by
    /// [`CallbackList::models`].
    pub fn load_models(&mut self, mut models: CallbackModels) -> Result<()> {
        let keys: Vec<String> = self.keyed().map(|(key, _)| key).collect();
        for (key, cb) in keys.into_iter().zip(self.callbacks.iter_mut()) {
            if let Some(saved) = models.remove(&key) {
                cb.load_state_models(saved)
                    .map_err(|e| CallbackError::State(format!("{key}: {e}")))?;
            }
        }
        Ok(())
    }

    fn keyed(&self) -> impl Iterator<Item = (String, &Box<dyn Callback>)> {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        self.callbacks.iter().map(move |cb| {
            let name = cb.name();
            let count = seen.entry(name.clone()).or_insert(0);
            *count += 1;
            let key = if *count == 1 {
                name
            } else {
                format!("{name}#{count}")
            };
            (key, cb)
        })
    }
}

impl std::fmt::Debug for CallbackList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}
